"""Input checking: the arguments of ``TNTNCore.reset`` / ``step`` (bad input raises before any
state changes, naming the argument and the allowed values), and actions: format (tiers, integer
dtypes, shapes), ranges and masks, tier by tier and top-down, raising or repairing per
``config.invalid_action``.

A lower tier's position is allowed if the mask observed before the step allows it (simultaneous
decisions: the step voids what the new upper allocation no longer permits) or if the mask that
follows from this step's upper-tier actions allows it (top-down sampling with
``TNTNCore.masks_for``). Repair replaces a bad entry by the first allowed choice of its position.

Functions take the core (:class:`tntn_env.core.TNTNCore`: tiers, ``nvec`` and their offsets) as
first argument.
"""

from __future__ import annotations

import numpy as np
import torch

from .allocation import masks_after
from .config import EnvConfig, memory_breakdown, memory_estimate_bytes
from .state import CoreState


def available_memory_bytes(device: torch.device) -> int | None:
    """Memory free for a new core on ``device``: CUDA's free memory, on CPU Linux's
    ``MemAvailable`` (``/proc/meminfo``); ``None`` where it cannot be read."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        if device.type == "cpu":
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
    except (OSError, RuntimeError, ValueError, IndexError):
        pass
    return None


def check_memory(cfg: EnvConfig, num_envs: int, device: torch.device) -> None:
    """Refuse ``num_envs`` environments of ``cfg`` whose estimated memory
    (:func:`tntn_env.config.memory_estimate_bytes`) is above what ``device`` has free, before
    anything is allocated (one environment is bounded by ``memory_limit_gib`` already)."""
    free = available_memory_bytes(device)
    need = memory_estimate_bytes(cfg, num_envs)
    if free is not None and need > free:
        per_env = memory_estimate_bytes(cfg, 2) - memory_estimate_bytes(cfg, 1)
        fits = max(0, (free - (memory_estimate_bytes(cfg, 1) - per_env)) // max(per_env, 1))
        raise ValueError(
            f"num_envs = {num_envs} is too many for {device}: {num_envs} environments of this "
            f"config need about {need / 2 ** 30:,.1f} GiB (estimate: "
            f"{memory_breakdown(cfg, num_envs)}), and {free / 2 ** 30:,.2f} GiB is free; "
            f"allowed: at most about {fits:,} environments")


def check_format(core, actions: dict) -> dict:
    """Tiers, dtypes and shapes of ``actions``; returns them as int64 on the core's device."""
    E, out = core.num_envs, {}
    for tier in core.tiers:
        if tier not in actions:
            raise ValueError(f"missing actions for tier {tier!r}; expected a tensor of shape "
                             f"[{E}, {core.num_agents[tier]}, {len(core.nvec[tier])}]")
        a = actions[tier]
        shape = (E, core.num_agents[tier], len(core.nvec[tier]))
        if not torch.is_tensor(a) or a.dtype not in (torch.int64, torch.int32, torch.int16,
                                                     torch.int8, torch.uint8):
            raise ValueError(f"actions[{tier!r}] must be an integer tensor; got "
                             f"{getattr(a, 'dtype', type(a).__name__)}")
        if tuple(a.shape) != shape:
            raise ValueError(f"actions[{tier!r}] has shape {tuple(a.shape)}; expected {shape}")
        out[tier] = a.to(core.device, torch.long)
    unknown = set(actions) - set(core.tiers)
    if unknown:
        raise ValueError(f"actions for unknown tiers {sorted(unknown)}; this scenario has "
                         f"tiers {list(core.tiers)}")
    return out


def allowed_positions(core, tier: str, a: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[E, agents, positions] bool: in range and allowed by the flat ``mask``."""
    nv, offs, top = core._nvec_t[tier], core._offs_t[tier], core._top_t[tier]
    in_range = (a >= 0) & (a < nv)
    return torch.gather(mask, 2, offs + a.clamp(min=0).minimum(top)) & in_range


def all_allowed(core, st: CoreState, actions: dict, masks: dict, dec: dict):
    """0-dim bool: every position of every tier allowed, as :func:`check` judges it (the
    compiled step's check; the observed masks or-ed with the masks after this step's
    upper-tier actions, which equal the observed ones where no upper tier decides)."""
    ok, upper = None, {}
    for tier in core.tiers:
        m = masks[tier]
        if upper:
            m = m | masks_after(core, st, upper, dec)[tier]
        a_ok = allowed_positions(core, tier, actions[tier], m).all()
        ok = a_ok if ok is None else ok & a_ok
        if tier != "local":
            upper[tier] = actions[tier]
    return ok


def check(core, actions: dict, masks: dict, dec: dict) -> tuple[dict, dict]:
    """Validate (or repair) actions tier by tier, top-down.

    A lower tier's position is allowed if the mask observed allows it (simultaneous
    decisions; the env voids what the new upper allocation no longer permits) or if the mask
    that follows from this step's upper-tier actions allows it (top-down sampling with
    ``TNTNCore.masks_for``).
    """
    actions = check_format(core, actions)
    if not core.check_actions:
        return actions, {}
    out, repaired = {}, {}
    for tier in core.tiers:
        if tier != core.tiers[0]:
            upper = {t: out[t] for t in ("satellite", "hap") if t in out}
            if upper and any(bool(dec[t].any()) for t in upper):
                after = core.masks_for(upper)[tier]
                masks = {**masks, tier: masks[tier] | after}
        a = actions[tier]
        allowed = allowed_positions(core, tier, a, masks[tier])
        if bool(allowed.all()):
            out[tier] = a
            continue
        nv, offs = core._nvec_t[tier], core._offs_t[tier]
        if core.cfg.invalid_action == "raise":
            e, ag, pos = (int(v) for v in torch.nonzero(~allowed)[0])
            val = int(a[e, ag, pos])
            opts = masks[tier][e, ag, int(offs[pos]):int(offs[pos] + nv[pos])]
            ok = torch.nonzero(opts).flatten().tolist()
            why = ("is out of range" if not (0 <= val < int(nv[pos]))
                   else "is forbidden by the action mask")
            raise ValueError(
                f"action of agent '{tier}_{ag}' (env {e}) at position {pos} "
                f"({describe_position(core, tier, pos)}) = {val} {why}; allowed: {ok}")
        # repair: replace each bad entry by the first allowed choice of its position
        first = torch.stack([torch.argmax(masks[tier][..., int(o):int(o) + int(k)].long(), -1)
                             for o, k in zip(offs, nv)], dim=-1)
        out[tier] = torch.where(allowed, a, first)
        repaired[tier] = (~allowed).sum(2)
    return out, repaired


def describe_position(core, tier: str, pos: int) -> str:
    """What position ``pos`` of a ``tier`` agent's action chooses, and its values."""
    N, T = core.N, core.T
    if tier == "satellite":
        return f"subband {pos}: 0 off, 1..{core.B} beam, {core.B + 1} satellite-direct"
    if tier == "hap":
        return (f"region {pos // N} of the HAP, subband {pos % N}: 0 off, 1..{core.M} node, "
                f"{core.M + 1} HAP-direct")
    if pos < N * T:
        return f"user for subband {pos // T}, time block {pos % T}: 0 none, k+1 user k"
    if pos < N * T + N:
        return f"power level for subband {pos - N * T}"
    return f"move of UAV {pos - N * T - N}: 0 stay, 1 +x, 2 -x, 3 +y, 4 -y"


# ------------------------------------------------------------------ reset / step arguments
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
