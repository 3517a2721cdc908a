"""Run a :class:`~snntorch_loihi.ir.LoihiNetwork` on Lava's CPU simulation, many samples at once.

:class:`LavaNetwork` builds, once::

    RingBuffer -> Dense/Conv -> LIF -> Dense/Conv -> LIF ...
                                 ^ \\-> recurrent Dense -/   (into the same a_in port)
                                 \\--> _Probe (one per LIF)

and compiles it on the first :meth:`LavaNetwork.run`. A batch is played back to back through one
long ring buffer, ``steps`` columns per sample. Each LIF has a ``_Probe`` process that records
``s`` (an InPort on ``s_out``) and ``u``, ``v`` (RefPorts, read after the spike phase, i.e. after
the reset, like Lava's Monitor) into cyclic buffers, and that, after the last step of every
sample, writes zeros into the LIF's ``u``, ``v`` and into the ``a_buff`` / ``a_buf`` of the
synapses that feed it. So each sample starts from exactly the state of a fresh network, with
no host round trip per sample (an exact reset; the parity tests prove it against a fresh
:func:`~snntorch_loihi.fixed.simulate` per sample).

Layout: Lava's populations are the PyTorch shapes reversed (``(C, H, W)`` -> ``(W, H, C)``);
Dense weights are permuted so that a Dense fed by a conv population equals PyTorch's C-order
flatten, Conv kernels are flipped and transposed to ``(C_out, kW, kH, C_in)`` (Lava computes a
true convolution), stride/padding/dilation are given in Lava's ``(W, H)`` order.

Importing this module imports Lava; :mod:`snntorch_loihi.lava` imports it lazily.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import warnings
from typing import Any

import numpy as np
import torch

from snntorch_loihi.errors import LavaUnavailableError, RegisterRangeError, SemanticsChangeWarning
from snntorch_loihi.fixed.network import LayerTrace, SimResult
from snntorch_loihi.ir import LoihiNetwork, LoihiSynapse
from snntorch_loihi.lava import _guard_start_method
from snntorch_loihi.lava._closing import Closing

_guard_start_method()  # before Lava's runtime module calls set_start_method('fork')

try:
    from lava.magma.core.decorator import implements, requires, tag
    from lava.magma.core.model.py.model import PyLoihiProcessModel
    from lava.magma.core.model.py.ports import PyInPort, PyRefPort
    from lava.magma.core.model.py.type import LavaPyType
    from lava.magma.core.process.ports.ports import InPort, RefPort
    from lava.magma.core.process.process import AbstractProcess
    from lava.magma.core.process.variable import Var
    from lava.magma.core.resources import CPU
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.utils.weightutils import SignMode
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise LavaUnavailableError(
        f"snntorch_loihi.lava needs lava-nc 0.10 (pip install 'snntorch-loihi[lava]', Python "
        f"3.10), but importing it failed: {exc}"
    ) from exc


__all__ = ["LavaNetwork"]

_SIGN_MODES = {
    "mixed": SignMode.MIXED,
    "excitatory": SignMode.EXCITATORY,
    "inhibitory": SignMode.INHIBITORY,
}


# ---- the probe: record s, u, v and reset the population between samples -----------------------
class _Probe(AbstractProcess):
    """Records one LIF population and zeroes its state after every ``steps`` steps.

    ``n_buf`` RefPorts (``buf_0`` ...) reset the buffers of the synapses that feed the LIF.
    """

    def __init__(self, *, shape: tuple[int, ...], steps: int, length: int,
                 buf_shapes: tuple[tuple[int, ...], ...], read_state: bool) -> None:
        super().__init__(shape=shape, steps=steps, length=length, buf_shapes=buf_shapes,
                         read_state=read_state)
        self.s_in = InPort(shape=shape)
        self.u_ref = RefPort(shape=shape)
        self.v_ref = RefPort(shape=shape)
        for i, bshape in enumerate(buf_shapes):
            setattr(self, f"buf_{i}", RefPort(shape=bshape))
        self.s_data = Var(shape=(length, *shape), init=0)
        self.u_data = Var(shape=(length, *shape), init=0)
        self.v_data = Var(shape=(length, *shape), init=0)


class _Probe1(_Probe):
    """A probe of a LIF fed by one synapse."""


class _Probe2(_Probe):
    """A probe of a LIF fed by a synapse and a recurrent Dense."""


class _ProbeModelBase(PyLoihiProcessModel):
    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        self._steps = int(proc_params["steps"])
        self._length = int(proc_params["length"])
        self._read = bool(proc_params["read_state"])
        self._bufs = [f"buf_{i}" for i in range(len(proc_params["buf_shapes"]))]

    def run_spk(self) -> None:
        i = (self.time_step - 1) % self._length
        self.s_data[i] = self.s_in.recv()

    def post_guard(self) -> bool:
        return self._read or self.time_step % self._steps == 0

    def run_post_mgmt(self) -> None:
        if self._read:
            i = (self.time_step - 1) % self._length
            self.u_data[i] = self.u_ref.read()
            self.v_data[i] = self.v_ref.read()
        if self.time_step % self._steps == 0:  # last step of a sample: back to a fresh network
            ports = [self.u_ref, self.v_ref] + [getattr(self, name) for name in self._bufs]
            for port in ports:
                port.write(np.zeros(port.shape, self._dtype))
            # A RefPort write is not acknowledged: the target may see its next SPK command
            # before the write (seen: a Dense zeroed its buffer one step late). A read on the
            # same channel is answered only after the write was applied, so it fences it.
            for port in ports:
                if np.any(port.read()):
                    raise RuntimeError("LavaNetwork probe: a state was not reset to zero.")


def _probe_model(proc: type, dtype: type, tag_name: str, n_buf: int) -> type:
    ann = {
        "s_in": LavaPyType(PyInPort.VEC_DENSE, dtype),
        "u_ref": LavaPyType(PyRefPort.VEC_DENSE, dtype),
        "v_ref": LavaPyType(PyRefPort.VEC_DENSE, dtype),
        "s_data": LavaPyType(np.ndarray, dtype),
        "u_data": LavaPyType(np.ndarray, dtype),
        "v_data": LavaPyType(np.ndarray, dtype),
    }
    for i in range(n_buf):
        ann[f"buf_{i}"] = LavaPyType(PyRefPort.VEC_DENSE, dtype)
    cls = type(f"_{proc.__name__}Model_{tag_name}", (_ProbeModelBase,),
               {**ann, "_dtype": dtype, "__module__": __name__})
    return implements(proc=proc, protocol=LoihiProtocol)(requires(CPU)(tag(tag_name)(cls)))


# Module-level names: Lava finds a process's models among the classes of its module.
_Probe1ModelFixed = _probe_model(_Probe1, np.int32, "fixed_pt", 1)
_Probe1ModelFloat = _probe_model(_Probe1, np.float64, "floating_pt", 1)
_Probe2ModelFixed = _probe_model(_Probe2, np.int32, "fixed_pt", 2)
_Probe2ModelFloat = _probe_model(_Probe2, np.float64, "floating_pt", 2)


# ---- layout helpers ----------------------------------------------------------------------------
def _lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(n) for n in shape[::-1])


def _to_lava(a: np.ndarray, lead: int) -> np.ndarray:
    """Reverse the trailing (non-leading) axes: PyTorch layout -> Lava layout."""
    return np.transpose(a, list(range(lead)) + list(range(a.ndim - 1, lead - 1, -1)))


def _flat_perm(shape: tuple[int, ...]) -> np.ndarray:
    """``perm[j]``: the PyTorch C-order index of Lava's C-order flat position ``j``."""
    return np.arange(int(np.prod(shape))).reshape(shape).transpose().ravel()


