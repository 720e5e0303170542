from types import SimpleNamespace

import numpy as np
import pytest
import torch

from longmul.analysis import attribution
from longmul.analysis.attribution import (
    logit_attribution,
    problem_attribution,
    replacement_digits,
)
from longmul.evaluate import teacher_forced_batch
from longmul.model import PRESETS, ModelConfig, build_model, gpt2_config
from longmul.sequences import ANSWER_ID, DIGIT_ID0, VOCAB, Layout
from longmul.task import Problem, sample_operands

LAYOUT = Layout()
SCALE = 5.0
# Output digit k → the operand slot (0-3: a0-a3, 4-7: b0-b3) its prediction reads. Unlisted digits
# predict the teacher-forced next token, which no operand change can move.
READS = {0: 0, 1: 5, 3: 3, 6: 7}


class DigitReader(torch.nn.Module):
    """A stand-in for GPT2LMHeadModel whose prediction for c_k is operand digit ``READS[k]`` (logit
    SCALE on that digit's token, 0 elsewhere), so its attribution matrix is known exactly. It finds
    c_k's predicting position from ``####``, so it works in every sequence format, and it records the
    inputs it is given."""

    def __init__(self):
        super().__init__()
        self.config = gpt2_config(ModelConfig(d_model=8, n_layers=1, n_heads=1))
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.calls: list[torch.Tensor] = []

    def forward(self, input_ids, position_ids=None, attention_mask=None):
        self.calls.append(input_ids.clone())
        B, T = input_ids.shape
        logits = torch.zeros(B, T, len(VOCAB))
        marker = (input_ids == ANSWER_ID).int().argmax(1)  # (B,) position predicting c_0
        rows = torch.arange(B)
        operands = [LAYOUT.a_position(i) for i in range(4)] + [LAYOUT.b_position(j) for j in range(4)]
        for k in range(LAYOUT.n_c):
            if k in READS:
                token = input_ids[:, operands[READS[k]]]  # (B,) the digit token it copies
                logits[rows, marker + k, token] = SCALE
            else:
                logits[rows, marker + k, input_ids[rows, marker + k + 1]] = 1.0  # peeks at the answer
        return SimpleNamespace(logits=logits)


pytestmark = pytest.mark.usefixtures("one_thread")


def expected_matrix() -> np.ndarray:
    m = np.zeros((8, 8))
    for k, slot in READS.items():
        m[k, slot] = SCALE
    return m


def test_replacement_is_a_different_digit_and_leading_digits_stay_nonzero():
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 10, (20_000, 8))
    digits[:, [3, 7]] = rng.integers(1, 10, (20_000, 2))
    leading = np.array([False, False, False, True] * 2)
    new = replacement_digits(digits, leading, np.random.default_rng(1))
    assert new.shape == digits.shape and (new != digits).all()
    assert (new >= 0).all() and (new <= 9).all() and (new[:, leading] >= 1).all()
    # Uniform over the allowed alternatives: every (original, new) pair appears about equally often.
    for col, alternatives in ((0, 9), (3, 8)):
        counts = np.zeros((10, 10))
        np.add.at(counts, (digits[:, col], new[:, col]), 1)
        allowed = counts[counts > 0]
        assert len(allowed) == (10 if col == 0 else 9) * alternatives
        assert allowed.max() / allowed.min() < 2.0
    assert (replacement_digits(digits, leading, np.random.default_rng(1)) == new).all()


def test_replacement_rejects_bad_digits():
    with pytest.raises(ValueError, match="leading digit is 0"):
        replacement_digits(np.array([0]), np.array([True]), np.random.default_rng(0))
    with pytest.raises(ValueError, match="0-9"):
        replacement_digits(np.array([10]), np.array([False]), np.random.default_rng(0))


def test_matrix_is_nonzero_exactly_where_the_model_reads():
    model = DigitReader()
    result = logit_attribution(model, n_problems=200, seed=3, batch_size=200)
    np.testing.assert_array_equal(result.matrix, expected_matrix())
    assert result.matrix.shape == (8, 8) and result.n_samples == 200
    assert result.outputs == [f"c{k}" for k in range(8)] and result.operands[4] == "b0"
    unread = [k for k in range(8) if k not in READS]
    assert (result.accuracy[unread] == 1.0).all()
    records = result.to_records()
    assert len(records) == 64 and records[8 + 5] == {"output": "c1", "operand": "b1", "drop": SCALE, "sem": 0.0}


def test_only_the_operand_token_changes():
    model = DigitReader()
    logit_attribution(model, n_problems=50, seed=0, batch_size=50)
    clean, *corrupted = model.calls
    assert len(corrupted) == 8
    for slot, ids in enumerate(corrupted):
        position = LAYOUT.a_position(slot) if slot < 4 else LAYOUT.b_position(slot - 4)
        changed = ids != clean  # (B, T)
        assert changed.sum(1).tolist() == [1] * 50 and changed[:, position].all()
        leading = slot in (3, 7)
        assert (ids[:, position] >= DIGIT_ID0 + int(leading)).all() and (ids[:, position] <= DIGIT_ID0 + 9).all()


