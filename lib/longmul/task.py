"""The multiplication task: problems, their digits, running sums and the ICoT line format.

Every number is written least-significant digit first, as in the paper and in ICoT:
``a = a_0 a_1 … a_{n-1}``, ``b = b_0 … b_{m-1}``, product ``c = c_0 … c_{n+m-1}`` (zero-padded).

The quantities the paper reasons with, for output position ``k``:

* pair sum        ``s_k = Σ_{i+j=k} a_i · b_j``
* running sum     ``ĉ_0 = s_0``,  ``ĉ_k = s_k + ⌊ĉ_{k-1} / 10⌋``
* output digit    ``c_k = ĉ_k mod 10``;  carry into ``k+1`` is ``⌊ĉ_k / 10⌋``.

The ICoT line (Deng et al., 2024) is ``input||chain-of-thought #### answer`` with digits separated by
spaces. The chain of thought lists the partial products ``a · b_j · 10^j`` (reversed, zero-padded to
``n + 1 + j`` digits) joined by ``+``; after the second and later partial products except the last, the
running total so far follows in parentheses, padded to the same width.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .files import read_text

DEFAULT_DIGITS = 4
MAX_DIGITS = 9  # operand digits: the product of two 9-digit numbers still fits the int64 arrays of a batch
MAX_PROBLEMS = 1_000_000  # problems drawn at once (`longmul data`, `eval --problems random`): ~100 MB of lines
MAX_SEED = 2**32 - 1  # the largest seed the command line takes (torch seeds are 64-bit, numpy's any size)
_DIGITS_RE = re.compile(r"[0-9]+")


def digits_lsb_first(value: int, width: int) -> tuple[int, ...]:
    """``value`` as ``width`` digits, least-significant first (zero-padded)."""
    if value < 0:
        raise ValueError(f"expected a non-negative number, got {value}")
    if value >= 10**width:
        raise ValueError(f"{value} has more than {width} digits")
    return tuple((value // 10**i) % 10 for i in range(width))


def number_from_digits(digits: Sequence[int]) -> int:
    """Inverse of :func:`digits_lsb_first`."""
    return sum(int(d) * 10**i for i, d in enumerate(digits))


@dataclass(frozen=True)
class Problem:
    """One multiplication problem ``a × b`` with ``n_a``- and ``n_b``-digit operands."""

    a: int
    b: int
    n_a: int = DEFAULT_DIGITS
    n_b: int = DEFAULT_DIGITS

    def __post_init__(self) -> None:
        for name, value, width in (("a", self.a, self.n_a), ("b", self.b, self.n_b)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"operand {name} must be an integer, got {value!r}")  # noqa: TRY004 (one error type for bad input)
            if width < 1:
                raise ValueError(f"operand {name} needs at least one digit, got width {width}")
            if not 10 ** (width - 1) <= value < 10**width:
                raise ValueError(
                    f"operand {name}={value} must have exactly {width} digits "
                    f"(between {10 ** (width - 1)} and {10**width - 1})"
                )
        object.__setattr__(self, "a", int(self.a))
        object.__setattr__(self, "b", int(self.b))

    @property
    def n_c(self) -> int:
        """Number of output digits (the product is zero-padded to this width)."""
        return self.n_a + self.n_b

    @property
    def product(self) -> int:
        return self.a * self.b

    @cached_property
    def a_digits(self) -> tuple[int, ...]:
        return digits_lsb_first(self.a, self.n_a)

    @cached_property
    def b_digits(self) -> tuple[int, ...]:
        return digits_lsb_first(self.b, self.n_b)

    @cached_property
    def c_digits(self) -> tuple[int, ...]:
        return digits_lsb_first(self.product, self.n_c)

    @cached_property
    def pair_sums(self) -> tuple[int, ...]:
        """``s_k = Σ_{i+j=k} a_i b_j`` for ``k = 0 … n_c-1`` (``s_{n_c-1}`` is 0)."""
        return pair_sums(self.a_digits, self.b_digits)

    @cached_property
    def running_sums(self) -> tuple[int, ...]:
        """``ĉ_k``: the pair sum plus the carry from the running sum below."""
        return running_sums(self.a_digits, self.b_digits)

    @cached_property
    def carries(self) -> tuple[int, ...]:
        """``⌊ĉ_{k-1} / 10⌋``: the carry *into* position ``k`` (0 for ``k = 0``)."""
        return (0,) + tuple(c // 10 for c in self.running_sums[:-1])

    @cached_property
    def partial_products(self) -> tuple[int, ...]:
        """``a · b_j · 10^j`` for each digit ``b_j``."""
        return tuple(self.a * d * 10**j for j, d in enumerate(self.b_digits))

    def pairs_for_digit(self, k: int) -> list[tuple[int, int]]:
        """Index pairs ``(i, j)`` with ``i + j = k``: the products that ``s_k`` adds up."""
        return [(i, k - i) for i in range(self.n_a) if 0 <= k - i < self.n_b]


def pair_sums(a_digits: Sequence[int], b_digits: Sequence[int]) -> tuple[int, ...]:
    n_c = len(a_digits) + len(b_digits)
    sums = [0] * n_c
    for i, a_i in enumerate(a_digits):
        for j, b_j in enumerate(b_digits):
            sums[i + j] += a_i * b_j
    return tuple(sums)


def running_sums(a_digits: Sequence[int], b_digits: Sequence[int]) -> tuple[int, ...]:
    out: list[int] = []
    carry = 0
    for s_k in pair_sums(a_digits, b_digits):
        out.append(s_k + carry)
        carry = out[-1] // 10
    return tuple(out)


def problem_from_strings(a: str, b: str, n_digits: int = DEFAULT_DIGITS) -> Problem:
    """Parse two operands written most-significant digit first (as people write them)."""
    values = []
    for name, text in (("a", a), ("b", b)):
        text = str(text).strip()
        if not text:
            raise ValueError(f"operand {name} is empty")
        if text.startswith("-"):
            raise ValueError(f"operand {name}={text!r} is negative; only positive numbers are supported")
        if not _DIGITS_RE.fullmatch(text):
            raise ValueError(f"operand {name}={text!r} contains characters other than the digits 0-9")
        if len(text) != n_digits or text[0] == "0":
            raise ValueError(
                f"operand {name}={text!r} must be a {n_digits}-digit number without a leading zero"
            )
        values.append(int(text))
    return Problem(values[0], values[1], n_digits, n_digits)


# --------------------------------------------------------------------------- ICoT line format


def _spaced(digits: Iterable[int]) -> str:
    return " ".join(str(d) for d in digits)


def chain_of_thought_tokens(problem: Problem) -> list[str]:
    """The ICoT chain of thought of ``problem`` as a list of tokens (46 for 4×4)."""
    tokens: list[str] = []
    total = 0
    last = problem.n_b - 1
    for j, partial in enumerate(problem.partial_products):
        width = problem.n_a + 1 + j
        if j > 0:
            tokens.append("+")
        tokens.extend(str(d) for d in digits_lsb_first(partial, width))
        total += partial
        if 0 < j < last:
            tokens.append("(")
            tokens.extend(str(d) for d in digits_lsb_first(total, width))
            tokens.append(")")
    return tokens


def chain_of_thought_roles(n_a: int = DEFAULT_DIGITS, n_b: int = DEFAULT_DIGITS) -> list[str]:
    """What each token of the chain of thought stands for, parallel to :func:`chain_of_thought_tokens`:
    ``"partial product 1, digit 2"`` (digit 2 of a·b_1·10, units first), ``"running total 0–2, digit 3"``
    (digit 3 of a·b_0 + a·b_1·10 + a·b_2·100), and the separators ``"+"``, ``"("`` and ``")"``."""
    roles: list[str] = []
    last = n_b - 1
    for j in range(n_b):
        width = n_a + 1 + j
        if j > 0:
            roles.append("+")
        roles.extend(f"partial product {j}, digit {i}" for i in range(width))
        if 0 < j < last:
            roles.append("(")
            roles.extend(f"running total 0–{j}, digit {i}" for i in range(width))
            roles.append(")")
    return roles


def format_icot_line(problem: Problem) -> str:
    """``a_0 … * b_0 …||<chain of thought> #### c_0 …`` exactly as in the ICoT data files."""
    return (
        f"{_spaced(problem.a_digits)} * {_spaced(problem.b_digits)}"
        f"||{' '.join(chain_of_thought_tokens(problem))} #### {_spaced(problem.c_digits)}"
    )


