from types import SimpleNamespace

import numpy as np
import pytest
import torch

from longmul.evaluate import EvalResult, answer_digits, evaluate_pairs, greedy_generate, pooled, predict
from longmul.model import PRESETS, build_model
from longmul.saved import load_model
from longmul.sequences import (
    ANSWER_ID,
    DIGIT_ID0,
    EOS_ID,
    PAD_ID,
    VOCAB,
    Layout,
    full_ids,
    problems_to_pairs,
)
from longmul.task import Problem, random_problems


class Oracle(torch.nn.Module):
    """Writes the right answer, with ``wrong_digit`` replaced by (c+1) mod 10, from the prompt alone."""

    def __init__(self, layout: Layout, wrong_digit: int | None = None):
        super().__init__()
        self.layout, self.wrong_digit = layout, wrong_digit
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, position_ids=None, cache=None, use_cache=False):
        if cache is not None:  # this oracle's "cache" is simply every token so far
            input_ids = torch.cat([cache, input_ids], 1)
        L = self.layout
        B, T = input_ids.shape
        digits = input_ids[:, : L.prompt_len] - DIGIT_ID0
        a = sum(digits[:, i] * 10**i for i in range(L.n_a))
        b = sum(digits[:, L.n_a + 1 + j] * 10**j for j in range(L.n_b))
        logits = torch.zeros(B, T, len(VOCAB))
        generated = T - L.prompt_len  # tokens already written after '||'
        if generated == 0:
            nxt = torch.full((B,), ANSWER_ID)
        elif generated <= L.n_c:
            k = generated - 1
            c_k = (a * b // 10**k) % 10
            if k == self.wrong_digit:
                c_k = (c_k + 1) % 10
            nxt = DIGIT_ID0 + c_k
        else:
            nxt = torch.full((B,), EOS_ID)
        logits[torch.arange(B), -1, nxt] = 1.0
        return SimpleNamespace(logits=logits, cache=input_ids)


def test_oracle_scores_perfectly_and_per_digit_accuracy_is_per_digit():
    layout = Layout()
    pairs = problems_to_pairs(random_problems(300, seed=0))
    perfect = evaluate_pairs(Oracle(layout), pairs, layout, batch_size=128, position_skip=0, cot_tokens=0)
    assert perfect.exact_match == 1.0 and perfect.per_digit == [1.0] * 8
    flawed = evaluate_pairs(Oracle(layout, wrong_digit=3), pairs, layout, position_skip=0, cot_tokens=0)
    assert flawed.exact_match == 0.0
    assert flawed.per_digit == [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(("cot_tokens", "position_skip"), [(0, 0), (6, 40), (0, 46)])
def test_cached_generation_equals_full_recomputation(cot_tokens, position_skip):
    """Each generated token is the argmax of a plain forward pass over the whole sequence so far,
    with the same positions: the key/value cache changes the cost, not the result."""
    layout = Layout()
    model = build_model(PRESETS["tiny"], seed=3).eval()
    pairs = problems_to_pairs(random_problems(16, seed=1))
    generated = greedy_generate(model, pairs, layout, position_skip=position_skip, cot_tokens=cot_tokens)
    prompt = torch.from_numpy(full_ids(pairs, layout, with_cot=False)[:, : layout.prompt_len])
    ids = torch.cat([prompt, torch.from_numpy(generated)], 1)  # (B, P + new)
    P, new = layout.prompt_len, generated.shape[1]
    positions = torch.cat([torch.arange(P), P + position_skip + torch.arange(new)])
    with torch.no_grad():
        logits = model(input_ids=ids, position_ids=positions.expand(len(ids), -1)).logits  # (B, P + new, V)
    expected = logits[:, P - 1 : -1].argmax(-1).numpy()  # (B, new): the prediction for each new token
    for row in range(len(ids)):
        ended = np.flatnonzero(generated[row] == EOS_ID)
        n = ended[0] + 1 if len(ended) else new  # <pad> after <eos> is filled in, not predicted
        assert generated[row, :n].tolist() == expected[row, :n].tolist()


def test_answer_digits_reads_after_the_first_marker():
    gen = np.array(
        [
            [DIGIT_ID0 + 1, ANSWER_ID, DIGIT_ID0 + 3, DIGIT_ID0 + 4, EOS_ID],
            [DIGIT_ID0 + 1, DIGIT_ID0 + 2, DIGIT_ID0 + 3, EOS_ID, PAD_ID],  # no '####'
            [ANSWER_ID, DIGIT_ID0 + 7, ANSWER_ID, PAD_ID, PAD_ID],  # a non-digit in the answer
        ]
    )
    assert answer_digits(gen, 3).tolist() == [[3, 4, -1], [-1, -1, -1], [7, -1, -1]]


def test_predict_on_a_saved_model(tiny_sft_model):
    loaded = load_model(tiny_sft_model)
    p = Problem(2365, 4347)
    prediction = predict(loaded.model, p)
    assert len(prediction.digits) == 8 and len(prediction.correct) == 8
    assert prediction.correct == [d == c for d, c in zip(prediction.digits, p.c_digits)]
    assert len(prediction.tokens) <= Layout().answer_len


def test_teacher_forced_batch_follows_the_model_format(tiny_sft_model):
    from longmul.evaluate import teacher_forced_batch

    model = load_model(tiny_sft_model).model
    pairs = problems_to_pairs([Problem(2365, 4347)])
    sft = teacher_forced_batch(model, pairs)
    assert sft.input_ids.shape == (1, 20) and sft.position_ids[0, 10].item() == 10
    model.config.longmul_position_skip = 46  # an ICoT model with its chain of thought internalised
    icot = teacher_forced_batch(model, pairs)
    assert icot.input_ids.shape == (1, 20) and icot.position_ids[0, 10].item() == 56
    assert icot.answer_positions[0].tolist() == list(range(10, 18))
    model.config.longmul_cot_tokens, model.config.longmul_position_skip = 6, 40  # mid-way through ICoT
    mid = teacher_forced_batch(model, pairs)
    assert mid.input_ids.shape == (1, 26) and mid.answer_positions[0, 0].item() == 16
    assert VOCAB[mid.input_ids[0, 16]] == "####"


def test_pooled_results_score_as_one_evaluation():
    first = EvalResult.from_digits(np.array([[1, 2], [3, 4]]), np.array([[1, 2], [3, 5]]))
    second = EvalResult.from_digits(np.array([[0, 0]]), np.array([[9, 0]]))
    assert first.exact_match == 0.5 and first.per_digit == [1.0, 0.5]
    both = pooled([first, second])
    assert both.n == 3 and both.exact_match == pytest.approx(1 / 3)
    assert both.per_digit == pytest.approx([2 / 3, 2 / 3])
    assert both.predicted.tolist() == [[1, 2], [3, 4], [0, 0]]
    with pytest.raises(ValueError, match="at least one"):
        pooled([])


def test_evaluate_and_predict_check_the_problems_they_are_given():
    from longmul.evaluate import evaluate

    model = build_model(PRESETS["tiny"])
    with pytest.raises(ValueError, match="no problems to evaluate"):
        evaluate(model, [])
    with pytest.raises(ValueError, match="trained on 4x4 problems, got 3x3, 4x4"):
        evaluate(model, [Problem(1234, 5678), Problem(123, 456, 3, 3)])
    with pytest.raises(ValueError, match="trained on 4x4 problems, got 20x20"):
        evaluate(model, [Problem(10**19, 10**19, 20, 20)])  # checked before the operands become int64
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        evaluate(model, [Problem(1234, 5678)], batch_size=0)
    with pytest.raises(ValueError, match=r"trained on 4x4 problems, got 5x5 \(15000 × 15000\)"):
        predict(model, Problem(15000, 15000, 5, 5))
