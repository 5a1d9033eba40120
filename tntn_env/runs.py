"""What the trainers (``trainers/*.py``) share besides the algorithm: checking ``Args`` before a
run starts, loading checkpoints with clear errors, resuming a run (which arguments may change,
TensorBoard without duplicate steps) and stopping on non-finite losses (docs/reliability.md).

Every check raises ``SystemExit("error: ...")`` (exit status 1, the message on stderr) or, for
checkpoints read by ``load_policy``, :class:`CheckpointError` (a ``ValueError``).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import typing
from pathlib import Path

import torch

from .config import make_config, parse_overrides

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
