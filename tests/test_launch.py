"""The caches of the experiment commands: a finished training run (evaluation) is reused only while
its command line (arguments) and its code are unchanged: trainer file + tntn_env modules
(+ baselines for evaluations)."""

import json
import subprocess

from tntn_env.experiments import launch


def _fake_trainer(calls):
    def run(cmd, cwd, stdout, stderr, env):
        calls.append(cmd)
        ck = cwd / "runs" / f"r{len(calls)}" / "checkpoint.pt"
        ck.parent.mkdir(parents=True)
        ck.write_bytes(b"x")
        return subprocess.CompletedProcess(cmd, 0)
    return run


def test_reuse_needs_same_command_and_code(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(launch.subprocess, "run", _fake_trainer(calls))
    job = launch.TrainJob("hdrl", "sag", 1, 2048, tmp_path / "w")
    first = launch.train(job)
    assert not first.reused and len(calls) == 1
    key = json.loads((tmp_path / "w" / "train.json").read_text())["key"]
    assert key["code"] == launch.code_digest("hdrl") and len(key["code"]) == 64
    again = launch.train(job)
    assert again.reused and again.checkpoint == first.checkpoint and len(calls) == 1
    # other code (an edited trainer or environment module): trained again
    monkeypatch.setattr(launch, "code_digest", lambda algo, trainer_dir=None: "0" * 64)
    third = launch.train(job)
    assert not third.reused and len(calls) == 2 and third.checkpoint != first.checkpoint
    # another command line: trained again
    job2 = launch.TrainJob("hdrl", "sag", 2, 2048, tmp_path / "w")
    assert not launch.train(job2).reused and len(calls) == 3


def test_code_digest_differs_per_trainer():
    assert len({launch.code_digest(a) for a in launch.ALGOS}) == len(launch.ALGOS)


def test_evaluation_reuse_needs_same_code(tmp_path, monkeypatch):
    calls = []

    def fake_run(args):
        calls.append(args.policy)
        return {"policy": args.policy, "metrics": {}, "out_dir": str(args.out)}

    monkeypatch.setattr(launch, "run_evaluation", fake_run)
    out = tmp_path / "ev"
    out.mkdir()
    launch.evaluate("random", "sag", 10_000, 2, out)
    assert json.loads((out / "summary.json").read_text())["code"] == launch.eval_digest("random")
    launch.evaluate("random", "sag", 10_000, 2, out)
    assert calls == ["random"]  # reused
    # edited baselines/env
    monkeypatch.setattr(launch, "eval_digest", lambda policy, trainer_dir=None: "f" * 64)
    launch.evaluate("random", "sag", 10_000, 2, out)
    assert calls == ["random", "random"]


def test_eval_digest_covers_the_trainer_of_learned_policies():
    assert launch.eval_digest("hdrl") != launch.eval_digest("random")
    assert launch.eval_digest("random") == launch.eval_digest("greedy")  # same files
