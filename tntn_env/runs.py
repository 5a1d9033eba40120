"""What the trainers (``trainers/*.py``) share besides the algorithm: checking ``Args`` before a
run starts, saving and loading checkpoints (with clear errors), resuming a run (which arguments
may change, TensorBoard without duplicate steps), the run folder and its TensorBoard writer, the
env metrics logged each iteration, evaluating a checkpoint (``--eval-only``) and stopping on
non-finite losses (docs/reliability.md). The torchrun pieces are in :mod:`tntn_env.distributed`.

Every check raises ``SystemExit("error: ...")`` (exit status 1, the message on stderr) or, for
checkpoints read by ``load_policy``, :class:`CheckpointError` (a ``ValueError``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
import typing
from pathlib import Path

import numpy as np
import torch

from .config import make_config, parse_overrides
from .core import SYSTEM_METRICS
from .distributed import NoLog, broadcast_object, rank_mean

# Args fields by allowed range (a field a trainer does not have is skipped).
AT_LEAST_ONE = ("total_timesteps", "num_envs", "num_steps", "minibatch_size", "num_minibatches",
                "update_epochs", "local_update_epochs", "hidden_size", "critic_hidden_size",
                "save_interval", "eval_episodes")
AT_LEAST_ZERO = ("seed", "eval_seed", "threads")
# name: (low, high, low excluded)
NUMBERS = {"learning_rate": (0.0, math.inf, True), "gamma": (0.0, 1.0, False),
           "gae_lambda": (0.0, 1.0, False), "clip_coef": (0.0, math.inf, True),
           "ent_coef": (0.0, math.inf, False), "vf_coef": (0.0, math.inf, False),
           "max_grad_norm": (0.0, math.inf, True), "target_kl": (0.0, math.inf, True),
           "huber_delta": (0.0, math.inf, True)}
# What a resumed run may change; every other argument is the checkpoint's.
RESUMABLE = ("total_timesteps", "save_model", "save_interval", "cuda", "threads")
# What an evaluation (--eval-only) uses of the command line.
EVAL_FIELDS = ("eval_episodes", "eval_seed", "threads", "cuda")
# Losses that may legitimately be NaN (explained variance of constant returns).
MAY_BE_NAN = ("explained_variance",)


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, another trainer's, or does not fit."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def args_problems(args, world: int = 1, ck: dict | None = None) -> list[str]:
    """Every problem of a trainer's ``Args`` (empty: valid): ranges, finiteness, the batch, the
    torchrun world size, the environment overrides and, when resuming from ``ck``, the budget.
    A command line with ``--eval-only`` or ``--resume`` (and no ``ck`` yet) is checked only in
    the fields it uses: the evaluation's, or those a resumed run takes from the command line."""
    out = []
    scope = None  # every field
    if ck is None and getattr(args, "eval_only", None):
        scope = EVAL_FIELDS
    elif ck is None and getattr(args, "resume", None):
        scope = RESUMABLE
    for f in dataclasses.fields(args):
        v = getattr(args, f.name)
        if scope is not None and f.name not in scope:
            continue
        allowed = typing.get_args(f.type) if typing.get_origin(f.type) is typing.Literal else ()
        if allowed and v not in allowed:
            out.append(f"{f.name} = {v!r} is invalid ({_flag(f.name)}); allowed: "
                       f"{', '.join(map(str, allowed))}")
        elif isinstance(v, float) and not math.isfinite(v) and f.name not in NUMBERS:
            out.append(f"{f.name} = {v} is invalid ({_flag(f.name)}); allowed: a finite number")
    for low, names in ((1, AT_LEAST_ONE), (0, AT_LEAST_ZERO)):
        for name in names:
            if scope is not None and name not in scope:
                continue
            v = getattr(args, name, low)
            if not _is_int(v) or v < low:
                out.append(f"{name} = {v!r} is invalid ({_flag(name)}); allowed: an integer "
                           f">= {low}")
    for name, (low, high, low_open) in NUMBERS.items():
        v = getattr(args, name, None)
        if scope is not None and name not in scope or v is None:
            continue  # absent, or None (target_kl: off)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or not (v > low if low_open else v >= low) or v > high:
            lo = f"({low:g}" if low_open else f"[{low:g}"
            hi = "inf)" if high == math.inf else f"{high:g}]"
            out.append(f"{name} = {v!r} is invalid ({_flag(name)}); allowed: a finite number "
                       f"in {lo}, {hi}")
    if out or scope is not None:  # the rest needs valid sizes and the run's own arguments
        return out
    batch = args.num_envs * args.num_steps
    if args.total_timesteps < batch:
        out.append(f"total_timesteps = {args.total_timesteps} is below one iteration "
                   f"(--total-timesteps); allowed: >= num_envs * num_steps = {batch}")
    if getattr(args, "num_minibatches", 1) > batch:
        out.append(f"num_minibatches = {args.num_minibatches} is invalid (--num-minibatches); "
                   f"allowed: at most num_envs * num_steps = {batch}")
    for k in ("num_envs", "minibatch_size"):
        if hasattr(args, k) and getattr(args, k) % world:
            out.append(f"{k} = {getattr(args, k)} is not divisible by the torchrun world size "
                       f"{world} (each rank takes {k} / world_size)")
    try:
        make_config(args.scenario, **parse_overrides(args.env_overrides))
    except ValueError as e:  # also JSON syntax errors
        out.append(f"env_overrides = {args.env_overrides!r} is invalid (--env-overrides): {e}")
    if ck is not None:
        iters = args.total_timesteps // batch
        if iters <= ck["iteration"]:
            out.append(f"total_timesteps = {args.total_timesteps} leaves nothing to train: the "
                       f"checkpoint is at iteration {ck['iteration']} (global step "
                       f"{ck['global_step']}) and the budget gives {iters} iterations of "
                       f"{batch} steps; pass a larger --total-timesteps")
    return out


