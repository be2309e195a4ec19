"""Job files that are right: the exact settings they give, defaults, handlers, description."""

from __future__ import annotations

import json
import random
import re
import sys
import tomllib
from pathlib import Path

import pytest

from tokenflow_tui.job.describe import describe
from tokenflow_tui.job.handler_loader import load_handler
from tokenflow_tui.job.inputs import InputSummary, scan_input
from tokenflow_tui.job.model import (
    EndpointSection,
    HandlerSection,
    Job,
    JobSection,
    LimitsSection,
    RequestSection,
    RetrySection,
    SimulatorSection,
    WorkersSection,
)
from tokenflow_tui.job.problems import JobError, Problem, format_problems
from tokenflow_tui.job.reader import load_job
from tokenflow_tui.job.toml_positions import KeyPositions
from tokenflow_tui.sim.config import SimulatorConfig

REMOTE_JOB = """\
[job]
name = "demo"
input = "prompts.jsonl"
output = "out/demo"

[endpoint]
base_url = "https://api.openai.com/v1/"
api = "completions"
model = "gpt-4o-mini"
api_key_env = "OPENAI_API_KEY"
timeout_s = 30
transport = "httpx"

[request]
params = { temperature = 0.7, max_tokens = 256, response_format = { type = "json_object" } }

[workers]
count = 16
adaptive = true
min = 2
max = 40

[retry]
max_attempts = 3
backoff_base_s = 1
backoff_max_s = 10.5

[limits]
requests_per_minute = 600
tokens_per_minute = 100000
pace = false
max_total_tokens = 5000000
max_cost_usd = 5
price_input_per_million_usd = 0.15
price_output_per_million_usd = 0.6
"""


