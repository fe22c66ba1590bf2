// Package sd runs one Stable Diffusion checkpoint's graphs in ONNX Runtime:
// it builds the text encoder, VAE and UNet graphs from the checkpoint (in
// memory, weights read from the checkpoint's own files), opens their
// sessions on first use, and offers typed calls on host tensors
// (tensor.Tensor). It is the model that inversion and edit drive through
// their own small interfaces.
package sd

import (
	"context"
	"fmt"
	"io"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/safetensors"
	"github.com/tokenflow/tokenflow/internal/scheduler"
	"github.com/tokenflow/tokenflow/internal/version"
	"github.com/tokenflow/tokenflow/models"
	"github.com/tokenflow/tokenflow/models/tokenizer"
)

// Options configure a Model.
type Options struct {
	Model   string     // a diffusers folder, a cached hub id or a single .safetensors file
	Device  ort.Device // cpu or cuda
	DType   DType      // the graphs' element type ("": fp32)
	Threads int        // intra-op threads (0: ONNX Runtime's default)
	Log     io.Writer  // warnings, e.g. a prompt truncated to 77 tokens

	// OriginalConfig is a single file's original inference YAML ("": detect).
	OriginalConfig string

	// CacheRoot is the cache folder (cache.Root): it remembers each weight
	// file's content hash, so the model's identity reads the weights once
	// ("" reads them on every Open).
	CacheRoot string
}

// Model is an opened checkpoint with its ONNX Runtime sessions.
type Model struct {
	opts       Options
	Checkpoint *models.Checkpoint
	Tokenizer  *tokenizer.Tokenizer
	Scheduler  *scheduler.DDIM
	UNetConfig *models.UNetConfig
	VAEConfig  *models.VAEConfig
	TextConfig *models.CLIPTextConfig
	id         string

	mu       sync.Mutex
	sessions map[string]*ort.Session
	creating map[string]*creation // sessions being made
	wmu      sync.Mutex           // guards weights
	weights  map[string]*models.Weights
	// waitNanos is the time callers of Session waited for a session.
	waitNanos atomic.Int64
	made      map[string]time.Duration // creation time by session name
	texts     map[string][]float32     // text encoder states by prompt

	unetFrames atomic.Int64
	// kfChannels is the width of each per-layer keyframe input of the UNet.
	kfChannels map[string]int64
}

// Open reads the checkpoint's configs, tokenizer and scheduler; graphs and
// sessions come later, on first use.
func Open(o Options) (*Model, error) {
	c, err := models.OpenModel(o.Model, models.OpenOptions{OriginalConfig: o.OriginalConfig, Log: o.Log})
	if err != nil {
		return nil, err
	}
	p := &Model{opts: o, Checkpoint: c, weights: map[string]*models.Weights{}, sessions: map[string]*ort.Session{}, creating: map[string]*creation{}, made: map[string]time.Duration{}, texts: map[string][]float32{}}
	if p.UNetConfig, err = c.UNetConfig(); err != nil {
		return nil, err
	}
	p.kfChannels = map[string]int64{}
	for _, l := range p.UNetConfig.SelfAttentionLayers() {
		p.kfChannels[models.InKeyTokens(l.Path)] = l.Channels
		p.kfChannels[models.InKeyAttn(l.Path)] = l.Channels
		p.kfChannels[models.InAnchorKeys(l.Path)] = l.Channels
		p.kfChannels[models.InAnchorValues(l.Path)] = l.Channels
	}
	if p.VAEConfig, err = c.VAEConfig(); err != nil {
		return nil, err
	}
	if p.TextConfig, err = c.TextConfig(); err != nil {
		return nil, err
	}
	if p.Tokenizer, err = c.Tokenizer(); err != nil {
		return nil, err
	}
	cfg, err := c.SchedulerConfig()
	if err != nil {
		return nil, err
	}
	if p.Scheduler, err = scheduler.New(cfg); err != nil {
		return nil, err
	}
	return p, nil
}

