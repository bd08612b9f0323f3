"""`kernelwright suite`: the shipped problems, or any folder in KernelBench's layout."""

from __future__ import annotations

import json


def test_shipped_suite_listing(cli):
    proc = cli("suite", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) >= 12
    assert all("cuda" in row["candidates"] for row in rows)
    assert sum("cpu" in row["candidates"] for row in rows) >= 3


def test_folder_in_kernelbench_layout(cli, fixtures_dir, tmp_path):
    level = tmp_path / "level1"
    level.mkdir()
    (level / "3_scale_add.py").write_text((fixtures_dir / "problems" / "scale_add.py").read_text())
    proc = cli("suite", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    [row] = json.loads(proc.stdout)
    assert (row["name"], row["level"]) == ("3_scale_add", 1)


def test_missing_folder_is_bad_input(cli_in_process, tmp_path):
    proc = cli_in_process("suite", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert (
        proc.stderr.startswith("error: problem folder not found") and "Traceback" not in proc.stderr
    )
