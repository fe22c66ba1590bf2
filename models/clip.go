package models

import (
	"math"

	"github.com/tokenflow/tokenflow/internal/onnx"
)

// CLIPTextConfig is text_encoder/config.json of a transformers
// CLIPTextModel. Missing keys take transformers' defaults.
type CLIPTextConfig struct {
	path string

	VocabSize             int     `json:"vocab_size"`
	HiddenSize            int     `json:"hidden_size"`
	IntermediateSize      int     `json:"intermediate_size"`
	NumHiddenLayers       int     `json:"num_hidden_layers"`
	NumAttentionHeads     int     `json:"num_attention_heads"`
	MaxPositionEmbeddings int     `json:"max_position_embeddings"`
	HiddenAct             string  `json:"hidden_act"`
	LayerNormEps          float64 `json:"layer_norm_eps"`
}

// LoadCLIPTextConfig reads and validates text_encoder/config.json.
func LoadCLIPTextConfig(path string) (*CLIPTextConfig, error) {
	c := CLIPTextConfig{VocabSize: 49408, HiddenSize: 512, IntermediateSize: 2048, NumHiddenLayers: 12, NumAttentionHeads: 8,
		MaxPositionEmbeddings: 77, HiddenAct: "quick_gelu", LayerNormEps: 1e-5}
	if err := readConfig(path, &c); err != nil {
		return nil, err
	}
	c.path = path
	for _, f := range []struct {
		name string
		v    int
	}{{"vocab_size", c.VocabSize}, {"hidden_size", c.HiddenSize}, {"intermediate_size", c.IntermediateSize},
		{"num_hidden_layers", c.NumHiddenLayers}, {"num_attention_heads", c.NumAttentionHeads}, {"max_position_embeddings", c.MaxPositionEmbeddings}} {
		if err := positive(path, f.name, f.v); err != nil {
			return nil, err
		}
	}
	if c.HiddenSize%c.NumAttentionHeads != 0 {
		return nil, fieldError(path, "num_attention_heads", "%d does not divide hidden_size %d", c.NumAttentionHeads, c.HiddenSize)
	}
	if c.HiddenAct != "quick_gelu" && c.HiddenAct != "gelu" {
		return nil, unsupported(path, "hidden_act", "%q (supported: quick_gelu, gelu)", c.HiddenAct)
	}
	return &c, nil
}

// CLIPText — transformers: models/clip/modeling_clip.py, CLIPTextModel:
// token and position embeddings, pre-norm causal transformer layers,
// final layer norm. SD 2.x checkpoints state one layer fewer than OpenCLIP
// has, which is how diffusers takes the penultimate layer: we build the
// layers the config states.
type CLIPText struct {
	Config  *CLIPTextConfig
	Weights *Weights
}

// Text encoder graph I/O names.
const (
	InInputIDs      = "input_ids"
	OutHiddenState  = "last_hidden_state"
	OutPoolerOutput = "pooler_output"
)

// Graph builds text_encoder: input_ids int64 [B,S] (S <= 77) ->
// last_hidden_state [B,S,C], pooler_output [B,C] (the state at each row's
// end token, the highest id, as transformers takes it).
func (m *CLIPText) Graph() (*onnx.Graph, error) {
	c := m.Config
	g := onnx.NewGraph("text_encoder")
	dt := m.Weights.Type
	s := m.Weights.Root("text_model")
	C := int64(c.HiddenSize)
	eps := float32(c.LayerNormEps)
	ids := g.Input(InInputIDs, onnx.Int64, onnx.P("batch"), onnx.P("sequence"))

	// 1. embeddings: token rows + the first S position rows
	emb := s.Sub("embeddings")
	tok := g.Gather(emb.Sub("token_embedding").Param(g, "weight", int64(c.VocabSize), C), ids, 0)
	pos := emb.Sub("position_embedding").Param(g, "weight", int64(c.MaxPositionEmbeddings), C)
	pos = g.SliceDyn(pos, g.Ints(0), g.ShapeRange(ids, 1, 2), g.Ints(0))
	h := g.Add(tok, pos)

	// 2. encoder layers
	heads := int64(c.NumAttentionHeads)
	scale := float32(1 / math.Sqrt(float64(C/heads)))
	for i := 0; i < c.NumHiddenLayers; i++ {
		l := s.Sub("encoder").Sub("layers").Index(i)
		g.Push(l.Path())
		a := l.Sub("self_attn")
		n := layerNorm(g, l.Sub("layer_norm1"), h, C, eps)
		q := linear(g, a.Sub("q_proj"), n, C, C, true)
		k := linear(g, a.Sub("k_proj"), n, C, C, true)
		v := linear(g, a.Sub("v_proj"), n, C, C, true)
		att := fromF32(g, a, g.Node(onnx.DomainMS, "MultiHeadAttention", 1, []onnx.Value{toF32(g, a, q), toF32(g, a, k), toF32(g, a, v)},
			onnx.AInt("num_heads", heads), onnx.AFloat("scale", scale), onnx.AInt("unidirectional", 1))[0])
		h = g.Add(h, linear(g, a.Sub("out_proj"), att, C, C, true))
		n = layerNorm(g, l.Sub("layer_norm2"), h, C, eps)
		f := linear(g, l.Sub("mlp").Sub("fc1"), n, C, int64(c.IntermediateSize), true)
		if c.HiddenAct == "gelu" {
			f = gelu(g, l, f)
		} else {
			f = quickGELU(g, l, f)
		}
		h = g.Add(h, linear(g, l.Sub("mlp").Sub("fc2"), f, int64(c.IntermediateSize), C, true))
		g.Pop()
	}
	h = layerNorm(g, s.Sub("final_layer_norm"), h, C, eps)
	h = fromDT(g, h, dt)

	// 3. pooler: h[b, argmax(ids[b])]
	// idx [B] -> [B,1,1] -> [B,1,C]; GatherElements on the sequence axis
	idx := g.Unsqueeze(g.ArgMax(ids, 1, false), 1, 2)
	idx = g.Expand(idx, g.Concat(0, g.ShapeRange(ids, 0, 1), g.Ints(1, C)))
	pooled := g.Squeeze(g.GatherElements(h, idx, 1), 1)

	g.Output(OutHiddenState, h, onnx.Float, onnx.P("batch"), onnx.P("sequence"), onnx.D(C))
	g.Output(OutPoolerOutput, pooled, onnx.Float, onnx.P("batch"), onnx.D(C))
	return finish(g, m.Weights)
}

// TextEncoder loads the CLIP text model's config and weights.
func (c *Checkpoint) TextEncoder(t onnx.DataType) (*CLIPText, error) {
	cfg, w, err := component(c, "text_encoder", t, LoadCLIPTextConfig)
	if err != nil {
		return nil, err
	}
	return &CLIPText{Config: cfg, Weights: w}, nil
}
