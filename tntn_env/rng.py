"""Counter-based random numbers: a draw is a pure hash of (env key, episode, step, stream, index).

This gives per-environment streams that do not depend on the batch (env i of a batch equals a
single env with the same seed) and lazy draws (only the links a step needs), on CPU and CUDA
alike, with nothing but integer tensor arithmetic.

Keys and hashes are int32 tensors holding the bit pattern of an unsigned 32-bit value: int32
multiplication wraps modulo 2**32 (the low 32 bits of the product, as on every CPU/GPU torch
supports), and every right shift is masked so that sign extension never leaks in. int32 lanes
are ~7x faster than int64 here (no 64-bit vector multiply on AVX2).
"""

from __future__ import annotations

import math

import torch

MASK32 = 0xFFFFFFFF
_MULT = 0x45D9F3B  # odd multiplier of the two-round xorshift-multiply hash
_GOLDEN = 0x9E3779B9


def to_i32(x) -> torch.Tensor:
    """Bit pattern of (x mod 2**32) as int32, for int64 tensors (or ints, with ``like``)."""
    x = x & MASK32
    return torch.where(x >= (1 << 31), x - (1 << 32), x).to(torch.int32)


def _i32_const(v: int) -> int:
    v &= MASK32
    return v - (1 << 32) if v >= (1 << 31) else v


def _srl(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of an int32 bit pattern."""
    return (x >> k) & ((1 << (32 - k)) - 1)


def hash32(x: torch.Tensor) -> torch.Tensor:
    """Bijective 32-bit integer hash (xorshift-multiply, multiplier 0x45d9f3b, two rounds)."""
    x = (_srl(x, 16) ^ x) * _MULT
    x = (_srl(x, 16) ^ x) * _MULT
    return _srl(x, 16) ^ x


def hash32_int(x: int) -> int:
    """:func:`hash32` of a Python int (same bits), as a signed int32 value."""
    x &= MASK32
    for _ in range(2):
        x = (((x >> 16) ^ x) * _MULT) & MASK32
    return _i32_const((x >> 16) ^ x)


def mix(key: torch.Tensor, value) -> torch.Tensor:
    """A new key from a key and a counter (tensor or int); bijective in ``key`` for fixed value."""
    if torch.is_tensor(value):
        return hash32(key ^ hash32(to_i32(value.long() + _GOLDEN)))
    return hash32(key ^ hash32_int(int(value) + _GOLDEN))


def seed_to_key(seeds: torch.Tensor) -> torch.Tensor:
    """Fold non-negative int64 seeds into int32 keys (bijective in the low 32 bits)."""
    lo = to_i32(seeds)
    hi = to_i32(seeds >> 32)
    return hash32(lo ^ hash32(hi ^ _i32_const(0x5BD1E995)))


def _bits(key: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    if index.dtype != torch.int32:
        index = index.to(torch.int32)  # indices are < 2**31 by construction
    return hash32(key ^ index)


def uniform(key: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Uniform float32 in the open interval (0, 1) for each (key, index); shapes broadcast."""
    h = _bits(key, index)
    return (_srl(h, 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))


def _halves(key, index):
    h = _bits(key, index)
    u1 = (_srl(h, 16).to(torch.float32) + 0.5) * (1.0 / 65536)
    u2 = ((h & 0xFFFF).to(torch.float32) + 0.5) * (1.0 / 65536)
    return u1, u2


def normal(key: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Standard normal float32 (Box-Muller on the two 16-bit halves of one hash)."""
    u1, u2 = _halves(key, index)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)


def rician_power(key: torch.Tensor, index: torch.Tensor, k_factor: torch.Tensor) -> torch.Tensor:
    """|h|^2 of a unit-mean Rician fading coefficient with linear K-factor (K = 0: Rayleigh).

    h = sqrt(K/(K+1)) + sqrt(1/(K+1)) * CN(0, 1); the complex normal comes from one hash by
    Box-Muller on its two 16-bit halves (r^2 = x^2 + y^2 of two standard normals).
    """
    u1, u2 = _halves(key, index)
    r2 = -2.0 * torch.log(u1)
    x = torch.sqrt(r2) * torch.cos((2.0 * math.pi) * u2)
    inv = 1.0 / (k_factor + 1.0)
    # |mu + s (x + i y)|^2 with mu^2 = K/(K+1), s^2 = 1/(2(K+1))
    return k_factor * inv + 2.0 * torch.sqrt(k_factor * inv * 0.5 * inv) * x + 0.5 * inv * r2
