"""Shared test setup.

- All state goes to one temporary KERNELWRIGHT_HOME per test session; builds are
  content-addressed, so tests share the build cache safely and each extension builds once.
  Under pytest-xdist (`-n 2 --dist loadfile` in pyproject's addopts) each worker is a session
  with a home of its own, and gets whole test files (but for ONE_BY_ONE's, handed out test by
  test), so a file's tests still share their builds.
  Not one home for all workers: a test that checks no worker process or scratch folder is left
  in the home would see the other worker's, and two workers building one candidate at once both
  build it (the second finds the first's folder not yet sealed: see compiler/seal.py).
- No test reaches the network: inet sockets refuse to connect in the test process.
- `gpu` tests skip where no CUDA GPU is visible.
- `cli` runs `python -m kernelwright.cli` in a fresh process, as a user would: for true end-to-end
  tests. `cli_in_process` runs the same command in this process (typer's CliRunner), with the same
  result shape: for bad input and reviewing the history, where a fresh process would only add
  an `import torch`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# shared test helpers (tests/fakes.py) import as plain modules under --import-mode=importlib
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def kw_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # KERNELWRIGHT_TEST_HOME reuses a build cache across sessions (e.g. after benchmarks/suite.py)
    reuse = os.environ.get("KERNELWRIGHT_TEST_HOME")
    return Path(reuse) if reuse else tmp_path_factory.mktemp("kwhome")


@pytest.fixture(autouse=True)
def _isolated_home(kw_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERNELWRIGHT_HOME", str(kw_home))


@pytest.fixture(autouse=True)
def _no_idle_timers() -> Any:
    """End the reference timers an in-process evaluation kept for its problem's next candidate
    (verifier/timer_pool) when the test ends: each test starts with none, and none is mistaken
    for a worker that a later test's run left behind."""
    yield
    evaluate = sys.modules.get("kernelwright.evaluate")
    if evaluate is not None:
        evaluate._timers.clear()


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError("tests must not reach the network")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def _has_gpu() -> bool:
    from kernelwright.targets import torch_has_cuda, visible_gpus

    return torch_has_cuda() and visible_gpus() > 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# Files whose tests are independent of each other and each build candidates of their own: with
# `--dist loadfile` they are handed out test by test, not whole; being one-test units they go
# last (xdist hands out the units with the most tests first), so they even out the workers' ends.
# (Not xdist_group: with pytest 9.2 and xdist 3.8 `--dist loadgroup` groups nothing.)
ONE_BY_ONE = {"test_anticheat.py"}


@pytest.hookimpl(optionalhook=True)  # xdist's hook: `-p no:xdist` runs without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist") != "loadfile":
        return None  # xdist's own
    from xdist.scheduler import LoadScopeScheduling

    class FilesAndSomeTests(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return nodeid if path.rsplit("/", 1)[-1] in ONE_BY_ONE else path

    return FilesAndSomeTests(config, log)


def run_cli(
    *args: str, env_extra: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run `python -m kernelwright.cli ARGS` in a fresh process, as a user would."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "kernelwright.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.fixture
def cli():
    return run_cli


def run_cli_in_process(
    *args: str, env_extra: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `kernelwright ARGS` in this process (typer's CliRunner; `env_extra` set for the call
    only); a traceback is an exception here. Returns what `run_cli` does."""
    from kernelwright.cli import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, list(args), input=input, env=env_extra, catch_exceptions=False)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def cli_in_process():
    return run_cli_in_process


@pytest.fixture
def saved_run(tmp_path: Path) -> dict[str, str]:
    """A history (`db`, an SQLite URL) with one finished evaluate `run` of one correct candidate
    (fixtures' scale_add_ok.py on scale_add.py). The database is in a folder of its own: an
    in-process command leaves its connection (and SQLite's -wal and -shm files) open."""
    from kernelwright.problem import load_problem
    from kernelwright.records import EvaluationResult, Status
    from kernelwright.store import repo
    from kernelwright.store.db import open_engine

    problem_path = FIXTURES / "problems" / "scale_add.py"
    candidate = FIXTURES / "candidates" / "scale_add_ok.py"
    (tmp_path / "history").mkdir()
    db = f"sqlite:///{tmp_path / 'history' / 'h.db'}"
    engine = open_engine(db)
    p = load_problem(problem_path)
    problem = {"content_hash": p.content_hash, "name": p.name, "path": str(p.path), "source": ""}
    result = EvaluationResult(
        status=Status.CORRECT,
        reason="",
        target="cpu",
        problem=str(problem_path),
        problem_hash="x",
        candidate="c",
        trials=3,
        speedup=1.5,
    )
    run = repo.start_run(engine, "evaluate", "cpu", {})
    repo.add_candidate(engine, run, problem, candidate.read_text(), "c", result)
    repo.finish_run(engine, run)
    engine.dispose()
    return {"db": db, "run": run}


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES
