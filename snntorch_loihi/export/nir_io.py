"""A :class:`~snntorch_loihi.ir.LoihiNetwork` as a standard NIR graph, and back.

:func:`to_nir` writes standard NIR nodes whose FLOAT parameters reproduce the quantized network
in NIR's continuous-time terms, and puts the exact integer registers into
``node.metadata["loihi"]`` (schema version 1, see ``docs/DESIGN.md``). :func:`from_nir_graph`
reads the registers back where they are present, and otherwise quantizes the float parameters
(a graph written by another tool) with the package's calibration.

The float correspondence (one time step of Loihi is ``dt`` seconds, :data:`DT` = 1e-4 s, the
constant snnTorch's own NIR export and import hard-code), for a population with scale
``2**-k`` (``k = scale_exp``)::

    LIF      (du = 4095)  tau = dt * 4096 / dv           (= dt / (1 - beta), beta = 1 - dv/4096)
                          r   = tau / dt                   (so that one step adds exactly I to v)
    CubaLIF  (du < 4095)  tau_syn = dt * 4096 / (du + 1)   (alpha = 1 - (du + 1)/4096)
                          w_in    = tau_syn / dt;  tau_mem, r as tau, r above
    both                  v_threshold = (vth << 6) * 2**-k,   v_reset = 0
    Affine / Conv2d       weight = weight_mant * 2**(weight_exp + 6 - k)   (k of the target)
    bias (added to v every step, b = bias_mant * 2**(bias_exp - k)):
        LIF fed by a synapse that can hold it (Dense: always; Conv2d: when b is uniform over
        each channel's H, W) -> the Affine / Conv2d ``bias`` and ``v_leak = 0``: exact, and what
        snnTorch's importer expects (it rejects ``v_leak != 0``);
        otherwise (CubaLIF: Loihi adds the bias to v, not to the synaptic current) ->
        ``v_leak = r * b`` (Euler: ``(1 - beta) * v_leak = b``); not representable when
        ``dv = 0`` (then ``v_leak = +-inf`` and a :class:`SemanticsChangeWarning`).

With forward-Euler steps of ``dt`` these are exactly snnTorch's ``Leaky`` / ``Synaptic`` with
``reset_mechanism="zero", reset_delay=False`` (``v = beta*v + I + b``). What NIR cannot say and
only the metadata carries: the integer rounding of Loihi, the one-step delay of every synapse,
and ``reset == "none"`` (written as a normal LIF/CubaLIF; only the metadata says it does not
reset).

Structure: ``input -> [<layer>.flatten] -> <layer>.synapse -> <layer>.neuron -> ... -> output``.
Flatten is written as a ``nir.Flatten`` (``start_dim=0``) where a Dense synapse reads a
multi-dimensional population. Pooling is never written: the network description has it folded
into the next synapse (an Affine with the pooled weights, or a Conv2d with an enlarged kernel and
stride), which reproduces the quantized network exactly; a graph from another tool with
``SumPool2d`` / ``AvgPool2d`` is folded on reading. A recurrent layer is a sub-graph node
``<layer>`` holding ``input -> neuron -> output`` and ``neuron -> w_rec -> neuron``
(``w_rec`` a ``nir.Linear``); the sub-graph's ``input`` feeds the neuron (snnTorch 1.0's importer
wrongly feeds it to ``w_rec``).

Known limit of nir 1.0.8: ``nir.Conv2d`` derives its input channels from ``weight.shape[1]``,
which is wrong for grouped convolutions; :func:`to_nir` sets the right type, but reading such a
file needs ``nir.read(path, type_check=False)``.
"""

from __future__ import annotations

import warnings
from typing import Any

import nir
import numpy as np

from ..errors import RegisterRangeError, SemanticsChangeWarning, UnsupportedModuleError
from ..ir import LoihiLayer, LoihiNetwork, LoihiNeuron, LoihiSynapse
from ..spec import LOIHI

__all__ = ["DT", "SCHEMA_VERSION", "to_nir", "from_nir_graph", "has_registers", "graph_chain"]

DT = 1e-4
"""Seconds per Loihi time step in the float parameters (snnTorch's export/import constant)."""

SCHEMA_VERSION = 1
"""Version of the ``metadata["loihi"]`` schema."""

_NEURON_TYPES = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI)
_SYNAPSE_TYPES = (nir.Affine, nir.Linear, nir.Conv2d)


# ---- float correspondence ----------------------------------------------------------------------
def _full(shape: tuple[int, ...], value: float) -> np.ndarray:
    return np.full(shape, value, dtype=np.float64)


