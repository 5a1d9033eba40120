"""Train one trainer over several seeds, evaluate every checkpoint on the same held-out seeds and
aggregate: mean and 95% confidence interval (Student t over the training seeds).

Usage::

    python -m tntn_env.experiments.seeds --algo hdrl --scenario sag --seeds 1-5 \\
        --total-timesteps 50000 --eval-episodes 8 --eval-seed 10000
    python -m tntn_env.experiments.seeds --algo mappo --seeds 1,2,3 --set episode_steps=100 \\
        -- --learning-rate 3e-4          # trainer flags after ``--`` are passed through

Seeds are trained ``--workers`` subprocesses at a time (default: one per seed, at most one per
CPU), each in ``<out>/seed_<s>/`` (its ``runs/`` and ``train.log`` there); a finished seed is
reused, not retrained, when the command is run again with the same settings. Each checkpoint is
evaluated with :func:`tntn_env.evaluate.run` on episodes with seeds ``eval_seed ..
eval_seed + eval_episodes - 1`` (identical for every training seed) into ``<out>/seed_<s>/eval/``.

Output (``--out``, default ``runs/seeds/<algo>__<scenario>/``):

- ``per_seed.csv``: one row per training seed: seed, the mean over evaluation episodes of each
  metric of :data:`tntn_env.core.SYSTEM_METRICS`, the mean decision time per step and env
  (``decision_time_s``), the training wall time (``train_wall_s``);
- ``summary.csv`` / ``summary.md``: per metric the mean over seeds, the half-width of its 95%
  confidence interval and the number of seeds (:func:`aggregate`, :func:`write_table`).

:func:`aggregate` and :func:`write_table` are the form every results table of the project uses
(mean +- 95% CI over seeds); the reproduction and ablation commands import them.
"""

import csv
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from ..cli import parse, split_passthrough
from ..config import SCENARIOS
from ..core import SYSTEM_METRICS
from ..evaluate import parse_sets
from .launch import ALGOS, TrainJob, evaluate, mean_ci95, train_all, trainer_file

PROG = "python -m tntn_env.experiments.seeds"

PER_SEED_EXTRA = ("decision_time_s", "train_wall_s")
SUMMARY_COLUMNS = ("metric", "mean", "ci95", "n")


# ---------------------------------------------------------------------------------------------
# aggregation and tables (shared by the other experiment commands)

def _number(x) -> float | None:
    """A finite float of a table cell, else None (missing, empty, NaN, not a number)."""
    if x is None or x == "":
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def aggregate(rows, metrics, by=()) -> list[dict]:
    """Mean and 95% CI half-width (:func:`launch.mean_ci95`) of each metric over ``rows``.

    ``rows``: dicts (e.g. one per seed; values may be strings as read from a CSV); ``metrics``:
    the keys to aggregate; ``by``: keys that group the rows (e.g. ``("policy",)``), kept in the
    output in order of first appearance. Returns one dict per (group, metric):
    ``{**group, "metric", "mean", "ci95", "n"}``; missing / empty / non-finite values are left
    out of their metric (``n`` counts what was used; NaN mean for none, NaN half-width for one).
    """
    by = tuple(by)
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in by), []).append(r)
    out = []
    for key, members in groups.items():
        for m in metrics:
            xs = [v for v in (_number(r.get(m)) for r in members) if v is not None]
            mean, ci = mean_ci95(xs)
            out.append({**dict(zip(by, key)), "metric": m, "mean": mean, "ci95": ci,
                        "n": len(xs)})
    return out


def format_mean_ci(mean, ci) -> str:
    """``mean ± ci`` rounded to the CI's second significant digit (``mean ± n/a`` without a CI)."""
    mean, ci = _number(mean), _number(ci)
    if mean is None:
        return "n/a"
    if ci is None:
        return f"{mean:.4g} ± n/a"
    if ci == 0:
        return f"{mean:.4g} ± 0"
    decimals = max(0, 1 - math.floor(math.log10(abs(ci))))
    return f"{mean:.{decimals}f} ± {ci:.{decimals}f}"


