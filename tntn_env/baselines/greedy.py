"""A strong classical heuristic: load-proportional spectrum split, max-RSRP association,
marginal-utility (QoS-first proportional-fair) scheduling, what-if power control.

Batched over environments; loops run only over a handful of tiers, variants and scheduling
rounds, never over users or subbands. Every tier decides top-down with the rules below and picks
among a few candidate variants by what-if evaluation on the frozen state (``core.evaluate``), so
the choice is scored by the environment's own physics and reward (no second model of it):

- Satellite (when it decides): the subbands are split across beams in proportion to each beam's
  requested rate (largest remainder, at least one each), keeping 0, 1 or 2 satellite-direct
  subbands; the equal split is a further candidate. Each candidate is scored with the HAP rule
  and scheduling below at full power; the best system reward wins.
- HAP (when it decides), per region, a few splits of the beam's subbands over the region's
  transmitters (TBS, UAV, the HAP's spot beam), each in contiguous blocks: (a) marginal sum-rate:
  subband by subband to the transmitter whose estimated rate grows most, a transmitter holding q
  subbands having q times the mean log2(1 + SNR/q) of its best T users (its power split over q;
  large-scale gains ``state.ls_gain``); (b) load-proportional: each user associated with the
  transmitter of strongest received power (max-RSRP), subbands in proportion to the associated
  users' requested rate (largest remainder, one at least to every transmitter with users);
  (a) and (b) with aligned or mirrored block order between neighbouring regions; (b) over nodes
  only; all HAP-direct; the equal split. The best combination of per-region variants of each HAP
  is kept (what-if).
- Local (every step), per region: slots (subband, time block) are filled one at a time, each
  time with the (slot, user) pair of largest marginal utility
  ``1.5 dR/W + 0.5 dJain - c * d(QoS shortfall) + d_thr * d(served throughput)/W``, where the
  rate of user k on subband n is estimated from the realised signal of the holder (the local
  observation) and the mean interference of every other holder of n (large-scale gains, full
  power). A few weightings (QoS-first, proportional-fair, max-SINR, demand-aware) are scored by
  what-if and the best per region is kept. Power: all streams at the top level, then single
  reductions on subbands reused by another region are scored (what-if), the best reduction per
  subband is combined, and the best of {all-max, combined, best single} is kept.
- UAVs move toward the demand-weighted centroid of the users nearest to them and never leave
  their region.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch

from ..allocation import orbit_void
from .common import Policy, current_actions, holders, replace_state, stream_power

_MOVES = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
# Scheduling weightings (se, fairness, per-user QoS shortfall, served throughput).
SCHED_VARIANTS = ((1.5, 0.5, 0.5, 0.0), (1.5, 0.5, 0.0, 0.0), (1.5, 0.0, 0.0, 0.0),
                  (1.5, 0.5, 0.5, 0.5))
HAP_VARIANTS = ("sumrate", "sumrate_mirror", "assoc", "assoc_mirror", "nodes", "spot", "equal")


# ------------------------------------------------------------------------------ estimates
def _obs_slice(core, tier: str, name: str) -> slice:
    off = 0
    for n, size, *_ in core.obs_spec[tier]:
        if n == name:
            return slice(off, off + size)
        off += size
    raise KeyError(name)


def link_rates(core, st, sat, hap, use_fading: bool = True):
    """Estimated per-slot rate [E', J, K, N] (bps) of user k of region j on subband n.

    Signal: the holder's realised gain at its power share (the local observation's holder SNR,
    computed by ``core.observe`` for the candidate allocation); interference: every other
    transmitter holding n anywhere, at its power share, with mean (large-scale) gain.
    """
    E, J, K, N, T, X = sat.shape[0], core.J, core.K, core.N, core.T, core.X
    dev = sat.device
    holder, direct = holders(core, sat, hap)
    p = stream_power(core, st, holder)  # [E, X]
    u_of = torch.arange(J * K, device=dev).view(1, J, K, 1)
    hcl = holder.clamp(min=0)
    if use_fading:
        obs = core.observe(replace_state(st, sat_choice=sat, hap_choice=hap))["local"]
        feat = obs[..., _obs_slice(core, "local", "holder_snr")].view(E, J, K, N)
        sig = 10.0 ** (2.0 * feat.double()) * core.noise_w
    else:
        ls = st.ls_gain.double()
        g = ls[torch.arange(E, device=dev).view(E, 1, 1, 1), hcl[:, :, None, :], u_of]
        sig = g * torch.gather(p.double(), 1, hcl.view(E, -1)).view(E, J, 1, N)
    # Mean interference: total received power from every holder of n, minus the serving one.
    txp = torch.zeros(E, X + 1, N, dtype=torch.float64, device=dev)
    hidx = torch.where(holder >= 0, holder, X)
    pj = torch.gather(torch.cat([p, torch.zeros(E, 1, device=dev)], 1).double(), 1,
                      hidx.view(E, -1)).view(E, J, N)
    txp.scatter_(1, hidx, pj)
    txp = txp[:, :X]
    ls = st.ls_gain.double()  # [E, X, Ut]
    total = torch.einsum("exu,exn->eun", ls, txp).view(E, J, K, N)
    own = ls[torch.arange(E, device=dev).view(E, 1, 1, 1), hcl[:, :, None, :], u_of] * \
        pj[:, :, None, :]
    interf = (total - own).clamp(min=0.0)
    sinr = sig / (interf + core.noise_w)
    div = torch.where(direct, float(core.H * core.R), 1.0)[:, :, None, :]
    w = core.cfg.network.bandwidth_hz / N
    rate = (w / (T * div)) * torch.log2(1.0 + sinr)
    return torch.where(holder[:, :, None, :] >= 0, rate, 0.0).float()


def schedule(core, st, rate, held, weights):
    """Greedy slot filling by marginal utility. ``rate`` [E', J, K, N] per slot, ``held``
    [E', J, N], ``weights`` (se, fairness, qos, throughput) as a 4-tuple or a [E', 4] tensor;
    returns users [E', J, N, T] (-1 none).

    Each round gives, in every region, one free slot to the (user, subband) pair of largest
    marginal utility ``a dR/W + b dJain + c min(dR, QoS shortfall)/R_min + d min(dR, unmet
    demand)/W`` (stops where no pair has a positive gain)."""
    E, J, K, N = rate.shape
    T, dev = core.T, rate.device
    wt = torch.as_tensor(weights, dtype=rate.dtype, device=dev)
    wt = wt.expand(E, 4) if wt.dim() == 1 else wt
    a_se, b_fair, c_qos, d_thr = (wt[:, i].view(E, 1, 1, 1) for i in range(4))
    use_thr = bool((wt[:, 3] != 0).any())
    W = core.cfg.network.bandwidth_hz
    rmin = core.cfg.demand.qos_min_rate_bps
    dem = st.demand_bps.view(E, J, K, 1)
    R = torch.zeros(E, J, K, device=dev)
    rem = held.long() * T  # [E, J, N]
    users = torch.full((E, J, N, T), -1, dtype=torch.long, device=dev)
    e_ar = torch.arange(E, device=dev)[:, None].expand(E, J)
    j_ar = torch.arange(J, device=dev)[None].expand(E, J)
    base = a_se * rate / W  # [E, J, K, N]
    rate2x, ratesq = 2.0 * rate, rate * rate
    dead = rate <= 0
    c_q, d_w = c_qos / rmin, d_thr / W
    for _ in range(N * T):
        if not bool((rem > 0).any()):
            break
        s1, s2 = R.sum(-1, keepdim=True)[..., None], (R * R).sum(-1, keepdim=True)[..., None]
        jain = torch.where(s2 > 0, s1 * s1 / (K * s2.clamp(min=1e-30)), 0.0)  # [E, J, 1, 1]
        Rk = R[..., None]  # [E, J, K, 1]
        n1 = s1 + rate
        n2 = (s2 + Rk * rate2x + ratesq).clamp(min=1e-30)
        gain = base + b_fair * (n1 * n1 / (K * n2) - jain)
        gain = gain + c_q * torch.minimum(rate, (rmin - Rk).clamp(min=0))
        if use_thr:
            gain = gain + d_w * torch.minimum(rate, (dem - Rk).clamp(min=0))
        gain = gain.masked_fill(dead | (rem[:, :, None, :] <= 0), -math.inf)
        best, idx = gain.view(E, J, -1).max(-1)
        go = best > 0
        if not bool(go.any()):
            break
        k, n = idx // N, idx % N
        blk = (T - rem[e_ar, j_ar, n]).clamp(max=T - 1)
        cur = users[e_ar, j_ar, n, blk]
        users[e_ar, j_ar, n, blk] = torch.where(go, k, cur)
        rem[e_ar, j_ar, n] -= go.long()
        R[e_ar, j_ar, k] += torch.where(go, rate[e_ar, j_ar, k, n], 0.0)
    return users


def rule_schedule(core, st, sat, hap, weights=SCHED_VARIANTS[0], use_fading: bool = True):
    """The greedy's scheduling rule for given effective allocations (no what-if), with every
    idle block of a held satellite-direct subband filled by its best user (full buffer there),
    so that whether a satellite beam transmits never depends on the rule. users [E', J, N, T].

    ``weights`` may be a list of weightings: then users [V, E', J, N, T] (rates computed once).
    """
    many = isinstance(weights, list)
    wl = weights if many else [weights]
    rate = link_rates(core, st, sat, hap, use_fading)
    holder, direct = holders(core, sat, hap)
    E, V = rate.shape[0], len(wl)
    wt = torch.tensor(wl, dtype=rate.dtype, device=rate.device).repeat_interleave(E, 0)
    st_v = SimpleNamespace(demand_bps=st.demand_bps.repeat(V, 1))  # schedule reads demand only
    users = schedule(core, st_v, rate.repeat(V, 1, 1, 1),
                     (holder >= 0).repeat(V, 1, 1), wt).view(V, E, *holder.shape[1:], core.T)
    best = rate.argmax(2)[None, ..., None].expand_as(users)  # [V, E', J, N, T]
    fill = (users < 0) & (direct & (holder >= 0))[None, ..., None]
    users = torch.where(fill, best, users)
    return users if many else users[0]


def uav_moves(core, st) -> torch.Tensor:
    """UAV moves [E, J, U]: toward the demand-weighted centroid of the users nearest to each UAV
    of the region, among the moves that keep it inside the region."""
    E, J, U, K = st.t.shape[0], core.J, core.U, core.K
    dev = st.t.device
    if U == 0:
        return torch.zeros(E, J, 0, dtype=torch.long, device=dev)
    size = core.cfg.network.region_size_m
    step = core.cfg.network.uav_step_m
    uav = st.uav_xy.view(E, J, U, 2)
    ue = st.user_xy.view(E, J, K, 2)
    w = st.demand_bps.view(E, J, K)
    d = torch.linalg.vector_norm(ue[:, :, None] - uav[:, :, :, None], dim=-1)  # [E, J, U, K]
    near = torch.nn.functional.one_hot(d.argmin(2), U).permute(0, 1, 3, 2).float()  # [E,J,U,K]
    wt = near * w[:, :, None]
    tgt = (wt[..., None] * ue[:, :, None]).sum(3) / wt.sum(3, keepdim=True).clamp(min=1e-9)
    tgt = torch.where(wt.sum(3, keepdim=True) > 0, tgt, uav)
    cand = uav[..., None, :] + _MOVES.to(dev) * step  # [E, J, U, 5, 2]
    o = core.topo.region_origin_xy.to(dev).view(1, J, 1, 1, 2)
    inside = ((cand >= o) & (cand <= o + size)).all(-1)
    dist = torch.linalg.vector_norm(cand - tgt[..., None, :], dim=-1)
    dist = dist + torch.arange(5, device=dev) * 1e-6  # ties: prefer staying
    dist = torch.where(inside, dist, dist + 1e9)
    return dist.argmin(-1)


def local_action(core, users, levels, moves) -> torch.Tensor:
    """Assemble local actions [..., J, N*T + N + U] from users (-1 none), levels, UAV moves."""
    lead = users.shape[:-3]
    J, N, T, U = core.J, core.N, core.T, core.U
    u = (users + 1).reshape(*lead, J, N * T)
    return torch.cat([u, levels.reshape(*lead, J, N), moves.reshape(*lead, J, U)], -1).long()


def hap_rule(core, st, sat, variant: str) -> torch.Tensor:
    """HAP choice [E', J, N] for a given effective satellite choice [E', N]."""
    E, J, M, K = sat.shape[0], core.J, core.M, core.K
    dev = sat.device
    beam_has = sat[:, None, :] == core.topo.region_beam.to(dev)[None, :, None] + 1
    if variant == "equal":
        return core.fixed_hap_choice(sat)
    if variant == "spot":
        return torch.where(beam_has, M + 1, 0)
    H = M + 1
    j = torch.arange(J, device=dev)
    tx = torch.cat([j[:, None] * M + torch.arange(M, device=dev)[None],
                    (core.Xt + j)[:, None]], 1)  # [J, H]
    ptx = st.power_w[:, core.topo.tx_kind.to(dev)]  # [E, X]
    ptx = torch.where((torch.arange(core.X, device=dev) >= core.Xt)
                      & (torch.arange(core.X, device=dev) < core.Xt + J), ptx / core.R, ptx)
    uu = (j[:, None] * K + torch.arange(K, device=dev)[None])  # [J, K]
    rsrp = st.ls_gain[:, tx[:, :, None], uu[:, None, :]] * ptx[:, tx][..., None]  # [E, J, H, K]
    if variant == "nodes":
        rsrp[:, :, M] = -1.0
    nb = beam_has.sum(-1)  # [E, J]
    if variant.startswith("sumrate"):
        # Marginal sum-rate split: each subband in turn goes to the transmitter whose estimated
        # rate gains most, the rate of a transmitter with q subbands being q times the mean
        # log2(1 + SNR/q) of its best T users (its power is split over the q subbands).
        snr = rsrp / core.noise_w  # [E, J, H, K]
        top = snr.topk(min(core.T, K), dim=-1).values  # [E, J, H, T]

        def value(q):
            qf = q.float()[..., None]
            v = torch.log2(1.0 + top / qf.clamp(min=1.0)).mean(-1)
            return torch.where(q > 0, q.float() * v, 0.0)

        quota = torch.zeros(E, J, H, dtype=torch.long, device=dev)
        for it in range(core.N):
            gain = value(quota + 1) - value(quota)
            pick = torch.nn.functional.one_hot(gain.argmax(-1), H)
            quota = quota + pick * (it < nb)[..., None].long()
    else:
        assoc = rsrp.argmax(2)  # [E, J, K]
        w = st.demand_bps.view(E, J, K)
        load = torch.zeros(E, J, H, device=dev).scatter_add_(2, assoc, w)
        pos = load > 0
        npos = pos.sum(-1)
        base = torch.where((nb >= npos)[..., None], pos.long(), 0)
        extra = (nb - base.sum(-1)).clamp(min=0)
        share = extra[..., None] * load / load.sum(-1, keepdim=True).clamp(min=1e-9)
        fl = share.floor()
        left = extra - fl.sum(-1).long()
        frac = share - fl
        rank = torch.argsort(torch.argsort(-frac, dim=-1, stable=True), dim=-1)
        quota = base + fl.long() + (rank < left[..., None]).long()  # [E, J, H]
    cum = torch.cumsum(quota, -1)
    rk = torch.cumsum(beam_has.long(), -1) - 1  # rank of subband among the region's
    if variant.endswith("_mirror"):
        odd = (torch.arange(J, device=dev) % 2 == 1)[None, :, None]
        rk = torch.where(odd, nb[..., None] - 1 - rk, rk)
    h = (rk[..., None] >= cum[:, :, None, :]).sum(-1).clamp(max=H - 1)  # [E, J, N]
    return torch.where(beam_has, h + 1, 0)


def satellite_candidates(core, st, direct_options=(0, 1, 2)) -> torch.Tensor:
    """Candidate satellite choices [E, C, N]: demand-proportional beam splits with d direct
    subbands (the last d), plus the equal split."""
    E, N, B, J, K = st.t.shape[0], core.N, core.B, core.J, core.K
    dev = st.t.device
    dem = st.demand_bps.view(E, J, K).sum(-1)
    bd = torch.zeros(E, B, device=dev).index_add_(1, core.topo.region_beam.to(dev), dem)
    cands = []
    for d in direct_options:
        n = N - d
        if n < 1 or d < 0:
            continue
        base = 1 if n >= B else 0
        extra = n - base * B
        share = extra * bd / bd.sum(-1, keepdim=True).clamp(min=1e-9)
        fl = share.floor()
        left = extra - fl.sum(-1).long()
        rank = torch.argsort(torch.argsort(-(share - fl), dim=-1, stable=True), dim=-1)
        quota = base + fl.long() + (rank < left[:, None]).long()  # [E, B]
        cum = torch.cumsum(quota, -1)
        pos = torch.arange(N, device=dev)[None]
        beam = (pos[..., None] >= cum[:, None, :]).sum(-1)  # [E, N]
        choice = torch.where(pos < n, (beam + 1).clamp(max=B), B + 1)
        cands.append(choice)
    fixed = 1 + (torch.arange(N, device=dev) * B) // N
    cands.append(fixed[None].expand(E, -1))
    out = torch.stack(cands, 1)
    if core.orbit is not None:  # choices that need the satellite in view: off while it is not
        C = out.shape[1]
        out = orbit_void(core, out.reshape(E * C, N), st.t.repeat_interleave(C)).view(E, C, N)
    return out


class GreedyPolicy(Policy):
    """The classical heuristic described in the module docstring.

    Args:
        direct_options: numbers of satellite-direct subbands tried by the satellite rule.
        power_search: score reduced power levels on reused subbands (what-if); else all max.
        use_fading: schedule on the realised fading of the holder link (perfect CSI, as the
            agents observe it); else on large-scale gains.
    """

    name = "greedy"

    def __init__(self, direct_options=(0, 1, 2), power_search: bool = True,
                 use_fading: bool = True, sched_variants=SCHED_VARIANTS,
                 hap_variants=HAP_VARIANTS):
        super().__init__()
        self.direct_options = tuple(direct_options)
        self.power_search = power_search
        self.use_fading = use_fading
        self.sched_variants = tuple(sched_variants)
        self.hap_variants = tuple(hap_variants)

    # -------------------------------------------------------------- scoring helpers
    @staticmethod
    def _score(core, sat, hap, loc):
        """Evaluate C candidates: sat [E, C, N], hap [E, C, J, N], loc [E, C, J, Dl]."""
        E, C = loc.shape[:2]
        acts = {"local": loc}
        if "satellite" in core.tiers:
            acts["satellite"] = sat.reshape(E, C, 1, core.N)
        if "hap" in core.tiers:
            acts["hap"] = hap.reshape(E, C, core.I, core.R * core.N)
        out = core.evaluate(acts, decide="scheduled")
        return out["metrics"]["reward"], out["region"]["reward"]

    def _effective(self, core, st, dec, sat_a, hap_a):
        """Effective allocation [E', ...] after this step's decisions (rows may be E*C)."""
        E = sat_a.shape[0]
        rep = E // st.t.shape[0]
        dsat = dec["satellite"].repeat_interleave(rep)
        dhap = dec["hap"].repeat_interleave(rep)
        sat_st = st.sat_choice.repeat_interleave(rep, 0)
        sat = torch.where(dsat[:, None], sat_a, sat_st) if "satellite" in core.tiers else sat_st
        if "hap" in core.tiers:
            hap = torch.where(dhap[:, None, None], hap_a,
                              st.hap_choice.repeat_interleave(rep, 0))
            beam_has = sat[:, None, :] == core.topo.region_beam.to(sat.device)[None, :, None] + 1
            hap = torch.where(beam_has, hap, 0)
        else:
            hap = core.fixed_hap_choice(sat)
        return sat, hap

    def _schedule_rows(self, core, st_rows, sat, hap, weights):
        rate = link_rates(core, st_rows, sat, hap, self.use_fading)
        holder, _ = holders(core, sat, hap)
        return schedule(core, st_rows, rate, holder >= 0, weights)

    def _full_power(self, core, shape_lead, dev):
        return torch.full((*shape_lead, core.J, core.N), core.L - 1, dtype=torch.long, device=dev)

    # -------------------------------------------------------------- tiers
    def _upper(self, core, st, dec):
        """Satellite and HAP actions [E, N], [E, J, N] (state choices where not deciding)."""
        E, N, J, dev = st.t.shape[0], core.N, core.J, st.t.device
        moves = uav_moves(core, st)
        sat_a = st.sat_choice.clone()
        hap_a = st.hap_choice.clone()
        has_sat, has_hap = "satellite" in core.tiers, "hap" in core.tiers
        if has_sat and bool(dec["satellite"].any()):
            cs = satellite_candidates(core, st, self.direct_options)  # [E, Cs, N]
            hv = ("sumrate", "equal") if has_hap else ("equal",)
            C = cs.shape[1] * len(hv)
            sat_c = cs.repeat_interleave(len(hv), 1).reshape(E * C, N)
            st_r = st.repeat(C)
            hap_c = torch.stack([hap_rule(core, st_r, sat_c, v).view(E, cs.shape[1], len(hv),
                                                                    J, N)[:, :, i]
                                 for i, v in enumerate(hv)], 2).view(E * C, J, N)
            sat_e, hap_e = self._effective(core, st, dec, sat_c, hap_c)
            users = self._schedule_rows(core, st_r, sat_e, hap_e, self.sched_variants[0])
            loc = local_action(core, users, self._full_power(core, (E * C,), dev),
                               moves.repeat_interleave(C, 0)).view(E, C, J, -1)
            r, _ = self._score(core, sat_c.view(E, C, N), hap_c.view(E, C, J, N), loc)
            best = r.argmax(1)
            e = torch.arange(E, device=dev)
            sat_a = torch.where(dec["satellite"][:, None], sat_c.view(E, C, N)[e, best], sat_a)
            hap_a = torch.where(dec["satellite"][:, None, None],
                                hap_c.view(E, C, J, N)[e, best], hap_a)
        if has_hap and bool(dec["hap"].any()):
            sat_e, _ = self._effective(core, st, dec, sat_a, hap_a)
            hv = self.hap_variants
            V, R, I = len(hv), core.R, core.I
            per = torch.stack([hap_rule(core, st, sat_e, v) for v in hv], 1)  # [E, V, J, N]
            if V ** R <= 64:
                combos = torch.cartesian_prod(*[torch.arange(V, device=dev)] * R).view(-1, R)
            else:
                combos = torch.arange(V, device=dev)[:, None].expand(V, R)
            C = combos.shape[0]
            region_var = combos[:, torch.arange(J, device=dev) % R]  # [C, J]
            hap_c = per[:, region_var, torch.arange(J, device=dev)[None], :]  # [E, C, J, N]
            sat_c = sat_a[:, None].expand(E, C, N).reshape(E * C, N)
            st_r = st.repeat(C)
            sat_e, hap_e = self._effective(core, st, dec, sat_c, hap_c.reshape(E * C, J, N))
            users = self._schedule_rows(core, st_r, sat_e, hap_e, self.sched_variants[0])
            loc = local_action(core, users, self._full_power(core, (E * C,), dev),
                               moves.repeat_interleave(C, 0)).view(E, C, J, -1)
            _, reg = self._score(core, sat_c.view(E, C, N), hap_c, loc)
            per_hap = reg.view(E, C, I, R).sum(-1)  # [E, C, I]
            best = per_hap.argmax(1)  # [E, I]
            # HAP i keeps its regions' rows of its best combination.
            hap_best = hap_c.view(E, C, I, R, N).gather(
                1, best[:, None, :, None, None].expand(E, 1, I, R, N)).view(E, J, N)
            hap_a = torch.where(dec["hap"][:, None, None], hap_best, hap_a)
        return sat_a, hap_a, moves

    def _local(self, core, st, dec, sat_a, hap_a, moves):
        E, J, N, T, L, dev = st.t.shape[0], core.J, core.N, core.T, core.L, st.t.device
        sat_e, hap_e = self._effective(core, st, dec, sat_a, hap_a)
        holder, direct = holders(core, sat_e, hap_e)
        held = holder >= 0
        rate = link_rates(core, st, sat_e, hap_e, self.use_fading)
        V = len(self.sched_variants)
        wts = torch.tensor(self.sched_variants, dtype=rate.dtype, device=dev).repeat(E, 1)
        users_v = schedule(core, st.repeat(V), rate.repeat_interleave(V, 0),
                           held.repeat_interleave(V, 0), wts).view(E, V, J, N, T)
        top = self._full_power(core, (E,), dev)
        e = torch.arange(E, device=dev)
        if V > 1:
            loc = local_action(core, users_v, top[:, None].expand(E, V, J, N),
                               moves[:, None].expand(E, V, *moves.shape[1:]))
            _, reg = self._score(core, sat_a[:, None].expand(E, V, N),
                                 hap_a[:, None].expand(E, V, J, N), loc)
            best = reg.argmax(1)  # [E, J]
            users = users_v[e[:, None], best, torch.arange(J, device=dev)[None]]
        else:
            users = users_v[:, 0]
        levels = top
        if self.power_search and L > 1:
            levels = self._power(core, sat_a, hap_a, users, moves, holder, direct, top)
        return local_action(core, users, levels, moves)

    def _power(self, core, sat_a, hap_a, users, moves, holder, direct, top):
        E, J, N, L, dev = users.shape[0], core.J, core.N, core.L, users.device
        active = (users >= 0).any(-1) & (holder >= 0)
        tx = torch.where(active, holder, -1)
        # reused: another region has a different active transmitter on the subband
        other = (tx[:, :, None, :] >= 0) & (tx[:, :, None, :] != tx[:, None, :, :])
        reused = other.any(1) & active & ~direct  # [E, J, N]
        jj, nn, ll = torch.meshgrid(torch.arange(J, device=dev), torch.arange(N, device=dev),
                                    torch.arange(L - 1, device=dev), indexing="ij")
        jj, nn, ll = jj.reshape(-1), nn.reshape(-1), ll.reshape(-1)
        D = jj.numel()
        cand = top[:, None].repeat(1, D + 1, 1, 1)  # [E, D+1, J, N]
        ok = reused[:, jj, nn]  # [E, D]
        d_ar = torch.arange(1, D + 1, device=dev)
        cand[:, d_ar, jj, nn] = torch.where(ok, ll[None], L - 1)
        def score(levels_c):
            c = levels_c.shape[1]
            loc = local_action(core, users[:, None].expand(E, c, *users.shape[1:]), levels_c,
                               moves[:, None].expand(E, c, *moves.shape[1:]))
            r, _ = self._score(core, sat_a[:, None].expand(E, c, N),
                               hap_a[:, None].expand(E, c, J, N), loc)
            return r

        r = score(cand)
        gain = r[:, 1:] - r[:, :1]  # [E, D]
        gain = torch.where(ok, gain, -math.inf)
        # best improving reduction per subband (over regions and levels), combined
        g = gain.view(E, J, N, L - 1).permute(0, 2, 1, 3).reshape(E, N, J * (L - 1))
        gb, gi = g.max(-1)  # [E, N]
        jb, lb = gi // (L - 1), gi % (L - 1)
        comb = top.clone()
        sel = gb > 0
        e2 = torch.arange(E, device=dev)[:, None].expand(E, N)
        n2 = torch.arange(N, device=dev)[None].expand(E, N)
        comb[e2[sel], jb[sel], n2[sel]] = lb[sel]
        e = torch.arange(E, device=dev)
        best_single = cand[e, 1 + gain.argmax(1)]
        final = torch.stack([top, comb, best_single], 1)
        rf = score(final)
        return final[e, rf.argmax(1)]

    # -------------------------------------------------------------- act
    def act(self, core) -> dict:
        st = core.state
        dec = core.decides()
        E = st.t.shape[0]
        sat_a, hap_a, moves = self._upper(core, st, dec)
        out = {}
        if "satellite" in core.tiers:
            out["satellite"] = sat_a.view(E, 1, core.N)
        if "hap" in core.tiers:
            out["hap"] = torch.where(dec["hap"][:, None, None], hap_a.reshape(E, core.I, -1),
                                     current_actions(core, "hap"))
        out["local"] = self._local(core, st, dec, sat_a, hap_a, moves)
        self.info = {}
        return out
