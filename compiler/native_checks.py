"""Static checks over the C++/CUDA text a candidate embeds (its strings, comments removed).

Regexes over source text, so each rule errs towards catching a construct in any spelling the
compiler accepts: adjacent string literals are joined as the compiler joins them, and names the
candidate's Python fills in (`scale_{T}`) are matched with holes.
"""

from __future__ import annotations

import re

from kernelwright.check_names import Check
from kernelwright.compiler.findings import REJECT, WARN, Finding

# ATen/torch functions that allocate, describe, guard or launch rather than compute.
_ATEN_NOT_COMPUTE = "|".join(
    [
        r"empty\w*",
        r"zeros\w*",
        r"ones\w*",
        r"full\w*",
        "from_blob",
        "tensor",
        "arange",
        "scalar_tensor",
        "cuda",
        "native",
        "detail",
        "indexing",
        "dtype",
        "device",
        "autocast",
        "globalContext",
        r"get_\w+",
        r"set_\w+",
        r"parallel_\w+",
        "in_parallel_region",
        "irange",
        "elementSize",
        r"check_\w+",
        "manual_seed",
        "toString",
        r"is_\w+",
        r"\w*_type",
    ]
)


# Patterns over the embedded C++/CUDA text: (name, severity, regex, reason)
NATIVE_RULES = [
    (
        Check.DISPATCH_BYPASS,
        REJECT,
        # ATen's kernels called directly (the per-backend and native namespaces and the headers
        # that declare them), dispatch keys switched off, or a redispatch below the Python key
        r"\b(?:at|c10)\s*::\s*(?:native|cpu|meta|compositeexplicitautograd\w*"
        r"|compositeimplicitautograd\w*)\b|\b(?:Exclude|Include|Force)DispatchKeyGuard\b"
        r"|\bDispatchKey\s*::\s*Python\w*|\btls_set_dispatch_key_\w+|\bredispatch\b"
        r"|\bATen/(?:CPU|CUDA|Meta|CompositeExplicitAutograd\w*|CompositeImplicitAutograd\w*)"
        r"Functions(?:_inl)?\.h|\bATen/NativeFunctions\.h|\bATen/ops/\w+_(?:native|\w+_dispatch)\.h"
        r"|\bTorchDispatchModeTLS\b",
        "calls ATen's kernels past its dispatcher or switches dispatch keys off, so the harness's "
        "record of the ops that ran cannot see the work",
    ),
    (
        Check.PERSISTING_L2,
        REJECT,
        r"accessPolicyWindow|cudaLimitPersistingL2CacheSize|hitProp|cudaAccessPropertyPersisting",
        "marks data persisting in L2, which survives the cache flush between timed calls",
    ),
    (
        Check.RESULT_CACHE,
        REJECT,
        # static *variables* only: `static at::Tensor fn(...)` is a function with internal linkage
        r"\bstatic\s+(?:std::)?(?:unordered_map|map|vector)\s*<[^;(]*(?:Tensor|void\s*\*)[^;(]*>"
        r"\s*\w+\s*[;={]"
        r"|\bstatic\s+(?:const\s+)?(?:at|torch)::Tensor\s*[&*]?\s*\w+\s*[;={]"
        r"|\bstatic\s+(?:c10|std)::optional\s*<\s*(?:at|torch)::Tensor\s*>\s*\w+\s*[;={]",
        "keeps tensors or pointers across calls, a cache that can replay earlier results",
    ),
    (
        Check.FILE_REPLAY,
        REJECT,
        # stdio and iostreams, POSIX calls (`open`, `mmap`, raw `syscall`), std::filesystem, and
        # `dlopen`/`dlsym`, which could fetch any of these by name. The expected outputs sit in
        # files beside the candidate's working folder, so native file access is never allowed.
        r"\bfopen\s*\(|std::[io]?fstream|\bfwrite\s*\(|torch::(?:save|load)\b"
        r"|\b(?:open|open64|openat|openat2|creat|freopen|fdopen|popen|opendir|mmap|mmap64)\s*\("
        r"|\bsyscall\b|\bdl(?:open|sym|vsym)\s*\(|std::filesystem"
        r"|#\s*include\s*<(?:fcntl\.h|sys/mman\.h|sys/syscall\.h|dlfcn\.h|filesystem)>",
        "reads or writes files from native code",
    ),
    (
        Check.NETWORK,
        REJECT,
        # `connect(` alone is any function of that name (a union-find's); sockets need these
        r"\bsocket\b|#\s*include\s*<(?:sys/socket|netinet|arpa/|netdb)",
        "opens network connections from native code",
    ),
    (
        Check.ENV_ACCESS,
        REJECT,
        # a name built from anything but one plain literal (`"OPENAI" SUFFIX`) counts as unknown
        r"getenv\s*\(\s*(?:[^\"\s)]|\"[^\"]*(?:KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL)"
        r"|\"[^\"]*\"\s*[^\s)])|/proc/|\benviron\b",
        "reads secrets or the whole environment from native code",
    ),
    (
        Check.THREADS,
        REJECT,
        # `kw::thread` for any namespace alias, type aliases of it, torch's and OpenMP's own
        # pools sized by the candidate (torch runs one thread per side; a plain `#pragma omp`
        # follows it); `clone(` is the system call only where it is no method or ATen function
        # (`x.clone()`, `p->clone()`, `at::clone(x)` copy a tensor)
        r"::\s*j?thread\b(?!::hardware_concurrency)|\bj?thread\s+\w+\s*[({]|pthread_create"
        r"|\b(?:using\s+\w+\s*=|typedef)\s*[\w:]*\bj?thread\b"
        r"|\basync\s*\(\s*(?:std::)?launch|std::async\b|\bpackaged_task\b"
        r"|\b(?:omp_)?set_num_threads\s*\(|\bnum_threads\s*\(|\bat::(?:intraop_)?launch\s*\("
        r"|\bThreadPool\b|\bthrd_create\b|(?:\A|(?<=[^\w.>:\s]))\s*(?:::\s*)?clone3?\s*\("
        r"|#\s*include\s*<threads\.h>|\btbb::"
        r"|\bv?fork\s*\(|\bsystem\s*\(|\bexec[lv]p?e?\s*\(|\bposix_spawnp?\b",
        "starts threads, processes or shell commands from native code",
    ),
    (
        Check.PROCESS_HOOKS,
        REJECT,
        # each runs the candidate's code at moments the harness chooses, not in its own call:
        # an allocator of its own (work deferred to the harness's next allocation, after the
        # timer stopped), callbacks on every ATen op (the reference's too), signal handlers and
        # timers (firing while the reference runs)
        r"\bSet\w*Allocator\s*\(|:\s*(?:public\s+)?(?:c10::|at::)?Allocator\b"
        r"|CUDACachingAllocator::(?!(?:raw_alloc\w*|raw_delete|get)\b)\w+|\bPluggableAllocator\b"
        r"|\bREGISTER_ALLOCATOR\b|\battach\w*(?:Tracker|Observer)\b"
        r"|\b(?:add|remove)(?:Global|ThreadLocal)Callback\b|\bRecordFunctionCallback\b"
        r"|\bsigaction\b|\bsignal\s*\(|\b(?:set|get)itimer\b|\btimer_create\b|\balarm\s*\("
        r"|\bsig(?:queue|setjmp|longjmp)\b|\bpthread_(?:kill|sigqueue)\b|\bat_?exit\s*\("
        r"|#\s*include\s*<(?:csignal|signal\.h|sys/time\.h)>",
        "installs process-wide hooks (allocator, ATen op callbacks, signals or timers) that run "
        "outside its own calls, where the harness times the reference or reads the outputs",
    ),
    (
        Check.PYTHON_FROM_NATIVE,
        REJECT,
        # Python run or reached from C++ sees the whole worker, the harness's timer included,
        # and the Python checks never see it; pybind's own binding (m.def, py::arg) is fine
        r"\b(?:py|pybind11)::(?:exec|eval\w*|globals|module_?::import|import|getattr|setattr"
        r"|delattr|hasattr|reinterpret_\w+|handle|object|dict|function|cpp_function|capsule)\b"
        r"|\b(?:exec|eval_file|globals)\s*\(|\bnamespace\s+(?!py\b)\w+\s*=\s*(?:::)?pybind11\b"
        r"|\.\s*attr\s*\(|\bPy(?:Run|Import|Eval|Object|Dict|Module|Type|Function|Code|Frame"
        r"|Sys|Capsule|Cell|Thread|GILState)_\w+|\bPy_(?:TYPE|Compile\w*|AtExit|AddPendingCall)\b"
        r"|\btp_\w+\b|\bTHP\w+",
        "runs Python or reaches Python objects from native code, out of the Python checks' sight",
    ),
    (
        Check.PATCHING,
        REJECT,
        # kernels registered for PyTorch's own operators run in the reference too (slowed down,
        # say); a candidate registers its own namespace (TORCH_LIBRARY) only
        r"\bTORCH_LIBRARY_(?:IMPL|FRAGMENT)\s*\(\s*(?:aten|prims?|_)\s*,|\"(?:aten|prims?)::"
        r"|\bRegisterOperators\b|\bDispatcher::singleton\b",
        "registers kernels for PyTorch's own operators, which the reference calls as well",
    ),
    (
        Check.PHASE_PROBE,
        REJECT,
        # the seed the inputs were drawn with differs between checked and timed calls
        r"\b(?:current_seed|initial_seed)\s*\(|\b_version\s*\(\s*\)|version_counter",
        "can tell checked calls from timed ones",
    ),
    (
        Check.STREAMS,
        WARN,
        # cublasSetStream is checked by `_cublas_off_current_stream`: most put cuBLAS on the
        # timed stream
        r"cudaStreamCreate|getStreamFromPool|cudaStreamNonBlocking",
        "creates or switches CUDA streams; work off the current stream escapes event timing "
        "(the timer synchronises the whole device, and host time is cross-checked)",
    ),
    (
        Check.LIBRARY_COMPUTE,
        WARN,
        # any ATen/torch op but those that allocate, describe or launch; tensor methods that
        # compute; cuBLAS and cuDNN
        r"\b(?:at|torch)::(?:(?:nn|functional|linalg|fft|special)::)*"
        rf"(?!(?:{_ATEN_NOT_COMPUTE})\b)[a-z_]\w*\s*\("
        r"|\.(?:matmul|mm|bmm|addmm|sum|mean|softmax|log_softmax|exp|tanh|sigmoid|relu|cumsum|"
        r"norm|pow|sqrt|addcmul|lerp)\s*\(|\bcublas\w+\s*\(|\bcudnn\w+\s*\(",
        "calls a library (ATen/cuBLAS/cuDNN) for part of the work",
    ),
    (
        Check.PRECISION,
        WARN,
        r"__float2half|__float2bfloat16|--use_fast_math|-use_fast_math|__fdividef|__expf\b|"
        r"\bwmma::precision::tf32|\btf32\b",
        "lowers precision or uses fast math; the tolerance check decides if it is still correct",
    ),
]


