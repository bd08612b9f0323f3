"""Every message between the parent and an evaluation worker, as one typed record per kind.

Both sides use this module: a worker sends `encode(record)`, the parent reads each line with
`decode`, which never raises. A candidate's worker shares its process with candidate code, which
can write anything to the result pipe, so a line is believed only as far as its record type
allows: a bounded length, JSON without NaN, infinities or huge numbers, no nesting deeper than
the record's own fields, exactly the fields of its kind, each of its type and within its bounds.
Anything else decodes to a `Fault` (which the parent turns into `rejected` by `result_channel`).
Where a record comes in the conversation is the parent's business (`session`, `timing_driver`).

Parent-to-worker commands are records too (`Prepare`, `Go`, ...), so that both ends of one
exchange are written in one place; the worker reads them with the same `decode`.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Union

MAX_LINE = 1 << 20  # bytes; the largest honest message (a traceback) is far smaller
MAX_TEXT = 64_000  # characters of one string field
MAX_ITEMS = 4096  # entries of one list field
MAX_INT = (1 << 63) - 1


@dataclass(frozen=True)
class Fault:
    """A line that is not a record the harness sends: why, in a few words."""

    reason: str


# -- records a worker sends ------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    kind: ClassVar[str] = ""


@dataclass(frozen=True)
class OpSeen(Record):
    """One ATen (or own) op dispatched during a recorded call (`verifier.op_record`)."""

    kind: ClassVar[str] = "op"
    name: str
    calls: int
    work: float


@dataclass(frozen=True)
class CaseOutput(Record):
    """The candidate's output of one checked case, written to `path` (the parent names it),
    and the ops its call dispatched."""

    kind: ClassVar[str] = "case"
    index: int
    path: str
    ops: tuple[OpSeen, ...] = ()


@dataclass(frozen=True)
class OutputsDone(Record):
    kind: ClassVar[str] = "outputs_done"


@dataclass(frozen=True)
class RecheckOutput(Record):
    """A case run after timing on the timed tensors (`Case.after_timing`)."""

    kind: ClassVar[str] = "recheck"
    index: int
    path: str


@dataclass(frozen=True)
class Warm(Record):
    """Warm-up calls done; the side waits for `Prepare`. `flush_bytes`: its cache flush."""

    kind: ClassVar[str] = "warm"
    flush_bytes: int = 0


@dataclass(frozen=True)
class Ready(Record):
    """The cache flushed (cpu) or the device idle (cuda): waiting for `Go`."""

    kind: ClassVar[str] = "ready"


@dataclass(frozen=True)
class TensorSpan(Record):
    """Where one output tensor lies in the worker's memory (CPU only): its first element's
    address, element strides and dtype name, so the parent can read it from outside."""

    kind: ClassVar[str] = "span"
    address: int
    dtype: str
    shape: tuple[int, ...]
    stride: tuple[int, ...]


@dataclass(frozen=True)
class Done(Record):
    """One timed call returned. `ms` is the worker's own figure (device events on cuda, its
    perf_counter on cpu); `outputs` where its tensors lie (cpu), empty on cuda."""

    kind: ClassVar[str] = "done"
    ms: float
    outputs: tuple[TensorSpan, ...] = ()
    structure: str = "tensor"  # tensor | tuple | list: how `outputs` were returned


@dataclass(frozen=True)
class Kept(Record):
    """The last timed call's output was copied aside (cuda spot checks)."""

    kind: ClassVar[str] = "kept"


@dataclass(frozen=True)
class SpotOutput(Record):
    """A kept output (or, from the reference side, the reference's output for a seed)."""

    kind: ClassVar[str] = "spot"
    index: int
    path: str
    wide_path: str | None = None


@dataclass(frozen=True)
class TimingEnd(Record):
    """The timing is over on this side: NVML readings (cuda) and warnings of in-process checks."""

    kind: ClassVar[str] = "timing_end"
    environment: dict[str, str | float | int | bool | None] = field(default_factory=dict)
    warnings: tuple[Note, ...] = ()


