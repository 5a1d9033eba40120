"""Allocation and masks: who holds each (region, subband), the power each stream gets, the
upper tiers' effective choices after this step's decisions, the fixed rules that stand in for a
tier without agents, and the action masks that follow from an allocation.

The satellite hands each subband to a beam (or serves it satellite-direct); a HAP hands each of
its regions' beam subbands to a node of the region (or serves it HAP-direct). The holder of
(region j, subband n) is then a transmitter index (TBS and UAVs region by region, then the HAP
spot beams, then the satellite beams; see topology.py), -1 where nobody holds it. Lower-tier
choices that a new upper-tier allocation no longer permits are voided (off).

Functions take the core (:class:`tntn_env.core.TNTNCore`) as first argument; values that depend
only on the allocation are computed once per allocation (:func:`tntn_env.state.last_for`).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import torch

from .state import CoreState, last_for


def fixed_hap_choice(core, sat_choice: torch.Tensor) -> torch.Tensor:
    """Equal split: the k-th subband handed to a region's beam goes to node k mod M."""
    beam = core.topo.region_beam
    given = sat_choice[:, None, :] == (beam[None, :, None] + 1)  # [E, J, N]
    rank = torch.cumsum(given.long(), dim=-1) - 1
    return torch.where(given, 1 + rank % core.M, torch.zeros_like(rank))


def default_actions(core, tier: str) -> torch.Tensor:
    """Default action per tier (difference rewards): equal split above, idle schedule below."""
    E = core.num_envs
    if tier == "satellite":
        return core._fixed_sat.view(1, 1, -1).expand(E, 1, -1).clone()
    if tier == "hap":
        sat = core.state.sat_choice
        return fixed_hap_choice(core, sat).view(E, core.I, core.R * core.N)
    a = torch.zeros(E, core.J, len(core.nvec["local"]), dtype=torch.long, device=core.device)
    a[..., core.N * core.T:core.N * core.T + core.N] = core.L - 1
    return a


def holders(core, sat_choice, hap_choice):
    """Holder per (region, subband) and availability flags from effective choices."""
    return last_for(core, "allocation", (sat_choice, hap_choice), core._allocation_of)


def holders_of(core, sat_choice, hap_choice):
    """:func:`holders` computed (the core calls it as ``core._allocation_of``)."""
    topo, M = core.topo, core.M
    beam = topo.region_beam[None, :, None]
    sat_direct = (sat_choice == core.B + 1)[:, None, :].expand(-1, core.J, -1)
    beam_has = sat_choice[:, None, :] == beam + 1  # [E, J, N]
    j = torch.arange(core.J, device=core.device)[None, :, None]
    node_tx = j * M + (hap_choice - 1)
    holder = torch.where(beam_has & (hap_choice >= 1) & (hap_choice <= M), node_tx, -1)
    holder = torch.where(beam_has & (hap_choice == M + 1), core.Xt + j, holder)
    holder = torch.where(sat_direct, core.Xt + core.J + beam, holder)
    return holder, beam_has, sat_direct


def stream_power(core, holder: torch.Tensor, power_w: torch.Tensor) -> torch.Tensor:
    """Per-stream power share [E, X] (W) of each transmitter for an allocation ``holder``,
    before the power level: platform power / streams it holds (docs/model.md, Power); ``power_w``
    [E, 4] the episode's per-tier powers."""
    return power_w[:, core._tx_power_col] / stream_counts(core, holder).clamp(min=1.0)


def holder_streams(core, holder: torch.Tensor, power_w: torch.Tensor):
    """(hidx, p_hold, div) of an allocation: the holder per (region, subband) with the dummy
    row X where there is none [E, J, N]; the holder's per-stream power before the power
    level [E, J, N] (W; 0 where there is no holder); its time split [E, J, N, 1]. Depends
    only on the allocation and the episode's powers: computed once per allocation."""
    return last_for(core, "holder_streams", (holder, power_w), partial(holder_streams_of, core))


