"""Unit tests of longmul.charts: the offline altair renderer, the chart builders, the answer explorer."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("altair", reason="needs the 'book' extra: pip install -e '.[book]'")
pytest.importorskip("ipywidgets", reason="needs the 'book' extra: pip install -e '.[book]'")
pytest.importorskip("pandas", reason="needs the 'book' extra: pip install -e '.[book]'")
pytest.importorskip("vl_convert", reason="needs the 'book' extra: pip install -e '.[book]'")

import altair as alt
import numpy as np
import pandas as pd
import vl_convert
from hypothesis import given, settings
from hypothesis import strategies as st

from longmul.charts.accuracy import (
    COLUMN_WIDTH,
    LABEL_SIZE,
    SERIES_COLORS,
    carry_boundary_chart,
    dependency_chart,
    error_offset_chart,
    per_digit_chart,
    problem_grid_chart,
    running_sum_size_chart,
    series_color_scale,
)
from longmul.charts.explorer import answer_explorer, answer_table_html
from longmul.charts.puzzle import (
    MIN_SIGNED_ERRORS,
    answer_grid_frame,
    carry_boundary_frame,
    carry_boundary_summary,
    dependency_counts,
    dependency_peaks,
    error_kind,
    error_offset_frame,
    error_summary,
    label_with_cot,
    large_sum_summary,
    per_digit_frame,
    running_sum_size_frame,
    running_sum_stats,
    shortcut_accuracy,
    sign_verdict,
    wilson_interval,
)
from longmul.charts.render import chart_html, renderer
from longmul.evaluate import EvalResult, Prediction
from longmul.model import build_model, model_config_from_preset
from longmul.task import problem_from_strings, random_problems


def _spec_in(html: str) -> dict:
    """The spec argument of the chart's IIFE."""
    match = re.search(r"\}\)\((\{.*\}), \{\"actions\"", html, re.DOTALL)
    assert match, "spec not found in chart HTML"
    return json.loads(match.group(1).replace("<\\/", "</"))


def test_chart_html_draws_with_the_page_vega_embed():
    chart = alt.Chart(pd.DataFrame({"x": [1, 2], "y": [3, 4]})).mark_point().encode(x="x", y="y")
    html = chart_html(chart, div_id="chart-1")
    assert '<div id="chart-1" class="longmul-chart">' in html
    assert 'typeof window.vegaEmbed === "function"' in html
    assert _spec_in(html)["mark"]["type"] == "point"
    assert '"editor": false' in html  # no action that goes online


def test_chart_html_cannot_close_its_script_early():
    html = chart_html({"data": {"values": [{"label": "</script><script>alert(1)</script>"}]}, "mark": "point"})
    body = html.split('<script type="text/javascript">', 1)[1]
    assert body.count("</script>") == 1
    assert _spec_in(html)["data"]["values"][0]["label"].startswith("</script>")


def test_chart_ids_are_unique():
    assert chart_html({"mark": "point"}) != chart_html({"mark": "point"})


def test_renderer_plain_text_names_the_title():
    assert renderer({"title": "Accuracy", "mark": "point"})["text/plain"] == "<altair chart: Accuracy>"
    assert renderer({"title": {"text": "T"}, "mark": "point"})["text/plain"] == "<altair chart: T>"


def _per_digit_frame() -> pd.DataFrame:
    return pd.DataFrame([{"series": s, "k": k, "accuracy": 0.5} for s in ("SFT", "ICoT") for k in range(8)])


def test_per_digit_chart_orders_digits_and_marks_chance():
    spec = per_digit_chart(_per_digit_frame()).to_dict()
    lines = spec["layer"][1]
    assert lines["encoding"]["x"]["sort"] == [f"c{k}" for k in range(8)]
    assert lines["encoding"]["y"]["scale"]["domain"] == [0, 1]
    assert any(p.get("bind") == "legend" for p in spec.get("params", []) + lines.get("params", []))
    assert spec["layer"][0]["mark"]["type"] == "rule"


