"""Fused attention for every family: transformers' SDPA where it has one, and a WavLM attention
that computes the same gated relative-position bias and calls ``scaled_dot_product_attention``.

transformers' WavLM attention calls ``F.multi_head_attention_forward`` with ``need_weights=True``
(it returns averaged attention weights that nothing here reads), which forces the unfused path
and, on the CPU in bf16, a weight copy per frame for its (T, B, E) input. :func:`wavlm_sdpa`
swaps in :func:`_wavlm_forward`: the same projections, the same gate
``a * (b * const - 1) + 2`` on the same bucketed position bias, the padded keys masked with
``-inf`` as ``key_padding_mask`` does, then SDPA. The position bias passed from layer to layer is
kept as (heads, T, T) instead of transformers' per-item copy (batch x heads, T, T); only WavLM's
own layers read it. Proven equal to the transformers forward in fp32 on padded batches
(``tests/extract/test_attention.py``).
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F


def use_sdpa(model: Any) -> str:
    """Switch a transformers model to ``attn_implementation="sdpa"`` when its class supports it;
    returns the implementation in effect (WavLM and SEW-D stay ``"eager"`` in transformers)."""
    cfg = getattr(model, "config", None)
    current = getattr(cfg, "_attn_implementation", None) or "eager"
    if getattr(model, "_supports_sdpa", False) and current != "sdpa":
        model.set_attn_implementation("sdpa")
        current = "sdpa"
    return str(current)


def _wavlm_gate(m: Any, h: torch.Tensor) -> torch.Tensor:
    """(B, H, T, 1) gate of the relative position bias, as transformers computes it."""
    b, t, _ = h.shape
    g = h.view(b, t, m.num_heads, -1).permute(0, 2, 1, 3)
    proj = m.gru_rel_pos_linear(g).view(b, m.num_heads, t, 2, 4).sum(-1)
    gate_a, gate_b = torch.sigmoid(proj).chunk(2, dim=-1)
    return gate_a * (gate_b * m.gru_rel_pos_const - 1.0) + 2.0


def _wavlm_forward(
    self: Any,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    position_bias: torch.Tensor | None = None,
    index: int = 0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None, torch.Tensor]:
    """``WavLMAttention.forward`` through ``scaled_dot_product_attention``; returns (output,
    None, position bias of shape (heads, T, T)) like the original's (output, weights, bias)."""
    b, t, e = hidden_states.shape
    if position_bias is None:
        position_bias = self.compute_bias(t, t)  # (H, T, T)
    bias = _wavlm_gate(self, hidden_states) * position_bias.unsqueeze(0)  # (B, H, T, T)
    if attention_mask is not None:
        bias = bias.masked_fill(attention_mask.ne(1)[:, None, None, :], float("-inf"))

    def heads(lin: torch.nn.Linear) -> torch.Tensor:
        return lin(hidden_states).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    q, k, v = heads(self.q_proj), heads(self.k_proj), heads(self.v_proj)
    drop = self.dropout if self.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=drop)
    return self.out_proj(out.transpose(1, 2).reshape(b, t, e)), None, position_bias


def _flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, score_mod: Any) -> torch.Tensor:
    """FlexAttention: compiled (fused, dynamic shapes) on CUDA, the reference loop elsewhere."""
    import warnings

    from torch.nn.attention.flex_attention import flex_attention

    fn: Any = flex_attention
    if q.device.type == "cuda":
        if "cuda" not in _COMPILED:
            _COMPILED["cuda"] = torch.compile(flex_attention, dynamic=True)
        fn = _COMPILED["cuda"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile")
        return fn(q, k, v, score_mod=score_mod)  # type: ignore[no-any-return]


_COMPILED: dict[str, Any] = {}


def _wavlm_flex_forward(
    self: Any,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    position_bias: torch.Tensor | None = None,
    index: int = 0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None, torch.Tensor]:
    """``WavLMAttention.forward`` through FlexAttention with the gated bias as a ``score_mod``:
    no (B, H, T, T) tensor is built. The bias passed on is the (2T - 1, H) table of relative
    distances -(T-1)..T-1."""
    b, t, e = hidden_states.shape
    if position_bias is None:
        rel = torch.arange(1 - t, t, device=hidden_states.device)
        position_bias = self.rel_attn_embed(self._relative_positions_bucket(rel))  # (2T-1, H)
    table = position_bias
    gate = _wavlm_gate(self, hidden_states)[..., 0].to(table.dtype)  # (B, H, T)
    pad = None if attention_mask is None else attention_mask.ne(1)  # (B, T) keys to mask

    def score_mod(score: Any, bi: Any, hi: Any, qi: Any, ki: Any) -> Any:
        s = score + gate[bi, hi, qi] * table[ki - qi + t - 1, hi]
        return s if pad is None else torch.where(pad[bi, ki], float("-inf"), s)

    def heads(lin: torch.nn.Linear) -> torch.Tensor:
        return lin(hidden_states).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    out = _flex(heads(self.q_proj), heads(self.k_proj), heads(self.v_proj), score_mod)
    return self.out_proj(out.transpose(1, 2).reshape(b, t, e)), None, position_bias


def wavlm_sdpa(model: torch.nn.Module, flex: bool = False) -> int:
    """Give every ``WavLMAttention`` of ``model`` the SDPA forward (``flex``: the FlexAttention
    one, not the default: its speed on a GPU is not measured yet); returns how many."""
    forward = _wavlm_flex_forward if flex else _wavlm_forward
    n = 0
    for m in model.modules():
        if type(m).__name__ == "WavLMAttention":
            m.forward = types.MethodType(forward, m)  # type: ignore[method-assign]
            n += 1
    return n
