"""state.toml: atomic replacement, no None, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tokenflow_tui.store.errors import StoreError
from tokenflow_tui.store.state_file import read_state, write_state

STATE = {"version": 1, "job": "demo", "done": 3, "paused": False, "stats": {"history": [[0, 1, 2]]}}


def test_round_trip_and_no_temporary_file_left(tmp_path: Path) -> None:
    path = tmp_path / "state.toml"
    write_state(path, STATE)
    assert path.read_text() == (
        'version = 1\njob = "demo"\ndone = 3\npaused = false\n\n[stats]\nhistory = [\n    [\n'
        "        0,\n        1,\n        2,\n    ],\n]\n"
    )
    assert read_state(path) == STATE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.toml"]


def test_none_is_refused_and_nothing_written(tmp_path: Path) -> None:
    path = tmp_path / "state.toml"
    with pytest.raises(ValueError) as caught:
        write_state(path, {"stats": {"saved_at": None}})
    assert str(caught.value) == "state.toml cannot hold None (at stats.saved_at): TOML has no null; leave the key out"
    with pytest.raises(ValueError, match=r"at history\[1\]"):
        write_state(path, {"history": [1, None]})
    assert list(tmp_path.iterdir()) == []


def test_crash_before_the_rename_keeps_the_old_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.toml"
    write_state(path, STATE)
    before = path.read_bytes()

    def crash(source: str, target: str) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StoreError) as caught:
        write_state(path, {**STATE, "done": 4})
    assert str(caught.value) == f"{path}: cannot save the state (input/output error); the previous state is unchanged."
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.toml"]


def test_missing_state_is_none(tmp_path: Path) -> None:
    assert read_state(tmp_path / "state.toml") is None


def test_damaged_state_names_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "state.toml"
    path.write_text("version = 1\ndone = \n")
    with pytest.raises(StoreError) as caught:
        read_state(path)
    assert str(caught.value) == f"{path}:2:8: damaged state (Invalid value)."
    path.write_bytes(b"job = '\xff'\n")
    with pytest.raises(StoreError) as caught:
        read_state(path)
    assert str(caught.value) == f"{path}: damaged state (not UTF-8 text at byte 7)."
