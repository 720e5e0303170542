"""How long the book takes: each chapter executed full and FAST, and the knockout sweep naive vs cached.

    taskset -c 1 python benchmarks/book.py                           # every chapter, full and FAST, + the sweep
    taskset -c 1 python benchmarks/book.py --chapters 03 --fast-only # chapter 3 FAST only, + the sweep
    taskset -c 1 python benchmarks/book.py --chapters 03 --no-sweep --save-outputs /tmp/before

Chapters run as tests/test_book_chapters.py runs them: the MyST notebook read with jupytext and executed
by nbclient in a fresh kernel, with the chapter's folder as working directory and ``LONGMUL_FAST`` set to
1 (FAST) or 0 (full). A chapter's wall time is its kernel's whole run, start-up included; its CPU time
is the kernel process's user + system seconds, which a machine busy with other work inflates much less
than the wall time (on a shared core the wall time is mostly waiting).

The sweep times :func:`longmul.analysis.attention.knockout_sweep` on each shipped model, over
``--sweep-problems`` ICoT test problems and the first ``--sweep-edges`` candidate edges (the chapter's
rule: mean attention at least 0.2 at an answer position), once with ``method="full"`` (one whole forward
pass per edge) and once with ``method="cached"``, on one torch thread as the chapter runs it; it also
reports the largest difference between the two sweeps' logit drops and whether the accuracy drops agree.

``--profile DIR`` runs each chapter's cells under cProfile, timed in CPU seconds (stats in ``DIR/<chapter>-<fast|full>.prof``,
read them with ``python -m pstats``); the profiled run is slower and its outputs gain two cells.

``--save-outputs DIR`` writes every executed chapter's text outputs (glued values, printed tables,
chart data; images left out) to ``DIR/<chapter>-<fast|full>.txt`` so two runs can be diffed, e.g. before
and after a change that must not alter the chapters' numbers.

Prints one table (wall and CPU seconds per row). Run it pinned to one core (``taskset -c 1``): the
chapters limit torch to one thread, and so does the sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
MODELS = REPO / "models"
CELL_TIMEOUT_S = 1800
SKIPPED_MIME = ("image/png", "image/jpeg", "image/svg+xml")


def chapter_paths(selected: list[str] | None, book: Path = BOOK) -> list[Path]:
    """The notebook chapters in ``book`` (front matter naming a kernel), optionally only those whose file
    name starts with one of ``selected`` (``03``, ``intro``)."""
    paths = []
    for path in sorted(book.glob("*.md")):
        text = path.read_text()
        if text.startswith("---") and "kernelspec:" in text.split("---", 2)[1]:
            paths.append(path)
    if selected:
        unknown = [s for s in selected if not any(p.stem.startswith(s) for p in paths)]
        if unknown:
            raise SystemExit(f"book.py: error: no chapter starts with {unknown}; chapters: {[p.stem for p in paths]}")
        paths = [p for p in paths if any(p.stem.startswith(s) for s in selected)]
    return paths


def text_outputs(notebook) -> str:
    """Every code cell's outputs as text, images left out: what a before/after diff compares."""
    lines = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            if kind == "stream":
                lines.append(f"## cell {index} {output.get('name')}\n{output.get('text', '')}")
            elif kind in ("display_data", "execute_result"):
                for mime, data in sorted(output.get("data", {}).items()):
                    if mime in SKIPPED_MIME:
                        continue
                    text = data if isinstance(data, str) else json.dumps(data, sort_keys=True, indent=1)
                    lines.append(f"## cell {index} {mime}\n{text}")
            elif kind == "error":
                lines.append(f"## cell {index} error {output.get('ename')}: {output.get('evalue')}")
    return "\n".join(lines) + "\n"


def children_cpu_s() -> float:
    """CPU seconds (user + system) of this process's finished child processes: the kernels."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_chapter(path: Path, fast: bool, profile: Path | None = None) -> tuple[float, float, object]:
    """Execute one chapter in a fresh kernel: wall seconds, the kernel's CPU seconds, the executed notebook.
    With ``profile``, the kernel runs the chapter's cells under cProfile and writes the stats there."""
    import jupytext
    import nbclient
    import nbformat

    notebook = jupytext.read(path)
    if profile is not None:
        # CPU time, not wall time: on a shared core the wall clock mostly measures the other processes
        start_code = (
            "import cProfile as _cp, time as _time\n_profile = _cp.Profile(_time.process_time)\n_profile.enable()"
        )
        stop_code = f"_profile.disable()\n_profile.dump_stats({str(profile)!r})"
        notebook.cells = [nbformat.v4.new_code_cell(start_code), *notebook.cells, nbformat.v4.new_code_cell(stop_code)]
    # the shipped models by absolute path, so that a copy of a chapter outside book/ finds them too
    env = dict(os.environ, LONGMUL_FAST="1" if fast else "0")
    env.setdefault("LONGMUL_MODELS", str(MODELS))
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name=notebook.metadata.get("kernelspec", {}).get("name", "python3"),
        resources={"metadata": {"path": str(path.parent)}},
    )
    start, cpu = time.perf_counter(), children_cpu_s()
    client.execute(env=env)  # starts the kernel, runs every cell, shuts the kernel down and reaps it
    return time.perf_counter() - start, children_cpu_s() - cpu, notebook


