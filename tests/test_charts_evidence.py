"""Unit tests of longmul.charts.evidence (chapter "Evidence of long-range structure": frames, tables,
charts, the numbers its sentences rest on) and of its widget, longmul.charts.evidence_widget."""

from __future__ import annotations

import pytest

pytest.importorskip("altair", reason="needs the 'book' extra: pip install -e '.[book]'")
pytest.importorskip("ipywidgets", reason="needs the 'book' extra: pip install -e '.[book]'")
pytest.importorskip("pandas", reason="needs the 'book' extra: pip install -e '.[book]'")
pytest.importorskip("vl_convert", reason="needs the 'book' extra: pip install -e '.[book]'")

import numpy as np
import pandas as pd
import torch
import vl_convert
from hypothesis import given, settings
from hypothesis import strategies as st

from longmul.analysis.attribution import Attribution
from longmul.analysis.probes import PAPER_SITE, fit_probes, probe_running_sums
from longmul.charts.evidence import (
    DEPENDS_SHARE,
    PAPER_ICOT_DROPS,
    PAPER_PROBE_MAE,
    PAPER_SFT_DEPENDING,
    READ_OUT_MARGIN,
    READ_OUT_R2,
    attribution_frame,
    attribution_heatmaps,
    attribution_summary,
    can_affect,
    dependency_counts,
    dependency_thresholds,
    depending_digits,
    dependency_table,
    evidence_findings,
    limited_threads,
    paper_probe_frame,
    probe_exact_table,
    probe_frame,
    probe_scatter_chart,
    probe_site_chart,
    probe_table,
    scatter_frame,
    site_label,
    upstream_sites,
)
from longmul.charts.evidence_widget import (
    attribution_table_html,
    evidence_explorer,
    readout_table_html,
)
from longmul.model import build_model, model_config_from_preset
from longmul.task import problem_from_strings

OUTPUTS = [f"c{k}" for k in range(8)]
OPERANDS = [f"a{i}" for i in range(4)] + [f"b{j}" for j in range(4)]
SITES = [
    "blocks.0.hook_resid_pre",
    "blocks.0.hook_attn_out",
    "blocks.0.hook_resid_post",
    "blocks.1.hook_resid_pre",
    "blocks.1.hook_attn_out",
    PAPER_SITE,
]


def _compiles(chart) -> dict:
    """The chart's vega-lite spec, after checking that vega-lite compiles it."""
    spec = chart.to_dict()
    vl_convert.vegalite_to_vega(spec)
    return spec


def _attribution(matrix: np.ndarray) -> Attribution:
    return Attribution(
        matrix=matrix, sem=np.full_like(matrix, 0.1), outputs=OUTPUTS, operands=OPERANDS, accuracy=np.full(8, 0.5), n_samples=10
    )


def _full_dependence() -> np.ndarray:
    """Every output depends (drop 5) on every operand digit that can affect it."""
    return np.array([[5.0 if can_affect(k, op) else 0.0 for op in OPERANDS] for k in range(8)])


def _outer_only() -> np.ndarray:
    """SFT as the paper describes it: c0, c1 on a0, a1, b0, b1; c6, c7 on a2, a3, b2, b3."""
    m = np.zeros((8, 8))
    m[np.ix_([0, 1], [0, 1, 4, 5])] = 3.0
    m[np.ix_([6, 7], [2, 3, 6, 7])] = 3.0
    m[0, [1, 5]] = 0.0  # a1, b1 cannot change c0
    return m


def _probe_rows(
    model: str, r2_probe: float, mae_probe: float, *, r2_twin: float = 0.5, r2_by_site: dict[str, float] | None = None
) -> list[dict]:
    """Probe and control rows at every site of :data:`SITES` and every k; ``r2_by_site`` overrides the
    probe's R² at some sites."""
    rows = []
    for control, r2, mae in (("none", r2_probe, mae_probe), ("shuffled", 0.0, 30.0), ("untrained", r2_twin, 18.0)):
        for site in SITES:
            here = (r2_by_site or {}).get(site, r2) if control == "none" else r2
            for k in range(8):
                exact = max(0.0, 1.0 - mae / 10)  # any number that differs between readouts
                rows.append({"model": model, "control": control, "site": site, "k": k, "mae": mae, "r2": here, "exact": exact})
    return rows


