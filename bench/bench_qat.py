"""Training-step time of float snnTorch, our float and quantized modes, and lava-dl slayer.

Same 100-128-10 network, batch 64, T = 25, forward + backward (+ zero_grad and the state reset),
median of repeated steps (the variants interleaved, so a change of machine load hits all
alike), printed as ratios to float snnTorch. Run: ``.venv/bin/python bench/bench_qat.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import snntorch as snn
import torch
from snntorch import utils
from torch import nn

from snntorch_loihi.qat import prepare_qat

__all__ = ["main"]


def _float_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(100, 128), snn.Leaky(0.9, init_hidden=True),
                         nn.Linear(128, 10), snn.Leaky(0.9, init_hidden=True))


def _step_fn(net: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        utils.reset(net)
        out = torch.stack([net(x[t]) for t in range(x.shape[0])])
        net.zero_grad(set_to_none=True)
        out.sum().backward()
    return step


def _slayer_fn(x: torch.Tensor) -> Callable[[], None] | None:
    try:
        from lava.lib.dl.slayer.block import cuba
    except Exception:  # noqa: BLE001 - optional dependency
        return None
    params = dict(threshold=1.0, current_decay=1.0, voltage_decay=0.1, requires_grad=False)
    torch.manual_seed(0)
    net = nn.Sequential(cuba.Dense(params, 100, 128), cuba.Dense(params, 128, 10))
    xs = x.permute(1, 2, 0).contiguous()           # (N, C, T)

    def step() -> None:
        out = net(xs)
        net.zero_grad(set_to_none=True)
        out.sum().backward()
    return step


def _time_once(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> list[dict]:
    """Print the table; returns rows ``{benchmark, measure, value, ratio}`` for run_all.py."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=60, help="timed steps per variant")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = (torch.rand(25, 64, 100) < 0.3).float()
    ref = _float_net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours_float = prepare_qat(ref, quantize=False)
        ours_quant = prepare_qat(ref, quantize=True)
    fns: dict[str, Callable[[], None] | None] = {
        "snnTorch float (Leaky x2)": _step_fn(ref, x),
        "snntorch-loihi float mode": _step_fn(ours_float, x),
        "snntorch-loihi quantized mode": _step_fn(ours_quant, x),
        "lava-dl slayer cuba.Dense x2": _slayer_fn(x),
    }
    samples: dict[str, list[float]] = {k: [] for k, f in fns.items() if f is not None}
    for name in samples:                          # warm-up
        for _ in range(3):
            fns[name]()  # type: ignore[misc]
    for _ in range(args.repeats):                 # interleaved: load changes hit all alike
        for name in samples:
            samples[name].append(_time_once(fns[name]))  # type: ignore[arg-type]
    med = {k: statistics.median(v) for k, v in samples.items()}
    base = med["snnTorch float (Leaky x2)"]
    print(f"training step, 100-128-10, batch 64, T=25, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    for name, t in med.items():
        print(f"  {name:32s} {t * 1e3:8.2f} ms   {t / base:5.2f}x")
    for name, f in fns.items():
        if f is None:
            print(f"  {name:32s} unavailable (lava-dl not installed)")
    bench = "training step (fwd+bwd), 100-128-10, batch 64, T=25"
    return [dict(benchmark=bench, measure=name, value=f"{t * 1e3:.2f} ms",
                 ratio=f"{t / base:.2f}x snnTorch") for name, t in med.items()]


if __name__ == "__main__":
    main()
