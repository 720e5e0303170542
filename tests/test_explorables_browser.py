"""The book's explorables in headless Chromium (issue 24), on a page that holds them as a chapter does
(``longmul.browser_assets.write_explorable_page``), opened from file:// and from a local HTTP server:

* the multiply explorable's rendered digits equal ``longmul.evaluate.predict`` for every shipped model,
  on 3 fixed problems and 20 random ones;
* a knockout clicked in the knockout explorable, and its one-click preset, give the answer Python
  decodes under the same ``Knockout``;
* bad input gets a message in the widget; no console error and no request leaves the page's files;
* on a 390 px wide viewport the page does not scroll sideways (the widgets scroll inside).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from browser_support import CHROMIUM, NEEDS_CHROMIUM, serve, watch
from longmul.browser_assets import write_explorable_page
from longmul.evaluate import predict
from longmul.explorables import Preset, explorable, greedy_digits
from longmul.hooks import Knockout
from longmul.saved import load_model
from longmul.shipped import MODEL_LABELS, shipped_dir
from longmul.task import Problem, problem_from_strings, random_problems

ROOT = Path(__file__).resolve().parents[1]
FIXED = [("2365", "4347"), ("9999", "9999"), ("1000", "1000")]
RANDOM = [(str(p.a), str(p.b)) for p in random_problems(20, seed=24)]
CLICKED = Knockout(layer=0, head=1, query=12, key=2)  # one edge of the pair read for the aux model's c3
PRESET = Preset("Remove two edges", "aux", "2365", "4347", 3, (Knockout(0, 1, 12, 2), Knockout(0, 1, 12, 7)))
TIMEOUT_MS = 120_000
MULTIPLY = ".longmul-explorable[data-kind=multiply]"
KNOCKOUT = ".longmul-explorable[data-kind=knockout]"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=NEEDS_CHROMIUM)


@pytest.fixture(scope="module")
def models():
    out = {}
    for name in MODEL_LABELS:
        directory = shipped_dir(ROOT / "models", name)
        if directory is None:
            pytest.skip(f"models/{name} is not shipped yet")
        out[name] = load_model(directory).model
    return out


@pytest.fixture(scope="module")
def page_path(tmp_path_factory, models):
    return write_explorable_page(
        ROOT / "models",
        ROOT / "book" / "_vendor",
        tmp_path_factory.mktemp("site"),
        [explorable("multiply"), explorable("knockout", model="aux", digit=3, presets=[PRESET])],
    )


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def open_page(browser, url: str, width: int = 1000):
    """The page at ``url`` with both explorables ready, and the list its problems are recorded in."""
    problems: list[str] = []
    page = browser.new_page(viewport={"width": width, "height": 1200})
    watch(page, url, problems)
    page.goto(url)
    for widget in (MULTIPLY, KNOCKOUT):
        page.locator(widget).scroll_into_view_if_needed()
        page.wait_for_selector(f"{widget}[data-state=ready]", timeout=TIMEOUT_MS)
    return page, problems


def wait_ready(page, widget: str) -> str:
    """Wait until ``widget`` has finished its work; returns its state (ready, invalid or error)."""
    page.wait_for_function(
        "(w) => !['busy', 'loading'].includes(document.querySelector(w).dataset.state)", arg=widget, timeout=TIMEOUT_MS
    )
    return page.get_attribute(widget, "data-state")


def multiply(page, a: str, b: str) -> str:
    page.fill(f"{MULTIPLY} input[name=a]", a)
    page.fill(f"{MULTIPLY} input[name=b]", b)
    page.click(f"{MULTIPLY} button[type=submit]")
    return wait_ready(page, MULTIPLY)


def rendered_digits(page, name: str) -> list[int]:
    """The digits c0 … c7 the multiply explorable shows for model ``name``."""
    cells = page.locator(f"{MULTIPLY} tr[data-model={name}] td[data-k]")
    by_k = {int(c.get_attribute("data-k")): int(c.get_attribute("data-digit")) for c in cells.all()}
    return [by_k[k] for k in sorted(by_k)]


def knocked_digits(page) -> list[int]:
    cells = page.locator(f"{KNOCKOUT} td[data-row=knocked]")
    by_k = {int(c.get_attribute("data-k")): int(c.get_attribute("data-digit")) for c in cells.all()}
    return [by_k[k] for k in sorted(by_k)]


@pytest.fixture(scope="module")
def file_page(browser, page_path):
    page, problems = open_page(browser, page_path.as_uri())
    yield page, problems
    page.close()


def test_multiply_answers_as_predict_for_every_model(file_page, models):
    page, problems = file_page
    for a, b in FIXED + RANDOM:
        assert multiply(page, a, b) == "ready", page.text_content(f"{MULTIPLY} .lm-message")
        problem = problem_from_strings(a, b)
        for name, model in models.items():
            assert rendered_digits(page, name) == predict(model, problem).digits, (name, a, b)
    assert not problems, problems


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ("12a4", "4347", "not a whole number"),
        ("12345", "4347", "has 5 digits"),
        ("", "4347", "Type a number in both boxes"),
        ("-123", "4347", "negative"),
        ("0123", "4347", "starts with 0"),
        ("2365", "7", "has 1 digit:"),
    ],
)
def test_bad_input_gets_a_message_in_the_widget(file_page, a, b, message):
    page, problems = file_page
    assert multiply(page, a, b) == "invalid"
    assert message in page.text_content(f"{MULTIPLY} .lm-message")
    assert not problems, problems


def test_a_clicked_edge_knocks_out_as_python(file_page, models):
    page, problems = file_page
    page.select_option(f"{KNOCKOUT} select[name=model]", "aux")
    page.fill(f"{KNOCKOUT} input[name=a]", "2365")
    page.fill(f"{KNOCKOUT} input[name=b]", "4347")
    page.click(f"{KNOCKOUT} button[type=submit]")
    assert wait_ready(page, KNOCKOUT) == "ready"
    page.select_option(f"{KNOCKOUT} select[name=head]", f"{CLICKED.layer},{CLICKED.head}")
    page.click(f"{KNOCKOUT} .lm-token[data-position='{CLICKED.query}']")  # attend from the query
    page.click(f"{KNOCKOUT} .lm-bar[data-key='{CLICKED.key}']")  # knock out the edge to the key
    assert wait_ready(page, KNOCKOUT) == "ready", page.text_content(f"{KNOCKOUT} .lm-message")
    problem = problem_from_strings("2365", "4347")
    expected = greedy_digits(models["aux"], [problem], [CLICKED])[0].tolist()
    assert knocked_digits(page) == expected
    assert "Knocked out: L1H1 12←2" in page.text_content(f"{KNOCKOUT} .lm-chips")
    assert not problems, problems


def test_the_preset_knocks_out_as_python(file_page, models):
    page, problems = file_page
    page.click(f"{KNOCKOUT} .lm-presets button")
    assert wait_ready(page, KNOCKOUT) == "ready"
    problem = Problem(int(PRESET.a), int(PRESET.b), 4, 4)
    expected = greedy_digits(models[PRESET.model], [problem], list(PRESET.knockouts))[0]
    intact = predict(models[PRESET.model], problem).digits
    assert knocked_digits(page) == expected.tolist()
    assert expected[PRESET.digit] != intact[PRESET.digit]  # the preset is not a no-op: the digit breaks
    assert not problems, problems


def test_over_http_and_on_a_phone_nothing_errs_or_overflows(browser, page_path, models):
    with serve(page_path.parent) as base:
        page, problems = open_page(browser, f"{base}/index.html", width=390)
        assert multiply(page, "4821", "7305") == "ready"
        assert rendered_digits(page, "sft") == predict(models["sft"], problem_from_strings("4821", "7305")).digits
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        page.close()
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px at 390 px wide"
    assert not problems, problems


def test_every_answer_the_page_shows_is_scored_against_the_true_product(file_page):
    page, _ = file_page
    assert multiply(page, "2365", "4347") == "ready"
    for name in MODEL_LABELS:
        for cell in page.locator(f"{MULTIPLY} tr[data-model={name}] td[data-k]").all():
            digit, k = int(cell.get_attribute("data-digit")), int(cell.get_attribute("data-k"))
            right = digit == (2365 * 4347 // 10**k) % 10
            assert ("lm-right" in cell.get_attribute("class")) == right
