"""Argument checks of the core's entry points (``TNTNCore.reset`` and ``TNTNCore.step``): bad
input raises before any state changes, naming the argument and the allowed values."""

from __future__ import annotations

import numpy as np
import torch

_INT64_MAX = 2 ** 63 - 1


def _int_scalar(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _int_values(x, name: str) -> torch.Tensor:
    """Integers of a sequence, array or tensor as a flat int64 tensor; ValueError otherwise
    (floats, bools, strings are not converted)."""
    if torch.is_tensor(x):
        if x.dtype == torch.bool or x.dtype.is_floating_point or x.dtype.is_complex:
            raise ValueError(f"{name} has dtype {x.dtype}; allowed: integers")
        return x.detach().flatten().long()
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "iu":
            raise ValueError(f"{name} has dtype {x.dtype}; allowed: integers")
        return torch.as_tensor(x.astype(np.int64)).flatten()
    if isinstance(x, (list, tuple, range)):
        bad = [v for v in x if not _int_scalar(v)]
        if bad:
            raise ValueError(f"{name} holds {bad[0]!r}; allowed: integers")
        return torch.tensor([int(v) for v in x], dtype=torch.long)
    raise ValueError(f"{name} = {x!r} is invalid; allowed: a sequence of integers")


def check_reset_args(seed, env_ids, num_envs: int) -> None:
    """Validate ``reset(seed, env_ids)`` of a batch of ``num_envs`` envs.

    ``env_ids``: None or distinct integers in [0, num_envs) (negative ids are refused, not
    wrapped). ``seed``: None, an integer >= 0 (env i gets seed + i), or one integer >= 0 per
    reset env; floats, strings and bools are refused rather than converted."""
    n = num_envs
    if env_ids is not None:
        if _int_scalar(env_ids):
            env_ids = [env_ids]
        ids = _int_values(env_ids, "env_ids")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_envs):
            bad = ids[(ids < 0) | (ids >= num_envs)][0].item()
            raise ValueError(f"env_ids holds {bad}; allowed: env indices in [0, {num_envs - 1}]")
        if ids.unique().numel() != ids.numel():
            raise ValueError("env_ids holds an index twice; allowed: distinct env indices")
        n = ids.numel()
    if seed is None:
        return
    if _int_scalar(seed):
        top = _INT64_MAX - (num_envs - 1)
        if not 0 <= int(seed) <= top:
            raise ValueError(f"seed = {seed} is invalid; allowed: an integer in [0, {top}] (env i "
                             "gets seed + i)")
        return
    if isinstance(seed, (float, str, bytes, bool, np.bool_, np.floating)):
        raise ValueError(f"seed = {seed!r} is invalid; allowed: None, an integer >= 0 or a "
                         f"sequence of {n} integers >= 0")
    seeds = _int_values(seed, "seed")
    if seeds.numel() != n or bool((seeds < 0).any()):
        raise ValueError(f"seed has {seeds.numel()} entries; allowed: {n} integers >= 0")


def check_not_finished(core) -> None:
    """Refuse to step envs whose episode is over (step counter at ``episode_steps``): their
    observations would leave the documented bounds. Reset them first, or step with
    ``auto_reset=True``."""
    steps = core.cfg.timing.episode_steps
    t = core._host_t()
    if t is not None and t < steps:
        return
    over = torch.nonzero(core.state.t >= steps).flatten()
    if over.numel():
        ids = over[:8].tolist()
        more = f" and {over.numel() - 8} more" if over.numel() > 8 else ""
        raise RuntimeError(f"step() on finished episodes: env(s) {ids}{more} reached "
                           f"episode_steps = {steps}; reset them (reset(), reset(env_ids=...)) "
                           "or step with auto_reset=True")
