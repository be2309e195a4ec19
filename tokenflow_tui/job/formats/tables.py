"""Parquet, CSV and saved-dataset inputs: each row becomes a request, its other columns the request's metadata.

A row becomes `{"id": <id column>, "prompt" | "messages": <that column>, "metadata": {other columns}}`,
so the built-in handler, the records and a retry treat it as a line of our own JSONL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ..inputs import _messages_problems
from ..model import CSV, Job
from ..problems import Problem, json_type
from .source import Entry
from .table_files import BadRow, TableError, table_columns, table_rows


class TableSource:
    place_word = "row"

    def __init__(self, job: Job) -> None:
        self.path: Path = job.job.input
        self.file = str(self.path)
        self.format = job.job.input_format
        self.builtin = job.handler is None
        self.chat = job.endpoint is None or job.endpoint.api == "chat"
        spec = job.columns
        self.id_column = spec.id_column
        self.prompt_column = spec.prompt_column
        self.messages_column = spec.messages_column
        self.columns: list[str] = []

    def header_problems(self) -> list[Problem]:
        """Read the column names; say which named column is missing, or that no column holds the prompt."""
        try:
            self.columns = table_columns(self.path, self.format)
        except TableError as error:
            return [Problem(self.file, None, None, str(error))]
        found = []
        listed = ", ".join(f'"{c}"' for c in self.columns)
        for key in ("prompt_column", "messages_column", "id_column"):
            column = getattr(self, key)
            if column is not None and column not in self.columns:
                found.append(f'no column "{column}" (input.{key}); the columns are {listed}')
        if self.prompt_column is None and self.messages_column is None:
            if "messages" in self.columns:
                self.messages_column = "messages"
            elif "prompt" in self.columns:
                self.prompt_column = "prompt"
            elif self.builtin:
                found.append(
                    f'no "prompt" or "messages" column: name the one that holds the request with [input] '
                    f"prompt_column or messages_column; the columns are {listed}"
                )
        return [Problem(self.file, None, None, message) for message in found]

    def problem(self, place: int, message: str) -> Problem:
        return Problem(self.file, None, None, f"row {place}, {message}")

    def entries(self) -> Iterator[Entry]:
        rows = table_rows(self.path, self.format)
        index = 0
        try:
            for index, row in enumerate(rows):
                if isinstance(row, BadRow):
                    yield Entry(index, index + 1, None, [Problem(self.file, None, None, f"row {index + 1}: {row}")])
                    continue
                item, messages = self.request(row)
                yield Entry(index, index + 1, item, [self.problem(index + 1, m) for m in messages])
        except TableError as error:
            place = f"row {error.row}: " if error.row is not None else ""
            yield Entry(index, index + 1, None, [Problem(self.file, None, None, f"{place}{error}")])

    def request(self, row: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
        """The request a row makes, or the problems (each starting with its column) that stop it."""
        item: dict[str, Any] = {}
        found = []
        if self.id_column is not None:
            ident = row[self.id_column]
            if type(ident) not in (str, int):
                found.append(
                    f'column "{self.id_column}": an id must be a string or an integer, found {json_type(ident)}'
                )
            item["id"] = ident
        if self.prompt_column is not None:
            prompt = row[self.prompt_column]
            if type(prompt) is not str:
                found.append(f'column "{self.prompt_column}": the prompt must be a string, found {json_type(prompt)}')
            item["prompt"] = prompt
        elif self.messages_column is not None:
            messages, problem = self.messages(row[self.messages_column])
            if problem is not None:
                found.append(f'column "{self.messages_column}": {problem}')
            item["messages"] = messages
        metadata = {k: v for k, v in row.items() if k not in (self.id_column, self.prompt_column, self.messages_column)}
        if metadata:
            item["metadata"] = metadata
        return (None if found else item), found

    def messages(self, value: Any) -> tuple[Any, str | None]:
        """The chat messages of a cell (a JSON string in CSV, Arrow's list of structs elsewhere)."""
        if self.format == CSV or type(value) is str:
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError as error:
                return None, f"the messages must be a JSON list of chat messages: invalid JSON ({error.msg})"
        if type(value) is list:
            # Arrow gives every field of a struct: a message without "name" has name = None
            value = [{k: v for k, v in m.items() if v is not None} if type(m) is dict else m for m in value]
        problems = _messages_problems(value, self.chat) if self.builtin else []
        return value, (problems[0] if problems else None)
