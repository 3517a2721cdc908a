"""A temporal task where decays and recurrence matter: snn.Synaptic + snn.RLeaky on Loihi, exactly.

The task (:func:`snntorch_loihi.data.temporal_spikes`): two groups of input channels, A and B,
each fire one short burst per sample; the label says which burst came FIRST and whether the
gap between them was short or long (4 classes). Every sample has the same expected spike count
per group, so a memoryless network (its output at step ``t`` a function of the input at step
``t`` only) is at chance with a spike-count readout; the network must carry the first burst in
its synaptic current, its membrane or its recurrent activity until the second one arrives.

What it shows:

- a memoryless baseline (``Leaky(beta=0)``) at about chance (25 %);
- ``Linear -> Synaptic (alpha, beta) -> Linear -> RLeaky`` (the four class neurons with an
  all-to-all linear recurrence), trained in float snnTorch;
- ``prepare_qat``: 12-bit decays for the current (``du``) and the voltage (``dv``), the
  recurrent Dense weights on Lava's grid, one step of delay per feed-forward synapse (the
  recurrent Dense feeds back the previous step's spikes, as snnTorch's RLeaky does);
- quantization-aware fine-tuning, then ``verify``: the torch forward equals Lava's ``fixed_pt``
  simulation (spikes, ``u``, ``v`` of every layer, recurrent layer included), plus the Lava
  accuracy on a slice of the test set.

Run it::

    python examples/temporal_synaptic_rleaky.py [--quick] [--out out/temporal_synaptic_rleaky]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["build_float_net", "build_memoryless_net", "main"]


def build_float_net(n_in: int = 16, hidden: int = 64, n_out: int = 4, alpha: float = 0.9,
                    beta: float = 0.95) -> nn.Sequential:
    """Linear + Synaptic (hidden) + Linear + RLeaky (output, all_to_all recurrence), zero reset.

    The Synaptic layer holds the first burst in its decaying current and membrane; the output
    RLeaky's all-to-all recurrent Dense (initialised to zero, so training decides what it
    becomes) lets the four class neurons excite or inhibit each other. The first Linear has no
    bias: prepare_qat would move it from the synaptic current to the membrane (Loihi adds
    biases to ``v``), which changes a Synaptic neuron's dynamics.
    """
    import snntorch as snn

    kw = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
    net = nn.Sequential(
        nn.Linear(n_in, hidden, bias=False),
        snn.Synaptic(alpha=alpha, beta=beta, **kw),
        nn.Linear(hidden, n_out),
        snn.RLeaky(beta=beta, linear_features=n_out, all_to_all=True, **kw),
    )
    with torch.no_grad():
        net[3].recurrent.weight.zero_()
        net[3].recurrent.bias.zero_()
    return net


def build_memoryless_net(n_in: int = 16, hidden: int = 32, n_out: int = 4) -> nn.Sequential:
    """The same widths with ``beta = 0`` and no recurrence: no memory across steps."""
    import snntorch as snn

    kw = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
    return nn.Sequential(nn.Linear(n_in, hidden), snn.Leaky(beta=0.0, **kw),
                         nn.Linear(hidden, n_out), snn.Leaky(beta=0.0, **kw))


def main(quick: bool = False, out: str | Path = "out/temporal_synaptic_rleaky") -> dict:
    """Train (memoryless baseline, then Synaptic + RLeaky), quantize, fine-tune, verify in Lava.

    Args:
        quick: fewer samples and epochs (for the tests).
        out: folder for ``temporal.nir``, ``parity.png`` and ``training.png``.

    Returns:
        ``{"accuracy": {stage: fraction}, "exact": bool, "lava_mismatches": int,
        "registers": {layer: {...}}, "files": [paths], "seconds": float}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import snntorch.functional as SF
    from tqdm.auto import tqdm

    import snntorch_loihi as sl
    from snntorch_loihi.data import temporal_spikes
    from snntorch_loihi.training import accuracy, run_network, spike_count_accuracy, train_epoch

    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    num_steps = 24 if quick else 32
    n_train, n_test = (512, 192) if quick else (1600, 800)
    float_epochs, qat_epochs, base_epochs = (8, 2, 2) if quick else (8, 3, 3)
    n_lava = 16 if quick else 64
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x_tr, y_tr, x_te, y_te = temporal_spikes(num_steps, n_train, n_test, seed=0)
    loss_fn = SF.ce_rate_loss()
    batches = -(-x_tr.shape[1] // 64)
    curve: dict[str, list[float]] = {"memoryless": [], "float": [], "qat": []}

    def fit(net: nn.Module, epochs: int, lr: float, key: str, steps: int | None = None) -> None:
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)  # a stable end
        with tqdm(total=epochs * batches, desc=f"{key} training") as bar:
            for _ in range(epochs):
                train_epoch(net, x_tr, y_tr, opt, loss_fn, steps=steps, generator=gen, progress=bar)
                sched.step()
                curve[key].append(accuracy(net, x_te, y_te, steps=steps))

    # 1. a memoryless network cannot tell the order of the bursts
    fit(build_memoryless_net(), base_epochs, 5e-3, "memoryless")
    # 2. float snnTorch: Synaptic (current + membrane decay) and RLeaky (recurrence)
    net = build_float_net()
    fit(net, float_epochs, 2e-3, "float")
    acc_float = curve["float"][-1]
    # 3. Loihi arithmetic in the forward pass, then quantization-aware fine-tuning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # post-training quantization notes, per layer
        qnet = sl.prepare_qat(net)
    steps = num_steps + sl.delay_steps(qnet)  # 2 feed-forward synapses: 2 steps of delay
    acc_ptq = accuracy(qnet, x_te, y_te, steps=steps)
    fit(qnet, qat_epochs, 5e-4, "qat", steps=steps)
    sl.freeze_calibration(qnet)
    acc_qat = accuracy(qnet, x_te, y_te, steps=steps)

    # 4. export, verify every layer in Lava, and Lava's accuracy on a slice of the test set
    nir_path = out / "temporal.nir"
    graph = sl.export(qnet, x_te[0, :1], path=nir_path)
    report = sl.verify(qnet, x_te[:, :4], float_drift=False)
    report.plot(out / "parity.png")
    x_l, y_l = x_te[:, :n_lava], y_te[:n_lava]
    with sl.to_lava(graph) as lava_net:
        lava_spk = lava_net(x_l)
        ir = lava_net.net  # the LoihiNetwork that ran: the registers as Lava took them
    registers = {}
    for layer in ir.layers:
        n, rec = layer.neuron, layer.recurrent
        registers[layer.name] = dict(du=n.du, dv=n.dv, vth=n.vth, scale_exp=n.scale_exp,
                                     weight_exp=layer.synapse.weight_exp)
        if rec is not None:
            w_rec = np.asarray(rec.weight_mant)
            registers[layer.name].update(recurrent=f"Dense {w_rec.shape[0]}x{w_rec.shape[1]}",
                                         recurrent_nonzero=int((w_rec != 0).sum()),
                                         recurrent_max_mant=int(np.abs(w_rec).max()),
                                         recurrent_weight_exp=rec.weight_exp)
    with torch.no_grad():
        torch_spk = run_network(qnet.eval(), x_l, steps)
    mismatches = int((lava_spk[: torch_spk.shape[0]] != torch_spk).sum())
    acc_lava = spike_count_accuracy(lava_spk, y_l)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(curve["memoryless"]) + 1), [100 * a for a in curve["memoryless"]],
            label="memoryless (beta=0)")
    ax.plot(range(1, len(curve["float"]) + 1), [100 * a for a in curve["float"]],
            label="Synaptic + RLeaky, float")
    n_f = len(curve["float"])
    ax.plot(range(n_f + 1, n_f + len(curve["qat"]) + 1), [100 * a for a in curve["qat"]],
            label="quantization-aware (Loihi arithmetic)")
    ax.axhline(25, color="gray", ls=":", label="chance")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "training.png", dpi=120)
    plt.close(fig)

    result = {
        "accuracy": {
            "memoryless baseline (float)": curve["memoryless"][-1],
            "Synaptic + RLeaky, float snnTorch": acc_float,
            "post-training quantized (torch)": acc_ptq,
            "QAT fine-tuned (torch)": acc_qat,
            f"QAT fine-tuned (torch, first {n_lava} test samples)":
                spike_count_accuracy(torch_spk, y_l),
            f"Lava fixed_pt (first {n_lava} test samples)": acc_lava,
        },
        "exact": report.exact,
        "lava_mismatches": mismatches,
        "registers": registers,
        "files": [str(nir_path), str(out / "parity.png"), str(out / "training.png")],
        "seconds": time.perf_counter() - t_start,
    }
    print()
    print("| stage | test accuracy (4 classes) |")
    print("|---|---|")
    for k, v in result["accuracy"].items():
        print(f"| {k} | {100 * v:.1f} % |")
    print("\n| neuron layer | Loihi registers |")
    print("|---|---|")
    for name, regs in registers.items():
        print(f"| {name} | {', '.join(f'{k}={v}' for k, v in regs.items())} |")
    print(f"\nLava vs torch output spikes on {n_lava} samples: {mismatches} mismatches; parity "
          f"report (4 samples, s/u/v of every layer): {'EXACT' if report.exact else 'NOT exact'}")
    print(report)
    print(f"Files: {', '.join(result['files'])}  ({result['seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and epochs")
    parser.add_argument("--out", default="out/temporal_synaptic_rleaky", help="output folder")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
