"""`tokenflow report`: counts, failures by kind, tokens, attempts and latency of a run's results."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .export import load_run
from .figures import RecordFigures, fold_records
from .records import record_error_kind
from .results_file import FAILED, RESULTS_FILE

_EXCERPT_CHARS = 80


@dataclass(frozen=True, slots=True)
class FailureGroup:
    kind: str
    count: int  # failed requests whose last error is of this kind
    example_id: Any  # the first of them in input order
    example_message: str  # an excerpt


@dataclass(frozen=True, slots=True)
class RuleSummary:
    """What a [checks] check or a [[retry.rules]] rule did (store/rule_figures.py says how it is counted)."""

    name: str  # "check json_schema", "rule 1"
    label: str  # the check's name, or the rule's `when`
    caught: int
    rescued: int
    tokens: int  # of the rescues


@dataclass(frozen=True, slots=True)
class EndpointCounts:
    """What one of [[endpoints]] did, over every record: the dashboard's endpoint counts."""

    name: str
    attempts: int
    errors: int  # attempts that failed
    done: int  # requests whose final attempt it answered well


@dataclass(frozen=True, slots=True)
class Report:
    run_dir: str
    requests: int | None  # input requests, when state.toml says
    records: int  # lines in results.jsonl
    done: int  # requests whose last record is done
    failed: int
    finished: int
    missing: int  # input requests with no record yet
    failures: tuple[FailureGroup, ...]  # most frequent kind first
    prompt_tokens: int  # over every record
    completion_tokens: int
    total_tokens: int
    attempts: int  # over every record
    retries: int  # attempts after the first of each record
    retried: int  # requests whose last record has two attempts or more
    latency_p50_ms: float | None  # of every timed attempt, from the histogram the dashboard shows (within 1 %)
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    rules: tuple[RuleSummary, ...] = ()  # the checks and rules that caught an attempt
    endpoints: tuple[EndpointCounts, ...] = ()  # with [[endpoints]], by name


def build_report(run_dir: str | Path) -> Report:
    """Read a run's output directory (without changing it); StoreError when it cannot."""
    run = load_run(run_dir)
    recovery = run.recovery
    summary = recovery.summary
    # kind → [count, example index, example id, example message]
    groups: dict[str, list[Any]] = {}
    figures = RecordFigures()
    for part in run.parts or (run,):  # a sharded run's shards, each with its own file
        offsets, status = part.recovery.offsets, part.recovery.status
        if not part.recovery.summary.size:
            continue
        figures.last_offset = -1  # each shard's file is folded from its start
        fold_records(figures, part.results_path, part.recovery.summary.size, _is_final(offsets))
        with open(part.results_path, "rb") as file:
            for index, offset in enumerate(offsets):
                if offset >= 0 and status[index] == FAILED:
                    file.seek(offset)
                    _note_failure(groups, index, orjson.loads(file.readline()))
    failures = tuple(
        FailureGroup(kind, count, example_id, message)
        for kind, (count, _, example_id, message) in sorted(groups.items(), key=lambda item: (-item[1][0], item[0]))
    )
    p50, p95, p99 = (None if v is None else v * 1000 for v in figures.latency.percentiles((50, 95, 99)))
    done, failed = recovery.done, recovery.failed
    return Report(
        str(run.run_dir),
        run.requests,
        summary.records,
        done,
        failed,
        done + failed,
        run.missing,
        failures,
        summary.prompt_tokens,
        summary.completion_tokens,
        summary.total_tokens,
        summary.attempts,
        summary.attempts - summary.records,
        figures.retried,
        p50,
        p95,
        p99,
        tuple(
            RuleSummary(name, f.label, f.caught, f.rescued, f.prompt_tokens + f.completion_tokens)
            for name, f in figures.rules.rows()
        ),
        tuple(EndpointCounts(name, *figures.endpoints[name]) for name in sorted(figures.endpoints)),
    )


