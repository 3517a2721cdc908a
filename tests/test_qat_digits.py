"""Post-training quantization at 2-bit weights loses accuracy on digits; QAT fine-tuning recovers.

scikit-learn digits, rate coded over 16 steps (seeded), ``Linear(64, 32) + Leaky + Linear(32, 10)
+ Leaky`` with zero reset, ``num_weight_bits = 2`` on both synapses (mantissas in {-256, -128,
0, 128}: a regime where quantization bites).
"""

from __future__ import annotations

import warnings

import pytest
import snntorch as snn
import torch
from snntorch import functional as SF
from torch import nn

from snntorch_loihi.qat import delay_steps, prepare_qat
from snntorch_loihi.training import accuracy, train_epoch

pytest.importorskip("sklearn")

T, HIDDEN, BITS = 16, 32, 2


def test_qat_recovers_what_2bit_ptq_loses() -> None:
    from snntorch_loihi.data import digits_spikes

    torch.manual_seed(0)
    x_tr, y_tr, x_te, y_te = digits_spikes(T, seed=0)
    leaky = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
    net = nn.Sequential(nn.Linear(64, HIDDEN), snn.Leaky(0.9, **leaky),
                        nn.Linear(HIDDEN, 10), snn.Leaky(0.9, **leaky))
    loss = SF.ce_rate_loss()
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    for _ in range(12):
        train_epoch(net, x_tr, y_tr, opt, loss, generator=gen)
    acc_float = accuracy(net, x_te, y_te)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = prepare_qat(net, weight_bits=BITS)
    steps = T + delay_steps(q)
    acc_ptq = accuracy(q, x_te, y_te, steps=steps)

    opt = torch.optim.Adam(q.parameters(), lr=2e-3)
    for _ in range(2):
        train_epoch(q, x_tr, y_tr, opt, loss, steps=steps, generator=gen)
    acc_qat = accuracy(q, x_te, y_te, steps=steps)
    print(f"digits, {BITS}-bit weights: float {acc_float:.4f}, PTQ {acc_ptq:.4f}, "
          f"QAT {acc_qat:.4f}")
    assert acc_float > 0.93
    assert acc_ptq < acc_float - 0.02          # quantization bites
    assert acc_qat > acc_ptq + 0.015           # fine-tuning recovers
    regs = q[0].registers()
    assert regs["num_weight_bits"] == BITS
    assert set(regs["weight_mant"].unique().tolist()) <= {-256, -128, 0, 128}
