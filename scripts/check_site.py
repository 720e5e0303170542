"""Open every page of the built book in headless Chromium, as a reader with no network would.

    .venv/bin/python scripts/check_site.py [--site _build/html] [--screenshots _build/screenshots]

Serves the site on 127.0.0.1 and, for every page:

* fails on JavaScript errors (console errors, uncaught exceptions), on requests that fail, and on any
  request that leaves the machine (every asset must be served by the site itself; such requests are
  blocked, so the check never touches the network);
* waits for every altair chart (``.longmul-chart``, see ``longmul.charts.render``) to draw, for the
  math to typeset (MathJax), for the embedded ipywidgets to render and for every in-browser explorable
  (``longmul.explorables``) to answer with the models it runs; pages with explorables are opened
  from ``file://`` too, where they must answer with no request beyond the site's files;
* switches the theme to dark mode and checks the charts draw again;
* saves full-page screenshots, light and dark, to the screenshots folder;
* measures how a reader meets the page: its height in screens (1280×900, folds closed), the charts
  drawn, every chart, table or image wider than the text column, raw ``$…$`` or ``\\command`` math
  left in the rendered text, and links to pages (or anchors) the site does not have.

It prints that as one table. Raw math and dead internal links are failures; so is a page taller
than ``--max-screens`` when that is given. Then it checks the search page finds a word, and that the
chapters offer their executed ``.ipynb`` for download. Launch and repository links must point to
``--repository-url`` when it is given (the build had a repository), and must not exist otherwise:
a reader is never sent to a repository that is not ours. Exits non-zero (listing every problem)
when anything fails.
Needs Chromium (Debian package ``chromium``, or ``--chromium PATH``) and the ``playwright`` package
(its own browser download is not used).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

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
VIEWPORT = {"width": 1280, "height": 900}
# Text that MathJax should have typeset: $…$ spans, or TeX commands such as \\approx, \\frac, \\hat.
RAW_MATH = re.compile(r"\$[^$\n]{1,200}\$|\\(?:frac|approx|hat|mathrm|text|sum|cdot|times|ln|le|ge|in|to)\b")

# Runs in the page: the reader's view of the article (folds closed, as the page opens).
LAYOUT_JS = """() => {
    const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
    const column = article.getBoundingClientRect();
    const skip = 'script, style, pre, code, mjx-container, .MathJax, textarea, .highlight';
    const wide = [];
    for (const el of article.querySelectorAll('.longmul-chart, table, img, svg, canvas, .cell_output iframe')) {
        if (el.closest('details:not([open])') || el.closest('mjx-container') || el.closest('.longmul-chart svg')) continue;
        const box = el.getBoundingClientRect();
        if (box.width === 0) continue;
        // a table in a scrolling wrapper still hides columns from the reader: count what it holds
        const width = Math.max(box.width, el.scrollWidth || 0);
        if (box.left + width > column.right + 2) {
            const label = el.classList.contains('longmul-chart') ? 'chart' : el.tagName.toLowerCase();
            wide.push(`${label} ${Math.round(width)} px wide in a ${Math.round(column.width)} px column`);
        }
    }
    const rawText = [];
    const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (node.parentElement && !node.parentElement.closest(skip)) rawText.push(node.textContent);
    }
    const links = [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'));
    return {
        screens: document.documentElement.scrollHeight / window.innerHeight,
        wide: wide,
        text: rawText.join(' '),
        links: links,
    };
}"""


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
            explorables: document.querySelectorAll('.longmul-explorable').length,
        })"""
    )
    checks = []
    if found["explorables"]:
        # an explorable loads its models when it comes near the viewport: bring each there
        for explorable in page.locator(".longmul-explorable").all():
            explorable.scroll_into_view_if_needed()
        checks.append(
            (
                "explorables answered",
                """() => [...document.querySelectorAll('.longmul-explorable')].every(el => el.dataset.state === 'ready')""",
            )
        )
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
                """() => [...document.querySelectorAll('[data-longmul-chart=error], .longmul-explorable .lm-message')]
                        .map(el => el.textContent).filter(Boolean)"""
            )
            problems.add(name, f"not all {label} within {TIMEOUT_MS / 1000:.0f} s {errors or ''}")
    return found


def check_explorables_from_file(context, site: Path, names: list[str], problems: Problems) -> None:
    """Open each page with an explorable from file://, as a reader who opens ``_build/html`` does: its
    explorables must answer with no error and no request beyond the site's files."""
    for name in names:
        page = context.new_page()
        watch(page, f"{name} (file://)", "file://", problems)
        page.goto((site / name).resolve().as_uri(), wait_until="load")
        for explorable in page.locator(".longmul-explorable").all():
            explorable.scroll_into_view_if_needed()
        try:
            page.wait_for_function(
                "() => [...document.querySelectorAll('.longmul-explorable')].every(el => el.dataset.state === 'ready')",
                timeout=TIMEOUT_MS,
            )
        except Exception:  # noqa: BLE001 - playwright's TimeoutError; report and go on
            messages = page.evaluate("() => [...document.querySelectorAll('.lm-message')].map(el => el.textContent)")
            problems.add(f"{name} (file://)", f"explorables did not answer within {TIMEOUT_MS / 1000:.0f} s {messages}")
        page.close()


def set_dark(page: Page) -> None:
    """Switch the theme the way a reader does: click the theme button until the page is dark."""
    for _ in range(3):
        if page.evaluate("() => document.documentElement.dataset.theme") == "dark":
            return
        page.locator(".theme-switch-button").first.click()
    raise RuntimeError("the theme button never switched to dark mode")


