"""longmul.explorables: the markup of the book's in-browser explorables, their presets, and the Python
decoding that the browser tests and chapter 3 compare the browser's answers with."""

import html
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longmul.evaluate import predict
from longmul.explorables import FALLBACK, KINDS, Preset, breaks_digit, explorable, greedy_digits
from longmul.hooks import Knockout
from longmul.saved import load_model
from longmul.task import Problem, random_problems


def settings_of(markup: str) -> dict:
    (data,) = re.findall(r'data-settings="([^"]*)"', markup)
    return json.loads(html.unescape(data))


@pytest.mark.parametrize("kind", KINDS)
def test_the_markup_names_its_kind_and_carries_its_settings(kind):
    markup = explorable(kind, a="1234", b="5678")._repr_html_()
    assert markup.startswith('<div class="longmul-explorable"') and f'data-kind="{kind}"' in markup
    assert settings_of(markup)["a"] == "1234" and settings_of(markup)["b"] == "5678"
    assert html.escape(FALLBACK) in markup  # what Jupyter shows, where the site's script is absent


@given(label=st.text(max_size=40))
@settings(max_examples=50, deadline=None)
def test_any_preset_label_survives_the_attribute_intact(label):
    preset = Preset(label, "aux", "2365", "4347", 3, (Knockout(1, 2, 13, [3, 8]),))
    markup = explorable("knockout", presets=[preset])._repr_html_()
    assert markup.count('data-settings="') == 1  # no quote in the label ends the attribute early
    (got,) = settings_of(markup)["presets"]
    assert got["label"] == label
    assert got["knockouts"] == [{"layer": 1, "head": 2, "query": 13, "key": [3, 8]}]


def test_knockout_positions_become_plain_json_numbers():
    preset = Preset("p", "aux", "2365", "4347", 3, (Knockout(np.int64(0), 1, np.int64(12), (np.int64(2), 7)),))
    assert preset.as_json()["knockouts"] == [{"layer": 0, "head": 1, "query": 12, "key": [2, 7]}]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: explorable("graph"), "unknown explorable kind 'graph'"),
        (lambda: explorable("multiply", a="123"), "must be a 4-digit number"),
        (lambda: explorable("multiply", model="aux"), "only a knockout explorable"),
        (lambda: explorable("knockout", digit=8), "digit must be 0-7"),
        (lambda: Preset("p", "aux", "2365", "4347", 3, ()).as_json(), "knocks out nothing"),
        (lambda: Preset("p", "aux", "2365", "43x7", 3, (Knockout(0, 0, 1, 0),)).as_json(), "operand b"),
        (lambda: Preset("p", "aux", "2365", "4347", -1, (Knockout(0, 0, 1, 0),)).as_json(), "digit must be 0-7"),
    ],
)
def test_bad_settings_are_refused_by_name(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.fixture(scope="module")
def tiny(tiny_sft_model):
    return load_model(tiny_sft_model).model


def test_greedy_digits_without_knockouts_are_predict_s(tiny):
    problems = random_problems(12, seed=3)
    assert greedy_digits(tiny, problems).tolist() == [predict(tiny, p).digits for p in problems]


def test_breaks_digit_means_right_intact_and_wrong_knocked_out(tiny):
    problems = random_problems(30, seed=5)
    # every key of the answer positions but the first: the model can only read position 0
    layers, heads = tiny.config.n_layer, tiny.config.n_head
    knock_all = [
        Knockout(l, h, q, list(range(1, q + 1))) for l in range(layers) for h in range(heads) for q in range(10, 18)
    ]
    truth = np.array([p.c_digits for p in problems])
    intact = greedy_digits(tiny, problems) == truth
    knocked = greedy_digits(tiny, problems, knock_all) == truth
    for k in range(8):
        assert (breaks_digit(tiny, problems, knock_all, k) == (intact[:, k] & ~knocked[:, k])).all()
    assert not breaks_digit(tiny, problems, [], 0).any()  # nothing knocked out: nothing breaks


def test_a_problem_of_another_size_is_refused(tiny):
    with pytest.raises(ValueError):
        greedy_digits(tiny, [Problem(123, 456, 3, 3)])
    with pytest.raises(ValueError, match="trained on 4x4 problems, got 3x3"):
        breaks_digit(tiny, [Problem(123, 456, 3, 3)], [], 0)
