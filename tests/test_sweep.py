"""Optuna sweeps (``python -m tntn_env.experiments.sweep``): workers started as real processes
share a study through SQLite or PostgreSQL, a killed worker's trial is failed by the next worker,
a finished study is only reported, and bad search spaces are refused with clear messages.

Tiny budgets (the trainer smoke tests' settings): 160 steps per seed, 2 evaluation episodes of
40 steps. The PostgreSQL test needs a server: ``TNTN_TEST_POSTGRES_URL`` (``.ci/run`` starts one
and sets it together with ``TNTN_REQUIRE_POSTGRES=1``)."""

import csv
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tntn_env.config import TINY_OVERRIDES  # noqa: E402
from tntn_env.experiments.launch import TINY_TRAINER_FLAGS  # noqa: E402

optuna = pytest.importorskip("optuna")

from tntn_env.experiments import sweep as sw  # noqa: E402
from tntn_env.experiments.seeds import check_passthrough, split_passthrough  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPACE = "learning_rate=loguniform(1e-4,1e-3) clip_coef=uniform(0.1,0.3)"
SETS = [x for k, v in TINY_OVERRIDES.items() for x in ("--set", f"{k}={v}")]  # the tiny preset
TRAINER = ["--", *TINY_TRAINER_FLAGS]
ENV = {**os.environ,
       "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


def sweep_cmd(study, storage, out, trials, seeds=1, space=SPACE, extra=()):
    return [sys.executable, "-m", "tntn_env.experiments.sweep", "--study", study,
            "--storage", storage, "--out", str(out), "--space", space, "--trials", str(trials),
            "--seeds", str(seeds), "--total-timesteps", "160", "--eval-episodes", "2", *SETS,
            "--heartbeat-interval", "1", "--grace-period", "5", "--pruner-startup-trials", "1",
            "--no-progress", *extra, *TRAINER]


def start(cmd, cwd, **kw):
    return subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def finish(proc, timeout=240):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def run_workers(n, cmd, cwd):
    procs = [start(cmd, cwd) for _ in range(n)]
    results = [finish(p) for p in procs]
    for rc, out in results:
        assert rc == 0, out[-4000:]
    return [out for _, out in results]


def processes_under(folder):
    """Processes whose working directory is inside ``folder`` (Linux /proc; else none)."""
    found = []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(p / "cwd").startswith(str(folder)):
                found.append(int(p.name))
        except OSError:
            continue
    return found


def check_study(study_name, storage, out, n_trials, space_names):
    """Every trial number once, exactly n_trials COMPLETE + PRUNED, trials.csv == storage."""
    study = optuna.load_study(study_name=study_name, storage=sw.database_url(storage))
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == n_trials, states
    assert "RUNNING" not in states and "WAITING" not in states
    with open(out / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["number"]) for r in rows] == [t.number for t in trials]
    for r, t in zip(rows, trials):
        assert r["state"] == t.state.name
        if t.state.name == "COMPLETE":
            assert math.isclose(float(r["value"]), t.value, rel_tol=1e-9)
            vals = [float(r[k]) for k in r if k.startswith("seed_") and r[k] != ""]
            assert math.isclose(sum(vals) / len(vals), t.value, rel_tol=1e-9)
        for name in space_names:
            if name in t.params:
                assert math.isclose(float(r[name]), t.params[name], rel_tol=1e-9)
    for name in ("trials.md", "history.png", "importances.png"):
        assert (out / name).stat().st_size > 0
    return study, trials


@pytest.fixture(scope="module")
def sqlite_study(tmp_path_factory):
    """Two workers started together finish a 2-trial, 2-seed study on one SQLite file."""
    cwd = tmp_path_factory.mktemp("sweep_sqlite")
    storage = f"sqlite:///{cwd / 'study.db'}"
    out = cwd / "out"
    t0 = time.perf_counter()
    outputs = run_workers(2, sweep_cmd("two", storage, out, trials=2, seeds=2), cwd)
    return {"cwd": cwd, "storage": storage, "out": out, "outputs": outputs,
            "wall": time.perf_counter() - t0}


@pytest.mark.slow
def test_two_workers_share_a_sqlite_study(sqlite_study):
    s = sqlite_study
    study, trials = check_study("two", s["storage"], s["out"], 2,
                                ["learning_rate", "clip_coef"])
    workers = {t.user_attrs.get("worker") for t in trials}
    assert len(workers) == 2, f"both workers should have run trials: {workers}"
    done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    for t in done:  # per-seed values and the training folders of every seed that ran
        seeds = t.user_attrs["seed_values"]
        assert seeds and set(seeds) <= {"1", "2"}
        for seed in seeds:
            assert (s["out"] / f"trial_{t.number}" / f"seed_{seed}" / "train.json").is_file()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert complete and all(len(t.user_attrs["seed_values"]) == 2 for t in complete)
    assert study.direction.name == "MAXIMIZE"
    md = (s["out"] / "trials.md").read_text()
    assert "| number | state | value |" in md and "best: trial" in md


