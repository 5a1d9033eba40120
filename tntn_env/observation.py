"""Observations: what each tier's agents see, per env, as float32 vectors.

- satellite: its one-hot subband choices; per region: demand, served share, SE, and the mean SNR
  features of the satellite beam and the best terrestrial node; timing.
- hap: its beam's subbands and satellite-direct flags, its one-hot choices; per region of the
  HAP: demand, served share, SE, fairness, and the mean SNR features of each node and the spot
  beam (over all users and over each transmitter's T best); timing.
- local: each subband's holder kind, the holder's SNR at each user on this step's realisation,
  the last step's interference, user positions, demand and rates, UAV positions; timing.

SNR features are dB / 20 clipped to +-3 (:func:`~tntn_env.links.snr_feature_`). The parts of the
layout are :func:`obs_specs`. Functions take the core (:class:`tntn_env.core.TNTNCore`) as first
argument where they need it; :func:`holder_snr_links` and :func:`cat_last` are kernel bodies of
``compile="kernels"``.
"""

from __future__ import annotations

import math
from functools import partial

import torch

from .allocation import holder_streams, holders
from .links import fade_key, link_gain, link_index, snr_feature_
from .state import CoreState, last_for


def obs_specs(core) -> dict:
    """Observation layout per tier: a list of (part, size, low, high), in order."""
    N, B, J, K, M, R, U = core.N, core.B, core.J, core.K, core.M, core.R, core.U
    inf = math.inf
    d = core.cfg.demand
    dem_hi = 1.0 + core.Hs * d.hotspot_demand_bps / d.base_demand_bps
    uav_hi = 0.5 + core.cfg.timing.episode_steps * core.cfg.network.uav_step_m / \
        core.cfg.network.region_size_m
    specs = {
        "satellite": [("sat_alloc", N * (B + 2), 0, 1), ("region_demand", J, 0, dem_hi),
                      ("region_served", J, 0, 1), ("region_se", J, 0, inf),
                      ("region_sat_snr", J, -3, 3), ("region_tn_snr", J, -3, 3),
                      ("timing", 2, 0, 1)],
        "hap": [("beam_avail", N, 0, 1), ("sat_direct", N, 0, 1),
                ("hap_alloc", R * N * (M + 2), 0, 1), ("region_demand", R, 0, dem_hi),
                ("region_served", R, 0, 1), ("region_se", R, 0, inf),
                ("region_fair", R, 0, 1), ("node_snr", R * (M + 1), -3, 3),
                ("node_snr_top", R * (M + 1), -3, 3),
                ("timing", 3, 0, 1)],
        "local": [("holder_kind", N * 5, 0, 1), ("holder_snr", K * N, -3, 3),
                  ("inr", N, -3, 3), ("user_xy", K * 2, -0.5, 0.5),
                  ("user_demand", K, 0, dem_hi), ("user_rate", K, 0, inf),
                  ("uav_xy", U * 2, -uav_hi, uav_hi), ("timing", 3, 0, 1)],
    }
    if core.orbit is not None:  # the orbit's parts, after the others (docs/env.md)
        specs["satellite"] += [("sat_elevation", J, -1, 1), ("coverage", 3, 0, 1)]
        specs["hap"] += [("sat_elevation", R, -1, 1), ("coverage", 3, 0, 1)]
    return specs