def _is_final(offsets: Sequence[int]) -> Callable[[int, int], bool]:
    """Whether the record of `index` at byte `at` is that index's last one."""
    return lambda index, at: offsets[index] == at


def _note_failure(groups: dict[str, list[Any]], index: int, record: dict[str, Any]) -> None:
    error = record.get("error") or {}
    kind = record_error_kind(record)
    group = groups.get(kind)
    if group is None:
        groups[kind] = [1, index, record.get("id"), _excerpt(str(error.get("message") or ""))]
        return
    group[0] += 1
    if index < group[1]:
        group[1:] = [index, record.get("id"), _excerpt(str(error.get("message") or ""))]


def _excerpt(message: str) -> str:
    flat = " ".join(message.split())
    return flat if len(flat) <= _EXCERPT_CHARS else flat[: _EXCERPT_CHARS - 1] + "…"


def format_report(report: Report) -> str:
    """The report as aligned lines of text, ending with a newline."""
    finished = f"{report.finished:,} finished ({report.done:,} done, {report.failed:,} failed)"
    if report.requests is not None:
        requests = f"{report.requests:,}: {finished}, {report.missing:,} without a record"
    elif report.missing:
        requests = f"{finished}, {report.missing:,} without a record below the last one"
    else:
        requests = finished
    lines = [
        f"run        {report.run_dir}",
        f"requests   {requests}",
        f"records    {report.records:,} in {RESULTS_FILE}",
        f"failures   {report.failed:,}" if report.failures else "failures   none",
    ]
    width = max((len(group.kind) for group in report.failures), default=0)
    count_width = max((len(f"{group.count:,}") for group in report.failures), default=0)
    for group in report.failures:
        example = _format_id(group.example_id)
        if group.example_message:
            example += f": {group.example_message}"
        lines.append(f"  {group.kind:<{width}}  {group.count:>{count_width},}  e.g. {example}")
    lines += [
        f"tokens     {report.total_tokens:,} (prompt {report.prompt_tokens:,}, "
        f"completion {report.completion_tokens:,})",
        f"attempts   {report.attempts:,} ({report.retries:,} retries; {report.retried:,} "
        f"{'request' if report.retried == 1 else 'requests'} retried)",
    ]
    if report.latency_p50_ms is None:
        lines.append("latency    no timed attempts")
    else:
        lines.append(
            f"latency    p50 {_ms(report.latency_p50_ms)}, p95 {_ms(report.latency_p95_ms)}, "
            f"p99 {_ms(report.latency_p99_ms)}"
        )
    lines += format_rules(report.rules)
    if report.endpoints:
        lines.append(f"endpoints  {len(report.endpoints)}")
        width = max(len(e.name) for e in report.endpoints)
        for e in report.endpoints:
            lines.append(
                f"  {e.name:<{width}}  {e.attempts:,} {'attempt' if e.attempts == 1 else 'attempts'} "
                f"({e.errors:,} failed), {e.done:,} done"
            )
    return "\n".join(lines) + "\n"


def format_rules(rules: tuple[RuleSummary, ...]) -> list[str]:
    """The report's lines of checks and rules: what each caught, the requests it rescued, their tokens."""
    if not rules:
        return []
    names = [f"{r.name}" if r.name.endswith(r.label) else f"{r.name} ({r.label})" for r in rules]
    width = max(len(name) for name in names)
    caught = max(len(f"{r.caught:,}") for r in rules)
    rescued = max(len(f"{r.rescued:,}") for r in rules)
    lines = ["rules      caught attempts, rescued requests (done after it caught one), tokens of the rescues"]
    for name, rule in zip(names, rules, strict=True):
        lines.append(
            f"  {name:<{width}}  {rule.caught:>{caught},} caught  {rule.rescued:>{rescued},} rescued  "
            f"{rule.tokens:,} tokens"
        )
    return lines


def _format_id(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _ms(value: float | None) -> str:
    assert value is not None
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"
