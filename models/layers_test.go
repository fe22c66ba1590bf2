package models_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/pnp"
	"github.com/tokenflow/tokenflow/internal/testenv/ortsession"
	"github.com/tokenflow/tokenflow/internal/testmodel"
	"github.com/tokenflow/tokenflow/models"
)

// regLayer is a self-attention layer at one latent size: what the graph's
// per-layer TokenFlow inputs and outputs are shaped by.
type regLayer struct {
	Path            string
	H, W            int
	Channels, Heads int
}

func (l regLayer) Tokens() int { return l.H * l.W }

// registry lists cfg's self-attention layers at latent size h x w.
func registry(cfg *models.UNetConfig, h, w int) []regLayer {
	var out []regLayer
	for _, l := range cfg.SelfAttentionLayers() {
		th, tw := l.Tokens(h, w)
		out = append(out, regLayer{Path: l.Path, H: th, W: tw, Channels: int(l.Channels), Heads: int(l.Heads)})
	}
	return out
}

// sdPaths are the 16 self-attention layers of every SD 1.x/2.x-shaped UNet
// (four blocks, two layers per block, the last down block and the first
// up block without attention), in graph order: down, mid, up.
var sdPaths = []string{
	"down_blocks.0.attentions.0.transformer_blocks.0.attn1",
	"down_blocks.0.attentions.1.transformer_blocks.0.attn1",
	"down_blocks.1.attentions.0.transformer_blocks.0.attn1",
	"down_blocks.1.attentions.1.transformer_blocks.0.attn1",
	"down_blocks.2.attentions.0.transformer_blocks.0.attn1",
	"down_blocks.2.attentions.1.transformer_blocks.0.attn1",
	"mid_block.attentions.0.transformer_blocks.0.attn1",
	"up_blocks.1.attentions.0.transformer_blocks.0.attn1",
	"up_blocks.1.attentions.1.transformer_blocks.0.attn1",
	"up_blocks.1.attentions.2.transformer_blocks.0.attn1",
	"up_blocks.2.attentions.0.transformer_blocks.0.attn1",
	"up_blocks.2.attentions.1.transformer_blocks.0.attn1",
	"up_blocks.2.attentions.2.transformer_blocks.0.attn1",
	"up_blocks.3.attentions.0.transformer_blocks.0.attn1",
	"up_blocks.3.attentions.1.transformer_blocks.0.attn1",
	"up_blocks.3.attentions.2.transformer_blocks.0.attn1",
}

// The SD 1.5 and SD 2.1 UNet configs (runwayml/stable-diffusion-v1-5 and
// stabilityai/stable-diffusion-2-1 unet/config.json, the keys that shape
// the layers). Test fixtures only: presets are not part of the tool.
const (
	sd15Config = `{
  "_class_name": "UNet2DConditionModel",
  "attention_head_dim": 8,
  "block_out_channels": [320, 640, 1280, 1280],
  "cross_attention_dim": 768,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  "layers_per_block": 2,
  "norm_num_groups": 32,
  "sample_size": 64
}`
	sd21Config = `{
  "_class_name": "UNet2DConditionModel",
  "attention_head_dim": [5, 10, 20, 20],
  "block_out_channels": [320, 640, 1280, 1280],
  "cross_attention_dim": 1024,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  "layers_per_block": 2,
  "norm_num_groups": 32,
  "sample_size": 96,
  "upcast_attention": true,
  "use_linear_projection": true
}`
)

