package ort

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	ortgo "github.com/yalue/onnxruntime_go"
)

// ProfileVar names a folder: when set, every session records ONNX
// Runtime's profile (one JSON trace per session, written when the session
// is closed: the time of every node of every run) into it. A diagnostic
// for performance work (docs/performance.md); it slows runs a little.
const ProfileVar = "TOKENFLOW_ORT_PROFILE"

var profileSeq atomic.Int64

// enableProfile turns on ONNX Runtime's profiler for a session about to be
// created when ProfileVar says so. The file prefix is the folder, a
// sequence number and name (the session's first output).
func enableProfile(so *ortgo.SessionOptions, name string) error {
	dir := os.Getenv(ProfileVar)
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("%s: %w", ProfileVar, err)
	}
	name = strings.NewReplacer("/", "_", "\\", "_", ":", "_").Replace(name)
	prefix := filepath.Join(dir, fmt.Sprintf("%02d-%s", profileSeq.Add(1), name))
	if err := so.EnableProfiling(prefix); err != nil {
		return fmt.Errorf("%s: enable profiling: %s", ProfileVar, oneLine(err))
	}
	return nil
}
