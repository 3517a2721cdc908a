"""lava-dl netx HDF5: save_netx files run exactly like simulate, or save_netx raises clearly."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_verify_support import convnet, lava_children, mlp, overflow_net, spikes

from snntorch_loihi.fixed.network import simulate
from snntorch_loihi.ir import LoihiLayer, LoihiNetwork, LoihiNeuron, LoihiSynapse
from snntorch_loihi.lava.netx import NetxError, check_netx, save_netx


def _one_layer(w: np.ndarray, **neuron_kw) -> LoihiNetwork:
    w = np.asarray(w, np.int64)
    syn = LoihiSynapse("dense", w, (w.shape[1],), (w.shape[0],),
                       sign_mode=neuron_kw.pop("sign_mode", "mixed"))
    kw = dict(du=4095, dv=0, vth=10)
    kw.update(neuron_kw)
    return LoihiNetwork((w.shape[1],), (LoihiLayer("l0", syn, LoihiNeuron((w.shape[0],), **kw)),))


# ---- the file format (no Lava needed) ------------------------------------------------------------
def test_file_layout(tmp_path) -> None:
    net = convnet(bias="channel")
    save_netx(net, tmp_path / "c.net")
    with h5py.File(tmp_path / "c.net") as f:
        types = [f[f"layer/{i}/type"][()].decode() for i in range(len(f["layer"]))]
        assert types == ["input", "conv", "conv", "flatten", "dense"]
        assert "neuron" not in f["layer/0"]
        assert tuple(f["layer/0/shape"][()]) == (2, 6, 5)
        assert f["layer/1/neuron/iDecay"][()] == 801 and f["layer/1/neuron/vDecay"][()] == 200
        assert f["layer/1/bias"].shape == (3,)  # channel-constant bias as (C,)
        assert np.array_equal(f["layer/1/weight"][()], net.layers[0].synapse.weight_mant)
        assert f.attrs["input_message_bits"] == 0


def test_weight_exp_folded_into_file_weights(tmp_path) -> None:
    save_netx(mlp(weight_exp=0), tmp_path / "a.net")
    net = _one_layer(np.array([[3, -5], [7, 1]]))
    net = dataclasses.replace(net, layers=(dataclasses.replace(
        net.layers[0], synapse=dataclasses.replace(net.layers[0].synapse, weight_exp=2)),))
    save_netx(net, tmp_path / "b.net")
    with h5py.File(tmp_path / "b.net") as f:
        assert np.array_equal(f["layer/1/weight"][()], [[12, -20], [28, 4]])


def test_bias_not_multiple_of_64_raises() -> None:
    net = _one_layer(np.array([[10, -10]]), bias_mant=np.array([5]), bias_exp=np.array([3]))
    with pytest.raises(NetxError, match=r"bias_mant << bias_exp must be a multiple of 64.*got 40"):
        check_netx(net)
    ok = _one_layer(np.array([[10, -10]]), bias_mant=np.array([5]), bias_exp=np.array([6]))
    check_netx(ok)


def test_negative_weight_exp_raises() -> None:
    net = mlp()
    syn = dataclasses.replace(net.layers[1].synapse, weight_exp=-1)
    bad = dataclasses.replace(net, layers=(net.layers[0], dataclasses.replace(net.layers[1],
                                                                             synapse=syn)))
    with pytest.raises(NetxError, match=r"layer 'out' synapse: weight_exp must be >= 0 for netx"):
        check_netx(bad)


@pytest.mark.parametrize("w", [np.full((2, 3), -4), np.array([[-8, 0, -8], [0, -8, -2]]),
                               np.array([[-256, 0], [-2, 0]])])
def test_all_inhibitory_power_of_two_bug_raises(w) -> None:
    with pytest.raises(NetxError, match="all-inhibitory power-of-two bug"):
        check_netx(_one_layer(w, sign_mode="inhibitory"))


def test_inhibitory_not_power_of_two_is_accepted() -> None:
    check_netx(_one_layer(np.array([[-6, 0, -3], [-5, -6, -1]]), sign_mode="inhibitory"))


def test_too_large_weights_after_exponent_and_all_zero_raise() -> None:
    net = _one_layer(np.array([[200, -20]]))
    net = dataclasses.replace(net, layers=(dataclasses.replace(
        net.layers[0], synapse=dataclasses.replace(net.layers[0].synapse, weight_exp=1)),))
    with pytest.raises(NetxError, match=r"outside netx's \[-256, 254\]"):
        check_netx(net)
    with pytest.raises(NetxError, match="must not be all zeros"):
        check_netx(_one_layer(np.zeros((2, 2))))


def test_reset_none_raises() -> None:
    net = _one_layer(np.array([[10, -10]]), reset="none")
    with pytest.raises(NetxError, match="reset must be 'zero' for netx"):
        check_netx(net)


def test_nir_graph_is_accepted(tmp_path) -> None:
    from snntorch_loihi.export import to_nir

    net = mlp(bias=True)
    written = save_netx(to_nir(net), tmp_path / "g.net")
    assert [la.name for la in written.layers] and len(written.layers) == 2


# ---- running the files with lava-dl's netx loader ---------------------------------------------------
def _exact(net: LoihiNetwork, x: torch.Tensor, path) -> None:
    from snntorch_loihi.lava.netx import run_netx

    save_netx(net, path)
    got = run_netx(path, x)
    ref = simulate(net, x)
    assert got.mismatches(ref) == []
    assert list(got.layers) == [la.name for la in net.layers]
    for name in ref:
        assert got[name].s.shape == ref[name].s.shape


@pytest.mark.lava
@pytest.mark.parametrize("case", ["mlp_bias", "recurrent", "weight_exp", "conv", "graded",
                                  "overflow", "dense_on_image", "conv_geometry"])
def test_netx_runs_exactly_like_simulate(case, tmp_path) -> None:
    if case == "mlp_bias":
        net, x = mlp(1, bias=True), spikes((10, 3, 12), seed=1)
    elif case == "recurrent":
        net, x = mlp(2, bias=True, recurrent=True), spikes((10, 2, 12), seed=2)
    elif case == "weight_exp":
        net, x = mlp(3, weight_exp=1), spikes((8, 2, 12), seed=3)
    elif case == "conv":
        net, x = convnet(4, bias="neuron"), spikes((6, 2, 2, 6, 5), seed=4)
    elif case == "graded":
        net = mlp(5, graded=8)
        x = torch.randint(0, 40, (8, 2, 12), generator=torch.Generator().manual_seed(5))
    elif case == "conv_geometry":  # groups, unequal stride/padding/dilation: (H, W) order
        rng = np.random.default_rng(7)
        w = rng.integers(-50, 80, (4, 1, 3, 2)) * 2
        c = LoihiLayer("c", LoihiSynapse("conv", w, (2, 7, 6), (4, 4, 4), stride=(2, 1),
                                         padding=(1, 0), dilation=(1, 2), groups=2),
                       LoihiNeuron((4, 4, 4), 500, 100, 80))
        d = LoihiLayer("d", LoihiSynapse("dense", rng.integers(-50, 80, (3, 64)) * 2, (4, 4, 4),
                                         (3,)), LoihiNeuron((3,), 4095, 100, 100))
        net, x = LoihiNetwork((2, 7, 6), (c, d)), spikes((6, 2, 2, 7, 6), p=0.5, seed=7)
    elif case == "dense_on_image":  # a (C, H, W) input into a Dense: fed flattened in C-order
        base = mlp(6, n_in=12)
        syn = dataclasses.replace(base.layers[0].synapse, in_shape=(2, 3, 2))
        net = LoihiNetwork((2, 3, 2), (dataclasses.replace(base.layers[0], synapse=syn),
                                       base.layers[1]))
        x = spikes((6, 2, 2, 3, 2), seed=6)
    else:
        net, x = overflow_net(graded=True), torch.full((6, 2, 6), 150, dtype=torch.int64)
        x[:, 1, ::2] = 0
    _exact(net, x, tmp_path / f"{case}.net")
    if case == "overflow":
        from snntorch_loihi.callbacks.overflow import count_overflows

        c = count_overflows(net, x)["wrap"]
        assert c.current_wraps > 0 and c.voltage_saturations > 0
    assert lava_children() == []


@pytest.mark.lava
def test_power_of_two_bug_is_real(tmp_path) -> None:
    """Why save_netx refuses: netx itself turns an all -4 matrix into zeros."""
    from snntorch_loihi.lava.netx import run_netx

    net = _one_layer(np.full((2, 3), -4), sign_mode="inhibitory", vth=0,
                     bias_mant=np.array([64, 64]), bias_exp=np.array([6, 6]))
    path = tmp_path / "bug.net"
    save_netx(dataclasses.replace(net, layers=(dataclasses.replace(net.layers[0], synapse=(
        dataclasses.replace(net.layers[0].synapse, weight_mant=np.full((2, 3), -6)))),)), path)
    with h5py.File(path, "r+") as f:  # bypass the check: write the matrix netx breaks
        del f["layer/1/weight"]
        f["layer/1/weight"] = np.full((2, 3), -4)
    x = torch.ones(4, 1, 3, dtype=torch.int64)
    got = run_netx(path, x, record=("s", "u"))
    ref = simulate(net, x)
    assert ref["l0"].u.min() < 0           # Lava processes: the -4 weights inhibit
    assert int(got["l0"].u.abs().max()) == 0  # netx: the weights became 0


@pytest.mark.lava
def test_netx_unbatched_input_and_file_without_names(tmp_path) -> None:
    from snntorch_loihi.lava.netx import run_netx

    net = mlp(6)
    save_netx(net, tmp_path / "a.net")
    x = spikes((7, 12), seed=6)
    got = run_netx(tmp_path / "a.net", x, record=("s",))
    assert got["out"].s.shape == (9, 1, 4) and got["out"].u is None
    assert torch.equal(got["out"].s, simulate(net, x[:, None])["out"].s)


@pytest.mark.lava
def test_no_worker_outlives_a_netx_run_that_raises(tmp_path, monkeypatch) -> None:
    from snntorch_loihi.lava.netx import NetxNetwork

    save_netx(mlp(9), tmp_path / "a.net")
    x = spikes((5, 2, 12), seed=9)
    nn_ = NetxNetwork(tmp_path / "a.net", steps=7, chunk=2, progress=False)
    nn_.run(x)
    assert lava_children() != []

    def boom(*args, **kwargs):
        raise RuntimeError("boom while reading the probes")

    monkeypatch.setattr(NetxNetwork, "_read", boom)
    with pytest.raises(RuntimeError, match="boom"):
        nn_.run(x)
    assert lava_children() == []


@pytest.mark.lava
@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["mixed", "exc", "inh", "inh_pow2"]))
def test_replay_of_netx_repacking_equals_netx_and_lava(seed, kind) -> None:
    """save_netx's check replays netx's optimize_weight_bits and Lava's Dense conversion."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import SignMode, clip_weights, determine_sign_mode
    from lava.utils.weightutils import truncate_weights as lava_truncate

    from snntorch_loihi.lava.netx import _lava_dense_effective, _netx_repack

    rng = np.random.default_rng(seed)
    step = 1 << int(rng.integers(0, 4))
    if kind == "mixed":
        w = rng.integers(-256 // step, 254 // step + 1, (3, 4)) * step
    elif kind == "exc":
        w = rng.integers(0, 255 // step + 1, (3, 4)) * step
    else:
        w = -rng.integers(0, 255 // step + 1, (3, 4)) * step
        if kind == "inh_pow2":
            w[0, 0] = -(1 << int(rng.integers(0, 9)))
            w = np.maximum(w, w[0, 0])
    if not w.any():
        assert _netx_repack(w) is None
        return
    packed, nwb, wexp = _netx_repack(w)
    with np.errstate(divide="ignore"):
        ref_w, ref_nwb, ref_exp, _ = optimize_weight_bits(w.copy())
    assert np.array_equal(packed, ref_w) and (nwb, wexp) == (ref_nwb, ref_exp)
    mode = determine_sign_mode(packed)
    lava_w = clip_weights(packed, mode, num_bits=8)
    nt = 8 - nwb + int(mode == SignMode.MIXED)
    mine = _lava_dense_effective(packed, nwb, wexp)
    if nt >= 0:
        lava_w = lava_truncate(lava_w, mode, nwb)
        assert (mine is not None) == bool(np.array_equal(lava_w, packed))
        if mine is not None:
            assert np.array_equal(mine, w)
