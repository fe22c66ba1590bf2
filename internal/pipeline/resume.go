package pipeline

// Resuming an interrupted edit (docs/ARCHITECTURE.md, "Resuming an edit").
//
// After every completed step the edit's state (edit.State: the step, every
// prompt's latents, the prompts that failed) is written, atomically, to one
// safetensors file beside the inversion's entry:
//
//	<root>/inversions/<entry id>.edit-<edit key>.safetensors
//
// The edit key hashes every setting that decides the edit's latents
// (editKeyFields); a run reads only the state of its own key, so a state
// written with other settings is never used. The same command run again
// after a kill continues from the state's step; the finished run deletes
// it once its outputs are committed.

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
	"github.com/tokenflow/tokenflow/internal/cache"
	"github.com/tokenflow/tokenflow/internal/edit"
	"github.com/tokenflow/tokenflow/internal/safetensors"
	"github.com/tokenflow/tokenflow/internal/tensor"
	"github.com/tokenflow/tokenflow/internal/version"
)

// stateFormat names the state file's layout; bump its number when the
// layout or the meaning of what it holds changes (older states are then
// never used: their key differs).
const stateFormat = "tokenflow edit state 1"

// Metadata keys of a state file.
const (
	metaFormat    = "format"
	metaKey       = "edit_key"
	metaSettings  = "settings"  // the key's fields, JSON (editKeyFields)
	metaStep      = "step"      // steps done
	metaSteps     = "steps"     // the edit's steps
	metaKeyframes = "keyframes" // every step's keyframes, JSON [][]int
	metaFailed    = "failed"    // the prompts that failed, JSON []failedPrompt
	metaCRC       = "latents_crc32c"
	latentsPrefix = "latents_" // latents_<p>: prompt p's latents (from 0)
)

// keyField is one setting of the edit key.
type keyField struct {
	Name  string
	Value any
}

// editKeyFields is everything that decides an edit's final latents besides
// the code: two runs whose fields are all equal compute the same latents,
// bit for bit, so one may continue the other's state. A new setting that
// changes the result joins this list (say, a keyframe window); a setting
// that does not (threads, outputs, progress) stays out. The tool version
// stands for the code: a state is never continued by another build.
func (j *job) editKeyFields(req *EditRequest, targets []Target, entry *cache.Entry) []keyField {
	prompts := make([]string, len(targets))
	for i, t := range targets {
		prompts[i] = t.Prompt
	}
	var sdedit any
	if s := req.SDEdit; s != nil {
		sdedit = map[string]any{"start": s.Start, "gaussian_noise": s.Gaussian}
	}
	return []keyField{
		{"format", stateFormat},
		{"tool", version.Version},
		// the inversion: its entry (video, frames, size, model, inversion
		// prompt and steps, dtype) and its bytes (a rebuilt entry may differ)
		{"inversion_entry", entry.Manifest.Key.ID()},
		{"inversion_latents_crc32c", entry.Manifest.LatentsCRC},
		{"prompts", prompts},
		{"negative_prompt", req.NegativePrompt},
		{"negative_prompts", req.NegativePrompts},
		{"steps", req.Steps},
		{"guidance", req.Guidance},
		{"pnp_attn", req.PnPAttn},
		{"pnp_conv", req.PnPConv},
		{"batch_size", req.BatchSize},
		{"keyframes", req.Keyframes.String()},
		{"seed", req.Seed},
		{"keyframe_window", req.KeyframeWindow},
		{"prompts_per_call", j.perCall}, // as chosen: calls over other groups may round differently
		{"sdedit", sdedit},
		{"dtype", string(req.GraphDType())},
		{"device", string(req.Device)},
	}
}

// settingsJSON is fields as one JSON object, in their order.
func settingsJSON(fields []keyField) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(f.Name)
		value, err := json.Marshal(f.Value)
		if err != nil { // every field is plain data
			panic(fmt.Sprintf("edit key field %s: %v", f.Name, err))
		}
		b.Write(name)
		b.WriteByte(':')
		b.Write(value)
	}
	b.WriteByte('}')
	return b.String()
}

// editState is where one edit's state lives.
type editState struct {
	path     string // the state file
	key      string // the edit key: 24 hex digits of the settings' sha256
	settings string
	entryCRC string
	log      io.Writer
	failed   bool // a save failed: no more are tried
}

