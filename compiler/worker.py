"""Build worker: imports one candidate so that its extensions compile, then reports.

Started by `compiler.build` as `python -m kernelwright.compiler.worker FD` in an isolated process.
It reads one request from stdin and sends one `build` message over fd FD. Compiler output goes to
the worker's stdout log (the parent reads it); Python errors come back as a traceback.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

from kernelwright.compiler import loader
from kernelwright.isolation import Channel


def main() -> None:
    channel = Channel.from_argv()
    request = channel.recv()
    if request is None:
        return
    candidate = Path(request["candidate"])
    target = request["target"]
    source = candidate.read_text(encoding="utf-8")
    key = loader.build_key(source, target)
    with loader.locked_build_dir(Path(request["builds_root"]), key) as (build_dir, cached):
        loader.install_build_hooks(build_dir)
        start = time.perf_counter()
        error = None
        try:
            loader.import_file(candidate, "kw_candidate")
        except BaseException:  # SystemExit and KeyboardInterrupt from candidate code included
            error = traceback.format_exc()
        elapsed = time.perf_counter() - start
        if error is None:
            loader.mark_complete(build_dir)
        else:
            loader.discard(build_dir)
    channel.send(
        {
            "kind": "build",
            "ok": error is None,
            "traceback": error or "",
            "compile_s": elapsed,
            "cached": cached,
            "key": key,
            "build_dir": str(build_dir),
        }
    )


if __name__ == "__main__":
    main()
    os._exit(0)  # skip interpreter teardown of whatever the candidate loaded
