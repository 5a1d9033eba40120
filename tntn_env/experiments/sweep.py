"""Hyperparameter sweeps of a trainer with Optuna, shared by any number of workers.

Usage::

    python -m tntn_env.experiments.sweep --study lr_clip --algo hdrl --scenario sag \\
        --space "learning_rate=loguniform(1e-4,1e-3) clip_coef=uniform(0.1,0.3) \\
                 reward_mode=categorical(cumulative,aggregative,difference)" \\
        --trials 40 --seeds 3 --total-timesteps 50000 --metric spectral_efficiency
    python -m tntn_env.experiments.sweep --study lr_clip ... --space space.json \\
        --storage postgresql://tntn:PASSWORD@dbhost/tntn_sweeps -- --num-envs 32

One process is one worker: it runs trials one after another. To parallelise, start the same
command several times, on one machine (SQLite storage, the default
``sqlite:///runs/sweeps/<study>.db``) or on several (a PostgreSQL URL): the workers share the
study through the storage, so they share its budget of ``--trials`` trials (COMPLETE + PRUNED;
failed trials do not count and are replaced). Every worker stays until the budget is reached
(waiting while the last trials of other workers run), then writes the report. Running the
command on a finished study runs nothing and (re)writes its report.

Each trial samples the space (TPE, with ``constant_liar`` so that concurrent workers spread
out), trains ``--seeds`` seeds (1..K) with the sampled trainer flags via
:func:`launch.train` into ``<out>/trial_<number>/seed_<s>/``, evaluates each checkpoint on the
held-out episodes ``--eval-seed ..`` (the same for every trial and seed) and reports the running
mean over seeds to a median pruner after each seed. The objective is the mean over seeds of the
metric (a name of :data:`tntn_env.core.SYSTEM_METRICS`; maximised, except ``qos_violation`` and
``uav_penalty``); the per-seed values are stored as the trial's user attributes.

Search space: ``name=distribution(args)`` items separated by spaces, or a JSON / TOML file
mapping names to such strings (a list means categorical). Names are fields of the trainer's
``Args`` (``learning_rate`` -> ``--learning-rate``); distributions: ``uniform(lo,hi)``,
``loguniform(lo,hi)`` (float fields), ``int(lo,hi[,step])``, ``logint(lo,hi)`` (int fields),
``categorical(a,b,...)`` (any field; values are checked against the field's type).

Robustness: trials send a heartbeat to the storage (``--heartbeat-interval``); a trial whose
worker died (no heartbeat for ``--grace-period`` seconds) is marked FAIL by the next worker
that looks, and the others go on. The trainer runs as a child in the worker's process group:
stop a worker with ``kill -TERM -- -<pgid>`` (or Ctrl-C in its terminal; SIGTERM/SIGINT to the
worker alone also stop its trainer and mark the trial FAIL at once). A training failure marks
its trial FAIL and the study goes on; ``--max-failures`` failures in a row stop the worker.

Output (``--out``, default ``runs/sweeps/<study>/``), written by every worker at its end:
``trials.csv`` / ``trials.md`` (number, state, value, params, per-seed values, duration,
worker, note), ``history.png`` (optimisation history), ``importances.png`` (parameter
importances: fANOVA when scikit-learn is installed, else PED-ANOVA).
"""

import dataclasses
import difflib
import json
import os
import random
import re
import signal
import socket
import statistics
import sys
import time
import types
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from ..cli import parse, split_passthrough
from ..config import SCENARIOS
from ..core import SYSTEM_METRICS
from ..evaluate import parse_sets, parse_value
from .launch import ALGOS, TrainJob, evaluate, train, trainer_file
from .seeds import check_passthrough, write_table

PROG = "python -m tntn_env.experiments.sweep"

MINIMIZE = ("qos_violation", "uav_penalty")
DISTRIBUTIONS = ("uniform", "loguniform", "int", "logint", "categorical")
# Args fields the sweep sets itself (or that are not hyperparameters): not sweepable.
NOT_SWEEPABLE = ("exp_name", "seed", "torch_deterministic", "cuda", "threads", "save_model",
                 "save_interval", "resume", "eval_only", "eval_episodes", "eval_seed",
                 "eval_greedy", "scenario", "env_overrides", "total_timesteps", "batch_size",
                 "num_iterations")