// loadConfig writes a config.json into a temporary folder and loads it as
// the tool does.
func loadConfig(t *testing.T, js string) *models.UNetConfig {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := models.LoadUNetConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func tinyConfig(t *testing.T) *models.UNetConfig {
	t.Helper()
	cfg, err := models.LoadUNetConfig(filepath.Join(fixture.Model(t, "tiny-sd15"), "unet", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// layers builds the expected registry from sdPaths and per-layer columns.
func layers(grid [][2]int, channels, heads []int) []regLayer {
	out := make([]regLayer, len(sdPaths))
	for i, p := range sdPaths {
		out[i] = regLayer{Path: p, H: grid[i][0], W: grid[i][1], Channels: channels[i], Heads: heads[i]}
	}
	return out
}

func fmtLayers(ls []regLayer) string {
	var b strings.Builder
	for _, l := range ls {
		fmt.Fprintf(&b, "\t%s %dx%d C=%d heads=%d\n", l.Path, l.H, l.W, l.Channels, l.Heads)
	}
	return b.String()
}

func TestSelfAttentionLayersAtSizes(t *testing.T) {
	// Per layer, in sdPaths order. A stride-2 downsampler maps a side s to
	// ceil(s/2) (3x3 conv, padding 1); the up path resizes back to the skip
	// connection's size, so up_blocks.i matches down_blocks.(3-i).
	grid := func(g1, g2, g4, g8 [2]int) [][2]int {
		return [][2]int{g1, g1, g2, g2, g4, g4, g8, g4, g4, g4, g2, g2, g2, g1, g1, g1}
	}
	at64 := grid([2]int{64, 64}, [2]int{32, 32}, [2]int{16, 16}, [2]int{8, 8})
	at9x13 := grid([2]int{9, 13}, [2]int{5, 7}, [2]int{3, 4}, [2]int{2, 2})
	// A 96x54 latent (432x768 portrait frames): 27 -> 14 -> 7 on the odd side.
	at96x54 := grid([2]int{96, 54}, [2]int{48, 27}, [2]int{24, 14}, [2]int{12, 7})
	rep := func(v int) []int {
		out := make([]int, 16)
		for i := range out {
			out[i] = v
		}
		return out
	}
	sdChannels := []int{320, 320, 640, 640, 1280, 1280, 1280, 1280, 1280, 1280, 640, 640, 640, 320, 320, 320}
	tinyChannels := []int{16, 16, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 16, 16, 16}
	// SD 2.x: attention_head_dim is the head count per block, mirrored on
	// the way up; the mid block takes the last one.
	sd21Heads := []int{5, 5, 10, 10, 20, 20, 20, 20, 20, 20, 10, 10, 10, 5, 5, 5}

	tiny := tinyConfig(t)
	sd15 := loadConfig(t, sd15Config)
	sd21 := loadConfig(t, sd21Config)
	tests := []struct {
		name string
		cfg  *models.UNetConfig
		h, w int
		want []regLayer
	}{
		{"tiny-sd15 64x64", tiny, 64, 64, layers(at64, tinyChannels, rep(2))},
		{"tiny-sd15 9x13", tiny, 9, 13, layers(at9x13, tinyChannels, rep(2))},
		{"sd15 512x512", sd15, 64, 64, layers(at64, sdChannels, rep(8))},
		{"sd15 9x13", sd15, 9, 13, layers(at9x13, sdChannels, rep(8))},
		{"sd21 512x512", sd21, 64, 64, layers(at64, sdChannels, sd21Heads)},
		{"sd21 96x54", sd21, 96, 54, layers(at96x54, sdChannels, sd21Heads)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := registry(tt.cfg, tt.h, tt.w)
			if fmtLayers(got) != fmtLayers(tt.want) {
				t.Errorf("registry(%dx%d) mismatch (-want +got):\n-\n%s+\n%s", tt.h, tt.w, fmtLayers(tt.want), fmtLayers(got))
			}
		})
	}

	// The figures DESIGN.md relies on: 16 layers; at 512x512 (latent 64x64)
	// 4096, 1024, 256 and 64 tokens per frame.
	for _, cfg := range []*models.UNetConfig{sd15, sd21} {
		reg := registry(cfg, 64, 64)
		if len(reg) != 16 {
			t.Fatalf("%d layers, want 16", len(reg))
		}
		count := map[int]int{}
		for _, l := range reg {
			count[l.Tokens()]++
		}
		if want := map[int]int{4096: 5, 1024: 5, 256: 5, 64: 1}; fmt.Sprint(count) != fmt.Sprint(want) {
			t.Errorf("layers per token count mismatch (-want +got):\n-%v\n+%v", want, count)
		}
	}
}

// TestSelfAttentionLayersMatchesGraph checks the registry against the TokenFlow UNet
// itself: its per-layer outputs come in the registry's order, and a
// keyframe pass at an odd latent size (9x13) gives every layer the token
// count and width the registry says.
func TestSelfAttentionLayersMatchesGraph(t *testing.T) {
	u, g := testmodel.TokenFlowGraph(t, fixture.Model(t, "tiny-sd15"), models.Injection{QK: pnp.QKLayers, Conv: pnp.ConvLayers})
	const h, w = 9, 13
	reg := registry(u.Config, h, w)

	inputs, outputs := ortsession.Ports(g)
	var order []string
	for _, o := range outputs {
		if p, ok := strings.CutPrefix(o, "tokens/"); ok {
			order = append(order, p)
		}
	}
	var paths []string
	for _, l := range reg {
		paths = append(paths, l.Path)
	}
	if fmt.Sprint(order) != fmt.Sprint(paths) {
		t.Fatalf("graph layer order mismatch (-want +got):\n-%v\n+%v", paths, order)
	}

	s := ortsession.Saved(t, g, ort.SessionOptions{Inputs: inputs, Outputs: outputs, Threads: 2})

	// One keyframe: batch 3 = [source | uncond | cond].
	randn := testmodel.Randn(9, 13)
	cross := int64(u.Config.CrossDims[0])
	in := map[string]ort.Tensor{
		models.InSample:       ort.New([]int64{3, 4, h, w}, randn(3*4*h*w)),
		models.InTimestep:     ort.Scalar(int64(901)),
		models.InTextEmbeds:   ort.New([]int64{3, 77, cross}, randn(3*77*int(cross))),
		models.InAttnMode:     ort.New([]int64{1}, []int64{models.ModeKeyframe}),
		models.InQKInject:     ort.New([]int64{1}, []bool{true}),
		models.InConvInject:   ort.New([]int64{1}, []bool{true}),
		models.InPivots:       ort.New([]int64{2}, []int64{0, 0}),
		models.InPivotWeights: ort.New([]int64{0}, []float32{}),
	}
	for _, l := range reg {
		in[models.InKeyTokens(l.Path)] = ort.New([]int64{0, 1, int64(l.Channels)}, []float32{})
		in[models.InKeyAttn(l.Path)] = ort.New([]int64{0, 1, int64(l.Channels)}, []float32{})
		in[models.InAnchorKeys(l.Path)] = ort.New([]int64{0, 1, int64(l.Channels)}, []float32{})
		in[models.InAnchorValues(l.Path)] = ort.New([]int64{0, 1, int64(l.Channels)}, []float32{})
	}
	shapes := map[string][]int64{}
	for name, out := range ortsession.RunNamed(t, s, inputs, outputs, in) {
		shapes[name] = out.Shape
	}
	for _, l := range reg {
		S, C := int64(l.Tokens()), int64(l.Channels)
		for name, want := range map[string][]int64{
			models.OutTokens(l.Path): {1, S, C},
			models.OutAttn(l.Path):   {3, S, C},
		} {
			if got := shapes[name]; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s shape mismatch (-want +got):\n-%v\n+%v", name, want, got)
			}
		}
	}
}
