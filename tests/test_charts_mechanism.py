"""Unit tests of longmul.charts.mechanism (chapter "The mechanism": names and roles of attention edges,
the frames, tables and charts, the generated takeaway, and the widget), on synthetic patterns and
knockout effects; the widget on a tiny random model and on the hand-set model whose one important edge
is known (from test_analysis_attention)."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("altair", reason="needs the 'book' extra: pip install -e '.[book]'")
pytest.importorskip("ipywidgets", reason="needs the 'book' extra: pip install -e '.[book]'")
pytest.importorskip("pandas", reason="needs the 'book' extra: pip install -e '.[book]'")
pytest.importorskip("vl_convert", reason="needs the 'book' extra: pip install -e '.[book]'")

import numpy as np
import pandas as pd
import torch
import vl_convert

from longmul.analysis.attention import (
    AttentionPatterns,
    EdgeEffect,
    TeacherForcedScores,
    find_important_edges,
    mean_attention,
)
from longmul.charts.mechanism import (
    HEAD_COLORS,
    attention_chart,
    broad_heads,
    broad_knockout_frame,
    broad_knockouts,
    cache_pairs,
    cot_attention,
    edge_frame,
    edge_role,
    edge_table,
    head_name,
    important_effects,
    key_kind,
    knockout_frame,
    knockout_heatmap,
    layer_name,
    operand_reads,
    pair_knockouts,
    pairs_table,
    path_knockouts,
    paths_table,
    pattern_frame,
    pick_edges,
    query_name,
    reads_table,
    tree_chart,
    tree_frame,
    tree_paths,
    widest_reads,
)
from longmul.charts.mechanism_explorer import attention_row_html, knockout_table_html, mechanism_explorer
from longmul.hooks import Knockout
from longmul.model import build_model, model_config_from_preset
from test_analysis_attention import THE_EDGE, cache_retrieve_model, cache_retrieve_problems, copy_a0_model

# The 4x4 sequence without a chain of thought: a0..a3 * b0..b3 || #### c0..c7 <eos>.
LABELS = [f"a{i}" for i in range(4)] + ["*"] + [f"b{j}" for j in range(4)] + ["||", "####"] + [f"c{k}" for k in range(8)] + ["<eos>"]
POS = {label: p for p, label in enumerate(LABELS)}
ANSWERS = list(range(10, 18))  # p_k: '####' predicts c0, c_{k-1} predicts c_k
T = len(LABELS)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The suite shares two cores with training runs; one thread is faster than two contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _compiles(chart) -> dict:
    """The chart's vega-lite spec, after checking that vega-lite compiles it."""
    spec = chart.to_dict()
    vl_convert.vegalite_to_vega(spec)
    return spec


def _patterns() -> AttentionPatterns:
    """A hand-made tree. Layer 1 head 0 reads the pair (a1, b1) at the position of c1 (predicting c2);
    layer 2 head 1 at c3 (predicting c4) reads back c1; layer 2 head 2 parks on '||'; layer 2 head 3
    reads every operand digit that can change c_k at the position predicting it; everything else is
    uniform."""
    mean = np.zeros((2, 4, T, T))
    for q in range(T):
        mean[:, :, q, : q + 1] = 1.0 / (q + 1)
    c1, c3 = POS["c1"], POS["c3"]
    mean[0, 0, c1] = 0.0
    mean[0, 0, c1, [POS["a1"], POS["b1"]]] = 0.5
    mean[1, 1, c3] = 0.0
    mean[1, 1, c3, c1] = 0.9
    mean[1, 1, c3, c3] = 0.1
    for q in ANSWERS:
        mean[1, 2, q] = 0.0
        mean[1, 2, q, POS["||"]] = 1.0
        k = q - ANSWERS[0]
        needed = [POS[f"{x}{i}"] for x in "ab" for i in range(min(k, 3) + 1)]
        mean[1, 3, q] = 0.0
        mean[1, 3, q, needed] = 0.9 / len(needed)
        mean[1, 3, q, q] = 0.1
    return AttentionPatterns(mean=mean, labels=list(LABELS), answer_positions=list(ANSWERS), n_problems=10)


def _effect(layer, head, query, key, k=None, acc=0.0, logit=0.0) -> EdgeEffect:
    accuracy, logits = np.zeros(8), np.zeros(8)
    if k is not None:
        accuracy[k], logits[k] = acc, logit
    return EdgeEffect(edge=Knockout(layer, head, POS[query], POS[key]), accuracy_drop=accuracy, logit_drop=logits)


