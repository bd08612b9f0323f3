"""Build several candidates at once: one build worker each, at most `jobs` running together.

Guarantees, on top of `compiler.build` and `compiler.loader`:

- every candidate builds in its own worker process, and each of its extensions in its own
  content-addressed directory under `$KERNELWRIGHT_HOME/builds` (two candidates share a directory,
  and then its `flock`, only when they compile the very same extension, which is then built once);
- each build has its own time limit, counted from the start of its worker, so a build waiting for
  a free slot loses none of it; one past its limit ends as a `timeout` result and frees its slot;
- results come back in the order of the candidates given, each with its wall time (worker start
  and `import torch` included, which `BuildResult.compile_s` leaves out).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kernelwright.compiler.build import DEFAULT_BUILD_TIMEOUT_S, start_build
from kernelwright.records import BuildResult

MAX_DEFAULT_JOBS = 8  # a CUDA build is two translation units: 8 builds keep 16 cores busy


def default_jobs() -> int:
    """Builds at once by default: one per core, at most MAX_DEFAULT_JOBS."""
    return max(1, min(MAX_DEFAULT_JOBS, os.cpu_count() or 1))


@dataclass(frozen=True)
class PooledBuild:
    candidate: Path
    result: BuildResult
    wall_s: float  # from starting the worker to its verdict


def build_many(
    candidates: Sequence[Path],
    target: str,
    jobs: int | None = None,
    timeout_s: float = DEFAULT_BUILD_TIMEOUT_S,
) -> list[PooledBuild]:
    """Build every candidate, `jobs` at a time (default `default_jobs()`), in the given order."""

    def one(candidate: Path) -> PooledBuild:
        start = time.perf_counter()
        result = start_build(candidate, target, timeout_s).result()
        return PooledBuild(candidate, result, time.perf_counter() - start)

    workers = max(1, jobs if jobs is not None else default_jobs())
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kw-build") as pool:
        return list(pool.map(one, [Path(c) for c in candidates]))
