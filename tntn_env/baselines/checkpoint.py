"""Trained checkpoints behind the common :class:`Policy` interface.

The trainers (``trainers/hdrl_ppo.py``, ``trainers/mappo.py``, ``trainers/ppo_single.py``) expose
``load_policy(path, core, greedy=True) -> act(obs, masks) -> {tier: LongTensor [E, agents,
dims]}``. The adapter imports the trainer file by path (``importlib``), so the trainers need not
be a package, and binds the loaded policy to a core on first use (again if a different core is
passed).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

from .common import Policy


def load_module(trainer_file: str | Path):
    """Import a Python file by path as a fresh module."""
    path = Path(trainer_file)
    if not path.is_file():
        raise FileNotFoundError(f"trainer file {str(path)!r} does not exist")
    name = f"_tntn_trainer_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import trainer file {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses / pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    if not hasattr(module, "load_policy"):
        raise AttributeError(f"trainer file {str(path)!r} defines no load_policy(path, core)")
    return module


class CheckpointPolicy(Policy):
    """A trained checkpoint: ``CheckpointPolicy(path, trainer_file)``.

    ``act(core)`` calls the trainer's policy on ``core.observe()`` and ``core.masks()``: the
    masked argmax, or with ``sample=True`` actions sampled from the policy as in training (torch's
    global generator, seeded with ``seed`` at every ``reset``).
    """

    def __init__(self, path: str | Path, trainer_file: str | Path, name: str | None = None,
                 sample: bool = False, seed: int = 0):
        super().__init__()
        self.sample = bool(sample)
        self.seed = int(seed)
        self.path = str(path)
        if not Path(self.path).exists():
            raise FileNotFoundError(f"checkpoint {self.path!r} does not exist")
        self.trainer_file = str(trainer_file)
        self.module = load_module(trainer_file)
        self.name = name or Path(trainer_file).stem
        self._bound = None
        self._fn = None

    def _bind(self, core):
        if self._bound is not core:
            kw = {"greedy": False} if self.sample else {}  # argmax: the plain contract
            self._fn = self.module.load_policy(self.path, core, **kw)
            self._bound = core
        return self._fn

    def reset(self, core) -> None:
        self._bind(core)
        if self.sample:
            torch.manual_seed(self.seed)

    def act(self, core) -> dict:
        fn = self._bind(core)
        out = fn(core.observe(), core.masks())
        self.info = {}
        return {t: out[t] for t in core.tiers}
