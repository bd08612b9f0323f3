"""The reference's expected outputs, computed once per problem and settings in this process.

Why: every candidate of an optimize run or a bench problem is checked against the same cases
(same problem, trials and seed), and the reference worker that computes them (start a process,
import torch, run the module on every case) costs as much as a cached build or more. Its outputs
depend only on the problem's content, the target, the device, the trials and the seed, never on
the candidate, and the worker never runs candidate code, so they are computed once and reused.

The output files live in `scratch/refs-<pid>-<n>/` (the sha256 of each file is checked again by
every comparison, so a changed file is caught). Entries are counted while evaluations use them;
beyond `KEEP` problems the least recently used idle ones are deleted, and all of them at exit.
An entry larger than `MAX_BYTES` is not kept. Failures are never cached: the next evaluation
runs the reference again.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import shutil
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelwright import paths
from kernelwright.verifier import session

KEEP = 4
MAX_BYTES = 4 << 30


@dataclass
class _Entry:
    folder: Path
    outputs: session.ReferenceOutputs | None = None
    users: int = 0
    last_used: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)  # one computation at a time


class ReferenceCache:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._serial = itertools.count()
        atexit.register(self.clear)

    @staticmethod
    def key(content_hash: str, options: Any) -> str:
        return json.dumps(
            [content_hash, options.target, options.device, options.trials, options.seed]
        )

    def acquire(
        self,
        problem: Path,
        content_hash: str,
        options: Any,
        device: AbstractContextManager[Any],
        device_env: dict[str, str] | None,
    ) -> session.ReferenceOutputs:
        """The expected outputs, computed (under `device`) unless cached. Pair with `release`."""
        key = self.key(content_hash, options)
        with self._guard:
            entry = self._entries.get(key)
            if entry is None:
                folder = paths.scratch_dir() / f"refs-{os.getpid()}-{next(self._serial)}"
                entry = self._entries[key] = _Entry(folder)
            entry.users += 1
            entry.last_used = time.monotonic()
        try:
            with entry.lock:
                if entry.outputs is None:
                    shutil.rmtree(entry.folder, ignore_errors=True)
                    with device:
                        entry.outputs = session.run_reference(
                            problem,
                            options.target,
                            options.trials,
                            options.seed,
                            entry.folder,
                            options.timeout_s,
                            env_extra=device_env,
                        )
                return entry.outputs
        except BaseException:
            self.release(content_hash, options)
            raise

    def release(self, content_hash: str, options: Any) -> None:
        """One evaluation is done with the entry; drop what is too big or beyond `KEEP`."""
        key = self.key(content_hash, options)
        with self._guard:
            entry = self._entries.get(key)
            if entry is None:
                return
            entry.users -= 1
            outputs = entry.outputs
            size = sum(sum(n) for n in outputs.nbytes.values()) if outputs else 0
            if entry.users == 0 and (outputs is None or size > MAX_BYTES):
                self._drop(key)
            idle = sorted((e.last_used, k) for k, e in self._entries.items() if e.users == 0)
            for _, old in idle[: max(0, len(self._entries) - KEEP)]:
                self._drop(old)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        shutil.rmtree(entry.folder, ignore_errors=True)

    def clear(self) -> None:
        with self._guard:
            for key in [k for k, e in self._entries.items() if e.users == 0]:
                self._drop(key)

    def __len__(self) -> int:
        return len(self._entries)
