// Package tokens describes TokenFlow's tokens: the UNet's self-attention
// layers with their token shapes, the pivot cache a keyframe pass fills,
// and a host reference nearest-neighbour search for tests.
package tokens

import "github.com/tokenflow/tokenflow/models"

// Layer is a self-attention layer at a given latent size: its tokens per
// frame are an H x W grid of Channels-wide vectors.
type Layer struct {
	Path     string
	H, W     int
	Channels int
	Heads    int
}

// Tokens is the number of tokens per frame (H*W).
func (l Layer) Tokens() int { return l.H * l.W }

// Registry lists the UNet's self-attention layers, in graph order, with
// their token grids for a latent of h x w.
func Registry(cfg *models.UNetConfig, h, w int) []Layer {
	var out []Layer
	for _, l := range cfg.SelfAttentionLayers() {
		th, tw := l.Tokens(h, w)
		out = append(out, Layer{Path: l.Path, H: th, W: tw, Channels: int(l.Channels), Heads: int(l.Heads)})
	}
	return out
}

// Tensor is a float32 host tensor.
type Tensor struct {
	Shape []int64
	Data  []float32
}

// PivotCache is what a keyframe pass leaves for the propagation passes of
// the same timestep: per layer, the source-branch tokens of the K keyframes
// [K,S,C] and the attention outputs of all three branches [3K,S,C].
type PivotCache struct {
	Keyframes []int // frame index of each keyframe slot
	Tokens    map[string]Tensor
	Attn      map[string]Tensor
}

// Bytes is the cache's size in memory.
func (c *PivotCache) Bytes() int64 {
	var n int64
	for _, t := range c.Tokens {
		n += int64(len(t.Data)) * 4
	}
	for _, t := range c.Attn {
		n += int64(len(t.Data)) * 4
	}
	return n
}
