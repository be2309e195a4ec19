"""Reading the inputs of formats other than our JSONL: OpenAI Batch JSONL, Parquet, CSV, hf.

Each format gives its requests as entries shaped like our JSONL lines; this module checks them all
(ids unique as in job/inputs: 64-bit hashes first, suspects compared exactly in a second pass) and
hands them to the run in order.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from typing import Any

import orjson

from ...store.errors import MissingExtra, os_reason
from ..inputs import FIRST_IDS, KEPT_PROBLEMS, InputItem, InputSummary, _HashSet64
from ..model import OPENAI_BATCH, TABLE_FORMATS, Job
from ..problems import JobError, Problem, sort_problems
from .batch import BatchSource
from .source import Source
from .tables import TableSource


def scan_formatted(job: Job) -> InputSummary:
    """Check every request of the input; raises JobError with the problems (the first ones kept, all counted)."""
    source = _source(job)
    problems: list[Problem] = []
    total = count = 0
    first_ids: list[Any] = []
    hashes, suspects = _HashSet64(), set[Any]()
    try:
        problems.extend(source.header_problems())
        total = len(problems)
        entries = () if problems else source.entries()
        for entry in entries:
            count += 1
            total += len(entry.problems)
            problems.extend(entry.problems[: KEPT_PROBLEMS - len(problems)])
            if entry.item is None:
                continue
            ident = entry.item.get("id", entry.input_index)
            if len(first_ids) < FIRST_IDS:
                first_ids.append(ident)
            if "id" in entry.item and not hashes.add(hash(ident)):  # an index id is unique by itself
                suspects.add(ident)
        if count == 0 and total == 0:
            total += 1
            problems.append(Problem(source.file, None, None, "the input has no requests"))
        if suspects:
            duplicates = _duplicates(source, suspects)
            total += len(duplicates)
            problems.extend(duplicates[:KEPT_PROBLEMS])
    except OSError as error:
        raise JobError([Problem(source.file, None, None, f"cannot read the input: {os_reason(error)}")]) from None
    except MissingExtra as error:
        raise JobError([Problem(source.file, None, None, str(error))]) from None
    if total:
        raise JobError(sort_problems(problems)[:KEPT_PROBLEMS], total)
    return InputSummary(count=count, first_ids=tuple(first_ids))


def _duplicates(source: Source, suspects: set[Any]) -> list[Problem]:
    first: dict[Any, int] = {}
    found = []
    for entry in source.entries():
        if entry.item is None or "id" not in entry.item or entry.item["id"] not in suspects:
            continue
        ident = entry.item["id"]
        place = first.setdefault(ident, entry.place)
        if place != entry.place:
            shown = orjson.dumps(ident).decode()
            found.append(
                source.problem(entry.place, f"duplicate id {shown}: first used on {source.place_word} {place}")
            )
    return found


def iter_formatted(
    job: Job, skip: Callable[[int], bool] | None = None, only: Collection[int] | None = None
) -> Iterator[InputItem]:
    """The requests in input order (see job/inputs.iter_input); JobError at one that is not valid."""
    source = _source(job)
    try:
        problems = source.header_problems()
        if problems:
            raise JobError(problems)
        wanted = set(only) if only is not None else None
        last = max(wanted, default=-1) if wanted is not None else -1
        for entry in source.entries():
            index = entry.input_index
            if wanted is not None and (index > last or index not in wanted):
                if index > last:
                    return
                continue
            if skip is not None and skip(index):
                continue
            if entry.item is None:
                raise JobError(entry.problems)
            yield InputItem(index, entry.item.get("id", index), entry.item)
    except MissingExtra as error:
        raise JobError([Problem(source.file, None, None, str(error))]) from None


def input_description(job: Job) -> dict[str, Any]:
    """What export needs to write results beside the input's columns, or as an input again (kept in state.toml)."""
    description: dict[str, Any] = {"format": job.job.input_format}
    if job.endpoint is not None:
        description["api"] = job.endpoint.api
        if job.endpoint.model:
            description["model"] = job.endpoint.model
    if job.job.input_format in TABLE_FORMATS:
        source = TableSource(job)
        source.header_problems()  # resolves the default prompt or messages column
        description["columns"] = source.columns
        for key in ("id_column", "prompt_column", "messages_column"):
            if getattr(source, key) is not None:
                description[key] = getattr(source, key)
    return description


def _source(job: Job) -> Source:
    if job.job.input_format == OPENAI_BATCH:
        return BatchSource(job)
    return TableSource(job)
