"""BenchMARL task over the batched TorchRL view: MAPPO / IPPO (stock algorithms, stock MLP) on
tntn's scenarios, masks honoured.

::

    from tntn_env.benchmarl import experiment

    experiment("mappo", "sag", seed=0, max_n_frames=60_000).run()

or ``python -m tntn_env.benchmarl --algorithm mappo --scenario sag --frames 60000``. The task
is :class:`TNTNTask` (``TNTNTask.SAG.get_task({"num_subbands": 4})``: the scenario from the
member, config overrides as the task config), an ordinary BenchMARL ``Task`` for
``benchmarl.experiment.Experiment``. Its env is :class:`~tntn_env.torchrl_env.TNTNTorchRLEnv`
with ``action_layout="positions"``: every (agent, position) pair is one BenchMARL agent with a
masked ``Categorical`` action (the layout BenchMARL's MAPPO / IPPO accept), so the policy is
factorised over positions, each position's logits from the shared MLP on the agent's
observation and a one-hot of the position; MAPPO's critic sees the global ``"state"``. The
env runs in its default raise mode (``invalid_action="raise"``): a masked-out action stops the
run. Frames are env steps times environments, as BenchMARL counts them.
Needs ``benchmarl`` (``pip install -e ".[benchmarl]"``); ``tntn_env`` itself does not import it.
"""

from __future__ import annotations

import argparse
import copy
import functools
from typing import Any

try:
    import torch
    from benchmarl.environments.common import Task, TaskClass
    from tensordict import TensorDictBase
    from torchrl.data import Composite
    from torchrl.envs import EnvBase
except ImportError as e:  # the rest of tntn_env works without benchmarl
    raise ImportError(f"tntn_env.benchmarl needs benchmarl ({e}); install it with "
                      "pip install -e \".[benchmarl]\"") from e

from .config import parse_overrides
from .torchrl_env import TNTNTorchRLEnv


def make_env(scenario: str, overrides: dict, num_envs: int, seed: int | None,
             device) -> TNTNTorchRLEnv:
    """The task's env: ``TNTNTorchRLEnv`` in the positions layout, seeded (env i: seed + i)."""
    env = TNTNTorchRLEnv(scenario, num_envs=num_envs, device=device,
                         action_layout="positions", **overrides)
    if seed is not None:
        env.set_seed(seed)
    return env


def _keep(spec: Composite, groups, key: str) -> Composite:
    """The groups' ``key`` entries of an (unbatched) observation spec, nothing else."""
    spec = spec.clone()
    for k in list(spec.keys()):
        if k not in groups:
            del spec[k]
    for g in groups:
        for k in list(spec[g].keys()):
            if k != key:
                del spec[g, k]
    return spec


class TNTNClass(TaskClass):
    """A tntn scenario as a BenchMARL task; ``config`` holds config overrides."""

    def _scenario(self) -> str:
        return self.name.lower()

    def get_env_fun(self, num_envs: int, continuous_actions: bool, seed: int | None,
                    device) -> Any:
        return functools.partial(make_env, self._scenario(), copy.deepcopy(dict(self.config)),
                                 num_envs, seed, device)

    def supports_continuous_actions(self) -> bool:
        return False

    def supports_discrete_actions(self) -> bool:
        return True

    def max_steps(self, env: EnvBase) -> int:
        return int(env.core.cfg.timing.episode_steps)

    def has_render(self, env: EnvBase) -> bool:
        return False

    def group_map(self, env: EnvBase) -> dict[str, list[str]]:
        return dict(env.group_map)

    def observation_spec(self, env: EnvBase) -> Composite:
        return _keep(env.full_observation_spec_unbatched, self.group_map(env), "observation")

    def action_mask_spec(self, env: EnvBase) -> Composite:
        return _keep(env.full_observation_spec_unbatched, self.group_map(env), "action_mask")

    def info_spec(self, env: EnvBase) -> Composite | None:
        return None

    def state_spec(self, env: EnvBase) -> Composite:
        return Composite({"state": env.full_observation_spec_unbatched["state"].clone()})

    def action_spec(self, env: EnvBase) -> Composite:
        return env.full_action_spec_unbatched

    @staticmethod
    def env_name() -> str:
        return "tntn"

    @staticmethod
    def log_info(batch: TensorDictBase) -> dict[str, float]:
        info = batch.get(("next", "info"))
        return {"tntn/spectral_efficiency": info["spectral_efficiency"].mean().item(),
                "tntn/repaired_actions": info["repaired_actions"].sum().item()}


class TNTNTask(Task):
    """tntn's scenarios as BenchMARL tasks; ``get_task()`` runs the preset as is,
    ``get_task({"num_subbands": 4, ...})`` with config overrides."""

    SAG = None
    AG = None
    UAV = None

    @staticmethod
    def associated_class():
        return TNTNClass

    def get_from_yaml(self, path: str | None = None) -> TaskClass:
        if path is None:
            return self.get_task(config={})
        from benchmarl.environments.common import _read_yaml_config
        return self.get_task(config=_read_yaml_config(path))


