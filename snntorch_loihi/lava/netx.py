"""Write a :class:`~snntorch_loihi.ir.LoihiNetwork` as lava-dl netx HDF5, and run such a file.

``lava.lib.dl.netx.hdf5.Network(net_config=path)`` (lava-dl 0.6.0, the format of Intel's Loihi 2
flow) reads ``/layer/0 .. /layer/n-1``. :func:`save_netx` writes

- ``/layer/0``: ``type = "input"``, ``shape`` (C, H, W) - no ``neuron`` group (netx would put a
  LIF in front of the network);
- per layer: ``type = "dense"`` / ``"dense_rec"`` / ``"conv"``, ``shape``, ``weight``
  (``weight_rec``), conv ``stride``/``padding``/``dilation``/``groups``, optional ``bias``, and
  ``neuron/`` with ``type = "CUBA"``, ``iDecay = du + 1``, ``vDecay = dv``, ``vThMant = vth``;
- ``type = "flatten"`` before a dense layer fed by a ``(C, H, W)`` population (C-order).

How netx maps the file, and what that rules out (read in ``netx/hdf5.py``, ``netx/utils.py``,
``netx/blocks/process.py``; each case is tested against Lava):

- **neuron**: ``du = iDecay - 1``, ``dv = vDecay``, ``vth = vThMant``, ``bias_exp = 6`` and
  ``bias_mant = bias`` (the file's bias, cast to int). So an effective bias
  ``bias_mant << bias_exp`` must be a multiple of 64 and ``/ 64`` must fit 13 bits; otherwise
  :class:`NetxError`.
- **dense weights**: netx has no weight exponent in the file. It re-packs the integer matrix
  with ``optimize_weight_bits`` (``W << s``, ``num_weight_bits``, ``weight_exp = -s``), and
  Lava's Dense then re-derives the sign mode and clips/truncates. The file holds
  ``weight_mant << weight_exp``; :func:`save_netx` replays netx's re-packing and Lava's weight
  conversion and raises :class:`NetxError` unless the effective weights equal the intended
  ones. That catches: a negative ``weight_exp`` (no integer form), ``weight_mant << weight_exp``
  outside ``[-256, 254]``, the **all-inhibitory power-of-two bug** (a matrix whose largest entry
  is ``<= 0`` and whose smallest is ``-2**p`` loses its most negative weights: netx packs them to
  ``-256``, Lava clips to ``-255`` and truncates - all ``-4`` becomes all ``0``), and an
  all-zero matrix (netx's re-packing divides by zero).
- **recurrence** (``dense_rec``): input and recurrent matrices share one re-packing (hstack) but
  Lava derives each synapse's sign mode separately; replayed and checked per matrix.
- **conv**: the file's ``(C_out, C_in/g, kH, kW)`` cross-correlation kernel; netx flips it for
  Lava's true convolution. Geometry is stored ``(H, W)`` (netx reverses it). Channel-constant
  biases are stored ``(C,)``, others in Lava's ``(W, H, C)`` order (netx does not transpose).
- **pooling** is not in netx 0.6.0 (``pool``/``average`` raise); the IR folds sum pooling into
  the next synapse, so none is written.
- **graded input**: netx takes ``input_message_bits`` only as a constructor argument of
  ``Network``; the file stores it as the root attribute ``input_message_bits`` and
  :func:`run_netx` passes it. Loading such a file by hand needs
  ``Network(net_config=path, input_message_bits=n)``; without it netx treats every nonzero
  payload as a binary spike.
- **reset "none"** (a membrane readout) has no netx form: Lava's LIF always resets;
  :class:`NetxError`.
- **timing**: without an input ``neuron`` group netx adds no delay of its own: ``net.inp`` feeds
  the first synapse, so the file runs with the same one-step-per-synapse timing as
  :class:`~snntorch_loihi.lava.LavaNetwork` and :func:`~snntorch_loihi.fixed.simulate`.

:func:`save_netx` needs only h5py; :func:`run_netx` / :class:`NetxNetwork` import lava-dl (slow:
it imports slayer and torchvision).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import LavaUnavailableError, LoihiError, RegisterRangeError
from ..fixed.synapse import determine_sign_mode
from ..ir import LoihiLayer, LoihiNetwork, LoihiSynapse
from ..spec import LOIHI
from ._closing import Closing

if TYPE_CHECKING:  # pragma: no cover
    import nir

    from ..fixed.network import SimResult


__all__ = ["NetxError", "save_netx", "check_netx", "NetxNetwork", "run_netx", "NETX_BIAS_EXP"]

#: netx hard-codes ``bias_exp = 6`` for CUBA neurons (``hdf5.Network.get_neuron_params``).
NETX_BIAS_EXP = 6


class NetxError(LoihiError, ValueError):
    """A network has no exact lava-dl netx HDF5 form (netx would load it and compute otherwise)."""


# ---- replay of netx's weight re-packing and Lava's Dense weight conversion ----------------------
def _netx_repack(weight: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """``lava.lib.dl.netx.utils.optimize_weight_bits`` (lava-dl 0.6.0) without its prints.

    Returns ``(W << s, num_weight_bits, weight_exp)`` or None where netx fails (all zeros).
    """
    w = np.asarray(weight, np.int64)
    wmax, wmin = int(w.max()), int(w.min())
    if (wmax > 254 and wmin < 0) or (wmin < -256 and wmax > 0):
        w = np.clip(w, -256, 254)
        wmax, wmin = int(w.max()), int(w.min())
    if wmax < 0:
        signed, scale = 0, -256 / wmin
    elif wmin >= 0:
        if wmax == 0:
            return None  # 255 / 0: netx computes inf and fails
        signed, scale = 0, 255 / wmax
    else:
        signed = 1
        scale = min(127 / wmax if wmax > 0 else np.inf, -128 / wmin)
    scale_bits = int(np.floor(np.log2(scale))) + signed
    n = 8
    while n > 0 and np.sum(np.abs(w / 2**n - np.round(w / 2**n))) != 0:
        n -= 1
    n -= signed
    if scale_bits < 0:
        return None
    return w << scale_bits, 8 - scale_bits - n, -scale_bits


def _lava_dense_effective(w_packed: np.ndarray, num_weight_bits: int, weight_exp: int) -> np.ndarray | None:
    """What Lava's bit-accurate Dense makes of netx's packed weights, in file units.

    Replays ``PyDenseModelBitAcc``: sign mode derived from the matrix (netx passes none),
    ``clip_weights`` (INH negated, clipped to ``[0, 255]``, MIXED to ``[-256, 255]``) and
    ``truncate_weights`` (drop ``8 - num_weight_bits + MIXED`` low bits). None if the packed
    weights do not survive exactly (then the effective weights are not ``packed >> s``) or the
    truncation width is negative (undefined shifts in Lava).
    """
    w = np.asarray(w_packed, np.int64)
    mode = determine_sign_mode(torch.as_tensor(w))  # Lava's rule, as netx passes no sign_mode
    mixed = int(mode == "mixed")
    nt = LOIHI.weight_bits - int(num_weight_bits) + mixed
    if nt < 0:
        return None
    c = -w if mode == "inhibitory" else w
    c = np.clip(c, LOIHI.weight_min * mixed, LOIHI.weight_max)
    c = (c >> nt) << nt
    conv = -c if mode == "inhibitory" else c
    if not np.array_equal(conv, w):
        return None
    return conv >> (-weight_exp) if weight_exp < 0 else conv << weight_exp


def _file_dense_weights(where: str, parts: list[tuple[str, LoihiSynapse]]) -> list[np.ndarray]:
    """File matrices ``weight_mant << weight_exp`` for one netx dense block, checked exactly."""
    files = []
    for what, syn in parts:
        e = int(syn.weight_exp)
        if e < 0:
            raise NetxError(
                f"layer '{where}' {what}: weight_exp must be >= 0 for netx, got {e}. netx stores "
                f"integer weights without an exponent; re-quantize this synapse with "
                f"weight_exp >= 0 (e.g. a larger scale_exp of the receiving neuron), or run it "
                f"with to_lava / LavaNetwork.")
        w = np.asarray(syn.weight_mant, np.int64).reshape(syn.weight_mant.shape[0], -1)
        files.append(w << e)
    packed = _netx_repack(np.hstack(files))
    if packed is None:
        raise NetxError(
            f"layer '{where}': weight must not be all zeros for netx, got an all-zero matrix. "
            f"netx's optimize_weight_bits divides by the largest weight; drop the layer or run it "
            f"with to_lava / LavaNetwork.")
    w_packed, nwb, wexp = packed
    col = 0
    for (what, _syn), f in zip(parts, files, strict=True):
        part = w_packed[:, col:col + f.shape[1]]
        col += f.shape[1]
        eff = _lava_dense_effective(part, nwb, wexp)
        if eff is None or not np.array_equal(eff, f):
            hint = ""
            if f.max() <= 0 and f.min() < 0 and (-int(f.min())) & (-int(f.min()) - 1) == 0:
                hint = (" This is netx's all-inhibitory power-of-two bug: a matrix with no "
                        "positive weight whose most negative weight is -2**p is packed to -256, "
                        "which Lava clips to -255 and truncates. Make one weight positive or "
                        "the minimum not a power of two (re-quantize), or run the network with "
                        "to_lava / LavaNetwork.")
            elif f.max() > 254 or f.min() < -256:
                hint = (f" weight_mant << weight_exp spans [{f.min()}, {f.max()}], outside netx's "
                        f"[-256, 254]; use weight_exp = 0 with larger mantissas.")
            raise NetxError(
                f"layer '{where}' {what}: weights must survive netx's re-packing and Lava's "
                f"Dense conversion exactly, got different effective weights "
                f"(num_weight_bits={nwb}, weight_exp={wexp}).{hint}")
    return files


# ---- writing ------------------------------------------------------------------------------------
def _bias_file(layer: LoihiLayer) -> np.ndarray | None:
    n = layer.neuron
    shape = tuple(n.shape)
    eff = (np.broadcast_to(np.asarray(n.bias_mant, np.int64), shape)
           << np.broadcast_to(np.asarray(n.bias_exp, np.int64), shape))
    if not eff.any():
        return None
    unit = 1 << NETX_BIAS_EXP
    if np.any(eff % unit):
        i = np.flatnonzero(eff.reshape(-1) % unit)[0]
        raise NetxError(
            f"layer '{layer.name}': bias_mant << bias_exp must be a multiple of {unit} for netx, "
            f"got {int(eff.reshape(-1)[i])} at neuron {int(i)}. netx fixes bias_exp = "
            f"{NETX_BIAS_EXP}; quantize the bias with bias_exp >= {NETX_BIAS_EXP} (or to "
            f"multiples of {unit}), or run it with to_lava / LavaNetwork.")
    b = eff // unit
    if b.min() < LOIHI.bias_mant_min or b.max() > LOIHI.bias_mant_max:
        bad = int(b.min() if b.min() < LOIHI.bias_mant_min else b.max())
        raise NetxError(
            f"layer '{layer.name}': bias / {unit} must be in [{LOIHI.bias_mant_min}, "
            f"{LOIHI.bias_mant_max}] for netx (13-bit bias_mant with bias_exp = 6), got {bad}.")
    if len(shape) == 3:
        per_channel = b.reshape(shape[0], -1)
        if np.all(per_channel == per_channel[:, :1]):
            return per_channel[:, 0].copy()  # netx broadcasts (C,) over (W, H, C)
        return np.ascontiguousarray(b.transpose(2, 1, 0))  # netx takes Lava's (W, H, C) as is
    return b.reshape(-1).copy()


def _write_neuron(g: Any, layer: LoihiLayer) -> None:
    n = layer.neuron
    if n.reset != "zero":
        raise NetxError(
            f"layer '{layer.name}': reset must be 'zero' for netx, got {n.reset!r}. netx's CUBA "
            f"neuron is Lava's LIF, which always resets v after a spike.")
    ng = g.create_group("neuron")
    ng["type"] = np.bytes_("CUBA")
    ng["iDecay"] = np.int64(int(n.du) + LOIHI.du_offset)
    ng["vDecay"] = np.int64(int(n.dv))
    ng["vThMant"] = np.int64(int(n.vth))
    ng["refDelay"] = np.int64(1)
    ng["gradedSpike"] = np.bool_(False)


def _as_ir(net: LoihiNetwork | nir.NIRGraph) -> LoihiNetwork:
    if isinstance(net, LoihiNetwork):
        return net
    try:
        import nir
    except ImportError as exc:  # pragma: no cover
        raise TypeError(f"save_netx: net must be a LoihiNetwork or nir.NIRGraph, got "
                        f"{type(net).__name__}.") from exc
    if isinstance(net, nir.NIRGraph):
        from ..export import from_nir_graph

        return from_nir_graph(net)
    raise TypeError(
        f"save_netx: net must be a LoihiNetwork or nir.NIRGraph, got {type(net).__name__}.")


def check_netx(net: LoihiNetwork | nir.NIRGraph) -> None:
    """Raise :class:`NetxError` if ``net`` has no exact netx form (writes nothing)."""
    _plan(_as_ir(net))


def _plan(ir: LoihiNetwork) -> list[dict[str, Any]]:
    ir.validate()
    if not ir.layers:
        raise NetxError("save_netx: the network must have at least one layer, got none.")
    out: list[dict[str, Any]] = [{"type": "input", "shape": tuple(ir.input_shape)}]
    prev_shape = tuple(ir.input_shape)
    for i, layer in enumerate(ir.layers):
        syn = layer.synapse
        entry: dict[str, Any] = {"layer": layer, "shape": tuple(layer.neuron.shape)}
        entry["bias"] = _bias_file(layer)
        if layer.neuron.reset != "zero":
            _write_neuron(None, layer)  # raises
        if syn.num_message_bits and i > 0:
            raise NetxError(
                f"layer '{layer.name}': num_message_bits must be 0 after the first layer for "
                f"netx (CUBA neurons send binary spikes), got {syn.num_message_bits}.")
        if syn.kind == "dense":
            if len(prev_shape) != 1 and i > 0:
                out.append({"type": "flatten"})
            parts = [("synapse", syn)]
            if layer.recurrent is not None:
                parts.append(("recurrent synapse", layer.recurrent))
            files = _file_dense_weights(layer.name, parts)
            entry.update(type="dense_rec" if layer.recurrent is not None else "dense",
                         weight=files[0], weight_rec=files[1] if len(files) > 1 else None)
        elif syn.kind == "conv":
            if layer.recurrent is not None:
                raise NetxError(f"layer '{layer.name}': a recurrent conv population has no netx "
                                f"form (netx has dense_rec only).")
            if tuple(syn.in_shape) != prev_shape or len(prev_shape) != 3:
                raise NetxError(
                    f"layer '{layer.name}': a conv synapse must take the previous (C, H, W) "
                    f"population as is for netx, got in_shape {tuple(syn.in_shape)} after "
                    f"{prev_shape}.")
            entry.update(type="conv", weight=np.asarray(syn.weight_mant, np.int64))
        else:
            raise NetxError(f"layer '{layer.name}': synapse kind must be 'dense' or 'conv', got "
                            f"{syn.kind!r}.")
        out.append(entry)
        prev_shape = tuple(layer.neuron.shape)
    return out


def save_netx(net: LoihiNetwork | nir.NIRGraph, path: str | PathLike) -> LoihiNetwork:
    """Write ``net`` as lava-dl netx HDF5 that loads and runs exactly like ``net`` in Lava.

    Args:
        net: a :class:`LoihiNetwork`, or a NIR graph (read with
            :func:`snntorch_loihi.export.from_nir_graph`; a graph without Loihi registers is
            quantized first, with a QuantizationWarning).
        path: the ``.net`` / ``.h5`` file to write.

    Returns:
        The :class:`LoihiNetwork` that was written (what :func:`run_netx` must reproduce).

    Raises:
        NetxError: netx would load the file and compute something else (see the module
            docstring: bias not a multiple of 64, negative weight exponent, the all-inhibitory
            power-of-two bug, all-zero weights, reset 'none', graded spikes between layers).
        RegisterRangeError: a register outside the hardware range.

    Example:
        >>> import numpy as np, h5py, tempfile, os
        >>> from snntorch_loihi.ir import LoihiLayer, LoihiNetwork, LoihiNeuron, LoihiSynapse
        >>> syn = LoihiSynapse("dense", np.array([[100, -20]]), in_shape=(2,), out_shape=(1,))
        >>> net = LoihiNetwork((2,), (LoihiLayer("l0", syn, LoihiNeuron((1,), 4095, 0, 150)),))
        >>> p = os.path.join(tempfile.mkdtemp(), "net.h5"); _ = save_netx(net, p)
        >>> with h5py.File(p) as f: print(f["layer/1/neuron/iDecay"][()], f["layer/1/weight"][()])
        4096 [[100 -20]]
    """
    import h5py

    ir = _as_ir(net)
    plan = _plan(ir)
    first = ir.layers[0].synapse
    with h5py.File(path, "w") as f:
        f.attrs["input_message_bits"] = int(first.num_message_bits)
        f.attrs["generator"] = "snntorch-loihi"
        root = f.create_group("layer")
        for i, entry in enumerate(plan):
            g = root.create_group(str(i))
            g["type"] = np.bytes_(entry["type"])
            if entry["type"] == "flatten":
                continue
            g["shape"] = np.asarray(entry["shape"], np.int64)
            if entry["type"] == "input":
                continue
            layer: LoihiLayer = entry["layer"]
            g["weight"] = entry["weight"]
            if entry["type"] == "dense_rec":
                g["weight_rec"] = entry["weight_rec"]
            if entry["type"] == "conv":
                syn = layer.synapse
                g["stride"] = np.asarray(syn.stride, np.int64)
                g["padding"] = np.asarray(syn.padding, np.int64)
                g["dilation"] = np.asarray(syn.dilation, np.int64)
                g["groups"] = np.int64(syn.groups)
            if entry["bias"] is not None:
                g["bias"] = entry["bias"]
            g.attrs["name"] = layer.name
            _write_neuron(g, layer)
    return ir


# ---- running ------------------------------------------------------------------------------------
_PROBES: tuple[Any, type, type] | None = None


def _netx_probes() -> tuple[Any, type, type]:
    """``(runner module, probe of a LIF fed by 1 synapse, ... by 2)``, created on first use.

    Imports Lava (so that :func:`save_netx` does not). The classes are put into this module's
    globals: Lava finds a process's models among the classes of the process's module.
    """
    global _PROBES
    if _PROBES is not None:
        return _PROBES
    from . import runner as R  # raises LavaUnavailableError without Lava

    class _NetxProbe1(R._Probe):
        """A probe of a netx LIF fed by one synapse (reset made synchronous, see below)."""

    class _NetxProbe2(R._Probe):
        """A probe of a netx LIF fed by a synapse and a recurrent Dense."""

    class _SyncResetModelBase(R._ProbeModelBase):
        """The runner's probe model, with the end-of-sample reset made synchronous.

        Lava delivers RefPort writes through a channel that a background thread drains, so a
        write sent in the post-management phase can land AFTER the target has started the next
        spiking phase (seen: the recurrent buffer of the previous sample leaked into the next
        one in about 1 run of 5). Reading every reset Var back before reporting the phase done
        forces the write to be applied first: the target serves its VarPort in order.
        """

        def run_post_mgmt(self) -> None:
            super().run_post_mgmt()
            if self.time_step % self._steps == 0:
                self.u_ref.read()
                self.v_ref.read()
                for name in self._bufs:
                    getattr(self, name).read()

    def model(proc: type, n_buf: int) -> type:
        T, dtype = R.LavaPyType, np.int32
        ann = {"s_in": T(R.PyInPort.VEC_DENSE, dtype), "u_ref": T(R.PyRefPort.VEC_DENSE, dtype),
               "v_ref": T(R.PyRefPort.VEC_DENSE, dtype), "s_data": T(np.ndarray, dtype),
               "u_data": T(np.ndarray, dtype), "v_data": T(np.ndarray, dtype)}
        for i in range(n_buf):
            ann[f"buf_{i}"] = T(R.PyRefPort.VEC_DENSE, dtype)
        cls = type(f"{proc.__name__}ModelFixed", (_SyncResetModelBase,),
                   {**ann, "_dtype": dtype, "__module__": __name__})
        return R.implements(proc=proc, protocol=R.LoihiProtocol)(
            R.requires(R.CPU)(R.tag("fixed_pt")(cls)))

    globals().update(_NetxProbe1=_NetxProbe1, _NetxProbe2=_NetxProbe2,
                     _NetxProbe1ModelFixed=model(_NetxProbe1, 1),
                     _NetxProbe2ModelFixed=model(_NetxProbe2, 2))
    _PROBES = (R, _NetxProbe1, _NetxProbe2)
    return _PROBES


def _import_netx():
    try:
        # lava-dl prints unrelated notices on import (a missing CUDA runtime, a Prophesee toolbox
        # for one of its data sets); keep them off the user's terminal
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            from lava.lib.dl.netx import hdf5
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise LavaUnavailableError(
            f"run_netx needs lava-dl 0.6 (pip install 'snntorch-loihi[lava]', Python 3.10), but "
            f"importing it failed: {exc}") from exc
    return hdf5


class NetxNetwork(Closing):
    """A netx HDF5 file loaded by ``lava.lib.dl.netx.hdf5.Network`` and compiled once.

    Each layer's LIF gets a probe (the one :class:`~snntorch_loihi.lava.LavaNetwork` uses) that
    records ``s`` (and ``u``, ``v``) and, after the last step of every sample, zeroes the LIF's
    ``u``, ``v`` and the buffers of the synapses feeding it, so every sample starts from a fresh
    network. A batch is played back to back through one ring buffer into ``net.inp``.

    Args:
        path: the netx file.
        steps: steps per sample (``T + delay`` to flush; the delay is the number of layers).
        record: which of ``"s"``, ``"u"``, ``"v"`` to return.
        chunk: samples per Lava run.
        input_message_bits: graded input width; default: the file's ``input_message_bits``
            attribute (0 for files without it).
        progress: tqdm bar over the samples.

    Use as a context manager (or call :meth:`close`): the Lava runtime is stopped on exit and
    whenever a run raises.
    """

    def __init__(self, path: str | PathLike, *, steps: int, record: tuple[str, ...] = ("s",),
                 chunk: int = 16, input_message_bits: int | None = None,
                 progress: bool = True) -> None:
        import h5py

        bad = [r for r in record if r not in ("s", "u", "v")]
        if bad:
            raise ValueError(f"NetxNetwork: record must be a subset of ('s', 'u', 'v'), got {bad}.")
        if int(steps) < 1 or int(chunk) < 1:
            raise ValueError(f"NetxNetwork: steps and chunk must be >= 1, got {steps}, {chunk}.")
        with h5py.File(path, "r") as f:
            if input_message_bits is None:
                input_message_bits = int(f.attrs.get("input_message_bits", 0))
            names = []
            for i in range(len(f["layer"])):
                g = f[f"layer/{i}"]
                kind = g["type"][()].decode()
                if kind == "input":
                    if "neuron" in g:
                        raise NetxError(f"NetxNetwork '{path}': the input layer must not have a "
                                        f"neuron group (an input LIF), got one.")
                    self.input_shape = tuple(int(n) for n in g["shape"][()])
                elif kind != "flatten":
                    names.append(str(g.attrs.get("name", f"layer{i}")))
                    shape = tuple(int(n) for n in g["shape"][()])
            self.output_shape = shape
        runner, probe1, probe2 = _netx_probes()
        hdf5 = _import_netx()
        self._runner = runner
        self.path = str(path)
        self.names = names
        self.steps, self.chunk = int(steps), int(chunk)
        self.record = tuple(record)
        self.progress = bool(progress)
        self._length = self.steps * self.chunk
        self._started = self._closed = False
        self.net = hdf5.Network(net_config=str(path), input_message_bits=int(input_message_bits))
        first = self.net.layers[0]
        self._flat_input = len(first.inp.shape) == 1 and len(self.input_shape) != 1
        lava_in = tuple(first.inp.shape)
        self._source = runner.RingBuffer(data=np.zeros((*lava_in, self._length), np.int32))
        self._source.s_out.connect(self.net.inp)
        self._probes = []
        for layer in self.net.layers:
            bufs = [layer.synapse.a_buff if hasattr(layer.synapse, "a_buff")
                    else layer.synapse.a_buf]
            if hasattr(layer, "synapse_rec"):
                bufs.append(layer.synapse_rec.a_buff)
            cls = probe1 if len(bufs) == 1 else probe2
            probe = cls(shape=layer.neuron.a_in.shape, steps=self.steps, length=self._length,
                        buf_shapes=tuple(tuple(b.shape) for b in bufs),
                        read_state=("u" in self.record or "v" in self.record))
            layer.neuron.s_out.connect(probe.s_in)
            probe.u_ref.connect_var(layer.neuron.u)
            probe.v_ref.connect_var(layer.neuron.v)
            for i, b in enumerate(bufs):
                getattr(probe, f"buf_{i}").connect_var(b)
            self._probes.append(probe)

    @property
    def delay(self) -> int:
        """Steps from an input column to the last layer's answer (one per synapse)."""
        return len(self.names)

    def _run_chunk(self, data: np.ndarray) -> None:
        if self._closed:
            raise RuntimeError("NetxNetwork: the runtime is closed; build a new NetxNetwork.")
        rs = self._runner
        if not self._started:
            self._source.data.init = data
            self._started = True
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Cannot import module")
                self._source.run(condition=rs.RunSteps(num_steps=self._length),
                                 run_cfg=rs.Loihi2SimCfg(select_tag="fixed_pt"))
        else:
            self._source.data.set(data)
            self._source.run(condition=rs.RunSteps(num_steps=self._length))

    def run(self, x: np.ndarray | torch.Tensor) -> SimResult:
        """Run every sample of ``x`` (``(T, B, *input_shape)`` or ``(T, *input_shape)``).

        Returns:
            :class:`~snntorch_loihi.fixed.SimResult` of int64 tensors ``(steps, B, *shape)``
            (PyTorch layout), as :func:`~snntorch_loihi.fixed.simulate` returns.
        """
        from tqdm.auto import tqdm

        from ..fixed.network import LayerTrace, SimResult

        rs = self._runner
        a = rs._as_batch(x, self.input_shape)
        n_in, batch = a.shape[0], a.shape[1]
        if n_in > self.steps:
            raise RegisterRangeError(
                f"NetxNetwork.run: x must have at most steps={self.steps} time steps, got {n_in}.")
        if not np.array_equal(a, np.trunc(a)):
            raise RegisterRangeError("NetxNetwork.run: x must be integer-valued.")
        out: dict[str, list] = {name: [] for name in ("s", "u", "v")}
        try:
            with tqdm(total=batch, disable=not self.progress, desc="netx", unit="sample") as bar:
                for start in range(0, batch, self.chunk):
                    part = a[:, start:start + self.chunk]
                    nb = part.shape[1]
                    buf = np.zeros((self.chunk, self.steps, *part.shape[2:]), np.int32)
                    buf[:nb, :n_in] = np.moveaxis(part, 1, 0)
                    buf = buf.reshape(self._length, *part.shape[2:])
                    if self._flat_input:
                        buf = buf.reshape(self._length, -1)
                    else:
                        buf = rs._to_lava(buf, 1)
                    self._run_chunk(np.ascontiguousarray(np.moveaxis(buf, 0, -1)))
                    for name in ("s", "u", "v"):
                        if name in self.record:
                            out[name].append([self._read(p, name, nb) for p in self._probes])
                    bar.update(nb)
        except BaseException:
            self.close(force=True)
            raise
        layers = {}
        for k, name in enumerate(self.names):
            traces = {f: (torch.cat([c[k] for c in out[f]], dim=1) if f in self.record else None)
                      for f in ("s", "u", "v")}
            layers[name] = LayerTrace(**traces)
        return SimResult(layers)

    def _read(self, probe: Any, name: str, nb: int) -> torch.Tensor:
        data = np.asarray(getattr(probe, f"{name}_data").get())
        data = self._runner._to_lava(data, 1)  # Lava (W, H, C) -> PyTorch (C, H, W)
        data = data.reshape(self.chunk, self.steps, *data.shape[1:])[:nb]
        return torch.from_numpy(np.ascontiguousarray(np.swapaxes(data, 0, 1))).to(torch.int64)

    def close(self, *, force: bool = False) -> None:
        """Stop the Lava runtime (idempotent).

        Args:
            force: terminate the worker processes instead of Lava's graceful ``stop()`` (which
                can hang after a worker failed); used when a run raises. Uses
                :class:`~snntorch_loihi.lava.LavaNetwork`'s worker kill where available.
        """
        if self._closed:
            return
        self._closed = True
        if not self._started or self._source.runtime is None:
            return
        kill = getattr(self._runner.LavaNetwork, "_kill_workers", None)
        if force and kill is not None:
            kill(self)  # reads only self._source
            return
        self._source.stop()



