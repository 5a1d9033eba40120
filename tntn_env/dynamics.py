"""Dynamics: the initial state of an episode and the transition to the next step.

An episode starts (:func:`initial_state`) with per-episode platform powers, hotspots, users
(a share clustered near hotspots), UAVs at their start sites, the equal-split allocation, the
large-scale channel and, with ``TimingConfig.warm_start``, the feedback of one max-SNR step of
that allocation (:func:`warm_start_`). Each step (:func:`advance`) walks the users, moves the
hotspots toward their waypoints, updates the demand, refreshes the large-scale channel (UAV rows
every step, all rows every ``large_scale_refresh_steps``), evolves correlated fading and writes
the scored step's feedback (:func:`feedback_`) into the next state.

Every draw is counter-based (rng.py): a key per env, episode and step (:func:`step_key`), a
stream id per purpose (state.py). Functions take the core (:class:`tntn_env.core.TNTNCore`) as
first argument where they need it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import partial

import numpy as np
import torch

from . import channel as chn
from . import rng
from .allocation import fixed_hap_choice, holders, orbit_void, orbit_void_state
from .observation import holder_snr
from .state import (
    S_FADE_INIT,
    S_HOT_INIT,
    S_HOT_TARGET,
    S_POWER,
    S_SHADOW,
    S_USER_HOT,
    S_USER_POS,
    S_WALK,
    CoreState,
    Scored,
)


def episode_keys(core, seed, ids: torch.Tensor):
    """(env keys, episodes), [n] each, of the envs ``ids`` [n] that ``TNTNCore.reset`` resets
    with ``seed`` (int: env i gets seed + i; a sequence of n ints; None: fresh entropy on the
    first reset, else each env's next episode)."""
    dev = core.device
    n = ids.numel()
    if seed is None:
        if core.state is None:
            base = int(np.random.SeedSequence().entropy) % (2 ** 62)
            seeds = torch.arange(n, device=dev) + base
            return rng.seed_to_key(seeds), torch.zeros(n, dtype=torch.long, device=dev)
        return core.state.key[ids], core.state.episode[ids] + 1
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"seed = {seed} is invalid; allowed: an integer >= 0")
        seeds = ids + int(seed)  # env i gets seed + i, also in a partial reset
    else:
        seeds = torch.as_tensor(np.asarray(seed, dtype=np.int64), device=dev).flatten()
        if seeds.numel() != n or bool((seeds < 0).any()):
            raise ValueError(f"seed has {seeds.numel()} entries; allowed: {n} integers >= 0")
    return rng.seed_to_key(seeds), torch.zeros(n, dtype=torch.long, device=dev)


def step_key(core, ekey, t):
    """Key of step t's realisation, ``rng.mix(ekey, t + 1)``; the counter's hash comes from a
    table over the episode's steps (the same bits, a dozen ops fewer per step)."""
    n = core._t_code.numel()
    if torch.compiler.is_compiling():  # no host sync in a graph: both, then select
        coded = rng.mix_coded(ekey, core._t_code[t.clamp(max=n - 1)])
        return torch.where(t < n, coded, rng.mix(ekey, t + 1))
    if int(t.max()) < n:
        return rng.mix_coded(ekey, core._t_code[t])
    return rng.mix(ekey, t + 1)


