"""Headless Chromium driven over the DevTools protocol (CDP), for the browser tests: the system's
``/usr/bin/chromium`` (Debian package ``chromium``), a websocket from the ``websockets`` package,
nothing downloaded. Loopback only; every wait is bounded."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM = os.environ.get("HEARTBEAT_CHROMIUM", "/usr/bin/chromium")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
    "--disable-dev-shm-usage", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
)


class CdpError(RuntimeError):
    pass


class Chromium:
    """One headless Chromium with one page; a context manager."""

    def __init__(self, width: int = 1400, height: int = 900, timeout_s: float = 30.0) -> None:
        self.width, self.height, self.timeout_s = width, height, timeout_s
        self._profile = Path(tempfile.mkdtemp(prefix="heartbeat-chromium-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._ws: ClientConnection | None = None
        self._closing = contextlib.ExitStack()
        self._ids = itertools.count(1)
        self.session: str | None = None
        self.exceptions: list[str] = []
        self.console_errors: list[str] = []

    def __enter__(self) -> Chromium:
        if not Path(CHROMIUM).exists():
            raise CdpError(f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)")
        self._proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self._profile}", f"--window-size={self.width},{self.height}",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, "TZ": "UTC", "LANG": "en_US.UTF-8"},
        )
        try:
            self._ws = self._closing.enter_context(
                connect(self._browser_url(), max_size=None, open_timeout=self.timeout_s))
            target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                self.call(f"{domain}.enable", session=True)
            self.call("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                             "deviceScaleFactor": 1, "mobile": False}, session=True)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self.call("Browser.close", timeout_s=5)
            with contextlib.suppress(Exception):
                self._closing.close()
            self._ws = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=10)
            self._proc = None
        shutil.rmtree(self._profile, ignore_errors=True)

    def _browser_url(self) -> str:
        active = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise CdpError(f"chromium exited with code {self._proc.returncode} at start")
            with contextlib.suppress(OSError, ValueError):
                port, path = active.read_text().split("\n")[:2]
                if port and path:
                    return f"ws://127.0.0.1:{int(port)}{path}"
            time.sleep(0.05)
        raise CdpError(f"chromium did not open its DevTools port within {self.timeout_s:.0f} s")

    # --- protocol --------------------------------------------------------------------------------

    def call(self, method: str, params: dict[str, Any] | None = None, session: bool = False,
             timeout_s: float | None = None) -> dict[str, Any]:
        assert self._ws is not None
        message: dict[str, Any] = {"id": next(self._ids), "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        self._ws.send(json.dumps(message))
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CdpError(f"no answer to {method} within {timeout_s or self.timeout_s:.0f} s")
            reply = json.loads(self._ws.recv(timeout=remaining))
            if reply.get("id") == message["id"]:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            self._event(reply)

    def _event(self, event: dict[str, Any]) -> None:
        params = event.get("params", {})
        if event.get("method") == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.exceptions.append(str(details.get("exception", {}).get("description") or details.get("text")))
        elif event.get("method") == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.console_errors.append(f"{params['entry'].get('url', '')}: {params['entry'].get('text')}")

    # --- page --------------------------------------------------------------------------------------

    def set_cookie(self, name: str, value: str, url: str) -> None:
        result = self.call("Network.setCookie", {"name": name, "value": value, "url": url, "httpOnly": True,
                                                 "sameSite": "Lax"}, session=True)
        if not result.get("success", True):
            raise CdpError(f"cookie {name} was refused for {url}")

    def navigate(self, url: str) -> None:
        result = self.call("Page.navigate", {"url": url}, session=True)
        if result.get("errorText"):
            raise CdpError(f"cannot open {url}: {result['errorText']}")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session=True)
        if "exceptionDetails" in result:
            raise CdpError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout_s: float | None = None, what: str | None = None) -> Any:
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        value = None
        while time.monotonic() < deadline:
            with contextlib.suppress(CdpError):
                value = self.evaluate(expression)
                if value:
                    return value
            time.sleep(0.1)
        raise CdpError(f"timed out waiting for {what or expression} (last value {value!r})")

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": size["width"],
                                                            "height": size["height"], "scale": 1})
        data = self.call("Page.captureScreenshot", params, session=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