// newEditState is the state of the edit req makes from entry.
func (j *job) newEditState(req *EditRequest, targets []Target, entry *cache.Entry) *editState {
	settings := settingsJSON(j.editKeyFields(req, targets, entry))
	sum := sha256.Sum256([]byte(settings))
	key := hex.EncodeToString(sum[:])[:24]
	return &editState{path: filepath.Join(filepath.Dir(entry.Dir), filepath.Base(entry.Dir)+".edit-"+key+".safetensors"),
		key: key, settings: settings, entryCRC: entry.Manifest.LatentsCRC, log: req.Log}
}

// failedPrompt is a prompt that failed before the state: its error, and
// the NaN's place when that was the error.
type failedPrompt struct {
	Prompt    int                    `json:"prompt"`
	Error     string                 `json:"error"`
	NonFinite *tensor.NonFiniteError `json:"nonfinite,omitempty"`
}

// logf writes one line on the log.
func (s *editState) logf(format string, args ...any) {
	if s.log != nil {
		fmt.Fprintf(s.log, format+"\n", args...)
	}
}

// prepare sweeps what killed writers left and the states no run can use,
// and returns the state to continue from, or nil to start over: with
// noResume, or when there is none, or when it cannot be used (said on the
// log, and removed).
func (s *editState) prepare(e *edit.Editor, shape []int64, prompts int, noResume bool) *edit.State {
	s.sweep()
	if _, err := os.Stat(s.path); err != nil {
		return nil
	}
	if noResume {
		os.Remove(s.path)
		s.logf("edit: starting over ({no_resume}): removed the state of an interrupted run, %s", s.path)
		return nil
	}
	st, reason := s.load(e, shape, prompts)
	if reason != "" {
		os.Remove(s.path)
		s.logf("edit: the state of an interrupted run, %s, cannot be used (%s): removed it; starting over", s.path, reason)
		return nil
	}
	if st.Step == e.Steps() {
		s.logf("edit: all %d steps were done by an interrupted run: resuming from %s to write the outputs", st.Step, s.path)
	} else {
		s.logf("edit: resuming at step %d of %d from %s", st.Step+1, e.Steps(), s.path)
	}
	return st
}

// sweep removes the temporary files of states whose writer is gone
// (atomicfile.Sweep), and the states of this entry made from another
// build of it (another latents CRC): no run can continue those. States of
// other settings are left alone: another edit of the same clip may own
// them, and continue them when it is run again.
func (s *editState) sweep() {
	dir := filepath.Dir(s.path)
	prefix := strings.TrimSuffix(filepath.Base(s.path), s.key+".safetensors") // "<entry id>.edit-"
	var matches []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if name := e.Name(); strings.HasPrefix(name, prefix) && strings.HasSuffix(name, ".safetensors") {
			matches = append(matches, filepath.Join(dir, name))
		}
	}
	for _, m := range append(matches, s.path) {
		atomicfile.Sweep(m)
	}
	for _, m := range matches {
		if m == s.path {
			continue
		}
		f, err := safetensors.Open(m)
		if err != nil {
			continue // not ours to judge
		}
		var settings struct {
			CRC string `json:"inversion_latents_crc32c"`
		}
		meta := f.Metadata()
		f.Close()
		if json.Unmarshal([]byte(meta[metaSettings]), &settings) == nil && settings.CRC != "" && settings.CRC != s.entryCRC {
			os.Remove(m)
		}
	}
}

