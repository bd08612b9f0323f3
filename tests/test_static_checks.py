"""Static checks: each rule fires on its construct and stays quiet on legitimate code."""

from __future__ import annotations

from pathlib import Path

import pytest
from kernelwright.compiler.findings import REJECT, WARN
from kernelwright.compiler.native_checks import kernel_names, native_findings, strip_comments
from kernelwright.verifier.static_checks import check_candidate

LEGIT = '''
import os
import math
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.cpp_extension import load_inline

os.environ["TORCH_CUDA_ARCH_LIST"] = os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0")

cuda_src = """
#include <torch/extension.h>
template <typename T>
__global__ void __launch_bounds__(256) fused_kernel(const T* x, T* y, int n) {
    static_assert(sizeof(T) >= 2, "");
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] > T(0) ? x[i] : T(0);
}
torch::Tensor fused(torch::Tensor x) {
    auto y = torch::empty_like(x);
    const int n = x.numel();
    fused_kernel<float><<<(n + 255) / 256, 256, 0, at::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<float>(), y.data_ptr<float>(), n);
    return y;
}
TORCH_LIBRARY(myops, m) { m.def("scale(Tensor x) -> Tensor", &fused); }
"""
ops = load_inline(name="legit", cpp_sources="torch::Tensor fused(torch::Tensor x);",
                  cuda_sources=cuda_src, functions=["fused"])


class ModelNew(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.ops = ops
        self.linear = nn.Linear(dim, dim)  # parameters only; never called
        self.scale = 1.0 / math.sqrt(dim // heads)
        for i in range(2):
            setattr(self, f"gain{i}", nn.Parameter(torch.ones(dim)))

    def forward(self, x, mask=None):
        n = x.size(0) * x.size(1)
        rows = x.shape[0] * 2
        buf = torch.empty(n, device=x.device)
        y = self.ops.fused(x.contiguous().view(-1))
        y = ops.fused(y)
        limit = np.sqrt(float(rows))
        return y.view_as(x), limit
'''


def _rejects(source: str, target: str = "cuda") -> list[str]:
    return [f.check for f in check_candidate(source, target) if f.severity == REJECT]


def test_legitimate_candidate_passes():
    assert _rejects(LEGIT) == []


def test_kernel_names_handle_templates_and_launch_bounds():
    assert kernel_names(LEGIT) == ["fused_kernel"]


def test_a_kernel_name_filled_in_by_python_is_known_by_its_fixed_part():
    code = (
        "__global__ void scale_{T}_kernel(const float* x) {}\n"
        "__global__ void row_%s(float* y) {}\n"
        "__global__ void {name}(int n) {}\n"  # nothing fixed to know it by
    )
    assert kernel_names(code) == ["scale_*_kernel", "row_*"]
    templated = LEGIT.replace("fused_kernel", "fused_{dtype}_kernel")
    assert _rejects(templated) == []


@pytest.mark.parametrize(
    ("change", "check"),
    [
        (('"TORCH_CUDA_ARCH_LIST", "9.0")', '"OPENAI_API_KEY", "")'), "env_access"),
        (("os.environ[", "print(dict(os.environ)); os.environ["), "env_access"),
        (("import os\n", "import os\nimport threading\n"), "threads"),
        (("self.ops = ops", "torch.backends.cudnn.enabled = False"), "patching"),
        (("self.ops = ops", "setattr(torch, 'allclose', None)"), "patching"),
        (("if (i < n)", "static std::vector<at::Tensor> kept; if (i < n)"), "result_cache"),
        (
            ("__global__ void __launch_bounds__(256) fused_kernel", "void fused_kernel"),
            "no_custom_kernel",
        ),
    ],
)
def test_rule_fires(change, check):
    source = LEGIT.replace(*change)
    assert source != LEGIT
    assert check in _rejects(source)


def test_no_custom_kernel_applies_to_cuda_only():
    cpu_source = LEGIT.replace(
        "__global__ void __launch_bounds__(256) fused_kernel", "void fused_kernel"
    )
    assert "no_custom_kernel" not in _rejects(cpu_source, "cpu")


@pytest.mark.parametrize(
    ("snippet", "check"),
    [
        ("at::matmul(a, b)", "library_compute"),
        ("auto y = at::addcmul(a, b, c)", "library_compute"),
        ("auto y = torch::nn::functional::relu(a)", "library_compute"),
        ("auto s = a.sum()", "library_compute"),
        ("cublasSgemm(h, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1)", "library_compute"),
        ("__float2half(v)", "precision"),
        ("cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)", "streams"),
    ],
)
def test_warnings_are_not_rejections(snippet, check):
    source = LEGIT.replace("if (i < n)", snippet + "; if (i < n)")
    findings = check_candidate(source)
    assert any(f.check == check and f.severity == WARN for f in findings)
    assert _rejects(source) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "auto out = torch::empty_like(x)",
        "auto out = at::empty({n}, x.options().dtype(at::kFloat))",
        "auto z = torch::zeros({n})",
        "auto stream = at::cuda::getCurrentCUDAStream()",
        "at::parallel_for(0, n, 64, [&](int64_t b, int64_t e) {})",
        "const float* p = x.contiguous().data_ptr<float>()",
        "int m = std::max(a, b)",
    ],
)
def test_allocating_and_describing_calls_are_not_library_compute(snippet):
    source = LEGIT.replace("if (i < n)", snippet + "; if (i < n)")
    assert not [f for f in check_candidate(source) if f.check == "library_compute"]


