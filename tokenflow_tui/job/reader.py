"""The job file's reader: TOML in, a Job out, every problem reported at once with its position.

Loading reads the job file and looks at the files it names, nothing more: it creates no directory
and keeps no secret (the API key stays in the environment; only its variable's name is kept).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..sim import FAULT_KINDS, validate_fail
from ..store.errors import os_reason, toml_error_place
from .checks_reader import read_checks, read_rules
from .formats.detect import HF_STATE, detect_format
from .model import (
    APIS,
    FORBIDDEN_PARAMS,
    HANDLER_TIMEOUT_S,
    HF,
    INPUT_FORMATS,
    MAX_SHARDS,
    MAX_WORKERS,
    OPENAI_BATCH,
    TABLE_FORMATS,
    TRANSPORTS,
    ClusterSection,
    EndpointSection,
    HandlerSection,
    InputSection,
    Job,
    JobSection,
    LimitsSection,
    NamedEndpoint,
    RequestSection,
    RetrySection,
    SimulatorSection,
    WorkersSection,
)
from .problems import JobError, Problem, did_you_mean, sort_problems, toml_type
from .toml_positions import KeyPath, KeyPositions

_SECTIONS = {
    "job": ("name", "input", "input_format", "output"),
    "input": ("prompt_column", "messages_column", "id_column"),
    "endpoint": (
        "base_url",
        "simulate",
        "api",
        "model",
        "api_key_env",
        "timeout_s",
        "transport",
        "stream",
        "idle_timeout_s",
        "structured",
        "simulator",
    ),
    "request": ("params",),
    "workers": ("count", "adaptive", "min", "max"),
    "retry": ("max_attempts", "backoff_base_s", "backoff_max_s", "rules"),
    "limits": (
        "requests_per_minute",
        "tokens_per_minute",
        "pace",
        "max_total_tokens",
        "max_cost_usd",
        "price_input_per_million_usd",
        "price_output_per_million_usd",
    ),
    "handler": ("path", "timeout_s"),
    "checks": ("json", "json_schema", "regex", "min_chars", "max_chars", "finish_reason"),
    "cluster": ("shards",),
}
# a [[endpoints]] entry: an [endpoint]'s keys, its name, its share of the requests and its own limits
_ENDPOINTS_KEYS = ("name", *_SECTIONS["endpoint"], "weight", "requests_per_minute", "tokens_per_minute")
# what every [[endpoints]] entry must agree on: the requests are the same whichever endpoint answers
_SHARED_ENDPOINT_KEYS = ("api", "stream", "idle_timeout_s")
_SIMULATOR_KEYS = ("latency_ms", "jitter_ms", "fail", "seed", "rpm_limit", "token_interval_ms", "json_answers")
_NAME = re.compile(r"[A-Za-z0-9._-]+")
MAX_NAME = 100  # job.name names the folder runs/<name>: well below the 255 bytes a file name may have
MAX_JOB_BYTES = 1 << 20
_BOM = "\ufeff"
_DEEP = 100  # nesting reported as too deep: tomllib's recursion gives out somewhere above
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def load_job(path: Path, environ: Mapping[str, str] = os.environ) -> Job:
    """Read and check a job file; raises JobError with every problem found."""
    file = str(path)
    raw = _read_job_file(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        col = len(raw[raw.rfind(b"\n", 0, error.start) + 1 : error.start].decode("utf-8", "replace")) + 1
        raise JobError([Problem(file, line, col, f"not valid UTF-8 (byte 0x{raw[error.start]:02x})")]) from None
    text = text.removeprefix(_BOM)  # editors on Windows start a file with one; TOML does not allow it
    try:
        data = tomllib.loads(text)
        reader = _Reader(file, KeyPositions(text))
        job = reader.job(data, path, environ)
    except tomllib.TOMLDecodeError as error:
        raise JobError([_syntax_problem(file, text, str(error))]) from None
    except RecursionError:
        deep_line, deep_col = _too_deep(text)
        message = f"arrays or tables nested more than {_DEEP} levels deep; a job file needs a few at most"
        raise JobError([Problem(file, deep_line, deep_col, message)]) from None
    if reader.problems:
        raise JobError(sort_problems(reader.problems))
    return job


def _read_job_file(path: Path) -> bytes:
    """The job file's bytes: a regular file of at most MAX_JOB_BYTES (a FIFO or /dev/zero would never end)."""
    file = str(path)
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise JobError([Problem(file, None, None, f"cannot read the job file: {os_reason(error)}")]) from None
    with open(fd, "rb") as stream:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise JobError([Problem(file, None, None, "the job file is a folder, not a file")])
        if not stat.S_ISREG(mode):
            raise JobError([Problem(file, None, None, "the job file is not a regular file (a pipe or a device?)")])
        try:
            raw = stream.read(MAX_JOB_BYTES + 1)
        except OSError as error:
            raise JobError([Problem(file, None, None, f"cannot read the job file: {os_reason(error)}")]) from None
    if len(raw) > MAX_JOB_BYTES:
        message = f"the job file is larger than {MAX_JOB_BYTES // 1024:,} KB; the requests go in the input file"
        raise JobError([Problem(file, None, None, message)])
    return raw


