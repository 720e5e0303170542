"""The in-browser explorables' speed, in headless Chromium on this machine (issue 24).

    python benchmarks/browser.py                       # models/, 20 answers and 20 knockouts
    python benchmarks/browser.py --models models --n 50 --chromium /usr/bin/chromium
    python benchmarks/browser.py --screenshots benchmarks/screenshots   # also photograph the widgets

Writes a page with both explorables (``longmul.browser_assets.write_explorable_page``), opens it from
``file://`` and prints:

* the time from the start of page load to the first answer on screen (onnxruntime-web's WebAssembly
  compiled, every shipped model loaded, the opening problem answered by all of them);
* the median time per answer (one problem, every shipped model decoding greedily in its own format);
* the median time per knockout (the knockout explorable's intact answer, its answer with one edge
  knocked out, and the teacher-forced logit change: ``longmulModels.Model.knockoutEffect``).

The times are the widgets' own (``data-first-answer-ms``, ``data-last-ms``, from ``performance.now()``).
With ``--screenshots DIR`` it then photographs both widgets in use (9999 × 9999; the knockout widget
after a click on its first knocked-out edge) at 1000 px, and the page at a phone's 390 px.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from longmul.browser_assets import write_explorable_page
from longmul.explorables import explorable
from longmul.task import random_problems

ROOT = Path(__file__).resolve().parents[1]
MULTIPLY = ".longmul-explorable[data-kind=multiply]"
KNOCKOUT = ".longmul-explorable[data-kind=knockout]"
TIMEOUT_MS = 300_000


def wait_done(page, widget: str) -> None:
    page.wait_for_function(
        "(w) => !['busy', 'loading'].includes(document.querySelector(w).dataset.state)", arg=widget, timeout=TIMEOUT_MS
    )
    state = page.get_attribute(widget, "data-state")
    if state != "ready":
        raise RuntimeError(f"{widget} ended in state {state}: {page.text_content(widget + ' .lm-message')}")


def photograph(browser, page_url: str, out: Path) -> list[Path]:
    """Both widgets in use at 1000 px wide, and the multiply widget on a 390 px wide page."""
    out.mkdir(parents=True, exist_ok=True)
    shots = []
    for width in (1000, 390):
        page = browser.new_page(viewport={"width": width, "height": 1600})
        page.goto(page_url)
        wait_done(page, MULTIPLY)
        page.fill(f"{MULTIPLY} input[name=a]", "9999")
        page.fill(f"{MULTIPLY} input[name=b]", "9999")
        page.click(f"{MULTIPLY} button[type=submit]")
        wait_done(page, MULTIPLY)
        if width == 390:
            shots.append(out / "explorables-390px.png")
            page.screenshot(path=str(shots[-1]), full_page=True)
        else:
            shots.append(out / "multiply.png")
            page.locator(MULTIPLY).screenshot(path=str(shots[-1]))
            wait_done(page, KNOCKOUT)
            page.select_option(f"{KNOCKOUT} select[name=head]", "0,1")
            page.click(f"{KNOCKOUT} .lm-token[data-position='12']")
            page.click(f"{KNOCKOUT} .lm-bar[data-key='7']")
            wait_done(page, KNOCKOUT)
            shots.append(out / "knockout.png")
            page.locator(KNOCKOUT).screenshot(path=str(shots[-1]))
        page.close()
    return shots


def measure(page_url: str, chromium: str, n: int, screenshots: Path | None = None) -> dict:
    from playwright.sync_api import sync_playwright

    problems = random_problems(n, seed=6)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 1600})
        page.goto(page_url)
        wait_done(page, MULTIPLY)
        first_answer_ms = float(page.get_attribute(MULTIPLY, "data-first-answer-ms"))
        answers = []
        for problem in problems:
            page.fill(f"{MULTIPLY} input[name=a]", str(problem.a))
            page.fill(f"{MULTIPLY} input[name=b]", str(problem.b))
            page.click(f"{MULTIPLY} button[type=submit]")
            wait_done(page, MULTIPLY)
            answers.append(float(page.get_attribute(MULTIPLY, "data-last-ms")))
        wait_done(page, KNOCKOUT)
        page.select_option(f"{KNOCKOUT} select[name=head]", "1,0")
        knockouts = []
        for i in range(n):
            # one layer-2 edge from the position predicting the chosen digit, to a different key each time
            page.click(f"{KNOCKOUT} button:text('Clear knockouts')")
            wait_done(page, KNOCKOUT)
            page.click(f"{KNOCKOUT} .lm-bar[data-key='{i % 10}']")
            wait_done(page, KNOCKOUT)
            knockouts.append(float(page.get_attribute(KNOCKOUT, "data-last-ms")))
        models = page.locator(f"{MULTIPLY} tr[data-model]").count()
        shots = photograph(browser, page_url, screenshots) if screenshots else []
        browser.close()
    return {
        "models": models,
        "first_answer_ms": first_answer_ms,
        "answer_ms": statistics.median(answers),
        "knockout_ms": statistics.median(knockouts),
        "screenshots": shots,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="the shipped models' folder")
    parser.add_argument("--n", type=int, default=20, help="answers and knockouts timed (default 20)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    parser.add_argument("--screenshots", type=Path, default=None, help="photograph the widgets in use into this folder")
    args = parser.parse_args(argv)
    if not args.chromium:
        parser.error("Chromium not found: install it (Debian: apt-get install chromium) or pass --chromium PATH")
    if args.n < 1:
        parser.error(f"--n must be at least 1, got {args.n}")
    with tempfile.TemporaryDirectory() as site:
        page = write_explorable_page(
            args.models, ROOT / "book" / "_vendor", site, [explorable("multiply"), explorable("knockout", model="aux")]
        )
        result = measure(page.as_uri(), args.chromium, args.n, args.screenshots)
    print(f"headless Chromium, file:// page, {result['models']} models, onnxruntime-web (WebAssembly, 1 thread)")
    print(f"page load to first answer:  {result['first_answer_ms']:8.0f} ms")
    print(f"median per answer (all {result['models']} models): {result['answer_ms']:8.1f} ms   (n={args.n})")
    print(f"median per knockout:        {result['knockout_ms']:8.1f} ms   (n={args.n})")
    for shot in result["screenshots"]:
        print(f"screenshot: {shot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
