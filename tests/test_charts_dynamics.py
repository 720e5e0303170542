"""Unit tests of longmul.charts.dynamics: the training-dynamics charts and the history widget, on
synthetic histories."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("altair", reason="needs the 'book' extra: pip install -e '.[book]'")
pytest.importorskip("pandas", reason="needs the 'book' extra: pip install -e '.[book]'")
pytest.importorskip("vl_convert", reason="needs the 'book' extra: pip install -e '.[book]'")

import vl_convert

from longmul import dynamics as dyn
from longmul.charts.accuracy import COLUMN_WIDTH, LABEL_SIZE
from longmul.charts.dynamics import (
    DIGIT_COLORS,
    accuracy_curves_chart,
    aux_error_chart,
    exact_match_chart,
    history_explorer,
    history_figure,
    loss_and_gradient_chart,
    loss_curves_chart,
    step_slider_chart,
    sweep_comparison_chart,
)
from test_dynamics import synthetic_rows, write_history

DIGITS = [f"c{k}" for k in range(8)]


@pytest.fixture
def runs(tmp_path):
    out = {}
    for name, last in (("SFT", 4_000), ("SFT + aux loss", 2_000)):
        out[name] = dyn.load_run(write_history(tmp_path / f"{name}.jsonl", synthetic_rows(last)), name=name)
    return out


def _params(spec: dict) -> dict:
    """Every param of a spec, top level and in its layers / concatenated views, by name."""
    found = {}
    stack = [spec]
    while stack:
        node = stack.pop()
        for p in node.get("params", []):
            found[p["name"]] = p
        for key in ("layer", "hconcat", "vconcat"):
            stack.extend(node.get(key, []))
        if "spec" in node:
            stack.append(node["spec"])
    return found


def _dataset(spec: dict) -> list[dict]:
    (values,) = [v for v in spec["datasets"].values() if v and "step" in v[0] and "digit" in v[0]]
    return values


def test_loss_curves_have_a_run_selector_and_a_digit_legend(runs):
    rows = dyn.digit_rows(runs, max_points=30)
    stages = [{"run": "SFT", "step": 600, "removed": 8}]
    spec = loss_curves_chart(rows, stages).to_dict()
    params = _params(spec)
    run_param = params["run_choice"]
    assert run_param["bind"]["input"] == "radio" and run_param["bind"]["options"] == ["SFT", "SFT + aux loss"]
    assert run_param["value"] == "SFT"
    assert any(p.get("bind") == "legend" for p in params.values())
    lines = spec["layer"][1]
    assert lines["encoding"]["color"]["scale"] == {"domain": DIGITS, "range": DIGIT_COLORS}
    assert lines["transform"] == [{"filter": "(datum.run === run_choice)"}]
    assert spec["layer"][0]["mark"]["type"] == "rule"  # ln 10
    assert len(spec["layer"]) == 3  # the stage rules
    values = _dataset(spec)
    assert {"run", "step", "digit", "loss"} <= set(values[0])
    assert "step_from" not in values[0]  # only what the chart uses goes into the page
    log_spec = loss_curves_chart(rows, log=True).to_dict()
    assert log_spec["layer"][1]["encoding"]["y"]["scale"]["type"] == "log"


def test_loss_values_are_rounded_for_the_page(runs):
    values = _dataset(loss_curves_chart(dyn.digit_rows(runs)).to_dict())
    assert all(len(repr(v["loss"])) <= 12 for v in values)


def test_the_hero_has_a_gradient_heatmap_over_a_loss_panel_per_run(runs, tmp_path):
    other = dyn.load_run(write_history(tmp_path / "other.jsonl", synthetic_rows(1_000)), name="ICoT")
    rows = dyn.digit_rows([*runs.values(), other], max_points=10)
    spec = loss_and_gradient_chart(rows, ["SFT", "SFT + aux loss"]).to_dict()
    heats, losses = (row["hconcat"] for row in spec["vconcat"])
    assert [h["title"]["text"] for h in heats] == ["SFT", "SFT + aux loss"]
    for run, heat, loss in zip(["SFT", "SFT + aux loss"], heats, losses):
        assert heat["transform"] == [{"filter": f"(datum.run === '{run}')"}]
        enc = heat["encoding"]
        assert enc["x"]["field"] == "step_from" and enc["x2"]["field"] == "step" and enc["y"]["sort"] == DIGITS
        assert enc["color"]["field"] == "grad_shown" and enc["color"]["scale"]["type"] == "log"
        rule, lines = loss["layer"]
        assert _data(spec, rule)[0]["loss"] == pytest.approx(dyn.LN10)
        assert lines["encoding"]["y"]["scale"]["domain"] == [0, 3]
        assert lines["encoding"]["color"]["scale"] == {"domain": DIGITS, "range": DIGIT_COLORS}
    # one colour scale for the gradient norms of both runs, another for the digits
    assert spec["resolve"]["scale"]["color"] == "independent" and "resolve" not in spec["vconcat"][0]
    assert [p.get("bind") for p in _params(spec).values()] == ["legend"]  # one digit legend for both panels
    assert {v["run"] for v in _dataset(spec)} == {"SFT", "SFT + aux loss"}  # only the runs drawn
    with pytest.raises(ValueError, match=r"no rows for run\(s\) \['aux'\]"):
        loss_and_gradient_chart(rows, ["SFT", "aux"])


# Per run, the last step at or before the slider; before a run's first log, its first step (the
# largest negated step is the smallest step).
SLIDER_TRANSFORMS = [
    {"calculate": "datum.step <= at_step ? datum.step : -datum.step", "as": "shown"},
    {"joinaggregate": [{"op": "max", "field": "shown", "as": "best"}], "groupby": ["run"]},
    {"filter": "datum.shown == datum.best"},
]


def test_step_slider_picks_the_last_step_at_or_before_the_slider(runs):
    spec = step_slider_chart(dyn.digit_rows(runs, max_points=20)).to_dict()
    slider = _params(spec)["at_step"]
    assert slider["bind"]["input"] == "range" and slider["value"] == 4_000
    # from the first bin's end (aux's 21 logs pooled in pairs: steps 1 and 100) to the last step, in 200 steps
    assert (slider["bind"]["min"], slider["bind"]["max"], slider["bind"]["step"]) == (100, 4_000, (4_000 - 100) // 200)
    loss_panel, grad_panel = spec["hconcat"]
    assert loss_panel["layer"][1]["transform"] == SLIDER_TRANSFORMS
    assert grad_panel["transform"] == SLIDER_TRANSFORMS
    assert loss_panel["layer"][1]["encoding"]["x"]["sort"] == DIGITS
    assert grad_panel["encoding"]["color"]["sort"] == ["SFT", "SFT + aux loss"]


def test_accuracy_curves(runs):
    spec = accuracy_curves_chart(dyn.eval_rows(runs)).to_dict()
    assert _params(spec)["run_choice"]["bind"]["options"] == ["SFT", "SFT + aux loss"]
    assert spec["layer"][1]["encoding"]["y"]["scale"]["domain"] == [0, 1]


def test_sweep_comparison_picks_a_digit_and_dashes_the_control():
    rows = [
        {"run": run, "target": target, "step": step, "digit": digit, "accuracy": 0.5}
        for run, target in (("none", "no aux loss"), ("ref", "running sum ĉ_k"), ("ctl", "ĉ_k shuffled (control)"))
        for step in (1_000, 2_000)
        for digit in ("c0", "c3", "c3–c5")
    ]
    spec = sweep_comparison_chart(rows).to_dict()
    choice = _params(spec)["digit_choice"]
    assert choice["value"] == "c3–c5" and choice["bind"]["options"] == ["c3–c5", "c0", "c3"]
    lines = spec["layer"][1]
    assert lines["encoding"]["color"]["sort"] == ["none", "ref", "ctl"]
    dash = lines["encoding"]["strokeDash"]["scale"]
    assert dict(zip(dash["domain"], dash["range"]))["ĉ_k shuffled (control)"] != [1, 0]
    assert len(_data(spec, lines)) == len(rows)
    empty = sweep_comparison_chart([]).to_dict()
    assert _params(empty)["digit_choice"]["bind"]["options"] == [""] and _data(empty, empty["layer"][1]) == []


def test_aux_error_chart_has_the_error_and_the_digit_losses(runs):
    aux = runs["SFT + aux loss"]
    aux.config["aux_scale"] = 10.0
    for row in aux.train:
        row["aux_loss"] = 0.01
    spec = aux_error_chart(dyn.aux_error_rows(runs, max_points=20), dyn.digit_rows(runs, max_points=20)).to_dict()
    error, loss = spec["vconcat"]
    assert error["layer"][0]["encoding"]["y"]["scale"]["type"] == "log"
    assert loss["encoding"]["y"]["scale"]["domain"] == [0, 3] and loss["encoding"]["color"]["field"] == "digit"
    errors = [v for v in spec["datasets"].values() if v and "rms_error" in v[0] and "step" in v[0]]
    assert errors and {v["rms_error"] for v in errors[0]} == {1.0}
    assert {v["run"] for v in _dataset(spec)} == {"SFT + aux loss"}  # only the runs with an aux loss


def _data(spec: dict, view: dict) -> list[dict]:
    return spec["datasets"][view["data"]["name"]]


def test_charts_accept_no_rows():
    loss = loss_curves_chart([]).to_dict()
    assert _params(loss)["run_choice"]["bind"]["options"] == [""] and _params(loss)["run_choice"]["value"] == ""
    assert len(loss["layer"]) == 2 and _data(loss, loss["layer"][1]) == []  # no stages, no lines, the ln 10 rule
    assert _data(loss, loss["layer"][0])[0]["loss"] == pytest.approx(dyn.LN10)
    slider = step_slider_chart([]).to_dict()
    bind = _params(slider)["at_step"]["bind"]
    assert (bind["min"], bind["max"], bind["step"]) == (0, 1, 1)
    accuracy = accuracy_curves_chart([]).to_dict()
    assert _data(accuracy, accuracy["layer"][0]) == [{"accuracy": 0.1}] and _data(accuracy, accuracy["layer"][1]) == []
    error_panel, loss_panel = aux_error_chart([], []).to_dict()["vconcat"]
    errors = aux_error_chart([], []).to_dict()
    assert _data(errors, error_panel["layer"][0]) == [] and _data(errors, loss_panel) == []
    assert _data(errors, error_panel["layer"][1])[0]["rms_error"] == dyn.ROUNDING_ERROR
    json.dumps(errors)


def test_history_figure_draws_the_chosen_digits(runs):
    rows = dyn.digit_rows(runs)
    fig = history_figure(rows, ["SFT", "SFT + aux loss"], [0, 4], metric="grad_norm")
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["SFT", "SFT + aux loss"]
    assert [line.get_label() for line in axes[0].get_lines()] == ["c0", "c4"]
    assert axes[0].get_yscale() == "log"
    empty = history_figure(rows, [], [0])
    assert len(empty.get_axes()) == 1


def test_history_explorer_redraws_on_change(runs):
    widget = history_explorer(runs, max_points=50)
    run_box, digit_box, controls = widget.children[0].children
    metric, log_box, points = controls.children
    log_box.value = False
    image = widget.children[-1]
    before = image.value
    assert before[:4] == b"\x89PNG"
    assert run_box.value == ("SFT", "SFT + aux loss") and points.value == 50
    digit_box.value = (3,)
    assert image.value != before
    after_digits = image.value
    points.value = 5
    assert image.value != after_digits
    metric.value = "grad_norm"
    run_box.value = ("SFT + aux loss",)
    assert image.value[:4] == b"\x89PNG"


def test_exact_match_chart_draws_one_point_per_evaluation_and_a_rule_per_change(runs):
    rows = dyn.eval_rows(runs)
    changes = [{"run": "SFT", "step": 1_500, "label": "lr 0.001 → 0.0001"}]
    spec = exact_match_chart(rows, changes).to_dict()
    lines, rules, labels = spec["layer"]
    datasets = spec["datasets"]
    points = datasets[lines["data"]["name"]]
    n_evals = sum(len(run.evals) for run in runs.values())
    assert len(points) == n_evals and {"run", "step", "exact_match"} == set(points[0])
    assert datasets[rules["data"]["name"]] == changes and labels["encoding"]["text"]["field"] == "label"
    assert exact_match_chart([], []).to_dict()["layer"][0]["mark"]["type"] == "line"  # nothing yet: an empty chart


def _rendered(chart) -> tuple[float, list[float]]:
    """The width of a chart as vega draws it, and the size of every text in it (px)."""
    svg = vl_convert.vegalite_to_svg(chart.to_dict())
    width = float(re.search(r'<svg[^>]*? width="([\d.]+)"', svg).group(1))
    return width, [float(x) for x in re.findall(r'font-size="([\d.]+)px"', svg)]


def test_the_charts_fit_the_column_with_readable_labels(runs):
    rows = dyn.digit_rows(runs, max_points=30)
    drawn = {
        "hero": loss_and_gradient_chart(rows, ["SFT", "SFT + aux loss"]),
        "loss curves": loss_curves_chart(rows, width=460),
        "accuracy": accuracy_curves_chart(dyn.eval_rows(runs), width=500),
        "slider": step_slider_chart(rows),
    }
    for name, chart in drawn.items():
        width, sizes = _rendered(chart)
        assert width <= COLUMN_WIDTH, f"{name} chart is {width:.0f} px wide, over the column's {COLUMN_WIDTH}"
        assert sizes and min(sizes) >= LABEL_SIZE, f"{name} chart draws text at {min(sizes)} px"
