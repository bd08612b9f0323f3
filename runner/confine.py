"""Which isolation workers get on this machine, probed once: bubblewrap with a seccomp filter
(`bwrap`, see `runner/bwrap.py`), else kernelwright's own namespaces (`namespaces`, see
`runner/sandbox.py`), else a private network namespace only (`network`), else `none`. Each
evaluation's `isolation` record says which one it got and, in `isolation_note`, why not more.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kernelwright import paths
from kernelwright.runner import bwrap as bw

# What the sandbox probes may inherit (the workers' own list is isolation.ENV_ALLOWLIST).
_PROBE_ENV = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LD_LIBRARY_PATH",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_HOME",
)


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


# What the sandbox probe runs inside it: it must see only itself, none of the hidden folder, no
# capability, and (where the host's driver answers) a working CUDA driver.
_PROBE = r"""
import ctypes, os, sys
assert os.getppid() == 0, "no pid namespace"
assert not os.path.exists("../secret"), "the hidden folder is visible"
open("written", "w").close()
caps = [l.split()[1] for l in open("/proc/self/status") if l.startswith(("CapEff", "CapBnd"))]
assert all(int(c, 16) == 0 for c in caps), "capabilities left"
if sys.argv[1] == "cuda":
    assert ctypes.CDLL("libcuda.so.1").cuInit(0) == 0, "cuInit failed inside"
