"""Named activations of a ``GPT2LMHeadModel``, TransformerLens style, plus attention knockout.

Hook names and shapes (B batch, T positions, H heads, d_head = d_model / H, V vocabulary):

============================================  ======================  =====================================
name                                          shape                   what it is
============================================  ======================  =====================================
``hook_embed``                                (B, T, d_model)         token embeddings
``hook_pos_embed``                            (B, T, d_model)         position embeddings
``blocks.{l}.hook_resid_pre``                 (B, T, d_model)         residual stream entering block l
``blocks.{l}.attn.hook_pattern``              (B, H, T_query, T_key)  attention weights after softmax
``blocks.{l}.attn.hook_z``                    (B, T, H, d_head)       per-head outputs before the output projection
``blocks.{l}.attn.hook_result``               (B, T, H, d_model)      per-head outputs after the projection (no bias)
``blocks.{l}.hook_attn_out``                  (B, T, d_model)         attention output (sum of results + bias)
``blocks.{l}.hook_resid_mid``                 (B, T, d_model)         resid_pre + attn_out
``blocks.{l}.hook_mlp_out``                   (B, T, d_model)         MLP output
``blocks.{l}.hook_resid_post``                (B, T, d_model)         resid_mid + mlp_out
``ln_final.hook_normalized``                  (B, T, d_model)         final layer norm output (what unembedding reads)
``logits``                                    (B, T, V)               next-token logits
============================================  ======================  =====================================

Activations keep their autograd graph unless ``detach=True``: the auxiliary loss trains through them.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch
from transformers import GPT2LMHeadModel

BLOCK_HOOKS = (
    "hook_resid_pre",
    "attn.hook_pattern",
    "attn.hook_z",
    "attn.hook_result",
    "hook_attn_out",
    "hook_resid_mid",
    "hook_mlp_out",
    "hook_resid_post",
)


def hook_names(n_layers: int) -> list[str]:
    """Every activation name, in forward order."""
    names = ["hook_embed", "hook_pos_embed"]
    for layer in range(n_layers):
        names += [f"blocks.{layer}.{h}" for h in BLOCK_HOOKS]
    return names + ["ln_final.hook_normalized", "logits"]


@dataclass(frozen=True)
class Knockout:
    """Remove head ``head`` of layer ``layer``'s attention from query position(s) to key position(s):
    the edge's weight is set to zero and the row renormalised (done by masking its score to -inf)."""

    layer: int
    head: int
    query: int | Iterable[int]
    key: int | Iterable[int]


@dataclass
class ActivationCache:
    """A dict of named activations with a few conveniences (``cache["blocks.0.hook_resid_post"]``)."""

    store: dict[str, torch.Tensor] = field(default_factory=dict)

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.store:
            raise KeyError(f"activation {name!r} was not cached; cached: {sorted(self.store)}")
        return self.store[name]

    def __contains__(self, name: str) -> bool:
        return name in self.store

    def keys(self) -> list[str]:
        return list(self.store)

    def __len__(self) -> int:
        return len(self.store)


def _as_list(x: int | Iterable[int]) -> list[int]:
    return [int(x)] if isinstance(x, numbers.Integral) else [int(v) for v in x]


def _knockout_mask(knockouts: list[Knockout], layer: int, n_heads: int, T: int, device) -> torch.Tensor | None:
    """(1, H, T, T) boolean mask of the attention edges removed in ``layer``."""
    mine = [k for k in knockouts if k.layer == layer]
    if not mine:
        return None
    mask = torch.zeros(1, n_heads, T, T, dtype=torch.bool, device=device)
    for k in mine:
        for q in _as_list(k.query):
            for key in _as_list(k.key):
                mask[0, k.head, q, key] = True
    return mask


