"""Spike-encoded data sets that ship with installed packages (no downloads)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["digits_spikes"]


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