def holder_streams_of(core, holder, power_w):
    """:func:`holder_streams` computed."""
    E, X = holder.shape[0], core.X
    hidx = torch.where(holder >= 0, holder, X)  # dummy row X
    p_share = torch.cat([stream_power(core, holder, power_w),
                         torch.zeros(E, 1, device=holder.device)], 1)
    p_hold = torch.gather(p_share, 1, hidx.view(E, -1)).view(holder.shape)
    return hidx, p_hold, core._tx_div[hidx][..., None]


def stream_counts(core, holder) -> torch.Tensor:
    """Number of streams sharing each transmitter's platform power, [E, X]."""
    return last_for(core, "stream_counts", (holder,), partial(stream_counts_of, core))


def stream_counts_of(core, holder) -> torch.Tensor:
    """:func:`stream_counts` computed."""
    E, X, J = holder.shape[0], core.X, core.J
    hidx = torch.where(holder >= 0, holder, X)
    cnt = torch.zeros(E, X + 1, device=core.device).scatter_add_(
        1, hidx.view(E, -1), torch.ones(E, hidx[0].numel(), device=core.device))[:, :X]
    spots = cnt[:, core.Xt:core.Xt + J].view(E, core.I, core.R).sum(-1)
    cnt[:, core.Xt:core.Xt + J] = spots.repeat_interleave(core.R, dim=1)
    cnt[:, core.Xt + J:] = cnt[:, core.Xt + J:] / (core.H * core.R)
    return cnt


def orbit_forbidden(core, sat_choice: torch.Tensor) -> torch.Tensor:
    """[E, N] bool: satellite choices that need the satellite in view (with the orbit on):
    every choice but off, or satellite-direct only (``OrbitConfig.orbit_outage_choices``)."""
    if core.cfg.orbit.orbit_outage_choices == "all":
        return sat_choice != 0
    return sat_choice == core.B + 1