@contextmanager
def capture(
    model: GPT2LMHeadModel,
    names: Iterable[str] | None = None,
    knockouts: Iterable[Knockout] = (),
    detach: bool = False,
) -> Iterator[ActivationCache]:
    """Within the block, every forward pass of ``model`` records the named activations (all if
    ``names`` is None) into the yielded cache and applies the attention knockouts."""
    if model.config._attn_implementation != "eager" and names is not None and any("pattern" in n for n in names):
        raise ValueError("attention patterns need attn_implementation='eager' (sdpa returns none)")
    n_layers, n_heads = model.config.n_layer, model.config.n_head
    d_head = model.config.n_embd // n_heads
    wanted = set(hook_names(n_layers) if names is None else names)
    unknown = wanted - set(hook_names(n_layers))
    if unknown:
        raise ValueError(f"unknown hook names {sorted(unknown)}; see longmul.hooks.hook_names()")
    knockouts = list(knockouts)
    for k in knockouts:
        if not (0 <= k.layer < n_layers and 0 <= k.head < n_heads):
            raise ValueError(f"knockout {k} names a layer/head the model does not have")
    cache = ActivationCache()

    def keep(name: str, tensor: torch.Tensor) -> None:
        if name in wanted:
            cache.store[name] = tensor.detach() if detach else tensor

    transformer = model.transformer
    with ExitStack() as stack:

        def register(module: torch.nn.Module, kind: str, fn, **kw) -> None:
            register_fn = getattr(module, f"register_forward_{kind}")
            stack.callback(register_fn(fn, **kw).remove)

        register(transformer.wte, "hook", lambda m, i, o: keep("hook_embed", o))
        register(transformer.wpe, "hook", lambda m, i, o: keep("hook_pos_embed", o))
        for layer, block in enumerate(transformer.h):
            prefix = f"blocks.{layer}"

            def block_pre(m, args, kwargs, prefix=prefix):
                hidden = args[0] if args else kwargs["hidden_states"]
                keep(f"{prefix}.hook_resid_pre", hidden)

            def block_post(m, args, kwargs, output, prefix=prefix):
                keep(f"{prefix}.hook_resid_post", output)
                if f"{prefix}.hook_resid_mid" in wanted:
                    resid_pre = args[0] if args else kwargs["hidden_states"]
                    keep(f"{prefix}.hook_resid_mid", resid_pre + cache.store.pop(f"{prefix}._attn_out_tmp"))

            def attn_pre(m, args, kwargs, layer=layer):
                mask = _knockout_mask(knockouts, layer, n_heads, (args[0] if args else kwargs["hidden_states"]).shape[1], m.c_proj.weight.device)
                if mask is None:
                    return None
                T = mask.shape[-1]
                base = kwargs.get("attention_mask")
                causal = torch.ones(T, T, dtype=torch.bool, device=mask.device).tril()
                blocked = mask | ~causal
                if blocked.all(-1).any():  # softmax over nothing but blocked keys would read the future
                    head, query = (int(i) for i in blocked.all(-1).nonzero()[0, 1:])
                    raise ValueError(
                        f"a knockout removes every key that position {query} may attend to (layer {layer}, head "
                        f"{head}): nothing is left to renormalise over"
                    )
                neg = torch.finfo(m.c_proj.weight.dtype).min
                if base is None:
                    new = torch.zeros(1, 1, T, T, dtype=m.c_proj.weight.dtype, device=mask.device)
                elif base.dtype == torch.bool:  # True = may attend
                    new = torch.where(base, 0.0, neg).to(m.c_proj.weight.dtype)
                else:
                    new = base
                kwargs["attention_mask"] = new.masked_fill(blocked, neg)  # (B, H, T, T)
                return args, kwargs

            def attn_post(m, args, kwargs, output, prefix=prefix):
                attn_out, pattern = output[0], output[1]
                keep(f"{prefix}.hook_attn_out", attn_out)
                if f"{prefix}.hook_resid_mid" in wanted:
                    cache.store[f"{prefix}._attn_out_tmp"] = attn_out
                if pattern is not None:
                    keep(f"{prefix}.attn.hook_pattern", pattern)

            def proj_pre(m, args, prefix=prefix):
                z = args[0]  # (B, T, d_model): heads concatenated
                B, T, _ = z.shape
                z = z.view(B, T, n_heads, d_head)  # (B, T, H, d_head)
                keep(f"{prefix}.attn.hook_z", z)
                if f"{prefix}.attn.hook_result" in wanted:
                    w_o = m.weight.view(n_heads, d_head, -1)  # (H, d_head, d_model); Conv1D stores (in, out)
                    keep(f"{prefix}.attn.hook_result", torch.einsum("bthd,hdm->bthm", z, w_o))

            register(block, "pre_hook", block_pre, with_kwargs=True)
            register(block, "hook", block_post, with_kwargs=True)
            register(block.attn, "pre_hook", attn_pre, with_kwargs=True)
            register(block.attn, "hook", attn_post, with_kwargs=True)
            register(block.attn.c_proj, "pre_hook", proj_pre)
            register(block.mlp, "hook", lambda m, i, o, prefix=prefix: keep(f"{prefix}.hook_mlp_out", o))
        register(transformer.ln_f, "hook", lambda m, i, o: keep("ln_final.hook_normalized", o))
        register(model.lm_head, "hook", lambda m, i, o: keep("logits", o))
        yield cache


def run_with_cache(
    model: GPT2LMHeadModel,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    names: Iterable[str] | None = None,
    knockouts: Iterable[Knockout] = (),
) -> tuple[torch.Tensor, ActivationCache]:
    """One forward pass without gradients; returns logits (B, T, V) and the cache (detached)."""
    if attention_mask is None:
        # Always pass a mask: with position_ids and no mask, transformers guesses "packed sequences"
        # from jumps in the position ids, which ICoT's kept positions have.
        attention_mask = torch.ones_like(input_ids)
    with torch.no_grad(), capture(model, names, knockouts, detach=True) as cache:
        logits = model(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask).logits
    return logits, cache