def initial_state(core, key, episode) -> CoreState:
    """The state at step 0 of episode ``episode`` [n] of envs with keys ``key`` [n]."""
    cfg, dev = core.cfg, core.device
    n = key.numel()
    J, N = core.J, core.N
    zero_t = torch.zeros(n, dtype=torch.long, device=dev)
    ekey = rng.mix(key, episode)
    k0 = rng.mix(ekey, 0)
    # Per-episode powers, uniform in dBm over each tier's range (Section 4.1).
    u = rng.uniform(rng.mix(k0, S_POWER)[:, None], torch.arange(4, device=dev)[None])
    rngs = [cfg.network.tbs_power_dbm, cfg.network.uav_power_dbm,
            cfg.network.hap_power_dbm, cfg.network.satellite_power_dbm]
    lo = torch.tensor([r[0] for r in rngs], device=dev)
    hi = torch.tensor([r[1] for r in rngs], device=dev)
    power_w = chn.dbm_to_watt(lo + (hi - lo) * u)
    field_key = rng.mix(rng.mix(k0, S_SHADOW)[:, None],
                        torch.arange(core._num_prop, device=dev)[None])
    w, h = core.topo.area_size_xy
    area = torch.tensor([w, h], device=dev)
    hot = rng.uniform(rng.mix(k0, S_HOT_INIT)[:, None],
                      torch.arange(2 * core.Hs, device=dev)[None]).view(n, core.Hs, 2) * area
    target = rng.uniform(rng.mix(k0, S_HOT_TARGET)[:, None],
                         torch.arange(2 * core.Hs, device=dev)[None]).view(n, core.Hs, 2) * area
    # Users: a share clustered around the point of their region nearest to a hotspot, the rest
    # uniform over the region.
    size = core.cfg.network.region_size_m
    uidx = torch.arange(core.Ut, device=dev)[None]
    kp = rng.mix(k0, S_USER_POS)[:, None]
    uni = torch.stack([rng.uniform(kp, 4 * uidx), rng.uniform(kp, 4 * uidx + 1)], -1)
    gauss = torch.stack([rng.normal(kp, 4 * uidx + 2), rng.normal(kp, 4 * uidx + 3)], -1)
    origin = core.topo.region_origin_xy[core.topo.user_region][None]  # [1, Ut, 2]
    pos = origin + uni * size
    kh = rng.mix(k0, S_USER_HOT)[:, None]
    is_hot = (rng.uniform(kh, 2 * uidx) < cfg.demand.hotspot_user_fraction) & (core.Hs > 0)
    if core.Hs > 0:
        which = (rng.uniform(kh, 2 * uidx + 1) * core.Hs).long().clamp(max=core.Hs - 1)
        anchor = torch.gather(hot, 1, which[..., None].expand(-1, -1, 2))
        anchor = torch.maximum(torch.minimum(anchor, origin + size), origin)
        near = anchor + gauss * cfg.demand.hotspot_radius_m
        near = torch.maximum(torch.minimum(near, origin + size), origin)
        pos = torch.where(is_hot[..., None], near, pos)
    uav = core.topo.uav_start_xy.reshape(1, J * core.U, 2).expand(n, -1, -1).clone()
    st = CoreState(
        key=key, ekey=ekey, rkey=step_key(core, ekey, zero_t), episode=episode, t=zero_t,
        power_w=power_w, field_key=field_key,
        user_xy=pos, user_hot=is_hot, uav_xy=uav, hot_xy=hot, hot_target=target,
        demand_bps=torch.zeros(n, core.Ut, device=dev),
        ls_gain=torch.zeros(n, core.X, core.Ut, device=dev),
        ls_los=torch.zeros(n, core.X, core.Ut, dtype=torch.bool, device=dev),
        ls_k=torch.zeros(n, core.X, core.Ut, device=dev),
        uav_los_u=torch.zeros(n, J * core.U, core.Ut, device=dev),
        fade=torch.zeros(n, *((core.X, core.Ut, N, 2) if core._correlated else (0,)),
                         device=dev),
        sat_choice=core._fixed_sat[None].expand(n, -1).clone(),
        hap_choice=torch.zeros(n, J, N, dtype=torch.long, device=dev),
        last_rate=torch.zeros(n, core.Ut, device=dev),
        last_served=torch.zeros(n, J, device=dev), last_se=torch.zeros(n, J, device=dev),
        last_fair=torch.zeros(n, J, device=dev), last_inr_db=torch.zeros(n, J, N, device=dev),
    )
    st.sat_choice = orbit_void(core, st.sat_choice, st.t)  # the satellite below the minimum
    st.hap_choice = fixed_hap_choice(core, st.sat_choice)
    st.demand_bps = demand(core, st.user_xy, st.hot_xy)
    core._large_scale(st, full=True)
    if core._correlated:
        idx = torch.arange(core.X * core.Ut * N * 2, device=dev)[None]
        st.fade = rng.normal(rng.mix(k0, S_FADE_INIT)[:, None], idx).view(
            n, core.X, core.Ut, N, 2)
    if cfg.timing.warm_start:
        warm_start_(core, st)
    return st


def demand(core, user_xy, hot_xy):
    """Traffic demand [E, Ut] (bps): a base rate plus a Gaussian bump around each hotspot."""
    d = core.cfg.demand
    dem = torch.full(user_xy.shape[:2], d.base_demand_bps, device=core.device)
    if core.Hs == 0:
        return dem
    r2 = ((user_xy[:, :, None] - hot_xy[:, None]) ** 2).sum(-1)
    return dem + d.hotspot_demand_bps * torch.exp(-r2 / (2 * d.hotspot_radius_m ** 2)).sum(-1)


