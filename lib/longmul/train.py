"""One training loop, three recipes.

* ``sft``  — standard fine-tuning: ``a * b || #### c <eos>``, loss on everything after ``||``.
* ``icot`` — implicit chain of thought by stepwise internalization (Deng et al., 2024): train with the
  full chain of thought, then remove its tokens from the left, ``icot_tokens_per_stage`` at a time.
  A stage advances either every ``icot_stage_examples`` examples (the paper's fixed pace) or, with
  ``icot_stage_examples = 0``, when free-running accuracy in the current format reaches ``icot_gate``
  (a pace that suits a CPU). Each example removes a few extra tokens with probability
  ∝ exp(-λ·extra) (removal smoothing, λ = ``icot_smoothing``); the optimizer is reset when the
  removal count grows; training continues once the chain of thought is gone.
* ``aux``  — SFT plus ``aux_weight`` · MSE of a linear probe that reads the activation ``aux_site`` at
  the positions predicting each ``c_k`` and regresses ``ĉ_k / aux_scale`` (FACTS §3).

A whole plan with its schedule of changes by step can come from a recipe file (:mod:`longmul.recipe_file`,
:func:`train_recipe_file`): each change is applied as a resume with the new settings at its step.

Runs checkpoint every ``checkpoint_minutes`` and resume bit-for-bit (``resume=True``). Every
``log_every`` steps a row goes to ``history.jsonl``: loss, per-output-digit loss and the gradient norm
of each digit's loss; every ``eval_every`` steps, validation exact match.

Under torchrun the same loop runs on every rank, data-parallel (:mod:`longmul.distributed` says how
the ranks share a batch and why they train the model one process trains): each rank trains on its
rows of the global batch, rank 0 evaluates, logs and checkpoints, and a checkpoint written by any
number of ranks resumes on any number.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm
from transformers import GPT2LMHeadModel

from . import __version__
from .checkpoint import find_checkpoint, load_checkpoint, load_optimizer_tensors, save_checkpoint
from .config import RECIPES, RESUME_MUTABLE, OptionError, TrainConfig
from .cost import available_memory
from .datasets import evaluation_problems, icot_problems
from .distributed import SINGLE, Ranks, process_group
from .evaluate import evaluate_pairs
from .files import FileWarning, read_json_object, read_jsonl
from .hooks import capture
from .model import ModelConfig, build_model, count_parameters, pick_device
from .model_card import model_card
from .provenance import schedule_changes
from .recipe_file import RecipeFile, read_recipe_file
from .run_state import check_row, check_state
from .saved import is_model_dir, save_model
from .sequences import IGNORE_INDEX, Layout, make_batch, problems_to_pairs
from .shipped import SNAPSHOT_DIR
from .task import random_problems, sample_operands


def cpu_model_name() -> str:
    """The CPU's model name as the kernel reports it ("AMD EPYC", "Intel(R) Xeon(R) …"); the
    processor architecture where there is no /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_description(device: torch.device) -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model_name(),
        # The vector width torch's CPU kernels use (AVX2, AVX512, …): reductions sum in that many
        # lanes, so two machines with another capability round the same step differently.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,  # a run resumed on another machine may change it
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def session_hardware(device: torch.device, ranks: Ranks) -> dict:
    """A session's hardware record: its process's machine; on several ranks, rank 0's, with the world
    size, the backend and every rank's own record (``ranks``, in rank order)."""
    info = hardware_description(device)
    if ranks.distributed:
        info.update(world_size=ranks.world_size, backend=ranks.backend, ranks=ranks.gather_objects(info))
    return info


class AuxProbe(torch.nn.Module):
    """One bias-free linear readout per output digit: ĉ_k / scale ≈ w_k · activation at position k."""

    def __init__(self, d_in: int, n_c: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(n_c, d_in))

    def forward(self, acts: torch.Tensor) -> torch.Tensor:  # acts (B, n_c, d_in)
        return (acts * self.weight).sum(-1)  # (B, n_c)


def aux_features(activation: torch.Tensor, positions: torch.Tensor, heads: tuple[int, ...]) -> torch.Tensor:
    """Gather the probe's input at the answer positions: (B, n_c, d_in)."""
    B, n_c = positions.shape
    index = positions.view(B, n_c, *([1] * (activation.dim() - 2)))
    index = index.expand(B, n_c, *activation.shape[2:])
    picked = activation.gather(1, index)  # (B, n_c, ...) per position
    if heads:  # (B, n_c, H, d) -> (B, n_c, len(heads) * d)
        picked = picked[:, :, list(heads)].flatten(2)
    return picked


def aux_input_dim(config: TrainConfig, model_config: ModelConfig) -> int:
    if config.aux_site.endswith("hook_z"):
        return len(config.aux_heads) * model_config.d_head
    if config.aux_site.endswith("hook_result"):
        return len(config.aux_heads) * model_config.d_model
    return model_config.d_model


