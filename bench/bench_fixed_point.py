"""Time steps per second: the torch fixed-point core vs Lava's ``fixed_pt`` CPU simulation.

Same 100-128-10 network (random registers), same inputs; checks that s, u, v are equal.

Run: ``.venv/bin/python bench/bench_fixed_point.py [--samples 64] [--lava-samples 16]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from snntorch_loihi.fixed import simulate, truncate_weights
from snntorch_loihi.ir import LoihiLayer, LoihiNetwork, LoihiNeuron, LoihiSynapse


def make_net(rng: np.random.Generator, sizes=(100, 128, 10)) -> LoihiNetwork:
    layers = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = truncate_weights(torch.from_numpy(rng.integers(-256, 256, (n_out, n_in)))).numpy()
        neuron = LoihiNeuron(
            (n_out,), du=int(rng.integers(0, 4096)), dv=int(rng.integers(0, 4096)),
            vth=int(rng.integers(100, 2000)), bias_mant=rng.integers(-200, 200, n_out),
            bias_exp=rng.integers(0, 4, n_out))
        syn = LoihiSynapse("dense", w, (n_in,), (n_out,), weight_exp=int(rng.integers(-2, 2)))
        layers.append(LoihiLayer(f"l{k}", syn, neuron))
    return LoihiNetwork((sizes[0],), tuple(layers))


def main(argv: list[str] | None = None) -> list[dict]:
    """Print the table; returns rows ``{benchmark, measure, value, ratio}`` for run_all.py."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=64, help="torch batch")
    ap.add_argument("--lava-samples", type=int, default=8, help="samples run through Lava")
    ap.add_argument("--steps", type=int, default=100, help="input steps per sample")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    net = make_net(rng)
    x = torch.from_numpy((rng.random((args.steps, args.samples, 100)) < 0.2).astype(np.int64))
    steps = args.steps + net.delay

    simulate(net, x[:, :2])  # warm-up
    t0 = time.perf_counter()
    ref = simulate(net, x)
    t_torch = time.perf_counter() - t0
    torch_rate = steps * args.samples / t_torch

    from snntorch_loihi.lava import LavaNetwork

    nl = args.lava_samples
    sub = simulate(net, x[:, :nl])
    rows, bad = [], []
    for record in (("s",), ("s", "u", "v")):
        t0 = time.perf_counter()
        with LavaNetwork(net, steps=steps, chunk=nl, record=record, progress=False) as ln:
            ln.start()  # compile and start the runtime
            t1 = time.perf_counter()
            got = ln.run(x[:, :nl])
            t_lava = time.perf_counter() - t1
        t_other = time.perf_counter() - t0 - t_lava
        rows.append((f"Lava fixed_pt ({', '.join(record)})", t_lava, steps * nl / t_lava, t_other))
        bad += [m for m in sub.mismatches(got) if m.split(".")[1] in record]

    spikes = int(ref["l1"].s.sum())
    print(f"network 100-128-10, {steps} steps per sample, {spikes} output spikes (torch batch)")
    print(f"{'backend':<28}{'samples':>8}{'seconds':>10}{'steps/s':>12}")
    print(f"{'torch simulate (batched)':<28}{args.samples:>8}{t_torch:>10.2f}{torch_rate:>12.0f}")
    for name, t_lava, rate, t_other in rows:
        print(f"{name:<28}{nl:>8}{t_lava:>10.2f}{rate:>12.0f}   (+{t_other:.1f} s compile/stop)")
    for name, _, rate, _ in rows:
        print(f"ratio torch / {name}: {torch_rate / rate:.0f}x")
    print("outputs equal (s, u, v, every layer):", "yes" if not bad else f"NO: {bad}")
    if bad:
        raise SystemExit(1)
    bench = f"fixed-point core vs Lava, 100-128-10, {steps} steps"
    out = [dict(benchmark=bench, measure=f"torch simulate (batch {args.samples})",
                value=f"{torch_rate:.0f} steps/s", ratio="1x")]
    out += [dict(benchmark=bench, measure=name, value=f"{rate:.0f} steps/s",
                 ratio=f"torch {torch_rate / rate:.0f}x faster") for name, _, rate, _ in rows]
    out.append(dict(benchmark=bench, measure="outputs equal (s, u, v)", value="yes", ratio=""))
    return out


if __name__ == "__main__":
    main()
