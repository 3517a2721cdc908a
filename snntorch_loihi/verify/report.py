"""The parity report: per-layer comparison of a reference run and a Lava run, printable, plottable."""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from ..fixed.network import SimResult
    from ..ir import LoihiNetwork

__all__ = ["LayerParity", "ParityReport", "compare_layer"]


@dataclass(frozen=True)
class LayerParity:
    """How one layer's reference run and hardware run compare (counts over all samples/steps).

    Attributes:
        name: the layer (the neuron module's path for a torch network).
        spikes_ref, spikes_hw: total spikes on each side.
        spike_mismatches: ``(step, sample, neuron)`` positions where the spikes differ.
        first_divergence: the first step where ``s``, ``u`` or ``v`` differ anywhere, or None.
        max_abs_du, max_abs_dv: largest integer difference of ``u`` / ``v`` (None where a side
            did not record it).
        current_wraps, voltage_saturations: events in the reference arithmetic (the current
            left 24 bits and wrapped; the voltage was clipped to ``+-(2**23 - 1)``).
        float_spike_mismatches: spikes where Lava's float models differ from fixed point (None
            if not run).
        exact: True only if ``s``, ``u`` and ``v`` are identical at every step and sample.
    """

    name: str
    shape: tuple[int, ...]
    spikes_ref: int
    spikes_hw: int
    spike_mismatches: int
    first_divergence: int | None
    max_abs_du: int | None
    max_abs_dv: int | None
    current_wraps: int = 0
    voltage_saturations: int = 0
    float_spike_mismatches: int | None = None
    exact: bool = False


def _first_diff(a: torch.Tensor, b: torch.Tensor) -> int | None:
    diff = (a != b).reshape(a.shape[0], -1).any(dim=1)
    idx = torch.nonzero(diff)
    return int(idx[0]) if idx.numel() else None


def compare_layer(name: str, ref: Any, hw: Any, *, wraps: int = 0, sats: int = 0,
                  float_s: torch.Tensor | None = None) -> LayerParity:
    """Compare two :class:`~snntorch_loihi.fixed.LayerTrace` (same shapes, ``(steps, B, ...)``)."""
    s_ref, s_hw = ref.s.to(torch.int64), hw.s.to(torch.int64)
    if s_ref.shape != s_hw.shape:
        raise ValueError(f"verify: layer '{name}' spikes must have equal shapes on both sides, "
                         f"got {tuple(s_ref.shape)} and {tuple(s_hw.shape)}.")
    firsts = [_first_diff(s_ref, s_hw)]
    exact = bool(torch.equal(s_ref, s_hw))
    maxes: dict[str, int | None] = {}
    for f in ("u", "v"):
        a, b = getattr(ref, f), getattr(hw, f)
        if a is None or b is None:
            maxes[f] = None
            continue
        a, b = a.to(torch.int64), b.to(torch.int64)
        maxes[f] = int((a - b).abs().max()) if a.numel() else 0
        firsts.append(_first_diff(a, b))
        exact = exact and maxes[f] == 0
    found = [f for f in firsts if f is not None]
    fm = None
    if float_s is not None:
        fm = int((float_s.to(torch.int64) != s_hw).sum())
    return LayerParity(
        name=name, shape=tuple(s_ref.shape[2:]), spikes_ref=int(s_ref.sum()),
        spikes_hw=int(s_hw.sum()), spike_mismatches=int((s_ref != s_hw).sum()),
        first_divergence=min(found) if found else None, max_abs_du=maxes["u"],
        max_abs_dv=maxes["v"], current_wraps=int(wraps), voltage_saturations=int(sats),
        float_spike_mismatches=fm, exact=exact,
    )


