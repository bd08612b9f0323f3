"""The static checks' data: which names compute, which reach the harness, which are forbidden.

Rules (rules_*.py) read these tables; changing what a rule catches is mostly editing a table here.
"""

from __future__ import annotations

import re

from kernelwright.verifier.check_names import Check

# PyTorch calls that compute (as opposed to allocate or reshape). Used in ModelNew's methods,
# they mean the work is done by PyTorch, not by the candidate's kernel.
TORCH_COMPUTE = frozenset(
    """
    abs adaptive_avg_pool2d add addbmm addcdiv addcmul addmm addmv addr amax amin argmax
    argmin avg_pool1d avg_pool2d avg_pool3d baddbmm batch_norm bilinear bmm cdist celu clamp
    clip conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d cos
    cosine_similarity cross_entropy cummax cummin cumprod cumsum div divide dot dropout
    einsum elu embedding erf exp exp2 expm1 floor_divide fmod gather gelu glu group_norm
    hardsigmoid hardswish hardtanh index_select instance_norm interpolate kron layer_norm
    leaky_relu lerp linear log log10 log1p log2 log_softmax logcumsumexp logsigmoid
    logsumexp masked_fill matmul matrix_power max max_pool1d max_pool2d max_pool3d maximum
    mean median min minimum mish mm mse_loss mul multiply mv nanmean nansum neg nll_loss
    norm normalize outer pairwise_distance pow prelu prod reciprocal relu remainder rms_norm
    rsqrt scaled_dot_product_attention scatter_add selu sigmoid sign silu sin softmax
    softplus softsign sort sqrt square std sub subtract sum tanh tensordot threshold topk
    true_divide var where
    """.split()
)

# Functions of the `operator` module that do arithmetic (on tensors, PyTorch's).
OPERATOR_ARITHMETIC = frozenset(
    """
    abs add floordiv iadd imatmul imul ipow isub itruediv matmul mod mul neg pow sub truediv
    """.split()
)

# nn layers whose __call__ computes; building them in __init__ is fine (parameters), calling them
# in forward is not.
TORCH_LAYER_SUFFIXES = tuple(
    """
    AvgPool2d BatchNorm1d BatchNorm2d BatchNorm3d Conv1d Conv2d Conv3d ConvTranspose1d
    ConvTranspose2d ConvTranspose3d Dropout Embedding GELU GRU GroupNorm InstanceNorm2d LSTM
    LayerNorm Linear MaxPool2d MultiheadAttention RMSNorm ReLU Sequential Sigmoid Softmax
    Tanh
    """.split()
)

# nn classes that hold or reshape rather than compute
NN_NOT_COMPUTE = frozenset(
    """
    Buffer Flatten Identity Module ModuleDict ModuleList Parameter ParameterDict
    ParameterList Unflatten
    """.split()
)

# Settings of torch's layers: numbers, not tensors (`self.conv.groups`).
LAYER_SETTINGS = frozenset(
    """
    affine align_corners alpha approximate batch_first beta bidirectional ceil_mode
    count_include_pad dilation dim downscale_factor elementwise_affine embed_dim
    embedding_dim end_dim eps groups head_dim hidden_size in_channels in_features inplace
    input_size kernel_size lambd max_val min_val mode momentum negative_slope nonlinearity
    normalized_shape num_channels num_embeddings num_features num_groups num_heads
    num_layers out_channels out_features output_padding output_size p padding padding_mode
    proj_size return_indices scale_factor size start_dim stride threshold
    track_running_stats upscale_factor
    """.split()
)

# Standard modules whose functions never compute with a tensor's values (scipy, say, would).
PLAIN_MODULES = frozenset(
    """
    cmath collections dataclasses functools hashlib itertools logging math os pathlib re
    string sys textwrap time typing warnings
    """.split()
)

# Builtins that do arithmetic through a tensor's own operators when handed tensors.
ARITHMETIC_BUILTINS = frozenset(
    """
    abs divmod max min pow reduce round sum
    """.split()
)

# What describes a tensor's size rather than its values.
SIZE_ATTRIBUTES = frozenset(
    """
    device dim dtype element_size get_device is_cuda itemsize layout ndim nelement numel
    shape size stride
    """.split()
)

# os functions that start processes.
OS_PROCESS_FUNCTIONS = frozenset(
    """
    execl execle execlp execlpe execv execve execvp execvpe fork forkpty popen posix_spawn
    posix_spawnp spawnl spawnle spawnlp spawnlpe spawnv spawnve spawnvp spawnvpe system
    """.split()
)

# Modules whose attributes a candidate must never rebind (timers, synchronisation, comparison).
PROTECTED_ROOTS = frozenset(
    """
    builtins kernelwright math np numpy os sys time torch
    """.split()
)

