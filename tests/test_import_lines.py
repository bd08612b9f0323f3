"""The dependency lines of DESIGN.md: which folder may import which."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Modules of the core package that are plain records or helpers, usable from any stage.
SHARED = {
    "kernelwright",
    "kernelwright.__version__",
    "kernelwright.records",
    "kernelwright.errors",
    "kernelwright.paths",
    "kernelwright.pyast",
    "kernelwright.check_names",  # the enum of check names, static and run-time
}
STAGE_PACKAGES = {
    "agents": "kernelwright.agents",
    "compiler": "kernelwright.compiler",
    "verifier": "kernelwright.verifier",
    "profiler": "kernelwright.profiler",
    "prompts": "kernelwright.prompts",
    "store": "kernelwright.store",
    "runner": "kernelwright.runner",
}
ALLOWED = {
    "agents": {"kernelwright.agents", "kernelwright.prompts"},
    "compiler": {"kernelwright.compiler"},
    "verifier": {"kernelwright.verifier", "kernelwright.compiler", "kernelwright.profiler"},
    "profiler": {"kernelwright.profiler"},
    "prompts": {"kernelwright.prompts"},
    "store": {"kernelwright.store"},
    # process isolation imports no stage and no part of the loop: only itself and paths
    "runner": {"kernelwright.runner"},
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "kernelwright":  # `from kernelwright import x`: x is a module
                found |= {f"kernelwright.{a.name}" for a in node.names}
            else:
                found.add(node.module)
    return {n for n in found if n == "kernelwright" or n.startswith("kernelwright.")}


def _allowed(name: str, folder: str) -> bool:
    if folder == "runner":
        return name in ("kernelwright", "kernelwright.paths") or name.startswith(
            "kernelwright.runner"
        )
    if name in SHARED or name == "kernelwright.runner" or name.startswith("kernelwright.runner."):
        return True
    return any(name == p or name.startswith(p + ".") for p in ALLOWED[folder])


def test_stage_imports_follow_the_design():
    violations = []
    for folder in STAGE_PACKAGES:
        for path in (ROOT / folder).rglob("*.py"):
            for name in _imports(path):
                if not _allowed(name, folder):
                    violations.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not violations, violations


def test_the_rule_rejects_what_it_should():
    assert not _allowed("kernelwright.evaluate", "verifier")
    assert not _allowed("kernelwright.store.db", "compiler")
    assert not _allowed("kernelwright.agents", "profiler")
    assert _allowed("kernelwright.records", "profiler")
    assert _allowed("kernelwright.compiler.loader", "verifier")
    assert _allowed("kernelwright.runner.isolation", "compiler")
    assert not _allowed("kernelwright.verifier.worker", "runner")
    assert not _allowed("kernelwright.records", "runner")


def test_no_bare_stage_imports_anywhere():
    bare = set(STAGE_PACKAGES) | {"core"}
    offenders = []
    for path in ROOT.rglob("*.py"):
        if ".venv" in path.parts or "fixtures" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in bare
            ]
    assert not offenders, offenders
