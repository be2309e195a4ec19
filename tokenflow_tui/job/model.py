"""The job (DESIGN §2.2) as typed, frozen sections; `reader.load_job` builds one from a job file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..engine.error_kinds import CHECK_NAMES
from ..sim import SimulatorConfig

MAX_WORKERS = 100_000
MAX_SHARDS = 1024
Api = Literal["chat", "completions"]  # endpoint.api
RequestApi = Literal["chat", "completions", "embeddings"]  # what one request may be sent to (a Batch line's url)
# where the built-in handler posts, below endpoint.base_url
API_PATHS: dict[RequestApi, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}
APIS: tuple[Api, ...] = ("chat", "completions")
TransportName = Literal["asyncio", "aiohttp", "httpx"]
# the first is the default: our own HTTP/1.1 client on raw asyncio (endpoint/http1*.py), then
# aiohttp's ClientSession straight, then split plain-httpx pools
TRANSPORTS: tuple[TransportName, ...] = ("asyncio", "aiohttp", "httpx")
# [job] input_format: our JSONL, OpenAI Batch JSONL, and the tables read by job/formats
TOKENFLOW, OPENAI_BATCH, PARQUET, CSV, HF = "tokenflow", "openai-batch", "parquet", "csv", "hf"
INPUT_FORMATS = (TOKENFLOW, OPENAI_BATCH, PARQUET, CSV, HF)
TABLE_FORMATS = (PARQUET, CSV, HF)

# in an input line or its params: the [[endpoints]] entry (by name) its attempts go to; never sent
ROUTE_KEY = "_endpoint"


def routed_to(line: Any) -> str | None:
    """The endpoint an attempt's params name (`_endpoint` in the line or in its `params`), if any."""
    if type(line) is not dict:
        return None
    name = line.get(ROUTE_KEY)
    if name is None:
        params = line.get("params")
        if type(params) is dict:
            name = params.get(ROUTE_KEY)
    return None if name is None else str(name)


# Keys of a request body that the built-in handler sets itself, with the reason a user may not.
FORBIDDEN_PARAMS = {
    "model": "the model is set by endpoint.model",
    "messages": "each input line gives its own messages or prompt",
    "prompt": "each input line gives its own messages or prompt",
    "stream": "streaming is set by endpoint.stream",
}


@dataclass(frozen=True, slots=True)
class JobSection:
    name: str
    input: Path  # joined to the job file's folder, as the user would write it from here
    output: Path
    input_format: str = TOKENFLOW  # as given, else detected from the input


@dataclass(frozen=True, slots=True)
class SimulatorSection:
    latency_ms: float = 200.0
    jitter_ms: float = 0.0
    fail: Mapping[str, float] = field(default_factory=dict)
    seed: int | None = None
    rpm_limit: int = 0
    token_interval_ms: float = 0.0
    json_answers: bool = False  # answers are JSON objects {"answer": …} (the non_json fault breaks some)

    def to_config(self) -> SimulatorConfig:
        return SimulatorConfig(
            latency_ms=self.latency_ms,
            jitter_ms=self.jitter_ms,
            fail=self.fail,
            seed=self.seed,
            rpm_limit=self.rpm_limit,
            token_interval_ms=self.token_interval_ms,
            json_answers=self.json_answers,
        )


@dataclass(frozen=True, slots=True)
class EndpointSection:
    """Where requests go; `simulator` is set exactly when `simulate` is true."""

    base_url: str | None  # without a trailing slash
    simulate: bool
    api: Api
    model: str | None
    api_key_env: str | None  # the variable's name; the handler reads the key at run time
    timeout_s: float
    transport: TransportName
    simulator: SimulatorSection | None
    stream: bool = False  # server-sent events: tokens as they are made, time to first token
    idle_timeout_s: float | None = None  # with stream: the longest wait between two chunks; None: timeout_s only
    structured: bool = False  # send [checks] json_schema as the request's response_format


@dataclass(frozen=True, slots=True)
class NamedEndpoint:
    """One of [[endpoints]]: where it is, its share of the requests and its own rate limits (0: none)."""

    name: str
    endpoint: EndpointSection
    weight: float = 1.0
    requests_per_minute: float = 0.0
    tokens_per_minute: int = 0


