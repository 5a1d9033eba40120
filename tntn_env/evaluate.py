"""Evaluate a policy over full episodes and write per-step and per-episode results.

Usage::

    python -m tntn_env.evaluate --policy greedy --scenario sag --episodes 4 --seed 0
    python -m tntn_env.evaluate --policy exhaustive --subspace hap:blocks+schedule:rules \\
        --episodes 1 --seed 0
    python -m tntn_env.evaluate --policy hdrl --checkpoint runs/hdrl/model.pt --episodes 4
    python -m tntn_env.evaluate --policy random --set num_subbands=4 --set episode_steps=50

Episodes use seeds S..S+N-1 (``--seed S --episodes N``); episode i is env ``i % num_envs`` of a
batch reset with those seeds, so every policy sees the same seeds. The core's randomness is
counter-based, so channel, mobility and demand realisations of a seed depend on the actions only
through the state they lead to (UAV positions; large-scale gains of UAV links).

Output folder (``--out``, default ``runs/eval/<policy>__<scenario>__<seed>/``, for a checkpoint
``runs/eval/<policy>__<scenario>__<seed>__<run folder>-<first 8 hex digits of the checkpoint's
SHA-256>[__sampled]/``, so two checkpoints never share one). It is checked before the evaluation
runs: a folder that cannot be written, or an output file that is a folder, is refused, and a
folder that already holds results is refused unless ``--overwrite``:

- ``steps.csv``: one row per (episode, step) with the columns of :data:`STEP_COLUMNS`: the
  system metrics of the step (``core.step``'s ``metrics``, in the order of
  :data:`tntn_env.core.SYSTEM_METRICS`: mean user throughput in Mbit/s, sum rate in Mbit/s,
  spectral efficiency in bit/s/Hz over W, Jain fairness, normalised QoS violation, UAV penalty,
  spectrum utilisation, reward = mean of the regions' eq. (11)) and the
  decision time (wall time of ``policy.act`` for the batch, divided by the number of envs in it);
- ``episodes.csv``: one row per episode: seed, steps, the per-step means of each metric, the sum
  of rewards, mean and max decision time;
- ``summary.json``: the run's settings (policy and its label, scenario, overrides, seeds, device,
  threads, machine), means and standard deviations over episodes, decision-time statistics, and
  for the exhaustive search the mean numbers of joint actions covered and candidates evaluated.

``hdrl``/``mappo``/``ppo_single`` load ``--checkpoint`` with ``trainers/hdrl_ppo.py``,
``trainers/mappo.py``, ``trainers/ppo_single.py`` (their ``load_policy(path, core)``; the folder
is the repository's ``trainers/`` or ``--trainer-dir``, one file ``--trainer-file``:
:func:`tntn_env.trainer_files.trainer_path`) and act by the masked argmax, or with ``--sample``
by sampling from the policy as in training (torch's generator seeded with ``--policy-seed``,
default ``--seed``).
A checkpoint is evaluated on the environment it was trained on: its scenario and
``--env-overrides``, on top of which ``--set`` applies. A ``--scenario`` or ``--set`` that makes
a different environment is refused unless ``--other-env`` is given (and a policy whose networks do
not fit the other environment is refused with the reason).
The core checks every action against its masks (the observed mask, or
the mask after this step's upper-tier actions for top-down policies) and raises on an infeasible
one; ``--no-check`` skips the check.
"""

import ast
import csv
import dataclasses
import hashlib
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import torch
import tyro

from .cli import parse
from .config import SCENARIOS, make_config, parse_overrides
from .core import SYSTEM_METRICS, TNTNCore
from .results import (
    EPISODE_COLUMNS,
    STEP_COLUMNS,
    machine_info,
    mean_std,
    prepare_out_dir,
)
from .trainer_files import TRAINER_FILES, trainer_path