@dataclass(frozen=True)
class Note(Record):
    kind: ClassVar[str] = "warning"
    check: str
    message: str
    severity: str = "warn"


@dataclass(frozen=True)
class Rejected(Record):
    kind: ClassVar[str] = "rejected"
    check: str
    message: str


@dataclass(frozen=True)
class RuntimeFailure(Record):
    kind: ClassVar[str] = "runtime_error"
    stage: str
    message: str
    traceback: str = ""


@dataclass(frozen=True)
class ReferenceCase(Record):
    """The reference worker's output of one case (trusted side: no candidate code ran there)."""

    kind: ClassVar[str] = "reference_case"
    case: dict[str, str | float | int | bool | None | dict[str, int | float | str | bool]]
    path: str
    nbytes: tuple[int, ...]
    mutates_inputs: bool
    wide_path: str | None = None
    work: float = 0.0  # the compute its call dispatched (`verifier.op_record`)


@dataclass(frozen=True)
class Finished(Record):
    kind: ClassVar[str] = "done_all"


@dataclass(frozen=True)
class ProblemFailure(Record):
    kind: ClassVar[str] = "problem_error"
    message: str
    case: str = ""
    traceback: str = ""


@dataclass(frozen=True)
class CompiledTiming(Record):
    """`--compile-baseline`: the report's JSON, or a one-line note of why there is none."""

    kind: ClassVar[str] = "compiled_reference"
    report: str = ""  # the TimingReport as JSON text (a nested record of its own)
    compile_s: float = 0.0
    note: str = ""


@dataclass(frozen=True)
class SpotFailure(Record):
    kind: ClassVar[str] = "spot_error"
    message: str


# -- commands the parent sends ---------------------------------------------------------------


@dataclass(frozen=True)
class Time(Record):
    """Every checked case was right: build the timed model and wait for warm-up."""

    kind: ClassVar[str] = "time"


@dataclass(frozen=True)
class Stop(Record):
    kind: ClassVar[str] = "stop"


@dataclass(frozen=True)
class Warmup(Record):
    calls: int
    seconds: float
    kind: ClassVar[str] = "warmup"


@dataclass(frozen=True)
class Prepare(Record):
    """Flush the cache (cpu) or wait for the device (cuda), answer `Ready`."""

    kind: ClassVar[str] = "prepare"


@dataclass(frozen=True)
class Go(Record):
    """Draw new inputs from `seed` (the parent's, unknown until now), make the call, `Done`."""

    kind: ClassVar[str] = "go"
    seed: int


@dataclass(frozen=True)
class Keep(Record):
    kind: ClassVar[str] = "keep"


@dataclass(frozen=True)
class EndTiming(Record):
    """No more samples: run the re-checks (candidate) and report `TimingEnd`."""

    kind: ClassVar[str] = "end_timing"


@dataclass(frozen=True)
class SpotSeeds(Record):
    """Reference side: write the reference's outputs for these input seeds (`SpotOutput`)."""

    kind: ClassVar[str] = "spot_seeds"
    seeds: tuple[int, ...]


RECORDS: dict[str, type[Record]] = {
    cls.kind: cls
    for cls in (
        OpSeen,
        CaseOutput,
        OutputsDone,
        RecheckOutput,
        Warm,
        Ready,
        Done,
        Kept,
        SpotOutput,
        TimingEnd,
        Rejected,
        RuntimeFailure,
        ReferenceCase,
        Finished,
        ProblemFailure,
        CompiledTiming,
        SpotFailure,
        Time,
        Stop,
        Warmup,
        Prepare,
        Go,
        Keep,
        EndTiming,
        SpotSeeds,
    )
}


