"""Training options (a dataclass), importable without torch so that the CLI starts quickly."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

from .task import MAX_DIGITS, MAX_PROBLEMS, MAX_SEED

MAX_THREADS = 1024
# Caps on the model's size and on a training step, checked before anything is built: beyond them a run
# would die deep inside torch (an allocation failure, or the kernel killing the process). They sit far
# above what this project trains (width 128-768, 2 layers, 4 heads, batch 256, a 66-token sequence:
# ~1 GB) and above GPT-2 XL (width 1,600, 48 layers, 25 heads). The memory cap bounds longmul.cost's
# estimate of a training step (weights, gradients, AdamW state and activations); a machine with less
# memory than a run needs still runs out of it.
MODEL_SIZE_CAPS = {"d_model": 8_192, "n_layers": 128, "n_heads": 128}
MAX_STEPS = 10**9  # about 30 years at one step a second
MAX_TRAINING_GIB = 256  # more than one accelerator holds (an H200: 141 GB)

if TYPE_CHECKING:
    from .model import ModelConfig

RECIPES = ("sft", "icot", "aux")
AUX_TARGETS = ("running_sum", "shuffled")
LR_SCHEDULES = ("constant", "cosine")
# Settings that may change when a run is resumed. Bookkeeping does not alter what is trained. The
# schedule settings change it from the resume on: the ICoT gate decides when later stages begin (each
# stage's record keeps the gate it passed), the tokens a gated stage removes apply to the stages after
# the resume (each stage records its removal count), the learning rate is logged on every train row,
# and a moving average of the weights (ema_decay) starts from the weights at the resume. A
# resume that changes any of them writes a "resume" row to the history naming the changes.
RESUME_BOOKKEEPING = {
    "max_steps",
    "stop_exact_match",
    "checkpoint_minutes",
    "threads",
    "final_eval_random",
    "device",
    "progress",
}
RESUME_SCHEDULE = {"icot_gate", "icot_tokens_per_stage", "lr", "ema_decay"}
RESUME_MUTABLE = RESUME_BOOKKEEPING | RESUME_SCHEDULE


class OptionError(ValueError):
    """A bad training option; ``option`` is its :class:`TrainConfig` field (``--option`` on the command line)."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


def _gib(size: int) -> str:
    """Bytes as GiB to two significant figures or more (384, 2.5, 0.0041)."""
    gib = size / 2**30
    return f"{gib:,.0f}" if gib >= 10 else f"{gib:.2g}"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_FIELD_TYPES = {
    "int": (int,),
    "float": (float,),
    "str": (str,),
    "bool": (bool,),
    "int | None": (int,),
    "float | None": (float,),
    "tuple[int, ...]": (tuple,),
}