// Identify computes the model's identity (models.Checkpoint.Identity),
// once: the first time it reads every weight file, unless the cache root's
// memo already knows them. Open does not, so that a run refused for
// another reason reads and writes nothing for it.
func (p *Model) Identify() (string, error) {
	if p.id != "" {
		return p.id, nil
	}
	id, err := p.Checkpoint.Identity(p.opts.CacheRoot)
	if err != nil {
		return "", err
	}
	p.id = id
	return id, nil
}

// Close closes the sessions and the weight files.
func (p *Model) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waitCreating()
	for _, s := range p.sessions {
		s.Close()
	}
	for _, w := range p.weights {
		w.Close()
	}
	p.sessions, p.weights = map[string]*ort.Session{}, map[string]*models.Weights{}
	return nil
}

// ID identifies the model (models.Checkpoint.Identity): a hash of its
// configs, tokenizer files, weight headers and weight bytes, or for a
// single file of its content. Equal IDs compute the same functions. It is
// "" until Identify has run.
func (p *Model) ID() string { return p.id }

// Dir is the checkpoint folder (for a single file, the diffusers folder it
// was converted into).
func (p *Model) Dir() string { return p.Checkpoint.Dir }

// UNetFrames counts the frames the UNet has evaluated (a pass over a batch
// of n latents counts n).
func (p *Model) UNetFrames() int64 { return p.unetFrames.Load() }

// WeightBytes is what the weights of the UNet, VAE and text encoder take
// in the sessions: their elements (read from the files' headers) at the
// graphs' element size, 4 bytes in fp32 and 2 in fp16 (the few
// normalisation parameters an fp16 graph keeps in float32 are not told
// apart).
func (p *Model) WeightBytes() (int64, error) {
	size := int64(p.opts.DType.GraphType().Size())
	var n int64
	for _, comp := range []string{"unet", "vae", "text_encoder"} {
		files, err := p.Checkpoint.WeightFiles(comp)
		if err != nil {
			return 0, err
		}
		for _, path := range files {
			f, err := safetensors.Open(path)
			if err != nil {
				return 0, err
			}
			for _, name := range f.Names() {
				n += f.Tensor(name).NumElements() * size
			}
			f.Close()
		}
	}
	return n, nil
}

// componentWeights opens (once) a component's weights.
func (p *Model) componentWeights(comp string) (*models.Weights, error) {
	if w, ok := p.weights[comp]; ok {
		return w, nil
	}
	files, err := p.Checkpoint.WeightFiles(comp)
	if err != nil {
		return nil, err
	}
	if p.opts.DType == FP16 && p.opts.CacheRoot != "" {
		if files, err = halfWeightFiles(p.opts.CacheRoot, comp, files, p.opts.Log); err != nil {
			return nil, err
		}
	}
	w, err := models.OpenWeights(comp, files, p.opts.DType.GraphType())
	if err != nil {
		return nil, err
	}
	p.weights[comp] = w
	return w, nil
}

// maxInline bounds the size of a graph held in memory: protobuf caps a
// model at 2 GiB, and weights in the checkpoint's own float32 files do not
// count (they stay external).
const maxInline = 1 << 30

// Session returns the named session, building its graph the first time.
// build makes the graph from the component's weights. The session takes
// the graph's inputs and returns its outputs in declaration order. Sessions
// of different names are created concurrently (Prepare); a caller asking
// for one being created waits for it.
func (p *Model) Session(name, comp string, build func(*models.Weights) (*onnx.Graph, error)) (*ort.Session, error) {
	start := time.Now()
	p.mu.Lock()
	if s, ok := p.sessions[name]; ok {
		p.mu.Unlock()
		return s, nil
	}
	c := p.begin(name, comp, build)
	p.mu.Unlock()
	<-c.done
	p.waitNanos.Add(int64(time.Since(start)))
	return c.s, c.err
}

// creation is a session being made; done is closed when s or err is set.
type creation struct {
	done chan struct{}
	s    *ort.Session
	err  error
}

