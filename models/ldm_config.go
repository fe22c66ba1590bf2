package models

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tokenflow/tokenflow/internal/param"
	"github.com/tokenflow/tokenflow/internal/safetensors"
)

// ErrArchitecture marks a single file whose architecture cannot be told
// from its tensors; the message names what is missing.
var ErrArchitecture = errors.New("cannot determine the architecture")

// Component prefixes of an original (LDM) single-file checkpoint.
const (
	ldmUNet     = "model.diffusion_model"
	ldmVAE      = "first_stage_model"
	ldmCLIP     = "cond_stage_model.transformer" // SD 1.x: transformers CLIPTextModel
	ldmOpenCLIP = "cond_stage_model.model"       // SD 2.x: OpenCLIP text tower
	ldmEMA      = "model_ema"
	sdxlPrefix  = "conditioner.embedders"
)

// ldmArch is a single file's architecture in the terms of the original
// inference YAML (v1-inference.yaml / v2-inference.yaml).
type ldmArch struct {
	SD2 bool // OpenCLIP text encoder (SD 2.x), else CLIP (SD 1.x)

	// unet_config.params
	InChannels, OutChannels, ModelChannels int
	ChannelMult                            []int
	NumResBlocks                           int
	AttnLevels                             []bool // level i (downsampling 2^i) has transformers
	NumHeads                               int    // set for SD 1.x (8), or
	NumHeadChannels                        int    // set for SD 2.x (64)
	UseLinear                              bool
	ContextDim                             int
	ImageSize                              int // latent sample size (64: 512 pixels)

	// first_stage_config.params (ddconfig)
	VAECh, VAEResBlocks, ZChannels, EmbedDim, ImgIn, ImgOut, Resolution int
	VAEMult                                                             []int
	ScaleFactor                                                         float64

	// the text encoder, from its tensors (heads of 64)
	TextVocab, TextHidden, TextLayers, TextFFN, TextPositions int

	// model.params: the DDPM schedule
	LinearStart, LinearEnd float64
	Timesteps              int
	VPrediction            bool
}

// headWidth is the text encoders' head width (CLIP ViT-L/14, OpenCLIP
// ViT-H/14), and SD 2.x's UNet's.
const headWidth = 64

// sdHeads is SD 1.x's UNet head count.
const sdHeads = 8

// tensorView is a single file's tensor shapes by name.
type tensorView struct {
	path  string
	infos map[string]safetensors.TensorInfo
}

func (v tensorView) shape(name string) ([]int64, bool) {
	t, ok := v.infos[name]
	return t.Shape, ok
}

// dim is axis i of a tensor's shape; ok false when the tensor is missing or
// has fewer axes.
func (v tensorView) dim(name string, i int) (int, bool) {
	s, ok := v.shape(name)
	if !ok || len(s) <= i {
		return 0, false
	}
	return int(s[i]), true
}

func (v tensorView) has(name string) bool { _, ok := v.infos[name]; return ok }

// count is how many consecutive indices i from 0 have a tensor named
// prefix.i.<suffix>.
func (v tensorView) count(prefix, suffix string) int {
	n := 0
	for v.has(prefix + "." + strconv.Itoa(n) + "." + suffix) {
		n++
	}
	return n
}

// anyUnder reports whether some tensor lies under prefix.
func (v tensorView) anyUnder(prefix string) bool {
	for n := range v.infos {
		if strings.HasPrefix(n, prefix+".") {
			return true
		}
	}
	return false
}

func (v tensorView) missing(what, tensor string) error {
	return fmt.Errorf("%w: %s: no %s (tensor %s): not a complete SD 1.x/2.x single-file checkpoint", ErrArchitecture, v.path, what, tensor)
}

