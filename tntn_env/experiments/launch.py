"""Building blocks of the experiment commands: train a trainer file, evaluate a policy, read
TensorBoard scalars, aggregate over seeds.

Training runs the CleanRL-style trainer files as subprocesses (``python trainers/<file>.py``,
their own command line; the folder is the repository's ``trainers/`` or the command's
``--trainer-dir``, :func:`tntn_env.trainer_files.trainer_path`), each in a work folder of its
own so its ``runs/`` lands there; a finished run leaves ``train.json`` beside it and is reused,
not repeated, when asked again with the same arguments and the same code (the trainer file and
the ``tntn_env`` modules it steps, by SHA-256), so an interrupted reproduction resumes where it
stopped and an edited trainer or environment trains again. Evaluation is in-process through
:func:`tntn_env.evaluate.run` (the same CSV/JSON files as the CLI).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..evaluate import parse_args as parse_evaluation_args
from ..evaluate import run as run_evaluation
from ..trainer_files import TRAINER_FILES, trainer_path

ALGOS = tuple(TRAINER_FILES)  # ("hdrl", "mappo", "ppo_single")
# trainer flags of the tiny presets (with config.TINY_OVERRIDES): a few small PPO iterations
TINY_TRAINER_FLAGS = ("--num-envs", "4", "--num-steps", "20", "--update-epochs", "2")
BASELINES_DIR = Path(__file__).resolve().parents[1] / "baselines"


def trainer_file(algo: str, trainer_dir: str | Path | None = None) -> Path:
    """``<trainer_dir or trainers>/<file>.py`` of an algorithm name (``hdrl``, ``mappo``,
    ``ppo_single``; :func:`tntn_env.trainer_files.trainer_path`)."""
    if algo not in TRAINER_FILES:
        raise ValueError(f"algo {algo!r}: allowed values are {', '.join(ALGOS)}")
    return trainer_path(algo, trainer_dir)


def _digest(paths) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _env_modules() -> list[Path]:
    return sorted(Path(__file__).resolve().parents[1].glob("*.py"))


def code_digest(algo: str, trainer_dir: str | Path | None = None) -> str:
    """SHA-256 over the trainer file and the environment package's own modules (what a run's
    result depends on besides its command line)."""
    return _digest([trainer_file(algo, trainer_dir), *_env_modules()])


def eval_digest(policy: str, trainer_dir: str | Path | None = None) -> str:
    """SHA-256 over what an evaluation's result depends on besides its arguments: the
    environment modules, the baselines package and, for a learned policy, its trainer file."""
    files = [*_env_modules(), *sorted(BASELINES_DIR.glob("*.py"))]
    if policy in TRAINER_FILES:
        files.append(trainer_file(policy, trainer_dir))
    return _digest(files)


@dataclass
class TrainJob:
    """One training run: ``python trainers/<algo file> --seed S --scenario X ...``."""

    algo: str
    scenario: str
    seed: int
    total_timesteps: int
    workdir: Path
    overrides: dict = field(default_factory=dict)  # make_config overrides (--env-overrides)
    extra: list = field(default_factory=list)  # further trainer flags, e.g. ["--ent-coef", "0"]
    cuda: bool = False
    threads: int = 1
    trainer_dir: str | None = None  # folder of the trainer files (default: the repository's)

    def command(self) -> list[str]:
        cmd = [sys.executable, str(trainer_file(self.algo, self.trainer_dir)),
               "--seed", str(self.seed),
               "--scenario", self.scenario, "--total-timesteps", str(self.total_timesteps),
               "--save-model", "--threads", str(self.threads),
               "--cuda" if self.cuda else "--no-cuda"]
        if self.overrides:
            cmd += ["--env-overrides", json.dumps(self.overrides)]
        return cmd + [str(x) for x in self.extra]


@dataclass
class TrainResult:
    job: TrainJob
    run_dir: Path
    checkpoint: Path
    wall_time_s: float
    reused: bool


def train(job: TrainJob, log=None) -> TrainResult:
    """Run (or reuse) one training job; raises RuntimeError with the log tail if it fails."""
    wd = Path(job.workdir)
    marker = wd / "train.json"
    cmd = job.command()
    # not the interpreter's path
    key = {"command": cmd[1:], "code": code_digest(job.algo, job.trainer_dir)}
    if marker.exists():
        done = json.loads(marker.read_text())
        if done.get("key") == key and Path(done["checkpoint"]).exists():
            return TrainResult(job, Path(done["run_dir"]), Path(done["checkpoint"]),
                               done["wall_time_s"], True)
    wd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(job.threads), "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    with open(wd / "train.log", "w") as f:
        proc = subprocess.run(cmd, cwd=wd, stdout=f, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (wd / "train.log").read_text()[-3000:]
        raise RuntimeError(f"training failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    ckpts = sorted((wd / "runs").glob("*/checkpoint.pt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        raise RuntimeError(f"training wrote no checkpoint under {wd / 'runs'}")
    ck = ckpts[-1].resolve()
    marker.write_text(json.dumps({"key": key, "run_dir": str(ck.parent), "checkpoint": str(ck),
                                  "wall_time_s": wall}, indent=2))
    if log:
        extra = f" {json.dumps(job.overrides)}" if job.overrides else ""
        log(f"trained {job.algo} {job.scenario} seed {job.seed}{extra} in {wall:.0f} s")
    return TrainResult(job, ck.parent, ck, wall, False)


def train_all(jobs: list[TrainJob], workers: int = 1, log=None) -> list[TrainResult]:
    """Run jobs, ``workers`` subprocesses at a time (results in the order of ``jobs``)."""
    if workers <= 1:
        return [train(j, log) for j in jobs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda j: train(j, log), jobs))


def read_scalars(run_dir: Path, tags=None) -> dict[str, list[tuple[int, float]]]:
    """TensorBoard scalars of a run folder: {tag: [(step, value), ...]} (missing tag: []);
    ``tags=None``: every scalar tag the run logged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    have = set(acc.Tags().get("scalars", []))
    tags = sorted(have) if tags is None else tags
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] if t in have else [] for t in tags}