def advance(core, st: CoreState, sc: Scored, full: bool | None) -> CoreState:
    """Mobility, demand and the next channel realisation; ``full`` as ``TNTNCore._refresh_mode``
    gives it."""
    E, dev, d = st.key.numel(), core.device, core.cfg.demand
    t1 = st.t + 1
    # this step's stream keys, [E, 1] each
    k_walk, k_hot, k_fade = rng.mix_many(rng.mix(st.rkey, 1)[:, None],
                                         (S_WALK, S_HOT_TARGET, S_FADE_INIT)).unbind(-1)
    size = core.cfg.network.region_size_m
    # Users: bounded random walk, reflected into their region.
    uidx = torch.arange(core.Ut, device=dev)[None]
    ang = 2 * math.pi * rng.uniform(k_walk, uidx)
    step = torch.stack([torch.cos(ang), torch.sin(ang)], -1) * d.user_speed_m
    o = core.topo.region_origin_xy[core.topo.user_region][None]
    p = st.user_xy + step - o
    p = torch.where(p < 0, -p, p)
    p = torch.where(p > size, 2 * size - p, p).clamp(0.0, size)
    user_xy = p + o
    # Hotspots: random waypoints over the area.
    hot, tgt = st.hot_xy, st.hot_target
    if core.Hs > 0:
        delta = tgt - hot
        dist = torch.linalg.vector_norm(delta, dim=-1, keepdim=True)
        stepv = torch.where(dist > d.hotspot_speed_m,
                            delta / dist.clamp(min=1e-9) * d.hotspot_speed_m, delta)
        hot = hot + stepv
        reached = (dist <= d.hotspot_speed_m).expand(-1, -1, 2)
        area = core._area
        hidx = torch.arange(2 * core.Hs, device=dev)[None]
        fresh = rng.uniform(k_hot, hidx).view(E, core.Hs, 2) * area
        tgt = torch.where(reached, fresh, tgt)
    new = replace(st, t=t1, rkey=step_key(core, st.ekey, t1), user_xy=user_xy,
                  uav_xy=sc.uav_xy, hot_xy=hot, hot_target=tgt,
                  sat_choice=sc.sat_choice, hap_choice=sc.hap_choice)
    kern = core._kernels_for(st)
    new.demand_bps = (kern["demand"] if kern else partial(demand, core))(user_xy, hot)
    if full:
        core._large_scale(new, full=True)
    else:
        core._large_scale(new, full=False)
        if full is None:  # per env, so that envs out of phase stay independent
            ref = replace(new)
            core._large_scale(ref, full=True)
            refresh = (t1 % core.cfg.channel.large_scale_refresh_steps) == 0
            new = new.merged(refresh, ref)
    if core._correlated:
        rho = core.cfg.channel.fading_rho
        idx = torch.arange(core.X * core.Ut * core.N * 2, device=dev)[None]
        w = rng.normal(k_fade, idx).view_as(st.fade)
        new.fade = rho * st.fade + math.sqrt(1 - rho * rho) * w
    feedback_(new, sc)
    return orbit_void_state(core, new)


def feedback_(st: CoreState, sc: Scored) -> None:
    """The last-step feedback of the next observation (rates, served share, SE, fairness,
    interference), from the scored step ``sc``, written into ``st``."""
    reg = sc.region
    st.last_rate = sc.rate_bps
    st.last_served = reg["throughput_bps"] / reg["demand_bps"].clamp(min=1.0)
    st.last_se = reg["spectral_efficiency"]
    st.last_fair = reg["fairness"]
    served = (sc.users >= 0).float()
    inr = (sc.slot_inr * served).sum(-1) / served.sum(-1).clamp(min=1.0)
    st.last_inr_db = torch.where(served.sum(-1) > 0, 10 * torch.log10(inr.clamp(min=1.0)),
                                 0.0)


def warm_start_(core, st: CoreState) -> None:
    """``TimingConfig.warm_start``: the network was in operation before the episode. One
    step of the initial allocation (``st``'s: the equal split) with max-SNR scheduling (each
    held subband's T time blocks to its region's T users of highest holder SNR), every
    stream at the top power level and the UAVs holding position, scored on the first
    step's channel, fills ``st``'s last-step feedback. Time, positions, demand and random
    streams are not advanced."""
    E, J, K, N, T = st.key.numel(), core.J, core.K, core.N, core.T
    dev = core.device
    holder = holders(core, st.sat_choice, st.hap_choice)[0]  # [E, J, N]
    hsnr = holder_snr(core, st, holder).view(E, J, K, N)
    best = hsnr.topk(min(T, K), dim=2).indices.transpose(2, 3) + 1  # [E, J, N, min(T, K)]
    users = torch.zeros(E, J, N, T, dtype=torch.long, device=dev)
    users[..., :best.shape[-1]] = best
    users.masked_fill_((holder < 0)[..., None], 0)
    local = torch.cat([users.view(E, J, N * T),
                       torch.full((E, J, N), core.L - 1, dtype=torch.long, device=dev),
                       torch.zeros(E, J, core.U, dtype=torch.long, device=dev)], -1)
    none = torch.zeros(E, dtype=torch.bool, device=dev)
    dec = {"satellite": none, "hap": none, "local": ~none}
    feedback_(st, core._score(st, {"local": local}, dec, upper_fixed=True))
