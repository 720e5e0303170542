import numpy as np
import pytest
import torch

from longmul.analysis.attention import (
    AttentionGraph,
    GraphEdge,
    GraphNode,
    answer_positions,
    as_pairs,
    attention_graph,
    candidate_edges,
    effects_table,
    find_important_edges,
    head_summary,
    knockout_sweep,
    mean_attention,
    pattern_records,
    position_labels,
    teacher_forced_scores,
)
from longmul.evaluate import teacher_forced_batch
from longmul.hooks import Knockout
from longmul.model import PRESETS, ModelConfig, build_model
from longmul.sequences import DIGIT_ID0, TIMES_ID, VOCAB
from longmul.task import random_problems

# In the 2x2 layout: a0 a1 * b0 b1 || #### c0 c1 c2 c3 <eos>; '####' (position 6) predicts c0.
ANSWER_MARK = 6
THE_EDGE = Knockout(layer=0, head=0, query=ANSWER_MARK, key=0)
# The two edges of cache_retrieve_model: layer 1 caches a0 at '####', layer 2 at c0 (predicting c1) reads it.
CACHE_EDGE = Knockout(layer=0, head=0, query=ANSWER_MARK, key=0)
RETRIEVE_EDGE = Knockout(layer=1, head=0, query=ANSWER_MARK + 1, key=ANSWER_MARK)


pytestmark = pytest.mark.usefixtures("one_thread")


def blank_model(config: ModelConfig):
    """A model that does nothing yet: every weight zero but the layer norms' (1) and the embedding, which
    sends token t to dimension t (tied: also the unembedding). The hand-set models below add heads."""
    m = build_model(config, seed=0).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        for ln in [m.transformer.ln_f] + [b.ln_1 for b in m.transformer.h] + [b.ln_2 for b in m.transformer.h]:
            ln.weight.fill_(1.0)
        m.transformer.wte.weight[:, : len(VOCAB)] = 10 * torch.eye(len(VOCAB))
    return m


def copy_a0_model():
    """Hand-set 2x2 model: layer-0 head 0 attends from every position to position 0 (a0) and copies its
    token to the output; nothing else writes. So it predicts a0 everywhere, which is right only for c0
    when b0 = 1 (c0 = a0 · 1): the single edge its accuracy depends on is head 0, '####' → a0."""
    config = ModelConfig(d_model=64, n_layers=2, n_heads=2, n_a=2, n_b=2)
    m = blank_model(config)
    d, V = config.d_model, len(VOCAB)
    with torch.no_grad():
        m.transformer.wpe.weight[0, d - 1] = 30.0  # position 0 -> a flag in the last dim
        attn = m.transformer.h[0].attn
        w = attn.c_attn.weight  # (d, 3d): q | k | v
        attn.c_attn.bias[0] = 5.0  # every query of head 0 has q[0] = 5 ...
        w[d - 1, d] = 5.0  # ... and only position 0 has k[0] != 0
        for t in range(V):  # value copies the token dims, the output projection writes them back
            w[t, 2 * d + t] = 1.0
            attn.c_proj.weight[t, t] = 50.0
    return m


def copy_a0_a1_model():
    """copy_a0_model with head 0 drawn equally to a0 and a1: where a0 = a1 the head copies that digit
    either way, so knocking out either edge alone costs nothing, and knocking out both at once (a key
    group) leaves it reading the other positions: a redundancy only a group knockout reveals."""
    m = copy_a0_model()
    with torch.no_grad():
        m.transformer.wpe.weight[1, m.config.n_embd - 1] = 30.0  # position 1 (a1) flagged as a0 is
    return m


