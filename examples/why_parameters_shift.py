"""Why do my parameters shift? A naive NIR -> Lava conversion vs snntorch-loihi, side by side.

What it shows: one small float LIF network (20 -> 24 -> 5, ``beta = 0.96``, threshold 1.0, zero
reset), written as a float NIR graph the way snnTorch's exporter writes it, then

- converted NAIVELY with the recipe of the NIR paper's Lava script
  (:func:`naive_nir_paper_conversion`: ``dv = int(dv * 4095)``, ``du = int(1.0 * 4095)``,
  ``vth = int(v_threshold * 131071) >> 9``, ``w = int(w * 256)`` clipped to 255, two Dense
  processes, Lava ``fixed_pt``), and
- converted by snntorch-loihi (``prepare_qat`` -> ``export`` -> ``to_lava``).

It prints a parameter table (each float value, the naive register, snntorch-loihi's register,
the float values they stand for and their relative errors), runs both on Lava on the same input
spikes, counts spike mismatches against the float snnTorch network and against snntorch-loihi's
quantized torch forward, and plots the decay of one membrane and the membrane traces of a few
hidden neurons (float snnTorch, naive Lava, snntorch-loihi Lava and torch) into
``<out>/why_parameters_shift.png``.

The point: Loihi's registers cannot hold the float network exactly, so some change is
unavoidable. The naive recipe changes it by accident (truncations that bias every weight
towards zero, ``4095`` instead of ``4096``, a threshold and weights truncated independently,
Lava's dropped weight LSB it does not know about) and nothing in PyTorch predicts what Lava
will do. snntorch-loihi picks the nearest registers on Lava's grid AND runs exactly that
arithmetic in PyTorch: its Lava spikes, ``u`` and ``v`` equal its torch forward bit for bit,
so you can measure the remaining change, and fine-tune it away, before deploying.

Run it::

    python examples/why_parameters_shift.py [--quick] [--out out/why_parameters_shift]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import nir
import numpy as np
import torch
from torch import nn

__all__ = ["build_float_net", "float_nir_graph", "naive_nir_paper_conversion", "main"]

DT = 1e-4  # snnTorch's NIR export time step


def build_float_net(beta: float = 0.96, threshold: float = 1.0, seed: int = 3) -> nn.Sequential:
    """Linear(20, 24) + Leaky + Linear(24, 5) + Leaky, no biases, zero reset without delay."""
    import snntorch as snn

    torch.manual_seed(seed)
    fc1, fc2 = nn.Linear(20, 24, bias=False), nn.Linear(24, 5, bias=False)
    with torch.no_grad():
        fc1.weight.mul_(1.3)  # a busier hidden layer

    def leaky() -> snn.Leaky:
        return snn.Leaky(beta, threshold=threshold, init_hidden=True, reset_mechanism="zero",
                         reset_delay=False)

    return nn.Sequential(fc1, leaky(), fc2, leaky())


def float_nir_graph(net: nn.Sequential, dt: float = DT) -> nir.NIRGraph:
    """The float NIR graph of ``net`` with snnTorch's export conventions.

    ``Linear -> nir.Linear(weight)``; ``Leaky -> nir.LIF(tau = dt / (1 - beta), r = tau / dt,
    v_leak = 0, v_threshold = threshold)``. (Written by hand: snnTorch 1.0's
    ``export_to_nir`` fails type inference on this network.)
    """
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(np.array([net[0].in_features]))}
    order = ["input"]
    for i, m in enumerate(net):
        if isinstance(m, nn.Linear):
            nodes[str(i)] = nir.Linear(m.weight.detach().double().numpy())
        else:
            n = net[i - 1].out_features
            tau = np.full(n, dt / (1.0 - float(m.beta)))
            nodes[str(i)] = nir.LIF(tau=tau, r=tau / dt, v_leak=np.zeros(n),
                                    v_threshold=np.full(n, float(m.threshold)))
        order.append(str(i))
    nodes["output"] = nir.Output(np.array([net[-2].out_features]))
    order.append("output")
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:], strict=True)))


# ---- THE NAIVE RECIPE (the NIR paper script's conversion; for comparison only) -----------------
def naive_nir_paper_conversion(graph: nir.NIRGraph, dt: float = DT):
    """Registers as the NIR paper's Lava script computes them from a float NIR graph.

    For comparison only: this is the conversion whose drift this example explains. Per
    ``Linear -> LIF`` pair of the chain::

        dv  = int(dt / tau * 4095)          # truncates, and 4095 where Loihi divides by 4096
        du  = int(1.0 * 4095)               # 4095: right only thanks to Loihi's built-in +1
        vth = int(v_threshold * 131071) >> 9  # truncates (the threshold in units of w * 256)
        w   = clip(int(w * 256), -256, 255) # truncates each weight towards zero; 1.0 -> 255

    ``r`` is ignored (it is ``tau / dt`` in snnTorch's export). Each ``Linear`` becomes a Lava
    ``Dense``, so two layers add two steps of delay. Lava then derives the sign mode from the
    weights and, in mixed mode, drops their LSB (``51 -> 50``), which the recipe does not know.

    Returns:
        A :class:`snntorch_loihi.LoihiNetwork` holding exactly these registers (``scale_exp``
        14, the float scale the recipe implies: ``w = weight_mant / 256``), to run with
        ``snntorch_loihi.to_lava``: the same ``RingBuffer -> Dense -> LIF -> Dense -> LIF``
        processes the script builds.
    """
    from snntorch_loihi.fixed import determine_sign_mode
    from snntorch_loihi.ir import LoihiLayer, LoihiNetwork, LoihiNeuron, LoihiSynapse

    nxt = dict(graph.edges)
    name, layers, weight = nxt["input"], [], None
    while name != "output":
        node = graph.nodes[name]
        if isinstance(node, nir.Linear | nir.Affine):
            weight = np.asarray(node.weight, np.float64)
        elif isinstance(node, nir.LIF):
            dv = int(float(dt / np.asarray(node.tau).flat[0]) * 4095)
            du = int(1.0 * 4095)
            vth = int(float(np.asarray(node.v_threshold).flat[0]) * 131071) >> 9
            w = np.clip((weight * 256).astype(np.int64), -256, 255)  # astype truncates
            n_out, n_in = w.shape
            syn = LoihiSynapse("dense", w, (n_in,), (n_out,),
                               sign_mode=determine_sign_mode(torch.from_numpy(w)))
            layers.append(LoihiLayer(name, syn, LoihiNeuron((n_out,), du, dv, vth, scale_exp=14)))
        else:
            raise TypeError(f"naive_nir_paper_conversion: node '{name}' must be a Linear, Affine "
                            f"or LIF, got {type(node).__name__}.")
        name = nxt[name]
    return LoihiNetwork((layers[0].synapse.in_shape[0],), tuple(layers))


# ---- helpers ---------------------------------------------------------------------------------
def _float_run(net: nn.Sequential, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``[(spikes, mem)]`` per Leaky layer of the float network, ``(T, B, N)`` each."""
    import snntorch as snn
    from snntorch import utils

    neurons = [m for m in net if isinstance(m, snn.Leaky)]
    rec: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in neurons]
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: rec[k].append(
        (o.detach().clone(), mod.mem.detach().clone()))) for k, m in enumerate(neurons)]
    utils.reset(net)
    with torch.no_grad():
        for t in range(x.shape[0]):
            net(x[t])
    for h in hooks:
        h.remove()
    return [(torch.stack([s for s, _ in r]), torch.stack([v for _, v in r])) for r in rec]