def kernel_names(code: str) -> list[str]:
    """Names of the `__global__` functions defined in CUDA source text."""
    code = re.sub(r"__launch_bounds__\s*\([^)]*\)", " ", code)
    # a name Python fills in (`scale_{T}`, `scale_%s`) gets `*` for each hole: `scale_*`
    found = re.findall(r"__global__\s+[\w:<>,\s*&]*?((?:\w|\{\w*\}|%\w|%\(\w+\)s)+)\s*\(", code)
    names = [re.sub(r"\{\w*\}|%\w|%\(\w+\)s", "*", name) for name in found]
    return [name for name in names if name.strip("*")]  # `{name}` alone: nothing to know it by


def strip_comments(code: str) -> str:
    """`code` as the compiler reads it after its first phases: lines continued with a backslash
    joined (`pthread_cre\\<newline>ate` is one name), and comments replaced by a space, but never
    inside a string or character literal (`"/*"` opens no comment) or a raw string."""
    code = re.sub(r"\\\r?\n", "", code)
    out: list[str] = []
    i, n = 0, len(code)
    while i < n:
        two = code[i : i + 2]
        if two == "//":
            end = code.find("\n", i)
            i = n if end < 0 else end
            out.append(" ")
        elif two == "/*":
            end = code.find("*/", i + 2)
            i = n if end < 0 else end + 2
            out.append(" ")
        elif code[i] == '"' or (code[i] == "'" and not _digit_separator(code, i)):
            raw = re.match(r'R"([^()\\\s]{0,16})\(', code[i - 1 : i + 20]) if i else None
            if raw and code[i] == '"':  # R"delim( ... )delim"
                end = code.find(f'){raw.group(1)}"', i)
                end = n if end < 0 else end + len(raw.group(1)) + 2
            else:
                end = _literal_end(code, i)
            out.append(code[i:end])
            i = end
        else:
            out.append(code[i])
            i += 1
    return "".join(out)


