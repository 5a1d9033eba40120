"""RLlib view of the PettingZoo env: a registered multi-agent env, one policy per tier, and a
masked MultiDiscrete PPO module (RLlib's new API stack: ``RLModule``, ``EnvRunner``).

::

    from ray.rllib.algorithms.ppo import PPOConfig
    from tntn_env.rllib import configure

    algo = configure(PPOConfig(), "sag").env_runners(num_env_runners=0).build_algo()
    print(algo.train()["env_runners"]["episode_return_mean"])

:func:`configure` is :func:`register_env` + ``.environment(...)`` + ``.multi_agent(...)`` +
``.rl_module(...)`` + ``.callbacks(...)``; each piece is also here on its own. Observations are
the PettingZoo dicts ``{"observation": ..., "action_mask": ...}``; :class:`MaskedPPOModule`
feeds ``"observation"`` to PPO's default encoder and sets the logits of the choices the flat
mask forbids to the float minimum (PPO's MultiDiscrete logits have width ``sum(nvec)``, the
layout of tntn's flat mask), so a policy never samples a forbidden choice and the env runs in
its default raise mode (``invalid_action="raise"``). Every step is a transition for every
agent: a tier's actions on the steps it does not decide are ignored by the env (PettingZoo's
``infos[agent]["decides"]``), as with any flat multi-agent learner.
Needs ``ray[rllib]`` (``pip install -e ".[rllib]"``); ``tntn_env`` itself does not import it.
"""

from __future__ import annotations

from typing import Any

try:
    import gymnasium as gym
    import torch
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import (
        DefaultPPOTorchRLModule,
    )
    from ray.rllib.callbacks.callbacks import RLlibCallback
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.rllib.env.multi_agent_env import MultiAgentEnv
    from ray.rllib.utils.torch_utils import FLOAT_MIN
    from ray.tune import registry
except ImportError as e:  # the rest of tntn_env works without ray
    raise ImportError(f"tntn_env.rllib needs ray[rllib] ({e}); install it with "
                      "pip install -e \".[rllib]\"") from e

from .pettingzoo_env import parallel_env

TIERS = ("satellite", "hap", "local")


def policy_mapping_fn(agent_id: str, episode: Any = None, **kwargs) -> str:
    """The tier of an agent (``"hap_3"`` -> ``"hap"``): one policy shared within each tier."""
    return agent_id.rsplit("_", 1)[0]


class TNTNMultiAgentEnv(MultiAgentEnv):
    """``parallel_env(scenario, **overrides)`` as an RLlib ``MultiAgentEnv``.

    Agents, spaces, observations, rewards and infos are the PettingZoo env's (the episode ends
    by truncation for all agents at once). ``env_config`` is ``{"scenario": ..., **overrides}``
    (config overrides as :func:`tntn_env.parallel_env` takes them).
    """

    def __init__(self, env_config: dict | None = None):
        super().__init__()
        cfg = dict(env_config or {})
        self.par_env = parallel_env(cfg.pop("scenario", "sag"), **cfg)
        self.possible_agents = list(self.par_env.possible_agents)
        self.agents = list(self.possible_agents)
        self.observation_spaces = {a: self.par_env.observation_space(a)
                                   for a in self.possible_agents}
        self.action_spaces = {a: self.par_env.action_space(a) for a in self.possible_agents}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, infos = self.par_env.reset(seed=seed, options=options)
        self.agents = list(self.par_env.agents)
        return obs, infos

    def step(self, action_dict):
        obs, rew, term, trunc, infos = self.par_env.step(action_dict)
        self.agents = list(self.par_env.agents)
        term["__all__"] = all(term.values())
        trunc["__all__"] = all(trunc.values())
        return obs, rew, term, trunc, infos

    def close(self):
        self.par_env.close()


def env_creator(env_config: dict | None = None) -> TNTNMultiAgentEnv:
    return TNTNMultiAgentEnv(env_config)


def register_env(name: str = "tntn") -> str:
    """Register :class:`TNTNMultiAgentEnv` with Ray Tune under ``name``; returns ``name``.

    The scenario and overrides go into the algorithm config's ``env_config``
    (``config.environment("tntn", env_config={"scenario": "sag", "num_subbands": 4})``).
    """
    registry.register_env(name, env_creator)
    return name


