"""Shared helpers of the trainer tests: the trainer files, their tiny settings, loading one by
path, and reading a run's TensorBoard scalars."""

import importlib.util
from pathlib import Path

from tntn_env.config import TINY_OVERRIDES, format_overrides
from tntn_env.experiments.launch import TINY_TRAINER_FLAGS, read_scalars
from tntn_env.trainer_files import trainer_path

ROOT = Path(__file__).resolve().parents[1]
TRAINERS = ("hdrl_ppo", "mappo", "ppo_single")
SMALL = format_overrides(TINY_OVERRIDES)  # the tiny preset as --env-overrides text
TINY = [*TINY_TRAINER_FLAGS, "--total-timesteps", "160", "--no-cuda", "--env-overrides", SMALL]


def load(name):
    """Import trainers/<name>.py as a module (its __main__ block does not run)."""
    path = trainer_path(name)
    spec = importlib.util.spec_from_file_location(f"trainer_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def scalars(path):
    """{tag: [(step, value), ...]} of a TensorBoard event file or run folder (every tag)."""
    return read_scalars(path)
