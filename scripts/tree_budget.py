"""Keep the repository light: a budget for its tracked files, and finished runs' checkpoints out of the tree.

    python scripts/tree_budget.py check                      # total tracked bytes, the largest paths; exit 1 over budget
    python scripts/tree_budget.py retire runs/aux_cosine     # git rm a finished run's checkpoint tensors
    python scripts/tree_budget.py retire results/aux_ablation/none --weights --commit

``check`` sums the working-tree sizes of the files git tracks (what ``git ls-files | du -cb`` counts),
prints the total against :data:`BUDGET_BYTES` with the largest files and folders, checks every restore
record, and exits 1 over budget or on a bad record.

``retire RUN_DIR`` takes out of the tree (``git rm``) the tensors of a run's resumable checkpoint
(``checkpoint/{model,optimizer,extra}.safetensors``; ``state.json`` stays, because the book's tables and
``longmul runs`` read the run's step, time and sessions from it) and, with ``--weights``, the run's final
``model.safetensors``. History keeps them: ``RUN_DIR/RESTORE.json`` names the commit that holds them
(``HEAD`` when retired: the files must be committed unchanged) and the one command that brings them back,
``git checkout COMMIT -- PATH ...``. It refuses a run without a final model record (``training.json``)
unless ``--stopped`` says it was stopped for good (a run still in training keeps its checkpoint), and
``--weights`` under ``models/`` (the shipped models' weights stay). ``--commit`` commits the removal and
the record (only those paths); otherwise they are staged.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
# Issue 26: tracked files at most 60 MB, read as 60 MiB: the one hard limit the project works to is in
# MiB (a lent GPU machine takes a working tree of at most 64 MiB), and 60 MiB stays 4 MiB under it.
BUDGET_BYTES = 60 * 2**20
TOP = 15  # largest files shown by `check`
RESTORE_FILE = "RESTORE.json"
CHECKPOINT_DIRS = ("checkpoint", "checkpoint.old")  # as longmul.checkpoint.find_checkpoint
CHECKPOINT_TENSORS = ("model.safetensors", "optimizer.safetensors", "extra.safetensors")
FINAL_WEIGHTS = "model.safetensors"
SHIPPED = "models"  # top-level folder of the book's models: their weights never leave the tree


class BudgetError(ValueError):
    """A refusal or a bad record, said in one line."""


def git(root: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], check=False, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise BudgetError(f"git {' '.join(args[:3])}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done.stdout


# --------------------------------------------------------------------------- check


def tracked_sizes(root: Path) -> dict[str, int]:
    """Bytes of every tracked file as it is in the working tree (a tracked file deleted there counts 0,
    as it would not be committed)."""
    sizes = {}
    for name in git(root, "ls-files", "-z").split("\0"):
        if name:
            path = root / name
            sizes[name] = path.lstat().st_size if path.is_file() or path.is_symlink() else 0
    return sizes


def folder_sizes(sizes: dict[str, int], depth: int = 2) -> dict[str, int]:
    """Bytes per folder, ``depth`` levels down (``runs/aux_cosine``); files above that depth count under
    their own folder (or ``.`` at the top)."""
    out: dict[str, int] = {}
    for name, size in sizes.items():
        parts = PurePosixPath(name).parts[:-1][:depth]
        key = "/".join(parts) or "."
        out[key] = out.get(key, 0) + size
    return out


def largest(sizes: dict[str, int], n: int) -> list[tuple[str, int]]:
    return sorted(sizes.items(), key=lambda item: (-item[1], item[0]))[:n]


def report(sizes: dict[str, int], budget: int, top: int = TOP) -> tuple[bool, str]:
    """Whether the tracked files fit ``budget`` bytes, and the lines that say so."""
    total = sum(sizes.values())
    ok = total <= budget
    verdict = "within" if ok else "OVER"
    lines = [
        (
            f"tracked files: {total:,} bytes ({total / 2**20:.1f} MiB) in {len(sizes):,} files, {verdict} the budget "
            f"of {budget:,} bytes ({budget / 2**20:.1f} MiB)"
        ),
        f"largest {min(top, len(sizes))} files:",
        *(f"  {size:>12,}  {name}" for name, size in largest(sizes, top)),
        "largest folders:",
        *(f"  {size:>12,}  {name}/" for name, size in largest(folder_sizes(sizes), 10)),
    ]
    if not ok:
        lines.append(
            f"tree budget: {total - budget:,} bytes over; take finished runs' checkpoints out of the tree with "
            "`python scripts/tree_budget.py retire RUN_DIR`"
        )
    return ok, "\n".join(lines)


# --------------------------------------------------------------------------- restore records


def read_record(path: Path) -> dict:
    """A ``RESTORE.json``: ``{"retired": [{"commit", "files": [{"path", "bytes", "blob"}], "restore"}]}``;
    ``BudgetError`` naming the file for anything else."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BudgetError(f"{path}: unreadable restore record: {err}") from None
    entries = record.get("retired") if isinstance(record, dict) else None
    if not isinstance(entries, list) or not entries:
        raise BudgetError(f"{path}: a restore record needs a non-empty 'retired' list")
    for i, entry in enumerate(entries):
        where = f"{path}: retired[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("commit"), str) or len(entry["commit"]) != 40:
            raise BudgetError(f"{where}: needs 'commit', a full 40-hex commit id")
        files = entry.get("files")
        if (
            not isinstance(files, list)
            or not files
            or not all(
                isinstance(f, dict)
                and isinstance(f.get("path"), str)
                and isinstance(f.get("blob"), str)
                and isinstance(f.get("bytes"), int)
                for f in files
            )
        ):
            raise BudgetError(f"{where}: needs 'files', a list of {{path, bytes, blob}}")
        if entry.get("restore") != restore_command(entry["commit"], [f["path"] for f in files]):
            raise BudgetError(f"{where}: 'restore' is not `git checkout {entry['commit'][:12]}… -- <its files>`")
    return record