def cache_retrieve_model():
    """Hand-set 2x2 model with the paper's two hops. Layer-0 head 0 at '####' (position 6) attends to a0
    and writes a0's digit into a cache subspace there; layer-1 head 0 at every answer position attends
    to '####' and writes the cached digit to the output. Both heads attend to '*' otherwise, which
    carries no digit. So c0 (at '####') predicts a0 and predicts c1 right when c1 = a0: its accuracy
    depends on the path a0 → '####' → c0, i.e. on CACHE_EDGE and RETRIEVE_EDGE."""
    config = ModelConfig(d_model=64, n_layers=2, n_heads=2, n_a=2, n_b=2)
    m = blank_model(config)
    d = config.d_model
    cache = 32  # dim cache + t holds a cached digit token t
    a0_flag, answer_mark_flag = d - 1, d - 2  # position flags of a0 and '####'
    with torch.no_grad():
        m.transformer.wpe.weight[0, a0_flag] = 30.0
        m.transformer.wpe.weight[ANSWER_MARK, answer_mark_flag] = 30.0
        cache_attn, retrieve_attn = m.transformer.h[0].attn, m.transformer.h[1].attn
        for attn, key_flag in ((cache_attn, a0_flag), (retrieve_attn, answer_mark_flag)):
            w = attn.c_attn.weight  # (d, 3d): q | k | v
            w[key_flag, d] = 20.0  # k[0]: only the flagged position …
            attn.c_attn.bias[1] = 2.0  # … and, weaker, '*' (k[1]) draw attention
            w[TIMES_ID, d + 1] = 5.0
        cache_attn.c_attn.weight[answer_mark_flag, 0] = 5.0  # q[0] only at '####': the cache reads a0 there alone
        retrieve_attn.c_attn.bias[0] = 5.0  # q[0] everywhere: the retrieve reads '####'
        for t in range(DIGIT_ID0, DIGIT_ID0 + 10):
            cache_attn.c_attn.weight[t, 2 * d + t] = 1.0
            cache_attn.c_proj.weight[t, cache + t] = 50.0
            retrieve_attn.c_attn.weight[cache + t, 2 * d + t] = 1.0
            retrieve_attn.c_proj.weight[t, t] = 50.0
    return m


