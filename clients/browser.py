"""Drive a page of ``kdkit web`` in a real browser: Debian's Chromium, headless, through chromium-driver (selenium).

Used by tests/web/test_web.py and benchmarks/web_latency.py:

    from browser import chromium, http_server
    with http_server(page_folder) as url, chromium() as browser:
        browser.open(url)                     # waits for the page: its timeline, or PageFailed with the page's error
        browser.classify("a fine film")       # window.kdkit.classify: label, probabilities, tokens, occlusion scores
        browser.requests()                    # every URL requested since the last call (Chrome's performance log)

- The page is served as the docs tell users to: ``python -m http.server`` in its folder (a subprocess on
  127.0.0.1 and a free port).
- Chromium runs with ``--host-resolver-rules`` that resolve no host but localhost: a page that tried to reach the
  internet fails there, and the request still shows in :meth:`Browser.requests` (the tests assert none leaves
  127.0.0.1). Selenium is given the driver's path, so it never downloads one (its "selenium manager" stays off).
- ``chromium`` and ``chromedriver`` come from Debian (``apt-get install chromium chromium-driver``; .ci/run does);
  ``KDKIT_CHROMIUM`` and ``KDKIT_CHROMEDRIVER`` name others.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser")
DRIVER_NAMES = ("chromedriver", "chromium-driver")
#: the browser window (and so the screenshots)
WINDOW = (1000, 860)


class PageFailed(RuntimeError):
    """The page showed its error box (the message is the box's text), or did not get ready in time."""


def _which(names: tuple[str, ...], variable: str) -> str | None:
    if os.environ.get(variable):
        return os.environ[variable]
    return next((found for name in names if (found := shutil.which(name))), None)


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    missing = [what for what, names, variable in (
        ("chromium", CHROMIUM_NAMES, "KDKIT_CHROMIUM"), ("chromium-driver", DRIVER_NAMES, "KDKIT_CHROMEDRIVER"),
    ) if _which(names, variable) is None]  # fmt: skip
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    return f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)" if missing else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def http_server(folder: Path, timeout: float = 20) -> Iterator[str]:
    """``python -m http.server`` serving ``folder`` on 127.0.0.1; yields the page's address."""
    port = _free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"python -m http.server did not start on port {port}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(timeout=10)


class Browser:
    """One headless Chromium window (selenium WebDriver) and the network requests its pages made."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def open(self, url: str, timeout: float = 120) -> dict[str, Any]:
        """Open the page and wait until it is ready (``window.kdkit.ready``); returns its timeline (ms since it
        was opened: ``ready``, and ``first_result`` when the address has ``?text=``). Raises :class:`PageFailed`
        with the text of the page's error box when it shows one."""
        self.driver.get(url)
        return dict(self.call("return await window.kdkit.ready;", timeout=timeout))

    def call(self, body: str, *args: Any, timeout: float = 120) -> Any:
        """Run an async function body in the page (``arguments`` are ``args``); its error becomes PageFailed."""
        self.driver.set_script_timeout(timeout)
        script = (
            "const done = arguments[arguments.length - 1];"
            f"(async function () {{ {body} }}).apply(null, Array.from(arguments).slice(0, -1))"
            ".then((value) => done({value}), (error) => done({error: String(error && error.message || error)}));"
        )
        result = self.driver.execute_async_script(script, *args)
        if "error" in result:
            raise PageFailed(self.error_text() or result["error"])
        return result.get("value")

    def classify(self, text: str, pair: str | None = None) -> dict[str, Any]:
        """``window.kdkit.classify``: what the page computes for one input, without showing it."""
        return dict(self.call("return await window.kdkit.classify(arguments[0], arguments[1]);", text, pair))

    def error_text(self) -> str:
        """The text of the page's error box ('' when hidden)."""
        script = "const box = document.getElementById('error'); return box && !box.hidden ? box.textContent : '';"
        return str(self.driver.execute_script(script))

    def requests(self) -> list[str]:
        """Every URL requested since the last call (Network.requestWillBeSent in Chrome's performance log)."""
        urls = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls

    def screenshot(self, path: Path) -> Path:
        self.driver.save_screenshot(str(path))
        return path


@contextlib.contextmanager
def chromium(window: tuple[int, int] = WINDOW) -> Iterator[Browser]:
    """A headless Chromium that can reach localhost only, with its performance (network) log on."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = browser_missing()
    if missing:
        raise RuntimeError(missing)
    options = webdriver.ChromeOptions()
    options.binary_location = str(_which(CHROMIUM_NAMES, "KDKIT_CHROMIUM"))
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-extensions", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", f"--window-size={window[0]},{window[1]}",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
    ):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium manager: never download a browser or driver
    driver = webdriver.Chrome(options=options, service=Service(str(_which(DRIVER_NAMES, "KDKIT_CHROMEDRIVER"))))
    try:
        yield Browser(driver)
    finally:
        driver.quit()