// detectArch reads the architecture from the tensors: SD 1.x or 2.x from
// the text encoder's layout, channel counts and block counts from the
// weights, SD 1.x's 8 heads or SD 2.x's heads of 64 channels.
func detectArch(v tensorView) (*ldmArch, error) {
	a := &ldmArch{LinearStart: 0.00085, LinearEnd: 0.012, Timesteps: 1000, ScaleFactor: 0.18215, ImageSize: 64, Resolution: 256}
	if v.anyUnder(sdxlPrefix) || v.has(ldmUNet+".label_emb.0.0.weight") {
		return nil, fmt.Errorf("%w: %s is an SDXL checkpoint (it has %s.* text encoders / a label embedding); only SD 1.x and 2.x are supported", ErrUnsupported, v.path, sdxlPrefix)
	}
	if !v.anyUnder(ldmUNet) && !v.anyUnder(ldmVAE) && !v.anyUnder("cond_stage_model") {
		return nil, fmt.Errorf("%s: not a Stable Diffusion checkpoint: no tensor under %s., %s. or cond_stage_model. (a diffusers component file? pass its folder)", v.path, ldmUNet, ldmVAE)
	}
	// The UNet first: an inpainting or image-conditioned file is named as
	// such whatever else it lacks.
	if err := detectUNet(v, a); err != nil {
		return nil, err
	}
	switch {
	case v.anyUnder(ldmOpenCLIP):
		a.SD2, a.NumHeadChannels = true, headWidth
	case v.anyUnder(ldmCLIP):
		a.NumHeads = sdHeads
	default:
		return nil, v.missing("text encoder", ldmCLIP+".* (SD 1.x) or "+ldmOpenCLIP+".* (SD 2.x)")
	}
	if err := detectVAE(v, a); err != nil {
		return nil, err
	}
	if err := detectText(v, a); err != nil {
		return nil, err
	}
	return a, nil
}

func detectUNet(v tensorView, a *ldmArch) error {
	u := func(s string) string { return ldmUNet + "." + s }
	convIn := u("input_blocks.0.0.weight")
	s, ok := v.shape(convIn)
	if !ok || len(s) != 4 {
		return v.missing("UNet input convolution", convIn)
	}
	a.ModelChannels, a.InChannels = int(s[0]), int(s[1])
	switch a.InChannels {
	case 4:
	case 9:
		return fmt.Errorf("%w: %s is an inpainting checkpoint (%s has 9 input channels: latent, mask and masked image); only text-to-image UNets with 4 are supported", ErrUnsupported, v.path, convIn)
	case 8:
		return fmt.Errorf("%w: %s is an image-conditioned checkpoint (%s has 8 input channels, as InstructPix2Pix); only text-to-image UNets with 4 are supported", ErrUnsupported, v.path, convIn)
	default:
		return fmt.Errorf("%w: %s: %s has %d input channels; only text-to-image UNets with 4 are supported", ErrUnsupported, v.path, convIn, a.InChannels)
	}
	if a.OutChannels, ok = v.dim(u("out.2.weight"), 0); !ok {
		return v.missing("UNet output convolution", u("out.2.weight"))
	}
	blocks := 0
	for v.anyUnder(u("input_blocks." + strconv.Itoa(blocks))) {
		blocks++
	}
	downs := 0
	for i := 0; i < blocks; i++ {
		if v.has(u("input_blocks." + strconv.Itoa(i) + ".0.op.weight")) {
			downs++
		}
	}
	levels := downs + 1
	if blocks%levels != 0 || blocks/levels < 2 {
		return param.Errorf("model", v.path, "%w: %d UNet input blocks do not make %d levels of resnets and a downsampler; pass {original_config}", ErrArchitecture, blocks, levels)
	}
	a.NumResBlocks = blocks/levels - 1
	a.ChannelMult = make([]int, levels)
	a.AttnLevels = make([]bool, levels)
	for b := 0; b < levels; b++ {
		i := 1 + b*(a.NumResBlocks+1)
		conv1 := u(idx("input_blocks", i) + ".0.in_layers.2.weight")
		ch, ok := v.dim(conv1, 0)
		if !ok {
			return v.missing(fmt.Sprintf("resnet of UNet level %d", b), conv1)
		}
		if ch%a.ModelChannels != 0 {
			return fmt.Errorf("%w: %s: level %d has %d channels, not a multiple of the first's %d", ErrArchitecture, v.path, b, ch, a.ModelChannels)
		}
		a.ChannelMult[b] = ch / a.ModelChannels
		at := u(idx("input_blocks", i, 1))
		if !v.has(at + ".proj_in.weight") {
			continue
		}
		a.AttnLevels[b] = true
		pin, _ := v.shape(at + ".proj_in.weight")
		a.UseLinear = len(pin) == 2
		if v.anyUnder(at + ".transformer_blocks.1") {
			return fmt.Errorf("%w: %s: %s has more than one transformer block (transformer_depth > 1, as SDXL); only 1 is implemented", ErrUnsupported, v.path, at)
		}
		if a.ContextDim, ok = v.dim(at+".transformer_blocks.0.attn2.to_k.weight", 1); !ok {
			return v.missing("cross-attention key projection", at+".transformer_blocks.0.attn2.to_k.weight")
		}
	}
	if a.ContextDim == 0 {
		return v.missing("transformer in any UNet level", u("input_blocks.1.1.proj_in.weight"))
	}
	return nil
}

