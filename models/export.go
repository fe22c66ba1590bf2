package models

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
	"github.com/tokenflow/tokenflow/internal/onnx"
)

// Family names the Stable Diffusion generation a checkpoint belongs to.
func (c *UNetConfig) Family() string {
	// SD 2.x fixes the head width at 64 (attention_head_dim is a per-block
	// head count list) and uses linear projections; SD 1.x fixes 8 heads.
	if c.UseLinearProjection || c.AttentionHeadDim.List != nil {
		return "SD 2.x"
	}
	return "SD 1.x"
}

// Tokens is the layer's token grid for a latent of h x w: each downsampler
// halves a side, rounding up (stride-2 conv with padding 1).
func (l Layer) Tokens(h, w int) (int, int) {
	for d := 1; d < l.Down; d *= 2 {
		h, w = (h+1)/2, (w+1)/2
	}
	return h, w
}

// ExportOptions configure Export.
type ExportOptions struct {
	Type     onnx.DataType // onnx.Float or onnx.Float16
	Producer string        // tool name and version, written into the models
	Version  string
	// Log receives one line per written graph (may be nil).
	Log io.Writer
}

// exported lists the graphs Export writes: folder, builder.
type graphBuild struct {
	dir   string
	build func() (*onnx.Graph, error)
}

