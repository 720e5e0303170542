"""The book's models as shipped in ``models/``: finished runs, or snapshots of runs still in training.

A training run writes its model into its own folder (``models/icot``) when it finishes. Until then the
folder holds a resumable checkpoint and, where a session committed one, a snapshot of the latest
checkpoint in ``models/<name>/snapshot`` (written by ``longmul snapshot models/<name>``). Chapters
load the finished model when there is one, else the snapshot, and say which they got.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .evaluate import cot_tokens_of
from .saved import SNAPSHOT_DIR, LoadedModel, is_model_dir, load_model

MODEL_LABELS = {"icot": "ICoT", "sft": "SFT", "aux": "SFT + aux loss"}
# Exact match on 4x4 as reported by Bai et al. (2025) for their models (FACTS §4): the paper's, not ours.
PAPER_EXACT_MATCH = {"ICoT": "100%", "SFT": "< 1%", "SFT + aux loss": "99%"}
# metrics.json keys, as the scoreboard names them
SCORED_SETS = {"icot_test": "ICoT test", "random": "fresh random"}


def shipped_dir(models_dir: str | Path, name: str) -> Path | None:
    """The finished model ``models_dir/name``, else its committed snapshot, else ``None``."""
    run_dir = Path(models_dir) / name
    for candidate in (run_dir, run_dir / SNAPSHOT_DIR):
        if is_model_dir(candidate):
            return candidate
    return None


@dataclass
class ShippedModels:
    """Models by display label, and the names of those not available at all."""

    models: dict[str, LoadedModel] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def unfinished(self) -> list[str]:
        """Labels of models that are snapshots of runs still in training."""
        return [label for label, m in self.models.items() if m.training.get("snapshot_of_unfinished_run")]

    def overview(self) -> dict[str, dict]:
        """Per label: recipe, training steps, whether the run finished, chain-of-thought tokens it writes."""
        return {
            label: {
                "recipe": m.training.get("recipe"),
                "training steps": f"{m.training.get('steps', 0):,}",
                "finished run": "no (snapshot)" if label in self.unfinished else "yes",
                "chain-of-thought tokens it writes": cot_tokens_of(m.model),
            }
            for label, m in self.models.items()
        }

    def scoreboard(self) -> list[dict]:
        """One row per book model, in :data:`MODEL_LABELS` order: its exact match on the ICoT test set and
        on fresh random problems as recorded in its ``metrics.json`` when it was saved, beside what the
        paper reports; how far its training got; chain-of-thought tokens it still writes. A model not
        shipped gets a row that says so."""
        rows = []
        for label in MODEL_LABELS.values():
            m = self.models.get(label)
            row: dict = {"model": label}
            for key, name in SCORED_SETS.items():
                result = m.metrics.get(key) if m is not None else None
                row[f"{name}: ours"] = f"{result['exact_match']:.1%} (n={result['n']:,})" if result else "not available"
            row["the paper reports"] = PAPER_EXACT_MATCH[label]
            if m is None:
                row["training"] = "not shipped yet"
                row["chain-of-thought tokens it writes"] = ""
            else:
                steps = f"{m.training.get('steps', 0):,} steps"
                row["training"] = f"snapshot at {steps}, still in training" if label in self.unfinished else f"finished, {steps}"
                row["chain-of-thought tokens it writes"] = cot_tokens_of(m.model)
            rows.append(row)
        return rows

    def status_markdown(self) -> str:
        """One paragraph saying what is missing and which models are snapshots (with their steps)."""
        parts = []
        if self.missing:
            parts.append(
                "Not available yet: " + ", ".join(f"`models/{name}`" for name in self.missing) + ". "
                "The numbers below cover the models that are."
            )
        if self.unfinished:
            parts.append(
                "Snapshots of runs still in training: "
                + ", ".join(f"{label} (step {self.models[label].training['steps']:,})" for label in self.unfinished)
                + ". Their numbers will change when the runs finish."
            )
        return " ".join(parts) if parts else "All models are finished runs."


def load_shipped(models_dir: str | Path, labels: dict[str, str] | None = None) -> ShippedModels:
    """Load each model named in ``labels`` (name -> display label; default: the book's three)."""
    labels = MODEL_LABELS if labels is None else labels
    shipped = ShippedModels()
    for name, label in labels.items():
        directory = shipped_dir(models_dir, name)
        if directory is None:
            shipped.missing.append(name)
        else:
            shipped.models[label] = load_model(directory)
    return shipped


__all__ = ["MODEL_LABELS", "PAPER_EXACT_MATCH", "SCORED_SETS", "SNAPSHOT_DIR", "ShippedModels", "is_model_dir", "load_shipped", "shipped_dir"]