@dataclass
class ParityReport:
    """The result of :func:`snntorch_loihi.verify.verify`.

    Attributes:
        reference: what the reference side ran: ``"torch"`` (the quantization-aware forward in
            quantized mode) or ``"simulate"`` (:func:`snntorch_loihi.fixed.simulate` of the IR).
        backend: ``"lava"`` (Lava processes built from the IR) or ``"netx"`` (the IR written by
            :func:`~snntorch_loihi.lava.save_netx` and loaded by lava-dl's netx).
        steps, batch, delay: steps per sample (``T + delay``), samples, per-network delay.
        layers: one :class:`LayerParity` per layer, in network order.
        ref, hw, hw_float: the recorded traces (``SimResult``); ``hw_float`` is Lava's float
            simulation (spikes only), or None.
        net: the :class:`~snntorch_loihi.ir.LoihiNetwork` that ran on Lava.
        compared: a sentence saying what was compared.
    """

    reference: str
    backend: str
    steps: int
    batch: int
    delay: int
    layers: list[LayerParity]
    ref: SimResult
    hw: SimResult
    net: LoihiNetwork
    hw_float: SimResult | None = None
    compared: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        """True only if every layer is identical (spikes, and ``u``/``v`` where recorded)."""
        return all(layer.exact for layer in self.layers)

    def __getitem__(self, key: int | str) -> LayerParity:
        if isinstance(key, int):
            return self.layers[key]
        for layer in self.layers:
            if layer.name == key:
                return layer
        raise KeyError(key)

    def __str__(self) -> str:
        head = (f"ParityReport: {self.reference} vs {self.backend} (fixed_pt), {self.batch} "
                f"sample(s) x {self.steps} steps (delay {self.delay}): "
                f"{'EXACT' if self.exact else 'MISMATCH'}")
        cols = ["layer", "shape", "spikes ref", "spikes hw", "mismatch", "first step",
                "max|du|", "max|dv|", "wraps", "sats", "float drift", "exact"]
        rows = []
        for p in self.layers:
            rows.append([
                p.name, "x".join(map(str, p.shape)), str(p.spikes_ref), str(p.spikes_hw),
                str(p.spike_mismatches), "-" if p.first_divergence is None else str(p.first_divergence),
                "-" if p.max_abs_du is None else str(p.max_abs_du),
                "-" if p.max_abs_dv is None else str(p.max_abs_dv),
                str(p.current_wraps), str(p.voltage_saturations),
                "-" if p.float_spike_mismatches is None else str(p.float_spike_mismatches),
                "yes" if p.exact else "NO",
            ])
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        fmt = lambda r: "  ".join(x.rjust(w) if i else x.ljust(w)  # noqa: E731
                                  for i, (x, w) in enumerate(zip(r, widths, strict=True)))
        lines = [head, fmt(cols), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
        if self.compared:
            lines.append(self.compared)
        if any(p.float_spike_mismatches is not None for p in self.layers):
            lines.append("float drift: spikes where Lava's floating_pt models on the float "
                         "parameters differ from fixed_pt (for reference; not part of 'exact').")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"ParityReport(reference={self.reference!r}, backend={self.backend!r}, "
                f"exact={self.exact}, layers={[p.name for p in self.layers]})")

    # ---- plotting ----------------------------------------------------------------------------
    def _pick(self, name: str, k: int) -> list[int]:
        s = self.ref[name].s
        v = self.ref[name].v
        act = s.reshape(s.shape[0], s.shape[1], -1).sum((0, 1)).double()
        if v is not None:
            act = act + 1e-9 * v.reshape(v.shape[0], v.shape[1], -1).abs().sum((0, 1)).double()
        return [int(i) for i in torch.argsort(act, descending=True)[:k]]

    def plot(self, path: str | PathLike, *, sample: int = 0,
             neurons: dict[str, list[int]] | None = None, n_neurons: int = 3,
             max_raster: int = 200) -> Any:
        """Save a figure: per layer, spike rasters side by side and membrane traces.

        Args:
            path: image file (PNG, PDF, ...).
            sample: which sample of the batch to show.
            neurons: ``{layer name: [flat neuron indices]}`` whose ``v`` to trace; default the
                ``n_neurons`` most active neurons of each layer.
            max_raster: show at most this many neurons per raster.

        Returns:
            The matplotlib Figure (Agg backend; nothing is shown).
        """
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        names = [p.name for p in self.layers]
        fig = Figure(figsize=(14, 3.0 * len(names)), constrained_layout=True)
        axes = fig.subplots(len(names), 3, squeeze=False)
        for row, name in enumerate(names):
            p = self[name]
            for col, (side, res) in enumerate((("ref: " + self.reference, self.ref),
                                               ("hw: " + self.backend, self.hw))):
                ax = axes[row][col]
                s = res[name].s[:, sample].reshape(res[name].s.shape[0], -1)[:, :max_raster]
                t_idx, n_idx = np.nonzero(s.cpu().numpy())
                ax.scatter(t_idx, n_idx, s=30, marker="|", linewidths=1.5,
                           color="k" if col == 0 else "tab:blue")
                ax.set_ylim(-0.5, s.shape[1] - 0.5)
                if col == 1 and not p.exact:
                    other = self.ref[name].s[:, sample].reshape(s.shape[0], -1)[:, :max_raster]
                    bt, bn = np.nonzero((s != other).cpu().numpy())
                    ax.scatter(bt, bn, s=12, marker="x", color="tab:red", label="mismatch")
                    ax.legend(loc="upper right", fontsize=7)
                ax.set_xlim(-0.5, self.steps - 0.5)
                ax.set_title(f"{name} spikes ({side}): {int(s.sum())}", fontsize=9)
                ax.set_xlabel("step")
                ax.set_ylabel("neuron")
            ax = axes[row][2]
            idx = (neurons or {}).get(name) or self._pick(name, n_neurons)
            vr, vh = self.ref[name].v, self.hw[name].v
            for j, i in enumerate(idx):
                color = f"C{j % 10}"
                if vr is not None:
                    ax.plot(vr[:, sample].reshape(vr.shape[0], -1)[:, i].cpu().numpy(), color=color,
                            lw=1.2, label=f"#{i} ref")
                if vh is not None:
                    ax.plot(vh[:, sample].reshape(vh.shape[0], -1)[:, i].cpu().numpy(), color=color,
                            lw=1.0, ls="--", label=f"#{i} hw")
            layer = next(la for la in self.net.layers if la.name == name)
            ax.axhline(int(layer.neuron.vth) << 6, color="gray", ls=":", label="vth << 6")
            ax.set_title(f"{name} v (integer, after reset); exact={p.exact}", fontsize=9)
            ax.set_xlabel("step")
            ax.legend(loc="upper right", fontsize=7, ncol=2)
        fig.suptitle(str(self).splitlines()[0], fontsize=10)
        fig.savefig(path, dpi=100)
        return fig