// Export writes the checkpoint's graphs into out: text_encoder/model.onnx,
// vae_encoder/model.onnx, vae_decoder/model.onnx, unet/model.onnx, each
// with its weights beside it (linked or copied from the checkpoint in
// fp32, converted in fp16; see dataFile), plus the tokenizer and
// scheduler files and a model_index.json, so that diffusers'
// OnnxStableDiffusionPipeline (and tools following its layout) load the
// folder as it is: see forPipeline and pipelineIndex.
func Export(c *Checkpoint, out string, o ExportOptions) error {
	if o.Type != onnx.Float && o.Type != onnx.Float16 {
		return fmt.Errorf("export: unsupported dtype %s", o.Type)
	}
	u, err := c.UNet(o.Type)
	if err != nil {
		return err
	}
	defer u.Weights.Close()
	v, err := c.VAE(o.Type)
	if err != nil {
		return err
	}
	defer v.Weights.Close()
	te, err := c.TextEncoder(o.Type)
	if err != nil {
		return err
	}
	defer te.Weights.Close()
	builds := []graphBuild{
		{"text_encoder", te.Graph},
		{"vae_encoder", v.EncoderGraph},
		{"vae_decoder", v.DecoderGraph},
		{"unet", func() (*onnx.Graph, error) { return u.Graph(UNetGraphOptions{}) }},
	}
	for _, b := range builds {
		g, err := b.build()
		if err != nil {
			return err
		}
		if err := forPipeline(b.dir, g.Proto()); err != nil {
			return fmt.Errorf("export %s: %w", b.dir, err)
		}
		m, err := g.Model(o.Producer, o.Version)
		if err != nil {
			return err
		}
		dir := filepath.Join(out, b.dir)
		const inlineLimit = 1024
		data, err := dataFile(m.Graph, inlineLimit)
		if err != nil {
			return fmt.Errorf("export %s: %w", b.dir, err)
		}
		if err := onnx.Save(m, dir, "model.onnx", onnx.SaveOptions{DataFile: data, InlineLimit: inlineLimit}); err != nil {
			return fmt.Errorf("export %s: %w", b.dir, err)
		}
		if o.Log != nil {
			fmt.Fprintf(o.Log, "wrote %s\n", filepath.Join(dir, "model.onnx"))
		}
	}
	for _, sub := range []string{"tokenizer", "scheduler"} {
		if err := atomicfile.CopyDir(c.Path(sub), filepath.Join(out, sub)); err != nil {
			return fmt.Errorf("export %s: %w", sub, err)
		}
	}
	index, err := pipelineIndex(c)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := writeFile(filepath.Join(out, "model_index.json"), index); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// The exported folder is the one diffusers' OnnxStableDiffusionPipeline
// loads (src/diffusers/pipelines/stable_diffusion/pipeline_onnx_stable_diffusion.py;
// the layout scripts/convert_stable_diffusion_checkpoint_to_onnx.py writes):
// one folder per component with model.onnx (OnnxRuntimeModel.from_pretrained
// opens <folder>/model.onnx, onnx_utils.py), and the names the pipeline
// feeds and reads: text_encoder input_ids -> last_hidden_state first;
// unet sample, timestep, encoder_hidden_states -> out_sample;
// vae_encoder sample -> latent_sample; vae_decoder latent_sample -> sample.
// tokenflow's graphs already carry those names; forPipeline changes, in
// the exported copy only, the two declared input types that differ.

// forPipeline adapts the declared inputs of the graph exported into folder
// dir to what the pipeline feeds. Only the export's proto changes: the
// graphs tokenflow runs are built anew for each session.
//
//   - text_encoder: the pipeline feeds input_ids as int32
//     (`text_input_ids.astype(np.int32)`), so input_ids is declared int32
//     and cast to int64 in the graph (exact).
//   - unet: the pipeline feeds `np.array([t], dtype=timestep_dtype)`, the
//     dtype read from the declared type of timestep (float when
//     undeclared); LMS and Euler schedulers give fractional timesteps. So
//     timestep is declared float32 of shape [n], as the conversion script
//     declares it; the graph already casts the timestep to float32 first
//     thing, so an integer timestep gives the same numbers as tokenflow's
//     int64 one.
func forPipeline(dir string, p *onnx.GraphProto) error {
	switch dir {
	case "text_encoder":
		return castInput(p, InInputIDs, onnx.Int32)
	case "unet":
		return floatTimestep(p)
	}
	return nil
}

// castInput declares graph input name as type t and casts it, in a node put
// first, to the type the graph was built for, under a new name.
func castInput(p *onnx.GraphProto, name string, t onnx.DataType) error {
	i := slices.IndexFunc(p.Inputs, func(v onnx.ValueInfo) bool { return v.Name == name })
	if i < 0 {
		return fmt.Errorf("graph has no input %s", name)
	}
	orig := p.Inputs[i].Type
	inner := name + "/" + orig.String()
	if graphUses(p, inner) {
		return fmt.Errorf("graph already has a tensor %s", inner)
	}
	renameInputs(p, name, inner)
	cast := &onnx.Node{Name: "export/Cast_" + name, OpType: "Cast", Inputs: []string{name}, Outputs: []string{inner},
		Attrs: []onnx.Attr{onnx.AInt("to", int64(orig))}}
	p.Nodes = append([]*onnx.Node{cast}, p.Nodes...)
	p.Inputs[i].Type = t
	return nil
}

// floatTimestep declares the UNet's timestep float32 [n]. It checks that
// the graph only reshapes it and casts it to float32, so that the change
// is exact for the integer timesteps tokenflow feeds.
func floatTimestep(p *onnx.GraphProto) error {
	i := slices.IndexFunc(p.Inputs, func(v onnx.ValueInfo) bool { return v.Name == InTimestep })
	if i < 0 {
		return fmt.Errorf("graph has no input %s", InTimestep)
	}
	users := consumers(p, InTimestep)
	for _, n := range users {
		if n.OpType != "Reshape" || n.Inputs[0] != InTimestep {
			return fmt.Errorf("%s feeds a %s node; want only Reshape then Cast to float", InTimestep, n.OpType)
		}
		for _, c := range consumers(p, n.Outputs[0]) {
			to := slices.IndexFunc(c.Attrs, func(a onnx.Attr) bool { return a.Name == "to" })
			if c.OpType != "Cast" || to < 0 || c.Attrs[to].I != int64(onnx.Float) {
				return fmt.Errorf("the reshaped %s feeds a %s node; want only a Cast to float", InTimestep, c.OpType)
			}
		}
	}
	if len(users) == 0 {
		return fmt.Errorf("%s is not used", InTimestep)
	}
	p.Inputs[i].Type = onnx.Float
	p.Inputs[i].Dims = []onnx.Dim{onnx.P("timestep_batch")}
	return nil
}

// pipelineDataFile is the name of a component's external data in the
// diffusers ONNX layout: ONNX_EXTERNAL_WEIGHTS_NAME of diffusers'
// utils/constants.py, the one file OnnxRuntimeModel._save_pretrained
// (onnx_utils.py) copies along with model.onnx.
const pipelineDataFile = "weights.pb"

// dataFile puts p's weights into one file named as the diffusers layout
// names it, and returns the name for Save's DataFile. In fp32 the weights
// are one safetensors file of the checkpoint (in the Hugging Face cache a
// blob named by its hash), linked under the tensors' location: that
// location becomes weights.pb (the tensors' bytes are at their offsets in
// it, as ONNX external data may be). When Save writes weights itself
// (fp16: converted tensors beside some kept in float32), the checkpoint's
// tensors are read in too, so that weights.pb holds them all. A sharded
// checkpoint's files (several external files, nothing to write) keep
// their names.
func dataFile(p *onnx.GraphProto, inlineLimit int) (string, error) {
	files := map[string]bool{}
	spill := false
	for _, t := range p.Initializers {
		if t.External != nil {
			files[t.External.File] = true
		} else if len(t.Raw) > 0 && len(t.Raw) >= inlineLimit {
			spill = true
		}
	}
	for i, t := range p.Initializers {
		if t.External == nil {
			continue
		}
		c := *t // the tensors may be shared: change copies
		switch {
		case spill:
			raw, err := readRange(t.External.File, t.External.Offset, t.External.Length)
			if err != nil {
				return "", fmt.Errorf("initializer %s: %w", t.Name, err)
			}
			c.External, c.Raw = nil, raw
		case len(files) == 1:
			x := *t.External
			x.Location = pipelineDataFile
			c.External = &x
		}
		p.Initializers[i] = &c
	}
	if !spill && len(files) > 0 {
		return "weights.bin", nil // not written: nothing is left to write
	}
	return pipelineDataFile, nil
}

// readRange reads length bytes of file at offset.
func readRange(file string, offset, length int64) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, length)
	if _, err := f.ReadAt(b, offset); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return b, nil
}

