package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Lock is an advisory lock on one entry (flock(2) on ".<id>.lock" next to
// it): while a run holds it, no other tokenflow process looks the entry up,
// computes it or stores it. The kernel releases it when the process ends,
// however it ends.
type Lock struct{ f *os.File }

// lockPoll is how often Acquire tries again while another run holds the
// lock.
const lockPoll = 200 * time.Millisecond

// Acquire takes the lock of k's entry under root, waiting while another
// process holds it; waiting, when set, is called once if it must wait.
// The wait ends with ctx.
func Acquire(ctx context.Context, root string, k Key, waiting func(path string)) (*Lock, error) {
	dir := filepath.Join(root, subdir)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, writeError(root, err)
	}
	path := filepath.Join(dir, "."+k.ID()+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, writeError(root, err)
	}
	for try := 0; ; try++ {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return &Lock{f: f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("inversion cache: lock %s: %w", path, err)
		}
		if try == 0 && waiting != nil {
			waiting(path)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(lockPoll):
		}
	}
}

// Release gives the lock up.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the file releases the flock
	l.f = nil
	return err
}
