package main

// docs/errors.md is a table of bad inputs and the one line each gives.
// TestErrorsDoc runs every row whose test column names it, exactly as the
// row says, through the real binary; the other rows name the test that
// checks them.

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// docRow is one row of docs/errors.md's table.
type docRow struct {
	input, line, exit, test string
}

func readErrorsDoc(t *testing.T) []docRow {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "errors.md"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []docRow
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(l, "| "), " | ")
		if len(cells) != 5 {
			t.Fatalf("docs/errors.md: row with %d cells, want 5: %s", len(cells), l)
		}
		rows = append(rows, docRow{input: strings.Trim(cells[0], "`"), line: strings.Trim(cells[1], "`"), exit: cells[2], test: strings.Trim(cells[4], "`")})
	}
	return rows
}

// TestErrorsDocTable: the table has at least 30 rows, and every row names
// a test that exists in this package (or the package it names).
func TestErrorsDocTable(t *testing.T) {
	rows := readErrorsDoc(t)
	if len(rows) < 30 {
		t.Errorf("docs/errors.md has %d rows, want at least 30", len(rows))
	}
	var src strings.Builder
	files, _ := filepath.Glob("*_test.go")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		src.Write(b)
	}
	for _, r := range rows {
		name, _, _ := strings.Cut(r.test, "/")
		if !strings.Contains(src.String(), "func "+name+"(") {
			t.Errorf("row %q names %s, which is not a test here", r.input, r.test)
		}
	}
}

// TestErrorsDoc runs the rows of docs/errors.md that name it. Each runs in
// a fresh folder D holding a few files to misuse; edit and invert rows get
// the tiny test model and tiny work first (--model TINY --size 32x32
// --steps 2 ... --cache-dir D/cache, and -o D/out.mp4 for edit), which the
// row's own flags override. FRAMES is an 8-frame folder. Each must exit
// with the row's status and exactly its line, print nothing on stdout, and
// change nothing in D.
func TestErrorsDoc(t *testing.T) {
	sd15 := model(t, "tiny-sd15")
	frames := fixtureFrames(t, "tiny-sd15")
	files := map[string]string{
		"notes.mp4": "these are notes, not a video\n", "existing.mp4": "an earlier result\n", "file": "a file, not a folder\n",
		"bad-key.yaml": "prompt: x\nn_timestep: 10\n", "bad-type.yaml": "prompt: x\nn_timesteps: \"ten\"\n", "bad-yaml.yaml": "prompt: [x\n",
	}
	for _, r := range readErrorsDoc(t) {
		if r.test != "TestErrorsDoc" {
			continue
		}
		t.Run(r.input, func(t *testing.T) {
			d := t.TempDir()
			for name, text := range files {
				if err := os.WriteFile(filepath.Join(d, name), []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Mkdir(filepath.Join(d, "emptydir"), 0o755); err != nil {
				t.Fatal(err)
			}
			expand := func(s string) string {
				s = strings.ReplaceAll(s, "FRAMES", frames)
				s = strings.ReplaceAll(s, "TINY", sd15)
				return strings.ReplaceAll(s, "D/", d+"/")
			}
			args := strings.Fields(expand(strings.TrimPrefix(r.input, "tokenflow ")))
			switch args[0] {
			case "edit":
				args = slices.Concat([]string{"edit", "--model", sd15, "--size", "32x32", "--steps", "2", "--inversion-steps", "2",
					"--cache-dir", filepath.Join(d, "cache"), "-o", filepath.Join(d, "out.mp4")}, args[1:])
			case "invert":
				args = slices.Concat([]string{"invert", "--model", sd15, "--size", "32x32", "--steps", "2", "--save-steps", "2",
					"--cache-dir", filepath.Join(d, "cache")}, args[1:])
			}
			res := tfRefused(t, d, slices.Collect(maps.Keys(files)), args...)
			if got, want := checkErrorLine(t, res), expand(r.line); got != want {
				t.Errorf("error line\n%s\nwant (docs/errors.md)\n%s", got, want)
			}
			if want, _ := strconv.Atoi(r.exit); res.Code != want {
				t.Errorf("exit %d, docs/errors.md says %s", res.Code, r.exit)
			}
		})
	}
}