# Calls that read files or list folders whatever they are called on (`Path.read_bytes`,
# `np.fromfile`, `torch.from_file`), and those of the os module.
FILE_READ_CALLS = frozenset(
    """
    from_file fromfile genfromtxt iterdir load_file loadtxt memmap read_bytes read_text
    safe_open
    """.split()
)
OS_FILE_CALLS = frozenset(
    """
    fdopen listdir pread preadv read readv scandir walk
    """.split()
)

# Attributes that set or use another CUDA stream.
STREAM_ATTRIBUTES = frozenset(
    """
    ExternalStream Stream record_stream set_stream wait_stream
    """.split()
)

# Ways code can get at a docstring's text (and so pass it to the compiler): `__doc__` by name or
# computed attribute names, namespaces, introspection and source readers.
DOC_REACH = frozenset(
    """
    __code__ __dict__ __doc__ __file__ __getattribute__ __loader__ __spec__ attrgetter
    co_consts get_docstring getattr_static getdoc getsource globals help inspect linecache
    pydoc vars
    """.split()
)

# Decorators and calls that make a Python function the body of a registered op
OP_REGISTRARS = frozenset(
    """
    custom_op impl register_autograd register_fake register_kernel register_torch_dispatch
    register_vmap triton_op
    """.split()
)

# PyTorch's own op namespaces: `torch.ops.<one of these>` is never the candidate's.
TORCH_OP_SPACES = frozenset(
    """
    _C _quantized aten higher_order prim prims quantized
    """.split()
)

# Builtins and `operator` functions that read or set attributes by a name given at run time.
ATTRIBUTE_GETTERS = frozenset(
    """
    attrgetter delattr getattr methodcaller setattr
    """.split()
)
RAW_ATTRIBUTE_ACCESS = frozenset(
    """
    __delattr__ __getattr__ __getattribute__ __setattr__
    """.split()
)

# Dunder methods of a tensor that compute: `torch.Tensor.__mul__(x, w)` is `x * w`.
ARITHMETIC_DUNDERS = frozenset(
    f"__{op}__"
    for base in "add sub mul truediv floordiv mod pow matmul and or xor lshift rshift".split()
    for op in (base, f"r{base}", f"i{base}")
) | frozenset({"__neg__", "__pos__", "__abs__", "__invert__"})
# torch namespaces where every function computes (`torch.special.expit`, `torch.linalg.solve`).
COMPUTE_NAMESPACES = ("torch.special", "torch.linalg", "torch.fft")

# Dunder attributes that only read what a module or class is called
PLAIN_DUNDERS = ("__init__", "__name__", "__file__", "__doc__", "__version__", "__qualname__")
SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)

_PHASE = "can tell checked calls from timed ones"
_HOOKS = "intercepts the reference's torch calls too"
_EXIT = "ends the process before the checks run"
_NETWORK = "opens network connections"
_PERSISTS = "persists objects across calls"

