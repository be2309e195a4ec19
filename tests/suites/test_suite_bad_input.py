"""Bad job files and inputs through the real command line: exit 2, the exact lines, nothing written (§2.1).

A quarter of the library-level corpus of tests/job/test_bad_jobs.py is run again here through `tokenflow run`
in child processes, with more cases about traffic settings, inputs and the command line itself. The
children run a few at a time, so the suite takes seconds, not minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_bad_jobs import CASES as LIBRARY_CASES
from test_bad_jobs import GOOD_LINE, HANDLER, SIM, Case, write_case

# one worker runs the module: its fixture starts a child process per case, once, not once per xdist worker
pytestmark = pytest.mark.xdist_group("bad-input")

EXTRA_CASES = [
    Case(
        "limits: token budget negative",
        SIM + "\n[limits]\nmax_total_tokens = -1\n",
        ["jobs/job.toml:9:1: limits.max_total_tokens must be an integer >= 0, found -1"],
    ),
    Case(
        "limits: cost budget without any price",
        SIM + "\n[limits]\nmax_cost_usd = 2\n",
        [
            "jobs/job.toml:9:1: limits.max_cost_usd needs limits.price_input_per_million_usd and "
            "limits.price_output_per_million_usd to count the cost"
        ],
    ),
    Case(
        "limits: price a string",
        SIM + '\n[limits]\nprice_input_per_million_usd = "0.15"\n',
        ["jobs/job.toml:9:1: limits.price_input_per_million_usd must be a number >= 0, found a string"],
    ),
    Case(
        "limits: misspelt key",
        SIM + "\n[limits]\nrequest_per_minute = 5\n",
        ['jobs/job.toml:9:1: unknown key "request_per_minute" in [limits]; did you mean "requests_per_minute"?'],
    ),
    Case(
        "limits: tokens per minute negative",
        SIM + "\n[limits]\ntokens_per_minute = -100\n",
        ["jobs/job.toml:9:1: limits.tokens_per_minute must be an integer >= 0, found -100"],
    ),
    Case(
        "workers: adaptive not a boolean",
        SIM + '\n[workers]\nadaptive = "yes"\n',
        ["jobs/job.toml:9:1: workers.adaptive must be true or false, found a string"],
    ),
    Case(
        "workers: adaptive maximum zero",
        SIM + "\n[workers]\nadaptive = true\nmax = 0\n",
        ["jobs/job.toml:10:1: workers.max must be an integer from 1 to 100000, found 0"],
    ),
    Case(
        "workers: minimum zero",
        SIM + "\n[workers]\nmin = 0\n",
        ["jobs/job.toml:9:1: workers.min must be an integer from 1 to 100000, found 0"],
    ),
    Case(
        "simulator: rpm limit negative",
        SIM + "\n[endpoint.simulator]\nrpm_limit = -1\n",
        ["jobs/job.toml:9:1: endpoint.simulator.rpm_limit must be an integer >= 0, found -1"],
    ),
    Case(
        "retry: backoff base negative",
        SIM + "\n[retry]\nbackoff_base_s = -1\n",
        ["jobs/job.toml:9:1: retry.backoff_base_s must be a number >= 0, found -1"],
    ),
    Case(
        "an empty job file",
        "",
        [
            "jobs/job.toml: missing table [job] (with name and input)",
            "jobs/job.toml: missing table [endpoint] (with base_url or simulate = true), [[endpoints]], or a [handler]",
        ],
    ),
    Case(
        "input: text after the object",
        SIM,
        ["jobs/prompts.jsonl:1:17: invalid JSON: unexpected content after document"],
        input='{"prompt": "a"} x\n',
    ),
    Case(
        "input: a control character in a string",
        SIM,
        ["jobs/prompts.jsonl:1:14: invalid JSON: unexpected control character in string"],
        input='{"prompt": "a\x00"}\n',
    ),
    Case("input: an empty file", SIM, ["jobs/prompts.jsonl: the input has no requests"], input=""),
    Case(
        "input: the last line cut short",
        SIM,
        ["jobs/prompts.jsonl:2:1: invalid JSON: unexpected end of data"],
        input=GOOD_LINE + '{"prompt": "b"\n',
    ),
    Case(
        "input: id a boolean",
        SIM,
        ['jobs/prompts.jsonl:1:1: "id" must be a string or an integer, found a boolean'],
        input='{"prompt": "a", "id": true}\n',
    ),
    Case(
        "input: params turn on streaming",
        SIM,
        ['jobs/prompts.jsonl:1:1: "params" must not contain "stream": streaming is set by endpoint.stream'],
        input='{"messages": [{"role": "user", "content": "a"}], "params": {"stream": true}}\n',
    ),
    Case(
        "handler: raises on import",
        HANDLER,
        ["jobs/h.py:1:1: cannot import the handler: RuntimeError: no model configured"],
        files={"h.py": 'raise RuntimeError("no model configured")\n'},
    ),
]
# every fourth case of the library corpus (each child process costs a good part of a second), and
# every handler case: a handler file is imported by `run` on its own path, before anything is written
ALL_CASES = [case for i, case in enumerate(LIBRARY_CASES) if i % 4 == 0 or "handler" in case.name] + EXTRA_CASES
VALIDATED = EXTRA_CASES[::6]


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: list[str]
    made: list[str]  # every path under the case's folder after the run


def run_case(root: Path, case: Case, command: str) -> Outcome:
    write_case(root / "jobs", case)
    env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"} | case.env
    args = ["run", "jobs/job.toml", "--headless"] if command == "run" else ["validate", "jobs/job.toml"]
    child = subprocess.run(
        [sys.executable, "-m", "tokenflow_tui", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    made = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    return Outcome(child.returncode, child.stdout, child.stderr.splitlines(), made)


def expected_files(case: Case) -> list[str]:
    return sorted(
        ["jobs"]
        + ["jobs/job.toml" for _ in [1] if case.job is not None]
        + ["jobs/prompts.jsonl" for _ in [1] if case.input is not None]
        + [f"jobs/{name}" for name in case.files]
    )


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Outcome]:
    """Every case through `tokenflow run`, and some through `tokenflow validate` too, 4 at a time."""
    work = [(case, "run") for case in ALL_CASES] + [(case, "validate") for case in VALIDATED]

    # the folders first, in this thread: mktemp's numbering is not safe across threads
    folders = [tmp_path_factory.mktemp("case") for _ in work]

    def one(item: tuple[Path, tuple[Case, str]]) -> Outcome:
        folder, (case, command) = item
        return run_case(folder, case, command)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, zip(folders, work)))
    return {(case.name, command): outcome for (case, command), outcome in zip(work, results)}


def test_the_suite_is_large():
    assert len(ALL_CASES) >= 40
    assert len({case.name for case in ALL_CASES}) == len(ALL_CASES)


@pytest.mark.parametrize("case", ALL_CASES, ids=[case.name for case in ALL_CASES])
def test_run_exits_2_with_the_exact_lines_and_writes_nothing(outcomes, case):
    outcome = outcomes[(case.name, "run")]
    assert (outcome.code, outcome.stdout, outcome.stderr) == (2, "", case.expected)
    assert outcome.made == expected_files(case)


@pytest.mark.parametrize("case", VALIDATED, ids=[case.name for case in VALIDATED])
def test_validate_says_the_same(outcomes, case):
    outcome = outcomes[(case.name, "validate")]
    assert (outcome.code, outcome.stdout, outcome.stderr) == (2, "", case.expected)
    assert outcome.made == expected_files(case)


@pytest.mark.parametrize(
    ("args", "last_line"),
    [
        (["--workers", "0"], "tokenflow run: error: argument --workers: expected at least 1, got 0"),
        (["--workers", "many"], "tokenflow run: error: argument --workers: expected a whole number, got 'many'"),
        (
            ["--output", "jobs/prompts.jsonl"],
            "tokenflow run: the output {root}/jobs/prompts.jsonl exists and is not a folder",
        ),
        (
            ["--output", "jobs/prompts.jsonl/sub"],
            "tokenflow run: cannot make the output folder {root}/jobs/prompts.jsonl/sub (not a directory)",
        ),
        (["--bogus"], "tokenflow: error: unrecognized arguments: --bogus"),
    ],
    ids=["workers zero", "workers not a number", "output is a file", "output under a file", "unknown option"],
)
def test_bad_options_of_run_exit_2_with_a_sentence(tmp_path, args, last_line):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "job.toml").write_text(SIM)
    (jobs / "prompts.jsonl").write_text(GOOD_LINE)
    child = subprocess.run(
        [sys.executable, "-m", "tokenflow_tui", "run", "jobs/job.toml", "--headless", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert child.returncode == 2
    assert child.stderr.splitlines()[-1] == last_line.format(root=tmp_path)
    assert "Traceback" not in child.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["job.toml", "jobs", "prompts.jsonl"]
