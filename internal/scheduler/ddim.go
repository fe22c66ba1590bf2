// Package scheduler is the DDIM noise schedule and update rule of diffusers
// v0.20.2 (schedulers/scheduling_ddim.py, DDIMScheduler), configured from a
// checkpoint's scheduler_config.json, plus the DDIM inversion step and
// inversion plan of the official TokenFlow code (preprocess.py). Pure math
// over []float32: no I/O besides LoadConfig.
//
// Notation (name here -> DDIM paper, arXiv 2010.02502, where alpha is the
// paper's alpha, i.e. diffusers' alphas_cumprod):
//
//	T            num_train_timesteps, timesteps 0..T-1
//	n            number of inference steps (set_timesteps(n))
//	beta_t       betas[t], the training noise schedule
//	a_t          alphas_cumprod[t] = prod_{s<=t} (1 - beta_s)   (paper: alpha_t)
//	a_final      final_alpha_cumprod: a "before" timestep 0, 1 or a_0
//	x_t          the sample (latent) at timestep t
//	eps          the model's noise prediction e_theta(x_t, t)
//	x0           predicted original sample f_theta(x_t, t)        (paper eq. 9)
//	t_prev       t - T//n, the next timestep of the sampling walk
//
// Eq. 12 of the paper with sigma_t = 0 (eta = 0, the deterministic DDIM):
//
//	x_{t-1} = sqrt(a_{t-1}) * (x_t - sqrt(1-a_t) eps) / sqrt(a_t)   "predicted x0"
//	        + sqrt(1 - a_{t-1}) * eps                               "direction pointing to x_t"
//
// Float32 vs float64: every quantity the reference holds as a float32 tensor
// (betas, alphas, a_t, their square roots, every elementwise result) is
// float32 here, rounded op by op in the reference's order, so Step, AddNoise
// and InvertStep reproduce diffusers bit for bit on the fixtures. The
// exceptions follow what PyTorch does internally: torch.cumprod on the CPU
// accumulates in float64 (at::acc_type<float> is double on CPU) and rounds
// each prefix product to float32; beta_start**0.5 is a Python float64; the
// squaredcos_cap_v2 betas are computed in float64 by Python and stored as
// float32; numpy computes "trailing"/"linspace" timesteps in float64.
package scheduler

import (
	"errors"
	"fmt"
	"math"
)

// DDIM is the noise schedule of a checkpoint: betas, alphas_cumprod and
// final_alpha_cumprod, with the DDIM update rules. It is immutable and safe
// for concurrent use.
type DDIM struct {
	cfg           Config
	betas         []float32
	alphasCumprod []float32
	finalAlpha    float32 // before timestep 0: 1 with set_alpha_to_one, else alphasCumprod[0]
}

// ErrTimestep is wrapped by errors about timesteps or step counts out of range.
var ErrTimestep = errors.New("timestep out of range")

// New builds the schedule of cfg (validated first).
func New(cfg Config) (*DDIM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	T := cfg.NumTrainTimesteps
	var betas []float32
	switch {
	case cfg.TrainedBetas != nil:
		// torch.tensor(trained_betas, dtype=torch.float32)
		betas = make([]float32, T)
		for i, b := range cfg.TrainedBetas {
			betas[i] = float32(b)
		}
	case cfg.BetaSchedule == "linear":
		// torch.linspace(beta_start, beta_end, T, dtype=torch.float32)
		betas = linspace32(float32(cfg.BetaStart), float32(cfg.BetaEnd), T)
	case cfg.BetaSchedule == "scaled_linear":
		// torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float32) ** 2
		// (the roots are Python floats, rounded to float32 by linspace; ** 2 is x*x)
		betas = linspace32(float32(math.Sqrt(cfg.BetaStart)), float32(math.Sqrt(cfg.BetaEnd)), T)
		for i, b := range betas {
			betas[i] = b * b
		}
	case cfg.BetaSchedule == "squaredcos_cap_v2":
		betas = cosineBetas(T)
	}
	// alphas = 1.0 - betas (float32); alphas_cumprod = torch.cumprod(alphas):
	// float64 running product, each prefix rounded to float32.
	acp := make([]float32, T)
	prod := 1.0
	for i, b := range betas {
		prod *= float64(1 - b)
		acp[i] = float32(prod)
	}
	final := acp[0]
	if cfg.SetAlphaToOne {
		final = 1
	}
	return &DDIM{cfg: cfg, betas: betas, alphasCumprod: acp, finalAlpha: final}, nil
}

