"""A small spiking conv net on digits (1x8x8 images), verified exactly on Lava AND on lava-dl netx.

What it shows:

- a float snnTorch conv net ``Conv2d -> Leaky -> AvgPool2d -> Conv2d -> Leaky -> Flatten ->
  Linear -> Leaky``. On Loihi a pool is part of the next synapse (sum pooling of spikes), so it
  must sit AFTER a neuron and before the next synapse; ``prepare_qat`` swaps it for
  ``QuantSumPool2d`` and folds the average's ``1/k**2`` into the next synapse's weights;
- ``prepare_qat`` + quantization-aware fine-tuning (Lava's Conv has no weight exponent, so each
  conv's neuron scale is chosen to fit the 8-bit mantissas);
- ``export`` to NIR and ``save_netx`` to lava-dl's netx HDF5;
- ``verify`` on both backends: Lava processes built by snntorch-loihi (``backend="lava"``) and
  the netx file loaded by lava-dl's own ``netx.hdf5.Network`` (``backend="netx"``): spikes,
  ``u`` and ``v`` of every layer identical at every step.

Run it::

    python examples/conv_net.py [--quick] [--out out/conv_net]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import torch
from torch import nn

__all__ = ["build_float_net", "main"]


def build_float_net(beta: float = 0.85) -> nn.Sequential:
    """Conv(1->8) + Leaky + AvgPool(2) + Conv(8->16) + Leaky + Flatten + Linear(256->10) + Leaky."""
    import snntorch as snn

    def leaky() -> snn.Leaky:
        return snn.Leaky(beta=beta, init_hidden=True, reset_mechanism="zero")

    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), leaky(),          # (8, 8, 8)
        nn.AvgPool2d(2),                                  # (8, 4, 4): after a neuron
        nn.Conv2d(8, 16, 3, padding=1), leaky(),         # (16, 4, 4)
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10), leaky(),
    )


def main(quick: bool = False, out: str | Path = "out/conv_net") -> dict:
    """Train, quantize, fine-tune, export (NIR + netx), verify on Lava and netx; print a table.

    Args:
        quick: fewer epochs and samples (a smoke run for the tests).
        out: folder for ``conv.nir``, ``conv_netx.h5``, ``parity_lava.png``, ``parity_netx.png``.

    Returns:
        ``{"accuracy": {stage: fraction}, "exact": {"lava": bool, "netx": bool},
        "registers": {layer: {...}}, "files": [paths], "seconds": float}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import snntorch.functional as SF
    from tqdm.auto import tqdm

    import snntorch_loihi as sl
    from snntorch_loihi.data import digits_spikes
    from snntorch_loihi.training import accuracy, train_epoch

    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    num_steps = 12 if quick else 20
    float_epochs, qat_epochs = (3, 1) if quick else (10, 3)
    n_train, n_test = (384, 180) if quick else (None, None)
    n_verify = 2 if quick else 8
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    x_tr, y_tr, x_te, y_te = digits_spikes(num_steps, seed=0)
    if quick:  # a slice of each set (the quantized conv forward is the slow part on a CPU)
        x_tr, y_tr, x_te, y_te = x_tr[:, :n_train], y_tr[:n_train], x_te[:, :n_test], y_te[:n_test]
    x_tr = x_tr.reshape(num_steps, -1, 1, 8, 8)  # (T, N, C, H, W): the images as 1x8x8
    x_te = x_te.reshape(num_steps, -1, 1, 8, 8)
    loss_fn = SF.ce_rate_loss()
    batches = -(-x_tr.shape[1] // 64)

    net = build_float_net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    with tqdm(total=float_epochs * batches, desc="float training") as bar:
        for _ in range(float_epochs):
            train_epoch(net, x_tr, y_tr, opt, loss_fn, generator=gen, progress=bar)
    acc_float = accuracy(net, x_te, y_te)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # post-training quantization notes, per layer
        qnet = sl.prepare_qat(net)
    steps = num_steps + sl.delay_steps(qnet)  # 3 synapse layers: 3 steps of delay
    acc_ptq = accuracy(qnet, x_te, y_te, steps=steps)
    opt = torch.optim.Adam(qnet.parameters(), lr=5e-4)
    with tqdm(total=qat_epochs * batches, desc="QAT fine-tuning") as bar:
        for _ in range(qat_epochs):
            train_epoch(qnet, x_tr, y_tr, opt, loss_fn, steps=steps, generator=gen, progress=bar)
    sl.freeze_calibration(qnet)
    acc_qat = accuracy(qnet, x_te, y_te, steps=steps)

    nir_path, netx_path = out / "conv.nir", out / "conv_netx.h5"
    graph = sl.export(qnet, x_te[0, :1], path=nir_path)
    sl.save_netx(graph, netx_path)
    registers = {name: {k: v for k, v in node.metadata["loihi"].items()
                        if k in ("du", "dv", "vth", "scale_exp", "weight_exp", "num_weight_bits")}
                 for name, node in graph.nodes.items() if "loihi" in node.metadata}

    x_v = x_te[:, :n_verify]
    reports = {}
    for backend in ("lava", "netx"):
        reports[backend] = sl.verify(qnet, x_v, backend=backend, float_drift=False)
        reports[backend].plot(out / f"parity_{backend}.png")

    result = {
        "accuracy": {"float snnTorch": acc_float, "post-training quantized (torch)": acc_ptq,
                     "QAT fine-tuned (torch)": acc_qat},
        "exact": {b: r.exact for b, r in reports.items()},
        "registers": registers,
        "files": [str(p) for p in (nir_path, netx_path, out / "parity_lava.png",
                                   out / "parity_netx.png")],
        "seconds": time.perf_counter() - t_start,
    }
    print()
    print("| stage | test accuracy |")
    print("|---|---|")
    for k, v in result["accuracy"].items():
        print(f"| {k} | {100 * v:.1f} % |")
    print("\n| NIR node | Loihi registers |")
    print("|---|---|")
    for name, regs in registers.items():
        print(f"| {name} | {', '.join(f'{k}={v}' for k, v in regs.items())} |")
    for backend, rep in reports.items():
        print(f"\nbackend={backend!r}: {'EXACT' if rep.exact else 'NOT exact'} "
              f"({n_verify} samples x {rep.steps} steps, s/u/v of every layer)")
        print(rep)
    print(f"Files: {', '.join(result['files'])}  ({result['seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and samples")
    parser.add_argument("--out", default="out/conv_net", help="output folder")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
