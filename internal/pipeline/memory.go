package pipeline

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/tokenflow/tokenflow/internal/param"
)

// Memory is a run's estimated peak, in bytes, by what takes it. The
// estimate is rough (within tens of percent of the measured peak on the
// benchmark workload): the weights, every kept inverted latent, and the
// largest UNet pass, counted as its largest self-attention score matrix
// (full resolution, every head) plus the pass's other activations.
type Memory struct {
	Weights, Latents, Pass int64
}

// Total is the estimated peak.
func (m Memory) Total() int64 { return m.Weights + m.Latents + m.Pass }

// estimate is the job's memory estimate for an inversion (and, forEdit, an
// edit whose UNet calls hold perCall prompts each: 1 + 2 perCall groups of
// frames, the extended attention of 2 perCall of them, so its pass is at
// most perCall times one prompt's). weights is the weights' bytes in the
// graphs (half in fp16); heads the number of attention heads at the UNet's
// full resolution; act the bytes of an activation element (4, or 2 in
// fp16, whose attention scores are still computed in float32).
func estimate(weights int64, heads, frames, kept, batch, latentH, latentW int, act int64, forEdit bool, perCall int) Memory {
	m1 := int64(max(perCall, 1))
	s := int64(latentH * latentW) // tokens per frame at full resolution
	m := Memory{Weights: weights, Latents: int64(frames) * int64(kept+2) * 4 * s * 4}
	b := int64(min(max(batch, 1), frames))
	// inversion: B frames, each attending to itself
	scores := b * int64(heads) * s * s * 4
	units := b
	if forEdit {
		k := (int64(frames) + b - 1) / b
		// keyframe pass: each prompt's uncond and cond attend to all K
		// keyframes' tokens
		scores = max(scores, 2*m1*int64(heads)*(k*s)*(k*s)*4+k*int64(heads)*s*s*4)
		// propagation pass: 1 + 2m branches of B frames, two [B*S, S] similarities
		scores = max(scores, 2*b*s*s*4)
		units = (1 + 2*m1) * max(b, k)
	}
	// the other activations of one pass: about 30 full-resolution feature
	// maps of 320 channels per latent in the batch (measured order of size)
	m.Pass = scores + units*s*320*act*30
	return m
}

// available is the memory the machine has for a run (MemAvailable) and in
// all (MemTotal + SwapTotal), from /proc/meminfo; 0 where it cannot tell.
func available() (avail, total int64) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "MemAvailable:":
			avail = kb << 10
		case "MemTotal:", "SwapTotal:":
			total += kb << 10
		}
	}
	return avail, total
}

// checkMemory refuses a run whose estimate exceeds all the machine's memory
// and swap (it cannot fit), and warns on the log when it exceeds what is
// available now (it may not).
func (j *job) checkMemory(m Memory) error {
	avail, total := available()
	if total == 0 {
		return nil
	}
	gb := func(b int64) string { return strconv.FormatFloat(float64(b)/(1<<30), 'f', 1, 64) + " GB" }
	what := fmt.Sprintf("about %s (weights %s, inverted latents %s, the largest UNet pass %s)", gb(m.Total()), gb(m.Weights), gb(m.Latents), gb(m.Pass))
	switch {
	case m.Total() > total:
		return param.Errorf("size", j.size, "a run at this size needs %s, more than this machine's %s of memory and swap: give a smaller {size}, {batch_size} or fewer {frames}", what, gb(total))
	case m.Total() > avail && j.req.Log != nil:
		fmt.Fprintf(j.req.Log, "warning: this run needs %s; %s are available now: it may not fit\n", what, gb(avail))
	}
	return nil
}

// choosePerCall is how many of an edit's prompts share a UNet call: asked
// (when not 0, at most prompts), else the most whose estimate (est of a
// call's prompts) fits in the memory available now, at least 1.
func choosePerCall(prompts, asked int, est func(perCall int) Memory) int {
	prompts = max(prompts, 1)
	if asked > 0 {
		return min(asked, prompts)
	}
	avail, _ := available()
	m := prompts
	for m > 1 && avail > 0 && est(m).Total() > avail {
		m--
	}
	return m
}
