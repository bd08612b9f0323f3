"""Workers confined by bubblewrap (`bwrap`, what Flatpak builds on), with a seccomp filter.

Each worker gets, through `bwrap_command`:

- new user, pid, ipc, uts, cgroup and network namespaces (`--unshare-all`; the network one has
  only a loopback, so no socket reaches the host, and abstract Unix sockets are the namespace's
  own), every capability dropped, a new session, and death with its parent;
- the whole filesystem read-only (`--ro-bind / /`), then, over it, private size-limited tmpfs
  mounts at /tmp and /dev/shm (writes count against `TMP_BYTES` and `SHM_BYTES` and are gone when
  the worker ends), empty tmpfs mounts over /run and /var/run (no host service's pathname socket:
  PostgreSQL's, D-Bus, Docker's) and over `$KERNELWRIGHT_HOME` (the history, the seals, other
  candidates' builds and every other scratch folder disappear);
- back on top of those, and only those: the Python installation, kernelwright's code and the
  precompiled headers read-only (where they lie under a covered folder), the snapshots of what
  it runs read-only, and writable: its own scratch folder and the folders its caller names (its
  candidate's shelf of the build cache, a TMPDIR);
- a minimal /dev (null, zero, random, urandom, tty, full) plus, where present, the NVIDIA device
  nodes, and a /proc of its own pid namespace;
- a seccomp filter (`seccomp_filter`): no ptrace or reading and writing other processes'
  memory, no mounts or namespace changes, no kernel keyrings, BPF, perf events, modules or
  clocks, no `io_uring`, and sockets only of the families torch and the tools use (Unix, IPv4,
  IPv6 on the loopback, netlink); `vsock` (a VM's way to its host) and raw packet sockets fail.

What ncu needs beyond this has not been measured here (no GPU was lent when this was written):
it talks to the profiled process over loopback TCP, which the filter allows; where it needs
more, `KERNELWRIGHT_SECCOMP=0` runs the workers without the filter (the record says so).
"""

from __future__ import annotations

import os
import platform
import struct
from collections.abc import Sequence
from pathlib import Path

TMP_BYTES = 4 << 30  # a build's intermediates (nvcc's included) fit with room to spare
SHM_BYTES = 256 << 20
MINIMAL_DEV_EXTRA = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")

# x86-64 system call numbers (asm/unistd_64.h) refused with EPERM.
DENIED_SYSCALLS = {
    "ptrace": 101,
    "syslog": 103,
    "personality": 135,
    "vhangup": 153,
    "pivot_root": 155,
    "adjtimex": 159,
    "chroot": 161,
    "acct": 163,
    "settimeofday": 164,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "iopl": 172,
    "ioperm": 173,
    "init_module": 175,
    "delete_module": 176,
    "quotactl": 179,
    "clock_settime": 227,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "unshare": 272,
    "perf_event_open": 298,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "clock_adjtime": 305,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "mount_setattr": 442,
}
SOCKET = 41
SOCKETPAIR = 53
ALLOWED_FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16}

