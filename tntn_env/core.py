"""The batched TN-NTN core: all physics, masks, metrics and rewards, written once in torch.

Tensors carry a leading environment dimension E and live on ``device``. The PettingZoo env, the
trainers and the baselines are thin views of this class (README, Layout).

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

import math
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from . import channel as chn
from . import rng
from .checks import check_not_finished, check_reset_args
from .config import EnvConfig, make_config
from .topology import TX_HAP, TX_SAT, TX_TBS, TX_UAV, build_topology

TIERS = ("satellite", "hap", "local")
# Keys of TNTNCore.system_metrics (step()["metrics"]), in order.
SYSTEM_METRICS = ("throughput_mbps", "sum_rate_mbps", "spectral_efficiency", "fairness",
                  "qos_violation", "uav_penalty", "spectrum_utilisation", "reward")
_UAV_MOVES = ((0.0, 0.0), (1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0))
# Random streams (a draw = hash(env key, episode, step, stream, index)).
_S_POWER, _S_HOT_INIT, _S_HOT_TARGET, _S_USER_HOT, _S_USER_POS = 1, 2, 3, 4, 5
_S_WALK, _S_FADE_RE, _S_SHADOW, _S_LOS, _S_FADE_INIT = 6, 7, 9, 10, 11
_FIELD_CELLS = 4096  # spatial-field grid cells per axis (positions wrap beyond)


_KERNEL_ENVS = 1024  # compile=True on CPU from this E on: compiled kernels in the eager step


def _snr_feature_(lin: torch.Tensor, noise_w: float) -> torch.Tensor:
    """Observation feature of received powers ``lin`` (W): SNR in dB / 20, clipped to +-3; in
    place on ``lin`` (a fresh tensor of the caller's)."""
    lin.clamp_(min=1e-30)
    lin /= noise_w
    lin.log10_()
    lin *= 10
    lin /= 20
    return lin.clamp_(-3, 3)


def _link_counters(tx, user, n, num_users: int, num_subbands: int) -> torch.Tensor:
    """int32 link counters (tx * Ut + user) * N + n at the inputs' broadcast shape (the
    generator's index type; links < 2**31 by construction)."""
    return rng.to_i32(tx * (num_users * num_subbands)) + rng.to_i32(user * num_subbands + n)


def _link_index(tx, user, n, num_users: int, num_subbands: int):
    """(link counters, (tx, user) pairs), both int32 at the inputs' broadcast shape: the pair
    tx * Ut + user indexes the [E, X * Ut] large-scale tables, the counter pair * N + n the
    draws (the same values as :func:`_link_counters`). For the kernels of ``compile="kernels"``,
    which take both materialised: deriving the pair from the counter inside a kernel costs an
    integer division per link (~20-30 % of the link kernels, scratch runs)."""
    pair = rng.to_i32(tx * num_users) + rng.to_i32(user)
    return pair * num_subbands + rng.to_i32(n), pair


def _link_gain(key, link, pair, ls_gain, ls_k):
    """Gains [E, L] of flat links: large-scale gain times a Rician draw. ``key`` [E, 1] fading
    keys, ``link`` [E, L] int32 link counters (tx * Ut + user) * N + n, ``pair`` [E, L] their
    int32 (tx, user) pairs (:func:`_link_index`), ``ls_gain``/``ls_k`` the [E, X * Ut]
    large-scale tables. Inside the kernels of ``compile="kernels"`` (contiguous rows: inductor
    vectorises the draw and the product in one pass)."""
    pair = pair.long()
    kf = torch.gather(ls_k, 1, pair)
    return rng.rician_power(key, link, kf) * torch.gather(ls_gain, 1, pair)


def _holder_snr(key, link, pair, ls_gain, ls_k, power_w, noise_w: float):
    """The local observation's holder SNR features [E, J * K * N] in one pass: ``link`` [E, J * K
    * N] the holders' links to the region's users and ``pair`` their (tx, user) pairs
    (:func:`_link_index`), ``power_w`` [E, J, 1, N] the holder's stream power, 0 where the
    subband has no holder (feature 0). The links and pairs come in materialised (the core
    computes them once per allocation): built from broadcast indices inside the kernel, they
    would make inductor loop over [E, J, K, N] with 10-wide inner loops (3x slower here)."""
    E, J, _, N = power_w.shape
    p = power_w.expand(E, J, link.shape[1] // (J * N), N).reshape(E, -1)
    feat = _snr_feature_(_link_gain(key, link, pair, ls_gain, ls_k) * p, noise_w)
    return torch.where(p > 0, feat, 0.0)


def _slot_outcomes(sig, interf, served, div, noise_w: float, slot_hz: float):
    """(SINR, (interference + noise) / noise, rate in bps) of time-frequency slots from received
    signal and interference powers (W); 0 where not ``served``; ``slot_hz`` the bandwidth of a
    slot's subband over the time blocks, ``div`` the serving transmitter's time split."""
    inr = 1.0 + interf / noise_w
    sinr = torch.where(served, sig / (interf + noise_w), 0.0)
    rate = slot_hz / div * torch.log1p(sinr) / math.log(2.0)
    return sinr, torch.where(served, inr, 0.0), torch.where(served, rate, 0.0)


def _slot_links(key, link, pair, ls_gain, ls_k, power_w, served, div, noise_w: float,
                slot_hz: float):
    """:func:`_slot_outcomes` of every slot from its links, in one pass. ``link`` [E, C, J * N *
    T] the counters of each slot's C candidate transmitters (the last one serving) and ``pair``
    their (tx, user) pairs (materialised, as for :func:`_holder_snr`), ``power_w`` [E, C, J,
    N, 1] their powers (0 for an interferer that is the serving transmitter or silent),
    ``served`` [E, J, N, T], ``div`` [E, J, N, 1]."""
    E, C, S = link.shape
    _, _, J, N, _ = power_w.shape
    T = S // (J * N)
    pw = power_w.expand(E, C, J, N, T).reshape(E, C, S)
    rx = _link_gain(key, link.view(E, -1), pair.view(E, -1), ls_gain, ls_k).view(E, C, S) * pw
    interf = rx[:, 0]
    for c in range(1, C - 1):  # C is a handful (the regions): unrolled
        interf = interf + rx[:, c]
    return _slot_outcomes(rx[:, C - 1], interf, served.view(E, S),
                          div.expand(E, J, N, T).reshape(E, S), noise_w, slot_hz)


def _cat_last(parts):
    """``torch.cat(parts, -1)``; compiled at large E: one copy pass instead of a memcpy per row
    and part (the local observation: 8 parts of 2-100 floats per row)."""
    return torch.cat(parts, -1)


def _one_hot(idx: torch.Tensor, n: int) -> torch.Tensor:
    """``one_hot(idx, n).float()`` written straight into float32 (no int64 tensor between);
    ``idx`` holds valid indices by construction."""
    out = torch.zeros(*idx.shape, n, dtype=torch.float32, device=idx.device)
    return out.scatter_(-1, idx.unsqueeze(-1), 1.0)


@dataclass
class CoreState:
    """Everything that evolves; leading dim E. Replaced, never mutated in place."""

    key: torch.Tensor  # [E] int32 env key from the seed
    ekey: torch.Tensor  # [E] int32 key of the episode (from key and episode)
    rkey: torch.Tensor  # [E] int32 key of the current step's realisation (episode, t)
    episode: torch.Tensor  # [E] int64
    t: torch.Tensor  # [E] int64 step within the episode
    power_w: torch.Tensor  # [E, 4] per-episode power of a TBS, UAV, HAP, satellite beam
    field_key: torch.Tensor  # [E, P] spatial-field keys per propagation platform
    user_xy: torch.Tensor  # [E, Ut, 2]
    user_hot: torch.Tensor  # [E, Ut] bool: placed around a hotspot at reset
    uav_xy: torch.Tensor  # [E, J*U, 2]
    hot_xy: torch.Tensor  # [E, Hs, 2]
    hot_target: torch.Tensor  # [E, Hs, 2]
    demand_bps: torch.Tensor  # [E, Ut]
    ls_gain: torch.Tensor  # [E, X, Ut] large-scale linear gain incl. antennas and beam pattern
    ls_los: torch.Tensor  # [E, X, Ut] bool LoS state
    ls_k: torch.Tensor  # [E, X, Ut] Rician K-factor (linear) of each link, 0 in NLoS
    uav_los_u: torch.Tensor  # [E, J*U, Ut] LoS-field uniforms of UAV links (refreshed with users)
    fade: torch.Tensor  # [E, X, Ut, N, 2] scattered fading state (only when fading_rho > 0)
    sat_choice: torch.Tensor  # [E, N] effective satellite allocation
    hap_choice: torch.Tensor  # [E, J, N] effective HAP allocation per region
    last_rate: torch.Tensor  # [E, Ut]
    last_served: torch.Tensor  # [E, J] served fraction of demand
    last_se: torch.Tensor  # [E, J]
    last_fair: torch.Tensor  # [E, J]
    last_inr_db: torch.Tensor  # [E, J, N] interference+noise over noise, mean over served users

    def index(self, idx) -> CoreState:
        return CoreState(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def repeat(self, c: int) -> CoreState:
        return CoreState(**{f.name: getattr(self, f.name).repeat_interleave(c, dim=0)
                            for f in fields(self)})

    def merged(self, where: torch.Tensor, other: CoreState) -> CoreState:
        """Rows of ``other`` where ``where`` [E] is true, else own rows."""
        out = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            w = where.view(-1, *([1] * (a.dim() - 1)))
            out[f.name] = torch.where(w, b, a)
        return CoreState(**out)


_STATE_FIELDS = tuple(f.name for f in fields(CoreState))


@dataclass
class Scored:
    """Result of applying one joint action to a frozen state (no state change)."""

    sat_choice: torch.Tensor  # [E, N]
    hap_choice: torch.Tensor  # [E, J, N]
    holder: torch.Tensor  # [E, J, N] transmitter holding n in region j, -1 none
    users: torch.Tensor  # [E, J, N, T] scheduled user of the region, -1 none
    tx_power_w: torch.Tensor  # [E, X, N]
    slot_sinr: torch.Tensor  # [E, J, N, T]
    slot_inr: torch.Tensor  # [E, J, N, T] (interference + noise) / noise
    slot_rate: torch.Tensor  # [E, J, N, T] bps
    rate_bps: torch.Tensor  # [E, Ut]
    uav_xy: torch.Tensor  # [E, J*U, 2] after the move
    region: dict  # name -> [E, J]
    rewards: dict  # tier -> [E, A]
    voided: dict  # tier -> [E, agents] choices voided by a new upper-tier allocation


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
        if not (isinstance(compile, bool) or compile in ("graph", "kernels")):
            raise ValueError(f"compile = {compile!r} is invalid; allowed: True, False, 'graph', "
                             "'kernels'")
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
        # counter codes of rng.mix for the steps of an episode (see _step_key)
        self._t_code = rng.counter_code(torch.arange(cfg.timing.episode_steps + 2, device=dev)
                                        + 1)
        self.state: CoreState | None = None
        self._t_known = None  # (state, t): every env of that state is at step t; see _host_t
        self._memo: dict = {}  # see _last_for
        self.last: Scored | None = None
        self._last_state: CoreState | None = None
        self._build_obs_specs()
        if compile is True:  # see the class docstring
            compile = ("kernels" if num_envs >= _KERNEL_ENVS and self.device.type == "cpu"
                       else "graph")
        self.compile_mode = compile or None  # None, "graph" or "kernels"
        # One graph per (refresh flag, grad mode) variant; E is static. Inductor options: no
        # size/stride asserts on the inputs (dynamo's guards check them already; ~1 us each per
        # call). For small batches: one thread (OpenMP fork/join costs more than it saves) and
        # scalar C++ (simdlen 1): the inner loops are a few elements long, so 8-lane vectors
        # run mostly masked tails; scalar code runs about as fast at E = 1 and compiles in about
        # half the time (README, Benchmarks). The kernels' rows are long: vector code.
        opts = {"size_asserts": False}
        if num_envs < 8 and compile == "graph":
            opts["cpp.threads"] = 1
            opts["cpp.simdlen"] = 1
        self._transition_compiled = (torch.compile(self._transition, dynamic=False, options=opts)
                                     if compile == "graph" else None)
        self._kernels = ({name: torch.compile(f, dynamic=False, options=opts)
                          for name, f in (("holder_snr", _holder_snr),
                                          ("slots", _slot_links),
                                          ("uav_rows", self._uav_rows),
                                          ("demand", self._demand), ("cat", _cat_last),
                                          ("region_snr", self._region_snr),
                                          ("tables", self._large_scale_tables))}
                         if compile == "kernels" else None)

    # ------------------------------------------------------------------ agents and spaces
    def agent_names(self, tier: str) -> list[str]:
        return [f"{tier}_{i}" for i in range(self.num_agents[tier])]

    @property
    def agents(self) -> list[str]:
        return [a for t in self.tiers for a in self.agent_names(t)]

    def action_size(self, tier: str) -> int:
        return int(sum(self.nvec[tier]))

    def _build_obs_specs(self) -> None:
        N, B, J, K, M, R, U = self.N, self.B, self.J, self.K, self.M, self.R, self.U
        inf = math.inf
        d = self.cfg.demand
        dem_hi = 1.0 + self.Hs * d.hotspot_demand_bps / d.base_demand_bps
        uav_hi = 0.5 + self.cfg.timing.episode_steps * self.cfg.network.uav_step_m / \
            self.cfg.network.region_size_m
        self.obs_spec = {
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

    def obs_size(self, tier: str) -> int:
        return sum(s[1] for s in self.obs_spec[tier])

    def obs_bounds(self, tier: str) -> tuple[np.ndarray, np.ndarray]:
        lo = np.concatenate([np.full(s[1], s[2], np.float32) for s in self.obs_spec[tier]])
        hi = np.concatenate([np.full(s[1], s[3], np.float32) for s in self.obs_spec[tier]])
        return lo, hi

    @property
    def state_size(self) -> int:
        return sum(self.obs_size(t) * self.num_agents[t] for t in self.tiers)

    # ------------------------------------------------------------------ randomness helpers
    def _step_key(self, ekey, t):
        """Key of step t's realisation, ``rng.mix(ekey, t + 1)``; the counter's hash comes from a
        table over the episode's steps (the same bits, a dozen ops fewer per step)."""
        n = self._t_code.numel()
        if torch.compiler.is_compiling():  # no host sync in a graph: both, then select
            coded = rng.mix_coded(ekey, self._t_code[t.clamp(max=n - 1)])
            return torch.where(t < n, coded, rng.mix(ekey, t + 1))
        if int(t.max()) < n:
            return rng.mix_coded(ekey, self._t_code[t])
        return rng.mix(ekey, t + 1)

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
        if seed is None:
            if self.state is None:
                base = int(np.random.SeedSequence().entropy) % (2 ** 62)
                seeds = torch.arange(n, device=dev) + base
                key, episode = rng.seed_to_key(seeds), torch.zeros(n, dtype=torch.long, device=dev)
            else:
                key, episode = self.state.key[ids], self.state.episode[ids] + 1
        else:
            if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
                if seed < 0:
                    raise ValueError(f"seed = {seed} is invalid; allowed: an integer >= 0")
                seeds = ids + int(seed)  # env i gets seed + i, also in a partial reset
            else:
                seeds = torch.as_tensor(np.asarray(seed, dtype=np.int64), device=dev).flatten()
                if seeds.numel() != n or bool((seeds < 0).any()):
                    raise ValueError(f"seed has {seeds.numel()} entries; allowed: {n} integers "
                                     ">= 0")
            key, episode = rng.seed_to_key(seeds), torch.zeros(n, dtype=torch.long, device=dev)
        fresh = self._initial_state(key, episode)
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

    def _initial_state(self, key, episode) -> CoreState:
        cfg, dev = self.cfg, self.device
        n = key.numel()
        J, N = self.J, self.N
        zero_t = torch.zeros(n, dtype=torch.long, device=dev)
        ekey = rng.mix(key, episode)
        k0 = rng.mix(ekey, 0)
        # Per-episode powers, uniform in dBm over each tier's range (Section 4.1).
        u = rng.uniform(rng.mix(k0, _S_POWER)[:, None], torch.arange(4, device=dev)[None])
        rngs = [cfg.network.tbs_power_dbm, cfg.network.uav_power_dbm,
                cfg.network.hap_power_dbm, cfg.network.satellite_power_dbm]
        lo = torch.tensor([r[0] for r in rngs], device=dev)
        hi = torch.tensor([r[1] for r in rngs], device=dev)
        power_w = chn.dbm_to_watt(lo + (hi - lo) * u)
        field_key = rng.mix(rng.mix(k0, _S_SHADOW)[:, None],
                            torch.arange(self._num_prop, device=dev)[None])
        w, h = self.topo.area_size_xy
        area = torch.tensor([w, h], device=dev)
        hot = rng.uniform(rng.mix(k0, _S_HOT_INIT)[:, None],
                          torch.arange(2 * self.Hs, device=dev)[None]).view(n, self.Hs, 2) * area
        target = rng.uniform(rng.mix(k0, _S_HOT_TARGET)[:, None],
                             torch.arange(2 * self.Hs, device=dev)[None]).view(n, self.Hs, 2) * area
        # Users: a share clustered around the point of their region nearest to a hotspot, the rest
        # uniform over the region.
        size = self.cfg.network.region_size_m
        uidx = torch.arange(self.Ut, device=dev)[None]
        kp = rng.mix(k0, _S_USER_POS)[:, None]
        uni = torch.stack([rng.uniform(kp, 4 * uidx), rng.uniform(kp, 4 * uidx + 1)], -1)
        gauss = torch.stack([rng.normal(kp, 4 * uidx + 2), rng.normal(kp, 4 * uidx + 3)], -1)
        origin = self.topo.region_origin_xy[self.topo.user_region][None]  # [1, Ut, 2]
        pos = origin + uni * size
        kh = rng.mix(k0, _S_USER_HOT)[:, None]
        is_hot = (rng.uniform(kh, 2 * uidx) < cfg.demand.hotspot_user_fraction) & (self.Hs > 0)
        if self.Hs > 0:
            which = (rng.uniform(kh, 2 * uidx + 1) * self.Hs).long().clamp(max=self.Hs - 1)
            anchor = torch.gather(hot, 1, which[..., None].expand(-1, -1, 2))
            anchor = torch.maximum(torch.minimum(anchor, origin + size), origin)
            near = anchor + gauss * cfg.demand.hotspot_radius_m
            near = torch.maximum(torch.minimum(near, origin + size), origin)
            pos = torch.where(is_hot[..., None], near, pos)
        uav = self.topo.uav_start_xy.reshape(1, J * self.U, 2).expand(n, -1, -1).clone()
        st = CoreState(
            key=key, ekey=ekey, rkey=self._step_key(ekey, zero_t), episode=episode, t=zero_t,
            power_w=power_w, field_key=field_key,
            user_xy=pos, user_hot=is_hot, uav_xy=uav, hot_xy=hot, hot_target=target,
            demand_bps=torch.zeros(n, self.Ut, device=dev),
            ls_gain=torch.zeros(n, self.X, self.Ut, device=dev),
            ls_los=torch.zeros(n, self.X, self.Ut, dtype=torch.bool, device=dev),
            ls_k=torch.zeros(n, self.X, self.Ut, device=dev),
            uav_los_u=torch.zeros(n, J * self.U, self.Ut, device=dev),
            fade=torch.zeros(n, *((self.X, self.Ut, N, 2) if self._correlated else (0,)),
                             device=dev),
            sat_choice=self._fixed_sat[None].expand(n, -1).clone(),
            hap_choice=torch.zeros(n, J, N, dtype=torch.long, device=dev),
            last_rate=torch.zeros(n, self.Ut, device=dev),
            last_served=torch.zeros(n, J, device=dev), last_se=torch.zeros(n, J, device=dev),
            last_fair=torch.zeros(n, J, device=dev), last_inr_db=torch.zeros(n, J, N, device=dev),
        )
        st.hap_choice = self.fixed_hap_choice(st.sat_choice)
        st.demand_bps = self._demand(st.user_xy, st.hot_xy)
        self._large_scale(st, full=True)
        if self._correlated:
            idx = torch.arange(self.X * self.Ut * N * 2, device=dev)[None]
            st.fade = rng.normal(rng.mix(k0, _S_FADE_INIT)[:, None], idx).view(
                n, self.X, self.Ut, N, 2)
        return st

    @property
    def _correlated(self) -> bool:
        return self.cfg.channel.fading_rho > 0.0

    # ------------------------------------------------------------------ fixed rules
    def fixed_hap_choice(self, sat_choice: torch.Tensor) -> torch.Tensor:
        """Equal split: the k-th subband handed to a region's beam goes to node k mod M."""
        beam = self.topo.region_beam
        given = sat_choice[:, None, :] == (beam[None, :, None] + 1)  # [E, J, N]
        rank = torch.cumsum(given.long(), dim=-1) - 1
        return torch.where(given, 1 + rank % self.M, torch.zeros_like(rank))

    def default_actions(self, tier: str) -> torch.Tensor:
        """Default action per tier (difference rewards): equal split above, idle schedule below."""
        E = self.num_envs
        if tier == "satellite":
            return self._fixed_sat.view(1, 1, -1).expand(E, 1, -1).clone()
        if tier == "hap":
            sat = self.state.sat_choice
            return self.fixed_hap_choice(sat).view(E, self.I, self.R * self.N)
        a = torch.zeros(E, self.J, len(self.nvec["local"]), dtype=torch.long, device=self.device)
        a[..., self.N * self.T:self.N * self.T + self.N] = self.L - 1
        return a

    # ------------------------------------------------------------------ channel
    def _field(self, fkey, xy, grid: float, stream: int, bilinear: bool):
        """Spatially consistent N(0,1) (bilinear, unit variance) or U(0,1) (nearest cell) field."""
        g = xy / grid
        if not bilinear:
            c = torch.floor(g).long() & (_FIELD_CELLS - 1)
            idx = (c[..., 0] * _FIELD_CELLS + c[..., 1]) * 16 + stream
            return rng.uniform(fkey, idx)
        c0 = torch.floor(g)
        f = g - c0
        c0 = c0.long()
        acc, wsum = 0.0, 0.0
        for dx in (0, 1):
            for dy in (0, 1):
                cx = (c0[..., 0] + dx) & (_FIELD_CELLS - 1)
                cy = (c0[..., 1] + dy) & (_FIELD_CELLS - 1)
                wgt = (f[..., 0] if dx else 1 - f[..., 0]) * (f[..., 1] if dy else 1 - f[..., 1])
                acc = acc + wgt * rng.normal(fkey, (cx * _FIELD_CELLS + cy) * 16 + stream)
                wsum = wsum + wgt * wgt
        return acc / torch.sqrt(wsum)

    def _large_scale(self, st: CoreState, full: bool) -> None:
        """Set st.ls_gain/ls_los/ls_k (new tensors): UAV rows always, all rows if ``full`` (then
        also st.uav_los_u)."""
        kern = self._kernels_for(st)
        if full:
            tables = kern["tables"] if kern else self._large_scale_tables
            st.ls_gain, st.ls_los, st.ls_k, st.uav_los_u = tables(st.user_xy, st.uav_xy,
                                                                  st.field_key)
            return
        ls_gain, ls_los, ls_k = st.ls_gain.clone(), st.ls_los.clone(), st.ls_k.clone()
        if self.U > 0:
            # the row writes stay eager: compiled, inductor fused them into a pass computing
            # the UAV formula over every row (slower than the kernel plus these writes)
            rows = (kern["uav_rows"] if kern else self._uav_rows)(st.uav_xy, st.user_xy,
                                                                  st.uav_los_u)
            # UAV rows are node Tn.. of each region: written through [E, J, M, Ut] views
            for table, new in zip((ls_gain, ls_los, ls_k), rows):
                table[:, :self.Xt].view(*new.shape[:2], self.M, -1)[:, :, self.Tn:] = new
        st.ls_gain, st.ls_los, st.ls_k = ls_gain, ls_los, ls_k

    def _uav_rows(self, uav_xy, user_xy, los_u):
        """Large-scale (gain, LoS, K-factor) of the UAV links, [E, J, U, Ut] each (Al-Hourani
        air-to-ground model); ``los_u`` [E, J*U, Ut] the links' LoS-field uniforms."""
        net, ch = self.cfg.network, self.cfg.channel
        E, J, U = user_xy.shape[0], self.J, self.U
        d2 = torch.linalg.vector_norm(uav_xy[:, :, None] - user_xy[:, None], dim=-1)
        dh = net.uav_altitude_m - net.ue_height_m
        d3 = torch.sqrt(d2 * d2 + dh * dh)
        el = chn.elevation_deg(d2, torch.full_like(d2, dh))
        los = los_u < chn.a2g_los_probability(el, ch.a2g_a, ch.a2g_b)
        pl = chn.fspl_db(d3, net.carrier_hz) + torch.where(los, ch.a2g_eta_los_db,
                                                           ch.a2g_eta_nlos_db)
        gain_db = ch.uav_antenna_gain_dbi + ch.ue_antenna_gain_dbi - pl
        return (chn.db_to_linear(gain_db).view(E, J, U, -1), los.view(E, J, U, -1),
                torch.where(los, self._k_uav, 0.0).view(E, J, U, -1))

    def _large_scale_tables(self, user_xy, uav_xy, field_key):
        """Every row of the large-scale tables: (gain, LoS, K-factor) [E, X, Ut] and the UAV
        links' LoS-field uniforms [E, J*U, Ut], at the users' positions."""
        cfg, topo = self.cfg, self.topo
        net, ch = cfg.network, cfg.channel
        fc = net.carrier_hz
        E = user_xy.shape[0]
        J, Tn, U = self.J, self.Tn, self.U
        ue = user_xy[:, None]  # [E, 1, Ut, 2]
        # Spatial fields of every platform at the users' positions, [E, P, Ut], in one pass each:
        # the cells and weights are computed once per user and broadcast over the platforms'
        # keys. Shadowing for TBS, HAP and satellite platforms; the LoS field for those and the
        # UAVs (whose LoS field changes only as users move).
        zp, up = self._field_props
        z_all = self._field(field_key[:, zp][..., None], ue, ch.shadowing_grid_m, _S_SHADOW,
                            bilinear=True)
        u_all = self._field(field_key[:, up][..., None], ue, ch.los_grid_m, _S_LOS,
                            bilinear=False)
        nt, nu, ni = J * Tn, J * U, self.I
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
            gain, los, _ = self._uav_rows(uav_xy, user_xy, uav_los_u)
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
        hap_db, hap_los = self._ntn_gain_db(d3, el, z, u, ch.hap_antenna_gain_dbi, env)
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
        el = topo.sat_elevation_deg[topo.user_region][None, None].expand(E, 1, -1)
        d3 = topo.sat_slant_range_m[topo.user_region][None, None].expand(E, 1, -1)
        z, u = z_all[:, nt + ni:], u_all[:, nt + nu + ni:]
        sat_db, sat_los = self._ntn_gain_db(d3, el, z, u, ch.satellite_antenna_gain_dbi, env)
        beam_own = topo.region_beam[topo.user_region][None] == torch.arange(
            self.B, device=self.device)[:, None]  # [B, Ut]
        beam_db = sat_db - torch.where(beam_own, 0.0, ch.satellite_sidelobe_db)[None]
        # rows: terrestrial nodes region by region, HAP spot beams, satellite beams
        ls_gain = torch.cat([torch.cat(node_gain, 2).view(E, self.Xt, -1),
                             chn.db_to_linear(spot_db), chn.db_to_linear(beam_db)], 1)
        ls_los = torch.cat([torch.cat(node_los, 2).view(E, self.Xt, -1), hap_los[:, spot_hap],
                            sat_los.expand(-1, self.B, -1)], 1)
        return ls_gain, ls_los, torch.where(ls_los, self._tx_k_lin[:, None], 0.0), uav_los_u

    def _ntn_gain_db(self, d3, el, z, u, tx_gain_dbi, env):
        ch = self.cfg.channel
        los = u < chn.ntn_los_probability(el, env)
        pl = (chn.fspl_db(d3, self.cfg.network.carrier_hz)
              + z * chn.ntn_shadowing_sigma_db(el, los, env)
              + chn.ntn_clutter_loss_db(el, los, env)
              + chn.gas_loss_db(el, ch.gas_zenith_db) + ch.scintillation_db)
        return tx_gain_dbi + ch.ue_antenna_gain_dbi - pl, los

    def _gain(self, st: CoreState, tx, user, n):
        """Linear channel gain of links (tx, user, subband) at the state's realisation.

        ``tx``, ``user``, ``n`` broadcast to a shape [E, ...]; tx must be a valid index < X.
        Only these links are drawn (counter-based), so every caller sees the same values.
        """
        E = st.key.numel()
        shape = torch.broadcast_shapes(tx.shape, user.shape, n.shape)
        # index arithmetic at the inputs' own shapes, broadcast once: the (tx, user) pair for the
        # gathers (int64), the link counter tx * Ut * N + user * N + n for the draws (int32, the
        # generator's index type; links < 2**31 by construction) in one full-size add
        link = _link_counters(tx, user, n, self.Ut, self.N)
        pair = (tx * self.Ut + user).expand(shape).reshape(E, -1)
        ls = torch.gather(st.ls_gain.reshape(E, -1), 1, pair).view(shape)
        kf = torch.gather(st.ls_k.reshape(E, -1), 1, pair).view(shape)
        if not self._correlated:
            kt = self._fade_key(st).view(E, *([1] * (len(shape) - 1)))
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

    def _kernels_for(self, st: CoreState) -> dict | None:
        """The compiled kernels (``compile="kernels"``) if they apply to ``st``, else None (eager
        code): they are compiled for the core's own batch shape, which what-if evaluation
        batches do not have."""
        return self._kernels if st.key.numel() == self.num_envs else None

    def _kernel_ok(self, st: CoreState) -> bool:
        """Whether the fading-draw kernels apply to ``st``: :meth:`_kernels_for` and i.i.d.
        fading (correlated fading gathers the state's fading field instead of drawing)."""
        return self._kernels_for(st) is not None and not self._correlated

    def _last_for(self, name: str, inputs: tuple, compute):
        """``compute(*inputs)``, or its last result for ``name`` if called with the same tensor
        objects (state tensors are replaced, never written in place, so identity means equal
        values): a step scores, observes and masks one allocation and one realisation."""
        if torch.compiler.is_compiling():  # a graph computes each value once anyway
            return compute(*inputs)
        last = self._memo.get(name)
        if last is not None and all(a is b for a, b in zip(last[0], inputs)):
            return last[1]
        out = compute(*inputs)
        self._memo[name] = (inputs, out)
        return out

    def _fade_key(self, st: CoreState) -> torch.Tensor:
        """[E] key of the i.i.d. fading draws of the state's realisation."""
        return self._last_for("fade_key", (st.rkey,), lambda k: rng.mix(k, _S_FADE_RE))

    def _demand(self, user_xy, hot_xy):
        d = self.cfg.demand
        dem = torch.full(user_xy.shape[:2], d.base_demand_bps, device=self.device)
        if self.Hs == 0:
            return dem
        r2 = ((user_xy[:, :, None] - hot_xy[:, None]) ** 2).sum(-1)
        return dem + d.hotspot_demand_bps * torch.exp(-r2 / (2 * d.hotspot_radius_m ** 2)).sum(-1)

    # ------------------------------------------------------------------ allocation and masks
    def _allocation(self, sat_choice, hap_choice):
        """Holder per (region, subband) and availability flags from effective choices."""
        return self._last_for("allocation", (sat_choice, hap_choice), self._allocation_of)

    def _allocation_of(self, sat_choice, hap_choice):
        topo, M = self.topo, self.M
        beam = topo.region_beam[None, :, None]
        sat_direct = (sat_choice == self.B + 1)[:, None, :].expand(-1, self.J, -1)
        beam_has = sat_choice[:, None, :] == beam + 1  # [E, J, N]
        j = torch.arange(self.J, device=self.device)[None, :, None]
        node_tx = j * M + (hap_choice - 1)
        holder = torch.where(beam_has & (hap_choice >= 1) & (hap_choice <= M), node_tx, -1)
        holder = torch.where(beam_has & (hap_choice == M + 1), self.Xt + j, holder)
        holder = torch.where(sat_direct, self.Xt + self.J + beam, holder)
        return holder, beam_has, sat_direct

    def holders(self, sat_choice: torch.Tensor, hap_choice: torch.Tensor):
        """(holder [E, J, N], beam_has [E, J, N], satellite_direct [E, J, N]) for effective
        choices ``sat_choice`` [E, N] and ``hap_choice`` [E, J, N] (public form of the rule
        the core scores with)."""
        return self._allocation(sat_choice, hap_choice)

    def stream_power_w(self, holder: torch.Tensor, st: CoreState | None = None) -> torch.Tensor:
        """Per-stream power share [E, X] (W) of each transmitter for an allocation ``holder``,
        before the power level: platform power / streams it holds (see README, Power)."""
        return self._stream_power(holder, (st or self.state).power_w)

    def _stream_power(self, holder: torch.Tensor, power_w: torch.Tensor) -> torch.Tensor:
        """:meth:`stream_power_w` from the episode's per-tier powers ``power_w`` [E, 4]."""
        return power_w[:, self._tx_power_col] / self._stream_counts(holder).clamp(min=1.0)

    def _holder_streams(self, holder: torch.Tensor, power_w: torch.Tensor):
        """(hidx, p_hold, div) of an allocation: the holder per (region, subband) with the dummy
        row X where there is none [E, J, N]; the holder's per-stream power before the power
        level [E, J, N] (W; 0 where there is no holder); its time split [E, J, N, 1]. Depends
        only on the allocation and the episode's powers: computed once per allocation."""
        return self._last_for("holder_streams", (holder, power_w), self._holder_streams_of)

    def _holder_streams_of(self, holder, power_w):
        E, X = holder.shape[0], self.X
        hidx = torch.where(holder >= 0, holder, X)  # dummy row X
        p_share = torch.cat([self._stream_power(holder, power_w),
                             torch.zeros(E, 1, device=holder.device)], 1)
        p_hold = torch.gather(p_share, 1, hidx.view(E, -1)).view(holder.shape)
        return hidx, p_hold, self._tx_div[hidx][..., None]

    def effective_upper(self, actions: dict, st: CoreState | None = None,
                        decides: dict | None = None):
        """Effective (sat_choice [E, N], hap_choice [E, J, N]) after this step's upper-tier
        ``actions`` take effect where their tier decides (voiding included)."""
        st = st or self.state
        sat, hap, _ = self._upper_choices(st, actions, decides or self.decides(st))
        return sat, hap

    def allocation(self) -> dict:
        """Current effective allocation per env: ``holder`` [E, J, N] (transmitter holding
        subband n in region j, -1 none), ``beam_alloc`` [E, B, N], ``satellite_direct`` [E, N],
        ``hap_choice`` [E, J, N] (0 off, 1..M node, M+1 HAP-direct)."""
        st = self.state
        holder, _, _ = self._allocation(st.sat_choice, st.hap_choice)
        beams = torch.arange(1, self.B + 1, device=self.device)
        return {"holder": holder, "beam_alloc": st.sat_choice[:, None, :] == beams[:, None],
                "satellite_direct": st.sat_choice == self.B + 1, "hap_choice": st.hap_choice}

    def _masks_from(self, sat_choice, hap_choice) -> dict:
        E, N, J, I, R = sat_choice.shape[0], self.N, self.J, self.I, self.R
        holder, beam_has, sat_direct = self._allocation(sat_choice, hap_choice)
        out = {}
        if "satellite" in self.tiers:
            m = torch.ones(E, 1, N * (self.B + 2), dtype=torch.bool, device=self.device)
            out["satellite"] = m
        if "hap" in self.tiers:
            m = torch.zeros(E, J, N, self.M + 2, dtype=torch.bool, device=self.device)
            m[..., 0] = True
            m[..., 1:] = beam_has[..., None]
            out["hap"] = m.view(E, I, R * N * (self.M + 2))
        avail = holder >= 0
        cm = max(self.nvec["local"])
        m = torch.zeros(E, J, len(self.nvec["local"]), cm, dtype=torch.bool, device=self.device)
        nt = N * self.T
        users = m[:, :, :nt].view(E, J, N, self.T, cm)
        users[..., 0] = True
        users[..., 1:self.K + 1] = avail[..., None, None]
        power = m[:, :, nt:nt + N]
        power[..., self.L - 1] = True
        power[..., :self.L - 1] = (avail & ~sat_direct)[..., None]
        m[:, :, nt + N:, :5] = True
        out["local"] = m.view(E, J, -1)[..., self._flat_sel["local"]]
        return out

    def padded_mask(self, tier: str, flat: torch.Tensor) -> torch.Tensor:
        """Flat mask [..., sum(nvec)] -> [..., positions, max(nvec)] (False beyond a position)."""
        nv = self.nvec[tier]
        out = torch.zeros(*flat.shape[:-1], len(nv) * max(nv), dtype=torch.bool,
                          device=flat.device)
        out[..., self._flat_sel[tier]] = flat
        return out.view(*flat.shape[:-1], len(nv), max(nv))

    def masks(self) -> dict:
        """Flat binary masks per tier [E, agents, sum(nvec)] for the current state."""
        return self._masks_from(self.state.sat_choice, self.state.hap_choice)

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

    def _upper_choices(self, st, actions, dec, fixed: bool = False):
        """Effective satellite and HAP choices after this step's decisions (with voiding).
        ``fixed``: no upper tier decides on this step in any env (known on the host), so they
        are the state's own choice tensors (the same objects: :meth:`_last_for` then hands back
        what depends only on them), with nothing voided."""
        E = st.key.numel()
        if fixed:
            return (st.sat_choice, st.hap_choice,
                    torch.zeros(E, self.I, dtype=torch.long, device=self.device))
        if "satellite" in self.tiers and "satellite" in actions:
            sat = torch.where(dec["satellite"][:, None], actions["satellite"].view(E, self.N),
                              st.sat_choice)
        else:
            sat = st.sat_choice
        if "hap" in self.tiers:
            hap = st.hap_choice
            if "hap" in actions:
                hap = torch.where(dec["hap"][:, None, None],
                                  actions["hap"].view(E, self.J, self.N), hap)
            beam_has = sat[:, None, :] == self.topo.region_beam[None, :, None] + 1
            bad = (hap != 0) & ~beam_has
            hap = torch.where(bad, 0, hap)
            voided = bad.sum(-1).view(E, self.I, self.R).sum(-1)  # per HAP agent
        else:
            hap = self.fixed_hap_choice(sat)
            voided = torch.zeros(E, self.I, dtype=torch.long, device=self.device)
        return sat, hap, voided

    def masks_for(self, actions: dict) -> dict:
        """Masks of the lower tiers after the given upper-tier actions take effect this step.

        For top-down sampling within one step (a centralised agent, or HDRL sequencing its
        tiers): pass ``{"satellite": a_s}`` to get HAP and local masks consistent with a_s, then
        add ``"hap"`` to get local masks consistent with both.
        """
        return self._masks_after(self.state, actions, self.decides())

    def _masks_after(self, st: CoreState, actions: dict, dec: dict) -> dict:
        """:meth:`masks_for` on state ``st`` with decisions ``dec`` (the compiled step's form)."""
        sat, hap, _ = self._upper_choices(st, actions, dec)
        return self._masks_from(sat, hap)

    # ------------------------------------------------------------------ action checking
    def _check_format(self, actions: dict) -> dict:
        """Tiers, dtypes and shapes of ``actions``; returns them as int64 on the core's device."""
        E, out = self.num_envs, {}
        for tier in self.tiers:
            if tier not in actions:
                raise ValueError(f"missing actions for tier {tier!r}; expected a tensor of shape "
                                 f"[{E}, {self.num_agents[tier]}, {len(self.nvec[tier])}]")
            a = actions[tier]
            shape = (E, self.num_agents[tier], len(self.nvec[tier]))
            if not torch.is_tensor(a) or a.dtype not in (torch.int64, torch.int32, torch.int16,
                                                         torch.int8, torch.uint8):
                raise ValueError(f"actions[{tier!r}] must be an integer tensor; got "
                                 f"{getattr(a, 'dtype', type(a).__name__)}")
            if tuple(a.shape) != shape:
                raise ValueError(f"actions[{tier!r}] has shape {tuple(a.shape)}; expected {shape}")
            out[tier] = a.to(self.device, torch.long)
        unknown = set(actions) - set(self.tiers)
        if unknown:
            raise ValueError(f"actions for unknown tiers {sorted(unknown)}; this scenario has "
                             f"tiers {list(self.tiers)}")
        return out

    def _allowed(self, tier: str, a: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[E, agents, positions] bool: in range and allowed by the flat ``mask``."""
        nv, offs, top = self._nvec_t[tier], self._offs_t[tier], self._top_t[tier]
        in_range = (a >= 0) & (a < nv)
        return torch.gather(mask, 2, offs + a.clamp(min=0).minimum(top)) & in_range

    def _all_allowed(self, st: CoreState, actions: dict, masks: dict, dec: dict):
        """0-dim bool: every position of every tier allowed, as :meth:`_check` judges it (the
        compiled step's check; the observed masks or-ed with the masks after this step's
        upper-tier actions, which equal the observed ones where no upper tier decides)."""
        ok, upper = None, {}
        for tier in self.tiers:
            m = masks[tier]
            if upper:
                m = m | self._masks_after(st, upper, dec)[tier]
            a_ok = self._allowed(tier, actions[tier], m).all()
            ok = a_ok if ok is None else ok & a_ok
            if tier != "local":
                upper[tier] = actions[tier]
        return ok

    def _check(self, actions: dict, masks: dict, dec: dict) -> tuple[dict, dict]:
        """Validate (or repair) actions tier by tier, top-down.

        A lower tier's position is allowed if the mask observed allows it (simultaneous
        decisions; the env voids what the new upper allocation no longer permits) or if the mask
        that follows from this step's upper-tier actions allows it (top-down sampling with
        :meth:`masks_for`).
        """
        actions = self._check_format(actions)
        if not self.check_actions:
            return actions, {}
        out, repaired = {}, {}
        for tier in self.tiers:
            if tier != self.tiers[0]:
                upper = {t: out[t] for t in ("satellite", "hap") if t in out}
                if upper and any(bool(dec[t].any()) for t in upper):
                    after = self.masks_for(upper)[tier]
                    masks = {**masks, tier: masks[tier] | after}
            a = actions[tier]
            allowed = self._allowed(tier, a, masks[tier])
            if bool(allowed.all()):
                out[tier] = a
                continue
            nv, offs = self._nvec_t[tier], self._offs_t[tier]
            if self.cfg.invalid_action == "raise":
                e, ag, pos = (int(v) for v in torch.nonzero(~allowed)[0])
                val = int(a[e, ag, pos])
                opts = masks[tier][e, ag, int(offs[pos]):int(offs[pos] + nv[pos])]
                ok = torch.nonzero(opts).flatten().tolist()
                why = ("is out of range" if not (0 <= val < int(nv[pos]))
                       else "is forbidden by the action mask")
                raise ValueError(
                    f"action of agent '{tier}_{ag}' (env {e}) at position {pos} "
                    f"({self.describe_position(tier, pos)}) = {val} {why}; allowed: {ok}")
            # repair: replace each bad entry by the first allowed choice of its position
            first = torch.stack([torch.argmax(masks[tier][..., int(o):int(o) + int(k)].long(), -1)
                                 for o, k in zip(offs, nv)], dim=-1)
            out[tier] = torch.where(allowed, a, first)
            repaired[tier] = (~allowed).sum(2)
        return out, repaired

    def describe_position(self, tier: str, pos: int) -> str:
        N, T = self.N, self.T
        if tier == "satellite":
            return f"subband {pos}: 0 off, 1..{self.B} beam, {self.B + 1} satellite-direct"
        if tier == "hap":
            return (f"region {pos // N} of the HAP, subband {pos % N}: 0 off, 1..{self.M} node, "
                    f"{self.M + 1} HAP-direct")
        if pos < N * T:
            return f"user for subband {pos // T}, time block {pos % T}: 0 none, k+1 user k"
        if pos < N * T + N:
            return f"power level for subband {pos - N * T}"
        return f"move of UAV {pos - N * T - N}: 0 stay, 1 +x, 2 -x, 3 +y, 4 -y"

    # ------------------------------------------------------------------ scoring (pure)
    def _score(self, st: CoreState, actions: dict, dec: dict,
               upper_fixed: bool = False) -> Scored:
        """Score one joint action on ``st``. ``upper_fixed``: no upper tier decides on this step
        in any env (``fixed`` of :meth:`_upper_choices`)."""
        E, J, N, T, K, X = st.key.numel(), self.J, self.N, self.T, self.K, self.X
        dev, net = self.device, self.cfg.network
        sat, hap, voided = self._upper_choices(st, actions, dec, fixed=upper_fixed)
        holder, _, sat_direct = self._allocation(sat, hap)
        loc = actions["local"].view(E, J, -1)
        nt = N * T
        users = loc[..., :nt].view(E, J, N, T) - 1
        bad = (users >= 0) & (holder[..., None] < 0)
        voided = {"hap": voided, "local": bad.sum((2, 3))}
        users = torch.where(bad, -1, users)
        level = torch.where(sat_direct, 1.0, self.levels[loc[..., nt:nt + N]])
        served = users >= 0
        active = served.any(-1) & (holder >= 0)  # [E, J, N]
        # Power: a physical platform's power split equally over the (region, subband) streams it
        # holds; a satellite beam's over its satellite-direct subbands.
        hidx, p_hold, div = self._holder_streams(holder, st.power_w)
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
        others = self._others
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
        if self._kernel_ok(st):  # candidate-major links: [E, J', J, N, T]
            pw[..., :J - 1] *= c[..., :J - 1] != c[..., J - 1:]  # serving: no interferer
            link, pair = _link_index(c_safe.permute(0, 4, 1, 2, 3).contiguous(),
                                     u_glob[:, None], n_ar.view(1, 1, 1, N, 1), self.Ut, N)
            sinr, inr, slot_rate = self._kernels["slots"](
                self._fade_key(st).view(E, 1), link.view(E, J, -1), pair.view(E, J, -1),
                st.ls_gain.view(E, -1),
                st.ls_k.view(E, -1), pw.permute(0, 4, 1, 2, 3), served, div, self.noise_w,
                net.bandwidth_hz / N / T)
            sinr, inr, slot_rate = (v.view(E, J, N, T) for v in (sinr, inr, slot_rate))
        else:
            g = self._gain(st, c_safe, u_glob[..., None], n_ar)  # [E, J, N, T, J]
            rx = g
            rx *= pw  # in place: g is a fresh tensor
            other = rx[..., :J - 1]
            other *= c[..., :J - 1] != c[..., J - 1:]  # the serving transmitter is no interferer
            sinr, inr, slot_rate = _slot_outcomes(rx[..., J - 1], other.sum(-1), served, T * div,
                                                  self.noise_w, net.bandwidth_hz / N)
        rate = torch.zeros(E, self.Ut, device=dev).scatter_add_(
            1, u_glob.reshape(E, -1), slot_rate.reshape(E, -1))
        # UAV moves (penalty on the new positions, eq. (5)).
        uav_xy = st.uav_xy
        if self.U > 0:
            mv = self._moves[loc[..., nt + N:]]  # [E, J, U, 2]
            uav_xy = uav_xy + mv.view(E, J * self.U, 2) * net.uav_step_m
        region = self._region_metrics(rate, st.demand_bps, uav_xy)
        region["utilisation"] = active.float().mean(-1)
        region["served_slots"] = served.float().sum((2, 3))
        r = region["reward"]
        rewards = {"satellite": r.mean(1, keepdim=True),
                   "hap": r.view(E, self.I, self.R).mean(-1), "local": r}
        rewards = {t: rewards[t] for t in self.tiers}
        return Scored(sat, hap, holder, users, txp[:, :X], sinr, inr, slot_rate, rate, uav_xy,
                      region, rewards, voided)

    def _region_metrics(self, rate, demand, uav_xy) -> dict:
        """Eqs. (5), (8)-(11) per region; rates [E, Ut]."""
        E, J, K = rate.shape[0], self.J, self.K
        rw, d, net = self.cfg.reward, self.cfg.demand, self.cfg.network
        r = rate.view(E, J, K)
        tot = r.sum(-1)
        se = tot / net.bandwidth_hz
        sq = (r * r).sum(-1)
        fair = torch.where(sq > 0, tot * tot / (K * sq.clamp(min=1e-30)), 0.0)
        qos = (d.qos_min_rate_bps - r.min(-1).values).clamp(min=0.0)
        thr = torch.minimum(r, demand.view(E, J, K)).sum(-1)
        if self.U > 0:
            o = self.topo.region_origin_xy.repeat_interleave(self.U, 0)[None]
            out = ((uav_xy < o) | (uav_xy > o + net.region_size_m)).any(-1).float()
            pen = out.view(E, J, self.U).mean(-1)
        else:
            pen = torch.zeros(E, J, device=self.device)
        reward = (rw.w_spectral_efficiency * se / rw.se_scale_bps_per_hz + rw.w_fairness * fair
                  - rw.w_uav_penalty * pen - rw.w_qos_violation * qos / d.qos_min_rate_bps
                  + rw.w_rate * tot / K / rw.rate_scale_bps)
        return {"reward": reward, "spectral_efficiency": se, "fairness": fair,
                "qos_violation_bps": qos, "uav_penalty": pen, "throughput_bps": thr,
                "sum_rate_bps": tot, "demand_bps": demand.view(E, J, K).sum(-1)}

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
            actions, repaired = self._check_format(actions), {}
            chk = self._masks if self.check_actions else None
            res = self._transition_compiled(st, actions, full, chk)
            if chk is not None and not bool(res[-1]):  # raise, or repair and run again
                actions, repaired = self._check(actions, self._masks, res[0])
                res = self._transition_compiled(st, actions, full, chk)
            dec, sc, changed, obs, masks, metrics, _ = res
            new = replace(st, **changed)
        else:
            dec = self.decides(st)
            actions, repaired = self._check(actions, self._masks, dec)
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
        elif self._upper_decided(dec, t):
            self._masks = self.masks()  # masks depend only on the allocation, changed this step
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
            ok = self._all_allowed(st, actions, masks, dec)
            # out-of-range values must not index anything inside the graph: clamped here, the
            # step's results are discarded unless ok
            actions = {t: a.clamp(min=0).minimum(self._top_t[t]) for t, a in actions.items()}
        sc = self._score(st, actions, dec)
        new = self._advance(st, sc, full)
        # only the fields that changed leave the graph (outputs aliasing inputs cost extra)
        changed = {f: getattr(new, f) for f in _STATE_FIELDS
                   if getattr(new, f) is not getattr(st, f)}
        return (dec, sc, changed, self.observe(new),
                self._masks_from(new.sat_choice, new.hap_choice), self.system_metrics(sc), ok)

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

    def _upper_decided(self, dec: dict, t: int | None) -> bool:
        """Whether any upper tier decided on the step just taken in any env (``dec`` as
        :meth:`decides` gave it; from the host step counter ``t`` where known)."""
        upper = [u for u in self.tiers if u != "local"]
        if t is None:
            return any(bool(dec[u].any()) for u in upper)
        return any(t % self.decision_intervals[u] == 0 for u in upper)

    def system_metrics(self, sc: Scored) -> dict:
        """System-level metrics of a scored step, name -> [E] (names: ``SYSTEM_METRICS``)."""
        reg = sc.region
        ut = self.Ut
        return {
            "throughput_mbps": reg["throughput_bps"].sum(1) / ut / 1e6,  # mean per user
            "sum_rate_mbps": reg["sum_rate_bps"].sum(1) / 1e6,
            "spectral_efficiency": reg["sum_rate_bps"].sum(1) / self.cfg.network.bandwidth_hz,
            "fairness": reg["fairness"].mean(1),
            "qos_violation": (reg["qos_violation_bps"] / self.cfg.demand.qos_min_rate_bps).mean(1),
            "uav_penalty": reg["uav_penalty"].mean(1),
            "spectrum_utilisation": reg["utilisation"].mean(1),
            "reward": reg["reward"].mean(1),
        }

    def _advance(self, st: CoreState, sc: Scored, full: bool | None) -> CoreState:
        """Mobility, demand and the next channel realisation; ``full`` as :meth:`_refresh_mode`
        gives it."""
        E, dev, d = st.key.numel(), self.device, self.cfg.demand
        t1 = st.t + 1
        # this step's stream keys, [E, 1] each
        k_walk, k_hot, k_fade = rng.mix_many(rng.mix(st.rkey, 1)[:, None],
                                             (_S_WALK, _S_HOT_TARGET, _S_FADE_INIT)).unbind(-1)
        size = self.cfg.network.region_size_m
        # Users: bounded random walk, reflected into their region.
        uidx = torch.arange(self.Ut, device=dev)[None]
        ang = 2 * math.pi * rng.uniform(k_walk, uidx)
        step = torch.stack([torch.cos(ang), torch.sin(ang)], -1) * d.user_speed_m
        o = self.topo.region_origin_xy[self.topo.user_region][None]
        p = st.user_xy + step - o
        p = torch.where(p < 0, -p, p)
        p = torch.where(p > size, 2 * size - p, p).clamp(0.0, size)
        user_xy = p + o
        # Hotspots: random waypoints over the area.
        hot, tgt = st.hot_xy, st.hot_target
        if self.Hs > 0:
            delta = tgt - hot
            dist = torch.linalg.vector_norm(delta, dim=-1, keepdim=True)
            stepv = torch.where(dist > d.hotspot_speed_m,
                                delta / dist.clamp(min=1e-9) * d.hotspot_speed_m, delta)
            hot = hot + stepv
            reached = (dist <= d.hotspot_speed_m).expand(-1, -1, 2)
            area = self._area
            hidx = torch.arange(2 * self.Hs, device=dev)[None]
            fresh = rng.uniform(k_hot, hidx).view(E, self.Hs, 2) * area
            tgt = torch.where(reached, fresh, tgt)
        new = replace(st, t=t1, rkey=self._step_key(st.ekey, t1), user_xy=user_xy,
                      uav_xy=sc.uav_xy, hot_xy=hot, hot_target=tgt,
                      sat_choice=sc.sat_choice, hap_choice=sc.hap_choice)
        kern = self._kernels_for(st)
        new.demand_bps = (kern["demand"] if kern else self._demand)(user_xy, hot)
        if full:
            self._large_scale(new, full=True)
        else:
            self._large_scale(new, full=False)
            if full is None:  # per env, so that envs out of phase stay independent
                ref = replace(new)
                self._large_scale(ref, full=True)
                refresh = (t1 % self.cfg.channel.large_scale_refresh_steps) == 0
                new = new.merged(refresh, ref)
        if self._correlated:
            rho = self.cfg.channel.fading_rho
            idx = torch.arange(self.X * self.Ut * self.N * 2, device=dev)[None]
            w = rng.normal(k_fade, idx).view_as(st.fade)
            new.fade = rho * st.fade + math.sqrt(1 - rho * rho) * w
        # Feedback for the next observation.
        J, K = self.J, self.K
        reg = sc.region
        new.last_rate = sc.rate_bps
        new.last_served = reg["throughput_bps"] / reg["demand_bps"].clamp(min=1.0)
        new.last_se = reg["spectral_efficiency"]
        new.last_fair = reg["fairness"]
        served = (sc.users >= 0).float()
        inr = (sc.slot_inr * served).sum(-1) / served.sum(-1).clamp(min=1.0)
        new.last_inr_db = torch.where(served.sum(-1) > 0, 10 * torch.log10(inr.clamp(min=1.0)),
                                      0.0)
        del J, K
        return new

    # ------------------------------------------------------------------ what-if evaluation
    def evaluate(self, actions: dict, decide: str = "scheduled") -> dict:
        """Score C candidate joint actions per env on the current frozen state.

        ``actions[tier]``: [E, C, agents, dims]. ``decide``: "scheduled" applies each tier's
        action only where it decides on this step (like ``step``); "all" applies every tier's
        action now. Returns ``rewards`` (tier -> [E, C, agents]), ``metrics`` (name -> [E, C])
        and ``region`` (name -> [E, C, J]). The state is not changed; actions are not checked.
        """
        st = self.state
        E = st.key.numel()
        C = next(iter(actions.values())).shape[1]
        rep = st.repeat(C)
        flat = {t: a.reshape(E * C, *a.shape[2:]).to(self.device, torch.long)
                for t, a in actions.items()}
        dec = self.decides(rep)
        if decide == "all":
            dec = {t: torch.ones_like(v) for t, v in dec.items()}
        elif decide != "scheduled":
            raise ValueError(f"decide = {decide!r} is invalid; allowed: 'scheduled', 'all'")
        sc = self._score(rep, flat, dec)
        return {"rewards": {t: v.view(E, C, -1) for t, v in sc.rewards.items()},
                "metrics": {k: v.view(E, C) for k, v in self.system_metrics(sc).items()},
                "region": {k: v.view(E, C, -1) for k, v in sc.region.items()}}

    # ------------------------------------------------------------------ observations
    def observe(self, st: CoreState | None = None) -> dict:
        """Observations per tier [E, agents, obs_size] (float32, finite)."""
        st = st or self.state
        E, J, N, K, M, R, I = (st.key.numel(), self.J, self.N, self.K, self.M, self.R, self.I)
        dev, tm, net = self.device, self.cfg.timing, self.cfg.network
        holder = self._allocation(st.sat_choice, st.hap_choice)[0]
        af = self._last_for("allocation_features", (st.sat_choice, st.hap_choice),
                            self._allocation_features)
        kern = self._kernels_for(st)
        feat = (kern["region_snr"] if kern else self._region_snr)(st.ls_gain, st.power_w)
        j_ar = torch.arange(J, device=dev)
        node_snr, spot_snr, sat_snr, tn_snr = (feat[..., :M], feat[..., M], feat[..., M + 1],
                                               feat[..., M + 2])
        t = st.t.float()
        prog = (t / tm.episode_steps)[:, None]

        def until(iv):
            return (((iv - st.t % iv) % iv).float() / iv)[:, None]

        until_sat, until_hap = until(tm.satellite_interval), until(tm.hap_interval)

        dem = st.demand_bps.view(E, J, K) / self.cfg.demand.base_demand_bps
        out = {}
        if "satellite" in self.tiers:
            parts = [af["satellite"], dem.mean(-1), st.last_served, st.last_se, sat_snr, tn_snr,
                     prog, until_sat]
            out["satellite"] = torch.cat(parts, 1)[:, None]
        if "hap" in self.tiers:
            ns = torch.cat([node_snr, spot_snr[..., None]], -1).view(E, I, -1)
            ns_top = feat[..., M + 3:2 * M + 4].reshape(E, I, -1)  # nodes, spot beam
            timing = torch.cat([prog, until_hap, until_sat], 1)
            parts = [*af["hap"], dem.mean(-1).view(E, I, R), st.last_served.view(E, I, R),
                     st.last_se.view(E, I, R), st.last_fair.view(E, I, R), ns, ns_top,
                     timing[:, None].expand(-1, I, -1)]
            out["hap"] = torch.cat(parts, -1)
        # Local: holder kind, holder SNR per (user, subband) on this step's realisation.
        p = self._holder_streams(holder, st.power_w)[1][:, :, None, :]  # [E, J, 1, N]; 0: none
        if self._kernel_ok(st):
            link, pair = self._last_for("holder_links", (holder,), self._holder_links)
            hsnr = self._kernels["holder_snr"](self._fade_key(st).view(E, 1), link, pair,
                                               st.ls_gain.view(E, -1), st.ls_k.view(E, -1), p,
                                               self.noise_w).view(E, J, -1)
        else:
            u_glob = (j_ar[:, None] * K + torch.arange(K, device=dev)[None])  # [J, K]
            g = self._gain(st, holder.clamp(min=0)[:, :, None, :], u_glob[None, :, :, None],
                           torch.arange(N, device=dev).view(1, 1, 1, N))  # [E, J, K, N]
            g *= p
            hsnr = _snr_feature_(g, self.noise_w).masked_fill_(holder[:, :, None, :] < 0,
                                                               0.0).view(E, J, -1)
        size = net.region_size_m
        uxy = (st.user_xy.view(E, J, K, 2) - self.topo.region_centre_xy[None, :, None]) / size
        rate = st.last_rate.view(E, J, K) / self.cfg.reward.rate_scale_bps
        if self.U > 0:
            vxy = (st.uav_xy.view(E, J, self.U, 2)
                   - self.topo.region_centre_xy[None, :, None]) / size
        else:
            vxy = torch.zeros(E, J, 0, 2, device=dev)
        timing = torch.cat([prog, until_hap, until_sat], 1)
        parts = [af["local"], hsnr, (st.last_inr_db / 20).clamp(-3, 3), uxy.reshape(E, J, -1),
                 dem, rate, vxy.reshape(E, J, -1), timing[:, None].expand(-1, J, -1)]
        out["local"] = kern["cat"](parts) if kern else torch.cat(parts, -1)
        return out

    def _allocation_features(self, sat_choice, hap_choice) -> dict:
        """The observation parts that depend only on the allocation, per tier (computed once per
        allocation: upper tiers decide every 10 or 50 steps): the satellite's one-hot choices;
        the HAPs' beam and satellite-direct flags and one-hot choices; the local agents'
        one-hot holder kinds."""
        E, I, R, N, J = sat_choice.shape[0], self.I, self.R, self.N, self.J
        holder, beam_has, sat_direct = self._allocation(sat_choice, hap_choice)
        out = {}
        if "satellite" in self.tiers:
            out["satellite"] = _one_hot(sat_choice, self.B + 2).view(E, -1)
        if "hap" in self.tiers:
            out["hap"] = (beam_has.view(E, I, R, N)[:, :, 0].float(),
                          sat_direct.view(E, I, R, N)[:, :, 0].float(),
                          _one_hot(hap_choice, self.M + 2).view(E, I, -1))
        kind = torch.where(holder >= 0, self.topo.tx_kind[holder.clamp(min=0)] + 1, 0)
        out["local"] = _one_hot(kind, 5).view(E, J, -1)
        return out

    def _holder_links(self, holder):
        """Link counters [E, J * K * N] of each subband's holder to its region's users (the
        local observation's holder SNRs) and their (tx, user) pairs (:func:`_link_index`);
        computed once per allocation."""
        E, J, K, N = holder.shape[0], self.J, self.K, self.N
        dev = holder.device
        u_glob = (torch.arange(J, device=dev)[:, None] * K
                  + torch.arange(K, device=dev)[None])  # [J, K]
        link, pair = _link_index(holder.clamp(min=0)[:, :, None, :], u_glob[None, :, :, None],
                                 torch.arange(N, device=dev).view(1, 1, 1, N), self.Ut, N)
        return link.view(E, -1), pair.view(E, -1)

    def _region_snr(self, ls_gain, power_w):
        """Per region, its users' mean SNR feature (large-scale gains at a 1/N power share) of
        each of its nodes, the HAP spot beam, the satellite beam and the best terrestrial node,
        then the same means over each transmitter's T best users only (the users one subband
        can serve): [E, J, 2 (M + 3)]."""
        E, J, K, M, N = ls_gain.shape[0], self.J, self.K, self.M, self.N
        dev = ls_gain.device
        pw = power_w / N  # [E, 4]: TBS, UAV, HAP, satellite beam
        lsr = ls_gain.view(E, self.X, J, K)
        j_ar = torch.arange(J, device=dev)
        node_pw = pw[:, (torch.arange(M, device=dev) >= self.Tn).long()]  # [E, M]
        # region j's nodes to region j's users: diagonal views, no copy until the products
        node = torch.diagonal(lsr[:, :self.Xt].view(E, J, M, J, K), dim1=1, dim2=3)
        node = node.permute(0, 3, 1, 2) * node_pw[:, None, :, None]  # [E, J, M, K]
        spot = (torch.diagonal(lsr[:, self.Xt:self.Xt + J], dim1=1, dim2=2).permute(0, 2, 1)
                * pw[:, 2, None, None])  # [E, J, K]
        sat_own = lsr[:, self.Xt + J:][:, self.topo.region_beam, j_ar] * pw[:, 3, None, None]
        best = node.max(2).values  # best terrestrial node per user
        # in place on a fresh tensor (the roundings of the out-of-place form), one pass for all
        snr = _snr_feature_(torch.cat([node, spot[:, :, None], sat_own[:, :, None],
                                       best[:, :, None]], 2), self.noise_w)
        top = snr.topk(min(self.T, K), -1).values.mean(-1)
        return torch.cat([snr.mean(-1), top], -1)

    def _stream_counts(self, holder) -> torch.Tensor:
        """Number of streams sharing each transmitter's platform power, [E, X]."""
        return self._last_for("stream_counts", (holder,), self._stream_counts_of)

    def _stream_counts_of(self, holder) -> torch.Tensor:
        E, X, J = holder.shape[0], self.X, self.J
        hidx = torch.where(holder >= 0, holder, X)
        cnt = torch.zeros(E, X + 1, device=self.device).scatter_add_(
            1, hidx.view(E, -1), torch.ones(E, hidx[0].numel(), device=self.device))[:, :X]
        spots = cnt[:, self.Xt:self.Xt + J].view(E, self.I, self.R).sum(-1)
        cnt[:, self.Xt:self.Xt + J] = spots.repeat_interleave(self.R, dim=1)
        cnt[:, self.Xt + J:] = cnt[:, self.Xt + J:] / (self.H * self.R)
        return cnt

    def global_state(self, obs: dict | None = None) -> torch.Tensor:
        """Global state for centralised critics: all agents' observations, concatenated [E, S]."""
        obs = obs or self.observe()
        return torch.cat([obs[t].reshape(obs[t].shape[0], -1) for t in self.tiers], 1)

    # ------------------------------------------------------------------ link state
    def link_state(self, env: int = 0) -> dict:
        """Full link state of env ``env`` for the last step, as numpy arrays (see README)."""
        if self.last is None:
            raise RuntimeError("link_state() is available after a step()")
        sc, st = self.last, self._last_state.index(slice(env, env + 1))
        X, Ut, N, T, J, K = self.X, self.Ut, self.N, self.T, self.J, self.K
        dev = self.device
        gain = self._gain(st, torch.arange(X, device=dev).view(1, X, 1, 1),
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
        div = self._tx_div[:X][serving.clamp(min=0)]
        share = torch.where(serving >= 0, blocks / (T * div), 0.0)
        sat = sc.sat_choice[env]
        beam_alloc = (sat[None] == torch.arange(1, self.B + 1, device=dev)[:, None])
        hc = sc.hap_choice[env]  # [J, N]
        node_alloc = (hc[:, None, :] == torch.arange(1, self.M + 1, device=dev)[None, :, None])
        d = {
            "gain": gain, "tx_power_w": sc.tx_power_w[env], "serving_tx": serving,
            "noise_w": torch.full((N,), self.noise_w, device=dev), "sinr": sinr,
            "rate_bps": sc.rate_bps[env], "demand_bps": st.demand_bps[0],
            "time_share": share, "tx_kind": self.topo.tx_kind, "tx_region": self.topo.tx_region,
            "user_region": self.topo.user_region, "beam_alloc": beam_alloc.long(),
            "satellite_direct": (sat == self.B + 1).long(),
            "node_alloc": node_alloc.reshape(J * self.M, N).long(),
            "hap_direct": (hc == self.M + 1).long(), "holder": holder,
            "user_xy": st.user_xy[0], "uav_xy": sc.uav_xy[env],
            "bandwidth_hz": torch.tensor(self.cfg.network.bandwidth_hz),
        }
        return {k: v.detach().cpu().numpy() for k, v in d.items()}


__all__ = ["TNTNCore", "CoreState", "Scored", "TIERS", "SYSTEM_METRICS", "TX_TBS", "TX_UAV",
           "TX_HAP", "TX_SAT"]
