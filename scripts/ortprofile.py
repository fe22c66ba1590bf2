#!/usr/bin/env python3
"""Summarise ONNX Runtime profiles written with TOKENFLOW_ORT_PROFILE=DIR.

usage: scripts/ortprofile.py DIR [LABELS]

For each session's trace in DIR: model loading and session initialisation
time, its runs, and the operators taking the most kernel time. LABELS names
the TokenFlow UNet's runs in order, comma-separated (e.g. inversion,keyframe,
propagation,propagation): runs with the same label are summed together.
See docs/performance.md.
"""
import json, sys, collections, os, glob
d = sys.argv[1]
labels = sys.argv[2].split(',') if len(sys.argv) > 2 else []
for f in sorted(glob.glob(os.path.join(d, '*.json'))):
    if os.path.getsize(f) == 0:
        continue
    ev = json.load(open(f))
    name = os.path.basename(f).split('_20')[0]
    sess = [e for e in ev if e.get('cat') == 'Session']
    init = sum(e['dur'] for e in sess if e['name'] == 'session_initialization') / 1e6
    load = sum(e['dur'] for e in sess if e['name'].startswith('model_loading')) / 1e6
    runs = [e for e in sess if e['name'] == 'model_run']
    print(f"== {name}: model loading {load:.2f}s, session initialization {init:.2f}s, {len(runs)} runs, {sum(r['dur'] for r in runs)/1e6:.2f}s in runs")
    # An If node's time includes its branch's nodes, which are listed too:
    # it is left out so that nothing counts twice.
    nodes = [e for e in ev if e.get('cat') == 'Node' and e['name'].endswith('_kernel_time')
             and e['args'].get('op_name') not in ('If', 'Loop', 'Scan')]
    # the TokenFlow UNet's first output is a tokens/<layer> output
    name_is_unet = 'tokens_' in name or 'out_sample' in name
    groups = collections.OrderedDict()
    for i, r in enumerate(runs):
        lab = labels[i] if name_is_unet and len(runs) == len(labels) else 'run'
        g = groups.setdefault(lab, {'runs': 0, 'dur': 0.0, 'ops': collections.Counter(), 'kernel': 0.0})
        g['runs'] += 1
        g['dur'] += r['dur'] / 1e6
        lo, hi = r['ts'], r['ts'] + r['dur']
        for n in nodes:
            if lo <= n['ts'] <= hi:
                g['ops'][n['args'].get('op_name', '?')] += n['dur'] / 1e6
                g['kernel'] += n['dur'] / 1e6
    for lab, g in groups.items():
        print(f"  {lab}: {g['runs']} runs, {g['dur']:.2f}s, of which kernels {g['kernel']:.2f}s ({100*g['kernel']/max(g['dur'],1e-9):.0f}%)")
        for op, t in g['ops'].most_common(8):
            print(f"    {op:28s} {t:8.2f}s {100*t/max(g['kernel'],1e-9):5.1f}%")
