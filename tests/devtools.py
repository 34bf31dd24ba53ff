"""Headless Chromium driven through its DevTools protocol (the Debian package; nothing downloaded).

Every request to a host is refused: the browser's proxy is a closed local port, so a page that
needs the network renders nothing.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import websocket

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One tab: evaluate JavaScript, send mouse events."""

    def __init__(self, url: str) -> None:
        self.socket = websocket.create_connection(url, timeout=60)
        self.sequence = 0

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.sequence += 1
        self.socket.send(json.dumps({"id": self.sequence, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.sequence:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited when it is a promise)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0) -> Any:
        """Poll ``expression`` until it is truthy (an exception counts as false: the page may still be
        loading); return its value."""
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            try:
                value = self.evaluate(expression)
            except RuntimeError as error:
                value, last = None, error
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"still false after {timeout} s: {expression} (last error: {last})")

    def mouse(self, kind: str, x: float, y: float, buttons: int = 0) -> None:
        button = "left" if kind in ("mousePressed", "mouseReleased") or buttons else "none"
        self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button=button, buttons=buttons, clickCount=1)


@contextmanager
def open_page(url: str, width: int = 1400, height: int = 900) -> Iterator[Page]:
    """``url`` in a fresh headless Chromium with no network."""
    if CHROMIUM is None:
        pytest.fail("chromium is not installed; `make test` installs it (Debian package chromium)")
    # the profile is removed once the whole process group (renderers, crash handler) is gone
    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                   f"--user-data-dir={profile}", "--remote-debugging-port=0", f"--window-size={width},{height}",
                   "about:blank"]  # fmt: skip
        browser = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            end = time.monotonic() + 60
            while not port_file.is_file() or not port_file.read_text().strip():
                if time.monotonic() > end or browser.poll() is not None:
                    raise RuntimeError("Chromium did not start its DevTools endpoint")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json") as response:
                target = next(t for t in json.load(response) if t["type"] == "page")
            page = Page(target["webSocketDebuggerUrl"])
            page.send("Page.enable")
            page.send("Page.navigate", url=url)
            page.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")
            yield page
            page.socket.close()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(browser.pid, signal.SIGKILL)
            browser.wait(timeout=30)
            time.sleep(0.5)  # let the killed children's files close
