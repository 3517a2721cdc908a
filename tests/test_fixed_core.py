"""The fixed-point core against an independent plain-Python reference of LOIHI_FIXED_POINT.md.

The reference below is written from the document (and Lava's sources), one Python int at a time,
with no code shared with :mod:`snntorch_loihi.fixed`. Hypothesis draws registers over their full
hardware ranges with the edges forced in; the int64 and float32 paths must both equal it exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snntorch_loihi.errors import RegisterRangeError
from snntorch_loihi.fixed import (
    clamp_ste,
    conv_accumulate,
    cuba_step,
    cuba_subthreshold,
    cuba_subthreshold_ste,
    decay_ste,
    dense_accumulate,
    effective_bias,
    floor_ste,
    round_ste,
    saturate_voltage_ste,
    shift_by_exponent,
    trunc_ste,
    truncate_weights,
    weight_grid,
    wrap_current,
    wrap_current_ste,
)

# ---- the independent reference (plain Python ints) ---------------------------------------------
A_IN_MAX = 2**18 - 1  # |a_in << 6| < 2**24: Lava's single wrap lands inside 24 bits


def rs0(x: int) -> int:
    """x / 4096 rounded toward zero."""
    return -((-x) >> 12) if x < 0 else x >> 12


def ref_lif(a_seq, du, dv, vth, bias_mant, bias_exp, u=0, v=0):
    """PyLifModelBitAcc, step by step; returns lists of (s, u, v)."""
    out = []
    for a in a_seq:
        u = rs0(u * (4096 - (du + 1)))
        u = u + (a << 6)
        if u > 2**23:
            u -= 2**24
        if u <= -(2**23):
            u += 2**24
        v = rs0(v * (4096 - dv))
        v = max(-(2**23 - 1), min(2**23 - 1, v + u + (bias_mant << bias_exp)))
        s = v > (vth << 6)
        if s:
            v = 0
        out.append((int(s), u, v))
    return out


def ref_truncate(w, num_weight_bits, mode):
    """lava.utils.weightutils clip_weights + truncate_weights, per element."""
    mixed = mode == "mixed"
    nt = 8 - num_weight_bits + int(mixed)
    res = []
    for x in w:
        if mode == "inhibitory":
            x = -x
        x = max(-256 if mixed else 0, min(255, x))
        x = (x >> nt) << nt
        res.append(-x if mode == "inhibitory" else x)
    return res


def ref_dense(s, w, weight_exp, graded):
    """acc = sum of W[:, j] * s[j] (binary: s[j] != 0 counts 1), shifted as a whole."""
    out = []
    for row in w:
        acc = sum(wij * (sj if graded else int(sj != 0)) for wij, sj in zip(row, s, strict=True))
        out.append(acc << weight_exp if weight_exp >= 0 else acc >> -weight_exp)
    return out


def ref_signed_clamp(x: int) -> int:
    """lava.proc.conv.utils.signed_clamp(x, 24)."""
    return (x + 2**23) % 2**24 - 2**23


def ref_conv(x, w, stride, padding):
    """Cross-correlation of (C, H, W) ints with (Co, C, kH, kW) ints, then Lava's 24-bit wrap."""
    c, h, wd = x.shape
    co, _, kh, kw = w.shape
    xp = np.zeros((c, h + 2 * padding[0], wd + 2 * padding[1]), dtype=object)
    xp[:, padding[0]:padding[0] + h, padding[1]:padding[1] + wd] = x
    ho = (h + 2 * padding[0] - kh) // stride[0] + 1
    wo = (wd + 2 * padding[1] - kw) // stride[1] + 1
    out = np.zeros((co, ho, wo), dtype=object)
    for o in range(co):
        for i in range(ho):
            for j in range(wo):
                patch = xp[:, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw]
                out[o, i, j] = ref_signed_clamp(int((patch * w[o].astype(object)).sum()))
    return out


# ---- strategies -------------------------------------------------------------------------------
def edgy(lo: int, hi: int):
    return st.one_of(st.sampled_from([lo, hi]), st.integers(lo, hi))


decays = st.one_of(st.sampled_from([0, 4095]), st.integers(0, 4095))
vths = st.one_of(st.sampled_from([0, 1, 131071]), st.integers(0, 131071), st.integers(0, 500))
a_ins = st.one_of(st.sampled_from([-A_IN_MAX, A_IN_MAX, 0]), st.integers(-A_IN_MAX, A_IN_MAX),
                  st.integers(-300, 300))


