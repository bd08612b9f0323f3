"""Run untrusted code in a separate worker process with a hard deadline.

Guarantees, for every worker started through `Worker`:

- it is a fresh Python interpreter (`python -m <module>`), never a fork of the orchestrator, so it
  shares no CUDA context, no open database handle and no in-memory secrets with it;
- its environment is built from an allowlist: API keys and other secrets never reach it;
- it runs in its own process group and scratch working directory; on its deadline the whole group
  (nvcc, ninja, any children it spawned) is killed with SIGKILL;
- its stdout and stderr go to log files (what a candidate prints cannot pose as a result);
- structured messages travel as JSON lines over a dedicated pipe (worker to parent) and the worker's
  stdin (parent to worker).

The child side uses `Channel.from_argv()`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import site
import subprocess
import sys
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
    """Runs in the child before exec: no core dumps (a crashed kernel can dump gigabytes)."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


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


class Worker:
    """A worker process running `python -m module`, with a deadline counted from its start."""

    LOG_LIMIT = 200_000  # characters of stdout/stderr kept per stream (the tail)

    def __init__(
        self,
        module: str,
        scratch: Path,
        deadline_s: float,
        env_extra: dict[str, str] | None = None,
    ) -> None:
        scratch.mkdir(parents=True, exist_ok=True)
        self.scratch = scratch
        self.deadline = time.monotonic() + deadline_s
        self._stdout_path = scratch / "worker.stdout.log"
        self._stderr_path = scratch / "worker.stderr.log"
        read_fd, write_fd = os.pipe()
        with open(self._stdout_path, "wb") as out, open(self._stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module, str(write_fd)],
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
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
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

    # -- lifetime -----------------------------------------------------------------------------

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
        self._reader.close()
        return Exit(
            returncode=self.proc.returncode,
            timed_out=self._timed_out,
            stdout=_tail(self._stdout_path, self.LOG_LIMIT),
            stderr=_tail(self._stderr_path, self.LOG_LIMIT),
        )

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()
            self.proc.wait()
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