def _effects() -> list[EdgeEffect]:
    return [
        _effect(0, 0, "c1", "a1", k=4, acc=0.30, logit=2.0),  # cache: its knockout hurts c4 through the retrieval
        _effect(0, 0, "c1", "b1", k=4, acc=0.25, logit=1.5),
        _effect(1, 1, "c3", "c1", k=4, acc=0.40, logit=3.0),  # retrieve
        _effect(1, 2, "c3", "||", k=4, acc=0.10, logit=0.8),  # sink
        _effect(1, 0, "####", "####"),  # nothing
        _effect(1, 1, "c3", "c3", k=4, acc=0.0, logit=0.6),  # own position: only the logit moves
    ]


CLEAN = np.array([1.0, 1.0, 0.9, 0.8, 0.7, 0.8, 0.9, 1.0])


@pytest.fixture(scope="module")
def frames():
    patterns = {"ICoT": _patterns()}
    effects = {"ICoT": _effects()}
    edges = edge_frame(effects, patterns, {"ICoT": CLEAN})
    return patterns, effects, edges


# --------------------------------------------------------------------------- names and roles


def test_names_count_layers_from_one_and_heads_from_zero():
    assert layer_name(0) == "layer 1" and head_name(1, 3) == "L2H3"
    assert query_name("####", 0) == "#### (→c0)" and query_name("c2", 3) == "c2 (→c3)" and query_name("*", None) == "*"
    assert [key_kind(x) for x in ("a3", "b0", "####", "c7", "cot12", "||", "*", "<eos>")] == [
        "a", "b", "answer", "answer", "cot", "symbol", "symbol", "symbol",
    ]  # fmt: skip


def test_edge_roles():
    assert edge_role(0, 12, 1, "a1") == "cache"
    assert edge_role(1, 14, 1, "a1") == "operand (layer 2)"
    assert edge_role(1, 14, 12, "c1") == "retrieve"
    assert edge_role(0, 14, 12, "c1") == "answer token"
    assert edge_role(1, 14, 14, "c3") == "own position"
    assert edge_role(1, 14, 9, "||") == "sink" and edge_role(0, 10, 4, "*") == "sink"
    assert edge_role(1, 60, 42, "cot32") == "chain of thought"


def test_pick_edges_shares_the_budget_between_layers_and_sinks():
    sink = [Knockout(1, 2, q, POS["||"]) for q in ANSWERS]  # the strongest, listed first
    layer1 = [Knockout(0, 0, POS["c1"], POS["a1"]), Knockout(0, 0, POS["c1"], POS["b1"])]
    layer2 = [Knockout(1, 1, POS["c3"], POS["c1"])]
    picked = pick_edges(sink + layer2 + layer1, LABELS, 5)
    assert picked == [layer1[0], layer2[0], sink[0], layer1[1], sink[1]]
    assert pick_edges(sink, LABELS, 100) == sink and pick_edges(sink, LABELS, 0) == []
    with pytest.raises(ValueError, match="limit"):
        pick_edges(sink, LABELS, -1)


def test_pick_edges_gives_the_sink_edges_of_both_layers_one_share():
    sink = [Knockout(1, 2, POS["c3"], POS["||"]), Knockout(0, 1, POS["c1"], POS["*"]), Knockout(0, 2, POS["c2"], POS["||"])]
    layer1 = [Knockout(0, 0, POS["c1"], POS["a1"]), Knockout(0, 0, POS["c1"], POS["b1"]), Knockout(0, 3, POS["c2"], POS["a2"])]
    layer2 = [Knockout(1, 1, POS["c3"], POS["c1"]), Knockout(1, 1, POS["c4"], POS["c2"]), Knockout(1, 0, POS["c5"], POS["c3"])]
    picked = pick_edges(sink + layer1 + layer2, LABELS, 6)
    assert picked == [layer1[0], layer2[0], sink[0], layer1[1], layer2[1], sink[1]]  # a third each, not half for sinks
    assert sum(e in sink for e in pick_edges(sink + layer1 + layer2, LABELS, 4)) == 1


# --------------------------------------------------------------------------- frames and tables


