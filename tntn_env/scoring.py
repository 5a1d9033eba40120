"""Scoring: one joint action applied to a frozen state, without changing it (pure).

:func:`score` takes the upper tiers' effective choices, the holders and their stream powers,
schedules the local agents' users on their (subband, time block) slots, draws every slot's
serving and interfering links, and turns SINRs into rates (Shannon, per slot); then the UAV
moves, the per-region metrics and rewards (:func:`region_metrics`, eqs. (5), (8)-(11)) and the
per-tier rewards (satellite: mean over regions; HAP: mean over its regions; local: its region).
:func:`system_metrics` reduces a scored step to the system level (``SYSTEM_METRICS``);
:func:`evaluate` scores candidate joint actions on a frozen state (what-if evaluation).

Functions take the core (:class:`tntn_env.core.TNTNCore`) as first argument where they need it;
:func:`slot_links` is the body of the ``"slots"`` kernel of ``compile="kernels"``.
"""

from __future__ import annotations

import math

import torch

from .allocation import holder_streams, holders, upper_choices
from .links import fade_key, link_gain, link_index
from .state import CoreState, Scored


def slot_outcomes(sig, interf, served, div, noise_w: float, slot_hz: float):
    """(SINR, (interference + noise) / noise, rate in bps) of time-frequency slots from received
    signal and interference powers (W); 0 where not ``served``; ``slot_hz`` the bandwidth of a
    slot's subband over the time blocks, ``div`` the serving transmitter's time split."""
    inr = 1.0 + interf / noise_w
    sinr = torch.where(served, sig / (interf + noise_w), 0.0)
    rate = slot_hz / div * torch.log1p(sinr) / math.log(2.0)
    return sinr, torch.where(served, inr, 0.0), torch.where(served, rate, 0.0)


def slot_links(key, link, pair, ls_gain, ls_k, power_w, served, div, noise_w: float,
                slot_hz: float):
    """:func:`slot_outcomes` of every slot from its links, in one pass. ``link`` [E, C, J * N *
    T] the counters of each slot's C candidate transmitters (the last one serving) and ``pair``
    their (tx, user) pairs (materialised, as for
    :func:`~tntn_env.observation.holder_snr_links`), ``power_w`` [E, C, J, N, 1] their powers
    (0 for an interferer that is the serving transmitter or silent), ``served`` [E, J, N, T],
    ``div`` [E, J, N, 1]."""
    E, C, S = link.shape
    _, _, J, N, _ = power_w.shape
    T = S // (J * N)
    pw = power_w.expand(E, C, J, N, T).reshape(E, C, S)
    rx = link_gain(key, link.view(E, -1), pair.view(E, -1), ls_gain, ls_k).view(E, C, S) * pw
    interf = rx[:, 0]
    for c in range(1, C - 1):  # C is a handful (the regions): unrolled
        interf = interf + rx[:, c]
    return slot_outcomes(rx[:, C - 1], interf, served.view(E, S),
                          div.expand(E, J, N, T).reshape(E, S), noise_w, slot_hz)


