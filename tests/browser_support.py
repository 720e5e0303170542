"""What the headless-Chromium tests share: finding Chromium, serving a folder on 127.0.0.1, and
watching a page for JavaScript errors and for requests that leave its own files."""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
NEEDS_CHROMIUM = "needs Chromium (Debian: apt-get install chromium)"


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on a free local port; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def local_prefixes(url: str) -> tuple[str, ...]:
    """URL prefixes that count as the page's own files when it is opened at ``url``."""
    parts = urlsplit(url)
    own = "file://" if parts.scheme == "file" else f"{parts.scheme}://{parts.netloc}/"
    return (own, "blob:", "data:")


def watch(page, url: str, problems: list[str]) -> None:
    """Record in ``problems`` every console error, uncaught exception and request that leaves the files
    of the site at ``url`` (such requests are aborted: the test never touches the network)."""
    local = local_prefixes(url)

    def on_route(route):
        if route.request.url.startswith(local):
            route.continue_()
        else:
            problems.append(f"request leaves the page's files: {route.request.url}")
            route.abort()

    page.route("**/*", on_route)
    page.on("pageerror", lambda err: problems.append(f"uncaught JS error: {err}"))
    page.on("console", lambda msg: msg.type == "error" and problems.append(f"console error: {msg.text}"))