def _chapter_one_charts() -> dict[str, alt.TopLevelMixin]:
    """Chapter 1's charts on three models (one with the longest label the book gives a model), with
    enough errors at every middle digit for every panel to draw."""
    problems = random_problems(600, seed=21)
    target = np.array([p.c_digits for p in problems])
    rng = np.random.default_rng(0)

    def with_errors(rates):
        predicted = target.copy()
        for k, rate in enumerate(rates):
            wrong = rng.random(len(target)) < rate
            predicted[wrong, k] = (predicted[wrong, k] + rng.choice([1, 9, 2, 5], wrong.sum())) % 10
        return _result(problems, predicted)

    results = {
        label_with_cot("ICoT", 14): with_errors([0, 0, 0.01, 0.37, 0.05, 0.01, 0, 0]),
        "SFT": with_errors([0, 0, 0.58, 0.85, 0.9, 0.9, 0.5, 0.04]),
        "SFT + aux loss": with_errors([0, 0, 0, 0.01, 0.01, 0, 0, 0]),
    }
    per_digit = per_digit_frame(results)
    return {
        "per digit": per_digit_chart(per_digit, title="Which digits each model gets right (ICoT test set, n=1,000)"),
        "shortcuts": per_digit_chart(pd.concat([shortcut_accuracy(problems), per_digit[per_digit["series"] == "SFT"]])),
        "dependencies": dependency_chart(dependency_counts(problems[0])),
        "offsets": error_offset_chart(
            error_offset_frame(results),
            min_wrong=5,
            title="Model's digit − true digit (mod 10), wrong digits only (3,000 problems)",
        ),
        "carry boundary": carry_boundary_chart(carry_boundary_frame(results, problems)),
        "running-sum size": running_sum_size_chart(running_sum_size_frame(results, problems)),
        "answer grid": problem_grid_chart(answer_grid_frame(results, problems[:30])),
    }


def test_chapter_one_charts_fit_the_column_with_readable_labels():
    for name, chart in _chapter_one_charts().items():
        svg = vl_convert.vegalite_to_svg(chart.to_dict())
        width = float(re.search(r'<svg[^>]*? width="([\d.]+)"', svg).group(1))
        sizes = [float(x) for x in re.findall(r'font-size="([\d.]+)px"', svg)]
        assert width <= COLUMN_WIDTH, f"{name} chart is {width:.0f} px wide, over the column's {COLUMN_WIDTH}"
        assert sizes and min(sizes) >= LABEL_SIZE, f"{name} chart draws text at {min(sizes)} px"


def test_per_digit_chart_accepts_no_rows():
    spec = per_digit_chart(pd.DataFrame(columns=["series", "k", "accuracy"])).to_dict()
    assert spec["layer"][1]["encoding"]["x"]["sort"] == [f"c{k}" for k in range(8)]


def test_dependency_and_grid_charts_build():
    deps = pd.DataFrame([{"k": k, "kind": "own", "pairs": 1} for k in range(8)])
    assert dependency_chart(deps).to_dict()["mark"]["type"] == "bar"
    grid = pd.DataFrame(
        [
            {
                "model": "SFT",
                "problem": "2365 × 4347",
                "k": k,
                "predicted": d,
                "target": d,
                "running_sum": 0,
                "correct": True,
            }
            for k, d in enumerate((5, 5, 6, 0, 8, 2, 0, 1))
        ]
    )
    spec = problem_grid_chart(grid).to_dict()
    assert spec["facet"]["column"]["field"] == "model"


def _prediction(problem, digits):
    correct = [d == c for d, c in zip(digits, problem.c_digits)]
    return Prediction(problem=problem, digits=digits, correct=correct, tokens=[])


def test_answer_table_marks_right_and_wrong_digits():
    problem = problem_from_strings("2365", "4347")  # 10280655, c = 5 5 6 0 8 2 0 1
    html = answer_table_html(
        problem,
        {
            "ICoT": _prediction(problem, list(problem.c_digits)),
            "SFT <b>": _prediction(problem, [5, 5, 6, 9, 8, 2, 0, -1]),
        },
    )
    assert "2365 × 4347 = 10280655" in html
    assert "".join(re.findall(r">(\d+)</td>", html.split("running sum")[1].split("</tr>")[0])) == "".join(
        str(s) for s in problem.running_sums
    )
    assert "ICoT (all right)" in html
    assert "SFT &lt;b&gt; (2 wrong)" in html  # names are escaped
    assert html.count("✓") == 8 + 6 and html.count("✗") == 2
    assert "· ✗" in html  # a digit the model did not write


def test_answer_explorer_updates_and_reports_bad_input():
    model = build_model(model_config_from_preset("tiny"), seed=0)
    widget = answer_explorer({"tiny": model}, a="1234", b="5678")
    a_box, b_box = widget.children[0].children
    table = widget.children[-1]
    assert "running kernel" in widget.children[1].value  # frozen on the static page: the hint says so
    assert "1234 × 5678 = 7006652" in table.value and "tiny (" in table.value
    b_box.value = "9999"
    assert "1234 × 9999 = 12338766" in table.value
    a_box.value = "12a4"
    assert "digits 0-9" in table.value