def test_pattern_frame_and_reads_tables(frames):
    patterns, _, _ = frames
    df = pattern_frame(patterns)
    assert len(df) == 2 * 4 * sum(q + 1 for q in ANSWERS)
    row = df[(df["layer"] == 1) & (df["head"] == 1) & (df["k"] == 4) & (df["key_label"] == "c1")]
    assert row["weight"].item() == pytest.approx(0.9) and row["query_name"].item() == "c3 (→c4)"
    table = reads_table(patterns["ICoT"], layer=0)
    assert list(table.columns) == ["L1H0", "L1H1", "L1H2", "L1H3"] and len(table) == 8
    assert table.loc["c1 (→c2)", "L1H0"] == "a1 0.50, b1 0.50"
    assert reads_table(patterns["ICoT"], layer=1).loc["c3 (→c4)", "L2H1"].startswith("c1 0.90")


def test_cache_pairs_name_the_pair_and_its_column(frames):
    patterns, _, _ = frames
    pairs = cache_pairs(patterns)
    assert len(pairs) == 1
    row = pairs.iloc[0]
    assert (row["head_name"], row["position"], row["predicts"], row["pair"], row["column"]) == ("L1H0", "c1", 2, "(a1, b1)", "s2")
    assert (row["a"], row["b"]) == ("a1", "b1") and row["operand_weight"] == pytest.approx(1.0)


def test_pairs_table_says_what_the_knockouts_of_the_pair_showed(frames):
    patterns, effects, edges = frames
    pairs = cache_pairs(patterns)
    checked = pair_knockouts(pairs, edges)
    assert (checked["a_edge"].item(), checked["b_edge"].item(), checked["both_important"].item()) == ("important", "important", True)
    table = pairs_table(pairs, edges)
    assert table.index.tolist() == [("ICoT", "L1H0")]
    row = table.iloc[0]
    assert (row["at"], row["pair"], row["column sum"], row["attention a / b"]) == ("c1 (→c2)", "(a1, b1)", "s2", "0.50 / 0.50")
    assert (row["knockout of the a / b edge"], row["both edges important"]) == ("important / important", "yes")
    only_a = edge_frame({"ICoT": [effects["ICoT"][0], _effect(0, 0, "c1", "b1")]}, patterns)  # b edge costs nothing
    assert pairs_table(pairs, only_a).iloc[0]["knockout of the a / b edge"] == "important / not important"
    untested = pairs_table(pairs, edge_frame({"ICoT": effects["ICoT"][2:]}, patterns)).iloc[0]
    assert (untested["knockout of the a / b edge"], untested["both edges important"]) == ("not tested / not tested", "no")


def test_edge_frame_roles_costs_and_importance(frames):
    _, effects, edges = frames
    assert list(edges["edge"]) == [
        "L2H1 c3←c1", "L1H0 c1←a1", "L1H0 c1←b1", "L2H2 c3←||", "L2H1 c3←c3", "L2H0 ####←####",
    ]  # fmt: skip
    by = edges.set_index("edge")
    assert by.loc["L2H1 c3←c1", "role"] == "retrieve" and by.loc["L2H1 c3←c1", "predicts"] == 4
    assert by.loc["L1H0 c1←a1", "role"] == "cache" and by.loc["L1H0 c1←a1", "weight"] == pytest.approx(0.5)
    assert by.loc["L2H2 c3←||", "sink"] and by.loc["L2H2 c3←||", "role"] == "sink"
    assert by.loc["L2H1 c3←c1", "worst"] == 4 and by.loc["L2H1 c3←c1", "clean_accuracy"] == pytest.approx(0.7)
    assert by.loc["L2H1 c3←c3", "important"]  # by its logit drop of 0.6 alone
    assert not by.loc["L2H0 ####←####", "important"]
    assert [e.edge for e in important_effects(effects["ICoT"])] == [e.edge for e in effects["ICoT"][:4]] + [effects["ICoT"][5].edge]
    assert len(important_effects(effects["ICoT"], min_accuracy_drop=0.35, min_logit_drop=10)) == 1
    table = edge_table(edges, "ICoT")
    assert len(table) == 5 and table.index[0] == "L2H1 c3←c1"
    first = table.iloc[0]
    assert (first["role"], first["hurts most"], first["its accuracy"]) == ("retrieve", "c4", "70% → 30%")
    assert (first["accuracy cost (points)"], first["logit drop"], first["attention"]) == ("40.0", "3.00", "0.90")
    assert len(edge_table(edges, "ICoT", top=2)) == 2 and edge_table(edges, "SFT").empty
    assert by.loc["L2H1 c3←c1", "logit_drops"][4] == pytest.approx(3.0) and sum(by.loc["L2H1 c3←c1", "logit_drops"]) == 3.0
    counted = edge_table(edges, "ICoT", n_problems=150)
    assert counted["problems lost (net, of 150)"].tolist() == [60, 45, 38, 15, 0]  # 0.40, 0.30, 0.25, 0.10, 0.0 of 150