@dataclass
class TrainConfig:
    recipe: str = "sft"
    preset: str = "cpu"
    d_model: int | None = None  # overrides of the preset
    n_layers: int | None = None
    n_heads: int | None = None
    dropout: float | None = None
    n_digits: int = 4
    seed: int = 0
    # optimisation (AdamW, linear warmup, then constant as in ICoT's constant lr, or cosine)
    batch_size: int = 256
    lr: float = 1e-3
    warmup_steps: int = 200
    # "cosine": after the warmup, lr * (1 + cos(pi * step / max_steps)) / 2, reaching 0 at max_steps
    # (extending max_steps on a resume stretches what is left of the decay)
    lr_schedule: str = "constant"
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.98
    grad_clip: float = 1.0
    # > 0: evaluate (validation, the ICoT gate, the saved model) an exponential moving average of the
    # weights, updated after every step with this decay; a constant learning rate leaves the raw
    # weights bouncing around a better average (0.999 averages over about the last 1,000 steps)
    ema_decay: float = 0.0
    max_steps: int = 20_000
    stop_exact_match: float = 0.0  # > 0: stop once validation exact match reaches it (ICoT: with no CoT left)
    # bookkeeping
    log_every: int = 100
    eval_every: int = 1_000
    n_val: int = 500
    checkpoint_minutes: float = 5.0
    final_eval_random: int = 10_000
    threads: int = 0  # 0: torch's default
    device: str = "auto"
    progress: bool = True
    # icot
    icot_tokens_per_stage: int = 8
    icot_stage_examples: int = 0  # > 0: fixed pace; 0: advance on icot_gate
    icot_gate: float = 0.9
    icot_gate_every: int = 150
    icot_gate_problems: int = 256
    icot_smoothing: float = 4.0  # λ of the removal smoothing; 0 turns it off
    icot_keep_position: bool = True
    icot_reset_optimizer: bool = True
    # aux
    aux_site: str = "blocks.1.hook_resid_mid"
    aux_heads: tuple[int, ...] = ()  # for attn.hook_z / attn.hook_result sites: heads to read
    aux_weight: float = 1.0
    aux_scale: float = 10.0
    aux_target: str = "running_sum"  # "shuffled": control with ĉ permuted across the batch

    def model_config(self) -> ModelConfig:
        from .model import model_config_from_preset

        return model_config_from_preset(
            self.preset,
            d_model=self.d_model,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            dropout=self.dropout,
            n_a=self.n_digits,
            n_b=self.n_digits,
        )

    def validate(self) -> None:
        """Check every option; an :class:`OptionError` (a ``ValueError``) names the option at fault."""
        self._check_types()
        if self.recipe not in RECIPES:
            raise OptionError("recipe", f"unknown recipe {self.recipe!r}; choose one of {list(RECIPES)}")
        if not 1 <= self.n_digits <= MAX_DIGITS:
            raise OptionError("n_digits", f"n_digits must be from 1 to {MAX_DIGITS}, got {self.n_digits}")
        if not 0 <= self.seed <= MAX_SEED:
            raise OptionError("seed", f"seed must be from 0 to {MAX_SEED}, got {self.seed}")
        for name in (f.name for f in fields(self)):
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                raise OptionError(name, f"{name} must be a finite number, got {value}")
        from .model import PRESETS, pick_device

        if self.preset not in PRESETS:
            raise OptionError("preset", f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        self._check_model_size()
        model_config = self.model_config()
        positive = (
            "batch_size",
            "max_steps",
            "log_every",
            "eval_every",
            "n_val",
            "icot_tokens_per_stage",
            "icot_gate_every",
            "icot_gate_problems",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise OptionError(name, f"{name} must be at least 1, got {getattr(self, name)}")
        for name, most in (
            ("batch_size", MAX_PROBLEMS),
            ("n_val", MAX_PROBLEMS),
            ("icot_gate_problems", MAX_PROBLEMS),
            ("max_steps", MAX_STEPS),
        ):
            if getattr(self, name) > most:
                raise OptionError(name, f"{name} must be at most {most:,}, got {getattr(self, name):,}")
        self._check_training_memory(model_config)
        if not 0 <= self.final_eval_random <= MAX_PROBLEMS:
            raise OptionError(
                "final_eval_random",
                f"final_eval_random must be from 0 to {MAX_PROBLEMS:,}, got {self.final_eval_random}",
            )
        if not 0 <= self.threads <= MAX_THREADS:
            raise OptionError(
                "threads", f"threads must be from 0 (torch's default) to {MAX_THREADS}, got {self.threads}"
            )
        for name in ("lr", "grad_clip"):
            if getattr(self, name) <= 0:
                raise OptionError(name, f"{name} must be positive, got {getattr(self, name)}")
        for name in ("warmup_steps", "weight_decay", "icot_stage_examples", "icot_smoothing"):
            if getattr(self, name) < 0:
                raise OptionError(name, f"{name} must be non-negative, got {getattr(self, name)}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise OptionError(name, f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise OptionError("ema_decay", f"ema_decay must be in [0, 1) (0: no moving average), got {self.ema_decay}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise OptionError(
                "lr_schedule", f"unknown lr_schedule {self.lr_schedule!r}; choose one of {list(LR_SCHEDULES)}"
            )
        try:
            pick_device(self.device)
        except ValueError as err:
            raise OptionError("device", str(err)) from None
        if self.recipe == "aux":
            from .hooks import hook_names

            names = hook_names(model_config.n_layers)
            if self.aux_site not in names or "pattern" in self.aux_site or self.aux_site == "logits":
                raise OptionError(
                    "aux_site",
                    f"aux_site {self.aux_site!r} is not an activation the probe can read; try one of {names[2:-2]}",
                )
            if self.aux_site.endswith(("hook_z", "hook_result")) and (
                not self.aux_heads or any(not 0 <= h < model_config.n_heads for h in self.aux_heads)
            ):
                raise OptionError(
                    "aux_heads", f"aux_site {self.aux_site} needs aux_heads, each in 0..{model_config.n_heads - 1}"
                )
            if self.aux_target not in AUX_TARGETS:
                raise OptionError(
                    "aux_target", f"unknown aux_target {self.aux_target!r}; choose one of {list(AUX_TARGETS)}"
                )
            if self.aux_scale <= 0:
                raise OptionError("aux_scale", "aux_scale must be positive")

    def _check_model_size(self) -> None:
        """The preset's overrides, each within its cap, and a width the heads divide (named by flag, where
        ModelConfig.validate would not name one)."""
        from .model import PRESETS

        for name, most in MODEL_SIZE_CAPS.items():
            value = getattr(self, name)
            if value is not None and not 1 <= value <= most:
                raise OptionError(name, f"{name} must be from 1 to {most:,}, got {value:,}")
        preset = PRESETS[self.preset]
        d_model, n_heads = self.d_model or preset.d_model, self.n_heads or preset.n_heads
        if d_model % n_heads:
            option = "n_heads" if self.n_heads is not None else "d_model"
            raise OptionError(option, f"d_model ({d_model}) is not divisible by n_heads ({n_heads})")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise OptionError("dropout", f"dropout must be in [0, 1), got {self.dropout}")

    def _check_training_memory(self, model_config: ModelConfig) -> None:
        """A training step's estimated memory within :data:`MAX_TRAINING_GIB` (any machine's limit)."""
        self.check_memory(model_config, MAX_TRAINING_GIB * 2**30, f"the cap of {MAX_TRAINING_GIB} GiB")

    def check_memory(self, model_config: ModelConfig, limit: int, limit_name: str) -> None:
        """``OptionError`` if a training step's estimated memory (:func:`longmul.cost.training_memory`) is
        over ``limit`` bytes (``limit_name`` says what that limit is): a model too large for it names
        d_model; one whose activations take it over names batch_size, with the batch that fits."""
        from .cost import training_memory

        need = training_memory(model_config, self.batch_size, model_config.layout.max_len, ema=self.ema_decay > 0)
        if need.state > limit:
            raise OptionError(
                "d_model",
                f"this model's weights, gradients and optimizer state alone need an estimated "
                f"{_gib(need.state)} GiB, over {limit_name}: lower d_model or n_layers",
            )
        if need.total > limit:
            fits = int((limit - need.state) / (need.activations / self.batch_size))
            raise OptionError(
                "batch_size",
                f"a training step at batch size {self.batch_size:,} needs an estimated {_gib(need.total)} GiB, "
                f"over {limit_name}, which allows this model a batch of at most about {fits:,}",
            )

    def _check_types(self) -> None:
        """Each option has its field's type (a config read from a file may hold anything)."""
        for f in fields(self):
            value, kinds = getattr(self, f.name), _FIELD_TYPES[f.type]
            if f.name == "aux_heads":
                ok = isinstance(value, tuple) and all(_is_int(h) for h in value)
            elif value is None:
                ok = "None" in f.type
            else:
                ok = (
                    (int in kinds and _is_int(value))
                    or (float in kinds and (_is_int(value) or isinstance(value, float)))
                    or (str in kinds and isinstance(value, str))
                    or (bool in kinds and isinstance(value, bool))
                )
            if not ok:
                raise OptionError(f.name, f"{f.name} must be of type {f.type}, got {value!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["aux_heads"] = list(self.aux_heads)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        if not isinstance(d, dict):
            raise ValueError(f"training options must be a JSON object, got {type(d).__name__}")  # noqa: TRY004 (one error type for bad input)
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}")
        d = dict(d)
        if isinstance(d.get("aux_heads"), list):
            d["aux_heads"] = tuple(d["aux_heads"])  # JSON has no tuples; validate() checks the rest
        return cls(**d)