// begin returns the named session's creation, starting it unless it is
// under way. p.mu is held. A failed creation is forgotten: the next
// Session tries again.
func (p *Model) begin(name, comp string, build func(*models.Weights) (*onnx.Graph, error)) *creation {
	if c, ok := p.creating[name]; ok {
		return c
	}
	c := &creation{done: make(chan struct{})}
	p.creating[name] = c
	go func() {
		t := time.Now()
		s, err := p.newSession(name, comp, build)
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.creating, name)
		c.s, c.err = s, err
		if err == nil {
			p.sessions[name] = s
			p.made[name] += time.Since(t)
		}
		close(c.done)
	}()
	return c
}

// Prepare starts creating the UNet's and the text encoder's sessions in
// the background, for a caller that will need them after work that does
// not (hashing, decoding, the VAE encoder): their first use then waits
// only for what is left, and an error is returned by that first use.
func (p *Model) Prepare() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.sessions["unet"]; !ok {
		p.begin("unet", "unet", p.buildUNet)
	}
	if _, ok := p.sessions["text_encoder"]; !ok {
		p.begin("text_encoder", "text_encoder", p.buildText)
	}
}

// SessionWait is the time callers spent waiting for sessions to be
// created (creating them, or waiting for a Prepare): creation that
// overlapped other work does not count.
func (p *Model) SessionWait() time.Duration { return time.Duration(p.waitNanos.Load()) }

// SessionTimes is how long each session took to make (graph build and
// ONNX Runtime's creation), by name, whether or not a caller waited.
func (p *Model) SessionTimes() map[string]time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.made)
}

// newSession builds the named graph and creates its session.
func (p *Model) newSession(name, comp string, build func(*models.Weights) (*onnx.Graph, error)) (*ort.Session, error) {
	p.wmu.Lock()
	w, err := p.componentWeights(comp)
	p.wmu.Unlock()
	if err != nil {
		return nil, err
	}
	g, err := build(w)
	if err != nil {
		return nil, err
	}
	var inputs, outputs []string
	for _, v := range g.Proto().Inputs {
		inputs = append(inputs, v.Name)
	}
	for _, v := range g.Proto().Outputs {
		outputs = append(outputs, v.Name)
	}
	m, err := g.Model("tokenflow", version.Version)
	if err != nil {
		return nil, fmt.Errorf("%s graph: %w", name, err)
	}
	b, err := m.Marshal()
	if err != nil {
		return nil, fmt.Errorf("%s graph: %w", name, err)
	}
	if len(b) > maxInline {
		return nil, fmt.Errorf("%s: the checkpoint's %s weights are not float32 and converting them takes %d MB in memory: convert the checkpoint to float32 safetensors, or export it with `tokenflow models export`", p.Dir(), comp, len(b)>>20)
	}
	dir, err := w.DataDir()
	if err != nil {
		return nil, err
	}
	s, err := ort.NewSession(b, ort.SessionOptions{
		Device: p.opts.Device, Threads: p.opts.Threads, Inputs: inputs, Outputs: outputs,
		Config: map[string]string{"session.model_external_initializers_file_folder_path": dir},
		// The VAE's activations at full resolution are large and it runs
		// once per frame: an arena would keep its peak for the whole run.
		NoArena: comp == "vae",
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}

// Release closes a session that is no longer needed (e.g. the text encoder
// once the prompts are encoded), freeing its memory. The component's weight
// files stay open until Close.
func (p *Model) Release(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.creating[name] != nil {
		c := p.creating[name]
		p.mu.Unlock()
		<-c.done
		p.mu.Lock()
	}
	if s, ok := p.sessions[name]; ok {
		s.Close()
		delete(p.sessions, name)
	}
}

// waitCreating waits, p.mu held, until no session is being created.
func (p *Model) waitCreating() {
	for len(p.creating) > 0 {
		var c *creation
		for _, c = range p.creating {
			break
		}
		p.mu.Unlock()
		<-c.done
		p.mu.Lock()
	}
}

// run is Session + Run with float32 outputs.
func run(ctx context.Context, s *ort.Session, inputs ...ort.Tensor) ([][]float32, error) {
	outs, err := s.Run(ctx, inputs...)
	if err != nil {
		return nil, err
	}
	res := make([][]float32, len(outs))
	for i, o := range outs {
		if res[i], err = ort.Data[float32](o); err != nil {
			return nil, err
		}
	}
	return res, nil
}
