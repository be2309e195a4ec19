"""[[endpoints]] in the job file: what is read, what `validate` prints, and the exact problems of wrong ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenflow_tui.job.describe import describe
from tokenflow_tui.job.fingerprint import fingerprint
from tokenflow_tui.job.inputs import InputSummary, iter_input, scan_input
from tokenflow_tui.job.model import NamedEndpoint
from tokenflow_tui.job.problems import JobError
from tokenflow_tui.job.reader import load_job

HEAD = '[job]\nname = "t"\ninput = "prompts.jsonl"\n'
TWO = (
    HEAD + '\n[[endpoints]]\nname = "main"\nbase_url = "https://api.example.com/v1"\nmodel = "m"\n'
    'api_key_env = "MAIN_KEY"\nweight = 3\nrequests_per_minute = 600\ntokens_per_minute = 90000\n'
    '\n[[endpoints]]\nname = "spare"\nsimulate = true\n[endpoints.simulator]\nlatency_ms = 5\nrpm_limit = 100\n'
)
ENV = {"MAIN_KEY": "sk-main"}


@pytest.fixture
def jobs(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "prompts.jsonl").write_text('{"prompt": "hi"}\n')
    return folder


def problems(jobs: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    (jobs / "job.toml").write_text(text)
    with pytest.raises(JobError) as caught:
        load_job(Path("jobs/job.toml"), ENV if env is None else env)
    return [str(problem) for problem in caught.value.problems]


def test_two_endpoints_are_read_in_order_with_their_weights_and_limits(jobs):
    (jobs / "job.toml").write_text(TWO)
    job = load_job(Path("jobs/job.toml"), ENV)
    main, spare = job.endpoints
    assert (main.name, main.weight, main.requests_per_minute, main.tokens_per_minute) == ("main", 3.0, 600.0, 90000)
    assert (main.endpoint.base_url, main.endpoint.model, main.endpoint.api_key_env) == (
        "https://api.example.com/v1",
        "m",
        "MAIN_KEY",
    )
    assert spare == NamedEndpoint("spare", spare.endpoint, 1.0, 0.0, 0)
    assert spare.endpoint.simulate and spare.endpoint.simulator is not None
    assert spare.endpoint.simulator.rpm_limit == 100 and spare.endpoint.model == "sim-1"
    assert job.endpoint == main.endpoint  # the first one's api and stream are every one's
    assert job.limits.requests_per_minute == 0.0  # the job-wide limits are apart


def test_validate_prints_one_line_per_endpoint(jobs):
    (jobs / "job.toml").write_text(TWO)
    job = load_job(Path("jobs/job.toml"), ENV)
    assert describe(job, InputSummary(1, (0,)))[2:5] == [
        "endpoint  main: https://api.example.com/v1, key from $MAIN_KEY, timeout 120 s, asyncio, model m, "
        "weight 3 (75%), limits 600 requests/min, 90,000 tokens/min",
        "endpoint  spare: simulator on loopback, latency 5 ms, 100 requests/min, model sim-1, weight 1 (25%), "
        "limits none",
        "api       chat (/chat/completions)",
    ]


def test_weights_names_and_limits_are_traffic_but_addresses_are_not(jobs):
    (jobs / "job.toml").write_text(TWO)
    before = fingerprint(load_job(Path("jobs/job.toml"), ENV))
    (jobs / "job.toml").write_text(TWO.replace("weight = 3", "weight = 1").replace('"spare"', '"backup"'))
    assert fingerprint(load_job(Path("jobs/job.toml"), ENV)) == before
    (jobs / "job.toml").write_text(TWO.replace("api.example.com", "api.other.com"))
    after = fingerprint(load_job(Path("jobs/job.toml"), ENV))
    assert [key for key in before if before[key] != after[key]] == ["base_url"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            TWO.replace('name = "spare"', 'name = "main"'),
            ['jobs/job.toml:15:1: two endpoints are named "main" (the first at line 6)'],
        ),
        (
            TWO.replace("weight = 3", "weight = 0"),
            ["jobs/job.toml:10:1: endpoints[0].weight must be a number > 0, found 0"],
        ),
        (
            TWO.replace("weight = 3", "weight = -2.5"),
            ["jobs/job.toml:10:1: endpoints[0].weight must be a number > 0, found -2.5"],
        ),
        (
            TWO.replace("weight = 3", "wieght = 3"),
            ['jobs/job.toml:10:1: unknown key "wieght" in endpoints[0]; did you mean "weight"?'],
        ),
        (
            TWO.replace('name = "spare"\n', ""),
            ['jobs/job.toml:14:1: endpoints[1].name is required: a name such as "primary"'],
        ),
        (
            TWO.replace('name = "spare"', 'name = "spare one"'),
            ['jobs/job.toml:15:1: endpoints[1].name may contain only letters, digits, ".", "_" and "-"'],
        ),
        (
            TWO.replace("simulate = true\n", "simulate = true\nstream = true\n"),
            [
                "jobs/job.toml:17:1: endpoints[1].stream must be the same in every [[endpoints]] "
                "(the first one has no value, this one true)"
            ],
        ),
        (
            TWO.replace('base_url = "https://api.example.com/v1"', 'base_url = "ftp://x"'),
            [
                "jobs/job.toml:7:1: endpoints[0].base_url must be an http:// or https:// URL, "
                'such as "https://api.openai.com/v1"'
            ],
        ),
        (
            TWO,
            ["jobs/job.toml:9:1: the environment variable MAIN_KEY is not set (endpoints[0].api_key_env)"],
        ),
        (
            TWO + "\n[endpoint]\nsimulate = true\n",
            ["jobs/job.toml:5:1: give one [endpoint] or several [[endpoints]], not both"],
        ),
        (
            "endpoints = []\n" + HEAD,
            ["jobs/job.toml:1:1: endpoints is empty: write one [[endpoints]] table per endpoint"],
        ),
        (
            "endpoints = 'a'\n" + HEAD,
            ["jobs/job.toml:1:1: endpoints must be tables written [[endpoints]], found a string"],
        ),
        (
            TWO + '\n[handler]\npath = "h.py:handler"\n',
            [
                "jobs/job.toml:5:1: [[endpoints]] are for the built-in handler; a [handler] makes its own "
                "requests (give it one [endpoint])",
                "jobs/job.toml:22:1: handler file not found: jobs/h.py",
            ],
        ),
    ],
    ids=[
        "duplicate name",
        "weight 0",
        "negative weight",
        "unknown key",
        "no name",
        "bad name",
        "stream differs",
        "bad url",
        "key not set",
        "both tables",
        "empty array",
        "not tables",
        "with a handler",
    ],
)
def test_wrong_endpoints_are_told_with_their_place(jobs, text, expected):
    env = {} if "MAIN_KEY is not set" in expected[0] else None
    assert problems(jobs, text, env) == expected


def test_the_sample_job_with_three_endpoints_is_valid():
    job = load_job(Path(__file__).parents[2] / "sample_jobs" / "endpoints.toml", {})
    assert [(e.name, e.weight, e.requests_per_minute) for e in job.endpoints] == [
        ("big", 3.0, 0.0),
        ("flaky", 1.0, 1200.0),
        ("spare", 1.0, 0.0),
    ]
    assert all(e.endpoint.simulator is not None for e in job.endpoints)


def test_an_endpoint_a_line_names_must_be_one_of_the_jobs(jobs):
    (jobs / "prompts.jsonl").write_text(
        '{"prompt": "a", "_endpoint": "spare"}\n'
        '{"prompt": "b", "params": {"_endpoint": "main"}}\n'
        '{"prompt": "c", "_endpoint": "spar"}\n'
        '{"prompt": "d", "params": {"_endpoint": "other"}}\n'
    )
    (jobs / "job.toml").write_text(TWO)
    job = load_job(Path("jobs/job.toml"), ENV)
    with pytest.raises(JobError) as caught:
        scan_input(job)
    names = '(the job\'s [[endpoints]]: "main", "spare")'
    assert [str(problem) for problem in caught.value.problems] == [
        f'jobs/prompts.jsonl:3:1: "_endpoint" names no endpoint: "spar" {names}; did you mean "spare"?',
        f'jobs/prompts.jsonl:4:1: "_endpoint" names no endpoint: "other" {names}',
    ]
    # reading the input for a run stops at the first such line, with the same sentence
    with pytest.raises(JobError) as stopped:
        list(iter_input(job))
    assert [str(problem) for problem in stopped.value.problems] == [str(caught.value.problems[0])]