@pytest.fixture
def jobs(tmp_path, monkeypatch) -> Path:
    """A `jobs` folder with a one-line input; the test runs from its parent, as a user would."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "prompts.jsonl").write_text('{"prompt": "hi"}\n')
    return folder


def write_job(folder: Path, text: str, name: str = "job.toml") -> Path:
    (folder / name).write_text(text)
    return Path("jobs") / name


def test_a_remote_job_gives_exact_settings(jobs):
    path = write_job(jobs, REMOTE_JOB)
    job = load_job(path, {"OPENAI_API_KEY": "sk-secret-value"})
    assert job == Job(
        job_path=Path("jobs/job.toml"),
        job_dir=Path("jobs"),
        job=JobSection(name="demo", input=Path("jobs/prompts.jsonl"), output=Path("jobs/out/demo")),
        endpoint=EndpointSection(
            base_url="https://api.openai.com/v1",
            simulate=False,
            api="completions",
            model="gpt-4o-mini",
            api_key_env="OPENAI_API_KEY",
            timeout_s=30.0,
            transport="httpx",
            simulator=None,
        ),
        request=RequestSection(
            params={"temperature": 0.7, "max_tokens": 256, "response_format": {"type": "json_object"}}
        ),
        workers=WorkersSection(count=16, adaptive=True, min=2, max=40),
        retry=RetrySection(max_attempts=3, backoff_base_s=1.0, backoff_max_s=10.5),
        limits=LimitsSection(
            requests_per_minute=600.0,
            tokens_per_minute=100_000,
            pace=False,
            max_total_tokens=5_000_000,
            max_cost_usd=5.0,
            price_input_per_million_usd=0.15,
            price_output_per_million_usd=0.6,
        ),
        handler=None,
    )
    assert (job.name, job.input, job.output) == ("demo", Path("jobs/prompts.jsonl"), Path("jobs/out/demo"))
    assert type(job.endpoint.timeout_s) is float and type(job.retry.backoff_base_s) is float


def test_the_key_itself_is_never_kept(jobs):
    job = load_job(write_job(jobs, REMOTE_JOB), {"OPENAI_API_KEY": "sk-secret-value"})
    assert "sk-secret-value" not in repr(job)


def test_a_minimal_simulated_job_takes_every_default(jobs):
    text = '[job]\nname = "sim.run-1"\ninput = "prompts.jsonl"\n[endpoint]\nsimulate = true\n'
    job = load_job(write_job(jobs, text), {})
    assert job == Job(
        job_path=Path("jobs/job.toml"),
        job_dir=Path("jobs"),
        job=JobSection(name="sim.run-1", input=Path("jobs/prompts.jsonl"), output=Path("jobs/runs/sim.run-1")),
        endpoint=EndpointSection(
            base_url=None,
            simulate=True,
            api="chat",
            model="sim-1",
            api_key_env=None,
            timeout_s=120.0,
            transport="asyncio",
            simulator=SimulatorSection(latency_ms=200.0, jitter_ms=0.0, fail={}, seed=None, rpm_limit=0),
        ),
        request=RequestSection(params={}),
        workers=WorkersSection(count=64, adaptive=False, min=1, max=256),
        retry=RetrySection(max_attempts=5, backoff_base_s=0.5, backoff_max_s=60.0),
        limits=LimitsSection(
            requests_per_minute=0.0,
            tokens_per_minute=0,
            pace=True,
            max_total_tokens=0,
            max_cost_usd=0.0,
            price_input_per_million_usd=None,
            price_output_per_million_usd=None,
        ),
        handler=None,
    )


def test_a_streamed_job_reads_stream_idle_timeout_and_token_pacing(jobs):
    text = (
        '[job]\nname = "t"\ninput = "prompts.jsonl"\n[endpoint]\nsimulate = true\nstream = true\n'
        "idle_timeout_s = 7\n[endpoint.simulator]\ntoken_interval_ms = 20\n"
    )
    endpoint = load_job(write_job(jobs, text), {}).endpoint
    assert (endpoint.stream, endpoint.idle_timeout_s) == (True, 7.0)
    assert endpoint.simulator.to_config().token_interval_ms == 20.0
    assert describe(load_job(write_job(jobs, text), {}), InputSummary(count=1, first_ids=(0,)))[2:5] == [
        "endpoint  simulator on loopback, latency 200 ms, streamed tokens 20 ms apart",
        "model     sim-1",
        "api       chat (/chat/completions), streamed, idle timeout 7 s",
    ]
    plain = load_job(write_job(jobs, '[job]\nname = "t"\ninput = "prompts.jsonl"\n[endpoint]\nsimulate = true\n'), {})
    assert (plain.endpoint.stream, plain.endpoint.idle_timeout_s) == (False, None)


def test_the_default_worker_ceiling_is_four_times_the_count_up_to_the_maximum(jobs):
    base = '[job]\nname = "t"\ninput = "prompts.jsonl"\n[endpoint]\nsimulate = true\n[workers]\ncount = '
    assert load_job(write_job(jobs, base + "10\n"), {}).workers.max == 40
    assert load_job(write_job(jobs, base + "90000\n"), {}).workers.max == 100_000


def test_simulator_settings_in_a_dotted_header_and_an_inline_table(jobs):
    text = (
        '[job]\nname = "t"\ninput = "prompts.jsonl"\n[endpoint]\nsimulate = true\nmodel = "m"\n'
        '[endpoint.simulator]\nlatency_ms = 50\njitter_ms = 5.5\nfail = { "429" = 0.05, reset = 0.01 }\n'
        "seed = 7\nrpm_limit = 600\n"
    )
    endpoint = load_job(write_job(jobs, text), {}).endpoint
    assert endpoint.model == "m"
    assert endpoint.simulator == SimulatorSection(
        latency_ms=50.0, jitter_ms=5.5, fail={"429": 0.05, "reset": 0.01}, seed=7, rpm_limit=600
    )
    assert endpoint.simulator.to_config() == SimulatorConfig(
        latency_ms=50.0, jitter_ms=5.5, fail={"429": 0.05, "reset": 0.01}, seed=7, rpm_limit=600
    )


def test_a_loopback_endpoint_needs_no_key(jobs):
    text = (
        '[job]\nname = "t"\ninput = "prompts.jsonl"\n[endpoint]\nbase_url = "http://127.0.0.1:8000/v1"\nmodel = "m"\n'
    )
    assert load_job(write_job(jobs, text), {}).endpoint.api_key_env is None
    local = text.replace("127.0.0.1", "localhost")
    assert load_job(write_job(jobs, local), {}).endpoint.base_url == "http://localhost:8000/v1"


def test_a_handler_job_needs_no_endpoint_and_may_set_any_param(jobs):
    (jobs / "h.py").write_text("async def handler(trajectory):\n    return None\n")
    text = (
        '[job]\nname = "t"\ninput = "prompts.jsonl"\n'
        '[request]\nparams = { model = "x" }\n[handler]\npath = "h.py:handler"\n'
    )
    job = load_job(write_job(jobs, text), {})
    assert job.endpoint is None
    assert job.request.params == {"model": "x"}
    assert job.handler == HandlerSection(spec="h.py:handler", file=Path("jobs/h.py"), function="handler")
    assert job.handler.timeout_s == 600.0
    timed = load_job(write_job(jobs, text + "timeout_s = 2.5\n"), {})
    assert timed.handler is not None and timed.handler.timeout_s == 2.5


def test_loading_creates_no_file_or_folder(jobs, tmp_path):
    load_job(write_job(jobs, REMOTE_JOB), {"OPENAI_API_KEY": "k"})
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "jobs",
        "jobs/job.toml",
        "jobs/prompts.jsonl",
    ]


# ----- problems and their formatting -------------------------------------------------------


def test_format_problems_shows_twenty_then_a_count():
    problems = [Problem("a.toml", n, 2, f"problem {n}") for n in range(1, 26)]
    lines = format_problems(problems)
    assert lines[:2] == ["a.toml:1:2: problem 1", "a.toml:2:2: problem 2"]
    assert lines[19] == "a.toml:20:2: problem 20"
    assert lines[20:] == ["… and 5 more problems"]
    assert format_problems(problems, limit=24)[-1] == "… and 1 more problem"
    assert format_problems(problems[:20]) == [f"a.toml:{n}:2: problem {n}" for n in range(1, 21)]


def test_a_job_error_counts_problems_it_did_not_keep():
    error = JobError([Problem("in.jsonl", 1, 1, "bad"), Problem("in.jsonl", None, None, "empty")], total=30)
    assert error.lines() == ["in.jsonl:1:1: bad", "in.jsonl: empty", "… and 28 more problems"]
    assert str(error) == "\n".join(error.lines())


def test_every_problem_of_a_file_is_reported_at_once(jobs):
    text = '[job]\nname = "a b"\ninput = "missing.jsonl"\n[endpoint]\nsimulate = 1\n[workers]\ncount = -1\n'
    with pytest.raises(JobError) as caught:
        load_job(write_job(jobs, text), {})
    assert caught.value.lines() == [
        'jobs/job.toml:2:1: job.name may contain only letters, digits, ".", "_" and "-"',
        "jobs/job.toml:3:1: input file not found: jobs/missing.jsonl",
        "jobs/job.toml:5:1: endpoint.simulate must be true or false, found an integer",
        "jobs/job.toml:7:1: workers.count must be an integer from 1 to 100000, found -1",
    ]


def test_the_job_path_is_shown_as_given(tmp_path):
    job_file = tmp_path / "job.toml"
    job_file.write_text("[job\n")
    with pytest.raises(JobError) as caught:
        load_job(job_file, {})
    assert caught.value.lines() == [f"{job_file}:1:5: Expected ']' at the end of a table declaration"]


# ----- key positions -------------------------------------------------------------------------


def test_positions_of_headers_keys_inline_tables_and_arrays():
    text = (
        "# comment [fake]\n"
        "[job]\n"
        'name = "x" # name = 1\n'
        's = """\n[not.a.table]\nq = 1 \\""" "\n"""\n'
        "[endpoint.simulator]\n"
        "fail = { \"429\" = 0.05, 'reset' = 0.1, deep = { a = 1 } }\n"
        "list = [1, { b = 2 },\n  3]\n"
        "when = 1979-05-27 07:32:00Z\n"
        "[request]\n"
        "params.temperature = 0.7\n"
    )
    positions = KeyPositions(text)
    assert positions.find(("job",)) == (2, 1)
    assert positions.find(("job", "name")) == (3, 1)
    assert positions.find(("not",)) is None
    assert positions.find(("job", "q")) is None
    assert positions.find(("endpoint", "simulator")) == (8, 1)
    assert positions.find(("endpoint",)) == (8, 1)  # implied by the dotted header
    assert positions.find(("endpoint", "simulator", "fail", "429")) == (9, 10)
    assert positions.find(("endpoint", "simulator", "fail", "reset")) == (9, 24)
    assert positions.find(("endpoint", "simulator", "fail", "deep", "a")) == (9, 48)
    assert positions.find(("endpoint", "simulator", "list", 1, "b")) == (10, 14)
    assert positions.find(("endpoint", "simulator", "list", 2)) == (11, 3)
    assert positions.find(("endpoint", "simulator", "when")) == (12, 1)
    assert positions.find(("request", "params", "temperature")) == (14, 8)
    assert positions.nearest(("request", "params", "top_p")) == (14, 1)
    assert positions.nearest(("workers", "count")) is None