def test_knockout_frame_one_row_per_edge_and_digit(frames):
    patterns, effects, _ = frames
    df = knockout_frame(effects, patterns)
    assert len(df) == 6 * 8
    retrieve = df[df["edge"] == "L2H1 c3←c1"]
    assert set(retrieve["rank"]) == {0} and retrieve.set_index("k").loc[4, "accuracy_drop"] == pytest.approx(0.4)
    assert df[df["edge"] == "L2H2 c3←||"]["role"].iloc[0] == "sink"


def test_tree_paths_join_cache_and_retrieve_edges(frames):
    _, _, edges = frames
    paths = tree_paths(edges)
    assert sorted(paths["operand"]) == ["a1", "b1"]
    row = paths[paths["operand"] == "a1"].iloc[0]
    assert (row["cache_head"], row["via"], row["retrieve_head"], row["target"], row["predicts"]) == ("L1H0", "c1", "L2H1", "c3", 4)
    assert row["cache_drop"] == pytest.approx(0.3) and row["retrieve_drop"] == pytest.approx(0.4)
    assert row["cache_logit_drop"] == pytest.approx(2.0) and row["retrieve_logit_drop"] == pytest.approx(3.0)
    assert tree_paths(edges[edges["role"] != "retrieve"]).empty
    table = paths_table(paths)
    assert table.index.tolist() == ["ICoT", "ICoT"] and table.iloc[0]["predicts"] == "c4"
    first = table[table["operand"] == "a1"].iloc[0]
    assert first["cache edge: accuracy cost (points) / logit drop"] == "30.0 / 2.00"
    assert first["retrieve edge: accuracy cost (points) / logit drop"] == "40.0 / 3.00"


def test_tree_paths_need_both_edges_to_cost_the_digit_at_the_end(frames):
    patterns, effects, _ = frames
    cache_a, cache_b, retrieve = effects["ICoT"][:3]
    assert len(tree_paths(edge_frame({"ICoT": [cache_a, cache_b, retrieve]}, patterns))) == 2
    # The retrieve edge is important, but for c5: the path ends at c4 (its query predicts c4), so it goes.
    elsewhere = _effect(1, 1, "c3", "c1", k=5, acc=0.40, logit=3.0)
    assert tree_paths(edge_frame({"ICoT": [cache_a, cache_b, elsewhere]}, patterns)).empty
    # A cache edge that costs c2 only drops its own path, not the other one.
    b_elsewhere = _effect(0, 0, "c1", "b1", k=2, acc=0.25, logit=1.5)
    kept = tree_paths(edge_frame({"ICoT": [cache_a, b_elsewhere, retrieve]}, patterns))
    assert kept["operand"].tolist() == ["a1"]
    # A cost at c4 by the logit test alone keeps the path.
    logit_only = _effect(0, 0, "c1", "b1", k=4, acc=0.0, logit=0.7)
    assert sorted(tree_paths(edge_frame({"ICoT": [cache_a, logit_only, retrieve]}, patterns))["operand"]) == ["a1", "b1"]


def test_tree_paths_recover_the_two_hops_of_a_hand_set_model():
    """From the knockouts of a model built to cache a0 at '####' in layer 1 and read it from c0 in layer 2
    (predicting c1), the path a0 → '####' → c0 comes out, costing c1 all its accuracy at both hops."""
    model, problems = cache_retrieve_model(), cache_retrieve_problems()
    patterns = {"two hops": mean_attention(model, problems)}
    effects = {"two hops": find_important_edges(model, problems, patterns=patterns["two hops"])}
    edges = edge_frame(effects, patterns)
    assert set(edges["role"]) == {"cache", "retrieve"}
    (path,) = tree_paths(edges).itertuples()
    assert (path.operand, path.cache_head, path.via, path.retrieve_head, path.target, path.predicts) == (
        "a0", "L1H0", "####", "L2H0", "c0", 1,
    )  # fmt: skip
    assert path.cache_drop == 1.0 and path.retrieve_drop == 1.0
    # the path's two edges, as the knockouts that remove them: the cache edge '####' ← a0 in layer 1,
    # then the retrieve edge c0 ← '####' in layer 2 (what chapter 3's explorable preset knocks out)
    labels = patterns["two hops"].labels
    cache, retrieve = path_knockouts(tree_paths(edges), "two hops", 1)
    assert (cache.layer, labels[cache.query], labels[cache.key]) == (0, "####", "a0")
    assert (retrieve.layer, labels[retrieve.query], labels[retrieve.key]) == (1, "c0", "####")
    assert path_knockouts(tree_paths(edges), "two hops", 2) == []


