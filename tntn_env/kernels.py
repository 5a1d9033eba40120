"""The compiled parts of a step (``TNTNCore(compile=...)``): which mode, inductor's options, and
the compiled callables.

``"graph"``: the step's whole pure part (``TNTNCore._transition``: which tiers decide, the mask
check, scoring, next state, observations, masks) as one graph. ``"kernels"``: the step stays
eager around compiled kernels for its per-link work (fading draws, holder SNR features,
large-scale tables, local observation), laid out as contiguous rows that the CPU code
vectorises; their bodies are the eager functions of links.py, scoring.py, observation.py and
dynamics.py, so the physics exists once. ``True`` picks ``"kernels"`` on CPU from
:data:`KERNEL_ENVS` envs on (where the whole graph is slower than eager code), else ``"graph"``.
The kernels are compiled for the core's own batch shape; the core uses them only for states of
that shape (``TNTNCore._kernels_for``).
"""

from __future__ import annotations

from functools import partial

import torch

from . import dynamics, links, observation, scoring

KERNEL_ENVS = 1024  # compile=True on CPU from this E on: compiled kernels in the eager step


def resolve_mode(compile, num_envs: int, device: torch.device) -> str | None:
    """None, ``"graph"`` or ``"kernels"`` for the ``compile`` argument of a core of ``num_envs``
    envs on ``device``."""
    if not (isinstance(compile, bool) or compile in ("graph", "kernels")):
        raise ValueError(f"compile = {compile!r} is invalid; allowed: True, False, 'graph', "
                         "'kernels'")
    if compile is True:
        compile = "kernels" if num_envs >= KERNEL_ENVS and device.type == "cpu" else "graph"
    return compile or None


def inductor_options(mode: str | None, num_envs: int) -> dict:
    """Inductor options: no size/stride asserts on the inputs (dynamo's guards check them
    already; ~1 us each per call). For small batches in one graph: one thread (OpenMP fork/join
    costs more than it saves) and scalar C++ (simdlen 1): the inner loops are a few elements
    long, so 8-lane vectors run mostly masked tails; scalar code runs about as fast at E = 1 and
    compiles in about half the time (docs/design.md, Compiled code). The kernels' rows are long:
    vector code."""
    opts = {"size_asserts": False}
    if num_envs < 8 and mode == "graph":
        opts["cpp.threads"] = 1
        opts["cpp.simdlen"] = 1
    return opts


def build(core, mode: str | None):
    """(compiled transition or None, kernels by name or None) of ``core`` for ``mode``. One
    graph per (refresh flag, grad mode) variant; E is static."""
    opts = inductor_options(mode, core.num_envs)
    transition = (torch.compile(core._transition, dynamic=False, options=opts)
                  if mode == "graph" else None)
    if mode != "kernels":
        return transition, None
    bodies = (("holder_snr", observation.holder_snr_links),
              ("slots", scoring.slot_links),
              ("uav_rows", partial(links.uav_rows, core)),
              ("demand", partial(dynamics.demand, core)),
              ("cat", observation.cat_last),
              ("region_snr", partial(observation.region_snr, core)),
              ("tables", partial(links.large_scale_tables, core)))
    return transition, {name: torch.compile(f, dynamic=False, options=opts)
                        for name, f in bodies}