def _too_deep(text: str) -> tuple[int | None, int | None]:
    """Where the brackets of `text` first open more than _DEEP levels (strings skipped roughly)."""
    depth, quote, line, col = 0, "", 1, 0
    for char in text:
        col += 1
        if char == "\n":
            line, col, quote = line + 1, 0, ""
        elif quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
            if depth > _DEEP:
                return line, col
        elif char in "]}":
            depth -= 1
    return None, None


def _syntax_problem(file: str, text: str, message: str) -> Problem:
    message, line, col = toml_error_place(message, text)
    return Problem(file, line, col, message)


def _dotted(path: KeyPath) -> str:
    """retry.rules[0].set: an array's element by its index in brackets."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")


def _not_a_folder(output: Path) -> str | None:
    """Why `output` cannot be (or become) a folder: it, or a folder above it, is a file."""
    for place in (output, *output.parents):
        if place.is_dir():
            return None
        if place.exists() or place.is_symlink():
            if place == output:
                return f"the output {output} exists and is not a folder"
            return f"the output {output} is inside {place}, which is a file, not a folder"
    return None


def _key_problem(key: str) -> str | None:
    """What makes a key unusable in an HTTP header, without showing the key."""
    for position, char in enumerate(key, 1):
        if char in "\r\n":
            return f"a line break at character {position}"
        if not char.isascii():
            return f"a character that is not ASCII at character {position}"
        if not char.isprintable():
            return f"a control character at character {position}"
    return None


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Invalid:
    """A value that was reported as wrong; it never ends up in a Job."""

    def __repr__(self) -> str:
        return "<invalid>"


_INVALID: Any = _Invalid()


class _Reader:
    """Turns a parsed job file into a Job, collecting problems located in the text."""

    def __init__(self, file: str, positions: KeyPositions) -> None:
        self.file = file
        self.positions = positions
        self.problems: list[Problem] = []

    def problem(self, path: KeyPath, message: str) -> None:
        line, col = self.positions.nearest(path) or (None, None)
        self.problems.append(Problem(self.file, line, col, message))

    # ----- values ------------------------------------------------------------------------

    def table(self, parent: Mapping[str, Any], path: KeyPath, keys: Collection[str]) -> dict[str, Any] | None:
        """The table at `path` with its unknown keys reported; None when absent or not a table."""
        value = parent.get(str(path[-1]))
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problem(path, f"{_dotted(path)} must be a table, found {toml_type(value)}")
            return None
        where = f"[{_dotted(path)}]"
        for key, item in value.items():
            if key in keys:
                continue
            if isinstance(item, dict):
                what = f"unknown table [{_dotted(path + (key,))}]"
            else:
                what = f'unknown key "{key}" in {where}'
            self.problem(path + (key,), what + did_you_mean(key, keys))
        return value

    def value(
        self,
        table: Mapping[str, Any],
        path: KeyPath,
        expected: str,
        is_kind: Callable[[Any], bool],
        in_range: Callable[[Any], bool] = lambda v: True,
        hint: Callable[[Any], str] = lambda v: "",
    ) -> Any:
        """The value at `path`; None when absent, _INVALID after saying what was expected and found."""
        value = table.get(str(path[-1]))
        if value is None:
            return None
        if not is_kind(value):
            found = toml_type(value)
        elif not in_range(value):
            found = f'"{value}"' if isinstance(value, str) else repr(value)
        else:
            return value
        self.problem(path, f"{_dotted(path)} must be {expected}, found {found}{hint(value)}")
        return _INVALID

    def integer(self, table: Mapping[str, Any], path: KeyPath, default: Any, lo: int, hi: int | None = None) -> Any:
        expected = f"an integer from {lo} to {hi}" if hi is not None else f"an integer >= {lo}"
        value = self.value(table, path, expected, _is_int, lambda v: lo <= v and (hi is None or v <= hi))
        return default if value is None else value

    def number(self, table: Mapping[str, Any], path: KeyPath, default: Any, *, above_zero: bool = False) -> Any:
        """A finite int or float >= 0 (> 0 with `above_zero`), as a float."""
        expected = "a number > 0" if above_zero else "a number >= 0"
        value = self.value(
            table,
            path,
            expected,
            lambda v: type(v) in (int, float),
            lambda v: math.isfinite(v) and (v > 0 if above_zero else v >= 0),
        )
        if value is None:
            return default
        return value if value is _INVALID else float(value)

    def string(self, table: Mapping[str, Any], path: KeyPath, default: Any, choices: Collection[str] = ()) -> Any:
        if choices:
            expected = " or ".join(f'"{choice}"' for choice in choices)
            value = self.value(
                table, path, expected, _is_str, lambda v: v in choices, lambda v: did_you_mean(str(v), choices)
            )
        else:
            value = self.value(table, path, "a string", _is_str)
        return default if value is None else value

    def boolean(self, table: Mapping[str, Any], path: KeyPath, default: Any) -> Any:
        value = self.value(table, path, "true or false", lambda v: type(v) is bool)
        return default if value is None else value

    def required(self, path: KeyPath, value: Any, what: str) -> Any:
        """`value`, or _INVALID after reporting that the key is missing."""
        if value is None:
            self.problem(path, f"{_dotted(path)} is required: {what}")
            return _INVALID
        return value

    # ----- sections ------------------------------------------------------------------------

    def job(self, data: dict[str, Any], path: Path, environ: Mapping[str, str]) -> Job:
        for key, value in data.items():
            if key not in _SECTIONS and key != "endpoints":
                self.unknown_top_level(key, value)
        builtin = "handler" not in data
        if "job" not in data:
            self.problem((), "missing table [job] (with name and input)")
        if "endpoint" not in data and "endpoints" not in data and builtin:
            self.problem(
                (), "missing table [endpoint] (with base_url or simulate = true), [[endpoints]], or a [handler]"
            )
        if "endpoint" in data and "endpoints" in data:
            self.problem(("endpoints",), "give one [endpoint] or several [[endpoints]], not both")
        job_dir = path.parent
        tables = {name: self.table(data, (name,), keys) for name, keys in _SECTIONS.items()}
        job, endpoint, handler = tables["job"], tables["endpoint"], tables["handler"]
        job_section = (
            JobSection(_INVALID, _INVALID, _INVALID, _INVALID) if job is None else self.job_section(job, job_dir)
        )
        checks_table = tables["checks"]
        checks = None if checks_table is None else read_checks(self, checks_table, job_dir, builtin=builtin)
        request = self.request_section(tables["request"] or {}, builtin=builtin)
        retry = self.retry_section(tables["retry"] or {})
        needs_model = builtin and job_section.input_format != OPENAI_BATCH
        endpoints = self.endpoints_section(data, environ, builtin=builtin, needs_model=needs_model)
        rules = read_rules(
            self,
            (tables["retry"] or {}).get("rules"),
            checks,
            request.params,
            builtin=builtin,
            endpoint_names=[named.name for named in endpoints],
        )
        endpoint_section = (
            endpoints[0].endpoint
            if endpoints
            else None
            if endpoint is None
            else self.endpoint_section(endpoint, environ, builtin=builtin, needs_model=needs_model)
        )
        if (
            endpoint_section is not None
            and endpoint_section.structured is True
            and (checks is None or checks.schema is None)
        ):
            self.problem(
                ("endpoint", "structured"),
                "endpoint.structured sends [checks] json_schema as the response_format: give checks.json_schema",
            )
        return Job(
            job_path=path,
            job_dir=job_dir,
            job=job_section,
            endpoint=endpoint_section,
            request=request,
            workers=self.workers_section(tables["workers"] or {}),
            retry=dataclasses.replace(retry, rules=rules) if rules else retry,
            limits=self.limits_section(tables["limits"] or {}),
            handler=None if handler is None else self.handler_section(handler, job_dir),
            columns=self.input_section(tables["input"], job_section.input_format),
            checks=checks,
            cluster=ClusterSection(
                shards=self.integer(tables["cluster"] or {}, ("cluster", "shards"), 0, lo=1, hi=MAX_SHARDS)
            ),
            endpoints=endpoints,
        )

    def unknown_top_level(self, key: str, value: Any) -> None:
        homes = [section for section, keys in _SECTIONS.items() if key in keys]
        if isinstance(value, dict):
            self.problem((key,), f"unknown table [{key}]" + did_you_mean(key, _SECTIONS, "[{}]"))
        elif homes:
            self.problem((key,), f'key "{key}" is outside any table; it belongs in [{homes[0]}]')
        else:
            self.problem((key,), f'unknown key "{key}" outside any table')

    def job_section(self, table: dict[str, Any], job_dir: Path) -> JobSection:
        name = self.required(("job", "name"), self.string(table, ("job", "name"), None), 'a name such as "demo"')
        if isinstance(name, str) and not _NAME.fullmatch(name):
            self.problem(("job", "name"), 'job.name may contain only letters, digits, ".", "_" and "-"')
            name = _INVALID
        elif isinstance(name, str) and set(name) == {"."}:
            self.problem(("job", "name"), "job.name cannot be only dots: it names the folder runs/<name>")
            name = _INVALID
        elif isinstance(name, str) and len(name) > MAX_NAME:
            self.problem(
                ("job", "name"),
                f"job.name is {len(name):,} characters long; at most {MAX_NAME}: it names the folder runs/<name>",
            )
            name = _INVALID
        source = self.string(table, ("job", "input"), None)
        source = self.required(
            ("job", "input"), source, "the file of requests (JSONL, Parquet, CSV) or a dataset folder"
        )
        input_format = self.string(table, ("job", "input_format"), None, INPUT_FORMATS)
        input_path = _INVALID
        if isinstance(source, str):
            input_path = self.input_path(job_dir / source, input_format)
        if input_format is None:
            input_format = self.detected_format(input_path)
        output = self.string(table, ("job", "output"), None)
        if isinstance(output, str):
            output_path = job_dir / output
            if not output.strip():
                self.problem(("job", "output"), "job.output must not be empty: it names the run's folder")
            elif (blocker := _not_a_folder(output_path)) is not None:
                self.problem(("job", "output"), blocker)
        else:
            output_path = job_dir / "runs" / name if isinstance(name, str) else _INVALID
        return JobSection(name=name, input=input_path, output=output_path, input_format=input_format)

    def input_path(self, path: Path, input_format: str | None) -> Any:
        """The input file, or a dataset's folder for `hf`; _INVALID after saying what is wrong."""
        where = ("job", "input")
        if input_format == HF or (input_format is None and path.is_dir()):
            if not path.is_dir():
                self.problem(where, f"input_format hf needs a folder saved by datasets' save_to_disk: {path}")
                return _INVALID
            if not (path / HF_STATE).is_file():
                splits = " (a DatasetDict: name one split's folder)" if (path / "dataset_dict.json").exists() else ""
                self.problem(where, f"the input {path} is a folder, and not a dataset saved by save_to_disk{splits}")
                return _INVALID
            return path
        return self.existing_file(where, path, "input file")

    def detected_format(self, path: Any) -> Any:
        if not isinstance(path, Path):
            return _INVALID
        try:
            return detect_format(path)
        except OSError as error:
            self.problem(("job", "input"), f"cannot read the input: {os_reason(error)}")
            return _INVALID

    def input_section(self, table: dict[str, Any] | None, input_format: Any) -> InputSection:
        if table is None:
            return InputSection()
        columns = {}
        for key in _SECTIONS["input"]:
            value = self.string(table, ("input", key), None)
            if value == "":
                self.problem(("input", key), f"input.{key} must not be empty")
            columns[key] = value
        if isinstance(input_format, str) and input_format not in TABLE_FORMATS:
            self.problem(
                ("input",),
                f"[input] names columns of a Parquet, CSV or dataset input; this input is {input_format} "
                "(set [job] input_format if it was detected wrongly)",
            )
        if columns["prompt_column"] is not None and columns["messages_column"] is not None:
            self.problem(("input", "messages_column"), "[input]: give prompt_column or messages_column, not both")
        return InputSection(**columns)

    def existing_file(self, path: KeyPath, file: Path, what: str) -> Any:
        """`file` if it is a file, else _INVALID after saying what is wrong with it."""
        if file.is_file():
            return file
        if file.is_dir():
            self.problem(path, f"the {what} {file} is a folder, not a file")
        elif not file.exists():
            self.problem(path, f"{what} not found: {file}")
        else:
            self.problem(path, f"the {what} {file} is not a regular file")
        return _INVALID

    def endpoint_section(
        self,
        table: dict[str, Any],
        environ: Mapping[str, str],
        *,
        builtin: bool,
        needs_model: bool,
        where: KeyPath = ("endpoint",),
    ) -> EndpointSection:
        """[endpoint], or one of [[endpoints]] at `where` (("endpoints", i)), whose messages name it so."""
        label = _label(where)
        base_url = self.base_url(table, where)
        simulate = self.boolean(table, where + ("simulate",), False)
        if simulate is True and base_url is not None:
            self.problem(where + ("simulate",), f"{label}: give base_url or simulate = true, not both")
        elif simulate is False and base_url is None:
            self.problem(
                where + ("base_url",), f"{label} needs base_url (an OpenAI-compatible API root) or simulate = true"
            )
        model = self.string(table, where + ("model",), None)
        # `needs_model` is false for a [handler] or an OpenAI Batch input (its bodies name their model)
        if model is None and simulate is True:
            model = "sim-1"
        elif model is None and needs_model and "base_url" in table:
            model = self.required(where + ("model",), None, 'the model to ask, such as "gpt-4o-mini"')
        elif model == "":
            self.problem(where + ("model",), f"{label}.model must not be empty")
        simulator = self.simulator_section(table, simulate is True, where)
        stream = self.boolean(table, where + ("stream",), False)
        idle_timeout_s = self.number(table, where + ("idle_timeout_s",), None, above_zero=True)
        if stream is True and not builtin:
            self.problem(
                where + ("stream",),
                f"{label}.stream is for the built-in handler; a [handler] makes its own requests",
            )
        elif idle_timeout_s is not None and stream is False:
            self.problem(
                where + ("idle_timeout_s",),
                f"{label}.idle_timeout_s is the wait between chunks of a stream: it needs stream = true",
            )
        return EndpointSection(
            base_url=base_url,
            simulate=simulate,
            api=self.string(table, where + ("api",), "chat", APIS),
            model=model,
            api_key_env=self.api_key_env(table, base_url, simulate is True, environ, where),
            timeout_s=self.number(table, where + ("timeout_s",), 120.0, above_zero=True),
            transport=self.string(table, where + ("transport",), TRANSPORTS[0], TRANSPORTS),
            simulator=simulator,
            stream=stream,
            idle_timeout_s=idle_timeout_s,
            structured=self.boolean(table, ("endpoint", "structured"), False),
        )

    def endpoints_section(
        self, data: dict[str, Any], environ: Mapping[str, str], *, builtin: bool, needs_model: bool
    ) -> tuple[NamedEndpoint, ...]:
        """[[endpoints]]: each entry as an [endpoint] with a unique name, a weight > 0 and its own limits."""
        entries = data.get("endpoints")
        if entries is None:
            return ()
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            self.problem(("endpoints",), f"endpoints must be tables written [[endpoints]], found {toml_type(entries)}")
            return ()
        if not entries:
            self.problem(("endpoints",), "endpoints is empty: write one [[endpoints]] table per endpoint")
            return ()
        if not builtin:
            self.problem(
                ("endpoints",),
                "[[endpoints]] are for the built-in handler; a [handler] makes its own requests (give it one [endpoint])",
            )
            return ()
        named: list[NamedEndpoint] = []
        first_at: dict[str, int] = {}
        for i, entry in enumerate(entries):
            where: KeyPath = ("endpoints", i)
            for key, item in entry.items():
                if key not in _ENDPOINTS_KEYS:
                    what = (
                        f"unknown table [{_dotted(where + (key,))}]"
                        if isinstance(item, dict)
                        else (f'unknown key "{key}" in {_label(where)}')
                    )
                    self.problem(where + (key,), what + did_you_mean(key, _ENDPOINTS_KEYS))
            name = self.required(
                where + ("name",), self.string(entry, where + ("name",), None), 'a name such as "primary"'
            )
            if isinstance(name, str) and not _NAME.fullmatch(name):
                self.problem(
                    where + ("name",), f'{_label(where)}.name may contain only letters, digits, ".", "_" and "-"'
                )
                name = _INVALID
            elif isinstance(name, str) and name in first_at:
                line = (self.positions.nearest(("endpoints", first_at[name], "name")) or (None,))[0]
                self.problem(where + ("name",), f'two endpoints are named "{name}" (the first at line {line})')
            elif isinstance(name, str):
                first_at[name] = i
            for key in _SHARED_ENDPOINT_KEYS:
                if i and entry.get(key) != entries[0].get(key):
                    self.problem(
                        where + (key,),
                        f"{_label(where)}.{key} must be the same in every [[endpoints]] "
                        f"(the first one has {_toml_value(entries[0].get(key))}, this one {_toml_value(entry.get(key))})",
                    )
            named.append(
                NamedEndpoint(
                    name=name,
                    endpoint=self.endpoint_section(
                        entry, environ, builtin=builtin, needs_model=needs_model, where=where
                    ),
                    weight=self.number(entry, where + ("weight",), 1.0, above_zero=True),
                    requests_per_minute=self.number(entry, where + ("requests_per_minute",), 0.0),
                    tokens_per_minute=self.integer(entry, where + ("tokens_per_minute",), 0, lo=0),
                )
            )
        return tuple(named)

    def base_url(self, table: dict[str, Any], where: KeyPath) -> Any:
        path = where + ("base_url",)
        label = _label(where)
        url = self.string(table, path, None)
        if not isinstance(url, str):
            return url
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            self.problem(
                path, f'{label}.base_url must be an http:// or https:// URL, such as "https://api.openai.com/v1"'
            )
            return _INVALID
        if parts.username is not None or parts.password is not None:
            self.problem(
                path, f"{label}.base_url must not hold a user or password; name the key's variable in api_key_env"
            )
            return _INVALID
        if parts.path.rstrip("/").endswith("/completions"):
            self.problem(
                path, f"{label}.base_url is the API root (such as …/v1); the handler adds /chat/completions itself"
            )
            return _INVALID
        return url.rstrip("/")

    def api_key_env(
        self, table: dict[str, Any], base_url: Any, simulate: bool, environ: Mapping[str, str], where: KeyPath
    ) -> Any:
        path = where + ("api_key_env",)
        label = _label(where)
        name = self.string(table, path, None)
        if name is None:
            if isinstance(base_url, str) and not _is_loopback(base_url):
                return self.required(path, None, "the name of the environment variable that holds the API key")
            return None
        if not isinstance(name, str):
            return name
        if not _ENV_NAME.fullmatch(name):
            # the value may be a pasted key: it is not repeated in the message
            self.problem(
                path,
                f"{label}.api_key_env must be the name of an environment variable (letters, digits and _); "
                "the key itself never goes in the job file",
            )
            return _INVALID
        if simulate:
            return name  # the simulator takes no key, so the variable does not have to be set
        if name not in environ:
            self.problem(path, f"the environment variable {name} is not set ({label}.api_key_env)")
        elif not environ[name]:
            self.problem(path, f"the environment variable {name} is empty ({label}.api_key_env)")
        elif (bad := _key_problem(environ[name])) is not None:
            # the key itself is never shown: the message goes to logs and terminals
            self.problem(
                path,
                f"the environment variable {name} holds {bad}, which cannot be sent in a header; "
                f"set it again without it ({label}.api_key_env; the key is not shown)",
            )
        return name

    def simulator_section(self, endpoint: dict[str, Any], simulate: bool, where: KeyPath) -> SimulatorSection | None:
        path = where + ("simulator",)
        table = self.table(endpoint, path, _SIMULATOR_KEYS)
        if "simulator" in endpoint and not simulate:
            self.problem(path, f"[{_dotted(path)}] is only used with simulate = true")
        if not simulate:
            return None
        table = table or {}
        return SimulatorSection(
            latency_ms=self.number(table, path + ("latency_ms",), 200.0),
            jitter_ms=self.number(table, path + ("jitter_ms",), 0.0),
            fail=self.fail(table, path + ("fail",)),
            seed=self.value(table, path + ("seed",), "an integer", _is_int),
            rpm_limit=self.integer(table, path + ("rpm_limit",), 0, lo=0),
            token_interval_ms=self.number(table, path + ("token_interval_ms",), 0.0),
            json_answers=self.boolean(table, path + ("json_answers",), False),
        )

    def fail(self, table: dict[str, Any], path: KeyPath) -> Any:
        mix = self.value(table, path, 'a table of failure kind = probability, such as { "429" = 0.05 }', _is_table)
        if mix is None:
            return {}
        if mix is _INVALID:
            return _INVALID
        valid = True
        for kind, probability in mix.items():
            try:
                validate_fail({kind: probability})
            except ValueError as error:
                hint = did_you_mean(kind, FAULT_KINDS) if kind not in FAULT_KINDS else ""
                self.problem(path + (kind,), f"{_dotted(path)}: {error}{hint}")
                valid = False
        if not valid:
            return _INVALID
        try:
            return validate_fail(mix)
        except ValueError as error:
            self.problem(path, f"{_dotted(path)}: {error}")
            return _INVALID

    def request_section(self, table: dict[str, Any], *, builtin: bool) -> RequestSection:
        path = ("request", "params")
        params = self.value(table, path, "a table", _is_table)
        if params is None:
            return RequestSection()
        if builtin and params is not _INVALID:
            for key in params:
                if key in FORBIDDEN_PARAMS:
                    self.problem(path + (key,), f'request.params must not contain "{key}": {FORBIDDEN_PARAMS[key]}')
        return RequestSection(params=params)

    def workers_section(self, table: dict[str, Any]) -> WorkersSection:
        count = self.integer(table, ("workers", "count"), 64, lo=1, hi=MAX_WORKERS)
        low = self.integer(table, ("workers", "min"), 1, lo=1, hi=MAX_WORKERS)
        default_high = min(4 * count, MAX_WORKERS) if count is not _INVALID else _INVALID
        high = self.integer(table, ("workers", "max"), default_high, lo=1, hi=MAX_WORKERS)
        if _INVALID not in (count, low) and low > count:
            self.problem(("workers", "min"), f"workers.min ({low}) must not be above workers.count ({count})")
        elif _INVALID not in (count, high) and count > high:
            self.problem(("workers", "max"), f"workers.max ({high}) must not be below workers.count ({count})")
        return WorkersSection(
            count=count, adaptive=self.boolean(table, ("workers", "adaptive"), False), min=low, max=high
        )

    def retry_section(self, table: dict[str, Any]) -> RetrySection:
        base = self.number(table, ("retry", "backoff_base_s"), 0.5)
        cap = self.number(table, ("retry", "backoff_max_s"), 60.0)
        if _INVALID not in (base, cap) and cap < base:
            self.problem(
                ("retry", "backoff_max_s"),
                f"retry.backoff_max_s ({cap:g}) must not be below retry.backoff_base_s ({base:g})",
            )
        return RetrySection(
            max_attempts=self.integer(table, ("retry", "max_attempts"), 5, lo=1, hi=100),
            backoff_base_s=base,
            backoff_max_s=cap,
        )

    def limits_section(self, table: dict[str, Any]) -> LimitsSection:
        limits = LimitsSection(
            requests_per_minute=self.number(table, ("limits", "requests_per_minute"), 0.0),
            tokens_per_minute=self.integer(table, ("limits", "tokens_per_minute"), 0, lo=0),
            pace=self.boolean(table, ("limits", "pace"), True),
            max_total_tokens=self.integer(table, ("limits", "max_total_tokens"), 0, lo=0),
            max_cost_usd=self.number(table, ("limits", "max_cost_usd"), 0.0),
            price_input_per_million_usd=self.number(table, ("limits", "price_input_per_million_usd"), None),
            price_output_per_million_usd=self.number(table, ("limits", "price_output_per_million_usd"), None),
        )
        if limits.max_cost_usd is not _INVALID and limits.max_cost_usd > 0:
            missing = [key for key in _SECTIONS["limits"][-2:] if key not in table]
            if missing:
                self.problem(
                    ("limits", "max_cost_usd"),
                    f"limits.max_cost_usd needs {' and '.join(f'limits.{key}' for key in missing)} to count the cost",
                )
        return limits

    def handler_section(self, table: dict[str, Any], job_dir: Path) -> HandlerSection:
        path = ("handler", "path")
        spec = self.required(path, self.string(table, path, None), 'the handler as "file.py:function"')
        if not isinstance(spec, str):
            return HandlerSection(spec=spec, file=_INVALID, function=_INVALID)
        source, _, function = spec.rpartition(":")
        if not source or not function.isidentifier():
            self.problem(path, f'handler.path must look like "file.py:function", found "{spec}"')
            return HandlerSection(spec=spec, file=_INVALID, function=_INVALID)
        timeout_s = self.number(table, ("handler", "timeout_s"), HANDLER_TIMEOUT_S, above_zero=True)
        return HandlerSection(
            spec=spec,
            file=self.existing_file(path, job_dir / source, "handler file"),
            function=function,
            timeout_s=timeout_s,
        )


def _label(where: KeyPath) -> str:
    """How messages name an endpoint's table: "endpoint", or "endpoints.1" for the second [[endpoints]]."""
    return _dotted(where)


def _toml_value(value: Any) -> str:
    return "no value" if value is None else f'"{value}"' if isinstance(value, str) else str(value).lower()


def _is_int(value: Any) -> bool:
    return type(value) is int  # not bool, which Python counts as an int


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_table(value: Any) -> bool:
    return isinstance(value, dict)
