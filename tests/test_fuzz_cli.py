"""A fuzzer for the command line and the public API: every case ends in success or a clear error.

Clear means, for the command line (``longmul.cli.main`` run in-process): exit status 0, or 2 with a
last line ``longmul…: error: …`` (ours, or argparse's for a bad flag), and no ``Traceback`` in what it
printed. For the API: a result, or a ``ValueError`` (subclasses included) with a message; any other
exception fails the case, and so does a ``load_model`` error that does not name the folder.

Each test draws inputs from pools of good and bad values (numbers in and out of range, text, paths to
folders, files, binary and damaged files) and mutates argument lists (drop, insert, replace or repeat an
argument). The files live in a temporary folder and the commands run in another, so nothing outside is
written. ``train`` runs its argument parsing and validation only: the training itself is stubbed out.

Each test runs its share of the active Hypothesis profile's budget (tests/conftest.py): about 800 cases
in CI, over 10,000 with ``--hypothesis-profile=thorough``. The module prints the count.
"""

import contextlib
import io
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

from conftest import tiny_config
from longmul import cli
from longmul.config import MAX_STEPS, MODEL_SIZE_CAPS, TrainConfig
from longmul.cost import parameter_count
from longmul.evaluate import evaluate, predict
from longmul.model import build_model, count_parameters, model_config_of
from longmul.saved import load_model, write_manifest
from longmul.task import (
    MAX_PROBLEMS,
    Problem,
    format_icot_line,
    parse_icot_line,
    problem_from_strings,
    random_problems,
    write_problems,
)
from longmul.train import train
from longmul.weights import CHECKED_KEYS

CLEAR = (ValueError,)  # the API's clear errors: ValueError names what is wrong with the input
CASES: Counter = Counter()  # cases run, by test
TRACEBACKS: Counter = Counter()  # command-line cases that printed a traceback (each also fails its test)


def share(fraction: float) -> settings:
    """This test's share of the active profile's examples per test."""
    return settings(max_examples=max(1, round(settings.default.max_examples * fraction)))


@pytest.fixture(scope="module", autouse=True)
def report_counts(request):
    """Print how many cases ran (and how many printed a traceback) once the module is done."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or not CASES:
        return
    by_test = ", ".join(f"{kind} {n:,}" for kind, n in sorted(CASES.items()))
    with capture.global_and_fixture_disabled():
        reporter.write_line(
            f"\nfuzz cases: {sum(CASES.values()):,} ({by_test}); tracebacks: {sum(TRACEBACKS.values())}"
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The files the fuzzed arguments point at: a finished 2x2 run (a model and a checkpoint), damaged
    copies of it, problem files good and bad; and ``work``, the folder the commands run in."""
    pool = tmp_path_factory.mktemp("pool")
    run = train(tiny_config(max_steps=4, final_eval_random=8), pool / "run", command="pytest")
    model = pool / "model"
    shutil.copytree(run, model, ignore=shutil.ignore_patterns("checkpoint"))
    damaged = {}
    for name, damage in DAMAGES.items():
        damaged[name] = shutil.copytree(run, pool / "damaged" / name)
        damage(damaged[name])
    (pool / "empty").mkdir()
    (pool / "mine").mkdir()
    (pool / "mine" / "README.md").write_text("someone's notes")
    (pool / "notes.txt").write_text("a text file\n")
    (pool / "binary.bin").write_bytes(bytes(range(256)) * 4)
    write_problems(random_problems(5, seed=1, n_digits=2), pool / "good.txt")
    write_problems(random_problems(3, seed=1, n_digits=4), pool / "four.txt")
    (pool / "malformed.txt").write_text("1 2 * 3 4||#### 1\n")
    (pool / "blank.txt").write_text("\n\n")
    (pool / "stub").mkdir()
    (pool / "stub" / "metrics.json").write_text("{}")

    def stub_train(config: TrainConfig, out_dir, resume=False, command=None, keep_checkpoint=True) -> Path:
        """``train`` without the training: the options are checked as the real one checks them first,
        and the model they describe is built on the meta device (no memory is allocated), which must
        work for any options that pass, however large, with the parameters longmul.cost counts."""
        config.validate()
        with torch.device("meta"):
            model = build_model(config.model_config())
        assert count_parameters(model) == parameter_count(config.model_config())
        return pool / "stub"

    work = tmp_path_factory.mktemp("work")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("longmul.train.train", stub_train)
        yield {"pool": pool, "run": run, "model": model, "damaged": damaged, "work": work}


def _edit_json(path: Path, change) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


