"""What verifying a network costs: torch quantized forward vs Lava, compile once vs per sample.

Network 100-128-10 (Linear + QuantAwareLeaky, x2), 100 samples x 100 input steps (+2 to flush),
rate-coded spikes p = 0.2. Measured in one run:

1. the quantization-aware torch forward in quantized mode, the whole batch at once;
2. Lava ``fixed_pt``, ONE compiled network for all samples (``LavaNetwork``, spikes only), with
   its compile/start time separately; parity of its spikes with the torch forward is checked;
3. Lava compiled once PER SAMPLE: measured on a few samples and extrapolated to 100 (said so);
4. optionally (``--verify N``) ``verify()`` end to end on N samples (torch + Lava s, u, v).

Lava's lock-step simulation runs one OS process per Lava process: on a loaded machine (other
jobs on the same cores) its steps/s drop several-fold; the load average is printed.

Run: ``.venv/bin/python bench/bench_verify.py [--samples 100] [--per-sample 3] [--verify 10]``.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import snntorch as snn
import torch
from torch import nn


def build(seed: int = 0) -> nn.Module:
    from snntorch_loihi.qat import prepare_qat

    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(100, 128), snn.Leaky(0.9, init_hidden=True, reset_mechanism="zero"),
        nn.Linear(128, 10), snn.Leaky(0.9, init_hidden=True, reset_mechanism="zero"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare_qat(net)


def main(argv: list[str] | None = None) -> list[dict]:
    """Print the table; returns rows ``{benchmark, measure, value, ratio}`` for run_all.py."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--per-sample", type=int, default=3,
                    help="samples measured with one compile each (extrapolated)")
    ap.add_argument("--verify", type=int, default=0,
                    help="also time verify() end to end on this many samples")
    args = ap.parse_args(argv)

    from snntorch_loihi.export import export, from_nir_graph
    from snntorch_loihi.lava.runner import LavaNetwork
    from snntorch_loihi.verify import record_torch, verify

    q = build()
    B, T = args.samples, args.steps
    x = (torch.rand(T, B, 100, generator=torch.Generator().manual_seed(1)) < 0.2).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ir = from_nir_graph(export(q, x[0]))
    steps = T + ir.delay

    t0 = time.perf_counter()
    ref = record_torch(q, x, steps)
    t_torch = time.perf_counter() - t0

    xi = x.to(torch.int64)
    t0 = time.perf_counter()
    with LavaNetwork(ir, record=("s",), steps=steps, chunk=B, progress=False) as ln:
        hw = ln.run(xi)  # compile + start + all samples back to back
    t_once = time.perf_counter() - t0
    same = all(torch.equal(ref[k].s, hw[k].s) for k in range(len(ir.layers)))

    n = max(1, args.per_sample)
    t0 = time.perf_counter()
    for b in range(n):
        with LavaNetwork(ir, record=("s",), steps=steps, chunk=1, progress=False) as one:
            one.run(xi[:, b:b + 1])
    t_per = (time.perf_counter() - t0) / n
    overhead = t_per - t_once / B  # compile + start + stop of one network, per sample

    t_verify = None
    if args.verify:
        m = min(B, args.verify)
        t0 = time.perf_counter()
        rep = verify(q, x[:, :m], float_drift=False)
        t_verify = time.perf_counter() - t0

    sample_steps = B * steps
    print(f"network 100-128-10, {B} samples x {T} steps (+{ir.delay} flush); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'':48s}{'wall':>9s}{'sample-steps/s':>16s}{'vs torch':>10s}")
    rows = [
        ("torch quantized forward (batched, s/u/v hooks)", t_torch),
        ("Lava fixed_pt, compiled once (incl. compile)", t_once),
        (f"Lava compiled per sample (extrapolated x{B})", t_per * B),
    ]
    for name, t in rows:
        print(f"{name:48s}{t:8.2f}s{sample_steps / t:16,.0f}{t / t_torch:9.0f}x")
    print(f"per-sample compile measured on {n} samples ({t_per:.2f} s each) and extrapolated to "
          f"{B}: {t_per * B / t_once:.1f}x the compile-once run; compile + start + stop of one "
          f"network ~ {overhead:.2f} s.")
    print(f"Lava spikes == torch forward spikes on every layer: {same}")
    if t_verify is not None:
        print(f"verify() end to end on {m} samples (torch + Lava s,u,v): {t_verify:.1f} s, "
              f"exact={rep.exact}")
    bench = f"verify {B} samples x {T} steps, 100-128-10"
    out = [dict(benchmark=bench, measure=name, value=f"{t:.2f} s", ratio=f"{t / t_torch:.0f}x torch")
           for name, t in rows]
    out.append(dict(benchmark=bench, measure="Lava spikes == torch spikes", value=str(same), ratio=""))
    return out


if __name__ == "__main__":
    main()
