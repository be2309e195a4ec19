"""`tokenflow run --headless` on a generated job, in a child process, measured from the outside.

The job's requests/s is its own running time's (state.toml `elapsed_s`), so the interpreter's start
is not counted against it; its CPU is the child's user + sys from the OS, less what the interpreter's
start and the imports took (run_probe tells), so what is left is the cost of the run: its requests,
and the little opening the output, making the client and the last save take.
"""

from __future__ import annotations

import json
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .child import BenchError, last_line, run_child
from .workload import MODEL, PARAMS, STREAM_PARAMS, prompt, stream_prompt


@dataclass(frozen=True, slots=True)
class RunFigures:
    requests: int
    requests_per_s: float
    cpu_ms_per_request: float
    peak_rss_mb: float
    startup_cpu_s: float  # the interpreter's start and the imports, left out of cpu_ms_per_request


def write_job(folder: Path, base_url: str, transport: str, workers: int, requests: int, stream: bool = False) -> Path:
    """A job of `requests` prompts to `base_url` with `workers` workers (streamed answers with `stream`)."""
    folder.mkdir(parents=True, exist_ok=True)
    make_prompt = stream_prompt if stream else prompt
    with open(folder / "prompts.jsonl", "wb") as lines:
        lines.writelines(orjson.dumps({"prompt": make_prompt(i)}) + b"\n" for i in range(requests))
    params = ", ".join(f"{key} = {value!r}" for key, value in (STREAM_PARAMS if stream else PARAMS).items())
    streaming = "stream = true\nidle_timeout_s = 30\n" if stream else ""
    (folder / "job.toml").write_text(
        f'[job]\nname = "bench"\ninput = "prompts.jsonl"\noutput = "run"\n\n'
        f'[endpoint]\nbase_url = "{base_url}"\nmodel = "{MODEL}"\ntransport = "{transport}"\ntimeout_s = 60\n'
        f"{streaming}\n"
        f"[request]\nparams = {{ {params} }}\n\n"
        f"[workers]\ncount = {workers}\nmax = {workers}\n"
    )
    return folder / "job.toml"


def measure(
    folder: Path, base_url: str, transport: str, workers: int, requests: int, timeout_s: float, stream: bool = False
) -> RunFigures:
    """Run a job of `requests` requests to `base_url` with `workers` workers (streamed answers with `stream`)."""
    job = write_job(folder, base_url, transport, workers, requests, stream)
    argv = [sys.executable, "-m", "tokenflow_tui.cli.run_probe", str(job), "--headless"]
    run = run_child(argv, timeout_s=timeout_s, cwd=str(folder))
    if run.code != 0:
        raise BenchError(
            f"tokenflow run ({transport}, {workers} workers) exited with {run.code}: {last_line(run.stderr)}"
        )
    startup = json.loads(run.stdout.strip().splitlines()[-1])["startup_cpu_s"]
    elapsed = _finished_state(folder, requests)["elapsed_s"]
    cpu_ms = (run.cpu_s - startup) * 1000 / requests
    return RunFigures(requests, requests / elapsed, cpu_ms, run.peak_rss_mb, startup)


def _finished_state(folder: Path, requests: int) -> dict[str, Any]:
    state = tomllib.loads((folder / "run" / "state.toml").read_text())
    if state.get("done") != requests:
        # a failed request is a fault of the setup (the simulator injects none here), not a figure
        raise BenchError(
            f"tokenflow run finished {state.get('done')} of {requests} requests without error; "
            f"see {folder / 'run' / 'results.jsonl'}"
        )
    return state