def score(core, st: CoreState, actions: dict, dec: dict,
           upper_fixed: bool = False) -> Scored:
    """Score one joint action on ``st``. ``upper_fixed``: no upper tier decides on this step
    in any env (``fixed`` of :func:`~tntn_env.allocation.upper_choices`)."""
    E, J, N, T, K, X = st.key.numel(), core.J, core.N, core.T, core.K, core.X
    dev, net = core.device, core.cfg.network
    sat, hap, voided = upper_choices(core, st, actions, dec, fixed=upper_fixed)
    holder, _, sat_direct = holders(core, sat, hap)
    loc = actions["local"].view(E, J, -1)
    nt = N * T
    users = loc[..., :nt].view(E, J, N, T) - 1
    bad = (users >= 0) & (holder[..., None] < 0)
    voided = {"hap": voided, "local": bad.sum((2, 3))}
    users = torch.where(bad, -1, users)
    level = torch.where(sat_direct, 1.0, core.levels[loc[..., nt:nt + N]])
    served = users >= 0
    active = served.any(-1) & (holder >= 0)  # [E, J, N]
    # Power: a physical platform's power split equally over the (region, subband) streams it
    # holds; a satellite beam's over its satellite-direct subbands.
    hidx, p_hold, div = holder_streams(core, holder, st.power_w)
    p_jn = p_hold * level
    p_jn = torch.where(active, p_jn, 0.0)
    aidx = torch.where(active, hidx, X)
    txp = torch.zeros(E, X + 1, N, device=dev).scatter_(
        1, aidx, p_jn)  # duplicates (a satellite beam over its regions) write equal values
    txp[:, X] = 0.0
    # Interferers on subband n: one entry per active transmitter (first region it holds n in).
    same = aidx[:, :, None, :] == aidx[:, None, :, :]  # [E, J', J'', N]
    earlier = torch.tril(torch.ones(J, J, dtype=torch.bool, device=dev), -1)
    dup = (same & earlier[None, :, :, None]).any(2)
    cand = torch.where(active & ~dup, aidx, X)  # [E, J', N]
    # Slots (j, n, t) x candidates: the other regions' transmitters (J-1) + the serving one.
    j_ar = torch.arange(J, device=dev)
    others = core._others
    cand_t = cand.transpose(1, 2)  # [E, N, J']
    oc = torch.gather(cand_t[:, None].expand(E, J, N, J), 3,
                      others.expand(E, J, N, J - 1))  # [E, J, N, J-1]
    u_glob = (j_ar[None, :, None, None] * K + users.clamp(min=0))  # [E, J, N, T]
    # The candidates and their powers do not depend on the time block: [E, J, N, 1, J],
    # broadcast over T against the scheduled users.
    c = torch.cat([oc[:, :, :, None, :], hidx[..., None, None]], dim=-1)
    n_ar = torch.arange(N, device=dev).view(1, 1, N, 1, 1)
    c_safe = c.clamp(max=X - 1)
    pw = torch.gather(txp.view(E, -1), 1, (c * N + n_ar).reshape(E, -1)).view(c.shape)
    if core._kernel_ok(st):  # candidate-major links: [E, J', J, N, T]
        pw[..., :J - 1] *= c[..., :J - 1] != c[..., J - 1:]  # serving: no interferer
        link, pair = link_index(c_safe.permute(0, 4, 1, 2, 3).contiguous(),
                                 u_glob[:, None], n_ar.view(1, 1, 1, N, 1), core.Ut, N)
        sinr, inr, slot_rate = core._kernels["slots"](
            fade_key(core, st).view(E, 1), link.view(E, J, -1), pair.view(E, J, -1),
            st.ls_gain.view(E, -1),
            st.ls_k.view(E, -1), pw.permute(0, 4, 1, 2, 3), served, div, core.noise_w,
            net.bandwidth_hz / N / T)
        sinr, inr, slot_rate = (v.view(E, J, N, T) for v in (sinr, inr, slot_rate))
    else:
        g = core._gain(st, c_safe, u_glob[..., None], n_ar)  # [E, J, N, T, J]
        rx = g
        rx *= pw  # in place: g is a fresh tensor
        other = rx[..., :J - 1]
        other *= c[..., :J - 1] != c[..., J - 1:]  # the serving transmitter is no interferer
        sinr, inr, slot_rate = slot_outcomes(rx[..., J - 1], other.sum(-1), served, T * div,
                                              core.noise_w, net.bandwidth_hz / N)
    rate = torch.zeros(E, core.Ut, device=dev).scatter_add_(
        1, u_glob.reshape(E, -1), slot_rate.reshape(E, -1))
    # UAV moves (penalty on the new positions, eq. (5)).
    uav_xy = st.uav_xy
    if core.U > 0:
        mv = core._moves[loc[..., nt + N:]]  # [E, J, U, 2]
        uav_xy = uav_xy + mv.view(E, J * core.U, 2) * net.uav_step_m
    region = region_metrics(core, rate, st.demand_bps, uav_xy)
    region["utilisation"] = active.float().mean(-1)
    region["served_slots"] = served.float().sum((2, 3))
    r = region["reward"]
    rewards = {"satellite": r.mean(1, keepdim=True),
               "hap": r.view(E, core.I, core.R).mean(-1), "local": r}
    rewards = {t: rewards[t] for t in core.tiers}
    return Scored(sat, hap, holder, users, txp[:, :X], sinr, inr, slot_rate, rate, uav_xy,
                  region, rewards, voided)