def cache_retrieve_problems() -> np.ndarray:
    """~100 2x2 problems where c1 = a0 and no other digit is a0 or the digit before it: predicting a0 is
    right for c1 only, and so is predicting the previous digit (what a position falls back to)."""
    grid = np.array([(a, b) for a in range(10, 100) for b in range(10, 100)], dtype=np.int64)
    c = (grid[:, :1] * grid[:, 1:] // 10 ** np.arange(4)) % 10  # (N, 4)
    a0 = grid[:, 0] % 10
    keep = (c[:, 1] == a0) & (c[:, 0] != a0)
    for k in (2, 3):
        keep &= (c[:, k] != a0) & (c[:, k] != c[:, k - 1])
    return grid[keep][::5]


@pytest.fixture(scope="module")
def copier():
    return copy_a0_model()


@pytest.fixture(scope="module")
def pairs():
    """2x2 problems with b0 = 1 (so c0 = a0) and c1, c2, c3 != a0 (so copying a0 is wrong there)."""
    grid = np.array([(a, b) for a in range(10, 100) for b in range(11, 100, 10)], dtype=np.int64)
    c = (grid[:, :1] * grid[:, 1:] // 10 ** np.arange(4)) % 10  # (N, 4)
    keep = (c[:, 1:] != grid[:, :1] % 10).all(1)
    return grid[keep][::6]  # ~100 problems


def test_the_hand_set_model_works_as_designed(copier, pairs):
    scores = teacher_forced_scores(copier, pairs)
    assert scores.accuracy.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert (scores.predicted == (pairs[:, :1] % 10)).all()
    patterns = mean_attention(copier, pairs)
    assert patterns.at_answers.shape == (2, 2, 4, 12)
    np.testing.assert_allclose(patterns.at_answers[0, 0, :, 0], 1.0, atol=1e-6)


def test_exhaustive_sweep_finds_exactly_the_one_edge(copier, pairs):
    edges = [
        Knockout(layer, head, q, key)
        for layer in range(2)
        for head in range(2)
        for q in answer_positions(copier)
        for key in range(q + 1)
    ]
    effects = knockout_sweep(copier, pairs, edges)
    assert [e.edge for e in effects] == edges
    hurting = [e for e in effects if e.max_accuracy_drop > 0]
    assert [e.edge for e in hurting] == [THE_EDGE]
    (found,) = hurting
    assert found.accuracy_drop[0] > 0.9 and (found.accuracy_drop[1:] == 0).all()
    assert found.logit_drop[0] > 10 and (found.logit_drop[1:] == 0).all()
    # Edges of the heads and layer that write nothing change nothing at all.
    silent = [e for e in effects if (e.edge.layer, e.edge.head) != (0, 0)]
    assert all((e.accuracy_drop == 0).all() and (e.logit_drop == 0).all() for e in silent)


def test_find_important_edges_proposes_by_attention_and_keeps_what_matters(copier, pairs):
    patterns = mean_attention(copier, pairs)
    proposed = candidate_edges(patterns, min_weight=0.2)
    assert sorted(proposed, key=lambda e: e.query) == [Knockout(0, 0, q, 0) for q in answer_positions(copier)]
    important = find_important_edges(copier, pairs, patterns=patterns)
    assert [e.edge for e in important] == [THE_EDGE]
    assert find_important_edges(copier, pairs, min_accuracy_drop=0.999) == []
    everywhere = find_important_edges(copier, pairs, queries=range(12), min_logit_drop=1.0, patterns=patterns)
    assert [e.edge for e in everywhere] == [THE_EDGE]  # prompt positions copy a0 too, but nothing reads them


def test_find_important_edges_finds_both_hops_of_a_cache_and_retrieve():
    model, problems = cache_retrieve_model(), cache_retrieve_problems()
    assert len(problems) > 50
    assert teacher_forced_scores(model, problems).accuracy.tolist() == [0.0, 1.0, 0.0, 0.0]
    important = find_important_edges(model, problems)
    assert sorted((e.edge for e in important), key=lambda e: e.layer) == [CACHE_EDGE, RETRIEVE_EDGE]
    assert all(e.accuracy_drop.tolist() == [0.0, 1.0, 0.0, 0.0] for e in important)


def test_graph_and_tables_name_positions(copier, pairs):
    labels = position_labels(copier)
    assert labels == ["a0", "a1", "*", "b0", "b1", "||", "####", "c0", "c1", "c2", "c3", "<eos>"]
    assert answer_positions(copier) == [6, 7, 8, 9]
    effects = knockout_sweep(copier, pairs, [THE_EDGE])
    graph = attention_graph(effects, labels, answer_positions(copier))
    assert isinstance(graph, AttentionGraph)
    assert graph.nodes == [GraphNode(0, "a0", "a", None), GraphNode(6, "####", "answer", 0)]
    (edge,) = graph.edges
    assert isinstance(edge, GraphEdge) and edge[:4] == (0, 6, 0, 0) and edge.effect > 0.9
    assert attention_graph(effects, labels, answer_positions(copier), measure="logit").edges[0].effect > 10
    rows = effects_table(effects, labels)
    assert len(rows) == 4 and rows[0]["key_label"] == "a0" and rows[0]["query_label"] == "####"
    assert [r["k"] for r in rows] == [0, 1, 2, 3]


def test_head_summary_and_pattern_records(copier, pairs):
    patterns = mean_attention(copier, pairs)
    summary = head_summary(patterns, top=2)
    assert len(summary) == 2 * 2 * 4
    first = summary[0]
    assert (first["layer"], first["head"], first["k"], first["query_label"]) == (0, 0, 0, "####")
    assert first["top_a"] == "a0" and first["top_a_weight"] == pytest.approx(1.0)
    assert first["operand_weight"] == pytest.approx(1.0) and first["answer_weight"] == pytest.approx(0.0, abs=1e-6)
    assert first["top_keys"].startswith("a0 1.00")
    # Head 1 of layer 0 has all-zero scores: uniform attention over the 7 keys up to '####'.
    uniform = next(r for r in summary if (r["layer"], r["head"], r["k"]) == (0, 1, 0))
    assert uniform["answer_weight"] == pytest.approx(1 / 7) and uniform["operand_weight"] == pytest.approx(4 / 7)
    records = pattern_records(patterns)
    assert len(records) == 2 * 2 * sum(q + 1 for q in answer_positions(copier))
    one = next(r for r in records if (r["layer"], r["head"], r["k"], r["key"]) == (0, 0, 0, 0))
    assert one["weight"] == pytest.approx(1.0) and one["key_kind"] == "a"


def test_formats_of_other_models_line_up():
    """4x4 models, with and without a remaining chain of thought: labels and answer positions match
    the teacher-forced batch, and the scores agree with the batch's own targets."""
    m = build_model(PRESETS["tiny"], seed=3).eval()
    pairs = as_pairs(m, random_problems(40, seed=1))
    for cot_tokens, skip in [(0, 0), (5, 42)]:
        m.config.longmul_cot_tokens, m.config.longmul_position_skip = cot_tokens, skip
        batch = teacher_forced_batch(m, pairs)
        labels = position_labels(m)
        assert len(labels) == batch.input_ids.shape[1]
        assert (batch.answer_positions == torch.tensor(answer_positions(m))).all()
        assert [labels[p] for p in answer_positions(m)] == ["####"] + [f"c{k}" for k in range(7)]
        scores = teacher_forced_scores(m, pairs, batch_size=16)
        truth = (pairs[:, :1] * pairs[:, 1:] // 10 ** np.arange(8)) % 10
        assert scores.predicted.shape == (40, 8)
        assert (scores.correct == (scores.predicted == truth)).all()
        patterns = mean_attention(m, pairs, batch_size=16)
        np.testing.assert_allclose(patterns.mean.sum(-1), 1.0, atol=1e-5)


def test_a_key_group_knockout_finds_what_single_edges_miss():
    m = copy_a0_a1_model()
    # a0 = a1 = d and b = 10·b1 + 1, so c0 = d; b1 != d and d != 1 so no other key holds the answer.
    problems = np.array([(11 * d, 10 * b1 + 1) for d in range(2, 10) for b1 in range(1, 10) if b1 != d])
    assert teacher_forced_scores(m, problems).accuracy[0] == 1.0
    a0, a1, both = knockout_sweep(
        m, problems, [Knockout(0, 0, ANSWER_MARK, 0), Knockout(0, 0, ANSWER_MARK, 1), Knockout(0, 0, ANSWER_MARK, [0, 1])]
    )
    assert a0.accuracy_drop[0] == 0.0 and a1.accuracy_drop[0] == 0.0
    assert both.accuracy_drop[0] == 1.0 and both.logit_drop[0] > 0


def test_bad_requests_are_named(copier, pairs):
    with pytest.raises(ValueError, match="2-digit number"):
        as_pairs(copier, np.array([[123, 11]]))
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        as_pairs(copier, np.zeros((0, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="causal"):
        knockout_sweep(copier, pairs, [Knockout(0, 0, query=3, key=5)])
    with pytest.raises(ValueError, match="single query"):
        knockout_sweep(copier, pairs, [Knockout(0, 0, query=[6, 7], key=0)])
    with pytest.raises(ValueError, match="non-empty list"):
        knockout_sweep(copier, pairs, [Knockout(0, 0, query=6, key=[])])
    with pytest.raises(ValueError, match="nothing to renormalise"):
        knockout_sweep(copier, pairs, [Knockout(0, 0, query=2, key=[0, 1, 2])])
    with pytest.raises(ValueError, match="causal"):
        knockout_sweep(copier, pairs, [Knockout(0, 0, query=3, key=[1, 5])])
    with pytest.raises(ValueError, match="min_weight"):
        candidate_edges(mean_attention(copier, pairs[:4]), min_weight=0.0)
    with pytest.raises(ValueError, match="measure"):
        attention_graph([], position_labels(copier), answer_positions(copier), measure="loss")
    with pytest.raises(ValueError, match="positive"):
        find_important_edges(copier, pairs, min_accuracy_drop=0.0)