KERNEL_CALLS = "y = self.ops.fused(x.contiguous().view(-1))\n        y = ops.fused(y)"
COMPUTE = [
    "y = F.gelu(x)",
    "y = self.linear(x)",
    "y = x @ self.gain0",
    "y = x + 1",
    "y = self.linear.weight * x",
    "y = x.softmax(-1)",
    "y = torch.ops.aten.relu(x)",
    "y = getattr(torch, 'relu')(x)",
]


@pytest.mark.parametrize("line", COMPUTE)
def test_pytorch_in_place_of_a_kernel_is_rejected(line):
    assert KERNEL_CALLS in LEGIT
    assert "torch_compute" in _rejects(LEGIT.replace(KERNEL_CALLS, line))


@pytest.mark.parametrize("line", [c for c in COMPUTE if "getattr" not in c])
def test_pytorch_beside_a_kernel_is_a_warning(line):
    source = LEGIT.replace(
        "y = ops.fused(y)", "y = ops.fused(y)\n        " + line.replace("y =", "z =")
    )
    findings = check_candidate(source)
    assert any(f.check == "torch_compute_partial" and f.severity == WARN for f in findings)
    assert _rejects(source) == []


@pytest.mark.parametrize(
    "line", ["y = torch.compile(lambda t: t * 2)(y)", "y = getattr(torch, 'relu')(y)"]
)
def test_compiled_or_obfuscated_pytorch_is_rejected_even_beside_a_kernel(line):
    assert "torch_compute" in _rejects(LEGIT.replace("y = ops.fused(y)", line))


def test_own_registered_ops_are_allowed():
    assert _rejects(LEGIT.replace("y = ops.fused(y)", "y = torch.ops.kw_legit.fused(y)")) == []


@pytest.mark.parametrize(
    ("line", "is_cache"),
    [
        ("static std::unordered_map<const void*, torch::Tensor> cache;", True),
        ("static at::Tensor last;", True),
        ("static at::Tensor last = at::empty({1});", True),
        ("static torch::Tensor& last{};", True),
        ("static c10::optional<at::Tensor> saved;", True),
        ("static std::optional<at::Tensor> saved = std::nullopt;", True),
        # functions with internal linkage, as the fast-building layout writes them
        ("static at::Tensor row_sum(const at::Tensor& x) {", False),
        ("static std::vector<at::Tensor> split(const at::Tensor& x) {", False),
        ("static const at::Tensor& same(const at::Tensor& x) {", False),
    ],
)
def test_result_cache_means_static_variables_not_static_functions(line, is_cache):
    found = any(f.check == "result_cache" for f in native_findings(line))
    assert found == is_cache


@pytest.mark.parametrize(
    ("line", "is_file_access"),
    [
        ('FILE* f = fopen("../reference/out0.pt", "rb");', True),
        ('int fd = ::open("../reference/case0.bin", O_RDONLY);', True),
        ("int fd = openat(AT_FDCWD, path, 0);", True),
        ("void* p = mmap(nullptr, n, PROT_READ, MAP_PRIVATE, fd, 0);", True),
        ("long r = syscall(SYS_openat, AT_FDCWD, path, 0);", True),
        ('auto fn = dlsym(RTLD_DEFAULT, "open");', True),
        ("for (auto& e : std::filesystem::directory_iterator(dir)) {}", True),
        ("#include <fcntl.h>", True),
        ("#include <sys/mman.h>", True),
        ("std::ifstream in(path);", True),
        # look-alikes that touch no file
        ("const bool is_open_row = reopen_count > 0;", False),
        ("int syscalls_total = 0;", False),
        ("float opening = 0.5f;  // open() in a comment is not code", False),
        ('printf("%d\\n", n);', False),
    ],
)
def test_native_file_access_in_any_spelling_is_caught(line, is_file_access):
    found = any(f.check == "file_replay" for f in native_findings(strip_comments(line)))
    assert found == is_file_access


WITHOUT_KERNEL_CALLS = LEGIT.replace(
    "        y = self.ops.fused(x.contiguous().view(-1))\n        y = ops.fused(y)\n",
    "        y = _work(x)\n",
)


@pytest.mark.parametrize(
    "helper",
    [
        # the work moved out of ModelNew into a module-level function it calls
        "def _work(t):\n    return torch.add(t, 1)\n",
        "def _work(t):\n    return _deeper(t)\ndef _deeper(t):\n    return t.softmax(-1)\n",
        # ... or into a module of the candidate's own that ModelNew builds and calls
        "class _Impl(nn.Module):\n    def forward(self, t):\n        return t @ t\n"
        "def _work(t):\n    return _Impl()(t)\n",
    ],
)
def test_pytorch_in_a_helper_that_modelnew_calls_is_found(helper):
    assert WITHOUT_KERNEL_CALLS != LEGIT
    source = WITHOUT_KERNEL_CALLS.replace("\nclass ModelNew", f"\n{helper}\n\nclass ModelNew")
    assert "torch_compute" in _rejects(source)


