"""The links: large-scale tables, fading and the gain of any (transmitter, user, subband) link.

Large scale: per (transmitter, user) pair, the linear gain (antennas, path loss, shadowing, beam
pattern), LoS state and Rician K-factor, [E, X, Ut] tables refreshed every
``large_scale_refresh_steps`` (UAV rows every step, as the UAVs move). Shadowing and LoS come from
spatially consistent fields (:func:`field`) keyed per propagation platform. Small scale: a
Rician draw per link and step (counter-based: only the links a caller asks for are drawn, and
every caller sees the same values), or an AR(1) fading state where ``fading_rho > 0``. Link
counters number the links ``(tx * Ut + user) * N + n``. Also :func:`link_state`, the full link
state of one env after a step.

Functions take the core (:class:`tntn_env.core.TNTNCore`: its config, topology, sizes and
precomputed per-transmitter constants) as first argument where they need it.
"""

from __future__ import annotations

from functools import partial

import torch

from . import channel as chn
from . import rng
from .state import S_FADE_RE, S_LOS, S_SHADOW, CoreState, last_for

FIELD_CELLS = 4096  # spatial-field grid cells per axis (positions wrap beyond)


def snr_feature_(lin: torch.Tensor, noise_w: float) -> torch.Tensor:
    """Observation feature of received powers ``lin`` (W): SNR in dB / 20, clipped to +-3; in
    place on ``lin`` (a fresh tensor of the caller's)."""
    lin.clamp_(min=1e-30)
    lin /= noise_w
    lin.log10_()
    lin *= 10
    lin /= 20
    return lin.clamp_(-3, 3)


def link_counters(tx, user, n, num_users: int, num_subbands: int) -> torch.Tensor:
    """int32 link counters (tx * Ut + user) * N + n at the inputs' broadcast shape (the
    generator's index type; links < 2**31 by construction)."""
    return rng.to_i32(tx * (num_users * num_subbands)) + rng.to_i32(user * num_subbands + n)


def link_index(tx, user, n, num_users: int, num_subbands: int):
    """(link counters, (tx, user) pairs), both int32 at the inputs' broadcast shape: the pair
    tx * Ut + user indexes the [E, X * Ut] large-scale tables, the counter pair * N + n the
    draws (the same values as :func:`link_counters`). For the kernels of ``compile="kernels"``,
    which take both materialised: deriving the pair from the counter inside a kernel costs an
    integer division per link (~20-30 % of the link kernels, scratch runs)."""
    pair = rng.to_i32(tx * num_users) + rng.to_i32(user)
    return pair * num_subbands + rng.to_i32(n), pair


def link_gain(key, link, pair, ls_gain, ls_k):
    """Gains [E, L] of flat links: large-scale gain times a Rician draw. ``key`` [E, 1] fading
    keys, ``link`` [E, L] int32 link counters (tx * Ut + user) * N + n, ``pair`` [E, L] their
    int32 (tx, user) pairs (:func:`link_index`), ``ls_gain``/``ls_k`` the [E, X * Ut]
    large-scale tables. Inside the kernels of ``compile="kernels"`` (contiguous rows: inductor
    vectorises the draw and the product in one pass)."""
    pair = pair.long()
    kf = torch.gather(ls_k, 1, pair)
    return rng.rician_power(key, link, kf) * torch.gather(ls_gain, 1, pair)


def field(core, fkey, xy, grid: float, stream: int, bilinear: bool):
    """Spatially consistent N(0,1) (bilinear, unit variance) or U(0,1) (nearest cell) field."""
    g = xy / grid
    if not bilinear:
        c = torch.floor(g).long() & (FIELD_CELLS - 1)
        idx = (c[..., 0] * FIELD_CELLS + c[..., 1]) * 16 + stream
        return rng.uniform(fkey, idx)
    c0 = torch.floor(g)
    f = g - c0
    c0 = c0.long()
    acc, wsum = 0.0, 0.0
    for dx in (0, 1):
        for dy in (0, 1):
            cx = (c0[..., 0] + dx) & (FIELD_CELLS - 1)
            cy = (c0[..., 1] + dy) & (FIELD_CELLS - 1)
            wgt = (f[..., 0] if dx else 1 - f[..., 0]) * (f[..., 1] if dy else 1 - f[..., 1])
            acc = acc + wgt * rng.normal(fkey, (cx * FIELD_CELLS + cy) * 16 + stream)
            wsum = wsum + wgt * wgt
    return acc / torch.sqrt(wsum)


