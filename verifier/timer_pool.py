"""Reference timing workers kept between the candidates of one problem.

Why: every candidate is timed against the reference in a worker of the reference's own (no
candidate code there: `verifier.timing_driver`). Starting one costs a Python process, `import
torch` (3-4 s of CPU on a small machine) and, on `cuda`, a device context, for every candidate,
although the process itself never depends on the candidate. So a timer that ended its job
cleanly (`Finished` after its spot outputs) waits for the same problem's next candidate; each job
still builds the reference's model afresh (`worker.serve_reference_timer`), so every candidate is
timed against the same reference state.

What keeps this out of the candidates' reach:

- a timer only ever runs the problem's code and the harness's; it gets its jobs from this
  process, never from a candidate's worker;
- it is kept only where the workers' sandbox gives each worker a private pid namespace
  (`bwrap`, `namespaces`): there no candidate can see, signal, trace or write into another
  process, so nothing a candidate does can reach a timer that outlives it. Under weaker isolation
  every timer serves one candidate and ends, as before;
- one keyed by problem content, target and device: no problem's import-time settings leak into
  another's timing;
- a timer that timed out, failed, ended early or did not finish its job as expected is killed,
  never kept (`Lease.clean` stays False).

`REUSE = False` turns keeping off (the throughput benchmark's baseline).
"""

from __future__ import annotations

import atexit
import shutil
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from kernelwright import paths
from kernelwright.runner.isolation import Worker, sandbox
from kernelwright.verifier.session import prestart

REUSE = True
PER_KEY = 2  # idle timers per problem (evaluations of one problem can run side by side)
TOTAL = 4  # idle timers in all: on cuda each holds a device context
IDLE_S = 24 * 3600.0  # no deadline while idle: a lease restarts the clock
PID_PRIVATE = ("bwrap", "namespaces")  # isolation levels where no worker sees another


def key(content_hash: str, target: str, device: str | None) -> str:
    return f"{content_hash}:{target}:{device or ''}"


@dataclass
class Lease:
    """A timer lent to one evaluation. `clean` is set by the candidate's run once the timer
    finished its job as the protocol says (or was never given one)."""

    key: str
    worker: Worker
    clean: bool = False


class TimerPool:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._idle: OrderedDict[int, tuple[str, Worker]] = OrderedDict()  # oldest first
        self.started = 0  # timers started (the benchmark reports it)
        self.reused = 0
        atexit.register(self.clear)

    def take(self, key_: str, env_extra: dict[str, str] | None) -> Lease:
        """An idle timer of this key that is still alive, else a new one (importing torch now,
        off the critical path, like any prestarted worker)."""
        with self._guard:
            for ident, (held, worker) in list(self._idle.items()):
                if held == key_:
                    del self._idle[ident]
                    if worker.alive():
                        self.reused += 1
                        return Lease(key_, worker)
                    _end(worker)
            self.started += 1
        folder = paths.scratch_dir() / f"timer-{uuid.uuid4().hex[:12]}"
        return Lease(key_, prestart(folder, env_extra))

    def give_back(self, lease: Lease) -> None:
        """Keep the lease's timer for the next candidate where that is safe, else end it."""
        worker = lease.worker
        if not (lease.clean and REUSE and worker.alive() and _pid_private()):
            _end(worker)
            return
        worker.restart_clock(IDLE_S)
        evicted: list[Worker] = []
        with self._guard:
            self._idle[id(worker)] = (lease.key, worker)
            same = [i for i, (k, _) in self._idle.items() if k == lease.key]
            for ident in same[:-PER_KEY]:
                evicted.append(self._idle.pop(ident)[1])
            while len(self._idle) > TOTAL:
                evicted.append(self._idle.popitem(last=False)[1][1])
        for old in evicted:
            _end(old)

    def clear(self) -> None:
        with self._guard:
            idle = [worker for _, worker in self._idle.values()]
            self._idle.clear()
        for worker in idle:
            _end(worker)

    def idle(self) -> int:
        with self._guard:
            return len(self._idle)


def _pid_private() -> bool:
    return sandbox().level in PID_PRIVATE


def _end(worker: Worker) -> None:
    """End a timer and remove its folder (its spot outputs were read already)."""
    worker.__exit__(None, None, None)
    shutil.rmtree(worker.scratch, ignore_errors=True)