def _decay_int(v0: int, dv: int, steps: int) -> np.ndarray:
    """Loihi's voltage decay alone: ``v = sign(v) * (|v| * (4096 - dv) >> 12)`` (toward zero)."""
    out = [v0]
    for _ in range(steps):
        v = out[-1]
        out.append(int(np.sign(v)) * ((abs(v) * (4096 - dv)) >> 12))
    return np.array(out, np.float64)


def _rel(x: float, ref: float) -> float:
    return (x - ref) / ref if ref else float("nan")


def _weight_rows(w: np.ndarray, naive_w: np.ndarray, ours_w: np.ndarray, layer: str) -> list:
    nz = np.abs(w) > 0
    rows = []
    for what, eq in (("naive", naive_w), ("ours", ours_w)):
        shrink = float(np.mean((eq - w)[nz] * np.sign(w[nz])) / np.mean(np.abs(w[nz])))
        err = float(np.mean(np.abs(eq - w)[nz]) / np.mean(np.abs(w[nz])))
        rows.append((what, shrink, err))
    return [f"| {layer} weights: mean signed change / mean abs error (relative to mean abs w) | "
            f"{np.mean(np.abs(w)):.4f} (mean abs) | w * 256, truncated, LSB dropped | "
            f"{rows[0][1]:+.2%} / {rows[0][2]:.2%} | mantissa on Lava's grid | "
            f"{rows[1][1]:+.2%} / {rows[1][2]:.2%} |"]


