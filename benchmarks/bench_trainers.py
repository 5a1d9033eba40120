"""End-to-end training speed of the trainer files (a measurement, not a test).

Runs each trainer as its own command line (``python trainers/<name>.py --seed 1 ...``, defaults
unless ``--extra`` adds flags) in a scratch folder, then reads its TensorBoard scalars:

- SPS: ``charts/SPS`` of the last iteration (env steps per second since start, update included,
  as the trainer's progress bar shows it), and the wall time of the whole command;
- the update epochs actually run per learner (``losses/epochs*``): mean over the iterations and
  the share of iterations that ran all of them (the ``target_kl`` stop can end them early);
- ``env/spectral_efficiency`` of the last iteration (sampled policy, training envs).

    python benchmarks/bench_trainers.py                       # the three, 50k steps each
    python benchmarks/bench_trainers.py --trainers hdrl_ppo --total-timesteps 500000  # paper budget
    python benchmarks/bench_trainers.py --trainers hdrl_ppo --extra "--target-kl None"  # all epochs
    python benchmarks/bench_trainers.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tyro

from tntn_env.experiments.launch import read_scalars
from tntn_env.trainer_files import load_module, trainer_path

ROOT = Path(__file__).resolve().parents[1]
TRAINERS = ("hdrl_ppo", "mappo", "ppo_single")


def bench(name: str, total_timesteps: int, extra: list[str], threads: int | None,
          keep: Path | None = None) -> dict:
    cmd = [sys.executable, str(trainer_path(name)), "--seed", "1", "--no-cuda",
           "--total-timesteps", str(total_timesteps), *extra]
    if threads:
        cmd += ["--threads", str(threads)]
    if keep:
        cmd += ["--save-model"]
    with tempfile.TemporaryDirectory(prefix="bench_trainers_") as tmp:
        wd = keep / name if keep else Path(tmp)
        wd.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=wd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
        run_dir = max((wd / "runs").iterdir(), key=lambda d: d.stat().st_mtime)
        sc = read_scalars(run_dir)
    sps = sc["charts/SPS"]
    cap = tyro.cli(load_module(trainer_path(name)).Args, args=extra).update_epochs
    epochs = {}
    for tag, vals in sc.items():
        if tag.startswith("losses/epochs"):
            learner = tag[len("losses/epochs"):].lstrip("_") or "agent"
            ev = [v for _, v in vals]
            epochs[learner] = {"mean": sum(ev) / len(ev), "update_epochs": cap,
                               "updates": len(ev), "share_all": sum(e == cap for e in ev) / len(ev)}
    se = sc.get("env/spectral_efficiency", [])
    shown = [str(Path(cmd[1]).relative_to(ROOT)), *cmd[2:]]
    return {"trainer": name, "command": "python " + shlex.join(shown),
            "run_dir": str(run_dir) if keep else None, "global_step": sps[-1][0],
            "sps": sps[-1][1], "wall_s": wall, "epochs": epochs,
            "spectral_efficiency": se[-1][1] if se else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trainers", nargs="+", default=list(TRAINERS), choices=TRAINERS)
    p.add_argument("--total-timesteps", type=int, default=50_000)
    p.add_argument("--extra", default="", help="further trainer flags, one shell-quoted string")
    p.add_argument("--threads", type=int, default=None,
                   help="--threads for the trainers (default: their own default)")
    p.add_argument("--keep", type=Path, default=None,
                   help="train in KEEP/<trainer>/ and save the checkpoint (default: a temp folder)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows = [bench(n, args.total_timesteps, shlex.split(args.extra), args.threads, args.keep)
            for n in args.trainers]
    out = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "python": platform.python_version()}, "runs": rows}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{platform.platform()}, {os.cpu_count()} CPUs")
    print("| trainer | command | SPS | wall | update epochs run: mean of max (share of updates "
          "running all) | SE |")
    print("|---|---|---:|---:|---|---:|")
    for r in rows:
        ep = "; ".join(f"{k} {v['mean']:.1f} of {v['update_epochs']} ({v['share_all']:.0%})"
                       for k, v in r["epochs"].items())
        se = "" if r["spectral_efficiency"] is None else f"{r['spectral_efficiency']:.3f}"
        print(f"| {r['trainer']} | `{r['command']}` | {r['sps']:,.0f} | {r['wall_s']:.0f} s "
              f"| {ep} | {se} |")


if __name__ == "__main__":
    main()
