"""The core's state and results: :class:`CoreState` (everything that evolves, leading dim E),
:class:`Scored` (one joint action applied to a frozen state), the ids of the random streams that
drive the state, and the memo of values that depend only on unchanged state tensors.

State tensors are replaced, never written in place, so a tensor object stands for its values;
:func:`last_for` uses that to compute what depends only on the allocation or the realisation once
per step.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

# Random streams (a draw = hash(env key, episode, step, stream, index); see rng.py).
S_POWER, S_HOT_INIT, S_HOT_TARGET, S_USER_HOT, S_USER_POS = 1, 2, 3, 4, 5
S_WALK, S_FADE_RE, S_SHADOW, S_LOS, S_FADE_INIT = 6, 7, 9, 10, 11


@dataclass
class CoreState:
    """Everything that evolves; leading dim E. Replaced, never mutated in place."""

    key: torch.Tensor  # [E] int32 env key from the seed
    ekey: torch.Tensor  # [E] int32 key of the episode (from key and episode)
    rkey: torch.Tensor  # [E] int32 key of the current step's realisation (episode, t)
    episode: torch.Tensor  # [E] int64
    t: torch.Tensor  # [E] int64 step within the episode
    power_w: torch.Tensor  # [E, 4] per-episode power of a TBS, UAV, HAP, satellite beam
    field_key: torch.Tensor  # [E, P] spatial-field keys per propagation platform
    user_xy: torch.Tensor  # [E, Ut, 2]
    user_hot: torch.Tensor  # [E, Ut] bool: placed around a hotspot at reset
    uav_xy: torch.Tensor  # [E, J*U, 2]
    hot_xy: torch.Tensor  # [E, Hs, 2]
    hot_target: torch.Tensor  # [E, Hs, 2]
    demand_bps: torch.Tensor  # [E, Ut]
    ls_gain: torch.Tensor  # [E, X, Ut] large-scale linear gain incl. antennas and beam pattern
    ls_los: torch.Tensor  # [E, X, Ut] bool LoS state
    ls_k: torch.Tensor  # [E, X, Ut] Rician K-factor (linear) of each link, 0 in NLoS
    uav_los_u: torch.Tensor  # [E, J*U, Ut] LoS-field uniforms of UAV links (refreshed with users)
    fade: torch.Tensor  # [E, X, Ut, N, 2] scattered fading state (only when fading_rho > 0)
    sat_choice: torch.Tensor  # [E, N] effective satellite allocation
    hap_choice: torch.Tensor  # [E, J, N] effective HAP allocation per region
    last_rate: torch.Tensor  # [E, Ut]
    last_served: torch.Tensor  # [E, J] served fraction of demand
    last_se: torch.Tensor  # [E, J]
    last_fair: torch.Tensor  # [E, J]
    last_inr_db: torch.Tensor  # [E, J, N] interference+noise over noise, mean over served users

    def index(self, idx) -> CoreState:
        return CoreState(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def repeat(self, c: int) -> CoreState:
        return CoreState(**{f.name: getattr(self, f.name).repeat_interleave(c, dim=0)
                            for f in fields(self)})

    def merged(self, where: torch.Tensor, other: CoreState) -> CoreState:
        """Rows of ``other`` where ``where`` [E] is true, else own rows."""
        out = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            w = where.view(-1, *([1] * (a.dim() - 1)))
            out[f.name] = torch.where(w, b, a)
        return CoreState(**out)



@dataclass
class Scored:
    """Result of applying one joint action to a frozen state (no state change)."""

    sat_choice: torch.Tensor  # [E, N]
    hap_choice: torch.Tensor  # [E, J, N]
    holder: torch.Tensor  # [E, J, N] transmitter holding n in region j, -1 none
    users: torch.Tensor  # [E, J, N, T] scheduled user of the region, -1 none
    tx_power_w: torch.Tensor  # [E, X, N]
    slot_sinr: torch.Tensor  # [E, J, N, T]
    slot_inr: torch.Tensor  # [E, J, N, T] (interference + noise) / noise
    slot_rate: torch.Tensor  # [E, J, N, T] bps
    rate_bps: torch.Tensor  # [E, Ut]
    uav_xy: torch.Tensor  # [E, J*U, 2] after the move
    region: dict  # name -> [E, J]
    rewards: dict  # tier -> [E, A]
    voided: dict  # tier -> [E, agents] choices voided by a new upper-tier allocation

STATE_FIELDS = tuple(f.name for f in fields(CoreState))


def last_for(core, name: str, inputs: tuple, compute):
    """``compute(*inputs)``, or its last result for ``name`` if called with the same tensor
    objects (state tensors are replaced, never written in place, so identity means equal
    values): a step scores, observes and masks one allocation and one realisation. The memo is
    ``core._memo`` (a dict on the core)."""
    if torch.compiler.is_compiling():  # a graph computes each value once anyway
        return compute(*inputs)
    last = core._memo.get(name)
    if last is not None and all(a is b for a, b in zip(last[0], inputs)):
        return last[1]
    out = compute(*inputs)
    core._memo[name] = (inputs, out)
    return out
