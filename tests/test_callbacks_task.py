"""Shared set-up of the callback tests (no tests here): a small spike-encoded digits task, a
quantization-aware net, a direct overflow count from ``fixed.simulate``'s traces."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import snntorch as snn
import torch
import torch.nn.functional as F
from snntorch import functional as SF
from torch import nn

from snntorch_loihi.fixed import (
    current_decay_factor,
    decay,
    effective_bias,
    saturate_voltage,
    simulate,
    voltage_decay_factor,
    wrap_current,
)
from snntorch_loihi.ir import LoihiNetwork, LoihiSynapse
from snntorch_loihi.qat import delay_steps, prepare_qat

NUM_STEPS = 8


@functools.lru_cache(maxsize=1)
def digits(n_train: int = 192, n_val: int = 48):
    """``(x, y, x_val, y_val)``: time-first spikes of 8x8 digits, a seeded subset."""
    from snntorch_loihi.data import digits_spikes

    x, y, xv, yv = digits_spikes(NUM_STEPS, seed=0)
    return x[:, :n_train], y[:n_train], xv[:, :n_val], yv[:n_val]


def make_net(seed: int = 0, bias: bool = True) -> nn.Module:
    """A calibrated quantization-aware 64-32-10 Leaky net in float mode."""
    torch.manual_seed(seed)

    def leaky():
        return snn.Leaky(0.9, init_hidden=True, reset_mechanism="zero", reset_delay=False)

    fnet = nn.Sequential(nn.Linear(64, 32, bias=bias), leaky(), nn.Linear(32, 10, bias=bias),
                         leaky())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare_qat(fnet, quantize=False)


def steps_of(net: nn.Module) -> int:
    return NUM_STEPS + delay_steps(net)


def loss_fn():
    return SF.ce_count_loss()


def _acc(syn: LoihiSynapse, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(T, B, *in)`` spikes -> per-step ``(a_in, conv accumulator wraps)``, ``(T, B, *out)``."""
    w = torch.as_tensor(np.asarray(syn.weight_mant), dtype=torch.int64)
    t, b = s.shape[:2]
    s = (s != 0).to(torch.int64)
    if syn.kind == "conv":
        acc = F.conv2d(s.reshape(t * b, *syn.in_shape).double(), w.double(), None, syn.stride,
                       syn.padding, syn.dilation, syn.groups).to(torch.int64)
        wrapped = wrap_current(acc)
        return wrapped.reshape(t, b, *syn.out_shape), (wrapped != acc).reshape(t, b, *syn.out_shape)
    acc = s.reshape(t, b, -1) @ w.T
    e = syn.weight_exp
    acc = acc * (1 << e) if e >= 0 else acc >> (-e)
    return acc.reshape(t, b, *syn.out_shape), torch.zeros_like(acc, dtype=torch.bool)


def direct_counts(ir: LoihiNetwork, x: torch.Tensor) -> dict[str, dict[str, int]]:
    """Counts rebuilt from ``simulate``'s recorded traces, vectorized over time.

    ``a_in[t]`` is the accumulation of the layer input at ``t - 1``; the current before its
    wrap is ``decay(u[t-1]) + (a_in[t] << 6)``; the voltage before saturation is
    ``decay(v[t-1]) + u[t] + bias`` (``v[t-1]`` after the reset, as recorded).
    """
    res = simulate(ir, x, check=False)
    steps = x.shape[0] + ir.delay
    inp = torch.cat([x.to(torch.int64), torch.zeros((steps - x.shape[0], *x.shape[1:]),
                                                   dtype=torch.int64)])
    out = {}
    for k, layer in enumerate(ir.layers):
        tr = res[layer.name]
        n = layer.neuron
        zero = torch.zeros_like(tr.u[:1])
        ff, ff_wraps = _acc(layer.synapse, inp[:-1])
        a_in = torch.cat([zero, ff])
        conv_wraps = int(ff_wraps[: steps - 1].sum())  # accumulations delivered within the run
        if layer.recurrent is not None:
            a_in = a_in + torch.cat([zero, _acc(layer.recurrent, tr.s[:-1])[0]])
        u_prev = torch.cat([zero, tr.u[:-1]])
        v_prev = torch.cat([zero, tr.v[:-1]])
        u_pre = decay(u_prev, current_decay_factor(n.du)) + a_in * 64
        bias = effective_bias(torch.as_tensor(np.asarray(n.bias_mant)),
                              torch.as_tensor(np.asarray(n.bias_exp)))
        v_pre = decay(v_prev, voltage_decay_factor(n.dv)) + tr.u + bias
        window = tr.s[k + 1: x.shape[0] + k + 1]
        per_neuron = window.sum((0, 1))
        out[layer.name] = {
            "current_wraps": int((wrap_current(u_pre) != u_pre).sum()) + conv_wraps,
            "voltage_saturations": int((saturate_voltage(v_pre) != v_pre).sum()),
            "never_fire": int((per_neuron == 0).sum()),
            "always_fire": int((per_neuron == window.shape[0] * window.shape[1]).sum()),
        }
        inp = tr.s
    return out


def make_netx_net(seed: int = 0) -> nn.Module:
    """A bias-free net with registers netx holds exactly (``weight_exp = 0``, ``k = 12``)."""
    net = make_net(seed, bias=False)
    gen = torch.Generator().manual_seed(seed)
    for syn, neuron in ((net[0], net[1]), (net[2], net[3])):
        mant = torch.randint(-30, 31, syn.weight.shape, generator=gen) * 2
        syn.load_registers(mant, weight_exp=0, scale_exp=12)
        neuron.load_registers(du=4095, dv=410, vth=64, scale_exp=12)
    return net
