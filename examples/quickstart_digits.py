"""Quick start: a float snnTorch MLP on digits -> Loihi arithmetic -> NIR -> Lava, exactly.

What it shows:

1. train a small float snnTorch MLP (Linear + Leaky, twice) on scikit-learn's 8x8 digits,
   rate-coded into spikes (:func:`snntorch_loihi.data.digits_spikes`, no download);
2. ``prepare_qat``: a copy that computes with Loihi 2's integer registers in its forward pass
   (accuracy right after conversion = post-training quantization);
3. quantization-aware fine-tuning (straight-through gradients), then ``freeze_calibration``;
4. ``export`` to a NIR graph carrying the integer registers;
5. ``verify``: the torch forward against Lava's bit-accurate ``fixed_pt`` simulation, every
   layer's spikes, ``u`` and ``v`` at every step (``report.exact``), and the Lava accuracy on
   a slice of the test set.

Run it::

    python examples/quickstart_digits.py [--quick] [--out out/quickstart_digits]

``--quick`` trains for fewer epochs on fewer samples (for the tests; about half a minute).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import torch
from torch import nn

__all__ = ["build_float_net", "main"]


def build_float_net(hidden: int = 64, beta: float = 0.9) -> nn.Sequential:
    """Linear(64, hidden) + Leaky + Linear(hidden, 10) + Leaky, zero reset (Loihi's)."""
    import snntorch as snn

    return nn.Sequential(
        nn.Linear(64, hidden),
        snn.Leaky(beta=beta, init_hidden=True, reset_mechanism="zero"),
        nn.Linear(hidden, 10),
        snn.Leaky(beta=beta, init_hidden=True, reset_mechanism="zero"),
    )


def main(quick: bool = False, out: str | Path = "out/quickstart_digits") -> dict:
    """Train, quantize, fine-tune, export and verify; print the table; return the numbers.

    Args:
        quick: fewer epochs and samples (a smoke run for the tests).
        out: folder for ``digits.nir`` and ``parity.png``.

    Returns:
        ``{"accuracy": {stage: fraction}, "exact": bool, "lava_samples": int,
        "lava_mismatches": int, "files": [paths], "seconds": float}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import snntorch.functional as SF
    from tqdm.auto import tqdm

    import snntorch_loihi as sl
    from snntorch_loihi.data import digits_spikes
    from snntorch_loihi.training import accuracy, run_network, spike_count_accuracy, train_epoch

    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    num_steps = 15 if quick else 25
    float_epochs, qat_epochs = (5, 1) if quick else (15, 3)
    n_train = 400 if quick else None
    n_lava = 16 if quick else 128
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    x_tr, y_tr, x_te, y_te = digits_spikes(num_steps, seed=0)
    if n_train is not None:
        x_tr, y_tr = x_tr[:, :n_train], y_tr[:n_train]
    loss_fn = SF.ce_rate_loss()
    batches = -(-x_tr.shape[1] // 64)

    # 1. float snnTorch training
    net = build_float_net()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    with tqdm(total=float_epochs * batches, desc="float training") as bar:
        for _ in range(float_epochs):
            train_epoch(net, x_tr, y_tr, opt, loss_fn, generator=gen, progress=bar)
    acc_float = accuracy(net, x_te, y_te)

    # 2. Loihi arithmetic in the forward pass (zero reset already: no semantics warning here)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # post-training quantization notes, per layer
        qnet = sl.prepare_qat(net)
    steps = num_steps + sl.delay_steps(qnet)  # one step of delay per synapse layer
    acc_ptq = accuracy(qnet, x_te, y_te, steps=steps)

    # 3. quantization-aware fine-tuning
    opt = torch.optim.Adam(qnet.parameters(), lr=5e-4)
    with tqdm(total=qat_epochs * batches, desc="QAT fine-tuning") as bar:
        for _ in range(qat_epochs):
            train_epoch(qnet, x_tr, y_tr, opt, loss_fn, steps=steps, generator=gen, progress=bar)
    sl.freeze_calibration(qnet)
    acc_qat = accuracy(qnet, x_te, y_te, steps=steps)

    # 4. NIR graph with the integer registers
    nir_path = out / "digits.nir"
    graph = sl.export(qnet, x_te[0, :1], path=nir_path)

    # 5. Lava: full parity report on a few samples, then the output spikes of a test slice
    report = sl.verify(qnet, x_te[:, :4], float_drift=False)
    report.plot(out / "parity.png")
    x_l, y_l = x_te[:, :n_lava], y_te[:n_lava]
    with sl.to_lava(graph) as lava_net:
        lava_spk = lava_net(x_l)
    with torch.no_grad():
        torch_spk = run_network(qnet.eval(), x_l, steps)
    mismatches = int((lava_spk[: torch_spk.shape[0]] != torch_spk).sum())
    acc_lava = spike_count_accuracy(lava_spk, y_l)
    acc_torch_slice = spike_count_accuracy(torch_spk, y_l)

    result = {
        "accuracy": {
            "float snnTorch": acc_float,
            "post-training quantized (torch)": acc_ptq,
            "QAT fine-tuned (torch)": acc_qat,
            f"QAT fine-tuned (torch, first {n_lava} test samples)": acc_torch_slice,
            f"Lava fixed_pt (first {n_lava} test samples)": acc_lava,
        },
        "exact": report.exact,
        "lava_samples": n_lava,
        "lava_mismatches": mismatches,
        "files": [str(nir_path), str(out / "parity.png")],
        "seconds": time.perf_counter() - t_start,
    }
    print()
    print("| stage | test accuracy |")
    print("|---|---|")
    for k, v in result["accuracy"].items():
        print(f"| {k} | {100 * v:.1f} % |")
    print(f"\nLava vs torch output spikes on {n_lava} samples: {mismatches} mismatches; "
          f"parity report (4 samples, s/u/v of every layer): "
          f"{'EXACT' if report.exact else 'NOT exact'}")
    print(report)
    print(f"Files: {', '.join(result['files'])}  ({result['seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and samples")
    parser.add_argument("--out", default="out/quickstart_digits", help="output folder")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
