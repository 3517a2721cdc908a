"""``to_lava``: a NIR graph (or a :class:`~snntorch_loihi.ir.LoihiNetwork`) as a runnable Lava model.

:func:`to_lava` returns a :class:`LavaModel` that takes inputs as the training loop does (time
first: ``(T, B, *in)`` or ``(T, *in)``), runs a batch sample by sample on ONE compiled Lava
network (:class:`~snntorch_loihi.lava.LavaNetwork`; every sample starts from a fresh state) and
returns the output spikes over ``T + delay`` steps, exactly as the quantization-aware forward
does when it is stepped ``T + delay_steps(net)`` times with zero input after ``T`` (each synapse
delays by one step; the extra steps flush the pipeline). The Lava runtime is compiled on the
first call, reused while inputs fit, and stopped by :meth:`LavaModel.close`, on leaving a
``with`` block, and whenever a run raises.
"""

from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import RegisterRangeError
from ..ir import LoihiNetwork
from ._closing import Closing

if TYPE_CHECKING:  # pragma: no cover
    import nir

    from ..fixed.network import SimResult
    from .runner import LavaNetwork


__all__ = ["LavaModel", "to_lava", "as_network"]


def as_network(graph_or_ir: Any) -> LoihiNetwork:
    """A :class:`LoihiNetwork` from a LoihiNetwork, a NIR graph or a NIR file path.

    A NIR graph without ``metadata["loihi"]`` is quantized first (with a QuantizationWarning,
    by :func:`snntorch_loihi.export.from_nir_graph`).
    """
    if isinstance(graph_or_ir, LoihiNetwork):
        return graph_or_ir
    import nir

    if isinstance(graph_or_ir, (str, PathLike)):
        graph_or_ir = nir.read(graph_or_ir)
    if isinstance(graph_or_ir, nir.NIRGraph):
        from ..export import from_nir_graph

        return from_nir_graph(graph_or_ir)
    raise TypeError(
        f"to_lava: graph_or_ir must be a nir.NIRGraph, a NIR file path or a LoihiNetwork, got "
        f"{type(graph_or_ir).__name__}.")