print("ok" if not os.access(sys.prefix, os.W_OK) else "writable")
"""
_CUDA_INIT = 'import ctypes, sys; sys.exit(ctypes.CDLL("libcuda.so.1").cuInit(0))'


@dataclass(frozen=True)
class Sandbox:
    """How workers are isolated here: `level` is `bwrap` (bubblewrap and a seccomp filter, see
    `runner/bwrap.py`), `namespaces` (private pid, mount and network namespaces, the scratch root
    hidden, no capabilities; see `kernelwright.runner.sandbox`), `network` (a private network
    namespace only) or `none`; `note` says why not more."""

    level: str
    prefix: tuple[str, ...]
    note: str = ""

    def command(
        self,
        scratch: Path,
        hide: Path | None,
        writable: list[Path] | None = None,
        seccomp_fd: int | None = None,
        readable: Sequence[Path] = (),
    ) -> tuple[str, ...]:
        """The command prefix for a worker in `scratch`. `seccomp_fd` (bwrap): a descriptor the
        filter can be read from, inherited by the child."""
        if self.level == "bwrap":
            return tuple(
                bwrap_prefix(self.prefix[0], scratch, writable or [], seccomp_fd, readable)
            )
        if self.level != "namespaces":
            return self.prefix
        args: list[str] = []
        if hide is not None:
            args += ["--hide", str(hide), "--keep", str(scratch)]
        else:  # a scratch folder outside the scratch root must stay writable all the same
            writable = [*(writable or []), scratch]
        for path in writable or []:
            args += ["--writable", str(path)]
        for path in _protected_folders():
            args += ["--readonly", str(path)]
        return (*self.prefix, *args, "--")


def _protected_folders() -> list[Path]:
    """What a worker must never change, even where it lies under /tmp (writable to workers):
    the Python installation, kernelwright's own code, its state folder (the history database,
    the build seals; the build cache and scratch folders inside are opened again), and the
    precompiled headers inside the build cache."""
    import importlib.util

    # Found, not imported: this package imports no stage.
    names = (
        "kernelwright",
        "kernelwright.compiler",
        "kernelwright.verifier",
        "kernelwright.runner",
    )
    specs = [importlib.util.find_spec(name) for name in names]
    locations = [spec.submodule_search_locations or [] for spec in specs if spec is not None]
    code = [Path(p).resolve() for found in locations for p in found]
    roots = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), paths.home()}
    roots |= {Path(os.path.commonpath([str(p) for p in code]))}
    # the precompiled headers every later build compiles in: only the CLI makes them (pch.py)
    return [*sorted(roots), paths.pch_dir()]


def _run_quietly(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k in _PROBE_ENV}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def _probe_namespaces(prefix: tuple[str, ...]) -> str:
    """'ok' (or 'writable', where the filesystem could not be made read-only) when the full
    sandbox works here, else why not (one line)."""
    import tempfile

    # The driver is checked only where it works outside: a machine without a GPU passes.
    cuda = "no"
    if os.path.exists("/dev/nvidiactl"):
        try:
            if _run_quietly([sys.executable, "-c", _CUDA_INIT]).returncode == 0:
                cuda = "cuda"
        except (OSError, subprocess.TimeoutExpired):
            pass
    # Probed where workers will run: the scratch root's own filesystem.
    with tempfile.TemporaryDirectory(prefix="sandbox-probe-", dir=paths.scratch_dir()) as tmp:
        hide = Path(tmp).resolve()
        keep = hide / "keep"
        keep.mkdir()
        (hide / "secret").write_text("hidden\n")
        args = ["--hide", str(hide), "--keep", str(keep), "--writable", str(hide.parent)]
        for folder in _protected_folders():  # as workers get them: Python stays read-only
            args += ["--readonly", str(folder)]
        command = [*prefix, *args, "--", sys.executable, "-c", _PROBE, cuda]
        try:
            probe = _run_quietly(command, cwd=keep)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"the probe failed: {exc}"
        if probe.returncode == 0 and probe.stdout.strip() in ("ok", "writable"):
            return probe.stdout.strip()
        lines = (probe.stderr or probe.stdout).strip().splitlines()
        return lines[-1] if lines else f"the probe exited with code {probe.returncode}"


# Folders of the user's own code that a generated problem imports from (`module.py:Class`, with
# its sibling modules and a `--get-inputs` file): every worker of this process may read them.
_USER_CODE: set[Path] = set()


def allow_reading(folder: Path) -> None:
    """Let workers read `folder` (read-only) where the sandbox would hide it (under /tmp)."""
    _USER_CODE.add(Path(folder).resolve())


def bwrap_prefix(
    bwrap: str,
    scratch: Path,
    writable: list[Path],
    seccomp_fd: int | None,
    readable: Sequence[Path] = (),
) -> list[str]:
    """A worker's bwrap command: the state folder covered, but what a worker may read of it (the
    precompiled headers, the seals, the snapshots it runs) and may write (its scratch, its
    candidate's shelf, a TMPDIR) bound back; `readable`: folders its caller needs it to read
    where a cover would hide them (the folder of the profiler it runs under)."""
    home = paths.home()
    seals = home / "seals"
    seals.mkdir(exist_ok=True)  # bound now, so a seal made later (by the parent) is seen inside
    readonly = [p for p in _protected_folders() if p != home]
    readonly += [seals, paths.snapshots_dir(), *readable, *sorted(_USER_CODE)]
    return bw.bwrap_command(bwrap, scratch, writable, readonly, [home], seccomp_fd)


# What the bwrap probe runs inside: it must see only its own processes, none of the hidden
# folder, no capability, a seccomp filter that refuses ptrace, and (where the host's driver
# answers) a working CUDA driver.
_BWRAP_PROBE = r"""
import ctypes, os, sys
pids = [p for p in os.listdir("/proc") if p.isdigit()]
assert len(pids) <= 3, "no pid namespace"
assert not os.path.exists(sys.argv[2]), "the state folder is visible"
open("written", "w").close()
caps = [l.split()[1] for l in open("/proc/self/status") if l.startswith(("CapEff", "CapBnd"))]
assert all(int(c, 16) == 0 for c in caps), "capabilities left"
if sys.argv[3] == "1":
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.ptrace(0, 0, 0, 0) == -1 and ctypes.get_errno() == 1, "no seccomp filter"
if sys.argv[1] == "cuda":
    assert ctypes.CDLL("libcuda.so.1").cuInit(0) == 0, "cuInit failed inside"
print("ok" if not os.access(sys.prefix, os.W_OK) else "writable")
"""


def _probe_bwrap(bwrap: str) -> str:
    """'ok' when bwrap confines a worker as `bwrap_prefix` says, else why not (one line)."""
    import tempfile

    cuda = "cuda" if _driver_answers() else "no"
    with tempfile.TemporaryDirectory(prefix="bwrap-probe-", dir=paths.scratch_dir()) as tmp:
        keep = Path(tmp).resolve()
        program = bw.seccomp_filter() if bw.seccomp_wanted() else None
        read_fd = None
        if program is not None:
            read_fd, write_fd = os.pipe()
            os.write(write_fd, program)
            os.close(write_fd)
        try:
            prefix = bwrap_prefix(bwrap, keep, [], read_fd)
            filtered = "1" if program is not None else "0"
            command = [
                *prefix,
                sys.executable,
                "-c",
                _BWRAP_PROBE,
                cuda,
                str(paths.home() / "runs"),
            ]
            command.append(filtered)
            env = {k: v for k, v in os.environ.items() if k in _PROBE_ENV}
            fds = (read_fd,) if read_fd is not None else ()
            probe = subprocess.run(
                command, cwd=keep, env=env, capture_output=True, text=True, timeout=60, pass_fds=fds
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"the bwrap probe failed: {exc}"
        finally:
            if read_fd is not None:
                os.close(read_fd)
    if probe.returncode == 0 and probe.stdout.strip() == "ok":
        return "ok"
    lines = (probe.stderr or probe.stdout).strip().splitlines()
    return "bwrap: " + (lines[-1] if lines else f"the probe exited with code {probe.returncode}")


def _driver_answers() -> bool:
    if not os.path.exists("/dev/nvidiactl"):
        return False
    try:
        return _run_quietly([sys.executable, "-c", _CUDA_INIT]).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


LEVELS = ("bwrap", "namespaces", "network", "none")


@functools.cache
def sandbox() -> Sandbox:
    """The strongest isolation that works on this machine, probed once per process.

    `KERNELWRIGHT_SANDBOX=namespaces` (or `network`, `none`) asks for less: for a machine where
    a probe passes but something the workers need does not work inside."""
    wanted = os.environ.get("KERNELWRIGHT_SANDBOX", "bwrap").strip().lower()
    wanted = wanted if wanted in LEVELS else "bwrap"
    allowed = LEVELS[LEVELS.index(wanted) :]
    notes = []
    bwrap = shutil.which("bwrap")
    if "bwrap" in allowed:
        if bwrap is None:
            notes.append("bubblewrap (bwrap) is not installed")
        else:
            why = _probe_bwrap(bwrap)
            if why == "ok":
                off = (
                    ""
                    if bw.seccomp_filter() is not None and bw.seccomp_wanted()
                    else ("no seccomp filter (KERNELWRIGHT_SECCOMP=0, or not an x86-64 machine)")
                )
                return Sandbox("bwrap", (bwrap,), off)
            notes.append(why)
    unshare = shutil.which("unshare")
    note = "; ".join(notes)
    wanted = "namespaces" if "namespaces" in allowed else wanted
    if wanted == "namespaces" and unshare is not None:
        prefix = (
            unshare,
            "--user",
            "--map-root-user",
            "--net",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount",
            sys.executable,
            "-m",
            "kernelwright.runner.sandbox",
        )
        probed = _probe_namespaces(prefix)
        if probed in ("ok", "writable"):
            # Before Linux 5.12 (no mount_setattr) the rest holds, but files stay writable.
            why = "the filesystem stays writable (mount_setattr needs Linux 5.12 and failed here)"
            parts = [n for n in (note, "" if probed == "ok" else why) if n]
            return Sandbox("namespaces", prefix, "; ".join(parts))
        note = "; ".join(n for n in (note, probed) if n)
    elif wanted == "namespaces":
        note = "; ".join(n for n in (note, "unshare (util-linux) is not installed") if n)
    if wanted in ("namespaces", "network") and network_isolation():
        return Sandbox("network", network_isolation(), note)
    return Sandbox("none", (), note or "no private network namespace either")
