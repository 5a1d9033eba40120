"""Property tests: constraints (2)-(4), association rules, bounds and finiteness hold for random
small configurations and random masked actions, over several steps including decision steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from handcalc import sample_masked
from hypothesis import given, settings
from hypothesis import strategies as st

from tntn_env import TNTNCore, make_config

TBS, UAV, HAP, SAT = 0, 1, 2, 3
@st.composite
def small_configs(draw):
    scenario = draw(st.sampled_from(["sag", "ag", "uav"]))
    tbs = draw(st.integers(0, 2))
    uav = draw(st.integers(0 if tbs else 1, 2))
    kw = dict(
        num_beams=draw(st.integers(1, 3)), haps_per_beam=draw(st.integers(1, 2)),
        regions_per_hap=draw(st.integers(1, 3)), tbs_per_region=tbs, uavs_per_region=uav,
        users_per_region=draw(st.integers(1, 5)), num_subbands=draw(st.integers(1, 6)),
        time_blocks=draw(st.integers(1, 3)),
        power_levels=draw(st.sampled_from([(1.0,), (0.5, 1.0), (0.25, 0.5, 1.0)])),
        satellite_interval=draw(st.integers(1, 4)), hap_interval=draw(st.integers(1, 3)),
        episode_steps=draw(st.integers(2, 6)),
    )
    return scenario, kw


def check_masks(core, masks):
    for tier in core.tiers:
        m = masks[tier].numpy()
        assert m.shape == (core.num_envs, core.num_agents[tier], core.action_size(tier))
        off = 0
        for p, n in enumerate(core.nvec[tier]):
            seg = m[..., off:off + n]
            assert seg.any(-1).all(), (tier, p)  # every position has an allowed choice
            if tier == "hap" or (tier == "local" and p < core.N * core.T):
                assert seg[..., 0].all(), (tier, p)  # "off" / "nobody" is always allowed
            if tier == "local" and core.N * core.T <= p < core.N * core.T + core.N:
                assert seg[..., -1].all(), (tier, p)  # the top power level is always allowed
            if tier == "local" and p >= core.N * core.T + core.N:
                assert seg.all(), (tier, p)  # UAV moves are not masked
            off += n


def check_obs(core, obs):
    for tier in core.tiers:
        o = obs[tier].numpy()
        assert o.shape == (core.num_envs, core.num_agents[tier], core.obs_size(tier))
        assert o.dtype == np.float32
        assert np.isfinite(o).all(), tier
        lo, hi = core.obs_bounds(tier)
        bad = (o < lo) | (o > hi)
        assert not bad.any(), (tier, np.argwhere(bad)[:5], o[bad][:5])


def check_link_state(core, e):
    ls = core.link_state(e)
    for k, v in ls.items():
        if np.issubdtype(v.dtype, np.floating):
            assert np.isfinite(v).all(), k
    H, R, J, M, N = core.H, core.R, core.J, core.M, core.N
    Xt = J * M
    region_beam = np.arange(J) // (H * R)  # documented numbering: region j -> beam j // (H R)
    assert core.topo.region_beam.tolist() == region_beam.tolist()
    ba = ls["beam_alloc"].astype(bool)  # [B, N]
    sd = ls["satellite_direct"].astype(bool)  # [N]
    node = ls["node_alloc"].reshape(J, M, N).astype(bool)
    hd = ls["hap_direct"].astype(bool)  # [J, N]
    # (2) a subband names at most one beam; satellite-direct subbands are given to no beam
    assert (ba.sum(0) <= 1).all()
    assert not (ba.any(0) & sd).any()
    # (3) per region a subband is held by at most one node or the HAP
    assert (node.sum(1) + hd <= 1).all()
    # (4) a node / HAP-direct holds n only if n is given to its beam
    held = node.any(1) | hd
    assert not (held & ~ba[region_beam]).any()
    # holder per (region, subband) follows from the allocation
    holder = ls["holder"]
    expect = np.full((J, N), -1)
    for j in range(J):
        for n in range(N):
            if sd[n]:
                expect[j, n] = Xt + J + region_beam[j]
            elif node[j, :, n].any():
                expect[j, n] = j * M + int(np.argmax(node[j, :, n]))
            elif hd[j, n]:
                expect[j, n] = Xt + j
    np.testing.assert_array_equal(holder, expect)
    kind, txr, ureg = ls["tx_kind"], ls["tx_region"], ls["user_region"]
    serving = ls["serving_tx"]
    for u, n in zip(*np.nonzero(serving >= 0)):
        s, j = serving[u, n], ureg[u]
        assert s == holder[j, n]
        if kind[s] in (TBS, UAV, HAP):  # a node or the HAP spot beam of the user's own region
            assert txr[s] == j
        else:
            assert kind[s] == SAT and s - (Xt + J) == region_beam[j] and sd[n]
        assert ls["tx_power_w"][s, n] > 0
        assert ls["time_share"][u, n] > 0
    # only holders transmit
    tx_on = ls["tx_power_w"] > 0  # [X, N]
    for x, n in zip(*np.nonzero(tx_on)):
        assert (holder[:, n] == x).any()
    assert (ls["rate_bps"] >= 0).all() and (ls["sinr"] >= 0).all()
    assert ((serving >= 0) == (ls["time_share"] > 0)).all()
    assert (ls["time_share"].sum(1) <= N + 1e-6).all()


@settings(max_examples=20, deadline=None)
@given(cfg=small_configs(), num_envs=st.integers(1, 3), seed=st.integers(0, 2 ** 31 - 1))
def test_random_masked_rollouts_keep_constraints(cfg, num_envs, seed):
    scenario, kw = cfg
    core = TNTNCore(make_config(scenario, **kw), num_envs=num_envs)
    obs, masks = core.reset(seed=seed)
    check_obs(core, obs)
    check_masks(core, masks)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(kw["episode_steps"] + 2):  # crosses an auto-reset
        dec = core.decides()
        acts = sample_masked(core, masks, gen)
        out = core.step(acts, auto_reset=True)
        obs, masks = out["obs"], out["masks"]
        check_obs(core, obs)
        check_masks(core, masks)
        for tier in core.tiers:
            r = out["rewards"][tier]
            assert r.shape == (num_envs, core.num_agents[tier])
            assert torch.isfinite(r).all()
        for d in (out["metrics"], out["region"]):
            for k, v in d.items():
                assert torch.isfinite(v).all(), k
        assert (out["repaired"] == 0).all()
        # masks are exact for the state observed: without an upper-tier decision nothing is void
        upper = torch.zeros(num_envs, dtype=torch.bool)
        for tier in ("satellite", "hap"):
            if tier in core.tiers:
                upper |= dec[tier]
        assert (out["voided"][~upper] == 0).all()
        if scenario == "uav":
            assert (out["voided"] == 0).all()
        for e in range(num_envs):
            check_link_state(core, e)


@pytest.mark.parametrize("uavs, users, levels", [
    (0, 2, (0.5, 1.0)), (0, 3, (1.0,)), (1, 2, (0.5, 1.0)), (0, 4, (0.5, 1.0))])
def test_local_mask_layout(uavs, users, levels):
    """Each local position's slice of the flat mask is the one described by nvec.

    With every subband available and not satellite-direct, every user choice and every power
    level is allowed, so the whole local mask must be True.
    """
    core = TNTNCore(make_config("sag", num_beams=1, regions_per_hap=1, tbs_per_region=1,
                                uavs_per_region=uavs, users_per_region=users, num_subbands=2,
                                time_blocks=1, power_levels=levels))
    _, masks = core.reset(seed=0)
    assert core.state.sat_choice.tolist() == [[1, 1]]  # both subbands to the beam, TBS holds
    m = masks["local"][0, 0]
    assert m.numel() == sum(core.nvec["local"])
    assert bool(m.all()), m.tolist()
