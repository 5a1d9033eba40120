"""Counter-based random numbers: a draw is a pure hash of (env key, episode, step, stream, index).

This gives per-environment streams that do not depend on the batch (env i of a batch equals a
single env with the same seed) and lazy draws (only the links a step needs), on CPU and CUDA
alike, with nothing but int64 tensor arithmetic. Values are kept in [0, 2**32) so that no signed
shift or multiplication ever overflows int64.
"""

from __future__ import annotations

import torch

MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for x in [0, 2**32), without overflowing int64."""
    if c < (1 << 31):
        return (x * c) & MASK32
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & MASK32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """Bijective 32-bit integer hash (the 'lowbias32' mixer of C. Wellons)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def mix(key: torch.Tensor, value) -> torch.Tensor:
    """A new key from a key and a counter (tensor or int); bijective in ``key`` for fixed value."""
    if not torch.is_tensor(value):
        value = torch.as_tensor(int(value) & MASK32, dtype=torch.int64, device=key.device)
    return hash32(key ^ hash32((value + _GOLDEN) & MASK32))


def seed_to_key(seeds: torch.Tensor) -> torch.Tensor:
    """Fold non-negative int64 seeds into 32-bit keys (bijective in the low 32 bits)."""
    lo = seeds & MASK32
    hi = (seeds >> 32) & MASK32
    return hash32(lo ^ hash32(hi ^ 0x5BD1E995))


def uniform(key: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Uniform float32 in the open interval (0, 1) for each (key, index); shapes broadcast."""
    h = hash32((key ^ index) & MASK32)
    return ((h >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))


def normal(key: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Standard normal float32 by inverse CDF of :func:`uniform`."""
    u = uniform(key, index)
    return torch.special.ndtri(u)
