"""The ``longmul`` command: ``train``, ``eval``, ``predict``, ``snapshot``, ``runs``, ``data``, ``export-onnx``.

Errors in what the user asked for (bad operands, missing or damaged model directories, unknown
recipes, files that cannot be read or written, …) print one line ``longmul: error: …`` naming the flag
or file at fault and exit with status 2. Anything else is a bug: one line ``longmul: internal error: …``
and status 1; the global ``--debug`` flag prints the traceback as well.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import traceback
import warnings
from dataclasses import fields
from pathlib import Path

from .config import MODEL_SIZE_CAPS, RECIPES, OptionError, TrainConfig
from .files import FileWarning
from .task import MAX_DIGITS, MAX_PROBLEMS, MAX_SEED

EXPECTED_ERRORS = (ValueError, OSError)  # bad input, or a file that cannot be read or written


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _heads(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(h) for h in text.split(",") if h.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated head indices, got {text!r}") from None


def _one_line(err: BaseException | str) -> str:
    return " ".join(str(err).split())


class _Parser(argparse.ArgumentParser):
    """argparse with its error message on one line (a bad argument may hold a line break)."""

    def error(self, message: str):
        super().error(_one_line(message))


def _int_in(low: int, high: int):
    """An argparse type: an integer from ``low`` to ``high`` (argparse names the flag in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:,} to {high:,}, got {value:,}")
        return value

    return parse


class _StoreGiven(argparse._StoreAction):
    """Store the value and remember that the flag was given (a recipe file excludes training flags)."""

    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        namespace.given_options = getattr(namespace, "given_options", frozenset()) | {option_string}


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument(
        "--recipe", choices=RECIPES, action=_StoreGiven, help="training recipe (required without RECIPE_FILE)"
    )
    parser.add_argument(
        "--preset",
        default=defaults.preset,
        action=_StoreGiven,
        help="model preset: cpu (width 128), paper (width 768), tiny",
    )
    for f in fields(TrainConfig):
        if f.name in ("recipe", "preset"):
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if f.name == "aux_heads":
            parser.add_argument(
                flag,
                type=_heads,
                default=default,
                action=_StoreGiven,
                help="comma-separated heads for hook_z/hook_result sites",
            )
        elif isinstance(default, bool):
            parser.add_argument(
                flag, type=_bool, default=default, metavar="BOOL", action=_StoreGiven, help=f"(default {default})"
            )
        elif default is None:
            cap = MODEL_SIZE_CAPS.get(f.name)
            parser.add_argument(
                flag,
                type=float if f.name == "dropout" else int,
                default=None,
                action=_StoreGiven,
                help="override the preset" + (f" (1 to {cap:,})" if cap else ""),
            )
        else:
            parser.add_argument(
                flag, type=type(default), default=default, action=_StoreGiven, help=f"(default {default})"
            )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="longmul", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="print the traceback of an internal error (a bug) as well")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="train a model with one of the recipes, or the whole plan of a recipe file",
        description=(
            "Train (or resume) a model: from a recipe file (recipes/*.toml: recipe, model, data, seed and "
            "a schedule of changes by step; `longmul train recipes/aux.toml --out DIR`), or from flags "
            "(`longmul train --recipe aux ... --out DIR`)."
        ),
    )
    train.add_argument(
        "recipe_file",
        nargs="?",
        type=Path,
        metavar="RECIPE_FILE",
        help="a recipe file holding the whole training plan (then no training flags but --progress)",
    )
    train.add_argument("--out", required=True, type=Path, help="output directory (the saved model ends up here)")
    train.add_argument("--resume", action="store_true", help="resume from the checkpoint in --out")
    train.add_argument(
        "--drop-checkpoint", action="store_true", help="delete the resumable checkpoint once the model is saved"
    )
    train.add_argument(
        "--nproc",
        type=_int_in(1, 1024),
        help="train data-parallel on N processes of this machine (runs this command under "
        "`torchrun --standalone --nproc-per-node N -m longmul`; --batch-size is the global batch)",
    )
    _add_train_options(train)

    ev = sub.add_parser(
        "eval",
        help="exact match and per-digit accuracy of a saved model",
        description="Evaluate a saved model with greedy decoding.",
    )
    ev.add_argument("model_dir", type=Path)
    ev.add_argument(
        "--problems", help="ICoT-format file, or 'random' for fresh random problems (default: the ICoT test set)"
    )
    ev.add_argument(
        "--n",
        type=_int_in(1, MAX_PROBLEMS),
        default=1000,
        help=f"number of random problems (with --problems random; at most {MAX_PROBLEMS:,})",
    )
    ev.add_argument("--seed", type=_int_in(0, MAX_SEED), default=0, help="seed of the random problems")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")

    pr = sub.add_parser(
        "predict",
        help="the model's answer to a × b, digit by digit",
        description="Show a model's answer digit by digit.",
    )
    pr.add_argument("model_dir", type=Path)
    pr.add_argument("a", help="first operand, written normally (most-significant digit first)")
    pr.add_argument("b", help="second operand")

    snap = sub.add_parser(
        "snapshot",
        help="save a run's latest checkpoint as a model directory",
        description="Export the latest checkpoint of a (possibly unfinished) run as a saved model.",
    )
    snap.add_argument("run_dir", type=Path)
    snap.add_argument("--out", type=Path, help="where to write it (default: RUN_DIR/snapshot, where the book looks)")
    snap.add_argument(
        "--n-random",
        type=_int_in(0, MAX_PROBLEMS),
        default=1000,
        help=f"fresh random problems to evaluate it on (0 to {MAX_PROBLEMS:,})",
    )
    snap.add_argument(
        "--force",
        action="store_true",
        help="replace --out even if it holds something other than an earlier snapshot",
    )

    runs = sub.add_parser(
        "runs",
        help="how far each run under some folders has got",
        description="List the runs (finished or in progress) in some folders: steps, examples, training time, latest validation scores.",
    )
    runs.add_argument(
        "folders",
        type=Path,
        nargs="*",
        default=[Path("models"), Path("runs")],
        help="folders holding run directories, or run directories (default: models runs)",
    )
    runs.add_argument("--json", action="store_true", help="one JSON object per run instead of a table")

    data = sub.add_parser(
        "data", help="write ICoT-format problem files", description="Write random problems in the ICoT line format."
    )
    data.add_argument("--out", required=True, type=Path)
    data.add_argument(
        "--n", type=_int_in(1, MAX_PROBLEMS), required=True, help=f"number of problems (at most {MAX_PROBLEMS:,})"
    )
    data.add_argument("--seed", type=_int_in(0, MAX_SEED), default=0)
    data.add_argument("--digits", type=_int_in(1, MAX_DIGITS), default=4, help="digits per operand")
    data.add_argument(
        "--exclude-eval",
        type=_bool,
        default=True,
        metavar="BOOL",
        help="never emit a problem of the shipped ICoT sets (4x4 only)",
    )

    onnx = sub.add_parser(
        "export-onnx",
        help="write a saved model as ONNX (for the browser), with knockouts as an input",
        description="Write MODEL_DIR/onnx/model.onnx and onnx/export.json and add them to the manifest.",
    )
    onnx.add_argument("model_dir", type=Path)
    return parser