@pytest.fixture
def in_process(monkeypatch):
    """Run the command's main() here (no second interpreter); restores its SIGTERM handler."""
    old = signal.getsignal(signal.SIGTERM)

    def call(cmd, cwd):
        monkeypatch.chdir(cwd)
        return sw.main(cmd[3:])

    yield call
    signal.signal(signal.SIGTERM, old)


@pytest.mark.slow
def test_rerun_of_finished_study_runs_nothing(sqlite_study, in_process, capsys):
    s = sqlite_study
    before = len(optuna.load_study(study_name="two", storage=s["storage"]).trials)
    (s["out"] / "trials.md").unlink()
    assert in_process(sweep_cmd("two", s["storage"], s["out"], trials=2, seeds=2),
                      s["cwd"]) == 0
    out = capsys.readouterr().out
    assert "is finished" in out and "nothing to run" in out
    assert "best trial" in out
    assert len(optuna.load_study(study_name="two", storage=s["storage"]).trials) == before
    assert (s["out"] / "trials.md").is_file()  # the report is written again
    # another setup may not join the finished study (in-process: no second interpreter)
    own, flags = split_passthrough(sweep_cmd("two", s["storage"], s["out"], trials=2,
                                             seeds=1)[3:])
    with pytest.raises(ValueError, match="another setup.*seeds"):
        sw.run(sw.parse_args(own), flags, log=lambda *_: None)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_share_a_postgres_study(tmp_path):
    url = os.environ.get("TNTN_TEST_POSTGRES_URL")
    if not url:
        msg = ("TNTN_TEST_POSTGRES_URL is not set: start a PostgreSQL server and set it to "
               "postgresql://user:password@127.0.0.1:5432/database (.ci/run does both)")
        if os.environ.get("TNTN_REQUIRE_POSTGRES") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    name = f"pytest_{uuid.uuid4().hex[:12]}"
    out = tmp_path / "out"
    try:
        run_workers(2, sweep_cmd(name, url, out, trials=2, seeds=1), tmp_path)
        _, trials = check_study(name, url, out, 2, ["learning_rate", "clip_coef"])
        assert len({t.user_attrs.get("worker") for t in trials}) == 2
        assert not (tmp_path / "runs").exists()  # no SQLite file next to it
    finally:
        try:
            optuna.delete_study(study_name=name, storage=sw.database_url(url))
        except KeyError:
            pass