PROG = "python -m tntn_env.evaluate"
POLICIES = ("hdrl", "mappo", "ppo_single", "exhaustive", "random", "greedy")
CHECKPOINT_TRAINERS = TRAINER_FILES  # the learned policies and their trainer files


def parse_value(text: str):
    """A ``--set`` value: a Python literal (int, float, tuple, bool), else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        v = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return tuple(v) if isinstance(v, list) else v


def parse_sets(items) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--set {item!r}: expected key=value")
        k, v = item.split("=", 1)
        if k.strip() in out:
            raise SystemExit(f"--set {k.strip()}: given twice; give each key once")
        out[k.strip()] = parse_value(v)
    return out


@dataclass
class Args:
    """Evaluate a policy over full episodes."""

    policy: Literal[POLICIES]
    """the policy: a trained checkpoint (hdrl, mappo, ppo_single) or a baseline"""
    checkpoint: str | None = None
    """checkpoint path (hdrl, mappo, ppo_single)"""
    trainer_file: str | None = None
    """trainer file providing load_policy (default: <trainer-dir>/<the algorithm's file>)"""
    trainer_dir: str | None = None
    """folder of the trainer files (default: the repository's trainers/)"""
    scenario: Literal[SCENARIOS] | None = None
    """default: the checkpoint's scenario (a checkpoint policy), else sag"""
    episodes: int = 1
    """episodes (seeds seed .. seed + episodes - 1)"""
    seed: int = 0
    """seed of the first episode"""
    out: str | None = None
    """output folder (default runs/eval/<policy>__<scenario>__<seed>[__<checkpoint>])"""
    overwrite: bool = False
    """replace results already in the output folder (default: refuse)"""
    other_env: bool = False
    """evaluate a checkpoint on an environment other than the one it was trained on"""
    num_envs: int = 1
    """episodes stepped together"""
    set: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """config override KEY=VALUE (any field of make_config), repeatable"""
    device: str = "cpu"
    """torch device"""
    threads: int | None = None
    """torch.set_num_threads"""
    policy_seed: int | None = None
    """seed of the random policy's generator and of --sample (default: --seed)"""
    sample: bool = False
    """hdrl, mappo, ppo_single: sample actions as in training (default: the masked argmax)"""
    subspace: str = "full"
    """exhaustive: 'full', 'default' (tntn_env.baselines.DEFAULT_SUBSPACE) or a sub-space spec"""
    max_candidates: int = 200_000
    """exhaustive: refuse above this many evaluations per decision"""
    no_check: bool = False
    """skip the feasibility check"""
    no_progress: bool = False
    """no tqdm progress bar"""


def parse_args(argv=None) -> Args:
    """The evaluation's arguments from a command line (exit code 2 on bad arguments)."""
    return parse(Args, argv, PROG, Args.__doc__)


def make_policy(args):
    """The policy named by ``args`` (baselines imported here, never at package import)."""
    from . import baselines

    seed = args.seed if args.policy_seed is None else args.policy_seed
    if args.policy in CHECKPOINT_TRAINERS:
        if not args.checkpoint:
            raise SystemExit(f"--policy {args.policy} needs --checkpoint PATH")
        trainer = args.trainer_file or trainer_path(args.policy, args.trainer_dir)
        return baselines.CheckpointPolicy(args.checkpoint, trainer, name=args.policy,
                                          sample=args.sample, seed=seed)
    if args.sample:
        allowed = ", ".join(CHECKPOINT_TRAINERS)
        raise SystemExit(f"--sample applies to the trained policies ({allowed}), not to --policy "
                         f"{args.policy}")
    if args.policy == "random":
        return baselines.RandomPolicy(seed=seed)
    if args.policy == "greedy":
        return baselines.GreedyPolicy()
    sub = baselines.DEFAULT_SUBSPACE if args.subspace == "default" else args.subspace
    return baselines.ExhaustivePolicy(subspace=sub, max_candidates=args.max_candidates)


def checkpoint_env(path) -> tuple[str, dict]:
    """(scenario, make_config overrides) a trainer checkpoint was trained on."""
    if not Path(path).is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        a = ck["args"]
        return a.get("scenario", "sag"), parse_overrides(a.get("env_overrides", ""))
    except Exception as e:
        raise ValueError(f"{str(path)!r} is not a readable trainer checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None


def _config_diff(a, b, prefix="") -> list[str]:
    """Fields where two configs differ, 'name: a -> b' (memory_limit_gib ignored)."""
    out = []
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(x):
            out += _config_diff(x, y)
        elif x != y and f.name != "memory_limit_gib":
            out.append(f"{f.name}: {x!r} -> {y!r}")
    return out


def environment(args) -> tuple[str, dict, dict | None]:
    """(scenario, overrides, the checkpoint's environment or None) of an evaluation: a
    checkpoint's own scenario and overrides unless ``--scenario`` / ``--set`` change them, which
    needs ``--other-env``."""
    sets = parse_sets(args.set)
    if not (args.policy in CHECKPOINT_TRAINERS and args.checkpoint):
        if args.other_env:
            raise SystemExit("--other-env applies to checkpoints (--policy "
                             f"{'/'.join(CHECKPOINT_TRAINERS)} --checkpoint PATH)")
        return args.scenario or "sag", sets, None
    ck_scenario, ck_over = checkpoint_env(args.checkpoint)
    scenario, overrides = args.scenario or ck_scenario, {**ck_over, **sets}
    diff = _config_diff(make_config(ck_scenario, **ck_over), make_config(scenario, **overrides))
    if diff and not args.other_env:
        raise ValueError(
            f"checkpoint {args.checkpoint} was trained on scenario {ck_scenario!r} with overrides "
            f"{ck_over or '{}'}; --scenario/--set would evaluate it elsewhere ({'; '.join(diff)}). "
            "Drop them to evaluate on its own environment, or pass --other-env")
    return scenario, overrides, {"scenario": ck_scenario, "overrides": ck_over}


def default_out_dir(args, scenario: str) -> Path:
    """runs/eval/<policy>__<scenario>__<seed>, for a checkpoint with its run folder and content
    hash (and __sampled), so that two checkpoints never share a folder."""
    name = f"{args.policy}__{scenario}__{args.seed}"
    if args.policy in CHECKPOINT_TRAINERS and args.checkpoint:
        ck = Path(args.checkpoint)
        digest = hashlib.sha256(ck.read_bytes()).hexdigest()[:8]
        name += f"__{ck.resolve().parent.name}-{digest}" + ("__sampled" if args.sample else "")
    return Path("runs") / "eval" / name


def run(args) -> dict:
    """Run the evaluation described by parsed ``args``; returns the summary dict."""
    if args.episodes < 1 or args.num_envs < 1 or args.seed < 0:
        raise SystemExit("--episodes and --num-envs must be >= 1 and --seed >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.policy in CHECKPOINT_TRAINERS and not args.trainer_file:
        trainer_path(args.policy, args.trainer_dir)  # early: FileNotFoundError naming the flag
    scenario, overrides, ck_env = environment(args)
    cfg = make_config(scenario, **overrides)
    policy = make_policy(args)
    out_dir = Path(args.out) if args.out else default_out_dir(args, scenario)
    prepare_out_dir(out_dir, args.overwrite)
    steps_n = cfg.timing.episode_steps
    seeds = list(range(args.seed, args.seed + args.episodes))
    machine = machine_info()
    step_rows, episode_rows, extra = [], [], {"covered": [], "evaluated": []}
    bar = None
    if not args.no_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=args.episodes * steps_n, desc=f"{policy.name}", unit="step",
                   file=sys.stderr)
    t_start = time.perf_counter()
    core = None
    for b0 in range(0, len(seeds), args.num_envs):
        batch = seeds[b0:b0 + args.num_envs]
        E = len(batch)
        if core is None or core.num_envs != E:
            core = TNTNCore(cfg, num_envs=E, device=args.device,
                            check_actions=not args.no_check)
        core.reset(seed=batch)
        policy.reset(core)
        per_ep = [[] for _ in range(E)]
        for step in range(steps_n):
            t0 = time.perf_counter()
            actions = policy.act(core)
            dt = (time.perf_counter() - t0) / E
            out = core.step(actions)  # validates actions unless --no-check
            m = {k: out["metrics"][k].detach().cpu().tolist() for k in SYSTEM_METRICS}
            for e in range(E):
                row = {"episode": b0 + e, "step": step, **{k: m[k][e] for k in SYSTEM_METRICS},
                       "decision_time_s": dt}
                step_rows.append(row)
                per_ep[e].append(row)
            for k in extra:
                if k in policy.info:
                    extra[k].extend(policy.info[k])
            if bar is not None:
                bar.update(E)
        for e in range(E):
            rows = per_ep[e]
            ep = {"episode": b0 + e, "seed": batch[e], "steps": len(rows)}
            for k in SYSTEM_METRICS:
                ep[k] = statistics.fmean(r[k] for r in rows)
            ep["reward_sum"] = sum(r["reward"] for r in rows)
            ep["decision_time_mean_s"] = statistics.fmean(r["decision_time_s"] for r in rows)
            ep["decision_time_max_s"] = max(r["decision_time_s"] for r in rows)
            episode_rows.append(ep)
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t_start
    with open(out_dir / "steps.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=STEP_COLUMNS)
        w.writeheader()
        w.writerows(step_rows)
    with open(out_dir / "episodes.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=EPISODE_COLUMNS)
        w.writeheader()
        w.writerows(episode_rows)
    times = [r["decision_time_s"] for r in step_rows]
    summary = {
        "policy": args.policy, "label": policy.name, "scenario": scenario,
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "seed": args.seed, "episodes": args.episodes, "seeds": seeds,
        "episode_steps": steps_n, "num_envs": args.num_envs, "device": args.device,
        "checkpoint": args.checkpoint, "checkpoint_env": ck_env,
        "sampled": bool(args.sample),
        "subspace": getattr(policy, "subspace", None),
        "metrics": {k: mean_std(ep[k] for ep in episode_rows) for k in SYSTEM_METRICS},
        "reward_sum": mean_std(ep["reward_sum"] for ep in episode_rows),
        "decision_time_s": {"mean": statistics.fmean(times), "median": statistics.median(times),
                            "max": max(times), "note": "wall time of act() per env (batch "
                            "time / num_envs)"},
        "wall_time_s": wall, "machine": machine,
        "files": {"steps": "steps.csv", "episodes": "episodes.csv"},
    }
    if extra["covered"]:
        summary["exhaustive"] = {"covered_mean": statistics.fmean(extra["covered"]),
                                 "covered_max": max(extra["covered"]),
                                 "evaluated_mean": statistics.fmean(extra["evaluated"]),
                                 "evaluated_max": max(extra["evaluated"])}
    with open(out_dir / "summary.json", "w") as f:
        json.dump(summary, f, indent=2)
    summary["out_dir"] = str(out_dir)
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        summary = run(args)
    except (ValueError, FileNotFoundError) as e:  # config errors, refusals, missing files
        print(f"error: {e}", file=sys.stderr)
        return 2
    m = summary["metrics"]
    print(f"{summary['label']} on {summary['scenario']}: reward {m['reward']['mean']:.4f}, "
          f"SE {m['spectral_efficiency']['mean']:.3f} bit/s/Hz, throughput "
          f"{m['throughput_mbps']['mean']:.3f} Mbit/s, decision "
          f"{summary['decision_time_s']['mean'] * 1e3:.2f} ms -> {summary['out_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