def test_a_helper_computing_sizes_or_calling_the_kernel_is_fine():
    helper = (
        "def _grid(n, block=256):\n    return (n + block - 1) // block\n"
        "def _work(t):\n    return ops.fused(t.view(-1) if _grid(t.numel()) else t)\n"
    )
    source = WITHOUT_KERNEL_CALLS.replace("\nclass ModelNew", f"\n{helper}\n\nclass ModelNew")
    assert _rejects(source) == []


def test_modelnew_bound_to_another_class_is_checked_as_that_class():
    source = (
        LEGIT.replace("class ModelNew", "class Fast").replace(KERNEL_CALLS, "y = torch.add(x, 1)")
        + "\nModelNew = Fast\n"
    )
    assert "torch_compute" in _rejects(source)


@pytest.mark.parametrize(
    ("line", "check"),
    [
        ("y = torch.addcmul(self.gain0, x, x)", "torch_compute"),
        ("inp, g = x, self.gain0\n        y = inp * g", "torch_compute"),  # renamed tensors
        ("y = mul(x, self.gain0)", "torch_compute"),  # `from operator import mul` below
        ("y = x.mul_(2)", "torch_compute"),  # in-place variants
        ("y = __builtins__['ex' + 'ec']('y = x')", "patching"),
        ("y = sys.modules['kw_problem']", "harness_access"),
        ("y = s.argv[1]", "harness_access"),  # `import sys as s` below
    ],
)
def test_indirect_pytorch_and_harness_reach_are_rejected(line, check):
    source = LEGIT.replace("import os\n", "import os\nimport sys\nimport sys as s\n")
    source = source.replace("import math\n", "import math\nfrom operator import mul\n")
    assert check in _rejects(source.replace(KERNEL_CALLS, line))


@pytest.mark.parametrize(
    "line", ["from os import environ", "from sys import modules", "from sys import argv as a"]
)
def test_importing_the_environment_or_the_harness_by_name_is_rejected(line):
    assert _rejects(LEGIT.replace("import os\n", f"import os\n{line}\n"))


def test_operator_on_sizes_is_fine():
    source = LEGIT.replace("import math\n", "import math\nimport functools\nimport operator\n")
    sizes = "n = functools.reduce(operator.mul, x.shape, 1)\n        k = operator.add(n, 1)"
    assert _rejects(source.replace("y = ops.fused(y)", sizes + "\n        y = ops.fused(y)")) == []


@pytest.mark.parametrize(
    "line",
    [
        "y = torch.from_numpy(np.tanh(x.detach().cpu().numpy()))",
        "y = torch.as_tensor(np.tanh(x))",
        "y = torch.as_tensor(numpy_tanh(x))",
    ],
)
def test_numpy_doing_the_work_is_rejected_even_beside_a_kernel(line):
    source = LEGIT.replace(
        "import numpy as np", "import numpy as np\nfrom numpy import tanh as numpy_tanh"
    )
    assert "host_compute" in _rejects(
        source.replace("y = ops.fused(y)", "y = ops.fused(y)\n        " + line)
    )


def test_numpy_on_sizes_is_fine():
    source = LEGIT.replace(
        "y = ops.fused(y)", "y = ops.fused(y)\n        k = int(np.prod(x.shape))"
    )
    assert _rejects(source) == []


OPTIONAL_IMPORT = "try:\n    import triton\nexcept ImportError:\n    triton = None\n"


@pytest.mark.parametrize(
    "block", [OPTIONAL_IMPORT, OPTIONAL_IMPORT.replace("triton = None", "pass")]
)
def test_an_optional_import_is_not_a_fallback(block):
    source = LEGIT.replace("\n\nclass ModelNew", "\n" + block + "\n\nclass ModelNew")
    assert _rejects(source) == []


@pytest.mark.parametrize(
    "block",
    [
        "try:\n    y = ops.fused(torch.ones(1))\nexcept Exception:\n    pass\n",
        "try:\n    import triton\nexcept ImportError:\n    ops = torch.nn.ReLU()\n",
        "try:\n    import triton\nexcept ImportError:\n    pass\nelse:\n    ops = None\n",
    ],
)
def test_try_around_anything_but_imports_is_a_fallback(block):
    source = LEGIT.replace("\n\nclass ModelNew", "\n" + block + "\n\nclass ModelNew")
    assert "try_fallback" in _rejects(source)


