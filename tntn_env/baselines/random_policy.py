"""Random allocation (paper Section 4.2, baseline 2): uniform over feasible actions.

Every position of every agent draws uniformly among the choices its mask allows. Tiers are
sampled top-down: when the satellite decides on this step its action is drawn first, the HAPs'
masks are then computed from it (``core.masks_for({"satellite": a_s})``), and the local masks from
both, so no lower-tier choice is voided by a new upper allocation. A tier that does not decide on
this step returns a draw from its observed mask (ignored by the core). The draws come from a
``torch.Generator`` seeded by ``seed``: the same seed gives the same actions for the same states.
"""

from __future__ import annotations

import torch

from .common import Policy, sample_uniform, unflatten_mask


class RandomPolicy(Policy):
    name = "random"

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def reset(self, core) -> None:
        pass

    def _draw(self, core, tier, flat_mask):
        return sample_uniform(unflatten_mask(core, tier, flat_mask).cpu(),
                              self.generator).to(flat_mask.device)

    def act(self, core) -> dict:
        masks = core.masks()
        dec = core.decides()
        out, upper = {}, {}
        if "satellite" in core.tiers:
            out["satellite"] = self._draw(core, "satellite", masks["satellite"])
            upper["satellite"] = out["satellite"]
        if "hap" in core.tiers:
            td = core.masks_for(dict(upper))["hap"]
            m = torch.where(dec["hap"][:, None, None], td, masks["hap"])
            out["hap"] = self._draw(core, "hap", m)
            upper["hap"] = out["hap"]
        out["local"] = self._draw(core, "local", core.masks_for(dict(upper))["local"])
        self.info = {}
        return out
