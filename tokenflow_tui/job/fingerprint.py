"""The job fingerprint (DESIGN §2.3): digests of what shapes a job's requests, to tell whether a run's
progress still belongs to the job.

A resume is refused when a part changed: the input, the endpoint's address, API or model, the request
params, the handler's path or its file, the [checks]; `run --accept-changes` goes on despite the parts in
ACCEPTABLE. What only shapes the traffic (workers, retry, limits, timeouts, transport, the simulator's knobs,
the key's variable) may change between runs. With [[endpoints]], the address and model parts are the sets
of their addresses and models: names, weights and their own limits are traffic.

[checks] (with the schema file's content and [endpoint] structured, which sends it) decide which answers
are `done`, so the done records of a run were judged by them: they are a part. [[retry.rules]] are not:
they change only the params of the attempts after a failed one, how a bad answer is repaired, as the
other [retry] settings do; each changed attempt's params are in its record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from ..store.errors import os_reason
from .model import TOKENFLOW, Job
from .problems import JobError, Problem

# each part, as the refusal names it when it changed
PARTS = {
    "input": "the input",
    "input_format": "[job] input_format",
    "columns": "the [input] columns",
    "base_url": "[endpoint] base_url",
    "simulate": "[endpoint] simulate",
    "api": "[endpoint] api",
    "model": "[endpoint] model",
    "params": "[request] params",
    "handler_path": "[handler] path",
    "handler_file": "the handler file",
    "checks": "[checks]",
}
# what `run --accept-changes` lets a resume go on despite (a fix late in a long job); never the input
ACCEPTABLE = frozenset({"handler_file", "params", "model", "base_url", "checks"})
WHOLE = "whole"  # a fingerprint of runs before it had parts: the job file and the input as one
_HASH_CHUNK = 1 << 20


def fingerprint(job: Job) -> dict[str, str]:
    """A sha256 digest per part of the job that shapes its requests (endpoint and handler parts when present).

    Raises JobError when the input or handler file cannot be read.
    """
    parts = {"input": _file_digest(job.input)}
    if job.job.input_format != TOKENFLOW:  # absent for our JSONL, as in the fingerprints saved before formats
        parts.update(input_format=_digest(job.job.input_format), columns=_digest(dataclasses.asdict(job.columns)))
    if job.endpoints:
        # the set of places and models: renaming, reweighting or reordering endpoints is traffic
        sections = [named.endpoint for named in job.endpoints]
        parts.update(
            base_url=_digest(sorted({str(e.base_url) for e in sections})),
            simulate=_digest(sorted({e.simulate for e in sections})),
            api=_digest(job.endpoints[0].endpoint.api),
            model=_digest(sorted({str(e.model) for e in sections})),
        )
    elif job.endpoint is not None:
        endpoint = job.endpoint
        parts.update(
            base_url=_digest(endpoint.base_url),
            simulate=_digest(endpoint.simulate),
            api=_digest(endpoint.api),
            model=_digest(endpoint.model),
        )
    parts["params"] = _digest(job.request.params)
    if job.handler is not None:
        parts.update(handler_path=_digest(job.handler.spec), handler_file=_file_digest(job.handler.file))
    if job.checks is not None:  # absent without [checks], as in the fingerprints saved before them
        checks = dataclasses.asdict(job.checks)
        checks.pop("json_schema")  # the schema's content counts, not where its file is
        structured = job.endpoint is not None and job.endpoint.structured
        parts["checks"] = _digest({**checks, "structured": structured})
    return parts


def whole_file_fingerprint(job: Job) -> str:
    """The fingerprint runs saved before it had parts: the job file's bytes and the input's."""
    digest = hashlib.sha256()
    job_bytes = _read(job.job_path)
    digest.update(len(job_bytes).to_bytes(8, "big"))  # so no other split of the same bytes collides
    digest.update(job_bytes)
    _hash_file(digest, job.input)
    return digest.hexdigest()


def changed_parts(saved: Any, job: Job, now: dict[str, str]) -> list[str]:
    """The keys of the parts that changed since `saved` (a state's fingerprint), in PARTS order; empty when none."""
    if isinstance(saved, str):
        return [] if saved == whole_file_fingerprint(job) else [WHOLE]
    if not isinstance(saved, dict):
        return [WHOLE]
    keys = [*PARTS, *sorted(saved.keys() - PARTS.keys())]  # parts of a later version's fingerprint last
    return [key for key in keys if saved.get(key) != now.get(key)]


def in_words(parts: list[str]) -> str:
    """Parts as the refusal names them: "the input and [request] params"."""
    words = [PARTS.get(key, "the job file or the input" if key == WHOLE else key) for key in parts]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def changes(saved: Any, job: Job, now: dict[str, str]) -> str | None:
    """What changed since `saved` (a state's fingerprint) in words, such as "the input and [request] params";
    None when nothing did."""
    parts = changed_parts(saved, job, now)
    return in_words(parts) if parts else None


def job_version(parts: dict[str, str]) -> str:
    """A short name of one version of the job (its fingerprint), kept in each record it makes."""
    return _digest(parts)[:8]


def _digest(value: Any) -> str:
    # sorted keys: the same params written in another order are the same requests
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _file_digest(path: Path) -> str:
    """The digest of a file, or of a folder's files (a saved dataset) with their names, in name order."""
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(path)).encode() + b"\0")
            _hash_file(digest, file)
    else:
        _hash_file(digest, path)
    return digest.hexdigest()


def _hash_file(digest: Any, path: Path) -> None:
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError as error:
        raise _unreadable(path, error) from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise _unreadable(path, error) from None


def _unreadable(path: Path, error: OSError) -> JobError:
    return JobError([Problem(str(path), None, None, f"cannot read: {os_reason(error)}")])
