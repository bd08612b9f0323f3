"""What the native audit refuses (compiler/audit.py): the check names, the deny tables and
the record of one refusal, shared by the symbol audit and the preprocessed scan."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from kernelwright.check_names import Check
from kernelwright.runner.isolation import kill_tree

SYMBOLS = Check.NATIVE_SYMBOLS
PREPROCESSED = Check.NATIVE_PREPROCESSED
AUDIT_VERSION = "1"  # a passing record of another version is not trusted: the rules changed
PREPROCESS_TIMEOUT_S = 120.0

PROCESS = "process control"
SIGNALS = "signals and timers"
THREADS = "threads"
SOCKETS = "sockets"
LOADER = "dynamic loading"
MEMORY = "memory protection and allocator tuning"
ENVIRONMENT = "the environment"
SYSCALL = "raw system calls"
HOOKS = "process-wide hooks"

# C symbols an extension may not import: name -> category (the reason's wording).
# OpenMP's GOMP_*/__kmpc_fork_* are not here: a plain `#pragma omp` runs on the one runtime torch
# loaded (libgomp.so.1 is matched by soname), in the pool size torch set for the worker; what
# changes that size (`omp_set_num_threads`, a `num_threads` clause: the preprocessed scan) is.
DENIED_SYMBOLS: dict[str, str] = {
    **dict.fromkeys(
        "fork vfork _Fork __libc_fork clone clone3 __clone execve execv execvp execvpe execl"
        " execlp execle fexecve execveat posix_spawn posix_spawnp system popen daemon kill"
        " killpg tgkill tkill pidfd_send_signal ptrace prctl process_vm_readv process_vm_writev"
        " unshare setns".split(),
        PROCESS,
    ),
    **dict.fromkeys(
        "signal sigaction __sysv_signal sysv_signal bsd_signal sigset sigqueue raise"
        " pthread_kill pthread_sigqueue sigprocmask pthread_sigmask setitimer alarm ualarm"
        " timer_create timer_settime timerfd_create signalfd".split(),
        SIGNALS,
    ),
    **dict.fromkeys(
        "pthread_create thrd_create omp_set_num_threads __kmpc_push_num_threads".split(), THREADS
    ),
    **dict.fromkeys(
        "socket socketpair connect bind listen accept accept4 sendto sendmsg recvfrom recvmsg"
        " getaddrinfo gethostbyname gethostbyname2 gethostbyname_r".split(),
        SOCKETS,
    ),
    **dict.fromkeys(
        "dlopen dlmopen dlsym dlvsym dladdr dladdr1 dlinfo __libc_dlopen_mode __libc_dlsym"
        " __libc_dlvsym _dl_sym dl_iterate_phdr _dl_find_object _r_debug".split(),
        LOADER,
    ),
    **dict.fromkeys("mprotect pkey_mprotect mallopt".split(), MEMORY),
    **dict.fromkeys("setenv putenv unsetenv clearenv".split(), ENVIRONMENT),
    "syscall": SYSCALL,
}

# C++ entry points (as `nm -C` demangles them) that start threads or install process-wide hooks
# (`std::thread` and `std::async` start theirs in libstdc++, so only this import shows them).
DENIED_CXX: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"std::thread::_M_start_thread\b"), THREADS),
    (
        re.compile(r"at::(?:launch|intraop_launch\w*|set_num_threads|set_num_interop_threads)\("),
        THREADS,
    ),
    (re.compile(r"c10::ThreadPool::ThreadPool\("), THREADS),
    (re.compile(r"c10::Set(?:CPU)?Allocator\("), HOOKS),
    (re.compile(r"at::(?:add|remove)(?:Global|ThreadLocal)Callback\("), HOOKS),
]

# The libraries an extension may link (DT_NEEDED): the C and C++ runtimes, OpenMP, torch's,
# Python's and CUDA's (torch's wheels add an 8-hex-digit hash to the ones they bundle).
LINKABLE = re.compile(
    r"lib(?:c|m|mvec|dl|rt|pthread|gcc_s|stdc\+\+|atomic|gomp|omp|iomp5|shm|c10\w*|torch\w*"
    r"|python3[\w.]*|cuda|cudart|cublas\w*|cudnn\w*|cufft\w*|curand|cusparse\w*|cusolver\w*"
    r"|nvrtc\w*|nvToolsExt|nvJitLink|cupti|nccl|nvidia-ml)(?:-[0-9a-f]{8})?\.so(?:\.[\d.]+)?"
    r"|ld-linux[\w.-]*\.so\.\d+"
)

# Rules that may also read what system headers' macros put on the candidate's lines: all but
# these (pybind's PYBIND11_MODULE expands to Python API calls by design).
_MACRO_NOISY = {Check.PYTHON_FROM_NATIVE}


@dataclass(frozen=True)
class Refusal:
    check: str
    reason: str  # one line, naming the symbol, instruction or rule and where

    def line(self) -> str:
        return f"rejected by {self.check}: {self.reason}"


def _run(
    command: list[str], timeout_s: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str] | None:
    """Run a trusted tool (output decoded with replacement); None when it could not start or
    ran past `timeout_s` (its whole tree is killed: cc1plus runs under g++)."""
    try:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError:
        return None
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.communicate()
        return None
    return subprocess.CompletedProcess(
        command, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    )


def _first_line(proc: subprocess.CompletedProcess[str] | None) -> str:
    if proc is None:
        return "the tool is missing or did not answer"
    lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    return lines[0][:200] if lines else f"exit {proc.returncode}"


@lru_cache(maxsize=1)
def _torch_root() -> str:
    spec = importlib.util.find_spec("torch")
    return str(Path(spec.origin).parent) if spec and spec.origin else ""


def _under(path: str, roots: tuple[str, ...] | list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


@lru_cache(maxsize=1)
def _cuda_home() -> str:
    """The CUDA toolkit's folder ('' without one): the first of CUDA_HOME, CUDA_PATH, nvcc's
    and /usr/local/cuda* that holds the runtime's headers (nvcc may be a wrapper script)."""
    from kernelwright.compiler.precheck_run import find_nvcc

    nvcc = find_nvcc()
    guesses = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    guesses += [str(Path(nvcc).resolve().parent.parent)] if nvcc else []
    guesses += sorted((str(p) for p in Path("/usr/local").glob("cuda*")), reverse=True)
    for guess in guesses:
        if guess and (Path(guess) / "include" / "cuda_runtime_api.h").is_file():
            return os.path.realpath(guess)
    return ""