def test_positions_in_arrays_of_tables():
    positions = KeyPositions("[[a]]\nx = 1\n[[a]]\ny = 2\n[a.b]\nz = 3\n")
    assert positions.find(("a", 0, "x")) == (2, 1)
    assert positions.find(("a", 1, "y")) == (4, 1)
    assert positions.find(("a", 1, "b", "z")) == (6, 1)


def test_every_key_of_valid_documents_is_found():
    """Generated documents mixing headers, dotted and quoted keys, inline tables, arrays and strings
    that look like TOML: every key path tomllib reads must have a position."""
    rnd = random.Random(7)

    def key() -> str:
        name = rnd.choice(["a", "b-c", "x_1", "with space", 'q"t', "ünï", "1", "dot.ted", "#h", "=e"])
        return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) and rnd.random() < 0.7 else json.dumps(name)

    def value(depth: int) -> str:
        if depth > 2 or rnd.random() < 0.4:
            return rnd.choice(["1", '"s]{#,\\"x="', "'lit#]'", '"""\nml = 1\n[x]\n"""', "1979-05-27 07:32:00Z"])
        if rnd.random() < 0.5:
            return "{ " + ", ".join(f"{key()} = {value(depth + 1)}" for _ in range(rnd.randint(0, 3))) + " }"
        return "[" + ",\n  ".join(value(depth + 1) for _ in range(rnd.randint(0, 3))) + "]"

    def paths(data, prefix=()):
        items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
        for name, item in items:
            yield prefix + (name,)
            yield from paths(item, prefix + (name,))

    checked = 0
    for _ in range(400):
        lines = []
        for _ in range(rnd.randint(1, 6)):
            if rnd.random() < 0.3:
                lines.append("[" + " . ".join(key() for _ in range(rnd.randint(1, 3))) + "]  # [not.this]")
            else:
                lines.append(".".join(key() for _ in range(rnd.randint(1, 2))) + f" = {value(0)} # x = {{")
        text = "\n".join(lines)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            continue
        positions = KeyPositions(text)
        for path in paths(data):
            assert positions.find(path) is not None, (path, text)
            checked += 1
    assert checked > 1000


