"""Small Loihi networks shared by the netx, to_lava and verify tests (no tests here)."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import torch

from snntorch_loihi.ir import LoihiLayer, LoihiNetwork, LoihiNeuron, LoihiSynapse


def even(rng: np.random.Generator, lo: int, hi: int, shape: tuple[int, ...]) -> np.ndarray:
    """Mixed-sign mantissas on Lava's 8-bit grid (even)."""
    return rng.integers(lo // 2, hi // 2, shape).astype(np.int64) * 2


def mlp(seed: int = 0, *, bias: bool = False, recurrent: bool = False, weight_exp: int = 0,
        graded: int = 0, n_in: int = 12, hidden: int = 10, n_out: int = 4,
        du: int = 1200) -> LoihiNetwork:
    rng = np.random.default_rng(seed)
    b1 = (rng.integers(-4, 8, (hidden,)) * 64) if bias else np.zeros((hidden,), np.int64)
    syn1 = LoihiSynapse("dense", even(rng, -120 >> weight_exp, 200 >> weight_exp, (hidden, n_in)),
                        (n_in,), (hidden,),
                        weight_exp=weight_exp, num_message_bits=graded)
    rec = None
    if recurrent:
        rec = LoihiSynapse("dense", even(rng, -100, 100, (hidden, hidden)), (hidden,), (hidden,))
    l1 = LoihiLayer("h", syn1, LoihiNeuron((hidden,), du, 300, 300 << weight_exp,
                                           bias_mant=b1, bias_exp=np.zeros((hidden,), np.int64)),
                    recurrent=rec)
    l2 = LoihiLayer("out", LoihiSynapse("dense", even(rng, -150, 220, (n_out, hidden)),
                                        (hidden,), (n_out,)),
                    LoihiNeuron((n_out,), 4095, 200, 250))
    return LoihiNetwork((n_in,), (l1, l2))


def convnet(seed: int = 0, *, bias: str = "none") -> LoihiNetwork:
    """conv(2->3, 3x3, pad 1) on 2x6x5 -> (sum pool 2 folded: conv stride 2, 4x4) -> flatten -> dense."""
    rng = np.random.default_rng(seed)
    w1 = even(rng, -80, 140, (3, 2, 3, 3))
    if bias == "channel":
        b = (np.arange(3).reshape(3, 1, 1) * 64 - 64) * np.ones((3, 6, 5), np.int64)
    elif bias == "neuron":
        b = rng.integers(-3, 4, (3, 6, 5)) * 64
    else:
        b = np.zeros((3, 6, 5), np.int64)
    l1 = LoihiLayer("c1", LoihiSynapse("conv", w1, (2, 6, 5), (3, 6, 5), padding=(1, 1)),
                    LoihiNeuron((3, 6, 5), 800, 200, 150, bias_mant=b,
                                bias_exp=np.zeros_like(b)))
    # a 2x2 sum pool folded into a 2x2 stride-2 conv of ones (what the exporter does)
    w2 = np.zeros((4, 3, 2, 2), np.int64)
    w2[:, :, :, :] = even(rng, -60, 120, (4, 3, 1, 1))
    l2 = LoihiLayer("c2", LoihiSynapse("conv", w2, (3, 6, 5), (4, 3, 2), stride=(2, 2)),
                    LoihiNeuron((4, 3, 2), 4095, 300, 100))
    l3 = LoihiLayer("out", LoihiSynapse("dense", even(rng, -100, 160, (5, 24)), (4, 3, 2), (5,)),
                    LoihiNeuron((5,), 4095, 100, 120))
    return LoihiNetwork((2, 6, 5), (l1, l2, l3))


def overflow_net(graded: bool = False) -> LoihiNetwork:
    """u wraps and v saturates: weight_exp = 7 with binary input, or graded payloads of 150
    (``graded=True``, weight_exp = 0: the form netx can hold)."""
    w = np.full((3, 6), 254, np.int64)
    w[1] = -254
    l1 = LoihiLayer("wrap", LoihiSynapse("dense", w, (6,), (3,), weight_exp=0 if graded else 7,
                                         num_message_bits=8 if graded else 0),
                    LoihiNeuron((3,), 100, 0, 131071))
    l2 = LoihiLayer("out", LoihiSynapse("dense", np.full((2, 3), 100, np.int64), (3,), (2,)),
                    LoihiNeuron((2,), 4095, 0, 50))
    return LoihiNetwork((6,), (l1, l2))


def spikes(shape: tuple[int, ...], p: float = 0.4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).to(torch.int64)


def lava_children() -> list:
    """Lava's runtime worker processes still alive (the multiprocessing resource tracker and
    processes of other libraries are not multiprocessing children)."""
    return mp.active_children()
