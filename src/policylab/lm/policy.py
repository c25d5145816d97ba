"""Causal language-model policies behind one interface: a tiny GPT written here and any HF causal LM.

Both take a padded batch (`attention_mask` over every key so far, `position_ids` counted over real
tokens only, so left-padded prompts line up) and return logits and final hidden states; both keep
a KV cache for generation. `response_outputs` gives what every RL loss needs: per-token
log-probs, entropies and (on request) logits and hidden states of the response tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from policylab.core.config import Config, param
from policylab.core.errors import ConfigError, NonFiniteLossError


@dataclass
class StepOutput:
    logits: torch.Tensor
    """[B, T, V] (or [B, 1, V] with last_only)."""
    hidden: torch.Tensor | None
    """[B, T, D] final hidden states (after the last norm), when asked for."""
    cache: Any


@dataclass
class ResponseOutputs:
    logprobs: torch.Tensor
    """[B, R] log pi(token_t | context) of the response tokens."""
    entropy: torch.Tensor | None
    """[B, R] entropy of the predictive distribution at each response token."""
    logits: torch.Tensor | None = None
    """[B, R, V], when asked for."""
    hidden: torch.Tensor | None = None
    """[B, R, D] hidden state that predicted each response token, when asked for."""


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class CausalPolicy(nn.Module):
    """Shared interface; subclasses implement `step`, `new_cache`, `reorder_cache`."""

    max_length: int
    vocab_size: int

    def step(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
             cache: Any = None, last_only: bool = False, want_hidden: bool = False) -> StepOutput:
        raise NotImplementedError

    def new_cache(self, batch: int, max_len: int) -> Any:
        return None

    def reorder_cache(self, cache: Any, index: torch.Tensor) -> Any:
        raise NotImplementedError

    def response_outputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int,
                         temperature: float = 1.0, want_entropy: bool = True, want_logits: bool = False,
                         want_hidden: bool = False) -> ResponseOutputs:
        """Outputs for the tokens after column `prompt_len` of [left-padded prompt | response] rows."""
        if input_ids.shape[1] > self.max_length:
            raise ConfigError(f"sequence length {input_ids.shape[1]} exceeds the model's context of "
                              f"{self.max_length} tokens")
        out = self.step(input_ids, attention_mask, position_ids_from_mask(attention_mask), want_hidden=want_hidden)
        logits = out.logits[:, prompt_len - 1:-1].float()
        if temperature != 1.0:
            logits = logits / temperature
        logp_all = torch.log_softmax(logits, dim=-1)
        targets = input_ids[:, prompt_len:]
        logprobs = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1) if want_entropy else None
        hidden = out.hidden[:, prompt_len - 1:-1] if want_hidden else None
        return ResponseOutputs(logprobs, entropy, logits if want_logits else None, hidden)


# -- the tiny GPT --------------------------------------------------------------------------------

@dataclass(frozen=True)
class TinyGPTConfig(Config):
    vocab_size: int = param(98, gt=0)
    """Token ids 0..vocab_size-1 (the char tokenizer has 98)."""
    block_size: int = param(64, gt=0)
    """Context length: prompt plus response."""
    n_layer: int = param(4, gt=0)
    n_head: int = param(4, gt=0)
    d_model: int = param(128, gt=0)
    """Width; must be divisible by n_head."""

    def check(self) -> None:
        if self.d_model % self.n_head:
            raise ConfigError(f"TinyGPTConfig.d_model = {self.d_model} is not allowed: must be divisible by "
                              f"n_head = {self.n_head}")


class KVCache:
    """Preallocated keys and values [layer, B, H, max_len, head_dim]; `length` positions are filled.

    Writing a step's keys is a slice copy, not a concatenation, so a decode step costs the same
    at every length.
    """

    def __init__(self, layers: int, batch: int, heads: int, max_len: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device):
        shape = (layers, batch, heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's [B, H, T, D] keys and values after the filled part; return all so far."""
        end = self.length + k.shape[2]
        self.k[layer, :, :, self.length:end] = k
        self.v[layer, :, :, self.length:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def write_full(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like `write`, but return the whole buffers (for `buffer_attention` with a full-width mask)."""
        self.write(layer, k, v)
        return self.k[layer], self.v[layer]

    def reorder(self, index: torch.Tensor) -> KVCache:
        self.k = self.k.index_select(1, index)
        self.v = self.v.index_select(1, index)
        return self

    @property
    def max_len(self) -> int:
        return self.k.shape[3]


def attention_mask_for(attention_mask: torch.Tensor, past: int, T: int, width: int | None = None) -> torch.Tensor:
    """Boolean [B, 1, T, width] mask (width defaults to past + T): query i (absolute position
    past + i) sees the real keys j <= past + i, and always itself, so that rows of left padding
    are never fully masked (their outputs are ignored). Keys past the mask's end are hidden."""
    width = past + T if width is None else width
    keys = attention_mask[:, :width].bool()
    if keys.shape[1] < width:
        keys = F.pad(keys, (0, width - keys.shape[1]), value=False)
    rows = torch.arange(past, past + T, device=attention_mask.device)
    cols = torch.arange(width, device=attention_mask.device)
    causal = cols[None, :] <= rows[:, None]
    return ((causal[None] & keys[:, None, :]) | (cols[None, None, :] == rows[None, :, None]))[:, None]


def buffer_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                     scale: float) -> torch.Tensor:
    """Attention of q [B, H, T, D] over whole cache buffers k, v [B, H_kv, L, D] (mask [B, 1, T, L]).

    For decoding: plain matmuls read the preallocated buffers in place, where SDPA would first
    copy the strided slice of the filled part (measured: the largest cost of a decode step).
    Grouped-query attention folds the query heads of each key head into rows, as HF's repeat_kv
    pairs them (query head h uses key head h // groups).
    """
    B, H, T, D = q.shape
    kv_heads = k.shape[1]
    groups = H // kv_heads
    q = q.reshape(B, kv_heads, groups * T, D)
    if groups > 1:
        mask = mask.unsqueeze(2).expand(B, 1, groups, T, mask.shape[-1]).reshape(B, 1, groups * T, -1)
    scores = (q @ k.transpose(-1, -2)) * scale
    weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    return (weights @ v).reshape(B, H, T, D)


class Block(nn.Module):
    def __init__(self, cfg: TinyGPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(),
                                 nn.Linear(4 * cfg.d_model, cfg.d_model))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.n_head, D // self.n_head).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = cache.write(layer, k, v)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, D))
        return x + self.mlp(self.ln2(x))


class TinyGPT(CausalPolicy):
    """Pre-LN decoder with learned positions, tied input/output embeddings and a KV cache."""

    def __init__(self, cfg: TinyGPTConfig):
        super().__init__()
        self.cfg = cfg
        self.max_length, self.vocab_size = cfg.block_size, cfg.vocab_size
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.block_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.apply(self._init)
        for block in self.blocks:  # GPT-2's scaled init of the residual projections
            nn.init.normal_(block.proj.weight, std=0.02 / math.sqrt(2 * cfg.n_layer))
            nn.init.normal_(block.mlp[2].weight, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        cfg, weight = self.cfg, self.wte.weight
        return KVCache(cfg.n_layer, batch, cfg.n_head, max_len, cfg.d_model // cfg.n_head, weight.dtype,
                       weight.device)

    def reorder_cache(self, cache: KVCache, index: torch.Tensor) -> KVCache:
        return cache.reorder(index)

    def step(self, input_ids, attention_mask, position_ids, cache=None, last_only=False, want_hidden=False):
        B, T = input_ids.shape
        past = cache.length if cache is not None else 0
        if past + T > self.max_length:
            raise ConfigError(f"sequence length {past + T} exceeds the model's context of {self.max_length} tokens")
        mask = attention_mask_for(attention_mask, past, T)
        x = self.wte(input_ids) + self.wpe(position_ids)
        for layer, block in enumerate(self.blocks):
            x = block(x, mask, cache, layer)
        if cache is not None:
            cache.length = past + T
        if last_only:
            x = x[:, -1:]
        hidden = self.ln_f(x)
        logits = hidden @ self.wte.weight.t()
        return StepOutput(logits, hidden if want_hidden else None, cache)


# -- Hugging Face adapter ------------------------------------------------------------------------

FAST_DECODE = ("llama",)
"""HF model types whose cached decoding runs policylab's lean loop over the model's own modules."""


class HFPolicy(CausalPolicy):
    """Any `AutoModelForCausalLM`.

    Cached decoding of Llama-architecture models runs a lean loop over the model's own modules
    (norms, projections, rotary embedding, MLP) with policylab's preallocated KV cache and
    `buffer_attention`: HF's DynamicCache concatenates every layer's keys and values at every
    token, which on a small model costs as much as the matmuls. Prompt prefill, training
    forwards and other architectures use HF's forward (and DynamicCache). Both paths give the
    same tokens and log-probs (tested).
    """

    def __init__(self, model: nn.Module, fast_decode: bool | None = None):
        """fast_decode: None uses the lean loop on CPU only. On an H200 the two paths were within
        noise of each other (GRPO round of a 32M-parameter model: lean 0.88 and 0.62 s, HF 0.70 and
        0.67 s in two runs of `benchmarks/lm_gpu_check.py`), so HF's own path stays the default there."""
        super().__init__()
        self.model = model
        config = model.config
        self.vocab_size = int(config.vocab_size)
        self.max_length = int(getattr(config, "max_position_embeddings", None) or config.n_positions)
        self.fast_decode = fast_decode
        self.supports_lean = getattr(config, "model_type", "") in FAST_DECODE

    def _lean(self, device: torch.device) -> bool:
        if not self.supports_lean or self.fast_decode is False:
            return False
        return self.fast_decode is True or device.type == "cpu"

    @classmethod
    def from_pretrained(cls, path: str, **kwargs: Any) -> HFPolicy:
        from transformers import AutoModelForCausalLM

        return cls(AutoModelForCausalLM.from_pretrained(path, **kwargs))

    @classmethod
    def from_config(cls, config: Any, seed: int = 0) -> HFPolicy:
        from transformers import AutoModelForCausalLM

        torch.manual_seed(seed)
        return cls(AutoModelForCausalLM.from_config(config))

    def step(self, input_ids, attention_mask, position_ids, cache=None, last_only=False, want_hidden=False):
        if isinstance(cache, KVCache):
            return self._lean_step(input_ids, attention_mask, position_ids, cache, last_only, want_hidden)
        kwargs: dict[str, Any] = {}
        if last_only:
            kwargs["logits_to_keep"] = 1
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         cache=cache, use_cache=cache is not None,
                         output_hidden_states=want_hidden, **kwargs)
        hidden = out.hidden_states[-1] if want_hidden else None
        return StepOutput(out.logits, hidden, out.cache)

    def _lean_step(self, input_ids, attention_mask, position_ids, cache, last_only, want_hidden):
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        body = self.model.model
        B, T = input_ids.shape
        past = cache.length
        if past + T > cache.max_len:
            raise ConfigError(f"sequence length {past + T} exceeds the cache of {cache.max_len} positions")
        decode = T == 1  # one new token: attend over the whole buffer in place
        mask = attention_mask_for(attention_mask, past, T, cache.max_len if decode else None)
        x = body.embed_tokens(input_ids)
        cos, sin = body.rotary_emb(x, position_ids)
        for i, layer in enumerate(body.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).view(B, T, -1, attn.head_dim).transpose(1, 2)
            k = attn.k_proj(h).view(B, T, -1, attn.head_dim).transpose(1, 2)
            v = attn.v_proj(h).view(B, T, -1, attn.head_dim).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            if decode:
                k, v = cache.write_full(i, k, v)
            else:
                k, v = cache.write(i, k, v)
            y = buffer_attention(q, k, v, mask, attn.scaling)
            x = x + attn.o_proj(y.transpose(1, 2).reshape(B, T, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        cache.length = past + T
        if last_only:
            x = x[:, -1:]
        hidden = body.norm(x)
        return StepOutput(self.model.lm_head(hidden), hidden if want_hidden else None, cache)

    def new_cache(self, batch: int, max_len: int) -> Any:
        weight = self.model.get_input_embeddings().weight
        if self._lean(weight.device):
            cfg = self.model.config
            head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
            return KVCache(cfg.num_hidden_layers, batch, cfg.num_key_value_heads, max_len, head_dim, weight.dtype,
                           weight.device)
        from transformers import DynamicCache

        return DynamicCache()

    def reorder_cache(self, cache: Any, index: torch.Tensor) -> Any:
        if isinstance(cache, KVCache):
            return cache.reorder(index)
        cache.reorder_cache(index)
        return cache


def check_finite_logits(logits: torch.Tensor, where: str) -> None:
    if not torch.isfinite(logits).all():
        raise NonFiniteLossError(f"the policy produced non-finite logits during {where}; the model's weights "
                                 "have diverged (lower the learning rate or resume from an earlier checkpoint)")
