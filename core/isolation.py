"""Run untrusted code in a separate worker process with a hard deadline.

Guarantees, for every worker started through `Worker`:

- it is a fresh Python interpreter (`python -m <module>`), never a fork of the orchestrator, so it
  shares no CUDA context, no open database handle and no in-memory secrets with it;
- its environment is built from an allowlist: API keys and other secrets never reach it;
- it runs in its own process group and scratch working directory; on its deadline the whole group
  (nvcc, ninja, any children it spawned) is killed with SIGKILL;
- it has no network where the OS allows a private network namespace (`unshare -n`; as root, or
  `unshare -rn` for other users): any connect fails; CUDA works there;
- a watchdog kills the group when it holds more host memory (RSS) or more processes than allowed;
  RLIMIT_AS is never used, since the CUDA driver reserves huge address ranges;
- its stdout and stderr go to log files (what a candidate prints cannot pose as a result);
- structured messages travel as JSON lines over a dedicated pipe (worker to parent) and the worker's
  stdin (parent to worker).

The child side uses `Channel.from_argv()`.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import select
import shutil
import signal
import site
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Variables a worker may inherit. Everything else (OPENAI_API_KEY, ANTHROPIC_API_KEY, cloud
# credentials, tokens) is dropped. HOME and TMPDIR are replaced by the scratch folder.
ENV_ALLOWLIST = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LD_LIBRARY_PATH",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "CUDA_HOME",
    "CUDA_PATH",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
    "TORCH_CUDA_ARCH_LIST",
    "MAX_JOBS",
    "CC",
    "CXX",
    "CPATH",
    "LIBRARY_PATH",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)


def worker_env(scratch: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker: allowlisted variables, a private HOME/TMPDIR, and `extra`."""
    env = {name: os.environ[name] for name in ENV_ALLOWLIST if name in os.environ}
    # The interpreter's own bin folder first, so tools pip installed beside it (ninja) are found.
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in (bin_dir, env.get("PATH", "")) if p)
    env["HOME"] = str(scratch)
    env["TMPDIR"] = str(scratch)
    # A private HOME would hide packages installed with `pip install --user`.
    env["PYTHONUSERBASE"] = site.getuserbase()
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def _limit_child() -> None:
    """Runs in the child before exec: no core dumps, bounded file sizes and open files."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = OPEN_FILES_LIMIT if hard == resource.RLIM_INFINITY else min(OPEN_FILES_LIMIT, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, cap), cap))


FILE_SIZE_LIMIT = 64 << 30  # one file; outputs are written as files, a runaway writer stops here
OPEN_FILES_LIMIT = 65536
MAX_PROCESSES = 512  # compilers fork a few dozen; a fork bomb fork thousands


def default_memory_limit() -> int:
    """Host memory a worker's process group may hold: half of the machine's RAM."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError):
        return 16 << 30


@functools.cache
def network_isolation() -> tuple[str, ...]:
    """The command prefix that gives a worker a private, empty network namespace, if any works."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    prefix = (unshare, "-n") if os.geteuid() == 0 else (unshare, "-rn")
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return prefix if probe.returncode == 0 else ()


def _group_usage(pgid: int) -> tuple[int, int]:
    """(resident bytes, process count) of a process group, read from /proc."""
    rss_pages = count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        # after the command name: state ppid pgrp ... ; rss is field 24 of stat (index 21 here)
        if int(fields[2]) == pgid:
            count += 1
            rss_pages += int(fields[21])
    return rss_pages * os.sysconf("SC_PAGE_SIZE"), count


@dataclass(frozen=True)
class Exit:
    """How a worker ended."""

    returncode: int | None
    timed_out: bool
    stdout: str
    stderr: str

    def describe(self) -> str:
        if self.timed_out:
            return "killed at its deadline"
        code = self.returncode
        if code is not None and code < 0:
            try:
                return f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with code {code}"


class WorkerTimeout(Exception):
    """The worker did not answer before its deadline; it has been killed."""


class WorkerOverLimit(Exception):
    """The worker's group held too much memory or too many processes; it has been killed."""


_LIVE: set[Worker] = set()  # every started worker not yet finished, for kill_all()
_LIVE_LOCK = threading.Lock()
_CLOSING = False  # set at interpreter exit: a worker started after that kills itself


def kill_all() -> int:
    """SIGKILL every live worker's process group (Ctrl-C of a run); return how many."""
    with _LIVE_LOCK:
        workers = list(_LIVE)
    for worker in workers:
        worker.kill()
    return len(workers)


@atexit.register
def _close() -> None:
    """No worker outlives the process: a daemon thread of a stopped run may still be starting
    one (workers run in their own sessions, so nothing else would end them)."""
    global _CLOSING
    with _LIVE_LOCK:
        _CLOSING = True
    kill_all()