def test_broad_heads_find_the_head_that_reads_everything(frames):
    patterns, _, _ = frames
    broad = broad_heads(pattern_frame(patterns))
    assert set(broad["head_name"]) == {"L2H3"}  # uniform heads do not count
    assert sorted(broad["predicts"]) == [2, 3, 4, 5, 6, 7]
    row = broad.set_index("predicts").loc[2]
    assert (row["digits_read"], row["digits_needed"]) == (6, 6) and row["operand_weight"] == pytest.approx(0.9)
    assert row["max_weight"] == pytest.approx(0.9 / 6, abs=1e-4) and (row["layer"], row["head"], row["query"]) == (1, 3, POS["c1"])
    assert broad_heads(pattern_frame(patterns).iloc[:0]).empty


def test_operand_reads_and_the_widest_reader(frames):
    patterns, _, _ = frames
    df = pattern_frame(patterns)
    reads = operand_reads(df)
    assert len(reads) == 2 * 4 * 6  # every (layer, head) at the 6 positions predicting c2 … c7
    row = reads[(reads["head_name"] == "L1H0") & (reads["predicts"] == 2)].iloc[0]  # reads (a1, b1) of 6
    assert (row["digits_read"], row["digits_needed"]) == (2, 6) and row["share_read"] == pytest.approx(1 / 3)
    widest = widest_reads(df).loc["ICoT"]
    assert widest["head_name"] == "L2H3" and widest["share_read"] == 1.0 and widest["operand_weight"] == pytest.approx(0.9)
    two = pd.concat([df, df.assign(model="SFT")])  # one row per model
    assert list(widest_reads(two).index) == ["ICoT", "SFT"]
    assert operand_reads(df.iloc[:0]).empty and widest_reads(df.iloc[:0]).empty


def _broad_tested(frames, cost_at_c3=(0.4, 2.5)) -> pd.DataFrame:
    """The broad rows of the hand-made patterns with group-knockout effects: only the one at c2
    (predicting c3) costs its digit."""
    patterns, _, _ = frames
    broad = broad_heads(pattern_frame(patterns))
    (knockouts,) = broad_knockouts(broad, {"ICoT": LABELS}).values()
    effects = []
    for knockout in knockouts:
        accuracy, logits = np.zeros(8), np.zeros(8)
        if knockout.query == POS["c2"]:
            accuracy[3], logits[3] = cost_at_c3
        accuracy[0] = 0.9  # a cost at another digit than the row's own does not make the head used
        effects.append(EdgeEffect(edge=knockout, accuracy_drop=accuracy, logit_drop=logits))
    return broad_knockout_frame(broad, {"ICoT": effects})


def test_broad_knockouts_remove_every_needed_operand_digit_at_once(frames):
    patterns, _, _ = frames
    broad = broad_heads(pattern_frame(patterns))
    knockouts = broad_knockouts(broad, {"ICoT": LABELS})["ICoT"]
    assert len(knockouts) == len(broad)
    at_c2 = next(k for k in knockouts if k.query == POS["c1"])  # predicts c2: a0..a2 and b0..b2
    assert (at_c2.layer, at_c2.head) == (1, 3)
    assert sorted(LABELS[p] for p in at_c2.key) == ["a0", "a1", "a2", "b0", "b1", "b2"]
    at_c7 = next(k for k in knockouts if k.query == POS["c6"])
    assert len(at_c7.key) == 8  # every operand digit


def test_broad_knockout_frame_scores_each_head_at_its_own_digit(frames):
    tested = _broad_tested(frames).set_index("predicts")
    assert tested.loc[3, "used"] and tested.loc[3, "accuracy_drop"] == pytest.approx(0.4)
    assert tested.loc[3, "logit_drop"] == 2.5 and tested.loc[3, "keys_removed"] == 8
    assert not tested.drop(index=3)["used"].any()  # their cost is at c0, not at their own digit
    patterns, _, _ = frames
    with pytest.raises(ValueError, match="no group knockout"):
        broad_knockout_frame(broad_heads(pattern_frame(patterns)), {"ICoT": []})
    empty = broad_knockout_frame(broad_heads(pattern_frame(patterns)).iloc[:0], {})
    assert empty.empty and "used" in empty.columns


