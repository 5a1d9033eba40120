"""Trained checkpoints behind the common :class:`Policy` interface.

The trainers (``trainers/hdrl_ppo.py``, ``trainers/mappo.py``, ``trainers/ppo_single.py``) expose
``load_policy(path, core, greedy=True) -> act(obs, masks) -> {tier: LongTensor [E, agents,
dims]}``. The adapter imports the trainer file by path
(:func:`tntn_env.trainer_files.load_module`), so the trainers need not be a package; without an
explicit file it takes the algorithm's file from :func:`tntn_env.trainer_files.trainer_path`
(``trainer_dir`` or the repository's ``trainers/``). It binds the loaded policy to a core on
first use (again if a different core is passed).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..trainer_files import load_module, trainer_path
from .common import Policy

__all__ = ["CheckpointPolicy", "load_module"]


class CheckpointPolicy(Policy):
    """A trained checkpoint: ``CheckpointPolicy(path, trainer_file)``, or
    ``CheckpointPolicy(path, name="hdrl", trainer_dir=None)`` for the algorithm's trainer file
    (:func:`tntn_env.trainer_files.trainer_path`).

    ``act(core)`` calls the trainer's policy on ``core.observe()`` and ``core.masks()``: the
    masked argmax, or with ``sample=True`` actions sampled from the policy as in training (torch's
    global generator, seeded with ``seed`` at every ``reset``).
    """

    def __init__(self, path: str | Path, trainer_file: str | Path | None = None,
                 name: str | None = None, sample: bool = False, seed: int = 0,
                 trainer_dir: str | Path | None = None):
        super().__init__()
        if trainer_file is None:
            if name is None:
                raise ValueError("CheckpointPolicy needs trainer_file or the algorithm's name")
            trainer_file = trainer_path(name, trainer_dir)
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
