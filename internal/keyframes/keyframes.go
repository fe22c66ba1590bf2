// Package keyframes decides which frame of each batch is the keyframe
// ("pivotal frame") at each denoising timestep of a TokenFlow edit.
//
// Reference: the official TokenFlow code (omerbt/TokenFlow,
// run_tokenflow_pnp.py, TokenFlow.batched_denoise_step), where once per
// timestep
//
//	pivotal_idx = torch.randint(B, (N//B,)) + torch.arange(0, N, B)
//
// draws one keyframe per batch, uniformly over the batch's frames.
//
// Notation:
//
//	N        number of frames in the clip (n)
//	B        frames per batch (batch); clamped to N when larger
//	M        number of batches, ceil(N/B)
//	b        batch index, 0 <= b < M
//	start_b  first frame of batch b, b*B
//	len_b    frames in batch b, min(B, N - b*B); only the last batch can be
//	         shorter than B
//	k_b      keyframe of batch b, start_b <= k_b < start_b + len_b
//	S        number of denoising timesteps (steps)
//
// The official code trims N down to a multiple of B. Here the remainder is
// kept as a smaller last batch, and both policies treat it like any other
// batch: Random draws over its len_b frames, Middle takes start_b + len_b/2.
//
// Neither policy reproduces torch's random stream: with the same seed the
// official code and this package choose different random keyframes. Middle
// is the policy to use when a run must be reproducible across
// implementations (the conformance fixtures use it).
package keyframes

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"

	"github.com/tokenflow/tokenflow/internal/param"
	"github.com/tokenflow/tokenflow/internal/tensor"
)

// Policy chooses the keyframe of each batch.
type Policy int

const (
	// Random picks, at every timestep and independently for every batch, a
	// frame uniformly over the batch's frames, from a generator seeded by the
	// user's seed. It is the official behaviour.
	Random Policy = iota
	// Middle picks start_b + len_b/2 at every timestep: b*B + B/2 for full
	// batches, which is what the conformance fixtures use.
	Middle
)

var policyNames = []string{Random: "random", Middle: "middle"}

// String returns the policy's flag value ("random" or "middle").
func (p Policy) String() string {
	if p >= 0 && int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// ParsePolicy parses a policy's name ("random" or "middle").
func ParsePolicy(s string) (Policy, error) {
	if i := slices.Index(policyNames, s); i >= 0 {
		return Policy(i), nil
	}
	return 0, param.Errorf("keyframes", s, "unknown policy: want random or middle")
}

// streamID is the second PCG seed word: it fixes the generator's stream so
// that only the user's seed varies. ASCII "tokenflo".
const streamID = 0x746f6b656e666c6f

// Schedule returns the keyframes for every timestep: out[i][b] is the frame
// index k_b of batch b at the i-th timestep of the sampling loop, in the
// order the loop visits the timesteps.
//
// Steps:
//  1. Validate: n >= 1, batch >= 1, steps >= 0; clamp batch to n.
//  2. Split frames 0..N-1 into M = ceil(N/B) batches of B consecutive frames,
//     the last one holding the remaining len_{M-1} = N - (M-1)*B frames.
//  3. Random: seed a PCG generator with (seed, streamID); for each timestep
//     i = 0..S-1, for each batch b = 0..M-1, in that order, draw
//     u uniform over [0, len_b) and set k_b = start_b + u.
//     Middle: k_b = start_b + len_b/2 (integer division) at every timestep.
//
// For a given policy, seed, steps, n and batch the result never changes:
// PCG's output is specified, and the uniform draw is computed here (Lemire's
// multiply-and-reject) rather than by math/rand/v2's Rand methods.
func Schedule(policy Policy, seed uint64, steps, n, batch int) ([][]int, error) {
	// 1. Validate and clamp.
	if n < 1 {
		return nil, fmt.Errorf("keyframes: number of frames must be at least 1, got %d", n)
	}
	if batch < 1 {
		return nil, fmt.Errorf("keyframes: batch size must be at least 1, got %d", batch)
	}
	if steps < 0 {
		return nil, fmt.Errorf("keyframes: number of steps must not be negative, got %d", steps)
	}
	if policy != Random && policy != Middle {
		return nil, fmt.Errorf("keyframes: unknown policy %v", policy)
	}
	batch = min(batch, n)

	// 2. Batch layout.
	spans := tensor.Batches(n, batch)

	// 3. Keyframes per timestep.
	src := rand.NewPCG(seed, streamID)
	out := make([][]int, steps)
	for i := range out {
		out[i] = make([]int, len(spans))
		for b, sp := range spans {
			if policy == Middle {
				out[i][b] = sp.Start + sp.Len()/2
			} else {
				out[i][b] = sp.Start + int(uniform(src, uint64(sp.Len())))
			}
		}
	}
	return out, nil
}

// uniform returns a value uniform over [0, n), n >= 1, from src.
//
// Lemire, "Fast Random Integer Generation in an Interval" (ACM TOMACS 2019),
// algorithm 5: the high word of x*n for a uniform 64-bit x is uniform over
// [0, n) once products whose low word falls below 2^64 mod n are rejected.
func uniform(src rand.Source, n uint64) uint64 {
	hi, lo := bits.Mul64(src.Uint64(), n)
	if lo < n {
		threshold := -n % n // 2^64 mod n
		for lo < threshold {
			hi, lo = bits.Mul64(src.Uint64(), n)
		}
	}
	return hi
}
