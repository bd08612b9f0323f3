"""Seals on cached builds: a cached extension is loaded only as its own build left it."""

from __future__ import annotations

import json

import pytest
from kernelwright.compiler import seal


def _build(tmp_path, name="ext", key="abc123", content=b"\x7fELF honest"):
    builds = tmp_path / "home" / "builds"
    folder = builds / f"{name}-{key}"
    folder.mkdir(parents=True)
    (folder / f"{name}.so").write_bytes(content)
    return builds, folder


def test_a_reported_build_is_sealed_and_loads_from_a_checked_copy(tmp_path):
    builds, folder = _build(tmp_path)
    seal.record(builds, [{"name": "ext", "key": "abc123", "cached": False}])
    recorded = json.loads((builds.parent / "seals" / f"{folder.name}.json").read_text())
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


def test_an_unsealed_library_loads_where_it_is(tmp_path):
    _, folder = _build(tmp_path)
    assert seal.checked_copy(folder / "ext.so", tmp_path) is None
    assert seal.intact(folder)
