"""One process at a time works on a run.

Two processes on one run (a `--resume` while the run still goes on) would evaluate the same
pending candidates twice and write the same rounds twice. The process that starts or resumes a
run holds an exclusive `flock` on `$KERNELWRIGHT_HOME/locks/<run>.lock` until the run ends; the
kernel drops it when the process dies, so a run whose process was killed (status still
`running`) can be resumed at once. The lock files stay: deleting one another process may be
opening would let two processes hold different files of the same name.
"""

from __future__ import annotations

import fcntl
from typing import IO

from kernelwright import paths
from kernelwright.errors import BadInput


class RunLock:
    def __init__(self, run_id: str) -> None:
        folder = paths.home() / "locks"
        folder.mkdir(exist_ok=True)
        self._file: IO[str] | None = open(folder / f"{run_id}.lock", "a")  # noqa: SIM115
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise BadInput(
                f"run {run_id} is in progress in another kernelwright process; wait for it to "
                "end, or stop it (Ctrl-C), then resume it"
            ) from None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