class TrainedModules(torch.nn.Module):
    """The model and (aux recipe) its probe as one module, which DistributedDataParallel wraps to average
    the gradients of both across ranks. Its forward runs the model; a training step applies the probe
    to the activation it captured."""

    def __init__(self, model: GPT2LMHeadModel, probe: AuxProbe | None):
        super().__init__()
        self.model = model
        self.probe = probe

    def forward(self, **inputs):
        return self.model(**inputs)


def make_optimizer(params, config: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay)


def per_digit_grad_norms(digit_loss: torch.Tensor, params: list[torch.nn.Parameter], ranks: Ranks = SINGLE) -> list[float]:
    """‖∂ loss(c_k) / ∂θ‖ for each output digit k (the training-dynamics figure). On several ranks each
    holds the loss of its rows: the gradient of the global batch's is the mean of theirs."""
    norms = []
    for k in range(digit_loss.shape[0]):
        grads = torch.autograd.grad(digit_loss[k], params, retain_graph=True, allow_unused=True)
        grads = ranks.mean_tensors([g for g in grads if g is not None])
        norms.append(float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads))))
    return norms


class StopRequest:
    """Set by SIGINT/SIGTERM; the loop stops at the next step boundary, after a checkpoint."""

    requested = False


@contextmanager
def stop_on_signals():
    """Turn SIGINT and SIGTERM (``kill``, a session ending) into a clean stop: the step in flight
    finishes, a checkpoint is written, then :class:`KeyboardInterrupt` is raised. Stopping between
    steps keeps ``--resume`` exact."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        request.requested = True

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Trainer:
    """Holds the state of one run; :meth:`run` trains to ``max_steps`` from wherever the state is."""

    def __init__(self, config: TrainConfig, out_dir: Path, command: str, ranks: Ranks = SINGLE):
        config.validate()
        self.config = config
        self.out_dir = out_dir
        self.command = command
        self.ranks = ranks
        ranks.rows(config.batch_size)  # a batch the ranks cannot share evenly: refused before any file is written
        self.device = ranks.device(pick_device(config.device))
        self.model_config = config.model_config()
        self._check_memory_free()
        self.layout: Layout = self.model_config.layout
        self.model = build_model(self.model_config, seed=config.seed).to(self.device)
        self.model.train()
        self.probe = None
        if config.recipe == "aux":
            self.probe = AuxProbe(aux_input_dim(config, self.model_config), self.layout.n_c).to(self.device)
        self.trained = TrainedModules(self.model, self.probe)  # what a step runs forward (see data_parallel)
        self.optimizer = make_optimizer(self.parameters(), config)
        self.ema = self.fresh_ema()
        # The same generators on every rank: each draws the global batch and takes its rows of it.
        self.data_rng = np.random.default_rng(config.seed)
        self.smoothing_rng = np.random.default_rng(config.seed + 1)
        torch.manual_seed(ranks.dropout_seed(config.seed))  # dropout: a stream of its own on each rank
        self.hardware = session_hardware(self.device, ranks)
        self.exclude = frozenset((p.a, p.b) for p in evaluation_problems()) if config.n_digits == 4 else frozenset()
        if config.n_digits == 4:
            val = icot_problems("valid")
        else:
            val = random_problems(max(config.n_val, config.icot_gate_problems), seed=10_000 + config.seed, n_digits=config.n_digits)
        self.val_pairs = problems_to_pairs(val[: config.n_val])
        self.gate_pairs = problems_to_pairs(val[: config.icot_gate_problems])
        self.step = 0
        self.examples = 0
        self.removed = 0  # ICoT: chain-of-thought tokens removed at the current stage
        self.stage_start_step = 0
        self.stages: list[dict] = [{"step": 0, "removed": 0}] if config.recipe == "icot" else []
        self.elapsed_before = 0.0
        self.sessions: list[dict] = []
        self.history_path = out_dir / "history.jsonl"
        self.stopped_early = False
        self.recipe_file: dict | None = None  # {"path", "sha256"} of the recipe file this session runs

    def fresh_ema(self) -> list[torch.Tensor] | None:
        """A moving average of the model's parameters that starts at their current values (None when
        ``ema_decay`` is 0)."""
        if self.config.ema_decay <= 0:
            return None
        return [p.detach().clone() for p in self.model.parameters()]

    @contextmanager
    def evaluated_weights(self):
        """Evaluate the moving average of the weights, if the run keeps one: swapped in, then back."""
        if self.ema is None:
            yield
            return
        raw = [p.detach().clone() for p in self.model.parameters()]
        self.set_weights(self.ema)
        try:
            yield
        finally:
            self.set_weights(raw)

    @torch.no_grad()
    def set_weights(self, values: list[torch.Tensor]) -> None:
        for p, v in zip(self.model.parameters(), values, strict=True):
            p.copy_(v)

    def _check_memory_free(self) -> None:
        """Refuse, naming the flag, a run whose training step would not fit in the memory free on its
        device now (validate() only caps it at what any machine could hold)."""
        free = available_memory(self.device)
        if free is None:
            return
        amount = f"{free / 2**30:,.1f} GiB" if free >= 2**30 else f"{free / 2**20:,.0f} MiB"
        where = f"the {amount} free on this machine's {self.device.type} now"
        try:
            self.config.check_memory(self.model_config, free, where)
        except OptionError as err:
            raise ValueError(f"--{err.option.replace('_', '-')}: {err}") from None

    @contextmanager
    def data_parallel(self):
        """Train under DDP (which averages the ranks' gradients in backward) while the block runs; no
        change in one process. DDP is dropped when the block ends, before the process group is left:
        torch's gloo group, destroyed later by DDP's last reference, can deadlock waiting for its
        threads (seen at the end of runs here)."""
        plain = self.trained
        self.trained = self.ranks.wrap(plain, self.device)
        try:
            yield
        finally:
            self.trained = plain

    def parameters(self) -> list[torch.nn.Parameter]:
        params = list(self.model.parameters())
        return params + (list(self.probe.parameters()) if self.probe is not None else [])

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "step": self.step,
            "examples": self.examples,
            "removed": self.removed,
            "stage_start_step": self.stage_start_step,
            "stages": self.stages,
            "elapsed_s": self.elapsed(),
            "sessions": self.sessions + [self.session_record()],
            "data_rng": self.data_rng.bit_generator.state,
            "smoothing_rng": self.smoothing_rng.bit_generator.state,
        }

    def save_checkpoint(self) -> None:
        """Rank 0 writes the checkpoint, with every rank's dropout generator (which each sends it)."""
        rng_states = self.ranks.gather(torch.get_rng_state())
        if not self.ranks.main:
            return
        extra = {"torch_rng": rng_states[0]} | {f"torch_rng.{r}": state for r, state in enumerate(rng_states) if r}
        if self.probe is not None:
            extra["probe.weight"] = self.probe.weight
        for i, average in enumerate(self.ema or []):
            extra[f"ema.{i}"] = average
        save_checkpoint(self.out_dir / "checkpoint", self.model, self.optimizer, extra, self.state())

    def restore(self, truncate_history: bool = True) -> None:
        found = find_checkpoint(self.out_dir / "checkpoint")
        if found is None:
            raise ValueError(f"nothing to resume: no checkpoint in {self.out_dir}")
        model_sd, opt_tensors, extra, state = load_checkpoint(found)
        try:
            self.restore_tensors(model_sd, opt_tensors, extra, state)
        except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as err:
            # A checkpoint whose files parse but do not fit this run's model and optimizer (edited, or
            # from another version): say which checkpoint, keep torch's or numpy's own words.
            raise ValueError(f"checkpoint in {found} does not fit this run: {type(err).__name__}: {err}") from None
        self.step, self.examples = state["step"], state["examples"]
        self.removed, self.stage_start_step = state["removed"], state["stage_start_step"]
        self.stages = state["stages"]
        self.elapsed_before = state["elapsed_s"]
        self.sessions = state["sessions"]
        if truncate_history and self.ranks.main:
            # Drop history rows logged after the checkpoint: the resumed run logs them again.
            rows = [r for r in _read_history(self.history_path) if r["step"] <= self.step]
            _write_jsonl(self.history_path, rows)

    def restore_tensors(self, model_sd: dict, opt_tensors: dict, extra: dict, state: dict) -> None:
        """Put a checkpoint's weights, optimizer moments and random states in place; every weight of
        the model must be in the checkpoint (no random initialisation of missing ones)."""
        if self.model.config.tie_word_embeddings:
            model_sd = {**model_sd, "lm_head.weight": model_sd.get("transformer.wte.weight")}
        expected = set(self.model.state_dict())
        if set(model_sd) != expected:
            missing, unexpected = sorted(expected - set(model_sd)), sorted(set(model_sd) - expected)
            raise ValueError(f"its model weights do not match the model: missing {missing}, unexpected {unexpected}")
        self.model.load_state_dict(model_sd)
        if self.model.config.tie_word_embeddings:
            self.model.tie_weights()
        if self.probe is not None:
            self.probe.weight.data.copy_(extra["probe.weight"])
        load_optimizer_tensors(self.optimizer, opt_tensors, state["optimizer"])
        if self.ema is not None:  # the saved average, or (switched on at this resume) the weights now
            saved = [extra.get(f"ema.{i}") for i in range(len(self.ema))]
            self.ema = [a.to(self.device) for a in saved] if all(a is not None for a in saved) else self.fresh_ema()
        saved_rng = extra.get("torch_rng" if self.ranks.main else f"torch_rng.{self.ranks.rank}")
        if saved_rng is not None:
            torch.set_rng_state(saved_rng)
        else:  # a rank beyond those that wrote the checkpoint
            torch.manual_seed(self.ranks.dropout_seed(self.config.seed, state["step"]))
        self.data_rng.bit_generator.state = state["data_rng"]
        self.smoothing_rng.bit_generator.state = state["smoothing_rng"]

    def elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.session_start)

    def session_record(self) -> dict:
        record = {
            "started": self.session_started,
            "wall_time_s": time.monotonic() - self.session_start,
            "hardware": self.hardware,
            "command": self.command,
        }
        if self.recipe_file is not None:
            record["recipe_file"] = self.recipe_file
        return record

    # ------------------------------------------------------------------ one step
    def removal_counts(self, batch_size: int) -> np.ndarray:
        cot_len = self.layout.cot_len
        removed = np.full(batch_size, self.removed)
        if self.config.icot_smoothing > 0 and self.removed < cot_len:
            extra_max = cot_len - self.removed
            offsets = np.arange(extra_max + 1)
            weights = np.exp(-self.config.icot_smoothing * offsets)
            removed = removed + self.smoothing_rng.choice(offsets, size=batch_size, p=weights / weights.sum())
        return np.minimum(removed, cot_len)

    def lr_now(self) -> float:
        since = self.step - self.stage_start_step
        warm = self.config.warmup_steps
        lr = self.config.lr * (min(1.0, (since + 1) / warm) if warm else 1.0)
        if self.config.lr_schedule == "cosine":
            # over the whole run: an ICoT stage restarts the warmup, not the decay
            lr *= (1 + math.cos(math.pi * min(1.0, self.step / self.config.max_steps))) / 2
        return lr

    def train_step(self, log: bool) -> dict:
        config, ranks = self.config, self.ranks
        # The global batch (the same on every rank), of which this rank trains on its rows: all of them in one process.
        pairs = sample_operands(self.data_rng, config.batch_size, config.n_digits, config.n_digits, self.exclude)
        removed = self.removal_counts(len(pairs)) if config.recipe == "icot" else None
        batch = make_batch(pairs, self.layout, removed, keep_position=config.icot_keep_position)
        n_targets = (batch.labels != IGNORE_INDEX).sum().to(self.device)  # in the global batch
        mine = ranks.rows(len(pairs))
        ids = batch.input_ids[mine].to(self.device)  # (B, T)
        labels = batch.labels[mine].to(self.device)  # (B, T)
        answer_pos = batch.answer_positions[mine].to(self.device)  # (B, n_c)
        names = [config.aux_site] if self.probe is not None else []
        with capture(self.model, names) as cache:
            logits = self.trained(
                input_ids=ids,
                position_ids=batch.position_ids[mine].to(self.device),
                attention_mask=batch.attention_mask[mine].to(self.device),
            ).logits  # (B, T, V)
        token_loss = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")  # (B, T)
        loss = token_loss.sum() / n_targets  # this rank's part of the mean over the global batch's targets
        digit_loss = token_loss.gather(1, answer_pos).mean(0)  # (n_c,)
        # DDP averages the ranks' gradients: scaled by the world size, their parts average to the global mean's.
        total = loss * ranks.world_size
        aux_loss = None
        if self.probe is not None:
            features = aux_features(cache[config.aux_site], answer_pos, config.aux_heads)  # (B, n_c, d_in)
            target = torch.tensor(running_sums_batch(pairs, self.layout), dtype=torch.float32, device=self.device)
            if config.aux_target == "shuffled":  # one permutation of the global batch: rank 0's
                target = target[ranks.broadcast_(torch.randperm(len(target), device=self.device))]
            aux_loss = F.mse_loss(self.probe(features), target[mine] / config.aux_scale)
            total = total + config.aux_weight * aux_loss
        row = {}
        if log:
            row["digit_grad_norm"] = per_digit_grad_norms(digit_loss, list(self.model.parameters()), ranks)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters(), config.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_now()
        self.optimizer.step()
        if self.ema is not None:
            with torch.no_grad():
                for average, p in zip(self.ema, self.model.parameters(), strict=True):
                    average.lerp_(p, 1.0 - config.ema_decay)
        self.step += 1
        self.examples += len(pairs)
        if log:  # the global batch's losses: the parts of the mean summed, the means of equal shares averaged
            row.update(
                kind="train",
                step=self.step,
                examples=self.examples,
                elapsed_s=round(self.elapsed(), 2),
                lr=self.lr_now(),
                loss=float(ranks.sum(loss.detach())),
                digit_loss=[float(x) for x in ranks.mean(digit_loss.detach())],
                grad_norm=float(grad_norm),
            )
            if aux_loss is not None:
                row["aux_loss"] = float(ranks.mean(aux_loss.detach()))
            if config.recipe == "icot":
                row["removed"] = self.removed
        return row

    # ------------------------------------------------------------------ schedule
    def position_skip(self) -> int:
        return self.removed if self.config.icot_keep_position else 0

    def cot_tokens(self) -> int:
        return self.layout.cot_len - self.removed if self.config.recipe == "icot" else 0

    def advance_icot(self) -> bool:
        """Move to the next removal stage when the schedule says so; True if it moved."""
        config, cot_len = self.config, self.layout.cot_len
        if config.recipe != "icot" or self.removed >= cot_len:
            return False
        if config.icot_stage_examples > 0:
            target = min(cot_len, (self.examples // config.icot_stage_examples) * config.icot_tokens_per_stage)
        elif self.step % config.icot_gate_every == 0:
            accuracy = self.ranks.share(self.gate_accuracy() if self.ranks.main else None)  # rank 0 evaluates
            target = min(cot_len, self.removed + config.icot_tokens_per_stage) if accuracy >= config.icot_gate else self.removed
        else:
            return False
        if target <= self.removed:
            return False
        self.removed = target
        self.stage_start_step = self.step
        stage = {"step": self.step, "examples": self.examples, "removed": target, "elapsed_s": round(self.elapsed(), 1)}
        if config.icot_stage_examples == 0:
            stage["gate"] = config.icot_gate  # the gate passed (it may change when a run is resumed)
        self.stages.append(stage)
        if config.icot_reset_optimizer:
            self.optimizer = make_optimizer(self.parameters(), config)
        self.ema = self.fresh_ema()  # average the new stage's weights only
        return True

    def gate_accuracy(self) -> float:
        """Free-running exact match on the gate's problems, in the current format."""
        with self.evaluated_weights():
            return evaluate_pairs(
                self.model, self.gate_pairs, self.layout, position_skip=self.position_skip(), cot_tokens=self.cot_tokens()
            ).exact_match

    def validate_now(self) -> dict:
        with self.evaluated_weights():
            result = evaluate_pairs(
                self.model, self.val_pairs, self.layout, position_skip=self.position_skip(), cot_tokens=self.cot_tokens()
            )
        row = {"kind": "eval", "step": self.step, "examples": self.examples, "elapsed_s": round(self.elapsed(), 2)}
        row.update(val_exact_match=result.exact_match, val_per_digit=result.per_digit)
        if self.config.recipe == "icot":
            row["removed"] = self.removed
        return row

    def reached_target(self, val_exact_match: float) -> bool:
        target = self.config.stop_exact_match
        cot_gone = self.config.recipe != "icot" or self.removed >= self.layout.cot_len
        return target > 0 and cot_gone and val_exact_match >= target

    # ------------------------------------------------------------------ loop
    def run(self, until: int | None = None) -> None:
        """Train to ``max_steps``, or only to step ``until`` (a stretch of a recipe file's plan: no
        final evaluation there, as when a run is stopped with a checkpoint and resumed)."""
        config, ranks = self.config, self.ranks
        end = config.max_steps if until is None else min(until, config.max_steps)
        last_checkpoint = time.monotonic()
        bar = tqdm(
            total=config.max_steps,
            initial=self.step,
            desc=f"train {config.recipe}",
            unit="step",
            disable=not config.progress or not ranks.main,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
        )
        # Rank 0 writes the history; the other ranks' rows (the same global values) go nowhere.
        with (
            open(self.history_path if ranks.main else os.devnull, "a") as history,
            stop_on_signals() as stop,
            self.data_parallel(),
        ):
            try:
                while self.step < end:
                    if ranks.any(stop.requested):  # torchrun passes a signal on to every rank, not all at one step
                        raise KeyboardInterrupt
                    log = (self.step + 1) % config.log_every == 0 or self.step == 0
                    row = self.train_step(log)
                    if row:
                        history.write(json.dumps(row) + "\n")
                        history.flush()  # readers (the dynamics chapter) see runs in progress
                        bar.set_postfix(loss=f"{row['loss']:.3f}", refresh=False)
                    if self.advance_icot():
                        history.write(json.dumps({"kind": "stage", **self.stages[-1]}) + "\n")
                        bar.set_postfix(removed=self.removed, refresh=False)
                    if self.step % config.eval_every == 0 or self.step == config.max_steps:
                        row = self.validate_now() if ranks.main else None  # the others wait for its verdict
                        if row is not None:
                            history.write(json.dumps(row) + "\n")
                            bar.set_postfix(val_em=f"{row['val_exact_match']:.3f}", refresh=False)
                        if self.reached_target(ranks.share(row["val_exact_match"] if row else None)):
                            self.stopped_early = True
                            break
                    bar.update(1)
                    if ranks.any(time.monotonic() - last_checkpoint >= config.checkpoint_minutes * 60):
                        history.flush()
                        self.save_checkpoint()
                        last_checkpoint = time.monotonic()
            except KeyboardInterrupt:
                history.flush()
                self.save_checkpoint()
                ranks.barrier()  # the others leave once rank 0's checkpoint is written
                bar.close()
                raise
        bar.close()
        self.save_checkpoint()
        ranks.barrier()  # a session that follows (a recipe file's next stretch) reads this checkpoint on every rank

    # ------------------------------------------------------------------ final model
    def finalize(self, target: Path, keep_checkpoint: bool, snapshot: bool = False) -> Path:
        """Evaluate and save the model in ``target`` (a snapshot of a run still in progress if asked)."""
        config = self.config
        if self.ema is not None:  # the saved model is the moving average (training is over for this trainer)
            self.set_weights(self.ema)
        self.model.config.longmul_position_skip = self.position_skip()
        self.model.config.longmul_cot_tokens = self.cot_tokens()
        self.model.config.longmul_recipe = config.recipe
        metrics = final_metrics(self.model, config, self.layout)
        sessions = self.sessions + ([] if snapshot else [self.session_record()])
        training = {
            "recipe": config.recipe,
            "config": config.to_dict(),
            "model_config": self.model_config.to_dict(),
            "n_parameters": count_parameters(self.model),
            "seed": config.seed,
            "command": self.command,
            "steps": self.step,
            "examples": self.examples,
            "snapshot_of_unfinished_run": snapshot,
            "stopped_early": self.stopped_early,
            "wall_time_s": round(self.elapsed(), 1),
            "sessions": sessions,
            "schedule_changes": schedule_changes(self.history_path),
            "recipe_file": one_recipe_file(sessions),
            "icot_stages": self.stages,
            "library_version": __version__,
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "written": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        extra = {"history.jsonl": self.history_path}
        probe_file = None
        if self.probe is not None:
            probe_file = self.out_dir / "aux_probe.safetensors.tmp"
            save_file({"weight": self.probe.weight.detach().cpu().contiguous()}, probe_file)
            extra["aux_probe.safetensors"] = probe_file
        card = model_card(target, training, metrics, self.cot_tokens())
        save_model(target, self.model, training, metrics, extra, card, replace=snapshot)  # a snapshot's folder is its own
        if probe_file is not None:
            probe_file.unlink()
        if not keep_checkpoint:
            shutil.rmtree(self.out_dir / "checkpoint", ignore_errors=True)
        if not snapshot:  # the finished model supersedes any snapshot of the run in progress
            shutil.rmtree(self.out_dir / SNAPSHOT_DIR, ignore_errors=True)
        return target


def running_sums_batch(pairs: np.ndarray, layout: Layout) -> np.ndarray:
    """ĉ_k for a batch of operand pairs (B, n_c), vectorised."""
    a = (pairs[:, :1] // 10 ** np.arange(layout.n_a)) % 10  # (B, n_a)
    b = (pairs[:, 1:2] // 10 ** np.arange(layout.n_b)) % 10  # (B, n_b)
    s = np.zeros((len(pairs), layout.n_c), dtype=np.int64)
    for i in range(layout.n_a):
        s[:, i : i + layout.n_b] += a[:, i : i + 1] * b
    out = np.empty_like(s)
    carry = np.zeros(len(pairs), dtype=np.int64)
    for k in range(layout.n_c):
        out[:, k] = s[:, k] + carry
        carry = out[:, k] // 10
    return out


def final_metrics(model: GPT2LMHeadModel, config: TrainConfig, layout: Layout) -> dict:
    """Exact match and per-digit accuracy on the ICoT test sets and on fresh random problems."""
    metrics: dict[str, dict] = {}
    if config.n_digits == 4:
        for name in ("test", "test2"):
            metrics[f"icot_{name}"] = evaluate_pairs(model, problems_to_pairs(icot_problems(name)), layout).to_dict()
        exclude = evaluation_problems()
    else:
        exclude = []
    if config.final_eval_random > 0:
        fresh = random_problems(config.final_eval_random, seed=987_654 + config.seed, n_digits=config.n_digits, exclude=exclude)
        metrics["random"] = evaluate_pairs(model, problems_to_pairs(fresh), layout).to_dict()
        metrics["random"]["seed"] = 987_654 + config.seed
    return metrics


def _read_history(path: Path) -> list[dict]:
    """A run's history rows; a torn last line (a kill in the middle of writing it) is dropped with a warning."""
    rows, torn = read_jsonl(path, check_row)
    if torn:
        message = f"{path}: dropped its last line, cut off when the run was stopped mid-write"
        warnings.warn(message, FileWarning, stacklevel=2)
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)


def one_recipe_file(sessions: list[dict]) -> dict | None:
    """The recipe file (``{"path", "sha256"}``) every session ran, or None: a run made by flags, or
    resumed by hand, or from a file that changed in between, is not a one-file recipe."""
    files = [session.get("recipe_file") for session in sessions]
    if not files or files[0] is None or any(f != files[0] for f in files):
        return None
    return files[0]


def _state_to_resume(out_dir: Path) -> dict:
    """The checked ``state.json`` of the latest checkpoint of the run in ``out_dir``, or a ValueError
    saying there is nothing to resume."""
    found = find_checkpoint(out_dir / "checkpoint")
    if found is None:
        raise ValueError(f"nothing to resume: no checkpoint in {out_dir}")
    state = read_json_object(found / "state.json")
    check_state(state, found / "state.json")
    return state


def start_session(
    config: TrainConfig,
    out_dir: Path,
    resume: bool,
    command: str,
    recipe_file: dict | None = None,
    ranks: Ranks = SINGLE,
) -> Trainer:
    """A trainer for one session of a run in ``out_dir`` (this rank's, under torchrun): a new run, or
    (``resume``) its checkpoint restored, with a ``resume`` row in the history naming the settings that
    changed, and the world size if it changed (or is not 1)."""
    changed: dict[str, list] = {}  # settings a resume changes: {name: [old, new]}
    world_size_before = 1
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    if resume:
        state = _state_to_resume(out_dir)
        if state["sessions"]:
            world_size_before = state["sessions"][-1].get("hardware", {}).get("world_size", 1)
        saved = TrainConfig.from_dict(state["config"])
        differing = [f.name for f in fields(TrainConfig) if f.name not in RESUME_MUTABLE and getattr(saved, f.name) != getattr(config, f.name)]
        if differing:
            raise ValueError(
                f"cannot resume {out_dir} with different settings: {', '.join(differing)} "
                f"(only {sorted(RESUME_MUTABLE)} may change)"
            )
        for name in sorted(RESUME_MUTABLE):
            if getattr(saved, name) != getattr(config, name):
                changed[name] = [getattr(saved, name), getattr(config, name)]
        if "icot_tokens_per_stage" in changed and config.icot_stage_examples > 0:
            # At a fixed pace the removal count is a function of the examples seen: a new step would jump it.
            raise ValueError(
                f"cannot change icot_tokens_per_stage when resuming {out_dir}: its stages follow a fixed pace "
                f"(icot_stage_examples = {config.icot_stage_examples}); only gated runs may change it"
            )
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"output directory {out_dir} is not empty; pass resume=True (--resume) or pick another")
    ranks.barrier()  # every rank has looked at the folder before rank 0 writes to it
    config.validate()
    trainer = Trainer(config, out_dir, command, ranks)
    trainer.recipe_file = recipe_file
    trainer.session_start = time.monotonic()
    trainer.session_started = datetime.now(UTC).isoformat(timespec="seconds")
    if ranks.main:
        out_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        trainer.restore()
        row = {"kind": "resume", "step": trainer.step, "examples": trainer.examples, "changed": changed}
        if ranks.world_size != 1 or world_size_before != 1:
            row["world_size"] = ranks.world_size
        # A session killed right after writing its resume row, before any checkpoint, is resumed from
        # the same checkpoint with the same change: the row is there already.
        news = changed or ranks.world_size != world_size_before
        if news and ranks.main and _last_row(trainer.history_path) != row:
            with open(trainer.history_path, "a") as history:
                history.write(json.dumps(row) + "\n")
    return trainer


def _last_row(path: Path) -> dict | None:
    rows = _read_history(path)
    return rows[-1] if rows else None


def train(
    config: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    command: str | None = None,
    keep_checkpoint: bool = True,
) -> Path | None:
    """Train (or resume) a run in ``out_dir`` and save the final model there. Under torchrun every rank
    calls it; rank 0 evaluates and saves the model once all have left the process group (the others do
    not wait for that) and returns its folder, the others None."""
    with process_group(config.device) as ranks:
        trainer = start_session(config, Path(out_dir), resume, command or " ".join(sys.argv), ranks=ranks)
        trainer.run()
    if not ranks.main:
        return None
    return trainer.finalize(Path(out_dir), keep_checkpoint)


def train_recipe_file(
    recipe: str | Path | RecipeFile,
    out_dir: str | Path,
    resume: bool = False,
    command: str | None = None,
    keep_checkpoint: bool = True,
    until: int | None = None,
    progress: bool = True,
) -> Path | None:
    """Run the whole plan of a recipe file in ``out_dir`` (or, after a stop, the rest of it with
    ``resume``) and save the final model there. Each change of the plan is applied as a resume with
    the new settings at its step, in the same process. ``until``: stop with a checkpoint at that step
    instead (a partial replay; nothing is saved as a model, None is returned). Under torchrun as
    :func:`train`: rank 0 saves the model, the others return None."""
    plan = recipe if isinstance(recipe, RecipeFile) else read_recipe_file(recipe)
    out_dir = Path(out_dir)
    command = command or " ".join(sys.argv)
    done = 0
    if resume:
        state = _state_to_resume(out_dir)
        done = state["step"]
        if done > plan.max_steps:
            raise ValueError(f"cannot resume {out_dir} with {plan.path}: its checkpoint is at step {done:,}, past the plan's end ({plan.max_steps:,})")
    end = plan.max_steps if until is None else min(until, plan.max_steps)
    plan.check_devices(after=done, until=end)  # before training, not when the run gets to a GPU stretch
    trainer = None
    stretches = plan.stretches()
    with process_group(plan.config_at(done).device) as ranks:
        for number, (first, last, config) in enumerate(stretches):
            finishing = number == len(stretches) - 1
            if (last <= done and not finishing) or (trainer is not None and first >= end):
                continue  # done before a stop, or past a partial replay's end
            config = replace(config, progress=progress)
            trainer = start_session(config, out_dir, resume or trainer is not None, command, plan.record(), ranks)
            trainer.run(until=min(last, end))
            if trainer.stopped_early:
                break
    if not ranks.main or (until is not None and trainer.step < plan.max_steps and not trainer.stopped_early):
        return None
    return trainer.finalize(out_dir, keep_checkpoint)


def export_snapshot(
    run_dir: str | Path, target: str | Path, final_eval_random: int = 1_000, force: bool = False
) -> Path:
    """Save the latest checkpoint of a run (finished or not) as a model directory in ``target``.

    A ``target`` that holds anything but an earlier snapshot is left alone (``ValueError``) unless
    ``force``; an existing one is replaced whole once the new snapshot is complete."""
    run_dir, target = Path(run_dir), Path(target)
    found = find_checkpoint(run_dir / "checkpoint")
    if found is None:
        raise ValueError(f"no checkpoint in {run_dir}")
    check_snapshot_target(run_dir, target, force)
    state = read_json_object(found / "state.json")
    check_state(state, found / "state.json")
    config = TrainConfig.from_dict(state["config"])
    config.final_eval_random = final_eval_random
    command = state["sessions"][-1].get("command", "") if state["sessions"] else ""
    trainer = Trainer(config, run_dir, command=command)
    trainer.session_start = time.monotonic()
    trainer.session_started = ""
    trainer.restore(truncate_history=False)
    trainer.elapsed_before -= time.monotonic() - trainer.session_start  # a snapshot adds no training time
    return trainer.finalize(target, keep_checkpoint=True, snapshot=True)


def check_snapshot_target(run_dir: Path, target: Path, force: bool) -> None:
    """``ValueError`` unless a snapshot may be written to ``target``: absent, an empty folder, an earlier
    snapshot, or (``force``) any folder that neither is nor holds the run."""
    if target.resolve() == run_dir.resolve():
        raise ValueError("export the snapshot to another directory than the run itself")
    if run_dir.resolve().is_relative_to(target.resolve()):
        raise ValueError(f"{target} holds the run {run_dir}; export the snapshot to another directory")
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is a file, not a folder to save the snapshot in")
    if force or not target.exists() or not any(target.iterdir()):
        return
    try:
        earlier = is_model_dir(target) and read_json_object(target / "training.json").get("snapshot_of_unfinished_run")
    except ValueError:
        earlier = False
    if not earlier:
        raise ValueError(f"{target} is not empty and not an earlier snapshot; pass --force (force=True) to replace it")


def seconds_per_step(config: TrainConfig, steps: int = 20) -> float:
    """Time ``steps`` training steps (after 3 warm-up steps) without touching the disk."""
    trainer = Trainer(config, Path(os.devnull), "benchmark")
    trainer.session_start = time.monotonic()
    trainer.session_started = ""
    for _ in range(3):
        trainer.train_step(log=False)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(log=False)
    return (time.perf_counter() - start) / steps


def tokens_per_sequence(config: TrainConfig) -> float:
    layout = config.model_config().layout
    if config.recipe == "icot":
        return layout.max_len
    return layout.prompt_len + layout.answer_len


__all__ = ["RECIPES", "TrainConfig", "export_snapshot", "running_sums_batch", "seconds_per_step", "train", "train_recipe_file"]