# Legitimate habits a false-positive hunt found rejected (each once was).
@pytest.mark.parametrize(
    ("line", "reads_secret"),
    [
        # the compiler joins adjacent literals, so the checks do too
        ('const char* k = getenv("" "OPENAI_API_KEY");', True),
        ('const char* k = std::getenv("OPENAI_"\n    "API_KEY");', True),
        ('FILE* f = fopen("/pr" "oc/self/environ", "r");', True),
        ('const char* k = getenv("ANTHROPIC" SUFFIX);', True),
        ("const char* k = getenv(name);", True),
        # a plain variable name, and literals beside a getenv, are fine
        ('const char* jobs = getenv("MAX_JOBS");', False),
        ('printf("%s" " rows\\n", "n"); const char* d = getenv( "CUDA_VISIBLE_DEVICES" );', False),
    ],
)
def test_secrets_split_across_adjacent_literals_are_found(line, reads_secret):
    assert any(f.check == "env_access" for f in native_findings(line)) == reads_secret


@pytest.mark.parametrize(
    ("line", "switches"),
    [
        ("cublasSetStream(handle, at::cuda::getCurrentCUDAStream());", False),
        ("cublasSetStream_v2(h, c10::cuda::getCurrentCUDAStream().stream());", False),
        ("cudaStream_t s = at::cuda::getCurrentCUDAStream(); cublasSetStream(handle, s);", False),
        ("cublasSetStream(handle, side);", True),
        ("cudaStream_t s = getCurrentCUDAStream(); s = side; cublasSetStream(h, s);", True),
        ("cudaStreamCreate(&s);", True),
    ],
)
def test_putting_cublas_on_the_current_stream_is_not_a_stream_switch(line, switches):
    assert any(f.check == "streams" for f in native_findings(line)) == switches


OWN_MODULE = (
    "class FusedLinearReLU(nn.Module):\n"
    "    def forward(self, x):\n"
    "        return ops.fused(x)\n\n\n"
    "class MyGELU(nn.GELU):\n"
    "    pass\n\n\n"
)


@pytest.mark.parametrize(
    ("layer", "is_pytorch"),
    [
        ("FusedLinearReLU()", False),  # the candidate's own module, named like a torch layer
        ("MyGELU()", True),  # the candidate's class, but torch's GELU does the work
        ("nn.MaxPool3d(2)", True),
        ("nn.AdaptiveAvgPool3d(1)", True),
        ("nn.SiLU()", True),
        ("torch.nn.Mish()", True),
        ("nn.Identity()", False),
        ("nn.Flatten()", False),
    ],
)
def test_any_torch_layer_computes_but_the_candidates_own_modules_do_not(layer, is_pytorch):
    source = LEGIT.replace("\n\nclass ModelNew", "\n" + OWN_MODULE + "class ModelNew")
    source = source.replace("self.ops = ops", f"self.ops = ops\n        self.layer = {layer}")
    source = source.replace(KERNEL_CALLS, "y = self.layer(x)")
    if is_pytorch:
        assert "torch_compute" in _rejects(source)
    else:
        assert not [f for f in check_candidate(source) if f.check.startswith("torch_compute")]


@pytest.mark.parametrize(
    ("lines", "reads"),
    [
        ("from pathlib import Path\nX = Path('../ref/out0.pt').read_bytes()\n", True),
        ("import pathlib\nX = pathlib.Path('out.txt').read_text()\n", True),
        ("from pathlib import Path\nX = Path('a').open().read()\n", True),
        ("import io\nX = io.open('a', 'rb').read()\n", True),
        ("import os\nX = os.read(3, 10)\n", True),
        ("import os\nX = os.listdir('..')\n", True),
        ("X = np.fromfile('a')\n", True),
        ("X = torch.from_file('a', size=4)\n", True),
        ("import mmap\n", True),
        ("import safetensors.torch\n", True),
        ("with open('k.cu', 'w+') as f:\n    X = f.read()\n", True),
        ("MODE = 'w'\nwith open('k.cu', MODE) as f:\n    X = f.read()\n", True),
        # writing a source file to build it reads nothing
        ("with open('k.cu', 'w') as f:\n    f.write(cuda_src)\n", False),
        ("from pathlib import Path\nPath('k.cu').write_text('x')\n", False),
        ("from pathlib import Path\nPath('k.cu').open(mode='wt').write('x')\n", False),
    ],
)
def test_python_file_reads_in_any_spelling_are_caught(lines, reads):
    source = LEGIT.replace("\n\nclass ModelNew", "\n" + lines + "\n\nclass ModelNew")
    assert ("file_replay" in _rejects(source)) == reads