// cosineBetas is diffusers' betas_for_alpha_bar (GLIDE's cosine schedule,
// max_beta 0.999), computed in float64 like the Python and stored as float32.
func cosineBetas(T int) []float32 {
	alphaBar := func(t float64) float64 {
		c := math.Cos((t + 0.008) / 1.008 * math.Pi / 2)
		return c * c
	}
	betas := make([]float32, T)
	for i := range betas {
		t1 := float64(i) / float64(T)
		t2 := float64(i+1) / float64(T)
		betas[i] = float32(math.Min(1-alphaBar(t2)/alphaBar(t1), 0.999))
	}
	return betas
}

// Config returns the configuration the schedule was built from.
func (s *DDIM) Config() Config { return s.cfg }

// AlphasCumprod returns a copy of alphas_cumprod (length T).
func (s *DDIM) AlphasCumprod() []float32 { return append([]float32(nil), s.alphasCumprod...) }

// AlphaCumprod is alphas_cumprod[t] for 0 <= t < T, and the final alpha for
// t < 0 (the convention of the DDIM step: "no previous timestep").
func (s *DDIM) AlphaCumprod(t int) (float32, error) {
	switch {
	case t < 0:
		return s.finalAlpha, nil
	case t >= len(s.alphasCumprod):
		return 0, fmt.Errorf("%w: timestep %d, num_train_timesteps is %d", ErrTimestep, t, len(s.alphasCumprod))
	}
	return s.alphasCumprod[t], nil
}

// Timesteps is set_timesteps(n).timesteps: n timesteps in descending order,
// spaced as the config's timestep_spacing says:
//
//	leading:  t_i = (n-1-i) * (T//n) + steps_offset
//	trailing: round(arange(T, 0, -T/n)) - 1
//	linspace: round(linspace(0, T-1, n)), reversed
//
// n must be in [1, T], and every timestep must land in [0, T).
func (s *DDIM) Timesteps(n int) ([]int, error) {
	T := s.cfg.NumTrainTimesteps
	if n < 1 || n > T {
		return nil, fmt.Errorf("%w: %d inference steps, want 1 to num_train_timesteps (%d)", ErrTimestep, n, T)
	}
	var ts []int
	switch s.cfg.TimestepSpacing {
	case "leading":
		ratio := T / n
		ts = make([]int, n)
		for i := range ts {
			ts[i] = (n-1-i)*ratio + s.cfg.StepsOffset
		}
	case "trailing":
		// np.arange(T, 0, -ratio) with a float ratio: its length is
		// ceil(T/ratio); numpy stores start and start+step, then fills
		// start + i*delta, delta = (start+step)-start. That formula gives
		// the first two as well: delta is exact (Sterbenz; start is the
		// integer T), so start + 1*delta is start+step again.
		ratio := float64(T) / float64(n)
		start, step := float64(T), -ratio
		length := int(math.Ceil((0 - start) / step))
		delta := (start + step) - start
		ts = make([]int, length)
		for i := range ts {
			ts[i] = int(math.RoundToEven(start+float64(i)*delta)) - 1
		}
	case "linspace":
		// np.linspace(0, T-1, n): i*step + 0, the last one exactly T-1
		// (n = 1: just 0).
		ts = make([]int, n)
		if n > 1 {
			step := float64(T-1) / float64(n-1)
			for i := range n - 1 {
				ts[n-1-i] = int(math.RoundToEven(float64(i) * step))
			}
			ts[0] = T - 1
		}
	}
	for _, t := range ts {
		if t < 0 || t >= T {
			return nil, fmt.Errorf("%w: %d inference steps with %s spacing and steps_offset %d give timestep %d, outside [0, %d)",
				ErrTimestep, n, s.cfg.TimestepSpacing, s.cfg.StepsOffset, t, T)
		}
	}
	return ts, nil
}