def run_netx(path: str | PathLike, x: np.ndarray | torch.Tensor, *, steps: int | None = None,
             record: tuple[str, ...] = ("s", "u", "v"), input_message_bits: int | None = None,
             chunk: int = 16, progress: bool = False) -> SimResult:
    """Load a netx file with lava-dl, run ``x`` sample by sample on one compiled network.

    Args:
        path: a netx HDF5 file (e.g. from :func:`save_netx`).
        x: ``(T, B, *input_shape)`` or ``(T, *input_shape)`` integer input, time first.
        steps: steps per sample; default ``T + number of layers`` (zero input after ``T``).
        record: which of ``"s"``, ``"u"``, ``"v"`` to return for every layer.
        input_message_bits: default: the file's attribute (graded input width, 0 = binary).

    Returns:
        A :class:`~snntorch_loihi.fixed.SimResult` aligned exactly like
        :func:`~snntorch_loihi.fixed.simulate` (``(steps, B, *shape)`` per layer, v after reset).
    """
    import h5py

    xt = torch.as_tensor(x)
    with h5py.File(path, "r") as f:
        n_layers = sum(f[f"layer/{i}/type"][()].decode() not in ("input", "flatten")
                       for i in range(len(f["layer"])))
        in_shape = tuple(int(n) for n in f["layer/0/shape"][()])
    unbatched = xt.dim() == 1 + len(in_shape) and tuple(xt.shape[1:]) == in_shape
    batch = 1 if unbatched or xt.dim() < 2 else int(xt.shape[1])
    steps = int(xt.shape[0]) + n_layers if steps is None else int(steps)
    with NetxNetwork(path, steps=steps, record=record, chunk=max(1, min(chunk, batch)),
                     input_message_bits=input_message_bits, progress=progress) as nn_:
        return nn_.run(x)