# ----- description -----------------------------------------------------------------------


def test_describe_a_remote_job(jobs):
    job = load_job(write_job(jobs, REMOTE_JOB), {"OPENAI_API_KEY": "sk-secret-value"})
    assert describe(job, InputSummary(count=12345, first_ids=("a", 7))) == [
        "job       demo (jobs/job.toml)",
        'requests  12,345 from jobs/prompts.jsonl (ids "a", 7, …)',
        "endpoint  https://api.openai.com/v1, key from $OPENAI_API_KEY, timeout 30 s, httpx",
        "model     gpt-4o-mini",
        "api       completions (/completions)",
        'params    {"temperature":0.7,"max_tokens":256,"response_format":{"type":"json_object"}}',
        "workers   16 (adaptive, 2 to 40)",
        "retry     up to 3 attempts, backoff 1 s to 10.5 s",
        "limits    600 requests/min, 100,000 tokens/min, 5,000,000 tokens in all, "
        "$5.00 in all ($0.15 in, $0.6 out per million tokens)",
        "output    jobs/out/demo",
    ]


def test_describe_a_simulated_job_and_a_handler_job(jobs):
    text = (
        '[job]\nname = "t"\ninput = "prompts.jsonl"\n[endpoint]\nsimulate = true\n'
        '[endpoint.simulator]\njitter_ms = 20\nfail = { "429" = 0.05, reset = 0.015 }\nrpm_limit = 1200\nseed = 3\n'
    )
    job = load_job(write_job(jobs, text), {})
    summary = scan_input(job)
    assert describe(job, summary)[1:5] == [
        "requests  1 from jobs/prompts.jsonl (ids 0)",
        "endpoint  simulator on loopback, latency 200 ms ± 20 ms, failures 429 5%, reset 1.5%, "
        "1,200 requests/min, seed 3",
        "model     sim-1",
        "api       chat (/chat/completions)",
    ]
    (jobs / "h.py").write_text("async def handler(trajectory):\n    return None\n")
    job = handler_job(jobs, "h.py:handler")
    assert describe(job, summary) == [
        "job       h (jobs/job.toml)",
        "requests  1 from jobs/prompts.jsonl (ids 0)",
        "handler   h.py:handler, timeout 600 s",
        "endpoint  none (the handler makes its own requests)",
        "workers   64 (up to 256 from the dashboard)",
        "retry     up to 5 attempts, backoff 0.5 s to 60 s",
        "limits    none",
        "output    jobs/runs/h",
    ]