def _cot_patterns() -> AttentionPatterns:
    """A model that still writes two chain-of-thought tokens: uniform attention, except head 0 of layer 2,
    which reads cot0 only at every answer position."""
    labels = LABELS[:10] + ["cot0", "cot1"] + LABELS[10:]
    t = len(labels)
    mean = np.zeros((2, 4, t, t))
    for q in range(t):
        mean[:, :, q, : q + 1] = 1.0 / (q + 1)
    answers = list(range(12, 20))
    mean[1, 0, answers] = 0.0
    mean[1, 0, answers, 10] = 1.0
    return AttentionPatterns(mean=mean, labels=labels, answer_positions=answers, n_problems=10)


def test_cot_attention_measures_the_share_on_chain_of_thought_keys(frames):
    patterns, _, _ = frames
    cot = cot_attention(pattern_frame({"ICoT": _cot_patterns(), "SFT": patterns["ICoT"]}))
    assert cot.index.tolist() == [("ICoT", 0), ("ICoT", 1), ("SFT", 0), ("SFT", 1)]
    uniform = np.mean([2 / (q + 1) for q in range(12, 20)])  # two cot keys among q + 1
    assert cot.loc[("ICoT", 0), "uniform"] == pytest.approx(uniform) and cot.loc[("ICoT", 1), "uniform"] == pytest.approx(uniform)
    assert cot.loc[("ICoT", 0), "share"] == pytest.approx(uniform, abs=1e-3)  # uniform heads only
    layer2 = (3 * uniform + 1.0) / 4  # 3 uniform heads, 1 on cot0
    assert cot.loc[("ICoT", 1), "share"] == pytest.approx(layer2, abs=1e-3)
    assert (cot.loc["SFT", "share"] == 0).all() and (cot.loc["SFT", "uniform"] == 0).all()


# --------------------------------------------------------------------------- charts


def test_attention_chart_has_its_selectors_and_lookups(frames):
    patterns, _, _ = frames
    spec = _compiles(attention_chart(pattern_frame(patterns), default_k=4))
    params = {p["name"]: p for p in spec["params"]}
    assert set(params) == {"model_pick", "layer_pick", "head_pick", "k_pick"}
    assert params["model_pick"]["bind"]["labels"] == ["ICoT"] and params["model_pick"]["value"] == 0
    assert params["layer_pick"]["bind"]["labels"] == ["layer 1", "layer 2"] and params["layer_pick"]["value"] == 1
    assert params["k_pick"]["value"] == 4 and params["k_pick"]["bind"]["labels"][0] == "#### (→c0)"
    cells = spec["data"]["values"]
    assert all(c["w"] >= 0.01 for c in cells) and set(cells[0]) == {"m", "layer", "head", "k", "key", "w"}
    assert sum("lookup" in t for t in spec["vconcat"][0]["transform"]) == 2


def test_knockout_heatmap_shows_one_model_its_costliest_edges_and_a_slider_for_more(frames):
    patterns, effects, _ = frames
    df = knockout_frame({"ICoT": effects["ICoT"], "SFT": effects["ICoT"][:2]}, {"ICoT": patterns["ICoT"], "SFT": patterns["ICoT"]})
    spec = _compiles(knockout_heatmap(df, default_model="SFT", top=3))
    params = {p["name"]: p for p in spec["params"]}
    assert params["heatmap_model"]["value"] == "SFT" and params["heatmap_model"]["bind"]["options"] == ["ICoT", "SFT"]
    assert params["heatmap_top"]["value"] == 3 and params["heatmap_top"]["bind"]["max"] == 6  # up to every edge
    assert params["measure"]["bind"]["options"] == ["accuracy", "logit"]
    first = spec["transform"][0]["filter"]
    assert "heatmap_model" in first and "heatmap_top" in first  # one model, its costliest edges
    labels = {row["label"] for row in spec["datasets"][spec["data"]["name"]]}
    assert "L2H2 c3←|| [sink]" in labels
    scale = spec["encoding"]["color"]["scale"]
    assert scale["domainMid"] == 0 and "domainMin" not in scale and not scale.get("clamp")  # a knockout that helps shows
    assert knockout_heatmap(df, default_model="nobody").to_dict()["params"][0]["value"] == "ICoT"


