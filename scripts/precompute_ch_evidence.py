"""Precompute the "Evidence of long-range structure" chapter's results for its static views: logit
attribution matrices and running-sum probes (with both controls) of each model.

    .venv/bin/python scripts/precompute_ch_evidence.py                    # models/{sft,icot,aux} → results/evidence
    .venv/bin/python scripts/precompute_ch_evidence.py --model aux=runs/snapshots/aux --out runs/evidence

Writes into ``--out``:

* ``attribution.csv``    model, output, operand, drop, sem: the mean logit drop matrix (FACTS §5.1)
* ``probes.csv``         model, control, site, k, mae, r2, alpha, n_train, n_test (FACTS §5.2)
* ``probe_scatter.csv``  model, site, k, true, predicted: held-out ĉ_k and the probe's reading of it
* ``evidence.json``      what was measured: each model's path, recipe, steps, weights sha256 and
  teacher-forced per-digit accuracy, the problem counts and seed
* ``README.md``          the command that wrote them

Each model takes about a minute on one CPU thread (width 128). Rerun when the shipped models change.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from longmul import __version__
from longmul.analysis.attribution import logit_attribution
from longmul.analysis.probes import PAPER_SITE, probe_with_controls
from longmul.saved import load_model, sha256_file

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = ("sft=models/sft", "icot=models/icot", "aux=models/aux")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model", action="append", metavar="NAME=PATH", help=f"a model to measure (repeatable; default {' '.join(DEFAULT_MODELS)})"
    )
    p.add_argument("--out", type=Path, default=ROOT / "results" / "evidence", help="output folder (default results/evidence)")
    p.add_argument("--n-attribution", type=int, default=1_000, help="problems averaged in the attribution matrix")
    p.add_argument("--n-probe", type=int, default=2_000, help="problems for the probes (80%% train, 20%% held out)")
    p.add_argument(
        "--scatter-site", action="append", help=f"site(s) whose held-out predictions go to probe_scatter.csv (default {PAPER_SITE})"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (the probes' fits are small)")
    args = p.parse_args(argv)
    models = {}
    for spec in args.model or DEFAULT_MODELS:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            p.error(f"--model expects NAME=PATH, got {spec!r}")
        models[name] = Path(path)
    args.models = models
    args.scatter_site = args.scatter_site or [PAPER_SITE]
    return args


def measure(name: str, path: Path, args: argparse.Namespace) -> tuple[list[dict], list[dict], list[dict], dict]:
    loaded = load_model(path)
    model = loaded.model
    attribution = logit_attribution(model, n_problems=args.n_attribution, seed=args.seed)
    probes = probe_with_controls(model, n_problems=args.n_probe, seed=args.seed)
    attribution_rows = [{"model": name, **row} for row in attribution.to_records()]
    probe_rows = [{"model": name, **row} for result in probes.values() for row in result.rows]
    scatter_rows = []
    for site in args.scatter_site:
        if site not in probes["none"].predictions:
            raise ValueError(f"--scatter-site {site!r} was not probed; probed: {list(probes['none'].predictions)}")
        truth, predicted = probes["none"].y_test, probes["none"].predictions[site]  # (n_test, n_c) each
        for k in range(truth.shape[1]):
            scatter_rows += [
                {"model": name, "site": site, "k": k, "true": int(t), "predicted": round(float(p), 3)}
                for t, p in zip(truth[:, k], predicted[:, k])
            ]
    record = {
        "path": str(path),
        "recipe": loaded.training.get("recipe"),
        "steps": loaded.training.get("steps"),
        "snapshot_of_unfinished_run": bool(loaded.training.get("snapshot_of_unfinished_run", False)),
        "model_sha256": sha256_file(path / "model.safetensors"),
        "teacher_forced_digit_accuracy": [round(float(a), 4) for a in attribution.accuracy],
    }
    return attribution_rows, probe_rows, scatter_rows, record


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    missing = [f"{name}={path}" for name, path in args.models.items() if not (path / "model.safetensors").is_file()]
    if missing:
        print(f"no saved model at: {', '.join(missing)} (pass --model NAME=PATH)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    attribution, probes, scatter, records = [], [], [], {}
    with threadpool_limits(args.threads):
        for name, path in args.models.items():
            a, p, s, records[name] = measure(name, path, args)
            attribution, probes, scatter = attribution + a, probes + p, scatter + s
            print(f"{name}: measured {path}", flush=True)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(attribution).to_csv(out / "attribution.csv", index=False, float_format="%.4f")
    pd.DataFrame(probes).to_csv(out / "probes.csv", index=False, float_format="%.4f")
    pd.DataFrame(scatter).to_csv(out / "probe_scatter.csv", index=False)
    meta = {
        "models": records,
        "n_attribution": args.n_attribution,
        "n_probe": args.n_probe,
        "seed": args.seed,
        "paper_site": PAPER_SITE,
        "scatter_sites": args.scatter_site,
        "longmul_version": __version__,
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (out / "evidence.json").write_text(json.dumps(meta, indent=2) + "\n")
    command = shlex.join([".venv/bin/python", "scripts/precompute_ch_evidence.py", *argv])
    (out / "README.md").write_text(
        "# Precomputed results: logit attribution and running-sum probes\n\n"
        "Written by\n\n"
        f"    {command}\n\n"
        "from the repository root. See the docstring of `scripts/precompute_ch_evidence.py` for the\n"
        "columns of each file, and `evidence.json` for which model weights (sha256) were measured.\n"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
