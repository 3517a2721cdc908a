"""Does fine-tuning matter? Accuracy by weight precision and decay, naive vs careful vs fine-tuned.

For two tasks -- the digits MLP of BASELINES.md (64-128-10, Leaky, zero reset, rate coding) and
the temporal two-burst task of :func:`snntorch_loihi.data.temporal_spikes` (an RLeaky hidden
layer and a Synaptic output layer) -- and for every weight precision and beta, it measures:

- **float**: the trained snnTorch network;
- **naive**: the NIR paper script's recipe (:func:`naive_convert`: ``w = int(w*256)`` clipped,
  ``dv = int((1-beta)*4095)``, ``vth = int(thr*131071) >> 9``, then Lava's own truncation of
  the mantissas to ``num_weight_bits``), run with :func:`snntorch_loihi.fixed.network.simulate`
  (bit-exact with Lava, and fast);
- **PTQ**: careful post-training quantization (``prepare_qat``), quantized torch forward,
  ``T + delay_steps`` steps;
- **fine-tuned**: after a few epochs of quantization-aware training;
- **Lava**: the exported fine-tuned graph in Lava's ``fixed_pt`` simulation (``to_lava``) on a
  test subset; it must equal the fine-tuned torch accuracy on that subset (asserted, both shown);
- **same spikes**: the fraction of test samples whose output spike trains (all steps, shifted by
  the synapse delays) are identical to the float network's.

Mean and spread (sample standard deviation) over seeds; each seed draws the data split, the
encoding and the initial weights. Writes ``accuracy.md`` and ``accuracy.png`` into ``--out``.

Usage: ``python bench/bench_accuracy.py [--quick] [--out DIR]`` (``--quick`` writes into
``out/bench_accuracy_quick`` unless ``--out`` is given, so it never overwrites
``bench/results``).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import snntorch as snn
import torch
from torch import nn

import snntorch_loihi as sl
from snntorch_loihi.data import digits_spikes, temporal_spikes
from snntorch_loihi.fixed import truncate_weights
from snntorch_loihi.fixed.network import simulate
from snntorch_loihi.ir import LoihiLayer, LoihiNetwork, LoihiNeuron, LoihiSynapse
from snntorch_loihi.spec import LOIHI
from snntorch_loihi.training import run_network, train_epoch
from snntorch_loihi.training import spike_count_accuracy as _acc

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
QUICK_OUT = Path("out/bench_accuracy_quick")   # --quick must not overwrite the committed results


# ------------------------------------------------------------------ tasks and networks

class Task(NamedTuple):
    """One benchmark task: data, network, training settings."""

    name: str
    data: Callable[[int], tuple[torch.Tensor, ...]]   # seed -> x_tr, y_tr, x_te, y_te
    build: Callable[[float], nn.Sequential]           # beta -> float network
    loss: str                                         # snntorch.functional loss name
    float_epochs: int
    lr: float
    qat_epochs: int
    qat_lr: float
    setup: str = ""


_ZERO = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)


def digits_net(beta: float, hidden: int = 128) -> nn.Sequential:
    """BASELINES.md's digits MLP: Linear(64, 128) + Leaky + Linear(128, 10) + Leaky.

    Zero reset without reset delay: Loihi's reset (to 0 in the step of the spike), so the float
    network and the deployed one differ by quantization only (for Leaky the delayed zero reset
    is the same; for RLeaky and Synaptic it is not).
    """
    return nn.Sequential(
        nn.Linear(64, hidden), snn.Leaky(beta=beta, **_ZERO),
        nn.Linear(hidden, 10), snn.Leaky(beta=beta, **_ZERO),
    )


def temporal_net(beta: float, hidden: int = 64, alpha: float = 0.8) -> nn.Sequential:
    """Linear(16, 64) + RLeaky (all-to-all recurrence) + Linear(64, 4) + Synaptic, zero reset.

    The Linear that feeds the Synaptic layer has no bias: Loihi adds biases to the membrane, not
    to the synaptic current, so such a bias would change meaning on the chip (prepare_qat warns).
    """
    return nn.Sequential(
        nn.Linear(16, hidden),
        snn.RLeaky(beta=beta, linear_features=hidden, **_ZERO),
        nn.Linear(hidden, 4, bias=False),
        snn.Synaptic(alpha=alpha, beta=beta, **_ZERO),
    )


def make_tasks(quick: bool, digits_steps: int, temporal_steps: int) -> list[Task]:
    """The two tasks; ``quick`` shortens training."""
    d_ep, d_q = (4, 1) if quick else (15, 2)
    t_ep, t_q = (5, 1) if quick else (12, 2)
    n_tr, n_te = (400, 200) if quick else (800, 400)
    return [
        Task("digits MLP", lambda s: digits_spikes(digits_steps, seed=s), digits_net,
             "ce_rate_loss", d_ep, 2e-3, d_q, 5e-4,
             f"scikit-learn digits, 70/30 split, rate coding over T = {digits_steps} steps; "
             f"64-128-10 Leaky, zero reset; Adam 2e-3, ce_rate_loss, batch 64, {d_ep} float "
             f"epochs; fine-tuning {d_q} epochs at 5e-4"),
        Task("temporal (RLeaky + Synaptic)",
             lambda s: temporal_spikes(temporal_steps, n_tr, n_te, seed=s), temporal_net,
             "ce_count_loss", t_ep, 5e-3, t_q, 5e-4,
             f"temporal_spikes (which burst first, short/long gap; 4 classes), T = "
             f"{temporal_steps}, {n_tr} train / {n_te} test; 16-64(RLeaky)-4(Synaptic, alpha "
             f"0.8, no bias), zero reset; Adam 5e-3, ce_count_loss, batch 64, {t_ep} float epochs; "
             f"fine-tuning {t_q} epochs at 5e-4"),
    ]


# ------------------------------------------------------------------ the naive conversion

def _naive_weights(w: torch.Tensor, bits: int) -> np.ndarray:
    """``int(w * 256)`` clipped to 8 bits, then what Lava's Dense keeps at ``num_weight_bits``."""
    mant = torch.clamp(torch.trunc(w.detach().double() * 256), LOIHI.weight_min, LOIHI.weight_max)
    return truncate_weights(mant.to(torch.int64), bits, "mixed").numpy()


