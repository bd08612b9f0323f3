"""Seals on cached builds: a cached extension is loaded only as its own build left it."""

from __future__ import annotations

import json

import pytest
from kernelwright.compiler import seal


def _build(tmp_path, name="ext", key="abc123", content=b"\x7fELF honest"):
    shelf = tmp_path / "home" / "builds" / "0123abcd"  # one candidate's (paths.shelf)
    folder = shelf / f"{name}-{key}"
    folder.mkdir(parents=True)
    (folder / f"{name}.so").write_bytes(content)
    return shelf, folder


def test_a_reported_build_is_sealed_and_loads_from_a_checked_copy(tmp_path):
    builds, folder = _build(tmp_path)
    seal.record(builds, [{"name": "ext", "key": "abc123", "cached": False}])
    home = tmp_path / "home"
    recorded = json.loads((home / "seals" / "0123abcd" / f"{folder.name}.json").read_text())
    assert set(recorded) == {"ext.so"}
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    private = seal.checked_copy(folder / "ext.so", scratch)
    assert private is not None and private.parent == scratch
    assert (private / "ext.so").read_bytes() == b"\x7fELF honest"
    assert seal.intact(folder)


def test_a_library_changed_after_its_build_is_refused_and_its_folder_deleted(tmp_path):
    builds, folder = _build(tmp_path)
    seal.record(builds, [{"name": "ext", "key": "abc123", "cached": False}])
    (folder / "ext.so").write_bytes(b"\x7fELF planted")  # another candidate's code
    assert not seal.intact(folder)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(seal.TamperedBuild, match="changed after it was built"):
        seal.checked_copy(folder / "ext.so", scratch)
    assert not folder.exists()  # built again next time


def test_a_cache_hit_keeps_its_seal_and_a_new_build_replaces_it(tmp_path):
    builds, folder = _build(tmp_path)
    seal.record(builds, [{"name": "ext", "key": "abc123", "cached": False}])
    (folder / "ext.so").write_bytes(b"\x7fELF planted")
    seal.record(builds, [{"name": "ext", "key": "abc123", "cached": True}])  # no reseal
    assert not seal.intact(folder)
    seal.record(builds, [{"name": "ext", "key": "abc123", "cached": False}])  # built again
    assert seal.intact(folder)


def test_an_unsealed_folder_is_not_a_cache_hit(tmp_path):
    # One no build report of ours sealed: planted by someone else, or its build never finished.
    # The build worker builds it again; what it builds loads where it is until the CLI seals it.
    _, folder = _build(tmp_path)
    assert not seal.intact(folder)
    assert seal.checked_copy(folder / "ext.so", tmp_path) is None


def test_only_folders_on_the_reporting_candidates_shelf_are_sealed(tmp_path):
    shelf, _ = _build(tmp_path)
    other_shelf = shelf.parent / "ffff0000"
    (other_shelf / "ext-abc123").mkdir(parents=True)
    (other_shelf / "ext-abc123" / "ext.so").write_bytes(b"\x7fELF planted")
    seal.record(shelf, [{"name": "ext", "key": "abc123", "cached": False}])
    assert seal.intact(shelf / "ext-abc123")
    assert not seal.intact(other_shelf / "ext-abc123")
    # a key is hex: a report cannot reach another folder through a glob or a path
    for key in ("*", "../ffff0000/ext-abc123", "abc123/.."):
        seal.record(shelf, [{"name": "ext", "key": key, "cached": False}])
    assert not (tmp_path / "home" / "seals" / "ffff0000").exists()
