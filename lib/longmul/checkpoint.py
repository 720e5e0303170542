"""Resumable training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint folder holds ``model.safetensors``, ``optimizer.safetensors`` (AdamW moments),
``extra.safetensors`` (other tensors: the aux probe, the torch RNG state) and ``state.json`` (step,
schedule state, numpy RNG state, optimizer hyperparameters). It is written to a temporary sibling,
flushed to the disk and swapped in with renames, so a run killed at any moment (or a machine that loses
power) leaves either the old or the new checkpoint. :func:`load_checkpoint` checks what it reads: a
damaged checkpoint is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .files import fsync_dir, fsync_file, read_json_object
from .run_state import check_state

TENSOR_FILES = ("model.safetensors", "optimizer.safetensors", "extra.safetensors")


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into named tensors and a JSON-able remainder."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for idx, extra in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(extra)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    extra_tensors: dict[str, torch.Tensor],
    state: dict,
) -> None:
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    old = directory.with_name(directory.name + ".old")
    for stale in (tmp, old):
        if stale.exists():
            shutil.rmtree(stale)
    tmp.mkdir(parents=True)
    model_state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if "lm_head.weight" in model_state and getattr(model.config, "tie_word_embeddings", False):
        del model_state["lm_head.weight"]  # tied to the embedding; safetensors rejects shared memory
    save_file(model_state, tmp / "model.safetensors")
    opt_tensors, opt_meta = optimizer_tensors(optimizer)
    save_file(opt_tensors, tmp / "optimizer.safetensors")
    save_file({k: v.detach().cpu().contiguous() for k, v in extra_tensors.items()}, tmp / "extra.safetensors")
    (tmp / "state.json").write_text(json.dumps({**state, "optimizer": opt_meta}, indent=1))
    for name in (*TENSOR_FILES, "state.json"):
        fsync_file(tmp / name)
    fsync_dir(tmp)
    if directory.exists():
        directory.replace(old)
    tmp.replace(directory)
    fsync_dir(directory.parent)
    if old.exists():
        shutil.rmtree(old)


def find_checkpoint(directory: Path) -> Path | None:
    """The checkpoint to resume from; recovers from a kill between the two renames of a save."""
    directory = Path(directory)
    for candidate in (directory, directory.with_name(directory.name + ".old")):
        if (candidate / "state.json").is_file():
            return candidate
    return None


def load_checkpoint(
    directory: Path,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """(model tensors, optimizer tensors, extra tensors, state); ``ValueError`` naming the damaged file."""
    directory = Path(directory)
    state = read_json_object(directory / "state.json")
    check_state(state, directory / "state.json")
    tensors = []
    for name in TENSOR_FILES:
        try:
            tensors.append(load_file(directory / name))
        except (OSError, SafetensorError) as err:
            raise ValueError(f"checkpoint file {directory / name} is unreadable: {err}") from None
    if "torch_rng" not in tensors[2]:
        raise ValueError(f"checkpoint file {directory / 'extra.safetensors'} is damaged: it has no torch_rng")
    return tensors[0], tensors[1], tensors[2], state
