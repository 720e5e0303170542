import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from longmul.sequences import (
    IGNORE_INDEX,
    VOCAB,
    Layout,
    cot_ids,
    decode_tokens,
    full_ids,
    make_batch,
    problems_to_pairs,
)
from longmul.task import (
    Problem,
    chain_of_thought_tokens,
    format_icot_line,
    random_problems,
)
from longmul.tokenizer import build_tokenizer


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(0, 10_000))
def test_vectorised_cot_matches_the_rule(n_a, n_b, seed):
    problems = random_problems(1, seed, n_digits=n_a) if n_a == n_b else [Problem(10 ** (n_a - 1) + seed % 9, 10 ** (n_b - 1) + seed % 7, n_a, n_b)]
    layout = Layout(problems[0].n_a, problems[0].n_b)
    ids = cot_ids(problems_to_pairs(problems), layout)
    assert ids.shape == (1, layout.cot_len)
    assert decode_tokens(ids[0]) == chain_of_thought_tokens(problems[0])


def test_layout_of_4x4():
    layout = Layout()
    assert (layout.prompt_len, layout.cot_len, layout.answer_len, layout.max_len) == (10, 46, 10, 66)


def test_tokenizer_agrees_with_vectorised_ids():
    tokenizer = build_tokenizer()
    problems = random_problems(50, seed=1)
    ids = full_ids(problems_to_pairs(problems), Layout(), with_cot=True)
    for p, row in zip(problems, ids):
        assert tokenizer(format_icot_line(p))["input_ids"] == list(row[:-1])  # the line has no <eos>
    assert tokenizer.decode(list(ids[0]))[:7] == " ".join(str(d) for d in problems[0].a_digits)
    assert len(tokenizer) == len(VOCAB)


def test_tokenizer_decodes_every_token_apart():
    tokenizer = build_tokenizer()
    problem = random_problems(1, seed=2)[0]
    ids = full_ids(problems_to_pairs([problem]), Layout(), with_cot=True)[0]
    assert tokenizer.decode(list(ids)).split(" ") == decode_tokens(ids)  # "####" stays whole
    assert tokenizer.decode(list(ids), skip_special_tokens=True).split(" ")[-9:] == ["####", *map(str, problem.c_digits)]


def test_make_batch_removes_cot_from_the_left_and_keeps_positions():
    layout = Layout()
    pairs = problems_to_pairs([Problem(2365, 4347), Problem(9999, 1000)])
    batch = make_batch(pairs, layout, removed=np.array([0, 46]), keep_position=True)
    assert batch.input_ids.shape == (2, 66)
    row = decode_tokens(batch.input_ids[1][:20])
    assert row[9:11] == ["||", "####"] and row[-1] == "<eos>"
    assert batch.position_ids[1, 10].item() == 56  # the removed chain of thought keeps its positions
    assert batch.answer_positions[1].tolist() == list(range(10, 18))
    assert batch.answer_positions[0].tolist() == list(range(56, 64))
    # Labels: target of the token predicting c_k is c_k.
    for row_i in range(2):
        for k, pos in enumerate(batch.answer_positions[row_i]):
            c_k = (pairs[row_i, 0] * pairs[row_i, 1] // 10**k) % 10
            assert VOCAB[batch.labels[row_i, pos]] == str(c_k)
    assert (batch.labels[:, :9] == IGNORE_INDEX).all()
    assert (batch.labels[1, 20:] == IGNORE_INDEX).all() and batch.attention_mask[1, 20:].sum() == 0

    contiguous = make_batch(pairs, layout, removed=np.array([0, 46]), keep_position=False)
    assert contiguous.position_ids[1, :20].tolist() == list(range(20))


def test_sft_batch_has_no_cot():
    batch = make_batch(problems_to_pairs(random_problems(4, 0)), Layout(), removed=None)
    assert batch.input_ids.shape == (4, 20)
    assert torch.equal(batch.answer_positions[0], torch.arange(10, 18))
