package main

// A full disk, for real: the binary runs as a child with RLIMIT_FSIZE set
// low, so that writing past the limit fails with EFBIG (Go ignores
// SIGXFSZ; ffmpeg, a child of ours, is stopped by it), as a full disk
// makes writes fail with ENOSPC. The limit is set by this test binary
// re-executing itself (see init): no shell, no util-linux needed.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// fsizeEnv and execEnv ask the test binary, started again as a child, to
// set RLIMIT_FSIZE to that many bytes and become the program named.
const (
	fsizeEnv = "TOKENFLOW_TEST_FSIZE_LIMIT"
	execEnv  = "TOKENFLOW_TEST_FSIZE_EXEC"
)

func init() {
	limit, prog := os.Getenv(fsizeEnv), os.Getenv(execEnv)
	if limit == "" || prog == "" {
		return
	}
	n, err := strconv.ParseUint(limit, 10, 64)
	if err == nil {
		err = syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: n, Max: n})
	}
	if err == nil {
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, fsizeEnv+"=") && !strings.HasPrefix(kv, execEnv+"=") {
				env = append(env, kv)
			}
		}
		err = syscall.Exec(prog, append([]string{prog}, os.Args[1:]...), env)
	}
	fmt.Fprintf(os.Stderr, "fsize helper: %v\n", err)
	os.Exit(3)
}

// tfLimited runs the binary with files limited to limit bytes.
func tfLimited(t *testing.T, dir string, limit int64, args ...string) runResult {
	t.Helper()
	cmd := tfCommand(t, dir, args...)
	cmd.Path, cmd.Args = os.Args[0], append([]string{os.Args[0]}, args...)
	cmd.Env = append(cmd.Env, fsizeEnv+"="+strconv.FormatInt(limit, 10), execEnv+"="+tfBin)
	r := runCmd(t, cmd)
	if r.Code == 3 && strings.Contains(r.Stderr, "fsize helper") {
		t.Fatalf("could not limit the file size: %s", r.Stderr)
	}
	return r
}

// TestDiskFull: when the disk fills up while an edit writes its outputs,
// or while it stores its inversion in the cache, the run fails with one
// line (exit 1), a file the user had in the output folder is untouched,
// and nothing half-written stays: no output, no temporary file, no cache
// entry.
func TestDiskFull(t *testing.T) {
	sd15 := model(t, "tiny-sd15")
	for _, tc := range []struct {
		name    string
		warm    bool  // fill the cache first, without a limit
		limit   int64 // bytes
		want    string
		noEntry bool // the run had no cache entry to start from
	}{
		// The inversion is cached; the 1 s of 192 kb/s audio makes the
		// video larger than the limit, the latents and PNGs are smaller.
		{name: "writing the video", warm: true, limit: 16 << 10,
			want: "tokenflow: encode $D/out/out.mp4: ffmpeg failed after 12 frames: signal: file size limit exceeded"},
		// The cache entry's latents are larger than the limit.
		{name: "storing the inversion", limit: 2 << 10, noEntry: true,
			want: "tokenflow: --cache-dir $D/cache: $D/cache/inversions/.*/latents.safetensors: file too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			in := audioClip(t, d)
			outDir := filepath.Join(d, "out")
			if err := os.Mkdir(outDir, 0o755); err != nil {
				t.Fatal(err)
			}
			keep := filepath.Join(outDir, "keep.txt")
			if err := os.WriteFile(keep, []byte(strings.Repeat("the user's notes\n", 4096)), 0o644); err != nil {
				t.Fatal(err)
			}
			cache := filepath.Join(d, "cache")
			args := []string{"edit", "--model", sd15, "-p", "a red cube", "--size", "32x32", "--steps", "2", "--inversion-steps", "2",
				"--cache-dir", cache}
			if tc.warm {
				tfOK(t, d, append(args, "-o", filepath.Join(d, "warm.mp4"), in)...)
			}
			before := listTree(t, outDir)
			r := tfLimited(t, d, tc.limit, append(args, "-o", filepath.Join(outDir, "out.mp4"),
				"--save-latents", filepath.Join(outDir, "latents.safetensors"), "--frames-dir", filepath.Join(outDir, "frames"), in)...)
			line := checkErrorLine(t, r)
			want := "^" + strings.ReplaceAll(regexp.QuoteMeta(tc.want), `\$D`, regexp.QuoteMeta(d)) + "$"
			want = strings.ReplaceAll(want, `\.\*`, `[^/]*`)
			if !regexp.MustCompile(want).MatchString(line) {
				t.Errorf("error line\n%s\nwant\n%s", line, strings.ReplaceAll(tc.want, "$D", d))
			}
			if r.Code != exitError {
				t.Errorf("exit %d, want %d", r.Code, exitError)
			}
			if after := listTree(t, outDir); !slices.Equal(before, after) {
				t.Errorf("the output folder changed: before %q, after %q", before, after)
			}
			if b, _ := os.ReadFile(keep); string(b) != strings.Repeat("the user's notes\n", 4096) {
				t.Errorf("keep.txt changed")
			}
			if tc.warm {
				// Nothing stays in the way: the same run again, on a disk
				// with room, needs no --force and writes all three.
				res, _ := tfJSON[editResult](t, d, append(args, "-o", filepath.Join(outDir, "out.mp4"), "--json",
					"--save-latents", filepath.Join(outDir, "latents.safetensors"), "--frames-dir", filepath.Join(outDir, "frames"), in)...)
				for _, p := range []string{res.Output, res.Latents, filepath.Join(res.FramesDir, "00011.png")} {
					if _, err := os.Stat(p); err != nil {
						t.Errorf("retry: %v", err)
					}
				}
			}
			// The cache holds the warm run's entry or none, nothing half
			// written: no temporary folder (only the entries' lock files).
			var entries []string
			for _, p := range listTree(t, cache) {
				if strings.Count(p, "/") == 2 && strings.HasSuffix(p, "/") && strings.HasPrefix(p, "inversions/") {
					entries = append(entries, p)
				}
				if strings.Contains(p, ".tmp-") {
					t.Errorf("the cache holds a temporary file: %s", p)
				}
			}
			if n := len(entries); n != map[bool]int{true: 0, false: 1}[tc.noEntry] {
				t.Errorf("cache entries %q", entries)
			}
		})
	}
}
