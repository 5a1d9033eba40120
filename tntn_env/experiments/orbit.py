"""The orbit experiment: HDRL trained with a static satellite vs with satellite passes, both
evaluated on passes, and the greedy baseline on both (docs/experiments.md, Orbit).

    python -m tntn_env.experiments.orbit --preset quick          # a few minutes on 2 CPU cores
    python -m tntn_env.experiments.orbit --preset quick --no-train   # the greedy part only
    python -m tntn_env.experiments.orbit --preset quick --dry-run    # list the jobs only

The satellite follows an SGP4-propagated pass (``OrbitConfig``, docs/model.md, Orbit): an
episode spans one pass culminating over the area in its middle. "Static" is the same orbit
frozen at its culmination (``orbit_static_step``), so both policies see the same observation
layout. Training runs the trainer file ``trainers/hdrl_ppo.py`` through
:mod:`tntn_env.experiments.launch` (reused when already trained with the same arguments and
code); evaluation runs in-process on held-out seeds, recording every step's system spectral
efficiency and the share of the carried rate served satellite-direct, against the satellite's
elevation. Writes ``steps.csv``, ``table.csv``, ``orbit.png`` and ``results.md`` to ``--out``
(default ``results/orbit/<preset>``).
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..config import make_config
from ..core import TNTNCore
from ..orbit import build_track
from ..topology import build_topology
from .launch import TrainJob, train_all

EVAL_SEED = 10_000
# a small network whose 40-step episode spans one pass above 10 deg (15 s steps: 600 s); the
# satellite decides every 4 steps and the HAPs every 2 (10 and 20 decisions per pass, the ratio
# of the default 500-step episode with Table 1's intervals)
SMALL = {"num_subbands": 4, "users_per_region": 3, "episode_steps": 40, "step_duration_s": 15.0,
         "satellite_interval": 4, "hap_interval": 2, "orbit_enabled": True}


@dataclass(frozen=True)
class Preset:
    name: str
    seeds: tuple  # training seeds
    total_timesteps: int
    eval_episodes: int
    overrides: dict = field(default_factory=dict)
    trainer_flags: tuple = ()


PRESETS = {
    "tiny": Preset("tiny", (1,), 160, 2, SMALL, ("--num-envs", "4", "--num-steps", "20",
                                                 "--update-epochs", "2")),
    "quick": Preset("quick", (1, 2), 65_536, 8, SMALL),
    "paper": Preset("paper", (1, 2, 3), 500_000, 8, {"orbit_enabled": True}),
}


@dataclass
class Args:
    """Orbit experiment: HDRL (static satellite vs passes) and greedy, evaluated on passes."""

    preset: Literal["tiny", "quick", "paper"] = "quick"
    """budgets: tiny (tests, seconds), quick (minutes on 2 CPUs), paper (the default network)"""
    out: str = ""
    """output folder (default results/orbit/<preset>)"""
    work: str = "runs/orbit/work"
    """training work folders (runs are reused when the arguments and code are unchanged)"""
    train: bool = True
    """train HDRL (--no-train: the greedy part only)"""
    workers: int = 1
    """training subprocesses at a time"""
    threads: int = 1
    """torch threads of this process and of each training run"""
    dry_run: bool = False
    """list the training jobs and exit"""


def conditions(preset: Preset) -> dict:
    """Training environments by name: the pass, and the orbit frozen at its culmination."""
    mid = make_config("sag", **preset.overrides).timing.episode_steps // 2
    return {"pass": dict(preset.overrides),
            "static": {**preset.overrides, "orbit_static_step": mid}}


def jobs(preset: Preset, work: Path, threads: int = 1) -> list[TrainJob]:
    return [TrainJob("hdrl", "sag", seed, preset.total_timesteps,
                     Path(work) / preset.name / name / f"seed_{seed}", overrides=ov,
                     extra=list(preset.trainer_flags), threads=threads)
            for name, ov in conditions(preset).items() for seed in preset.seeds]


def make_policy(kind: str, checkpoint: Path | None = None):
    """The greedy baseline or an HDRL checkpoint's argmax policy."""
    from ..baselines import CheckpointPolicy, GreedyPolicy

    return GreedyPolicy() if kind == "greedy" else CheckpointPolicy(checkpoint, name=kind)


