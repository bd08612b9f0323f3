"""Every check name is one member of `Check`, registered (static checks: reported by a rule of
the registry) and documented (one row of docs/checks.md, with its severity and kind)."""

from __future__ import annotations

import re
from pathlib import Path

from kernelwright.check_names import STATIC_CHECKS, Check
from kernelwright.compiler.native_checks import NATIVE_RULES
from kernelwright.verifier.static import RULES

DOCS = Path(__file__).resolve().parent.parent / "docs"
ROW = re.compile(r"^\| `(\w+)` \| (reject|warn) \| ([\w ,-]+) \| (.+) \|$")


def _rows() -> dict[str, tuple[str, set[str]]]:
    rows = {}
    for line in (DOCS / "checks.md").read_text().splitlines():
        match = ROW.match(line)
        if match:
            name, severity, kinds, _ = match.groups()
            assert name not in rows, f"{name} is documented twice"
            rows[name] = (severity, {k.strip() for k in kinds.split(",")})
    return rows


def test_every_check_is_documented_once_and_nothing_else_is():
    assert set(_rows()) == {c.value for c in Check}


def test_the_documented_kind_matches_the_registry():
    for name, (_, kinds) in _rows().items():
        assert kinds <= {"static", "build", "run-time"}, name
        assert ("static" in kinds) == (Check(name) in STATIC_CHECKS), name


def test_every_static_check_is_reported_by_a_registered_rule_and_no_other():
    reported = {check for rule in RULES for check in rule.checks}
    assert reported == STATIC_CHECKS
    assert all(rule.reason and rule.severity in ("reject", "warn") for rule in RULES)
    assert len({rule.name for rule in RULES}) == len(RULES)


def test_the_native_rules_use_the_enum():
    assert all(isinstance(name, Check) for name, *_ in NATIVE_RULES)


def test_the_documented_severity_is_the_rules():
    rows = _rows()
    for name, severity, *_ in NATIVE_RULES:
        assert rows[name][0] == severity, name


def test_the_evaluation_notes_link_the_table():
    assert "(checks.md)" in (DOCS / "evaluation.md").read_text()
