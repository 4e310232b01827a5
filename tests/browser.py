"""Open a page in headless Chromium and report its console errors and broken images.

Drives Chromium over the DevTools protocol (a websocket, through aiohttp, already a
dependency of s3fs): the page is served over HTTP on 127.0.0.1 (as a browser sees a
published report), every console error, uncaught exception and failed load is
collected (``Runtime`` and ``Log`` domains), and after the load every ``<img>`` is checked
(``complete`` with a natural width). ``.ci/run`` installs Chromium with the system
package manager; the tests that need it skip when it is missing.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["chromium", "page_problems", "serve_folder"]

_CHECK_IMAGES = (
    "Array.from(document.images)"
    ".filter(i => !(i.complete && i.naturalWidth > 0))"
    ".map(i => i.getAttribute('src').slice(0, 80))"
)


def chromium() -> str | None:
    """Path of a Chromium (or Chrome) executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port) while in the block."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


async def _problems(ws_url: str, urls: list[str], timeout_s: float) -> dict[str, list[str]]:
    import aiohttp

    out: dict[str, list[str]] = {}
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        ident = 0

        async def call(method: str, params: dict | None = None, sid: str | None = None) -> dict:
            nonlocal ident
            ident += 1
            msg: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
            if sid:
                msg["sessionId"] = sid
            await ws.send_str(json.dumps(msg))
            mine = ident
            while True:
                reply = json.loads((await ws.receive(timeout=timeout_s)).data)
                _collect(reply)
                if reply.get("id") == mine:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})

        errors: list[str] = []
        state = {"loaded": False}

        def _collect(event: dict) -> None:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(
                    "console: "
                    + " ".join(
                        str(a.get("value", a.get("description"))) for a in params.get("args", [])
                    )
                )
            elif method == "Runtime.exceptionThrown":
                errors.append("exception: " + params["exceptionDetails"].get("text", ""))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                entry = params["entry"]
                errors.append(f"log: {entry.get('text')} {entry.get('url', '')}")
            elif method == "Page.loadEventFired":
                state["loaded"] = True

        for url in urls:
            target = await call("Target.createTarget", {"url": "about:blank"})
            attached = await call(
                "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
            )
            sid = attached["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                await call(f"{domain}.enable", sid=sid)
            errors.clear()
            state["loaded"] = False
            await call("Page.navigate", {"url": url}, sid=sid)
            deadline = time.monotonic() + timeout_s
            while not state["loaded"]:
                if time.monotonic() > deadline:
                    errors.append(f"no load event within {timeout_s} s")
                    break
                msg = await ws.receive(timeout=timeout_s)
                _collect(json.loads(msg.data))
            await asyncio.sleep(0.3)  # late console messages
            broken = await call(
                "Runtime.evaluate", {"expression": _CHECK_IMAGES, "returnByValue": True}, sid=sid
            )
            images = broken.get("result", {}).get("value", [])
            count = await call(
                "Runtime.evaluate",
                {"expression": "document.images.length", "returnByValue": True},
                sid=sid,
            )
            out[url] = [*errors, *(f"broken image: {src}" for src in images)]
            out[url + "#images"] = [str(count.get("result", {}).get("value"))]
            await call("Target.closeTarget", {"targetId": target["targetId"]})
    return out


def page_problems(urls: list[str], *, timeout_s: float = 30.0) -> dict[str, list[str]]:
    """Load each URL in one headless Chromium; return its problems (and image count).

    Returns ``{url: [problem, ...], url + "#images": [number of images]}``; a page
    without problems has an empty list.
    """
    exe = chromium()
    if exe is None:
        raise RuntimeError("no chromium executable on PATH")
    # chromium's helper processes may still write the profile after the main one exits
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [
                exe,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            ws_url = None
            deadline = time.monotonic() + timeout_s
            while ws_url is None:
                line = proc.stderr.readline()
                if "DevTools listening on" in line:
                    ws_url = line.split("DevTools listening on", 1)[1].strip()
                elif (not line and proc.poll() is not None) or time.monotonic() > deadline:
                    raise RuntimeError(f"chromium did not start (exit {proc.poll()})")
            return asyncio.run(_problems(ws_url, urls, timeout_s))
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