// Schedule is the DDIM sampler after set_timesteps(n): its timesteps and the
// step rule, which moves from t to t - T//n.
type Schedule struct {
	ddim      *DDIM
	n         int
	timesteps []int
}

// Schedule is set_timesteps(n).
func (s *DDIM) Schedule(n int) (*Schedule, error) {
	ts, err := s.Timesteps(n)
	if err != nil {
		return nil, err
	}
	return &Schedule{ddim: s, n: n, timesteps: ts}, nil
}

// Timesteps returns a copy of the descending timesteps.
func (p *Schedule) Timesteps() []int { return append([]int(nil), p.timesteps...) }

// PrevTimestep is the timestep a DDIM step from t lands on: t - T//n
// (negative after the last step: then a_{t-1} is the final alpha).
func (p *Schedule) PrevTimestep(t int) int { return t - p.ddim.cfg.NumTrainTimesteps/p.n }

// Step is DDIMScheduler.step(model_output, t, x).prev_sample with eta = 0:
// the deterministic DDIM update (paper eq. 12 with sigma_t = 0) from
// timestep t to t_prev = t - T//n. modelOutput is eps, v or x0 as the
// config's prediction_type says. The result is a new slice.
//
//  1. t_prev = t - T//n
//  2. a_t = alphas_cumprod[t]; a_prev = alphas_cumprod[t_prev], or the final
//     alpha when t_prev < 0; b_t = 1 - a_t
//  3. predicted x0 and eps (eq. 12's "predicted x0"):
//     epsilon: x0 = (x - sqrt(b_t) eps) / sqrt(a_t)
//     v:       x0 = sqrt(a_t) x - sqrt(b_t) v;  eps = sqrt(a_t) v + sqrt(b_t) x
//     sample:  x0 = model output;  eps = (x - sqrt(a_t) x0) / sqrt(b_t)
//  4. clip x0 to [-clip_sample_range, clip_sample_range] if clip_sample
//  5. sigma_t = eta * sqrt(variance) = 0 (eq. 16), so
//  6. direction = sqrt(1 - a_prev - sigma_t^2) eps = sqrt(1 - a_prev) eps
//  7. x_prev = sqrt(a_prev) x0 + direction
func (p *Schedule) Step(modelOutput []float32, t int, x []float32) ([]float32, error) {
	return p.ddim.StepTo(modelOutput, t, p.PrevTimestep(t), x)
}

// StepTo is Step from timestep t to an explicit prevT (negative: the final
// alpha), for walks that are not evenly spaced (see PlanInversion).
func (s *DDIM) StepTo(modelOutput []float32, t, prevT int, x []float32) ([]float32, error) {
	return s.step(modelOutput, t, prevT, x, s.cfg.PredictionType == "epsilon")
}

// step is StepTo, reading the model output as eps when isEps, else as the
// config's v or x0.
func (s *DDIM) step(modelOutput []float32, t, prevT int, x []float32, isEps bool) ([]float32, error) {
	if err := s.check(t, modelOutput, x, "ddim step: model output", "sample"); err != nil {
		return nil, err
	}
	aPrev, err := s.AlphaCumprod(prevT)
	if err != nil {
		return nil, err
	}
	aT := s.alphasCumprod[t]
	if isEps {
		return s.moveEps(modelOutput, x, aT, aPrev), nil
	}
	eps, x0 := s.predict(modelOutput, x, aT)
	s.clip(x0)
	return s.combine(x0, eps, aPrev), nil
}