def main(quick: bool = False, out: str | Path = "out/why_parameters_shift") -> dict:
    """Convert naively and with snntorch-loihi, run both on Lava, print tables, save the figure.

    Args:
        quick: fewer samples and steps (for the tests).
        out: folder for ``why_parameters_shift.png`` and ``float_net.nir``.

    Returns:
        ``{"registers": {...}, "mismatches": {comparison: {layer: count}}, "exact": bool,
        "files": [paths], "seconds": float}``; ``mismatches["ours Lava vs ours torch"]`` is all
        zeros, ``mismatches["naive Lava vs float"]`` is not.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tqdm.auto import tqdm

    import snntorch_loihi as sl
    from snntorch_loihi.fixed import truncate_weights

    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    T, B = (30, 2) if quick else (60, 8)
    net = build_float_net()
    gen = torch.Generator().manual_seed(3)
    x = (torch.rand(T, B, 20, generator=gen) < 0.3).float()

    # the float NIR graph, as a user would export it, and the two conversions
    graph_float = float_nir_graph(net)
    nir.write(out / "float_net.nir", graph_float)
    naive = naive_nir_paper_conversion(graph_float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the float -> Loihi notes (quantization), per layer
        qnet = sl.prepare_qat(net)
        graph_ours = sl.export(qnet, x[0, :1])

    # run: float snnTorch; both conversions on Lava fixed_pt; ours in torch (verify = torch + Lava)
    float_trace = _float_run(net, x)
    lava_runs = {}
    for name, g in tqdm([("naive", naive), ("ours", graph_ours)], desc="Lava runs"):
        with sl.to_lava(g, record=("s", "v"), progress=False) as model:
            res = model.run(x)
            lava_runs[name] = (res, model.net)
    ours_ir = lava_runs["ours"][1]
    report = sl.verify(qnet, x, float_drift=False)  # torch quantized forward vs Lava, s/u/v

    # ---- the parameter table ----------------------------------------------------------------
    lines = ["| parameter | float | naive register | naive as float (rel. error) | "
             "snntorch-loihi register | snntorch-loihi as float (rel. error) |",
             "|---|---|---|---|---|---|"]
    registers: dict[str, dict] = {}
    fc = [m for m in net if isinstance(m, nn.Linear)]
    for k, (nl, ol) in enumerate(zip(naive.layers, ours_ir.layers, strict=True)):
        beta, thr = float(net[2 * k + 1].beta), float(net[2 * k + 1].threshold)
        nn_, on = nl.neuron, ol.neuron
        kq = on.scale_exp
        nb, ob = 1 - nn_.dv / 4096, 1 - on.dv / 4096
        nt, ot = (nn_.vth << 6) * 2.0**-14, (on.vth << 6) * 2.0**-kq
        lines.append(f"| layer {k + 1} beta | {beta:.6f} | dv = {nn_.dv} | {nb:.6f} "
                     f"({_rel(nb, beta):+.3%}) | dv = {on.dv} | {ob:.6f} ({_rel(ob, beta):+.3%}) |")
        lines.append(f"| layer {k + 1} threshold | {thr:.6f} | vth = {nn_.vth} | {nt:.6f} "
                     f"({_rel(nt, thr):+.3%}) | vth = {on.vth}, scale 2^{kq} | {ot:.6f} "
                     f"({_rel(ot, thr):+.3%}) |")
        w = fc[k].weight.detach().double().numpy()
        used = truncate_weights(torch.from_numpy(nl.synapse.weight_mant), 8,
                                nl.synapse.sign_mode).numpy()  # what Lava's Dense really uses
        naive_w = used / 256.0
        ours_w = np.asarray(ol.synapse.weight_mant, np.float64) * 2.0 ** (
            ol.synapse.weight_exp + 6 - kq)
        lines += _weight_rows(w, naive_w, ours_w, f"layer {k + 1}")
        registers[f"layer {k + 1}"] = {
            "naive": {"dv": nn_.dv, "du": nn_.du, "vth": nn_.vth,
                      "lsb_dropped": int((used != nl.synapse.weight_mant).sum())},
            "ours": {"dv": on.dv, "du": on.du, "vth": on.vth, "scale_exp": kq,
                     "weight_exp": ol.synapse.weight_exp},
            "float": {"beta": beta, "threshold": thr}}
        j = int(np.unravel_index(np.argmax(np.abs(w)), w.shape)[0])
        i = int(np.argmax(np.abs(w[j])))
        lines.append(f"| layer {k + 1} largest weight w[{j},{i}] | {w[j, i]:+.6f} | "
                     f"{int(nl.synapse.weight_mant[j, i])} (Lava uses {int(used[j, i])}) | "
                     f"{naive_w[j, i]:+.6f} ({_rel(naive_w[j, i], w[j, i]):+.3%}) | "
                     f"{int(ol.synapse.weight_mant[j, i])} x 2^{ol.synapse.weight_exp} | "
                     f"{ours_w[j, i]:+.6f} ({_rel(ours_w[j, i], w[j, i]):+.3%}) |")

    # ---- spike mismatches --------------------------------------------------------------------
    # Lava (both conversions) and the quantized torch forward share Loihi's timing: layer k
    # answers input step t at step t + k. The float network answers at step t: align before
    # comparing with it.
    def lava_s(name: str, k: int) -> torch.Tensor:
        return lava_runs[name][0][k].s

    def aligned(s: torch.Tensor, k: int) -> torch.Tensor:
        return s[k + 1: k + 1 + T]

    names = [la.name for la in ours_ir.layers]
    torch_s = [report.ref[n].s for n in names]
    mism = {
        "naive Lava vs float snnTorch": [int((aligned(lava_s("naive", k), k) != float_trace[k][0])
                                             .sum()) for k in range(2)],
        "snntorch-loihi Lava vs float snnTorch": [
            int((aligned(lava_s("ours", k), k) != float_trace[k][0]).sum()) for k in range(2)],
        "naive Lava vs snntorch-loihi torch forward": [
            int((lava_s("naive", k) != torch_s[k]).sum()) for k in range(2)],
        "snntorch-loihi Lava vs its torch forward": [
            int((lava_s("ours", k) != torch_s[k]).sum()) for k in range(2)],
    }
    spikes_float = [int(float_trace[k][0].sum()) for k in range(2)]
    lines += ["", f"Spike mismatches on the same input ({B} samples x {T} steps; float spikes: "
              f"hidden {spikes_float[0]}, output {spikes_float[1]}):", "",
              "| comparison | hidden layer | output layer |", "|---|---|---|"]
    lines += [f"| {k} | {v[0]} | {v[1]} |" for k, v in mism.items()]

    # ---- figure: (a) one membrane decaying, (b) hidden membranes in float units --------------
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    ax = axes[0]
    steps = 30
    beta0 = float(net[1].beta)
    nl, ol = naive.layers[0].neuron, ours_ir.layers[0].neuron
    v_float0 = float(np.mean(np.abs(fc[0].weight.detach().numpy())))  # one spike, a mean weight
    ideal = beta0 ** np.arange(steps + 1)
    for label, neuron, k, style in (("naive Lava", nl, 14, "r--"),
                                    ("snntorch-loihi (torch == Lava)", ol, ol.scale_exp, "b-")):
        v0 = round(v_float0 * 2.0**k)
        decayed = _decay_int(v0, neuron.dv, steps) / v0
        ax.plot(100 * (decayed / ideal - 1), style, label=f"{label}: dv={neuron.dv}, v0={v0}")
    ax.axhline(0, color="k", lw=1)
    ax.set_title(f"(a) one membrane, no input: Loihi's decay (rounds toward 0) vs beta^t = "
                 f"{beta0:.2f}^t;\nthe hardware's, in both; snntorch-loihi trains with it",
                 fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylabel("relative error of v (%)")
    ax.legend(fontsize=8)
    ax = axes[1]
    s_f = float_trace[0][0][:, 0]
    pick = [int(i) for i in torch.argsort(s_f.sum(0), descending=True)[:3]]
    t_axis = np.arange(T)
    v_naive = aligned(lava_runs["naive"][0][0].v, 0)[:, 0].double() * 2.0**-14
    v_ours = aligned(lava_runs["ours"][0][0].v, 0)[:, 0].double() * 2.0**-ol.scale_exp
    v_torch = aligned(report.ref[names[0]].v, 0)[:, 0].double() * 2.0**-ol.scale_exp
    for c, i in enumerate(pick):
        col = f"C{c}"
        ax.plot(t_axis, float_trace[0][1][:, 0, i].numpy(), color=col, lw=2, alpha=0.5,
                label=f"#{i} float snnTorch")
        ax.plot(t_axis, v_naive[:, i].numpy(), color=col, ls="--", lw=1, label=f"#{i} naive Lava")
        ax.plot(t_axis, v_ours[:, i].numpy(), color=col, ls=":", lw=2,
                label=f"#{i} snntorch-loihi Lava")
        ax.plot(t_axis, v_torch[:, i].numpy(), color=col, ls="none", marker=".", ms=4,
                label=f"#{i} snntorch-loihi torch")
    ax.axhline(float(net[1].threshold), color="gray", ls=":", lw=1)
    ax.set_title("(b) hidden membranes, sample 0 (float units, aligned to the input step)")
    ax.set_xlabel("input step")
    ax.set_ylabel("v")
    ax.legend(fontsize=6, ncol=3, loc="upper right")
    fig.tight_layout()
    fig_path = out / "why_parameters_shift.png"
    fig.savefig(fig_path, dpi=120)
    plt.close(fig)

    result = {
        "registers": registers,
        "mismatches": mism,
        "exact": report.exact,
        "files": [str(out / "float_net.nir"), str(fig_path)],
        "seconds": time.perf_counter() - t_start,
    }
    print()
    print("\n".join(lines))
    print(f"\nsnntorch-loihi parity report (torch forward vs Lava, s/u/v of every layer): "
          f"{'EXACT' if report.exact else 'NOT exact'}")
    print(f"Files: {', '.join(result['files'])}  ({result['seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and steps")
    parser.add_argument("--out", default="out/why_parameters_shift", help="output folder")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