CONFIG_ATTR = "tntn_sweep"
_ITEM = re.compile(r"\s*([A-Za-z_][\w-]*)\s*=\s*([A-Za-z_]\w*)\s*\(([^()]*)\)\s*[,;]?")


class SpaceError(ValueError):
    """A bad search space (message names the parameter and what is allowed)."""


class BudgetTaken(RuntimeError):
    """The trial was created after other workers had already taken the whole budget."""


# ---------------------------------------------------------------------------------------------
# search space

def _split_args(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


def parse_space(spec) -> dict[str, tuple[str, list]]:
    """``--space`` (string or path of a .json / .toml file) -> {name: (distribution, [args])}
    with the arguments still as text (categorical values parsed later against the field)."""
    text = str(spec).strip()
    path = Path(text)
    if text.endswith((".json", ".toml")) or (len(text) < 4096 and "=" not in text
                                              and path.is_file()):
        if not path.is_file():
            raise SpaceError(f"--space file {text!r} does not exist")
        return _space_from_file(path)
    out: dict[str, tuple[str, list]] = {}
    pos = 0
    while pos < len(text):
        m = _ITEM.match(text, pos)
        if not m:
            raise SpaceError(f"--space: cannot parse {text[pos:].strip()[:60]!r}: expected items "
                             "like name=loguniform(1e-4,1e-3), separated by spaces; "
                             f"distributions: {', '.join(DISTRIBUTIONS)}")
        name = m.group(1).replace("-", "_")
        if name in out:
            raise SpaceError(f"--space: parameter {name!r} given twice")
        out[name] = (m.group(2), _split_args(m.group(3)))
        pos = m.end()
    if not out:
        raise SpaceError("--space is empty: give at least one name=distribution(args)")
    return out


def _space_from_file(path: Path) -> dict[str, tuple[str, list]]:
    if path.suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            raise SpaceError(f"--space {path}: TOML needs Python >= 3.11; use JSON") from None
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise SpaceError(f"--space {path}: invalid TOML: {e}") from None
    else:
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise SpaceError(f"--space {path}: invalid JSON: {e}") from None
    if not isinstance(data, dict) or not data:
        raise SpaceError(f"--space {path}: expected a non-empty object "
                         '{"name": "loguniform(1e-4,1e-3)", "other": ["a", "b"], ...}')
    out = {}
    for name, v in data.items():
        key = str(name).replace("-", "_")
        if isinstance(v, list):
            out[key] = ("categorical", [_choice_text(x) for x in v])
        elif isinstance(v, str):
            m = _ITEM.fullmatch(f"{key}={v.strip()}")
            if not m:
                raise SpaceError(f"--space {path}: parameter {key!r}: cannot parse {v!r}; "
                                 f"expected distribution(args) with one of "
                                 f"{', '.join(DISTRIBUTIONS)}")
            out[key] = (m.group(2), _split_args(m.group(3)))
        else:
            raise SpaceError(f"--space {path}: parameter {key!r}: expected a string like "
                             f"'uniform(0.1,0.3)' or a list of choices, got {v!r}")
    return out


def _choice_text(x) -> str:
    """A choice of a JSON / TOML list as the text parse_value reads back."""
    if x is None:
        return "None"
    if isinstance(x, bool):
        return "true" if x else "false"
    return x if isinstance(x, str) else json.dumps(x)


def _field_kind(tp) -> tuple[str, tuple]:
    """(kind, extra) of an Args annotation: ('bool'|'int'|'float'|'str'|'literal', choices),
    with ``optional`` marked by a trailing None in extra for ``X | None``."""
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(inner) < len(typing.get_args(tp))
        tp = inner[0] if len(inner) == 1 else str
        origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "literal", (tuple(typing.get_args(tp)), optional)
    for t, name in ((bool, "bool"), (int, "int"), (float, "float")):
        if tp is t:
            return name, ((), optional)
    return "str", ((), optional)


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    distribution: str
    args: tuple  # (lo, hi[, step]) or the categorical choices
    kind: str  # field type: bool / int / float / str / literal

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def spec(self) -> str:
        return f"{self.name}={self.distribution}({','.join(map(_fmt, self.args))})"


def _fmt(v) -> str:
    return repr(v) if isinstance(v, str) else str(v)


def trainer_fields(algo: str, trainer_dir: str | Path | None = None) -> dict:
    """{field name: annotation} of the trainer's ``Args`` (the trainer file imported by path)."""
    from ..trainer_files import load_module

    module = load_module(trainer_file(algo, trainer_dir))
    hints = typing.get_type_hints(module.Args)
    return {f.name: hints[f.name] for f in dataclasses.fields(module.Args)}


def validate_space(raw: dict, fields: dict, algo: str = "",
                   trainer_dir: str | Path | None = None) -> dict[str, Param]:
    """Check names against the trainer's Args and distributions against the fields' types."""
    allowed = sorted(n for n in fields if n not in NOT_SWEEPABLE)
    where = f" of {trainer_file(algo, trainer_dir)}" if algo else ""
    out = {}
    for name, (dist, args) in raw.items():
        if name not in fields or name in NOT_SWEEPABLE:
            why = ("is set by the sweep itself or is not a hyperparameter"
                   if name in fields else "is not a field of the trainer's Args")
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpaceError(f"--space: parameter {name!r} {why}{hint}; allowed parameters"
                             f"{where}: {', '.join(allowed)}")
        kind, (choices, optional) = _field_kind(fields[name])
        out[name] = Param(name, dist, _check_args(name, dist, args, kind, choices, optional),
                          kind)
    return out


def _num(name, dist, text, want):
    try:
        v = parse_value(text)
    except Exception:  # pragma: no cover - parse_value falls back to the string
        v = text
    if isinstance(v, bool) or not isinstance(v, int | float) or \
            (want is int and not isinstance(v, int)):
        raise SpaceError(f"--space: parameter {name!r}: {dist}() takes "
                         f"{'integers' if want is int else 'numbers'}, got {text!r}")
    return want(v)


def _check_args(name, dist, args, kind, choices, optional) -> tuple:
    if dist not in DISTRIBUTIONS:
        raise SpaceError(f"--space: parameter {name!r}: unknown distribution {dist!r}; allowed: "
                         f"{', '.join(DISTRIBUTIONS)}")
    type_name = {"literal": f"one of {', '.join(map(str, choices))}"}.get(kind, kind)
    if dist == "categorical":
        if not args:
            raise SpaceError(f"--space: parameter {name!r}: categorical() needs at least one "
                             "choice")
        vals = []
        for text in args:
            v = parse_value(text)
            if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                v = v[1:-1]
            ok = True
            if v is None:
                ok = optional
            elif kind == "bool":
                ok = isinstance(v, bool)
            elif kind == "int":
                ok = isinstance(v, int) and not isinstance(v, bool)
            elif kind == "float":
                ok = isinstance(v, int | float) and not isinstance(v, bool)
                v = float(v) if ok else v
            elif kind == "literal":
                v = str(v) if not isinstance(v, str) else v
                ok = v in choices
            else:
                v = str(v)
            if not ok:
                allowed = type_name + (" or None" if optional else "")
                raise SpaceError(f"--space: parameter {name!r}: choice {text!r} does not fit "
                                 f"the field (allowed: {allowed})")
            if v in vals:
                raise SpaceError(f"--space: parameter {name!r}: choice {text!r} given twice")
            vals.append(v)
        return tuple(vals)
    numeric = {"uniform": float, "loguniform": float, "int": int, "logint": int}[dist]
    field_ok = kind == "float" if numeric is float else kind == "int"
    if not field_ok:
        suggest = {"float": "uniform(lo,hi), loguniform(lo,hi) or categorical(...)",
                   "int": "int(lo,hi[,step]), logint(lo,hi) or categorical(...)"}.get(
            kind, "categorical(...)")
        article = "an" if type_name[0] in "aeiou" else "a"
        raise SpaceError(f"--space: parameter {name!r} is {article} {type_name} field: "
                         f"{dist}() does not fit; use {suggest}")
    n_args = (2, 3) if dist == "int" else (2,)
    if len(args) not in n_args:
        raise SpaceError(f"--space: parameter {name!r}: {dist}() takes "
                         f"{' or '.join(map(str, n_args))} arguments (lo, hi"
                         f"{'[, step]' if dist == 'int' else ''}), got {len(args)}")
    vals = tuple(_num(name, dist, a, numeric) for a in args)
    lo, hi = vals[0], vals[1]
    if not lo < hi:
        raise SpaceError(f"--space: parameter {name!r}: {dist}({lo}, {hi}) needs lo < hi")
    if dist in ("loguniform", "logint") and lo <= 0:
        raise SpaceError(f"--space: parameter {name!r}: {dist}() needs lo > 0, got {lo}")
    if len(vals) == 3 and vals[2] < 1:
        raise SpaceError(f"--space: parameter {name!r}: int() step must be >= 1")
    return vals


def suggest(trial, space: dict[str, Param]) -> dict:
    out = {}
    for p in space.values():
        if p.distribution == "categorical":
            out[p.name] = trial.suggest_categorical(p.name, list(p.args))
        elif p.distribution in ("uniform", "loguniform"):
            out[p.name] = trial.suggest_float(p.name, p.args[0], p.args[1],
                                              log=p.distribution == "loguniform")
        else:
            step = p.args[2] if len(p.args) == 3 else 1
            out[p.name] = trial.suggest_int(p.name, p.args[0], p.args[1], step=step,
                                            log=p.distribution == "logint")
    return out


def param_flags(params: dict, space: dict[str, Param]) -> list[str]:
    """Trainer command-line flags of sampled values (tyro: ``--x-y v``, ``--x-y/--no-x-y``)."""
    flags = []
    for name, v in params.items():
        flag = space[name].flag
        if isinstance(v, bool):
            flags.append(flag if v else "--no-" + flag[2:])
        else:
            flags += [flag, "None" if v is None else str(v)]
    return flags


# ---------------------------------------------------------------------------------------------
# storage and study

def default_storage(study: str) -> str:
    return f"sqlite:///{Path('runs') / 'sweeps' / f'{study}.db'}"


def open_storage(url: str, heartbeat_interval: int, grace_period: int | None):
    """An RDBStorage with heartbeats; retried a few times because several workers creating the
    tables of a new database at once can collide."""
    import optuna
    import sqlalchemy.exc
    from optuna.exceptions import ExperimentalWarning

    url = database_url(url)
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 120}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    last = None
    for attempt in range(8):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in optuna 4-5
                warnings.simplefilter("ignore", ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                                  heartbeat_interval=heartbeat_interval,
                                                  grace_period=grace_period)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError,
                sqlalchemy.exc.ProgrammingError) as e:
            last = e
            time.sleep(0.2 + random.random() * (attempt + 1))
    raise RuntimeError(f"cannot open the storage {_safe_url(url)}: {_safe_url(url, str(last))}")