// load reads the state and checks it against the edit it would continue;
// reason says why it cannot be used.
func (s *editState) load(e *edit.Editor, shape []int64, prompts int) (*edit.State, string) {
	f, err := safetensors.Open(s.path)
	if err != nil {
		return nil, oneLine(err.Error())
	}
	defer f.Close()
	meta := f.Metadata()
	switch {
	case meta[metaFormat] != stateFormat:
		return nil, fmt.Sprintf("its format is %q, not %q", meta[metaFormat], stateFormat)
	case meta[metaKey] != s.key || meta[metaSettings] != s.settings:
		return nil, "it was written with other settings"
	}
	step, err1 := strconv.Atoi(meta[metaStep])
	steps, err2 := strconv.Atoi(meta[metaSteps])
	if err := errors.Join(err1, err2); err != nil || steps != e.Steps() || step < 1 || step > steps {
		return nil, fmt.Sprintf("it is at step %q of %q, for an edit of %d steps", meta[metaStep], meta[metaSteps], e.Steps())
	}
	var kf [][]int
	if err := json.Unmarshal([]byte(meta[metaKeyframes]), &kf); err != nil || !slices.EqualFunc(kf, e.Schedule(), slices.Equal) {
		return nil, "its keyframe schedule is not this edit's"
	}
	var failed []failedPrompt
	if err := json.Unmarshal([]byte(meta[metaFailed]), &failed); err != nil {
		return nil, "its list of failed prompts does not parse"
	}
	st := &edit.State{Step: step, Xs: make([]tensor.Tensor, prompts), Errs: make([]error, prompts)}
	for _, fp := range failed {
		if fp.Prompt < 0 || fp.Prompt >= prompts || st.Errs[fp.Prompt] != nil {
			return nil, fmt.Sprintf("it names failed prompt %d of %d", fp.Prompt, prompts)
		}
		st.Errs[fp.Prompt] = errors.New(fp.Error)
		if fp.NonFinite != nil {
			st.Errs[fp.Prompt] = fp.NonFinite
		}
	}
	var names []string
	for p := range prompts {
		name := latentsPrefix + strconv.Itoa(p)
		if !f.Has(name) {
			if st.Errs[p] == nil {
				return nil, fmt.Sprintf("it has no latents for prompt %d", p+1)
			}
			continue
		}
		if st.Errs[p] != nil {
			return nil, fmt.Sprintf("prompt %d has both latents and an error", p+1)
		}
		v, err := f.Float32(name)
		if err != nil {
			return nil, oneLine(err.Error())
		}
		x, err := tensor.New(shape, v)
		if err != nil {
			return nil, fmt.Sprintf("prompt %d's latents: %s", p+1, oneLine(err.Error()))
		}
		if x.Finite() >= 0 {
			return nil, fmt.Sprintf("prompt %d's latents hold %v", p+1, tensor.ErrNonFinite)
		}
		st.Xs[p] = x
		names = append(names, name)
	}
	if f.Len() != len(names) {
		return nil, fmt.Sprintf("it holds %d tensors, want %d", f.Len(), len(names))
	}
	if got := latentsCRC(st.Xs); got != meta[metaCRC] {
		return nil, fmt.Sprintf("its latents are corrupt (CRC-32C %s, it says %s)", got, meta[metaCRC])
	}
	return st, ""
}

// latentsCRC is the CRC-32C of every prompt's latents in order, as
// little-endian float32, 8 hex digits.
func latentsCRC(xs []tensor.Tensor) string {
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	var b [4]byte
	for _, x := range xs {
		buf := make([]byte, 0, 4*len(x.Data))
		for _, v := range x.Data {
			binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
			buf = append(buf, b[:]...)
		}
		h.Write(buf)
	}
	return fmt.Sprintf("%08x", h.Sum32())
}

// save writes st as the edit's state, atomically (a temporary file,
// flushed, renamed over the last one). A state that cannot be written is
// said once on the log and the edit goes on without (a later run then
// continues from the last state written, or starts over).
func (s *editState) save(e *edit.Editor, st edit.State) {
	if s.failed {
		return
	}
	if err := s.write(e, st); err != nil {
		s.failed = true
		s.logf("edit: cannot save the state for resuming (%v); going on without it", atomicfile.CauseText(err))
	}
}

func (s *editState) write(e *edit.Editor, st edit.State) error {
	kf, err := json.Marshal(e.Schedule())
	if err != nil {
		return err
	}
	failed := []failedPrompt{}
	var ts []safetensors.Tensor
	for p, x := range st.Xs {
		if err := st.Errs[p]; err != nil {
			fp := failedPrompt{Prompt: p, Error: err.Error()}
			errors.As(err, &fp.NonFinite)
			failed = append(failed, fp)
			continue
		}
		ts = append(ts, safetensors.FromFloat32(latentsPrefix+strconv.Itoa(p), x.Shape, x.Data))
	}
	fj, err := json.Marshal(failed)
	if err != nil {
		return err
	}
	meta := map[string]string{metaFormat: stateFormat, metaKey: s.key, metaSettings: s.settings,
		metaStep: strconv.Itoa(st.Step), metaSteps: strconv.Itoa(e.Steps()), metaKeyframes: string(kf), metaFailed: string(fj),
		metaCRC: latentsCRC(st.Xs)}
	f, err := atomicfile.Create(s.path, 0o666, false)
	if err != nil {
		return err
	}
	defer f.Abort()
	release, err := atomicfile.Claim(f.Name())
	if err != nil {
		return err
	}
	defer release()
	if err := safetensors.Write(f, ts, meta); err != nil {
		return err
	}
	return f.Commit()
}

// remove deletes the state: the edit is finished.
func (s *editState) remove() {
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.logf("edit: cannot remove the finished edit's state %s: %v", s.path, atomicfile.CauseText(err))
	}
}

// oneLine is s on one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