def restore_command(commit: str, paths: list[str]) -> str:
    return " ".join(["git", "checkout", commit, "--", *paths])


def check_records(root: Path) -> list[str]:
    """Check every tracked restore record; notes for what cannot be checked here (a ``--depth 1``
    clone lacks the commits) or no longer applies (a file tracked again). ``BudgetError`` for a record
    that is malformed or whose commit does not hold the bytes it names."""
    notes = []
    tracked = set(git(root, "ls-files", "-z").split("\0"))
    for name in sorted(n for n in tracked if PurePosixPath(n).name == RESTORE_FILE):
        for entry in read_record(root / name)["retired"]:
            commit = entry["commit"]
            if not _has_commit(root, commit):
                notes.append(f"{name}: commit {commit[:12]} is not in this clone (fetch the history to restore)")
                continue
            for f in entry["files"]:
                blob = git(root, "rev-parse", "--verify", "-q", f"{commit}:{f['path']}", check=False).strip()
                if blob != f["blob"]:
                    raise BudgetError(f"{name}: commit {commit[:12]} does not hold {f['path']} as recorded")
                if f["path"] in tracked:
                    notes.append(f"{name}: {f['path']} is tracked again (restored)")
    return notes


def _has_commit(root: Path, commit: str) -> bool:
    return (
        subprocess.run(
            ["git", "-C", str(root), "cat-file", "-e", f"{commit}^{{commit}}"], check=False, capture_output=True
        ).returncode
        == 0
    )


# --------------------------------------------------------------------------- retire