// consumers lists the nodes of p (not of its subgraphs) that read name.
func consumers(p *onnx.GraphProto, name string) []*onnx.Node {
	var out []*onnx.Node
	for _, n := range p.Nodes {
		if slices.Contains(n.Inputs, name) {
			out = append(out, n)
		}
	}
	return out
}

// renameInputs makes every node of p and of its subgraphs that reads from
// read to instead.
func renameInputs(p *onnx.GraphProto, from, to string) {
	for _, n := range p.Nodes {
		for j, in := range n.Inputs {
			if in == from {
				n.Inputs[j] = to
			}
		}
		for _, a := range n.Attrs {
			if a.G != nil {
				renameInputs(a.G, from, to)
			}
		}
	}
}

// graphUses reports whether name is a tensor of p or of its subgraphs.
func graphUses(p *onnx.GraphProto, name string) bool {
	for _, v := range slices.Concat(p.Inputs, p.Outputs) {
		if v.Name == name {
			return true
		}
	}
	for _, t := range p.Initializers {
		if t.Name == name {
			return true
		}
	}
	for _, n := range p.Nodes {
		if slices.Contains(n.Inputs, name) || slices.Contains(n.Outputs, name) {
			return true
		}
		for _, a := range n.Attrs {
			if a.G != nil && graphUses(a.G, name) {
				return true
			}
		}
	}
	return false
}

// pipelineIndex is the exported model_index.json: an
// OnnxStableDiffusionPipeline's. DiffusionPipeline.from_pretrained builds
// the class _class_name names with one component per entry ([library,
// class]); OnnxRuntimeModel loads each graph folder. The pipeline's
// constructor also takes safety_checker and feature_extractor, which
// _optional_components lets be [null, null], and requires_safety_checker,
// false: tokenflow exports no safety checker. The scheduler is the
// checkpoint's (its scheduler_config.json's _class_name, else its
// model_index.json's), the tokenizer transformers' CLIPTokenizer.
func pipelineIndex(c *Checkpoint) ([]byte, error) {
	var sched struct {
		Class   string `json:"_class_name"`
		Version string `json:"_diffusers_version"`
	}
	b, err := os.ReadFile(c.Path("scheduler", "scheduler_config.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &sched); err != nil {
		return nil, fmt.Errorf("%s: %w", c.Path("scheduler", "scheduler_config.json"), err)
	}
	version := sched.Version
	var src struct {
		Version   string   `json:"_diffusers_version"`
		Scheduler []string `json:"scheduler"`
	}
	if b, err := os.ReadFile(c.Path("model_index.json")); err == nil && json.Unmarshal(b, &src) == nil {
		if src.Version != "" {
			version = src.Version
		}
		if sched.Class == "" && len(src.Scheduler) == 2 {
			sched.Class = src.Scheduler[1]
		}
	}
	if sched.Class == "" {
		sched.Class = "DDIMScheduler" // what tokenflow runs, whatever the config names
	}
	if version == "" {
		version = exportDiffusersVersion
	}
	ort := []string{"diffusers", "OnnxRuntimeModel"}
	none := []any{nil, nil}
	index := map[string]any{
		"_class_name":             "OnnxStableDiffusionPipeline",
		"_diffusers_version":      version,
		"vae_encoder":             ort,
		"vae_decoder":             ort,
		"text_encoder":            ort,
		"unet":                    ort,
		"tokenizer":               []string{"transformers", "CLIPTokenizer"},
		"scheduler":               []string{"diffusers", sched.Class},
		"safety_checker":          none,
		"feature_extractor":       none,
		"requires_safety_checker": false,
	}
	out, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// exportDiffusersVersion is the _diffusers_version written when the
// checkpoint names none (a converted single file): the version the
// conformance references were made with.
const exportDiffusersVersion = "0.20.2"

func writeFile(dst string, b []byte) error {
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
