"""The job's [checks] on answers: compiled once per run, each failing one an attempt error of kind check_failed.

An answer is checked in CHECK_NAMES order and the first check that fails names the error: a cut answer
(finish reason "length") is reported as cut rather than as bad JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ..engine.error_kinds import CHECK_FAILED
from ..job.model import ChecksSection

# a fenced block, as models like to wrap JSON in: ```json … ``` (the language tag optional)
_FENCED = re.compile(r"```(?:json|JSON)?[ \t]*\r?\n(.*?)\r?\n?[ \t]*```", re.DOTALL)
_EXCERPT = 60
_MESSAGE_CHARS = 400  # a schema's message quotes the value, which may be the whole answer


class AnswerChecks:
    """`checked(result)` is the built-in handler's result of an answer, or a check_failed error in its place."""

    def __init__(self, section: ChecksSection) -> None:
        self._bad_finish = frozenset(section.bad_finish_reasons)
        self._min = section.min_chars
        self._max = section.max_chars
        self._json = section.json or section.schema is not None
        self._json_check = "json" if section.json else "json_schema"
        self._regex = re.compile(section.regex) if section.regex is not None else None
        self._validator: Any = None
        if section.schema is not None:
            from jsonschema import validators  # only jobs with a schema pay for the import

            schema = dict(section.schema)
            self._validator = validators.validator_for(schema)(schema)

    def checked(self, result: dict[str, Any]) -> dict[str, Any]:
        """`result` (an answer: text, usage, finish_reason, …) when it passes, else its check_failed error."""
        text = result["text"]
        finish_reason = result.get("finish_reason")
        failure = self._failure(text, finish_reason) if type(text) is str else self._finish(finish_reason)
        if failure is None:
            return result
        check, why = failure
        error = {
            "kind": CHECK_FAILED,
            "message": f"{check}: {why}"[:_MESSAGE_CHARS],
            "status_code": result.get("status_code"),
            "excerpt": None,
            "check": check,
            "finish_reason": finish_reason,
            # the answer was paid for, and a rule may show it to the model again
            "answer": text,
        }
        failed = {**result, "error": error}
        del failed["text"]
        return failed

    def _finish(self, finish_reason: Any) -> tuple[str, str] | None:
        if finish_reason in self._bad_finish:
            return "finish_reason", f'the answer ended with finish reason "{finish_reason}"'
        return None

    def _failure(self, text: str, finish_reason: Any) -> tuple[str, str] | None:
        failure = self._finish(finish_reason)
        if failure is not None:
            return failure
        if self._min is not None and len(text) < self._min:
            return "min_chars", f"the answer has {len(text):,} characters, fewer than min_chars {self._min:,}"
        if self._max is not None and len(text) > self._max:
            return "max_chars", f"the answer has {len(text):,} characters, more than max_chars {self._max:,}"
        if self._json:
            document, problem = parse_json_answer(text)
            if problem is not None:
                return self._json_check, problem
            if self._validator is not None:
                why = _schema_problem(self._validator, document)
                if why is not None:
                    return "json_schema", why
        if self._regex is not None and self._regex.search(text) is None:
            return "regex", f"the answer does not match {self._regex.pattern!r}: {_excerpt(text)}"
        return None


def parse_json_answer(text: str) -> tuple[Any, str | None]:
    """The JSON document of an answer (the whole text, or its first fenced block), or why it is not JSON."""
    try:
        return json.loads(text), None
    except ValueError as error:
        fenced = _FENCED.search(text)
        if fenced is not None:
            try:
                return json.loads(fenced.group(1)), None
            except ValueError as inner:
                return None, f"the answer's fenced block is not JSON ({inner}): {_excerpt(fenced.group(1))}"
        return None, f"the answer is not JSON ({error}): {_excerpt(text)}"


def _schema_problem(validator: Any, document: Any) -> str | None:
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(document))
    if error is None:
        return None
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
    return f"the answer does not match the schema at ${where}: {error.message}"


def response_format(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The `response_format` of [endpoint] structured = true: the [checks] schema, strictly."""
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": dict(schema), "strict": True}}


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= _EXCERPT else flat[: _EXCERPT - 1] + "…")
