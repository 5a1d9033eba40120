"""PettingZoo ``ParallelEnv`` view of the batched core: one environment (E = 1), numpy in/out.

No physics lives here: every step is one :meth:`TNTNCore.step` call; this module only converts
dicts of numpy actions to the core's per-tier tensors and the core's outputs back to per-agent
dicts (README, Layout).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
import torch
from gymnasium import logger, spaces
from pettingzoo import ParallelEnv

from .config import EnvConfig, make_config
from .core import SYSTEM_METRICS, TNTNCore
from .spaces import MaskedMultiDiscrete

# Per-region metrics copied into the infos of local agents (HAP agents: mean over their regions).
REGION_INFO_KEYS = ("throughput_bps", "sum_rate_bps", "spectral_efficiency", "fairness",
                    "qos_violation_bps", "uav_penalty", "reward")
ACTION_MASK_LAYOUTS = ("flat", "stacked")


class TNTNParallelEnv(ParallelEnv):
    """Spectrum allocation in an integrated terrestrial / non-terrestrial network (TN-NTN).

    ## Description

    A LEO satellite with ``B`` beams, ``H`` HAPs per beam and ``R`` regions (2 km x 2 km) per HAP,
    each region with ``T_n`` terrestrial base stations (TBS), ``U`` UAVs and ``K`` users, share
    ``N`` subbands of ``W`` Hz at 28 GHz (Mohsin et al., arXiv 2501.09212; defaults = paper
    Table 1). Three tiers of agents allocate the spectrum top-down: the satellite hands each
    subband to one beam (or serves it itself, or leaves it off), each HAP gives the subbands of
    its beam to a node of each of its regions (or serves it itself), and each local agent
    schedules users, transmit power and UAV moves in its region. This class is the batched torch
    core (:class:`tntn_env.core.TNTNCore`) with one environment, numpy in and out; the physics,
    masks, metrics and rewards all live in the core.

    Agents (only the tiers the scenario has; ``possible_agents`` in this order):
    ``satellite_0`` (``sag`` only), ``hap_<i>`` for ``i < B*H`` (``sag`` and ``ag``),
    ``local_<j>`` for ``j < B*H*R`` (all scenarios). In ``ag`` the satellite's split is a fixed
    equal split; in ``uav`` each region also holds a fixed split of nodes.

    ## Action Space

    Each agent's action is a :class:`~tntn_env.spaces.MaskedMultiDiscrete` (``nvec`` below; an
    array of non-negative ints, any integer dtype; floats and bools are rejected):

    - ``satellite_0``: ``N`` positions, one per subband n: 0 off, ``1..B`` hand n to beam b-1,
      ``B+1`` satellite-direct.
    - ``hap_i``: ``R*N`` positions (region-major): 0 off, ``1..M`` node m-1 of the region (TBS
      first, then UAVs), ``M+1`` HAP-direct.
    - ``local_j``: ``N*T`` user positions (subband-major, then time block): 0 none, ``k+1`` user
      k of region j; then ``N`` power levels (index into ``power_levels``, fractions of the
      holder's equal per-subband power share); then ``U`` UAV moves: 0 stay, 1 +x, 2 -x, 3 +y,
      4 -y (``uav_step_m`` = 10 m).

    Here ``M = T_n + U``. The masks enforce the hierarchy: a HAP may give out only subbands
    handed to its beam, a local agent may schedule users only on subbands held in its region,
    and a power level other than the top one only where a node or its HAP holds the subband.
    The satellite decides every ``satellite_interval`` (50) steps, the
    HAPs every ``hap_interval`` (10) steps, the local agents every step; on other steps a tier's
    agents are still in the step (their action is required) and their action is ignored
    (``infos[agent]["decides"]`` says whether it will count on the coming step).

    A binary action mask comes with every observation. An action that is out of range or that
    the mask forbids raises ``ValueError`` naming the agent and the position; with
    ``invalid_action="repair"`` each such entry is replaced by the first allowed choice of its
    position and counted in ``infos[agent]["repaired_actions"]``. A lower-tier choice that was
    allowed by its mask but is no longer permitted by an upper tier's new allocation on the same
    step is voided (treated as off for that step), not an error, and counted in
    ``infos[agent]["voided_actions"]``.

    ## Observation Space

    ``Dict({"observation": Box(low, high, (obs_size,), float32), "action_mask": Box(0, 1,
    (sum(nvec),), int8)})``. The mask is flat: the choices of position p are at
    ``offs[p]:offs[p] + nvec[p]`` with ``offs = cumsum(nvec) - nvec``; pass it as is to
    ``action_space(agent).sample(mask=...)``. With ``action_mask_layout="stacked"`` an agent
    whose positions all have the same number of choices (satellite, HAPs) gets the same mask
    as ``[len(nvec), nvec[0]]``, the others keep the flat one: the layout TorchRL's
    ``PettingZooWrapper`` expects (a ``MultiDiscrete`` with equal ``nvec`` becomes a stack of
    categoricals there, a mixed one a ``MultiCategorical`` with a flat mask). The observation
    vector concatenates (exact layout and bounds: ``env.core.obs_spec[tier]``; SNR features are
    ``dB / 20`` clipped to +-3):

    - satellite: one-hot current allocation per subband ``N*(B+2)``; per region: mean user
      demand / base demand, served fraction of demand, spectral efficiency (last step), SNR of the
      beam, SNR of the best terrestrial node; episode progress and steps to the next decision.
    - hap: subbands handed to its beam ``N``, satellite-direct subbands ``N``, one-hot current
      allocation ``R*N*(M+2)``; per region: demand, served fraction, spectral efficiency,
      fairness, SNR per node and of the HAP spot beam averaged over the region's users
      ``R*(M+1)`` and over each one's T best users (those one subband can serve) ``R*(M+1)``;
      timing (3).
    - local: one-hot holder kind per subband (none, TBS, UAV, HAP, satellite) ``N*5``; SNR of
      each user from each subband's holder on this step's channel realisation ``K*N``;
      interference + noise over noise per subband (last step) ``N``; user positions ``K*2``,
      demands ``K`` and last rates ``K``; UAV positions ``U*2``; timing (3).

    With the orbit on (``orbit_enabled=True``, docs/model.md, Orbit) the satellite's and the
    HAPs' observations end with two more parts (the layout without the orbit is unchanged):
    the serving satellite's elevation / 90 at each region centre (satellite ``J``, a HAP its
    ``R`` regions; in [-1, 1]) and the coverage features (3): steps until the serving
    satellite drops below ``orbit_min_elevation_deg`` (handover or loss of coverage) /
    ``episode_steps``, steps until coverage begins (0 while covered) / ``episode_steps``, both
    clipped to 1, and 1 if the coming end of coverage is a handover to the next satellite of
    the plane, else 0. Below the minimum elevation the satellite's mask forbids the choices
    that need it in view (``orbit_outage_choices``: satellite-direct, or every choice but off).

    ``state()`` returns the concatenation of all agents' observations (``state_space``).

    ## Rewards

    Per step, paper eq. (11) with the Section 4.1 weights (config fields ``w_*``) per region j:
    ``1.5 eta_j + 0.5 F_j - 1.0 P_UAV,j - 0.5 V_j / R_min`` (spectral efficiency, Jain fairness,
    UAV out-of-region penalty, QoS violation). ``local_j`` gets region j's reward, ``hap_i`` the
    mean over its R regions, ``satellite_0`` the mean over all regions. Agents that do not decide
    on a step still receive that step's reward (a trainer sums them into one macro-transition).

    ## Starting State

    Users clustered around drifting demand hotspots plus a uniform background, UAVs at their
    region's centre, per-episode transmit powers drawn uniformly in dBm over each tier's range,
    and the equal split as the initial allocation. The network is in operation when the episode
    starts (``warm_start=True``, the default): the first observation's last-step feedback (user
    rates, served share, spectral efficiency, fairness, interference) is that of one step of the
    initial allocation with max-SNR scheduling (each held subband's time blocks to the region's
    users of highest holder SNR) at the top power level, on the first step's channel; time,
    positions and demand do not advance. With ``warm_start=False`` that feedback starts at zero,
    a state the upper tiers never see again (the satellite decides every 50 steps: 1 in 10 of
    its decisions would be taken blind). ``reset(seed=s)`` seeds the core's
    counter-based generator (random numbers are a hash of seed, step and index, the same on CPU
    and CUDA by design): env i of a core batch reset with seed s equals this env reset with
    seed s + i. ``reset()`` without a seed starts the next episode of the same stream (fresh
    entropy on the first reset).

    ## Episode End

    No termination. All agents are truncated after ``episode_steps`` (500) steps, after which
    ``agents`` is empty until ``reset``.

    ## Info

    ``infos[agent]`` after a step holds that step's metrics of the agent's scope: ``local_j``
    region j's ``throughput_bps`` (served, capped by demand), ``sum_rate_bps``,
    ``spectral_efficiency``, ``fairness``, ``qos_violation_bps``, ``uav_penalty``, ``reward``;
    ``hap_i`` the mean of these over its regions; ``satellite_0`` the system metrics of the core
    (``throughput_mbps`` per user, ``sum_rate_mbps``, ``spectral_efficiency``, ``fairness``,
    ``qos_violation`` (in units of R_min), ``uav_penalty``, ``spectrum_utilisation``, ``reward``).
    Every agent's info also has ``decides`` (does its tier decide on the coming step, i.e. will
    its next action count), ``decided`` (did its action count on the step just taken),
    ``voided_actions`` (this agent's choices voided by a new upper-tier allocation) and
    ``repaired_actions`` (this agent's positions repaired, ``invalid_action="repair"``). After
    ``reset`` infos have the same keys (libraries such as TorchRL fix their info specs there):
    ``decides``, ``decided`` False, zero counts and zero metrics (no step taken yet).
    ``env.last_metrics`` holds the system metrics in every scenario; ``env.link_state()`` the
    full link state of the last step (gains, powers, SINRs, rates, allocation matrices).

    ## Arguments

    ```python
    from tntn_env import parallel_env
    env = parallel_env("sag", render_mode=None, device="cpu", action_mask_layout="flat",
                       compile=False, **overrides)
    ```

    - ``scenario``: ``"sag"`` (space-air-ground), ``"ag"`` (air-ground) or ``"uav"`` (UAV-aided).
    - ``render_mode``: ``None`` or ``"rgb_array"`` (``render()`` returns an HxWx3 uint8 frame).
    - ``device``: torch device of the core (``"cpu"`` by default).
    - ``action_mask_layout``: ``"flat"`` (default) or ``"stacked"`` (see Observation Space).
    - ``compile``: run the core's step through ``torch.compile`` (``TNTNCore(compile=True)``):
      several times more steps per second, after one to two minutes of compiling at the first step
      and again at the first large-scale refresh step (10th) on a 2-core CPU, seconds when
      torch's compile cache already holds them; needs a C++ compiler. Results agree with the
      eager core to float rounding, not bit for bit.
    - ``**overrides``: any config field by name (``num_subbands=4``, ``episode_steps=100``,
      ``invalid_action="repair"``, ...); unknown names and bad values raise ``ValueError``.

    Or ``TNTNParallelEnv(config, render_mode=None, device="cpu", action_mask_layout="flat",
    compile=False)`` with an :class:`EnvConfig`.
    """

    metadata = {"name": "tntn_v0", "render_modes": ["rgb_array"], "is_parallelizable": True}

    def __init__(self, config: EnvConfig | None = None, render_mode: str | None = None,
                 device="cpu", action_mask_layout: str = "flat", compile: bool = False):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode = {render_mode!r} is invalid; allowed: "
                             f"{[None, *self.metadata['render_modes']]}")
        if action_mask_layout not in ACTION_MASK_LAYOUTS:
            raise ValueError(f"action_mask_layout = {action_mask_layout!r} is invalid; allowed: "
                             f"{list(ACTION_MASK_LAYOUTS)}")
        if config is None:
            config = make_config()
        if not isinstance(config, EnvConfig):
            raise ValueError(f"config = {config!r} is invalid; allowed: an EnvConfig "
                             "(see make_config) or None")
        self.config = config
        self.render_mode = render_mode
        self.core = core = TNTNCore(config, num_envs=1, device=device, check_actions=True,
                                    compile=compile)
        self.tiers = core.tiers
        self._names = {t: core.agent_names(t) for t in self.tiers}
        self._num_agents = {t: len(self._names[t]) for t in self.tiers}
        self._tier_of = {a: t for t in self.tiers for a in self._names[t]}
        self._dims = {t: len(core.nvec[t]) for t in self.tiers}
        self.action_mask_layout = action_mask_layout
        # per tier: the mask's shape in observations ([positions, choices] where stacked)
        self._mask_shape = {
            t: ((len(core.nvec[t]), int(core.nvec[t][0]))
                if action_mask_layout == "stacked" and len(set(core.nvec[t])) == 1
                else (core.action_size(t),))
            for t in self.tiers}
        # info keys and zero values after reset: those of a step (a constant info structure)
        zeros = {"satellite": dict.fromkeys(SYSTEM_METRICS, 0.0)}
        self._reset_info = {t: {**zeros.get(t, dict.fromkeys(REGION_INFO_KEYS, 0.0)),
                                "decided": False, "voided_actions": 0, "repaired_actions": 0}
                            for t in self.tiers}
        self.possible_agents = [a for t in self.tiers for a in self._names[t]]
        # per agent: its observation's and its mask's slices of the concatenated buffers
        self._slices, o, m = [], 0, 0
        for t in self.tiers:
            od, md = core.obs_size(t), core.action_size(t)
            for name in self._names[t]:
                self._slices.append((name, (o, o + od), (m, m + md), self._mask_shape[t]))
                o, m = o + od, m + md
        self.agents: list[str] = []
        lows, highs = [], []
        for t in self.tiers:
            lo, hi = core.obs_bounds(t)
            lows.append(np.tile(lo, core.num_agents[t]))
            highs.append(np.tile(hi, core.num_agents[t]))
        self.state_space = spaces.Box(np.concatenate(lows), np.concatenate(highs),
                                      dtype=np.float32)
        self.last_metrics: dict[str, float] = {}
        self._obs_t: dict | None = None
        self._fig = None

    # ------------------------------------------------------------------ spaces
    def _tier(self, agent) -> str:
        try:
            return self._tier_of[agent]
        except (KeyError, TypeError):
            raise ValueError(f"unknown agent {agent!r}; agents of this scenario: "
                             f"{self.possible_agents}") from None

    @functools.lru_cache(maxsize=None)  # noqa: B019, UP033 (PettingZoo: same object)
    def observation_space(self, agent: str) -> spaces.Dict:
        tier = self._tier(agent)
        lo, hi = self.core.obs_bounds(tier)
        return spaces.Dict({
            "observation": spaces.Box(lo, hi, dtype=np.float32),
            "action_mask": spaces.Box(0, 1, self._mask_shape[tier], dtype=np.int8),
        })

    @functools.lru_cache(maxsize=None)  # noqa: B019, UP033
    def action_space(self, agent: str) -> MaskedMultiDiscrete:
        return MaskedMultiDiscrete(np.asarray(self.core.nvec[self._tier(agent)], dtype=np.int64))

    # ------------------------------------------------------------------ reset / step
    def reset(self, seed: int | None = None, options: dict | None = None):
        """Start an episode; returns ``(observations, infos)``. ``options`` is not used."""
        with torch.inference_mode():  # numpy out: no tensor leaves, so autograd is skipped
            obs_t, masks_t = self.core.reset(seed=seed)
            self._obs_t = obs_t
            decides = self._decides_at(0)
            obs = self._observations(obs_t, masks_t)
        self.agents = list(self.possible_agents)
        self.last_metrics = {}
        infos = {a: {**self._reset_info[t], "decides": decides[t]}
                 for a in self.agents for t in (self._tier_of[a],)}
        return obs, infos

    def step(self, actions: Mapping):
        """Apply one joint action (dict agent -> array of ints); returns PettingZoo's five dicts."""
        if not self.agents:
            raise RuntimeError("step() called with no live agents; call reset() first (the "
                               "episode was truncated or never started)")
        core_actions = self._to_core(actions)
        # Under inference mode (~20-30 % faster at E = 1): every tensor is turned into numpy or
        # Python numbers here; env.core keeps working outside it (its ops only read these).
        with torch.inference_mode():
            out = self.core.step(core_actions)
            obs = self._observations(out["obs"], out["masks"])
            # every number of the infos and rewards in one host transfer: truncation, the step
            # counter, whether each tier decided, rewards, system metrics, region metrics
            # [keys, J], then the voided and repaired counts there are
            tiers, ng = self.tiers, self._num_agents
            counts = [(key, t) for key in ("voided_agents", "repaired_agents") for t in tiers
                      if t in out[key]]
            vals = torch.cat([out["truncated"], self.core.state.t,
                              *(out["decided"][t] for t in tiers),
                              *(out["rewards"][t][0] for t in tiers),
                              *(out["metrics"][k] for k in SYSTEM_METRICS),
                              *(out["region"][k][0] for k in REGION_INFO_KEYS),
                              *(out[key][t][0] for key, t in counts)]).tolist()
        self._obs_t = out["obs"]
        truncated, t_new = bool(vals[0]), int(vals[1])
        decided = {t: bool(v) for t, v in zip(tiers, vals[2:2 + len(tiers)])}
        decides = self._decides_at(t_new)
        vals = vals[2 + len(tiers):]
        n_rew, n_sys, n_reg = (sum(ng[t] for t in tiers), len(SYSTEM_METRICS),
                               len(REGION_INFO_KEYS) * self.core.J)
        system = dict(zip(SYSTEM_METRICS, vals[n_rew:n_rew + n_sys]))
        self.last_metrics = dict(system)
        region = np.asarray(vals[n_rew + n_sys:n_rew + n_sys + n_reg], dtype=np.float32).reshape(
            len(REGION_INFO_KEYS), self.core.J)
        found, start = {}, n_rew + n_sys + n_reg
        for key, t in counts:
            found[key, t] = vals[start:start + ng[t]]
            start += ng[t]
        rewards, infos, start = {}, {}, 0
        for tier in tiers:
            names = self._names[tier]
            rewards.update(zip(names, vals[start:start + len(names)]))
            start += len(names)
            if tier == "satellite":
                scoped = [system]
            else:
                reg = region if tier == "local" else region.reshape(
                    len(REGION_INFO_KEYS), len(names), -1).mean(-1)
                scoped = [dict(zip(REGION_INFO_KEYS, col)) for col in reg.T.tolist()]
            zeros = [0] * len(names)
            voided = found.get(("voided_agents", tier), zeros)
            repaired = found.get(("repaired_agents", tier), zeros)
            dt, dd = decides[tier], decided[tier]
            for name, metrics, v, r in zip(names, scoped, voided, repaired):
                infos[name] = {**metrics, "decides": dt, "decided": dd, "voided_actions": int(v),
                               "repaired_actions": int(r)}
        agents = self.agents
        terminations = dict.fromkeys(agents, False)
        truncations = dict.fromkeys(agents, truncated)
        if truncated:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    def _decides_at(self, t: int) -> dict:
        """Which tiers decide at step counter ``t`` (``core.decides`` for this env, on the host)."""
        iv = self.core.decision_intervals
        return {tier: t % iv[tier] == 0 for tier in self.tiers}

    def _observations(self, obs_t: dict, masks_t: dict) -> dict:
        # one fresh host buffer for all observations and one for all masks (new arrays each
        # step, so the caller may write into them); each agent gets views of its slices
        obs = torch.cat([obs_t[t].reshape(-1) for t in self.tiers]).cpu().numpy()
        masks = torch.cat([masks_t[t].reshape(-1) for t in self.tiers]).to(torch.int8).cpu()
        masks = masks.numpy()
        out = {}
        for name, (o0, o1), (m0, m1), shape in self._slices:
            out[name] = {"observation": obs[o0:o1], "action_mask": masks[m0:m1].reshape(shape)}
        return out

    def _to_core(self, actions) -> dict:
        """Validate names, shapes and dtypes (the core checks ranges and masks)."""
        if not isinstance(actions, Mapping):
            raise ValueError(f"actions must be a dict agent -> action; got "
                             f"{type(actions).__name__}")
        unknown = [a for a in actions if a not in self._tier_of]
        if unknown:
            raise ValueError(f"actions for unknown agents {unknown}; agents of this scenario: "
                             f"{self.possible_agents}")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"missing actions for agents {missing}; every live agent must act "
                             "on every step (a tier that does not decide on this step still "
                             "passes an action, which is ignored)")
        dev = self.core.device
        out = {}
        for tier in self.tiers:
            names, dims = self._names[tier], self._dims[tier]
            arr = np.empty((1, len(names), dims), dtype=np.int64)
            for i, name in enumerate(names):
                arr[0, i] = _as_action(name, actions[name], dims)
            out[tier] = torch.from_numpy(arr).to(dev)
        return out

    # ------------------------------------------------------------------ views
    def state(self) -> np.ndarray:
        """Global state (float32): all agents' observations concatenated, in ``possible_agents``
        order (``core.global_state``)."""
        if self._obs_t is None:
            raise RuntimeError("state() is available after reset()")
        return self.core.global_state(self._obs_t)[0].cpu().numpy().copy()

    def link_state(self) -> dict:
        """Full link state of the last step as numpy arrays (``core.link_state(0)``)."""
        return self.core.link_state(0)

    def render(self):
        """``rgb_array``: an HxWx3 uint8 frame of the map and the allocation (None otherwise)."""
        if self.render_mode is None:
            logger.warn("render() called without a render_mode; pass render_mode='rgb_array' "
                        "when building the env")
            return None
        if self.core.state is None:
            raise RuntimeError("render() is available after reset()")
        from .render import render_frame  # matplotlib is imported only when rendering

        frame, self._fig = render_frame(self.core, env=0, fig=self._fig)
        return frame

    def close(self):
        """Release the render figure."""
        if self._fig is not None:
            from .render import close_figure

            close_figure(self._fig)
            self._fig = None


def _as_action(agent: str, value, dims: int) -> np.ndarray:
    try:
        a = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as e:
        raise ValueError(f"action of agent {agent!r} is not an array of {dims} integers: "
                         f"{e}") from None
    if a.dtype.kind not in "iu":
        raise ValueError(f"action of agent {agent!r} has dtype {a.dtype}; expected integers "
                         f"(MultiDiscrete values, shape ({dims},); floats and bools are "
                         "rejected)")
    if a.shape != (dims,):
        raise ValueError(f"action of agent {agent!r} has shape {a.shape}; expected ({dims},), "
                         "one value per position of its MultiDiscrete action")
    return a


def parallel_env(scenario: str = "sag", render_mode: str | None = None, device="cpu",
                 action_mask_layout: str = "flat", compile: bool = False,
                 **overrides) -> TNTNParallelEnv:
    """Build the PettingZoo env of a scenario preset with flat config overrides.

    ``parallel_env("sag", num_subbands=4, episode_steps=100, invalid_action="repair")``;
    unknown override names and bad values raise ``ValueError`` naming the field.
    ``action_mask_layout="stacked"``: the mask layout TorchRL's ``PettingZooWrapper`` expects
    (see :class:`TNTNParallelEnv`). ``compile=True``: the core's step through ``torch.compile``.
    """
    return TNTNParallelEnv(make_config(scenario, **overrides), render_mode=render_mode,
                           device=device, action_mask_layout=action_mask_layout,
                           compile=compile)


__all__ = ["TNTNParallelEnv", "parallel_env", "REGION_INFO_KEYS", "ACTION_MASK_LAYOUTS"]