def _r_of_decay(d: int) -> float:
    """``4096 / d`` (``1 / (1 - beta)``), ``inf`` for ``d == 0``."""
    return float(LOIHI.decay_unity) / d if d > 0 else float("inf")


def bias_float(neuron: LoihiNeuron) -> np.ndarray:
    """The neuron's bias in float units, ``bias_mant * 2**(bias_exp - k)``, full shape."""
    shape = tuple(neuron.shape)
    mant = np.broadcast_to(np.asarray(neuron.bias_mant, np.int64), shape).astype(np.float64)
    exp = np.broadcast_to(np.asarray(neuron.bias_exp, np.int64), shape)
    return mant * np.exp2(exp - neuron.scale_exp)


def weight_float(syn: LoihiSynapse, scale_exp: int) -> np.ndarray:
    """``weight_mant * 2**(weight_exp + 6 - k)`` as float64 (exact)."""
    return np.asarray(syn.weight_mant, np.float64) * 2.0 ** (syn.weight_exp + LOIHI.act_shift - scale_exp)


def _neuron_node(neuron: LoihiNeuron, v_leak: np.ndarray, dt: float) -> nir.NIRNode:
    shape = tuple(neuron.shape)
    r_mem = _r_of_decay(neuron.dv)
    vth = float(neuron.vth << LOIHI.vth_shift) * 2.0 ** -neuron.scale_exp
    common = dict(
        r=_full(shape, r_mem), v_leak=np.asarray(v_leak, np.float64), v_threshold=_full(shape, vth),
        v_reset=_full(shape, 0.0), metadata={"loihi": _neuron_meta(neuron)},
    )
    if neuron.du == LOIHI.decay_max:
        return nir.LIF(tau=_full(shape, dt * r_mem), **common)
    r_syn = _r_of_decay(neuron.du + LOIHI.du_offset)
    return nir.CubaLIF(tau_syn=_full(shape, dt * r_syn), tau_mem=_full(shape, dt * r_mem),
                       w_in=_full(shape, r_syn), **common)


def _neuron_meta(neuron: LoihiNeuron) -> dict[str, Any]:
    shape = tuple(neuron.shape)
    return {
        "version": SCHEMA_VERSION,
        "du": int(neuron.du), "dv": int(neuron.dv), "vth": int(neuron.vth),
        "bias_mant": np.broadcast_to(np.asarray(neuron.bias_mant, np.int64), shape).copy(),
        "bias_exp": np.broadcast_to(np.asarray(neuron.bias_exp, np.int64), shape).copy(),
        "scale_exp": int(neuron.scale_exp), "reset": str(neuron.reset),
    }


def _synapse_meta(syn: LoihiSynapse) -> dict[str, Any]:
    return {
        "version": SCHEMA_VERSION,
        "weight_mant": np.asarray(syn.weight_mant, np.int64).copy(),
        "weight_exp": int(syn.weight_exp), "num_weight_bits": int(syn.num_weight_bits),
        "sign_mode": str(syn.sign_mode), "num_message_bits": int(syn.num_message_bits),
    }


def _synapse_node(syn: LoihiSynapse, w: np.ndarray, bias: np.ndarray | None) -> nir.NIRNode:
    meta = {"loihi": _synapse_meta(syn)}
    if syn.kind == "dense":
        b = np.zeros(w.shape[0]) if bias is None else bias.reshape(w.shape[0])
        return nir.Affine(weight=w, bias=b.astype(np.float64), metadata=meta)
    b = np.zeros(w.shape[0]) if bias is None else bias[:, 0, 0]
    node = nir.Conv2d(
        input_shape=tuple(int(n) for n in syn.in_shape[1:]), weight=w,
        stride=tuple(syn.stride), padding=tuple(syn.padding), dilation=tuple(syn.dilation),
        groups=int(syn.groups), bias=b.astype(np.float64), metadata=meta,
    )
    if syn.groups != 1:  # nir derives C_in from weight.shape[1]; wrong for grouped convs
        node.input_type = {"input": np.array(syn.in_shape)}
    return node


def _bias_fits_synapse(syn: LoihiSynapse, b: np.ndarray) -> bool:
    if syn.kind == "dense":
        return True
    return bool(np.all(b == b[:, :1, :1])) if b.ndim == 3 else False


