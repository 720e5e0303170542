"""longmul-models.js in headless Chromium (issue 24): a page opened from file:// and the same page from a
local HTTP server answer as Python does, for a few problems per model and one knockout, with no
console error and no request leaving the page's own files."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from browser_support import CHROMIUM, NEEDS_CHROMIUM, serve, watch
from longmul.browser_assets import write_model_script
from longmul.evaluate import answer_digits, predict
from longmul.hooks import Knockout
from longmul.onnx_runtime import decode_model, torch_logits_fn
from longmul.saved import load_model
from longmul.shipped import MODEL_LABELS, shipped_dir
from longmul.task import problem_from_strings

ROOT = Path(__file__).resolve().parents[1]
PROBLEMS = [("2365", "4347"), ("9999", "9999"), ("1000", "1000"), ("4821", "7305")]
KNOCKOUT = Knockout(layer=0, head=1, query=12, key=[2, 7])  # changes the aux model's c2 and c3 of 2365 x 4347
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=NEEDS_CHROMIUM)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    for part in ("onnxruntime", "longmul"):
        shutil.copytree(ROOT / "book" / "_vendor" / part, site / "_static" / part)
    for name in MODEL_LABELS:
        directory = shipped_dir(ROOT / "models", name)
        if directory is None:
            pytest.skip(f"models/{name} is not shipped yet")
        write_model_script(directory, name, site / "_static" / "models" / f"{name}.js")
    shutil.copy(ROOT / "tests" / "browser" / "models.html", site / "index.html")
    return site


@pytest.fixture(scope="module")
def expected():
    """Python's digits for each request the page is sent."""
    requests, digits = [], []
    for name in sorted(MODEL_LABELS):
        model = load_model(shipped_dir(ROOT / "models", name)).model
        for a, b in PROBLEMS:
            requests.append({"model": name, "a": a, "b": b})
            digits.append(predict(model, problem_from_strings(a, b)).digits)
        knocked = decode_model(model, torch_logits_fn(model, [KNOCKOUT]), np.array([[2365, 4347]]))
        requests.append({"model": name, "a": "2365", "b": "4347", "knockouts": [KNOCKOUT.__dict__]})
        digits.append(answer_digits(knocked.generated, 8)[0].tolist())
    return requests, digits


@pytest.fixture(scope="module")
def server(site):
    with serve(site) as url:
        yield url


def answers_in_chromium(url: str, requests: list[dict]) -> tuple[list[dict], list[str]]:
    from playwright.sync_api import sync_playwright

    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        watch(page, url, problems)
        page.goto(url)
        page.wait_for_function("document.getElementById('status').textContent !== 'loading'", timeout=120_000)
        status = page.text_content("#status")
        answers = page.evaluate("(r) => window.runRequests(r)", requests) if status == "ready" else []
        browser.close()
    assert status == "ready", f"{status}; {problems}"
    return answers, problems


@pytest.mark.parametrize("scheme", ["file", "http"])
def test_the_page_answers_as_python(site, server, expected, scheme):
    requests, digits = expected
    url = (site / "index.html").as_uri() if scheme == "file" else f"{server}/index.html"
    answers, problems = answers_in_chromium(url, requests)
    assert not problems, problems
    assert [a.get("digits", a) for a in answers] == digits
    per_model = len(PROBLEMS) + 1
    aux = sorted(MODEL_LABELS).index("aux") * per_model
    assert digits[aux + len(PROBLEMS)] != digits[aux]  # the knockout changes an answer: it is not ignored