@dataclass(frozen=True, slots=True)
class InputSection:
    """Which columns of a table input (Parquet, CSV, a saved dataset) make the request; the others are metadata."""

    prompt_column: str | None = None
    messages_column: str | None = None
    id_column: str | None = None


@dataclass(frozen=True, slots=True)
class RequestSection:
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WorkersSection:
    count: int = 64
    adaptive: bool = False
    min: int = 1
    max: int = 256


DEFAULT_BAD_FINISH_REASONS = ("length", "content_filter")


@dataclass(frozen=True, slots=True)
class ChecksSection:
    """What a good answer of the built-in handler looks like; None or empty: not checked."""

    json: bool = False  # parses as JSON (a fenced ```json block accepted)
    json_schema: Path | None = None  # joined to the job file's folder
    schema: Mapping[str, Any] | None = None  # the schema file's content, read and checked by the reader
    regex: str | None = None  # must match somewhere in the answer
    min_chars: int | None = None
    max_chars: int | None = None
    bad_finish_reasons: tuple[str, ...] = ()  # [checks] finish_reason: reasons that fail the answer

    @property
    def names(self) -> tuple[str, ...]:
        """The checks configured, in CHECK_NAMES order."""
        on = {
            "finish_reason": bool(self.bad_finish_reasons),
            "min_chars": self.min_chars is not None,
            "max_chars": self.max_chars is not None,
            "json": self.json,
            "json_schema": self.schema is not None,
            "regex": self.regex is not None,
        }
        return tuple(name for name in CHECK_NAMES if on[name])


# the left side of a rule's `when`
WHEN_KEYS = ("finish_reason", "check_failed", "error", "status")
DOUBLE = "double"  # the one operation of a rule's `set`: the param's value times two, at most `max`


@dataclass(frozen=True, slots=True)
class RetryRule:
    """One [[retry.rules]] entry: when a failed attempt matches `when`, the next attempt's params change."""

    index: int  # 0-based, in the job file's order
    when: str  # as written, e.g. "finish_reason = length"
    key: str  # one of WHEN_KEYS
    value: str  # the right side ("length", "json_schema", "timeout", "503")
    set: Mapping[str, Any] = field(default_factory=dict)  # param → value, or DOUBLE
    max: float | None = None  # the cap of DOUBLE values
    append_message: Mapping[str, str] | None = None  # {"role", "content"}; {error} is filled in
    endpoint: str | None = None  # send the next attempt to this [[endpoints]] name


@dataclass(frozen=True, slots=True)
class RetrySection:
    max_attempts: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    rules: tuple[RetryRule, ...] = ()


@dataclass(frozen=True, slots=True)
class LimitsSection:
    """Zero means no limit; prices are None when not given; `pace` false: never pace dispatch after 429s."""

    requests_per_minute: float = 0.0
    tokens_per_minute: int = 0
    pace: bool = True
    max_total_tokens: int = 0
    max_cost_usd: float = 0.0
    price_input_per_million_usd: float | None = None
    price_output_per_million_usd: float | None = None


HANDLER_TIMEOUT_S = 600.0  # [handler] timeout_s when not given


@dataclass(frozen=True, slots=True)
class HandlerSection:
    spec: str  # as written: "file.py:function"
    file: Path  # joined to the job file's folder
    function: str
    # the longest one attempt may take: a handler that never answers must not hold its worker for good
    timeout_s: float = HANDLER_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class ClusterSection:
    """`run --ray`: how many shards the input is split into; 0: one per node of the cluster."""

    shards: int = 0


@dataclass(frozen=True, slots=True)
class Job:
    job_path: Path  # as the user gave it
    job_dir: Path
    job: JobSection
    endpoint: EndpointSection | None
    request: RequestSection
    workers: WorkersSection
    retry: RetrySection
    limits: LimitsSection
    handler: HandlerSection | None
    columns: InputSection = field(default_factory=InputSection)  # the [input] table
    checks: ChecksSection | None = None  # the [checks] table
    cluster: ClusterSection = field(default_factory=ClusterSection)  # used by `run --ray` only
    # [[endpoints]] in the file's order (empty with one [endpoint]); `endpoint` is then the first one's
    # section, whose api and stream every one of them shares
    endpoints: tuple[NamedEndpoint, ...] = ()

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def input(self) -> Path:
        return self.job.input

    @property
    def output(self) -> Path:
        return self.job.output
