package pipeline

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/edit"
	"github.com/tokenflow/tokenflow/internal/keyframes"
	"github.com/tokenflow/tokenflow/internal/pnp"
	"github.com/tokenflow/tokenflow/internal/scheduler"
	"github.com/tokenflow/tokenflow/internal/tensor"
	"github.com/tokenflow/tokenflow/internal/tokens"
)

// noUNet is never asked for a pass: these tests only save and load states.
type noUNet struct{}

func (noUNet) KeyframePass(context.Context, tensor.Tensor, int, tensor.Tensor, pnp.Injection, []int) (*tokens.PivotCache, error) {
	return nil, errors.New("no UNet here")
}

func (noUNet) WindowKeyframePass(context.Context, tensor.Tensor, int, tensor.Tensor, pnp.Injection, []int, *tokens.AnchorKV, bool) (*tokens.PivotCache, *tokens.AnchorKV, error) {
	return nil, nil, errors.New("no UNet here")
}

func (noUNet) PropagationPass(context.Context, tensor.Tensor, int, tensor.Tensor, pnp.Injection, *tokens.PivotCache, [2]int, []float32) (tensor.Tensor, error) {
	return tensor.Tensor{}, errors.New("no UNet here")
}

// stateEditor is an edit of 3 prompts over 6 frames in 4 steps.
func stateEditor(t *testing.T) (*edit.Editor, tensor.Tensor) {
	ddim, err := scheduler.New(scheduler.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ts, _ := ddim.Timesteps(4)
	z0 := tensor.Zeros(6, 4, 2, 3)
	inv := &edit.Memory{Z0: z0, Noisy: map[int]tensor.Tensor{}}
	for _, t := range ts {
		inv.Noisy[t] = z0
	}
	in := edit.Inputs{Inversion: inv, Source: tensor.Zeros(1, 77, 8), Negative: tensor.Zeros(1, 77, 8), Prompt: tensor.Zeros(3, 77, 8)}
	e, err := edit.New(noUNet{}, ddim, in, edit.Params{Steps: 4, BatchSize: 4, Keyframes: keyframes.Random, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	return e, z0
}

func testState(dir, settings string, log *bytes.Buffer) *editState {
	return &editState{path: filepath.Join(dir, "0123456789abcdef01234567.edit-aaaaaaaaaaaaaaaaaaaaaaaa.safetensors"),
		key: "aaaaaaaaaaaaaaaaaaaaaaaa", settings: settings, entryCRC: "0badf00d", log: log}
}

// TestStateRoundTrip: a saved state loads as it was (latents bit for
// bit, the failed prompt's error with its NaN's place); a state of other
// settings, a corrupt one or one of another schedule is refused and
// removed, with the reason on the log; --no-resume removes it.
func TestStateRoundTrip(t *testing.T) {
	e, z0 := stateEditor(t)
	dir := t.TempDir()
	var log bytes.Buffer
	s := testState(dir, `{"format":"x","guidance":7.5}`, &log)
	x0, x2 := tensor.Zeros(z0.Shape...), tensor.Zeros(z0.Shape...)
	for k := range x0.Data {
		x0.Data[k], x2.Data[k] = float32(k)/7, -float32(k)*1e-3
	}
	nan := &tensor.NonFiniteError{Phase: "edit", Step: 2, Steps: 4, Timestep: 501, Frame: 5}
	want := edit.State{Step: 2, Xs: []tensor.Tensor{x0, {}, x2}, Errs: []error{nil, nan, nil}}
	s.save(e, want)
	if s.failed || log.Len() != 0 {
		t.Fatalf("save: %s", log.String())
	}
	got := s.prepare(e, z0.Shape, 3, false)
	if got == nil {
		t.Fatalf("the saved state was not used: %s", log.String())
	}
	if !strings.Contains(log.String(), "edit: resuming at step 3 of 4 from "+s.path) {
		t.Errorf("log %q", log.String())
	}
	var gotNaN *tensor.NonFiniteError
	if got.Step != 2 || !slices.Equal(got.Xs[0].Data, x0.Data) || got.Xs[1].Data != nil || !slices.Equal(got.Xs[2].Data, x2.Data) ||
		got.Errs[0] != nil || got.Errs[2] != nil || !errors.As(got.Errs[1], &gotNaN) || *gotNaN != *nan {
		t.Errorf("loaded state differs: step %d, errors %v", got.Step, got.Errs)
	}

	// Refused states: each is removed, and the run starts over.
	b, err := os.ReadFile(s.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		change func(*editState)
		file   func([]byte) []byte
		reason string
	}{
		{"other settings", func(s *editState) { s.settings = `{"format":"x","guidance":5}` }, nil, "it was written with other settings"},
		{"corrupt latents", nil, func(b []byte) []byte {
			b = slices.Clone(b)
			b[len(b)-5] ^= 0x40
			return b
		}, "its latents are corrupt"},
		{"truncated", nil, func(b []byte) []byte { return b[:len(b)-4] }, "safetensors"},
	} {
		log.Reset()
		if err := os.WriteFile(s.path, b, 0o666); err != nil {
			t.Fatal(err)
		}
		if c.file != nil {
			os.WriteFile(s.path, c.file(b), 0o666)
		}
		s2 := *s
		if c.change != nil {
			c.change(&s2)
		}
		if got := s2.prepare(e, z0.Shape, 3, false); got != nil {
			t.Errorf("%s: the state was used", c.name)
		}
		if !strings.Contains(log.String(), "cannot be used (") || !strings.Contains(log.String(), c.reason) {
			t.Errorf("%s: log %q, want the reason %q", c.name, log.String(), c.reason)
		}
		if _, err := os.Stat(s.path); err == nil {
			t.Errorf("%s: the unusable state was not removed", c.name)
		}
	}

	// --no-resume: removed, said.
	log.Reset()
	os.WriteFile(s.path, b, 0o666)
	if got := s.prepare(e, z0.Shape, 3, true); got != nil {
		t.Errorf("--no-resume used the state")
	}
	if _, err := os.Stat(s.path); err == nil || !strings.Contains(log.String(), "starting over ({no_resume})") {
		t.Errorf("--no-resume: log %q; the state is still there: %v", log.String(), err == nil)
	}
}

// TestStateSweep: at the start of an edit, a state of this entry made from
// another build of it (another latents CRC) is removed, a state of other
// settings on the same build is left alone, and a temporary file a
// killed writer left is removed.
func TestStateSweep(t *testing.T) {
	e, z0 := stateEditor(t)
	dir := t.TempDir()
	st := edit.State{Step: 1, Xs: []tensor.Tensor{z0, z0, z0}, Errs: make([]error, 3)}
	write := func(key, crc string) string {
		s := &editState{path: filepath.Join(dir, "0123456789abcdef01234567.edit-"+key+".safetensors"), key: key,
			settings: `{"inversion_latents_crc32c":"` + crc + `"}`, entryCRC: crc}
		if err := s.write(e, st); err != nil {
			t.Fatal(err)
		}
		return s.path
	}
	stale := write("bbbbbbbbbbbbbbbbbbbbbbbb", "11111111")
	other := write("cccccccccccccccccccccccc", "0badf00d")
	tmp := filepath.Join(dir, ".0123456789abcdef01234567.edit-aaaaaaaaaaaaaaaaaaaaaaaa.safetensors.tmp-0123456789abcdef")
	if err := os.WriteFile(tmp, []byte("half"), 0o666); err != nil {
		t.Fatal(err)
	}
	s := testState(dir, `{"inversion_latents_crc32c":"0badf00d"}`, nil)
	if got := s.prepare(e, z0.Shape, 3, false); got != nil {
		t.Fatal("a state was used where this edit has none")
	}
	for path, keep := range map[string]bool{stale: false, other: true, tmp: false} {
		if _, err := os.Stat(path); (err == nil) != keep {
			t.Errorf("%s: kept %v, want %v", filepath.Base(path), err == nil, keep)
		}
	}
}