# --------------------------------------------------------------------------- labels and constants

def test_site_labels_count_layers_from_one():
    assert site_label("blocks.1.hook_resid_mid") == "layer 2, after attention (resid_mid)"
    assert site_label("blocks.0.hook_resid_pre") == "layer 1, input (resid_pre)"
    assert site_label("blocks.0.attn.hook_z[3]") == "layer 1, head 3 output (z)"
    assert site_label("logits") == "logits"


def test_can_affect_follows_place_value():
    assert can_affect(0, "a0") and can_affect(0, "b0")
    assert not can_affect(0, "a1") and not can_affect(2, "b3")
    assert all(can_affect(k, op) for k in range(3, 8) for op in OPERANDS)


def test_paper_numbers_are_the_papers():
    assert PAPER_PROBE_MAE["ICoT"] == {2: 2.05, 3: 1.96, 4: 1.72, 5: 0.99, 6: 0.56}
    assert PAPER_PROBE_MAE["SFT"] == {2: 96.6, 3: 111.6, 4: 72.2, 5: 77.7, 6: 28.7}
    assert PAPER_ICOT_DROPS == (12, 22)
    assert PAPER_SFT_DEPENDING == (0, 1, 6, 7)
    paper = paper_probe_frame()
    assert set(paper["control"]) == {"paper"} and set(paper["site"]) == {PAPER_SITE} and len(paper) == 10


def test_limited_threads_restores_torch():
    before = torch.get_num_threads()
    with limited_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# --------------------------------------------------------------------------- attribution

def test_attribution_frame_summary_and_dependency_table():
    df = attribution_frame({"ICoT": _attribution(_full_dependence()), "SFT": _attribution(_outer_only())})
    assert list(df.columns) == ["model", "output", "operand", "drop", "sem", "accuracy"]
    assert len(df) == 2 * 64
    summary = attribution_summary(df)
    assert summary.loc["ICoT", "cells"] == 6 + 8 * 4 and summary.loc["ICoT", "share"] == 1.0
    assert summary.loc["SFT", "depends"] == 4  # c6 on a2, a3, b2, b3
    assert summary.loc["ICoT", "max_impossible"] == 0.0
    table = dependency_table(df)
    assert table.loc["ICoT", "c0"] == "2 / 2" and table.loc["ICoT", "c4"] == "8 / 8"
    assert table.loc["SFT", "c1"] == "4 / 4" and table.loc["SFT", "c3"] == "0 / 8"


def test_attribution_heatmaps_facet_by_model_on_one_scale():
    df = attribution_frame({"ICoT": _attribution(_full_dependence()), "SFT": _attribution(-_outer_only() * 0.0)})
    spec = _compiles(attribution_heatmaps(df))
    assert spec["facet"]["column"]["field"] == "model"
    assert spec["facet"]["column"]["sort"] == ["ICoT", "SFT"]
    rect = spec["spec"]["layer"][0]
    assert rect["encoding"]["y"]["sort"] == OUTPUTS and rect["encoding"]["x"]["sort"] == OPERANDS
    assert rect["encoding"]["color"]["scale"]["domain"] == [0.0, 5.0]
    values = spec["datasets"][spec["data"]["name"]]
    assert {v["value"] for v in values} <= {"5.0", "0.0"}  # no "-0.0"
    assert sum(not v["possible"] for v in values) == 2 * (6 + 4 + 2)  # c0, c1, c2 per model


def test_heatmaps_read_the_precomputed_csv_shape():
    csv = attribution_frame({"SFT": _attribution(_outer_only())})[["model", "output", "operand", "drop", "sem"]]
    _compiles(attribution_heatmaps(csv))


# --------------------------------------------------------------------------- probes