def timed(fn):
    """(result, wall seconds, CPU seconds of this process)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - start, time.process_time() - cpu


def time_sweeps(n_problems: int, n_edges: int) -> list[tuple[str, str, float, float, str]]:
    """Rows (what, method, wall seconds, CPU seconds, note) for the knockout sweep, naive vs cached."""
    import inspect

    import numpy as np

    from longmul.analysis.attention import candidate_edges, knockout_sweep, mean_attention
    from longmul.charts.evidence import limited_threads
    from longmul.datasets import icot_problems
    from longmul.shipped import load_shipped

    try:
        from longmul.pass_cache import clear_pass_cache
    except ImportError:  # before the pass cache existed

        def clear_pass_cache() -> None:
            pass

    has_cached = "method" in inspect.signature(knockout_sweep).parameters
    problems = icot_problems("test")[:n_problems]
    rows = []
    with limited_threads(1):
        for label, loaded in load_shipped(MODELS).models.items():
            model = loaded.model
            edges = candidate_edges(mean_attention(model, problems), min_weight=0.2)[:n_edges]
            what = f"knockout sweep {label}: {len(edges)} edges × {len(problems)} problems"
            clear_pass_cache()  # each method starts from nothing: its own clean pass is part of its time
            sweep = partial(knockout_sweep, model, problems, edges)
            naive, wall, cpu = timed(partial(sweep, method="full") if has_cached else sweep)
            rows.append((what, "naive", wall, cpu, ""))
            if has_cached:
                clear_pass_cache()
                cached, wall_c, cpu_c = timed(partial(sweep, method="cached"))
                logit_diff = max(float(np.abs(a.logit_drop - b.logit_drop).max()) for a, b in zip(naive, cached))
                same_acc = all(np.array_equal(a.accuracy_drop, b.accuracy_drop) for a, b in zip(naive, cached))
                note = f"{cpu / cpu_c:.1f}× less CPU; max |Δ logit drop| {logit_diff:.1e}; accuracy drops {'equal' if same_acc else 'DIFFER'}"
                rows.append((what, "cached", wall_c, cpu_c, note))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", nargs="*", help="only chapters whose file name starts with these (03 intro)")
    parser.add_argument("--fast-only", action="store_true", help="run each chapter with LONGMUL_FAST=1 only")
    parser.add_argument("--no-chapters", action="store_true", help="only the knockout sweep")
    parser.add_argument("--no-sweep", action="store_true", help="leave out the knockout sweep")
    parser.add_argument("--sweep-problems", type=int, default=1000, help="problems per sweep (default 1,000)")
    parser.add_argument("--sweep-edges", type=int, default=80, help="edges per model (default 80)")
    parser.add_argument(
        "--book", type=Path, default=BOOK, help="the folder of chapters (default book/; a frozen copy for before/after)"
    )
    parser.add_argument("--save-outputs", type=Path, help="write each chapter's text outputs to this folder")
    parser.add_argument(
        "--profile", type=Path, help="run each chapter under cProfile, stats to DIR/<chapter>-<fast|full>.prof"
    )
    args = parser.parse_args(argv)
    if args.sweep_problems < 1 or args.sweep_edges < 1:
        parser.error("--sweep-problems and --sweep-edges must be at least 1")

    rows: list[tuple[str, str, float, float, str]] = []
    if not args.no_chapters:
        modes = [True] if args.fast_only else [True, False]
        for path in chapter_paths(args.chapters, args.book):
            for fast in modes:
                mode = "FAST" if fast else "full"
                print(f"running {path.name} {mode} …", file=sys.stderr, flush=True)
                profile = None
                if args.profile:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    profile = (args.profile / f"{path.stem}-{mode.lower()}.prof").resolve()
                wall, cpu, notebook = run_chapter(path, fast, profile)
                rows.append((f"chapter {path.stem}", mode, wall, cpu, ""))
                if args.save_outputs:
                    args.save_outputs.mkdir(parents=True, exist_ok=True)
                    (args.save_outputs / f"{path.stem}-{mode.lower()}.txt").write_text(text_outputs(notebook))
        for mode in ["FAST"] if args.fast_only else ["FAST", "full"]:
            chapters = [r for r in rows if r[1] == mode]
            if len(chapters) > 1:
                rows.append(
                    (
                        "all chapters run",
                        mode,
                        sum(r[2] for r in chapters),
                        sum(r[3] for r in chapters),
                        "sum of the rows above",
                    )
                )
    if not args.no_sweep:
        print("timing the knockout sweep …", file=sys.stderr, flush=True)
        rows += time_sweeps(args.sweep_problems, args.sweep_edges)

    width = max(len(r[0]) for r in rows) if rows else 10
    print(f"{'what':<{width}}  {'mode':<6}  {'wall s':>8}  {'CPU s':>8}  note")
    for what, mode, wall, cpu, note in rows:
        print(f"{what:<{width}}  {mode:<6}  {wall:>8.1f}  {cpu:>8.1f}  {note}")


if __name__ == "__main__":
    main()
