"""OpenAI Batch JSONL in (`{"custom_id", "method", "url", "body"}` lines), as vllm run-batch and the Batch API read it.

A line becomes the request `{"id": custom_id, "url": url, "body": body}`: the built-in handler sends
`body` as it is, filling only the keys it lacks from the job, to the API that `url` names.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..inputs import _messages_problems, _numbered_lines, _parse
from ..model import Job
from ..problems import Problem, did_you_mean, json_type
from .source import Entry

BATCH_URLS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
# what each API's body must hold for the built-in handler
_BODY_NEEDS = {"/v1/chat/completions": "messages", "/v1/completions": "prompt", "/v1/embeddings": "input"}


class BatchSource:
    place_word = "line"

    def __init__(self, job: Job) -> None:
        self.path: Path = job.job.input
        self.file = str(self.path)
        self.builtin = job.handler is None
        self.job_model = job.endpoint.model if job.endpoint is not None else None

    def header_problems(self) -> list[Problem]:
        return []

    def problem(self, place: int, message: str) -> Problem:
        return Problem(self.file, place, 1, message)

    def entries(self) -> Iterator[Entry]:
        for index, line, raw in _numbered_lines(self.path):
            item, parse_problem = _parse(raw)
            if parse_problem is not None:
                yield Entry(index, line, None, [Problem(self.file, line, *parse_problem)])
                continue
            messages = self.line_problems(item)
            request = None if messages else {"id": item["custom_id"], "url": item["url"], "body": item["body"]}
            yield Entry(index, line, request, [self.problem(line, message) for message in messages])

    def line_problems(self, item: Any) -> list[str]:
        if type(item) is not dict:
            return [f"expected a JSON object, found {json_type(item)}"]
        found = []
        if "custom_id" not in item:
            found.append('a line of an OpenAI Batch file needs "custom_id"')
        elif type(item["custom_id"]) is not str:
            found.append(f'"custom_id" must be a string, found {json_type(item["custom_id"])}')
        if item.get("method", "POST") != "POST":
            found.append(f'"method" must be "POST", found {_shown(item["method"])}')
        url = item.get("url")
        if url not in BATCH_URLS:
            allowed = ", ".join(f'"{u}"' for u in BATCH_URLS)
            hint = did_you_mean(url, BATCH_URLS) if type(url) is str else ""
            found.append(f'"url" must be one of {allowed}, found {_shown(url)}{hint}')
        body = item.get("body")
        if type(body) is not dict:
            found.append(f'"body" must be an object (the request as sent), found {json_type(body)}')
        elif self.builtin:
            found.extend(self.body_problems(body, url))
        return found

    def body_problems(self, body: dict[str, Any], url: Any) -> list[str]:
        found = []
        if "model" not in body and not self.job_model:
            found.append('"body" has no "model" and the job sets no [endpoint] model')
        needs = _BODY_NEEDS.get(url)
        if needs is not None and needs not in body:
            found.append(f'"body" of a {url} request needs "{needs}"')
        elif needs == "messages":
            found.extend(f'"body".{message}' for message in _messages_problems(body["messages"], True)[:1])
        return found


def _shown(value: Any) -> str:
    return f'"{value}"' if type(value) is str else json_type(value)