def run_core(a_seq, du, dv, vth, bm, be, u0, v0, dtype):
    u = torch.tensor([u0], dtype=dtype)
    v = torch.tensor([v0], dtype=dtype)
    out = []
    for a in a_seq:
        s, u, v = cuba_step(torch.tensor([a], dtype=dtype), u, v, du=du, dv=dv, vth=vth,
                            bias_mant=torch.tensor([bm], dtype=dtype),
                            bias_exp=torch.tensor([be], dtype=dtype))
        out.append((int(s.item()), int(u.item()), int(v.item())))
    return out


# ---- the neuron ---------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(a_seq=st.lists(a_ins, min_size=1, max_size=12), du=decays, dv=decays, vth=vths,
       bm=edgy(-4096, 4095), be=edgy(0, 7), u0=edgy(-(2**23) + 1, 2**23),
       v0=edgy(-(2**23) + 1, 2**23 - 1))
def test_cuba_step_equals_reference(a_seq, du, dv, vth, bm, be, u0, v0):
    want = ref_lif(a_seq, du, dv, vth, bm, be, u0, v0)
    assert run_core(a_seq, du, dv, vth, bm, be, u0, v0, torch.int64) == want
    assert run_core(a_seq, du, dv, vth, bm, be, u0, v0, torch.float32) == want
    assert run_core(a_seq, du, dv, vth, bm, be, u0, v0, torch.float64) == want


def test_wrap_and_saturation_happen_and_match():
    """Constant maximal input: u wraps every step, v saturates; all three dtypes agree."""
    for a in (A_IN_MAX, -A_IN_MAX, 100000, -100000):
        seq = [a] * 6
        want = ref_lif(seq, 0, 0, 131071, 0, 0)
        assert any(u * a < 0 for _, u, _ in want)  # the current wrapped to the other sign
        for dtype in (torch.int64, torch.float32):
            assert run_core(seq, 0, 0, 131071, 0, 0, 0, 0, dtype) == want
    assert ref_lif([-A_IN_MAX] * 3, 4095, 0, 0, 0, 0)[-1][2] != -(2**23 - 1)  # u wraps, v sums
    assert ref_lif([-60000] * 6, 0, 0, 0, -4096, 7)[-1][2] == -(2**23 - 1)


def test_float32_equals_int64_at_the_extremes():
    extremes_uv = [-(2**23) + 1, -(2**23) + 4095, -1, 0, 1, 2**23 - 1, 2**23]
    a = torch.tensor([-A_IN_MAX, A_IN_MAX, 0, 1, -1, 12345, -77777], dtype=torch.int64)
    for du in (0, 1, 2047, 4094, 4095):
        for dv in (0, 1, 4095):
            u = torch.tensor(extremes_uv, dtype=torch.int64)
            v = torch.tensor(extremes_uv[:-1] + [2**23 - 1], dtype=torch.int64)
            ui, vi = cuba_subthreshold(a, u, v, du=du, dv=dv, bias=effective_bias(4095, 7))
            uf, vf = cuba_subthreshold(a.float(), u.float(), v.float(), du=du, dv=dv,
                                       bias=effective_bias(4095, 7))
            assert torch.equal(ui, uf.long()) and torch.equal(vi, vf.long())
            want = [ref_lif([int(x)], du, dv, 131071, 4095, 7, int(y), int(z))[0][1]
                    for x, y, z in zip(a, u, v, strict=True)]
            assert ui.tolist() == want


def test_wrap_current_is_lavas_one_sided_wrap():
    u = torch.tensor([2**23, 2**23 + 1, -(2**23), -(2**23) + 1, 2**24 - 64, -(2**24) + 64])
    want = [2**23, -(2**23) + 1, 2**23, -(2**23) + 1, -64, 64]
    assert wrap_current(u).tolist() == want
    assert wrap_current(u.float()).long().tolist() == want


# ---- synapses -----------------------------------------------------------------------------------
modes = st.sampled_from(["mixed", "excitatory", "inhibitory"])


@settings(max_examples=200, deadline=None)
@given(w=st.lists(edgy(-256, 255), min_size=1, max_size=16), bits=st.integers(1, 8), mode=modes)
def test_truncate_weights_equals_reference(w, bits, mode):
    got = truncate_weights(torch.tensor(w), bits, mode)
    assert got.tolist() == ref_truncate(w, bits, mode)
    assert truncate_weights(torch.tensor(w, dtype=torch.float32), bits, mode).long().tolist() \
        == ref_truncate(w, bits, mode)
    assert torch.equal(truncate_weights(got, bits, mode), got)  # idempotent


