"""Draw the README's figure: which output digits each shipped model gets right, next to two
shortcuts that read only two digits of each operand (chapter 1's per-digit chart, as a PNG).

    .venv/bin/python scripts/readme_figure.py     # writes book/images/per-digit-accuracy.png

Uses every model shipped in models/ (icot, sft, aux: the finished run, else the committed snapshot of
a run still in training, named as such in the title), on the ICoT test set; rerun it when the shipped
models change.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import vl_convert as vlc

from longmul.charts.accuracy import per_digit_chart
from longmul.charts.puzzle import label_with_cot, per_digit_frame, shortcut_accuracy
from longmul.datasets import icot_problems
from longmul.evaluate import cot_tokens_of, evaluate
from longmul.shipped import load_shipped

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "book" / "images" / "per-digit-accuracy.png"


def main() -> int:
    problems = icot_problems("test")
    shipped = load_shipped(ROOT / "models")
    # a model that still writes a chain of thought is labelled so: it is not the paper's ICoT model
    results = {label_with_cot(label, cot_tokens_of(m.model)): evaluate(m.model, problems) for label, m in shipped.models.items()}
    data = pd.concat([per_digit_frame(results), shortcut_accuracy(problems)])
    title = ["Which digits of a 4-digit × 4-digit product are right (ICoT test set)"]
    if shipped.unfinished:
        steps = ", ".join(f"{label} at step {shipped.models[label].training['steps']:,}" for label in shipped.unfinished)
        title.append(f"still in training: {steps}")
    chart = per_digit_chart(data, title=title, legend_title=None)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(vlc.vegalite_to_png(chart.to_dict(), scale=2))
    print(f"wrote {OUT.relative_to(ROOT)} with models: {', '.join(results) or 'none yet'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