_AUDIT_ARCH_X86_64 = 0xC000003E
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO_EPERM = 0x00050000 | 1
_RET_KILL_PROCESS = 0x80000000
# classic BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_RET_K = 0x06


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def seccomp_filter() -> bytes | None:
    """The filter as a compiled classic-BPF program (what `bwrap --seccomp FD` reads), or None
    where it is not written for this machine's architecture."""
    if platform.machine() != "x86_64":
        return None
    # (opcode, k, jump-if-true label, jump-if-false label); None: the next instruction
    code: list[tuple[int, int, str | None, str | None]] = [
        (_LD_W_ABS, 4, None, None),  # seccomp_data.arch
        (_JEQ_K, _AUDIT_ARCH_X86_64, "nr", "kill"),
        ("label:nr", 0, None, None),  # type: ignore[list-item]
        (_LD_W_ABS, 0, None, None),  # seccomp_data.nr
        (_JGE_K, 0x40000000, "deny", None),  # the x32 ABI's numbers
        *[(_JEQ_K, number, "deny", None) for number in sorted(DENIED_SYSCALLS.values())],
        (_JEQ_K, SOCKET, "family", None),
        (_JEQ_K, SOCKETPAIR, "family", "allow"),
        ("label:family", 0, None, None),  # type: ignore[list-item]
        (_LD_W_ABS, 16, None, None),  # args[0], low half: the address family
        *[(_JEQ_K, family, "allow", None) for family in sorted(ALLOWED_FAMILIES.values())],
        (_RET_K, _RET_ERRNO_EPERM, None, None),
        ("label:allow", 0, None, None),  # type: ignore[list-item]
        (_RET_K, _RET_ALLOW, None, None),
        ("label:deny", 0, None, None),  # type: ignore[list-item]
        (_RET_K, _RET_ERRNO_EPERM, None, None),
        ("label:kill", 0, None, None),  # type: ignore[list-item]
        (_RET_K, _RET_KILL_PROCESS, None, None),
    ]
    labels: dict[str, int] = {}
    instructions = []
    for op, k, true, false in code:
        if isinstance(op, str):
            labels[op.removeprefix("label:")] = len(instructions)
        else:
            instructions.append((op, k, true, false))

    def offset(label: str | None, index: int) -> int:
        return 0 if label is None else labels[label] - index - 1

    return b"".join(
        _insn(op, offset(true, i), offset(false, i), k)
        for i, (op, k, true, false) in enumerate(instructions)
    )


def nvidia_nodes() -> list[str]:
    """The NVIDIA device nodes of this machine (for the cuda target)."""
    found = [p for p in MINIMAL_DEV_EXTRA if os.path.exists(p)]
    found += sorted(str(p) for p in Path("/dev").glob("nvidia[0-9]*"))
    caps = Path("/dev/nvidia-caps")
    if caps.is_dir():
        found.append(str(caps))
    return found


def bwrap_command(
    bwrap: str,
    scratch: Path,
    writable: Sequence[Path],
    readonly: Sequence[Path],
    hidden: Sequence[Path],
    seccomp_fd: int | None,
) -> list[str]:
    """The bwrap arguments that confine one worker (see the module's docstring). `hidden`:
    folders covered by an empty tmpfs (the state folder); `readonly`: bound back read-only
    where a covered folder hid them; `writable`: bound back writable, `scratch` last."""
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for node in nvidia_nodes():
        args += ["--dev-bind", node, node]
    args += ["--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
    args += ["--size", str(SHM_BYTES), "--tmpfs", "/dev/shm"]
    base_covers = ["/tmp"]
    for folder in ("/run", "/var/run"):
        if os.path.isdir(folder) and not os.path.islink(folder):
            args += ["--tmpfs", folder]
            base_covers.append(folder)

    def under(path: Path, covers: Sequence[str | Path]) -> bool:
        text = str(path)
        return any(text == str(c) or text.startswith(str(c).rstrip("/") + "/") for c in covers)

    # Order matters: what the tmpfs mounts hid is bound back before the state folder is covered
    # (a folder bound back may hold it: the state folder stays covered), and what lies inside
    # the state folder after it is.
    for folder in readonly:
        if folder.exists() and under(folder, base_covers) and not under(folder, hidden):
            args += ["--ro-bind", str(folder), str(folder)]
    for folder in hidden:
        args += ["--tmpfs", str(folder)]
    for folder in readonly:
        if folder.exists() and under(folder, hidden):
            args += ["--ro-bind", str(folder), str(folder)]
    for folder in [*writable, scratch]:
        if folder.exists():
            args += ["--bind", str(folder), str(folder)]
    for folder in hidden:  # the empty cover itself read-only; what is bound into it stays as bound
        args += ["--remount-ro", str(folder)]
    args += ["--chdir", str(scratch)]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    return [*args, "--"]


def seccomp_wanted() -> bool:
    return os.environ.get("KERNELWRIGHT_SECCOMP", "1").strip() not in ("0", "off", "no")