class MaskedPPOModule(DefaultPPOTorchRLModule):
    """PPO's default torch module on the ``"observation"`` entry of a Dict observation, with
    the logits of masked-out choices set to the float minimum (flat mask, width ``sum(nvec)``
    = PPO's MultiDiscrete logits). Encoder, heads and ``model_config`` are PPO's defaults."""

    def __init__(self, *args, observation_space: gym.Space | None = None, **kwargs):
        if not (isinstance(observation_space, gym.spaces.Dict)
                and {"observation", "action_mask"} <= set(observation_space.spaces)):
            raise ValueError(f"MaskedPPOModule needs a Dict observation space with "
                             f"'observation' and 'action_mask'; got {observation_space}")
        # PPO's catalog builds its networks for the observation vector alone
        super().__init__(*args, observation_space=observation_space["observation"], **kwargs)
        self.observation_space = observation_space

    @staticmethod
    def _split(batch: dict) -> tuple[dict, torch.Tensor | None]:
        obs = batch[Columns.OBS]
        if not isinstance(obs, dict):
            return batch, None
        return {**batch, Columns.OBS: obs["observation"]}, obs["action_mask"]

    @staticmethod
    def _masked(out: dict, mask: torch.Tensor | None) -> dict:
        if mask is not None:
            logits = out[Columns.ACTION_DIST_INPUTS]
            out[Columns.ACTION_DIST_INPUTS] = logits.masked_fill(mask == 0, FLOAT_MIN)
        return out

    def _forward(self, batch: dict, **kwargs) -> dict:
        batch, mask = self._split(batch)
        return self._masked(super()._forward(batch, **kwargs), mask)

    def _forward_train(self, batch: dict, **kwargs) -> dict:
        batch, mask = self._split(batch)
        return self._masked(super()._forward_train(batch, **kwargs), mask)

    def compute_values(self, batch: dict, embeddings: Any = None):
        return super().compute_values(self._split(batch)[0], embeddings)


def module_spec(scenario: str = "sag", model_config: dict | None = None,
                **overrides) -> MultiRLModuleSpec:
    """One :class:`MaskedPPOModule` per tier of the scenario (spaces from its env)."""
    env = TNTNMultiAgentEnv({"scenario": scenario, **overrides})
    first = {}
    for a in env.possible_agents:
        first.setdefault(policy_mapping_fn(a), a)
    return MultiRLModuleSpec(rl_module_specs={
        tier: RLModuleSpec(module_class=MaskedPPOModule,
                           observation_space=env.observation_spaces[a],
                           action_space=env.action_spaces[a],
                           model_config=model_config)
        for tier, a in first.items()})


class TNTNCallbacks(RLlibCallback):
    """Logs per episode the positions the env repaired (``tntn/repaired_actions``, 0 in raise
    mode and under a correct mask) and the mean spectral efficiency over the episode's local
    agents' steps (``tntn/spectral_efficiency``)."""

    def on_episode_step(self, *, episode, **kwargs) -> None:
        infos = episode.get_infos(-1)
        rep = sum(int(i.get("repaired_actions", 0)) for i in infos.values())
        se = [i["spectral_efficiency"] for a, i in infos.items()
              if a.startswith("local_") and "spectral_efficiency" in i]
        data = episode.custom_data
        data["repaired"] = data.get("repaired", 0) + rep
        if se:
            data.setdefault("se", []).append(sum(se) / len(se))

    def on_episode_end(self, *, episode, metrics_logger=None, **kwargs) -> None:
        data = episode.custom_data
        if metrics_logger is not None:
            metrics_logger.log_value("tntn/repaired_actions", data.get("repaired", 0),
                                     reduce="sum")
            se = data.get("se", [])
            if se:
                metrics_logger.log_value("tntn/spectral_efficiency", sum(se) / len(se))


def configure(config, scenario: str = "sag", env_name: str = "tntn",
              model_config: dict | None = None, **overrides):
    """``config`` (a ``PPOConfig``) set up for ``scenario`` with config overrides: the
    registered env, one masked policy per tier, :class:`TNTNCallbacks`.

    RLlib's env checker is off: it samples actions without masks, which the env's default
    raise mode rejects (pass ``invalid_action="repair"`` to run it)."""
    register_env(env_name)
    spec = module_spec(scenario, model_config=model_config, **overrides)
    return (config
            .environment(env_name, env_config={"scenario": scenario, **overrides},
                         disable_env_checking=True)
            .multi_agent(policies=set(spec.rl_module_specs),
                         policy_mapping_fn=policy_mapping_fn)
            .rl_module(rl_module_spec=spec)
            .callbacks(TNTNCallbacks))


__all__ = ["MaskedPPOModule", "TIERS", "TNTNCallbacks", "TNTNMultiAgentEnv", "configure",
           "env_creator", "module_spec", "policy_mapping_fn", "register_env"]