def evaluate(policy: str, scenario: str, seed: int, episodes: int, out_dir: Path,
             checkpoint: Path | None = None, overrides: dict | None = None,
             num_envs: int | None = None, subspace: str = "default", threads: int | None = None,
             device: str = "cpu", check: bool = True, sample: bool = False,
             other_env: bool = False, trainer_dir: str | Path | None = None) -> dict:
    """Evaluate one policy over episodes with seeds ``seed .. seed+episodes-1`` (all in one
    batch unless ``num_envs``); writes steps.csv / episodes.csv / summary.json to ``out_dir``
    and returns the summary. A summary already there with the same settings and code
    (:func:`eval_digest`) is reused.
    ``sample``: trained policies sample their actions (seeded with ``seed``) instead of argmax.
    ``other_env``: a checkpoint is evaluated on ``scenario`` / ``overrides`` that differ from its
    training environment (deliberately; else that is refused). ``trainer_dir``: folder of the
    trainer files (default: the repository's ``trainers/``). Results of an earlier run with
    other settings or code in ``out_dir`` are replaced."""
    argv = ["--policy", policy, "--scenario", scenario, "--seed", str(seed),
            "--episodes", str(episodes), "--num-envs", str(num_envs or episodes),
            "--out", str(out_dir), "--device", device, "--no-progress", "--subspace", subspace,
            "--overwrite"]
    if checkpoint is not None:
        argv += ["--checkpoint", str(checkpoint)]
    if threads:
        argv += ["--threads", str(threads)]
    if not check:
        argv.append("--no-check")
    if sample:
        argv.append("--sample")
    if other_env and checkpoint is not None:
        argv.append("--other-env")
    if trainer_dir is not None and checkpoint is not None:
        argv += ["--trainer-dir", str(trainer_dir)]
    for k, v in (overrides or {}).items():
        argv += ["--set", f"{k}={list(v) if isinstance(v, tuple) else v!r}"]
    prev = Path(out_dir) / "summary.json"
    code = eval_digest(policy, trainer_dir)
    if prev.exists():
        s = json.loads(prev.read_text())
        if s.get("argv") == argv and s.get("code") == code:
            s["out_dir"] = str(out_dir)
            return s
    summary = run_evaluation(parse_evaluation_args(argv))
    summary["argv"], summary["code"] = argv, code
    prev.write_text(json.dumps({k: v for k, v in summary.items() if k != "out_dir"}, indent=2))
    return summary


# Two-sided 95% Student-t critical values by degrees of freedom (beyond 30: normal, 1.96).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
        17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042}


def t95(dof: int) -> float:
    """Two-sided 95% Student-t critical value (a table; df between entries rounds down)."""
    if dof < 1:
        return math.nan
    if dof > 30:
        return 1.96
    return _T95[max(k for k in _T95 if k <= dof)]


def mean_ci95(xs) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (Student t over seeds; NaN
    half-width for a single value)."""
    xs = [float(x) for x in xs]
    if not xs:
        return math.nan, math.nan
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, math.nan
    return m, t95(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
