"""Where the package finds the trainer files (docs/experiments.md, Trainer files).

The trainers are CleanRL-style single files (``trainers/hdrl_ppo.py``, ``trainers/mappo.py``,
``trainers/ppo_single.py``) in the repository, not modules of the installed package: nothing in
``tntn_env`` imports them. The commands that need one (the evaluation CLI for a checkpoint, the
checkpoint policy, the experiment commands) find it with :func:`trainer_path`:
``<trainer_dir>/<file>``, where ``trainer_dir`` is the command's ``--trainer-dir`` (the
evaluation CLI also takes one file, ``--trainer-file``) and defaults to the ``trainers/`` folder
of the repository this package lives in (:data:`DEFAULT_TRAINER_DIR`). An installed package
without the repository has no such folder: the error names the path and the flag.
:func:`load_module` imports a trainer file by path.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

# algorithm name -> trainer file
TRAINER_FILES = {"hdrl": "hdrl_ppo.py", "mappo": "mappo.py", "ppo_single": "ppo_single.py"}
DEFAULT_TRAINER_DIR = Path(__file__).resolve().parents[1] / "trainers"


def trainer_path(name: str, trainer_dir: str | Path | None = None,
                 flag: str = "--trainer-dir") -> Path:
    """The trainer file ``<trainer_dir or DEFAULT_TRAINER_DIR>/<file>`` of ``name``: an algorithm
    (``hdrl``, ``mappo``, ``ppo_single``; :data:`TRAINER_FILES`) or a file name (``hdrl_ppo``,
    ``hdrl_ppo.py``). Raises FileNotFoundError naming the path and ``flag`` when it is missing."""
    file = TRAINER_FILES.get(name) or (name if name.endswith(".py") else f"{name}.py")
    folder = Path(trainer_dir) if trainer_dir else DEFAULT_TRAINER_DIR
    path = folder / file
    if not path.is_file():
        if trainer_dir:
            raise FileNotFoundError(f"trainer file {path} does not exist: {flag} {trainer_dir} "
                                    f"must be the folder holding {file}")
        raise FileNotFoundError(f"trainer file {path} does not exist: the default is the "
                                "trainers/ folder of the tntn repository (an installed package "
                                f"has none); pass {flag} FOLDER, the folder holding {file}")
    return path


def load_module(trainer_file: str | Path):
    """Import a trainer file by path as a fresh module (its ``__main__`` block does not run);
    it must define ``load_policy(path, core)``."""
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


__all__ = ["DEFAULT_TRAINER_DIR", "TRAINER_FILES", "load_module", "trainer_path"]