# ---- LoihiNetwork -> NIR -----------------------------------------------------------------------
def to_nir(ir: LoihiNetwork, *, dt: float = DT) -> nir.NIRGraph:
    """Write ``ir`` as a type-checked NIR graph with the registers in ``metadata["loihi"]``.

    Args:
        ir: the network; validated first.
        dt: seconds per time step used for the float time constants (default :data:`DT`).

    Returns:
        A :class:`nir.NIRGraph`; ``nir.write(path, graph)`` stores it.

    Raises:
        RegisterRangeError: a register outside the hardware range.
        UnsupportedModuleError: a recurrent population that is not one-dimensional.
    """
    ir.validate()
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(ir.input_shape))}
    edges: list[tuple[str, str]] = []
    prev = "input"
    for layer in ir.layers:
        syn, neuron, name = layer.synapse, layer.neuron, layer.name
        k = int(neuron.scale_exp)
        b = bias_float(neuron)
        in_syn = neuron.du == LOIHI.decay_max and _bias_fits_synapse(syn, b)
        if not in_syn and neuron.dv == 0 and np.any(b != 0):
            warnings.warn(
                f"layer '{name}': a bias with dv = 0 (beta = 1) on a CubaLIF population has no "
                f"NIR float form (v_leak = r * b with r = inf); the float v_leak is +-inf and only "
                f"metadata['loihi'] is exact.", SemanticsChangeWarning, stacklevel=2)
        with np.errstate(invalid="ignore"):
            v_leak = np.zeros_like(b) if in_syn else np.where(b == 0, 0.0, _r_of_decay(neuron.dv) * b)
        if syn.kind == "dense" and len(syn.in_shape) != 1:
            nodes[f"{name}.flatten"] = nir.Flatten(input_type=np.array(syn.in_shape), start_dim=0,
                                                   end_dim=-1)
            edges.append((prev, f"{name}.flatten"))
            prev = f"{name}.flatten"
        nodes[f"{name}.synapse"] = _synapse_node(syn, weight_float(syn, k), b if in_syn else None)
        edges.append((prev, f"{name}.synapse"))
        neuron_node = _neuron_node(neuron, v_leak, dt)
        if layer.recurrent is None:
            nodes[f"{name}.neuron"] = neuron_node
            edges.append((f"{name}.synapse", f"{name}.neuron"))
            prev = f"{name}.neuron"
            continue
        if len(neuron.shape) != 1:
            raise UnsupportedModuleError(
                f"layer '{name}': a recurrent population must be one-dimensional, got shape "
                f"{tuple(neuron.shape)}.")
        w_rec = nir.Linear(weight=weight_float(layer.recurrent, k),
                           metadata={"loihi": _synapse_meta(layer.recurrent)})
        shape = np.array(neuron.shape)
        sub = nir.NIRGraph(
            nodes={"input": nir.Input(input_type=shape), "neuron": neuron_node, "w_rec": w_rec,
                   "output": nir.Output(output_type=shape)},
            edges=[("input", "neuron"), ("neuron", "w_rec"), ("w_rec", "neuron"),
                   ("neuron", "output")],
            metadata={},
        )
        nodes[name] = sub
        edges.append((f"{name}.synapse", name))
        prev = name
    last = tuple(ir.layers[-1].neuron.shape) if ir.layers else tuple(ir.input_shape)
    nodes["output"] = nir.Output(output_type=np.array(last))
    edges.append((prev, "output"))
    graph = nir.NIRGraph(nodes=nodes, edges=edges,
                         metadata={"loihi": {"version": SCHEMA_VERSION, "dt": float(dt)}})
    graph.validate_structure()
    return graph


# ---- NIR -> LoihiNetwork -----------------------------------------------------------------------
def _succ(graph: nir.NIRGraph, key: str) -> list[str]:
    return [b for a, b in graph.edges if a == key]


def _pred(graph: nir.NIRGraph, key: str) -> list[str]:
    return [a for a, b in graph.edges if b == key]


