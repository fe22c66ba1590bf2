package progress

import "testing"

// TestRSSReadsProc: on Linux the resident memory is read, and is at least
// what this test process has just allocated and touched.
func TestRSSReadsProc(t *testing.T) {
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	n, ok := RSS()
	if !ok || n < int64(len(buf)) {
		t.Errorf("RSS = %d, %v: want at least %d", n, ok, len(buf))
	}
	_ = buf[len(buf)-1]
}
