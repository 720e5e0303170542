from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from longmul.datasets import evaluation_problems, icot_path, icot_problems
from longmul.task import (
    Problem,
    chain_of_thought_roles,
    chain_of_thought_tokens,
    format_icot_line,
    number_from_digits,
    parse_icot_line,
    problem_from_strings,
    random_problems,
    read_problems,
    write_problems,
)


@pytest.mark.parametrize("name", ["valid", "test", "test2"])
def test_generator_reproduces_icot_files_byte_for_byte(name):
    path = icot_path(name)
    lines = path.read_text().splitlines(keepends=True)
    problems = read_problems(path)
    assert len(problems) == 1000
    assert "".join(format_icot_line(p) + "\n" for p in problems) == "".join(lines)


def test_example_from_the_paper():
    p = Problem(2365, 4347)
    assert p.a_digits == (5, 6, 3, 2) and p.b_digits == (7, 4, 3, 4)
    assert format_icot_line(p).endswith("#### 5 5 6 0 8 2 0 1")
    assert len(chain_of_thought_tokens(p)) == 46


sizes = st.tuples(st.integers(1, 6), st.integers(1, 6))


@st.composite
def problems(draw):
    n_a, n_b = draw(sizes)
    a = draw(st.integers(10 ** (n_a - 1), 10**n_a - 1))
    b = draw(st.integers(10 ** (n_b - 1), 10**n_b - 1))
    return Problem(a, b, n_a, n_b)


@given(problems())
def test_running_sums_give_digits_and_product(p):
    assert all(c == s % 10 for c, s in zip(p.c_digits, p.running_sums))
    assert number_from_digits(p.c_digits) == p.a * p.b
    assert p.running_sums[0] == p.pair_sums[0] == p.a_digits[0] * p.b_digits[0]
    for k in range(1, p.n_c):
        assert p.running_sums[k] == p.pair_sums[k] + p.running_sums[k - 1] // 10
        assert p.carries[k] == p.running_sums[k - 1] // 10
    assert sum(p.partial_products) == p.product
    for k in range(p.n_c):
        assert sum(p.a_digits[i] * p.b_digits[j] for i, j in p.pairs_for_digit(k)) == p.pair_sums[k]


@given(problems())
def test_icot_line_round_trips(p):
    assert parse_icot_line(format_icot_line(p)) == p


def test_random_problems_are_deterministic_and_avoid_the_evaluation_sets():
    held_out = evaluation_problems()
    first = random_problems(5000, seed=3, exclude=held_out)
    assert first == random_problems(5000, seed=3, exclude=held_out)
    assert first != random_problems(5000, seed=4, exclude=held_out)
    assert not {(p.a, p.b) for p in first} & {(p.a, p.b) for p in held_out}
    assert all(1000 <= p.a <= 9999 and 1000 <= p.b <= 9999 for p in first)


def test_random_problems_resample_excluded_pairs():
    # Exclude almost all 1-digit pairs: every draw must come from the few left.
    allowed = {(3, 7), (9, 9)}
    exclude = [Problem(a, b, 1, 1) for a in range(1, 10) for b in range(1, 10) if (a, b) not in allowed]
    drawn = random_problems(200, seed=0, n_digits=1, exclude=exclude)
    assert {(p.a, p.b) for p in drawn} <= allowed


@pytest.mark.parametrize(
    "a, b, message",
    [
        ("12a4", "5678", "characters other than the digits"),
        ("", "5678", "empty"),
        ("-123", "5678", "negative"),
        ("123", "5678", "4-digit"),
        ("0123", "5678", "4-digit"),
        ("1234", "56789", "4-digit"),
    ],
)
def test_problem_from_strings_rejects_bad_operands(a, b, message):
    with pytest.raises(ValueError, match=message):
        problem_from_strings(a, b)


def test_problem_rejects_wrong_widths():
    with pytest.raises(ValueError, match="exactly 4 digits"):
        Problem(999, 1000)
    with pytest.raises(ValueError, match="integer"):
        Problem("1000", 1000)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "line, message",
    [
        ("5 6 3 2 * 7 4 3 4 #### 5 5 6 0 8 2 0 1", "needs 'input||cot #### answer'"),
        ("5 6 3 2 7 4 3 4|| #### 5 5 6 0 8 2 0 1", "input must be 'a \\* b'"),
        ("5 x 3 2 * 7 4 3 4|| #### 5 5 6 0 8 2 0 1", "single digits"),
        ("5 6 3 2 * 7 4 3 4|| #### 5 5 6 0 8 2 0 2", "answer is not the product"),
        ("5 6 3 2 * 7 4 3 4|| #### 5 5 6 0 8 2 0 1", "chain of thought does not match"),
        ("5 6 3 0 * 7 4 3 4|| #### 0", "leading zero"),
    ],
)
def test_parse_rejects_malformed_lines(line, message):
    with pytest.raises(ValueError, match=message):
        parse_icot_line(line)


def test_read_problems_names_file_and_line(tmp_path: Path):
    good = format_icot_line(Problem(2365, 4347))
    path = tmp_path / "bad.txt"
    path.write_text(good + "\n" + good.replace("#### 5", "#### 6") + "\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: .*answer is not the product"):
        read_problems(path)
    with pytest.raises(ValueError, match="not found"):
        read_problems(tmp_path / "missing.txt")


def test_write_problems_round_trips(tmp_path: Path):
    problems = icot_problems("test")[:20]
    write_problems(problems, tmp_path / "x.txt")
    assert read_problems(tmp_path / "x.txt") == problems
    assert not list(tmp_path.glob("*.tmp"))


@given(problems())
def test_each_chain_of_thought_token_is_the_digit_its_role_names(p):
    tokens = chain_of_thought_tokens(p)
    roles = chain_of_thought_roles(p.n_a, p.n_b)
    assert len(roles) == len(tokens)
    totals = [sum(p.partial_products[: j + 1]) for j in range(p.n_b)]
    for token, role in zip(tokens, roles):
        if role in ("+", "(", ")"):
            assert token == role
            continue
        kind, digit = role.split(", digit ")
        value = p.partial_products[int(kind[-1])] if kind.startswith("partial product") else totals[int(kind[-1])]
        assert token == str(value // 10 ** int(digit) % 10)


def test_the_token_the_4x4_icot_runs_stall_on():
    # Token 32 of 2365 × 4347's chain of thought: digit 3 of 2365 × 347 = 820655, i.e. 0 (FACTS §1's line).
    assert chain_of_thought_roles()[32] == "running total 0–2, digit 3"
    assert chain_of_thought_tokens(Problem(2365, 4347))[32] == "0"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 1_000_001}, "number of problems must be from 0 to 1,000,000"),
        ({"n": -1}, "number of problems"),
        ({"n_digits": 0}, "from 1 to 9 digits, got 0"),
        ({"n_digits": 30}, "from 1 to 9 digits, got 30"),
        ({"seed": -1}, "seed must be non-negative"),
    ],
)
def test_random_problems_refuses_what_it_cannot_draw(kwargs, message):
    with pytest.raises(ValueError, match=message):
        random_problems(**{"n": 3, "seed": 0, **kwargs})


def test_problem_files_name_themselves_when_they_cannot_be_read_or_written(tmp_path: Path):
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)))
    with pytest.raises(ValueError, match="binary.txt is not a text file"):
        read_problems(tmp_path / "binary.txt")
    with pytest.raises(ValueError, match="is a folder"):
        write_problems(random_problems(2, seed=0), tmp_path)
    assert list(tmp_path.iterdir()) == [tmp_path / "binary.txt"]  # no temporary file left behind