def test_tree_frame_lays_out_each_digits_costliest_tree_edges_by_layer(frames):
    patterns, _, edges = frames
    df = tree_frame(edges, patterns["ICoT"], "ICoT", top=2)
    nodes = df[df["part"] == "node"]
    assert len(nodes) == 24 and sorted(set(nodes["x"])) == [0.0, 1.0, 2.0]
    operands = nodes[nodes["x"] == 0.0]
    assert list(operands["text"]) == ["a0", "a1", "a2", "a3", "b0", "b1", "b2", "b3"] and list(operands["y"]) == list(map(float, range(8)))
    assert list(nodes[nodes["x"] == 1.0]["text"]) == ["####"] + [f"c{k}" for k in range(7)]
    assert list(nodes[nodes["x"] == 2.0]["digit"]) == [f"c{k}" for k in range(8)]
    drawn = df[df["part"] == "edge"]
    assert list(drawn["edge"]) == ["L2H1 c3←c1", "L1H0 c1←a1"]  # c4's two costliest; no sink, no own-position edge
    assert set(drawn["digit"]) == {"c4"} and list(drawn["accuracy"]) == [40.0, 30.0]
    retrieve, cache = drawn.iloc[0], drawn.iloc[1]
    assert (retrieve["x"], retrieve["y"], retrieve["x2"], retrieve["y2"]) == (1.0, 2.0, 2.0, 4.0)  # c1 at layer 1 → c3 (→c4) at layer 2
    assert (cache["x"], cache["y"], cache["x2"], cache["y2"]) == (0.0, 1.0, 1.0, 2.0)  # a1 → c1 (→c2)
    assert len(tree_frame(edges, patterns["ICoT"], "ICoT")[lambda d: d["part"] == "edge"]) == 3
    assert tree_frame(edges, patterns["ICoT"], "SFT")["part"].eq("node").all()  # no edges of that model


def test_tree_chart_focuses_a_clicked_digit_and_colours_heads_not_positions(frames):
    patterns, _, edges = frames
    spec = _compiles(tree_chart(tree_frame(edges, patterns["ICoT"], "ICoT"), default_digit="c4"))
    layers = spec["layer"]
    (pick,) = spec["params"]
    assert pick["name"] == "digit_pick" and pick["select"]["on"] == "click" and pick["value"] == [{"digit": "c4"}]
    assert pick["views"] == [layers[3]["name"]]  # the digits on the right are what a reader clicks
    drawn = layers[1]
    assert drawn["encoding"]["color"]["field"] == "head_name"
    assert drawn["encoding"]["color"]["scale"]["range"] == HEAD_COLORS
    assert drawn["encoding"]["opacity"]["condition"][0]["param"] == "digit_pick"
    assert all("field" not in layer["encoding"].get("color", {}) for layer in layers if layer is not drawn)  # nodes: greys
    assert set(HEAD_COLORS).isdisjoint({"#4c78a8", "#e45756", "#54a24b"})  # not a model's colour
    assert "value" not in tree_chart(tree_frame(edges, patterns["ICoT"], "ICoT"), default_digit=None).to_dict()["params"][0]
    _compiles(tree_chart(tree_frame(edge_frame({}, {}), patterns["ICoT"], "ICoT")))


def test_charts_accept_no_rows():
    _compiles(attention_chart(pattern_frame({})))
    _compiles(knockout_heatmap(knockout_frame({}, {})))
    assert edge_frame({}, {}).empty and tree_paths(edge_frame({}, {})).empty
    assert paths_table(tree_paths(edge_frame({}, {}))).empty and pairs_table(cache_pairs({}), edge_frame({}, {})).empty
    assert cot_attention(pattern_frame({})).empty


# --------------------------------------------------------------------------- the widget


def test_html_tables():
    html = attention_row_html(LABELS, np.linspace(0, 1, T), POS["c1"], knocked=POS["a1"])
    assert html.count('class="longmul-key"') == POS["c1"] + 1 and html.count("outline") == 1 and ">||<br>" in html
    clean = TeacherForcedScores(
        predicted=np.array([[5, 5, 6, 0, 8, 2, 0, 1]]), correct=np.ones((1, 8), bool), logit=np.full((1, 8), 9.0)
    )
    knocked = TeacherForcedScores(
        predicted=np.array([[5, 5, 6, 0, -1, 2, 0, 1]]), correct=np.array([[1, 1, 1, 1, 0, 1, 1, 1]], bool), logit=np.full((1, 8), 7.5)
    )
    table = knockout_table_html([5, 5, 6, 0, 8, 2, 0, 1], clean, knocked)
    assert "· ✗" in table and table.count("+1.50") == 8 and "edge knocked out" in table


