"""The table of static rules: each a small named function with its checks, severity and reason.

A rule reads the module's index (index.py) and reports findings through a `Report`. Rules run
in the order they were registered; findings come back in the order the old single-pass checker
gave them, which the evaluation relies on (the first rejection names the check in the reason):

- phase NODE: rules about single constructs, sorted by where their node sits in the tree's
  walk; for one node, in registration order;
- later phases (MODULE, COMPUTE, then NATIVE: the embedded C++/CUDA text): whole-module
  analyses, in the order they report.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field

from kernelwright.compiler.findings import REJECT, Finding
from kernelwright.verifier.check_names import Check
from kernelwright.verifier.static.index import ModuleIndex

NODE, MODULE, COMPUTE, NATIVE = 0, 1, 2, 3  # phases


@dataclass
class Report:
    index: ModuleIndex
    phase: int = NODE
    _found: list[tuple[tuple[int, int, int], Finding]] = field(default_factory=list)

    def add(self, check: Check, message: str, node: ast.AST | None, severity: str = REJECT) -> None:
        line = getattr(node, "lineno", None)
        where = self.index.order.get(id(node), 0) if self.phase == NODE else 0
        key = (self.phase, where, len(self._found))
        self._found.append((key, Finding(check, severity, message, line)))

    def extend(self, findings: list[Finding]) -> None:
        for finding in findings:
            self._found.append(((self.phase, 0, len(self._found)), finding))

    def findings(self) -> list[Finding]:
        return [finding for _, finding in sorted(self._found, key=lambda pair: pair[0])]


RuleFunction = Callable[[ModuleIndex, Report], None]


@dataclass(frozen=True)
class Rule:
    name: str  # the function's name
    checks: tuple[Check, ...]  # the checks it can report
    severity: str  # REJECT or WARN: the usual severity of what it reports
    reason: str  # why the construct is refused or worth knowing
    phase: int
    run: RuleFunction


RULES: list[Rule] = []


def rule(
    checks: Check | tuple[Check, ...], severity: str, reason: str, phase: int = NODE
) -> Callable[[RuleFunction], RuleFunction]:
    """Register the decorated function as a rule."""
    names = checks if isinstance(checks, tuple) else (checks,)

    def register(function: RuleFunction) -> RuleFunction:
        RULES.append(Rule(function.__name__, names, severity, reason, phase, function))
        return function

    return register


def run_rules(index: ModuleIndex) -> list[Finding]:
    report = Report(index)
    for registered in RULES:
        report.phase = registered.phase
        registered.run(index, report)
    return report.findings()