def graph_chain(graph: nir.NIRGraph) -> list[tuple[str, nir.NIRNode, str | None, nir.NIRNode | None]]:
    """The nodes of a chain-shaped graph in data-flow order, without Input and Output.

    Each entry is ``(name, node, rec_name, rec_node)``; ``rec_*`` is the recurrent synapse of a
    neuron (a top-level ``neuron <-> Affine/Linear`` cycle, or a sub-graph node holding one; the
    sub-graph is replaced by its neuron node).

    Raises:
        UnsupportedModuleError: the graph is not a single chain from one Input to one Output.
    """
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise UnsupportedModuleError(
            f"NIR graph: must have exactly one Input node, got {len(inputs)} ({inputs}).")
    chain = []
    cur, seen = inputs[0], {inputs[0]}
    while True:
        node = graph.nodes[cur]
        nxt = [s for s in _succ(graph, cur) if s not in seen]
        rec_name = rec_node = None
        if isinstance(node, _NEURON_TYPES):
            for s in list(nxt):
                cand = graph.nodes[s]
                if isinstance(cand, (nir.Affine, nir.Linear)) and _succ(graph, s) == [cur] \
                        and _pred(graph, s) == [cur]:
                    rec_name, rec_node = s, cand
                    nxt.remove(s)
                    seen.add(s)
        elif isinstance(node, nir.NIRGraph):
            node, rec_name, rec_node = _parse_recurrent(cur, node)
        if cur != inputs[0] and not isinstance(node, nir.Output):
            chain.append((cur, node, rec_name, rec_node))
        if isinstance(graph.nodes[cur], nir.Output):
            break
        if len(nxt) != 1:
            raise UnsupportedModuleError(
                f"NIR graph: node '{cur}' ({type(graph.nodes[cur]).__name__}) must feed exactly one "
                f"node (a chain), got {nxt}. Branches and merges have no Loihi layer counterpart.")
        if len(_pred(graph, nxt[0])) != 1:
            raise UnsupportedModuleError(
                f"NIR graph: node '{nxt[0]}' must have exactly one input, got "
                f"{_pred(graph, nxt[0])}. Branches and merges have no Loihi layer counterpart.")
        cur = nxt[0]
        seen.add(cur)
    return chain


def _parse_recurrent(name: str, sub: nir.NIRGraph) -> tuple[nir.NIRNode, str, nir.NIRNode]:
    neurons = [(k, n) for k, n in sub.nodes.items() if isinstance(n, _NEURON_TYPES)]
    recs = [(k, n) for k, n in sub.nodes.items() if isinstance(n, (nir.Affine, nir.Linear))]
    others = [k for k, n in sub.nodes.items()
              if not isinstance(n, (*_NEURON_TYPES, nir.Affine, nir.Linear, nir.Input, nir.Output))]
    if len(neurons) != 1 or len(recs) != 1 or others:
        raise UnsupportedModuleError(
            f"NIR sub-graph '{name}': must hold one neuron node and one Affine/Linear recurrent "
            f"weight (plus Input/Output), got {sorted(sub.nodes)}.")
    (nk, neuron), (rk, rec) = neurons[0], recs[0]
    if (nk, rk) not in sub.edges or (rk, nk) not in sub.edges:
        raise UnsupportedModuleError(
            f"NIR sub-graph '{name}': must contain the cycle '{nk}' -> '{rk}' -> '{nk}', got edges "
            f"{sub.edges}.")
    return neuron, f"{name}.{rk}", rec


def has_registers(node: nir.NIRNode) -> bool:
    """True if ``node.metadata["loihi"]`` holds the integer registers."""
    meta = getattr(node, "metadata", None)
    return isinstance(meta, dict) and isinstance(meta.get("loihi"), dict) and (
        "weight_mant" in meta["loihi"] or "vth" in meta["loihi"])


def _layer_name(neuron_key: str) -> str:
    return neuron_key[: -len(".neuron")] if neuron_key.endswith(".neuron") else neuron_key