def parse_icot_line(line: str, *, check_answer: bool = True) -> Problem:
    """Parse one ICoT line; raise ``ValueError`` naming what is wrong with a malformed one."""
    text = line.strip()
    if "||" not in text or "####" not in text:
        raise ValueError(f"malformed ICoT line (needs 'input||cot #### answer'): {line!r}")
    question, rest = text.split("||", 1)
    cot, answer = rest.split("####", 1)
    parts = question.split("*")
    if len(parts) != 2:
        raise ValueError(f"malformed ICoT line (input must be 'a * b'): {line!r}")
    operands = []
    for name, part in zip("ab", parts):
        tokens = part.split()
        if not tokens or any(t not in "0123456789" or len(t) != 1 for t in tokens):
            raise ValueError(f"malformed ICoT line (operand {name} must be single digits): {line!r}")
        operands.append([int(t) for t in tokens])
    a_digits, b_digits = operands
    if a_digits[-1] == 0 or b_digits[-1] == 0:
        raise ValueError(f"malformed ICoT line (an operand has a leading zero): {line!r}")
    problem = Problem(number_from_digits(a_digits), number_from_digits(b_digits), len(a_digits), len(b_digits))
    if check_answer:
        answer_tokens = answer.split()
        if answer_tokens != [str(d) for d in problem.c_digits]:
            raise ValueError(f"malformed ICoT line (answer is not the product): {line!r}")
        if cot.split() != chain_of_thought_tokens(problem):
            raise ValueError(f"malformed ICoT line (chain of thought does not match the rule): {line!r}")
    return problem


