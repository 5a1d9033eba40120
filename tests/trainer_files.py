"""Shared helpers of the trainer tests: the trainer files, their tiny settings, loading one by
path, and reading a run's TensorBoard scalars."""

import importlib.util
from pathlib import Path

from tntn_env.experiments.launch import read_scalars

ROOT = Path(__file__).resolve().parents[1]
TRAINERS = ("hdrl_ppo", "mappo", "ppo_single")
SMALL = "num_subbands=4,users_per_region=3,episode_steps=40"
TINY = ["--num-envs", "4", "--num-steps", "20", "--total-timesteps", "160", "--update-epochs",
        "2", "--no-cuda", "--env-overrides", SMALL]


def load(name):
    """Import trainers/<name>.py as a module (its __main__ block does not run)."""
    path = ROOT / "trainers" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"trainer_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def scalars(path):
    """{tag: [(step, value), ...]} of a TensorBoard event file or run folder (every tag)."""
    return read_scalars(path)
