// Package atomicfile writes files and folders so that a reader sees either
// nothing or the complete result, never a half-written one: the content goes
// to a temporary name in the destination's folder, and only Commit moves it to
// the final name (rename(2) within one file system is atomic).
//
// The idiom:
//
//	f, err := atomicfile.Create(path, 0o666, false)
//	if err != nil {
//		return err
//	}
//	defer f.Abort() // removes the temporary file unless Commit succeeded
//	if _, err := f.Write(data); err != nil {
//		return err
//	}
//	return f.Commit()
//
// With noClobber, Commit refuses to replace an existing path, race-free: the
// temporary file is hard-linked to the final name, which fails if anything is
// already there. The command line uses it for "never overwrite without --force".
package atomicfile

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrExist is what a no-clobber Create or Commit returns (wrapped) when the
// destination already exists. It is fs.ErrExist, so errors.Is(err,
// fs.ErrExist) works too.
var ErrExist = fs.ErrExist

// File is a file being written under a temporary name. It is not safe for
// concurrent use.
type File struct {
	pending
	f         *os.File
	noClobber bool
}

// Create opens a new temporary file next to path (".<name>.tmp-<random>" in
// the same folder) for writing, with permission bits perm before the umask
// (0o666 is what os.Create gives). Nothing appears at path until Commit.
// With noClobber, Create fails early, and Commit fails race-free, when path
// already exists; the existing file is left as it was.
func Create(path string, perm fs.FileMode, noClobber bool) (*File, error) {
	if err := checkDest(path, noClobber); err != nil {
		return nil, err
	}
	var f *os.File
	tmp, err := tempName(path, func(name string) error {
		var err error
		f, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm.Perm())
		return err
	})
	if err != nil {
		return nil, createError(path, err)
	}
	return &File{pending: pending{path: path, tmp: tmp}, f: f, noClobber: noClobber}, nil
}

// Write writes to the temporary file.
func (f *File) Write(p []byte) (int, error) { return f.f.Write(p) }

// Name is the temporary file's path, for a writer that needs a path rather
// than an io.Writer (such as ffmpeg). Whatever that writer does must leave the
// same inode in place (open with O_TRUNC is fine; delete and recreate is not).
func (f *File) Name() string { return f.tmp }

// Path is the final path the file gets on Commit.
func (f *File) Path() string { return f.path }

// Commit flushes the file to disk, closes it and moves it to its final path,
// then syncs the folder so the new name survives a crash. On failure the
// temporary file is removed. Calling Commit twice is an error.
func (f *File) Commit() error {
	if err := f.startCommit(); err != nil {
		return err
	}
	if err := cmp.Or(f.f.Sync(), f.f.Close()); err != nil { // the first error; both run
		os.Remove(f.tmp)
		return &Error{Path: f.path, Msg: "cannot write: " + CauseText(err), Err: err}
	}
	if err := Rename(f.tmp, f.path, f.noClobber); err != nil {
		os.Remove(f.tmp)
		return err
	}
	Sync(filepath.Dir(f.path)) // makes the rename durable; best effort, see Sync
	return nil
}

// Abort closes and removes the temporary file. It does nothing after Commit
// or a previous Abort, so it is safe to defer.
func (f *File) Abort() error {
	if !f.startAbort() {
		return nil
	}
	f.f.Close()
	if err := os.Remove(f.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("abort %s: %w", f.path, err)
	}
	return nil
}

// WriteFile writes data to path atomically: readers see the old content or
// the new, never a mix. perm is the permission before the umask (as
// os.WriteFile).
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	f, err := Create(path, perm, false)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return &Error{Path: path, Msg: "cannot write: " + CauseText(err), Err: err}
	}
	return f.Commit()
}

// pending is what a File and a Dir share: the final path, the temporary
// one, and whether Commit or Abort has ended it.
type pending struct {
	path, tmp string
	done      bool
}

// startCommit ends p for a Commit; a second end is an error.
func (p *pending) startCommit() error {
	if p.done {
		return fmt.Errorf("commit %s: already committed or aborted", p.path)
	}
	p.done = true
	return nil
}

// startAbort ends p for an Abort; it reports false, with nothing to do,
// after Commit or a previous Abort.
func (p *pending) startAbort() bool {
	if p.done {
		return false
	}
	p.done = true
	return true
}

// Dir is a folder being filled under a temporary name, e.g. a cache entry
// whose files must appear together or not at all.
type Dir struct {
	pending
}

// CreateDir makes an empty temporary folder next to path
// (".<name>.tmp-<random>"); fill it through Name(), then Commit or Abort.
// Commit never replaces a folder that has something in it (rename(2) refuses,
// and Commit reports ErrExist, e.g. when another process finished the same
// cache entry first); an empty folder at path is replaced.
func CreateDir(path string) (*Dir, error) {
	if err := checkDest(path, false); err != nil {
		return nil, err
	}
	tmp, err := tempName(path, func(name string) error { return os.Mkdir(name, 0o777) })
	if err != nil {
		return nil, createError(path, err)
	}
	return &Dir{pending{path: path, tmp: tmp}}, nil
}

// Name is the temporary folder to fill.
func (d *Dir) Name() string { return d.tmp }