def encode(record: Record) -> dict[str, Any]:
    """The record as a JSON-ready object with its `kind`."""
    return {
        "kind": record.kind,
        **{f.name: _plain(getattr(record, f.name)) for f in fields(record)},
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return encode(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def dumps(record: Record) -> bytes:
    return json.dumps(encode(record), allow_nan=False).encode() + b"\n"


class _Bad(Exception):
    pass


def _reject_constant(name: str) -> Any:
    raise _Bad(f"the constant {name}")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Bad("a number out of range")
    return value


def _small_int(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise _Bad("a number out of range")
    return int(text)


def decode(line: bytes | str, expect: type[Record] | None = None) -> Record | Fault:
    """The record a line holds, or a `Fault`; never raises. With `expect`, only that kind."""
    try:
        if len(line) > MAX_LINE:
            return Fault(f"a line of {len(line)} bytes")
        raw = json.loads(
            line, parse_constant=_reject_constant, parse_float=_finite, parse_int=_small_int
        )
        if not isinstance(raw, dict):
            return Fault("a line that is not an object")
        cls = RECORDS.get(raw.pop("kind", None)) if isinstance(raw.get("kind"), str) else None
        if cls is None:
            return Fault("a message of no kind the harness sends")
        if expect is not None and cls is not expect:
            return Fault(f"a `{cls.kind}` message where `{expect.kind}` was due")
        return _build(cls, raw)
    except _Bad as exc:
        return Fault(str(exc))
    except RecursionError:
        return Fault("a line nested too deep")
    except (ValueError, TypeError, OverflowError, UnicodeDecodeError, MemoryError) as exc:
        return Fault(f"a line that does not parse ({type(exc).__name__})")


def _build(cls: type[Record], raw: dict[str, Any]) -> Record:
    hints = _hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise _Bad(f"a `{cls.kind}` message with fields it never has ({sorted(unknown)[0]!r})")
    values = {}
    for f in fields(cls):
        if f.name in raw:
            values[f.name] = _value(hints[f.name], raw[f.name], 0)
    try:
        return cls(**values)
    except TypeError:
        raise _Bad(f"a `{cls.kind}` message without all its fields") from None


_HINTS: dict[type, dict[str, Any]] = {}
_EXACT = (bool, int, float, str, type(None))


def _exactness(option: Any) -> int:
    return _EXACT.index(option) if option in _EXACT else len(_EXACT)


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls, globals())
    return _HINTS[cls]


def _value(hint: Any, value: Any, depth: int) -> Any:
    """`value` checked against the type `hint` (the few shapes records use)."""
    if depth > 4:
        raise _Bad("a value nested too deep")
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        # the exact kinds first: JSON's 1 is an int, not the float a `float | int` would take
        for option in sorted(typing.get_args(hint), key=_exactness):
            try:
                return _value(option, value, depth)
            except _Bad:
                continue
        raise _Bad(f"a field of the wrong type ({type(value).__name__})")
    if hint is type(None):
        if value is not None:
            raise _Bad("a field that must be empty")
        return None
    if hint is bool:
        if not isinstance(value, bool):
            raise _Bad("a flag that is not true or false")
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool) or abs(value) > MAX_INT:
            raise _Bad("a field that is not a whole number in range")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Bad("a field that is not a number")
        value = float(value)
        if not math.isfinite(value) or abs(value) > 1e15:
            raise _Bad("a number out of range")
        return value
    if hint is str:
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise _Bad("a text field that is not text or too long")
        return value
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list) or len(value) > MAX_ITEMS:
            raise _Bad("a list field that is not a list or too long")
        return tuple(_value(item, v, depth + 1) for v in value)
    if origin is dict:
        item = typing.get_args(hint)[1]
        if not isinstance(value, dict) or len(value) > 256:
            raise _Bad("a table field that is not a table or too long")
        if any(len(k) > 200 for k in value):
            raise _Bad("a table key too long")
        return {k: _value(item, v, depth + 1) for k, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, Record):
        if not isinstance(value, dict) or value.pop("kind", hint.kind) != hint.kind:
            raise _Bad(f"a nested `{hint.kind}` that is not one")
        return _build(hint, value)
    raise _Bad(f"a field of a type the protocol does not know ({hint!r})")