DAMAGES = {
    "state_garbage": lambda d: (d / "checkpoint" / "state.json").write_text("{not json"),
    "state_no_config": lambda d: _edit_json(
        d / "checkpoint" / "state.json", lambda s: {k: v for k, v in s.items() if k != "config"}
    ),
    "state_list": lambda d: (d / "checkpoint" / "state.json").write_text("[]"),
    "state_binary": lambda d: (d / "checkpoint" / "state.json").write_bytes(b"\xff\xfe\x00"),
    "history_torn": lambda d: (d / "history.jsonl").write_text((d / "history.jsonl").read_text() + '{"kind": "tr'),
    "history_garbage": lambda d: (d / "history.jsonl").write_text("nonsense\n" + (d / "history.jsonl").read_text()),
    "training_garbage": lambda d: (d / "training.json").write_text('{"config": "sft", "steps": "many"}'),
    "weights_truncated": lambda d: (d / "checkpoint" / "model.safetensors").write_bytes(b"\x08\x00"),
    "optimizer_missing": lambda d: (d / "checkpoint" / "optimizer.safetensors").unlink(),
}


def run_cli(argv: list[str], work: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(work), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exit_info:
            code = exit_info.code or 0
    return code, out.getvalue(), err.getvalue()


def check_cli(kind: str, argv: list[str], world) -> int:
    """Run one command-line case and check that it ended in success or one clear error line."""
    code, _, err = run_cli(argv, world["work"])
    CASES[kind] += 1
    event(f"exit {code}")
    if "Traceback" in err:
        TRACEBACKS[kind] += 1
    assert "Traceback" not in err, (argv, err)
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        last = err.strip().split("\n")[-1]  # not splitlines(): a message may hold \x1c-\x1e
        assert last.startswith("longmul") and ": error: " in last, (argv, err)
    leftovers = [
        p
        for folder in (world["pool"], world["work"])
        for p in folder.rglob("*")
        if p.suffix in (".saving", ".tmp", ".old")
    ]
    assert not leftovers, (argv, leftovers)
    return code


# --------------------------------------------------------------------------- values and mutations

SMALL = st.integers(-5, 40)  # in range where valid: a valid --n decodes no more than this many problems
HUGE = st.one_of(st.integers(MAX_PROBLEMS + 1, 10**15), st.integers(-(10**15), -6))
SPECIAL = st.sampled_from(["", "-", "--", " 3", "0x10", "1e3", "3.5", "nan", "inf", "-inf", "true", "no", "٣", "１２"])
TEXT = st.text(st.characters(blacklist_characters="/"), max_size=10).filter(lambda t: t not in (".", ".."))
NUMBER = st.one_of(SMALL, HUGE, st.floats(allow_nan=True, allow_infinity=True)).map(str)
VALUE = st.one_of(NUMBER, SPECIAL, TEXT)


def mostly(valid) -> st.SearchStrategy[str]:
    """A valid value about half the time, else anything."""
    return st.one_of(valid.map(str), VALUE)


@st.composite
def mutated(draw, base: list[str], flags: list[str]) -> list[str]:
    """``base`` (a command and its arguments) with up to three arguments dropped, inserted, replaced or
    repeated, and maybe ``--debug`` before the command."""
    args = list(base[1:])
    token = st.one_of(st.sampled_from(flags), VALUE)
    ops = st.lists(st.sampled_from(["drop", "insert", "replace", "repeat"]), min_size=1, max_size=3)
    for op in draw(st.one_of(st.just([]), ops)):
        i = draw(st.integers(0, len(args)))
        if op == "insert" or not args:
            args.insert(i, draw(token))
        elif op == "drop":
            del args[i % len(args)]
        elif op == "replace":
            args[i % len(args)] = draw(token)
        else:
            args.insert(i, args[i % len(args)])
    return (["--debug"] if draw(st.booleans()) else []) + [base[0], *args]


def optional(draw, flag: str, values) -> list[str]:
    return [flag, draw(values)] if draw(st.booleans()) else []


def path_in(world, good: str, *others: str):
    """A path: ``good`` (a third of the time), another from the pool, or a new or odd name relative to
    the working folder."""
    pool = world["pool"]
    known = {"run": world["run"], "model": world["model"], **world["damaged"]}
    named = [str(known.get(n, pool / n)) for n in others] + [str(pool / "missing"), str(pool / "notes.txt" / "x")]
    return st.one_of(st.just(str(known.get(good, pool / good))), st.sampled_from(named), TEXT)


# --------------------------------------------------------------------------- the command line


@share(0.5)
@given(data=st.data())
def test_predict(world, data):
    operand = st.one_of(st.integers(10, 99).map(str), st.integers(-99, 10**6).map(str), SPECIAL, TEXT)
    model = data.draw(st.one_of(st.just(str(world["model"])), path_in(world, "run", "empty", "mine", *DAMAGES)))
    argv = ["predict", model, data.draw(operand), data.draw(operand)]
    check_cli("longmul predict", data.draw(mutated(argv, ["--debug", "-h"])), world)


@share(0.5)
@given(data=st.data())
def test_eval(world, data):
    problems = path_in(world, "good.txt", "four.txt", "malformed.txt", "blank.txt", "binary.bin", "empty")
    model = st.one_of(st.just(str(world["model"])), path_in(world, "run", "empty", "binary.bin", *DAMAGES))
    argv = ["eval", data.draw(model)]
    argv += optional(data.draw, "--problems", st.one_of(st.just("random"), problems))
    argv += optional(data.draw, "--n", mostly(st.integers(1, 30)))
    argv += optional(data.draw, "--seed", mostly(st.integers(0, 99))) + (["--json"] if data.draw(st.booleans()) else [])
    check_cli("longmul eval", data.draw(mutated(argv, ["--problems", "--n", "--seed", "--json"])), world)


@share(0.5)
@given(data=st.data())
def test_data(world, data):
    out = data.draw(path_in(world, "new.txt", "empty", "notes.txt"))
    argv = ["data", "--out", out, "--n", data.draw(mostly(st.integers(1, 30)))]
    argv += optional(data.draw, "--seed", mostly(st.integers(0, 99)))
    argv += optional(data.draw, "--digits", mostly(st.integers(1, 6)))
    argv += optional(data.draw, "--exclude-eval", st.one_of(st.sampled_from(["true", "false"]), VALUE))
    check_cli("longmul data", data.draw(mutated(argv, ["--out", "--n", "--seed", "--digits", "--exclude-eval"])), world)


TRAIN_FLAGS = ["--out", "--resume", "--drop-checkpoint"] + [f"--{f.replace('_', '-')}" for f in TrainConfig().to_dict()]
# The model's size and the length of the run also get sizes up to and past their caps (config.py:
# MODEL_SIZE_CAPS, MAX_STEPS, the cap on a training step's estimated memory), widths the default heads divide.
SIZE_FLAGS = {"--d-model", "--n-layers", "--n-heads", "--batch-size", "--max-steps"}
EDGES = [*MODEL_SIZE_CAPS.values(), MAX_STEPS, MAX_PROBLEMS]
SIZES = st.one_of(
    st.integers(1, 64).map(lambda k: 128 * k),
    st.integers(1, 20_000),
    st.sampled_from(EDGES + [n + 1 for n in EDGES]),
).map(str)


@share(1.0)
@given(data=st.data())
def test_train_arguments(world, data):
    recipe = data.draw(st.sampled_from(["sft", "icot", "aux", "rl"]))
    argv = [
        "train",
        "--recipe",
        recipe,
        "--out",
        data.draw(path_in(world, "new_run", "empty", "mine", "run", "notes.txt")),
    ]
    device = st.sampled_from(["auto", "cpu", "cuda", "cuda:1", "mps", "meta", "bogus"])
    for flag in data.draw(st.lists(st.sampled_from(TRAIN_FLAGS[3:]), max_size=4)):
        values = device if flag == "--device" else st.one_of(SIZES, VALUE) if flag in SIZE_FLAGS else VALUE
        argv += [flag, data.draw(values)]
    check_cli("longmul train", data.draw(mutated(argv, TRAIN_FLAGS)), world)


@share(0.5)
@given(data=st.data())
def test_snapshot(world, data):
    run = data.draw(path_in(world, "run", "model", "empty", "notes.txt", *DAMAGES))
    argv = ["snapshot", run]
    out = st.one_of(st.just(run), path_in(world, "snapshots", "mine", "notes.txt", "empty"))
    argv += optional(data.draw, "--out", out)
    argv += ["--n-random", data.draw(mostly(st.integers(0, 8)))]
    argv += ["--force"] if data.draw(st.booleans()) else []
    check_cli("longmul snapshot", data.draw(mutated(argv, ["--out", "--n-random", "--force"])), world)


@share(0.5)
@given(data=st.data())
def test_runs(world, data):
    folders = data.draw(st.lists(path_in(world, "run", "model", "damaged", "empty", "notes.txt", *DAMAGES), max_size=3))
    argv = ["runs", *folders] + (["--json"] if data.draw(st.booleans()) else [])
    check_cli("longmul runs", data.draw(mutated(argv, ["--json"])), world)


JSON_VALUES = (
    st.one_of(st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=False), st.text(max_size=8))
    | st.lists(st.integers(0, 3), max_size=3)
    | st.dictionaries(st.text(max_size=4), st.integers(), max_size=2)
)
DELETE = object()


