"""Outputs and inputs of every kind a reference may use survive saving, reloading and copying
(helper 19's sweep of honest problems: structseqs, numpy scalars, namedtuples, dicts)."""

from __future__ import annotations

import io
from collections import namedtuple

import numpy as np
import pytest
import torch
from kernelwright.verifier.cases import clone_inputs, to_cpu, to_device
from kernelwright.verifier.compare import compare
from kernelwright.verifier.fresh_inputs import copy_output as _copy
from kernelwright.verifier.tolerances import Tolerance

Pair = namedtuple("Pair", ["a", "b"])


def _reloaded(value):
    buffer = io.BytesIO()
    torch.save(to_cpu(value), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda x: torch.max(x, dim=1),  # torch.return_types.max (values, indices)
        lambda x: torch.sort(x, dim=1),
        lambda x: x.shape,  # torch.Size
        lambda x: np.sqrt(np.float64(x.shape[1])),  # a float subclass
        lambda x: np.float32(3.5),
        lambda x: np.int64(7),
        lambda x: np.bool_(True),
        lambda x: Pair(x * 2, x.sum()),
        lambda x: {"input": x, "scaled": 2 * x + 1},
    ],
)
def test_outputs_of_any_kind_reload_and_compare_equal_to_themselves(make):
    x = torch.randn(4, 5)
    output = make(x)
    first, second = _reloaded(output), _reloaded(make(x.clone()))
    assert compare(first, second, Tolerance()).ok
    assert compare(_reloaded(_copy(output)), first, Tolerance()).ok


def test_numbers_become_pythons_own():
    assert type(to_cpu(np.float64(2.0))) is float and type(to_cpu(np.float32(2.0))) is float
    assert type(to_cpu(np.int32(3))) is int and type(to_cpu(np.bool_(False))) is bool
    assert to_cpu(True) is True


def test_namedtuple_inputs_keep_their_type():
    pair = Pair(torch.ones(2), torch.zeros(2))
    assert type(to_device(pair, torch.device("cpu"))) is Pair
    assert type(clone_inputs(pair)) is Pair
    assert type(clone_inputs(torch.Size([2, 3]))) is torch.Size


def test_a_kept_output_that_holds_an_input_is_a_copy():
    # the refresher overwrites the inputs before the next call: a kept dict must not follow
    x = torch.ones(3)
    kept = _copy({"input": x, "list": [x], "tuple": (x,)})
    x.fill_(5)
    assert float(kept["input"].sum()) == 3 and float(kept["list"][0].sum()) == 3
    assert float(kept["tuple"][0].sum()) == 3
