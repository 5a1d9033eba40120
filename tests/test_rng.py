"""The counter-based generator: integer hash against a pure-Python reference, inputs left
untouched by the in-place passes, and the distributions it draws."""

import math

import torch

from tntn_env import rng


def _signed(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= (1 << 31) else v


def _edge_int32() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    rand = torch.randint(-(2 ** 31), 2 ** 31, (2000,), generator=g, dtype=torch.int64)
    edges = torch.tensor([0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 0xFFFF, -0x10000, 0x45D9F3B])
    return torch.cat([rand, edges]).to(torch.int32)


def test_hash32_matches_python_reference_and_leaves_input():
    x = _edge_int32()
    before = x.clone()
    h = rng.hash32(x)
    assert torch.equal(x, before)  # the hash works on its own buffer
    assert h.dtype == torch.int32
    ref = [rng.hash32_int(int(v)) for v in x.tolist()]
    assert h.tolist() == ref
    # a bijection on the values drawn: no two inputs collide
    assert torch.unique(h).numel() == torch.unique(x).numel()


def test_to_i32_keeps_the_low_32_bits():
    vals = [0, 1, -1, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 5, -(2 ** 31),
            -(2 ** 31) - 1, 2 ** 62 + 12345, -(2 ** 62) - 7, 2 ** 63 - 1, -(2 ** 63)]
    got = rng.to_i32(torch.tensor(vals, dtype=torch.int64)).tolist()
    assert got == [_signed(v) for v in vals]


def test_mix_tensor_and_int_counters_agree_and_keys_are_untouched():
    key = _edge_int32()[:64]
    before = key.clone()
    for value in (0, 1, 7, 499, 2 ** 31 + 3, 2 ** 40 + 11):
        a = rng.mix(key, value)
        b = rng.mix(key, torch.full_like(key, value, dtype=torch.int64))
        assert torch.equal(a, b), value
    assert torch.equal(key, before)
    # distinct counters give distinct keys
    ks = torch.stack([rng.mix(key[:1], v) for v in range(200)]).flatten()
    assert torch.unique(ks).numel() == 200


def test_draws_do_not_write_into_their_inputs():
    key = rng.seed_to_key(torch.arange(4))[:, None]
    idx = torch.arange(300, dtype=torch.int32)[None].expand(4, -1)
    kf = torch.rand(4, 300) * 5
    saved = (key.clone(), idx.clone(), kf.clone())
    rng.uniform(key, idx)
    rng.normal(key, idx)
    rng.rician_power(key, idx, kf)
    assert all(torch.equal(a, b) for a, b in zip(saved, (key, idx, kf)))


def test_distributions():
    n = 400_000
    key = rng.seed_to_key(torch.tensor([11]))
    idx = torch.arange(n)
    u = rng.uniform(key, idx)
    assert bool((u > 0).all()) and bool((u < 1).all())
    assert abs(u.mean().item() - 0.5) < 0.003 and abs(u.var().item() - 1 / 12) < 0.002
    z = rng.normal(rng.mix(key, 1), idx)
    assert abs(z.mean().item()) < 0.01 and abs(z.var().item() - 1.0) < 0.01
    for k in (0.0, 1.0, 7.94):
        p = rng.rician_power(rng.mix(key, 2), idx, torch.full((n,), k))
        # unit-mean Rician power: E = 1, Var = (1 + 2K) / (1 + K)^2
        assert bool((p >= 0).all()) and math.isfinite(p.max().item())
        assert abs(p.mean().item() - 1.0) < 0.01, k
        assert abs(p.var().item() - (1 + 2 * k) / (1 + k) ** 2) < 0.03, k


def test_same_key_and_index_give_the_same_draw_in_any_batch_shape():
    keys = rng.seed_to_key(torch.arange(6))
    idx = torch.arange(50)
    full = rng.rician_power(keys[:, None], idx[None], torch.full((6, 50), 3.0))
    for e in range(6):
        one = rng.rician_power(keys[e:e + 1, None], idx[None, 7:19], torch.full((1, 12), 3.0))
        assert torch.equal(one[0], full[e, 7:19])


def test_batched_and_precomputed_counters_equal_mix():
    key = _edge_int32()[:32]
    many = rng.mix_many(key, (6, 3, 11, 0))
    for i, v in enumerate((6, 3, 11, 0)):
        assert torch.equal(many[:, i], rng.mix(key, v))
    t = torch.tensor([0, 5, 499, 2 ** 33])
    assert torch.equal(rng.mix_coded(key[:4], rng.counter_code(t)), rng.mix(key[:4], t))


def test_core_step_key_table_and_fallback_agree_with_mix():
    from tntn_env import TNTNCore

    core = TNTNCore(scenario="sag", episode_steps=20)
    ekey = _edge_int32()[:3]
    for ts in ([0, 7, 20], [3, 21, 400]):  # inside the table, and beyond it (fallback)
        t = torch.tensor(ts)
        assert torch.equal(core._step_key(ekey, t), rng.mix(ekey, t + 1))


def test_rician_k_factor_broadcasts_like_the_formula():
    keys = rng.seed_to_key(torch.arange(3))[:, None]
    idx = torch.arange(40)[None]
    k = torch.tensor([0.0, 2.0, 7.94])[:, None]
    full = rng.rician_power(keys, idx, k.expand(3, 40).contiguous())
    assert torch.equal(rng.rician_power(keys, idx, k), full)  # K per env only
    assert torch.equal(rng.rician_power(keys, idx, torch.tensor(2.0)),
                       rng.rician_power(keys, idx, torch.full((3, 40), 2.0)))
    # K with a larger shape than the draws' (draws broadcast up to it)
    one = rng.rician_power(keys[:1], idx, torch.full((1, 40), 7.94))
    wide = rng.rician_power(keys[:1], idx, torch.full((2, 40), 7.94))
    assert torch.equal(wide[0], one[0]) and torch.equal(wide[1], one[0])
    # the pre-refactor expression, evaluated out of place
    r2, x = rng._radius2_normal(keys, idx)
    inv = 1.0 / (k + 1.0)
    ref = k * inv + 2.0 * torch.sqrt(k * inv * 0.5 * inv) * x + 0.5 * inv * r2
    assert torch.equal(rng.rician_power(keys, idx, k), ref)


def test_consumed_inputs_give_the_same_draws():
    """``consume=True`` hashes the caller's index in place and reuses the hash's int32 buffers as
    the float32 uniforms; the draws equal the non-consuming ones, for int32 and int64 indices,
    full-shape and broadcast ones, in the shapes the core uses (a few MB: vectorised loops)."""
    keys = rng.seed_to_key(torch.arange(64))[:, None, None]
    idx = (torch.arange(40)[:, None] * 1000 + torch.arange(250)[None]).to(torch.int32)
    idx = idx.expand(64, 40, 250).contiguous()
    k = torch.rand(64, 40, 250) * 10
    ref = rng.rician_power(keys, idx, k)
    got = rng.rician_power(keys, idx.clone(), k.clone(), consume=True)
    assert torch.equal(got, ref)
    # an index that cannot be consumed (int64, or broadcast against the key) is left alone
    for i in (idx.long(), idx[:1]):
        before = i.clone()
        rng.rician_power(keys, i, k.clone(), consume=True)
        assert torch.equal(i, before)
    # the uniforms of one hash, as float32 views of its buffers, equal fresh conversions
    u1, u2 = rng._halves(keys, idx)
    h = rng._bits(keys, idx)
    assert torch.equal(u1, ((h >> 16) & 0xFFFF).float().add(0.5).mul(1.0 / 65536))
    assert torch.equal(u2, (h & 0xFFFF).float().add(0.5).mul(1.0 / 65536))
    assert u1.dtype == u2.dtype == torch.float32