def database_url(url: str) -> str:
    """The URL SQLAlchemy gets: a plain ``postgresql://`` (or ``postgres://``) URL names the
    driver that is installed (SQLAlchemy 2.1 defaults to psycopg 3, 2.0 to psycopg2; the
    ``sweep`` extra installs psycopg2-binary)."""
    m = re.match(r"postgres(ql)?://", url)
    if not m:
        return url
    import importlib.util

    driver = "psycopg2" if importlib.util.find_spec("psycopg2") else "psycopg"
    return f"postgresql+{driver}://" + url[m.end():]


_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|auth|cred", re.IGNORECASE)


def _url_secrets(url: str) -> list[str]:
    """The secrets of a storage URL: its password and the values of query parameters whose
    names look secret (``?password=``, ``?sslpassword=``, ``?token=``, ...)."""
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except Exception:  # not a URL SQLAlchemy parses: the regexes of _safe_url only
        return []
    out = [u.password] if u.password else []
    for k, v in u.query.items():
        if _SECRET_PARAM.search(k):
            out += [x for x in ([v] if isinstance(v, str) else v) if x]
    return sorted({str(x) for x in out}, key=len, reverse=True)


def _safe_url(url: str, text: str | None = None) -> str:
    """The storage URL without its secrets (for messages and reports): the password of
    ``user:pw@`` and ``:pw@`` masked, and every query parameter whose name looks secret. With
    ``text``: that text (an error message) with the URL's secrets masked."""
    if text is not None:
        for s in _url_secrets(url):
            text = text.replace(s, "***")
        return text
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
        u = u.set(query={k: "***" if _SECRET_PARAM.search(k) else v for k, v in u.query.items()})
        return u.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")
    except Exception:  # not a URL SQLAlchemy parses: mask by pattern
        out = re.sub(r"(://[^:/@?#]*):[^@/]*@", r"\1:***@", url)
        return re.sub(r"([?&;]([^=&;#]*)=)([^&;#]*)",
                      lambda m: m.group(1) + ("***" if _SECRET_PARAM.search(m.group(2))
                                             else m.group(3)), out)


