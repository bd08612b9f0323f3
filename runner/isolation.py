"""Run untrusted code in a separate worker process with a hard deadline.

Guarantees, for every worker started through `Worker`:

- it is a fresh Python interpreter (`python -m <module>`), never a fork of the orchestrator, so it
  shares no CUDA context, no open database handle and no in-memory secrets with it;
- its environment is built from an allowlist: API keys and other secrets never reach it;
- it runs in its own process group and scratch working directory; on its deadline the whole group
  (nvcc, ninja, any children it spawned, also those that left the group) is killed with SIGKILL;
- where the OS allows (`sandbox()`, probed once), it runs in private user, pid, mount and network
  namespaces with no capabilities (`kernelwright.runner.sandbox`): it sees no other process (the
  API keys in the orchestrator's and the shell's `/proc/<pid>/environ` included), none of the
  scratch root
  but its own folder (the reference's expected outputs live there), and no network; where only a
  private network namespace works (`unshare -n`, `unshare -rn`), it gets that; any connect fails
  either way, and CUDA works in both;
- a watchdog kills the group when it holds more host memory (RSS) or more processes than allowed;
  RLIMIT_AS is never used, since the CUDA driver reserves huge address ranges;
- its stdout and stderr go to log files (what a candidate prints cannot pose as a result);
- structured messages travel as JSON lines over a dedicated pipe (worker to parent) and the worker's
  stdin (parent to worker).

The child side uses `Channel.from_argv()`.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import site
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernelwright import paths
from kernelwright.runner.confine import Sandbox, network_isolation, sandbox

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


def _writable(env_extra: dict[str, str] | None, extra: Sequence[Path]) -> list[Path]:
    """Where a worker may write besides its scratch folder, /tmp and /dev: the folders its
    caller names (a candidate's shelf in the build cache), and a TMPDIR the caller gave it
    (inductor's caches). The rest of the build cache stays read-only."""
    paths_ = [Path(p) for p in extra]
    tmpdir = (env_extra or {}).get("TMPDIR")
    if tmpdir:
        paths_.append(Path(tmpdir).resolve())
    return paths_


def _seccomp_fd() -> int | None:
    """A pipe holding the seccomp filter for bwrap to read (None: no filter on this machine)."""
    from kernelwright.runner import bwrap

    program = bwrap.seccomp_filter() if bwrap.seccomp_wanted() else None
    if program is None:
        return None
    read_fd, write_fd = os.pipe()
    os.write(write_fd, program)  # a few hundred bytes: the pipe holds them
    os.close(write_fd)
    return read_fd


def _hidden_root(scratch: Path) -> Path | None:
    """The scratch root, where `scratch` lies inside it: what the worker must not see of it."""
    root = paths.scratch_dir()
    inside = scratch.resolve()
    return root if inside != root and inside.is_relative_to(root) else None


def _process_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, process group, resident pages) of every process, read from /proc."""
    table: dict[int, tuple[int, int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            # after the command name: state ppid pgrp ... ; rss is field 24 (index 21 here)
            table[int(entry.name)] = (int(fields[1]), int(fields[2]), int(fields[21]))
        except (OSError, ValueError, IndexError):
            continue
    return table


def _descendants(table: dict[int, tuple[int, int, int]], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found and child != root:
                found.add(child)
                stack.append(child)
    return found


def _processes(leader: int) -> dict[int, int]:
    """pid -> resident pages of every process in `leader`'s process group or descended from it
    (a process that left the group with setsid is still a descendant)."""
    table = _process_table()
    found = {pid for pid, (_, pgrp, _) in table.items() if pgrp == leader}
    found |= _descendants(table, leader)
    return {pid: table[pid][2] for pid in found}


def kill_tree(root: int) -> None:
    """SIGKILL `root` and every process descended from it (found before any is killed)."""
    for pid in [root, *_descendants(_process_table(), root)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _group_usage(leader: int) -> tuple[int, int]:
    """(resident bytes, process count) of a worker's processes."""
    pages = _processes(leader)
    return sum(pages.values()) * os.sysconf("SC_PAGE_SIZE"), len(pages)


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
_HELPERS: set[subprocess.Popen[str]] = set()  # the CLI's own helper processes (run_tracked)
_LIVE_LOCK = threading.Lock()
_CLOSING = False  # set at interpreter exit: a worker started after that kills itself
_SPAWNED = threading.Condition(_LIVE_LOCK)  # notified when a worker being started is registered
_SPAWNING = 0  # workers between their fork and their registration in _LIVE


def kill_all() -> int:
    """SIGKILL every live worker's process group (Ctrl-C of a run), and the helper processes the
    CLI runs itself (`run_tracked`); return how many."""
    with _LIVE_LOCK:
        workers = list(_LIVE)
        helpers = list(_HELPERS)
    for worker in workers:
        worker.kill()
    for helper in helpers:
        kill_tree(helper.pid)
    return len(workers) + len(helpers)


def run_tracked(command: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """`subprocess.run` of a trusted helper the CLI runs itself (gcc making a precompiled header),
    in its own process group so that `kill_all()` (Ctrl-C) ends it at once with its children."""
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    with _LIVE_LOCK:
        _HELPERS.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.communicate()
        raise
    finally:
        with _LIVE_LOCK:
            _HELPERS.discard(proc)
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


@atexit.register
def _close() -> None:
    """No worker outlives the process: a daemon thread of a stopped run may still be starting
    one (workers run in their own sessions, so nothing else would end them)."""
    global _CLOSING
    with _LIVE_LOCK:
        _CLOSING = True
        # A thread that was forking a worker when kill_all() ran registers it in a moment; once
        # this handler returns, daemon threads stop for good and such a worker would be orphaned.
        _SPAWNED.wait_for(lambda: _SPAWNING == 0, timeout=10)
    kill_all()


# Set in a worker's environment to have it import torch before it reads its job, so that a worker
# started ahead of its job (while the build and the reference run) is ready when the job comes.
PRELOAD = "KERNELWRIGHT_PRELOAD"

# The first line of a worker that announces when it is ready (`Worker(startup_s=...)`): written by
# the harness after `import torch`, before it reads its job, so before any candidate code loads.
# A job's clock starts there: a loaded machine's slow interpreter start is not the job's time.
READY_LINE = b'{"kind": "ready"}\n'


def _spawning(step: int, started: Worker | None = None) -> None:
    """Count workers being started; register one that started (killed at once where the
    interpreter is exiting: nothing would end it later)."""
    global _SPAWNING
    with _LIVE_LOCK:
        if step > 0 and _CLOSING:  # forked now, it could outlive the exit unregistered
            raise RuntimeError("kernelwright is exiting: no new worker")
        _SPAWNING += step
        if started is not None:
            _LIVE.add(started)
        closing = _CLOSING
        _SPAWNED.notify_all()
    if started is not None and closing:
        started.kill()


class Worker:
    """A worker process running `python -m module`, with a deadline counted from its start."""

    LOG_LIMIT = 200_000  # characters of stdout/stderr kept per stream (the tail)
    MAX_MESSAGE = 16 << 20  # bytes: the harness's own messages are far smaller

    def __init__(
        self,
        module: str,
        scratch: Path,
        deadline_s: float,
        env_extra: dict[str, str] | None = None,
        memory_limit: int | None = None,
        launcher: tuple[str, ...] = (),
        isolation: str = "",
        writable: Sequence[Path] = (),
        readable: Sequence[Path] = (),
        startup_s: float = 0.0,
    ) -> None:
        """`launcher`: a command the interpreter runs under (a profiler), inside the isolation.
        `isolation`: "network" for a private network namespace only (see `sandbox()`).
        `writable`: folders it may write to besides its scratch (see `_writable`).
        `readable`: folders it must read where the sandbox would hide them (the launcher's).
        `startup_s`: for a module that writes READY_LINE first: the deadline counts from that
        line, and the start itself may take up to `startup_s` more."""
        scratch.mkdir(parents=True, exist_ok=True)
        self.scratch = scratch
        self._budget = deadline_s
        self._startup_s = startup_s
        self._starting = startup_s > 0  # its READY_LINE not read yet
        self.deadline = time.monotonic() + startup_s + deadline_s
        self.memory_limit = memory_limit or default_memory_limit()
        self.over_limit = ""
        self._stdout_path = scratch / "worker.stdout.log"
        self._stderr_path = scratch / "worker.stderr.log"
        box = sandbox() if isolation != "network" else Sandbox("network", network_isolation())
        self._bwrap = box.level == "bwrap"
        read_fd, write_fd = os.pipe()
        _spawning(+1)
        try:
            self._start(box, module, launcher, write_fd, env_extra, writable, readable)
        finally:
            _spawning(-1, self if hasattr(self, "proc") else None)
        os.close(write_fd)
        self._reader = os.fdopen(read_fd, "rb")
        self._buffer = bytearray()
        self._skip_line = False
        self._timed_out = False

    def _start(
        self,
        box: Any,
        module: str,
        launcher: tuple[str, ...],
        write_fd: int,
        env_extra: dict[str, str] | None,
        writable: Sequence[Path],
        readable: Sequence[Path] = (),
    ) -> None:
        scratch = self.scratch
        seccomp_fd = _seccomp_fd() if box.level == "bwrap" else None
        fds = (write_fd,) if seccomp_fd is None else (write_fd, seccomp_fd)
        with open(self._stdout_path, "wb") as out, open(self._stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    *box.command(
                        scratch.resolve(),
                        _hidden_root(scratch),
                        _writable(env_extra, writable),
                        seccomp_fd,
                        readable,
                    ),
                    *launcher,
                    sys.executable,
                    "-m",
                    module,
                    str(write_fd),
                ],
                cwd=scratch,
                env=worker_env(scratch, env_extra),
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                pass_fds=fds,
                start_new_session=True,
                preexec_fn=_limit_child,
            )
        if seccomp_fd is not None:
            os.close(seccomp_fd)

    # -- messages -----------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Send one JSON message to the worker's stdin."""
        self.send_line(json.dumps(message).encode() + b"\n")

    def send_line(self, line: bytes) -> None:
        """Send one encoded line (ending in a newline) to the worker's stdin."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the worker is gone; recv() reports how it ended

    def recv(self) -> dict[str, Any] | None:
        """The next message as JSON (`{"kind": "garbled"}` where it is not an object), or None
        once the worker closed the pipe. Raises like `recv_line`."""
        line = self.recv_line()
        if line is None:
            return None
        if len(line) > self.MAX_MESSAGE:  # cut by recv_line: candidate code flooding the pipe
            return {"kind": "garbled", "text": f"a message of over {self.MAX_MESSAGE} bytes"}
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            return {"kind": "garbled", "text": line[:500].decode(errors="replace")}
        return message if isinstance(message, dict) else {"kind": "garbled", "text": str(message)}

    def recv_line(self) -> bytes | None:
        """The next line, unparsed (`verifier.protocol` reads it), or None once the worker
        closed the pipe (usually: it exited). A line over MAX_MESSAGE bytes comes back cut to
        MAX_MESSAGE + 1 bytes, the rest dropped, so that the reader sees it is too long.

        Raises WorkerTimeout (after killing the process group) when the deadline passes first.
        """
        fd = self._reader.fileno()
        while b"\n" not in self._buffer:
            if len(self._buffer) > self.MAX_MESSAGE:  # candidate code flooding the pipe
                head = bytes(self._buffer[: self.MAX_MESSAGE + 1])
                self._buffer.clear()
                self._skip_line = True
                return head
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
        end = self._buffer.index(b"\n")
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        if self._starting:  # only the first line can be it: no candidate code had run yet
            self._starting = False
            if line + b"\n" == READY_LINE:
                self.deadline = time.monotonic() + self._budget
                return self.recv_line()
        if self._skip_line:  # the rest of a line already reported as too long
            self._skip_line = False
            return self.recv_line()
        return line

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
        """Count the deadline from now: for a worker started ahead of its job (see PRELOAD).
        One still starting gets its start allowance on top, and the clock restarts again when
        it says it is ready."""
        self._budget = deadline_s
        self.deadline = time.monotonic() + deadline_s + (self._startup_s if self._starting else 0)

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (compilers and helpers included)."""
        # Found first: once their parent is dead, processes that left the group (setsid) are
        # no longer its descendants. In the full sandbox they die with the namespace anyway.
        strays = _processes(self.proc.pid)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
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
        code = self.proc.returncode
        if self._bwrap and code is not None and 128 < code < 128 + 65:
            code = -(code - 128)  # bwrap exits 128+N when the worker was killed by signal N
        return Exit(
            returncode=code,
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
    """The last `limit` characters of a log, read from its end: a worker may have printed GBs."""
    try:
        with open(path, "rb") as log:
            size = log.seek(0, os.SEEK_END)
            keep = 4 * limit  # UTF-8: at most 4 bytes a character
            log.seek(max(0, size - keep))
            data = log.read(keep)
    except OSError:
        return ""
    text = data.decode(errors="replace")
    cut = len(text) - limit if len(text) > limit else 0
    if size > keep or cut:
        shown = text[cut:]
        return f"[... {size - len(shown.encode())} bytes cut ...]\n" + shown
    return text


class Channel:
    """The worker's side: JSON lines to the parent's pipe, and from stdin.

    The pipe's descriptor is reachable by candidate code in the same process, so the parent
    believes no line for where it came from: it checks each against the protocol and against
    what it observes from outside (see `verifier.protocol` and `verifier.timing_driver`)."""

    def __init__(self, fd: int) -> None:
        self._out = os.fdopen(fd, "wb", buffering=0)

    @classmethod
    def from_argv(cls) -> Channel:
        return cls(int(sys.argv[1]))

    def send(self, message: dict[str, Any]) -> None:
        self.send_line(json.dumps(message, default=str).encode() + b"\n")

    def send_line(self, line: bytes) -> None:
        self._out.write(line)

    def recv(self) -> dict[str, Any] | None:
        line = self.recv_line()
        if line is None:
            return None
        message = json.loads(line)
        return message if isinstance(message, dict) else None

    def recv_line(self) -> bytes | None:
        line = sys.stdin.buffer.readline()
        return line or None
