"""Saved models: the Hugging Face layout plus our records, with a sha256 manifest checked on load.

A model directory holds::

    config.json  generation_config.json  model.safetensors     (plain transformers can load these)
    tokenizer.json  tokenizer_config.json  special_tokens_map.json
    training.json   recipe, hyperparameters, seed, command, steps, examples, wall time, hardware
    metrics.json    exact match and per-digit accuracy on the evaluation sets
    history.jsonl   training log (loss, per-digit loss and gradient norm, validation accuracy)
    README.md       model card (optional)
    manifest.json   sha256 of every other file

Nothing is pickled. Directories are written to a temporary sibling and renamed into place, so a
failure never leaves a half-written model. Loading checks the manifest (a JSON object listing at least
every file loading reads), then that ``config.json`` and the weights fit each other and the training
record (:mod:`longmul.weights`); anything wrong is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from transformers import GenerationConfig, GPT2LMHeadModel, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from .files import read_json_object, read_jsonl
from .model import model_config_of
from .run_state import check_row
from .sequences import EOS_ID, PAD_ID
from .tokenizer import build_tokenizer
from .weights import load_gpt2

MANIFEST = "manifest.json"
REQUIRED = ("config.json", "model.safetensors", "training.json", MANIFEST)
# Files that loading reads, or that plain transformers reads: the manifest must cover each one present.
LOADED = (
    "config.json",
    "model.safetensors",
    "training.json",
    "metrics.json",
    "history.jsonl",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
)
SNAPSHOT_DIR = "snapshot"  # where `longmul snapshot RUN_DIR` saves an unfinished run's latest checkpoint


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: Path) -> None:
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {str(p.relative_to(directory)): sha256_file(p) for p in files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def verify_manifest(directory: Path) -> None:
    """``ValueError`` unless ``manifest.json`` is a JSON object of file names (inside ``directory``) and
    their sha256, covering every file of :data:`LOADED` that is present, each one matching."""
    path = directory / MANIFEST
    if not path.is_file():
        raise ValueError(f"model directory {directory} has no {MANIFEST}")
    manifest = read_json_object(path)
    if not manifest:
        raise ValueError(f"{path} lists no files: it verifies nothing")
    for name, expected in manifest.items():
        if Path(name).is_absolute() or ".." in Path(name).parts or not isinstance(expected, str):
            raise ValueError(f"{path}: entry {name!r}: {expected!r} is not a file in the folder and its sha256")
    unlisted = [name for name in LOADED if (directory / name).is_file() and name not in manifest]
    if unlisted:
        raise ValueError(f"{path} does not cover {', '.join(unlisted)}")
    for name, expected in manifest.items():
        file = directory / name
        if not file.is_file():
            raise ValueError(f"model directory {directory}: {name} listed in the manifest is missing")
        if sha256_file(file) != expected:
            raise ValueError(f"model directory {directory}: {name} does not match its sha256 in the manifest")


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


def save_model(
    directory: str | Path,
    model: GPT2LMHeadModel,
    training: dict,
    metrics: dict | None = None,
    extra_files: dict[str, Path] | None = None,
    model_card: str | None = None,
    replace: bool = False,
) -> Path:
    """Write a complete model directory atomically. In an existing ``directory`` the model's files are
    replaced and everything else kept (a run's checkpoint), unless ``replace``: then the whole folder is."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".saving")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        GenerationConfig(
            eos_token_id=EOS_ID, pad_token_id=PAD_ID, bos_token_id=EOS_ID, do_sample=False
        ).save_pretrained(tmp)
        build_tokenizer().save_pretrained(tmp)
        write_json(tmp / "training.json", training)
        if metrics is not None:
            write_json(tmp / "metrics.json", metrics)
        for name, src in (extra_files or {}).items():
            shutil.copyfile(src, tmp / name)
        if model_card is not None:
            (tmp / "README.md").write_text(model_card)
        write_manifest(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    if directory.exists() and replace:
        old = directory.with_name(directory.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        directory.replace(old)
        tmp.replace(directory)
        shutil.rmtree(old)
    elif directory.exists():
        # Keep whatever else lives there (a resumable checkpoint, a run's scratch files) but replace
        # the model files; the manifest covers those only.
        names = [item.name for item in tmp.iterdir()]
        for item in tmp.iterdir():
            target = directory / item.name
            if target.is_dir():
                shutil.rmtree(target)
            item.replace(target)
        tmp.rmdir()
        write_manifest_subset(directory, names)
    else:
        tmp.replace(directory)
    return directory


def write_manifest_subset(directory: Path, names: list[str]) -> None:
    """Manifest over the model's own files (skips checkpoints and other sub-folders)."""
    manifest = {n: sha256_file(directory / n) for n in sorted(names) if n != MANIFEST}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


@dataclass
class LoadedModel:
    """A saved model with its records."""

    path: Path
    model: GPT2LMHeadModel
    tokenizer: PreTrainedTokenizerFast
    training: dict
    metrics: dict
    history: list[dict]

    @property
    def name(self) -> str:
        return self.path.name


def read_history(path: Path) -> list[dict]:
    """A saved model's training history (a torn last line, from a snapshot of a run mid-write, is left out)."""
    return read_jsonl(path, check_row)[0]


def is_model_dir(path: Path) -> bool:
    """Whether ``path`` holds every file a saved model needs (:data:`REQUIRED`)."""
    return all((path / name).is_file() for name in REQUIRED)


def load_model(directory: str | Path, verify: bool = True) -> LoadedModel:
    """Load a model directory written by :func:`save_model`; ``ValueError`` names what is wrong."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"model directory not found: {directory}")
    missing = [name for name in REQUIRED if not (directory / name).is_file()]
    if missing:
        if (directory / "checkpoint").is_dir() and not (directory / "training.json").is_file():
            snapshot = directory / SNAPSHOT_DIR
            hint = (
                f"load its snapshot {snapshot}, or run `longmul snapshot {directory}` for a newer one"
                if is_model_dir(snapshot)
                else f"`longmul snapshot {directory}` saves its latest checkpoint as a model"
            )
            raise ValueError(f"{directory} is a run still in training, not a finished model: {hint}")
        raise ValueError(f"{directory} is not a longmul model directory (missing {', '.join(missing)})")
    if verify:
        verify_manifest(directory)
    model = load_gpt2(directory)
    training = read_json_object(directory / "training.json")
    check_training_record(training, model, directory)
    metrics_path = directory / "metrics.json"
    metrics = read_json_object(metrics_path) if metrics_path.is_file() else {}
    # longmul decodes with its own vocabulary; the tokenizer files are for plain transformers (the manifest covers them)
    tokenizer = build_tokenizer()
    return LoadedModel(directory, model, tokenizer, training, metrics, read_history(directory / "history.jsonl"))


def check_training_record(training: dict, model: GPT2LMHeadModel, directory: Path) -> None:
    """``ValueError`` if ``training.json`` records another architecture than ``config.json`` describes."""
    recorded = training.get("model_config")
    if recorded is None:
        return
    actual = model_config_of(model).to_dict()
    if not isinstance(recorded, dict) or any(recorded.get(k) != v for k, v in actual.items()):
        raise ValueError(f"{directory}: training.json records the model {recorded}, but config.json describes {actual}")
