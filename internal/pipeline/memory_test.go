package pipeline

import "testing"

// TestEstimate: the estimate of PERF.md's workload (SD 2.1 weights, 5 heads
// at full resolution, 8 frames at 256x256, batch 4, 10 editing steps) is
// within the measured peak's neighbourhood (5339 to 6000 MB over 4921 MB of
// weights), and every term grows with what drives it.
func TestEstimate(t *testing.T) {
	const weights = 4921 << 20
	m := estimate(weights, 5, 8, 11, 4, 32, 32, 4, true, 1)
	if got := float64(m.Total()) / (1 << 20); got < 5000 || got > 6500 {
		t.Errorf("PERF workload estimate %.0f MB (%+v), want within 5000..6500 (measured 5339..6000)", got, m)
	}
	inv := estimate(weights, 5, 8, 11, 4, 32, 32, 4, false, 1)
	if inv.Pass >= m.Pass {
		t.Errorf("an inversion's pass (%d) is not below the edit's (%d)", inv.Pass, m.Pass)
	}
	big := estimate(weights, 5, 8, 11, 4, 64, 64, 4, true, 1)
	if big.Pass <= 4*m.Pass || big.Latents != 4*m.Latents {
		t.Errorf("at 512x512: pass %d, latents %d; want the pass to grow more than 4x (%d) and latents 4x (%d)", big.Pass, big.Latents, m.Pass, m.Latents)
	}
	many := estimate(weights, 5, 256, 51, 8, 64, 64, 4, true, 1)
	if many.Latents != int64(256*53*4*64*64*4) {
		t.Errorf("latents of 256 frames with 51 kept: %d", many.Latents)
	}
}

// TestEstimateFP16: in fp16 the weights are half (WeightBytes counts 2
// bytes an element) and so are the activations, but not the attention
// scores, which fp16 graphs compute in float32.
func TestEstimateFP16(t *testing.T) {
	const weights = 4921 << 20
	full := estimate(weights, 5, 8, 11, 4, 64, 64, 4, true, 1)
	half := estimate(weights/2, 5, 8, 11, 4, 64, 64, 2, true, 1)
	if half.Weights != full.Weights/2 || half.Latents != full.Latents {
		t.Errorf("fp16 %+v against fp32 %+v: want half the weights, the same latents", half, full)
	}
	if half.Pass >= full.Pass || 2*half.Pass <= full.Pass {
		t.Errorf("fp16 pass %d against fp32 %d: want less, but more than half (the scores stay float32)", half.Pass, full.Pass)
	}
}

func TestAvailable(t *testing.T) {
	avail, total := available()
	if avail <= 0 || total < avail {
		t.Errorf("available() = %d, %d: want 0 < available <= total", avail, total)
	}
}
