"""longmul.charts.study: the small-n study's frame and hero chart (chapter "Beyond 4×4")."""

import json

import pytest

pytest.importorskip("altair", reason="needs the 'book' extra: pip install -e '.[book]'")
pytest.importorskip("pandas", reason="needs the 'book' extra: pip install -e '.[book]'")
pytest.importorskip("vl_convert", reason="needs the 'book' extra: pip install -e '.[book]'")

import pandas as pd
import vl_convert

from longmul.charts.study import EXACT, cell_label, digits_frame, digits_table_chart


def row(n, recipe, per_digit, em, chance_digits=(), **settings):
    base = {"schedule": None, "width": 128, "dropout": 0.0, "lr": 1e-3, "seed": 0}
    base.update(settings)
    return {
        "cell": f"n{n}_{recipe}", "n": n, "recipe": recipe, "status": "finished", "per_digit": per_digit,
        "exact_match": em, "never_left_chance": list(chance_digits), **base,
    }  # fmt: skip


ROWS = [
    row(2, "sft", [1.0, 0.7, 0.86, 0.98], 0.66),
    row(2, "icot", [1.0, 1.0, 1.0, 1.0], 1.0, schedule="paced"),
    row(3, "sft", [1.0, 0.9, 0.11, 0.1, 0.8, 0.99], 0.0, chance_digits=(3,)),
    {"cell": "n3_aux_w128", "n": 3, "recipe": "aux", "status": "not run"},
]


def test_labels_name_the_recipe_schedule_and_settings_that_differ():
    assert cell_label(ROWS[0]) == "SFT, w128"
    assert cell_label(ROWS[1]) == "ICoT paced, w128"
    assert cell_label(row(3, "icot", [], 0, schedule="gated", width=64, dropout=0.1, lr=1e-4, seed=1)) == (
        "ICoT gated, w64, dropout 0.1, lr 0.0001, seed 1"
    )


def test_frame_has_a_row_per_digit_and_one_for_exact_match_of_every_run_cell():
    frame = digits_frame(ROWS)
    assert len(frame) == (4 + 1) * 2 + (6 + 1)  # the unrun cell is left out
    n3 = frame[frame.n == 3].set_index("column")
    assert list(n3.index) == [f"c{k}" for k in range(6)] + [EXACT]
    assert n3.loc["c3", "at_chance"] and n3.loc["c3", "text"] == "10·"
    assert not n3.loc["c2", "at_chance"] and n3.loc["c2", "text"] == "11"
    assert n3.loc[EXACT, "accuracy"] == 0.0


def test_chart_has_one_panel_per_size_and_renders():
    chart = digits_table_chart(digits_frame(ROWS))
    spec = chart.to_dict()
    assert len(spec["vconcat"]) == 2
    assert [p["title"][:3] for p in spec["vconcat"]] == ["2×2", "3×3"]
    svg = vl_convert.vegalite_to_svg(json.dumps(spec))
    assert "ICoT paced, w128" in svg and "10·" in svg


def test_icot_curves_follow_each_evaluation_and_say_what_is_still_written(tmp_path):
    from longmul.charts.study import icot_curves_chart, icot_curves_frame
    from longmul.dynamics import load_run

    folder = tmp_path / "n2_icot"
    folder.mkdir()
    evals = [(1000, 0, 0.9), (2000, 5, 0.4), (3000, 8, 0.97)]
    folder.joinpath("history.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "kind": "eval",
                    "step": s,
                    "examples": 64 * s,
                    "removed": r,
                    "val_exact_match": em,
                    "val_per_digit": [em] * 4,
                }
            )
            + "\n"
            for s, r, em in evals
        )
    )
    runs = {"n2_icot": load_run(folder)}
    frame = icot_curves_frame(runs, [ROWS[1], ROWS[0]])  # the SFT row has no curve
    assert list(frame["removed"]) == [0, 5, 8]
    assert list(frame["format"]) == [
        "partial product 0, digits 0–2; a plus sign; partial product 1, digits 0–3",
        "partial product 1, digits 1–3",
        "no chain of thought",
    ]
    svg = vl_convert.vegalite_to_svg(json.dumps(icot_curves_chart(frame).to_dict()))
    assert "2×2" in svg and "validation exact match" in svg


def test_the_hero_fits_the_column_for_every_size_with_readable_text():
    import re

    from longmul.charts.accuracy import COLUMN_WIDTH, LABEL_SIZE

    longest = {"dropout": 0.1, "lr": 1e-4, "seed": 1, "width": 256}
    rows = [row(n, "icot", [0.5] * (2 * n), 0.1, schedule="gated", **longest) for n in (2, 3, 4, 5)]
    svg = vl_convert.vegalite_to_svg(json.dumps(digits_table_chart(digits_frame(rows)).to_dict()))
    width = float(re.search(r'<svg[^>]*? width="([\d.]+)"', svg).group(1))
    sizes = [float(x) for x in re.findall(r'font-size="([\d.]+)px"', svg)]
    assert width <= COLUMN_WIDTH, f"the study's hero is {width:.0f} px wide, over {COLUMN_WIDTH}"
    assert min(sizes) >= LABEL_SIZE


def test_the_icot_curves_fit_the_column_with_readable_text(tmp_path):
    import re

    from longmul.charts.accuracy import COLUMN_WIDTH, LABEL_SIZE
    from longmul.charts.study import icot_curves_chart

    frame = pd.DataFrame(
        [
            {"label": f"ICoT {s}, w256, dropout 0.1, lr 0.0001, seed 1", "n": n, "examples": e, "val_exact_match": 0.5,
             "removed": 3, "format": "partial product 0, digits 0–2"}
            for n in (2, 3) for s in ("paced", "gated") for e in (1000, 2000)
        ]
    )  # fmt: skip
    svg = vl_convert.vegalite_to_svg(json.dumps(icot_curves_chart(frame).to_dict()))
    width = float(re.search(r'<svg[^>]*? width="([\d.]+)"', svg).group(1))
    sizes = [float(x) for x in re.findall(r'font-size="([\d.]+)px"', svg)]
    assert width <= COLUMN_WIDTH, f"the ICoT curves are {width:.0f} px wide, over {COLUMN_WIDTH}"
    assert min(sizes) >= LABEL_SIZE
