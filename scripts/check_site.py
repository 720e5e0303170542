"""Open every page of the built book in headless Chromium, as a reader with no network would.

    .venv/bin/python scripts/check_site.py [--site _build/html] [--screenshots _build/screenshots]

Serves the site on 127.0.0.1 and, for every page:

* fails on JavaScript errors (console errors, uncaught exceptions), on requests that fail, and on any
  request that leaves the machine (every asset must be served by the site itself; such requests are
  blocked, so the check never touches the network);
* waits for every altair chart (``.longmul-chart``, see ``longmul.charts.render``) to draw, for the
  math to typeset (MathJax), and for the embedded ipywidgets to render;
* switches the theme to dark mode and checks the charts draw again;
* saves full-page screenshots, light and dark, to the screenshots folder.

Then it checks the search page finds a word, the chapters offer their executed ``.ipynb`` for
download, and carry launch links. Exits non-zero (listing every problem) when anything fails.
Needs Chromium (Debian package ``chromium``, or ``--chromium PATH``) and the ``playwright`` package
(its own browser download is not used).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000
SEARCH_WORD = "multiplication"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # a page closed while its requests were in flight: not a problem of the site
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(site))
    server = QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def find_chromium(explicit: str | None) -> str:
    for candidate in (explicit, "chromium", "chromium-browser", "google-chrome"):
        if candidate and (path := shutil.which(candidate) or (Path(candidate).is_file() and candidate)):
            return str(path)
    sys.exit("check_site: no Chromium found: install Debian's 'chromium' package or pass --chromium PATH")


def pages_of(site: Path) -> list[str]:
    """Every HTML page of the book (relative paths), the redirecting index.html excepted."""
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if "_static" not in p.parts)
    return [p for p in pages if p != "index.html"]


class Problems(list):
    def add(self, page: str, what: str) -> None:
        self.append(f"{page}: {what}")


def watch(page: Page, name: str, origin: str, problems: Problems) -> None:
    """Record JS errors, failed requests and off-site requests (which are aborted)."""

    def on_route(route):
        if route.request.url.startswith(origin) or route.request.url.startswith("data:"):
            route.continue_()
        else:
            problems.add(name, f"request leaves the site: {route.request.url}")
            route.abort()

    page.route("**/*", on_route)
    page.on("pageerror", lambda err: problems.add(name, f"uncaught JS error: {err}"))
    page.on(
        "console",
        lambda msg: msg.type == "error" and problems.add(name, f"console error: {msg.text}"),
    )
    page.on(
        "requestfailed",
        lambda req: req.url.startswith(origin) and problems.add(name, f"request failed: {req.url} ({req.failure})"),
    )
    page.on(
        "response",
        lambda resp: resp.status >= 400 and problems.add(name, f"HTTP {resp.status}: {resp.url}"),
    )


def wait_for_content(page: Page, name: str, problems: Problems) -> dict:
    """Wait until charts, math and widgets are drawn; return what the page holds."""
    found = page.evaluate(
        """() => ({
            charts: document.querySelectorAll('.longmul-chart').length,
            math: document.querySelectorAll('.math').length,
            widgets: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
        })"""
    )
    checks = []
    if found["charts"]:
        checks.append(
            (
                "charts drawn",
                """() => [...document.querySelectorAll('.longmul-chart')].every(
                       el => el.getAttribute('data-longmul-chart') === 'drawn' && el.querySelector('svg, canvas'))""",
            )
        )
    if found["math"]:
        checks.append(
            (
                "math typeset",
                """() => [...document.querySelectorAll('.math')].every(el => el.querySelector('mjx-container'))""",
            )
        )
    if found["widgets"]:
        checks.append(
            (
                "widgets rendered",
                # every embedded widget view drew something (any widget type: boxes, text, images)
                """() => {
                       const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length;
                       return document.querySelectorAll('.jupyter-widgets').length >= views
                           && document.querySelectorAll('.jupyter-widgets.jupyter-widgets-error').length === 0;
                   }""",
            )
        )
    for label, predicate in checks:
        try:
            page.wait_for_function(predicate, timeout=TIMEOUT_MS)
        except Exception:  # noqa: BLE001 - playwright's TimeoutError; report and go on
            errors = page.evaluate(
                "() => [...document.querySelectorAll('[data-longmul-chart=error]')].map(el => el.textContent)"
            )
            problems.add(name, f"not all {label} within {TIMEOUT_MS / 1000:.0f} s {errors or ''}")
    return found


def set_dark(page: Page) -> None:
    """Switch the theme the way a reader does: click the theme button until the page is dark."""
    for _ in range(3):
        if page.evaluate("() => document.documentElement.dataset.theme") == "dark":
            return
        page.locator(".theme-switch-button").first.click()
    raise RuntimeError("the theme button never switched to dark mode")


def check_page(page: Page, origin: str, name: str, shots: Path, problems: Problems) -> dict:
    page.goto(f"{origin}/{name}", wait_until="load")
    found = wait_for_content(page, name, problems)
    stem = name.removesuffix(".html").replace("/", "__")
    page.screenshot(path=str(shots / f"{stem}.png"), full_page=True)
    try:
        set_dark(page)
    except Exception as err:  # noqa: BLE001
        problems.add(name, f"dark mode: {err}")
    else:
        wait_for_content(page, name, problems)
        page.wait_for_timeout(300)
        page.screenshot(path=str(shots / f"{stem}-dark.png"), full_page=True)
        # back to light for the next page, through the theme's own setting
        page.evaluate("() => { localStorage.setItem('mode', 'light'); localStorage.setItem('theme', 'light'); }")
    if name.startswith("book/") and page.locator("article h1").count() == 0:
        problems.add(name, "no page title (h1) in the article")
    return found


def check_chapter_extras(page: Page, origin: str, name: str, problems: Problems) -> None:
    """A notebook chapter: the executed .ipynb is downloadable and a launch link exists."""
    links = page.evaluate("() => [...document.querySelectorAll('a')].map(a => a.href)")
    ipynb = [u for u in links if u.endswith(".ipynb")]
    if not ipynb:
        problems.add(name, "no download link to the executed .ipynb")
    for url in ipynb:
        response = page.request.get(url)
        if response.status != 200 or b'"cells"' not in response.body():
            problems.add(name, f"download {url} gave HTTP {response.status}, not a notebook")
    if not any(urlparse(u).hostname not in (None, "127.0.0.1") and "tree/book/" in u for u in links):
        problems.add(name, "no launch (Binder/JupyterHub) link")


def check_search(page: Page, origin: str, problems: Problems) -> None:
    page.goto(f"{origin}/search.html?q={SEARCH_WORD}", wait_until="load")
    try:
        page.wait_for_function(
            "() => document.querySelectorAll('#search-results li, ul.search li').length > 0", timeout=TIMEOUT_MS
        )
    except Exception:  # noqa: BLE001
        problems.add("search.html", f"searching '{SEARCH_WORD}' found nothing")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--screenshots", type=Path, default=ROOT / "_build" / "screenshots")
    parser.add_argument("--chromium", default=None, help="path to a Chromium binary")
    args = parser.parse_args(argv)

    if not (args.site / "index.html").is_file():
        print(f"check_site: no built site at {args.site} (build it first: bash scripts/build_book.sh)")
        return 1
    shutil.rmtree(args.screenshots, ignore_errors=True)
    args.screenshots.mkdir(parents=True)
    chromium = find_chromium(args.chromium)
    server, origin = serve(args.site)
    problems = Problems()
    summary = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
            for name in pages_of(args.site):
                page = context.new_page()
                watch(page, name, origin, problems)
                found = check_page(page, origin, name, args.screenshots, problems)
                if (args.site / "_sources" / name).with_suffix(".ipynb").is_file():  # a notebook chapter
                    check_chapter_extras(page, origin, name, problems)
                summary.append(f"{name}: {found['charts']} charts, {found['math']} math, {found['widgets']} widgets")
                page.close()
            page = context.new_page()
            watch(page, "search.html", origin, problems)
            check_search(page, origin, problems)
            browser.close()
    finally:
        server.shutdown()
    print("\n".join(summary))
    print(f"screenshots: {args.screenshots}")
    if problems:
        print(f"\n{len(problems)} problem(s):")
        print("\n".join(f"- {p}" for p in dict.fromkeys(problems)))
        return 1
    print("site check: every page drew with no errors and no off-site requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
