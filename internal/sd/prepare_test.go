package sd_test

import (
	"context"
	"slices"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/sd"
	"github.com/tokenflow/tokenflow/internal/tensor"
	"github.com/tokenflow/tokenflow/internal/testenv"
)

// TestPrepare: sessions made in the background (Prepare) while the VAE
// encoder runs give the same UNet and text encoder outputs as sessions
// made on first use; the waits are counted; and a model closed right after
// Prepare waits for the creations instead of leaving them behind.
func TestPrepare(t *testing.T) {
	testenv.ORT(t)
	dir := fixture.Model(t, "tiny-sd21")
	ctx := context.Background()
	eval := func(prepare bool) ([]float32, []float32, *sd.Model) {
		p, err := sd.Open(sd.Options{Model: dir, Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		if prepare {
			p.Prepare()
			p.Prepare() // a second call joins the first
		}
		img := tensor.Zeros(2, 3, 64, 64)
		z, err := p.EncodePixels(ctx, img)
		if err != nil {
			t.Fatal(err)
		}
		cond, err := p.EncodeText(ctx, "a test pattern", "a marble statue")
		if err != nil {
			t.Fatal(err)
		}
		eps, err := p.UNet(ctx, z, 501, cond)
		if err != nil {
			t.Fatal(err)
		}
		return eps.Data, cond.Data, p
	}
	e0, c0, p0 := eval(false)
	defer p0.Close()
	e1, c1, p1 := eval(true)
	defer p1.Close()
	if !slices.Equal(e0, e1) || !slices.Equal(c0, c1) {
		t.Errorf("outputs differ with sessions made in the background")
	}
	for _, p := range []*sd.Model{p0, p1} {
		times := p.SessionTimes()
		for _, name := range []string{"unet", "text_encoder", "vae_encoder"} {
			if times[name] <= 0 {
				t.Errorf("SessionTimes()[%s] = %v, want > 0 (%v)", name, times[name], times)
			}
		}
		if p.SessionWait() <= 0 {
			t.Errorf("SessionWait() = %v, want > 0", p.SessionWait())
		}
	}
	// Close right after Prepare: it waits for both creations, and the
	// model is closed with nothing left running.
	p, err := sd.Open(sd.Options{Model: dir, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	p.Prepare()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(p.SessionTimes()); n != 2 {
		t.Errorf("after Prepare and Close: %d sessions made, want 2 (unet, text_encoder)", n)
	}
}

// TestEncodeTextOnce: a prompt the model has encoded is not encoded again
// (after Release, no text encoder session is made for it), and its states
// are those a fresh model computes for it.
func TestEncodeTextOnce(t *testing.T) {
	testenv.ORT(t)
	dir := fixture.Model(t, "tiny-sd21")
	ctx := context.Background()
	open := func() *sd.Model {
		p, err := sd.Open(sd.Options{Model: dir, Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	p := open()
	first, err := p.EncodeText(ctx, "a test pattern", "a marble statue")
	if err != nil {
		t.Fatal(err)
	}
	made := p.SessionTimes()["text_encoder"]
	p.Release("text_encoder")
	again, err := p.EncodeText(ctx, "a marble statue", "a test pattern")
	if err != nil {
		t.Fatal(err)
	}
	if now := p.SessionTimes()["text_encoder"]; now != made {
		t.Errorf("the text encoder's session was made again (%v, then %v) for prompts already encoded", made, now)
	}
	fresh, err := open().EncodeText(ctx, "a marble statue")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.Row(0).Data, first.Row(1).Data) || !slices.Equal(again.Row(1).Data, first.Row(0).Data) || !slices.Equal(again.Row(0).Data, fresh.Row(0).Data) {
		t.Error("remembered prompt states differ from the ones computed")
	}
}
