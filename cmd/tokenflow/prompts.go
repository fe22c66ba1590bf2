package main

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"strings"
)

// promptFlag is --prompt, which may be repeated: the first value goes to
// first, the later ones to rest, in order.
type promptFlag struct {
	first *string
	rest  *[]string
	set   bool
}

func (f *promptFlag) String() string { return *f.first }
func (f *promptFlag) Type() string   { return "string" }

func (f *promptFlag) Set(v string) error {
	if !f.set {
		*f.first, f.set = v, true
		return nil
	}
	*f.rest = append(*f.rest, v)
	return nil
}

// readFlagFile reads the file a flag names; the error is a usage error
// naming the flag, the file and the cause ("no such file or directory").
func readFlagFile(flag, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, usageErr("%s %s: %v", flag, path, err)
	}
	return b, nil
}

// readPrompts reads --prompts FILE: one prompt per line; blank lines and
// lines starting with # (after spaces) are ignored.
func readPrompts(path string) ([]string, error) {
	b, err := readFlagFile("--prompts", path)
	if err != nil {
		return nil, err
	}
	var ps []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, len(b)+1)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		ps = append(ps, line)
	}
	if len(ps) == 0 {
		return nil, usageErr("--prompts %s: holds no prompts: write one per line (blank lines and # comments are ignored)", path)
	}
	return ps, nil
}
