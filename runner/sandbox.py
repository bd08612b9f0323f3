"""`python -m kernelwright.runner.sandbox [--hide DIR --keep DIR] [--writable DIR]...
[--readonly DIR]... -- CMD [ARGS...]`:
the last step before a worker runs.

`isolation` starts this inside fresh user, network, pid and mount namespaces (`unshare`), where it
is root of its own user namespace only. Before it execs CMD it:

- makes the whole filesystem read-only for the worker (`mount_setattr`, Linux 5.12+; older
  kernels skip this step), then writable again only where workers must write: /dev, /dev/shm,
  /tmp, the `--writable` folders (the build cache) and its own scratch folder. The history
  database, the user's files, the Python installation and kernelwright itself stay untouchable,
  also where they lie under /tmp (`--readonly`: read-only again, but for writable folders inside);
- mounts a /proc of the new pid namespace, so the worker sees only its own processes: never the
  orchestrator, nor the user's shell, whose `/proc/<pid>/environ` holds the API keys, nor their
  memory, open files or working directories;
- brings the loopback interface up (ncu talks to the process it profiles over it); the namespace
  still reaches nothing beyond itself;
- covers `--hide` (the scratch root: the reference's expected outputs, other evaluations'
  folders) with an empty tmpfs and binds `--keep`, the worker's own scratch folder, back at its
  place, then enters it again, so that `..` leads into the empty tmpfs and not into the covered
  folders;
- gives up every capability (bounding, inheritable and ambient sets, and no_new_privs), so the
  program cannot undo any of this, mount anything else, or gain privileges through a setuid
  program.

CMD then becomes process 1 of the namespace: when it ends, the kernel kills whatever it left
behind, even processes that left its process group. A step that fails prints one line and exits
with `FAILED`; `isolation` probes the whole sequence once before using it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from pathlib import Path

FAILED = 125

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000

AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
SYS_MOUNT_SETATTR = 442  # the same number on every architecture (a new-style syscall)
ALWAYS_WRITABLE = ("/dev", "/dev/shm", "/tmp")

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _prctl(option: int, arg: int) -> None:
    zero = ctypes.c_ulong(0)
    _check(_libc.prctl(option, ctypes.c_ulong(arg), zero, zero, zero), f"prctl {option}")


def _read_only(path: str, readonly: bool) -> None:
    """Set or clear the read-only flag of the mount at `path` and of every mount below it."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0) if readonly else _MountAttr(0, MOUNT_ATTR_RDONLY)
    result = _libc.syscall(
        ctypes.c_long(SYS_MOUNT_SETATTR),
        ctypes.c_int(AT_FDCWD),
        path.encode(),
        ctypes.c_uint(AT_RECURSIVE),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    _check(result, f"mount_setattr {path}")


def _writable(path: str) -> None:
    """Make `path` writable again below a read-only root: a mount of its own, flag cleared."""
    _mount(path, path, None, MS_BIND | MS_REC, None)
    _read_only(path, False)


def read_only_except(writable: list[str], readonly: list[str] = ()) -> bool:
    """The filesystem read-only but for `writable`; False where the kernel cannot (before 5.12).
    `readonly` folders stay read-only even inside a writable one (kernelwright's state and
    installation under /tmp), except for the `writable` ones inside them."""
    try:
        _read_only("/", True)
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EINVAL):
            return False
        raise
    for path in [*ALWAYS_WRITABLE, *writable]:
        if os.path.isdir(path):
            _writable(path)
    for path in readonly:
        if os.path.isdir(path):
            _mount(path, path, None, MS_BIND | MS_REC, None)
            _read_only(path, True)
    for path in writable:  # the build cache inside kernelwright's state folder
        if any(_within(path, r) for r in readonly) and os.path.isdir(path):
            _writable(path)
    for path in readonly:  # the precompiled headers inside the build cache
        if any(_within(path, w) and path != w for w in writable) and os.path.isdir(path):
            _mount(path, path, None, MS_BIND | MS_REC, None)
            _read_only(path, True)
    return True


def _within(path: str, folder: str) -> bool:
    return os.path.commonpath([os.path.abspath(path), os.path.abspath(folder)]) == os.path.abspath(
        folder
    )


def hide_except(hide: Path, keep: Path) -> None:
    """Cover `hide` with an empty tmpfs, bind `keep` (inside it) back, and enter `keep` again."""
    relative = keep.relative_to(hide)
    held = os.open(keep, os.O_PATH | os.O_DIRECTORY)  # still reaches `keep` once it is covered
    try:
        _mount("tmpfs", str(hide), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
        target = hide / relative
        target.mkdir(parents=True)
        _mount(f"/proc/self/fd/{held}", str(target), None, MS_BIND | MS_REC, None)
    finally:
        os.close(held)
    _read_only(str(target), False)  # a bind copies its source's read-only flag
    os.chdir(target)


def drop_capabilities() -> None:
    """No capability now or after exec, and none to be gained from setuid or file capabilities."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _libc.prctl(PR_CAP_AMBIENT, ctypes.c_ulong(PR_CAP_AMBIENT_CLEAR_ALL), 0, 0, 0)
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        _prctl(PR_CAPBSET_DROP, cap)
    # Root's capabilities after exec are (inheritable | bounding): both empty now, so none.
    header = _CapHeader(CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    for half in data:
        half.inheritable = 0
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def enter(hide: str, keep: str, writable: list[str], readonly: list[str] = ()) -> None:
    from kernelwright.runner.loopback import bring_up

    read_only_except(writable, readonly)  # first: the mounts made below stay writable
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    bring_up()
    if hide:
        hide_except(Path(hide), Path(keep))
    # The working directory still points into the mounts as they were before: enter it again
    # through the new ones (a writable bind over it, say).
    os.chdir(os.getcwd())
    drop_capabilities()


USAGE = (
    "usage: python -m kernelwright.runner.sandbox [--hide DIR --keep DIR] [--writable DIR]... "
    "[--readonly DIR]... -- CMD"
)


def main() -> None:
    args = sys.argv[1:]
    options: dict[str, list[str]] = {"--hide": [], "--keep": [], "--writable": [], "--readonly": []}
    while len(args) >= 2 and args[0] in options:
        options[args[0]].append(args[1])
        args = args[2:]
    if not args or args[0] != "--" or len(args) < 2 or len(options["--hide"]) > 1:
        print(USAGE, file=sys.stderr)
        raise SystemExit(FAILED)
    hide = options["--hide"][0] if options["--hide"] else ""
    keep = options["--keep"][0] if options["--keep"] else ""
    try:
        enter(hide, keep, options["--writable"], options["--readonly"])
    except (OSError, ValueError) as exc:
        print(f"kernelwright sandbox: {exc}", file=sys.stderr)
        raise SystemExit(FAILED) from None
    os.execvp(args[1], args[1:])


if __name__ == "__main__":
    main()