def direction_of(metric: str) -> str:
    return "minimize" if metric in MINIMIZE else "maximize"


def _states():
    from optuna.trial import TrialState

    done = (TrialState.COMPLETE, TrialState.PRUNED)
    active = (TrialState.RUNNING, TrialState.WAITING)
    return done, active


def counts(study) -> tuple[int, int]:
    """(COMPLETE + PRUNED, RUNNING + WAITING) trials of the study."""
    done, active = _states()
    trials = study.get_trials(deepcopy=False)
    return sum(t.state in done for t in trials), sum(t.state in active for t in trials)


def _fail_stale(study) -> None:
    import optuna
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


# ---------------------------------------------------------------------------------------------
# report

def trial_rows(study, space_names, seeds) -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        per_seed = t.user_attrs.get("seed_values", {})
        note = t.user_attrs.get("note") or t.user_attrs.get("error", "")
        if t.state.name == "FAIL" and not note:
            note = "worker stopped (no heartbeat) or interrupted"
        if t.state.name == "PRUNED" and not note:
            note = f"pruned after {len(per_seed)} of {len(seeds)} seeds"
        note = " ".join(str(note).split())[:200]
        row = {"number": t.number, "state": t.state.name,
               "value": t.value if t.value is not None else ""}
        row.update({n: t.params.get(n, "") for n in space_names})
        row.update({f"seed_{s}": per_seed.get(str(s), "") for s in seeds})
        dur = t.duration.total_seconds() if t.duration is not None else ""
        row.update({"duration_s": dur, "worker": t.user_attrs.get("worker", ""), "note": note})
        rows.append(row)
    return rows


