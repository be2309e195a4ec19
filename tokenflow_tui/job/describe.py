"""What `tokenflow validate` prints about a valid job: what would run, and where it would go."""

from __future__ import annotations

import orjson

from .inputs import InputSummary
from .model import API_PATHS, OPENAI_BATCH, TOKENFLOW, EndpointSection, Job, SimulatorSection


def describe(job: Job, summary: InputSummary) -> list[str]:
    """One line per aspect of the run, `label  value`, in a fixed order."""
    ids = ", ".join(orjson.dumps(ident).decode() for ident in summary.first_ids)
    more = ", …" if summary.count > len(summary.first_ids) else ""
    input_format = "" if job.job.input_format == TOKENFLOW else f"{job.job.input_format}, "
    rows = [
        ("job", f"{job.name} ({job.job_path})"),
        ("requests", f"{summary.count:,} from {job.input} ({input_format}ids {ids}{more})"),
        *_endpoint_rows(job),
        ("workers", _workers(job)),
        ("retry", _retry(job)),
        *_checks_rows(job),
        ("limits", _limits(job)),
        ("output", str(job.output)),
    ]
    return [f"{label:<9} {value}" for label, value in rows]


def _endpoint_rows(job: Job) -> list[tuple[str, str]]:
    handler = job.handler
    rows = [("handler", f"{handler.spec}, timeout {handler.timeout_s:g} s")] if handler is not None else []
    endpoint = job.endpoint
    if endpoint is None:
        return [*rows, ("endpoint", "none (the handler makes its own requests)")]
    if job.endpoints:
        total = sum(named.weight for named in job.endpoints)
        for named in job.endpoints:
            share = f"weight {named.weight:g} ({named.weight / total:.0%})"
            own = _rate_limits(named.requests_per_minute, named.tokens_per_minute)
            model = f", model {named.endpoint.model}" if named.endpoint.model is not None else ""
            text = f"{named.name}: {_where(named.endpoint)}{model}, {share}, limits {', '.join(own) or 'none'}"
            rows.append(("endpoint", text))
    else:
        rows.append(("endpoint", _where(endpoint)))
        if endpoint.model is not None:
            rows.append(("model", endpoint.model))
    if job.job.input_format == OPENAI_BATCH:
        api = "each request's url (/v1/chat/completions, /v1/completions or /v1/embeddings)"
    else:
        api = f"{endpoint.api} ({API_PATHS[endpoint.api]})"
    if endpoint.stream:
        idle = f", idle timeout {endpoint.idle_timeout_s:g} s" if endpoint.idle_timeout_s is not None else ""
        api += f", streamed{idle}"
    rows.append(("api", api))
    if job.request.params:
        rows.append(("params", orjson.dumps(dict(job.request.params)).decode()))
    return rows


def _where(endpoint: EndpointSection) -> str:
    if endpoint.simulator is not None:
        return _simulator(endpoint.simulator)
    key = f", key from ${endpoint.api_key_env}" if endpoint.api_key_env else ", no key"
    return f"{endpoint.base_url}{key}, timeout {endpoint.timeout_s:g} s, {endpoint.transport}"


def _rate_limits(requests_per_minute: float, tokens_per_minute: int) -> list[str]:
    parts = []
    if requests_per_minute:
        parts.append(f"{requests_per_minute:,g} requests/min")
    if tokens_per_minute:
        parts.append(f"{tokens_per_minute:,} tokens/min")
    return parts


def _simulator(sim: SimulatorSection) -> str:
    text = f"simulator on loopback, latency {sim.latency_ms:g} ms"
    if sim.jitter_ms:
        text += f" ± {sim.jitter_ms:g} ms"
    if sim.fail:
        text += ", failures " + ", ".join(f"{kind} {p * 100:g}%" for kind, p in sim.fail.items())
    if sim.rpm_limit:
        text += f", {sim.rpm_limit:,} requests/min"
    if sim.token_interval_ms:
        text += f", streamed tokens {sim.token_interval_ms:g} ms apart"
    if sim.seed is not None:
        text += f", seed {sim.seed}"
    return text


def _retry(job: Job) -> str:
    retry = job.retry
    return f"up to {retry.max_attempts} attempts, backoff {retry.backoff_base_s:g} s to {retry.backoff_max_s:g} s"


def _checks_rows(job: Job) -> list[tuple[str, str]]:
    """The checks on one line, then a line per retry rule: `when` → what it changes."""
    rows = [("checks", ", ".join(job.checks.names))] if job.checks is not None else []
    for rule in job.retry.rules:
        changes = [f"{key} = {value}" for key, value in rule.set.items()]
        if rule.max is not None:
            changes.append(f"max {rule.max:g}")
        if rule.append_message is not None:
            changes.append(f"append a {rule.append_message['role']} message")
        if rule.endpoint is not None:
            changes.append(f"endpoint {rule.endpoint}")
        rows.append((f"rule {rule.index + 1}", f"{rule.when} → {', '.join(changes)}"))
    return rows


def _workers(job: Job) -> str:
    workers = job.workers
    if workers.adaptive:
        return f"{workers.count} (adaptive, {workers.min} to {workers.max})"
    return f"{workers.count} (up to {workers.max} from the dashboard)"


def _limits(job: Job) -> str:
    limits = job.limits
    parts = _rate_limits(limits.requests_per_minute, limits.tokens_per_minute)
    if limits.max_total_tokens:
        parts.append(f"{limits.max_total_tokens:,} tokens in all")
    prices = _prices(job)
    if limits.max_cost_usd:
        parts.append(f"${limits.max_cost_usd:,.2f} in all ({prices})")
    elif prices is not None:
        parts.append(f"no cost budget ({prices})")
    return ", ".join(parts) or "none"


def _prices(job: Job) -> str | None:
    """The prices of the job file, when both are given (the cost is shown, and may be budgeted)."""
    price_in = job.limits.price_input_per_million_usd
    price_out = job.limits.price_output_per_million_usd
    if price_in is None or price_out is None:
        return None
    return f"${price_in:g} in, ${price_out:g} out per million tokens"
