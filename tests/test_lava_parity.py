"""The torch core equals Lava's ``fixed_pt`` simulation, bit for bit (no tolerances).

Every test builds a :class:`~snntorch_loihi.ir.LoihiNetwork`, runs it through
:func:`snntorch_loihi.fixed.simulate` and through :class:`snntorch_loihi.lava.LavaNetwork`
(several samples on one compiled network), and compares ``s``, ``u``, ``v`` of every layer with
``torch.equal``. Registers are drawn over their full hardware ranges with the edges forced in;
inputs keep ``|a_in| <= LOIHI.a_in_max`` (the domain in which Lava's one-sided wrap of ``u``
equals the core's modular wrap).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snntorch_loihi.fixed import simulate, truncate_weights
from snntorch_loihi.ir import LoihiLayer, LoihiNetwork, LoihiNeuron, LoihiSynapse
from snntorch_loihi.spec import LOIHI

lava = pytest.mark.lava

FEW = settings(max_examples=10, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SIGN_MODES = ("mixed", "excitatory", "inhibitory")


# ---- strategies ---------------------------------------------------------------------------------
def edgy(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([lo, hi]), st.integers(lo, hi))


@st.composite
def neurons(draw, shape: tuple[int, ...], scale_exp: int = 0) -> LoihiNeuron:
    n = int(np.prod(shape))
    bias_mant = draw(st.lists(edgy(LOIHI.bias_mant_min, LOIHI.bias_mant_max), min_size=n,
                              max_size=n))
    bias_exp = draw(st.lists(edgy(0, LOIHI.bias_exp_max), min_size=n, max_size=n))
    if draw(st.booleans()):  # often no bias, so that inputs drive the dynamics
        bias_mant = [0] * n
    return LoihiNeuron(
        shape=shape,
        du=draw(edgy(0, LOIHI.decay_max)),
        dv=draw(edgy(0, LOIHI.decay_max)),
        vth=draw(st.one_of(edgy(0, LOIHI.vth_max), st.integers(0, 2000))),
        bias_mant=np.array(bias_mant, np.int64).reshape(shape),
        bias_exp=np.array(bias_exp, np.int64).reshape(shape),
        scale_exp=scale_exp,
    )


@st.composite
def raw_weights(draw, shape: tuple[int, ...]) -> np.ndarray:
    """Any mantissas in [-256, 255] (odd values too), edges forced in."""
    n = int(np.prod(shape))
    vals = draw(st.lists(edgy(LOIHI.weight_min, LOIHI.weight_max), min_size=n, max_size=n))
    return np.array(vals, np.int64).reshape(shape)


def _exp_for(bound_per_unit: float, wanted: int) -> int:
    """Largest exponent <= wanted with ``bound * 2**exp + 1 <= a_in_max / 2``."""
    if bound_per_unit <= 0:
        return wanted
    top = math.floor(math.log2((LOIHI.a_in_max // 2 - 1) / bound_per_unit))
    return max(LOIHI.weight_exp_min, min(wanted, top))


@st.composite
def dense_synapses(draw, n_in: int, n_out: int, max_input: int, graded: bool = False,
                   raw: bool = False) -> LoihiSynapse:
    bits = draw(st.sampled_from([2, 4, 8]))
    mode = draw(st.sampled_from(SIGN_MODES))
    w = draw(raw_weights((n_out, n_in)))
    if not raw:  # on Lava's grid: the IR contract
        w = truncate_weights(torch.from_numpy(w), bits, mode).numpy()
    bound = float(np.abs(w).sum(1).max()) * max_input
    exp = _exp_for(bound, draw(edgy(LOIHI.weight_exp_min, LOIHI.weight_exp_max)))
    return LoihiSynapse("dense", w, in_shape=(n_in,), out_shape=(n_out,), weight_exp=exp,
                        num_weight_bits=bits, sign_mode=mode,
                        num_message_bits=24 if graded else 0)


def run_both(net: LoihiNetwork, x: torch.Tensor, *, chunk: int = 2, lava_net=None):
    """simulate() per batch and Lava on one compiled network; returns (torch, lava) results."""
    from snntorch_loihi.lava import LavaNetwork

    ref = simulate(net, x)
    steps = x.shape[0] + net.delay
    with LavaNetwork(lava_net or net, steps=steps, chunk=chunk, progress=False) as ln:
        got = ln.run(x)
    return ref, got


def assert_equal(ref, got) -> None:
    for name, trace in ref.layers.items():
        for f in ("s", "u", "v"):
            a, b = getattr(trace, f), getattr(got[name], f)
            assert a.shape == b.shape, (name, f, a.shape, b.shape)
            if not torch.equal(a, b):
                idx = torch.nonzero(a != b)[0].tolist()
                pytest.fail(f"layer {name!r} {f} differs first at (t, b, ...)={idx}: "
                            f"torch {a[tuple(idx)].item()} vs Lava {b[tuple(idx)].item()}")


# ---- single layers --------------------------------------------------------------------------------
@lava
@FEW
@given(data=st.data(), n_in=st.integers(1, 4), n_out=st.integers(1, 3), graded=st.booleans())
def test_single_layer_full_register_ranges(data, n_in, n_out, graded):
    """One Dense + LIF, registers over full ranges; graded payloads big enough to wrap u."""
    max_x = data.draw(st.sampled_from([1, 7, 4095])) if graded else 1
    syn = data.draw(dense_synapses(n_in, n_out, max_x, graded=graded))
    net = LoihiNetwork((n_in,), (LoihiLayer("l0", syn, data.draw(neurons((n_out,)))),))
    T, B = 12, 3
    seed = data.draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x = rng.integers(-max_x if graded else 0, max_x + 1, (T, B, n_in))
    ref, got = run_both(net, torch.from_numpy(x))
    assert_equal(ref, got)


@lava
@FEW
@given(data=st.data(), n_in=st.integers(1, 5), n_out=st.integers(1, 3))
def test_lava_weight_conversion_equals_truncate_weights(data, n_in, n_out):
    """Raw mantissas (odd, out of the sign mode) given to Lava == truncate_weights in the core."""
    raw = data.draw(dense_synapses(n_in, n_out, 1, raw=True))
    trunc = truncate_weights(torch.from_numpy(raw.weight_mant), raw.num_weight_bits,
                             raw.sign_mode).numpy()
    neuron = LoihiNeuron((n_out,), du=4095, dv=0, vth=LOIHI.vth_max)  # a pure integrator
    lava_net = LoihiNetwork((n_in,), (LoihiLayer("l0", raw, neuron),))
    sim_net = LoihiNetwork((n_in,), (LoihiLayer(
        "l0", LoihiSynapse(**{**raw.__dict__, "weight_mant": trunc}), neuron),))
    x = torch.eye(n_in, dtype=torch.int64)[:, None, :].repeat(1, 2, 1)  # one input per step
    ref, got = run_both(sim_net, x, lava_net=lava_net)
    assert_equal(ref, got)


@lava
def test_wrap_of_u_and_saturation_of_v():
    """Inputs chosen so that u wraps (both ways) and v saturates (below; above it spikes)."""
    w = np.array([[255], [-256], [128]], np.int64)
    syn = LoihiSynapse("dense", w, (1,), (3,), weight_exp=0, sign_mode="mixed",
                       num_message_bits=24)
    syn = LoihiSynapse(**{**syn.__dict__,
                          "weight_mant": truncate_weights(torch.from_numpy(w)).numpy()})
    neuron = LoihiNeuron((3,), du=0, dv=0, vth=LOIHI.vth_max)
    net = LoihiNetwork((1,), (LoihiLayer("l0", syn, neuron),))
    x = torch.full((24, 2, 1), 1000, dtype=torch.int64)  # |a_in| = 254000 <= a_in_max
    x[:, 1] = 517
    ref, got = run_both(net, x)
    assert_equal(ref, got)
    u, v = ref["l0"].u, ref["l0"].v
    assert (u[1:] - u[:-1]).abs().max() > LOIHI.state_max  # a jump of ~2**24: the wrap
    assert (v == -LOIHI.v_max).any()  # saturated below
    assert ref["l0"].s.any()  # saturated above the threshold: spikes


def test_outside_the_wrap_domain_core_refuses():
    """|a_in| > a_in_max: the core refuses (Lava's single wrap would leave 24 bits there)."""
    from snntorch_loihi.errors import RegisterRangeError

    syn = LoihiSynapse("dense", np.array([[254]]), (1,), (1,), weight_exp=7,
                       num_message_bits=24)
    net = LoihiNetwork((1,), (LoihiLayer("l0", syn, LoihiNeuron((1,), 0, 0, 1)),))
    with pytest.raises(RegisterRangeError, match=r"a_in must be an integer in \[-262143"):
        simulate(net, torch.full((2, 1, 1), 9, dtype=torch.int64))


@lava
def test_outside_the_wrap_domain_lava_leaves_24_bits():
    """Why the domain: with |a_in << 6| >= 2**24, Lava's single wrap can leave u outside 24 bits
    (the chip would wrap modulo 2**24, as the core does with check=False), so the two differ."""
    from snntorch_loihi.lava import LavaNetwork

    syn = LoihiSynapse("dense", np.array([[254]]), (1,), (1,), weight_exp=7,
                       num_message_bits=24)
    net = LoihiNetwork((1,), (LoihiLayer("l0", syn, LoihiNeuron((1,), 0, 0, LOIHI.vth_max)),))
    x = torch.full((8, 1, 1), 9, dtype=torch.int64)  # a_in = 292608 > a_in_max
    with LavaNetwork(net, steps=9, progress=False) as ln:
        got = ln.run(x)
    ref = simulate(net, x, check=False)
    assert got["l0"].u.max() > LOIHI.state_max  # Lava: outside 24 bits
    assert ref["l0"].u.abs().max() <= LOIHI.state_max  # core: modular
    assert not torch.equal(ref["l0"].u, got["l0"].u)


@lava
def test_binary_synapse_counts_any_nonzero_input():
    syn = LoihiSynapse("dense", np.array([[10, -20, 30]]), (3,), (1,), sign_mode="mixed")
    net = LoihiNetwork((3,), (LoihiLayer("l0", syn, LoihiNeuron((1,), 100, 100, 50)),))
    x = torch.tensor([[[3, 0, -1]], [[0, 5, 0]], [[1, 1, 1]]])
    ref, got = run_both(net, x)
    assert_equal(ref, got)


# ---- networks -------------------------------------------------------------------------------
@lava
@FEW
@given(data=st.data(), sizes=st.lists(st.integers(1, 5), min_size=3, max_size=4),
       recurrent=st.booleans())
def test_multilayer_dense_networks(data, sizes, recurrent):
    """2-3 Dense layers, biases, mixed/exc/inh at 2/4/8 weight bits, a recurrent Dense."""
    layers = []
    rec_at = data.draw(st.integers(0, len(sizes) - 2)) if recurrent else -1
    for k in range(len(sizes) - 1):
        n_in, n_out = sizes[k], sizes[k + 1]
        graded = k == 0 and data.draw(st.booleans())
        syn = data.draw(dense_synapses(n_in, n_out, 15 if graded else 1, graded=graded))
        rec = data.draw(dense_synapses(n_out, n_out, 1)) if k == rec_at else None
        layers.append(LoihiLayer(f"l{k}", syn, data.draw(neurons((n_out,))), rec))
    net = LoihiNetwork((sizes[0],), tuple(layers))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    hi = 15 if layers[0].synapse.num_message_bits else 1
    x = torch.from_numpy(rng.integers(0, hi + 1, (10, 3, sizes[0])))
    ref, got = run_both(net, x)
    assert_equal(ref, got)


def _conv_net(rng, kind: str) -> LoihiNetwork:
    c_in, h, w = 2, 6, 5
    wc = truncate_weights(torch.from_numpy(rng.integers(-256, 256, (4, 2, 3, 2)))).numpy()
    conv = LoihiSynapse("conv", wc, in_shape=(c_in, h, w), out_shape=(4, 3, 4),
                        stride=(2, 1), padding=(1, 0), dilation=(1, 1))
    n_conv = LoihiNeuron((4, 3, 4), du=3000, dv=500, vth=30,
                         bias_mant=rng.integers(-100, 100, (4, 3, 4)),
                         bias_exp=np.full((4, 3, 4), 2))
    wd = truncate_weights(torch.from_numpy(rng.integers(-256, 256, (5, 48)))).numpy()
    dense = LoihiSynapse("dense", wd, in_shape=(4, 3, 4), out_shape=(5,), weight_exp=-2)
    layers = [LoihiLayer("conv", conv, n_conv),
              LoihiLayer("fc", dense, LoihiNeuron((5,), 4095, 200, 100))]
    if kind == "flat->conv":  # a flat population feeds the conv (PyTorch reshape to C, H, W)
        d0 = rng.integers(0, 256, (c_in * h * w, 7))
        first = LoihiLayer("in", LoihiSynapse("dense", d0, (7,), (c_in * h * w,),
                                              sign_mode="excitatory"),
                           LoihiNeuron((c_in * h * w,), 4095, 100, 60))
        return LoihiNetwork((7,), (first, *layers))
    if kind == "dense3d->conv":  # a Dense into a (C, H, W) population, then the conv
        d0 = rng.integers(0, 256, (c_in * h * w, 7))
        first = LoihiLayer("in3d", LoihiSynapse("dense", d0, (7,), (c_in, h, w),
                                                sign_mode="excitatory"),
                           LoihiNeuron((c_in, h, w), 2000, 100, 60))
        return LoihiNetwork((7,), (first, *layers))
    return LoihiNetwork((c_in, h, w), tuple(layers))


@lava
@pytest.mark.parametrize("kind", ["conv->dense", "flat->conv", "dense3d->conv"])
def test_conv_layouts(kind):
    """Conv (flipped, transposed kernel; (W, H) geometry) and C-order flatten equal PyTorch."""
    rng = np.random.default_rng(3)
    net = _conv_net(rng, kind)
    x = torch.from_numpy((rng.random((8, 3, *net.input_shape)) < 0.4).astype(np.int64))
    ref, got = run_both(net, x)
    assert_equal(ref, got)
    assert all(ref[n].s.any() for n in ref)  # every layer spikes: the comparison is not vacuous


@lava
@FEW
@given(data=st.data(), groups=st.sampled_from([1, 2]), graded=st.booleans())
def test_conv_geometry(data, groups, graded):
    """Random kernel, stride, padding, dilation, groups: Lava's Conv == torch's conv2d."""
    c_in, c_out = 2 * groups, 2 * groups
    kh, kw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    stride = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    padding = (data.draw(st.integers(0, 1)), data.draw(st.integers(0, 1)))
    dilation = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    h, w = data.draw(st.integers(5, 7)), data.draw(st.integers(4, 7))
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    wmant = data.draw(raw_weights((c_out, c_in // groups, kh, kw)))
    syn = LoihiSynapse("conv", wmant, (c_in, h, w), (c_out, ho, wo), stride=stride,
                       padding=padding, dilation=dilation, groups=groups,
                       num_message_bits=8 if graded else 0)
    neuron = data.draw(neurons((c_out, ho, wo)))
    net = LoihiNetwork((c_in, h, w), (LoihiLayer("conv", syn, neuron),))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.integers(-20 if graded else 0, 21 if graded else 2, (6, 2, c_in, h, w))
    ref, got = run_both(net, torch.from_numpy(x))
    assert_equal(ref, got)


@lava
def test_many_samples_one_network_resets_exactly():
    """Several run() calls and chunks on one compiled network; each sample from a fresh state."""
    from snntorch_loihi.lava import LavaNetwork

    rng = np.random.default_rng(7)
    w1 = truncate_weights(torch.from_numpy(rng.integers(-256, 256, (6, 4)))).numpy()
    w2 = truncate_weights(torch.from_numpy(rng.integers(-256, 256, (3, 6)))).numpy()
    wr = truncate_weights(torch.from_numpy(rng.integers(-256, 256, (3, 3)))).numpy()
    net = LoihiNetwork((4,), (
        LoihiLayer("a", LoihiSynapse("dense", w1, (4,), (6,), weight_exp=1),
                   LoihiNeuron((6,), 10, 20, 100, bias_mant=rng.integers(-300, 300, 6),
                               bias_exp=np.full(6, 3))),
        LoihiLayer("b", LoihiSynapse("dense", w2, (6,), (3,)), LoihiNeuron((3,), 50, 50, 80),
                   LoihiSynapse("dense", wr, (3,), (3,))),
    ))
    T = 9
    with LavaNetwork(net, steps=T + 2, chunk=3, progress=False) as ln:
        for batch in (5, 1, 3):
            x = torch.from_numpy((rng.random((T, batch, 4)) < 0.5).astype(np.int64))
            got = ln.run(x)
            assert_equal(simulate(net, x), got)
    # the comparison is not vacuous: one register off by one is seen
    layer = net.layers[0]
    off = LoihiNetwork(net.input_shape, (LoihiLayer(
        "a", layer.synapse, LoihiNeuron(**{**layer.neuron.__dict__, "dv": 21})), net.layers[1]))
    assert simulate(off, x).mismatches(got)


@lava
def test_float_mode_matches_fixed_when_arithmetic_is_exact():
    """floating_pt with the float correspondence: equal to fixed * 2**-k when no rounding occurs."""
    from snntorch_loihi.lava import LavaNetwork

    k = 9
    w = np.array([[100, -40], [30, 70]], np.int64)
    net = LoihiNetwork((2,), (LoihiLayer(
        "l0", LoihiSynapse("dense", w, (2,), (2,), weight_exp=1),
        LoihiNeuron((2,), du=4095, dv=0, vth=300, bias_mant=np.array([5, -3]),
                    bias_exp=np.array([2, 1]), scale_exp=k)),))
    x = torch.tensor([[[1, 0]], [[1, 1]], [[0, 1]], [[1, 1]], [[1, 0]]])
    ref = simulate(net, x)
    with LavaNetwork(net, steps=6, fixed_point=False, progress=False) as ln:
        got = ln.run(x)
    for f in ("s", "u", "v"):
        assert torch.equal(getattr(got["l0"], f), getattr(ref["l0"], f).double() *
                           (1.0 if f == "s" else 2.0**-k))


# ---- the runtime is always stopped ------------------------------------------------------------
def _descendants() -> set[int]:
    """PIDs of all descendants of this process (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return {p for p in found if not _is_resource_tracker(p)}


def _is_resource_tracker(pid: int) -> bool:
    """Python's multiprocessing resource tracker lives as long as the test session."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"resource_tracker" in f.read()
    except OSError:
        return False


def _tiny_net() -> LoihiNetwork:
    syn = LoihiSynapse("dense", np.array([[100, 50]]), (2,), (1,), sign_mode="excitatory")
    return LoihiNetwork((2,), (LoihiLayer("l0", syn, LoihiNeuron((1,), 0, 0, 100)),))


@lava
def test_a_run_that_raises_inside_lava_leaves_no_workers(monkeypatch):
    import time

    from snntorch_loihi.lava import LavaNetwork, runner

    before = _descendants()
    ln = LavaNetwork(_tiny_net(), steps=4, progress=False)
    # a ring buffer of the wrong shape: Lava's workers fail inside the run
    monkeypatch.setattr(runner, "_to_lava", lambda a, lead: np.zeros((2, 3, 5)))
    with pytest.raises(Exception):  # noqa: B017 - whatever Lava raises
        ln.run(torch.zeros(3, 1, 2, dtype=torch.int64))
    assert ln._closed
    for _ in range(50):
        if _descendants() <= before:
            break
        time.sleep(0.1)
    assert _descendants() <= before


@lava
def test_an_error_between_runs_stops_the_runtime(monkeypatch):
    import time

    from snntorch_loihi.lava import LavaNetwork

    before = _descendants()
    with pytest.raises(RuntimeError, match="boom"):
        with LavaNetwork(_tiny_net(), steps=4, chunk=1, progress=False) as ln:
            ln.run(torch.ones(3, 2, 2, dtype=torch.int64))
            assert _descendants() - before  # workers are running
            monkeypatch.setattr(ln, "_read", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
            ln.run(torch.ones(3, 2, 2, dtype=torch.int64))
    for _ in range(50):
        if _descendants() <= before:
            break
        time.sleep(0.1)
    assert _descendants() <= before


# ---- lazy import (no Lava needed) -------------------------------------------------------------
def test_importing_the_package_imports_no_lava():
    import subprocess
    import sys

    code = ("import sys, snntorch_loihi.lava as L; "
            "assert not any(m == 'lava' or m.startswith('lava.') for m in sys.modules); "
            "assert 'LavaNetwork' in dir(L)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_lava_raises_lava_unavailable(monkeypatch):
    import importlib
    import sys

    from snntorch_loihi.errors import LavaUnavailableError

    for name in [m for m in sys.modules if m == "lava" or m.startswith("lava.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "lava", None)  # makes `import lava...` fail
    monkeypatch.delitem(sys.modules, "snntorch_loihi.lava.runner", raising=False)
    with pytest.raises(LavaUnavailableError, match=r"snntorch_loihi.lava needs lava-nc"):
        importlib.import_module("snntorch_loihi.lava.runner")
    with pytest.raises(LavaUnavailableError):
        from snntorch_loihi.lava import LavaNetwork  # noqa: F401
