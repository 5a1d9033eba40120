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
import ast
import copy
import csv
import functools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
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
    defaults apart from: CSV logging only, no rendering, checkpoints without the replay buffers
    (``exclude_buffer_from_checkpoint``), ``max_n_frames`` if given, and
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
    config.exclude_buffer_from_checkpoint = True  # on-policy: refilled every batch, ~1 GB
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


def evaluate(exp, seed: int = 10_000, episodes: int = 8, deterministic: bool = True,
             overrides: dict | None = None, out: str | Path | None = None,
             overwrite: bool = False, checkpoint: str | None = None) -> dict:
    """``exp``'s policy over ``episodes`` full episodes, seeds ``seed..seed+episodes-1`` (the
    episodes ``python -m tntn_env.evaluate`` runs for the same seeds), on the task's env with
    ``overrides`` on top (e.g. ``{"episode_steps": 50}``). Returns a summary in
    ``tntn_env.evaluate``'s format (per system metric the mean and population std over episodes
    of each episode's mean over its steps; decision time per env and step) plus the repaired
    positions (0 in raise mode); with ``out``, writes ``summary.json`` and ``episodes.csv``
    there (checked first; existing results refused unless ``overwrite``), so that
    ``benchmarks/learning_table.py`` reads it beside the other policies."""
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    from .core import SYSTEM_METRICS
    from .results import EPISODE_COLUMNS, machine_info, mean_std, prepare_out_dir

    if episodes < 1 or seed < 0:
        raise ValueError(f"episodes = {episodes}, seed = {seed}; need episodes >= 1, seed >= 0")
    task = exp.task
    env_overrides = {**dict(task.config), **dict(overrides or {})}
    if out is not None:
        out = Path(out)
        prepare_out_dir(out, overwrite)
    env = make_env(task._scenario(), env_overrides, episodes, seed, exp.config.sampling_device)
    steps = task.max_steps(env)
    times: list[float] = []

    def policy(td):
        t0 = time.perf_counter()
        td = exp.policy(td)
        times.append((time.perf_counter() - t0) / episodes)
        return td

    kind = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
    t_start = time.perf_counter()
    with torch.no_grad(), set_exploration_type(kind):
        td = env.rollout(steps, policy=policy, auto_cast_to_device=True)
    wall = time.perf_counter() - t_start
    info = td["next", "info"]  # [episodes, steps]
    per_ep = {k: info[k].double().mean(1).tolist() for k in SYSTEM_METRICS}
    reward_sum = info["reward"].double().sum(1).tolist()
    rows = [{"episode": i, "seed": seed + i, "steps": int(td.shape[1]),
             **{k: per_ep[k][i] for k in SYSTEM_METRICS}, "reward_sum": reward_sum[i],
             "decision_time_mean_s": sum(times) / len(times),
             "decision_time_max_s": max(times)} for i in range(episodes)]
    name = exp.algorithm_name
    summary = {
        "policy": f"benchmarl_{name}", "label": f"BenchMARL {name.upper()} (stock MLP)",
        "scenario": task._scenario(), "overrides": env_overrides, "seed": seed,
        "episodes": episodes, "seeds": list(range(seed, seed + episodes)),
        "episode_steps": int(td.shape[1]), "num_envs": episodes,
        "device": str(exp.config.sampling_device), "checkpoint": checkpoint,
        "sampled": not deterministic,
        "metrics": {k: mean_std(per_ep[k]) for k in SYSTEM_METRICS},
        "reward_sum": mean_std(reward_sum),
        "decision_time_s": {"mean": sum(times) / len(times), "max": max(times),
                            "note": "wall time of the policy per env (batch time / episodes)"},
        "repaired_actions": int(info["repaired_actions"].sum().item()),
        "wall_time_s": wall, "machine": machine_info(), "files": {"episodes": "episodes.csv"},
    }
    if out is not None:
        with open(out / "episodes.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=EPISODE_COLUMNS)
            w.writeheader()
            w.writerows(rows)
        with open(out / "summary.json", "w") as f:
            json.dump(summary, f, indent=2)
    return summary


def slim_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """A copy of BenchMARL checkpoint ``src`` without its replay buffers (an on-policy buffer
    is refilled every batch; it is most of the file), with the experiment's ``config.pkl``, in
    BenchMARL's layout: ``dst/checkpoints/<name>`` and ``dst/config.pkl``, so that
    ``Experiment.reload_from_file`` (or ``--restore``) reloads it."""
    src, dst = Path(src), Path(dst)
    state = torch.load(src, map_location="cpu", weights_only=False)
    for k in state:
        if k.startswith("buffer_"):
            state[k] = None
    (dst / "checkpoints").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src.parent.parent / "config.pkl", dst / "config.pkl")
    torch.save(state, dst / "checkpoints" / src.name)
    return dst / "checkpoints" / src.name