def _naive_bias(b: torch.Tensor | None, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Bias in the same units as ``v`` (``2**14`` per float unit), truncated; smallest exponent."""
    if b is None or not bool(b.any()):
        return np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    scaled = b.detach().double() * 2.0**14
    exp = 0
    while float(scaled.abs().max()) / 2**exp > LOIHI.bias_mant_max and exp < 7:
        exp += 1
    mant = torch.clamp(torch.trunc(scaled / 2**exp), LOIHI.bias_mant_min, LOIHI.bias_mant_max)
    return mant.to(torch.int64).numpy(), np.full(shape, exp, np.int64)


def naive_convert(net: nn.Sequential, weight_bits: int = 8) -> LoihiNetwork:
    """The NIR paper script's recipe, as a :class:`LoihiNetwork`.

    ``w = int(w*256)`` clipped to [-256, 255] (weight exponent 0, so a float unit of current is
    ``256 << 6 = 2**14``), truncated by Lava to ``weight_bits`` (mixed sign);
    ``dv = int((1-beta)*4095)``, ``du = int((1-alpha)*4095)`` (4095 for Leaky/RLeaky),
    ``vth = int(thr*131071) >> 9``; biases ``int(b * 2**14)`` (the recurrent Linear's bias of an
    RLeaky folded in). ``net`` is a ``Sequential`` of (Linear, Leaky/Synaptic/RLeaky) pairs.
    """
    mods = list(net)
    layers, in_shape = [], (mods[0].in_features,)
    for k in range(0, len(mods), 2):
        lin, neu = mods[k], mods[k + 1]
        n_out = lin.out_features
        bias = lin.bias.detach().clone() if lin.bias is not None else torch.zeros(n_out)
        recurrent = None
        if isinstance(neu, snn.RLeaky):
            rec = neu.recurrent
            if rec.bias is not None:
                bias = bias + rec.bias.detach()
            recurrent = LoihiSynapse("dense", _naive_weights(rec.weight, weight_bits), (n_out,),
                                     (n_out,), num_weight_bits=weight_bits, sign_mode="mixed")
        du = int((1 - float(neu.alpha)) * 4095) if isinstance(neu, snn.Synaptic) else int(1.0 * 4095)
        bias_mant, bias_exp = _naive_bias(bias, (n_out,))
        neuron = LoihiNeuron((n_out,), du=du, dv=int((1 - float(neu.beta)) * 4095),
                             vth=int(float(neu.threshold) * 131071) >> 9,
                             bias_mant=bias_mant, bias_exp=bias_exp, scale_exp=14)
        syn = LoihiSynapse("dense", _naive_weights(lin.weight, weight_bits), (lin.in_features,),
                           (n_out,), num_weight_bits=weight_bits, sign_mode="mixed")
        layers.append(LoihiLayer(f"layer{k // 2}", syn, neuron, recurrent))
    return LoihiNetwork(in_shape, tuple(layers))


# ------------------------------------------------------------------ one configuration

def _same_spikes(ref: torch.Tensor, out: torch.Tensor, delay: int) -> float:
    """Fraction of samples whose output trains agree over the float run's ``T`` steps."""
    t = ref.shape[0]
    other = out[delay: delay + t].to(ref.dtype)
    return float((other == ref).flatten(2).all(-1).all(0).float().mean())


class Row(NamedTuple):
    """Measurements of one (task, beta, bits, seed)."""

    float: float
    naive: float
    ptq: float
    qat: float
    lava_subset: float
    qat_subset: float
    spikes_equal: bool
    same_naive: float
    same_ptq: float
    same_qat: float


def run_config(task: Task, beta: float, bits_list: list[int], seed: int, lava_samples: int,
               bar) -> dict[int, Row]:
    """Train one float net, then quantize it at every weight precision; returns rows by bits."""
    import snntorch.functional as SF

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_tr, y_tr, x_te, y_te = task.data(seed)
    loss_fn = getattr(SF, task.loss)()
    net = task.build(beta)
    opt = torch.optim.Adam(net.parameters(), lr=task.lr)
    for _ in range(task.float_epochs):
        train_epoch(net, x_tr, y_tr, opt, loss_fn, generator=gen)
    net.eval()
    with torch.no_grad():
        float_spk = run_network(net, x_te)
    acc_float = _acc(float_spk, y_te)
    bar.update(1)
    rows: dict[int, Row] = {}
    for bits in bits_list:
        naive_ir = naive_convert(net, bits)
        naive_ir.validate()   # registers in range; the run below skips per-step checks
        naive_spk = simulate(naive_ir, x_te, check=False)[naive_ir.layers[-1].name].s
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qnet = sl.prepare_qat(net, weight_bits=bits)
        steps = x_te.shape[0] + sl.delay_steps(qnet)
        delay = sl.delay_steps(qnet)
        with torch.no_grad():
            ptq_spk = run_network(qnet.eval(), x_te, steps)
        qopt = torch.optim.Adam(qnet.parameters(), lr=task.qat_lr)
        for _ in range(task.qat_epochs):
            train_epoch(qnet, x_tr, y_tr, qopt, loss_fn, steps=steps, generator=gen)
        sl.freeze_calibration(qnet)
        qnet.eval()
        with torch.no_grad():
            qat_spk = run_network(qnet, x_te, steps)
        # Lava on a subset: the exported fine-tuned graph, one compiled network
        n = min(lava_samples, x_te.shape[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = sl.export(qnet, x_te[0, :1])
        with sl.to_lava(graph, progress=False) as lava_net:
            lava_spk = lava_net(x_te[:, :n])[:steps]
        rows[bits] = Row(
            float=acc_float, naive=_acc(naive_spk, y_te), ptq=_acc(ptq_spk, y_te),
            qat=_acc(qat_spk, y_te), lava_subset=_acc(lava_spk, y_te[:n]),
            qat_subset=_acc(qat_spk[:, :n], y_te[:n]),
            spikes_equal=bool(torch.equal(lava_spk.to(qat_spk.dtype), qat_spk[:, :n])),
            same_naive=_same_spikes(float_spk, naive_spk, naive_ir.delay),
            same_ptq=_same_spikes(float_spk, ptq_spk, delay),
            same_qat=_same_spikes(float_spk, qat_spk, delay),
        )
        bar.update(1)
    return rows


# ------------------------------------------------------------------ table and plot

def _ms(values: list[float]) -> str:
    m = 100 * statistics.mean(values)
    if len(values) < 2:
        return f"{m:.1f}"
    return f"{m:.1f} ± {100 * statistics.stdev(values):.1f}"


def format_table(results: dict, tasks: list[Task], seeds: list[int], lava_samples: int,
                 took: float) -> str:
    """Markdown: one table per task, rows (beta, bits), accuracies in %."""
    lines = [
        "# Accuracy after deployment: naive conversion vs careful quantization vs fine-tuning",
        "",
        f"Generated by `bench/bench_accuracy.py` ({len(seeds)} seed(s): {seeds}; {took:.0f} s; "
        f"torch {torch.__version__}, snnTorch {snn.__version__}). Accuracy in % on the test set, "
        "mean ± standard deviation over seeds. *naive*: the NIR paper script's recipe "
        "(`w*256`, `int(...)` truncations, Lava's truncation to `num_weight_bits`) in the "
        "bit-exact integer simulation; *PTQ*: `prepare_qat` (careful post-training "
        "quantization), quantized torch forward; *fine-tuned*: after quantization-aware "
        f"training; *Lava*: the exported fine-tuned graph in Lava `fixed_pt` on the first "
        f"{lava_samples} test samples, next to the fine-tuned torch forward on the same "
        "samples (asserted equal); *same spikes*: fraction of test samples whose output spike "
        "trains equal the float network's at every step (naive / PTQ / fine-tuned).",
        "",
    ]
    for task in tasks:
        lines += [f"## {task.name}", "", task.setup + ".", "",
                  "| beta | weight bits | float | naive | PTQ | fine-tuned | Lava = torch (subset) "
                  "| same spikes as float: naive / PTQ / fine-tuned |",
                  "|---|---|---|---|---|---|---|---|"]
        for (name, beta, bits), rows in results.items():
            if name != task.name:
                continue
            col = {a: _ms([getattr(r, a) for r in rows]) for a in Row._fields
                   if a != "spikes_equal"}
            lava = f"{col['lava_subset']} = {col['qat_subset']}"
            same = " / ".join(col[a] for a in ("same_naive", "same_ptq", "same_qat"))
            lines.append(f"| {beta} | {bits} | {col['float']} | {col['naive']} | {col['ptq']} | "
                         f"**{col['qat']}** | {lava} | {same} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, tasks: list[Task], path: Path) -> None:
    """Accuracy vs weight bits, one panel per task, one colour per beta."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    styles = {"naive": ":", "ptq": "--", "qat": "-"}
    labels = {"naive": "naive", "ptq": "PTQ", "qat": "fine-tuned"}
    for ax, task in zip(axes[0], tasks, strict=True):
        betas = sorted({b for (n, b, _) in results if n == task.name})
        for ci, beta in enumerate(betas):
            keys = sorted((k for k in results if k[0] == task.name and k[1] == beta),
                          key=lambda k: -k[2])
            bits = [k[2] for k in keys]
            color = f"C{ci}"
            fl = 100 * statistics.mean(r.float for r in results[keys[0]])
            ax.axhline(fl, color=color, lw=0.8, alpha=0.6)
            for attr, ls in styles.items():
                vals = [[100 * getattr(r, attr) for r in results[k]] for k in keys]
                m = [statistics.mean(v) for v in vals]
                sd = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals]
                ax.errorbar(bits, m, yerr=sd, fmt=ls, marker="o", capsize=3, color=color,
                            label=f"beta {beta}: {labels[attr]}")
            ax.set_xticks(bits)
        ax.set_xlabel("weight bits (num_weight_bits)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{task.name} (thin line: float; bars: sd over seeds)", fontsize=9)
        ax.invert_xaxis()
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------ main

def main(argv: list[str] | None = None) -> list[dict]:
    """Run, print and write the table; returns rows ``{benchmark, measure, value, ratio}``."""
    from tqdm.auto import tqdm

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None,
                   help=f"folder for accuracy.md/.png (default {DEFAULT_OUT.parent.name}/"
                        f"{DEFAULT_OUT.name}; with --quick {QUICK_OUT})")
    p.add_argument("--quick", action="store_true",
                   help="1 seed, bits {8, 2}, beta 0.9, short training, 16 Lava samples")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3)")
    p.add_argument("--bits", type=int, nargs="*", default=None, help="default 8 4 3 2")
    p.add_argument("--betas", type=float, nargs="*", default=None, help="default 0.9 0.99")
    p.add_argument("--lava-samples", type=int, default=None, help="default 32")
    p.add_argument("--digits-steps", type=int, default=None, help="T of digits (default 20)")
    p.add_argument("--temporal-steps", type=int, default=None, help="T of temporal (default 30)")
    p.add_argument("--tasks", nargs="*", default=None, help="'digits' and/or 'temporal'")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared 2-core machine two contending "
                        "threads were 4-6x slower; 0: torch's default)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    args.out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    if args.threads:
        torch.set_num_threads(args.threads)
    q = args.quick
    seeds = list(range(args.seeds if args.seeds is not None else (1 if q else 3)))
    bits_list = args.bits or ([8, 2] if q else [8, 4, 3, 2])
    betas = args.betas or ([0.9] if q else [0.9, 0.99])
    lava_samples = args.lava_samples or (16 if q else 32)
    tasks = make_tasks(q, args.digits_steps or (12 if q else 20), args.temporal_steps or 30)
    if args.tasks:
        tasks = [t for t in tasks if any(t.name.startswith(w) for w in args.tasks)]
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    results: dict[tuple[str, float, int], list[Row]] = {}
    total = len(tasks) * len(betas) * len(seeds) * (1 + len(bits_list))
    with tqdm(total=total, desc="accuracy bench", disable=args.no_progress) as bar:
        for task in tasks:
            for beta in betas:
                for seed in seeds:
                    bar.set_postfix_str(f"{task.name.split()[0]} beta={beta} seed={seed}")
                    for bits, row in run_config(task, beta, bits_list, seed, lava_samples,
                                                bar).items():
                        results.setdefault((task.name, beta, bits), []).append(row)
    took = time.perf_counter() - t0
    table = format_table(results, tasks, seeds, lava_samples, took)
    (args.out / "accuracy.md").write_text(table + "\n")
    plot(results, tasks, args.out / "accuracy.png")
    print(table)
    print(f"wrote {args.out / 'accuracy.md'} and {args.out / 'accuracy.png'} ({took:.0f} s)")

    bad = [(k, r.lava_subset, r.qat_subset, r.spikes_equal) for k, rows in results.items()
           for r in rows if r.lava_subset != r.qat_subset or not r.spikes_equal]
    for k, lava, torch_acc, eq in bad:
        print(f"MISMATCH {k}: Lava {100 * lava:.2f} % vs fine-tuned torch {100 * torch_acc:.2f} % "
              f"on the subset; identical spikes: {eq}")
    assert not bad, f"Lava differs from the fine-tuned torch forward in {len(bad)} configuration(s)"

    out = []
    for (name, beta, bits), rows in results.items():
        fl = statistics.mean(r.float for r in rows)
        qat = statistics.mean(r.qat for r in rows)
        out.append(dict(benchmark="bench_accuracy.py",
                        measure=f"{name}, beta {beta}, {bits}-bit: fine-tuned vs float",
                        value=f"{100 * qat:.1f} % vs {100 * fl:.1f} %",
                        ratio=f"{100 * (qat - fl):+.1f} pp",
                        lava_subset=[r.lava_subset for r in rows],
                        torch_subset=[r.qat_subset for r in rows],
                        spikes_equal=[r.spikes_equal for r in rows]))
    return out


if __name__ == "__main__":
    main()
