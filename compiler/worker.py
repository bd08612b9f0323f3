"""Build worker: imports one candidate so that its extensions compile, then reports.

Started by `compiler.build` as `python -m kernelwright.compiler.worker FD` in an isolated process.
It reads one request from stdin and sends one `build` message over fd FD. Compiler output goes to
the worker's stdout log (the parent reads it); Python errors come back as a traceback. An
extension rejected by the nvcc pre-check comes back as `precheck_error` with nvcc's output; the
pre-check's seconds and the per-kernel ptxas stats come back in every answer.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

from kernelwright.compiler import loader
from kernelwright.compiler.precheck_run import PrecheckFailed
from kernelwright.runner.isolation import Channel


def main() -> None:
    channel = Channel.from_argv()
    request = channel.recv()
    if request is None:
        return
    nonce = request.pop("nonce", None)
    candidate = Path(request["candidate"])
    builds_root = Path(request["builds_root"])
    loader.install_build_hooks(builds_root, request["target"])
    start = time.perf_counter()
    error = None
    rejected: dict[str, str] | None = None
    try:
        loader.import_file(candidate, "kw_candidate")
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from candidate code included
        error = traceback.format_exc()
        if isinstance(exc, PrecheckFailed):
            rejected = {"command": exc.outcome.command, "output": exc.outcome.output}
    elapsed = time.perf_counter() - start
    builds = loader.BUILDS
    prechecks = loader.PRECHECK_SECONDS
    channel.send(
        {
            "kind": "build",
            "ok": error is None,
            "traceback": error or "",
            "compile_s": elapsed,
            # cached: every extension came from the cache (and there was at least one)
            "cached": bool(builds) and all(b.cached for b in builds),
            "key": ",".join(b.key for b in builds),
            "builds": [{"name": b.name, "key": b.key, "cached": b.cached} for b in builds],
            "build_dir": str(builds_root),
            # set when the nvcc pre-check rejected an extension (no full build ran for it)
            "precheck_error": rejected,
            "precheck_s": sum(prechecks) if prechecks else None,
            "kernels": loader.KERNELS,
            # the parent's secret from the request, a weak tell of a line candidate code wrote
            # (it can read the secret from memory); what was built is checked from outside
            "nonce": nonce,
        }
    )


if __name__ == "__main__":
    main()
    os._exit(0)  # skip interpreter teardown of whatever the candidate loaded
