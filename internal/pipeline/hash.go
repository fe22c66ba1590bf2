package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// hashInput is the sha256 of a media file's bytes, or of a frame folder's
// sorted image files (names and bytes). It stops when ctx ends.
func hashInput(ctx context.Context, path string, folder bool) (string, error) {
	h := sha256.New()
	files := []string{path}
	if folder {
		entries, err := os.ReadDir(path)
		if err != nil {
			return "", err
		}
		files = files[:0]
		for _, e := range entries {
			switch strings.ToLower(filepath.Ext(e.Name())) {
			case ".png", ".jpg", ".jpeg":
				if !e.IsDir() {
					files = append(files, filepath.Join(path, e.Name()))
				}
			}
		}
		sort.Strings(files)
	}
	for _, f := range files {
		in, err := os.Open(f)
		if err != nil {
			return "", err
		}
		if folder {
			fmt.Fprintf(h, "%s\n", filepath.Base(f))
		}
		_, err = io.Copy(h, ctxReader{ctx, in})
		in.Close()
		if err != nil {
			return "", fmt.Errorf("read %s: %w", f, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ctxReader stops reading when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
