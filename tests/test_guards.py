"""In-worker guards: what counts as tampering, and what torch itself does that must not."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from kernelwright.verifier import guards


def test_torch_rebinding_itself_during_profiling_is_not_tampering():
    guards.settle_torch()
    guard = guards.HarnessGuard([guards])
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]):
        torch.ones(3).add_(1)
    guard.check()  # the profiler pulled in torch._dynamo; the snapshot already had it


def test_replaced_timer_is_caught(monkeypatch):
    guard = guards.HarnessGuard([])
    monkeypatch.setattr(time, "perf_counter", lambda: 0.0)
    with pytest.raises(guards.Rejected, match="patched_harness"):
        guard.check()


class _Clock:
    scale = 1.0

    def sample(self, fn):
        return fn() * self.scale


def _stamp(x, factor=2):
    return x * factor


def test_what_a_harness_class_or_function_holds_is_guarded_not_only_its_identity():
    import copyreg
    import types

    harness = types.SimpleNamespace(Clock=_Clock, stamp=_stamp)
    guard = guards.HarnessGuard([harness])
    copyreg._slotnames(_Clock)  # what saving an object of the class adds: torch's own doing
    guard.check()
    replaced = [
        (_Clock, "sample", lambda self, fn: 0.0),  # a method swapped on the class
        (_Clock, "scale", 4.0),  # a class attribute
        (_Clock, "extra", staticmethod(len)),  # a new entry that is not torch's
        (_stamp, "__code__", (lambda x, factor=2: x).__code__),  # the same function, new code
        (_stamp, "__defaults__", (3,)),
    ]
    for owner, name, value in replaced:
        old = getattr(owner, name, None)
        setattr(owner, name, value)
        try:
            with pytest.raises(guards.Rejected, match="patched_harness"):
                guard.check()
        finally:
            if old is None:  # a new entry
                delattr(owner, name)
            else:
                setattr(owner, name, old)
        guard.check()


def test_lingering_thread_is_caught():
    guard = guards.HarnessGuard([])
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="late-writer")
    thread.start()
    try:
        with pytest.raises(guards.Rejected, match="late-writer"):
            guard.check()
    finally:
        stop.set()
        thread.join()
    guard.check()


def test_threads_the_reference_starts_are_its_own_but_a_candidates_are_not():
    guard = guards.HarnessGuard([])
    stop = threading.Event()
    started = []

    def reference():  # a compiled reference starts its pool on the first call
        started.append(threading.Thread(target=stop.wait, name="compile-pool"))
        started[-1].start()

    candidates = threading.Thread(target=stop.wait, name="candidate-thread")
    try:
        guard.allow_threads_of(reference)
        guard.check()  # the pool is the reference's
        candidates.start()
        with pytest.raises(guards.Rejected, match="candidate-thread"):
            guard.allow_threads_of(reference)  # a candidate's thread is not laundered
    finally:
        stop.set()
        for thread in [*started, candidates]:
            if thread.is_alive():
                thread.join()


def test_inputs_must_keep_their_values():
    x = torch.randn(4)
    before = guards.snapshot_inputs([x])
    guards.check_inputs_unchanged(before, [x])
    x.zero_()
    with pytest.raises(guards.Rejected, match="inputs_modified"):
        guards.check_inputs_unchanged(before, [x])


def test_nan_inputs_compare_equal_to_themselves():
    x = torch.tensor([1.0, float("nan")])
    guards.check_inputs_unchanged(guards.snapshot_inputs([x]), [x])


def test_outputs_must_be_plain_tensors_on_the_target_device():
    cpu = torch.device("cpu")
    guards.check_outputs((torch.ones(2), [torch.zeros(1)]), cpu)
    with pytest.raises(guards.Rejected, match=r"Parameter.*\.detach\(\)"):
        guards.check_outputs(torch.nn.Parameter(torch.ones(2)), cpu)
    with pytest.raises(guards.Rejected, match="not on cuda"):
        guards.check_outputs(torch.ones(2), torch.device("cuda"))
    with pytest.raises(guards.Rejected, match="no real storage"):
        guards.check_outputs(torch.empty(2, device="meta"), torch.device("meta"))
    with pytest.raises(guards.Rejected, match="sparse"):
        guards.check_outputs(torch.eye(3).to_sparse(), cpu)


def test_a_swapped_global_of_the_problem_is_caught():
    import types

    problem = types.ModuleType("kw_fake_problem")
    problem.torch, problem.rows = torch, 4
    guard = guards.HarnessGuard([], frozen=[problem])
    guard.check()
    problem.torch = types.SimpleNamespace(sum=torch.sum)  # a proxy the reference would call
    with pytest.raises(guards.Rejected, match="kw_fake_problem.torch"):
        guard.check()


def test_the_references_own_caches_may_change_but_nothing_else(tmp_path):
    # helper 19: a reference that keeps a mask in a global it rebinds (`global _MASK`) was
    # `patched_harness`, blamed on the candidate
    import importlib.util

    path = tmp_path / "kw_cache_problem.py"
    path.write_text(
        "import torch\n_MASK = None\nrows = 4\n\n"
        "def mask(n):\n    global _MASK\n    _MASK = torch.ones(n)\n    return _MASK\n"
    )
    spec = importlib.util.spec_from_file_location("kw_cache_problem", path)
    problem = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(problem)
    guard = guards.HarnessGuard([], frozen=[problem])
    problem.mask(3)
    guard.check()
    problem.rows = 1  # a size the reference builds from: still held
    with pytest.raises(guards.Rejected, match="kw_cache_problem.rows"):
        guard.check()


@pytest.mark.parametrize(
    ("owner", "name"),
    [(torch.Tensor, "__mul__"), (torch, "randn"), (torch.nn.functional, "gelu")],
)
def test_anything_of_torchs_the_reference_computes_with_is_held(owner, name, monkeypatch):
    # red team 4: `T = torch.Tensor; T.__mul__ = slow` slowed the reference timed beside it
    guard = guards.HarnessGuard([])
    original = getattr(owner, name)
    monkeypatch.setattr(owner, name, lambda *args, **kwargs: original(*args, **kwargs))
    with pytest.raises(guards.Rejected, match=f"replaced `{owner.__name__}.{name}`"):
        guard.check()
    monkeypatch.undo()
    guard.check()


def test_a_torch_function_mode_or_global_module_hook_is_caught():
    from torch.overrides import TorchFunctionMode

    guard = guards.HarnessGuard([])
    with TorchFunctionMode():
        with pytest.raises(guards.Rejected, match="torch function mode"):
            guard.check()
    guard.check()
    handle = torch.nn.modules.module.register_module_forward_pre_hook(lambda m, a: None)
    try:
        with pytest.raises(guards.Rejected, match="global module hook"):
            guard.check()
    finally:
        handle.remove()
    guard.check()


def test_nan_checks_survive_a_rebound_isnan(monkeypatch):
    x = torch.tensor([1.0, float("nan")])
    before = guards.snapshot_inputs([x])
    monkeypatch.setitem(torch.__dict__, "isnan", lambda t: torch.ones_like(t, dtype=torch.bool))
    x.fill_(7.0)
    with pytest.raises(guards.Rejected, match="inputs_modified"):
        guards.check_inputs_unchanged(before, [x])