def _literal(items: list[str], flag: str) -> dict:
    """``KEY=VALUE`` items as a dict, values Python literals (lists stay lists, as
    ``ExperimentConfig`` wants them) or else strings; a repeated key is refused."""
    out = {}
    for kv in items:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise SystemExit(f"{flag} {kv!r}: expected KEY=VALUE")
        if k in out:
            raise SystemExit(f"{flag} {k}: given twice; give each key once")
        try:
            out[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k] = v
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m tntn_env.benchmarl", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algorithm", default=None, choices=["mappo", "ippo"],
                   help="default mappo")
    p.add_argument("--scenario", default=None, choices=["sag", "ag", "uav"], help="default sag")
    p.add_argument("--seed", type=int, default=None, help="default 0")
    p.add_argument("--frames", type=int, default=None, help="max_n_frames (env steps x envs)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override of the env (repeatable)")
    p.add_argument("--experiment", action="append", default=[], metavar="KEY=VALUE",
                   help="ExperimentConfig field, Python literal value (repeatable)")
    p.add_argument("--save-folder", default=None)
    p.add_argument("--restore", default=None, metavar="CHECKPOINT",
                   help="no training: reload this BenchMARL checkpoint (its config.pkl two "
                        "folders up) and evaluate it; task and training flags are refused")
    p.add_argument("--eval-episodes", type=int, default=0,
                   help="after training: evaluate over this many episodes, seeds from --eval-seed")
    p.add_argument("--eval-seed", type=int, default=10_000)
    p.add_argument("--eval-set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the evaluation only, e.g. episode_steps=50")
    p.add_argument("--eval-out", default=None,
                   help="write the evaluation (summary.json, episodes.csv) to this folder")
    p.add_argument("--overwrite", action="store_true", help="replace results in --eval-out")
    p.add_argument("--summary", default=None,
                   help="write the settings, wall time and evaluation here (JSON)")
    a = p.parse_args(argv)
    exp_over = _literal(a.experiment, "--experiment")
    eval_over = parse_overrides(",".join(a.eval_set))
    if a.eval_out is not None:
        from .results import prepare_out_dir
        try:
            prepare_out_dir(Path(a.eval_out), a.overwrite)  # before hours of training
        except ValueError as e:
            raise SystemExit(f"--eval-out: {e}") from None
    scratch = None
    if a.restore is not None:
        from benchmarl.experiment import Experiment

        if not a.eval_episodes:
            raise SystemExit("--restore evaluates a checkpoint: give --eval-episodes N")
        given = [f"--{k.replace('_', '-')}" for k in ("algorithm", "scenario", "seed", "frames",
                                                       "set", "experiment", "save_folder")
                 if getattr(a, k) not in (None, [])]
        if given:
            raise SystemExit(f"--restore takes the task, algorithm and settings from the "
                             f"checkpoint's config.pkl; drop {', '.join(given)} (--eval-set "
                             "changes the evaluation's environment)")
        scratch = tempfile.mkdtemp(prefix="tntn-benchmarl-")  # BenchMARL writes its folder here
        exp = Experiment.reload_from_file(a.restore, experiment_patch={
            "loggers": [], "create_json": False, "save_folder": scratch})
        start = time.time()
    else:
        exp = experiment(a.algorithm or "mappo", a.scenario or "sag", a.seed or 0, a.frames,
                         parse_overrides(",".join(a.set)), exp_over, a.save_folder)
        start = time.time()
        exp.run()
    summary = {"command": "python -m tntn_env.benchmarl " + " ".join(sys.argv[1:] if argv is None
                                                                     else argv),
               "algorithm": exp.algorithm_name, "scenario": exp.task._scenario(),
               "seed": exp.seed, "overrides": dict(exp.task.config),
               "experiment_overrides": exp_over, "restored": a.restore,
               "frames": exp.total_frames, "train_wall_s": None if a.restore
               else round(time.time() - start, 1), "torch_threads": torch.get_num_threads()}
    try:
        if a.eval_episodes:
            summary["evaluation"] = evaluate(exp, a.eval_seed, a.eval_episodes,
                                             overrides=eval_over, out=a.eval_out,
                                             overwrite=a.overwrite, checkpoint=a.restore)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(summary, indent=1))
    if a.summary:
        with open(a.summary, "w") as f:
            json.dump(summary, f, indent=1)


__all__ = ["TNTNClass", "TNTNTask", "evaluate", "experiment", "main", "make_env",
           "slim_checkpoint"]

if __name__ == "__main__":
    main()
