#!/usr/bin/env python3
"""Summarise ONNX Runtime profiles written with TOKENFLOW_ORT_PROFILE=DIR.

usage: scripts/ortprofile.py DIR [LABELS]

For each session's trace in DIR: model loading and session initialisation
time, its runs, and the operators taking the most kernel time, with the achieved GFLOP/s of the
multiply-add operators (Conv, Gemm, MatMul, FusedMatMul; FLOPs counted from
the shapes the profile records). LABELS names
the TokenFlow UNet's runs in order, comma-separated (e.g. inversion,keyframe,
propagation,propagation): runs with the same label are summed together.
See docs/performance.md.
"""
import json, sys, collections, os, glob


def node_flops(args):
    """Multiply-add FLOPs (2 per multiply-add) of a Conv, Gemm, MatMul or
    FusedMatMul node from the shapes the profile records; 0 for others."""
    ins = [list(x.values())[0] for x in args.get('input_type_shape', [])]
    outs = [list(x.values())[0] for x in args.get('output_type_shape', [])]
    if not ins or not outs:
        return 0
    out = 1
    for v in outs[0]:
        out *= v
    op = args.get('op_name')
    if op in ('Conv', 'FusedConv') and len(ins) > 1:
        per = 1
        for v in ins[1][1:]:  # weight [Cout, Cin/group, kh, kw]
            per *= v
        return 2 * out * per
    if op == 'Gemm':
        return 2 * out * ins[0][1]  # A [M, K] (transA is not used)
    if op in ('MatMul', 'FusedMatMul'):
        return 2 * out * ins[0][-1]  # A [..., M, K] (transA is not used)
    return 0


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
    flops = collections.Counter()
    for i, r in enumerate(runs):
        lab = labels[i] if name_is_unet and len(runs) == len(labels) else 'run'
        g = groups.setdefault(lab, {'runs': 0, 'dur': 0.0, 'ops': collections.Counter(), 'kernel': 0.0, 'flops': collections.Counter()})
        g['runs'] += 1
        g['dur'] += r['dur'] / 1e6
        lo, hi = r['ts'], r['ts'] + r['dur']
        for n in nodes:
            if lo <= n['ts'] <= hi:
                g['ops'][n['args'].get('op_name', '?')] += n['dur'] / 1e6
                g['kernel'] += n['dur'] / 1e6
                g['flops'][n['args'].get('op_name', '?')] += node_flops(n['args'])
    for lab, g in groups.items():
        print(f"  {lab}: {g['runs']} runs, {g['dur']:.2f}s, of which kernels {g['kernel']:.2f}s ({100*g['kernel']/max(g['dur'],1e-9):.0f}%)")
        for op, t in g['ops'].most_common(8):
            rate = f"  {g['flops'][op]/1e9/max(t,1e-9):6.1f} GFLOP/s" if g['flops'][op] else ''
            print(f"    {op:28s} {t:8.2f}s {100*t/max(g['kernel'],1e-9):5.1f}%{rate}")
        fl, ft = sum(g['flops'].values()), sum(g['ops'][op] for op in g['flops'] if g['flops'][op])
        if fl:
            print(f"    multiply-add operators: {fl/1e9:.0f} GFLOP in {ft:.2f}s ({fl/1e9/max(ft,1e-9):.1f} GFLOP/s); whole runs {fl/1e9/max(g['dur'],1e-9):.1f} GFLOP/s")
