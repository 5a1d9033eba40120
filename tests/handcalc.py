"""Shared helpers of the test suite: independent hand formulas and a masked sampler."""

from __future__ import annotations

import math

import numpy as np
import torch


def j1_series(x):
    """Bessel J1 by its power series (float64), independent of torch's implementation."""
    x = np.asarray(x, dtype=np.float64)
    out, term = np.zeros_like(x), x / 2.0
    for m in range(60):
        out = out + term
        term = -term * (x / 2.0) ** 2 / ((m + 1) * (m + 2))
    return out


def aperture_db(sin_t, gain_dbi):
    """TR 38.811 6.4.1 pattern 4 |J1(ka sin t) / (ka sin t)|^2 with ka = sqrt(G) (dB)."""
    u = math.sqrt(10 ** (gain_dbi / 10)) * np.asarray(sin_t, dtype=np.float64)
    pat = np.where(np.abs(u) < 1e-9, 1.0, 4 * (j1_series(u) / np.where(u == 0, 1, u)) ** 2)
    return 10 * np.log10(np.maximum(pat, 1e-6))


def spot_sin_theta(hap_xy, centre_xy, user_xy, dh=20e3 - 1.5):
    """Off-axis sine of a user seen from a HAP whose spot beam points at a region centre."""
    b = np.append(np.asarray(centre_xy, float) - hap_xy, -dh)
    v = np.concatenate([np.asarray(user_xy, float) - hap_xy,
                        np.full(np.shape(user_xy)[:-1] + (1,), -dh)], -1)
    cos_t = (v @ b) / (np.linalg.norm(v, axis=-1) * np.linalg.norm(b))
    return np.sqrt(np.clip(1 - cos_t ** 2, 0, None))



def sample_masked(core, masks, gen):
    """Uniform choice among the allowed values of every position of every agent."""
    acts = {}
    for tier in core.tiers:
        m = masks[tier]
        scores = torch.where(m, torch.rand(m.shape, generator=gen), -1.0)
        cols, off = [], 0
        for n in core.nvec[tier]:
            cols.append(scores[..., off:off + n].argmax(-1))
            off += n
        acts[tier] = torch.stack(cols, -1)
    return acts
