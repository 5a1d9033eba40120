"""The training cache of the experiment commands: a finished run is reused only while its command
line and its code (trainer file + tntn_env modules) are unchanged."""

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
    monkeypatch.setattr(launch, "code_digest", lambda algo: "0" * 64)
    third = launch.train(job)
    assert not third.reused and len(calls) == 2 and third.checkpoint != first.checkpoint
    # another command line: trained again
    job2 = launch.TrainJob("hdrl", "sag", 2, 2048, tmp_path / "w")
    assert not launch.train(job2).reused and len(calls) == 3


def test_code_digest_differs_per_trainer():
    assert len({launch.code_digest(a) for a in launch.ALGOS}) == len(launch.ALGOS)