# A third red team's ways in: telling checked calls from timed ones, slowing the reference
# through torch itself, and reaching frames without `inspect`.
@pytest.mark.parametrize(
    ("lines", "check"),
    [
        ("torch.__dict__['sum'] = None\n", "patching"),
        ("SUM = torch.__dict__['sum']\n", "patching"),
        ("import kw_problem\n", "harness_access"),
        ("import traceback\n", "frame_snooping"),
        ("FRAME = getattr(sys, '_getframe')\n", "frame_snooping"),
        ("SEED = torch.initial_seed()\n", "phase_probe"),
        ("from torch import initial_seed\n", "phase_probe"),
        ("VERSION = getattr(torch.ones(1), '_version')\n", "phase_probe"),
        ("from torch.overrides import TorchFunctionMode\n", "patching"),
        ("H = torch.nn.modules.module.register_module_forward_pre_hook(print)\n", "patching"),
        ("torch.set_num_threads(1)\n", "patching"),
        # red team 4: computed attribute names reach frames and the harness's locals
        ("F_ = getattr(sys, '_get' + 'frame')(1)\n", "frame_snooping"),
        ("BACK = getattr(F_, NAME)\n", "frame_snooping"),
        ("from operator import attrgetter\nG = attrgetter('f_' + 'back')\n", "frame_snooping"),
        ("from functools import reduce\nF_ = reduce(getattr, NAMES, sys)\n", "frame_snooping"),
        ("object.__setattr__(torch.Tensor, 'add', None)\n", "frame_snooping"),
        ("sys.settrace(print)\n", "frame_snooping"),
        ("import signal\n", "frame_snooping"),
        # aliases of torch's own objects, then patched
        ("T = torch.Tensor\nT.__mul__ = T.__add__\n", "patching"),
        ("from torch import Tensor as T\nT.__mul__ = T.__add__\n", "patching"),
        ("(T := torch.Tensor)\nT.__mul__ = T.__add__\n", "patching"),
        # kernels registered for aten's ops slow the reference down in the same process
        ("LIB = torch.library.Library('aten', 'IMPL', 'CPU')\n", "patching"),
        ("from torch.library import Library as L\nLIB = L('aten', 'IMPL')\n", "patching"),
        ("torch.library.impl('aten::mul.Tensor', 'CPU')(print)\n", "patching"),
    ],
)
def test_ways_to_tell_or_slow_the_timed_calls_are_rejected(lines, check):
    source = LEGIT.replace("\n\nclass ModelNew", "\n" + lines + "\n\nclass ModelNew")
    assert check in _rejects(source)


@pytest.mark.parametrize(
    ("line", "probes"),
    [
        ("uint64_t s = at::detail::getDefaultCPUGenerator().current_seed();", True),
        ("auto v = x._version();", True),
        # a kernel that draws random numbers needs the generator, not the seed
        ("auto gen = at::cuda::detail::getDefaultCUDAGenerator();", False),
    ],
)
def test_native_code_reading_the_seed_is_a_phase_probe(line, probes):
    assert any(f.check == "phase_probe" for f in native_findings(line)) == probes


@pytest.mark.parametrize(
    ("line", "check"),
    [
        # red team 4: a thread by an alias precomputed outputs during the untimed refill
        ("namespace kw = std; using worker_t = kw::thread; worker_t(loop).detach();", "threads"),
        ("typedef std::thread T; T t(loop);", "threads"),
        ("at::set_num_threads(2); run(); at::set_num_threads(1);", "threads"),
        ("#pragma omp parallel for num_threads(8)", "threads"),
        ("omp_set_num_threads(8);", "threads"),
        ("at::launch([] { work(); });", "threads"),
        ('TORCH_LIBRARY_IMPL(aten, CPU, m) { m.impl("mul.Tensor", slow_mul); }', "patching"),
        (
            '#define NS aten\nTORCH_LIBRARY_IMPL(NS, CPU, m) { m.impl("mul.Tensor", f); }',
            "patching",
        ),
        ('static auto r = c10::RegisterOperators().op("aten::mul", f);', "patching"),
    ],
)
def test_native_threads_and_aten_registrations_in_any_spelling_are_caught(line, check):
    assert check in [f.check for f in native_findings(line) if f.severity == REJECT]


@pytest.mark.parametrize(
    "line",
    [
        'TORCH_CHECK(n > 0, "one thread (per row) needs rows; thread block (256) too small");',
        "#pragma omp parallel for",  # follows torch's one thread
        "int threads = at::get_num_threads();",
        'TORCH_LIBRARY(myops, m) { m.def("scale(Tensor x) -> Tensor"); }\n'
        'TORCH_LIBRARY_IMPL(myops, CPU, m) { m.impl("scale", &scale); }',
    ],
)
def test_native_prose_own_ops_and_plain_openmp_are_fine(line):
    assert [f.check for f in native_findings(line) if f.severity == REJECT] == []


# Red team 7 (native code): each hides its trick from the checks it knew; (file, the check now)
NATIVE_ATTACKS = {
    "rt7_alloc_deferred_gelu.py": "process_hooks",  # own CPU allocator: work after the timer
    "rt7_recfn_ref_slowdown_gelu.py": "process_hooks",  # ATen op callback slows the reference
    "rt7_sigalrm_ref_slowdown_gelu.py": "process_hooks",  # a signal timer slows the reference
    "rt7_capi_clock_patch_gelu.py": "python_from_native",  # py::exec rewrites the timer
    "rt7_c11_thread_gelu.py": "threads",  # C11 thrd_create
    "rt7_comment_strip_omp_gelu.py": "threads",  # "/*" in a string hid num_threads(2)
}