def _conv_out_shape(syn_node: nir.Conv2d, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    w = syn_node.weight
    for i in range(2):
        k = w.shape[2 + i]
        n = (in_shape[1 + i] + 2 * int(syn_node.padding[i]) - int(syn_node.dilation[i]) * (k - 1) - 1)
        out.append(n // int(syn_node.stride[i]) + 1)
    return (int(w.shape[0]), *out)


def _pair(x: Any) -> tuple[int, int]:
    a = np.asarray(x).reshape(-1)
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def _synapse_from_meta(node: nir.NIRNode, in_shape: tuple[int, ...], where: str) -> LoihiSynapse:
    m = node.metadata["loihi"]
    w = np.asarray(m["weight_mant"]).astype(np.int64)
    common = dict(weight_mant=w, weight_exp=int(m["weight_exp"]),
                  num_weight_bits=int(m["num_weight_bits"]), sign_mode=str(m["sign_mode"]),
                  num_message_bits=int(m.get("num_message_bits", 0)))
    if isinstance(node, nir.Conv2d):
        if isinstance(node.padding, str):
            raise UnsupportedModuleError(f"{where}: padding must be a pair of ints, got {node.padding!r}.")
        return LoihiSynapse("conv", in_shape=in_shape, out_shape=_conv_out_shape(node, in_shape),
                            stride=_pair(node.stride), padding=_pair(node.padding),
                            dilation=_pair(node.dilation), groups=int(node.groups), **common)
    return LoihiSynapse("dense", in_shape=in_shape, out_shape=(int(w.shape[0]),), **common)


def _neuron_from_meta(node: nir.NIRNode, shape: tuple[int, ...]) -> LoihiNeuron:
    m = node.metadata["loihi"]
    return LoihiNeuron(
        shape=shape, du=int(m["du"]), dv=int(m["dv"]), vth=int(m["vth"]),
        bias_mant=np.asarray(m["bias_mant"]).astype(np.int64).reshape(shape),
        bias_exp=np.asarray(m["bias_exp"]).astype(np.int64).reshape(shape),
        scale_exp=int(m["scale_exp"]), reset=str(m.get("reset", "zero")),
    )


def _check_version(key: str, node: nir.NIRNode) -> None:
    v = int(node.metadata["loihi"].get("version", SCHEMA_VERSION))
    if v > SCHEMA_VERSION:
        raise RegisterRangeError(
            f"NIR node '{key}': metadata['loihi'] version must be <= {SCHEMA_VERSION}, got {v}. "
            f"Upgrade snntorch-loihi to read this file.")


def _from_registers(graph: nir.NIRGraph, chain: list) -> LoihiNetwork:
    input_key = next(k for k, n in graph.nodes.items() if isinstance(n, nir.Input))
    input_shape = tuple(int(n) for n in np.asarray(graph.nodes[input_key].input_type["input"]))
    shape = input_shape
    layers: list[LoihiLayer] = []
    syn: LoihiSynapse | None = None
    for key, node, rec_key, rec in chain:
        if isinstance(node, nir.Flatten):
            continue  # a Dense synapse reads its input flattened in C-order anyway
        if isinstance(node, _SYNAPSE_TYPES):
            if syn is not None:
                raise UnsupportedModuleError(
                    f"NIR node '{key}': a synapse must feed a neuron, got two synapses in a row.")
            _check_version(key, node)
            syn = _synapse_from_meta(node, shape, f"NIR node '{key}'")
            continue
        if isinstance(node, _NEURON_TYPES):
            if syn is None:
                raise UnsupportedModuleError(
                    f"NIR node '{key}': a neuron must be fed by a synapse (Affine, Linear, Conv2d).")
            _check_version(key, node)
            out = tuple(syn.out_shape)
            neuron = _neuron_from_meta(node, out)
            recurrent = None
            if rec is not None:
                _check_version(rec_key, rec)
                recurrent = _synapse_from_meta(rec, out, f"NIR node '{rec_key}'")
            layers.append(LoihiLayer(_layer_name(key), syn, neuron, recurrent))
            shape, syn = out, None
            continue
        raise UnsupportedModuleError(
            f"NIR node '{key}': type {type(node).__name__} has no Loihi register form here; "
            f"supported: Affine, Linear, Conv2d, Flatten, LIF, CubaLIF (with metadata['loihi']).")
    if syn is not None:
        raise UnsupportedModuleError("NIR graph: the last synapse feeds no neuron.")
    ir = LoihiNetwork(input_shape=input_shape, layers=tuple(layers))
    ir.validate()
    return ir


def from_nir_graph(graph: nir.NIRGraph, *, dt: float | None = None) -> LoihiNetwork:
    """Read a NIR graph as a :class:`LoihiNetwork`.

    Where every synapse and neuron node carries ``metadata["loihi"]`` (graphs written by
    :func:`to_nir`, also after ``nir.write`` / ``nir.read``), the registers are taken as they are.
    Otherwise (a graph from another tool) the float parameters are mapped to snnTorch layers
    with the correspondence of this module (``dt`` from the graph's metadata, else ``dt`` or
    :data:`DT`) and quantized with :func:`snntorch_loihi.qat.prepare_qat`'s calibration; a
    :class:`~snntorch_loihi.errors.QuantizationWarning` says so.

    Raises:
        UnsupportedModuleError: a node or a graph shape with no Loihi counterpart.
        RegisterRangeError: a register outside the hardware range.
    """
    chain = graph_chain(graph)
    parts = [n for _, n, _, _ in chain if isinstance(n, (*_SYNAPSE_TYPES, *_NEURON_TYPES))]
    parts += [r for _, _, _, r in chain if r is not None]
    pools = [n for _, n, _, _ in chain if isinstance(n, (nir.SumPool2d, nir.AvgPool2d))]
    if parts and not pools and all(has_registers(n) for n in parts):
        return _from_registers(graph, chain)
    from .nir_float import quantize_float_graph

    meta = graph.metadata.get("loihi", {}) if isinstance(graph.metadata, dict) else {}
    step = float(dt) if dt is not None else float(meta.get("dt", DT))
    return quantize_float_graph(graph, chain, dt=step)