def mutate_json(data, path: Path, keys: list[str]) -> None:
    """Set (or delete) one entry of a JSON object file, or replace the whole file."""
    try:
        obj = json.loads(path.read_text())
    except (ValueError, OSError):  # already replaced by an earlier mutation
        obj = None
    if not isinstance(obj, dict) or data.draw(st.booleans()):
        path.write_text(data.draw(st.sampled_from(["", "[]", "{}", "null", "{", '"text"', "3"])))
        return
    key = data.draw(st.sampled_from(keys) | st.text(max_size=6))
    value = data.draw(st.one_of(st.just(DELETE), JSON_VALUES))
    if value is DELETE:
        obj.pop(key, None)
    else:
        obj[key] = value
    path.write_text(json.dumps(obj))


def mutate_bytes(data, path: Path) -> None:
    """Truncate a file, flip one of its bytes, or append garbage."""
    raw = path.read_bytes()
    op = data.draw(st.sampled_from(["truncate", "flip", "append"]))
    if op == "truncate":
        path.write_bytes(raw[: data.draw(st.integers(0, max(0, len(raw) - 1)))])
    elif op == "flip" and raw:
        i = data.draw(st.integers(0, len(raw) - 1))
        path.write_bytes(raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1 :])
    else:
        path.write_bytes(raw + data.draw(st.binary(min_size=1, max_size=16)))