# Set in a worker's environment to have it import torch before it reads its job, so that a worker
# started ahead of its job (while the build and the reference run) is ready when the job comes.
PRELOAD = "KERNELWRIGHT_PRELOAD"


class Worker:
    """A worker process running `python -m module`, with a deadline counted from its start."""

    LOG_LIMIT = 200_000  # characters of stdout/stderr kept per stream (the tail)

    def __init__(
        self,
        module: str,
        scratch: Path,
        deadline_s: float,
        env_extra: dict[str, str] | None = None,
        memory_limit: int | None = None,
        launcher: tuple[str, ...] = (),
    ) -> None:
        """`launcher`: a command the interpreter runs under (a profiler), inside the isolation."""
        scratch.mkdir(parents=True, exist_ok=True)
        self.scratch = scratch
        self.deadline = time.monotonic() + deadline_s
        self.memory_limit = memory_limit or default_memory_limit()
        self.over_limit = ""
        self._stdout_path = scratch / "worker.stdout.log"
        self._stderr_path = scratch / "worker.stderr.log"
        read_fd, write_fd = os.pipe()
        with open(self._stdout_path, "wb") as out, open(self._stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [*network_isolation(), *launcher, sys.executable, "-m", module, str(write_fd)],
                cwd=scratch,
                env=worker_env(scratch, env_extra),
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                pass_fds=(write_fd,),
                start_new_session=True,
                preexec_fn=_limit_child,
            )
        os.close(write_fd)
        with _LIVE_LOCK:
            _LIVE.add(self)
            closing = _CLOSING
        if closing:
            self.kill()
        self._reader = os.fdopen(read_fd, "rb")
        self._buffer = b""
        self._timed_out = False

    # -- messages -----------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Send one JSON message to the worker's stdin."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the worker is gone; recv() reports how it ended

    def recv(self) -> dict[str, Any] | None:
        """The next message, or None once the worker closed the pipe (usually: it exited).

        Raises WorkerTimeout (after killing the process group) when the deadline passes first.
        """
        fd = self._reader.fileno()
        while b"\n" not in self._buffer:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                self._timed_out = True
                raise WorkerTimeout
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.5))
            if not ready:
                self._watch()
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            return {"kind": "garbled", "text": line[:500].decode(errors="replace")}
        return message if isinstance(message, dict) else {"kind": "garbled", "text": str(message)}

    def _watch(self) -> None:
        rss, processes = _group_usage(self.proc.pid)
        if rss > self.memory_limit:
            limit = self.memory_limit / 2**30
            self.over_limit = f"held {rss / 2**30:.1f} GiB of host memory (limit {limit:.1f} GiB)"
        elif processes > MAX_PROCESSES:
            self.over_limit = f"ran {processes} processes (limit {MAX_PROCESSES})"
        if self.over_limit:
            self.kill()
            raise WorkerOverLimit(self.over_limit)

    # -- lifetime -----------------------------------------------------------------------------

    def alive(self) -> bool:
        return self.proc.poll() is None

    def restart_clock(self, deadline_s: float) -> None:
        """Count the deadline from now: for a worker started ahead of its job (see PRELOAD)."""
        self.deadline = time.monotonic() + deadline_s

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (compilers and helpers included)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def finish(self, grace_s: float = 10.0) -> Exit:
        """Close the channel, wait briefly for a clean exit, then kill; return how it ended."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.proc.wait(timeout=max(0.0, min(grace_s, self.deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait()
            # A worker that had sent its answer but would not exit is not a timeout of its work.
        self.kill()  # stray grandchildren left in the group
        self._forget()
        self._reader.close()
        return Exit(
            returncode=self.proc.returncode,
            timed_out=self._timed_out,
            stdout=_tail(self._stdout_path, self.LOG_LIMIT),
            stderr=_tail(self._stderr_path, self.LOG_LIMIT),
        )

    def _forget(self) -> None:
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()
            self.proc.wait()
        self._forget()
        if not self._reader.closed:
            self._reader.close()


def _tail(path: Path, limit: int) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    text = data.decode(errors="replace")
    if len(text) > limit:
        return f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]
    return text


class Channel:
    """The worker's side: JSON messages to the parent's pipe and from stdin."""

    def __init__(self, fd: int) -> None:
        self._out = os.fdopen(fd, "wb", buffering=0)

    @classmethod
    def from_argv(cls) -> Channel:
        return cls(int(sys.argv[1]))

    def send(self, message: dict[str, Any]) -> None:
        self._out.write(json.dumps(message, default=str).encode() + b"\n")

    def recv(self) -> dict[str, Any] | None:
        line = sys.stdin.buffer.readline()
        if not line:
            return None
        message = json.loads(line)
        return message if isinstance(message, dict) else None