def orbit_void(core, sat_choice: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``sat_choice`` [E, N] with the choices the orbit forbids at steps ``t`` [E] set to off
    (the satellite below the minimum elevation); the same tensor where the orbit is off."""
    if core.orbit is None:
        return sat_choice
    out = core.orbit.at(t, core.orbit.visible)[:, None]
    return torch.where(~out & orbit_forbidden(core, sat_choice), 0, sat_choice)


def orbit_void_state(core, st: CoreState) -> CoreState:
    """``st`` with the satellite choices its step forbids set to off and the HAP choices on
    subbands its beam no longer holds voided; ``st`` itself (the same tensors, so that what
    depends on the allocation is not recomputed) where nothing changes."""
    if core.orbit is None:
        return st
    sat = orbit_void(core, st.sat_choice, st.t)
    if not torch.compiler.is_compiling() and bool((sat == st.sat_choice).all()):
        return st
    beam_has = sat[:, None, :] == core.topo.region_beam[None, :, None] + 1
    hap = torch.where((st.hap_choice != 0) & ~beam_has, 0, st.hap_choice)
    return replace(st, sat_choice=sat, hap_choice=hap)


def upper_choices(core, st, actions, dec, fixed: bool = False):
    """Effective satellite and HAP choices after this step's decisions (with voiding).
    ``fixed``: no upper tier decides on this step in any env (known on the host), so they
    are the state's own choice tensors (the same objects: :func:`~tntn_env.state.last_for` then
    hands back what depends only on them), with nothing voided."""
    E = st.key.numel()
    if fixed:
        return (st.sat_choice, st.hap_choice,
                torch.zeros(E, core.I, dtype=torch.long, device=core.device))
    if "satellite" in core.tiers and "satellite" in actions:
        sat = torch.where(dec["satellite"][:, None], actions["satellite"].view(E, core.N),
                          st.sat_choice)
        sat = orbit_void(core, sat, st.t)
    else:
        sat = st.sat_choice
    if "hap" in core.tiers:
        hap = st.hap_choice
        if "hap" in actions:
            hap = torch.where(dec["hap"][:, None, None],
                              actions["hap"].view(E, core.J, core.N), hap)
        beam_has = sat[:, None, :] == core.topo.region_beam[None, :, None] + 1
        bad = (hap != 0) & ~beam_has
        hap = torch.where(bad, 0, hap)
        voided = bad.sum(-1).view(E, core.I, core.R).sum(-1)  # per HAP agent
    else:
        hap = fixed_hap_choice(core, sat)
        voided = torch.zeros(E, core.I, dtype=torch.long, device=core.device)
    return sat, hap, voided


def effective_allocation(core) -> dict:
    """Current effective allocation per env: ``holder`` [E, J, N] (transmitter holding
    subband n in region j, -1 none), ``beam_alloc`` [E, B, N], ``satellite_direct`` [E, N],
    ``hap_choice`` [E, J, N] (0 off, 1..M node, M+1 HAP-direct)."""
    st = core.state
    holder, _, _ = holders(core, st.sat_choice, st.hap_choice)
    beams = torch.arange(1, core.B + 1, device=core.device)
    return {"holder": holder, "beam_alloc": st.sat_choice[:, None, :] == beams[:, None],
            "satellite_direct": st.sat_choice == core.B + 1, "hap_choice": st.hap_choice}


def masks_from(core, sat_choice, hap_choice, t: torch.Tensor | None = None) -> dict:
    """Flat binary masks per tier [E, agents, sum(nvec)] of effective choices; ``t`` [E] the
    envs' steps (with the orbit on, the satellite's choices that need it in view are masked
    where it is below the minimum elevation)."""
    E, N, J, I, R = sat_choice.shape[0], core.N, core.J, core.I, core.R
    holder, beam_has, sat_direct = holders(core, sat_choice, hap_choice)
    out = {}
    if "satellite" in core.tiers:
        m = torch.ones(E, 1, N * (core.B + 2), dtype=torch.bool, device=core.device)
        if core.orbit is not None and t is not None:
            choice = torch.arange(core.B + 2, device=core.device).repeat(N)
            need = orbit_forbidden(core, choice[None])  # [1, N * (B + 2)]
            seen = core.orbit.at(t, core.orbit.visible)[:, None, None]
            m = m & (seen | ~need[:, None])
        out["satellite"] = m
    if "hap" in core.tiers:
        m = torch.zeros(E, J, N, core.M + 2, dtype=torch.bool, device=core.device)
        m[..., 0] = True
        m[..., 1:] = beam_has[..., None]
        out["hap"] = m.view(E, I, R * N * (core.M + 2))
    avail = holder >= 0
    cm = max(core.nvec["local"])
    m = torch.zeros(E, J, len(core.nvec["local"]), cm, dtype=torch.bool, device=core.device)
    nt = N * core.T
    users = m[:, :, :nt].view(E, J, N, core.T, cm)
    users[..., 0] = True
    users[..., 1:core.K + 1] = avail[..., None, None]
    power = m[:, :, nt:nt + N]
    power[..., core.L - 1] = True
    power[..., :core.L - 1] = (avail & ~sat_direct)[..., None]
    m[:, :, nt + N:, :5] = True
    out["local"] = m.view(E, J, -1)[..., core._flat_sel["local"]]
    return out


def masks_after(core, st: CoreState, actions: dict, dec: dict) -> dict:
    """``TNTNCore.masks_for`` on state ``st`` with decisions ``dec`` (the compiled step's form)."""
    sat, hap, _ = upper_choices(core, st, actions, dec)
    return masks_from(core, sat, hap, st.t)


def padded_mask(core, tier: str, flat: torch.Tensor) -> torch.Tensor:
    """Flat mask [..., sum(nvec)] -> [..., positions, max(nvec)] (False beyond a position)."""
    nv = core.nvec[tier]
    out = torch.zeros(*flat.shape[:-1], len(nv) * max(nv), dtype=torch.bool,
                      device=flat.device)
    out[..., core._flat_sel[tier]] = flat
    return out.view(*flat.shape[:-1], len(nv), max(nv))
