package video

import (
	"bytes"
	"fmt"
	"image/png"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
)

// FrameFileName is the name of the i-th frame in a frames folder:
// 00000.png, 00001.png, ..., as the official TokenFlow data folders name
// them, so such a folder can be read back as a source.
func FrameFileName(i int) string { return fmt.Sprintf("%05d.png", i) }

// WritePNG writes f as an 8-bit RGB PNG at path, atomically.
func WritePNG(path string, f Frame) error {
	if len(f.Pix) != f.Width*f.Height*3 || f.Width <= 0 || f.Height <= 0 {
		return newError(ErrSize, nil, "write %s: frame %d is %dx%d with %d bytes, not rgb24", path, f.Index, f.Width, f.Height, len(f.Pix))
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, f.RGBA()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, buf.Bytes(), 0o666)
}