def observe(core, st: CoreState | None = None) -> dict:
    """Observations per tier [E, agents, obs_size] (float32, finite)."""
    st = st or core.state
    E, J, K, M, R, I = (st.key.numel(), core.J, core.K, core.M, core.R, core.I)
    dev, tm, net = core.device, core.cfg.timing, core.cfg.network
    holder = holders(core, st.sat_choice, st.hap_choice)[0]
    af = last_for(core, "allocation_features", (st.sat_choice, st.hap_choice),
                  partial(allocation_features, core))
    kern = core._kernels_for(st)
    feat = (kern["region_snr"] if kern else partial(region_snr, core))(st.ls_gain, st.power_w)
    node_snr, spot_snr, sat_snr, tn_snr = (feat[..., :M], feat[..., M], feat[..., M + 1],
                                           feat[..., M + 2])
    t = st.t.float()
    prog = (t / tm.episode_steps)[:, None]

    def until(iv):
        return (((iv - st.t % iv) % iv).float() / iv)[:, None]

    until_sat, until_hap = until(tm.satellite_interval), until(tm.hap_interval)

    dem = st.demand_bps.view(E, J, K) / core.cfg.demand.base_demand_bps
    orb = core.orbit
    if orb is not None:  # the serving satellite's elevation per region / 90, coverage features
        sat_el = orb.at(st.t, orb.elevation_deg) / 90.0  # [E, J]
        cover = orb.at(st.t, orb.features)  # [E, 3]
    out = {}
    if "satellite" in core.tiers:
        parts = [af["satellite"], dem.mean(-1), st.last_served, st.last_se, sat_snr, tn_snr,
                 prog, until_sat]
        if orb is not None:
            parts += [sat_el, cover]
        out["satellite"] = torch.cat(parts, 1)[:, None]
    if "hap" in core.tiers:
        ns = torch.cat([node_snr, spot_snr[..., None]], -1).view(E, I, -1)
        ns_top = feat[..., M + 3:2 * M + 4].reshape(E, I, -1)  # nodes, spot beam
        timing = torch.cat([prog, until_hap, until_sat], 1)
        parts = [*af["hap"], dem.mean(-1).view(E, I, R), st.last_served.view(E, I, R),
                 st.last_se.view(E, I, R), st.last_fair.view(E, I, R), ns, ns_top,
                 timing[:, None].expand(-1, I, -1)]
        if orb is not None:
            parts += [sat_el.view(E, I, R), cover[:, None].expand(-1, I, -1)]
        out["hap"] = torch.cat(parts, -1)
    # Local: holder kind, holder SNR per (user, subband) on this step's realisation.
    hsnr = holder_snr(core, st, holder)
    size = net.region_size_m
    uxy = (st.user_xy.view(E, J, K, 2) - core.topo.region_centre_xy[None, :, None]) / size
    rate = st.last_rate.view(E, J, K) / core.cfg.reward.rate_scale_bps
    if core.U > 0:
        vxy = (st.uav_xy.view(E, J, core.U, 2)
               - core.topo.region_centre_xy[None, :, None]) / size
    else:
        vxy = torch.zeros(E, J, 0, 2, device=dev)
    timing = torch.cat([prog, until_hap, until_sat], 1)
    parts = [af["local"], hsnr, (st.last_inr_db / 20).clamp(-3, 3), uxy.reshape(E, J, -1),
             dem, rate, vxy.reshape(E, J, -1), timing[:, None].expand(-1, J, -1)]
    out["local"] = kern["cat"](parts) if kern else torch.cat(parts, -1)
    return out


def holder_snr(core, st: CoreState, holder: torch.Tensor) -> torch.Tensor:
    """SNR feature [E, J, K * N] of each subband's holder ``holder`` [E, J, N] at each user
    of its region, on this step's realisation (0 where the subband has no holder)."""
    E, J, K, N, dev = st.key.numel(), core.J, core.K, core.N, core.device
    p = holder_streams(core, holder, st.power_w)[1][:, :, None, :]  # [E, J, 1, N]; 0: none
    if core._kernel_ok(st):
        link, pair = last_for(core, "holder_links", (holder,), partial(holder_links, core))
        return core._kernels["holder_snr"](fade_key(core, st).view(E, 1), link, pair,
                                           st.ls_gain.view(E, -1), st.ls_k.view(E, -1), p,
                                           core.noise_w).view(E, J, -1)
    u_glob = (torch.arange(J, device=dev)[:, None] * K
              + torch.arange(K, device=dev)[None])  # [J, K]
    g = core._gain(st, holder.clamp(min=0)[:, :, None, :], u_glob[None, :, :, None],
                   torch.arange(N, device=dev).view(1, 1, 1, N))  # [E, J, K, N]
    g *= p
    return snr_feature_(g, core.noise_w).masked_fill_(holder[:, :, None, :] < 0,
                                                       0.0).view(E, J, -1)


