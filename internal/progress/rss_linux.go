package progress

import "os"

// RSS is the process's resident memory in bytes (VmRSS of
// /proc/self/status); ok is false when it cannot be read.
func RSS() (bytes int64, ok bool) { return parseVmRSS(readStatus()) }

func readStatus() []byte {
	b, _ := os.ReadFile("/proc/self/status")
	return b
}
