"""Run an exported model (:mod:`longmul.onnx_export`) with onnxruntime, and greedy decoding that re-runs
the whole sequence each step, as the browser does.

:func:`decode` takes any function from token and position ids to logits, so the same loop decodes
with onnxruntime (:meth:`OnnxModel.logits_fn`) and with the PyTorch model under
:class:`longmul.hooks.Knockout` s (:func:`torch_logits_fn`): that is how the parity tests compare them.
A knockout names positions of the decoded sequence (prompt, the chain of thought the model writes,
``####``, the answer), as in :func:`longmul.hooks.capture`; each step applies the part of it that
falls inside the tokens so far.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import GPT2LMHeadModel

from .evaluate import cot_tokens_of, position_skip_of
from .hooks import Knockout, run_with_cache
from .model import model_config_of
from .onnx_export import EXPORT_RECORD, ONNX_MODEL, OUTPUTS, SOURCES, KnockoutGPT2, knockout_mask
from .saved import MANIFEST, sha256_file, verify_manifest
from .sequences import EOS_ID, PAD_ID, Layout, full_ids

LogitsFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (B, T) ids, (B, T) positions -> (B, T, V)


@dataclass
class OnnxModel:
    """An exported model ready to run: the onnxruntime session and the format it decodes in."""

    path: Path
    session: object  # onnxruntime.InferenceSession
    format: dict

    @property
    def layout(self) -> Layout:
        return Layout(self.format["n_a"], self.format["n_b"])

    def run(self, input_ids: np.ndarray, position_ids: np.ndarray, knockout: np.ndarray | None = None) -> dict:
        """One forward pass: ``logits`` (B, T, V), ``attention`` (B, L, H, T, T) and ``resid_mid``
        (B, L, T, d_model), by name."""
        T = input_ids.shape[1]
        if knockout is None:
            knockout = np.zeros((self.format["n_layers"], self.format["n_heads"], T, T), dtype=bool)
        outputs = self.session.run(
            list(OUTPUTS),
            {
                "input_ids": np.ascontiguousarray(input_ids, dtype=np.int64),
                "position_ids": np.ascontiguousarray(position_ids, dtype=np.int64),
                "knockout": np.ascontiguousarray(knockout[:, :, :T, :T]),
            },
        )
        return dict(zip(OUTPUTS, outputs))

    def logits_fn(self, knockouts: Sequence[Knockout] = ()) -> LogitsFn:
        mask = knockout_mask(knockouts, self.format["n_layers"], self.format["n_heads"], self.format["max_positions"])
        return lambda ids, positions: self.run(ids, positions, mask)["logits"]


def load_onnx(model_dir: str | Path) -> OnnxModel:
    """The exported graph of ``model_dir``; ``ValueError`` if the folder's manifest does not cover it
    or does not match, or if it was exported from other weights than the folder holds now."""
    try:
        import onnxruntime
    except ImportError:
        raise ValueError("running ONNX models needs onnxruntime: pip install -e '.[dev]'") from None
    directory = Path(model_dir)
    if not (directory / ONNX_MODEL).is_file():
        raise ValueError(f"{directory} has no {ONNX_MODEL}: run `longmul export-onnx {directory}`")
    verify_manifest(directory)
    manifest = json.loads((directory / MANIFEST).read_text())
    uncovered = [name for name in (ONNX_MODEL, EXPORT_RECORD) if name not in manifest]
    if uncovered:
        raise ValueError(f"{directory / MANIFEST} does not cover {', '.join(uncovered)}")
    record = json.loads((directory / EXPORT_RECORD).read_text())
    sources = record.get("sources") if isinstance(record, dict) else None
    if not isinstance(sources, dict) or any(sources.get(n) != sha256_file(directory / n) for n in SOURCES):
        raise ValueError(
            f"{directory / ONNX_MODEL} was exported from other weights or config than {directory} holds: "
            f"rerun `longmul export-onnx {directory}`"
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(directory / ONNX_MODEL), options, providers=["CPUExecutionProvider"])
    return OnnxModel(directory, session, record["format"])


def torch_logits_fn(model: GPT2LMHeadModel, knockouts: Sequence[Knockout] = ()) -> LogitsFn:
    """The PyTorch model's logits under ``knockouts`` (:mod:`longmul.hooks`), as a :data:`LogitsFn`."""
    knockouts = list(knockouts)
    model.eval()

    def logits(ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        T = ids.shape[1]
        inside = [k for k in knockouts if _clip(k, T) is not None]
        out, _ = run_with_cache(
            model,
            torch.from_numpy(np.array(ids)),
            torch.from_numpy(np.array(positions)),
            names=[],
            knockouts=[_clip(k, T) for k in inside],
        )
        return out.numpy()

    return logits


def _clip(k: Knockout, T: int) -> Knockout | None:
    """The part of knockout ``k`` inside the first ``T`` positions (``None`` if nothing is)."""
    queries = [q for q in np.atleast_1d(k.query) if q < T]
    keys = [s for s in np.atleast_1d(k.key) if s < T]
    return Knockout(k.layer, k.head, queries, keys) if queries and keys else None


@dataclass
class Decoded:
    """Greedy decoding of a batch: generated tokens (B, steps), ``<pad>`` after ``<eos>``; the whole
    sequence (prompt and generated) with its position ids; the logits of its last forward pass."""

    generated: np.ndarray
    ids: np.ndarray
    positions: np.ndarray
    logits: np.ndarray


def decode(logits_fn: LogitsFn, pairs: np.ndarray, layout: Layout, position_skip: int, cot_tokens: int) -> Decoded:
    """Greedy decoding of ``pairs`` (B, 2) in the model's format: ``cot_tokens`` chain-of-thought tokens
    may come before ``####`` and the answer; positions after ``||`` skip ``position_skip``."""
    prompt = full_ids(pairs, layout, with_cot=False)[:, : layout.prompt_len]
    B, P = prompt.shape
    steps = cot_tokens + layout.answer_len
    all_positions = np.concatenate([np.arange(P), P + position_skip + np.arange(steps)])
    ids = prompt
    finished = np.zeros(B, dtype=bool)
    for _ in range(steps):
        positions = np.broadcast_to(all_positions[: ids.shape[1]], ids.shape)
        logits = logits_fn(ids, positions)
        nxt = np.where(finished, PAD_ID, logits[:, -1].argmax(-1))
        finished |= nxt == EOS_ID
        ids = np.concatenate([ids, nxt[:, None]], axis=1)
        if finished.all():
            break
    positions = np.broadcast_to(all_positions[: ids.shape[1]], ids.shape)
    generated = np.pad(ids[:, P:], ((0, 0), (0, steps - (ids.shape[1] - P))), constant_values=PAD_ID)
    return Decoded(generated, ids, positions, logits_fn(ids, positions))


def decode_model(model: GPT2LMHeadModel, logits_fn: LogitsFn, pairs: np.ndarray) -> Decoded:
    """:func:`decode` in the format of the PyTorch ``model`` (its operand sizes, CoT and position skip)."""
    layout = model_config_of(model).layout
    return decode(logits_fn, pairs, layout, position_skip_of(model), cot_tokens_of(model))


def answer_knockouts(onnx: OnnxModel, n: int, rng: np.random.Generator) -> list[Knockout]:
    """``n`` random knockouts, each of one head's edges from a position that predicts an answer digit
    (``####``, c0 … c6) to one to three keys, never all of its keys."""
    first = onnx.layout.prompt_len + onnx.format["cot_tokens"]  # where ``####`` sits
    out = []
    for _ in range(n):
        query = first + int(rng.integers(onnx.layout.n_c))
        keys = rng.choice(query + 1, size=int(rng.integers(1, 4)), replace=False)
        layer, head = int(rng.integers(onnx.format["n_layers"])), int(rng.integers(onnx.format["n_heads"]))
        out.append(Knockout(layer, head, query, sorted(int(k) for k in keys)))
    return out


@dataclass
class Parity:
    """How closely onnxruntime decodes as PyTorch under the same knockouts, on ``n`` problems. Both run
    in float32: ``float32_error``, PyTorch's own distance from the same forward pass in float64, says
    how close two float32 computations can be expected to come."""

    n: int
    same_answers: float  # share of problems whose whole generated sequence is the same
    max_logit_gap: float  # max |Δlogit| between onnxruntime and PyTorch, every position of every sequence
    float32_error: float  # max |logit| difference between PyTorch in float32 and in float64
    generated: np.ndarray  # PyTorch's generated tokens (n, steps)


def compare(model: GPT2LMHeadModel, onnx: OnnxModel, pairs: np.ndarray, knockouts: Sequence[Knockout] = ()) -> Parity:
    """Decode ``pairs`` greedily with onnxruntime and with PyTorch (both under ``knockouts``); compare the
    answers, and the logits of the PyTorch-decoded sequences."""
    theirs = decode_model(model, torch_logits_fn(model, knockouts), pairs)
    ours = decode_model(model, onnx.logits_fn(knockouts), pairs)
    mask = knockout_mask(knockouts, onnx.format["n_layers"], onnx.format["n_heads"], onnx.format["max_positions"])
    logits = onnx.run(theirs.ids, theirs.positions, mask)["logits"]
    T = theirs.ids.shape[1]
    with torch.no_grad():
        exact = KnockoutGPT2(copy.deepcopy(model).double())(
            torch.from_numpy(theirs.ids),
            torch.from_numpy(np.array(theirs.positions)),
            torch.from_numpy(mask[:, :, :T, :T]),
        )[0].numpy()
    return Parity(
        n=len(pairs),
        same_answers=float((ours.generated == theirs.generated).all(1).mean()),
        max_logit_gap=float(np.abs(logits - theirs.logits).max()),
        float32_error=float(np.abs(theirs.logits - exact).max()),
        generated=theirs.generated,
    )
