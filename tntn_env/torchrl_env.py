"""TorchRL view of the batched core: E environments on the core's device, tensors in and out.

Like TorchRL's ``VmasEnv``, :class:`TNTNTorchRLEnv` is an ``EnvBase`` whose batch is the core's
env dimension, so TorchRL's collectors, MARL losses and BenchMARL-style loops step thousands of
environments per call instead of one PettingZoo env. No physics lives here: ``_reset`` and
``_step`` are one :meth:`TNTNCore.reset` / :meth:`TNTNCore.step` call each (README,
Layout: the physics exists once).
Needs ``torchrl`` (``pip install -e ".[torchrl]"``); ``tntn_env`` itself does not import it.
"""

from __future__ import annotations

import torch

try:
    from tensordict import TensorDict, TensorDictBase
    from torchrl.data import Categorical, Composite, MultiCategorical, Unbounded
    from torchrl.envs import EnvBase
except ImportError as e:  # the rest of tntn_env works without torchrl
    raise ImportError(f"tntn_env.torchrl_env needs torchrl ({e}); install it with "
                      "pip install -e \".[torchrl]\" (or \".[dev]\")") from e

from .config import EnvConfig, make_config
from .core import SYSTEM_METRICS, TNTNCore


class TNTNTorchRLEnv(EnvBase):
    """TN-NTN spectrum allocation as a batched TorchRL environment (one group per tier).

    ## Groups and keys (batch size ``[E]``)

    One group per tier the scenario has (``"satellite"``, ``"hap"``, ``"local"``; A agents each,
    in the order of :class:`tntn_env.TNTNParallelEnv`'s agents), each with:

    - ``(group, "observation")``: float32 ``[E, A, obs_size]``, the core's observations;
    - ``(group, "action_mask")``: bool ``[E, A, sum(nvec)]``, the core's flat masks (the
      choices of position p at ``offs[p]:offs[p] + nvec[p]``); the action spec's mask is kept
      equal to it, so ``env.rand_action()`` is always feasible;
    - ``(group, "decides")``: bool ``[E, A, 1]``, whether the tier's action on this step counts
      (its decision interval; the core ignores it otherwise), for hierarchical trainers that
      form macro-transitions;
    - ``(group, "action")``: int64 ``[E, A, len(nvec)]``, a ``MultiCategorical`` (the same
      positions and choices as the PettingZoo env's ``MultiDiscrete``);
    - ``("next", group, "reward")``: float32 ``[E, A, 1]``, the tier's per-step rewards.

    At the root: ``"state"`` float32 ``[E, state_size]`` (the global state for centralised
    critics, ``core.global_state``); ``"done"``, ``"terminated"`` (always False: episodes only
    end by truncation) and ``"truncated"`` bool ``[E, 1]``; after a step, ``("info", name)``
    float32 ``[E]`` holds the core's system metrics (``SYSTEM_METRICS``) and the counts
    ``voided_actions`` / ``repaired_actions`` (zeros after a reset, so that the specs are fixed).

    Actions of tiers that do not decide on a step are ignored, as in the core; masked-out or
    out-of-range actions raise ``ValueError`` naming the agent and position (the config's
    ``invalid_action="repair"`` repairs and counts them instead). ``"_reset"`` (root, or any
    group's) resets those envs only. ``set_seed(s)`` seeds env i with ``s + i``, exactly as
    ``TNTNCore.reset(seed=s)``; a reset without a seed starts each env's next episode.

    ## Positions layout (``action_layout="positions"``)

    For libraries whose MARL algorithms take one categorical action per agent (BenchMARL's
    MAPPO / IPPO with ``MaskedCategorical``): each (agent, position) pair of a tier is one agent
    of its group, ``A * P`` agents in agent-major order, named ``"<agent>/<p>"``. Per such agent
    ``(group, "observation")`` is the agent's observation followed by a one-hot of the
    position (``obs_size + P``), ``(group, "action")`` a ``Categorical`` of ``max(nvec)``
    choices with ``(group, "action_mask")`` bool ``[E, A * P, max(nvec)]`` (the position's
    flat-mask entries, padding False), and ``"decides"`` and ``"reward"`` are the agent's.
    Actions are regrouped to ``[E, A, P]`` for the core: the same env, a factorised policy.

    ## Arguments

    ``TNTNTorchRLEnv(scenario="sag", num_envs=1, device="cpu", config=None,
    action_layout="multi", **overrides)``: a preset with config overrides (as
    :func:`tntn_env.parallel_env`), or an :class:`~tntn_env.EnvConfig`; ``action_layout``
    ``"multi"`` (above) or ``"positions"``.
    """

    def __init__(self, scenario: str = "sag", num_envs: int = 1, device="cpu",
                 config: EnvConfig | None = None, action_layout: str = "multi", **overrides):
        if action_layout not in ("multi", "positions"):
            raise ValueError(f"action_layout = {action_layout!r}; allowed: 'multi', 'positions'")
        if config is not None and overrides:
            raise ValueError(f"pass either config or overrides, not both; got overrides "
                             f"{sorted(overrides)}")
        cfg = config if config is not None else make_config(scenario, **overrides)
        self.core = core = TNTNCore(cfg, num_envs=num_envs, device=device, check_actions=True)
        super().__init__(device=core.device, batch_size=torch.Size([num_envs]))
        self.tiers = core.tiers
        self.action_layout = action_layout
        self.group_map = {t: core.agent_names(t) for t in self.tiers}
        if action_layout == "positions":
            self._pos = {}  # tier -> (flat index [P, C], valid [P, C], position one-hots [P, P])
            for t in self.tiers:
                nvec = torch.tensor(core.nvec[t], device=core.device)
                P, C = len(nvec), int(nvec.max())
                choice = torch.arange(C, device=core.device)
                valid = choice < nvec[:, None]
                index = torch.where(valid, (torch.cumsum(nvec, 0) - nvec)[:, None] + choice, 0)
                self._pos[t] = (index, valid, torch.eye(P, device=core.device))
                self.group_map[t] = [f"{a}/{p}" for a in core.agent_names(t) for p in range(P)]
        self._seed: int | None = None
        self._make_specs()

    def _make_specs(self) -> None:
        core, E, dev = self.core, self.core.num_envs, self.core.device
        obs = Composite(shape=(E,), device=dev)
        act = Composite(shape=(E,), device=dev)
        rew = Composite(shape=(E,), device=dev)
        for t in self.tiers:
            A, nvec = core.num_agents[t], core.nvec[t]
            if self.action_layout == "positions":
                P, C, D = len(nvec), max(nvec), core.obs_size(t)
                obs[t] = Composite({
                    "observation": Unbounded((E, A * P, D + P), device=dev),
                    "action_mask": Categorical(2, (E, A * P, C), device=dev, dtype=torch.bool),
                    "decides": Categorical(2, (E, A * P, 1), device=dev, dtype=torch.bool),
                }, shape=(E, A * P), device=dev)
                act[t] = Composite({"action": Categorical(C, (E, A * P), device=dev)},
                                   shape=(E, A * P), device=dev)
                rew[t] = Composite({"reward": Unbounded((E, A * P, 1), device=dev)},
                                   shape=(E, A * P), device=dev)
                continue
            obs[t] = Composite({
                "observation": Unbounded((E, A, core.obs_size(t)), device=dev),
                "action_mask": Categorical(2, (E, A, sum(nvec)), device=dev, dtype=torch.bool),
                "decides": Categorical(2, (E, A, 1), device=dev, dtype=torch.bool),
            }, shape=(E, A), device=dev)
            act[t] = Composite({
                "action": MultiCategorical(torch.tensor(nvec).expand(E, A, len(nvec)),
                                           shape=(E, A, len(nvec)), device=dev),
            }, shape=(E, A), device=dev)
            rew[t] = Composite({"reward": Unbounded((E, A, 1), device=dev)}, shape=(E, A),
                               device=dev)
        obs["state"] = Unbounded((E, core.state_size), device=dev)
        obs["info"] = Composite(
            {k: Unbounded((E,), device=dev)
             for k in (*SYSTEM_METRICS, "voided_actions", "repaired_actions")},
            shape=(E,), device=dev)
        self.observation_spec = obs
        self.full_action_spec = act
        self.full_reward_spec = rew
        self.full_done_spec = Composite(
            {k: Categorical(2, (E, 1), device=dev, dtype=torch.bool)
             for k in ("done", "terminated", "truncated")}, shape=(E,), device=dev)

    # ------------------------------------------------------------------ EnvBase
    def _set_seed(self, seed: int | None) -> None:
        self._seed = seed  # used by the next reset of all envs

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        E, dev = self.core.num_envs, self.core.device
        ids = None
        if tensordict is not None:
            flags = [tensordict.get(k).reshape(E, -1).any(-1)
                     for k in ("_reset", *((t, "_reset") for t in self.tiers))
                     if tensordict.get(k, None) is not None]
            if flags:
                which = torch.stack(flags).any(0)
                ids = None if bool(which.all()) else which.nonzero().flatten()
        if ids is not None and ids.numel() == 0:  # nothing to reset
            obs, masks = self.core.observe(), self.core.masks()
        else:  # after set_seed(s): env i gets s + i, also in a partial reset
            seed, self._seed = self._seed, None
            obs, masks = self.core.reset(seed=seed, env_ids=ids)
        keys = (*SYSTEM_METRICS, "voided_actions", "repaired_actions")
        info = dict(zip(keys, torch.zeros(len(keys), E, device=dev).unbind(0)))  # no shared storage
        truncated = self.core.state.t[:, None] >= self.core.cfg.timing.episode_steps
        return self._output(obs, masks, None, truncated, info)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        acts = {t: tensordict.get((t, "action")) for t in self.tiers}
        if self.action_layout == "positions":
            acts = {t: a.reshape(self.core.num_envs, self.core.num_agents[t], -1)
                    for t, a in acts.items()}
        out = self.core.step(acts)
        info = {k: v.float() for k, v in out["metrics"].items()}
        info["voided_actions"] = out["voided"].float()
        info["repaired_actions"] = out["repaired"].float()
        return self._output(out["obs"], out["masks"], out["rewards"], out["truncated"][:, None],
                            info)

    def _output(self, obs, masks, rewards, truncated, info) -> TensorDictBase:
        src = {"state": self.core.global_state(obs), "info": info, "done": truncated.clone(),
               "terminated": torch.zeros_like(truncated), "truncated": truncated}
        E, decides = self.core.num_envs, self.core.decides()
        for t in self.tiers:
            A = self.core.num_agents[t]
            group = {"observation": obs[t], "action_mask": masks[t],
                     "decides": decides[t].view(E, 1, 1).expand(E, A, 1)}
            if rewards is not None:
                group["reward"] = rewards[t][..., None]
            if self.action_layout == "positions":
                group = self._positions(t, group)
            src[t] = TensorDict(group, batch_size=group["decides"].shape[:2],
                                device=self.device)
            self.full_action_spec[t, "action"].update_mask(group["action_mask"])
        return TensorDict(src, batch_size=self.batch_size, device=self.device)

    def _positions(self, tier: str, group: dict) -> dict:
        """A tier's group entries [E, A, ...] in the positions layout [E, A * P, ...]."""
        index, valid, eye = self._pos[tier]
        obs = group["observation"]
        (E, A, D), P = obs.shape, index.shape[0]
        out = {
            "observation": torch.cat((obs[:, :, None].expand(E, A, P, D),
                                      eye.expand(E, A, P, P)), -1).reshape(E, A * P, D + P),
            "action_mask": (group["action_mask"][:, :, index] & valid).reshape(E, A * P, -1),
            "decides": group["decides"][:, :, None].expand(E, A, P, 1).reshape(E, A * P, 1),
        }
        if "reward" in group:
            out["reward"] = group["reward"][:, :, None].expand(E, A, P, 1).reshape(E, A * P, 1)
        return out


__all__ = ["TNTNTorchRLEnv"]