func detectVAE(v tensorView, a *ldmArch) error {
	e := func(s string) string { return ldmVAE + "." + s }
	s, ok := v.shape(e("encoder.conv_in.weight"))
	if !ok || len(s) != 4 {
		return v.missing("VAE encoder input convolution", e("encoder.conv_in.weight"))
	}
	a.VAECh, a.ImgIn = int(s[0]), int(s[1])
	levels := v.count(e("encoder.down"), "block.0.conv1.weight")
	a.VAEResBlocks = v.count(e("encoder.down.0.block"), "conv1.weight")
	if levels == 0 || a.VAEResBlocks == 0 {
		return v.missing("VAE encoder blocks", e("encoder.down.0.block.0.conv1.weight"))
	}
	a.VAEMult = make([]int, levels)
	for i := range a.VAEMult {
		ch, _ := v.dim(e(idx("encoder.down", i)+".block.0.conv1.weight"), 0)
		if ch%a.VAECh != 0 {
			return fmt.Errorf("%w: %s: VAE level %d has %d channels, not a multiple of the first's %d", ErrArchitecture, v.path, i, ch, a.VAECh)
		}
		a.VAEMult[i] = ch / a.VAECh
		if v.anyUnder(e(idx("encoder.down", i) + ".attn")) {
			return fmt.Errorf("%w: %s: VAE level %d has attention (attn_resolutions not empty); only SD's VAE is implemented", ErrUnsupported, v.path, i)
		}
	}
	z, ok := v.dim(e("encoder.conv_out.weight"), 0)
	if !ok {
		return v.missing("VAE encoder output convolution", e("encoder.conv_out.weight"))
	}
	a.ZChannels = z / 2 // double_z: mean and log-variance
	emb, ok := v.dim(e("quant_conv.weight"), 0)
	if !ok {
		return v.missing("VAE quant_conv", e("quant_conv.weight"))
	}
	a.EmbedDim = emb / 2
	if a.ImgOut, ok = v.dim(e("decoder.conv_out.weight"), 0); !ok {
		return v.missing("VAE decoder output convolution", e("decoder.conv_out.weight"))
	}
	return nil
}

func detectText(v tensorView, a *ldmArch) error {
	var tok, pos, fc1 string
	if a.SD2 {
		m := func(s string) string { return ldmOpenCLIP + "." + s }
		tok, pos, fc1 = m("token_embedding.weight"), m("positional_embedding"), m("transformer.resblocks.0.mlp.c_fc.weight")
		blocks := v.count(m("transformer.resblocks"), "ln_1.weight")
		if blocks < 2 {
			return v.missing("OpenCLIP text blocks (SD 2.x uses all but the last)", m("transformer.resblocks.1.ln_1.weight"))
		}
		a.TextLayers = blocks - 1 // the penultimate layer rule
	} else {
		m := ldmCLIP + ".text_model"
		if !v.anyUnder(m) {
			m = ldmCLIP
		}
		tok, pos, fc1 = m+".embeddings.token_embedding.weight", m+".embeddings.position_embedding.weight", m+".encoder.layers.0.mlp.fc1.weight"
		a.TextLayers = v.count(m+".encoder.layers", "layer_norm1.weight")
	}
	var ok bool
	if a.TextVocab, ok = v.dim(tok, 0); !ok {
		return v.missing("text token embedding", tok)
	}
	if a.TextHidden, ok = v.dim(tok, 1); !ok || a.TextHidden == 0 {
		return v.missing("text token embedding's width", tok)
	}
	if a.TextPositions, ok = v.dim(pos, 0); !ok {
		return v.missing("text position embedding", pos)
	}
	if a.TextFFN, ok = v.dim(fc1, 0); !ok {
		return v.missing("text MLP", fc1)
	}
	if a.TextLayers == 0 {
		return v.missing("text encoder layers", fc1)
	}
	if a.TextHidden%headWidth != 0 {
		return fmt.Errorf("%w: %s: the text encoder is %d wide, not a multiple of the standard head width %d", ErrArchitecture, v.path, a.TextHidden, headWidth)
	}
	return nil
}

// yamlDoc is a parsed original inference YAML.
type yamlDoc struct {
	path string
	root map[string]any
}