def large_scale(core, st: CoreState, full: bool) -> None:
    """Set st.ls_gain/ls_los/ls_k (new tensors): UAV rows always, all rows if ``full`` (then
    also st.uav_los_u)."""
    kern = core._kernels_for(st)
    if full:
        tables = kern["tables"] if kern else partial(large_scale_tables, core)
        geom = () if core.orbit is None else satellite_geometry(core, st.t)
        st.ls_gain, st.ls_los, st.ls_k, st.uav_los_u = tables(st.user_xy, st.uav_xy,
                                                              st.field_key, *geom)
        return
    ls_gain, ls_los, ls_k = st.ls_gain.clone(), st.ls_los.clone(), st.ls_k.clone()
    if core.U > 0:
        # the row writes stay eager: compiled, inductor fused them into a pass computing
        # the UAV formula over every row (slower than the kernel plus these writes)
        rows = (kern["uav_rows"] if kern else partial(uav_rows, core))(st.uav_xy, st.user_xy,
                                                                       st.uav_los_u)
        # UAV rows are node Tn.. of each region: written through [E, J, M, Ut] views
        for table, new in zip((ls_gain, ls_los, ls_k), rows):
            table[:, :core.Xt].view(*new.shape[:2], core.M, -1)[:, :, core.Tn:] = new
    st.ls_gain, st.ls_los, st.ls_k = ls_gain, ls_los, ls_k


def uav_rows(core, uav_xy, user_xy, los_u):
    """Large-scale (gain, LoS, K-factor) of the UAV links, [E, J, U, Ut] each (Al-Hourani
    air-to-ground model); ``los_u`` [E, J*U, Ut] the links' LoS-field uniforms."""
    net, ch = core.cfg.network, core.cfg.channel
    E, J, U = user_xy.shape[0], core.J, core.U
    d2 = torch.linalg.vector_norm(uav_xy[:, :, None] - user_xy[:, None], dim=-1)
    dh = net.uav_altitude_m - net.ue_height_m
    d3 = torch.sqrt(d2 * d2 + dh * dh)
    el = chn.elevation_deg(d2, torch.full_like(d2, dh))
    los = los_u < chn.a2g_los_probability(el, ch.a2g_a, ch.a2g_b)
    pl = chn.fspl_db(d3, net.carrier_hz) + torch.where(los, ch.a2g_eta_los_db,
                                                       ch.a2g_eta_nlos_db)
    gain_db = ch.uav_antenna_gain_dbi + ch.ue_antenna_gain_dbi - pl
    return (chn.db_to_linear(gain_db).view(E, J, U, -1), los.view(E, J, U, -1),
            torch.where(los, core._k_uav, 0.0).view(E, J, U, -1))


def satellite_geometry(core, t: torch.Tensor) -> tuple:
    """With the orbit on: the serving satellite's (elevation in degrees, slant range in m, own
    beam's pattern gain in dB) at each region, [E, J] each, at steps ``t`` [E]."""
    o = core.orbit
    return (o.at(t, o.elevation_deg), o.at(t, o.slant_range_m), o.at(t, o.beam_gain_db))