// InvertStep is one step of TokenFlow's DDIM inversion (preprocess.py
// ddim_inversion), walking the timesteps upwards: z holds the latent at the
// noise level of the previously visited timestep prevT (prevT < 0 on the
// first step, meaning the final alpha), modelOutput is the UNet's output for
// (z, t), and the result is the latent at timestep t. It is Step's update
// with the two noise levels swapped:
//
//  1. a_t = alphas_cumprod[t]; a_prev = alphas_cumprod[prevT], or the final
//     alpha when prevT < 0
//  2. eps from the model output, read at the model's timestep t (epsilon:
//     as is; v: eps = sqrt(a_t) v + sqrt(1-a_t) z; sample: eps =
//     (z - sqrt(a_t) x0) / sqrt(1-a_t)). TokenFlow only defines epsilon;
//     the other two are this package's extension. Converting at a_t, the
//     level of the timestep the model is told, gives the eps an epsilon
//     model would: the inversion of a v model is then TokenFlow's own.
//     (diffusers' DDIMInverseScheduler converts at z's level a_prev
//     instead; the two differ by one step's change of noise level.)
//  3. x0 = (z - sqrt(1 - a_prev) eps) / sqrt(a_prev)    (eq. 12's x0 at a_prev),
//     clipped if clip_sample
//  4. z_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps            (eq. 12 towards a_t)
func (s *DDIM) InvertStep(modelOutput []float32, t, prevT int, z []float32) ([]float32, error) {
	// Epsilon reads the output at the model's timestep t (step 2).
	eps, err := s.Epsilon(modelOutput, z, t)
	if err != nil {
		return nil, err
	}
	if prevT >= t {
		return nil, fmt.Errorf("%w: inversion from timestep %d to %d does not go upwards", ErrTimestep, prevT, t)
	}
	aPrev, err := s.AlphaCumprod(prevT)
	if err != nil {
		return nil, err
	}
	return s.moveEps(eps, z, aPrev, s.alphasCumprod[t]), nil
}

// AddNoise is add_noise(x0, eps, t): the forward process q(x_t | x0),
// sqrt(a_t) x0 + sqrt(1 - a_t) eps.
func (s *DDIM) AddNoise(x0, eps []float32, t int) ([]float32, error) {
	return s.noising(t, x0, eps, "add noise: sample", "noise", func(mu, sigma, x0, eps float32) float32 {
		return float32(mu*x0) + float32(sigma*eps)
	})
}

// NoiseFromSample inverts AddNoise for eps: (x_t - sqrt(a_t) x0) /
// sqrt(1 - a_t). TokenFlow's get_ddim_eps uses it to recover the noise of the
// most-inverted latent before re-noising x0 to the first editing timestep.
func (s *DDIM) NoiseFromSample(xt, x0 []float32, t int) ([]float32, error) {
	return s.noising(t, xt, x0, "noise from sample: noisy sample", "original", func(mu, sigma, xt, x0 float32) float32 {
		return (xt - float32(mu*x0)) / sigma
	})
}

// noising checks t, a and b as check does, then applies f to each pair of
// their values with the forward process's coefficients at t: mu =
// sqrt(a_t) for the sample, sigma = sqrt(1 - a_t) for the noise.
func (s *DDIM) noising(t int, a, b []float32, aName, bName string, f func(mu, sigma, a, b float32) float32) ([]float32, error) {
	if err := s.check(t, a, b, aName, bName); err != nil {
		return nil, err
	}
	at := s.alphasCumprod[t]
	mu, sigma := sqrt32(at), sqrt32(1-at)
	out := make([]float32, len(a))
	for i := range out {
		out[i] = f(mu, sigma, a[i], b[i])
	}
	return out, nil
}

// check checks that t is a timestep and that a and b, named so in the
// error, have one length.
func (s *DDIM) check(t int, a, b []float32, aName, bName string) error {
	if t < 0 || t >= s.cfg.NumTrainTimesteps {
		return fmt.Errorf("%w: timestep %d, want 0 <= t < num_train_timesteps (%d)", ErrTimestep, t, s.cfg.NumTrainTimesteps)
	}
	if len(a) != len(b) {
		return fmt.Errorf("%s has %d values, %s %d", aName, len(a), bName, len(b))
	}
	return nil
}

