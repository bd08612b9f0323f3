"""Bad input around the history and its outputs: one line on stderr, exit code 2, no traceback,
and nothing lost or half-written (the user's files byte for byte as they were, no temp files).
In-process (`cli_in_process`); `saved_run` is conftest's history of one finished run."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROBLEM = FIXTURES / "problems" / "scale_add.py"
CANDIDATE = FIXTURES / "candidates" / "scale_add_ok.py"


def _one_line_exit_2(proc, *phrases: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("error: "), proc.stderr
    for phrase in phrases:
        assert phrase in proc.stderr, proc.stderr


def test_a_file_that_is_not_sqlite_is_refused_untouched(cli_in_process, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    db = home / "history.db"
    db.write_bytes(b"this is not sqlite garbage\n")
    env = {"KERNELWRIGHT_HOME": str(home)}
    _one_line_exit_2(
        cli_in_process("runs", "list", env_extra=env), str(db), "not an SQLite database"
    )
    saved = cli_in_process(
        "evaluate", str(PROBLEM), str(CANDIDATE), "--target", "cpu", "--save", env_extra=env
    )
    _one_line_exit_2(saved, "not an SQLite database", "KERNELWRIGHT_HOME")
    assert db.read_bytes() == b"this is not sqlite garbage\n"
    assert sorted(p.name for p in home.iterdir()) == ["history.db"]


def test_someone_elses_sqlite_file_is_refused_byte_for_byte_unchanged(cli_in_process, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    db = home / "history.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    proc = cli_in_process("runs", "list", env_extra={"KERNELWRIGHT_HOME": str(home)})
    _one_line_exit_2(proc, str(db), "not a kernelwright history")
    assert db.read_bytes() == before  # no tables or columns added, journal mode not switched
    assert sorted(p.name for p in home.iterdir()) == ["history.db"]


def test_kernelwright_home_that_is_a_file(cli_in_process, tmp_path):
    home = tmp_path / "home"
    home.write_text("a file\n")
    for args in (("runs", "list"), ("evaluate", str(PROBLEM), str(CANDIDATE), "--target", "cpu")):
        proc = cli_in_process(*args, env_extra={"KERNELWRIGHT_HOME": str(home)})
        _one_line_exit_2(proc, str(home), "it is a file", "KERNELWRIGHT_HOME")
    assert home.read_text() == "a file\n"


@pytest.mark.parametrize("where", ["missing_folder", "a_folder", "proc"])
def test_export_and_report_to_a_path_that_cannot_be_written(
    cli_in_process, saved_run, tmp_path, where
):
    out = {
        "missing_folder": tmp_path / "no" / "such" / "x.py",
        "a_folder": tmp_path,
        "proc": Path("/proc/kw-out.py"),
    }[where]
    env = {"KERNELWRIGHT_DB": saved_run["db"]}
    before = sorted(p.name for p in tmp_path.iterdir())
    _one_line_exit_2(
        cli_in_process("runs", "export", saved_run["run"], "--out", str(out), env_extra=env),
        str(out),
    )
    _one_line_exit_2(
        cli_in_process("report", saved_run["run"], "--out", str(out), env_extra=env), str(out)
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no <dir>.tmp, no temp file
    assert not Path(f"{tmp_path}.tmp").exists() and not out.is_file()


def test_a_replay_file_that_is_not_utf8(cli_in_process, tmp_path):
    replies = tmp_path / "bad.jsonl"
    replies.write_bytes(b"\xff\xfe{}\n")
    proc = cli_in_process(
        "optimize", str(PROBLEM), "--model", f"replay:{replies}", "--target", "cpu"
    )
    _one_line_exit_2(proc, str(replies), "not UTF-8")


def test_comparing_a_run_with_itself_is_refused(cli_in_process, saved_run):
    run = saved_run["run"]
    proc = cli_in_process(
        "runs", "compare", run, run, "--json", env_extra={"KERNELWRIGHT_DB": saved_run["db"]}
    )
    _one_line_exit_2(proc, "two different runs", run)
    assert proc.stdout == ""