def holder_snr_links(key, link, pair, ls_gain, ls_k, power_w, noise_w: float):
    """The local observation's holder SNR features [E, J * K * N] in one pass: ``link`` [E, J * K
    * N] the holders' links to the region's users and ``pair`` their (tx, user) pairs
    (``links.link_index``), ``power_w`` [E, J, 1, N] the holder's stream power, 0 where the
    subband has no holder (feature 0). The links and pairs come in materialised (the core
    computes them once per allocation): built from broadcast indices inside the kernel, they
    would make inductor loop over [E, J, K, N] with 10-wide inner loops (3x slower here)."""
    E, J, _, N = power_w.shape
    p = power_w.expand(E, J, link.shape[1] // (J * N), N).reshape(E, -1)
    feat = snr_feature_(link_gain(key, link, pair, ls_gain, ls_k) * p, noise_w)
    return torch.where(p > 0, feat, 0.0)


def allocation_features(core, sat_choice, hap_choice) -> dict:
    """The observation parts that depend only on the allocation, per tier (computed once per
    allocation: upper tiers decide every 10 or 50 steps): the satellite's one-hot choices;
    the HAPs' beam and satellite-direct flags and one-hot choices; the local agents'
    one-hot holder kinds."""
    E, I, R, N, J = sat_choice.shape[0], core.I, core.R, core.N, core.J
    holder, beam_has, sat_direct = holders(core, sat_choice, hap_choice)
    out = {}
    if "satellite" in core.tiers:
        out["satellite"] = one_hot(sat_choice, core.B + 2).view(E, -1)
    if "hap" in core.tiers:
        out["hap"] = (beam_has.view(E, I, R, N)[:, :, 0].float(),
                      sat_direct.view(E, I, R, N)[:, :, 0].float(),
                      one_hot(hap_choice, core.M + 2).view(E, I, -1))
    kind = torch.where(holder >= 0, core.topo.tx_kind[holder.clamp(min=0)] + 1, 0)
    out["local"] = one_hot(kind, 5).view(E, J, -1)
    return out


def holder_links(core, holder):
    """Link counters [E, J * K * N] of each subband's holder to its region's users (the
    local observation's holder SNRs) and their (tx, user) pairs (``links.link_index``);
    computed once per allocation."""
    E, J, K, N = holder.shape[0], core.J, core.K, core.N
    dev = holder.device
    u_glob = (torch.arange(J, device=dev)[:, None] * K
              + torch.arange(K, device=dev)[None])  # [J, K]
    link, pair = link_index(holder.clamp(min=0)[:, :, None, :], u_glob[None, :, :, None],
                             torch.arange(N, device=dev).view(1, 1, 1, N), core.Ut, N)
    return link.view(E, -1), pair.view(E, -1)


def region_snr(core, ls_gain, power_w):
    """Per region, its users' mean SNR feature (large-scale gains at a 1/N power share) of
    each of its nodes, the HAP spot beam, the satellite beam and the best terrestrial node,
    then the same means over each transmitter's T best users only (the users one subband
    can serve): [E, J, 2 (M + 3)]."""
    E, J, K, M, N = ls_gain.shape[0], core.J, core.K, core.M, core.N
    dev = ls_gain.device
    pw = power_w / N  # [E, 4]: TBS, UAV, HAP, satellite beam
    lsr = ls_gain.view(E, core.X, J, K)
    j_ar = torch.arange(J, device=dev)
    node_pw = pw[:, (torch.arange(M, device=dev) >= core.Tn).long()]  # [E, M]
    # region j's nodes to region j's users: diagonal views, no copy until the products
    node = torch.diagonal(lsr[:, :core.Xt].view(E, J, M, J, K), dim1=1, dim2=3)
    node = node.permute(0, 3, 1, 2) * node_pw[:, None, :, None]  # [E, J, M, K]
    spot = (torch.diagonal(lsr[:, core.Xt:core.Xt + J], dim1=1, dim2=2).permute(0, 2, 1)
            * pw[:, 2, None, None])  # [E, J, K]
    sat_own = lsr[:, core.Xt + J:][:, core.topo.region_beam, j_ar] * pw[:, 3, None, None]
    best = node.max(2).values  # best terrestrial node per user
    # in place on a fresh tensor (the roundings of the out-of-place form), one pass for all
    snr = snr_feature_(torch.cat([node, spot[:, :, None], sat_own[:, :, None],
                                   best[:, :, None]], 2), core.noise_w)
    top = snr.topk(min(core.T, K), -1).values.mean(-1)
    return torch.cat([snr.mean(-1), top], -1)


def one_hot(idx: torch.Tensor, n: int) -> torch.Tensor:
    """``one_hot(idx, n).float()`` written straight into float32 (no int64 tensor between);
    ``idx`` holds valid indices by construction."""
    out = torch.zeros(*idx.shape, n, dtype=torch.float32, device=idx.device)
    return out.scatter_(-1, idx.unsqueeze(-1), 1.0)


def cat_last(parts):
    """``torch.cat(parts, -1)``; compiled at large E: one copy pass instead of a memcpy per row
    and part (the local observation: 8 parts of 2-100 floats per row)."""
    return torch.cat(parts, -1)


def global_state(core, obs: dict | None = None) -> torch.Tensor:
    """Global state for centralised critics: all agents' observations, concatenated [E, S]."""
    obs = obs or core.observe()
    return torch.cat([obs[t].reshape(obs[t].shape[0], -1) for t in core.tiers], 1)
