"""The answer checks and the retry rules on their own: which check fails, with which message, and what a rule changes."""

from __future__ import annotations

import pytest

from tokenflow_tui.endpoint.checks import AnswerChecks, parse_json_answer, response_format
from tokenflow_tui.endpoint.rules import ENDPOINT_PARAM, RetryRules
from tokenflow_tui.job.model import DOUBLE, ChecksSection, RetryRule

SCHEMA = {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}}}


def answer(text, finish_reason="stop"):
    return {"text": text, "usage": {"prompt_tokens": 3, "completion_tokens": 4}, "status_code": 200,
            "finish_reason": finish_reason}  # fmt: skip


@pytest.mark.parametrize(
    ("section", "text", "finish_reason", "check", "message"),
    [
        (
            ChecksSection(bad_finish_reasons=("length", "content_filter")),
            '{"a": 1',
            "length",
            "finish_reason",
            'finish_reason: the answer ended with finish reason "length"',
        ),
        (
            ChecksSection(min_chars=10),
            "short",
            "stop",
            "min_chars",
            "min_chars: the answer has 5 characters, fewer than min_chars 10",
        ),
        (
            ChecksSection(max_chars=3),
            "too long",
            "stop",
            "max_chars",
            "max_chars: the answer has 8 characters, more than max_chars 3",
        ),
        (
            ChecksSection(json=True),
            "Sure! {",
            "stop",
            "json",
            "json: the answer is not JSON (Expecting value: line 1 column 1 (char 0)): 'Sure! {'",
        ),
        (
            ChecksSection(schema=SCHEMA),
            '{"answer": 3}',
            "stop",
            "json_schema",
            "json_schema: the answer does not match the schema at $.answer: 3 is not of type 'string'",
        ),
        (
            ChecksSection(schema=SCHEMA),
            "[1]",
            "stop",
            "json_schema",
            "json_schema: the answer does not match the schema at $: [1] is not of type 'object'",
        ),
        (
            ChecksSection(regex=r"^\d+$"),
            "forty-two",
            "stop",
            "regex",
            "regex: the answer does not match '^\\\\d+$': 'forty-two'",
        ),
    ],
)
def test_a_failing_check_is_a_check_failed_error_that_keeps_the_answer(section, text, finish_reason, check, message):
    result = AnswerChecks(section).checked(answer(text, finish_reason))
    assert result == {
        "error": {
            "kind": "check_failed",
            "message": message,
            "status_code": 200,
            "excerpt": None,
            "check": check,
            "finish_reason": finish_reason,
            "answer": text,
        },
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
        "status_code": 200,
        "finish_reason": finish_reason,
    }


def test_an_answer_that_passes_every_check_is_returned_as_it_is():
    section = ChecksSection(
        json=True, schema=SCHEMA, regex="item", min_chars=5, max_chars=100, bad_finish_reasons=("length",)
    )
    good = answer('```json\n{"answer": "item 1"}\n```')
    assert AnswerChecks(section).checked(good) is good


def test_a_cut_answer_is_reported_as_cut_before_it_is_bad_json():
    section = ChecksSection(json=True, bad_finish_reasons=("length",))
    assert AnswerChecks(section).checked(answer('{"a": ', "length"))["error"]["check"] == "finish_reason"


def test_json_is_read_from_the_whole_answer_or_its_fenced_block():
    assert parse_json_answer(' {"a": 1} ') == ({"a": 1}, None)
    assert parse_json_answer('Here:\n```json\n{"a": [1]}\n```\nDone.') == ({"a": [1]}, None)
    assert parse_json_answer("```\n[2]\n```") == ([2], None)
    assert parse_json_answer("```json\n{oops}\n```")[1] == (
        "the answer's fenced block is not JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
        "(char 1)): '{oops}'"
    )


def test_structured_sends_the_schema_as_a_strict_response_format():
    assert response_format(SCHEMA) == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True},
    }


def rule(index, when, **effects):
    key, _, value = when.partition(" = ")
    return RetryRule(index, when, key, value, **effects)


def check_error(check, text="bad", finish_reason="stop", message="why"):
    return {"kind": "check_failed", "message": message, "check": check, "finish_reason": finish_reason, "answer": text}


def test_the_first_matching_rule_changes_the_next_line_and_says_so_in_the_error():
    rules = RetryRules(
        [
            rule(0, "error = timeout", set={"model": "gpt-4o-mini"}, endpoint="backup"),
            rule(1, "finish_reason = length", set={"max_tokens": DOUBLE}, max=300),
            rule(2, "check_failed = finish_reason", set={"temperature": 0}),
        ],
        {"max_tokens": 256},
        chat=True,
    )
    line = {"id": "q1", "prompt": "hi"}
    error = check_error("finish_reason", finish_reason="length")
    changed = rules.apply(line, error)
    assert changed == {"id": "q1", "prompt": "hi", "params": {"max_tokens": 300}}  # doubled, capped at max
    assert error["rule"] == {"index": 1, "when": "finish_reason = length", "change": "max_tokens 256 → 300"}
    assert line == {"id": "q1", "prompt": "hi"}  # the failed attempt's params stay as they were sent

    timeout = {"kind": "timeout", "message": "no complete response within 2 s", "status_code": None}
    moved = rules.apply(changed, timeout)
    assert moved["params"] == {"max_tokens": 300, "model": "gpt-4o-mini", ENDPOINT_PARAM: "backup"}
    assert timeout["rule"]["change"] == "model → gpt-4o-mini; endpoint → backup"
    assert rules.apply(line, {"kind": "http_5xx", "status_code": 503}) is None


def test_append_message_shows_the_model_its_answer_then_the_message_with_the_error():
    rules = RetryRules(
        [rule(0, "check_failed = json", append_message={"role": "user", "content": "Not JSON: {error}. Again."})],
        {},
        chat=True,
    )
    first = rules.apply({"prompt": "hi"}, check_error("json", text="Sure!", message="json: not JSON"))
    assert first == {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Sure!"},
            {"role": "user", "content": "Not JSON: json: not JSON. Again."},
        ]
    }
    second = rules.apply(first, check_error("json", text="Still no", message="json: no"))
    assert [m["content"] for m in second["messages"]] == [
        "hi",
        "Sure!",
        "Not JSON: json: not JSON. Again.",
        "Still no",
        "Not JSON: json: no. Again.",
    ]


def test_append_message_on_the_completions_api_adds_to_the_prompt():
    rules = RetryRules([rule(0, "check_failed = json", append_message={"role": "user", "content": "JSON!"})], {}, False)
    assert rules.apply({"prompt": "Q:"}, check_error("json", text=" nope")) == {"prompt": "Q: nope\n\nJSON!"}


def test_rules_change_the_body_of_an_openai_batch_line():
    rules = RetryRules([rule(0, "status = 503", set={"max_tokens": DOUBLE})], {}, chat=True)
    line = {"custom_id": "a", "url": "/v1/chat/completions", "body": {"max_tokens": 10, "messages": []}}
    assert rules.apply(line, {"kind": "http_5xx", "status_code": 503})["body"] == {"max_tokens": 20, "messages": []}
