package pipeline_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tokenflow/tokenflow/internal/keyframes"
	"github.com/tokenflow/tokenflow/internal/pipeline"
	"github.com/tokenflow/tokenflow/internal/video"
)

// Edit a video with the tiny test model, as a Go program would: one
// request, one call. (`make test` provides ONNX Runtime in $ONNXRUNTIME_LIB
// and ffmpeg on PATH.)
func ExampleEdit() {
	model := "../../testdata/conformance/tiny-sd21"
	frames := filepath.Join(model, "expected/tokenflow_inv10/input_frames") // 8 PNGs, 64x64
	work, err := os.MkdirTemp("", "tokenflow-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(work)

	res, err := pipeline.Edit(context.Background(), pipeline.EditRequest{
		InvertRequest: pipeline.InvertRequest{
			Source:          pipeline.Source{Input: frames, Size: video.Size{W: 64, H: 64}, Range: video.Whole()},
			Runtime:         pipeline.Runtime{Model: model, ORTLib: os.Getenv("ONNXRUNTIME_LIB"), Threads: 2},
			InversionPrompt: "a ball",
			InversionSteps:  10,
			Steps:           5,
			BatchSize:       4,
			CacheDir:        filepath.Join(work, "cache"),
		},
		Prompt:         "a red cube",
		NegativePrompt: pipeline.DefaultNegativePrompt,
		Guidance:       pipeline.DefaultGuidance,
		PnPAttn:        pipeline.DefaultPnPAttn,
		PnPConv:        pipeline.DefaultPnPConv,
		Keyframes:      keyframes.Middle,
		Out:            filepath.Join(work, "edited.mp4"),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(filepath.Base(res.Output), res.Frames, "frames at", res.Size, res.FPS, "fps")
	fmt.Println("inversion reused:", res.Inversion.Reused, "kept timesteps:", res.Inversion.Kept)
	fmt.Println("UNet frame evaluations:", res.UNetFrames)
	// Output:
	// edited.mp4 8 frames at 64x64 10/1 fps
	// inversion reused: false kept timesteps: [1 201 401 601 801 901]
	// UNet frame evaluations: 230
}