def _conv_weight(w: np.ndarray) -> np.ndarray:
    """PyTorch cross-correlation ``(C_out, C_in, kH, kW)`` -> Lava ``(C_out, kW, kH, C_in)``."""
    return np.ascontiguousarray(np.flip(w, (2, 3)).transpose(0, 3, 2, 1))


def _as_batch(x: np.ndarray | torch.Tensor, input_shape: tuple[int, ...]) -> np.ndarray:
    a = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
    if tuple(a.shape[1:]) == tuple(input_shape):
        a = a[:, None]
    if a.ndim != 2 + len(input_shape) or tuple(a.shape[2:]) != tuple(input_shape):
        raise RegisterRangeError(
            f"LavaNetwork.run: x must have shape (T, B, *{tuple(input_shape)}) or "
            f"(T, *{tuple(input_shape)}), got {tuple(a.shape)}."
        )
    return a


class LavaNetwork(Closing):
    """A :class:`LoihiNetwork` compiled once on Lava's CPU simulation, for many samples.

    Args:
        net: the network (PyTorch layout; see :mod:`snntorch_loihi.ir`).
        fixed_point: ``True`` runs Lava's bit-accurate ``fixed_pt`` models on the integer
            registers; ``False`` runs the ``floating_pt`` models on the float parameters of the
            float correspondence (``w = weight_mant * 2**(weight_exp + 6 - k)``,
            ``du = (du + 1) / 4096``, ``dv = dv / 4096``, ``vth = (vth << 6) * 2**-k``,
            ``bias = bias_mant * 2**(bias_exp - k)``, with ``k`` the receiving layer's
            ``scale_exp``), for comparison.
        record: which of ``"s"``, ``"u"``, ``"v"`` to return (reading ``u`` and ``v`` costs
            two RefPort reads per layer and step).
        steps: steps per sample (for a flush, ``T + net.delay``).
        chunk: samples per Lava run (the ring buffer and the probes hold ``chunk * steps``
            steps); a batch is run in chunks, the last one padded with zero samples.
        progress: show a tqdm bar over the chunks of a batch.

    Use as a context manager, or call :meth:`close`; the Lava runtime (one OS process per Lava
    process) is stopped on exit and whenever a run raises.

    Example:
        >>> with LavaNetwork(net, steps=T + net.delay) as ln:    # doctest: +SKIP
        ...     result = ln.run(x)                                # x: (T, B, *input_shape)
    """

    def __init__(
        self,
        net: LoihiNetwork,
        *,
        fixed_point: bool = True,
        record: tuple[str, ...] = ("s", "u", "v"),
        steps: int,
        chunk: int = 16,
        progress: bool = True,
    ) -> None:
        bad = [r for r in record if r not in ("s", "u", "v")]
        if bad:
            raise ValueError(f"LavaNetwork: record must be a subset of ('s', 'u', 'v'), got {bad}.")
        if int(steps) < 1 or int(chunk) < 1:
            raise ValueError(f"LavaNetwork: steps and chunk must be >= 1, got {steps}, {chunk}.")
        if fixed_point:
            net.validate()
        for layer in net.layers:
            if layer.neuron.reset == "none":
                warnings.warn(
                    f"LavaNetwork: layer '{layer.name}' has reset='none', but Lava's LIF always "
                    f"resets v to 0 after a spike.", SemanticsChangeWarning, stacklevel=2)
        self.net = net
        self.fixed_point = bool(fixed_point)
        self.record = tuple(record)
        self.steps = int(steps)
        self.chunk = int(chunk)
        self.progress = bool(progress)
        self._length = self.steps * self.chunk
        self._dtype = np.int32 if fixed_point else np.float64
        self._started = False
        self._closed = False
        self._stop_error: BaseException | None = None
        self._t = 0  # Lava time steps run so far
        self._build()

    # ---- construction ----------------------------------------------------------------------
    def _float_weight(self, syn: LoihiSynapse, k: int) -> np.ndarray:
        w = np.asarray(syn.weight_mant, np.float64)
        return w * 2.0 ** (syn.weight_exp + 6 - k)

    def _synapse(self, syn: LoihiSynapse, src_shape: tuple[int, ...], dst_shape: tuple[int, ...],
                 k: int) -> tuple[AbstractProcess, Any, Any]:
        """A Dense or Conv; returns ``(process, s_in port view, a_out port view)``."""
        w_raw = np.asarray(syn.weight_mant)
        w = w_raw.astype(np.int64) if self.fixed_point else self._float_weight(syn, k)
        if syn.kind == "dense":
            w = w.reshape(w.shape[0], -1)[_flat_perm(dst_shape)][:, _flat_perm(src_shape)]
            kw: dict[str, Any] = dict(num_message_bits=int(syn.num_message_bits))
            if self.fixed_point:
                kw.update(weight_exp=int(syn.weight_exp), num_weight_bits=int(syn.num_weight_bits),
                          sign_mode=_SIGN_MODES[syn.sign_mode])
            proc = Dense(weights=np.ascontiguousarray(w), **kw)
            return proc, proc.s_in, proc.a_out
        if syn.kind != "conv":
            raise RegisterRangeError(
                f"LavaNetwork: synapse kind must be 'dense' or 'conv', got {syn.kind!r}.")
        in_shape = tuple(syn.in_shape)
        if len(in_shape) != 3:
            raise RegisterRangeError(
                f"LavaNetwork: a conv synapse needs a (C, H, W) input, got {in_shape}.")
        proc = Conv(weight=_conv_weight(w), input_shape=_lava_shape(in_shape),
                    padding=tuple(int(p) for p in syn.padding[::-1]),
                    stride=tuple(int(p) for p in syn.stride[::-1]),
                    dilation=tuple(int(p) for p in syn.dilation[::-1]),
                    groups=int(syn.groups), num_message_bits=int(syn.num_message_bits))
        return proc, proc.s_in, proc.a_out

    def _lif(self, layer) -> LIF:
        n = layer.neuron
        shape = _lava_shape(tuple(n.shape))
        bias_mant = _to_lava(np.broadcast_to(np.asarray(n.bias_mant), n.shape), 0)
        bias_exp = _to_lava(np.broadcast_to(np.asarray(n.bias_exp), n.shape), 0)
        if self.fixed_point:
            return LIF(shape=shape, du=int(n.du), dv=int(n.dv), vth=int(n.vth),
                       bias_mant=np.ascontiguousarray(bias_mant, np.int64),
                       bias_exp=np.ascontiguousarray(bias_exp, np.int64))
        k = int(n.scale_exp)
        bias = np.asarray(bias_mant, np.float64) * 2.0 ** (np.asarray(bias_exp, np.float64) - k)
        return LIF(shape=shape, du=(int(n.du) + 1) / 4096, dv=int(n.dv) / 4096,
                   vth=float(int(n.vth) * 64 * 2.0**-k), bias_mant=np.ascontiguousarray(bias),
                   bias_exp=0)

    @staticmethod
    def _connect(src_port, src_shape: tuple[int, ...], dst_port, dst_kind: str,
                 dst_in_shape: tuple[int, ...]) -> None:
        lava_src = _lava_shape(src_shape)
        if dst_kind == "dense":
            port = src_port if len(lava_src) == 1 else src_port.reshape((int(np.prod(lava_src)),))
        elif tuple(src_shape) == tuple(dst_in_shape):
            port = src_port
        else:  # a flat population into a conv: back to PyTorch order, reshape, to (W, H, C)
            port = src_port.reshape(tuple(dst_in_shape)).transpose([2, 1, 0])
        port.connect(dst_port)

    def _build(self) -> None:
        net = self.net
        shape_in = tuple(net.input_shape)
        self._source = RingBuffer(data=np.zeros((*_lava_shape(shape_in), self._length),
                                                self._dtype))
        self._lifs, self._probes, self._procs = [], [], [self._source]
        src_port, src_shape = self._source.s_out, shape_in
        for layer in net.layers:
            shape = tuple(layer.neuron.shape)
            k = int(layer.neuron.scale_exp)
            syn, s_in, a_out = self._synapse(layer.synapse, src_shape, shape, k)
            self._connect(src_port, src_shape, s_in, layer.synapse.kind, layer.synapse.in_shape)
            lif = self._lif(layer)
            a_out.reshape(lif.a_in.shape).connect(lif.a_in) if a_out.shape != lif.a_in.shape \
                else a_out.connect(lif.a_in)
            bufs = [syn.a_buff if layer.synapse.kind == "dense" else syn.a_buf]
            self._procs += [syn, lif]
            if layer.recurrent is not None:
                rec, r_in, r_out = self._synapse(layer.recurrent, shape, shape, k)
                self._connect(lif.s_out, shape, r_in, "dense", shape)
                r_out.reshape(lif.a_in.shape).connect(lif.a_in) if r_out.shape != lif.a_in.shape \
                    else r_out.connect(lif.a_in)
                bufs.append(rec.a_buff)
                self._procs.append(rec)
            probe_cls = _Probe1 if len(bufs) == 1 else _Probe2
            probe = probe_cls(shape=lif.a_in.shape, steps=self.steps, length=self._length,
                              buf_shapes=tuple(tuple(b.shape) for b in bufs),
                              read_state=("u" in self.record or "v" in self.record))
            lif.s_out.connect(probe.s_in)
            probe.u_ref.connect_var(lif.u)
            probe.v_ref.connect_var(lif.v)
            for i, b in enumerate(bufs):
                getattr(probe, f"buf_{i}").connect_var(b)
            self._lifs.append(lif)
            self._probes.append(probe)
            self._procs.append(probe)
            src_port, src_shape = lif.s_out, shape

    # ---- running ----------------------------------------------------------------------------
    def _run_cfg(self):
        return Loihi2SimCfg(select_tag="fixed_pt" if self.fixed_point else "floating_pt")

    def start(self) -> None:
        """Compile the network and start Lava's runtime (``run`` does it on first use)."""
        if self._closed:
            raise RuntimeError("LavaNetwork: the runtime is closed; build a new LavaNetwork.")
        if self._started:
            return
        self._started = True  # from here on, close() must stop the runtime
        try:
            with warnings.catch_warnings():
                # Lava's compiler imports every module next to a process's own; silence its
                # warnings about modules it cannot import out of their package
                warnings.filterwarnings("ignore", message="Cannot import module")
                # one sample of zero input: Vars can be set only once the runtime has run
                self._source.run(condition=RunSteps(num_steps=self.steps),
                                 run_cfg=self._run_cfg())
            self._t = self.steps
        except BaseException:
            self.close(force=True)
            raise

    def _run_chunk(self, data: np.ndarray) -> None:
        """Play ``(*lava_shape, chunk * steps)`` columns; the ring buffer and the probes are
        cyclic, indexed by Lava's global time step, hence the roll by the steps run so far."""
        self.start()
        self._source.data.set(np.ascontiguousarray(np.roll(data, self._t % self._length, -1)))
        self._source.run(condition=RunSteps(num_steps=self._length))

    def run(self, x: np.ndarray | torch.Tensor) -> SimResult:
        """Run every sample of ``x`` from a fresh state; returns the same structure as simulate.

        Args:
            x: ``(T, B, *input_shape)`` or ``(T, *input_shape)`` integer-valued input with
                ``T <= steps`` (zero input for the remaining steps).

        Returns:
            :class:`~snntorch_loihi.fixed.SimResult` of int64 tensors (float64 in float units
            when ``fixed_point=False``) shaped ``(steps, B, *neuron.shape)``; states not in
            ``record`` are None.
        """
        a = _as_batch(x, tuple(self.net.input_shape))
        n_in, batch = a.shape[0], a.shape[1]
        if n_in > self.steps:
            raise RegisterRangeError(
                f"LavaNetwork.run: x must have at most steps={self.steps} time steps, got {n_in}.")
        if self.fixed_point and not np.array_equal(a, np.trunc(a)):
            raise RegisterRangeError("LavaNetwork.run: x must be integer-valued in fixed point.")
        out = {name: [] for name in ("s", "u", "v")}
        chunks = range(0, batch, self.chunk)
        try:
            from tqdm.auto import tqdm
            bar = tqdm(total=batch, disable=not self.progress, desc="Lava", unit="sample")
            with bar:
                for start in chunks:
                    part = a[:, start:start + self.chunk]
                    nb = part.shape[1]
                    buf = np.zeros((self.chunk, self.steps, *part.shape[2:]), self._dtype)
                    buf[:nb, :n_in] = np.moveaxis(part, 1, 0)
                    # (chunk, steps, *torch) -> (*lava, chunk * steps)
                    buf = buf.reshape(self._length, *part.shape[2:])
                    self._run_chunk(np.moveaxis(_to_lava(buf, 1), 0, -1))
                    self._t += self._length
                    for name in ("s", "u", "v"):
                        if name in self.record:
                            out[name].append([self._read(p, name, nb) for p in self._probes])
                    bar.update(nb)
        except BaseException:
            self.close(force=True)
            raise
        layers = {}
        for k, layer in enumerate(self.net.layers):
            traces = {}
            for name in ("s", "u", "v"):
                if name in self.record:
                    traces[name] = torch.cat([c[k] for c in out[name]], dim=1)
                else:
                    traces[name] = None
            layers[layer.name] = LayerTrace(**traces)
        return SimResult(layers)

    def _read(self, probe: _Probe, name: str, nb: int) -> torch.Tensor:
        data = np.asarray(getattr(probe, f"{name}_data").get())  # (chunk * steps, *lava)
        data = np.roll(data, -((self._t - self._length) % self._length), 0)
        data = _to_lava(data, 1)  # reversing the trailing axes again gives PyTorch order
        data = data.reshape(self.chunk, self.steps, *data.shape[1:])[:nb]
        t = torch.from_numpy(np.ascontiguousarray(np.swapaxes(data, 0, 1)))
        return t.to(torch.int64) if self.fixed_point else t.to(torch.float64)

    # ---- lifetime ---------------------------------------------------------------------------
    def close(self, *, force: bool = False, timeout: float = 10.0) -> None:
        """Stop the Lava runtime and its worker processes (idempotent).

        Args:
            force: skip Lava's graceful ``stop()`` (which waits for every worker and hangs when
                one of them has died) and terminate the workers directly.
            timeout: seconds to wait for a graceful stop before terminating the workers.
        """
        if self._closed:
            return
        self._closed = True
        if not self._started or self._source.runtime is None:
            return
        if not force:
            stopper = threading.Thread(target=self._graceful_stop, daemon=True)
            stopper.start()
            stopper.join(timeout)
            if not stopper.is_alive() and self._stop_error is None:
                return
        self._kill_workers()

    def _graceful_stop(self) -> None:
        self._stop_error: BaseException | None = None
        try:
            self._source.stop()
        except BaseException as exc:  # noqa: BLE001 - reported by falling back to a kill
            self._stop_error = exc

    def _kill_workers(self) -> None:
        """Terminate Lava's worker processes and its shared-memory manager."""
        runtime = self._source.runtime
        infra = getattr(runtime, "_messaging_infrastructure", None)
        actors = list(getattr(infra, "actors", []) or [])
        for actor in actors:
            with contextlib.suppress(Exception):
                if actor.is_alive():
                    actor.terminate()
        for actor in actors:
            with contextlib.suppress(Exception):
                multiprocessing.Process.join(actor, 2.0)
                if actor.is_alive():
                    actor.kill()
                    multiprocessing.Process.join(actor, 2.0)
        smm = getattr(infra, "smm", None)
        if smm is not None:
            with contextlib.suppress(Exception):
                smm.shutdown()
        with contextlib.suppress(Exception):
            runtime._watchdog_manager.stop()