def cmd_train(args: argparse.Namespace) -> None:
    # Check everything this process can check before --nproc starts N processes that would each fail.
    if args.recipe_file is not None:
        _check_recipe_file_flags(args)
    elif args.recipe is None:
        raise ValueError("give a recipe file (longmul train RECIPE_FILE --out DIR) or --recipe")
    else:
        config = _train_config(args)
    if args.nproc is not None:
        from .distributed import relaunch

        status = relaunch(args.nproc, sys.argv[1:])
        if status is not None:  # this process launched the ranks; they trained
            raise SystemExit(status)
    if args.recipe_file is not None:
        return _train_recipe_file(args)
    from .train import train

    command = "longmul " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    path = train(config, args.out, resume=args.resume, command=command, keep_checkpoint=not args.drop_checkpoint)
    if path is not None:  # None: a rank other than 0 of a torchrun session
        print(json.dumps(json.loads((path / "metrics.json").read_text()), indent=2))


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """The validated training options of ``longmul train --recipe …``."""
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    try:
        config.validate()
    except OptionError as err:
        raise ValueError(f"--{err.option.replace('_', '-')}: {err}") from None
    return config


def _check_recipe_file_flags(args: argparse.Namespace) -> None:
    from .recipe_file import read_recipe_file

    flags = sorted(getattr(args, "given_options", frozenset()) - {"--progress", "--nproc"})
    if flags:
        raise ValueError(
            f"{args.recipe_file} holds the training options: {', '.join(flags)} cannot be given with it "
            "(edit a copy of the file instead)"
        )
    read_recipe_file(args.recipe_file)  # a malformed file is refused here, naming the file


def _train_recipe_file(args: argparse.Namespace) -> None:
    from .train import train_recipe_file

    command = "longmul " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    path = train_recipe_file(
        args.recipe_file,
        args.out,
        resume=args.resume,
        command=command,
        keep_checkpoint=not args.drop_checkpoint,
        progress=args.progress,
    )
    if path is not None:  # None: a rank other than 0 of a torchrun session
        print(json.dumps(json.loads((path / "metrics.json").read_text()), indent=2))


def _problems(args: argparse.Namespace, n_digits: int):
    from .datasets import evaluation_problems, icot_problems
    from .task import random_problems, read_problems

    if args.problems is None:
        return icot_problems("test")
    if args.problems == "random":
        exclude = evaluation_problems() if n_digits == 4 else []
        return random_problems(args.n, args.seed, n_digits=n_digits, exclude=exclude)
    return read_problems(args.problems)


def cmd_eval(args: argparse.Namespace) -> None:
    from .evaluate import evaluate
    from .model import model_config_of
    from .saved import load_model

    loaded = load_model(args.model_dir)
    problems = _problems(args, model_config_of(loaded.model).n_a)
    result = evaluate(loaded.model, problems, progress=not args.json)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"{args.model_dir}: exact match {100 * result.exact_match:.2f}% on {result.n} problems")
        print("per digit  " + "  ".join(f"c{k}={acc:.3f}" for k, acc in enumerate(result.per_digit)))


