"""The batched TN-NTN core: :class:`TNTNCore`, the one entry point to the physics, masks,
metrics and rewards, written once in torch.

Tensors carry a leading environment dimension E and live on ``device``. The PettingZoo env, the
trainers and the baselines are thin views of this class (README, Layout). The class holds the
sizes and precomputed constants, the state, and the step; the work is in modules that each hold
one part, as functions taking the core:

- state.py: :class:`CoreState`, :class:`Scored`, random stream ids, the per-allocation memo;
- links.py: large-scale tables, fading, link gains, the link-state report;
- allocation.py: holders, stream powers, effective upper-tier choices, fixed rules, masks;
- checking.py: action format, range and mask checks (raise or repair);
- scoring.py: scoring a joint action, region and system metrics, rewards;
- dynamics.py: the initial state, warm start and the transition to the next step;
- observation.py: observations per tier;
- kernels.py: ``torch.compile`` of the transition or of the per-link kernels.

Per-tier action layout (each agent's action is a MultiDiscrete vector of ints):

- satellite (1 agent): N positions, one per subband n; 0 = off, 1..B = hand n to beam b-1,
  B+1 = satellite-direct (every beam transmits n in its own footprint).
- hap i (B*H agents): R*N positions (region-major); 0 = off, 1..M = node m-1 of the region
  (TBS first, then UAVs), M+1 = HAP-direct (the HAP's spot beam of that region serves on n).
- local j (B*H*R agents): N*T user positions (subband-major; 0 = none, k+1 = user k of the
  region), then N power positions (index into ``power_levels``), then U UAV moves
  (0 stay, 1 +x, 2 -x, 3 +y, 4 -y).

Masks: a HAP may hand out only subbands given to its beam; a local agent may schedule only on
subbands held in its region (by a node, its HAP or the satellite); power is not chosen on
satellite-direct or unavailable subbands (only the top level is allowed there).

Simultaneous decisions are applied top-down: a lower-tier choice that this step's new upper-tier
allocation no longer permits is voided (off) and counted; the effective HAP allocation is stored,
so a voided HAP choice stays off until the HAP decides again.
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import torch

from . import allocation, checking, dynamics, kernels, links, observation, orbit, rng, scoring
from . import channel as chn
from .checking import check_not_finished, check_reset_args
from .config import EnvConfig, make_config
from .state import STATE_FIELDS, CoreState, Scored
from .topology import TX_HAP, TX_SAT, TX_TBS, TX_UAV, build_topology

TIERS = ("satellite", "hap", "local")
# Keys of TNTNCore.system_metrics (step()["metrics"]), in order.
SYSTEM_METRICS = ("throughput_mbps", "sum_rate_mbps", "spectral_efficiency", "fairness",
                  "qos_violation", "uav_penalty", "spectrum_utilisation", "reward")
_UAV_MOVES = ((0.0, 0.0), (1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0))


class TNTNCore:
    """Batched TN-NTN environment core.

    Args:
        config: an :class:`EnvConfig`; or pass ``scenario`` and flat overrides.
        num_envs: E, the number of environments stepped together.
        device: torch device ("cpu", "cuda", ...).
        check_actions: validate actions against ranges and masks (raise or repair per
            ``config.invalid_action``). Trainers that sample from masked heads may turn it off.
        compile: ``torch.compile`` parts of the step. ``"graph"``: the step's whole transition
            (scoring, next state, observations, masks) as one graph (see :meth:`step`); the
            first step and the first large-scale refresh step compile for about a minute each on
            a 2-core CPU (seconds when torch's compile cache has them). ``"kernels"``: the step
            stays eager around compiled kernels for its per-link work (fading draws, holder
            SNR features, large-scale tables, local observation), laid out as contiguous rows
            that the CPU code vectorises; about a minute of compiling on 2 cores, cold.
            ``True``: ``"kernels"`` on CPU from E = 1,024 on (where the whole graph is slower
            than eager code), else ``"graph"``. Off by default: it needs a C++ compiler
            (inductor's CPU code) or triton (CUDA).
    """

    def __init__(self, config: EnvConfig | None = None, num_envs: int = 1, device="cpu",
                 check_actions: bool = True, scenario: str | None = None,
                 compile: bool = False, **overrides):
        if config is None:
            config = make_config(scenario or "sag", **overrides)
        elif overrides or scenario is not None:
            raise ValueError("pass either config or scenario/overrides, not both")
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs = {num_envs!r} is invalid; allowed: an integer >= 1")
        mode = kernels.resolve_mode(compile, num_envs, torch.device(device))
        checking.check_memory(config, num_envs, torch.device(device))
        self.cfg = cfg = config
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.check_actions = check_actions
        net, ch = cfg.network, cfg.channel
        self.B, self.H, self.R = net.num_beams, net.haps_per_beam, net.regions_per_hap
        self.I, self.J = net.num_haps, net.num_regions
        self.N, self.T, self.K = net.num_subbands, net.time_blocks, net.users_per_region
        self.Tn, self.U = net.tbs_per_region, net.uavs_per_region
        self.M, self.L = net.nodes_per_region, len(net.power_levels)
        self.Ut = net.num_users
        self.topo = topo = build_topology(cfg, self.device)
        # the satellite's pass (docs/model.md, Orbit): propagated once, here, on the host
        self.orbit = (orbit.build_track(cfg, topo.region_latlon_deg[:, 0].numpy(),
                                        topo.region_latlon_deg[:, 1].numpy(),
                                        topo.region_beam.cpu().numpy(), self.device)
                      if cfg.orbit.orbit_enabled else None)
        self.X, self.Xt = topo.num_tx, topo.num_terrestrial
        self.Hs = cfg.demand.num_hotspots
        dev = self.device
        self.noise_w = chn.noise_power_w(net.bandwidth_hz / self.N, ch.noise_figure_db,
                                         ch.noise_density_dbm_hz)
        self.levels = torch.tensor(net.power_levels, dtype=torch.float32, device=dev)
        self.tiers = tuple(t for t, on in zip(TIERS, (cfg.has_satellite_agent,
                                                      cfg.has_hap_agents, True)) if on)
        self.num_agents = {"satellite": 1, "hap": self.I, "local": self.J}
        self.nvec = {
            "satellite": [self.B + 2] * self.N,
            "hap": [self.M + 2] * (self.R * self.N),
            "local": [self.K + 1] * (self.N * self.T) + [self.L] * self.N + [5] * self.U,
        }
        self._flat_sel = {}
        for tier, nv in self.nvec.items():
            cmax = max(nv)
            self._flat_sel[tier] = torch.tensor(
                [d * cmax + c for d, n in enumerate(nv) for c in range(n)], device=dev)
        # Per-transmitter constants.
        kind = topo.tx_kind
        self._tx_power_col = kind.clone()  # column of state.power_w: 0 TBS, 1 UAV, 2 HAP, 3 SAT
        k_db = torch.tensor([ch.rician_k_tbs_db, ch.rician_k_uav_db, ch.rician_k_ntn_db,
                             ch.rician_k_ntn_db], device=dev)
        self._tx_k_lin = chn.db_to_linear(k_db)[kind]  # [X]
        self._k_uav = chn.db_to_linear(k_db)[TX_UAV]
        self._tx_div = torch.where(kind == TX_SAT, float(self.H * self.R), 1.0)  # time split
        self._tx_div = torch.cat([self._tx_div, torch.ones(1, device=dev)])  # dummy row X
        self._num_prop = self.Xt + self.I + 1
        self._correlated = ch.fading_rho > 0.0  # AR(1) fading state instead of i.i.d. draws
        self._fixed_sat = (1 + (torch.arange(self.N, device=dev) * self.B) // self.N)
        self._others = torch.tensor([[o for o in range(self.J) if o != j] for j in range(self.J)],
                                    dtype=torch.long, device=dev).view(1, self.J, 1, self.J - 1)
        self._moves = torch.tensor(_UAV_MOVES, device=dev)
        self._area = torch.tensor(topo.area_size_xy, device=dev)
        self._sat_prop = torch.tensor([self.Xt + self.I], device=dev)
        # Propagation ids whose spatial fields a full large-scale refresh draws: shadowing for
        # TBS, HAP, satellite; LoS uniforms for TBS, UAV, HAP, satellite (in that order).
        rows = torch.arange(self.Xt, device=dev).view(self.J, self.M)
        tbs_p = topo.tx_prop_id[rows[:, :self.Tn].reshape(-1)]
        uav_p = topo.tx_prop_id[rows[:, self.Tn:].reshape(-1)]
        ntn_p = torch.cat([self.Xt + torch.arange(self.I, device=dev), self._sat_prop])
        self._field_props = (torch.cat([tbs_p, ntn_p]), torch.cat([tbs_p, uav_p, ntn_p]))
        self._nvec_t = {t: torch.tensor(nv, device=dev) for t, nv in self.nvec.items()}
        self._offs_t = {t: torch.cumsum(nv, 0) - nv for t, nv in self._nvec_t.items()}
        self._top_t = {t: nv - 1 for t, nv in self._nvec_t.items()}
        # counter codes of rng.mix for the steps of an episode (see dynamics.step_key)
        self._t_code = rng.counter_code(torch.arange(cfg.timing.episode_steps + 2, device=dev)
                                        + 1)
        self.state: CoreState | None = None
        self._t_known = None  # (state, t): every env of that state is at step t; see _host_t
        self._memo: dict = {}  # see state.last_for
        self.last: Scored | None = None
        self._last_state: CoreState | None = None
        self.obs_spec = observation.obs_specs(self)
        self.compile_mode = mode  # None, "graph" or "kernels"
        self._transition_compiled, self._kernels = kernels.build(self, mode)

    # ------------------------------------------------------------------ agents and spaces
    def agent_names(self, tier: str) -> list[str]:
        return [f"{tier}_{i}" for i in range(self.num_agents[tier])]

    @property
    def agents(self) -> list[str]:
        return [a for t in self.tiers for a in self.agent_names(t)]

    def action_size(self, tier: str) -> int:
        return int(sum(self.nvec[tier]))

    def obs_size(self, tier: str) -> int:
        return sum(s[1] for s in self.obs_spec[tier])

    def obs_bounds(self, tier: str) -> tuple[np.ndarray, np.ndarray]:
        lo = np.concatenate([np.full(s[1], s[2], np.float32) for s in self.obs_spec[tier]])
        hi = np.concatenate([np.full(s[1], s[3], np.float32) for s in self.obs_spec[tier]])
        return lo, hi

    @property
    def state_size(self) -> int:
        return sum(self.obs_size(t) * self.num_agents[t] for t in self.tiers)

    @property
    def decision_intervals(self) -> dict:
        """Steps between two decisions of each tier: a tier decides where ``t % interval == 0``."""
        tm = self.cfg.timing
        return {"satellite": tm.satellite_interval, "hap": tm.hap_interval, "local": 1}

    def decides(self, st: CoreState | None = None) -> dict:
        """Which tiers decide on the current step, per env ([E] bool each)."""
        st = st or self.state
        iv = self.decision_intervals
        return {"satellite": st.t % iv["satellite"] == 0, "hap": st.t % iv["hap"] == 0,
                "local": torch.ones_like(st.t, dtype=torch.bool)}

    # ------------------------------------------------------------------ reset
    def reset(self, seed=None, env_ids=None):
        """Reset all envs (``env_ids=None``) or the given ones; returns (obs, masks).

        ``seed``: int (env i gets seed + i, so env i of a batch equals a single env seeded with
        seed + i), a sequence of E (or len(env_ids)) ints, or None (first reset: fresh entropy;
        later: the next episode of each env's own stream). ``env_ids``: distinct indices in
        [0, E). Floats, strings and bools are refused, not converted.
        """
        check_reset_args(seed, env_ids, self.num_envs)
        E, dev = self.num_envs, self.device
        ids = (torch.arange(E, device=dev) if env_ids is None
               else torch.as_tensor(env_ids, dtype=torch.long, device=dev).flatten())
        n = ids.numel()
        fresh = dynamics.initial_state(self, *dynamics.episode_keys(self, seed, ids))
        if self.state is None or n == E and env_ids is None:
            self.state = fresh
        else:
            full = self.state.repeat(1)
            for f in fields(CoreState):
                getattr(full, f.name)[ids] = getattr(fresh, f.name)
            self.state = full
        # every env at step 0, known on the host (no device sync to find it), or unknown
        self._t_known = (self.state, 0) if n == E else None
        self.last, self._last_state = None, None
        self._masks = self.masks()
        return self.observe(), self._masks

    # ------------------------------------------------------------------ step
    def step(self, actions: dict, auto_reset: bool = False) -> dict:
        """Apply one joint action, advance the state, return a dict of batched results.

        Keys: ``obs``, ``masks`` (tier dicts), ``rewards`` (tier -> [E, agents]), ``truncated``
        [E] bool, ``metrics`` (name -> [E], system level), ``region`` (name -> [E, J]),
        ``voided``/``repaired`` [E] totals, ``voided_agents``/``repaired_agents`` (tier ->
        [E, agents]; tiers without any absent), ``decided`` (tier -> [E] bool). With
        ``auto_reset``, envs that finished are reset to their next episode and obs/masks are those
        of the new one; without it, stepping an env whose episode is over raises RuntimeError.
        """
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        check_not_finished(self)
        st = self.state
        t = self._host_t()
        full = self._refresh_mode(st, t)
        if self._transition_compiled is not None and full is not None:
            # one graph: which tiers decide, the mask check, scoring, next state, observations,
            # masks (envs out of refresh phase, after partial resets, take the eager path below)
            actions, repaired = checking.check_format(self, actions), {}
            chk = self._masks if self.check_actions else None
            res = self._transition_compiled(st, actions, full, chk)
            if chk is not None and not bool(res[-1]):  # raise, or repair and run again
                actions, repaired = checking.check(self, actions, self._masks, res[0])
                res = self._transition_compiled(st, actions, full, chk)
            dec, sc, changed, obs, masks, metrics, _ = res
            new = replace(st, **changed)
        else:
            dec = self.decides(st)
            actions, repaired = checking.check(self, actions, self._masks, dec)
            sc = self._score(st, actions, dec,
                             upper_fixed=t is not None and not self._upper_decided(dec, t))
            new, obs, masks, metrics = self._advance(st, sc, full), None, None, None
        self.last, self._last_state = sc, st
        trunc = new.t >= self.cfg.timing.episode_steps
        self.state = new
        self._t_known = None if t is None else (new, t + 1)
        out = {"rewards": sc.rewards, "truncated": trunc, "region": sc.region,
               "metrics": metrics if metrics is not None else self.system_metrics(sc),
               "decided": dec,
               "voided": sum(v.sum(1) for v in sc.voided.values()),
               "repaired": sum((v.sum(1) for v in repaired.values()),
                               torch.zeros(self.num_envs, dtype=torch.long, device=self.device)),
               "voided_agents": {t: sc.voided[t] for t in self.tiers if t in sc.voided},
               "repaired_agents": repaired}
        if auto_reset and bool(trunc.any()):
            self.reset(env_ids=torch.nonzero(trunc).flatten())
            self.last, self._last_state = sc, st
            obs = None
        elif masks is not None:
            self._masks = masks
        elif self._upper_decided(dec, t) or self._orbit_changed(t):
            # masks depend only on the allocation (changed this step) and, with the orbit on,
            # on whether the satellite is in view
            self._masks = self.masks()
        out["obs"] = obs if obs is not None else self.observe()
        out["masks"] = self._masks
        return out

    def _transition(self, st: CoreState, actions: dict, full: bool, masks: dict | None):
        """A step's pure part, the one ``compile=True`` compiles: (which tiers decide, scored
        step, the next state's changed fields, its observations, its masks, system metrics,
        whether ``masks`` allow every action (None: unchecked)). ``full``: whether every env
        refreshes its large-scale channel on the next state."""
        dec = self.decides(st)
        ok = None
        if masks is not None:
            ok = checking.all_allowed(self, st, actions, masks, dec)
            # out-of-range values must not index anything inside the graph: clamped here, the
            # step's results are discarded unless ok
            actions = {t: a.clamp(min=0).minimum(self._top_t[t]) for t, a in actions.items()}
        sc = self._score(st, actions, dec)
        new = self._advance(st, sc, full)
        # only the fields that changed leave the graph (outputs aliasing inputs cost extra)
        changed = {f: getattr(new, f) for f in STATE_FIELDS
                   if getattr(new, f) is not getattr(st, f)}
        return (dec, sc, changed, self.observe(new),
                allocation.masks_from(self, new.sat_choice, new.hap_choice, new.t),
                self.system_metrics(sc), ok)

    def _host_t(self) -> int | None:
        """The step counter shared by every env, known on the host without a device sync
        (after a full reset and the steps since), or None (unknown, or envs out of phase)."""
        known = self._t_known
        return known[1] if known is not None and known[0] is self.state else None

    def _refresh_mode(self, st: CoreState, t: int | None):
        """True if every env refreshes its large-scale channel on the step after ``st``, False if
        none does, None if some do (envs out of phase after partial resets). ``t``: the host
        step counter (:meth:`_host_t`), which spares the device sync where known."""
        every = self.cfg.channel.large_scale_refresh_steps
        if t is not None:
            return (t + 1) % every == 0
        refresh = ((st.t + 1) % every) == 0
        if bool(refresh.all()):
            return True
        return None if bool(refresh.any()) else False

    def _orbit_changed(self, t: int | None) -> bool:
        """With the orbit on: whether the satellite's visibility may differ between step ``t``
        and ``t + 1`` (always where ``t`` is unknown on the host)."""
        if self.orbit is None:
            return False
        vis = self.orbit.visible_host
        return t is None or vis[min(t, len(vis) - 1)] != vis[min(t + 1, len(vis) - 1)]

    def _upper_decided(self, dec: dict, t: int | None) -> bool:
        """Whether any upper tier decided on the step just taken in any env (``dec`` as
        :meth:`decides` gave it; from the host step counter ``t`` where known)."""
        upper = [u for u in self.tiers if u != "local"]
        if t is None:
            return any(bool(dec[u].any()) for u in upper)
        return any(t % self.decision_intervals[u] == 0 for u in upper)

    # ------------------------------------------------------------------ what-if evaluation
    def evaluate(self, actions: dict, decide: str = "scheduled") -> dict:
        """Score C candidate joint actions per env on the current frozen state.

        ``actions[tier]``: [E, C, agents, dims]. ``decide``: "scheduled" applies each tier's
        action only where it decides on this step (like ``step``); "all" applies every tier's
        action now. Returns ``rewards`` (tier -> [E, C, agents]), ``metrics`` (name -> [E, C])
        and ``region`` (name -> [E, C, J]). The state is not changed; actions are not checked.
        """
        return scoring.evaluate(self, actions, decide)

    # ------------------------------------------------------------------ allocation and masks
    def fixed_hap_choice(self, sat_choice: torch.Tensor) -> torch.Tensor:
        """Equal split: the k-th subband handed to a region's beam goes to node k mod M."""
        return allocation.fixed_hap_choice(self, sat_choice)

    def default_actions(self, tier: str) -> torch.Tensor:
        """Default action per tier (difference rewards): equal split above, idle schedule below."""
        return allocation.default_actions(self, tier)

    def holders(self, sat_choice: torch.Tensor, hap_choice: torch.Tensor):
        """(holder [E, J, N], beam_has [E, J, N], satellite_direct [E, J, N]) for effective
        choices ``sat_choice`` [E, N] and ``hap_choice`` [E, J, N] (public form of the rule
        the core scores with)."""
        return allocation.holders(self, sat_choice, hap_choice)

    def stream_power_w(self, holder: torch.Tensor, st: CoreState | None = None) -> torch.Tensor:
        """Per-stream power share [E, X] (W) of each transmitter for an allocation ``holder``,
        before the power level: platform power / streams it holds (docs/model.md, Power)."""
        return allocation.stream_power(self, holder, (st or self.state).power_w)

    def effective_upper(self, actions: dict, st: CoreState | None = None,
                        decides: dict | None = None):
        """Effective (sat_choice [E, N], hap_choice [E, J, N]) after this step's upper-tier
        ``actions`` take effect where their tier decides (voiding included)."""
        st = st or self.state
        sat, hap, _ = allocation.upper_choices(self, st, actions, decides or self.decides(st))
        return sat, hap

    def allocation(self) -> dict:
        """Current effective allocation per env: ``holder`` [E, J, N] (transmitter holding
        subband n in region j, -1 none), ``beam_alloc`` [E, B, N], ``satellite_direct`` [E, N],
        ``hap_choice`` [E, J, N] (0 off, 1..M node, M+1 HAP-direct)."""
        return allocation.effective_allocation(self)

    def masks(self) -> dict:
        """Flat binary masks per tier [E, agents, sum(nvec)] for the current state."""
        return allocation.masks_from(self, self.state.sat_choice, self.state.hap_choice,
                                     self.state.t)

    def masks_for(self, actions: dict) -> dict:
        """Masks of the lower tiers after the given upper-tier actions take effect this step.

        For top-down sampling within one step (a centralised agent, or HDRL sequencing its
        tiers): pass ``{"satellite": a_s}`` to get HAP and local masks consistent with a_s, then
        add ``"hap"`` to get local masks consistent with both.
        """
        return allocation.masks_after(self, self.state, actions, self.decides())

    def padded_mask(self, tier: str, flat: torch.Tensor) -> torch.Tensor:
        """Flat mask [..., sum(nvec)] -> [..., positions, max(nvec)] (False beyond a position)."""
        return allocation.padded_mask(self, tier, flat)

    def describe_position(self, tier: str, pos: int) -> str:
        """What position ``pos`` of a ``tier`` agent's action chooses, and its values."""
        return checking.describe_position(self, tier, pos)

    # ------------------------------------------------------------------ metrics, observations
    def system_metrics(self, sc: Scored) -> dict:
        """System-level metrics of a scored step, name -> [E] (names: ``SYSTEM_METRICS``)."""
        return scoring.system_metrics(self, sc)

    def observe(self, st: CoreState | None = None) -> dict:
        """Observations per tier [E, agents, obs_size] (float32, finite)."""
        return observation.observe(self, st)

    def global_state(self, obs: dict | None = None) -> torch.Tensor:
        """Global state for centralised critics: all agents' observations, concatenated [E, S]."""
        return observation.global_state(self, obs)

    def link_state(self, env: int = 0) -> dict:
        """Full link state of env ``env`` for the last step, as numpy arrays (docs/env.md, Link
        state contract)."""
        return links.link_state(self, env)

    # ------------------------------------------------------------------ seams
    # The modules call these parts of a step through the core, so that one core's parts can be
    # timed or replaced (benchmarks/bench_breakdown.py, tests) and its kernels found.
    def _score(self, st: CoreState, actions: dict, dec: dict,
               upper_fixed: bool = False) -> Scored:
        """Score one joint action on ``st`` (:func:`tntn_env.scoring.score`)."""
        return scoring.score(self, st, actions, dec, upper_fixed)

    def _advance(self, st: CoreState, sc: Scored, full: bool | None) -> CoreState:
        """The next state after scored step ``sc`` (:func:`tntn_env.dynamics.advance`)."""
        return dynamics.advance(self, st, sc, full)

    def _large_scale(self, st: CoreState, full: bool) -> None:
        """Refresh ``st``'s large-scale tables (:func:`tntn_env.links.large_scale`)."""
        links.large_scale(self, st, full)

    def _gain(self, st: CoreState, tx, user, n):
        """Linear gain of links (tx, user, subband) at ``st`` (:func:`tntn_env.links.gain`)."""
        return links.gain(self, st, tx, user, n)

    def _allocation(self, sat_choice, hap_choice):
        """Holders and availability flags, memoised (:func:`tntn_env.allocation.holders`)."""
        return allocation.holders(self, sat_choice, hap_choice)

    def _allocation_of(self, sat_choice, hap_choice):
        """:meth:`_allocation` computed (:func:`tntn_env.allocation.holders_of`)."""
        return allocation.holders_of(self, sat_choice, hap_choice)

    def _fade_key(self, st: CoreState) -> torch.Tensor:
        """[E] key of the i.i.d. fading draws of ``st``'s realisation."""
        return links.fade_key(self, st)

    def _step_key(self, ekey, t):
        """Key of step t's realisation (:func:`tntn_env.dynamics.step_key`)."""
        return dynamics.step_key(self, ekey, t)

    def _kernels_for(self, st: CoreState) -> dict | None:
        """The compiled kernels (``compile="kernels"``) if they apply to ``st``, else None (eager
        code): they are compiled for the core's own batch shape, which what-if evaluation
        batches do not have."""
        return self._kernels if st.key.numel() == self.num_envs else None

    def _kernel_ok(self, st: CoreState) -> bool:
        """Whether the fading-draw kernels apply to ``st``: :meth:`_kernels_for` and i.i.d.
        fading (correlated fading gathers the state's fading field instead of drawing)."""
        return self._kernels_for(st) is not None and not self._correlated


__all__ = ["TNTNCore", "CoreState", "Scored", "TIERS", "SYSTEM_METRICS", "TX_TBS", "TX_UAV",
           "TX_HAP", "TX_SAT"]
