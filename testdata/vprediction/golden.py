#!/usr/bin/env python3
"""Golden values of DDIM with v-prediction, in float64.

Writes golden.json next to this file: python3 golden.py (standard library
only; Python floats are IEEE float64). internal/scheduler's
TestVPredictionGolden compares the float32 scheduler against it.

Independent of the Go code: the schedule and the formulas are written out
here from diffusers v0.20.2 schedulers/scheduling_ddim.py (DDIMScheduler
__init__, set_timesteps and step with prediction_type "v_prediction", eta 0)
and from the DDIM inversion step of TokenFlow's preprocess.py, with the
model output converted to epsilon at the timestep the model was given:

  beta_t  = linspace(sqrt(0.00085), sqrt(0.012), 1000)[t] ** 2   (scaled_linear)
  a_t     = prod_{s<=t} (1 - beta_s); final alpha a_0 (set_alpha_to_one false)
  50 steps, steps_offset 1: timesteps 981, 961, ..., 1; t_prev = t - 20
  eps(v, x, t) = sqrt(a_t) v + sqrt(1 - a_t) x
  x0(v, x, t)  = sqrt(a_t) x - sqrt(1 - a_t) v
  step:    x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps       (clip_sample false)
  invert:  eps = eps(v, z, t); x0 = (z - sqrt(1 - a_prev) eps) / sqrt(a_prev);
           z_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps
  guided:  the pipeline's classifier-free guidance on the model output,
           v = u + 7.5 (c - u), then step (what diffusers does; equal to
           guidance on eps, which is linear in v for a fixed x)

The inputs are float32 values (rounded with struct), so that Go reads them
exactly.
"""
import json
import math
import os
import struct


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def probe(n, seed):
    return [f32(1.3 * math.sin(seed + 0.7 * i)) for i in range(n)]


T = 1000
lo, hi = math.sqrt(0.00085), math.sqrt(0.012)
betas = [(lo + (hi - lo) * i / (T - 1)) ** 2 for i in range(T)]
acp = []
p = 1.0
for b in betas:
    p *= 1.0 - b
    acp.append(p)
final = acp[0]
RATIO = T // 50


def alpha(t):
    return acp[t] if t >= 0 else final


def conv(v, x, t):
    a = alpha(t)
    eps = [math.sqrt(a) * vi + math.sqrt(1 - a) * xi for vi, xi in zip(v, x)]
    x0 = [math.sqrt(a) * xi - math.sqrt(1 - a) * vi for vi, xi in zip(v, x)]
    return eps, x0


def step(v, x, t):
    eps, x0 = conv(v, x, t)
    ap = alpha(t - RATIO)
    return [math.sqrt(ap) * a + math.sqrt(1 - ap) * e for a, e in zip(x0, eps)]


def invert(v, z, prev, t):
    eps, _ = conv(v, z, t)
    ap, at = alpha(prev), alpha(t)
    x0 = [(zi - math.sqrt(1 - ap) * e) / math.sqrt(ap) for zi, e in zip(z, eps)]
    return [math.sqrt(at) * a + math.sqrt(1 - at) * e for a, e in zip(x0, eps)]


N = 16
x, v = probe(N, 0.3), probe(N, 2.1)
u, c = probe(N, 4.4), probe(N, 5.9)
G = 7.5
out = {
    "made_by": "testdata/vprediction/golden.py (python3, float64)",
    "guidance": G,
    "x": x, "v": v, "u": u, "c": c,
    "convert": [], "step": [], "invert": [], "guided_step": [],
}
for t in [1, 21, 261, 501, 761, 981, 999]:
    eps, x0 = conv(v, x, t)
    out["convert"].append({"t": t, "eps": eps, "x0": x0})
for t in [981, 761, 501, 261, 21, 1]:
    out["step"].append({"t": t, "prev_sample": step(v, x, t)})
for prev, t in [(-1, 1), (1, 21), (481, 501), (941, 961), (961, 981)]:
    out["invert"].append({"prev": prev, "t": t, "z": invert(v, x, prev, t)})
for t in [981, 501, 21, 1]:
    guided = [ui + G * (ci - ui) for ui, ci in zip(u, c)]
    out["guided_step"].append({"t": t, "prev_sample": step(guided, x, t)})

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