// moveEps is the epsilon form: x0 = (x - sqrt(1-aFrom) eps)/sqrt(aFrom),
// clipped if configured, then sqrt(aTo) x0 + sqrt(1-aTo) eps. The float32
// operation order is diffusers' (and TokenFlow's inversion's). The caller
// has checked the lengths.
func (s *DDIM) moveEps(eps, x []float32, aFrom, aTo float32) []float32 {
	sqrtA, sqrtB := sqrt32(aFrom), sqrt32(1-aFrom)
	x0 := make([]float32, len(x))
	for i := range x0 {
		x0[i] = (x[i] - float32(sqrtB*eps[i])) / sqrtA
	}
	s.clip(x0)
	return s.combine(x0, eps, aTo)
}

// combine is steps 6-7: sqrt(a) x0 + sqrt(1 - a - 0) eps, in place over x0.
func (s *DDIM) combine(x0, eps []float32, a float32) []float32 {
	sqrtA := sqrt32(a)
	dir := sqrt32(1 - a - 0) // 1 - a_prev - std_dev_t**2 with eta = 0
	for i := range x0 {
		x0[i] = float32(sqrtA*x0[i]) + float32(dir*eps[i])
	}
	return x0
}

// predict turns a v_prediction or sample model output at noise level a
// into (eps, x0) (step 3); the caller has checked the lengths.
func (s *DDIM) predict(out, x []float32, a float32) (eps, x0 []float32) {
	sqrtA, sqrtB := sqrt32(a), sqrt32(1-a)
	eps = make([]float32, len(x))
	x0 = make([]float32, len(x))
	if s.cfg.PredictionType == "v_prediction" {
		for i := range x {
			x0[i] = float32(sqrtA*x[i]) - float32(sqrtB*out[i])
			eps[i] = float32(sqrtA*out[i]) + float32(sqrtB*x[i])
		}
		return eps, x0
	}
	for i := range x { // sample
		x0[i] = out[i]
		eps[i] = (x[i] - float32(sqrtA*out[i])) / sqrtB
	}
	return eps, x0
}

func (s *DDIM) clip(x0 []float32) {
	if !s.cfg.ClipSample {
		return
	}
	r := float32(s.cfg.ClipSampleRange)
	for i, v := range x0 {
		x0[i] = min(max(v, -r), r)
	}
}

// Epsilon is the noise prediction eps that a model output at timestep t on
// the sample x stands for (step 3 of Step): for epsilon models the output
// itself (the same slice, not a copy, so epsilon results are unchanged bit
// for bit); for v-prediction eps = sqrt(a_t) v + sqrt(1-a_t) x; for sample
// prediction eps = (x - sqrt(a_t) x0) / sqrt(1-a_t). a_t is the noise level
// of the timestep the model was given, whatever x's own noise level: the
// model predicts relative to the timestep it is told, so this is the eps an
// epsilon model trained alike would give for (x, t).
func (s *DDIM) Epsilon(modelOutput, x []float32, t int) ([]float32, error) {
	if err := s.check(t, modelOutput, x, "ddim step: model output", "sample"); err != nil {
		return nil, err
	}
	if s.cfg.PredictionType == "epsilon" {
		return modelOutput, nil
	}
	eps, _ := s.predict(modelOutput, x, s.alphasCumprod[t])
	return eps, nil
}

// StepEpsilon is Step given the noise prediction itself (from Epsilon)
// rather than the model's output: the epsilon form of the DDIM update,
// whatever the model predicts. For epsilon models it is Step, bit for bit.
// The edit uses it to apply classifier-free guidance in epsilon space.
func (p *Schedule) StepEpsilon(eps []float32, t int, x []float32) ([]float32, error) {
	return p.ddim.step(eps, t, p.PrevTimestep(t), x, true)
}
