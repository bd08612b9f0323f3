"""Worker isolation: allowlisted environment, own process group and scratch, hard deadline."""

from __future__ import annotations

import os
import time

import pytest
from kernelwright.isolation import Worker, WorkerOverLimit, WorkerTimeout


def _worker(fixtures_dir, tmp_path, deadline_s: float, memory_limit: int | None = None) -> Worker:
    return Worker(
        "probe_worker",
        tmp_path / "scratch",
        deadline_s,
        memory_limit=memory_limit,
        env_extra={
            "PYTHONPATH": os.pathsep.join(
                [str(fixtures_dir / "workers"), os.environ.get("PYTHONPATH", "")]
            )
        },
    )


def test_secrets_do_not_reach_the_worker(fixtures_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    with _worker(fixtures_dir, tmp_path, 60) as worker:
        worker.send({"action": "env"})
        message = worker.recv()
        end = worker.finish()
    env = message["env"]
    assert not {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AWS_SECRET_ACCESS_KEY"} & env.keys()
    assert "sk-test-secret" not in repr(env)
    scratch = str((tmp_path / "scratch").resolve())
    assert message["cwd"] == scratch and env["HOME"] == scratch and env["TMPDIR"] == scratch
    assert message["pgid"] != os.getpgid(0)  # its own process group
    # what the worker printed went to its log, not into the result channel
    assert message["kind"] == "env" and '"status": "correct"' in end.stdout


def test_deadline_kills_the_whole_process_group(fixtures_dir, tmp_path):
    start = time.monotonic()
    with _worker(fixtures_dir, tmp_path, 5) as worker:
        worker.send({"action": "hang"})
        child = worker.recv()["pid"]
        with pytest.raises(WorkerTimeout):
            worker.recv()
        end = worker.finish()
    assert end.timed_out and time.monotonic() - start < 30
    for _ in range(50):  # the grandchild dies with the group
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the worker's child survived the deadline")


def test_memory_watchdog_kills_a_hoarding_worker(fixtures_dir, tmp_path):
    with _worker(fixtures_dir, tmp_path, 60, memory_limit=300 << 20) as worker:
        worker.send({"action": "hog", "bytes": 600 << 20})
        with pytest.raises(WorkerOverLimit, match="GiB of host memory"):
            while worker.recv() is not None:
                pass
        end = worker.finish()
    assert not end.timed_out and "host memory" in worker.over_limit
