"""Worker isolation: allowlisted environment, own process group and scratch, hard deadline."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kernelwright import paths
from kernelwright.runner import confine, isolation
from kernelwright.runner.isolation import Worker, WorkerOverLimit, WorkerTimeout, sandbox


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


def _with_token(token: str) -> list[int]:
    """Host pids of processes whose command line holds `token`."""
    found = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and token in open(f"/proc/{name}/cmdline", "rb").read().decode():
                found.append(int(name))
        except OSError:
            pass
    return found


def test_deadline_kills_the_whole_process_group(fixtures_dir, tmp_path):
    token = f"kw-probe-{uuid.uuid4().hex}"
    start = time.monotonic()
    with _worker(fixtures_dir, tmp_path, 5) as worker:
        worker.send({"action": "hang", "token": token})
        assert worker.recv()["kind"] == "children"
        for _ in range(50):  # the second child may still be starting on a loaded machine
            if len(_with_token(token)) == 2:
                break
            time.sleep(0.1)
        assert len(_with_token(token)) == 2
        with pytest.raises(WorkerTimeout):
            worker.recv()
        end = worker.finish()
    assert end.timed_out and time.monotonic() - start < 30
    for _ in range(50):  # both children die, the one that left the process group included
        if not _with_token(token):
            break
        time.sleep(0.1)
    else:
        pytest.fail("a child of the worker survived the deadline")


def _slow_start(fixtures_dir, tmp_path, start_s: float, deadline_s: float) -> Worker:
    path = os.pathsep.join([str(fixtures_dir / "workers"), os.environ.get("PYTHONPATH", "")])
    return Worker(
        "slow_start_worker",
        tmp_path / "scratch",
        deadline_s,
        env_extra={"PYTHONPATH": path, "KW_START_S": str(start_s)},
        startup_s=60,
    )


def test_a_job_s_clock_starts_when_its_worker_is_ready_not_when_it_was_started(
    fixtures_dir, tmp_path
):
    # A loaded machine takes seconds to start Python and import torch: that is not the job's time
    # (CI once failed a reference for an 8 s --timeout this way).
    start = time.monotonic()
    with _slow_start(fixtures_dir, tmp_path, start_s=3, deadline_s=2) as worker:
        worker.send({"work_s": 0.2})
        assert worker.recv() == {"kind": "done"}
        assert time.monotonic() - start > 3  # longer than its 2 s, counted from the start
        # the ready line counts once: from the worker's first line only
        assert worker.recv() == {"kind": "ready"}
        worker.finish()
    with _slow_start(fixtures_dir, tmp_path / "2", start_s=1, deadline_s=2) as worker:
        worker.send({"work_s": 30})
        began = time.monotonic()
        with pytest.raises(WorkerTimeout):
            worker.recv()
        assert time.monotonic() - began < 15  # the job's own limit still holds
        worker.finish()


def test_the_sandbox_hides_other_processes_and_the_rest_of_the_scratch(fixtures_dir):
    box = sandbox()
    if box.level not in ("bwrap", "namespaces"):
        pytest.skip(f"no full sandbox on this machine: {box.note}")
    token = f"sk-kw-{uuid.uuid4().hex}"
    secret = paths.scratch_dir() / f"refs-test-{uuid.uuid4().hex[:8]}" / "ref_0.txt"
    secret.parent.mkdir(parents=True)
    secret.write_text(token)
    scratch = paths.scratch_dir() / f"eval-test-{uuid.uuid4().hex[:8]}" / "candidate"
    # A process holding an API key, like the shell that started kernelwright.
    victim = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env={**os.environ, "KEY": token}
    )
    try:
        with Worker(
            "probe_worker",
            scratch,
            60,
            env_extra={"PYTHONPATH": str(fixtures_dir / "workers")},
        ) as worker:
            relative = os.path.relpath(secret, scratch)
            worker.send({"action": "snoop", "token": token, "paths": [str(secret), relative]})
            seen = worker.recv()
            worker.finish()
    finally:
        victim.kill()
        victim.wait()
    assert seen["kind"] == "snoop"
    assert seen["secret"] == []  # neither by its absolute path nor through `..`
    assert seen["environ"] == []
    # its own pid namespace: the worker is its first process, or (bwrap) the child of bwrap's
    assert victim.pid not in seen["pids"] and len(seen["pids"]) <= 3 and seen["ppid"] in (0, 1)
    assert secret.read_text() == token  # hidden from the worker, not touched
    assert seen["capeff"] == 0  # so it cannot unmount what hides the scratch root
    if not box.note:  # the filesystem read-only but where workers must write
        assert seen["w"] == {"/etc": False, "/tmp": True, ".": True}


def test_a_sandbox_that_does_not_work_here_is_not_used(monkeypatch, fixtures_dir, tmp_path):
    assert confine._probe_namespaces(("/bin/false",)) != ""  # says why, one line
    assert confine._probe_bwrap("/bin/false").startswith("bwrap: ")
    monkeypatch.setenv("KERNELWRIGHT_SANDBOX", "network")
    isolation.sandbox.cache_clear()
    try:
        assert isolation.sandbox().level in ("network", "none")
        with _worker(fixtures_dir, tmp_path, 60) as worker:  # workers still run
            worker.send({"action": "env"})
            assert worker.recv()["kind"] == "env"
            worker.finish()
    finally:
        isolation.sandbox.cache_clear()


def test_memory_watchdog_kills_a_hoarding_worker(fixtures_dir, tmp_path):
    with _worker(fixtures_dir, tmp_path, 60, memory_limit=300 << 20) as worker:
        worker.send({"action": "hog", "bytes": 600 << 20})
        with pytest.raises(WorkerOverLimit, match="GiB of host memory"):
            while worker.recv() is not None:
                pass
        end = worker.finish()
    assert not end.timed_out and "host memory" in worker.over_limit


def test_a_flooded_log_and_an_endless_message_cost_the_parent_little(fixtures_dir, tmp_path):
    with _worker(fixtures_dir, tmp_path, 60) as worker:
        worker.MAX_MESSAGE = 4 << 20  # the real limit is 16 MB; keep the test small
        worker.send({"action": "flood", "log_mb": 40, "line_mb": 8})
        message = worker.recv()
        assert message["kind"] == "garbled" and "over" in message["text"]
        worker.kill()
        end = worker.finish()
    # only the tail of the 40 MB log is read and kept
    assert len(end.stdout) < Worker.LOG_LIMIT + 100
    assert end.stdout.startswith("[... ") and end.stdout.rstrip().endswith("x")


def test_kernelwright_its_state_and_python_stay_read_only_even_under_tmp(fixtures_dir):
    box = sandbox()
    if box.level not in ("bwrap", "namespaces") or (box.level == "namespaces" and box.note):
        pytest.skip(f"no read-only filesystem in the sandbox here: {box.note or box.level}")
    import kernelwright

    home = paths.home()  # under /tmp in the tests, which workers may write
    seals = home / "seals"
    seals.mkdir(exist_ok=True)
    scratch = paths.scratch_dir() / f"eval-test-{uuid.uuid4().hex[:8]}" / "candidate"
    own_shelf = paths.shelf(fixtures_dir / "candidates" / "scale_add_ok.py")
    other_shelf = paths.shelf(fixtures_dir / "candidates" / "scale_add_wrong.py")
    folders = {
        "seals": str(seals),
        "home": str(home),
        "code": str(Path(kernelwright.__file__).resolve().parent),
        "python": sys.prefix,
        "builds": str(paths.builds_dir()),
        "precompiled headers": str(paths.pch_dir()),
        "own shelf": str(own_shelf),
        "another candidate's shelf": str(other_shelf),
        "scratch": str(scratch),
        "tmp": "/tmp",
    }
    with Worker(
        "probe_worker",
        scratch,
        60,
        env_extra={"PYTHONPATH": str(fixtures_dir / "workers")},
        writable=[own_shelf],
    ) as worker:
        worker.send({"action": "write", "paths": list(folders.values())})
        can = worker.recv()["can"]
        worker.finish()
    allowed = {name for name, folder in folders.items() if can[folder]}
    assert allowed == {"own shelf", "scratch", "tmp"}


def test_ctrl_c_also_ends_the_clis_own_helper_processes():
    import threading

    result = {}

    def make() -> None:  # as the CLI makes a precompiled header
        command = [sys.executable, "-c", "import time; time.sleep(60)"]
        result["proc"] = isolation.run_tracked(command, 120)

    thread = threading.Thread(target=make)
    started = time.monotonic()
    thread.start()
    for _ in range(100):
        if isolation._HELPERS:
            break
        time.sleep(0.05)
    assert isolation.kill_all() >= 1
    thread.join(timeout=10)
    assert not thread.is_alive() and time.monotonic() - started < 10
    assert result["proc"].returncode < 0
