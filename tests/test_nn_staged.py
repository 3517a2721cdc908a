"""Mixed modes (staged QAT): quantized synapses feeding float-mode neurons."""

from __future__ import annotations

import copy

import snntorch as snn
import torch
from torch import nn

from snntorch_loihi.nn import disable_quantization, enable_quantization
from snntorch_loihi.nn.synapses import QuantLinear
from snntorch_loihi.qat import prepare_qat
from snntorch_loihi.training import run_network


def _float_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(12, 16), snn.Leaky(beta=0.8, threshold=0.2, init_hidden=True, reset_mechanism="zero"),
        nn.Linear(16, 5), snn.Leaky(beta=0.9, threshold=0.1, init_hidden=True, reset_mechanism="zero"),
    )


def test_quantized_synapses_into_float_neurons_equal_float_net_with_quantized_weights():
    qnet = prepare_qat(_float_net(), quantize=False)
    for m in qnet.modules():
        if isinstance(m, QuantLinear):
            enable_quantization(m)
    # reference: the same float network with every weight replaced by its quantized float value
    ref = copy.deepcopy(qnet)
    ref.apply(disable_quantization)
    for m_ref, m_q in zip(ref.modules(), qnet.modules(), strict=True):
        if isinstance(m_q, QuantLinear):
            r = m_q.registers()
            w = r["weight_mant"].float() * 2.0 ** (r["weight_exp"] + 6 - m_q.scale_exp)
            m_ref.weight.data.copy_(w)
    x = (torch.rand(20, 8, 12, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    with torch.no_grad():
        out_q, out_ref = run_network(qnet, x), run_network(ref, x)
    assert out_ref.sum() > 0
    assert torch.equal(out_q, out_ref)
