"""Exhaustive search (paper Section 4.2, baseline 1; docs/experiments.md, Baselines and evaluation).

At each decision, the exact maximiser of the step reward (the system reward: mean over regions of
eq. (11), ``metrics["reward"]``, i.e. the satellite agent's reward) over the discrete joint action
of the tiers that decide on this step, on the current frozen state (genie-aided: the realisation
the step is scored on), found by enumeration with ``core.evaluate`` in chunks of candidates.

Exact reductions used (each leaves the maximum unchanged; nothing is sampled, nothing is pruned by
a bound):

1. Only masked-in choices are enumerated, top-down: HAP choices only on subbands handed to the
   HAP's beam, users only on subbands held in the region, reduced power only where allowed.
2. Time blocks of one (region, subband) are interchangeable: the core scores a slot by
   (region, subband, user) only, and a transmitter is active on a subband if any block is used.
   So the T blocks' users are enumerated as multisets (C(K+T, T) instead of (K+1)^T).
3. The power level of a held subband with no user scheduled does not enter the score (the stream
   is inactive): only the top level is enumerated there.
4. UAV moves enter the step reward only through the out-of-region penalty of eq. (5), additively
   per UAV (the gains of this step use the positions before the move): each UAV takes a move of
   least penalty (the greedy's move when it is one of them), which is optimal for every choice of
   everything else.
5. Feasibility factorises over subbands: the choices on subband n (satellite, HAP per region,
   users and power per region) constrain nothing on another subband, so the joint space is the
   product of per-subband column sets and is enumerated by mixed-radix indexing.
6. Decomposition across beams, used only when it is exact: when the satellite allocation is fixed
   on this step (the satellite does not decide, or is not in the searched sub-space), a subband
   handed to a beam is held only in that beam's regions, so no transmitter of one beam interferes
   in another on it and every power share (node, HAP, satellite beam) is set within one beam.
   Satellite-direct subbands are held in every region and couple the beams (side lobes, and
   whether a beam transmits at all depends on the schedule), so the decomposition is used only if
   there is none, or if nothing varies on them (a single column, as when the schedule is fixed
   and their power is forced to the top level) and no rule-based schedule could react to the other
   choices. The reward is then a sum over beams of terms that depend only on that beam's choices
   (rule-based components below are per-beam as well). The beams are
   then searched side by side (candidate i carries beam b's i-th choice) and the best of each is
   combined; the combination is re-scored and checked against the sum of the beams' optima.
   Nothing else is decomposed: reused subbands couple the regions of a beam through interference,
   satellite-direct subbands couple beams through side lobes, power shares couple the subbands of
   a transmitter, and the per-user fairness and QoS terms couple subbands. So within a beam (or
   the whole network otherwise) the joint space is enumerated in full.

Sub-spaces. ``subspace=None`` or ``"full"`` searches the full joint action space of the deciding
tiers. Where the enumeration would exceed ``max_candidates`` evaluations, :class:`SpaceTooLarge`
is raised with the size of the space; nothing is sampled. ``subspace`` may instead name a
contiguous range of the components ``satellite < hap < schedule < power`` joined by ``+``; the
search is then exact over the stated sub-space. A component is searched on a step only if its
tier decides on that step. Components may be restricted to a structured domain:

- ``satellite:blocks``: beam b gets a contiguous block of n_b subbands (beams in order), then d
  satellite-direct subbands, the rest off; every composition (n_0, ..., n_{B-1}, d, off) of N
  (C(N+B+1, B+1) allocations; 286 for the defaults);
- ``hap:blocks``: in each region, the subbands handed to its beam are split, in index order,
  into contiguous blocks for node 1, ..., node M, HAP-direct (none left off); every composition
  of the count (C(n_b+M, M) per region; 56 for 5 subbands and 3 nodes), all regions jointly;
- ``schedule:rules``: per region, one of the greedy's scheduling rules (``schedule_rules``,
  default the QoS-first and the proportional-fair weighting), jointly over regions; power at the
  top level.

Structured and full domains are not mixed (``hap:blocks+schedule:rules`` is allowed,
``hap:blocks+schedule`` is not), and ``satellite:blocks`` does not go with ``hap:blocks``.
Outside the searched range:

- the components above the range take the greedy baseline's choice on this state (the
  satellite's and HAPs' allocations, the schedule), or the current allocation where the tier does
  not decide on this step;
- the components below the range follow fixed rules applied to each candidate: the greedy's
  marginal sum-rate HAP split (``hap_rule(..., "sumrate")``), the greedy's QoS-first
  marginal-utility schedule (``rule_schedule`` with the first weighting; every block of a
  satellite-direct subband filled), every stream at the top power level;
- UAV moves are optimal as in reduction 4.

Results are labelled ``exhaustive`` (full space) or ``exhaustive-over-<subspace>``.

The paper's default scenario (sag; 2 beams, 2 regions per HAP, 3 nodes per region, 10
subbands, 10 users, 2 time blocks, 3 power levels): the full space is astronomically large and
the search refuses with its size. The documented sub-space for it is
``subspace="hap:blocks+schedule:rules"`` (``DEFAULT_SUBSPACE``): at every HAP decision the HAPs'
block allocations and the per-region choice of scheduling rule are searched jointly (56^2 x 2^2 =
12,544 evaluations per beam, the beams side by side: about 12.5k evaluations, a few seconds on
2 CPU cores; ~1.25e10 joint actions covered with the UAV moves), the satellite takes the greedy's
choice; at other steps the per-region scheduling rule is searched (16 evaluations).
``subspace="power"`` (exhaustive power control: every level combination on every active
non-direct stream, with the greedy's allocation and schedule) needs 3^10 = 59,049 evaluations per
decision; with the default calibration it rarely improves on the top level.

``info`` after each ``act``: per env, ``covered`` (joint actions of the searched space, counting
ordered time blocks, all power levels and all UAV moves that the reductions cover), ``evaluated``
(candidates scored), ``time_s`` and ``reward`` (the optimum's step reward).
"""

