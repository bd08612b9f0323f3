"""Packaging: every package folder ships in the wheel, under the one import name only."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["core", "agents", "compiler", "verifier", "profiler", "prompts", "store"]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _import_name(folder: Path) -> str:
    rel = folder.relative_to(ROOT).parts
    mapping = {v: k for k, v in _config()["package-dir"].items()}
    return ".".join([mapping[rel[0]], *rel[1:]])


def _package_folders() -> list[Path]:
    return sorted(
        p.parent
        for stage in STAGES
        for p in (ROOT / stage).rglob("__init__.py")
        if "__pycache__" not in p.parts
    )


def test_every_package_folder_is_listed():
    listed = set(_config()["packages"])
    missing = [str(f) for f in _package_folders() if _import_name(f) not in listed]
    assert not missing, (
        f"folders with __init__.py missing from [tool.setuptools] packages: {missing}"
    )


@pytest.mark.slow
def test_wheel_contents(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("kernelwright-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"kernelwright"}
    for folder in _package_folders():
        init = _import_name(folder).replace(".", "/") + "/__init__.py"
        assert init in names, f"{init} is not in the wheel"
    shipped = [n for n in names if n.startswith("kernelwright/suite/problems/")]
    assert len(shipped) >= 12
    assert "kernelwright/py.typed" in names
    # data the installed tool reads at run time: a missing file breaks only installed copies
    root = Path(__file__).resolve().parent.parent
    for folder, pattern in (("prompts", "*.j2"), ("core/suite/demo", "*.jsonl")):
        for path in (root / folder).glob(pattern):
            packaged = "kernelwright/" + str(path.relative_to(root)).removeprefix("core/")
            assert packaged in names, f"{packaged} is not in the wheel"
    for data in (
        "kernelwright/report.html.j2",
        "kernelwright/agents/models.toml",
        "kernelwright/profiler/gpu_sheets.toml",
    ):
        assert data in names, f"{data} is not in the wheel"


def test_bare_stage_names_do_not_import_from_elsewhere(tmp_path):
    code = (
        "import importlib.util, sys\n"
        "import kernelwright.agents, kernelwright.compiler, kernelwright.verifier\n"
        "for name in ('agents', 'compiler', 'verifier', 'profiler', 'store', 'core'):\n"
        "    spec = importlib.util.find_spec(name)\n"
        "    assert spec is None or 'kernelwright' not in str(spec.origin), (name, spec.origin)\n"
        "import agents\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "ModuleNotFoundError" in proc.stderr and "agents" in proc.stderr
