"""The end-to-end demo: train on digits, quantize, fine-tune, export, run in Lava, prove parity.

Run it with ``make demo`` or ``snntorch-loihi demo [--out DIR]``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

__all__ = ["DemoConfig", "run_demo"]


@dataclass
class DemoConfig:
    """Settings of the demo; the defaults finish in a few minutes on 2 CPU cores."""

    out: Path = Path("out/demo")
    num_steps: int = 25
    hidden: int = 128
    beta: float = 0.9
    float_epochs: int = 20
    qat_epochs: int = 4
    lr: float = 2e-3
    qat_lr: float = 5e-4
    weight_bits: int = 8
    low_bits: int | None = 2  # also show the regime where naive conversion loses (None: skip)
    low_bits_epochs: int = 6
    low_bits_lava_samples: int = 100
    lava_samples: int | None = None  # None: the whole test set
    seed: int = 0
    progress: bool = True
    timings: dict[str, float] = field(default_factory=dict)


def build_float_net(cfg: DemoConfig) -> nn.Sequential:
    """The digits MLP of BASELINES.md: Linear(64, H) + Leaky + Linear(H, 10) + Leaky."""
    import snntorch as snn

    return nn.Sequential(
        nn.Linear(64, cfg.hidden),
        snn.Leaky(beta=cfg.beta, init_hidden=True, reset_mechanism="zero"),
        nn.Linear(cfg.hidden, 10),
        snn.Leaky(beta=cfg.beta, init_hidden=True, reset_mechanism="zero"),
    )


def run_demo(cfg: DemoConfig | None = None) -> dict:
    """Run every stage, print the table, write NIR, netx and figures into ``cfg.out``.

    Returns:
        A dict with the accuracies, parity counts and timings (the printed table's content).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import snntorch.functional as SF
    from tqdm.auto import tqdm

    import snntorch_loihi as sl

    from .data import digits_spikes
    from .training import accuracy, run_network, spike_count_accuracy, train_epoch

    cfg = cfg or DemoConfig()
    cfg.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    times = cfg.timings
    x_tr, y_tr, x_te, y_te = digits_spikes(cfg.num_steps, seed=cfg.seed)
    loss_fn = SF.ce_rate_loss()
    batches = -(-x_tr.shape[1] // 64)

    # 1. float snnTorch training
    t0 = time.perf_counter()
    net = build_float_net(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    curve: dict[str, list[float]] = {"float": [], "qat": []}
    with tqdm(total=cfg.float_epochs * batches, desc="float training", disable=not cfg.progress) as bar:
        for _ in range(cfg.float_epochs):
            train_epoch(net, x_tr, y_tr, opt, loss_fn, generator=gen, progress=bar)
            curve["float"].append(accuracy(net, x_te, y_te))
    acc_float = curve["float"][-1]
    times["float training"] = time.perf_counter() - t0

    # 2. post-training quantization (the naive path: convert and hope)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qnet = sl.prepare_qat(net, weight_bits=cfg.weight_bits)
    steps = cfg.num_steps + sl.delay_steps(qnet)
    acc_ptq = accuracy(qnet, x_te, y_te, steps=steps)
    times["post-training quantization"] = time.perf_counter() - t0

    # 3. quantization-aware fine-tuning
    t0 = time.perf_counter()
    opt = torch.optim.Adam(qnet.parameters(), lr=cfg.qat_lr)
    with tqdm(total=cfg.qat_epochs * batches, desc="QAT fine-tuning", disable=not cfg.progress) as bar:
        for _ in range(cfg.qat_epochs):
            train_epoch(qnet, x_tr, y_tr, opt, loss_fn, steps=steps, generator=gen, progress=bar)
            curve["qat"].append(accuracy(qnet, x_te, y_te, steps=steps))
    sl.freeze_calibration(qnet)
    acc_qat = accuracy(qnet, x_te, y_te, steps=steps)
    times["QAT fine-tuning"] = time.perf_counter() - t0

    # 4. export: NIR with Loihi registers, and lava-dl netx HDF5
    t0 = time.perf_counter()
    nir_path, netx_path = cfg.out / "digits.nir", cfg.out / "digits_netx.h5"
    graph = sl.export(qnet, x_te[0, :1], path=nir_path)
    sl.save_netx(graph, netx_path)
    times["export (NIR + netx)"] = time.perf_counter() - t0

    # 5. Lava's bit-accurate fixed-point simulation on the test set, one compiled network
    t0 = time.perf_counter()
    n = x_te.shape[1] if cfg.lava_samples is None else min(cfg.lava_samples, x_te.shape[1])
    x_lava, y_lava = x_te[:, :n], y_te[:n]
    with sl.to_lava(graph, progress=cfg.progress) as lava_net:
        lava_spk = lava_net(x_lava)
    acc_lava = spike_count_accuracy(lava_spk, y_lava)
    times["Lava fixed-point run"] = time.perf_counter() - t0
    with torch.no_grad():
        torch_spk = run_network(qnet.eval(), x_lava, steps)
    lava_spk = lava_spk[: torch_spk.shape[0]]
    mismatches = int((torch_spk != lava_spk).sum())
    acc_qat_subset = spike_count_accuracy(torch_spk, y_lava)

    # 6. parity report (all layers, u and v too; Lava processes and the netx file) and figures
    t0 = time.perf_counter()
    report = sl.verify(qnet, x_te[:, :8], progress=False)
    report.plot(cfg.out / "parity.png")
    report_netx = sl.verify(qnet, x_te[:, :8], backend="netx", float_drift=False)
    times["parity report (lava + netx)"] = time.perf_counter() - t0

    # 7. the regime where quantization bites: few weight bits (BASELINES.md: 2 bits lose ~7 pp)
    low: dict[str, float] = {}
    if cfg.low_bits is not None:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lnet = sl.prepare_qat(net, weight_bits=cfg.low_bits)
        low["ptq"] = accuracy(lnet, x_te, y_te, steps=steps)
        opt = torch.optim.Adam(lnet.parameters(), lr=cfg.qat_lr)
        with tqdm(total=cfg.low_bits_epochs * batches, desc=f"QAT at {cfg.low_bits}-bit weights",
                  disable=not cfg.progress) as bar:
            for _ in range(cfg.low_bits_epochs):
                train_epoch(lnet, x_tr, y_tr, opt, loss_fn, steps=steps, generator=gen, progress=bar)
                curve.setdefault("low", []).append(accuracy(lnet, x_te, y_te, steps=steps))
        sl.freeze_calibration(lnet)
        low["qat"] = accuracy(lnet, x_te, y_te, steps=steps)
        m = min(cfg.low_bits_lava_samples, x_te.shape[1])
        lgraph = sl.export(lnet, x_te[0, :1], path=cfg.out / f"digits_{cfg.low_bits}bit.nir")
        with sl.to_lava(lgraph, progress=cfg.progress) as lava_low:
            low_spk = lava_low(x_te[:, :m])
        with torch.no_grad():
            low_torch = run_network(lnet.eval(), x_te[:, :m], steps)
        low["lava"] = spike_count_accuracy(low_spk, y_te[:m])
        low["torch_subset"] = spike_count_accuracy(low_torch, y_te[:m])
        low["mismatches"] = int((low_torch != low_spk[: low_torch.shape[0]]).sum())
        low["samples"] = m
        times[f"{cfg.low_bits}-bit PTQ + QAT + Lava"] = time.perf_counter() - t0
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(curve["float"]) + 1), [100 * a for a in curve["float"]], label="float")
    n_float = len(curve["float"])
    ax.plot(range(n_float + 1, n_float + len(curve["qat"]) + 1),
            [100 * a for a in curve["qat"]], label=f"QAT, {cfg.weight_bits}-bit weights")
    if curve.get("low"):
        ax.plot(range(n_float + 1, n_float + len(curve["low"]) + 1),
                [100 * a for a in curve["low"]], label=f"QAT, {cfg.low_bits}-bit weights")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(cfg.out / "training.png", dpi=120)
    plt.close(fig)

    accs = {
        "float snnTorch": acc_float,
        f"post-training quantized, {cfg.weight_bits}-bit weights (torch)": acc_ptq,
        f"quantization-aware fine-tuned, {cfg.weight_bits}-bit (torch)": acc_qat,
        f"Lava fixed_pt, {cfg.weight_bits}-bit ({n} samples)": acc_lava,
        f"fine-tuned torch on the same {n} samples": acc_qat_subset,
    }
    if low:
        b = cfg.low_bits
        accs[f"post-training quantized, {b}-bit weights (torch)"] = low["ptq"]
        accs[f"quantization-aware fine-tuned, {b}-bit, {cfg.low_bits_epochs} epochs (torch)"] = low["qat"]
        accs[f"Lava fixed_pt, {b}-bit ({low['samples']} samples)"] = low["lava"]
        accs[f"fine-tuned {b}-bit torch on the same {low['samples']} samples"] = low["torch_subset"]
    result = {
        "accuracy": accs,
        "parity": {"samples": n, "steps": int(torch_spk.shape[0]),
                   "output spikes compared": int(torch_spk.numel()),
                   "mismatching spikes": mismatches, "report exact (8 samples, all layers)": report.exact,
                   "netx report exact": report_netx.exact,
                   "low-bit mismatching spikes": low.get("mismatches")},
        "timings_s": dict(times),
        "files": [str(p) for p in (nir_path, netx_path, cfg.out / "parity.png", cfg.out / "training.png")],
    }
    print(format_result(result))
    print(report)
    return result


def format_result(result: dict) -> str:
    """The demo's table as Markdown."""
    lines = ["| stage | test accuracy |", "|---|---|"]
    lines += [f"| {k} | {100 * v:.2f} % |" for k, v in result["accuracy"].items()]
    p = result["parity"]
    lines += ["", f"Spike parity, fine-tuned torch forward vs Lava: {p['mismatching spikes']} mismatching "
              f"output spikes over {p['samples']} samples x {p['steps']} steps "
              f"({'exact' if p['mismatching spikes'] == 0 else 'NOT exact'}); "
              f"full report (s, u, v of every layer, 8 samples) exact: "
              f"{p['report exact (8 samples, all layers)']}; through the netx file: "
              f"{p['netx report exact']}"
              + (f"; low-bit network: {p['low-bit mismatching spikes']} mismatching output spikes."
                 if p["low-bit mismatching spikes"] is not None else "."), "",
              "| stage | time (s) |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in result["timings_s"].items()]
    lines += ["", "Files: " + ", ".join(result["files"])]
    return "\n".join(lines)