def _literal_end(code: str, start: int) -> int:
    """Where the string or character literal opened at `start` ends (past its closing quote);
    one left open ends with its line, as the compiler gives up there too."""
    quote, i = code[start], start + 1
    while i < len(code) and code[i] != "\n":
        if code[i] == "\\":
            i += 2
            continue
        if code[i] == quote:
            return i + 1
        i += 1
    return i


def _digit_separator(code: str, i: int) -> bool:
    """`1'000'000`: a quote inside a number (C++14) opens no character literal; one after a
    prefix (`L'x'`, `u8'x'`) or anything else does."""
    token = re.search(r"[\w.]*$", code[max(0, i - 64) : i])
    return bool(token and token.group(0)[:1].isdigit())


_C_STRING = r'"(?:[^"\\\n]|\\.)*"'


def _join_adjacent_strings(code: str) -> str:
    """`"OPENAI" "_KEY"` as the compiler sees it: one literal (adjacent literals are joined)."""

    def join(match: re.Match[str]) -> str:
        return '"' + "".join(part[1:-1] for part in re.findall(_C_STRING, match.group(0))) + '"'

    return re.sub(rf"{_C_STRING}(?:\s*{_C_STRING})+", join, code)


_CURRENT_STREAM = r"(?:\w+::)*getCurrentCUDAStream\s*\([^()]*\)(?:\s*\.\s*stream\s*\(\s*\))?"