def read_problems(path: str | Path) -> list[Problem]:
    """Read an ICoT-format file; errors name the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"problem file not found: {path}")
    problems = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            problems.append(parse_icot_line(line))
        except ValueError as err:
            raise ValueError(f"{path}:{number}: {err}") from None
    if not problems:
        raise ValueError(f"problem file {path} holds no problems")
    return problems


def write_problems(problems: Iterable[Problem], path: str | Path) -> None:
    """Write ``problems`` as ICoT lines (atomically: a failure leaves no partial file), creating the
    file's folder if needed."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; name the file to write the problems to")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(format_icot_line(p) + "\n" for p in problems)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- random problems


def operand_range(n_digits: int) -> tuple[int, int]:
    """Inclusive range of ``n_digits``-digit numbers (leading digit 1–9)."""
    return 10 ** (n_digits - 1), 10**n_digits - 1


def sample_operands(
    rng: np.random.Generator,
    n: int,
    n_a: int = DEFAULT_DIGITS,
    n_b: int = DEFAULT_DIGITS,
    exclude: frozenset[tuple[int, int]] = frozenset(),
) -> np.ndarray:
    """``n`` uniform operand pairs ``(a, b)`` as an int64 array of shape (n, 2), none in ``exclude``."""
    lo_a, hi_a = operand_range(n_a)
    lo_b, hi_b = operand_range(n_b)
    pairs = np.stack([rng.integers(lo_a, hi_a + 1, n), rng.integers(lo_b, hi_b + 1, n)], axis=1)  # (n, 2)
    if exclude:
        # Resample the rare collisions with an evaluation set; the loop ends after a few rounds.
        while True:
            clash = np.fromiter(((int(a), int(b)) in exclude for a, b in pairs), bool, len(pairs))
            if not clash.any():
                break
            k = int(clash.sum())
            pairs[clash] = np.stack([rng.integers(lo_a, hi_a + 1, k), rng.integers(lo_b, hi_b + 1, k)], axis=1)
    return pairs


def random_problems(
    n: int,
    seed: int,
    n_digits: int = DEFAULT_DIGITS,
    exclude: Iterable[Problem] = (),
) -> list[Problem]:
    """``n`` fresh uniform problems (deterministic in ``seed``), none equal to a problem in ``exclude``;
    at most :data:`MAX_PROBLEMS` of at most :data:`MAX_DIGITS` digits."""
    if not 0 <= n <= MAX_PROBLEMS:
        raise ValueError(f"number of problems must be from 0 to {MAX_PROBLEMS:,}, got {n:,}")
    if not 1 <= n_digits <= MAX_DIGITS:
        raise ValueError(f"operands must have from 1 to {MAX_DIGITS} digits, got {n_digits}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    excluded = frozenset((p.a, p.b) for p in exclude)
    pairs = sample_operands(np.random.default_rng(seed), n, n_digits, n_digits, excluded)
    return [Problem(int(a), int(b), n_digits, n_digits) for a, b in pairs]
