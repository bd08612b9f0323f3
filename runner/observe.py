"""Looking at a worker from outside: its memory, its CPU time, and holding it still.

What a worker says about itself is written by code that may be the candidate's. What the kernel
says about it is not: the bytes at an address (read with `process_vm_readv`, which never runs
the worker's own signal handlers, so protected or lazily filled pages come back as they are or
not at all), the CPU time its processes used (kernel accounting in /proc), and whether it is
stopped (SIGSTOP cannot be caught or ignored). Every function here runs in the parent.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from kernelwright.runner.isolation import _descendants, _process_table


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)
_readv = _libc.process_vm_readv
_readv.restype = ctypes.c_ssize_t
_readv.argtypes = [
    ctypes.c_int,
    ctypes.POINTER(_IoVec),
    ctypes.c_ulong,
    ctypes.POINTER(_IoVec),
    ctypes.c_ulong,
    ctypes.c_ulong,
]

MAX_READ = 8 << 30  # bytes in one output: a bound for what a worker can make the parent hold


class Unreadable(Exception):
    """The worker's memory at that range could not be read (unmapped, protected, gone)."""


def read_memory(pid: int, address: int, size: int) -> bytes:
    """`size` bytes of process `pid` at `address`, as they are now. Pages the worker protected
    (PROT_NONE) or never mapped raise `Unreadable`; nothing runs in the worker."""
    if size < 0 or size > MAX_READ or address <= 0 or address + size >= 1 << 64:
        raise Unreadable(f"an output of {size} bytes at {address:#x} is out of bounds")
    if size == 0:
        return b""
    buffer = ctypes.create_string_buffer(size)
    done = 0
    while done < size:
        local = _IoVec(ctypes.addressof(buffer) + done, size - done)
        remote = _IoVec(address + done, size - done)
        got = _readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        if got <= 0:
            err = ctypes.get_errno()
            raise Unreadable(
                f"{size} bytes at {address:#x} could not be read from outside the worker "
                f"({os.strerror(err) if got < 0 else 'nothing read'} after {done} bytes)"
            )
        done += got
    return buffer.raw


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return "gone"


@contextmanager
def held_still(pid: int, wait_s: float = 2.0) -> Iterator[None]:
    """The worker process stopped (all its threads) for the block, then continued: nothing of
    it runs while the parent reads its memory. Raises `Unreadable` where it will not stop."""
    os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + wait_s
        while _state(pid) not in ("T", "t"):
            if _state(pid) in ("gone", "Z", "X") or time.monotonic() > deadline:
                raise Unreadable("the worker could not be stopped to read its outputs")
            time.sleep(0.0002)
        yield
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def worker_pid(leader: int, module: str, wait_s: float = 15.0) -> int | None:
    """The host pid of the Python process running `-m module` in the worker started as `leader`
    (the leader itself, or below a sandbox launcher), waited for until the launcher has exec'd
    it. Asked before the worker got its job (so before any candidate code ran), it is the only
    such process; later, candidate code could start a decoy of the same name."""
    deadline = time.monotonic() + wait_s
    while True:
        for pid in [leader, *sorted(_descendants(_process_table(), leader))]:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    argv = fh.read().split(b"\0")
            except OSError:
                continue
            if argv[1:3] == [b"-m", module.encode()]:  # python -m module, not a launcher naming it
                return pid
        if time.monotonic() > deadline or _state(leader) in ("gone", "Z", "X"):
            return None
        time.sleep(0.005)


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(leader: int) -> float:
    """CPU time (user and system) used so far by the worker's processes: every process in its
    tree, each with all its threads, those that ended included, and its reaped children."""
    total = 0
    for pid in [leader, *_descendants(_process_table(), leader)]:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        # after the name: utime stime cutime cstime are fields 14-17 of stat (11-14 here)
        total += sum(int(value) for value in fields[11:15])
    return total / _TICKS
