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

import functools
import math

import torch

MASK32 = 0xFFFFFFFF
_MULT = 0x45D9F3B  # odd multiplier of the two-round xorshift-multiply hash
_GOLDEN = 0x9E3779B9
_TWO_PI = 2.0 * math.pi


@functools.cache
def _const(value, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A 0-dim constant on ``device``: an op with a Python-number operand costs ~2-3 us more
    per call on CPU than one with a 0-dim tensor (the number is wrapped and cast each time);
    the bits are the same (the number is rounded to the op's dtype either way)."""
    return torch.tensor(value, dtype=dtype, device=device)


def _i(x: torch.Tensor, v: int):
    if torch.compiler.is_compiling():  # a graph embeds plain numbers as constants
        return v
    return _const(v, torch.int32, x.device)


def _f(x: torch.Tensor, v: float):
    if torch.compiler.is_compiling():
        return v
    return _const(v, torch.float32, x.device)


def to_i32(x: torch.Tensor) -> torch.Tensor:
    """Bit pattern of (x mod 2**32) as int32, for int64 tensors: the int64 -> int32 cast keeps
    the low 32 bits (two's complement truncation, on CPU and CUDA)."""
    return x.to(torch.int32)


def _i32_const(v: int) -> int:
    v &= MASK32
    return v - (1 << 32) if v >= (1 << 31) else v


def _srl_(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of an int32 bit pattern, in place on x (owned by the caller)."""
    torch.bitwise_right_shift(x, k, out=x)
    x &= _i(x, (1 << (32 - k)) - 1)
    return x


def _hash32_(h: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`hash32` in place on ``h`` (int32, owned by the caller); returns ``h``.
    Two buffers in all instead of one per operation (the passes are memory-bound); ``t``, if
    given, is the second (int32, h's shape, overwritten)."""
    lo16, mult = _i(h, 0xFFFF), _i(h, _MULT)
    if t is None:
        t = torch.bitwise_right_shift(h, 16)
    else:
        torch.bitwise_right_shift(h, 16, out=t)
    t &= lo16
    h ^= t
    h *= mult
    torch.bitwise_right_shift(h, 16, out=t)
    t &= lo16
    h ^= t
    h *= mult
    torch.bitwise_right_shift(h, 16, out=t)
    t &= lo16
    h ^= t
    return h


def hash32(x: torch.Tensor) -> torch.Tensor:
    """Bijective 32-bit integer hash (xorshift-multiply, multiplier 0x45d9f3b, two rounds)."""
    return _hash32_(x.clone(memory_format=torch.contiguous_format))


def hash32_int(x: int) -> int:
    """:func:`hash32` of a Python int (same bits), as a signed int32 value."""
    x &= MASK32
    for _ in range(2):
        x = (((x >> 16) ^ x) * _MULT) & MASK32
    return _i32_const((x >> 16) ^ x)


def counter_code(value: torch.Tensor) -> torch.Tensor:
    """The hash of a counter that :func:`mix` folds into a key (int32)."""
    return hash32(to_i32(value.long() + _GOLDEN))


def mix_coded(key: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """``mix(key, value)`` from ``code = counter_code(value)`` (precomputed counters)."""
    return _hash32_(key ^ code)


def mix(key: torch.Tensor, value) -> torch.Tensor:
    """A new key from a key and a counter (tensor or int); bijective in ``key`` for fixed value."""
    if torch.is_tensor(value):
        return mix_coded(key, counter_code(value))
    return _hash32_(key ^ _i(key, hash32_int(int(value) + _GOLDEN)))


def _codes_of(values: tuple, device: torch.device) -> torch.Tensor:
    """Counter codes (:func:`counter_code`) of int counters, as one int32 tensor."""
    return torch.tensor([hash32_int(v + _GOLDEN) for v in values], dtype=torch.int32,
                        device=device)


_codes = functools.cache(_codes_of)  # eager calls reuse one tensor per (values, device)


def mix_many(key: torch.Tensor, values) -> torch.Tensor:
    """``torch.stack([mix(key, v) for v in values], -1)`` for int counters, in one pass."""
    values = tuple(int(v) for v in values)
    # a graph embeds the codes as a constant; the cache would hand it a tensor made outside
    codes = (_codes_of if torch.compiler.is_compiling() else _codes)(values, key.device)
    return _hash32_(key[..., None] ^ codes)


def seed_to_key(seeds: torch.Tensor) -> torch.Tensor:
    """Fold non-negative int64 seeds into int32 keys (bijective in the low 32 bits)."""
    lo = to_i32(seeds)
    hi = to_i32(seeds >> 32)
    return hash32(lo ^ hash32(hi ^ _i32_const(0x5BD1E995)))


def _bits(key: torch.Tensor, index: torch.Tensor, consume: bool = False,
          t: torch.Tensor | None = None) -> torch.Tensor:
    """The hash of (key, index). ``consume``: ``index`` is the caller's scratch (a fresh int32
    tensor), hashed in place where it has the full broadcast shape. ``t`` as for _hash32_."""
    if index.dtype != torch.int32:
        index = index.to(torch.int32)  # indices are < 2**31 by construction
    elif consume and torch.broadcast_shapes(key.shape, index.shape) == index.shape:
        index ^= key
        return _hash32_(index, t)
    return _hash32_(key ^ index, t)


def _unit_(x: torch.Tensor, scale: float) -> torch.Tensor:
    """(float(x) + 0.5) * scale in float32, x an int32 bit field, in x's own memory (x is owned
    by the caller and overwritten): the float32 view of the same bytes, converted element by
    element in place (each element is read before it is written), instead of a fresh
    multi-MB tensor."""
    u = x.view(torch.float32)
    u.copy_(x)
    u += _f(u, 0.5)
    u *= _f(u, scale)
    return u


def uniform(key: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Uniform float32 in the open interval (0, 1) for each (key, index); shapes broadcast."""
    h = _bits(key, index)
    return _unit_(_srl_(h, 8), 1.0 / (1 << 24))


def _halves(key, index, consume: bool = False):
    """Two uniforms from the 16-bit halves of one hash, in two int32 buffers reused as float32
    (the hash's own and its scratch)."""
    shape = torch.broadcast_shapes(key.shape, index.shape)
    t = torch.empty(shape, dtype=torch.int32, device=index.device)
    h = _bits(key, index, consume, t)
    lo16 = _i(h, 0xFFFF)
    torch.bitwise_right_shift(h, 16, out=t)
    t &= lo16
    h &= lo16
    return _unit_(t, 1.0 / 65536), _unit_(h, 1.0 / 65536)


def _radius2_normal(key, index, consume: bool = False):
    """(r^2, x): r^2 = -2 log(u1) and a standard normal x = sqrt(r^2) cos(2 pi u2), Box-Muller
    on the two 16-bit halves of one hash."""
    u1, u2 = _halves(key, index, consume)
    r2 = u1.log_()
    r2 *= _f(r2, -2.0)
    x = torch.sqrt(r2)
    u2 *= _f(u2, _TWO_PI)
    x *= torch.cos(u2, out=u2)
    return r2, x


def normal(key: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Standard normal float32 (Box-Muller on the two 16-bit halves of one hash)."""
    return _radius2_normal(key, index)[1]


def rician_power(key: torch.Tensor, index: torch.Tensor, k_factor: torch.Tensor,
                 consume: bool = False) -> torch.Tensor:
    """|h|^2 of a unit-mean Rician fading coefficient with linear K-factor (K = 0: Rayleigh).

    h = sqrt(K/(K+1)) + sqrt(1/(K+1)) * CN(0, 1); the complex normal comes from one hash by
    Box-Muller on its two 16-bit halves (r^2 = x^2 + y^2 of two standard normals).
    ``consume``: ``index`` (int32) and ``k_factor`` are fresh tensors of the caller's that may be
    overwritten (fewer multi-MB allocations; the same values).
    """
    r2, x = _radius2_normal(key, index, consume)
    half = _f(r2, 0.5)
    # |mu + s (x + i y)|^2 with mu^2 = K/(K+1), s^2 = 1/(2(K+1)):
    # (K/(K+1) + 2 sqrt(K/(K+1) * 0.5/(K+1)) x) + 0.5/(K+1) r^2, with the same roundings as
    # that expression (products and sums commute exactly); k_factor broadcasts against the draws
    # (in place where a buffer is free: a fresh multi-MB tensor costs more than the pass that
    # fills it on CPU, page faults included; the roundings are the same)
    inv = k_factor + _f(r2, 1.0)
    inv.reciprocal_()
    if consume:  # inv has k_factor's shape
        a = k_factor
        a *= inv
    else:
        a = k_factor * inv
    out = a * half
    out *= inv
    out.sqrt_()
    out *= _f(out, 2.0)
    if torch.broadcast_shapes(out.shape, x.shape) == out.shape:
        out *= x
    else:  # a K-factor broadcast against the draws (e.g. one per env)
        out = out * x
    out += a
    inv *= half
    if r2.shape == out.shape:
        r2 *= inv
        out += r2
    else:
        out += inv * r2
    return out
