"""A seed-style handler: asks for a short answer, and when it comes back cut short, retries with room for more.

Each call is one attempt; returning ActionContinue(params) records it and tries again with the new
params, so the request's whole trajectory ends up in results.jsonl ([retry] max_attempts bounds it).
The third value, the payload, tells TokenFlow the tokens the attempt used (for budgets and tokens/s)
and, on the last attempt, that the request failed (it then counts as failed, with that sentence).
"""

from __future__ import annotations

import os

import httpx

from tokenflow import ActionContinue, ActionDone, TokenFlowRequestTrajectory

_client: httpx.AsyncClient | None = None


def client() -> httpx.AsyncClient:
    """One client for the run, made on first use (the runner sets TOKENFLOW_BASE_URL first)."""
    global _client
    if _client is None:
        base_url = os.environ.get("TOKENFLOW_BASE_URL", "http://127.0.0.1:8765/v1")
        _client = httpx.AsyncClient(base_url=base_url, timeout=30)
    return _client


async def handler(trajectory: TokenFlowRequestTrajectory):
    params = trajectory.last().request_params
    if trajectory.length() > 3:
        return ActionDone(), {"error": "gave up after 3 attempts"}, {"failed": "gave up after 3 attempts"}
    try:
        response = await client().post(
            "/chat/completions",
            json={
                "model": "sim-1",
                "messages": [{"role": "user", "content": params["prompt"]}],
                "max_tokens": params.get("max_tokens", 4),
            },
        )
        response.raise_for_status()
        answer = response.json()
        choice = answer["choices"][0]
    except (httpx.HTTPError, KeyError, ValueError) as error:
        return ActionContinue(params), {"error": str(error)}
    used = {"usage": answer.get("usage")}
    if choice["finish_reason"] == "length":
        # cut short: try again with twice the room
        roomier = {**params, "max_tokens": params.get("max_tokens", 4) * 2}
        return ActionContinue(roomier), {"cut_short": choice["message"]["content"]}, used
    return ActionDone(), {"answer": choice["message"]["content"]}, used
