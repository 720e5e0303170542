"""The task for every problem size the small-n study trains on (n = 2…5): the ICoT line format, the
running sums the aux loss regresses and the chain-of-thought roles, on hypothesis-drawn problems."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from longmul.sequences import Layout, decode_tokens, full_ids, problems_to_pairs
from longmul.task import (
    Problem,
    chain_of_thought_roles,
    chain_of_thought_tokens,
    format_icot_line,
    parse_icot_line,
)
from longmul.train import running_sums_batch

# The first three lines of data/5_by_5_mult/valid.txt of the ICoT release (Deng et al., 2024;
# github.com/da03/Internalize_CoT_Step_by_Step, MIT licence): the 5×5 layout our generator must match.
ICOT_5X5_LINES = [
    (
        "3 5 4 1 1 * 2 1 4 6 5||6 0 9 2 2 0 + 0 3 5 4 1 1 0 ( 6 3 4 7 3 1 0 ) + 0 0 2 1 8 5 4 0 ( 6 3 6 8 1 7 4 0 ) "
        "+ 0 0 0 8 1 7 8 6 0 ( 6 3 6 6 3 4 3 7 0 ) + 0 0 0 0 5 6 2 7 5 0 #### 6 3 6 6 8 0 6 4 6 0"
    ),
    (
        "4 3 0 0 5 * 6 2 4 5 2||4 0 2 0 0 3 + 0 8 6 0 0 0 1 ( 4 8 8 0 0 3 1 ) + 0 0 6 3 1 0 0 2 ( 4 8 4 4 1 3 1 2 ) "
        "+ 0 0 0 0 7 1 0 5 2 ( 4 8 4 4 8 4 1 7 2 ) + 0 0 0 0 8 6 0 0 0 1 #### 4 8 4 4 6 1 2 7 2 1"
    ),
    (
        "7 9 0 0 8 * 2 7 0 1 9||4 9 1 0 6 1 + 0 9 7 6 0 6 5 ( 4 8 9 6 6 7 5 ) + 0 0 0 0 0 0 0 0 ( 4 8 9 6 6 7 5 0 ) "
        "+ 0 0 0 7 9 0 0 8 0 ( 4 8 9 3 6 8 5 8 0 ) + 0 0 0 0 3 7 8 0 2 7 #### 4 8 9 3 9 5 4 9 2 7"
    ),
]


def test_generator_reproduces_the_icot_5x5_lines():
    for line in ICOT_5X5_LINES:
        problem = parse_icot_line(line)  # checks the answer and the chain of thought against the rule
        assert (problem.n_a, problem.n_b) == (5, 5)
        assert format_icot_line(problem) == line


square_problems = st.integers(2, 5).flatmap(
    lambda n: st.tuples(st.integers(10 ** (n - 1), 10**n - 1), st.integers(10 ** (n - 1), 10**n - 1)).map(
        lambda ab: Problem(ab[0], ab[1], n, n)
    )
)


@settings(max_examples=60, deadline=None)
@given(square_problems)
def test_format_lengths_and_roles_agree_for_every_size(p):
    n = p.n_a
    layout = Layout(n, n)
    tokens = chain_of_thought_tokens(p)
    roles = chain_of_thought_roles(n, n)
    assert len(tokens) == len(roles) == layout.cot_len
    # the vectorised sequence the model trains on is the ICoT line, token for token
    line_tokens = format_icot_line(p).replace("||", " || ").replace("####", " #### ").split()
    assert decode_tokens(full_ids(problems_to_pairs([p]), layout, with_cot=True)[0]) == line_tokens + ["<eos>"]
    # each role names the digit it holds: partial product j is a·b_j·10^j, running total 0–j the sum so far
    for token, role in zip(tokens, roles, strict=True):
        if ", digit " not in role:
            assert token == role
            continue
        number, digit = role.split(", digit ")
        j = int(number.split()[-1].split("–")[-1])
        value = p.partial_products[j] if number.startswith("partial") else sum(p.partial_products[: j + 1])
        assert int(token) == (value // 10 ** int(digit)) % 10


@settings(max_examples=60, deadline=None)
@given(st.lists(square_problems, min_size=1, max_size=8))
def test_vectorised_running_sums_match_the_definition(problems):
    n = problems[0].n_a
    problems = [p for p in problems if p.n_a == n]
    sums = running_sums_batch(problems_to_pairs(problems), Layout(n, n))  # (B, 2n)
    assert sums.shape == (len(problems), 2 * n)
    assert np.array_equal(sums, np.array([p.running_sums for p in problems]))
    for p, row in zip(problems, sums, strict=True):
        assert [int(s) % 10 for s in row] == list(p.c_digits)