def check_args(args, world: int = 1, ck: dict | None = None) -> None:
    """Raise ``SystemExit`` listing every problem of ``args`` (see :func:`args_problems`);
    called before anything is created (run folder, process group, environment)."""
    problems = args_problems(args, world, ck)
    if problems:
        raise SystemExit("\n".join(f"error: {p}" for p in problems))


# ---------------------------------------------------------------- checkpoints

def save_checkpoint(path, models: dict, optimizers: dict, args, global_step: int, iteration: int,
                    trainer: str) -> None:
    """Write the checkpoint of ``trainers/<trainer>.py`` atomically (a run killed mid-write keeps
    its previous checkpoint): ``state_dict`` of each model and optimiser by name, the Args,
    global_step, iteration and the trainer's name."""
    tmp = f"{path}.tmp"
    torch.save({"models": {k: m.state_dict() for k, m in models.items()},
                "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                "args": dataclasses.asdict(args), "global_step": global_step,
                "iteration": iteration, "trainer": trainer}, tmp)
    os.replace(tmp, path)


def save_due(args, iteration: int) -> bool:
    """Whether a checkpoint is written after ``iteration``: every save_interval and at the end."""
    return args.save_model and (iteration % args.save_interval == 0
                                or iteration == args.num_iterations)

def load_checkpoint(path, device, trainer: str,
                    need=("models", "optimizers", "args", "global_step", "iteration")) -> dict:
    """A checkpoint of ``trainers/<trainer>.py`` (``weights_only``: no code runs), with clear
    errors for a missing, unreadable or incomplete file and another trainer's checkpoint."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        ck = torch.load(p, map_location=device, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{str(path)!r} is not a readable checkpoint "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    missing = [k for k in need if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise CheckpointError(f"{str(path)!r} is not a trainer checkpoint (no {missing})")
    written = ck.get("trainer")
    if written is not None and written != trainer:
        raise CheckpointError(f"checkpoint {str(path)!r} was written by trainers/{written}.py, "
                              f"not trainers/{trainer}.py: load it with that trainer")
    return ck


def checkpoint_args(args_cls, ck: dict, path, trainer: str):
    """``args_cls(**ck["args"])``, refusing arguments the trainer does not know (a checkpoint
    of another trainer) instead of a raw ``TypeError``."""
    known = {f.name for f in dataclasses.fields(args_cls)}
    unknown = sorted(set(ck["args"]) - known)
    if unknown:
        raise CheckpointError(f"checkpoint {str(path)!r} is not one of trainers/{trainer}.py: "
                              f"its arguments {unknown[:4]} are unknown to it (a checkpoint of "
                              "another trainer? evaluate it with the matching --policy)")
    return args_cls(**ck["args"])


def load_models(modules: dict, ck: dict, path, key: str = "models") -> None:
    """Load ``ck[key][name]`` into each module, refusing a checkpoint whose networks do not fit
    (other tiers, or other sizes: another scenario or trainer) with a clear message."""
    have = ck[key]
    if set(have) != set(modules):
        raise CheckpointError(f"checkpoint {str(path)!r} holds {key} {sorted(have)}, this run "
                              f"needs {sorted(modules)} (a checkpoint of another trainer or "
                              "scenario?)")
    for name, m in modules.items():
        try:
            m.load_state_dict(have[name])
        except (RuntimeError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()
            raise CheckpointError(f"checkpoint {str(path)!r}: its {name} {key} do not fit this "
                                  f"environment and arguments ({' '.join(first[:2])[:300]})"
                                  ) from None


def load_trained(path, core, args_cls, trainer: str, build):
    """``(args, models)`` of a checkpoint of ``trainers/<trainer>.py`` for ``core``: its Args and
    ``build(core, args, core.device)`` (modules by name) with its weights (:class:`CheckpointError`
    for a checkpoint that is missing, another trainer's or does not fit)."""
    ck = load_checkpoint(path, core.device, trainer, need=("models", "args"))
    args = checkpoint_args(args_cls, ck, path, trainer)
    models = build(core, args, core.device)
    load_models(models, ck, path)
    return args, models


def _given_fields(argv, names) -> set:
    """Args fields named on a tyro command line (``--x-y``, ``--x_y``, ``--no-x-y``)."""
    out = set()
    for tok in argv:
        if not tok.startswith("--"):
            continue
        name = tok[2:].split("=", 1)[0].replace("-", "_")
        if name in names:
            out.add(name)
        elif name.startswith("no_") and name[3:] in names:
            out.add(name[3:])
    return out


def resume_args(args_cls, cli, trainer: str, device, argv=None):
    """The Args and checkpoint of ``cli.resume``: the checkpoint's Args, with from the command
    line only the device, the threads and what was given of the budget and the saving
    (:data:`RESUMABLE`); so a resumed run keeps saving checkpoints as the run did. Any other
    argument given with ``--resume`` is refused (it would be ignored)."""
    argv = sys.argv[1:] if argv is None else argv
    names = {f.name for f in dataclasses.fields(args_cls)}
    given = _given_fields(argv, names) - {"resume"}
    fixed = sorted(given - set(RESUMABLE))
    if fixed:
        allowed = ", ".join(_flag(k) for k in RESUMABLE)
        raise SystemExit(f"error: {', '.join(_flag(k) for k in fixed)} cannot change when "
                         f"resuming: the run continues with its checkpoint's arguments "
                         f"(allowed with --resume: {allowed})")
    try:
        ck = load_checkpoint(cli.resume, device, trainer)
        args = checkpoint_args(args_cls, ck, cli.resume, trainer)
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    for k in given | {"cuda", "threads"}:  # the machine's settings always from the CLI
        setattr(args, k, getattr(cli, k))
    args.resume = cli.resume
    return args, ck


def resume(args_cls, args, trainer: str, world: int, device):
    """``(args, ck)``: with ``--resume`` the checkpoint's Args (:func:`resume_args`) checked
    against it, and the checkpoint; otherwise ``(args, None)``."""
    if not args.resume:
        return args, None
    args, ck = resume_args(args_cls, args, trainer, device)  # saving as the run did
    check_args(args, world, ck)
    return args, ck


def run_folder(args, ck: dict | None, rank: int, world: int):
    """``(run_dir, writer)``: ``runs/{scenario}__{exp_name}__{seed}__{time}`` (rank 0's name on
    every rank) or, resuming, the checkpoint's folder; the TensorBoard writer on rank 0
    (:func:`summary_writer`), :class:`~tntn_env.distributed.NoLog` on the others."""
    if args.resume:
        run_dir = Path(args.resume).parent
    else:  # the name holds the time: rank 0's for all
        run_dir = Path("runs") / broadcast_object(
            f"{args.scenario}__{args.exp_name}__{args.seed}__{int(time.time())}", world)
    writer = summary_writer(run_dir, args, ck) if rank == 0 else NoLog()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        writer.add_text("ddp", f"{world} ranks x {args.num_envs // world} envs, "
                               f"{torch.distributed.get_backend()}")
    return run_dir, writer


def seed_everything(seed: int, torch_deterministic: bool = True) -> None:
    """Seed Python's, NumPy's and torch's generators (CleanRL's seeding block)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = torch_deterministic


def summary_writer(run_dir, args, ck: dict | None = None):
    """The run's TensorBoard writer. Resuming from ``ck``: events of the interrupted run after
    the checkpoint's step are purged (``purge_step``), so each step holds one value, and the
    hyperparameters are not logged again."""
    from torch.utils.tensorboard import SummaryWriter

    if ck is not None:
        return SummaryWriter(str(run_dir), purge_step=ck["global_step"] + 1)
    writer = SummaryWriter(str(run_dir))
    table = "\n".join([f"|{key}|{value}|" for key, value in vars(args).items()])
    writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")
    return writer


def check_finite(losses: dict, iteration: int, global_step: int, writer=None) -> None:
    """Stop the run (``SystemExit``, non-zero) when a loss is NaN or infinite: the weights are
    lost from there on. The last checkpoint written before stays."""
    bad = {k: v for k, v in losses.items()
           if not any(k.startswith(n) for n in MAY_BE_NAN) and not math.isfinite(float(v))}
    if bad:
        if writer is not None:
            writer.close()
        shown = ", ".join(f"{k} = {v}" for k, v in list(bad.items())[:6])
        raise SystemExit(f"error: non-finite losses at iteration {iteration} (global step "
                         f"{global_step}): {shown}; the run stops (a checkpoint written before "
                         "is kept). Lower --learning-rate or check the arguments")


# ---------------------------------------------------------------- logging and evaluation

def log_env(writer, means: dict, counts: dict, global_step: int, world: int, device) -> dict:
    """Log ``env/<name>``: the rank mean of each of ``means`` (the iteration's env metrics) and
    the rank sum of each of ``counts`` (one all_reduce); returns the metrics' rank means."""
    vals = rank_mean([*means.values(), *counts.values()], world, device)
    env = dict(zip(means, vals))
    for k, v in env.items():
        writer.add_scalar(f"env/{k}", v, global_step)
    for k, v in zip(counts, vals[len(means):]):
        writer.add_scalar(f"env/{k}", round(v * world), global_step)
    return env


def evaluate(path, episodes: int, seed: int, device, greedy: bool, *, args_cls, trainer: str,
             make_core, load_policy) -> dict:
    """Evaluation of a trainer's checkpoint on its own environment (``make_core`` of its Args,
    one env per episode, policy from ``load_policy``): the mean of each system metric over the
    episodes' steps, the episodic return per tier, infeasible actions and policy time."""
    ck = load_checkpoint(path, device, trainer, need=("models", "args", "global_step"))
    core = make_core(checkpoint_args(args_cls, ck, path, trainer), episodes, device)
    act = load_policy(path, core, greedy)
    obs, masks = core.reset(seed=seed)
    sums, ret = {k: 0.0 for k in SYSTEM_METRICS}, {t: 0.0 for t in core.tiers}
    infeasible, secs, steps = 0, 0.0, core.cfg.timing.episode_steps
    for _ in range(steps):
        t0 = time.perf_counter()
        acts = act(obs, masks)
        secs += time.perf_counter() - t0
        out = core.step(acts)
        infeasible += int((out["voided"] + out["repaired"]).sum())
        for k in SYSTEM_METRICS:
            sums[k] += out["metrics"][k].mean().item() / steps
        for t in core.tiers:
            ret[t] += out["rewards"][t].mean().item()
        obs, masks = out["obs"], out["masks"]
    return {"checkpoint": str(path), "episodes": episodes, "eval_seed": seed, "greedy": greedy,
            "global_step": ck["global_step"], **sums,
            **{f"episodic_return_{t}": v for t, v in ret.items()},
            "infeasible_actions": infeasible, "policy_ms_per_step": 1e3 * secs / steps}


def eval_path(checkpoint) -> Path:
    """Where ``--eval-only`` writes: ``eval.json`` next to the checkpoint, or where that exists
    the first free ``eval-1.json``, ``eval-2.json``, ...: an earlier evaluation is never
    replaced."""
    folder = Path(checkpoint).parent
    path, n = folder / "eval.json", 0
    while path.exists():
        n += 1
        path = folder / f"eval-{n}.json"
    return path


def eval_only(evaluate, args, device, rank: int) -> typing.NoReturn:
    """``--eval-only``: ``evaluate(checkpoint, episodes, seed, device, greedy)`` on rank 0,
    printed and written to :func:`eval_path` next to the checkpoint; then the process exits (a
    bad checkpoint or an unwritable folder: exit status 1 with the message, before the
    evaluation runs)."""
    if rank > 0:  # evaluation runs on rank 0 only
        raise SystemExit(0)
    path = eval_path(args.eval_only)
    if path.parent.is_dir() and not os.access(path.parent, os.W_OK):
        raise SystemExit(f"error: cannot write {path}: the folder is not writable")
    try:
        res = evaluate(args.eval_only, args.eval_episodes, args.eval_seed, device,
                       args.eval_greedy)
    except ValueError as e:  # the checkpoint: missing, another trainer's, ...
        raise SystemExit(f"error: {e}") from None
    with open(path, "x") as f:  # "x": fails rather than replace a file written meanwhile
        f.write(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    print(f"wrote {path}", file=sys.stderr)
    raise SystemExit(0)
