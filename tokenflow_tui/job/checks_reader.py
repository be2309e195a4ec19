"""The [checks] table and the [[retry.rules]] of a job file, checked with the job reader's problems.

Split from reader.py, which calls these with itself: they report through `reader.problem(path, …)`
and `reader.value(…)`, so every problem has the FILE:LINE:COL of the key it is about.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.error_kinds import CHECK_FAILED, CHECK_NAMES, ERROR_KINDS
from ..store.errors import os_reason
from .model import (
    DEFAULT_BAD_FINISH_REASONS,
    DOUBLE,
    WHEN_KEYS,
    ChecksSection,
    RetryRule,
)
from .problems import did_you_mean, toml_type

if TYPE_CHECKING:
    from .reader import _Reader

RULE_KEYS = ("when", "set", "append_message", "endpoint")
MESSAGE_KEYS = ("role", "content")
MESSAGE_ROLES = ("user", "system")
# what a rule may not set: the handler writes these itself (a rule may set the model, unlike [request] params)
_UNSETTABLE = {
    "messages": "use append_message to add to the conversation",
    "prompt": "use append_message to add to the prompt",
    "stream": "streaming is set by endpoint.stream",
    "_endpoint": 'use endpoint = "NAME"',
}
# params whose value is a number, so that a word in `set` can only be an operation
_NUMERIC_PARAMS = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "n",
        "seed",
        "presence_penalty",
        "frequency_penalty",
    }
)
_WHEN = re.compile(r"\s*([A-Za-z_]+)\s*=\s*(\S(?:.*\S)?)\s*")
_MAX_SCHEMA_BYTES = 1 << 20


def read_checks(reader: _Reader, table: Mapping[str, Any], job_dir: Path, *, builtin: bool) -> ChecksSection | None:
    """The [checks] table; None when it configures no check."""
    path = ("checks",)
    if not builtin:
        reader.problem(path, "[checks] are for the built-in handler; a [handler] checks its own answers")
    json_on = reader.boolean(table, path + ("json",), False)
    schema_file, schema = _schema(reader, table, job_dir)
    regex = reader.string(table, path + ("regex",), None)
    if isinstance(regex, str):
        try:
            re.compile(regex)
        except re.error as error:
            reader.problem(path + ("regex",), f"checks.regex is not a valid regular expression: {error}")
    low = reader.integer(table, path + ("min_chars",), None, lo=0)
    high = reader.integer(table, path + ("max_chars",), None, lo=1)
    if type(low) is int and type(high) is int and low > high:
        reader.problem(path + ("max_chars",), f"checks.max_chars ({high}) must not be below checks.min_chars ({low})")
    checks = ChecksSection(
        json=json_on,
        json_schema=schema_file,
        schema=schema,
        regex=regex,
        min_chars=low,
        max_chars=high,
        bad_finish_reasons=_finish_reasons(reader, table),
    )
    return checks if checks.names else None


def _schema(reader: _Reader, table: Mapping[str, Any], job_dir: Path) -> tuple[Any, Any]:
    """The schema file and its content, checked as a JSON schema; (None, None) when not given."""
    where = ("checks", "json_schema")
    name = reader.string(table, where, None)
    if not isinstance(name, str):
        return name, name
    file = reader.existing_file(where, job_dir / name, "schema file")
    if not isinstance(file, Path):
        return file, file
    try:
        with open(file, "rb") as stream:
            raw = stream.read(_MAX_SCHEMA_BYTES + 1)
    except OSError as error:
        reader.problem(where, f"cannot read the schema file {file}: {os_reason(error)}")
        return file, None
    if len(raw) > _MAX_SCHEMA_BYTES:
        reader.problem(where, f"the schema file {file} is larger than {_MAX_SCHEMA_BYTES // 1024:,} KB")
        return file, None
    try:
        schema = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        reader.problem(where, f"the schema file {file} is not JSON: {error}")
        return file, None
    if not isinstance(schema, dict):
        reader.problem(where, f"the schema file {file} must hold a JSON object, found {type(schema).__name__}")
        return file, None
    from jsonschema import SchemaError, validators  # only jobs with a schema pay for the import

    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as error:
        at = "/".join(str(part) for part in error.absolute_path)
        reader.problem(
            where, f"the schema file {file} is not a valid JSON schema{' at ' + at if at else ''}: {error.message}"
        )
        return file, None
    return file, schema


def _finish_reasons(reader: _Reader, table: Mapping[str, Any]) -> tuple[str, ...]:
    where = ("checks", "finish_reason")
    value = reader.value(
        table,
        where,
        'true (the reasons "length" and "content_filter" fail an answer), false, or a list of reasons',
        lambda v: type(v) is bool or (isinstance(v, list) and all(isinstance(r, str) and r for r in v)),
    )
    if value is True:
        return DEFAULT_BAD_FINISH_REASONS
    if isinstance(value, list):
        return tuple(value)
    return ()


def read_rules(
    reader: _Reader,
    value: Any,
    checks: ChecksSection | None,
    params: Mapping[str, Any],
    *,
    builtin: bool,
    endpoint_names: Sequence[str] = (),
) -> tuple[RetryRule, ...]:
    """The [[retry.rules]]; each is checked against the job's [checks], [request] params and [[endpoints]] names."""
    where = ("retry", "rules")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(rule, dict) for rule in value):
        reader.problem(where, f"retry.rules must be an array of tables ([[retry.rules]]), found {toml_type(value)}")
        return ()
    if not builtin:
        reader.problem(where, "[[retry.rules]] are for the built-in handler; a [handler] makes its own retries")
    rules = []
    for index, table in enumerate(value):
        rule = _rule(reader, index, table, checks, params, endpoint_names)
        if rule is not None:
            rules.append(rule)
    return tuple(rules)