@pytest.mark.parametrize("models", [{}])
def test_answer_explorer_without_models_shows_the_truth(models):
    widget = answer_explorer(models)
    assert "running sum" in widget.children[-1].value


# --------------------------------------------------------------------------- chapter 1's tables


def test_dependency_counts_for_4x4():
    deps = dependency_counts(problem_from_strings("2365", "4347"))
    own = deps[deps["kind"].str.startswith("in its own")]["pairs"].tolist()
    below = deps[deps["kind"].str.startswith("in lower")]["pairs"].tolist()
    assert own == [1, 2, 3, 4, 3, 2, 1, 0]
    assert below == [0, 1, 3, 6, 10, 13, 15, 16]
    # the middle column has the most pairs of its own; the top digits, through the carry, the most in all
    assert dependency_peaks(deps) == {"own": ([3], 4), "total": ([6, 7], 16)}


def test_a_model_still_writing_cot_is_labelled_so_and_keeps_its_colour():
    assert label_with_cot("ICoT", 0) == "ICoT"
    assert label_with_cot("ICoT", 12) == "ICoT (writes 12 CoT tokens)"
    with pytest.raises(ValueError, match="≥ 0"):
        label_with_cot("ICoT", -1)
    scale = series_color_scale([label_with_cot("ICoT", 12), "SFT (lr 1e-4)"]).to_dict()
    assert scale["range"][0] == SERIES_COLORS["ICoT"]
    assert scale["range"][1] not in SERIES_COLORS.values()  # only the CoT suffix is looked through


@settings(max_examples=20, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=15, unique=True))
def test_up_to_fifteen_other_series_get_colours_of_their_own(names):
    series = ["SFT", *(f"run {name}" for name in names)]  # "run …" is never a known series
    colors = series_color_scale(series).to_dict()["range"]
    assert colors[0] == SERIES_COLORS["SFT"]
    assert len(set(colors)) == len(series)  # no two series share a colour, known or not


def test_shortcuts_get_the_outer_digits_and_not_the_middle():
    acc = shortcut_accuracy(random_problems(2000, seed=1)).set_index(["series", "k"])["accuracy"]
    last, first = "shortcut: last two digits", "shortcut: first two digits"
    assert acc[last, 0] == 1.0 and acc[last, 1] == 1.0  # exact by construction
    assert acc[first, 7] > 0.9 and acc[first, 6] > 0.6
    for k in (3, 4):
        assert max(acc[last, k], acc[first, k]) < 0.2  # chance is 0.1


def test_running_sum_stats():
    problems = [problem_from_strings("2365", "4347"), problem_from_strings("9999", "9999")]
    stats = running_sum_stats(problems)
    assert stats.loc["largest ĉ_k", "k=3"] == max(p.running_sums[3] for p in problems)
    assert stats.loc["distinct carries r_k", "k=0"] == 1


def _result(problems, predicted):
    return EvalResult.from_digits(np.array(predicted), np.array([p.c_digits for p in problems]))


def test_per_digit_and_grid_frames():
    problems = [problem_from_strings("2365", "4347"), problem_from_strings("1000", "1000")]
    wrong_c3 = [list(p.c_digits) for p in problems]
    wrong_c3[0][3] = 9
    results = {"A": _result(problems, wrong_c3)}
    per_digit = per_digit_frame(results)
    assert per_digit.set_index("k").loc[3, "accuracy"] == 0.5
    grid = answer_grid_frame(results, problems[:1])
    assert len(grid) == 8 and grid["correct"].sum() == 7
    assert grid.loc[grid["k"] == 3, "predicted"].item() == 9
    with pytest.raises(ValueError, match="not the problem"):
        answer_grid_frame(results, problems[::-1])