@pytest.mark.slow
def test_killed_worker_trial_fails_and_study_completes(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    out = tmp_path / "out"
    cmd = sweep_cmd("kill", storage, out, trials=1, seeds=1)
    victim = start(cmd, tmp_path, start_new_session=True)  # its own process group
    log = out / "trial_0" / "seed_1" / "train.log"
    deadline = time.time() + 120
    while not (log.exists() and log.stat().st_size > 0) and victim.poll() is None:
        assert time.time() < deadline, "the first trial never started training"
        time.sleep(0.2)
    assert victim.poll() is None, victim.communicate()[0][-3000:]
    os.killpg(victim.pid, signal.SIGKILL)  # the worker and its trainer child
    victim.communicate(timeout=30)
    time.sleep(0.5)
    assert not processes_under(out), "the trainer outlived its killed worker"
    study = optuna.load_study(study_name="kill", storage=storage)
    assert [t.state.name for t in study.trials] == ["RUNNING"]

    run_workers(1, cmd, tmp_path)
    _, trials = check_study("kill", storage, out, 1, ["learning_rate", "clip_coef"])
    assert trials[0].state.name == "FAIL"
    assert "no heartbeat" in (out / "trials.md").read_text()
    assert not (out / "trial_0" / "seed_1" / "train.json").exists()


def test_bad_spaces_are_refused_with_clear_messages(tmp_path, in_process, capsys):
    fields = sw.trainer_fields("hdrl")

    def err(spec):
        with pytest.raises(sw.SpaceError) as e:
            sw.validate_space(sw.parse_space(spec), fields, "hdrl")
        return str(e.value)

    msg = err("lr=loguniform(1e-4,1e-3)")
    assert "'lr'" in msg and "learning_rate" in msg and "clip_coef" in msg
    assert "set by the sweep" in err("seed=int(1,5)")
    assert "unknown distribution 'normal'" in err("learning_rate=normal(0,1)")
    assert "lo > 0" in err("learning_rate=loguniform(0,1e-3)")
    assert "lo < hi" in err("clip_coef=uniform(0.3,0.1)")
    assert "int field" in err("num_envs=uniform(4,64)")
    assert "'sum'" in err("reward_mode=categorical(sum,cumulative)")
    assert "cumulative" in err("reward_mode=categorical(sum,cumulative)")
    assert "bool" in err("anneal_lr=categorical(1,0)")
    assert "takes numbers" in err("clip_coef=uniform(a,b)")
    assert "cannot parse" in err("learning_rate loguniform(1e-4,1e-3)")
    assert "given twice" in err("clip_coef=uniform(0.1,0.2) clip_coef=uniform(0.1,0.3)")
    assert "does not exist" in err(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"learning_rate": 0.001}')
    assert "'learning_rate'" in err(str(bad))

    # good spaces: the command-line form and files, and the trainer flags they map to
    space = sw.validate_space(sw.parse_space(
        "learning_rate=loguniform(1e-4,1e-3) reward_mode=categorical(cumulative,difference) "
        "anneal_lr=categorical(true,false) target_kl=categorical(None,0.02) "
        "update_epochs=int(2,10,2)"), fields, "hdrl")
    assert space["update_epochs"].args == (2, 10, 2)
    assert sw.param_flags({"learning_rate": 3e-4, "anneal_lr": False, "target_kl": None,
                           "reward_mode": "difference"}, space) == \
        ["--learning-rate", "0.0003", "--no-anneal-lr", "--target-kl", "None",
         "--reward-mode", "difference"]
    js = tmp_path / "space.json"
    js.write_text('{"learning_rate": "loguniform(1e-4,1e-3)", "num_envs": [16, 32]}')
    toml = tmp_path / "space.toml"
    toml.write_text('learning_rate = "loguniform(1e-4,1e-3)"\nnum_envs = [16, 32]\n')
    for path in (js, toml):
        sp = sw.validate_space(sw.parse_space(str(path)), fields, "hdrl")
        assert sp["num_envs"].args == (16, 32) and sp["learning_rate"].args == (1e-4, 1e-3)
    with pytest.raises(ValueError, match="varies"):
        check_passthrough(["--learning-rate", "1e-3"], swept=["learning_rate"])
    with pytest.raises(ValueError, match="--seeds"):
        check_passthrough(["--seed", "3"])
    assert sw.direction_of("qos_violation") == "minimize"
    assert sw.direction_of("spectral_efficiency") == "maximize"

    # the command line: exit 2, the message on stderr, no storage created
    assert in_process(sweep_cmd("bad", f"sqlite:///{tmp_path / 'bad.db'}", tmp_path / "o",
                                trials=1, space="lr=loguniform(1e-4,1e-3)"), tmp_path) == 2
    err = capsys.readouterr().err
    assert "parameter 'lr'" in err and "learning_rate" in err
    assert not (tmp_path / "bad.db").exists()
    assert in_process(sweep_cmd("bad", f"sqlite:///{tmp_path / 'bad.db'}", tmp_path / "o",
                                trials=1, extra=["--", "--seed", "3"]), tmp_path) == 2
    assert "--seed after '--' is set by this command" in capsys.readouterr().err


@pytest.mark.parametrize("url,shown", [
    ("postgresql://tntn:s3cr3t@db/sw", "postgresql://tntn:***@db/sw"),
    ("postgresql://:s3cr3t@db/sw", "postgresql://:***@db/sw"),
    ("postgresql://tntn@db/sw?password=s3cr3t", "postgresql://tntn@db/sw?password=***"),
    ("postgresql://db:5432/sw?sslmode=require&PASSWORD=s3cr3t&sslpassword=s3cr3t",
     "postgresql://db:5432/sw?PASSWORD=***&sslmode=require&sslpassword=***"),
    ("postgresql+psycopg2://tntn:s3%40cr3t@db/sw", "postgresql+psycopg2://tntn:***@db/sw"),
    ("sqlite:///runs/sweeps/s3cr3t.db", "sqlite:///runs/sweeps/s3cr3t.db"),  # no secret there
])
def test_storage_secrets_are_masked_in_every_form(url, shown):
    assert sw._safe_url(url) == shown
    if "@" in url or "password" in url.lower():
        secret = "s3@cr3t" if "%40" in url else "s3cr3t"  # as the driver sees it
        # in an error message of the driver too
        assert secret not in sw._safe_url(url, f"auth failed for password {secret}")


def test_unreachable_storage_error_shows_no_password(monkeypatch):
    import sqlalchemy.exc

    def refuse(url, **kw):
        raise sqlalchemy.exc.OperationalError("connect", {}, Exception(f"bad password in {url}"))

    monkeypatch.setattr(optuna.storages, "RDBStorage", refuse)
    monkeypatch.setattr(sw.time, "sleep", lambda s: None)
    with pytest.raises(RuntimeError) as e:
        sw.open_storage("postgresql://u@h/db?password=s3cr3t", 1, None)
    assert "s3cr3t" not in str(e.value) and "password=***" in str(e.value)
