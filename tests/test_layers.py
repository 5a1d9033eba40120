"""Layers that only point down: no module of ``tntn_env`` imports from outside the package, the
environment's lower layers import nothing above them; trainer files are found by path
(``tntn_env.trainer_files``); one metrics list, one tiny preset; the command lines (tyro)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tntn_env
from tntn_env.config import TINY_OVERRIDES, format_overrides, make_config, parse_overrides
from tntn_env.core import SYSTEM_METRICS
from tntn_env.trainer_files import DEFAULT_TRAINER_DIR, TRAINER_FILES, trainer_path

PKG = Path(tntn_env.__file__).resolve().parent
# config -> channel/topology -> core modules -> views; nothing here imports what sits on top
LOWER = ("config", "rng", "channel", "topology", "state", "allocation", "checking",
         "links", "scoring", "observation", "dynamics", "kernels", "spaces", "core",
         "results", "pettingzoo_env", "torchrl_env", "rllib", "benchmarl", "render")
UPPER = ("baselines", "experiments", "evaluate", "demo", "policy", "runs", "trainer_files", "cli")


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    rel = path.relative_to(PKG.parent).with_suffix("").parts
    package = rel[:-1] if rel[-1] != "__init__" else rel[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def test_no_module_imports_from_outside_the_package():
    for path in sorted(PKG.rglob("*.py")):
        bad = {m for m in _imports(path)
               if m.split(".")[0] in ("baselines", "trainers", "benchmarks", "tests", "examples")}
        assert not bad, f"{path.relative_to(PKG.parent)} imports {sorted(bad)}"


def test_lower_layers_do_not_import_upper_ones():
    for name in LOWER:
        above = {m for m in _imports(PKG / f"{name}.py")
                 if m.startswith("tntn_env.") and m.split(".")[1] in UPPER}
        assert not above, f"tntn_env/{name}.py imports {sorted(above)} from above"
    for path in sorted((PKG / "baselines").glob("*.py")):
        above = {m for m in _imports(path) if m.startswith(("tntn_env.experiments",
                                                            "tntn_env.evaluate"))}
        assert not above, f"{path.name} imports {sorted(above)}"


def test_trainer_path_default_override_and_error(tmp_path):
    assert trainer_path("hdrl") == DEFAULT_TRAINER_DIR / "hdrl_ppo.py"
    assert trainer_path("mappo.py") == trainer_path("mappo") == DEFAULT_TRAINER_DIR / "mappo.py"
    assert {trainer_path(a).name for a in TRAINER_FILES} == set(TRAINER_FILES.values())
    (tmp_path / "hdrl_ppo.py").write_text("def load_policy(path, core):\n    pass\n")
    assert trainer_path("hdrl", tmp_path) == tmp_path / "hdrl_ppo.py"
    with pytest.raises(FileNotFoundError, match=r"mappo\.py does not exist: --trainer-dir"):
        trainer_path("mappo", tmp_path)
    with pytest.raises(FileNotFoundError, match="--trainer-dir FOLDER"):
        trainer_path("no_such_trainer")


def test_evaluation_cli_names_the_flag_when_the_trainer_is_missing(tmp_path, capsys):
    from tntn_env.evaluate import main

    ck = tmp_path / "model.pt"
    ck.write_bytes(b"x")
    assert main(["--policy", "hdrl", "--checkpoint", str(ck), "--trainer-dir", str(tmp_path),
                 "--no-progress", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "hdrl_ppo.py does not exist: --trainer-dir" in err and not (tmp_path / "o").exists()


def test_one_metrics_list_and_one_tiny_preset():
    from tntn_env import evaluate
    from tntn_env.experiments import ablate, reproduce, seeds, sweep

    assert tntn_env.METRICS is SYSTEM_METRICS
    assert evaluate.STEP_COLUMNS[2:-1] == SYSTEM_METRICS
    assert set(ablate.TABLE_METRICS) <= set(SYSTEM_METRICS)
    assert sweep.Args.__dataclass_fields__["metric"].default in SYSTEM_METRICS
    assert seeds.PER_SEED_EXTRA  # per-seed tables: SYSTEM_METRICS + these
    assert reproduce.PRESETS["tiny"].overrides is TINY_OVERRIDES
    assert ablate.PRESETS["tiny"].overrides is ablate.PRESETS["quick"].overrides is TINY_OVERRIDES
    make_config("sag", **TINY_OVERRIDES)
    assert parse_overrides(format_overrides(TINY_OVERRIDES)) == TINY_OVERRIDES


def test_command_lines_are_tyro_with_the_documented_flags():
    from tntn_env import evaluate
    from tntn_env.cli import split_passthrough
    from tntn_env.experiments import ablate, seeds, sweep

    a = evaluate.parse_args(["--policy", "random", "--set", "num_subbands=4", "--set",
                             "episode_steps=5", "--no-check", "--other-env", "--overwrite"])
    assert a.set == ("num_subbands=4", "episode_steps=5") and a.no_check and a.overwrite
    own, flags = split_passthrough(["--algo", "mappo", "--seeds", "1,2", "--", "--num-envs", "4"])
    s = seeds.parse_args(own)
    assert (s.algo, s.seeds, flags) == ("mappo", "1,2", ["--num-envs", "4"])
    w = sweep.parse_args(["--study", "x", "--space", "clip_coef=uniform(0.1,0.3)", "--trials",
                          "2", "--no-prune", "--trainer-dir", "/t"])
    assert w.no_prune and w.trainer_dir == "/t" and w.trials == 2
    with pytest.raises(SystemExit) as e:
        ablate.main(["lr", "--cuda", "--no-cuda", "--dry-run"])
    assert e.value.code == 2
    for bad in (["--policy", "nope"], ["--policy", "random", "--episodes", "x"], []):
        with pytest.raises(SystemExit) as e:
            evaluate.parse_args(bad)
        assert e.value.code == 2