def fresh_copy(source: Path, target: Path, ignore=None) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    return shutil.copytree(source, target, ignore=ignore)


@share(0.5)
@given(data=st.data())
def test_runs_and_snapshot_of_mutated_run_files(world, data):
    run = fresh_copy(world["run"], world["pool"] / "mutated_run")
    state_keys = list(json.loads((run / "checkpoint" / "state.json").read_text()))
    for _ in range(data.draw(st.integers(1, 2))):
        target = data.draw(st.sampled_from(["state.json", "training.json", "history.jsonl", "model.safetensors"]))
        if target == "state.json":
            mutate_json(data, run / "checkpoint" / "state.json", state_keys)
        elif target == "training.json":
            mutate_json(data, run / "training.json", ["config", "steps", "wall_time_s", "sessions", "command"])
        elif target == "history.jsonl":
            mutate_bytes(data, run / "history.jsonl")
        else:
            mutate_bytes(data, run / "checkpoint" / "model.safetensors")
    check_cli("longmul runs (mutated run)", ["runs", str(run), "--json"], world)
    out = world["pool"] / "mutated_snapshot"
    shutil.rmtree(out, ignore_errors=True)
    check_cli("longmul snapshot (mutated run)", ["snapshot", str(run), "--out", str(out), "--n-random", "0"], world)


# --------------------------------------------------------------------------- the API


def clear(call, *args, **kwargs):
    """``call(*args)``'s result, or None after a clear error (a ValueError with a message)."""
    try:
        result = call(*args, **kwargs)
    except CLEAR as err:
        assert str(err), f"{type(err).__name__} without a message"
        event("clear error")
        return None
    event("success")
    return result


def operand_text(n_digits: int):
    """An operand of ``n_digits`` digits, maybe padded with spaces; or any number; or odd text."""
    width = max(1, n_digits)
    fits = st.integers(10 ** (width - 1), 10**width - 1).map(str)
    padded = st.tuples(st.sampled_from(["", " ", "\t"]), fits, st.sampled_from(["", " ", "\n"])).map("".join)
    return st.one_of(fits, padded, st.integers(-10, 10**7).map(str), SPECIAL, TEXT)


@share(1.0)
@given(data=st.data(), n_digits=st.integers(-2, 9))
def test_problem_from_strings(data, n_digits):
    CASES["problem_from_strings()"] += 1
    a, b = data.draw(operand_text(n_digits)), data.draw(operand_text(n_digits))
    problem = clear(problem_from_strings, a, b, n_digits)
    if problem is not None:
        assert problem.product == int(a) * int(b) and len(problem.c_digits) == 2 * n_digits


