"""The job's [[retry.rules]]: on a failed attempt, the first rule whose `when` holds changes the next attempt.

A rule sets params (a value, or "double" up to `max`), appends a message (for chat: the bad answer as the
assistant's, then the rule's message with {error} filled in, so the model sees what it said), or moves the
request to another endpoint (the reserved param "_endpoint", which the several-endpoints routing reads).
Which rule made which change is written into the failed attempt's error as `rule`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..engine.error_kinds import CHECK_FAILED, CUT_OFF
from ..job.model import DOUBLE, RetryRule

ENDPOINT_PARAM = "_endpoint"  # the reserved param a rule's `endpoint = "NAME"` sets


class RetryRules:
    """`apply(line, error)` is the next attempt's input line after the first rule that matches, or None."""

    def __init__(self, rules: Sequence[RetryRule], base_params: Mapping[str, Any], chat: bool) -> None:
        self._rules = tuple(rules)
        self._base_params = base_params  # [request] params: where "double" starts when a line has none
        self._chat = chat

    def apply(self, line: Mapping[str, Any], error: dict[str, Any]) -> dict[str, Any] | None:
        """The changed line (a copy), with `error["rule"]` saying which rule changed what; None when none matches."""
        for rule in self._rules:
            if matches(rule, error):
                changed, change = self._changed(rule, line, error)
                error["rule"] = {"index": rule.index, "when": rule.when, "change": change}
                return changed
        return None

    def _changed(
        self, rule: RetryRule, line: Mapping[str, Any], error: Mapping[str, Any]
    ) -> tuple[dict[str, Any], str]:
        batch = "body" in line  # an OpenAI Batch line: params and messages are in its body
        changed = dict(line)
        target = dict(line["body"]) if batch else dict(line.get("params") or {})
        changes = []
        for key, value in rule.set.items():
            old = target.get(key, self._base_params.get(key))
            if value == DOUBLE:
                value = _doubled(old, rule.max)
                changes.append(f"{key} {old} → {value}")
            else:
                changes.append(f"{key} → {value}")
            target[key] = value
        if rule.endpoint is not None:
            target[ENDPOINT_PARAM] = rule.endpoint
            changes.append(f"endpoint → {rule.endpoint}")
        if rule.append_message is not None:
            changes.append(self._append(rule.append_message, changed if not batch else target, error))
        if batch:
            changed["body"] = target
        elif target:
            changed["params"] = target
        return changed, "; ".join(changes)

    def _append(self, message: Mapping[str, str], holder: dict[str, Any], error: Mapping[str, Any]) -> str:
        """Add the rule's message (and the bad answer before it) to `holder`'s messages or prompt; what was done."""
        content = message["content"].replace("{error}", str(error.get("message") or error.get("kind")))
        answer = error.get("answer") if error.get("kind") == CHECK_FAILED else None
        if answer is None and error.get("kind") == CUT_OFF:
            answer = error.get("partial")
        if not isinstance(answer, str) or not answer:
            answer = None
        if not self._chat and "messages" not in holder:
            holder["prompt"] = (holder.get("prompt") or "") + (answer or "") + "\n\n" + content
            return (
                "appended the answer and the message to the prompt" if answer else "appended the message to the prompt"
            )
        messages = list(holder.get("messages") or [{"role": "user", "content": holder.pop("prompt", "")}])
        holder.pop("prompt", None)
        if answer is not None:
            messages.append({"role": "assistant", "content": answer})
        messages.append({"role": message["role"], "content": content})
        holder["messages"] = messages
        what = f"a {message['role']} message"
        return f"appended the answer and {what}" if answer is not None else f"appended {what}"


def matches(rule: RetryRule, error: Mapping[str, Any]) -> bool:
    """Whether a failed attempt's error is one `rule` is for."""
    key, value = rule.key, rule.value
    kind = error.get("kind")
    if key == "error":
        return kind == value
    if key == "status":
        return str(error.get("status_code")) == value
    if kind != CHECK_FAILED:
        return False
    if key == "check_failed":
        return error.get("check") == value
    return error.get("check") == "finish_reason" and error.get("finish_reason") == value


def _doubled(old: Any, cap: float | None) -> Any:
    if type(old) not in (int, float):
        raise ValueError(f'"double" needs a number, found {old!r}')  # the reader makes sure of a start value
    value = old * 2
    if cap is not None and value > cap:
        value = cap if type(old) is float else int(cap)
    return value