def check_page(page: Page, origin: str, site: Path, name: str, shots: Path, problems: Problems) -> dict:
    page.goto(f"{origin}/{name}", wait_until="load")
    found = wait_for_content(page, name, problems)
    found |= measure_layout(page, site, name, problems)
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


def dead_links(site: Path, name: str, hrefs: list[str]) -> list[str]:
    """The links of page ``name`` that point into the site at a page or anchor it does not have."""
    base = f"http://site/{name}"
    dead = []
    for href in dict.fromkeys(hrefs):
        url = urlparse(urljoin(base, href))
        if url.scheme not in ("http", "https") or url.hostname != "site":
            continue  # off-site, mailto:, javascript: ... (off-site requests are checked as requests)
        target = site / unquote(url.path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            dead.append(f"{href} (no such file)")
        elif url.fragment and target.suffix == ".html":
            html = target.read_text(encoding="utf-8", errors="replace")
            if f'id="{url.fragment}"' not in html and f"id='{url.fragment}'" not in html:
                dead.append(f"{href} (no anchor #{url.fragment})")
    return dead


def measure_layout(page: Page, site: Path, name: str, problems: Problems) -> dict:
    """The reader's view of a page: screens, charts wider than the column, raw math, dead links."""
    layout = page.evaluate(LAYOUT_JS)
    for wide in layout["wide"]:
        problems.add(name, f"wider than the text column: {wide}")
    raw = sorted(set(RAW_MATH.findall(layout["text"])))
    if raw:
        problems.add(name, f"raw math in the rendered text: {raw[:5]}")
    for link in dead_links(site, name, layout["links"]):
        problems.add(name, f"dead internal link: {link}")
    return {"screens": layout["screens"], "wide": len(layout["wide"]), "raw_math": len(raw)}


def check_chapter_extras(page: Page, name: str, repository_url: str | None, problems: Problems) -> None:
    """A notebook chapter: the executed .ipynb is downloadable; launch links only to our repository."""
    links = page.evaluate("() => [...document.querySelectorAll('a')].map(a => a.href)")
    ipynb = [u for u in links if u.endswith(".ipynb")]
    if not ipynb:
        problems.add(name, "no download link to the executed .ipynb")
    for url in ipynb:
        response = page.request.get(url)
        if response.status != 200 or b'"cells"' not in response.body():
            problems.add(name, f"download {url} gave HTTP {response.status}, not a notebook")
    launch = [u for u in links if urlparse(u).hostname not in (None, "127.0.0.1") and "tree/book/" in u]
    repository = [u for u in links if urlparse(u).hostname in ("github.com", "gitlab.com")]
    if repository_url is None:
        for url in launch + repository:
            problems.add(name, f"launch or repository link although the build had no repository URL: {url}")
    else:
        if not launch:
            problems.add(name, "no launch (Binder/JupyterHub) link")
        slug = urlparse(repository_url).path.strip("/")
        for url in repository:
            if slug not in url:
                problems.add(name, f"repository link to another repository than {repository_url}: {url}")


def check_search(page: Page, origin: str, problems: Problems) -> None:
    page.goto(f"{origin}/search.html?q={SEARCH_WORD}", wait_until="load")
    try:
        page.wait_for_function(
            "() => document.querySelectorAll('#search-results li, ul.search li').length > 0", timeout=TIMEOUT_MS
        )
    except Exception:  # noqa: BLE001
        problems.add("search.html", f"searching '{SEARCH_WORD}' found nothing")


def layout_table(summary: list[tuple[str, dict]]) -> str:
    """One row per page: what a reader meets at 1280×900 (a markdown table, to paste into notes)."""
    rows = [
        "| page | screens | charts | math | widgets | explorables | wider than column | raw math |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, found in summary:
        rows.append(
            f"| {name} | {found['screens']:.1f} | {found['charts']} | {found['math']} | {found['widgets']} "
            f"| {found.get('explorables', 0)} "
            f"| {found['wide']} | {found['raw_math']} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--screenshots", type=Path, default=ROOT / "_build" / "screenshots")
    parser.add_argument("--chromium", default=None, help="path to a Chromium binary")
    parser.add_argument(
        "--repository-url",
        default=None,
        help="the repository the build linked to (LONGMUL_REPOSITORY_URL); without it, no page may link to one",
    )
    parser.add_argument(
        "--max-screens", type=float, default=None, help="fail on a book page taller than this many screens"
    )
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
            context = browser.new_context(viewport=VIEWPORT, service_workers="block")
            for name in pages_of(args.site):
                page = context.new_page()
                watch(page, name, origin, problems)
                found = check_page(page, origin, args.site, name, args.screenshots, problems)
                if (args.site / "_sources" / name).with_suffix(".ipynb").is_file():  # a notebook chapter
                    check_chapter_extras(page, name, args.repository_url, problems)
                if args.max_screens and name.startswith("book/") and found["screens"] > args.max_screens:
                    problems.add(name, f"{found['screens']:.1f} screens, over the {args.max_screens:g} allowed")
                summary.append((name, found))
                page.close()
            with_explorables = [name for name, found in summary if found.get("explorables")]
            if not with_explorables:
                problems.add("site", "no page has an in-browser explorable (longmul.explorables)")
            check_explorables_from_file(context, args.site, with_explorables, problems)
            page = context.new_page()
            watch(page, "search.html", origin, problems)
            check_search(page, origin, problems)
            browser.close()
    finally:
        server.shutdown()
    print(layout_table(summary))
    print(f"screenshots: {args.screenshots}")
    if problems:
        print(f"\n{len(problems)} problem(s):")
        print("\n".join(f"- {p}" for p in dict.fromkeys(problems)))
        return 1
    print("site check: every page drew with no errors and no off-site requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