def region_metrics(core, rate, demand, uav_xy) -> dict:
    """Eqs. (5), (8)-(11) per region; rates [E, Ut]."""
    E, J, K = rate.shape[0], core.J, core.K
    rw, d, net = core.cfg.reward, core.cfg.demand, core.cfg.network
    r = rate.view(E, J, K)
    tot = r.sum(-1)
    se = tot / net.bandwidth_hz
    sq = (r * r).sum(-1)
    fair = torch.where(sq > 0, tot * tot / (K * sq.clamp(min=1e-30)), 0.0)
    qos = (d.qos_min_rate_bps - r.min(-1).values).clamp(min=0.0)
    thr = torch.minimum(r, demand.view(E, J, K)).sum(-1)
    if core.U > 0:
        o = core.topo.region_origin_xy.repeat_interleave(core.U, 0)[None]
        out = ((uav_xy < o) | (uav_xy > o + net.region_size_m)).any(-1).float()
        pen = out.view(E, J, core.U).mean(-1)
    else:
        pen = torch.zeros(E, J, device=core.device)
    reward = (rw.w_spectral_efficiency * se / rw.se_scale_bps_per_hz + rw.w_fairness * fair
              - rw.w_uav_penalty * pen - rw.w_qos_violation * qos / d.qos_min_rate_bps
              + rw.w_rate * tot / K / rw.rate_scale_bps)
    return {"reward": reward, "spectral_efficiency": se, "fairness": fair,
            "qos_violation_bps": qos, "uav_penalty": pen, "throughput_bps": thr,
            "sum_rate_bps": tot, "demand_bps": demand.view(E, J, K).sum(-1)}


def system_metrics(core, sc: Scored) -> dict:
    """System-level metrics of a scored step, name -> [E] (names: ``SYSTEM_METRICS``)."""
    reg = sc.region
    ut = core.Ut
    return {
        "throughput_mbps": reg["throughput_bps"].sum(1) / ut / 1e6,  # mean per user
        "sum_rate_mbps": reg["sum_rate_bps"].sum(1) / 1e6,
        "spectral_efficiency": reg["sum_rate_bps"].sum(1) / core.cfg.network.bandwidth_hz,
        "fairness": reg["fairness"].mean(1),
        "qos_violation": (reg["qos_violation_bps"] / core.cfg.demand.qos_min_rate_bps).mean(1),
        "uav_penalty": reg["uav_penalty"].mean(1),
        "spectrum_utilisation": reg["utilisation"].mean(1),
        "reward": reg["reward"].mean(1),
    }


def evaluate(core, actions: dict, decide: str = "scheduled") -> dict:
    """``TNTNCore.evaluate``: C candidate joint actions per env scored on the current frozen
    state, ``actions[tier]`` [E, C, agents, dims]."""
    st = core.state
    E = st.key.numel()
    C = next(iter(actions.values())).shape[1]
    rep = st.repeat(C)
    flat = {t: a.reshape(E * C, *a.shape[2:]).to(core.device, torch.long)
            for t, a in actions.items()}
    dec = core.decides(rep)
    if decide == "all":
        dec = {t: torch.ones_like(v) for t, v in dec.items()}
    elif decide != "scheduled":
        raise ValueError(f"decide = {decide!r} is invalid; allowed: 'scheduled', 'all'")
    sc = core._score(rep, flat, dec)
    return {"rewards": {t: v.view(E, C, -1) for t, v in sc.rewards.items()},
            "metrics": {k: v.view(E, C) for k, v in system_metrics(core, sc).items()},
            "region": {k: v.view(E, C, -1) for k, v in sc.region.items()}}
