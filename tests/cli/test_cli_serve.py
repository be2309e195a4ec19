"""`tokenflow serve`: the watch view to a browser, on 127.0.0.1, behind the token of the printed address."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from run_helpers import simulated_job, start_tokenflow, tokenflow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A job running headless and `tokenflow serve` on its output; the printed address."""
    job = simulated_job(tmp_path, 5_000, latency_ms=100, workers=4)
    out = tmp_path / "out"
    children = [start_tokenflow("run", str(job), "--headless")]
    try:
        for _ in range(600):  # bounded: 30 s for the run to listen
            if (out / "control.sock").exists():
                break
            assert children[0].poll() is None
            time.sleep(0.05)
        serve = start_tokenflow("serve", str(out), "--port", str(free_port()))
        children.append(serve)
        assert serve.stdout is not None
        line = serve.stdout.readline()
        match = re.fullmatch(rf"serving the watch view of {re.escape(str(out.resolve()))} on (http://\S+)\n", line)
        assert match, line
        yield match.group(1), out
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
            try:
                child.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.communicate()


async def test_the_page_and_its_websocket_need_the_token(served) -> None:
    url, _ = served
    base, token = url.split("/?token=")
    assert base.startswith("http://127.0.0.1:") and len(token) >= 24
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        for _ in range(200):  # bounded: the address is printed as the server starts, a moment before it listens
            try:
                async with session.get(f"{base}/static/images/background.png") as early:
                    assert early.status == 403
                break
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.05)
        async with session.get(f"{base}/") as refused:
            assert refused.status == 403
            assert "needs the token" in await refused.text()
        async with session.get(f"{base}/?token=wrong") as wrong:
            assert wrong.status == 403
        async with session.get(url, headers={"Host": f"example.com:{base.rsplit(':', 1)[1]}"}) as other_host:
            assert other_host.status == 403
        async with session.get(url) as page:
            assert page.status == 200
            html = await page.text()
        assert "textual.js" in html and "tokenflow watch" in html
        # the page's websocket and files go with the cookie the page set
        async with session.get(f"{base}/static/js/textual.js") as script:
            assert script.status == 200
        async with session.ws_connect(f"{base.replace('http', 'ws')}/ws?width=120&height=40") as ws:
            await ws.send_json(["resize", {"width": 120, "height": 40}])
            received = b""
            for _ in range(200):  # bounded: the watch view starts and draws the dashboard
                message = await asyncio.wait_for(ws.receive(), 30)
                if message.type == aiohttp.WSMsgType.BINARY:
                    received += message.data
                if b"RUNNING" in received:
                    break
            assert b"RUNNING" in received, received[-2000:]  # the header of the watched job
    async with aiohttp.ClientSession() as fresh:  # no cookie, no token
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await fresh.ws_connect(f"{base.replace('http', 'ws')}/ws")
    assert refused.value.status == 403


def test_serve_refuses_a_folder_that_is_not_there(tmp_path: Path) -> None:
    result = tokenflow("serve", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert result.stderr == f"tokenflow serve: {tmp_path / 'nowhere'}: no such folder\n"


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (Debian: apt-get install chromium)")
async def test_a_browser_shows_the_dashboard(served, tmp_path: Path) -> None:
    """Chromium headless, driven over its DevTools protocol: the page draws the watched job; a screenshot of it."""
    url, _ = served
    assert CHROMIUM is not None
    port = free_port()
    browser = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
        + ["--window-size=1280,800", f"--remote-debugging-port={port}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    try:
        async with aiohttp.ClientSession() as session:
            page = await devtools_page(session, port)
            async with session.ws_connect(page, max_msg_size=0) as devtools:
                calls = iter(range(1, 10_000))

                async def call(method: str, **params: object) -> dict:
                    number = next(calls)
                    await devtools.send_json({"id": number, "method": method, "params": params})
                    for _ in range(10_000):  # bounded: events come between the answers
                        message = await asyncio.wait_for(devtools.receive_json(), 30)
                        if message.get("id") == number:
                            return message.get("result", {})
                    raise AssertionError(f"no answer to {method}")

                await call("Page.navigate", url=url)
                data = b""
                for _ in range(120):  # bounded: 60 s for the watch view to start and draw (it draws on a canvas)
                    await asyncio.sleep(0.5)
                    data = base64.b64decode((await call("Page.captureScreenshot", format="png"))["data"])
                    if len(data) > 30_000:  # the start page is about 13 kB; the dashboard's text is far more
                        break
        (tmp_path / "dashboard.png").write_bytes(data)
        assert data.startswith(b"\x89PNG") and len(data) > 30_000
    finally:
        browser.kill()
        browser.wait(30)


async def devtools_page(session: aiohttp.ClientSession, port: int) -> str:
    """The websocket address of the browser's page, once its DevTools answer (bounded: 30 s)."""
    for _ in range(300):
        try:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as answer:
                targets = await answer.json()
            pages = [t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page"]
            if pages:
                return str(pages[0])
        except aiohttp.ClientConnectorError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("chromium's DevTools did not answer")
