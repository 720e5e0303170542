"""Export a saved model to ONNX, for running it in a reader's browser with knockouts.

``export_onnx(model_dir)`` writes ``model_dir/onnx/model.onnx`` and ``model_dir/onnx/export.json``
and adds both to the folder's manifest. The graph is :class:`KnockoutGPT2`, the model's forward pass
written out with the knockout mask as an input:

==================  ==========================  ==================================================
input / output      shape, type                 what it is
==================  ==========================  ==================================================
``input_ids``       (B, T) int64                token ids (:data:`longmul.sequences.VOCAB`)
``position_ids``    (B, T) int64                position ids (an ICoT model's kept positions skip)
``knockout``        (L, H, T, T) bool           True where head h of layer l may not attend from
                                                query t to key s (see :class:`longmul.hooks.Knockout`)
``logits``          (B, T, V) float32           next-token logits
``attention``       (B, L, H, T, T) float32     every layer's attention pattern after softmax
``resid_mid``       (B, L, T, d_model) float32  every layer's ``blocks.{l}.hook_resid_mid``: the aux
                                                model's probe reads layer 1's (chapter 2)
==================  ==========================  ==================================================

A knocked-out edge's score is masked before the softmax, so its weight is zero and the rest of its
row renormalised: the operation of :class:`longmul.hooks.Knockout`. The graph runs the whole sequence
each time (no key/value cache); the models are small enough that decoding this way takes milliseconds.

The exporter is torch's TorchScript-based one (``dynamo=False``): the dynamo exporter needs
``onnxscript``, a further dependency, and gains nothing for a graph of matrix products and a softmax.
``export.json`` records the sha256 of the weights and config the graph was made from, so a stale
export is refused when loaded (:mod:`longmul.onnx_runtime`).
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from transformers import GPT2LMHeadModel

from .evaluate import cot_tokens_of, position_skip_of
from .hooks import Knockout
from .model import model_config_of
from .saved import MANIFEST, load_model, sha256_file, verify_manifest, write_json
from .sequences import VOCAB

ONNX_DIR = "onnx"
ONNX_MODEL = f"{ONNX_DIR}/model.onnx"
EXPORT_RECORD = f"{ONNX_DIR}/export.json"
SOURCES = ("model.safetensors", "config.json")  # the files the graph is made from
OPSET = 18
INPUTS = ("input_ids", "position_ids", "knockout")
OUTPUTS = ("logits", "attention", "resid_mid")


def _as_list(x: int | Iterable[int]) -> list[int]:
    return [int(x)] if isinstance(x, (int, np.integer)) else [int(v) for v in x]


def knockout_mask(knockouts: Iterable[Knockout], n_layers: int, n_heads: int, length: int) -> np.ndarray:
    """The (L, H, T, T) boolean ``knockout`` input removing ``knockouts`` in a sequence of ``length``
    tokens; ``ValueError`` for a layer, head or position the model or sequence lacks, or for knockouts
    that leave a query no key to attend to (as :func:`longmul.hooks.capture` refuses)."""
    mask = np.zeros((n_layers, n_heads, length, length), dtype=bool)
    for k in knockouts:
        if not (0 <= k.layer < n_layers and 0 <= k.head < n_heads):
            raise ValueError(f"knockout {k} names a layer/head the model does not have")
        for q in _as_list(k.query):
            for key in _as_list(k.key):
                if not (0 <= q < length and 0 <= key < length):
                    raise ValueError(f"knockout {k} names a position outside a sequence of {length} tokens")
                mask[k.layer, k.head, q, key] = True
    blocked = mask | ~np.tril(np.ones((length, length), dtype=bool))
    full = blocked.all(-1)
    if full.any():
        layer, head, query = (int(i) for i in np.argwhere(full)[0])
        raise ValueError(
            f"a knockout removes every key that position {query} may attend to (layer {layer}, head "
            f"{head}): nothing is left to renormalise over"
        )
    return mask


class KnockoutGPT2(torch.nn.Module):
    """The forward pass of a GPT-2 ``model`` (eager attention, no cache) with an attention knockout mask
    as an input; returns logits, the stacked attention patterns and the stacked residual streams
    between each layer's attention and its MLP. Shares the model's weights."""

    def __init__(self, model: GPT2LMHeadModel):
        super().__init__()
        self.model = model
        self.n_heads = model.config.n_head
        self.d_head = model.config.n_embd // self.n_heads

    def forward(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, knockout: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        transformer = self.model.transformer
        B, T = input_ids.shape
        h = transformer.wte(input_ids) + transformer.wpe(position_ids)
        future = torch.ones(T, T, dtype=torch.bool, device=h.device).tril().logical_not()
        neg = torch.finfo(h.dtype).min
        patterns, mids = [], []
        for layer, block in enumerate(transformer.h):
            qkv = block.attn.c_attn(block.ln_1(h))  # (B, T, 3 d_model)
            q, k, v = (
                x.view(B, T, self.n_heads, self.d_head).transpose(1, 2)
                for x in qkv.split(self.n_heads * self.d_head, 2)
            )
            scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.d_head))  # (B, H, T, T)
            scores = scores.masked_fill(future | knockout[layer], neg)
            pattern = torch.softmax(scores, dim=-1)
            patterns.append(pattern)
            z = torch.matmul(pattern, v).transpose(1, 2).reshape(B, T, self.n_heads * self.d_head)
            h = h + block.attn.c_proj(z)
            mids.append(h)
            h = h + block.mlp(block.ln_2(h))
        logits = self.model.lm_head(transformer.ln_f(h))
        return logits, torch.stack(patterns, 1), torch.stack(mids, 1)


def model_format(model: GPT2LMHeadModel) -> dict:
    """What a runner of the graph needs to decode in the model's own format."""
    config = model_config_of(model)
    return {
        "vocab": VOCAB,
        "n_layers": config.n_layers,
        "n_heads": config.n_heads,
        "n_a": config.n_a,
        "n_b": config.n_b,
        "cot_tokens": cot_tokens_of(model),
        "position_skip": position_skip_of(model),
        "max_positions": int(model.config.n_positions),
    }