@pytest.mark.parametrize(("name", "check"), sorted(NATIVE_ATTACKS.items()))
def test_native_hooks_python_calls_and_hidden_threads_are_rejected(fixtures_dir, name, check):
    source = (fixtures_dir / "native_attacks" / name).read_text()
    assert check in [f.check for f in check_candidate(source, "cpu") if f.severity == REJECT]


@pytest.mark.parametrize(
    ("code", "kept", "gone"),
    [
        ('a = "/*"; pthread_create(); b = "*/";', "pthread_create", None),
        ("c = L'/*'; hidden(); d = '*/';", "hidden", None),
        ('R"x(/* )" */ )x" after_raw', "after_raw", None),
        ("int n = 1'000'000; /* note */ code", "code", "note"),
        ("// a comment \\\ncontinued\nnext", "next", "continued"),
        ("pthread_cre\\\nate(", "pthread_create(", None),
        ('s = "http://x"; t();', "t();", None),
    ],
)
def test_comments_are_stripped_as_the_compiler_reads_them(code, kept, gone):
    stripped = strip_comments(code)
    assert kept in stripped
    assert gone is None or gone not in stripped


@pytest.mark.parametrize(
    ("line", "check"),
    [
        ("c10::SetCPUAllocator(&mine, 100);", "process_hooks"),
        ("struct Lazy final : public c10::Allocator {", "process_hooks"),
        ("c10::cuda::CUDACachingAllocator::allocator.store(&mine);", "process_hooks"),
        ("alloc->attachAllocatorTraceTracker(cb);", "process_hooks"),
        ("at::addGlobalCallback(at::RecordFunctionCallback(on_op));", "process_hooks"),
        ("struct sigaction sa{}; sigaction(SIGALRM, &sa, nullptr);", "process_hooks"),
        ("std::signal(SIGALRM, handler);", "process_hooks"),
        ("setitimer(ITIMER_REAL, &t, nullptr);", "process_hooks"),
        ('py::exec("import sys");', "python_from_native"),
        ('namespace q = pybind11; q::exec("x");', "python_from_native"),
        ('py::module_::import("kernelwright");', "python_from_native"),
        ('obj.attr("sample") = f;', "python_from_native"),
        ('PyObject_SetAttrString(cls, "sample", f);', "python_from_native"),
        ("PyObject* t = THPVariable_Wrap(x);", "python_from_native"),
        ("thrd_t t; thrd_create(&t, work, nullptr);", "threads"),
        ("tbb::parallel_for(0, n, body);", "threads"),
    ],
)
def test_native_process_hooks_and_python_calls_are_caught(line, check):
    assert check in [f.check for f in native_findings(line) if f.severity == REJECT]


@pytest.mark.parametrize(
    "line",
    [
        "void* ws = c10::cuda::CUDACachingAllocator::raw_alloc(n); "
        "c10::cuda::CUDACachingAllocator::raw_delete(ws);",
        'namespace py = pybind11; m.def("f", &f, py::arg("x"));',
        'void bind(py::module& m) { m.def("f", &f); }',
        'TORCH_CHECK(ok, "a signal (x) of failure");',
        'TORCH_CHECK(ok, "failed to open (a file), no socket either");',
        "float eval(float x) { return x; }",
    ],
)
def test_workspaces_and_plain_pybind_bindings_are_fine(line):
    assert [f.check for f in native_findings(line) if f.severity == REJECT] == []


LEGIT_HABITS = {
    "reraise": (
        "\n\nclass ModelNew",
        "\ntry:\n    import triton\nexcept Exception as e:\n"
        "    raise RuntimeError('no triton') from e\n\n\nclass ModelNew",
    ),
    "main_block": (
        "\n\nclass ModelNew",
        "\nif __name__ == '__main__':\n    try:\n"
        "        print(os.environ)\n    except Exception:\n        pass\n\n\nclass ModelNew",
    ),
    "env_membership": ("import os\n", "import os\nJOBS = 'MAX_JOBS' in os.environ\n"),
    "platform": (
        "import os\n",
        "import os\nimport platform\nIS_LINUX = platform.system() == 'Linux'\n",
    ),
    "hardware_threads": ("if (i < n)", "int t = std::thread::hardware_concurrency(); if (i < n)"),
    "connect_function": ("if (i < n)", "connect(parent, i); if (i < n)"),
    # helper 19: logged then re-raised, cleanup in `finally`, the candidate's own op namespace
    "log_reraise": (
        "\n\nclass ModelNew",
        "\nimport logging\nlog = logging.getLogger(__name__)\ntry:\n    import triton\n"
        "except Exception:\n    log.warning('no triton')\n    raise\n\n\nclass ModelNew",
    ),
    "try_finally_cleanup": (
        "\n\nclass ModelNew",
        "\ndef _run(f):\n    try:\n        return f()\n    finally:\n        print('done')"
        "\n\n\nclass ModelNew",
    ),
    "own_ops_by_name": (
        "        y = ops.fused(y)",
        "        y = ops.fused(y)\n        y = getattr(torch.ops.myops, 'sc' + 'ale')(y)",
    ),
    "getattr_self_by_name": (
        "        y = ops.fused(y)",
        "        y = ops.fused(y)\n        g = getattr(self, f'gain{0}')",
    ),
    # prose that reads like C to a regex: nothing compiles a docstring no code reads back
    "docstring_prose": (
        "\n\nclass ModelNew",
        '\n"""One thread per (row, col); the coordinate system (x, y) is row-major."""'
        "\n\n\nclass ModelNew",
    ),
}