def cmd_predict(args: argparse.Namespace) -> None:
    from .evaluate import predict
    from .model import model_config_of
    from .saved import load_model
    from .task import problem_from_strings

    loaded = load_model(args.model_dir)
    problem = problem_from_strings(args.a, args.b, n_digits=model_config_of(loaded.model).n_a)
    prediction = predict(loaded.model, problem)
    print(f"{problem.a} × {problem.b} = {problem.product}")
    print("digit  true  model")
    for k, (true, got, ok) in enumerate(zip(problem.c_digits, prediction.digits, prediction.correct)):
        print(f"c{k:<5}{true:>4}  {'?' if got < 0 else got:>5}  {'ok' if ok else 'WRONG'}")
    shown = "".join("?" if d < 0 else str(d) for d in reversed(prediction.digits))
    print(
        f"model answer {shown} ({'exact' if prediction.exact else 'wrong'}); generated: {' '.join(prediction.tokens)}"
    )


def cmd_snapshot(args: argparse.Namespace) -> None:
    from .shipped import SNAPSHOT_DIR
    from .train import export_snapshot

    path = export_snapshot(args.run_dir, args.out or args.run_dir / SNAPSHOT_DIR, args.n_random, force=args.force)
    print(f"wrote {path}")


def cmd_runs(args: argparse.Namespace) -> None:
    from .dynamics import discover_runs, icot_progress, load_run, tried_row

    found = {}
    for folder in args.folders:
        if not folder.is_dir():
            raise ValueError(f"no such folder: {folder}")
        if (folder / "history.jsonl").is_file():  # a run directory itself
            found[str(folder)] = load_run(folder)
        else:
            found.update({str(folder / name): run for name, run in discover_runs(folder).items()})
    if not found:
        raise ValueError(f"no runs (directories with a history.jsonl) in {', '.join(map(str, args.folders))}")
    for path, run in found.items():
        row = {**tried_row(run), "run": path, "recent steps per second": run.recent_rate()}
        progress = icot_progress(run)
        if progress:
            row["chain-of-thought tokens removed"] = f"{progress['removed']} of {progress['cot_len']}"
        if args.json:
            print(json.dumps(row))
            continue
        em = f"{row['val exact match']:.1%}" if row["val exact match"] is not None else "—"
        rate = row["recent steps per second"]
        speed = f", {rate:.2f} steps/s when last logged" if rate and run.status == "in progress" else ""
        where = f" ({row['trained on']})" if row["trained on"] else ""
        print(
            f"{path}: {row['recipe']}, {row['status']}, step {row['steps']:,}, {row['examples']:,} examples, "
            f"{row['wall-clock hours']:.2f} h{where}{speed}"
        )
        print(f"    val exact match {em}; per digit c0…c7: {row['val accuracy c0 … c7'] or '—'}")
        if progress:
            print(f"    chain-of-thought tokens removed: {row['chain-of-thought tokens removed']}")
        if row["changed on resume"]:
            print(f"    changed on resume: {row['changed on resume']}")


def cmd_data(args: argparse.Namespace) -> None:
    from .datasets import evaluation_problems
    from .task import random_problems, write_problems

    exclude = evaluation_problems() if args.exclude_eval and args.digits == 4 else []
    problems = random_problems(args.n, args.seed, n_digits=args.digits, exclude=exclude)
    write_problems(problems, args.out)
    print(f"wrote {len(problems)} problems to {args.out}")


def cmd_export_onnx(args: argparse.Namespace) -> None:
    from .onnx_export import export_onnx

    path = export_onnx(args.model_dir)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "predict": cmd_predict,
    "snapshot": cmd_snapshot,
    "runs": cmd_runs,
    "data": cmd_data,
    "export-onnx": cmd_export_onnx,
}


def _warning_printer(show_other):
    """Show our warnings (a file repaired or left in part) as one line, others as ``show_other`` does."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, FileWarning):
            print(f"longmul: warning: {message}", file=sys.stderr)
        else:
            show_other(message, category, filename, lineno, file, line)

    return show


def main(argv: list[str] | None = None) -> int:
    """Run one command; the error boundary of the command line (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", FileWarning)
            warnings.showwarning = _warning_printer(warnings.showwarning)
            COMMANDS[args.command](args)
    except EXPECTED_ERRORS as err:
        parser.exit(2, f"longmul: error: {_one_line(err)}\n")
    except KeyboardInterrupt:
        parser.exit(130, "longmul: interrupted (a resumable checkpoint was saved where training was running)\n")
    except Exception as err:  # noqa: BLE001 (a bug: say so in one line, the traceback only when asked for)
        if args.debug:
            traceback.print_exc()
        hint = "" if args.debug else " (rerun with --debug for the traceback)"
        parser.exit(1, f"longmul: internal error: {type(err).__name__}: {_one_line(err)}{hint}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