def large_scale_tables(core, user_xy, uav_xy, field_key, sat_el=None, sat_range=None,
                       sat_beam_db=None):
    """Every row of the large-scale tables: (gain, LoS, K-factor) [E, X, Ut] and the UAV
    links' LoS-field uniforms [E, J*U, Ut], at the users' positions. ``sat_el``,
    ``sat_range``, ``sat_beam_db`` [E, J]: the satellite's geometry per region with the orbit
    on (:func:`satellite_geometry`); None: the fixed geometry of the topology."""
    cfg, topo = core.cfg, core.topo
    net, ch = cfg.network, cfg.channel
    fc = net.carrier_hz
    E = user_xy.shape[0]
    J, Tn, U = core.J, core.Tn, core.U
    ue = user_xy[:, None]  # [E, 1, Ut, 2]
    # Spatial fields of every platform at the users' positions, [E, P, Ut], in one pass each:
    # the cells and weights are computed once per user and broadcast over the platforms'
    # keys. Shadowing for TBS, HAP and satellite platforms; the LoS field for those and the
    # UAVs (whose LoS field changes only as users move).
    zp, up = core._field_props
    z_all = field(core, field_key[:, zp][..., None], ue, ch.shadowing_grid_m, S_SHADOW,
                        bilinear=True)
    u_all = field(core, field_key[:, up][..., None], ue, ch.los_grid_m, S_LOS,
                        bilinear=False)
    nt, nu, ni = J * Tn, J * U, core.I
    # a copy with the strides of a partial reset's merge (a view's strides would differ even
    # at E = 1, where a view is already "contiguous"): one memory layout for compiled graphs
    uav_los_u = u_all[:, nt:nt + nu].clone(memory_format=torch.contiguous_format)
    node_gain, node_los = [], []  # [E, J, Tn or U, Ut] blocks: TBS, then UAVs
    if Tn > 0:
        tbs = topo.tbs_xy.reshape(-1, 2)[None, :, None]  # [1, J*Tn, 1, 2]
        d2 = torch.linalg.vector_norm(tbs - ue, dim=-1)
        dh = net.tbs_height_m - net.ue_height_m
        d3 = torch.sqrt(d2 * d2 + dh * dh)
        z, u = z_all[:, :nt], u_all[:, :nt]
        los = u < chn.umi_los_probability(d2)
        pl = chn.umi_pathloss_db(d2, d3, fc, net.tbs_height_m, net.ue_height_m, los)
        sf = z * torch.where(los, ch.tbs_shadowing_los_db, ch.tbs_shadowing_nlos_db)
        gain_db = ch.tbs_antenna_gain_dbi + ch.ue_antenna_gain_dbi - pl - sf
        node_gain.append(chn.db_to_linear(gain_db).view(E, J, Tn, -1))
        node_los.append(los.view(E, J, Tn, -1))
    if U > 0:
        gain, los, _ = uav_rows(core, uav_xy, user_xy, uav_los_u)
        node_gain.append(gain)
        node_los.append(los)
    env = ch.ntn_environment
    # HAPs: one propagation per platform, expanded to its R spot beams.
    hap = topo.hap_xy[None, :, None]  # [1, I, 1, 2]
    d2 = torch.linalg.vector_norm(hap - ue, dim=-1)  # [E, I, Ut]
    dh = net.hap_altitude_m - net.ue_height_m
    d3 = torch.sqrt(d2 * d2 + dh * dh)
    el = chn.elevation_deg(d2, torch.full_like(d2, dh))
    z, u = z_all[:, nt:nt + ni], u_all[:, nt + nu:nt + nu + ni]
    hap_db, hap_los = ntn_gain_db(core, d3, el, z, u, ch.hap_antenna_gain_dbi, env)
    # Spot beam j points from HAP region_hap[j] at the centre of region j; the off-axis angle
    # of each user sets the aperture pattern (neighbouring regions get spill-over).
    spot_hap = topo.region_hap
    hxy = topo.hap_xy[spot_hap]  # [J, 2]
    bore = topo.region_centre_xy - hxy  # [J, 2]
    rel = user_xy[:, None] - hxy[None, :, None]  # [E, J, Ut, 2]
    dot = (rel * bore[None, :, None]).sum(-1) + dh * dh
    cos_t = dot / (torch.sqrt((rel * rel).sum(-1) + dh * dh)
                   * torch.sqrt((bore * bore).sum(-1) + dh * dh)[None, :, None])
    sin_t = torch.sqrt((1.0 - cos_t * cos_t).clamp(min=0.0))
    spot_db = hap_db[:, spot_hap] + chn.aperture_pattern_db(sin_t, ch.hap_antenna_gain_dbi)
    # Satellite: geometry per region (TR 38.811 slant range), one field for all beams.
    if sat_el is None:
        el = topo.sat_elevation_deg[topo.user_region][None, None].expand(E, 1, -1)
        d3 = topo.sat_slant_range_m[topo.user_region][None, None].expand(E, 1, -1)
    else:  # the orbit: the serving satellite's elevation and range at each user's region
        el = sat_el[:, None, topo.user_region]
        d3 = sat_range[:, None, topo.user_region]
    z, u = z_all[:, nt + ni:], u_all[:, nt + nu + ni:]
    sat_db, sat_los = ntn_gain_db(core, d3, el, z, u, ch.satellite_antenna_gain_dbi, env)
    beam_own = topo.region_beam[topo.user_region][None] == torch.arange(
        core.B, device=core.device)[:, None]  # [B, Ut]
    if sat_beam_db is None:
        beam_db = sat_db - torch.where(beam_own, 0.0, ch.satellite_sidelobe_db)[None]
    else:  # Earth-fixed beams steered at their regions: own beam's pattern, else side lobe
        beam_db = sat_db + torch.where(beam_own[None], sat_beam_db[:, None, topo.user_region],
                                       -ch.satellite_sidelobe_db)
    # rows: terrestrial nodes region by region, HAP spot beams, satellite beams
    ls_gain = torch.cat([torch.cat(node_gain, 2).view(E, core.Xt, -1),
                         chn.db_to_linear(spot_db), chn.db_to_linear(beam_db)], 1)
    ls_los = torch.cat([torch.cat(node_los, 2).view(E, core.Xt, -1), hap_los[:, spot_hap],
                        sat_los.expand(-1, core.B, -1)], 1)
    return ls_gain, ls_los, torch.where(ls_los, core._tx_k_lin[:, None], 0.0), uav_los_u


