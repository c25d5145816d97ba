"""Batched generation with a KV cache: sampling (temperature, top-p), greedy and beam search.

Prompts are left-padded so that every row's next token is at the same column; finished rows
emit PAD (masked out) until every row has produced EOS or `max_new_tokens` is reached.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policylab.core.config import Config, param
from policylab.core.errors import ConfigError
from policylab.lm.policy import CausalPolicy, check_finite_logits


@dataclass(frozen=True)
class SamplingConfig(Config):
    max_new_tokens: int = param(16, gt=0)
    temperature: float = param(1.0, gt=0)
    top_p: float = param(1.0, gt=0, le=1)
    greedy: bool = False


@dataclass
class Generation:
    input_ids: torch.Tensor
    """[B, P + R]: left-padded prompts, then responses right-padded with PAD."""
    attention_mask: torch.Tensor
    """[B, P + R] 1 on real tokens (prompt and response, EOS included)."""
    prompt_len: int
    """P: the padded prompt width; responses start at this column."""
    response_mask: torch.Tensor
    """[B, R] float, 1 on generated tokens up to and including EOS."""
    logprobs: torch.Tensor
    """[B, R] behaviour log-probs of the generated tokens under the temperature-scaled policy."""
    truncated: torch.Tensor
    """[B] bool: no EOS within max_new_tokens."""

    @property
    def responses(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_len:]

    @property
    def lengths(self) -> torch.Tensor:
        return self.response_mask.sum(-1)


def left_pad(prompts: list[list[int]], pad_id: int, device: torch.device | None = None):
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ConfigError("generation needs at least one prompt, each of at least one token")
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[row, width - len(p):] = 1
    return ids.to(device), mask.to(device)


def _check_room(policy: CausalPolicy, prompt_len: int, max_new: int) -> None:
    if prompt_len + max_new > policy.max_length:
        raise ConfigError(f"prompt of {prompt_len} tokens + max_new_tokens = {max_new} exceeds the model's context "
                          f"of {policy.max_length} tokens; shorten the prompt or lower max_new_tokens")


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches top_p (always at least one)."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    drop = probs.cumsum(-1) - probs > top_p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


@torch.no_grad()
def generate(policy: CausalPolicy, prompts: list[list[int]], cfg: SamplingConfig, eos_id: int, pad_id: int,
             generator: torch.Generator | None = None, use_cache: bool = True) -> Generation:
    """Sample up to max_new_tokens per prompt; `use_cache=False` recomputes the whole prefix each step
    (the same tokens and log-probs, for measuring what the cache saves)."""
    device = next(policy.parameters()).device
    ids, mask = left_pad(prompts, pad_id, device)
    B, P = ids.shape
    _check_room(policy, P, cfg.max_new_tokens)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = policy.new_cache(B, P + cfg.max_new_tokens) if use_cache else None
    out = policy.step(ids, mask, positions, cache=cache, last_only=True)
    next_pos = positions[:, -1:] + 1
    tokens, logps, alive_cols = [], [], []
    alive = torch.ones(B, dtype=torch.bool, device=device)
    masks = [mask]
    for _ in range(cfg.max_new_tokens):
        logits = out.logits[:, -1].float()
        check_finite_logits(logits, "generation")
        if cfg.greedy:
            token = logits.argmax(-1)
            logp = torch.log_softmax(logits, -1).gather(-1, token[:, None]).squeeze(-1)
        else:
            scaled = logits / cfg.temperature
            sample_from = top_p_filter(scaled, cfg.top_p) if cfg.top_p < 1.0 else scaled
            token = torch.multinomial(sample_from.softmax(-1), 1, generator=generator).squeeze(-1)
            logp = torch.log_softmax(scaled, -1).gather(-1, token[:, None]).squeeze(-1)
        token = torch.where(alive, token, torch.full_like(token, pad_id))
        tokens.append(token)
        logps.append(torch.where(alive, logp, torch.zeros_like(logp)))
        alive_cols.append(alive)
        alive = alive & (token != eos_id)
        step_mask = alive_cols[-1].long()[:, None]
        masks.append(step_mask)
        if not alive.any():
            break
        if use_cache:
            out = policy.step(token[:, None], torch.cat(masks, 1), next_pos, cache=out.cache, last_only=True)
        else:
            full_mask = torch.cat(masks, 1)
            out = policy.step(torch.cat([ids, torch.stack(tokens, 1)], 1), full_mask,
                              (full_mask.cumsum(-1) - 1).clamp(min=0), last_only=True)
        next_pos = next_pos + 1
    response = torch.stack(tokens, 1)
    return Generation(
        input_ids=torch.cat([ids, response], 1),
        attention_mask=torch.cat(masks, 1),
        prompt_len=P,
        response_mask=torch.stack(alive_cols, 1).float(),
        logprobs=torch.stack(logps, 1),
        truncated=alive,
    )


@torch.no_grad()
def beam_search(policy: CausalPolicy, prompts: list[list[int]], beams: int, max_new_tokens: int, eos_id: int,
                pad_id: int, length_penalty: float = 1.0) -> list[list[int]]:
    """Best response per prompt (tokens before EOS) by sum log-prob / length**length_penalty.

    A beam that emits EOS is frozen (only PAD at log-prob 0 may follow), so finished and open
    hypotheses compete on the same beam slots.
    """
    if beams < 1:
        raise ConfigError(f"beams = {beams} is not allowed: must be >= 1")
    device = next(policy.parameters()).device
    N = len(prompts)
    ids, mask = left_pad([p for p in prompts for _ in range(beams)], pad_id, device)
    P = ids.shape[1]
    _check_room(policy, P, max_new_tokens)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = policy.step(ids, mask, positions, cache=policy.new_cache(N * beams, P + max_new_tokens), last_only=True)
    next_pos = positions[:, -1:] + 1
    scores = torch.full((N, beams), float("-inf"), device=device)
    scores[:, 0] = 0.0  # identical beams at the start: only the first may expand
    lengths = torch.zeros(N, beams, device=device)
    done = torch.zeros(N, beams, dtype=torch.bool, device=device)
    history = torch.zeros(N, beams, 0, dtype=torch.long, device=device)
    attn = mask
    for _ in range(max_new_tokens):
        logits = out.logits[:, -1].float()
        check_finite_logits(logits, "beam search")
        logp = torch.log_softmax(logits, -1).view(N, beams, -1)
        frozen = torch.full_like(logp, float("-inf"))
        frozen[..., pad_id] = 0.0
        logp = torch.where(done[..., None], frozen, logp)
        V = logp.shape[-1]
        total = (scores[..., None] + logp).view(N, -1)
        scores, flat = total.topk(beams, dim=-1)
        parent, token = flat // V, flat % V
        rows = (parent + torch.arange(N, device=device)[:, None] * beams).view(-1)
        history = torch.cat([history.gather(1, parent[..., None].expand(-1, -1, history.shape[-1])),
                             token[..., None]], -1)
        was_done = done.gather(1, parent)
        lengths = lengths.gather(1, parent) + (~was_done).float()
        done = was_done | (token == eos_id)
        if done.all():
            break
        out.cache = policy.reorder_cache(out.cache, rows)
        attn = torch.cat([attn.index_select(0, rows), (~was_done).view(-1, 1).long()], 1)
        out = policy.step(token.view(-1, 1), attn, next_pos, cache=out.cache, last_only=True)
        next_pos = next_pos + 1
    normalized = scores / lengths.clamp(min=1) ** length_penalty
    best = normalized.argmax(-1)
    results = []
    for n in range(N):
        seq = history[n, best[n]].tolist()
        results.append(seq[:seq.index(eos_id)] if eos_id in seq else seq)
    return results
