"""The policy interface shared by every baseline, and small helpers over the core's public API.

A policy acts on the batched core's *current* state: ``act(core)`` returns one MultiDiscrete
action per tier, ``{tier: LongTensor [E, n_agents(tier), len(core.nvec[tier])]}``, for the tiers
of ``core.tiers``. Policies may read ``core.state``, ``core.masks()``, ``core.decides()``,
``core.masks_for(...)`` and score what-if candidates with ``core.evaluate(...)``; they never
advance the state. Actions of a tier that does not decide on this step are ignored by the core;
policies still return a valid one (the tier's current effective choice).

Top-down feasibility. When an upper tier decides on a step, a lower tier's action may be valid
either for the mask in the observation (simultaneous decisions; a choice the new upper allocation
no longer permits is voided by the core) or for the mask that follows from the upper tier's new
action (``core.masks_for``; top-down sampling, nothing voided). :func:`feasible` accepts both,
per position, exactly as docs/env.md, Agents, actions and masks, describes.
"""

from __future__ import annotations

import dataclasses

import torch

__all__ = ["Policy", "unflatten_mask", "sample_uniform", "holders", "stream_power",
           "effective_upper", "feasible", "check_feasible", "env_view", "current_actions"]


class Policy:
    """A decision rule over the batched core. Subclasses set ``name`` and implement ``act``.

    ``reset(core)`` is called at the start of every batch of episodes (optional). ``info`` holds
    statistics of the last decision (e.g. candidates evaluated), or is empty.
    """

    name: str = "policy"

    def __init__(self) -> None:
        self.info: dict = {}

    def reset(self, core) -> None:  # noqa: B027 - optional hook
        pass

    def act(self, core) -> dict:
        raise NotImplementedError

    def __call__(self, core) -> dict:
        return self.act(core)


# ---------------------------------------------------------------------------------- masks
def _offsets(nvec, device) -> tuple[torch.Tensor, torch.Tensor]:
    nv = torch.tensor(nvec, dtype=torch.long, device=device)
    return nv, torch.cumsum(nv, 0) - nv


def unflatten_mask(core, tier: str, flat: torch.Tensor) -> torch.Tensor:
    """Flat mask [E, A, sum(nvec)] -> padded [E, A, D, max(nvec)] (False beyond nvec[p])."""
    nv, offs = _offsets(core.nvec[tier], flat.device)
    cmax = int(nv.max())
    c = torch.arange(cmax, device=flat.device)
    idx = (offs[:, None] + c[None]).clamp(max=flat.shape[-1] - 1)  # [D, cmax]
    ok = c[None] < nv[:, None]
    return flat[..., idx] & ok


def sample_uniform(mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform sample per position among the allowed choices of a padded mask [..., cmax]."""
    u = torch.rand(mask.shape, generator=generator, device=generator.device if generator
                   is not None else "cpu").to(mask.device)
    score = torch.where(mask, u, -1.0)
    return score.argmax(-1)


# ---------------------------------------------------------------------------------- allocation
def holders(core, sat_choice: torch.Tensor, hap_choice: torch.Tensor):
    """Transmitter holding subband n in region j and satellite-direct flags [E, J, N] for
    effective choices (the core's own rule, :meth:`TNTNCore.holders`)."""
    holder, _, direct = core.holders(sat_choice, hap_choice)
    return holder, direct


def stream_power(core, st, holder: torch.Tensor) -> torch.Tensor:
    """Per-stream power share [E, X] of each transmitter (:meth:`TNTNCore.stream_power_w`)."""
    return core.stream_power_w(holder, st)


def effective_upper(core, st, decides: dict, sat_action=None, hap_action=None):
    """Effective (sat [E, N], hap [E, J, N]) after this step's upper decisions, with voiding
    (:meth:`TNTNCore.effective_upper`)."""
    acts = {}
    if sat_action is not None and "satellite" in core.tiers:
        acts["satellite"] = sat_action
    if hap_action is not None and "hap" in core.tiers:
        acts["hap"] = hap_action
    return core.effective_upper(acts, st, decides)


def current_actions(core, tier: str) -> torch.Tensor:
    """A valid no-change action for an upper tier: its current effective choice [E, A, D]."""
    st = core.state
    E = st.t.shape[0]
    if tier == "satellite":
        return st.sat_choice.view(E, 1, core.N).clone()
    if tier == "hap":
        return st.hap_choice.reshape(E, core.I, core.R * core.N).clone()
    raise ValueError(f"current_actions: tier {tier!r} has no persistent choice")


# ---------------------------------------------------------------------------------- checking
def _allowed(core, tier, a, flat_mask):
    nv, offs = _offsets(core.nvec[tier], a.device)
    in_range = (a >= 0) & (a < nv)
    flat = offs + a.clamp(min=0).minimum(nv - 1)
    return torch.gather(flat_mask, 2, flat) & in_range


def feasible(core, actions: dict) -> dict:
    """Per tier, a bool [E, A, D]: is each position allowed by the observed mask or top-down?

    Top-down: the mask after this step's deciding upper tiers' actions (``core.masks_for``).
    """
    obs_masks = core.masks()
    upper = {}
    if "satellite" in core.tiers:
        upper["satellite"] = actions["satellite"]
    td_hap = core.masks_for(dict(upper))
    if "hap" in core.tiers:
        upper["hap"] = actions["hap"]
    td_loc = core.masks_for(dict(upper))
    out = {}
    for tier in core.tiers:
        a = actions[tier].to(obs_masks[tier].device, torch.long)
        ok = _allowed(core, tier, a, obs_masks[tier])
        td = {"satellite": obs_masks, "hap": td_hap, "local": td_loc}[tier][tier]
        out[tier] = ok | _allowed(core, tier, a, td)
    return out


def check_feasible(core, actions: dict) -> None:
    """Raise ValueError naming the first infeasible (agent, position) of ``actions``."""
    for tier in core.tiers:
        if tier not in actions:
            raise ValueError(f"missing actions for tier {tier!r}")
        a = actions[tier]
        shape = (core.num_envs, core.num_agents[tier], len(core.nvec[tier]))
        if tuple(a.shape) != shape:
            raise ValueError(f"actions[{tier!r}] has shape {tuple(a.shape)}; expected {shape}")
    ok = feasible(core, actions)
    for tier, m in ok.items():
        if not bool(m.all()):
            e, ag, pos = (int(v) for v in torch.nonzero(~m)[0])
            raise ValueError(f"infeasible action of agent '{tier}_{ag}' (env {e}) at position "
                             f"{pos} ({core.describe_position(tier, pos)}) = "
                             f"{int(actions[tier][e, ag, pos])}")


# ---------------------------------------------------------------------------------- env views
def env_view(core, i: int, cache: dict | None = None):
    """A 1-env core whose state is env ``i`` of ``core`` (what-if evaluation of one env).

    The view shares configuration and topology; its state is a slice (not a copy) and it is never
    stepped. ``cache`` (a dict) keeps the view between calls.
    """
    from ..core import TNTNCore  # local import: baselines depend on the env, not vice versa

    if core.num_envs == 1:
        return core
    key = (id(core), "view")
    view = cache.get(key) if cache is not None else None
    if view is None:
        view = TNTNCore(core.cfg, num_envs=1, device=core.device, check_actions=False)
        if cache is not None:
            cache[key] = view
    view.state = core.state.index(slice(i, i + 1))
    return view


def replace_state(st, **changes):
    return dataclasses.replace(st, **changes)