from __future__ import annotations

import itertools
import math
import time

import torch

from .common import Policy
from .greedy import SCHED_VARIANTS, GreedyPolicy, hap_rule, local_action, rule_schedule

COMPONENTS = ("satellite", "hap", "schedule", "power")
DEFAULT_SUBSPACE = "hap:blocks+schedule:rules"  # documented sub-space for the default scenario


class SpaceTooLarge(ValueError):
    """The enumeration would exceed ``max_candidates`` evaluations."""

    def __init__(self, message: str, evaluated: int, covered: int):
        super().__init__(message)
        self.evaluated = evaluated
        self.covered = covered


STRUCTURED = {"satellite:blocks": "satellite", "hap:blocks": "hap", "schedule:rules": "schedule"}


def parse_subspace(subspace) -> tuple[tuple[str, ...], dict]:
    """Free components of a sub-space spec and their domains ("full" or a structured one).

    None/"full" -> every component, full domains. Otherwise a '+'-joined contiguous range of
    ``satellite < hap < schedule < power``, each optionally restricted (``satellite:blocks``,
    ``hap:blocks``, ``schedule:rules``). Structured domains are not mixed with full ones.
    """
    if subspace is None or subspace == "full":
        return COMPONENTS, {c: "full" for c in COMPONENTS}
    parts = tuple(subspace) if isinstance(subspace, (list, tuple)) else tuple(
        p.strip() for p in str(subspace).split("+"))
    allowed = [*COMPONENTS, *STRUCTURED]
    bad = [p for p in parts if p not in allowed]
    if bad or not parts:
        raise ValueError(f"subspace = {subspace!r} is invalid; allowed: 'full' or a '+'-joined "
                         f"contiguous range of {allowed}")
    dom = {}
    for p in parts:
        comp = STRUCTURED.get(p, p)
        if comp in dom:
            raise ValueError(f"subspace = {subspace!r} names {comp!r} twice")
        dom[comp] = p.split(":")[1] if ":" in p else "full"
    idx = sorted(COMPONENTS.index(c) for c in dom)
    if idx != list(range(idx[0], idx[-1] + 1)):
        raise ValueError(f"subspace = {subspace!r} is invalid: the free components must be a "
                         f"contiguous range of {COMPONENTS} (rules below a free component need "
                         "all components above them fixed or free together)")
    kinds = set(dom.values())
    if "full" in kinds and len(kinds) > 1:
        raise ValueError(f"subspace = {subspace!r} mixes structured and full domains; "
                         "allowed: all full, or all structured (blocks/rules)")
    if "full" not in kinds and "satellite" in dom and "hap" in dom:
        raise ValueError(f"subspace = {subspace!r}: satellite:blocks and hap:blocks together "
                         "are not supported (the HAP blocks depend on the satellite's)")
    free = tuple(COMPONENTS[i] for i in idx)
    return free, {c: dom[c] for c in free}


