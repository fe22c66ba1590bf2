package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tokenflow/tokenflow/internal/ctxio"
	"github.com/tokenflow/tokenflow/internal/video"
)

// hashInput is the sha256 of a media file's bytes, or of a frame folder's
// frame files in order (names and bytes). It stops when ctx ends.
func hashInput(ctx context.Context, path string, folder bool) (string, error) {
	h := sha256.New()
	files := []string{path}
	if folder {
		// exactly the frames decoding reads, in its order
		var err error
		if files, err = video.FrameFiles(path); err != nil {
			return "", err
		}
	}
	for _, f := range files {
		in, err := os.Open(f)
		if err != nil {
			return "", err
		}
		if folder {
			fmt.Fprintf(h, "%s\n", filepath.Base(f))
		}
		_, err = io.Copy(h, ctxio.Reader(ctx, in))
		in.Close()
		if err != nil {
			return "", fmt.Errorf("read %s: %w", f, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
