"""`tokenflow attach` and `watch` on a folder with no job to show: a sentence and exit 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from run_helpers import tokenflow


def test_attach_and_watch_on_a_folder_that_is_not_there(tmp_path: Path) -> None:
    for command in ("attach", "watch"):
        result = tokenflow(command, str(tmp_path / "nowhere"))
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr == f"tokenflow {command}: {tmp_path / 'nowhere'}: no such folder\n"


def test_attach_on_a_folder_where_no_run_listened(tmp_path: Path) -> None:
    result = tokenflow("attach", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr == f"tokenflow attach: {tmp_path}: no tokenflow run has listened here (no control.json)\n"


def test_watch_on_a_run_whose_job_file_is_gone(tmp_path: Path) -> None:
    info = {"socket": f"{tmp_path}/control.sock", "job": f"{tmp_path}/job.toml", "resume": "tokenflow run job.toml"}
    (tmp_path / "control.json").write_text(json.dumps(info))
    result = tokenflow("watch", str(tmp_path))
    assert result.returncode == 2
    said = result.stderr
    assert said.startswith(
        f"tokenflow watch: {tmp_path}: the job is not running (nothing listens on {tmp_path}/control.sock)"
    )
    assert "its files cannot be opened: " in said and "job.toml" in said and "Traceback" not in said