def _probe_result(seed: int = 0):
    """Site "good" holds ĉ linearly, site "noise" does not."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 200, size=(60, 8)).astype(float)
    good = np.concatenate([targets[..., None], rng.normal(size=(60, 8, 3))], axis=2)
    noise = rng.normal(size=(60, 8, 4))
    return fit_probes({"good": good, "noise": noise}, targets, seed=seed)


def test_probe_frame_and_scatter_frame():
    result = _probe_result()
    df = probe_frame({"M": {"none": result, "shuffled": result}})
    assert list(df.columns) == ["model", "control", "site", "k", "mae", "r2", "exact", "alpha", "n_train", "n_test"]
    assert len(df) == 2 * 2 * 8
    good = df[(df["site"] == "good") & (df["control"] == "none")]
    assert (good["r2"] > 0.99).all()
    scatter = scatter_frame({"M": result}, site="good", max_points=5)
    assert len(scatter) == 5 * 8 and set(scatter["site"]) == {"good"}
    assert np.allclose(scatter["predicted"], scatter["true"], atol=2)
    with pytest.raises(ValueError, match="not probed"):
        scatter_frame({"M": result}, site=PAPER_SITE)


def test_probe_table_puts_controls_and_the_paper_beside_each_number():
    df = pd.DataFrame(_probe_rows("ICoT", 0.95, 2.5) + _probe_rows("SFT", 0.4, 20.0))
    table = probe_table(df, PAPER_SITE)
    assert list(table.columns) == [f"ĉ{k}" for k in range(8)]
    assert table.loc[("ICoT", "probe"), "ĉ3"] == "2.50 (0.95)"
    assert table.loc[("ICoT", "control: shuffled target"), "ĉ3"] == "30.00 (0.00)"
    assert table.loc[("SFT", "control: untrained twin"), "ĉ0"] == "18.00 (0.50)"
    paper = [row for row in table.index if row[1].startswith("reported by")]
    assert len(paper) == 2
    assert table.loc[paper[1], "ĉ3"] == "111.60" and table.loc[paper[1], "ĉ0"] == ""
    assert len(probe_table(df, PAPER_SITE, paper=False)) == 6


def test_probe_exact_table_has_each_model_and_control_but_no_paper_row():
    df = pd.DataFrame(_probe_rows("ICoT", 0.95, 2.5) + _probe_rows("SFT", 0.4, 20.0))
    table = probe_exact_table(df, PAPER_SITE, models=["SFT", "ICoT"])
    assert list(table.index) == [(m, c) for m in ("SFT", "ICoT") for c in ("probe", "control: shuffled target", "control: untrained twin")]
    assert table.loc[("ICoT", "probe"), "ĉ3"] == "75.0%" and table.loc[("SFT", "probe"), "ĉ0"] == "0.0%"


def test_probe_site_chart_has_a_site_selector_and_the_papers_diamonds():
    df = pd.DataFrame(_probe_rows("ICoT", 0.95, 2.5) + _probe_rows("SFT", 0.4, 20.0))
    spec = _compiles(probe_site_chart(df, paper=paper_probe_frame()))
    site = next(p for p in spec["params"] if p["name"] == "site")
    assert site["value"] == PAPER_SITE
    assert site["bind"]["input"] == "select" and site["bind"]["options"] == SITES
    assert "layer 2, after attention (resid_mid)" in site["bind"]["labels"]
    assert all(
        any(t.get("filter") == "(datum.site === site)" for t in panel.get("transform", []) + panel.get("layer", [{}])[0].get("transform", []))
        for panel in spec["hconcat"]
    )
    diamonds = spec["hconcat"][0]["layer"][1]
    assert diamonds["mark"]["shape"] == "diamond"
    assert "reported by Bai et al. 2025" in spec["title"]["subtitle"]
    assert diamonds["transform"] == [{"filter": "(datum.site === site)"}]


def test_probe_site_chart_falls_back_to_a_probed_site():
    df = pd.DataFrame(_probe_rows("SFT", 0.4, 20.0))
    df = df[df["site"] != PAPER_SITE]
    spec = _compiles(probe_site_chart(df))
    assert next(p for p in spec["params"] if p["name"] == "site")["value"] == SITES[0]


def test_probe_scatter_chart_selects_k():
    scatter = scatter_frame({"A": _probe_result(0), "B": _probe_result(1)}, site="good")
    spec = _compiles(probe_scatter_chart(scatter))
    k = next(p for p in spec["params"] if p["name"] == "k")
    assert k["value"] == 3 and k["bind"]["options"] == list(range(8))
    assert spec["facet"]["column"]["field"] == "model"
    assert spec["title"] == "Probe reading vs true running sum, held-out problems at good"
    assert probe_scatter_chart(scatter, default_k=9).to_dict()["params"][0]["value"] in range(8)


def test_charts_accept_no_rows():
    attribution = attribution_frame({})
    probes = probe_frame({})
    attribution_heatmaps(attribution).to_dict()
    probe_site_chart(probes, paper=paper_probe_frame()).to_dict()
    probe_scatter_chart(pd.DataFrame(columns=["model", "site", "k", "true", "predicted"])).to_dict()
    assert probe_table(probes, PAPER_SITE, models=[]).empty


# --------------------------------------------------------------------------- the findings

def _findings(
    icot: tuple[np.ndarray, float, float], sft: tuple[np.ndarray, float, float], **probe_options
) -> pd.DataFrame:
    attribution = attribution_frame({"ICoT": _attribution(icot[0]), "SFT": _attribution(sft[0])})
    probes = pd.DataFrame(
        _probe_rows("ICoT", icot[1], icot[2], **probe_options) + _probe_rows("SFT", sft[1], sft[2], **probe_options)
    )
    return evidence_findings(attribution, probes)


def test_findings_numbers():
    findings = _findings((_full_dependence(), 0.97, 1.5), (_outer_only(), 0.3, 20.0))
    assert findings.loc["ICoT", "share"] == 1.0 and findings.loc["ICoT", "read_out"] == 5
    assert findings.loc["ICoT", "mean_drop"] == 5.0 and findings.loc["SFT", "mean_drop"] == pytest.approx(12 / 38)
    assert findings.loc["SFT", "read_out"] == 0 and findings.loc["SFT", "untrained_mae"] == 18.0
    assert findings.loc["ICoT", "paper_mae"] == pytest.approx(np.mean([2.05, 1.96, 1.72, 0.99, 0.56]))
    assert findings.loc["SFT", "paper_mae"] == pytest.approx(np.mean([96.6, 111.6, 72.2, 77.7, 28.7]))
    assert findings.loc["SFT", "depending"] == [0, 1, 6, 7]
    assert findings.loc["SFT", "threshold"] == pytest.approx(3.0 * DEPENDS_SHARE)
    assert findings.loc["SFT", "paper_sft_pattern"] and not findings.loc["ICoT", "paper_sft_pattern"]


def test_dependency_counts_per_output_digit():
    counts = dependency_counts(attribution_frame({"SFT": _attribution(_outer_only())}))
    assert counts["SFT"][0] == (2, 2) and counts["SFT"][3] == (0, 8) and counts["SFT"][6] == (4, 8)
    assert dependency_counts(attribution_frame({"SFT": _attribution(_outer_only())}), share=1.0)["SFT"][0] == (2, 2)


def test_the_dependency_rule_is_relative_to_each_models_largest_drop():
    # SFT as our shipped model shows it: outer digits drop ≈ 20, middle digits ≈ 1.5. A fixed 1-logit rule
    # would count the middle digits; a quarter of the largest drop does not.
    sft = _outer_only() * (20.0 / 3.0)
    sft[np.ix_([3, 4, 5], range(8))] = 1.5
    df = attribution_frame({"SFT": _attribution(sft), "ICoT": _attribution(_full_dependence())})
    assert dependency_thresholds(df) == {"SFT": pytest.approx(5.0), "ICoT": pytest.approx(1.25)}
    assert depending_digits(df)["SFT"] == [0, 1, 6, 7]
    assert depending_digits(df)["ICoT"] == list(range(8))
    assert depending_digits(df, share=0.05)["SFT"] == [0, 1, 3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="share must be in"):
        dependency_thresholds(df, share=0.0)


@settings(max_examples=40, deadline=None)
@given(scale=st.floats(0.1, 100.0), share=st.floats(0.01, 1.0))
def test_the_rule_does_not_change_when_a_matrix_is_scaled(scale, share):
    matrix = np.random.default_rng(0).uniform(0, 10, (8, 8))
    plain = attribution_frame({"m": _attribution(matrix)})
    scaled = attribution_frame({"m": _attribution(matrix * scale)})
    assert dependency_counts(plain, share) == dependency_counts(scaled, share)


def test_upstream_sites_leave_out_the_terms_the_site_sums():
    assert upstream_sites(PAPER_SITE, SITES) == ["blocks.0.hook_resid_pre", "blocks.0.hook_attn_out"]
    assert upstream_sites("blocks.0.hook_resid_mid", SITES) == []
    assert upstream_sites("good", SITES) == []


def test_best_upstream_site_is_the_best_before_the_sum_the_aux_loss_reads():
    # The sites the loss reads as terms (blocks.1's input and attention output, and blocks.0's output, which
    # is blocks.1's input) score highest: the choice must skip them.
    r2_by_site = {
        "blocks.0.hook_resid_pre": 0.2,
        "blocks.0.hook_attn_out": 0.6,
        "blocks.0.hook_resid_post": 0.8,
        "blocks.1.hook_resid_pre": 0.8,
        "blocks.1.hook_attn_out": 0.95,
    }
    findings = _findings((_full_dependence(), 0.97, 1.5), (_outer_only(), 0.3, 20.0), r2_by_site=r2_by_site)
    assert findings.loc["SFT", "best_upstream_site"] == "blocks.0.hook_attn_out"
    assert findings.loc["SFT", "best_upstream_r2"] == 0.6


def test_a_probe_counts_as_read_out_only_above_the_untrained_twin():
    probe_r2 = READ_OUT_R2 + 0.05
    close = _findings((_full_dependence(), probe_r2, 1.5), (_outer_only(), 0.3, 20.0), r2_twin=probe_r2 - READ_OUT_MARGIN / 2)
    assert close.loc["ICoT", "read_out"] == 0
    clear = _findings((_full_dependence(), probe_r2, 1.5), (_outer_only(), 0.3, 20.0), r2_twin=probe_r2 - 2 * READ_OUT_MARGIN)
    assert clear.loc["ICoT", "read_out"] == 5


# --------------------------------------------------------------------------- the widget

@pytest.fixture(scope="module")
def tiny():
    model = build_model(model_config_from_preset("tiny"), seed=0)
    with limited_threads(1):
        probes = probe_running_sums(model, n_problems=30, sites=[PAPER_SITE, "blocks.0.hook_resid_post"])
    return model, probes


def test_attribution_and_readout_tables():
    problem = problem_from_strings("2365", "4347")
    matrix = _full_dependence()
    matrix[3, 0] = -1.0
    matrix[4, 0] = -0.001
    html = attribution_table_html(_attribution(matrix), problem)
    assert "2365 × 4347 = 10280655" in html
    assert html.count("<tr>") == 1 + 8 and "c3 = 0" in html
    assert "a3<br><small>= 2</small>" in html  # 2365: a = 5 6 3 2, least significant first
    assert "rgba(209, 73, 91" in html  # a rise is shaded red
    assert ">-1.0<" in html and ">-0.0<" not in html
    assert "color: #999;" in html  # digits that cannot change c_k are greyed
    readout = readout_table_html(problem, np.array(problem.running_sums, dtype=float) + 1.0, PAPER_SITE)
    assert readout.count("+1.0") == 8 and "layer 2, after attention" in readout


def test_evidence_explorer_updates(tiny):
    model, probes = tiny
    widget = evidence_explorer({"tiny": model}, {"tiny": probes}, a="1234", b="5678")
    (a_box, b_box), (_, site_box) = widget.children[0].children, widget.children[1].children
    out = widget.children[-1]
    assert "1234 × 5678 = 7006652" in out.value and "probe reading" in out.value
    assert site_box.value == PAPER_SITE
    b_box.value = "9999"
    assert "1234 × 9999 = 12338766" in out.value
    site_box.value = "blocks.0.hook_resid_post"
    assert "layer 1, output" in out.value
    a_box.value = "12a4"
    assert "digits 0-9" in out.value


def test_evidence_explorer_notes_a_chain_of_thought_and_no_models(tiny):
    model, _ = tiny
    cot_model = build_model(model_config_from_preset("tiny"), seed=1)
    cot_model.config.longmul_cot_tokens = 46
    widget = evidence_explorer({"plain": model, "with CoT": cot_model}, {})
    out = widget.children[-1]
    assert "chain-of-thought" not in out.value and "probe reading" not in out.value
    widget.children[1].children[0].value = "with CoT"
    assert "still writes 46 chain-of-thought tokens" in out.value
    assert "No model" in evidence_explorer({}, {}).children[-1].value