def _message_png(path: Path, title: str, text: str) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.stem}.{os.getpid()}.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def write_report(study, out: Path, config: dict, log=print) -> list[dict]:
    """trials.csv, trials.md, history.png, importances.png of the study (any worker, any time)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.ticker import MaxNLocator
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as ovm

    out.mkdir(parents=True, exist_ok=True)
    names = [p.split("=", 1)[0] for p in config["space"]]
    seeds = list(range(1, config["seeds"] + 1))
    rows = trial_rows(study, names, seeds)
    done, _ = _states()
    by_state = {}
    for r in rows:
        by_state[r["state"]] = by_state.get(r["state"], 0) + 1
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    metric = config["metric"]
    notes = [f"{config['algo']} on {config['scenario']}, objective: mean over "
             f"{config['seeds']} training seeds of {metric} ({config['direction']}) on "
             f"{config['eval_episodes']} held-out episodes from seed {config['eval_seed']}, "
             f"{config['total_timesteps']} steps per seed; budget {config['trials']} trials; "
             + ", ".join(f"{n} {k.lower()}" for k, n in sorted(by_state.items()))]
    if complete:
        b = study.best_trial
        notes.append(f"best: trial {b.number}, value {b.value:.6g}, params "
                     + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in b.params.items()))
    if config.get("overrides") or config.get("trainer_flags"):
        notes.append(f"env overrides {config.get('overrides') or {}}; trainer flags "
                     f"{' '.join(config.get('trainer_flags') or []) or '-'}")
    write_table(rows, out / "trials.csv", out / "trials.md", f"Study {study.study_name}",
                notes="\n\n".join(notes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        if complete:
            ax = ovm.plot_optimization_history(study, target_name=metric)
            ax.set_xlabel("trial number")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(f"{metric} (mean over seeds)")
            ax.set_title("", loc="left")  # optuna's own title
            ax.set_title(f"{study.study_name}: optimisation history ({config['direction']})")
            _save(ax.figure, out / "history.png")
        else:
            _message_png(out / "history.png", f"{study.study_name}: optimisation history",
                         "no complete trial yet")
        msg = None
        if len(names) < 2:
            msg = f"importances need at least two parameters (the space has {len(names)})"
        elif len(complete) < 2:
            msg = f"importances need at least two complete trials ({len(complete)} so far)"
        if msg is None:
            try:
                evaluator, label = _importance_evaluator()
                ax = ovm.plot_param_importances(study, evaluator=evaluator, target_name=metric)
                ax.set_xlabel(f"importance for {metric} ({label})")
                ax.set_ylabel("hyperparameter")
                ax.set_title("", loc="left")  # optuna's own title
                ax.set_title(f"{study.study_name}: parameter importances")
                _save(ax.figure, out / "importances.png")
            except Exception as e:  # e.g. constant values: say so instead of crashing
                msg = f"importances could not be computed: {type(e).__name__}: {e}"[:300]
        if msg is not None:
            _message_png(out / "importances.png", f"{study.study_name}: parameter importances",
                         msg)
    import matplotlib.pyplot as plt

    plt.close("all")
    log(f"report: {out / 'trials.md'}, trials.csv, history.png, importances.png")
    return rows


def _importance_evaluator():
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    try:
        import sklearn  # noqa: F401
    except ImportError:
        return PedAnovaImportanceEvaluator(), "PED-ANOVA"
    return FanovaImportanceEvaluator(seed=0), "fANOVA"


# ---------------------------------------------------------------------------------------------
# worker

@dataclass
class Args:
    """Optuna sweep of a trainer's hyperparameters; run the same command in several processes /
    on several machines to parallelise. Trainer flags fixed for every trial go after '--'."""

    study: str
    """study name (shared by all its workers)"""
    space: str
    """'name=dist(args) ...' or a .json/.toml file; dist: (log)uniform, (log)int, categorical"""
    trials: int
    """budget of the whole study: COMPLETE + PRUNED trials over all workers"""
    algo: Literal[ALGOS] = "hdrl"
    """the trainer (trainers/hdrl_ppo.py, mappo.py, ppo_single.py)"""
    scenario: Literal[SCENARIOS] = "sag"
    """scenario of training and evaluation"""
    seeds: int = 1
    """training seeds per trial (1..K)"""
    total_timesteps: int = 50_000
    """env steps per training run"""
    metric: Literal[SYSTEM_METRICS] = "spectral_efficiency"
    """objective: mean over seeds of this metric (min. qos_violation, uav_penalty; else max.)"""
    storage: str | None = None
    """Optuna storage URL (None: sqlite:///runs/sweeps/<study>.db; postgresql://... to share)"""
    eval_episodes: int = 8
    """held-out evaluation episodes per checkpoint"""
    eval_seed: int = 10_000
    """first held-out evaluation seed (the same for every trial and seed)"""
    set: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """config override KEY=VALUE for training and evaluation, repeatable"""
    out: str | None = None
    """output folder (None: runs/sweeps/<study>)"""
    heartbeat_interval: int = 60
    """seconds between a running trial's heartbeats"""
    grace_period: int | None = None
    """seconds without heartbeat before a running trial fails (None: 2 x heartbeat interval)"""
    pruner_startup_trials: int = 5
    """median pruner: complete trials before any pruning"""
    no_prune: bool = False
    """never prune"""
    max_failures: int = 3
    """stop this worker after this many failed trials in a row"""
    sampler_seed: int | None = None
    """seed of the TPE sampler (give workers different seeds)"""
    threads: int = 1
    """torch threads per process"""
    no_progress: bool = False
    """no progress bar"""
    trainer_dir: str | None = None
    """folder of the trainer files (None: the repository's trainers/)"""


def parse_args(argv) -> Args:
    """The command's own arguments (before ``--``); exit code 2 on bad ones."""
    return parse(Args, argv, PROG, Args.__doc__)


def _config(args, space, overrides, flags) -> dict:
    return {"algo": args.algo, "scenario": args.scenario,
            "space": [p.spec() for p in space.values()], "metric": args.metric,
            "direction": direction_of(args.metric), "seeds": args.seeds,
            "total_timesteps": args.total_timesteps, "eval_episodes": args.eval_episodes,
            "eval_seed": args.eval_seed,
            "overrides": {k: list(v) if isinstance(v, tuple) else v
                          for k, v in overrides.items()},
            "trainer_flags": list(flags), "trials": args.trials}


def _check_same_setup(study, config: dict, storage_url: str) -> None:
    """A study keeps the setup it was created with; another command may not join it."""
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is None:
        study.set_user_attr(CONFIG_ATTR, config)
        return
    diff = [k for k in config if k != "trials" and stored.get(k) != config[k]]
    if diff:
        k = diff[0]
        raise ValueError(f"study {study.study_name!r} in {_safe_url(storage_url)} was created "
                         f"with another setup: {k} is {stored.get(k)!r} there, {config[k]!r} "
                         f"here (differs: {', '.join(diff)}); use another --study name")


def run(args, trainer_flags=(), log=print) -> dict:
    """Run one worker of the study described by parsed ``args``; returns a summary dict."""
    import optuna
    from optuna.trial import TrialState

    if args.trials < 1 or args.seeds < 1 or args.total_timesteps < 1:
        raise ValueError("--trials, --seeds and --total-timesteps must be >= 1")
    if args.eval_episodes < 1 or args.eval_seed < 0:
        raise ValueError("--eval-episodes must be >= 1 and --eval-seed >= 0")
    if args.heartbeat_interval < 1:
        raise ValueError("--heartbeat-interval must be >= 1 s")
    fields = trainer_fields(args.algo, args.trainer_dir)
    space = validate_space(parse_space(args.space), fields, args.algo, args.trainer_dir)
    flags = list(trainer_flags)
    check_passthrough(flags, swept=[p.name for p in space.values()])
    overrides = parse_sets(args.set)
    config = _config(args, space, overrides, flags)
    url = args.storage or default_storage(args.study)
    out = Path(args.out or Path("runs") / "sweeps" / args.study)
    seeds = list(range(1, args.seeds + 1))
    N = args.trials
    worker_id = f"{socket.gethostname()}:{os.getpid()}"

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url, args.heartbeat_interval, args.grace_period)
    sampler = optuna.samplers.TPESampler(constant_liar=True, seed=args.sampler_seed)
    pruner = (optuna.pruners.NopPruner() if args.no_prune else
              optuna.pruners.MedianPruner(n_startup_trials=args.pruner_startup_trials,
                                          n_warmup_steps=0))
    study = optuna.create_study(storage=storage, study_name=args.study, sampler=sampler,
                                pruner=pruner, direction=config["direction"],
                                load_if_exists=True)
    if study.direction.name.lower() != config["direction"]:
        raise ValueError(f"study {args.study!r} exists with direction "
                         f"{study.direction.name.lower()}; --metric {args.metric} needs "
                         f"{config['direction']}")
    _check_same_setup(study, config, url)

    def objective(trial):
        trial.set_user_attr("worker", worker_id)
        done, active = _states()
        ahead = [t for t in study.get_trials(deepcopy=False, states=(*done, *active))
                 if t.number < trial.number]
        if len(ahead) >= N:
            trial.set_user_attr("note", "not run: the budget was taken by other workers")
            raise BudgetTaken("budget taken by other workers")
        params = suggest(trial, space)
        extra = flags + param_flags(params, space)
        values = {}
        for i, s in enumerate(seeds):
            wd = out / f"trial_{trial.number}" / f"seed_{s}"
            job = TrainJob(args.algo, args.scenario, s, args.total_timesteps, wd,
                           overrides=overrides, extra=extra, threads=args.threads,
                           trainer_dir=args.trainer_dir)
            try:
                res = train(job)
                summ = evaluate(args.algo, args.scenario, args.eval_seed, args.eval_episodes,
                                wd / "eval", checkpoint=res.checkpoint, overrides=overrides,
                                threads=args.threads, trainer_dir=args.trainer_dir)
            except KeyboardInterrupt as e:  # SIGINT / SIGTERM: optuna marks the trial FAIL
                trial.set_user_attr("error", f"seed {s}: interrupted ({e or 'SIGINT'})")
                raise
            except Exception as e:
                trial.set_user_attr("error", f"seed {s}: {type(e).__name__}: {e}"[-2000:])
                raise RuntimeError(str(e)) from e
            values[str(s)] = float(summ["metrics"][args.metric]["mean"])
            trial.set_user_attr("seed_values", dict(values))
            running = statistics.fmean(values.values())
            trial.report(running, step=i)
            if i < len(seeds) - 1 and trial.should_prune():
                raise optuna.TrialPruned(f"running mean {running:.4g} after {i + 1} seeds")
        return statistics.fmean(values.values())

    state = {"mine": 0, "fails": 0, "stop_reason": None}
    d0, _ = counts(study)
    bar = None
    if not args.no_progress and d0 < N:
        from tqdm.auto import tqdm

        bar = tqdm(total=N, desc=f"{args.study} [{worker_id}]", unit="trial", file=sys.stderr,
                   dynamic_ncols=True)

    def show(study_done: int) -> None:
        if bar is None:
            return
        bar.n = min(study_done, N)
        try:
            best = f"{study.best_value:.4g}"
        except ValueError:
            best = "-"
        bar.set_postfix_str(f"mine={state['mine']} best={best}")
        bar.refresh()

    def after_trial(study_, frozen) -> None:
        state["mine"] += 1
        if frozen.state == TrialState.FAIL:
            if "note" in frozen.user_attrs:  # surplus trial: the budget is taken
                study_.stop()
                return
            state["fails"] += 1
            err = frozen.user_attrs.get("error", "failed")
            msg = f"trial {frozen.number} failed: {err.splitlines()[0] if err else ''}"
            (bar.write if bar is not None else log)(msg[:300])
            if state["fails"] >= args.max_failures:
                state["stop_reason"] = (f"{state['fails']} failed trials in a row; last: "
                                        f"{err[-1500:]}")
                study_.stop()
        else:
            state["fails"] = 0
            val = f"{frozen.value:.4g}" if frozen.value is not None else "pruned"
            msg = (f"trial {frozen.number} {frozen.state.name.lower()}: {val} "
                   f"{frozen.params}")
            (bar.write if bar is not None else log)(msg)
        d, a = counts(study_)
        show(d)
        if d + a >= N:  # nothing left to start: wait outside optimize
            study_.stop()

    max_trials = optuna.study.MaxTrialsCallback(N, states=(TrialState.COMPLETE,
                                                           TrialState.PRUNED))
    poll = max(1.0, min(10.0, args.heartbeat_interval / 2))
    if d0 >= N:
        log(f"study {args.study!r} is finished ({d0} of {N} trials done): nothing to run")
    try:
        while True:
            _fail_stale(study)
            d, a = counts(study)
            show(d)
            if d >= N or state["stop_reason"]:
                break
            if d + a >= N:  # the last trials run elsewhere: wait for them (or their failure)
                time.sleep(poll)
                continue
            study.optimize(objective, n_trials=None, catch=(RuntimeError,),
                           callbacks=[max_trials, after_trial])
    finally:
        if bar is not None:
            bar.close()
    rows = write_report(study, out, config, log)
    d, _ = counts(study)
    result = {"study": args.study, "storage": _safe_url(url), "out": str(out), "done": d,
              "trials_run_here": state["mine"], "rows": rows}
    if state["stop_reason"]:
        raise RuntimeError(f"worker stopped: {state['stop_reason']}")
    try:
        b = study.best_trial
        log(f"study {args.study!r}: {d} of {N} trials done; best trial {b.number}: "
            f"{args.metric} {b.value:.6g} with {b.params}")
    except ValueError:
        log(f"study {args.study!r}: {d} of {N} trials done; no complete trial")
    return result


def _sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    own, trainer_flags = split_passthrough(sys.argv[1:] if argv is None else argv)
    args = parse_args(own)
    signal.signal(signal.SIGTERM, _sigterm)  # like Ctrl-C: the trainer child is killed too
    try:
        run(args, trainer_flags)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the running trial is marked FAIL", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

