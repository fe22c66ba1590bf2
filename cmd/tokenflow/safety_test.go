package main

// Nothing lost: the input is never an output, the outputs of one run appear
// together or not at all, a full disk leaves nothing half-written, and our
// temporary files do not outlive their writer. All through the real binary.

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
	"time"
)

// symlinkIn is a setup that makes d/name a symbolic link to target.
func symlinkIn(target, name string) func(t *testing.T, d string) {
	return func(t *testing.T, d string) {
		if err := os.Symlink(target, filepath.Join(d, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOutputIsInput: an output that is the input, by name, through a
// symbolic or hard link, or inside the input's frame folder, is refused
// with one line (exit 2) whether or not --force is given, and the input is
// untouched.
func TestOutputIsInput(t *testing.T) {
	sd15 := model(t, "tiny-sd15")
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, d string) // makes d/in.mp4 or d/frames, and links
		input string                       // relative to d
		args  []string                     // "$D" is the case's folder
		want  string                       // the error line, "$D" as above
	}{
		{name: "--out is the input", input: "in.mp4", args: []string{"--out", "$D/in.mp4", "--force"},
			want: "tokenflow: --out $D/in.mp4: is the input $D/in.mp4: the edit would replace it; give another path"},
		{name: "--out is the input without --force", input: "in.mp4", args: []string{"--out", "$D/in.mp4"},
			want: "tokenflow: --out $D/in.mp4: is the input $D/in.mp4: the edit would replace it; give another path"},
		{name: "--out is a symbolic link to the input", input: "in.mp4", args: []string{"--out", "$D/link.mp4", "--force"},
			setup: symlinkIn("in.mp4", "link.mp4"),
			want:  "tokenflow: --out $D/link.mp4: is the input $D/in.mp4: the edit would replace it; give another path"},
		{name: "--out is a hard link to the input", input: "in.mp4", args: []string{"--out", "$D/hard.mp4", "--force"},
			setup: func(t *testing.T, d string) {
				if err := os.Link(filepath.Join(d, "in.mp4"), filepath.Join(d, "hard.mp4")); err != nil {
					t.Fatal(err)
				}
			},
			want: "tokenflow: --out $D/hard.mp4: is the input $D/in.mp4: the edit would replace it; give another path"},
		{name: "--save-latents is the input", input: "in.mp4", args: []string{"--out", "$D/out.mp4", "--save-latents", "$D/in.mp4", "--force"},
			want: "tokenflow: --save-latents $D/in.mp4: is the input $D/in.mp4: the edit would replace it; give another path"},
		{name: "--frames-dir is the input folder", input: "frames", args: []string{"--out", "$D/out.mp4", "--frames-dir", "$D/frames", "--force"},
			want: "tokenflow: --frames-dir $D/frames: is the input $D/frames: the edit would replace it; give another path"},
		{name: "--frames-dir inside the input folder", input: "frames", args: []string{"--out", "$D/out.mp4", "--frames-dir", "$D/frames/edited"},
			want: "tokenflow: --frames-dir $D/frames/edited: is inside the input folder $D/frames: give a path outside it"},
		{name: "--out inside the input folder through a link", input: "frames", args: []string{"--out", "$D/alias/out.mp4", "--force"},
			setup: symlinkIn("frames", "alias"),
			want:  "tokenflow: --out $D/alias/out.mp4: is inside the input folder $D/frames: give a path outside it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			if tc.input == "frames" {
				copyDir(t, fixtureFrames(t, "tiny-sd15"), filepath.Join(d, "frames"))
			} else {
				audioClip(t, d)
			}
			if tc.setup != nil {
				tc.setup(t, d)
			}
			args := []string{"edit", "--model", sd15, "-p", "a red cube", "--size", "32x32", "--steps", "2", "--inversion-steps", "2",
				"--cache-dir", filepath.Join(d, "cache")}
			for _, a := range tc.args {
				args = append(args, strings.ReplaceAll(a, "$D", d))
			}
			args = append(args, filepath.Join(d, tc.input))
			r := tfRefused(t, d, []string{"in.mp4"}, args...)
			if line := checkErrorLine(t, r); line != strings.ReplaceAll(tc.want, "$D", d) {
				t.Errorf("error line\n%s\nwant\n%s", line, strings.ReplaceAll(tc.want, "$D", d))
			}
			if r.Code != exitUsage {
				t.Errorf("exit %d, want %d", r.Code, exitUsage)
			}
		})
	}
}

// TestStaleTempsSwept: a run killed with SIGKILL leaves the temporary
// names of its outputs (nothing can remove them); the next run writing the
// same outputs removes them, and only them: a name of ours for another
// output, and a name that only looks like ours, stay.
func TestStaleTempsSwept(t *testing.T) {
	d := t.TempDir()
	out := filepath.Join(d, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	keep := []string{".other.mp4.tmp-0123456789abcdef", ".edited.mp4.tmp-notours", ".edited.mp4.tmp-0123456789ABCDEF"}
	for _, name := range keep {
		if err := os.WriteFile(filepath.Join(out, name), []byte("not this run's"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	outputs := []string{"-o", filepath.Join(out, "edited.mp4"),
		"--save-latents", filepath.Join(out, "latents.safetensors"), "--frames-dir", filepath.Join(out, "frames")}
	args := append([]string{"edit", "--model", model(t, "tiny-sd15"), "--prompt", "a red cube", "--cache-dir", filepath.Join(d, "cache")}, outputs...)
	frames := fixtureFrames(t, "tiny-sd15")

	r := start(t, tfCommand(t, d, append(args, "--size", "64x64", "--steps", "20", "--inversion-steps", "20", "--batch-size", "4", frames)...))
	if !r.lines.waitFor("inversion:", 2*time.Minute) {
		r.cmd.Process.Kill()
		t.Fatalf("no progress before the run ended:\n%s", r.lines.wait())
	}
	r.signal(syscall.SIGKILL)
	if _, ok := r.exited(time.Minute); !ok {
		t.Fatal("still running after SIGKILL")
	}
	ours := regexp.MustCompile(`^\.(edited\.mp4|latents\.safetensors|frames)\.tmp-[0-9a-f]{16}$`)
	stale := func() []string {
		ents, err := os.ReadDir(out)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			if ours.MatchString(e.Name()) {
				names = append(names, e.Name())
			}
		}
		return names
	}
	if got := stale(); len(got) != 3 {
		t.Fatalf("after SIGKILL the output folder holds %q: want the three outputs' temporary names", listTree(t, out))
	}

	res, _ := tfJSON[editResult](t, d, append(args, "--size", "32x32", "--steps", "2", "--inversion-steps", "2", "--json", frames)...)
	if got := stale(); len(got) != 0 {
		t.Errorf("the next run left the killed run's temporary names: %q", got)
	}
	for _, p := range []string{res.Output, res.Latents, filepath.Join(res.FramesDir, "00007.png")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("next run: %v", err)
		}
	}
	for _, name := range keep {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("the sweep removed %s, which is not a temporary name of this output", name)
		}
	}
}

// A full disk, for real: the binary runs as a child with RLIMIT_FSIZE set
// low, so that writing past the limit fails with EFBIG (Go ignores
// SIGXFSZ; ffmpeg, a child of ours, is stopped by it), as a full disk
// makes writes fail with ENOSPC. The limit is set by this test binary
// re-executing itself (see init): no shell, no util-linux needed.

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