def write_table(rows, csv_path, md_path, title, notes: str = "") -> None:
    """Write result rows (e.g. from :func:`aggregate`) as CSV and as a Markdown table.

    The CSV keeps every column at full precision. In the Markdown table the ``mean`` and
    ``ci95`` columns become one ``mean ± 95% CI`` column; other columns are shown as they are
    (floats with 4 significant digits); ``notes`` (Markdown) go between the title and the
    table. Folders are created; files are replaced atomically (several writers are safe).
    """
    rows = [dict(r) for r in rows]
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    if csv_path is not None:
        csv_path = Path(csv_path)
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = csv_path.with_name(f".{csv_path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, csv_path)
    if md_path is None:
        return
    md_cols, merged = [], False
    for c in cols:
        if c in ("mean", "ci95") and "mean" in cols and "ci95" in cols:
            if not merged:
                md_cols.append("mean ± 95% CI")
                merged = True
            continue
        md_cols.append(c)

    def cell(r, c):
        if c == "mean ± 95% CI":
            return format_mean_ci(r.get("mean"), r.get("ci95"))
        v = r.get(c, "")
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    lines = [f"# {title}", ""] + ([notes.strip(), ""] if notes.strip() else [])
    lines += ["| " + " | ".join(md_cols) + " |",
             "|" + "|".join("---" for _ in md_cols) + "|"]
    lines += ["| " + " | ".join(cell(r, c) for c in md_cols) + " |" for r in rows]
    md_path = Path(md_path)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = md_path.with_name(f".{md_path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, md_path)


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------
# command line

def parse_seeds(text: str) -> list[int]:
    """``"1,2,3"``, ``"1-5"`` or a mix (``"1-3,7"``) -> sorted distinct seeds."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                seeds += range(lo, hi + 1)
            else:
                seeds.append(int(part))
        except ValueError:
            raise ValueError(f"--seeds {text!r}: expected seeds like 1,2,3 or 1-5 "
                             f"(bad part {part!r})") from None
    if not seeds or min(seeds) < 0:
        raise ValueError(f"--seeds {text!r}: expected one or more seeds >= 0")
    return sorted(set(seeds))


# trainer flags that TrainJob sets from the command's own options
RESERVED_FLAGS = {"--seed": "--seeds", "--scenario": "--scenario",
                  "--total-timesteps": "--total-timesteps", "--env-overrides": "--set",
                  "--threads": "--threads", "--save-model": None, "--no-save-model": None,
                  "--cuda": None, "--no-cuda": None, "--resume": None, "--eval-only": None}


def check_passthrough(flags, swept=()) -> None:
    """Refuse trainer flags (after ``--``) that the command sets itself or that a sweep varies
    (the later occurrence would silently win)."""
    swept_flags = {}
    for name in swept:
        for form in (name.replace("_", "-"), name):
            for f in (f"--{form}", f"--no-{form}"):
                swept_flags[f] = name
    for tok in flags:
        flag = str(tok).split("=", 1)[0]
        if flag.replace("_", "-") in RESERVED_FLAGS:
            own = RESERVED_FLAGS[flag.replace("_", "-")]
            raise ValueError(f"trainer flag {flag} after '--' is set by this command"
                             + (f"; use its {own} option" if own else ""))
        if flag in swept_flags:
            raise ValueError(f"trainer flag {flag} after '--' fixes {swept_flags[flag]!r}, "
                             "which the search space varies; drop one of them")


@dataclass
class Args:
    """Train a trainer over several seeds, evaluate each checkpoint on the same held-out
    episodes, aggregate mean and 95% CI. Trainer flags after '--'."""

    algo: Literal[ALGOS]
    """the trainer (trainers/hdrl_ppo.py, mappo.py, ppo_single.py)"""
    scenario: Literal[SCENARIOS] = "sag"
    """scenario of training and evaluation"""
    seeds: str = "1-5"
    """training seeds: 1,2,3 or 1-5"""
    total_timesteps: int = 50_000
    """env steps per training run"""
    workers: int | None = None
    """training subprocesses at a time (None: min(seeds, CPUs))"""
    set: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """config override KEY=VALUE (any field of make_config; training and evaluation)"""
    eval_episodes: int = 8
    """held-out evaluation episodes per checkpoint"""
    eval_seed: int = 10_000
    """first held-out evaluation seed (the same for every training seed)"""
    threads: int = 1
    """torch threads per process"""
    out: str | None = None
    """output folder (None: runs/seeds/<algo>__<scenario>)"""
    trainer_dir: str | None = None
    """folder of the trainer files (None: the repository's trainers/)"""


def parse_args(argv) -> Args:
    """The command's own arguments (before ``--``); exit code 2 on bad ones."""
    return parse(Args, argv, PROG, Args.__doc__)


def run(args, trainer_flags=(), log=print) -> dict:
    """Train, evaluate and aggregate as described by parsed ``args``; returns
    ``{"per_seed": rows, "summary": rows, "out": folder}``."""
    seeds = parse_seeds(args.seeds)
    check_passthrough(trainer_flags)
    trainer_file(args.algo, args.trainer_dir)  # early: FileNotFoundError naming --trainer-dir
    overrides = parse_sets(args.set)
    if args.total_timesteps < 1 or args.eval_episodes < 1 or args.eval_seed < 0:
        raise ValueError("--total-timesteps and --eval-episodes must be >= 1, --eval-seed >= 0")
    out = Path(args.out or Path("runs") / "seeds" / f"{args.algo}__{args.scenario}")
    workers = args.workers or min(len(seeds), os.cpu_count() or 1)
    jobs = [TrainJob(args.algo, args.scenario, s, args.total_timesteps, out / f"seed_{s}",
                     overrides=overrides, extra=list(trainer_flags), threads=args.threads,
                     trainer_dir=args.trainer_dir)
            for s in seeds]
    log(f"training {args.algo} on {args.scenario}: seeds {seeds}, {workers} at a time -> {out}")
    results = train_all(jobs, workers=workers, log=log)
    rows = []
    for res in results:
        s = res.job.seed
        summ = evaluate(args.algo, args.scenario, args.eval_seed, args.eval_episodes,
                        out / f"seed_{s}" / "eval", checkpoint=res.checkpoint,
                        overrides=overrides, threads=args.threads,
                        trainer_dir=args.trainer_dir)
        row = {"seed": s, **{m: summ["metrics"][m]["mean"] for m in SYSTEM_METRICS},
               "decision_time_s": summ["decision_time_s"]["mean"],
               "train_wall_s": res.wall_time_s}
        rows.append(row)
        log(f"seed {s}{' (reused)' if res.reused else ''}: "
            + ", ".join(f"{m} {row[m]:.4g}" for m in ("spectral_efficiency", "reward")))
    write_table(rows, out / "per_seed.csv", None, "")
    summary = aggregate(rows, (*SYSTEM_METRICS, *PER_SEED_EXTRA))
    title = (f"{args.algo} on {args.scenario}: {len(seeds)} seeds x {args.total_timesteps} "
             f"steps, {args.eval_episodes} held-out episodes from seed {args.eval_seed}")
    write_table(summary, out / "summary.csv", out / "summary.md", title)
    log(f"wrote {out / 'per_seed.csv'}, {out / 'summary.csv'}, {out / 'summary.md'}")
    return {"per_seed": rows, "summary": summary, "out": out}


def main(argv=None) -> int:
    own, trainer_flags = split_passthrough(sys.argv[1:] if argv is None else argv)
    args = parse_args(own)
    try:
        res = run(args, trainer_flags)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ValueError) else 1
    print((res["out"] / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
