"""Wrong [checks] and [[retry.rules]], each with the exact lines a user sees (FILE:LINE:COL, issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenflow_tui.job.model import DOUBLE
from tokenflow_tui.job.problems import JobError
from tokenflow_tui.job.reader import load_job

SIM = '[job]\nname = "t"\ninput = "prompts.jsonl"\n\n[endpoint]\nsimulate = true\n'
FILES = {
    "prompts.jsonl": '{"prompt": "hi"}\n',
    "bad.json": '{"type": ',
    "invalid.json": '{"type": "objekt"}',
    "schema.json": '{"type": "object", "required": ["answer"]}',
    "h.py": "async def handler(trajectory):\n    pass\n",
}

CASES = [
    (
        "unknown check",
        SIM + "\n[checks]\njsn = true\n",
        ['jobs/job.toml:9:1: unknown key "jsn" in [checks]; did you mean "json"?'],
    ),
    (
        "bad regex",
        SIM + '\n[checks]\nregex = "a(b"\n',
        [
            "jobs/job.toml:9:1: checks.regex is not a valid regular expression: missing ), unterminated subpattern at position 1"
        ],
    ),
    (
        "min above max",
        SIM + "\n[checks]\nmin_chars = 10\nmax_chars = 5\n",
        ["jobs/job.toml:10:1: checks.max_chars (5) must not be below checks.min_chars (10)"],
    ),
    (
        "finish_reason wrong type",
        SIM + '\n[checks]\nfinish_reason = "length"\n',
        [
            'jobs/job.toml:9:1: checks.finish_reason must be true (the reasons "length" and "content_filter" fail an answer), false, or a list of reasons, found a string'
        ],
    ),
    (
        "schema missing",
        SIM + '\n[checks]\njson_schema = "nope.json"\n',
        ["jobs/job.toml:9:1: schema file not found: jobs/nope.json"],
    ),
    (
        "schema not json",
        SIM + '\n[checks]\njson_schema = "bad.json"\n',
        ["jobs/job.toml:9:1: the schema file jobs/bad.json is not JSON: Expecting value: line 1 column 10 (char 9)"],
    ),
    (
        "schema invalid",
        SIM + '\n[checks]\njson_schema = "invalid.json"\n',
        [
            "jobs/job.toml:9:1: the schema file jobs/invalid.json is not a valid JSON schema at type: 'objekt' is not valid under any of the given schemas"
        ],
    ),
    (
        "structured without schema",
        SIM + "structured = true\n",
        [
            "jobs/job.toml:7:1: endpoint.structured sends [checks] json_schema as the response_format: give checks.json_schema"
        ],
    ),
    (
        "bad when",
        SIM + '\n[checks]\njson = true\n\n[[retry.rules]]\nwhen = "json is bad"\nset = { temperature = 0 }\n',
        [
            'jobs/job.toml:12:1: retry.rules[0].when must look like "KEY = VALUE" (KEY one of finish_reason, check_failed, error, status), found "json is bad"'
        ],
    ),
    (
        "unknown when key",
        SIM + '\n[checks]\njson = true\n\n[[retry.rules]]\nwhen = "eror = timeout"\nset = { temperature = 0 }\n',
        [
            'jobs/job.toml:12:1: retry.rules[0].when: unknown "eror"; one of finish_reason, check_failed, error, status; did you mean "error"?'
        ],
    ),
    (
        "unknown check in when",
        SIM
        + '\n[checks]\njson = true\n\n[[retry.rules]]\nwhen = "check_failed = jsonschema"\nset = { temperature = 0 }\n',
        [
            'jobs/job.toml:12:1: retry.rules[0].when: unknown check "jsonschema"; one of finish_reason, min_chars, max_chars, json, json_schema, regex; did you mean "json_schema"?'
        ],
    ),
    (
        "check not configured",
        SIM + '\n[checks]\njson = true\n\n[[retry.rules]]\nwhen = "check_failed = regex"\nset = { temperature = 0 }\n',
        ["jobs/job.toml:12:1: retry.rules[0].when never holds: [checks] has no regex check"],
    ),
    (
        "finish reason not failing",
        SIM + '\n[[retry.rules]]\nwhen = "finish_reason = length"\nset = { max_tokens = 10 }\n',
        [
            'jobs/job.toml:9:1: retry.rules[0].when never holds: the finish reason "length" fails no answer; add it to [checks] finish_reason'
        ],
    ),
    (
        "unknown error kind",
        SIM + '\n[[retry.rules]]\nwhen = "error = timeot"\nset = { temperature = 0 }\n',
        [
            'jobs/job.toml:9:1: retry.rules[0].when: unknown error kind "timeot"; one of http_429, http_5xx, http_4xx, timeout, connection, bad_response, handler_exception, cut_off, check_failed; did you mean "timeout"?'
        ],
    ),
    (
        "bad status",
        SIM + '\n[[retry.rules]]\nwhen = "status = 42"\nset = { temperature = 0 }\n',
        ['jobs/job.toml:9:1: retry.rules[0].when: the status must be an HTTP status from 100 to 599, found "42"'],
    ),
    (
        "unknown op",
        SIM
        + '\n[request]\nparams = { max_tokens = 100 }\n\n[[retry.rules]]\nwhen = "error = timeout"\nset = { max_tokens = "triple" }\n',
        [
            'jobs/job.toml:13:9: retry.rules[0].set.max_tokens: unknown operation "triple"; the one operation is "double" (or give a number)'
        ],
    ),
    (
        "double without start",
        SIM + '\n[[retry.rules]]\nwhen = "error = timeout"\nset = { max_tokens = "double", max = 10 }\n',
        [
            'jobs/job.toml:10:9: retry.rules[0].set: "double" needs a number to start from: give max_tokens in [request] params'
        ],
    ),
    (
        "max without double",
        SIM + '\n[[retry.rules]]\nwhen = "error = timeout"\nset = { temperature = 0, max = 10 }\n',
        ['jobs/job.toml:10:26: retry.rules[0].set.max caps the "double" values, and this rule doubles none'],
    ),
    (
        "set messages",
        SIM + '\n[[retry.rules]]\nwhen = "error = timeout"\nset = { messages = [] }\n',
        [
            'jobs/job.toml:10:9: retry.rules[0].set must not set "messages": use append_message to add to the conversation'
        ],
    ),
    (
        "rule changes nothing",
        SIM + '\n[[retry.rules]]\nwhen = "error = timeout"\n',
        ["jobs/job.toml:8:1: retry.rules[0] changes nothing: give it set, append_message or endpoint"],
    ),
    (
        "rule without when",
        SIM + "\n[[retry.rules]]\nset = { temperature = 0 }\n",
        ['jobs/job.toml:8:1: retry.rules[0] needs a `when`, such as "finish_reason = length" or "error = timeout"'],
    ),
    (
        "unknown rule key",
        SIM + '\n[[retry.rules]]\nwhen = "error = timeout"\nsett = { temperature = 0 }\n',
        [
            "jobs/job.toml:8:1: retry.rules[0] changes nothing: give it set, append_message or endpoint",
            'jobs/job.toml:10:1: unknown key "sett" in retry.rules[0]; did you mean "set"?',
        ],
    ),
    (
        "bad role",
        SIM + '\n[[retry.rules]]\nwhen = "error = timeout"\nappend_message = { role = "assistent", content = "x" }\n',
        ['jobs/job.toml:10:20: retry.rules[0].append_message.role must be "user" or "system", found "assistent"'],
    ),
    (
        "message without content",
        SIM + '\n[[retry.rules]]\nwhen = "error = timeout"\nappend_message = { role = "user" }\n',
        ["jobs/job.toml:10:1: retry.rules[0].append_message needs a content (where {error} says what was wrong)"],
    ),
    (
        "second rule bad",
        SIM
        + '\n[[retry.rules]]\nwhen = "error = timeout"\nset = { temperature = 0 }\n\n[[retry.rules]]\nwhen = "error = nope"\nset = { temperature = 0 }\n',
        [
            'jobs/job.toml:13:1: retry.rules[1].when: unknown error kind "nope"; one of http_429, http_5xx, http_4xx, timeout, connection, bad_response, handler_exception, cut_off, check_failed'
        ],
    ),
    (
        "checks with handler",
        '[job]\nname = "t"\ninput = "prompts.jsonl"\n\n[handler]\npath = "h.py:handler"\n\n[checks]\njson = true\n',
        ["jobs/job.toml:8:1: [checks] are for the built-in handler; a [handler] checks its own answers"],
    ),
]


def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str):
    jobs = tmp_path / "jobs"
    jobs.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    for name, content in FILES.items():
        (jobs / name).write_text(content)
    (jobs / "job.toml").write_text(text)
    return load_job(Path("jobs/job.toml"), {})


@pytest.mark.parametrize(("name", "job", "expected"), CASES, ids=[case[0] for case in CASES])
def test_a_wrong_check_or_rule_is_one_located_sentence(tmp_path, monkeypatch, name, job, expected):
    with pytest.raises(JobError) as raised:
        load(tmp_path, monkeypatch, job)
    assert raised.value.lines() == expected


TWO_ENDPOINTS = (
    '[job]\nname = "t"\ninput = "prompts.jsonl"\n\n'
    '[[endpoints]]\nname = "main"\nsimulate = true\nstructured = true\n\n'
    '[[endpoints]]\nname = "backup"\nsimulate = true\nstructured = true\n'
)


def test_a_rule_moves_requests_only_to_an_endpoint_the_job_has(tmp_path, monkeypatch):
    rule = '\n[[retry.rules]]\nwhen = "error = timeout"\nendpoint = "spare"\n'
    with pytest.raises(JobError) as raised:
        load(tmp_path, monkeypatch, TWO_ENDPOINTS.replace("structured = true\n", "") + rule)
    assert raised.value.lines() == [
        'jobs/job.toml:15:1: retry.rules[0].endpoint must name one of the [[endpoints]] ("main", "backup")'
    ]
    with pytest.raises(JobError) as raised:
        load(tmp_path / "one", monkeypatch, SIM + rule)
    assert raised.value.lines() == [
        "jobs/job.toml:10:1: retry.rules[0].endpoint must name one of the [[endpoints]] "
        "(none: the job has no [[endpoints]])"
    ]


def test_the_issue_rules_read_into_typed_rules(tmp_path, monkeypatch):
    job = load(
        tmp_path,
        monkeypatch,
        TWO_ENDPOINTS + '\n[request]\nparams = { max_tokens = 256 }\n\n[checks]\njson_schema = "schema.json"\n'
        'finish_reason = true\nregex = "answer"\nmin_chars = 2\n\n'
        '[[retry.rules]]\nwhen = "finish_reason = length"\nset = { max_tokens = "double", max = 4096 }\n\n'
        '[[retry.rules]]\nwhen = "check_failed = json_schema"\n'
        'append_message = { role = "user", content = "Bad: {error}." }\n\n'
        '[[retry.rules]]\nwhen = "error = timeout"\nset = { model = "gpt-4o-mini" }\nendpoint = "backup"\n',
    )
    assert job.endpoint.structured is True
    assert job.checks.names == ("finish_reason", "min_chars", "json_schema", "regex")
    assert job.checks.bad_finish_reasons == ("length", "content_filter")
    assert job.checks.schema == {"type": "object", "required": ["answer"]}
    first, second, third = job.retry.rules
    assert (first.index, first.key, first.value, dict(first.set), first.max) == (
        0,
        "finish_reason",
        "length",
        {"max_tokens": DOUBLE},
        4096,
    )
    assert (second.key, second.value, dict(second.append_message)) == (
        "check_failed",
        "json_schema",
        {"role": "user", "content": "Bad: {error}."},
    )
    assert (third.when, dict(third.set), third.endpoint) == ("error = timeout", {"model": "gpt-4o-mini"}, "backup")


def test_a_job_without_checks_or_rules_has_none(tmp_path, monkeypatch):
    job = load(tmp_path, monkeypatch, SIM + "\n[checks]\njson = false\n")
    assert job.checks is None
    assert job.retry.rules == ()