@pytest.mark.parametrize("habit", sorted(LEGIT_HABITS))
def test_legitimate_habits_are_not_rejected(habit):
    source = LEGIT.replace(*LEGIT_HABITS[habit])
    assert source != LEGIT
    assert _rejects(source) == []


@pytest.mark.parametrize(
    "line",
    [
        "ext = _build()\n        y = ext.relu(x)",  # a function that builds the extension
        "y = self.relu(x)",  # a bound extension function
    ],
)
def test_own_kernels_named_like_pytorch_ops_are_recognised(line):
    source = LEGIT.replace(
        "class ModelNew",
        "def _build():\n    return load_inline(name='r', cpp_sources='')\n\n\nclass ModelNew",
    ).replace("self.ops = ops", "self.ops = ops\n        self.relu = ops.relu")
    assert _rejects(source.replace(KERNEL_CALLS, line)) == []


@pytest.mark.parametrize(
    "change",
    [
        # the main block runs after all when the module renames itself
        (
            "import os\n",
            "import os\n__name__ = '__main__'\nif __name__ == '__main__':\n    print(os.environ)\n",
        ),
        # a docstring the module reads back is compiled code
        ("import os\n", '"""std::ifstream f("/tmp/x");"""\nimport os\nSRC = __doc__\n'),
        (
            "import os\n",
            '"""std::ifstream f("/tmp/x");"""\nimport os\nimport sys\n'
            'SRC = getattr(sys.modules[__name__], "__d" + "oc__")\n',
        ),
        (
            "\n\nclass ModelNew",
            '\ndef _src():\n    """system("id");"""\n\n\nSRC = _src.__doc__\n\n\nclass ModelNew',
        ),
        # a handler that falls back before re-raising on some path
        (
            "\n\nclass ModelNew",
            "\ntry:\n    y = ops.fused(torch.ones(1))\nexcept Exception:\n"
            "    if os:\n        y = None\n    else:\n        raise\n\n\nclass ModelNew",
        ),
    ],
)
def test_the_exemptions_do_not_open_doors(change):
    source = LEGIT.replace(*change)
    assert source != LEGIT
    assert _rejects(source) != []


# Ways a second red team abused the exemptions above; each got a full PyTorch or harness cheat
# through with no rejection before it was closed.
PYTORCH_FORWARD = "y = F.gelu(x)"
DOORS = {
    "match_capture_renames_module": (
        (
            "import os\n",
            "import os\nmatch '__main__':\n    case __name__:\n        pass\n"
            "if __name__ == '__main__':\n    os.system('id')\n",
        ),
        "threads",
    ),
    "imported_main_name": (
        (
            "import os\n",
            "import os\nfrom __main__ import __name__\n"
            "if __name__ == '__main__':\n    os.system('id')\n",
        ),
        "threads",
    ),
    "finally_returns": (
        (
            "\n\nclass ModelNew",
            "\ndef f():\n    try:\n        return ops.fused(1)\n"
            "    except Exception:\n        raise\n    finally:\n        return None\n"
            "\n\nclass ModelNew",
        ),
        "try_fallback",
    ),
    "import_fallback": (
        (
            "\n\nclass ModelNew",
            "\ntry:\n    from my_kernels import gelu\nexcept ImportError:\n"
            "    from torch.nn.functional import gelu\n\n\nclass ModelNew",
        ),
        "try_fallback",
    ),
    "suppress": (("import os\n", "import os\nfrom contextlib import suppress\n"), "try_fallback"),
    "env_comparison_chain": (
        ("import os\n", "import os\nLEAK = 'PATH' in os.environ in set()\n"),
        "env_access",
    ),
    "os_alias": (
        ("import os\n", "import os\nimport os as platform\nplatform.system('id')\n"),
        "threads",
    ),
    "os_function_import": (("import os\n", "import os\nfrom os import system as sh\n"), "threads"),
    "protected_alias": (
        ("import os\n", "import os\nimport torch as T\nT.allclose = max\n"),
        "patching",
    ),
    "native_socket_pointer": (("if (i < n)", "auto mk = &socket; if (i < n)"), "network"),
    "native_shell": (("if (i < n)", 'system("id"); if (i < n)'), "threads"),
    "native_jthread": (("if (i < n)", "std::jthread t([]{}); if (i < n)"), "threads"),
    "numpy_on_detached": (
        ("y = ops.fused(y)", "y = ops.fused(y)\n        z = np.tanh(x.detach())"),
        "host_compute",
    ),
    "numpy_array_protocol": (
        ("y = ops.fused(y)", "y = ops.fused(y)\n        z = x.__array__()"),
        "host_compute",
    ),
    "numpy_scalar_type_on_tensor": (
        ("y = ops.fused(y)", "y = ops.fused(y)\n        z = np.float32(x)"),
        "host_compute",
    ),
}
FAKE_EXTENSIONS = {
    "builder_returns_torch": (
        "def _build():\n    if False:\n        load_inline(name='a')\n    return F\n\n\n"
        "_ext = _build()\n"
    ),
    "own_function_named_load": "def load():\n    return F\n\n\n_ext = load()\n",
    "rebound": "_ext = load_inline(name='a', cpp_sources='')\n_ext = F\n",
    "attribute_patched": "_ext = load_inline(name='a', cpp_sources='')\n_ext.gelu = F.gelu\n",
    "module_named_cpp_extension": (
        "class cpp_extension:\n    load_inline = staticmethod(lambda **k: F)\n\n\n"
        "_ext = cpp_extension.load_inline(name='a')\n"
    ),
    "module_alias_rebound": (
        "import torch.utils.cpp_extension as ce\nce = types.SimpleNamespace(load=lambda **k: F)\n"
        "_ext = ce.load(name='a')\n"
    ),
}


