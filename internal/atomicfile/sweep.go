package atomicfile

import (
	"cmp"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
)

// Temporary files survive their writer when it is killed (SIGKILL, the OOM
// killer, a power cut): nothing runs to remove them. A writer that wants
// its temporary file or folder swept after such a death Claims it: an
// exclusive flock(2) on it, held while the writer lives. The kernel drops
// the lock when the process dies, however it dies, so a later Sweep can
// tell "writer gone" (the lock is free) from "writer still at work" (it is
// held) without guessing from ages: a run that has been encoding for hours
// keeps its temporary file, a temporary file killed a second ago goes.
//
// Sweep removes only names that are certainly ours: exactly the names
// Create and CreateDir make for that destination, ".<name>.tmp-" and 16
// lowercase hex digits. The one window it cannot see is a writer between
// creating its temporary name and claiming it (two system calls in a row):
// claim right after Create.

// Claim marks tmp (a temporary file or folder of this package) as in use by
// this process until release is called, and registers it for RemoveClaimed.
func Claim(tmp string) (release func(), err error) {
	fd, err := syscall.Open(tmp, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "claim", Path: tmp, Err: err}
	}
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		syscall.Close(fd)
		return nil, &os.PathError{Op: "claim", Path: tmp, Err: err}
	}
	claims.Lock()
	claims.m[tmp] = fd
	claims.Unlock()
	return sync.OnceFunc(func() {
		claims.Lock()
		delete(claims.m, tmp)
		claims.Unlock()
		syscall.Close(fd)
	}), nil
}

var claims = struct {
	sync.Mutex
	m map[string]int
}{m: map[string]int{}}

// RemoveClaimed removes every temporary file or folder this process holds
// a claim on, for a process about to exit at once (a second interrupt):
// what it was writing disappears with it.
func RemoveClaimed() {
	claims.Lock()
	defer claims.Unlock()
	for tmp, fd := range claims.m {
		os.RemoveAll(tmp)
		syscall.Close(fd)
		delete(claims.m, tmp)
	}
}

var tempSuffix = regexp.MustCompile(`^\.tmp-[0-9a-f]{16}$`)

// Sweep removes the temporary files and folders Create and CreateDir left
// next to path whose writer is gone: those not claimed by a living
// process. Unclaimed ones are gone-writer leftovers too (a temporary name
// lives for a moment before its claim, see above). It returns what it
// removed; errors reading the folder are returned, a name that cannot be
// removed is skipped.
func Sweep(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	dir = cmp.Or(dir, ".")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	prefix := "." + base
	var removed []string
	for _, e := range ents {
		name := e.Name()
		if len(name) <= len(prefix) || name[:len(prefix)] != prefix || !tempSuffix.MatchString(name[len(prefix):]) {
			continue
		}
		tmp := filepath.Join(dir, name)
		if !free(tmp) {
			continue
		}
		if err := os.RemoveAll(tmp); err == nil {
			removed = append(removed, tmp)
		}
	}
	return removed, nil
}

// free reports whether nobody holds a claim on tmp.
func free(tmp string) bool {
	fd, err := syscall.Open(tmp, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	defer syscall.Close(fd) // drops the lock taken to test
	return syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB) == nil
}