@st.composite
def icot_lines(draw) -> str:
    """An ICoT line, maybe with a few characters deleted, inserted or replaced; or any text."""
    if draw(st.booleans()):
        return draw(st.text(max_size=60))
    n_a, n_b = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    a, b = draw(st.integers(10 ** (n_a - 1), 10**n_a - 1)), draw(st.integers(10 ** (n_b - 1), 10**n_b - 1))
    line = list(format_icot_line(Problem(a, b, n_a, n_b)))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(line)))
        char = draw(st.sampled_from(list("0123456789 *|#()+x")))
        op = draw(st.sampled_from(["delete", "insert", "replace"]))
        if op == "insert" or i == len(line):
            line.insert(i, char)
        elif op == "delete":
            del line[i]
        else:
            line[i] = char
    return "".join(line)


@share(1.0)
@given(line=icot_lines(), check_answer=st.booleans())
def test_parse_icot_line(line, check_answer):
    CASES["parse_icot_line()"] += 1
    problem = clear(parse_icot_line, line, check_answer=check_answer)
    if problem is not None and check_answer:
        assert parse_icot_line(format_icot_line(problem)) == problem


@pytest.fixture(scope="module")
def tiny_model(world):
    return load_model(world["model"]).model


def operand(n_digits: int):
    """An operand of ``n_digits`` digits, or any integer."""
    width = max(1, n_digits)
    return st.one_of(st.integers(10 ** (width - 1), 10**width - 1), st.integers(-5, 10**5))


@share(0.5)
@given(data=st.data(), n_a=st.sampled_from([2, 2, -1, 0, 1, 3, 5]), n_b=st.sampled_from([2, 2, -1, 0, 1, 3, 5]))
def test_predict_api(tiny_model, data, n_a, n_b):
    CASES["predict()"] += 1
    problem = clear(Problem, data.draw(operand(n_a)), data.draw(operand(n_b)), n_a, n_b)
    if problem is None:
        return
    prediction = clear(predict, tiny_model, problem)
    assert (prediction is None) == ((n_a, n_b) != (2, 2))  # only problems of the model's size are answered
    if prediction is not None:
        assert prediction.exact == (prediction.digits == list(problem.c_digits))


@share(0.3)
@given(
    sizes=st.lists(st.sampled_from([(2, 2), (2, 2), (1, 2), (3, 3), (12, 12)]), max_size=5),
    seed=st.integers(0, 100),
    batch_size=st.integers(-1, 6),
)
def test_evaluate_api(tiny_model, sizes, seed, batch_size):
    CASES["evaluate()"] += 1
    problems = [Problem(10 ** (n_a - 1) + seed % 9, 10 ** (n_b - 1) + seed % 7, n_a, n_b) for n_a, n_b in sizes]
    result = clear(evaluate, tiny_model, problems, batch_size=batch_size)
    valid = bool(sizes) and set(sizes) == {(2, 2)} and batch_size >= 1
    assert (result is not None) == valid
    if result is not None:
        assert result.n == len(problems) and len(result.per_digit) == 4


CONFIG_KEYS = [*CHECKED_KEYS, "longmul_position_skip", "longmul_cot_tokens", "longmul_recipe"]
RECORD_KEYS = ["model_config", "config", "steps", "recipe", "random"]  # training.json, metrics.json
MODEL_FILES = ["config.json", "model.safetensors", "training.json", "metrics.json", "history.jsonl", "tokenizer.json"]


@share(1.0)
@given(data=st.data())
def test_load_model_on_a_mutated_folder(world, data):
    CASES["load_model()"] += 1
    copy = fresh_copy(world["model"], world["pool"] / "mutated_model")
    for _ in range(data.draw(st.integers(1, 3))):
        name = data.draw(st.sampled_from([*MODEL_FILES, "manifest.json"]))
        action = data.draw(st.sampled_from(["json", "bytes", "delete"]))
        if action == "delete":
            (copy / name).unlink(missing_ok=True)
        elif not (copy / name).is_file():
            continue
        elif action == "json" and name.endswith(".json"):
            mutate_json(data, copy / name, CONFIG_KEYS if name == "config.json" else RECORD_KEYS)
        else:
            mutate_bytes(data, copy / name)
    if data.draw(st.booleans()) and (copy / "manifest.json").is_file():
        (copy / "manifest.json").unlink()
        write_manifest(copy)  # as someone who edits a file and regenerates the manifest would
    try:
        loaded = load_model(copy)
    except CLEAR as err:
        assert str(copy) in str(err), f"the error does not name the folder: {err}"
        event("clear error")
        return
    event("loaded")
    layout = model_config_of(loaded.model).layout
    problems = [
        Problem(10 ** (layout.n_a - 1) + i, 10 ** (layout.n_b - 1) + i, layout.n_a, layout.n_b) for i in range(3)
    ]
    assert len(predict(loaded.model, problems[0]).digits) == layout.n_c
    assert evaluate(loaded.model, problems).n == 3