def _rule(
    reader: _Reader,
    index: int,
    table: dict[str, Any],
    checks: ChecksSection | None,
    params: Mapping[str, Any],
    endpoint_names: Sequence[str],
) -> RetryRule | None:
    path = ("retry", "rules", index)
    name = f"retry.rules[{index}]"
    for key in table:
        if key not in RULE_KEYS:
            reader.problem(path + (key,), f'unknown key "{key}" in {name}' + did_you_mean(key, RULE_KEYS))
    when = reader.string(table, path + ("when",), None)
    if when is None:
        reader.problem(path, f'{name} needs a `when`, such as "finish_reason = length" or "error = timeout"')
        return None
    parsed = _when(reader, path + ("when",), name, when, checks) if isinstance(when, str) else None
    changes, cap = _set(reader, path + ("set",), name, table, params)
    message = _message(reader, path + ("append_message",), name, table)
    endpoint = reader.string(table, path + ("endpoint",), None)
    if endpoint == "" or (isinstance(endpoint, str) and endpoint not in endpoint_names):
        known = ", ".join(f'"{known}"' for known in endpoint_names) or "none: the job has no [[endpoints]]"
        reader.problem(path + ("endpoint",), f"{name}.endpoint must name one of the [[endpoints]] ({known})")
    if not any(key in table for key in ("set", "append_message", "endpoint")):
        reader.problem(path, f"{name} changes nothing: give it set, append_message or endpoint")
    if parsed is None or changes is None or message is False or not (endpoint is None or isinstance(endpoint, str)):
        return None
    key, right = parsed
    return RetryRule(index, when, key, right, changes, cap, message, endpoint or None)


