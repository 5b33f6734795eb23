"""A page opened in headless Chromium (Debian's `chromium`, which `make setup` installs),
driven over the DevTools protocol: what it fetched, what it logged, what it rendered,
and a screenshot of the whole page."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = "chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
)


@dataclass
class Opened:
    """What a page did: requests it made, errors it raised or logged, and `evaluate`'s value."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    value: Any = None


class DevTools:
    """One page target's DevTools session: calls by id, events kept in arrival order."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = 0
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._ids += 1
        await self._socket.send_json({"id": self._ids, "method": method, "params": params})
        while True:
            message = await self._socket.receive_json()
            if message.get("id") == self._ids:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result
            self.events.append(message)

    async def wait_for(self, event: str) -> dict[str, Any]:
        while not any(e.get("method") == event for e in self.events):
            self.events.append(await self._socket.receive_json())
        return next(e for e in self.events if e.get("method") == event)


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[str]:
    """A headless Chromium with its profile in `profile`; yields its DevTools HTTP address.
    Stopped (its whole process group) on the way out."""
    if shutil.which(CHROMIUM) is None:
        raise RuntimeError("chromium is not installed: `make setup` installs it (apt-get)")
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit status {process.returncode})")
            await asyncio.sleep(0.1)
        yield f"http://127.0.0.1:{port_file.read_text().split()[0]}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


def _error(event: dict[str, Any]) -> str | None:
    """The event as one line when it is an error a page raised or logged."""
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.exceptionThrown":
        return f"exception: {json.dumps(params.get('exceptionDetails', {}))[:500]}"
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        return f"console.{params['type']}: {json.dumps(params.get('args', []))[:500]}"
    if method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
        return f"log: {params['entry'].get('text', '')}"
    if method == "Network.loadingFailed":
        return f"failed to load: {params.get('errorText', '')}"
    return None


async def open_page(page: Path, expression: str, screenshot: Path, profile: Path) -> Opened:
    """Open `page` from disk, wait for its load event, evaluate `expression` (a JSON value)
    in it and save a screenshot of the whole page."""
    opened = Opened()
    async with chromium(profile) as address, aiohttp.ClientSession() as http:
        async with http.get(f"{address}/json/list") as response:
            targets = await response.json()
        target = next(t for t in targets if t.get("type") == "page")
        async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as socket:
            tools = DevTools(socket)
            for domain in ("Runtime", "Log", "Page", "Network"):
                await tools.call(f"{domain}.enable")
            await tools.call(
                "Emulation.setDeviceMetricsOverride",
                width=1100,
                height=900,
                deviceScaleFactor=1,
                mobile=False,
            )
            tools.events.clear()  # what about:blank did is not the page's
            url = (await asyncio.to_thread(page.resolve)).as_uri()
            await tools.call("Page.navigate", url=url)
            await tools.wait_for("Page.loadEventFired")
            result = await tools.call("Runtime.evaluate", expression=expression, returnByValue=True)
            if "exceptionDetails" in result:
                raise RuntimeError(f"the check failed in the page: {result['exceptionDetails']}")
            opened.value = result["result"].get("value")
            size = (await tools.call("Page.getLayoutMetrics"))["cssContentSize"]
            shot = await tools.call(
                "Page.captureScreenshot",
                format="png",
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            )
            await asyncio.to_thread(screenshot.write_bytes, base64.b64decode(shot["data"]))
            for event in tools.events:
                if event.get("method") == "Network.requestWillBeSent":
                    opened.requests.append(event["params"]["request"]["url"])
                error = _error(event)
                if error is not None:
                    opened.errors.append(error)
    return opened
