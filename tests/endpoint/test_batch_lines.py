"""OpenAI Batch lines through the built-in handler: each to its own API path, the body as sent, embeddings recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from tokenflow_tui.endpoint.openai_handler import HandlerSettings, OpenAIHandler
from tokenflow_tui.endpoint.transport import make_client
from tokenflow_tui.engine import ActionDone, TokenFlowRequestTrajectory, TokenFlowRequestTrajectoryElement

USAGE = {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}
ANSWERS = {
    "/v1/chat/completions": {"choices": [{"index": 0, "message": {"content": "chat!"}, "finish_reason": "stop"}]},
    "/v1/completions": {"choices": [{"index": 0, "text": "text!", "finish_reason": "length"}]},
    "/v1/embeddings": {
        "object": "list",
        "data": [{"object": "embedding", "index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [2.0, 3.0]}],
    },
}


class Recorder:
    """An aiohttp server on 127.0.0.1 that answers each API path with its canned document and keeps what it got."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.url = ""
        self.embeddings: dict[str, Any] = ANSWERS["/v1/embeddings"]

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.path, orjson.loads(await request.read())))
        document = self.embeddings if request.path == "/v1/embeddings" else ANSWERS[request.path]
        body = orjson.dumps({**document, "usage": USAGE})
        return web.Response(body=body, content_type="application/json")


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_post("/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    recorder.url = f"http://127.0.0.1:{port}/v1"
    yield recorder
    await runner.cleanup()


async def send(recorder: Recorder, line: dict[str, Any], model: str | None = "job-model") -> Any:
    client = make_client("aiohttp", 4, 5.0)
    settings = HandlerSettings(
        base_url=recorder.url, api="chat", model=model, params={"temperature": 0.2, "max_tokens": 9}, timeout_s=5.0
    )
    try:
        trajectory = TokenFlowRequestTrajectory([TokenFlowRequestTrajectoryElement(line)])
        return await OpenAIHandler(settings, client, None)(trajectory)
    finally:
        await client.aclose()


async def test_each_line_goes_to_the_api_its_url_names_with_its_body_as_sent(recorder: Recorder) -> None:
    chat = {"id": "a", "url": "/v1/chat/completions", "body": {"model": "own", "max_tokens": 1, "messages": []}}
    completion = {"id": "b", "url": "/v1/completions", "body": {"prompt": "p"}}
    action, result, _ = await send(recorder, chat)
    assert type(action) is ActionDone
    assert result == {"text": "chat!", "usage": USAGE, "status_code": 200, "finish_reason": "stop"}
    _, result, _ = await send(recorder, completion)
    assert result == {"text": "text!", "usage": USAGE, "status_code": 200, "finish_reason": "length"}
    # the body's own keys win; the job's params and model only fill what it lacks
    assert recorder.seen == [
        ("/v1/chat/completions", {"model": "own", "temperature": 0.2, "max_tokens": 1, "messages": []}),
        ("/v1/completions", {"model": "job-model", "temperature": 0.2, "max_tokens": 9, "prompt": "p"}),
    ]


async def test_embeddings_are_recorded_as_vectors_in_input_order(recorder: Recorder) -> None:
    line = {"id": "e", "url": "/v1/embeddings", "body": {"input": ["x", "y"]}}
    _, result, _ = await send(recorder, line)
    # of the job's model and params only what the embeddings API takes: it refuses max_tokens and the like
    assert recorder.seen == [("/v1/embeddings", {"model": "job-model", "input": ["x", "y"]})]
    assert result == {"text": [[2.0, 3.0], [0.0, 1.0]], "usage": USAGE, "status_code": 200, "finish_reason": None}
    recorder.embeddings = {"data": [{"index": 0, "embedding": [1.5]}]}
    _, result, _ = await send(recorder, {"id": "one", "url": "/v1/embeddings", "body": {"input": "x"}})
    assert result["text"] == [1.5]  # one input: its vector


async def test_an_embeddings_answer_without_vectors_is_a_bad_response(recorder: Recorder) -> None:
    recorder.embeddings = {"data": [{"index": 0}]}
    _, result, _ = await send(recorder, {"id": "e", "url": "/v1/embeddings", "body": {"input": "x"}})
    assert result["error"]["kind"] == "bad_response"
    assert result["error"]["message"] == "the response has no embeddings"