class LavaModel(Closing):
    """A Loihi network on Lava's CPU simulation, called like the training forward.

    Attributes:
        net: the :class:`LoihiNetwork` that runs.
        delay: steps from an input column to the last layer's answer (one per synapse).
        fixed_point: bit-accurate ``fixed_pt`` models (True) or Lava's float models on the float
            parameters (False, for comparison).
        last: the :class:`~snntorch_loihi.fixed.SimResult` of the last call (every layer's
            recorded ``s``/``u``/``v``, ``(T + delay, B, *shape)``).
    """

    def __init__(self, net: LoihiNetwork, *, fixed_point: bool = True,
                 record: tuple[str, ...] = ("s",), progress: bool = True, chunk: int = 16) -> None:
        bad = [r for r in record if r not in ("s", "u", "v")]
        if bad or "s" not in record:
            raise ValueError(
                f"to_lava: record must contain 's' and be a subset of ('s', 'u', 'v'), got "
                f"{tuple(record)}.")
        if fixed_point:
            net.validate()
        self.net = net
        self.fixed_point = bool(fixed_point)
        self.record = tuple(record)
        self.progress = bool(progress)
        self.chunk = int(chunk)
        self.last: SimResult | None = None
        self._lava: LavaNetwork | None = None
        self.compiles = 0

    @property
    def delay(self) -> int:
        return self.net.delay

    def _runner(self, steps: int, batch: int) -> LavaNetwork:
        if self._lava is not None and self._lava.steps >= steps and not self._lava._closed:
            return self._lava
        self.close()
        from .runner import LavaNetwork

        self._lava = LavaNetwork(self.net, fixed_point=self.fixed_point, record=self.record,
                                 steps=steps, chunk=max(1, min(self.chunk, batch)),
                                 progress=self.progress)
        self.compiles += 1
        return self._lava

    def run(self, x: torch.Tensor | np.ndarray) -> SimResult:
        """Run ``x`` (``(T, B, *in)`` or ``(T, *in)``); every layer's traces, ``T + delay`` steps.

        The tensors are ``(T + delay, B, *shape)`` (a batch axis also for unbatched input).
        """
        from ..fixed.network import LayerTrace, SimResult

        x = torch.as_tensor(x)
        shape = tuple(self.net.input_shape)
        if x.dim() == 1 + len(shape) and tuple(x.shape[1:]) == shape:
            x = x.unsqueeze(1)
        if x.dim() != 2 + len(shape) or tuple(x.shape[2:]) != shape:
            raise RegisterRangeError(
                f"to_lava: x must have shape (T, B, *{shape}) or (T, *{shape}) (time first), got "
                f"{tuple(x.shape)}.")
        steps = int(x.shape[0]) + self.delay
        lava = self._runner(steps, int(x.shape[1]))
        res = lava.run(x)  # closes the runtime itself if it raises
        if lava.steps != steps:  # compiled for longer inputs: trim the zero-input tail
            res = SimResult({k: LayerTrace(*(None if t is None else t[:steps]
                                             for t in (tr.s, tr.u, tr.v)))
                             for k, tr in res.layers.items()})
        self.last = res
        return res

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Output spikes ``(T + delay, B, *out)`` (``(T + delay, *out)`` for unbatched input).

        Step ``t`` equals the quantized torch forward's output at step ``t`` when it is stepped
        ``T + delay`` times with zero input after ``T``.
        """
        xt = torch.as_tensor(x)
        unbatched = xt.dim() == 1 + len(self.net.input_shape)
        out = self.run(xt).output
        assert out is not None
        out = out.to(torch.get_default_dtype())
        return out[:, 0] if unbatched else out

    def close(self) -> None:
        """Stop the Lava runtime (idempotent); a later call compiles again."""
        if self._lava is not None:
            self._lava.close()
            self._lava = None

    def __repr__(self) -> str:
        mode = "fixed_pt" if self.fixed_point else "floating_pt"
        return (f"LavaModel({len(self.net.layers)} layers, input {tuple(self.net.input_shape)}, "
                f"delay={self.delay}, {mode}, record={self.record})")


def to_lava(graph_or_ir: nir.NIRGraph | LoihiNetwork | str | PathLike, *, fixed_point: bool = True,
            record: tuple[str, ...] = ("s",), progress: bool = True, chunk: int = 16) -> LavaModel:
    """A NIR graph or :class:`LoihiNetwork` as a Lava model that runs like the training forward.

    Args:
        graph_or_ir: a NIR graph (from :func:`snntorch_loihi.export`, or from another tool: then
            it is quantized first with a QuantizationWarning), a NIR file path, or a
            :class:`LoihiNetwork`.
        fixed_point: Lava's bit-accurate ``fixed_pt`` models (default) or its ``floating_pt``
            models on the float parameters, for comparison.
        record: which of ``"s"``, ``"u"``, ``"v"`` to record for every layer (in
            :attr:`LavaModel.last` / :meth:`LavaModel.run`); ``u``/``v`` slow Lava down.
        progress: a tqdm bar over the samples of a batch.
        chunk: samples per Lava run (one compiled network, states reset between samples).

    Returns:
        A :class:`LavaModel`; use it in a ``with`` block (or call ``close()``) so that its Lava
        worker processes stop.

    Example:
        >>> with to_lava(graph) as model:              # doctest: +SKIP
        ...     spk = model(x)                          # x: (T, B, 784) -> (T + 2, B, 10)
        ...     v_hidden = model.run(x)["1"].v
    """
    return LavaModel(as_network(graph_or_ir), fixed_point=fixed_point, record=record,
                     progress=progress, chunk=chunk)