@pytest.mark.parametrize("mode", ["mixed", "excitatory", "inhibitory"])
@pytest.mark.parametrize("bits", range(1, 9))
def test_weight_grid_values_are_fixed_points(bits, mode):
    lo, hi, step = weight_grid(bits, mode)
    grid = torch.arange(lo, hi + 1, step)
    assert torch.equal(truncate_weights(grid, bits, mode), grid)
    assert ref_truncate(grid.tolist(), bits, mode) == grid.tolist()
    # and nothing else on [-256, 255] is a fixed point
    allw = torch.arange(-256, 256)
    fixed = allw[truncate_weights(allw, bits, mode) == allw]
    assert torch.equal(fixed, grid)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n_in=st.integers(1, 6), n_out=st.integers(1, 4),
       weight_exp=edgy(-8, 7), graded=st.booleans())
def test_dense_accumulate_equals_reference(data, n_in, n_out, weight_exp, graded):
    w = [data.draw(st.lists(edgy(-256, 255), min_size=n_in, max_size=n_in))
         for _ in range(n_out)]
    vals = st.integers(-4096, 4096) if graded else st.integers(0, 1)
    s = data.draw(st.lists(vals, min_size=n_in, max_size=n_in))
    want = ref_dense(s, w, weight_exp, graded)
    got = dense_accumulate(torch.tensor(s), torch.tensor(w), weight_exp, graded=graded)
    assert got.tolist() == want
    bound = max(sum(abs(x) for x in row) for row in w) * max(abs(x) for x in s)
    if bound < 2**24:  # float32 path, where it is exact
        got32 = dense_accumulate(torch.tensor(s, dtype=torch.float32),
                                 torch.tensor(w, dtype=torch.float32), weight_exp, graded=graded)
        assert got32.long().tolist() == want


@settings(max_examples=40, deadline=None)
@given(data=st.data(), stride=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       padding=st.tuples(st.integers(0, 1), st.integers(0, 1)), big=st.booleans())
def test_conv_accumulate_equals_reference(data, stride, padding, big):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.integers(-(2**20), 2**20, (2, 5, 4)) if big else rng.integers(0, 2, (2, 5, 4))
    w = rng.integers(-256, 256, (3, 2, 3, 2))
    want = ref_conv(x, w, stride, padding)
    got = conv_accumulate(torch.from_numpy(x)[None], torch.from_numpy(w), stride=stride,
                          padding=padding, graded=big)[0]
    assert got.tolist() == want.tolist()
    if not big:
        got32 = conv_accumulate(torch.from_numpy(x).float()[None], torch.from_numpy(w).float(),
                                stride=stride, padding=padding)[0]
        assert got32.long().tolist() == want.tolist()


def test_conv_wraps_like_lavas_signed_clamp_at_the_edge():
    w = torch.tensor([[[[2]]]])
    x = torch.tensor([[[[2**22, -(2**22), 2**22 - 1, 2**22 + 3]]]])
    got = conv_accumulate(x, w, graded=True)
    assert got.flatten().tolist() == [-(2**23), -(2**23), 2**23 - 2, -(2**23) + 6]
    assert got.flatten().tolist() == [ref_signed_clamp(2 * int(v)) for v in x.flatten()]


# ---- errors -----------------------------------------------------------------------------------
Z = torch.zeros(1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(du=4096, dv=0, vth=0), r"du must be an integer in \[0, 4095\], got 4096\."),
        (dict(du=0, dv=-1, vth=0), r"dv must be an integer in \[0, 4095\], got -1\."),
        (dict(du=0, dv=0, vth=131072), r"vth must be an integer in \[0, 131071\], got 131072\."),
        (dict(du=0, dv=0, vth=0, bias_mant=4096),
         r"bias_mant must be an integer in \[-4096, 4095\], got 4096\."),
        (dict(du=0, dv=0, vth=0, bias_exp=8), r"bias_exp must be an integer in \[0, 7\], got 8\."),
        (dict(du=0.5, dv=0, vth=0), r"du must be an integer in \[0, 4095\], got 0\.5 \(not an"),
    ],
)
def test_neuron_register_errors(kwargs, match):
    with pytest.raises(RegisterRangeError, match=match):
        cuba_step(Z, Z, Z, **kwargs)