def retire(root: Path, run_dir: str, weights: bool = False, stopped: bool = False, commit: bool = False) -> dict:
    """Take a run's checkpoint tensors (and with ``weights`` its final weights) out of the tree and
    record how to restore them; returns the new record entry."""
    run = (root / run_dir).resolve()
    if not run.is_dir():
        raise BudgetError(f"no such run folder: {run_dir}")
    try:
        rel = PurePosixPath(run.relative_to(root.resolve()).as_posix())
    except ValueError:
        raise BudgetError(f"{run_dir} is not inside the repository {root}") from None
    if weights and rel.parts and rel.parts[0] == SHIPPED:
        raise BudgetError(f"{rel}: the shipped models' weights stay in the tree (--weights is for other runs)")
    training = run / "training.json"
    if not training.is_file() and not stopped:
        raise BudgetError(
            f"{rel} has no training.json (no final model): a run still in training keeps its checkpoint; "
            "pass --stopped if it was stopped for good"
        )
    candidates = [str(rel / d / t) for d in CHECKPOINT_DIRS for t in CHECKPOINT_TENSORS]
    if weights:
        candidates.append(str(rel / FINAL_WEIGHTS))
    tracked = set(git(root, "ls-files", "-z", "--", str(rel)).split("\0"))
    paths = [p for p in candidates if p in tracked]
    if not paths:
        raise BudgetError(
            f"nothing to retire in {rel}: no tracked checkpoint tensors"
            + ("" if weights else " (--weights for the final model)")
        )
    head = git(root, "rev-parse", "--verify", "HEAD").strip()
    blobs = {}
    for p in paths:
        blobs[p] = git(root, "rev-parse", "--verify", "-q", f"HEAD:{p}", check=False).strip()
        if not blobs[p] or not (root / p).is_file():
            raise BudgetError(f"{p} is not committed as it is: commit it first, so that history keeps these bytes")
    changed = git(root, "diff", "--name-only", "HEAD", "--", *paths).split()
    if changed:
        raise BudgetError(f"{changed[0]} differs from HEAD: commit it first, so that history keeps these bytes")
    entry = {
        "commit": head,
        "files": [{"path": p, "bytes": (root / p).stat().st_size, "blob": blobs[p]} for p in paths],
        "restore": restore_command(head, paths),
    }
    record_path = run / RESTORE_FILE
    record = (
        read_record(record_path)
        if record_path.exists()
        else {
            "about": "Files taken out of the tree to keep the repository small (scripts/tree_budget.py retire); "
            "git history keeps them. Run an entry's 'restore' command from the repository root to bring them back.",
            "retired": [],
        }
    )
    record["retired"].append(entry)
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    record_rel = str(rel / RESTORE_FILE)
    git(root, "rm", "-q", "--", *paths)
    git(root, "add", "--", record_rel)
    if commit:
        size = sum(f["bytes"] for f in entry["files"])
        message = f"{rel}: {len(paths)} checkpoint/weight files ({size / 1e6:.1f} MB) out of the tree; {record_rel} restores them from {head[:12]}"
        git(root, "commit", "-q", "-m", message, "--", *paths, record_rel)
    return entry


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    sub = parser.add_subparsers(dest="command", required=True)
    chk = sub.add_parser("check", help="total tracked bytes and the largest paths; exit 1 over budget")
    chk.add_argument("--budget", type=int, default=BUDGET_BYTES, help=f"bytes (default {BUDGET_BYTES:,})")
    chk.add_argument("--top", type=int, default=TOP, help=f"largest files to list (default {TOP})")
    ret = sub.add_parser("retire", help="git rm a finished run's checkpoint tensors, recording how to restore them")
    ret.add_argument("run_dir")
    ret.add_argument("--weights", action="store_true", help="also its final model.safetensors (not under models/)")
    ret.add_argument("--stopped", action="store_true", help="the run has no final model but was stopped for good")
    ret.add_argument("--commit", action="store_true", help="commit the removal and the record")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            ok, text = report(tracked_sizes(args.root), args.budget, args.top)
            print(text)
            for note in check_records(args.root):
                print(f"note: {note}")
            return 0 if ok else 1
        entry = retire(args.root, args.run_dir, weights=args.weights, stopped=args.stopped, commit=args.commit)
        size = sum(f["bytes"] for f in entry["files"])
        print(
            f"retired {len(entry['files'])} files ({size:,} bytes){'' if args.commit else ' (staged, not committed)'}; restore with:"
        )
        print(f"  {entry['restore']}")
        return 0
    except BudgetError as err:
        print(f"tree_budget: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
