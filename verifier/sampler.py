"""The worker's side of timing: one side's call, sampled when the parent says so.

The parent (`timing_driver`) times two workers, the reference's and the candidate's, and owns
every decision: how many warm-up calls, which seed each sample's inputs come from, when the
timed call starts (`Go`), and which outputs are kept for checking. The worker only obeys:

- `Warmup(calls, seconds)`: untimed calls, then `Warm`;
- `Prepare`: the cache flushed (cpu) or the device idle (cuda), then `Ready`;
- `Go(seed)`: new input values from the parent's seed, copied into the tensors being timed (same
  addresses: an address-keyed result cache returns stale values and fails the spot checks),
  then the call, timed by this process's clock as well (`Done.ms`; the parent checks it against
  its own), and on the CPU where each output tensor lies, for the parent to read from outside.
  The values exist only from `Go` on, inside the parent's timed window: no work can be done on
  them before the clock starts;
- `Keep` (cuda): the last output copied aside on the device, to be written after timing;
- `EndTiming`: back to the caller, with the kept outputs.

Anything else ends the loop too: the parent never sends it, and nothing here is worth more than
stopping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from kernelwright.runner.isolation import Channel
from kernelwright.verifier import protocol
from kernelwright.verifier.cases import Case, inputs_for, refill

# dtypes an output may have for the parent to read it from memory (names as torch prints them)
READABLE_DTYPES = {
    str(dtype).removeprefix("torch."): dtype
    for dtype in (
        torch.float64,
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
        torch.complex64,
        torch.complex128,
    )
}


class Side:
    """One side's timed call in this worker: the call, the tensors it reads, how to refill
    them, and the clock."""

    def __init__(
        self,
        call: Callable[[], Any],
        targets: list[Any],
        problem: ModuleType,
        case: Case,
        device: torch.device,
        clock: Any,
    ) -> None:
        self.call = call
        self.targets = targets
        self.problem = problem
        self.get_inputs = problem.get_inputs  # taken now: later rebinding does not reach us
        self.case = case
        self.device = device
        self.clock = clock
        self.last: Any = None  # the last timed output, alive until the next command

    def warmup(self, calls: int, seconds: float) -> None:
        start, done = time.perf_counter(), 0
        while done < calls or time.perf_counter() - start < seconds:
            self.call()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            done += 1

    def prepare(self) -> None:
        self.last = None
        self.clock.prepare()

    def go(self, seed: int) -> protocol.Done:
        fresh = inputs_for(self.problem, self.get_inputs, self.case, seed, self.device)
        refill(self.targets, fresh, self.device)
        del fresh
        ms, output = self.clock.run(self.call)
        self.last = output
        if self.device.type != "cpu":
            return protocol.Done(ms=ms)
        structure, spans = spans_of(output)
        return protocol.Done(ms=ms, outputs=spans, structure=structure)


def spans_of(output: Any) -> tuple[str, tuple[protocol.TensorSpan, ...]]:
    """Where the tensors of an output lie. Anything but a CPU tensor (or a tuple or list of
    them) in a readable dtype gets no span; the parent finds the output missing and rejects."""
    if isinstance(output, torch.Tensor):
        structure, parts = "tensor", [output]
    elif isinstance(output, tuple | list):
        structure, parts = type(output).__name__, list(output)
    else:
        return "other", ()
    spans = []
    for part in parts:
        if not isinstance(part, torch.Tensor) or part.device.type != "cpu" or part.is_sparse:
            return "other", ()
        dtype = str(part.dtype).removeprefix("torch.")
        if dtype not in READABLE_DTYPES:
            return "other", ()
        spans.append(
            protocol.TensorSpan(
                address=part.data_ptr(),
                dtype=dtype,
                shape=tuple(part.shape),
                stride=tuple(part.stride()),
            )
        )
    return structure, tuple(spans)


def serve(channel: Channel, side: Side) -> list[Any]:
    """Answer the parent's timing commands until `EndTiming`; return the kept outputs."""
    from kernelwright.verifier.fresh_inputs import copy_output

    kept: list[Any] = []
    while (line := channel.recv_line()) is not None:
        command = protocol.decode(line)
        if isinstance(command, protocol.Warmup):
            side.warmup(command.calls, command.seconds)
            warm = protocol.Warm(flush_bytes=int(side.clock.flush_bytes))
            channel.send_line(protocol.dumps(warm))
        elif isinstance(command, protocol.Prepare):
            side.prepare()
            channel.send_line(protocol.dumps(protocol.Ready()))
        elif isinstance(command, protocol.Go):
            channel.send_line(protocol.dumps(side.go(command.seed)))
        elif isinstance(command, protocol.Keep):
            kept.append(copy_output(side.last))
            channel.send_line(protocol.dumps(protocol.Kept()))
        else:
            break
    side.last = None
    return kept
