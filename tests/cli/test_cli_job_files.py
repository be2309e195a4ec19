"""Job paths and settings that are almost right, through the real command line (issue 18): a sentence and exit 2,
never a hang or a traceback, and nothing written."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from run_helpers import simulated_job, tokenflow, write_input, write_job

KEY = "sk-secret-\u00e9-42"


def made_files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_fifo_as_the_job_file_is_refused_at_once(tmp_path, command):
    fifo = tmp_path / "job.toml"
    os.mkfifo(fifo)
    result = tokenflow(command, str(fifo), timeout=30)  # opening a FIFO for reading would wait for a writer
    assert result.returncode == 2
    assert result.stderr == f"{fifo}: the job file is not a regular file (a pipe or a device?)\n"


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_device_as_the_job_file_is_refused_without_reading_it(tmp_path, command):
    result = tokenflow(command, "/dev/zero", timeout=30)
    assert result.returncode == 2
    assert result.stderr == "/dev/zero: the job file is not a regular file (a pipe or a device?)\n"


def test_a_job_file_with_a_utf8_bom_is_valid(tmp_path):
    job = simulated_job(tmp_path, 3)
    job.write_bytes(b"\xef\xbb\xbf" + job.read_bytes())
    result = tokenflow("validate", str(job))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{job}: valid\n")


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize(
    ("key", "holds"),
    [
        (KEY, "a character that is not ASCII at character 11"),
        ("sk-secret\n", "a line break at character 10"),
        ("sk-se\tcret", "a control character at character 6"),
    ],
)
def test_a_key_that_cannot_go_in_a_header_is_refused_and_never_printed(tmp_path, command, key, holds):
    write_input(tmp_path / "prompts.jsonl", 2)
    job = write_job(
        tmp_path,
        {
            "job": {"name": "t", "input": "prompts.jsonl", "output": "out"},
            "endpoint": {"base_url": "https://api.example.com/v1", "model": "m", "api_key_env": "TF_TEST_KEY"},
        },
    )
    args = ("--headless",) if command == "run" else ()
    result = tokenflow(command, str(job), *args, env={"TF_TEST_KEY": key})
    assert result.returncode == 2
    assert "secret" not in result.stdout + result.stderr
    assert result.stderr == (
        f"{job}:9:1: the environment variable TF_TEST_KEY holds {holds}, which cannot be sent in a header; "
        "set it again without it (endpoint.api_key_env; the key is not shown)\n"
    )
    assert made_files(tmp_path) == ["job.toml", "prompts.jsonl"]


def test_a_job_name_too_long_for_a_file_name_leaves_no_runs_folder(tmp_path):
    write_input(tmp_path / "prompts.jsonl", 2)
    job = write_job(tmp_path, {"job": {"name": "n" * 300, "input": "prompts.jsonl"}, "endpoint": {"simulate": True}})
    result = tokenflow("run", str(job), "--headless")
    assert result.returncode == 2
    assert result.stderr == (
        f"{job}:2:1: job.name is 300 characters long; at most 100: it names the folder runs/<name>\n"
    )
    assert made_files(tmp_path) == ["job.toml", "prompts.jsonl"]


def test_an_output_below_a_file_is_refused_by_validate_and_by_run_output(tmp_path):
    job = simulated_job(tmp_path, 2)
    text = job.read_text().replace('output = "out"', 'output = "prompts.jsonl/sub"')
    job.write_text(text)
    result = tokenflow("validate", str(job))
    assert result.returncode == 2
    assert result.stderr == (
        f"{job}:4:1: the output {tmp_path}/prompts.jsonl/sub is inside {tmp_path}/prompts.jsonl, which is a file, "
        "not a folder\n"
    )
    job.write_text(text.replace('output = "prompts.jsonl/sub"', 'output = "out"'))
    by_option = tokenflow("run", str(job), "--headless", "--output", str(tmp_path / "prompts.jsonl" / "sub"))
    assert by_option.returncode == 2
    assert by_option.stderr.startswith(f"tokenflow run: cannot make the output folder {tmp_path}/prompts.jsonl/sub (")
    assert made_files(tmp_path) == ["job.toml", "prompts.jsonl"]


def test_a_run_refused_below_new_folders_takes_them_away_again(tmp_path):
    job = simulated_job(tmp_path, 2)
    too_long = tmp_path / "new" / "deeper" / ("x" * 300)
    refused = tokenflow("run", str(job), "--headless", "--output", str(too_long))
    assert refused.returncode == 2
    assert refused.stderr == f"tokenflow run: cannot make the output folder {too_long} (file name too long)\n"
    assert made_files(tmp_path) == ["job.toml", "prompts.jsonl"]  # new/ and new/deeper/ were taken away again


def test_an_empty_output_option_is_refused(tmp_path):
    job = simulated_job(tmp_path, 2)
    result = tokenflow("run", str(job), "--headless", "--output", "", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.endswith("tokenflow run: error: argument --output: expected a folder, got an empty path\n")
    assert made_files(tmp_path) == ["job.toml", "prompts.jsonl"]


@pytest.mark.parametrize("where", ["option", "job file"])
def test_a_billion_workers_is_refused_before_anything_is_written(tmp_path, where):
    job = simulated_job(tmp_path, 2)
    if where == "option":
        result = tokenflow("run", str(job), "--headless", "--workers", "1000000000")
        expected = "tokenflow run: error: argument --workers: expected at most 100,000, got 1,000,000,000\n"
        assert result.stderr.endswith(expected)
    else:
        job.write_text(job.read_text().replace("count = 32", "count = 1000000000"))
        result = tokenflow("run", str(job), "--headless")
        assert result.stderr == f"{job}:18:1: workers.count must be an integer from 1 to 100000, found 1000000000\n"
    assert result.returncode == 2
    assert made_files(tmp_path) == ["job.toml", "prompts.jsonl"]


def test_a_reader_that_goes_away_gets_no_traceback(tmp_path: Path) -> None:
    job = simulated_job(tmp_path, 3)
    command = f"{shlex.quote(sys.executable)} -m tokenflow_tui validate {shlex.quote(str(job))} | true"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (1, "")


def test_the_commands_that_read_a_run_take_its_job_file_too(tmp_path):
    job = simulated_job(tmp_path, 3)
    assert tokenflow("run", str(job), "--headless").returncode == 0
    by_folder, by_job = tokenflow("report", str(tmp_path / "out")), tokenflow("report", str(job))
    assert by_job.returncode == 0 and by_job.stdout == by_folder.stdout
    assert "3 finished (3 done, 0 failed)" in by_job.stdout
    broken = tmp_path / "broken.toml"
    broken.write_text('[job]\nname = "b"\n')
    refused = tokenflow("report", str(broken))
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (
        f"tokenflow report: error: argument RUN_DIR: {broken} is a job file with problems: "
        f"{broken}: missing table [endpoint] (with base_url or simulate = true), [[endpoints]], or a [handler]"
    )
