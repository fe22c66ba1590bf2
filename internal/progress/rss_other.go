//go:build !linux

package progress

// RSS is the process's resident memory; it is read on Linux only, ok is
// false elsewhere (the progress lines then leave it out).
func RSS() (bytes int64, ok bool) { return 0, false }