# ----- handlers ------------------------------------------------------------------------------


def handler_job(jobs: Path, spec: str) -> Job:
    return load_job(write_job(jobs, f'[job]\nname = "h"\ninput = "prompts.jsonl"\n[handler]\npath = "{spec}"\n'), {})


async def test_a_handler_is_imported_with_its_folder_on_the_path_only_meanwhile(jobs):
    (jobs / "helper_for_tokenflow_test.py").write_text("ANSWER = 42\n")
    (jobs / "h.py").write_text(
        "import helper_for_tokenflow_test\n\nasync def handler(trajectory):\n"
        "    return helper_for_tokenflow_test.ANSWER\n"
    )
    path_before = list(sys.path)
    try:
        handler = load_handler(handler_job(jobs, "h.py:handler"))
        assert sys.path == path_before
        assert await handler(None) == 42
        assert handler.__module__ in sys.modules and handler.__module__.startswith("tokenflow_handler_")
    finally:
        sys.modules.pop("helper_for_tokenflow_test", None)
    assert not (jobs / "__pycache__").exists()


def test_each_load_gets_its_own_module(jobs):
    (jobs / "h.py").write_text("async def handler(trajectory):\n    return None\n")
    job = handler_job(jobs, "h.py:handler")
    assert load_handler(job).__module__ != load_handler(job).__module__


async def test_an_object_with_an_async_call_is_a_handler(jobs):
    (jobs / "h.py").write_text(
        "class Handler:\n    async def __call__(self, trajectory):\n        return 'called'\n\nhandler = Handler()\n"
    )
    assert await load_handler(handler_job(jobs, "h.py:handler"))(None) == "called"


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("class handler:\n    async def __call__(self, t):\n        pass\n", "a class"),
        (
            "class H:\n    def __call__(self, t):\n        pass\n\nhandler = H()\n",
            "an object of type H whose __call__ is not async",
        ),
        ("handler = 3\n", "a value of type int, not a function"),
    ],
)
def test_what_is_not_a_handler(jobs, source, found):
    (jobs / "h.py").write_text(source)
    with pytest.raises(JobError) as caught:
        load_handler(handler_job(jobs, "h.py:handler"))
    assert caught.value.lines() == [
        f'jobs/job.toml:5:1: "h.py:handler" is {found}; a handler is an async function (async def)'
    ]


def test_an_error_while_importing_keeps_the_path_and_forgets_the_module(jobs):
    (jobs / "h.py").write_text("def broken():\n    raise RuntimeError('no config\\nsecond line')\n\nbroken()\n")
    modules_before = set(sys.modules)
    path_before = list(sys.path)
    with pytest.raises(JobError) as caught:
        load_handler(handler_job(jobs, "h.py:handler"))
    assert caught.value.lines() == ["jobs/h.py:2:5: cannot import the handler: RuntimeError: no config"]
    assert sys.path == path_before
    assert set(sys.modules) == modules_before


def test_a_handler_calling_exit_on_import_does_not_stop_tokenflow(jobs):
    (jobs / "h.py").write_text("import sys\nsys.exit(3)\n")
    with pytest.raises(JobError) as caught:
        load_handler(handler_job(jobs, "h.py:handler"))
    assert caught.value.lines() == ["jobs/h.py:2:1: cannot import the handler: SystemExit: 3"]


def test_cluster_shards_are_read(tmp_path):
    from run_helpers import simulated_job

    from tokenflow_tui.job.reader import load_job

    path = simulated_job(tmp_path, 1)
    assert load_job(path).cluster.shards == 0  # one per node
    path.write_text(path.read_text() + "\n[cluster]\nshards = 3\n")
    assert load_job(path).cluster.shards == 3