def _fmt(n: int) -> str:
    """An exact count, in full below 1e15, else in scientific notation with its exponent."""
    return f"{n:,}" if n < 10**15 else f"{n:.4e} (~10^{len(str(n)) - 1})"


def compositions(n: int, parts: int) -> list[tuple[int, ...]]:
    """All tuples of ``parts`` non-negative integers summing to ``n`` (lexicographic)."""
    if parts == 1:
        return [(n,)]
    return [(k, *rest) for k in range(n + 1) for rest in compositions(n - k, parts - 1)]


class ExhaustivePolicy(Policy):
    """Exact maximiser of the step reward by enumeration (see the module docstring).

    Args:
        subspace: None/"full" or a '+'-joined contiguous range of
            ("satellite", "hap", "schedule", "power").
        max_candidates: refuse (``SpaceTooLarge``) above this many evaluations per decision.
        chunk: candidates per ``core.evaluate`` call (bounds memory).
        decompose: allow the exact beam decomposition (reduction 6).
    """

    def __init__(self, subspace=None, max_candidates: int = 200_000, chunk: int = 2048,
                 decompose: bool = True, schedule_rules=SCHED_VARIANTS[:2]):
        super().__init__()
        self.free, self.domains = parse_subspace(subspace)
        self.structured = "full" not in self.domains.values()
        self.full = self.free == COMPONENTS and not self.structured
        self.subspace = "full" if self.full else "+".join(
            c if d == "full" else f"{c}:{d}" for c, d in self.domains.items())
        self.name = "exhaustive" if self.full else f"exhaustive-over-{self.subspace}"
        if isinstance(max_candidates, bool) or int(max_candidates) < 1:
            raise ValueError(f"max_candidates = {max_candidates!r} is invalid; allowed: >= 1")
        self.max_candidates = int(max_candidates)
        self.chunk = int(chunk)
        self.decompose = decompose
        self.schedule_rules = tuple(tuple(w) for w in schedule_rules)
        self._greedy = GreedyPolicy()
        self._views: dict = {}

    # ------------------------------------------------------------------ act
    def act(self, core) -> dict:
        from .common import env_view

        outs, infos = [], []
        for i in range(core.num_envs):
            view = env_view(core, i, self._views)
            a, inf = self._solve(view)
            outs.append(a)
            infos.append(inf)
        self.info = {k: [d[k] for d in infos] for k in infos[0]}
        return {t: torch.cat([o[t] for o in outs], 0) for t in core.tiers}

    def space_size(self, core) -> list[dict]:
        """Sizes (covered, evaluated, groups) of this step's search per env, without searching."""
        from .common import env_view

        out = []
        for i in range(core.num_envs):
            v = env_view(core, i, self._views)
            p = self._structured_plan(v) if self.structured else self._plan(v, count_only=True)
            out.append({k: p[k] for k in ("covered", "evaluated", "t")} | {
                "groups": len(p["groups"]) if isinstance(p["groups"], list) else p["groups"]})
        return out

    # ------------------------------------------------------------------ planning
    def _fixed_values(self, core, dec):
        """Values of the components that are not enumerated and not rule-based below."""
        st = core.state
        N, J, dev = core.N, core.J, st.t.device
        top = COMPONENTS.index(self.free[0])
        need_greedy = ((top > 0 and "satellite" in core.tiers and bool(dec["satellite"][0]))
                       or (top > 1 and "hap" in core.tiers and bool(dec["hap"][0]))
                       or top > 2)
        g = self._greedy.act(core) if need_greedy else None
        sat = st.sat_choice[0].clone()
        if "satellite" in core.tiers and bool(dec["satellite"][0]) and top > 0:
            sat = g["satellite"].view(N)
        hap_state = st.hap_choice[0].clone()
        hap = hap_state
        if "hap" in core.tiers and bool(dec["hap"][0]) and top > 1:
            hap = g["hap"].view(J, N)
        users = None
        if top > 2:  # power only: the greedy's schedule (action encoding: 0 none, k+1 user k)
            loc = g["local"].view(J, -1)
            users = loc[:, :N * core.T].view(J, N, core.T)
        return sat, hap, hap_state, users, dev

    def _uav_moves(self, core):
        """Optimal UAV moves (reduction 4), the greedy's move where it is among them."""
        from .greedy import _MOVES, uav_moves

        st = core.state
        J, U = core.J, core.U
        if U == 0:
            return torch.zeros(J, 0, dtype=torch.long, device=st.t.device)
        pref = uav_moves(core, st)[0]  # [J, U]
        size = core.cfg.network.region_size_m
        uav = st.uav_xy[0].view(J, U, 2)
        cand = uav[:, :, None] + _MOVES.to(uav.device) * core.cfg.network.uav_step_m
        o = core.topo.region_origin_xy.to(uav.device).view(J, 1, 1, 2)
        out = ((cand < o) | (cand > o + size)).any(-1).float()  # [J, U, 5]
        best = out.min(-1).values
        ok_pref = out.gather(-1, pref[..., None])[..., 0] <= best
        return torch.where(ok_pref, pref, out.argmin(-1))

    def _plan(self, core, count_only: bool = False):
        st = core.state
        dec = core.decides()
        N, J, B, M, K, T, L = core.N, core.J, core.B, core.M, core.K, core.T, core.L
        free = set(self.free)
        bottom = COMPONENTS.index(self.free[-1])
        sat_dec = "satellite" in core.tiers and bool(dec["satellite"][0])
        hap_dec = "hap" in core.tiers and bool(dec["hap"][0])
        sat_free = "satellite" in free and sat_dec
        hap_free = "hap" in free and hap_dec
        hap_rule_below = bottom < 1 and hap_dec  # HAP by rule per candidate
        sched_free = "schedule" in free
        sched_rule = bottom < 2
        power_free = "power" in free
        sat_fix, hap_fix, hap_state, users_fix, dev = (
            self._fixed_values(core, dec) if not count_only else self._fixed_values_light(core))
        beam = core.topo.region_beam.tolist()
        multis = list(itertools.combinations_with_replacement(range(K + 1), T))
        has_hap_tier = "hap" in core.tiers

        def region_options(j, n, s):
            """(h, users tuple, level) options of region j on subband n given satellite s;
            h None = rule-based; users None = rule-based. Also the covered count."""
            beam_has = s == beam[j] + 1
            direct = s == B + 1
            if not has_hap_tier:  # ag/uav: the core's fixed split of the (fixed) satellite choice
                hs = [int(hap_state[j, n])]
            elif hap_free:
                hs = list(range(M + 2)) if beam_has else [0]
            elif hap_rule_below:
                hs = [None]
            else:
                h0 = int((hap_fix if hap_dec else hap_state)[j, n])
                hs = [h0 if beam_has else 0]
            opts, cov = [], 0
            for h in hs:
                if h is None:
                    held = None  # known per candidate only (rule); schedule/power below too
                else:
                    held = direct or (beam_has and h >= 1)
                if sched_free:
                    us = multis if held else [(0,) * T]
                    ucov = (K + 1) ** T if held else 1
                elif sched_rule:
                    us, ucov = [None], 1
                else:
                    u0 = tuple(int(v) for v in users_fix[j, n]) if held else (0,) * T
                    us, ucov = [u0], 1
                lv_allowed = bool(held) and not direct
                for u in us:
                    active = u is not None and any(v > 0 for v in u)
                    if power_free and lv_allowed and active:
                        opts.extend((h, u, lv) for lv in range(L))
                    else:
                        opts.append((h, u, L - 1))
                lcov = L if (power_free and lv_allowed) else 1
                cov += ucov * lcov
            return opts, cov

        s_opts = [list(range(B + 2)) if sat_free else [int(sat_fix[n])] for n in range(N)]
        per_n, cov_n = [], []
        for n in range(N):
            cnt, cov = 0, 0
            ro = {}
            for s in s_opts[n]:
                prod_c, prod_v = 1, 1
                for j in range(J):
                    o, c = region_options(j, n, s)
                    ro[(s, j)] = o
                    prod_c *= len(o)
                    prod_v *= c
                cnt += prod_c
                cov += prod_v
            per_n.append(ro)
            cov_n.append((cnt, cov))
        # Groups: beams when exact (reduction 6), else one group of every subband.
        sat_eff = [s_opts[n][0] for n in range(N)] if not sat_free else None
        groups = [list(range(N))]
        gregions = [list(range(J))]
        direct_n = [n for n in range(N) if sat_eff is not None and sat_eff[n] == B + 1]
        # Satellite-direct subbands couple beams (side lobes, the beams' activity) unless nothing
        # varies on them: a single column and no rule-based schedule that reacts to other choices.
        # (the rule-based schedule fills every block of a satellite-direct subband, so with a
        # single column there every region, hence every beam, transmits on it in every candidate)
        quiet = all(cov_n[n][0] == 1 for n in direct_n)
        if self.decompose and sat_eff is not None and quiet and B > 1:
            groups = [[n for n in range(N) if sat_eff[n] == b + 1] for b in range(B)]
            off = [n for n in range(N) if sat_eff[n] in (0, B + 1)]
            groups[0] = groups[0] + off
            gregions = [[j for j in range(J) if beam[j] == b] for b in range(B)]
            keep = [i for i, g in enumerate(groups) if g]
            groups = [groups[i] for i in keep]
            gregions = [gregions[i] for i in keep]
        gcount = [math.prod(cov_n[n][0] for n in g) for g in groups]
        evaluated = max(gcount)
        covered = math.prod(c[1] for c in cov_n) * 5 ** (J * core.U)
        plan = {"covered": covered, "evaluated": evaluated, "groups": len(groups),
                "t": int(st.t[0])}
        if count_only:
            return plan
        plan.update(per_n=per_n, s_opts=s_opts, groups=groups, gregions=gregions,
                    gcount=gcount, sat_free=sat_free, hap_free=hap_free,
                    hap_rule_below=hap_rule_below and has_hap_tier, sched_rule=sched_rule,
                    sat_fix=sat_fix, hap_fix=hap_fix, hap_state=hap_state, dec=dec,
                    sat_dec=sat_dec, hap_dec=hap_dec)
        return plan

    def _fixed_values_light(self, core):
        """For counting only: fixed values without running the greedy (shapes and masks are
        what matter; the greedy's allocation is replaced by the current one)."""
        st = core.state
        J, N, T = core.J, core.N, core.T
        users = torch.ones(J, N, T, dtype=torch.long, device=st.t.device)  # all active
        return st.sat_choice[0], st.hap_choice[0], st.hap_choice[0], users, st.t.device

    # ------------------------------------------------------------------ columns
    def _columns(self, core, plan):
        """Per subband: tensors of its columns: s [C], h [C, J], users [C, J, T], level [C, J]
        (-1 in h / users = rule-based)."""
        J, T = core.J, core.T
        dev = core.state.t.device
        cols = []
        for n in range(core.N):
            cs, ch, cu, cl = [], [], [], []
            for s in plan["s_opts"][n]:
                opts = [plan["per_n"][n][(s, j)] for j in range(J)]
                sizes = [len(o) for o in opts]
                idx = torch.cartesian_prod(*[torch.arange(z) for z in sizes]) if J > 1 else \
                    torch.arange(sizes[0])[:, None]
                idx = idx.view(-1, J)
                hj = [torch.tensor([-1 if o[0] is None else o[0] for o in op]) for op in opts]
                uj = [torch.tensor([[-1] * T if o[1] is None else list(o[1]) for o in op])
                      .view(-1, T) for op in opts]
                lj = [torch.tensor([o[2] for o in op]) for op in opts]
                ch.append(torch.stack([hj[j][idx[:, j]] for j in range(J)], 1))
                cu.append(torch.stack([uj[j][idx[:, j]] for j in range(J)], 1))
                cl.append(torch.stack([lj[j][idx[:, j]] for j in range(J)], 1))
                cs.append(torch.full((idx.shape[0],), s, dtype=torch.long))
            cols.append(tuple(torch.cat(x, 0).to(dev) for x in (cs, ch, cu, cl)))
        return cols

    # ------------------------------------------------------------------ solve
    def _solve(self, core):
        if self.structured:
            return self._solve_structured(core)
        t0 = time.perf_counter()
        plan = self._plan(core)
        if plan["evaluated"] > self.max_candidates:
            raise SpaceTooLarge(
                f"{self.name}: the joint action space at step t={plan['t']} has "
                f"{_fmt(plan['covered'])} joint actions, needing {_fmt(plan['evaluated'])} "
                f"candidate evaluations after exact reductions, more than max_candidates="
                f"{self.max_candidates:,}. Refusing rather than sampling: use a smaller instance, "
                "raise max_candidates, or search a documented sub-space (for the default "
                f"scenario subspace='{DEFAULT_SUBSPACE}'; see tntn_env/baselines/exhaustive.py).",
                plan["evaluated"], plan["covered"])
        st = core.state
        dev = st.t.device
        cols = self._columns(core, plan)
        moves = self._uav_moves(core)  # [J, U]
        groups, gcount, gregions = plan["groups"], plan["gcount"], plan["gregions"]
        # mixed-radix strides inside each group
        strides = {}
        for g in groups:
            stride = 1
            for n in g:
                strides[n] = stride
                stride *= cols[n][0].shape[0]
        total = max(gcount)
        best_val = [-math.inf] * len(groups)
        best_idx = [0] * len(groups)
        for start in range(0, total, self.chunk):
            i = torch.arange(start, min(total, start + self.chunk), device=dev)
            digits = self._digits(i, groups, gcount, strides, cols)
            acts = self._assemble(core, plan, cols, digits, moves)
            out = core.evaluate({t: a[None] for t, a in acts.items()}, decide="scheduled")
            reg = out["region"]["reward"][0]  # [C, J]
            for gi, regs in enumerate(gregions):
                val = reg[:, regs].sum(-1)
                valid = (i < gcount[gi])  # rows beyond this group's size repeat (mod) it
                val = torch.where(valid, val, -math.inf)
                v, k = val.max(0)
                if float(v) > best_val[gi]:
                    best_val[gi], best_idx[gi] = float(v), int(i[k])
        # combine the groups' optima and re-score
        i = torch.tensor([0], device=dev)
        digits = {}
        for gi, g in enumerate(groups):
            d = self._digits(torch.tensor([best_idx[gi]], device=dev), [g], [gcount[gi]],
                             strides, cols)
            digits.update(d)
        del i
        acts = self._assemble(core, plan, cols, digits, moves)
        return self._finish(core, plan, acts, len(groups), best_val, total, t0)

    # ------------------------------------------------------------------ structured spaces
    def _structured_plan(self, core):
        st = core.state
        dec = core.decides()
        N, J, B, M = core.N, core.J, core.B, core.M
        sat_dec = "satellite" in core.tiers and bool(dec["satellite"][0])
        hap_dec = "hap" in core.tiers and bool(dec["hap"][0])
        sat_free = "satellite" in self.domains and sat_dec
        hap_free = "hap" in self.domains and hap_dec
        sched_free = "schedule" in self.domains
        bottom = COMPONENTS.index(self.free[-1])
        hap_rule_below = bottom < 1 and hap_dec
        sat_fix, hap_fix, hap_state, _, _ = self._fixed_values(core, dec)
        beam = core.topo.region_beam.tolist()
        factors = []  # (kind, region or None, options [C, ...]); schedule first (fastest digit)
        if sched_free:
            for j in range(J):
                factors.append(("schedule", j, torch.arange(len(self.schedule_rules))[:, None]))
        if sat_free:
            opts = []
            for c in compositions(N, B + 2):  # beam blocks in beam order, then direct, then off
                v = [b + 1 for b in range(B) for _ in range(c[b])]
                opts.append(v + [B + 1] * c[B] + [0] * c[B + 1])
            factors.append(("satellite", None, torch.tensor(opts)))
        if hap_free:
            for j in range(J):
                sub = [n for n in range(N) if int(sat_fix[n]) == beam[j] + 1]
                opts = []
                for c in compositions(len(sub), M + 1):  # nodes in order, then HAP-direct
                    v = [0] * N
                    hv = [h + 1 for h in range(M + 1) for _ in range(c[h])]
                    for n, x in zip(sub, hv):
                        v[n] = x
                    opts.append(v)
                factors.append(("hap", j, torch.tensor(opts)))
        # Beams apart when the satellite is fixed (reduction 6): rule schedules fill every block
        # of a satellite-direct subband and its power is the top level, so nothing varies there.
        if sat_free or not self.decompose or B == 1:
            groups = [list(range(len(factors)))]
            gregions = [list(range(J))]
        else:
            groups = [[f for f, fac in enumerate(factors) if beam[fac[1]] == b] for b in range(B)]
            keep = [b for b in range(B) if groups[b]] or [0]
            groups = [groups[b] for b in keep]
            gregions = [[j for j in range(J) if beam[j] == b] for b in keep]
        gcount = [math.prod(factors[f][2].shape[0] for f in g) for g in groups]
        covered = math.prod(f[2].shape[0] for f in factors) * 5 ** (J * core.U)
        return dict(factors=factors, groups=groups, gregions=gregions, gcount=gcount,
                    covered=covered, evaluated=max(gcount), sat_dec=sat_dec, hap_dec=hap_dec,
                    sat_free=sat_free, hap_free=hap_free, sched_free=sched_free,
                    hap_rule_below=hap_rule_below, sat_fix=sat_fix, hap_fix=hap_fix,
                    hap_state=hap_state, t=int(st.t[0]))

    def _structured_assemble(self, core, plan, digits, moves):
        st = core.state
        N, J, L = core.N, core.J, core.L
        dev = st.t.device
        C = next(iter(digits.values())).shape[0] if digits else 1
        factors = plan["factors"]
        s = plan["sat_fix"].view(1, N).expand(C, N).to(dev)
        h = (plan["hap_fix"] if plan["hap_dec"] else plan["hap_state"]).view(1, J, N)
        h = h.expand(C, J, N).clone().to(dev)
        variant = torch.zeros(C, J, dtype=torch.long, device=dev)
        for f, (kind, j, opts) in enumerate(factors):
            val = opts.to(dev)[digits[f]]
            if kind == "satellite":
                s = val
            elif kind == "hap":
                h[:, j] = val
            else:
                variant[:, j] = val[:, 0]
        if plan["hap_rule_below"]:
            h = hap_rule(core, st.repeat(C), s, "sumrate")
        if "hap" not in core.tiers:
            h = core.fixed_hap_choice(s)
        beam_has = s[:, None, :] == core.topo.region_beam.to(dev)[None, :, None] + 1
        h = torch.where(beam_has, h, 0)
        # the rule depends on the allocation only: compute it once per distinct allocation
        alloc, inv = torch.unique(torch.cat([s, h.reshape(C, -1)], 1), dim=0,
                                  return_inverse=True)
        su, hu = alloc[:, :N], alloc[:, N:].view(-1, J, N)
        st_u = st.repeat(alloc.shape[0])
        if plan["sched_free"]:
            per = rule_schedule(core, st_u, su, hu, [list(w) for w in self.schedule_rules])
            users = per[:, inv].gather(0, variant[None, :, :, None, None].expand(
                1, C, J, N, core.T))[0]
        else:
            users = rule_schedule(core, st_u, su, hu, self.schedule_rules[0])[inv]
        lv = torch.full((C, J, N), L - 1, dtype=torch.long, device=dev)
        acts = {"local": local_action(core, users, lv, moves[None].expand(C, *moves.shape))}
        if "satellite" in core.tiers:
            acts["satellite"] = s.reshape(C, 1, N)
        if "hap" in core.tiers:
            acts["hap"] = h.reshape(C, core.I, core.R * N)
        return acts

    def _structured_digits(self, i, plan, groups_idx=None):
        factors, d = plan["factors"], {}
        for gi, (g, cnt) in enumerate(zip(plan["groups"], plan["gcount"])):
            if groups_idx is not None and gi not in groups_idx:
                continue
            ig = i % cnt
            stride = 1
            for f in g:
                size = factors[f][2].shape[0]
                d[f] = (ig // stride) % size
                stride *= size
        return d

    def _solve_structured(self, core):
        t0 = time.perf_counter()
        plan = self._structured_plan(core)
        if plan["evaluated"] > self.max_candidates:
            raise SpaceTooLarge(
                f"{self.name}: the sub-space at step t={plan['t']} has "
                f"{_fmt(plan['covered'])} joint actions, needing {_fmt(plan['evaluated'])} "
                f"candidate evaluations, more than max_candidates={self.max_candidates:,}. "
                "Refusing rather than sampling.", plan["evaluated"], plan["covered"])
        dev = core.state.t.device
        moves = self._uav_moves(core)
        groups, gregions, gcount = plan["groups"], plan["gregions"], plan["gcount"]
        total = plan["evaluated"]
        best_val = [-math.inf] * len(groups)
        best_idx = [0] * len(groups)
        for start in range(0, total, self.chunk):
            i = torch.arange(start, min(total, start + self.chunk), device=dev)
            acts = self._structured_assemble(core, plan, self._structured_digits(i, plan), moves)
            out = core.evaluate({t: a[None] for t, a in acts.items()}, decide="scheduled")
            reg = out["region"]["reward"][0]
            for gi, regs in enumerate(gregions):
                val = torch.where(i < gcount[gi], reg[:, regs].sum(-1), -math.inf)
                v, k = val.max(0)
                if float(v) > best_val[gi]:
                    best_val[gi], best_idx[gi] = float(v), int(i[k])
        digits = {}
        for gi in range(len(groups)):
            digits.update(self._structured_digits(torch.tensor([best_idx[gi]], device=dev),
                                                  plan, {gi}))
        acts = self._structured_assemble(core, plan, digits, moves)
        return self._finish(core, plan, acts, len(groups), best_val, total, t0)

    @staticmethod
    def _finish(core, plan, acts, n_groups, best_val, total, t0):
        """Re-score the assembled optimum, check a beam decomposition, shape the outputs."""
        st, N, I, R = core.state, core.N, core.I, core.R
        out = core.evaluate({t: a[None] for t, a in acts.items()}, decide="scheduled")
        reward = float(out["metrics"]["reward"][0, 0])
        combined = float(out["region"]["reward"][0, 0].sum())
        if n_groups > 1 and not math.isclose(combined, sum(best_val), rel_tol=1e-4,
                                             abs_tol=1e-4):
            raise RuntimeError(f"beam decomposition inconsistent: combined {combined} vs sum of "
                               f"beam optima {sum(best_val)}; rerun with decompose=False")
        # outputs: deciding tiers take the optimum; others their current choice (ignored)
        res = {}
        if "satellite" in core.tiers:
            res["satellite"] = acts["satellite"] if plan["sat_dec"] else st.sat_choice.view(1, 1, N)
        if "hap" in core.tiers:
            res["hap"] = acts["hap"] if plan["hap_dec"] else st.hap_choice.reshape(1, I, R * N)
        res["local"] = acts["local"]
        res = {t: a.reshape(1, core.num_agents[t], -1).long() for t, a in res.items()}
        info = {"covered": plan["covered"], "evaluated": total + 1,
                "time_s": time.perf_counter() - t0, "reward": reward, "groups": n_groups}
        return res, info

    @staticmethod
    def _digits(i, groups, gcount, strides, cols):
        d = {}
        for g, gs in zip(groups, gcount):
            ig = i % gs
            for n in g:
                d[n] = (ig // strides[n]) % cols[n][0].shape[0]
        return d

    def _assemble(self, core, plan, cols, digits, moves):
        """Candidate actions {tier: [C, A, D]} from per-subband column digits (+ rules)."""
        st = core.state
        N, J, L = core.N, core.J, core.L
        C = next(iter(digits.values())).shape[0]
        dev = st.t.device
        s = torch.stack([cols[n][0][digits[n]] for n in range(N)], 1)  # [C, N]
        h = torch.stack([cols[n][1][digits[n]] for n in range(N)], 2)  # [C, J, N]
        u = torch.stack([cols[n][2][digits[n]] for n in range(N)], 2)  # [C, J, N, T]
        lv = torch.stack([cols[n][3][digits[n]] for n in range(N)], 2)  # [C, J, N]
        has_hap = "hap" in core.tiers
        # effective allocation: satellite as enumerated/fixed; HAP voided where not handed down
        beam = core.topo.region_beam.to(dev)
        beam_has = s[:, None, :] == beam[None, :, None] + 1
        st_c = None
        if plan["hap_rule_below"]:
            st_c = st.repeat(C)
            h = hap_rule(core, st_c, s, "sumrate")
        h = torch.where(beam_has, h, 0)
        if plan["sched_rule"]:
            st_c = st_c if st_c is not None else st.repeat(C)
            u = rule_schedule(core, st_c, s, h, self.schedule_rules[0]) + 1
            lv = torch.full((C, J, N), L - 1, dtype=torch.long, device=dev)
        users = u - 1
        loc = local_action(core, users, lv, moves[None].expand(C, *moves.shape))
        acts = {"local": loc}
        if "satellite" in core.tiers:
            acts["satellite"] = s.view(C, 1, N)
        if has_hap:
            acts["hap"] = h.reshape(C, core.I, core.R * N)
        return acts