def evaluate_on_pass(policy, overrides: dict, episodes: int) -> list[dict]:
    """Per-step rows of ``policy`` over ``episodes`` held-out episodes on ``overrides``'s env:
    elevation at the area (mean over regions), visibility, system spectral efficiency, reward,
    throughput and the satellite-direct share of the carried rate."""
    core = TNTNCore(make_config("sag", **overrides), num_envs=episodes)
    core.reset(seed=EVAL_SEED)
    policy.reset(core)
    sat_row = core.Xt + core.J
    rows = []
    with torch.inference_mode():
        for step in range(core.cfg.timing.episode_steps):
            out = core.step(policy.act(core))
            sc = core.last
            rate = sc.slot_rate.sum(-1)  # [E, J, N]
            total = rate.sum((1, 2))
            sat = torch.where(sc.holder >= sat_row, rate, 0.0).sum((1, 2))
            share = torch.where(total > 0, sat / total.clamp(min=1e-9), 0.0)
            el = float(core.orbit.elevation_deg[step].mean())
            vis = bool(core.orbit.visible_host[step])
            for e in range(episodes):
                rows.append({"episode": e, "step": step, "elevation_deg": round(el, 3),
                             "visible": int(vis),
                             "spectral_efficiency": float(
                                 out["metrics"]["spectral_efficiency"][e]),
                             "throughput_mbps": float(out["metrics"]["throughput_mbps"][e]),
                             "reward": float(out["metrics"]["reward"][e]),
                             "sat_share": float(share[e])})
    return rows


def served_share(overrides: dict) -> float:
    """Share of an episode's steps in which the satellite is at or above the minimum."""
    cfg = make_config("sag", **overrides)
    topo = build_topology(cfg, torch.device("cpu"))
    ll = topo.region_latlon_deg.numpy()
    tr = build_track(cfg, ll[:, 0], ll[:, 1], topo.region_beam.numpy(), "cpu")
    S = cfg.timing.episode_steps
    return sum(tr.visible_host[:S]) / S