func readYAML(path string) (*yamlDoc, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is the value
		}
		return nil, param.Errorf("original_config", path, "%w", err)
	}
	var root map[string]any
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, param.Errorf("original_config", path, "not valid YAML: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	if _, ok := root["model"].(map[string]any); !ok {
		return nil, param.Errorf("original_config", path, "no model: section; want an original inference YAML such as v1-inference.yaml")
	}
	return &yamlDoc{path: path, root: root}, nil
}

// get is the value at a dotted key path.
func (d *yamlDoc) get(key string) (any, bool) {
	var cur any = d.root
	for _, k := range strings.Split(key, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func (d *yamlDoc) bad(key, format string, a ...any) error {
	return param.Errorf("original_config", filepath.Base(d.path), "%s: %s", key, fmt.Sprintf(format, a...))
}

// yamlValue reads key through conv, which says whether the value is of the
// wanted kind; ok is false when the key is absent.
func yamlValue[T any](d *yamlDoc, key, want string, conv func(any) (T, bool)) (T, bool, error) {
	var zero T
	v, ok := d.get(key)
	if !ok || v == nil {
		return zero, false, nil
	}
	t, ok := conv(v)
	if !ok {
		return zero, false, d.bad(key, "want %s, have %v", want, v)
	}
	return t, true, nil
}

// integer reads an int key; ok is false when it is absent.
func (d *yamlDoc) integer(key string) (int, bool, error) {
	return yamlValue(d, key, "an integer", func(v any) (int, bool) {
		switch n := v.(type) {
		case int:
			return n, true
		case float64:
			return int(n), n == float64(int(n))
		}
		return 0, false
	})
}

func (d *yamlDoc) number(key string) (float64, bool, error) {
	return yamlValue(d, key, "a number", func(v any) (float64, bool) {
		switch n := v.(type) {
		case int:
			return float64(n), true
		case float64:
			return n, true
		case string: // yaml.v3 reads 1.0e-04 style numbers as floats, "1e-4" as a string
			f, err := strconv.ParseFloat(n, 64)
			return f, err == nil
		}
		return 0, false
	})
}

func (d *yamlDoc) ints(key string) ([]int, bool, error) {
	return yamlValue(d, key, "a list of integers", func(v any) ([]int, bool) {
		l, ok := v.([]any)
		out := make([]int, len(l))
		for i, e := range l {
			if out[i], ok = e.(int); !ok {
				break
			}
		}
		return out, ok
	})
}

func (d *yamlDoc) boolean(key string) (bool, bool, error) {
	return yamlValue(d, key, "true or false", func(v any) (bool, bool) {
		b, ok := v.(bool)
		return b, ok
	})
}

func (d *yamlDoc) str(key string) string {
	v, _ := d.get(key)
	s, _ := v.(string)
	return s
}

// Key paths of v1-inference.yaml / v2-inference.yaml.
const (
	yParams = "model.params"
	yUNet   = "model.params.unet_config.params"
	yVAE    = "model.params.first_stage_config.params"
	yDD     = "model.params.first_stage_config.params.ddconfig"
	yCond   = "model.params.cond_stage_config.target"
)

// applyYAML takes the YAML's settings over the detected ones: what the
// tensors cannot tell (heads, the schedule, v-prediction, the VAE scale) is
// read; what they can is checked, and a disagreement is one line naming the
// key and both values.
func applyYAML(a *ldmArch, d *yamlDoc, file string) error {
	if t := d.str(yCond); t != "" {
		yamlSD2 := strings.Contains(t, "OpenCLIP")
		if yamlSD2 != a.SD2 {
			tv := "a CLIP text encoder (" + ldmCLIP + ".*, SD 1.x)"
			if a.SD2 {
				tv = "an OpenCLIP text encoder (" + ldmOpenCLIP + ".*, SD 2.x)"
			}
			return d.disagree(file, yCond, t, tv)
		}
	}
	// attention_resolutions lists the downsampling rates with transformers.
	var attnRes []int
	for i, on := range a.AttnLevels {
		if on {
			attnRes = append(attnRes, 1<<i)
		}
	}
	for _, c := range []struct {
		key  string
		have int
	}{
		{yUNet + ".in_channels", a.InChannels}, {yUNet + ".out_channels", a.OutChannels},
		{yUNet + ".model_channels", a.ModelChannels}, {yUNet + ".num_res_blocks", a.NumResBlocks},
		{yUNet + ".context_dim", a.ContextDim}, {yVAE + ".embed_dim", a.EmbedDim},
		{yDD + ".ch", a.VAECh}, {yDD + ".num_res_blocks", a.VAEResBlocks}, {yDD + ".z_channels", a.ZChannels},
		{yDD + ".in_channels", a.ImgIn}, {yDD + ".out_ch", a.ImgOut},
	} {
		if err := agree(d, file, c.key, c.have, d.integer, func(a, b int) bool { return a == b }); err != nil {
			return err
		}
	}
	for _, c := range []struct {
		key  string
		have []int
		same func(a, b []int) bool
	}{
		{yUNet + ".channel_mult", a.ChannelMult, slices.Equal[[]int]}, {yDD + ".ch_mult", a.VAEMult, slices.Equal[[]int]},
		{yUNet + ".attention_resolutions", attnRes, sameSet},
	} {
		if err := agree(d, file, c.key, c.have, d.ints, c.same); err != nil {
			return err
		}
	}
	if v, ok, err := d.ints(yDD + ".attn_resolutions"); err != nil {
		return err
	} else if ok && len(v) > 0 {
		return param.Errorf("original_config", filepath.Base(d.path), "%w: %s: %v (attention in the VAE's levels is not implemented)", ErrUnsupported, yDD+".attn_resolutions", v)
	}
	if v, ok, err := d.boolean(yUNet + ".use_linear_in_transformer"); err != nil {
		return err
	} else if ok && v != a.UseLinear {
		return d.disagree(file, yUNet+".use_linear_in_transformer", v, a.UseLinear)
	} else if !ok && a.UseLinear {
		return d.disagree(file, yUNet+".use_linear_in_transformer", "absent (false)", true)
	}
	if v, ok, err := d.integer(yUNet + ".transformer_depth"); err != nil {
		return err
	} else if ok && v != 1 {
		return param.Errorf("original_config", filepath.Base(d.path), "%w: %s: %d (only 1 is implemented)", ErrUnsupported, yUNet+".transformer_depth", v)
	}
	// Heads: num_heads (SD 1.x), else num_head_channels (SD 2.x); -1 is unset.
	heads, hok, err := d.integer(yUNet + ".num_heads")
	if err != nil {
		return err
	}
	width, wok, err := d.integer(yUNet + ".num_head_channels")
	if err != nil {
		return err
	}
	switch {
	case hok && heads > 0:
		a.NumHeads, a.NumHeadChannels = heads, 0
	case wok && width > 0:
		a.NumHeads, a.NumHeadChannels = 0, width
	}
	if v, ok, err := d.integer(yDD + ".resolution"); err != nil {
		return err
	} else if ok && v > 0 {
		a.Resolution = v
	}
	for _, f := range []struct {
		key string
		dst *float64
	}{{yParams + ".linear_start", &a.LinearStart}, {yParams + ".linear_end", &a.LinearEnd}, {yParams + ".scale_factor", &a.ScaleFactor}} {
		v, ok, err := d.number(f.key)
		if err != nil {
			return err
		}
		if ok {
			*f.dst = v
		}
	}
	if v, ok, err := d.integer(yParams + ".timesteps"); err != nil {
		return err
	} else if ok {
		a.Timesteps = v
	}
	switch p := d.str(yParams + ".parameterization"); p {
	case "", "eps":
	case "v":
		// SD 2.x v-prediction models are 768-pixel models (diffusers'
		// conversion gives them sample_size 96; unet_config's own
		// image_size is marked unused in the YAMLs).
		a.VPrediction, a.ImageSize = true, 96
	default:
		return param.Errorf("original_config", filepath.Base(d.path), "%w: %s: %q (supported: eps, v)", ErrUnsupported, yParams+".parameterization", p)
	}
	return nil
}

// agree checks key, when the YAML sets it, against have, what the tensors
// say.
func agree[T any](d *yamlDoc, file, key string, have T, read func(string) (T, bool, error), same func(a, b T) bool) error {
	v, ok, err := read(key)
	if err != nil || !ok || same(v, have) {
		return err
	}
	return d.disagree(file, key, v, have)
}

// disagree is one line naming the key and both values.
func (d *yamlDoc) disagree(file, key string, yv, tv any) error {
	return param.Errorf("original_config", filepath.Base(d.path), "%s is %v, but %s's tensors say %v", key, yv, filepath.Base(file), tv)
}

func sameSet(a, b []int) bool {
	set := func(s []int) []int { return slices.Compact(slices.Sorted(slices.Values(s))) }
	return slices.Equal(set(a), set(b))
}

// blockHeads is the UNet's head count per level; an error when the head
// width does not divide a level's channels.
func (a *ldmArch) blockHeads(file string) ([]int, error) {
	out := make([]int, len(a.ChannelMult))
	for i, m := range a.ChannelMult {
		ch := a.ModelChannels * m
		if a.NumHeads > 0 {
			if ch%a.NumHeads != 0 {
				return nil, param.Errorf("model", file, "%w: %d heads do not divide UNet level %d's %d channels; pass {original_config} with num_heads", ErrArchitecture, a.NumHeads, i, ch)
			}
			out[i] = a.NumHeads
			continue
		}
		if ch%a.NumHeadChannels != 0 {
			return nil, param.Errorf("model", file, "%w: cannot tell the UNet's heads: heads of %d channels do not divide level %d's %d channels; pass {original_config} with num_head_channels", ErrArchitecture, a.NumHeadChannels, i, ch)
		}
		out[i] = ch / a.NumHeadChannels
	}
	return out, nil
}

// diffusersConfigs writes the architecture as the diffusers folder's
// config files: unet/config.json, vae/config.json,
// text_encoder/config.json, scheduler/scheduler_config.json, keyed by
// their path in the folder.
func (a *ldmArch) diffusersConfigs(file string) (map[string]any, error) {
	heads, err := a.blockHeads(file)
	if err != nil {
		return nil, err
	}
	var blockOut, vaeOut []int
	var down, up []string // up blocks from the lowest level
	for i, m := range a.ChannelMult {
		blockOut = append(blockOut, a.ModelChannels*m)
		kind := ""
		if a.AttnLevels[i] {
			kind = "CrossAttn"
		}
		down, up = append(down, kind+"DownBlock2D"), slices.Insert(up, 0, kind+"UpBlock2D")
	}
	// diffusers (<= 0.20) reads attention_head_dim as the head count: SD 1.x
	// gives one number, SD 2.x a list per block.
	var headDim any = heads
	if a.NumHeads > 0 {
		headDim = a.NumHeads
	}
	for _, m := range a.VAEMult {
		vaeOut = append(vaeOut, a.VAECh*m)
	}
	act, proj := "quick_gelu", 768
	if a.SD2 {
		act, proj = "gelu", 512
	}
	pred := "epsilon"
	if a.VPrediction {
		pred = "v_prediction"
	}
	return map[string]any{
		"unet/config.json": map[string]any{
			"_class_name": "UNet2DConditionModel", "sample_size": a.ImageSize,
			"in_channels": a.InChannels, "out_channels": a.OutChannels,
			"down_block_types": down, "up_block_types": up, "block_out_channels": blockOut,
			"layers_per_block": a.NumResBlocks, "cross_attention_dim": a.ContextDim,
			"attention_head_dim": headDim, "use_linear_projection": a.UseLinear,
		},
		"vae/config.json": map[string]any{
			"_class_name": "AutoencoderKL", "in_channels": a.ImgIn, "out_channels": a.ImgOut,
			"down_block_types": slices.Repeat([]string{"DownEncoderBlock2D"}, len(vaeOut)), "up_block_types": slices.Repeat([]string{"UpDecoderBlock2D"}, len(vaeOut)),
			"block_out_channels": vaeOut, "layers_per_block": a.VAEResBlocks, "latent_channels": a.ZChannels, "norm_num_groups": 32,
			"sample_size": a.Resolution, "scaling_factor": a.ScaleFactor,
		},
		"text_encoder/config.json": map[string]any{
			"architectures": []string{"CLIPTextModel"}, "vocab_size": a.TextVocab, "hidden_size": a.TextHidden,
			"intermediate_size": a.TextFFN, "num_hidden_layers": a.TextLayers, "num_attention_heads": a.TextHidden / headWidth,
			"max_position_embeddings": a.TextPositions, "hidden_act": act, "layer_norm_eps": 1e-5, "projection_dim": proj,
		},
		"scheduler/scheduler_config.json": map[string]any{
			"_class_name": "DDIMScheduler", "beta_start": a.LinearStart, "beta_end": a.LinearEnd,
			"beta_schedule": "scaled_linear", "num_train_timesteps": a.Timesteps, "prediction_type": pred,
			"clip_sample": false, "set_alpha_to_one": false, "steps_offset": 1, "trained_betas": nil,
		},
	}, nil
}
