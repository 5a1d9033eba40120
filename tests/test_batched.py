"""The batched core: env i of a batch equals a single env with the same seed; partial resets,
seeding, the what-if evaluation and the counting of voided lower-tier choices."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
import torch

from tntn_env import TNTNCore, make_config
from tntn_env.core import CoreState

CFG = dict(num_beams=2, haps_per_beam=1, regions_per_hap=2, tbs_per_region=1, uavs_per_region=1,
           users_per_region=4, num_subbands=4, time_blocks=2, satellite_interval=5,
           hap_interval=2, episode_steps=10)
SEEDS = [3, 17, 100, 5, 0, 42, 7, 99]
RTOL, ATOL = 1e-5, 1e-6


def scores_for(core, gen):
    return {t: torch.rand(core.num_envs, core.num_agents[t], core.action_size(t), generator=gen)
            for t in core.tiers}


def pick(core, masks, scores):
    """Per position, the allowed choice with the highest score (uniform for uniform scores)."""
    acts = {}
    for tier in core.tiers:
        s = torch.where(masks[tier], scores[tier], -1.0)
        cols, off = [], 0
        for n in core.nvec[tier]:
            cols.append(s[..., off:off + n].argmax(-1))
            off += n
        acts[tier] = torch.stack(cols, -1)
    return acts


def rows(d, i):
    return {k: v[i:i + 1] for k, v in d.items()}


def assert_out_close(a, b, exact=False, rtol=RTOL, atol=ATOL):
    """Compare two step outputs (same E)."""
    def cmp(x, y, what):
        if exact or x.dtype in (torch.bool, torch.int64):
            assert torch.equal(x, y), what
        else:
            torch.testing.assert_close(x, y, rtol=rtol, atol=atol, msg=what)
    for t in a["obs"]:
        cmp(a["obs"][t], b["obs"][t], f"obs {t}")
        assert torch.equal(a["masks"][t], b["masks"][t]), f"masks {t}"
        cmp(a["rewards"][t], b["rewards"][t], f"rewards {t}")
    for k in a["metrics"]:
        cmp(a["metrics"][k], b["metrics"][k], f"metric {k}")
    for k in a["region"]:
        cmp(a["region"][k], b["region"][k], f"region {k}")
    for k in ("truncated", "voided", "repaired"):
        assert torch.equal(a[k], b[k]), k
    for t in a["decided"]:
        assert torch.equal(a["decided"][t], b["decided"][t])


def assert_state_close(sa: CoreState, sb: CoreState, exact=False, rtol=RTOL, atol=ATOL):
    for f in fields(CoreState):
        x, y = getattr(sa, f.name), getattr(sb, f.name)
        if exact or not x.is_floating_point():
            assert torch.equal(x, y), f.name
        else:
            torch.testing.assert_close(x, y, rtol=rtol, atol=atol, msg=f.name)


def snapshot(st: CoreState) -> dict:
    return {f.name: getattr(st, f.name).clone() for f in fields(CoreState)}


@pytest.mark.parametrize("scenario, num_envs, steps", [("sag", 8, 15), ("uav", 3, 11)])
def test_batch_equals_single_envs(scenario, num_envs, steps):
    cfg = make_config(scenario, **CFG)
    seeds = SEEDS[:num_envs]
    big = TNTNCore(cfg, num_envs=num_envs)
    obs, masks = big.reset(seed=seeds)
    singles = [TNTNCore(cfg, num_envs=1) for _ in seeds]
    for i, (core, s) in enumerate(zip(singles, seeds)):
        o, m = core.reset(seed=s)
        for t in big.tiers:
            torch.testing.assert_close(obs[t][i:i + 1], o[t], rtol=RTOL, atol=ATOL)
            assert torch.equal(masks[t][i:i + 1], m[t])
    gen = torch.Generator().manual_seed(0)
    for step in range(steps):  # crosses the episode end (10 steps) with auto-reset
        acts = pick(big, masks, scores_for(big, gen))
        out = big.step(acts, auto_reset=True)
        masks = out["masks"]
        for i, core in enumerate(singles):
            o = core.step(rows(acts, i), auto_reset=True)
            sub = {"obs": rows(out["obs"], i), "masks": rows(out["masks"], i),
                   "rewards": rows(out["rewards"], i), "metrics": rows(out["metrics"], i),
                   "region": rows(out["region"], i), "decided": rows(out["decided"], i),
                   **{k: out[k][i:i + 1] for k in ("truncated", "voided", "repaired")}}
            assert_out_close(sub, o)
            assert_state_close(big.state.index(slice(i, i + 1)), core.state)
            if step % 3:
                continue
            lb, ls = big.link_state(i), core.link_state(0)
            for k in lb:
                if np.issubdtype(lb[k].dtype, np.floating):
                    np.testing.assert_allclose(lb[k], ls[k], rtol=RTOL, atol=0, err_msg=k)
                else:
                    np.testing.assert_array_equal(lb[k], ls[k], err_msg=k)
        if step == 9:
            assert bool(out["truncated"].all())
            assert (big.state.t == 0).all() and (big.state.episode == 1).all()


def test_partial_reset_leaves_other_envs_alone():
    cfg = make_config("sag", **CFG)
    a, b = TNTNCore(cfg, num_envs=8), TNTNCore(cfg, num_envs=8)
    ma = a.reset(seed=SEEDS)[1]
    mb = b.reset(seed=SEEDS)[1]
    gen = torch.Generator().manual_seed(1)
    for _ in range(4):
        sc = scores_for(a, gen)
        oa, ob = a.step(pick(a, ma, sc)), b.step(pick(b, mb, sc))
        ma, mb = oa["masks"], ob["masks"]
        assert_out_close(oa, ob, exact=True)
    ids, new_seeds = [2, 5], [1000, 2000]
    obs_a, ma = a.reset(env_ids=ids, seed=new_seeds)
    keep = [i for i in range(8) if i not in ids]
    obs_b = b.observe()
    for t in a.tiers:
        assert torch.equal(obs_a[t][keep], obs_b[t][keep])
        assert torch.equal(ma[t][keep], mb[t][keep])
    assert a.state.t[ids].tolist() == [0, 0] and a.state.t[keep].tolist() == [4] * 6
    fresh = [TNTNCore(cfg, num_envs=1) for _ in ids]
    for k, (core, s) in enumerate(zip(fresh, new_seeds)):
        o, _ = core.reset(seed=s)
        for t in a.tiers:
            torch.testing.assert_close(obs_a[t][ids[k]:ids[k] + 1], o[t], rtol=RTOL, atol=ATOL)
    for _ in range(6):
        sc = scores_for(a, gen)
        acts_a, acts_b = pick(a, ma, sc), pick(b, mb, sc)
        for t in a.tiers:  # same random draws -> the untouched envs act identically
            assert torch.equal(acts_a[t][keep], acts_b[t][keep])
        oa, ob = a.step(acts_a), b.step(acts_b)
        ma, mb = oa["masks"], ob["masks"]
        for t in a.tiers:
            assert torch.equal(oa["obs"][t][keep], ob["obs"][t][keep])
            assert torch.equal(oa["rewards"][t][keep], ob["rewards"][t][keep])
        for k in oa["region"]:
            assert torch.equal(oa["region"][k][keep], ob["region"][k][keep])
        assert_state_close(a.state.index(keep), b.state.index(keep), exact=True)
        for k, core in enumerate(fresh):
            o = core.step(rows(acts_a, ids[k]))
            for t in a.tiers:
                torch.testing.assert_close(oa["obs"][t][ids[k]:ids[k] + 1], o["obs"][t],
                                           rtol=RTOL, atol=ATOL)
                torch.testing.assert_close(oa["rewards"][t][ids[k]:ids[k] + 1], o["rewards"][t],
                                           rtol=RTOL, atol=ATOL)


def _rollout(seeds, steps=6):
    core = TNTNCore(make_config("sag", **CFG), num_envs=len(seeds))
    obs, masks = core.reset(seed=seeds)
    gen = torch.Generator().manual_seed(5)
    traj = [obs]
    for _ in range(steps):
        out = core.step(pick(core, masks, scores_for(core, gen)))
        masks = out["masks"]
        traj.append({**out["obs"], **{f"r_{t}": v for t, v in out["rewards"].items()}})
    return traj


def test_same_seed_same_trajectory_different_seed_different():
    t1, t2, t3 = _rollout([1, 2]), _rollout([1, 2]), _rollout([1, 3])
    for a, b, c in zip(t1, t2, t3):
        for k in a:
            assert torch.equal(a[k], b[k]), k
            assert torch.equal(a[k][0], c[k][0]), k  # env 0 has the same seed in both
    differs = any(not torch.equal(a[k][1], c[k][1]) for a, c in zip(t1, t3) for k in a)
    assert differs
    assert not torch.equal(t1[0]["local"][1], t3[0]["local"][1])  # already at reset
    # an int seed gives env i the seed + i
    core = TNTNCore(make_config("sag", **CFG), num_envs=3)
    core2 = TNTNCore(make_config("sag", **CFG), num_envs=3)
    o1, _ = core.reset(seed=5)
    o2, _ = core2.reset(seed=[5, 6, 7])
    for t in o1:
        assert torch.equal(o1[t], o2[t])


@pytest.mark.parametrize("scenario", ["sag", "ag"])
def test_evaluate_matches_step_and_keeps_state(scenario):
    E, C, stepped = 3, 4, 1
    core = TNTNCore(make_config(scenario, **CFG), num_envs=E)
    obs, masks = core.reset(seed=21)
    gen = torch.Generator().manual_seed(2)
    spread = 0.0
    for step in range(6):  # t = 0 (all decide), 1 (local only), 2 (HAP), ...
        cands = [pick(core, masks, scores_for(core, gen)) for _ in range(C)]
        acts_c = {t: torch.stack([c[t] for c in cands], 1) for t in core.tiers}  # [E, C, A, D]
        before = snapshot(core.state)
        ev = core.evaluate(acts_c)
        after = snapshot(core.state)
        for k in before:
            assert torch.equal(before[k], after[k]), k
        assert set(ev["rewards"]) == set(core.tiers)
        for t in core.tiers:
            assert ev["rewards"][t].shape == (E, C, core.num_agents[t])
        dec = {t: v.clone() for t, v in core.decides().items()}
        out = core.step(cands[stepped])
        masks = out["masks"]
        for t in core.tiers:
            torch.testing.assert_close(ev["rewards"][t][:, stepped], out["rewards"][t],
                                       rtol=RTOL, atol=ATOL)
        for k in out["metrics"]:
            torch.testing.assert_close(ev["metrics"][k][:, stepped], out["metrics"][k],
                                       rtol=RTOL, atol=ATOL)
        for k in out["region"]:
            torch.testing.assert_close(ev["region"][k][:, stepped], out["region"][k],
                                       rtol=RTOL, atol=ATOL)
        if step == 0:
            assert all(bool(dec[t].all()) for t in core.tiers)
        spread += float((ev["rewards"]["local"].amax(1) - ev["rewards"]["local"].amin(1)).sum())
    assert spread > 0  # the candidates were really scored separately


def test_evaluate_ignores_non_deciding_upper_tiers():
    core = TNTNCore(make_config("sag", **CFG), num_envs=2)
    _, masks = core.reset(seed=8)
    gen = torch.Generator().manual_seed(8)
    out = core.step(pick(core, masks, scores_for(core, gen)))  # t = 0 -> 1
    masks = out["masks"]
    assert not bool(core.decides()["satellite"].any()) and not bool(core.decides()["hap"].any())
    base = pick(core, masks, scores_for(core, gen))
    other = pick(core, masks, scores_for(core, gen))
    c2 = {t: torch.stack([base[t], base[t]], 1) for t in core.tiers}
    c2["satellite"][:, 1] = other["satellite"]
    c2["hap"][:, 1] = other["hap"]
    assert not torch.equal(c2["satellite"][:, 0], c2["satellite"][:, 1])
    ev = core.evaluate(c2)
    for t in core.tiers:
        assert torch.equal(ev["rewards"][t][:, 0], ev["rewards"][t][:, 1])
    ev_all = core.evaluate(c2, decide="all")  # now the upper tiers act: the results differ
    assert not torch.equal(ev_all["region"]["sum_rate_bps"][:, 0],
                           ev_all["region"]["sum_rate_bps"][:, 1])


VOID_CFG = dict(num_beams=1, haps_per_beam=1, regions_per_hap=2, tbs_per_region=1,
                uavs_per_region=1, users_per_region=3, num_subbands=3, time_blocks=2)


def test_voided_choices_are_counted_and_constraints_hold():
    core = TNTNCore(make_config("sag", **VOID_CFG), num_envs=1)
    _, masks = core.reset(seed=0)
    N, T, L, M = 3, 2, len(core.cfg.network.power_levels), 2
    # Old allocation (equal split): every subband to the beam; nodes TBS, UAV, TBS on n = 0, 1, 2.
    assert core.state.sat_choice.tolist() == [[1, 1, 1]]
    assert core.state.hap_choice.tolist() == [[[1, 2, 1], [1, 2, 1]]]
    assert bool(core.decides()["satellite"][0]) and bool(core.decides()["hap"][0])
    sat = torch.tensor([[[0, 1, 2]]])  # n0 off, n1 to the beam, n2 satellite-direct
    hap = torch.ones(1, 1, 2 * N, dtype=torch.long)  # every (region, n) to the TBS: valid before
    local = torch.zeros(1, 2, N * T + N + 1, dtype=torch.long)
    local[..., :N * T] = 1  # user 0 in every slot: valid before
    local[..., N * T:N * T + N] = L - 1
    acts = {"satellite": sat, "hap": hap, "local": local}
    for t in core.tiers:  # every choice is allowed by the masks the agents were given
        flat = torch.cumsum(torch.tensor([0] + core.nvec[t][:-1]), 0) + acts[t]
        assert bool(torch.gather(masks[t], 2, flat).all()), t
    out = core.step(acts)
    # voided: HAP entries on n0 and n2 (2 regions x 2 subbands) + local slots on n0 (2 x 2);
    # slots on n2 stay valid (served satellite-direct), slots on n1 keep the TBS.
    assert int(out["voided"][0]) == 8
    assert int(out["repaired"][0]) == 0
    ls = core.link_state()
    Xt, J = core.Xt, 2
    assert ls["beam_alloc"].tolist() == [[0, 1, 0]]
    assert ls["satellite_direct"].tolist() == [0, 0, 1]
    assert ls["node_alloc"].tolist() == [[0, 1, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert ls["hap_direct"].sum() == 0
    assert ls["holder"].tolist() == [[-1, 0, Xt + J], [-1, 2, Xt + J]]
    serving = ls["serving_tx"]
    for j in range(2):
        u = j * 3  # user 0 of region j
        assert serving[u].tolist() == [-1, j * M, Xt + J]
        assert (serving[u + 1:u + 3] == -1).all()
    # the next (local-only) step with masks from this state voids nothing
    gen = torch.Generator().manual_seed(0)
    out = core.step(pick(core, out["masks"], scores_for(core, gen)))
    assert int(out["voided"][0]) == 0


def test_top_down_sampling_with_masks_for_is_accepted():
    # HAPs decide whenever the satellite does (4 % 2 == 0), so no standing HAP choice is voided
    # by a satellite decision the HAP cannot answer; top-down choices must never be voided.
    core = TNTNCore(make_config("sag", **{**CFG, "satellite_interval": 4}), num_envs=4)
    _, masks = core.reset(seed=13)
    gen = torch.Generator().manual_seed(13)
    for _ in range(6):
        sc = scores_for(core, gen)
        a = pick(core, masks, sc)
        m = core.masks_for({"satellite": a["satellite"]})
        a["hap"] = pick(core, m, sc)["hap"]
        m = core.masks_for({"satellite": a["satellite"], "hap": a["hap"]})
        a["local"] = pick(core, m, sc)["local"]
        out = core.step(a)  # raises today at t = 0 when the new split differs from the old one
        assert (out["voided"] == 0).all()  # top-down choices are never voided
        masks = out["masks"]


@pytest.mark.parametrize("scenario", ["sag", "ag", "uav"])
def test_steps_without_upper_decisions_reuse_the_allocation_exactly(scenario):
    """On a step where no upper tier decides (known on the host), the core keeps the state's
    choice tensors and takes what depends only on the allocation from its memo (holder powers,
    holder links, one-hot observation parts). The outputs must be bit for bit those of the full
    computation (forced here by reporting every step as an upper-tier decision step), over
    decisions, steps between them and an auto-reset; and the memo must actually be used."""
    cfg = make_config(scenario, **CFG)
    fast, full = TNTNCore(cfg, num_envs=3), TNTNCore(cfg, num_envs=3)
    full._upper_decided = lambda dec, t: True  # every step takes the full path
    calls = {"fast": 0, "full": 0}
    for name, core in (("fast", fast), ("full", full)):
        of = core._allocation_of

        def counted(*a, _of=of, _name=name):
            calls[_name] += 1
            return _of(*a)
        core._allocation_of = counted
    gen = torch.Generator().manual_seed(5)
    (obs_a, masks_a), (obs_b, _) = fast.reset(seed=11), full.reset(seed=11)
    for t in obs_a:
        assert torch.equal(obs_a[t], obs_b[t])
    for step in range(int(cfg.timing.episode_steps * 1.5)):
        acts = pick(fast, masks_a, scores_for(fast, gen))
        a = fast.step(acts, auto_reset=True)
        b = full.step(acts, auto_reset=True)
        assert_out_close(a, b, exact=True)
        for k in ("sat_choice", "hap_choice", "users", "slot_sinr", "rate_bps"):
            assert torch.equal(getattr(fast.last, k), getattr(full.last, k)), (step, k)
        masks_a = a["masks"]
    assert calls["fast"] < calls["full"], calls