def test_state_and_input_errors():
    with pytest.raises(RegisterRangeError, match=r"a_in must be an integer in \[-262143, 262143\]"
                                                 r", got 262144\. Lava's one-step wrap"):
        cuba_step(torch.tensor([2.0**18]), Z, Z, du=0, dv=0, vth=0)
    with pytest.raises(RegisterRangeError, match=r"v must be an integer in \[-8388607, 8388607\]"):
        cuba_step(Z, Z, torch.tensor([2.0**23]), du=0, dv=0, vth=0)
    with pytest.raises(RegisterRangeError, match=r"u must be an integer in \[-8388607, 8388608\]"):
        cuba_step(Z, torch.tensor([-(2.0**23)]), Z, du=0, dv=0, vth=0)


def test_synapse_errors():
    w = torch.tensor([[1, 2]])
    with pytest.raises(RegisterRangeError, match=r"weight_mant must be an integer in \[-256, 255\]"
                                                 r", got 256\."):
        dense_accumulate(torch.ones(2), torch.tensor([[256, 0]]))
    with pytest.raises(RegisterRangeError, match=r"weight_exp must be an integer in \[-8, 7\], "
                                                 r"got 8\."):
        dense_accumulate(torch.ones(2), w, 8)
    with pytest.raises(RegisterRangeError, match=r"binary spikes must be 0 or 1"):
        dense_accumulate(torch.tensor([2.0, 0.0]), w.float())
    with pytest.raises(RegisterRangeError, match=r"must stay below 2\*\*24 to be exact in float32"):
        dense_accumulate(torch.tensor([2.0**16, 2.0**16]), torch.tensor([[255.0, 255.0]]),
                         graded=True)
    with pytest.raises(RegisterRangeError, match=r"num_weight_bits must be an integer in \[1, 8\]"
                                                 r", got 9\."):
        truncate_weights(w, 9)


# ---- straight-through twins -----------------------------------------------------------------
def test_ste_twins_forward_identical_and_gradients():
    torch.manual_seed(0)
    a = torch.randint(-A_IN_MAX, A_IN_MAX, (64,)).float()
    u = torch.randint(-(2**23) + 1, 2**23, (64,)).float().requires_grad_()
    v = torch.randint(-(2**23) + 1, 2**23 - 1, (64,)).float().requires_grad_()
    du, dv = 1000, 3000
    fu = torch.tensor(4096.0 - (du + 1), requires_grad=True)
    fv = torch.tensor(4096.0 - dv, requires_grad=True)
    bias = effective_bias(torch.full((64,), -4096.0), 7)
    u1, v1 = cuba_subthreshold_ste(a, u, v, du_factor=fu, dv_factor=fv, bias=bias)
    u2, v2 = cuba_subthreshold(a, u.detach(), v.detach(), du=du, dv=dv, bias=bias)
    assert torch.equal(u1, u2) and torch.equal(v1, v2)
    v1.sum().backward()  # d v / d u0 = fu/4096 (through u), d v / d v0 = fv/4096
    assert torch.allclose(u.grad, torch.full_like(u, float(fu) / 4096))
    assert torch.allclose(v.grad, torch.full_like(v, float(fv) / 4096))
    assert torch.allclose(fv.grad, v.detach().sum() / 4096)
    assert torch.allclose(fu.grad, u.detach().sum() / 4096)

    x = torch.tensor([5000.0, -5000.0, 3.0], requires_grad=True)
    y = decay_ste(x, 2048)
    y.sum().backward()
    assert y.tolist() == [2500.0, -2500.0, 1.0] and x.grad.tolist() == [0.5, 0.5, 0.5]

    for fn, arg in [(wrap_current_ste, torch.tensor([2.0**23 + 64, 5.0])),
                    (saturate_voltage_ste, torch.tensor([2.0**24, -(2.0**24), 1.0])),
                    (round_ste, torch.tensor([0.5, 1.5, -2.4])),
                    (floor_ste, torch.tensor([0.5, -1.5])),
                    (trunc_ste, torch.tensor([0.7, -1.7])),
                    (lambda t: clamp_ste(t, -1.0, 1.0), torch.tensor([3.0, -3.0, 0.2]))]:
        t = arg.clone().requires_grad_()
        fn(t).sum().backward()
        assert torch.equal(t.grad, torch.ones_like(t))

    acc = torch.tensor([7.0, -7.0], requires_grad=True)
    out = shift_by_exponent(acc, -2)
    out.sum().backward()
    assert out.tolist() == [1.0, -2.0] and acc.grad.tolist() == [0.25, 0.25]