def _export_graph(model: GPT2LMHeadModel, path: Path) -> None:
    try:
        import onnx
    except ImportError:
        raise ValueError("exporting to ONNX needs the onnx package: pip install -e '.[dev]'") from None
    config = model_config_of(model)
    T = config.layout.prompt_len + 2
    example = (
        torch.full((1, T), 2, dtype=torch.int64),
        torch.arange(T)[None, :],
        torch.zeros(config.n_layers, config.n_heads, T, T, dtype=torch.bool),
    )
    with warnings.catch_warnings():
        # torch names the TorchScript exporter deprecated since 2.9; it is the one chosen (module docstring)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            KnockoutGPT2(model.eval()),
            example,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "position_ids": {0: "batch", 1: "tokens"},
                "knockout": {2: "tokens", 3: "tokens"},
                "logits": {0: "batch", 1: "tokens"},
                "attention": {0: "batch", 3: "tokens", 4: "tokens"},
                "resid_mid": {0: "batch", 2: "tokens"},
            },
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def export_onnx(model_dir: str | Path) -> Path:
    """Write ``model_dir/onnx/`` (the graph and ``export.json``) and add it to the manifest; returns the
    graph's path. The model is loaded (and its manifest checked) first; ``ValueError`` if it is not a
    saved model."""
    directory = Path(model_dir)
    loaded = load_model(directory)
    tmp = directory / (ONNX_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _export_graph(loaded.model, tmp / "model.onnx")
        record = {
            "sources": {name: sha256_file(directory / name) for name in SOURCES},
            "opset": OPSET,
            "exporter": f"torch.onnx (TorchScript, dynamo=False), torch {torch.__version__}",
            "inputs": list(INPUTS),
            "outputs": list(OUTPUTS),
            "format": model_format(loaded.model),
        }
        write_json(tmp / "export.json", record)
        target = directory / ONNX_DIR
        shutil.rmtree(target, ignore_errors=True)
        tmp.replace(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest = json.loads((directory / MANIFEST).read_text())
    for name in (ONNX_MODEL, EXPORT_RECORD):
        manifest[name] = sha256_file(directory / name)
    write_json(directory / MANIFEST, dict(sorted(manifest.items())))
    verify_manifest(directory)
    return directory / ONNX_MODEL