def test_error_offsets_of_a_model_that_misses_the_carry():
    problems = random_problems(40, seed=3)
    off_by_one = [list(p.c_digits) for p in problems]
    for row in off_by_one[:30]:
        row[4] = (row[4] + 1) % 10  # c4 one too high on 30 problems
    for row in off_by_one[:10]:
        row[5] = (row[5] + 2) % 10  # c5 two too high on 10: parity right
    results = {"A": _result(problems, off_by_one)}
    frame = error_offset_frame(results).set_index(["k", "offset"])
    assert frame.loc[(4, 1), "count"] == 30 and frame.loc[(4, 1), "share"] == 1.0
    assert frame.loc[(4, -1), "count"] == 0
    assert frame.loc[(5, 2), "written_wrong"] == 10
    assert sorted(frame.loc[4].index) == [-4, -3, -2, -1, 1, 2, 3, 4, 5]
    summary = error_summary(results, min_wrong=1).set_index("k")
    assert list(summary.index) == [4, 5]
    assert summary.loc[4, "off by ±1"] == 1.0 and summary.loc[4, "error rate"] == 30 / 40
    assert summary.loc[5, "off by an even amount"] == 1.0 and summary.loc[5, "off by ±1"] == 0.0
    assert summary["looks like"].tolist() == ["carry errors (±1)", "parity right"]
    spec = error_offset_chart(error_offset_frame(results), min_wrong=20).to_dict()
    shown = {row["k"] for row in next(iter(spec["datasets"].values()))}
    assert shown == {4}  # c5 has 10 wrong answers, fewer than min_wrong
    perfect = _result(problems, [list(p.c_digits) for p in problems])
    spec = error_offset_chart(error_offset_frame({**results, "perfect": perfect}), min_wrong=20).to_dict()
    assert [panel["title"] for panel in spec["hconcat"]] == ["A"]  # nothing to show: no panel


def test_missing_digits_are_errors_without_an_offset():
    problems = random_problems(40, seed=4)
    predicted = [list(p.c_digits) for p in problems]
    for row in predicted[:20]:
        row[4] = (row[4] + 1) % 10  # c4 one too high on 20 problems …
    for row in predicted[20:30]:
        row[4] = -1  # … and not written at all on 10
    results = {"A": _result(problems, predicted)}
    summary = error_summary(results, min_wrong=1).set_index("k")
    assert summary.loc[4, "wrong"] == 30 and summary.loc[4, "missing"] == 10
    assert summary.loc[4, "error rate"] == 30 / 40  # not 20 / 40: a missing digit is not right
    assert summary.loc[4, "off by ±1"] == 1.0  # of the 20 written wrong
    assert error_offset_frame(results).set_index(["k", "offset"]).loc[(4, 1), "written_wrong"] == 20
    boundary = carry_boundary_summary(results, problems, min_wrong=1).set_index("k")
    assert boundary.loc[4, "wrong"] == summary.loc[4, "wrong"]  # one meaning of "wrong" in both tables
    assert boundary.loc[4, "±1 errors"] == 20
    only_missing = [list(p.c_digits) for p in problems]
    for row in only_missing[:25]:
        row[2] = -1
    assert error_summary({"A": _result(problems, only_missing)}, min_wrong=1).empty  # no offset to share out


def test_carry_boundary_frame_and_summary():
    problems = random_problems(400, seed=8)
    predicted = [list(p.c_digits) for p in problems]
    for row, p in zip(predicted, problems):
        if p.running_sums[3] % 10 == 0:
            row[4] = (row[4] - 1) % 10  # the carry into c4 misjudged where ĉ3 ends in 0
    results = {"A": _result(problems, predicted)}
    frame = carry_boundary_frame(results, problems)
    c4 = frame[frame["k"] == 4].set_index(["residue", "kind"])
    ends_in_zero = sum(p.running_sums[3] % 10 == 0 for p in problems)
    assert c4.loc[(0, "one too small"), "count"] == ends_in_zero and c4.loc[(0, "one too small"), "rate"] == 1.0
    assert c4["count"].sum() == ends_in_zero
    assert set(frame["k"]) == set(range(1, 8))
    summary = carry_boundary_summary(results, problems, min_wrong=1).set_index("k")
    assert list(summary.index) == [4] and summary.loc[4, "sign as a carry predicts"] == 1.0
    assert summary.loc[4, "±1 errors"] == ends_in_zero
    spec = carry_boundary_chart(frame, digits=(3, 4)).to_dict()
    assert spec["facet"]["column"]["sort"] == ["c3", "c4"]
    with pytest.raises(ValueError, match="covers 400 problems"):
        carry_boundary_frame(results, problems[:10])


