"""Attention knockouts recomputed from a clean pass: only what a knockout can change is computed again.

A knockout of head ``h`` at layer ``L`` from query position ``q`` (:class:`longmul.hooks.Knockout`)
changes nothing in the layers below ``L``, and, attention being causal, nothing at positions before
``q`` in any layer. In layer ``L`` itself only row ``q`` changes: the other rows read the same residual
stream as in the clean pass. From layer ``L + 1`` on, every position from ``q`` on may change, because
each of them attends to position ``q``. So, given the clean residual stream entering every layer
(``blocks.{l}.hook_resid_pre``), a knockout's logits at the positions that matter are

1. row ``q`` of layer ``L``: its query against the clean keys and values of positions ``0 … q``, the
   knocked-out keys of head ``h`` masked as the hooked forward masks them (score set to the dtype's
   minimum, the row renormalised by the softmax), then the output projection and the MLP;
2. rows ``q … last wanted position`` of each later layer: their new queries, keys and values, with the
   clean keys and values of positions before ``q``;
3. the final layer norm and unembedding at the wanted positions from ``q`` on. Positions before ``q``
   keep the clean logits, which are exactly the knocked-out ones there.

Knockouts that share a layer and a query position are stacked along a leading axis and computed in one
pass, in chunks of bounded memory. The blocks' own submodules (layer norms, projections, MLP) do the
work; only the attention core (scores, mask, softmax, weighted sum) is written out here, as
``transformers``' eager GPT-2 attention computes it. The result equals a whole hooked forward pass with
the knockout (:func:`longmul.hooks.run_with_cache`) up to float rounding (tests/test_knockout_cache.py
checks 1e-5 on the logits of every shipped model).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from transformers import GPT2LMHeadModel

from ..hooks import Knockout

# Bytes of intermediate activations one chunk of stacked knockouts may take: small enough for a laptop,
# large enough that each chunk's matrix products are big.
CHUNK_BYTES = 64 * 2**20


def resid_pre_names(model: GPT2LMHeadModel) -> list[str]:
    """The activations :func:`knocked_logits` needs from the clean pass: every layer's input."""
    return [f"blocks.{layer}.hook_resid_pre" for layer in range(model.config.n_layer)]


def _keys_of(knockout: Knockout) -> list[int]:
    keys = knockout.key
    return [int(keys)] if isinstance(keys, numbers.Integral) else [int(k) for k in keys]


def _check(model: GPT2LMHeadModel, knockouts: Sequence[Knockout], T: int) -> None:
    """One query position per knockout, a non-empty set of keys at or before it, a layer and head the
    model has, and at least one key left for the softmax to renormalise over."""
    n_layers, n_heads = model.config.n_layer, model.config.n_head
    for k in knockouts:
        if not isinstance(k.query, numbers.Integral) or isinstance(k.query, bool):
            raise TypeError(f"{k}: the cached knockout takes one query position (an int)")
        if not (0 <= k.layer < n_layers and 0 <= k.head < n_heads):
            raise ValueError(f"knockout {k} names a layer/head the model does not have")
        keys = _keys_of(k)
        if not keys or not all(0 <= key <= k.query < T for key in keys):
            raise ValueError(f"{k}: need a non-empty set of keys with 0 <= key <= query < {T}")
        if len(set(keys)) == k.query + 1:
            raise ValueError(f"{k}: removing every key leaves the attention row with nothing to renormalise over")


def _check_model(model: GPT2LMHeadModel) -> None:
    config = model.config
    if config.model_type != "gpt2" or getattr(config, "add_cross_attention", False):
        raise ValueError("cached knockouts support GPT-2 decoder models only")
    if getattr(config, "reorder_and_upcast_attn", False):
        raise ValueError("cached knockouts do not support reorder_and_upcast_attn")


def _split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(..., T, d) -> (..., H, T, d_head)."""
    return x.unflatten(-1, (n_heads, -1)).transpose(-3, -2)


def _qkv(block, x: torch.Tensor, n_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys and values of the residual stream ``x`` (..., T, d): each (..., H, T, d_head)."""
    d = x.shape[-1]
    qkv = block.attn.c_attn(block.ln_1(x))  # (..., T, 3d)
    q, k, v = qkv.split(d, dim=-1)
    return _split_heads(q, n_heads), _split_heads(k, n_heads), _split_heads(v, n_heads)