def test_works_on_sequences_with_a_chain_of_thought_and_kept_positions():
    model = DigitReader()
    model.config.longmul_cot_tokens, model.config.longmul_position_skip = 6, 40  # ICoT mid-way
    result = logit_attribution(model, n_problems=30, seed=0)
    np.testing.assert_array_equal(result.matrix, expected_matrix())
    assert model.calls[0].shape == (30, 20 + 6)


def test_problem_attribution_uses_every_alternative_digit():
    model = DigitReader()
    result = problem_attribution(model, Problem(2365, 4347))
    np.testing.assert_array_equal(result.matrix, expected_matrix())
    assert (result.sem == 0).all() and result.n_samples == 9
    assert len(model.calls[1]) == 6 * 9 + 2 * 8  # 9 alternatives per digit, 8 for a leading digit
    same = problem_attribution(model, (2365, 4347))
    np.testing.assert_array_equal(same.matrix, result.matrix)


@pytest.fixture(scope="module")
def tiny():
    return build_model(PRESETS["tiny"], seed=0)


def test_deterministic_in_seed_and_independent_of_batch_size(tiny):
    a = logit_attribution(tiny, n_problems=24, seed=1, batch_size=24)
    b = logit_attribution(tiny, n_problems=24, seed=1, batch_size=10)
    c = logit_attribution(tiny, n_problems=24, seed=2)
    np.testing.assert_allclose(a.matrix, b.matrix, atol=1e-5)
    assert not np.allclose(a.matrix, c.matrix)
    assert np.isfinite(a.matrix).all() and (a.sem > 0).all()
    assert tiny.training  # restored: build_model returns a model in training mode


@pytest.mark.parametrize("cot_tokens, position_skip", [(0, 0), (6, 40)])
def test_recomputing_from_the_replaced_digit_gives_the_whole_passes_logits(cot_tokens, position_skip):
    model = build_model(PRESETS["tiny"], seed=3).eval()
    model.config.longmul_cot_tokens, model.config.longmul_position_skip = cot_tokens, position_skip
    batch = teacher_forced_batch(model, sample_operands(np.random.default_rng(4), 20))
    assert attribution._recomputable(model, batch)
    with torch.no_grad():
        clean, layers = attribution._answer_logits_from(model, batch, batch.input_ids, 0, None)  # (B, n_c, V)
        torch.testing.assert_close(clean, attribution._answer_logits(model, batch, batch.input_ids), rtol=0, atol=1e-5)
        for position in [LAYOUT.a_position(i) for i in range(4)] + [LAYOUT.b_position(j) for j in range(4)]:
            ids = batch.input_ids.clone()  # (B, T)
            ids[:, position] = DIGIT_ID0 + (ids[:, position] - DIGIT_ID0 + 1) % 10
            partial, _ = attribution._answer_logits_from(model, batch, ids, position, layers)
            whole = attribution._answer_logits(model, batch, ids)
            assert not torch.allclose(whole, clean)
            torch.testing.assert_close(partial, whole, rtol=0, atol=1e-5)


def test_the_recomputed_attribution_equals_whole_passes(tiny, monkeypatch):
    recomputed = logit_attribution(tiny, n_problems=30, seed=5)
    monkeypatch.setattr(attribution, "_recomputable", lambda *_: False)
    whole = logit_attribution(tiny, n_problems=30, seed=5)
    np.testing.assert_allclose(recomputed.matrix, whole.matrix, atol=1e-5)
    np.testing.assert_array_equal(recomputed.accuracy, whole.accuracy)


def test_random_replacement_averages_to_the_exhaustive_one(tiny):
    problem = Problem(2365, 4347)
    exact = problem_attribution(tiny, problem)
    sampled = logit_attribution(tiny, np.repeat([[2365, 4347]], 200, axis=0), seed=0)
    assert (np.abs(sampled.matrix - exact.matrix) <= 5 * sampled.sem + 1e-5).all()


def test_bad_input_is_refused(tiny):
    with pytest.raises(ValueError, match="at least 2 problems"):
        logit_attribution(tiny, n_problems=1)
    with pytest.raises(ValueError, match="batch_size"):
        logit_attribution(tiny, n_problems=10, batch_size=0)
    with pytest.raises(ValueError, match="not a 4-digit number"):
        logit_attribution(tiny, np.array([[123, 4567], [1234, 5678]]))
    with pytest.raises(ValueError, match="4x4"):
        logit_attribution(tiny, [Problem(12, 34, 2, 2)] * 3)
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        logit_attribution(tiny, sample_operands(np.random.default_rng(0), 4).ravel())