def figure(rows_by: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for label, rows in rows_by.items():
        steps = sorted({r["step"] for r in rows})
        se = [statistics.fmean(r["spectral_efficiency"] for r in rows if r["step"] == s)
              for s in steps]
        sh = [statistics.fmean(r["sat_share"] for r in rows if r["step"] == s) for s in steps]
        el = [next(r["elevation_deg"] for r in rows if r["step"] == s) for s in steps]
        mid = int(np.argmax(el))
        for ax, y in ((axes[1], se), (axes[2], sh)):
            line, = ax.plot(el[:mid + 1], y[:mid + 1], "-", label=f"{label} (rising)")
            ax.plot(el[mid:], y[mid:], "--", color=line.get_color(), label=f"{label} (setting)")
        if label == next(iter(rows_by)):
            axes[0].plot(steps, el, "k-")
    axes[0].set(xlabel="step", ylabel="elevation (deg)", title="the pass")
    axes[1].set(xlabel="elevation (deg)", ylabel="system spectral efficiency (bit/s/Hz)",
                title="spectral efficiency over the pass")
    axes[2].set(xlabel="elevation (deg)", ylabel="satellite-direct share of the rate",
                title="satellite-served share")
    axes[2].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _summary(rows: list[dict]) -> dict:
    def mean(key, pred=lambda r: True):
        xs = [r[key] for r in rows if pred(r)]
        return statistics.fmean(xs) if xs else float("nan")

    return {"se": mean("spectral_efficiency"), "sat_share": mean("sat_share"),
            "reward": mean("reward"), "throughput_mbps": mean("throughput_mbps"),
            "se_high": mean("spectral_efficiency", lambda r: r["elevation_deg"] >= 45),
            "se_low": mean("spectral_efficiency", lambda r: r["elevation_deg"] < 45)}


def run(args: Args) -> dict:
    preset = PRESETS[args.preset]
    out = Path(args.out or f"results/orbit/{preset.name}")
    torch.set_num_threads(args.threads)
    todo = jobs(preset, Path(args.work), args.threads) if args.train else []
    if args.dry_run:
        for j in todo:
            print(" ".join(j.command()[1:]))
        return {}
    out.mkdir(parents=True, exist_ok=True)
    t0, load0 = time.perf_counter(), os.getloadavg()
    trained = train_all(todo, workers=args.workers, log=print)
    cond = conditions(preset)
    policies = {}  # label -> (policy factory, evaluation overrides)
    for name in cond:  # greedy on both: on the pass, and on the static satellite
        policies[f"greedy ({name})"] = (lambda: make_policy("greedy"), cond[name])
    for res in trained:
        name = "pass" if res.job.overrides == cond["pass"] else "static"
        policies[f"hdrl trained {name} s{res.job.seed}"] = (
            lambda ck=res.checkpoint: make_policy("hdrl", ck), cond["pass"])
    rows_by, table = {}, []
    for label, (mk, ov) in policies.items():
        rows = evaluate_on_pass(mk(), ov, preset.eval_episodes)
        rows_by[label] = rows
        table.append({"policy": label, "evaluated_on": "static" if "orbit_static_step" in ov
                      else "pass", **_summary(rows)})
    # HDRL per training condition, pooled over seeds
    for name in cond:
        pooled = [r for k, rows in rows_by.items() if k.startswith(f"hdrl trained {name}")
                  for r in rows]
        if pooled:
            rows_by[f"hdrl trained {name}"] = pooled
            table.append({"policy": f"hdrl trained {name} (all seeds)", "evaluated_on": "pass",
                          **_summary(pooled)})
    with open(out / "steps.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["policy", *next(iter(rows_by.values()))[0]])
        w.writeheader()
        for label, rows in rows_by.items():
            if " s" in label.split("trained")[-1]:
                continue  # per-seed rows are pooled below their condition
            w.writerows({"policy": label, **r} for r in rows)
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    fig_rows = {k: v for k, v in rows_by.items()
                if k.startswith("greedy") or k in ("hdrl trained pass", "hdrl trained static")}
    fig_rows = {k: v for k, v in fig_rows.items() if k != "greedy (static)"}
    figure(fig_rows, out / "orbit.png")
    shares = {f"{el:g} deg": served_share({"orbit_enabled": True,
                                          "orbit_min_elevation_deg": el}) for el in (10.0, 30.0)}
    shares_preset = served_share(preset.overrides)
    meta = {"preset": preset.name, "seeds": list(preset.seeds),
            "total_timesteps": preset.total_timesteps, "eval_episodes": preset.eval_episodes,
            "overrides": preset.overrides, "trained": bool(todo),
            "train_wall_s": [round(r.wall_time_s, 1) for r in trained],
            "served_share_default_episode": shares, "served_share_preset": shares_preset,
            "wall_s": round(time.perf_counter() - t0, 1), "load_average_start": load0,
            "load_average_end": os.getloadavg()}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    write_markdown(out / "results.md", table, meta)
    return {"table": table, "meta": meta}


def write_markdown(path: Path, table: list[dict], meta: dict) -> None:
    lines = [f"# Orbit experiment, {meta['preset']} preset", "",
             "HDRL trained with a static satellite (the orbit frozen at its culmination) and "
             "with satellite passes, both evaluated on passes (held-out seeds "
             f"{EVAL_SEED}..{EVAL_SEED + meta['eval_episodes'] - 1}); the greedy baseline on "
             "the pass and on the static satellite. Command: `python -m "
             f"tntn_env.experiments.orbit --preset {meta['preset']}`.", "",
             "| policy | evaluated on | SE (bit/s/Hz) | SE at >= 45 deg | SE below 45 deg | "
             "satellite-direct share | reward | throughput (Mbit/s) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['policy']} | {r['evaluated_on']} | {r['se']:.3f} | "
                     f"{r['se_high']:.3f} | {r['se_low']:.3f} | {r['sat_share']:.3f} | "
                     f"{r['reward']:.3f} | {r['throughput_mbps']:.2f} |")
    sh = meta["served_share_default_episode"]
    lines += ["", "![SE and satellite-served share against elevation](orbit.png)", "",
              "Served share of an episode (steps with the satellite at or above the minimum "
              "elevation everywhere, one satellite, the default synthetic pass culminating "
              "mid-episode): default episode (500 steps of 1 s): "
              + ", ".join(f"{v:.1%} at a {k} minimum" for k, v in sh.items())
              + f"; this preset's episode: {meta['served_share_preset']:.1%}.", "",
              "## Settings", "",
              f"- config overrides: `{json.dumps(meta['overrides'])}`",
              "- training: " + (f"HDRL (trainers/hdrl_ppo.py), seeds {meta['seeds']}, "
                                f"{meta['total_timesteps']:,} env steps per run, wall times "
                                f"{meta['train_wall_s']} s" if meta["trained"]
                                else "none (greedy part only)"),
              "- HDRL acts by its masked argmax; greedy's satellite choices are kept within the "
              "satellite's mask (off where out of view)",
              f"- wall time {meta['wall_s']} s; load average at start "
              f"{[round(x, 2) for x in meta['load_average_start']]}, at end "
              f"{[round(x, 2) for x in meta['load_average_end']]} (2-core CPU shared with other "
              "runs)", ""]
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    import tyro

    args = tyro.cli(Args, args=argv)
    res = run(args)
    for r in res.get("table", []):
        print(f"{r['policy']:<36} {r['evaluated_on']:<7} SE {r['se']:.3f}  "
              f"sat share {r['sat_share']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["Args", "PRESETS", "run", "evaluate_on_pass", "served_share"]