def _scores(block, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Scaled attention scores (..., H, T, T) of queries and keys (..., H, T, d_head)."""
    return torch.matmul(q, k.transpose(-1, -2)).mul_(block.attn.scaling)  # in place: the product is new


def _softmax(scores: torch.Tensor, blocked: torch.Tensor, in_place: bool = False) -> torch.Tensor:
    """Attention weights: blocked scores (``blocked`` True, broadcast) become the dtype's minimum, as the
    hooked forward's additive mask makes them, so the softmax gives them exactly zero weight. ``in_place``
    masks ``scores`` itself (a tensor nothing else reads) instead of a copy."""
    low = torch.finfo(scores.dtype).min
    masked = scores.masked_fill_(blocked, low) if in_place else scores.masked_fill(blocked, low)
    return torch.softmax(masked, dim=-1)


def _project(block, z: torch.Tensor) -> torch.Tensor:
    """Per-head outputs (..., H, T, d_head) -> attention output after the projection (..., T, d)."""
    return block.attn.c_proj(z.transpose(-3, -2).flatten(-2).contiguous())


def _finish(block, x: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
    """The rest of the block: residual, MLP, residual. (..., T, d) -> (..., T, d)."""
    mid = attn_out + x
    return mid + block.mlp(block.ln_2(mid))


class _CleanLayers:
    """Per layer, from the clean residual stream: queries, keys, values and per-head outputs z
    (B, H, T, d_head), scores and weights (B, H, T, T); computed once, when first needed."""

    def __init__(self, model: GPT2LMHeadModel, resid_pre: Sequence[torch.Tensor]):
        self.blocks, self.resid_pre, self.n_heads = model.transformer.h, resid_pre, model.config.n_head
        self.layers: dict[int, dict[str, torch.Tensor]] = {}

    def __call__(self, layer: int) -> dict[str, torch.Tensor]:
        if layer not in self.layers:
            block = self.blocks[layer]
            q, k, v = _qkv(block, self.resid_pre[layer], self.n_heads)  # (B, H, T, d_head) each
            scores = _scores(block, q, k)  # (B, H, T, T)
            T = scores.shape[-1]
            future = torch.ones(T, T, dtype=torch.bool, device=scores.device).triu(1)  # (T, T)
            weights = _softmax(scores, future)
            z = torch.matmul(weights, v)  # (B, H, T, d_head)
            self.layers[layer] = {
                "q": q,
                "k": k,
                "v": v,
                "z": z,
                "scores": scores,
                "weights": weights,
                "future": future,
            }
        return self.layers[layer]


def _knock_group(
    model: GPT2LMHeadModel,
    resid_pre: Sequence[torch.Tensor],
    clean: _CleanLayers,
    layer: int,
    query: int,
    knockouts: Sequence[Knockout],
    row_end: int,
) -> torch.Tensor:
    """Residual streams leaving the last layer at positions ``query … row_end - 1`` (only ``query`` when
    ``layer`` is the last) for each of ``knockouts`` (all at ``layer``, ``query``): (m, B, R, d).

    Each attention product that has a new row runs over all T queries and keys, as in the whole forward
    pass (for the knocked-out head alone at ``layer``): a matrix product of one row rounds differently
    from the same row inside a T-row product, and with the same shapes the result equals the hooked
    forward's bit for bit. The projections, layer norms and MLP, which treat rows independently, run on
    the new rows only."""
    blocks, n_heads = model.transformer.h, model.config.n_head
    m = len(knockouts)
    block, c = blocks[layer], clean(layer)
    B, H, T, d_head = c["z"].shape
    # Layer `layer`: only row `query` of head `knockout.head` changes: its clean scores with the
    # knocked-out keys blocked. The other heads' outputs there are the clean ones.
    heads = torch.tensor([k.head for k in knockouts], device=c["z"].device)  # (m,)
    blocked = c["future"][query].expand(m, T).clone()  # (m, T)
    for i, knockout in enumerate(knockouts):
        blocked[i, _keys_of(knockout)] = True
    row = _softmax(c["scores"][:, heads, query].transpose(0, 1), blocked[:, None])  # (m, B, T)
    weights = c["weights"][:, heads].transpose(0, 1)  # (m, B, T, T), a copy (indexing by a tensor)
    weights[:, :, query] = row
    z_head = torch.matmul(weights, c["v"][:, heads].transpose(0, 1))[:, :, query]  # (m, B, d_head)
    z = c["z"][:, :, query : query + 1].expand(m, B, H, 1, d_head).clone()  # (m, B, H, 1, d_head)
    z[torch.arange(m), :, heads, 0] = z_head
    x = resid_pre[layer][:, query : query + 1]  # (B, 1, d)
    rows = _finish(block, x, _project(block, z))  # (m, B, 1, d)
    if layer + 1 == len(blocks):
        return rows
    # Later layers: row `query` is new; the rows after it still hold the clean stream of layer `layer`.
    later = resid_pre[layer + 1][:, query + 1 : row_end]  # (B, R-1, d)
    rows = torch.cat([rows, later.expand(m, *later.shape)], dim=2)  # (m, B, R, d)
    for later_layer in range(layer + 1, len(blocks)):
        block, c = blocks[later_layer], clean(later_layer)
        q_new, k_new, v_new = _qkv(block, rows, n_heads)  # (m, B, H, R, d_head)

        # Clean rows before `query` and from `row_end` on (those are never read: causal, and no wanted
        # position lies there), the new rows between: (m, B, H, T, d_head) each.
        q_all, k_all, v_all = (
            torch.cat([old[..., :query, :], new, old[..., row_end:, :]], dim=-2)
            for old, new in ((c[n].expand(m, -1, -1, -1, -1), x) for n, x in (("q", q_new), ("k", k_new), ("v", v_new)))
        )
        weights = _softmax(_scores(block, q_all, k_all), c["future"], in_place=True)  # (m, B, H, T, T)
        z = torch.matmul(weights, v_all)[..., query:row_end, :]  # (m, B, H, R, d_head)
        rows = _finish(block, rows, _project(block, z))  # (m, B, R, d)
    return rows


@torch.no_grad()
def knocked_logits(
    model: GPT2LMHeadModel,
    resid_pre: Sequence[torch.Tensor],
    knockouts: Sequence[Knockout],
    positions: Sequence[int],
    clean_logits: torch.Tensor,
) -> torch.Tensor:
    """Logits at ``positions`` with each knockout applied on its own: (E, B, P, V), E = len(knockouts).

    ``resid_pre``: the clean pass's ``blocks.{l}.hook_resid_pre`` for every layer, each (B, T, d), from
    :func:`longmul.hooks.run_with_cache` on the same sequences (no padding). ``clean_logits`` (B, P, V):
    that pass's logits at ``positions``, returned unchanged where a knockout cannot reach. The model runs
    in eval mode (no dropout) and is left in the mode it was in."""
    _check_model(model)
    n_layers = model.config.n_layer
    if len(resid_pre) != n_layers:
        raise ValueError(f"need the residual stream entering each of the {n_layers} layers, got {len(resid_pre)}")
    B, T, d = resid_pre[0].shape
    positions = [int(p) for p in positions]
    if not all(0 <= p < T for p in positions):
        raise ValueError(f"positions must be in 0..{T - 1}, got {positions}")
    if tuple(clean_logits.shape[:2]) != (B, len(positions)):
        raise ValueError(f"clean_logits must be (B={B}, P={len(positions)}, V), got {tuple(clean_logits.shape)}")
    knockouts = list(knockouts)
    _check(model, knockouts, T)
    out = clean_logits.unsqueeze(0).repeat(len(knockouts), 1, 1, 1)  # (E, B, P, V)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, k in enumerate(knockouts):
        groups.setdefault((k.layer, int(k.query)), []).append(i)
    was_training = model.training
    model.eval()
    try:
        clean = _CleanLayers(model, resid_pre)
        n_inner = model.transformer.h[0].mlp.c_fc.nf
        for (layer, query), members in groups.items():
            last = layer + 1 == n_layers
            wanted = [j for j, p in enumerate(positions) if (p == query if last else p >= query)]
            if not wanted:
                continue  # nothing it can change is asked for
            row_end = query + 1 if last else max(positions[j] for j in wanted) + 1
            R = row_end - query
            # per stacked knockout, float32: the new rows' MLP hidden and q/k/v/out, the spliced
            # q/k/v, and two (H, T, T) score/weight matrices of the later layers
            per_knockout = 4 * B * (R * (n_inner + 5 * d) + 3 * T * d + 2 * model.config.n_head * T * T)
            step = max(1, CHUNK_BYTES // per_knockout)
            rel = torch.tensor([positions[j] - query for j in wanted], device=resid_pre[0].device)  # (W,)
            for start in range(0, len(members), step):
                chunk = members[start : start + step]
                rows = _knock_group(model, resid_pre, clean, layer, query, [knockouts[i] for i in chunk], row_end)
                final = model.lm_head(model.transformer.ln_f(rows[:, :, rel]))  # (m, B, W, V)
                out[torch.tensor(chunk)[:, None], :, torch.tensor(wanted)[None, :]] = final.transpose(1, 2).to(
                    out.dtype
                )
    finally:
        model.train(was_training)
    return out