def ntn_gain_db(core, d3, el, z, u, tx_gain_dbi, env):
    """(gain in dB incl. antennas, LoS) of HAP or satellite links (TR 38.811: free-space loss,
    shadowing, clutter, gases, scintillation) at slant range ``d3`` and elevation ``el``, from
    the shadowing field ``z`` and LoS-field uniforms ``u``."""
    ch = core.cfg.channel
    los = u < chn.ntn_los_probability(el, env)
    pl = (chn.fspl_db(d3, core.cfg.network.carrier_hz)
          + z * chn.ntn_shadowing_sigma_db(el, los, env)
          + chn.ntn_clutter_loss_db(el, los, env)
          + chn.gas_loss_db(el, ch.gas_zenith_db) + ch.scintillation_db)
    return tx_gain_dbi + ch.ue_antenna_gain_dbi - pl, los


def gain(core, st: CoreState, tx, user, n):
    """Linear channel gain of links (tx, user, subband) at the state's realisation.

    ``tx``, ``user``, ``n`` broadcast to a shape [E, ...]; tx must be a valid index < X.
    Only these links are drawn (counter-based), so every caller sees the same values.
    """
    E = st.key.numel()
    shape = torch.broadcast_shapes(tx.shape, user.shape, n.shape)
    # index arithmetic at the inputs' own shapes, broadcast once: the (tx, user) pair for the
    # gathers (int64), the link counter tx * Ut * N + user * N + n for the draws (int32, the
    # generator's index type; links < 2**31 by construction) in one full-size add
    link = link_counters(tx, user, n, core.Ut, core.N)
    pair = (tx * core.Ut + user).expand(shape).reshape(E, -1)
    ls = torch.gather(st.ls_gain.reshape(E, -1), 1, pair).view(shape)
    kf = torch.gather(st.ls_k.reshape(E, -1), 1, pair).view(shape)
    if not core._correlated:
        kt = fade_key(core, st).view(E, *([1] * (len(shape) - 1)))
        # link and kf are fresh here: the draw may reuse their memory
        out = rng.rician_power(kt, link, kf, consume=True)  # fresh, the links' shape
        out *= ls
        return out
    fl = st.fade.reshape(E, -1, 2)
    li = link.long().reshape(E, -1, 1).expand(-1, -1, 2)
    xy = torch.gather(fl, 1, li).view(*shape, 2)
    mu = torch.sqrt(kf / (kf + 1.0))
    s = torch.sqrt(0.5 / (kf + 1.0))
    return ls * ((mu + s * xy[..., 0]) ** 2 + (s * xy[..., 1]) ** 2)