def _cublas_off_current_stream(code: str) -> str | None:
    """A `cublasSetStream` call whose stream is not the current one: neither
    `getCurrentCUDAStream()` itself nor a variable only ever set from it."""
    for match in re.finditer(r"cublasSetStream(?:_v2)?\s*\(([^;]*)\)\s*;", code):
        stream = match.group(1).rpartition(",")[2].strip()
        if re.fullmatch(_CURRENT_STREAM, stream):
            continue
        if re.fullmatch(r"\w+", stream):
            sets = re.findall(rf"\b{stream}\s*=(?!=)\s*([^;]*);", code)
            named = re.findall(rf"\b{stream}\s*[({{]\s*([^;]*?)\s*[)}}]\s*;", code)
            values = [v.strip() for v in sets + named]
            if values and all(re.fullmatch(_CURRENT_STREAM, v) for v in values):
                continue
        return match.group(0)
    return None


_CODE_ONLY = {
    Check.FILE_REPLAY,  # `TORCH_CHECK(ok, "failed to open (...)")` opens nothing
    Check.NETWORK,
    Check.THREADS,
    Check.PHASE_PROBE,
    Check.RESULT_CACHE,
    Check.LIBRARY_COMPUTE,
    Check.PROCESS_HOOKS,
    Check.PYTHON_FROM_NATIVE,
}


def _registration_off_own_namespace(code: str) -> str:
    """A `TORCH_LIBRARY_IMPL`/`_FRAGMENT` for a namespace the code does not define itself with
    `TORCH_LIBRARY` (a macro standing for `aten`, say); '' when there is none."""
    own = set(re.findall(r"\bTORCH_LIBRARY\s*\(\s*(\w+)", code))
    for match in re.finditer(r"\bTORCH_LIBRARY_(?:IMPL|FRAGMENT)\s*\(\s*(\w+)", code):
        if match.group(1) not in own:
            return match.group(0)
    return ""


def native_findings(code: str) -> list[Finding]:
    findings = []
    joined = _join_adjacent_strings(code)
    # Rules about code, not text, skip what strings say ("one thread (per row)" in a message)
    prose_free = re.sub(_C_STRING, '""', code)
    for name, severity, pattern, reason in NATIVE_RULES:
        if name in _CODE_ONLY:
            match = re.search(pattern, prose_free)
        else:
            match = re.search(pattern, code) or re.search(pattern, joined)
        if match:
            findings.append(Finding(name, severity, f"{reason} (`{match.group(0).strip()}`)"))
    registered = _registration_off_own_namespace(prose_free)
    if registered and not any(f.check == Check.PATCHING for f in findings):
        reason = next(r for n, _, _, r in NATIVE_RULES if n == Check.PATCHING)
        findings.append(Finding(Check.PATCHING, REJECT, f"{reason} (`{registered}`)"))
    foreign = _cublas_off_current_stream(code)
    if foreign and not any(f.check == Check.STREAMS for f in findings):
        reason = next(r for n, _, _, r in NATIVE_RULES if n == Check.STREAMS)
        findings.append(Finding(Check.STREAMS, WARN, f"{reason} (`{foreign}`)"))
    return findings