def test_running_sum_size_frame_summary_and_chart():
    problems = random_problems(600, seed=13)
    tail = [list(p.c_digits) for p in problems]
    for row, p in zip(tail, problems):
        if p.running_sums[3] >= 150:
            row[3] = (row[3] + 5) % 10  # c3 wrong only where ĉ3 is large
    guesses = np.random.default_rng(3).integers(0, 10, size=(len(problems), 8))
    results = {"tail": _result(problems, tail), "guess": _result(problems, guesses)}
    frame = running_sum_size_frame(results, problems, width=50)
    c3 = frame[(frame["model"] == "tail") & (frame["k"] == 3)].set_index("low")
    assert c3.loc[:100, "wrong"].sum() == 0 and (c3.loc[150:, "rate"] == 1).all()
    assert c3.loc[150, "bin"] == "150–199" and c3.loc[150, "high"] == 199
    assert frame.groupby(["model", "k"])["problems"].sum().eq(len(problems)).all()
    assert (frame["problems"] > 0).all()  # empty bins are left out
    summary = large_sum_summary(results, problems, top=0.1, min_wrong=1).set_index(["model", "k"])
    threshold = summary.loc[("tail", 3), "large ĉ_k from"]
    c3_sums = np.array([p.running_sums[3] for p in problems])
    expected = (c3_sums >= threshold).sum() / (c3_sums >= 150).sum()  # the errors are where ĉ3 ≥ 150
    assert list(summary.loc["tail"].index) == [3] and summary.loc[("tail", 3), "share of errors"] == expected
    assert summary.loc[("guess", 3), "share of errors"] == pytest.approx(
        summary.loc[("guess", 3), "share of problems"], abs=0.06
    )
    assert large_sum_summary(results, problems, min_wrong=10**6).empty  # no digit has that many errors
    spec = running_sum_size_chart(frame, digits=(3, 4)).to_dict()
    assert spec["facet"]["column"]["sort"] == ["c3", "c4"]
    with pytest.raises(ValueError, match="covers 600 problems"):
        running_sum_size_frame(results, problems[:10])
    with pytest.raises(ValueError, match="at least 1"):
        running_sum_size_frame(results, problems, width=0)


@pytest.mark.parametrize(
    ("carry", "even", "kind"),
    [(0.9, 0.05, "carry errors (±1)"), (0.0, 1.0, "parity right"), (2 / 9, 4 / 9, "guesses"), (0.5, 0.3, "mixed")],
)
def test_error_kind(carry, even, kind):
    assert error_kind(carry, even) == kind


def test_wilson_interval():
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    low, high = wilson_interval(20, 20)
    assert high == 1.0 and 0.8 < low < 0.85  # stays inside [0, 1], unlike share ± 1.96 se
    with pytest.raises(ValueError, match="n > 0"):
        wilson_interval(0, 0)


@pytest.mark.parametrize(
    ("carry_signed", "signed_errors", "verdict"),
    [
        (90, 100, "as a carry predicts"),  # a clear majority
        (20, 30, "coin toss"),  # 67%, but 30 errors cannot tell that from 50%
        (52, 100, "coin toss"),
        (10, 100, "against the carry"),
        (MIN_SIGNED_ERRORS - 1, MIN_SIGNED_ERRORS - 1, "too few"),  # all one way, but too few
        (0, 0, "too few"),
    ],
)
def test_sign_verdict(carry_signed, signed_errors, verdict):
    assert sign_verdict(carry_signed, signed_errors) == verdict


def test_carry_boundary_summary_judges_the_sign_of_the_errors():
    problems = random_problems(400, seed=9)
    predicted = [list(p.c_digits) for p in problems]
    for row, p in zip(predicted, problems):
        if p.running_sums[3] % 10 <= 4:  # c4's carry comes from ĉ3
            row[4] = (row[4] - 1) % 10  # one too small in the lower half of the decade: the carry's sign
        if p.running_sums[4] % 10 in (3, 4):  # c5's from ĉ4
            row[5] = (row[5] + 1) % 10  # one too large where a misjudged carry would make it too small …
        if p.running_sums[4] % 10 in (5, 6):
            row[5] = (row[5] - 1) % 10  # … and the other way round: against the carry
    for row in predicted[:5]:
        row[6] = (row[6] + 1) % 10  # five ±1 errors only: too few to judge
    summary = carry_boundary_summary({"A": _result(problems, predicted)}, problems, min_wrong=1).set_index("k")
    assert summary.loc[4, "sign"] == "as a carry predicts"
    assert summary.loc[5, "sign"] == "against the carry" and summary.loc[5, "sign as a carry predicts"] == 0.0
    assert summary.loc[6, "±1 errors"] == 5 and summary.loc[6, "sign"] == "too few"


def test_round_floats_cuts_floats_only():
    import pandas as pd

    from longmul.charts.frames import round_floats

    df = pd.DataFrame({"x": [0.123456, float("nan"), 12345.678], "k": [1, 2, 3], "name": ["a", "b", "c"]})
    out = round_floats(df)
    assert out["x"].iloc[0] == 0.1235 and pd.isna(out["x"].iloc[1]) and out["x"].iloc[2] == 12350.0
    assert out["k"].tolist() == [1, 2, 3] and out["name"].tolist() == ["a", "b", "c"]
    assert round_floats(df, 2)["x"].iloc[0] == 0.12
    assert df["x"].iloc[0] == 0.123456  # the input is left as it was
