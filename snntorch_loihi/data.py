"""Spike-encoded data sets that ship with installed packages (no downloads)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["digits_spikes", "temporal_spikes"]


def digits_spikes(
    num_steps: int = 25, *, seed: int = 0, test_size: float = 0.3
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits, rate-coded into binary spike trains.

    Each pixel (0..16) fires with probability ``pixel / 16`` at every step; the split is
    stratified and seeded, the encoding seeded too, so every run sees the same spikes.

    Returns:
        ``(x_train, y_train, x_test, y_test)`` with ``x`` shaped ``(num_steps, N, 64)`` (float32,
        0/1) and ``y`` int64 labels.

    Example:
        >>> x_tr, y_tr, x_te, y_te = digits_spikes(8)
        >>> x_tr.shape, x_te.shape, sorted(set(x_tr.unique().tolist()))
        (torch.Size([8, 1257, 64]), torch.Size([8, 540, 64]), [0.0, 1.0])
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=test_size, stratify=labels, random_state=seed
    )
    rng = np.random.default_rng(seed)

    def encode(x: np.ndarray) -> torch.Tensor:
        p = x / 16.0
        spikes = rng.random((num_steps, *p.shape)) < p[None]
        return torch.from_numpy(spikes.astype(np.float32))

    return encode(x_tr), torch.from_numpy(y_tr), encode(x_te), torch.from_numpy(y_te)


def temporal_spikes(
    num_steps: int = 40,
    n_train: int = 1000,
    n_test: int = 500,
    *,
    seed: int = 0,
    channels: int = 8,
    burst_len: int = 3,
    rate: float = 0.8,
    noise: float = 0.02,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A temporal task generated in code: which of two bursts came first, and how long before.

    There are two groups of ``channels`` input channels, A and B. In every sample each group
    emits one burst: for ``burst_len`` steps its channels fire with probability ``rate``, and all
    channels fire with probability ``noise`` at every step. The label (4 classes) says which
    burst came first and whether the gap between the two onsets was short or long:

    ===== ============ ======================================================
    class first burst  onset gap (steps)
    ===== ============ ======================================================
    0     A            short: ``burst_len .. burst_len + 3``
    1     A            long:  ``burst_len + 7 .. burst_len + 10``
    2     B            short
    3     B            long
    ===== ============ ======================================================

    Every sample has the same number of spikes per group on average, so the spike counts alone
    carry no information: a memoryless network (its output at step ``t`` a function of the input
    at step ``t`` only) answers at chance with a count readout. The network has to remember the
    first burst (synaptic/membrane decay, recurrence) until the second one arrives. Classes are
    balanced, the first onset is uniform over the steps that fit both bursts, and everything is
    seeded (training and test sets use different streams).

    Returns:
        ``(x_train, y_train, x_test, y_test)`` with ``x`` shaped ``(num_steps, N, 2 * channels)``
        (float32, 0/1; channels ``[0, channels)`` are group A) and ``y`` int64 labels in 0..3.

    Example:
        >>> x_tr, y_tr, x_te, y_te = temporal_spikes(40, 64, 32)
        >>> x_tr.shape, x_te.shape, sorted(set(x_tr.unique().tolist()))
        (torch.Size([40, 64, 16]), torch.Size([40, 32, 16]), [0.0, 1.0])
        >>> torch.bincount(y_tr).tolist()
        [16, 16, 16, 16]
    """
    gap_short = (burst_len, burst_len + 3)
    gap_long = (burst_len + 7, burst_len + 10)
    if num_steps < gap_long[1] + burst_len + 1:
        need = gap_long[1] + burst_len + 1
        raise ValueError(f"num_steps must be at least {need} for burst_len={burst_len}")

    def make(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        y = np.arange(n) % 4
        rng.shuffle(y)
        x = rng.random((num_steps, n, 2 * channels)) < noise
        for i, label in enumerate(y):
            lo, hi = gap_long if label % 2 else gap_short
            gap = int(rng.integers(lo, hi + 1))
            first = int(rng.integers(0, num_steps - gap - burst_len + 1))
            onsets = (first, first + gap) if label < 2 else (first + gap, first)
            for group, onset in enumerate(onsets):
                cols = slice(group * channels, (group + 1) * channels)
                x[onset : onset + burst_len, i, cols] |= rng.random((burst_len, channels)) < rate
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))

    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    x_tr, y_tr = make(n_train, train_rng)
    x_te, y_te = make(n_test, test_rng)
    return x_tr, y_tr, x_te, y_te