// Commit syncs every regular file in the temporary folder and the folder
// itself, then renames it to its final path. On failure the temporary folder
// is removed.
func (d *Dir) Commit() error {
	if err := d.startCommit(); err != nil {
		return err
	}
	if err := syncTree(d.tmp); err != nil {
		os.RemoveAll(d.tmp)
		return &Error{Path: d.path, Msg: "cannot write: " + CauseText(err), Err: err}
	}
	if err := os.Rename(d.tmp, d.path); err != nil {
		os.RemoveAll(d.tmp)
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
			return existsError(d.path)
		}
		return moveError(d.path, err)
	}
	Sync(filepath.Dir(d.path)) // makes the rename durable; best effort, see Sync
	return nil
}

// Abort removes the temporary folder and everything in it. It does nothing
// after Commit or a previous Abort, so it is safe to defer.
func (d *Dir) Abort() error {
	if !d.startAbort() {
		return nil
	}
	if err := os.RemoveAll(d.tmp); err != nil {
		return fmt.Errorf("abort %s: %w", d.path, err)
	}
	return nil
}

// Error is a failure to create or commit Path; Msg says what went wrong in
// words a user can act on, Err is the cause (for errors.Is).
type Error struct {
	Path string
	Msg  string
	Err  error
}

func (e *Error) Error() string { return e.Path + ": " + e.Msg }
func (e *Error) Unwrap() error { return e.Err }

// checkDest fails early for a destination that cannot work: its folder
// missing or not a folder, or (with noClobber) the path already taken.
func checkDest(path string, noClobber bool) error {
	if path == "" {
		return errors.New("atomicfile: empty path")
	}
	if noClobber {
		if _, err := os.Lstat(path); err == nil {
			return existsError(path)
		}
	}
	return nil
}

// tempName calls create with fresh temporary names next to path until one is
// free, and returns the name that worked.
func tempName(path string, create func(string) error) (string, error) {
	dir, base := filepath.Split(path)
	var err error
	for range 10 {
		var b [8]byte
		rand.Read(b[:])
		name := filepath.Join(dir, "."+base+".tmp-"+hex.EncodeToString(b[:]))
		if err = create(name); !errors.Is(err, fs.ErrExist) {
			return name, err
		}
	}
	return "", err
}

// Rename moves tmp, a finished file, to path: rename(2), or for noClobber a
// hard link (which fails with ErrExist, race-free, if path exists, without
// touching it) followed by removing tmp. It leaves tmp in place on any
// failure. It is Commit for a file written through its name.
func Rename(tmp, path string, noClobber bool) error {
	if noClobber {
		err := os.Link(tmp, path)
		switch {
		case err == nil:
			os.Remove(tmp)
			return nil
		case errors.Is(err, fs.ErrExist):
			return existsError(path)
		case !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.ENOTSUP) && !errors.Is(err, syscall.EOPNOTSUPP) && !errors.Is(err, syscall.ENOSYS):
			return moveError(path, err)
		}
		// File systems without hard links (some FUSE and network mounts, FAT):
		// check, then rename. Not race-free, but the best such a system allows.
		if _, serr := os.Lstat(path); serr == nil {
			return existsError(path)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return moveError(path, err)
	}
	return nil
}

func existsError(path string) error {
	return &Error{Path: path, Msg: "already exists (not replaced)", Err: ErrExist}
}

// createError turns the failure to make a temporary name next to path into
// one line naming path and its folder.
func createError(path string, err error) error {
	dir := filepath.Dir(path)
	msg := "cannot create: " + CauseText(err)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		msg = fmt.Sprintf("cannot create: folder %s does not exist", dir)
	case errors.Is(err, syscall.ENOTDIR):
		msg = fmt.Sprintf("cannot create: %s is not a folder", dir)
	case errors.Is(err, syscall.EROFS):
		msg = fmt.Sprintf("cannot create: folder %s is on a read-only file system", dir)
	case errors.Is(err, fs.ErrPermission):
		msg = fmt.Sprintf("cannot create: folder %s is not writable", dir)
	case errors.Is(err, syscall.ENOSPC):
		msg = fmt.Sprintf("cannot create: no space left in folder %s", dir)
	}
	return &Error{Path: path, Msg: msg, Err: err}
}

func moveError(path string, err error) error {
	if errors.Is(err, syscall.EISDIR) {
		return &Error{Path: path, Msg: "cannot replace: it is a folder", Err: err}
	}
	return &Error{Path: path, Msg: "cannot move into place: " + CauseText(err), Err: err}
}

// CauseText is the innermost message of err, without the temporary path a
// *PathError would repeat.
func CauseText(err error) string { return Cause(err).Error() }

// Cause is the innermost error of err (e.g. syscall.EACCES, which errors.Is
// still matches against fs.ErrPermission).
func Cause(err error) error {
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(err) {
		err = u
	}
	return err
}

// syncTree fsyncs every regular file and folder under dir.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() && !d.IsDir() {
			return nil
		}
		return Sync(p)
	})
}

// Sync flushes a file or folder written through another descriptor to
// disk. Syncing a folder makes a rename in it durable; Commit ignores a
// failure to (some file systems cannot fsync a folder, and the rename
// itself already happened).
func Sync(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return cmp.Or(f.Sync(), f.Close()) // the first error; both run
}