@pytest.fixture(scope="module")
def tiny():
    return build_model(model_config_from_preset("tiny"), seed=0).eval()


def test_mechanism_explorer_updates(tiny):
    widget = mechanism_explorer({"tiny": tiny}, a="1234", b="5678")
    (a_box, _, _), (layer_box, head_box), (query_box, key_box) = (box.children for box in widget.children[:3])
    out = widget.children[-1]
    assert "1234 × 5678 = 7006652" in out.value and "L2H0 at c2 (→c3)" in out.value
    assert layer_box.value == 1 and key_box.value == -1 and "Knocking out <b>L2H0 c2←" in out.value
    head_box.value = 2
    assert "L2H2 at c2 (→c3)" in out.value
    query_box.value = 10  # '####'
    assert [v for _, v in key_box.options] == [-1] + list(range(11))
    key_box.value = POS["||"]
    assert "L2H2 ####←||" in out.value and "attention sink" in out.value and "At layer 2 it also holds" in out.value
    layer_box.value = 0
    assert "L1H2 ####←||" in out.value and "At layer 1 it is the same in every problem" in out.value
    a_box.value = "12a4"
    assert "digits 0-9" in out.value


def test_mechanism_explorer_opens_at_a_given_edge(tiny):
    edge = Knockout(0, 3, POS["c1"], POS["b1"])
    widget = mechanism_explorer({"other": tiny, "tiny": tiny}, start=("tiny", edge))
    (_, _, model_box), (layer_box, head_box), (query_box, key_box) = (box.children for box in widget.children[:3])
    assert (model_box.value, layer_box.value, head_box.value, query_box.value, key_box.value) == ("tiny", 0, 3, 12, 6)
    assert "Knocking out <b>L1H3 c1←b1</b> (cache" in widget.children[-1].value
    model_box.value = "other"  # a new model opens at the defaults
    assert (layer_box.value, head_box.value, key_box.value) == (1, 0, -1)
    bad = mechanism_explorer({"tiny": tiny}, start=("tiny", Knockout(0, 0, 3, 0)))  # query not an answer position
    assert bad.children[2].children[0].value == 13


def _knockout_rows(html: str) -> dict[str, list[str]]:
    """The widget's knockout table: row name → its cells' text."""
    rows = re.findall(r'<tr><th style="text-align: left;">([^<]+)</th>(.*?)</tr>', html)
    return {name: re.findall(r"<td[^>]*>([^<]*)</td>", cells) for name, cells in rows}


def test_mechanism_explorer_knocks_out_the_edge_a_hand_set_model_depends_on():
    """The hand-set 2x2 model copies a0 into every answer position through head 0 of layer 1, which is
    right only for c0 when b0 = 1 (23 × 41 = 943: a0 = 3 = c0). Knocking out that head's edge '####' ← a0
    breaks c0 and leaves every other digit's prediction and logit as it was."""
    widget = mechanism_explorer({"copier": copy_a0_model()}, a="23", b="41", start=("copier", THE_EDGE))
    out = widget.children[-1].value
    assert "23 × 41 = 943: L1H0 at #### (→c0)" in out and "Knocking out <b>L1H0 ####←a0</b> (cache, attention 1.00)" in out
    rows = _knockout_rows(out)
    assert rows["true digit"] == ["3", "4", "9", "0"]
    assert rows["clean model"] == ["3 ✓", "3 ✗", "3 ✗", "3 ✗"]
    knocked = rows["edge knocked out"]
    assert knocked[0].endswith("✗") and not knocked[0].startswith("3") and knocked[1:] == rows["clean model"][1:]
    drops = [float(x) for x in rows["correct-logit drop"]]
    assert drops[0] > 1 and drops[1:] == [0.0, 0.0, 0.0]


def test_mechanism_explorer_notes_a_chain_of_thought_and_no_models(tiny):
    cot_model = build_model(model_config_from_preset("tiny"), seed=1).eval()
    cot_model.config.longmul_cot_tokens = 46
    widget = mechanism_explorer({"plain": tiny, "with CoT": cot_model})
    out = widget.children[-1]
    assert "chain-of-thought" not in out.value
    widget.children[0].children[2].value = "with CoT"
    assert "still writes 46 chain-of-thought tokens; on this problem this head gives them" in out.value and "cot45" in out.value
    assert "No model" in mechanism_explorer({}).children[-1].value