def fade_key(core, st: CoreState) -> torch.Tensor:
    """[E] key of the i.i.d. fading draws of the state's realisation."""
    return last_for(core, "fade_key", (st.rkey,), lambda k: rng.mix(k, S_FADE_RE))


def link_state(core, env: int = 0) -> dict:
    """Full link state of env ``env`` for the last step, as numpy arrays (docs/env.md, Link state
    contract)."""
    if core.last is None:
        raise RuntimeError("link_state() is available after a step()")
    sc, st = core.last, core._last_state.index(slice(env, env + 1))
    X, Ut, N, T, J, K = core.X, core.Ut, core.N, core.T, core.J, core.K
    dev = core.device
    gain = core._gain(st, torch.arange(X, device=dev).view(1, X, 1, 1),
                      torch.arange(Ut, device=dev).view(1, 1, Ut, 1),
                      torch.arange(N, device=dev).view(1, 1, 1, N))[0]
    users = sc.users[env]  # [J, N, T]
    holder = sc.holder[env]
    u_glob = torch.arange(J, device=dev)[:, None, None] * K + users.clamp(min=0)
    blocks = torch.zeros(Ut, N, device=dev)
    served = users >= 0
    n_idx = torch.arange(N, device=dev)[None, :, None].expand_as(users)
    blocks.index_put_((u_glob[served], n_idx[served]), torch.ones(int(served.sum()),
                                                                  device=dev), accumulate=True)
    serving = torch.full((Ut, N), -1, dtype=torch.long, device=dev)
    h_exp = holder[:, :, None].expand_as(users)
    serving[u_glob[served], n_idx[served]] = h_exp[served]
    sinr = torch.zeros(Ut, N, device=dev)
    sinr[u_glob[served], n_idx[served]] = sc.slot_sinr[env][served]
    div = core._tx_div[:X][serving.clamp(min=0)]
    share = torch.where(serving >= 0, blocks / (T * div), 0.0)
    sat = sc.sat_choice[env]
    beam_alloc = (sat[None] == torch.arange(1, core.B + 1, device=dev)[:, None])
    hc = sc.hap_choice[env]  # [J, N]
    node_alloc = (hc[:, None, :] == torch.arange(1, core.M + 1, device=dev)[None, :, None])
    d = {
        "gain": gain, "tx_power_w": sc.tx_power_w[env], "serving_tx": serving,
        "noise_w": torch.full((N,), core.noise_w, device=dev), "sinr": sinr,
        "rate_bps": sc.rate_bps[env], "demand_bps": st.demand_bps[0],
        "time_share": share, "tx_kind": core.topo.tx_kind, "tx_region": core.topo.tx_region,
        "user_region": core.topo.user_region, "beam_alloc": beam_alloc.long(),
        "satellite_direct": (sat == core.B + 1).long(),
        "node_alloc": node_alloc.reshape(J * core.M, N).long(),
        "hap_direct": (hc == core.M + 1).long(), "holder": holder,
        "user_xy": st.user_xy[0], "uav_xy": sc.uav_xy[env],
        "bandwidth_hz": torch.tensor(core.cfg.network.bandwidth_hz),
    }
    return {k: v.detach().cpu().numpy() for k, v in d.items()}