def _when(
    reader: _Reader, path: tuple[str | int, ...], name: str, when: str, checks: ChecksSection | None
) -> tuple[str, str] | None:
    """`when` as (key, value), or None after saying what is wrong with it."""
    match = _WHEN.fullmatch(when)
    if match is None:
        reader.problem(
            path, f'{name}.when must look like "KEY = VALUE" (KEY one of {", ".join(WHEN_KEYS)}), found "{when}"'
        )
        return None
    key, value = match.group(1), match.group(2).strip("\"'")
    configured = checks.names if checks is not None else ()
    if key not in WHEN_KEYS:
        reader.problem(
            path, f'{name}.when: unknown "{key}"; one of {", ".join(WHEN_KEYS)}' + did_you_mean(key, WHEN_KEYS)
        )
        return None
    if key == "check_failed":
        if value not in CHECK_NAMES:
            reader.problem(
                path,
                f'{name}.when: unknown check "{value}"; one of {", ".join(CHECK_NAMES)}'
                + did_you_mean(value, CHECK_NAMES),
            )
            return None
        if value not in configured:
            reader.problem(path, f"{name}.when never holds: [checks] has no {value} check")
            return None
    elif key == "finish_reason":
        bad = checks.bad_finish_reasons if checks is not None else ()
        if value not in bad:
            reader.problem(
                path,
                f'{name}.when never holds: the finish reason "{value}" fails no answer; '
                f"add it to [checks] finish_reason",
            )
            return None
    elif key == "error":
        kinds = ERROR_KINDS
        if value not in kinds:
            reader.problem(
                path,
                f'{name}.when: unknown error kind "{value}"; one of {", ".join(kinds)}' + did_you_mean(value, kinds),
            )
            return None
        if value == CHECK_FAILED and not configured:
            reader.problem(path, f"{name}.when never holds: the job has no [checks]")
            return None
    elif not (value.isdigit() and 100 <= int(value) <= 599):
        reader.problem(path, f'{name}.when: the status must be an HTTP status from 100 to 599, found "{value}"')
        return None
    return key, value


def _set(
    reader: _Reader, path: tuple[str | int, ...], name: str, table: dict[str, Any], params: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, float | None]:
    """The params a rule sets (DOUBLE kept as the operation) and the cap of the doubled ones."""
    changes = table.get("set")
    if changes is None:
        return {}, None
    if not isinstance(changes, dict):
        reader.problem(path, f"{name}.set must be a table of param = value, found {toml_type(changes)}")
        return None, None
    valid = True
    cap = changes.get("max")
    values = {key: value for key, value in changes.items() if key != "max"}
    doubled = False
    for key, value in values.items():
        where = path + (key,)
        if key in _UNSETTABLE:
            reader.problem(where, f'{name}.set must not set "{key}": {_UNSETTABLE[key]}')
            valid = False
        elif value == DOUBLE:
            start = params.get(key)
            if type(start) not in (int, float):
                reader.problem(
                    where, f'{name}.set: "double" needs a number to start from: give {key} in [request] params'
                )
                valid = False
            doubled = True
        elif isinstance(value, str) and (key in _NUMERIC_PARAMS or type(params.get(key)) in (int, float)):
            reader.problem(
                where,
                f'{name}.set.{key}: unknown operation "{value}"; the one operation is "double" (or give a number)',
            )
            valid = False
    if cap is not None:
        if type(cap) not in (int, float) or cap <= 0:
            reader.problem(path + ("max",), f"{name}.set.max must be a number > 0, found {toml_type(cap)}")
            valid = False
        elif not doubled:
            reader.problem(path + ("max",), f'{name}.set.max caps the "double" values, and this rule doubles none')
            valid = False
    return (values if valid else None), (cap if valid else None)


def _message(reader: _Reader, path: tuple[str | int, ...], name: str, table: dict[str, Any]) -> Any:
    """The message a rule appends, None when it appends none, False after a problem."""
    message = table.get("append_message")
    if message is None:
        return None
    if not isinstance(message, dict):
        reader.problem(
            path,
            f'{name}.append_message must be a table {{ role = "user", content = "…" }}, found {toml_type(message)}',
        )
        return False
    valid = True
    for key in message:
        if key not in MESSAGE_KEYS:
            reader.problem(
                path + (key,), f'unknown key "{key}" in {name}.append_message' + did_you_mean(key, MESSAGE_KEYS)
            )
            valid = False
    role = reader.string(message, path + ("role",), "user", MESSAGE_ROLES)
    content = reader.string(message, path + ("content",), None)
    if content is None:
        reader.problem(path, f"{name}.append_message needs a content (where {{error}} says what was wrong)")
        valid = False
    elif not isinstance(content, str) or not content.strip():
        valid = False
        if isinstance(content, str):
            reader.problem(path + ("content",), f"{name}.append_message.content must not be empty")
    if not isinstance(role, str):
        valid = False
    return {"role": role, "content": content} if valid else False