def experiment(algorithm: str = "mappo", scenario: str = "sag", seed: int = 0,
               max_n_frames: int | None = None, overrides: dict | None = None,
               experiment_overrides: dict | None = None, save_folder: str | None = None,
               callbacks: list | None = None):
    """A BenchMARL ``Experiment`` of ``algorithm`` (``"mappo"`` / ``"ippo"``, their yaml
    defaults) with BenchMARL's MLP for actor and critic on ``scenario``. BenchMARL's experiment
    defaults apart from: CSV logging only, ``max_n_frames`` if given, and
    ``experiment_overrides`` (ExperimentConfig fields); ``callbacks``: BenchMARL callbacks."""
    from benchmarl.algorithms import IppoConfig, MappoConfig
    from benchmarl.experiment import Experiment, ExperimentConfig
    from benchmarl.models import MlpConfig

    algorithms = {"mappo": MappoConfig, "ippo": IppoConfig}
    if algorithm not in algorithms:
        raise ValueError(f"algorithm = {algorithm!r}; allowed: {sorted(algorithms)}")
    config = ExperimentConfig.get_from_yaml()
    config.loggers = ["csv"]
    config.render = False
    if max_n_frames is not None:
        config.max_n_frames = max_n_frames
    if save_folder is not None:
        config.save_folder = save_folder
    for k, v in (experiment_overrides or {}).items():
        if not hasattr(config, k):
            raise ValueError(f"ExperimentConfig has no field {k!r}")
        setattr(config, k, v)
    task = TNTNTask[scenario.upper()].get_task(dict(overrides or {}))
    return Experiment(task=task, algorithm_config=algorithms[algorithm].get_from_yaml(),
                      model_config=MlpConfig.get_from_yaml(),
                      critic_model_config=MlpConfig.get_from_yaml(), seed=seed, config=config,
                      callbacks=callbacks)


def evaluate(exp, seed: int = 10_000, episodes: int = 8, deterministic: bool = True) -> dict:
    """Spectral efficiency of ``exp``'s policy over ``episodes`` full episodes, seeds
    ``seed..seed+episodes-1``: per episode the mean over its steps (as ``tntn_env.evaluate``),
    then their mean and standard deviation; also the repaired positions (0 in raise mode)."""
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    task = exp.task
    env = make_env(task._scenario(), dict(task.config), episodes, seed, exp.config.sampling_device)
    kind = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
    with torch.no_grad(), set_exploration_type(kind):
        td = env.rollout(task.max_steps(env), policy=exp.policy, auto_cast_to_device=True)
    se = td["next", "info", "spectral_efficiency"].mean(1)  # [episodes]
    return {"spectral_efficiency_mean": se.mean().item(),
            "spectral_efficiency_std": se.std(unbiased=False).item(),
            "spectral_efficiency_per_episode": se.tolist(),
            "throughput_mbps_mean": td["next", "info", "throughput_mbps"].mean().item(),
            "repaired_actions": int(td["next", "info", "repaired_actions"].sum().item()),
            "seeds": [seed, seed + episodes - 1], "episodes": episodes,
            "steps": int(td.shape[1]), "deterministic": deterministic}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m tntn_env.benchmarl", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algorithm", default="mappo", choices=["mappo", "ippo"])
    p.add_argument("--scenario", default="sag", choices=["sag", "ag", "uav"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=None, help="max_n_frames (env steps x envs)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override of the env (repeatable)")
    p.add_argument("--experiment", action="append", default=[], metavar="KEY=VALUE",
                   help="ExperimentConfig field, Python literal value (repeatable)")
    p.add_argument("--save-folder", default=None)
    p.add_argument("--eval-episodes", type=int, default=0,
                   help="after training: SE over this many episodes, seeds from --eval-seed")
    p.add_argument("--eval-seed", type=int, default=10_000)
    p.add_argument("--summary", default=None,
                   help="write the settings, wall time and evaluation here (JSON)")
    a = p.parse_args(argv)
    import ast
    import json
    import sys
    import time
    exp_over = {}
    for kv in a.experiment:
        k, _, v = kv.partition("=")
        try:
            exp_over[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            exp_over[k] = v
    exp = experiment(a.algorithm, a.scenario, a.seed, a.frames, parse_overrides(",".join(a.set)),
                     exp_over, a.save_folder)
    start = time.time()
    exp.run()
    summary = {"command": "python -m tntn_env.benchmarl " + " ".join(sys.argv[1:] if argv is None
                                                                     else argv),
               "algorithm": a.algorithm, "scenario": a.scenario, "seed": a.seed,
               "overrides": parse_overrides(",".join(a.set)), "experiment_overrides": exp_over,
               "frames": exp.total_frames, "train_wall_s": round(time.time() - start, 1),
               "torch_threads": torch.get_num_threads()}
    if a.eval_episodes:
        summary["evaluation"] = evaluate(exp, a.eval_seed, a.eval_episodes)
    print(json.dumps(summary, indent=1))
    if a.summary:
        with open(a.summary, "w") as f:
            json.dump(summary, f, indent=1)


__all__ = ["TNTNClass", "TNTNTask", "evaluate", "experiment", "main", "make_env"]

if __name__ == "__main__":
    main()