@pytest.mark.parametrize(
    "build",
    [
        "import torch.utils.cpp_extension as ce\n_ext = ce.load_inline(name='a', cpp_sources='')\n",
        "from torch.utils import cpp_extension as ce\n_ext = ce.load(name='a', sources=[])\n",
        "from torch.utils import cpp_extension\n_ext = cpp_extension.load_inline(name='a')\n",
        "import torch.utils.cpp_extension\n"
        "_ext = torch.utils.cpp_extension.load_inline(name='a')\n",
    ],
)
def test_every_spelling_of_the_builder_is_recognised(build):
    # PyTorch beside a recognised extension call is a warning, not a rejection
    source = LEGIT.replace("\n\nclass ModelNew", "\n" + build + "\n\nclass ModelNew")
    source = source.replace(KERNEL_CALLS, "y = _ext.twice(F.gelu(x))")
    assert _rejects(source) == []
    assert "torch_compute_partial" in {f.check for f in check_candidate(source)}


@pytest.mark.parametrize("door", sorted(DOORS))
def test_the_exemptions_stay_shut(door):
    change, check = DOORS[door]
    source = LEGIT.replace(*change)
    assert source != LEGIT
    assert check in _rejects(source)


@pytest.mark.parametrize("fake", sorted(FAKE_EXTENSIONS))
def test_pytorch_dressed_as_an_extension_is_still_pytorch(fake):
    source = LEGIT.replace(
        "\n\nclass ModelNew", "\n" + FAKE_EXTENSIONS[fake] + "\n\nclass ModelNew"
    )
    source = source.replace(KERNEL_CALLS, "y = _ext.gelu(x)")
    assert "torch_compute" in _rejects(source)


@pytest.mark.parametrize("call", ["y = mm_kernel(x, x)", "y = act(mm_kernel(x, x.t()))"])
def test_a_pytorch_function_imported_under_another_name_is_pytorch(call):
    imports = (
        "import os\nfrom torch import matmul as mm_kernel\n"
        "from torch.nn.functional import relu as act\n"
    )
    source = LEGIT.replace("import os\n", imports)
    assert "torch_compute" in _rejects(source.replace(KERNEL_CALLS, call))


CLASS_HELD_EXTENSION = """
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

src = "torch::Tensor softmax(torch::Tensor x) { return x; }"


class ModelNew(nn.Module):
    _ops = load_inline(name="x", cpp_sources=src, functions=["softmax"])

    def forward(self, x):
        return self._ops.softmax(x)
"""


@pytest.mark.parametrize(
    ("rebinding", "rejected"),
    [
        ("", False),  # the class holds its own extension: `self._ops.softmax` is the kernel
        ("ModelNew._ops = torch", True),
        ("setattr(ModelNew, '_ops', torch)", True),
        ("del ModelNew._ops", True),
    ],
)
def test_an_extension_held_by_the_class_is_trusted_until_something_stores_that_name(
    rebinding, rejected
):
    found = check_candidate(CLASS_HELD_EXTENSION + rebinding + "\n", "cpu")
    assert any(f.check == "torch_compute" and f.severity == REJECT for f in found) == rejected


# Red team 8 (helper 27): a name the checks trust as the extension, made to hold torch (an
# import, `match` or instance `__dict__` beside the binding, a property, a class decorator), and
# ops whose body is Python (`torch.library.custom_op`) or PyTorch's own (`torch.ops.mkldnn`)
@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).parent / "fixtures" / "static_attacks").glob("rt8_*.py")),
    ids=lambda p: p.stem,
)
def test_names_made_to_hold_torch_and_python_bodied_ops_are_rejected(path):
    found = check_candidate(path.read_text(), "cpu")
    assert any(f.check == "torch_compute" and f.severity == REJECT for f in found), found