FORBIDDEN_IMPORTS: dict[str, tuple[Check, str]] = {
    "inspect": (Check.FRAME_SNOOPING, "inspects the caller's frames"),
    "gc": (Check.FRAME_SNOOPING, "walks the garbage collector's objects"),
    "ctypes": (Check.FRAME_SNOOPING, "reaches raw memory through ctypes"),
    "threading": (Check.THREADS, "starts threads that can finish work after timing"),
    "_thread": (Check.THREADS, "starts threads"),
    "concurrent": (Check.THREADS, "starts worker threads or processes"),
    "multiprocessing": (Check.THREADS, "starts processes"),
    "asyncio": (Check.THREADS, "runs background tasks"),
    "subprocess": (Check.THREADS, "starts processes"),
    **dict.fromkeys(("socket", "urllib", "http", "requests"), (Check.NETWORK, _NETWORK)),
    **dict.fromkeys(("pickle", "shelve", "marshal"), (Check.FILE_REPLAY, _PERSISTS)),
    "mmap": (Check.FILE_REPLAY, "maps files into memory"),
    **dict.fromkeys(
        ("fileinput", "linecache", "sqlite3", "dbm", "zipfile", "tarfile"),
        (Check.FILE_REPLAY, "reads files"),
    ),
    **dict.fromkeys(("h5py", "safetensors"), (Check.FILE_REPLAY, "reads tensors from files")),
    "kernelwright": (Check.HARNESS_ACCESS, "imports the evaluation harness"),
    # the names the harness loads the problem and the candidate under, and the worker itself
    "kw_problem": (Check.HARNESS_ACCESS, "imports the reference the harness times"),
    "kw_candidate": (Check.HARNESS_ACCESS, "imports itself as the harness loaded it"),
    "__main__": (Check.HARNESS_ACCESS, "imports the worker running the harness"),
    "traceback": (Check.FRAME_SNOOPING, "walks the call stack"),
    "signal": (
        Check.FRAME_SNOOPING,
        "runs handlers (with the interrupted frame) during timed calls",
    ),
    "builtins": (Check.PATCHING, "rebinds builtins"),
    "importlib": (Check.PATCHING, "loads modules dynamically"),
}
FORBIDDEN_CALLS: dict[str, tuple[Check, str]] = {
    "setattr": (Check.PATCHING, "rebinds attributes dynamically"),
    "eval": (Check.PATCHING, "evaluates code built at run time"),
    "exec": (Check.PATCHING, "executes code built at run time"),
    "compile": (Check.PATCHING, "compiles code at run time"),
    "__import__": (Check.PATCHING, "imports modules dynamically"),
    "globals": (Check.FRAME_SNOOPING, "reads the module's globals dynamically"),
    "exit": (Check.PROCESS_EXIT, _EXIT),
    "quit": (Check.PROCESS_EXIT, _EXIT),
    "vars": (Check.FRAME_SNOOPING, "reads objects' namespaces dynamically"),
}
FORBIDDEN_ATTRIBUTES: dict[str, tuple[Check, str]] = {
    "_getframe": (Check.FRAME_SNOOPING, "inspects the call stack"),
    "_current_frames": (Check.FRAME_SNOOPING, "inspects every thread's call stack"),
    "settrace": (Check.FRAME_SNOOPING, "traces the harness's frames"),
    "setprofile": (Check.FRAME_SNOOPING, "traces the harness's frames"),
    "monitoring": (Check.FRAME_SNOOPING, "traces the harness's code"),
    **dict.fromkeys(("_exit", "exit", "abort"), (Check.PROCESS_EXIT, _EXIT)),
    "f_back": (Check.FRAME_SNOOPING, "walks the call stack"),
    "f_locals": (Check.FRAME_SNOOPING, "reads the caller's variables"),
    "f_globals": (Check.FRAME_SNOOPING, "reads the caller's globals"),
    "tb_frame": (Check.FRAME_SNOOPING, "reaches a frame through a traceback"),
    "gi_frame": (Check.FRAME_SNOOPING, "reaches a generator's frame"),
    "cr_frame": (Check.FRAME_SNOOPING, "reaches a coroutine's frame"),
    "f_code": (Check.FRAME_SNOOPING, "reads a frame's code"),
    # What differs between a checked call and a timed one: the seed the inputs were drawn
    # with, a tensor's version counter (inputs are refilled in place), the call stack.
    **dict.fromkeys(
        """initial_seed get_rng_state _version extract_stack walk_stack format_stack
        print_stack currentframe""".split(),
        (Check.PHASE_PROBE, _PHASE),
    ),
    # Modes and global hooks run on every torch call or module, the reference's included.
    **dict.fromkeys(
        """TorchFunctionMode TorchDispatchMode BaseTorchFunctionMode
        register_module_forward_pre_hook register_module_forward_hook
        register_module_full_backward_hook register_module_full_backward_pre_hook
        register_module_backward_hook set_num_threads set_num_interop_threads""".split(),
        (Check.PATCHING, _HOOKS),
    ),
    # What switches PyTorch's dispatch modes or keys off: ops run unseen by the harness's record
    # of what ran (verifier/op_record.py); no kernel needs them.
    **dict.fromkeys(
        """_pop_mode _push_mode _disable_current_modes _pop_mode_temporarily _python_dispatch
        _pop_torch_dispatch_stack _push_on_torch_dispatch_stack _len_torch_dispatch_stack
        _get_dispatch_stack_at _set_dispatch_mode _unset_dispatch_mode _DisableTorchDispatch
        _ExcludeDispatchKeyGuard _IncludeDispatchKeyGuard _ForceDispatchKeyGuard
        _PreserveDispatchKeyGuard _dispatch_tls_set_dispatch_key_excluded
        _dispatch_tls_set_dispatch_key_included _RestorePythonTLSSnapshot
        _DisablePythonDispatcher _EnablePythonDispatcher _get_current_dispatch_mode
        _get_current_dispatch_mode_stack redispatch""".split(),
        (Check.DISPATCH_BYPASS, "switches PyTorch's dispatch modes or keys off"),
    ),
    "_make_subclass": (Check.TENSOR_SUBCLASS, "builds a tensor subclass"),
    "__torch_function__": (Check.TENSOR_SUBCLASS, "overrides tensor operations"),
    "__torch_dispatch__": (Check.TENSOR_SUBCLASS, "overrides tensor operations"),
    "save": (Check.FILE_REPLAY, "writes tensors to files"),
    "load": (Check.FILE_REPLAY, "reads tensors from files"),
    "system": (Check.THREADS, "runs shell commands"),
    "fork": (Check.THREADS, "forks the process"),
    "popen": (Check.THREADS, "runs shell commands"),
}
