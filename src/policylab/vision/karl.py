"""KARL — "Single-pass Adaptive Image Tokenization for Minimum Program Search" (Duggal, Byun, Freeman,
Torralba, Isola; 2025, arXiv 2507.07995; official code ShivamDuggal4/karl, `karl_vqgan.py`), at MLP scale.

A tokenizer that, in one pass, says how many of its T tokens an image needs to be reconstructed within a
requested error epsilon: each token gets a halting probability, the kept tokens are counted. It is
trained like upside-down RL, in two phases per batch (`forward_single_image` in the official code):
    A  estimate complexity: draw a budget n ~ U{1..T}, encode with the near-perfect command eps_0 and
       budget n, decode from the first n tokens; loss: reconstruction + BCE(halting of those n, 0);
       record the achieved error e_n
    B  learn to tokenize complexity: command eps = e_n (hindsight relabelling: the achieved quality is
       the command, the budget that achieved it the behaviour); full budget; halting targets 0 for the
       first n* tokens and 1 after; loss: BCE + reconstruction from the target mask
    inference: encode with the requested eps, keep the tokens with halting probability <= 0.5, count them
`relabel="achieved"` takes n* = n (the paper's relabelling). For an image whose error barely depends on
the budget (a constant one) that target is uniform over n, and the halting head learns the marginal;
`relabel="minimal"` (the notes' fix, not the paper's) takes n* = the smallest budget whose error is
within 5% of e_n, at the price of T extra no-grad passes. `infeasible_fraction` of the phase-B samples
get a command below what the full budget achieves and target every token (the role of the official
code's random re-binning near the extreme budgets, probability 0.45).
Ours: continuous tokens (no VQ), MLP encoder and decoder on 8 x 8 pixels (no base 2-D tokenizer, no
GAN / LPIPS stage), MSE as the error, log10 eps as the command input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from policylab.core.config import Config, param
from policylab.core.nn import adam, mlp


@dataclass(frozen=True)
class KARLConfig(Config):
    tokens: int = param(16, gt=0)
    token_dim: int = param(4, gt=0)
    hidden: tuple[int, ...] = (256, 256)
    relabel: str = param("achieved", choices=("achieved", "minimal"))
    infeasible_fraction: float = param(0.45, ge=0, lt=1)
    near_perfect: float = param(1e-4, gt=0)
    """eps_0, the phase-A command."""
    minimal_tolerance: float = param(0.05, ge=0)
    iterations: int = param(4000, gt=0)
    batch_size: int = param(128, gt=0)
    lr: float = param(1e-3, gt=0)
    halt_threshold: float = param(0.5, gt=0, lt=1)


class KARL(nn.Module):
    def __init__(self, pixels: int, cfg: KARLConfig):
        super().__init__()
        self.cfg = cfg
        T, d = cfg.tokens, cfg.token_dim
        self.encoder = mlp(pixels + 2, T * d + T, cfg.hidden)
        self.decoder = nn.Sequential(mlp(T * d + T, pixels, cfg.hidden), nn.Sigmoid())

    def encode(self, x: torch.Tensor, epsilon: torch.Tensor, budget: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens [B, T, d] and halting logits [B, T]; the command is log10 eps, the budget a fraction of T."""
        T = self.cfg.tokens
        out = self.encoder(torch.cat([x, epsilon.log10()[:, None], (budget.float() / T)[:, None]], -1))
        return out[:, :T * self.cfg.token_dim].view(-1, T, self.cfg.token_dim), out[:, T * self.cfg.token_dim:]

    def decode(self, tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        keep = keep.to(tokens.dtype)
        return self.decoder(torch.cat([(tokens * keep[..., None]).flatten(1), keep], -1))

    def prefix(self, n: torch.Tensor) -> torch.Tensor:
        return torch.arange(self.cfg.tokens)[None] < n[:, None]

    def reconstruction_error(self, x: torch.Tensor, budget: torch.Tensor) -> torch.Tensor:
        """Per-image MSE when encoding with the near-perfect command and keeping the first `budget` tokens."""
        epsilon = torch.full((x.shape[0],), self.cfg.near_perfect)
        tokens, _ = self.encode(x, epsilon, budget)
        return (self.decode(tokens, self.prefix(budget)) - x).square().mean(-1)

    @torch.no_grad()
    def count_tokens(self, x: torch.Tensor, epsilon: float) -> torch.Tensor:
        """One pass: the number of tokens kept for quality `epsilon`, per image."""
        full = torch.full((x.shape[0],), self.cfg.tokens)
        _, halting = self.encode(x, torch.full((x.shape[0],), epsilon), full)
        return (torch.sigmoid(halting) <= self.cfg.halt_threshold).sum(-1)

    @torch.no_grad()
    def search_tokens(self, x: torch.Tensor, epsilon: float) -> torch.Tensor:
        """The multi-pass baseline: the smallest prefix budget whose error is <= epsilon (T if none)."""
        T = self.cfg.tokens
        best = torch.full((x.shape[0],), T)
        for n in range(T, 0, -1):  # smallest qualifying n wins
            error = self.reconstruction_error(x, torch.full((x.shape[0],), n))
            best = torch.where(error <= epsilon, torch.full_like(best, n), best)
        return best


def train_karl(images: torch.Tensor, cfg: KARLConfig, seed: int) -> tuple[KARL, dict[str, float]]:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = KARL(images.shape[1], cfg)
    opt = adam(model.parameters(), cfg.lr)
    T, B = cfg.tokens, cfg.batch_size
    for _ in range(cfg.iterations):
        x = images[torch.randint(len(images), (B,), generator=g)]
        # phase A: estimate complexity at a random budget
        n = torch.randint(1, T + 1, (B,), generator=g)
        tokens, halting = model.encode(x, torch.full((B,), cfg.near_perfect), n)
        keep = model.prefix(n)
        error = (model.decode(tokens, keep) - x).square().mean(-1)
        loss_a = error.mean() + F.binary_cross_entropy_with_logits(halting[keep], torch.zeros(int(keep.sum())))
        # phase B: the achieved error becomes the command; halt after the relabelled budget
        achieved = error.detach().clamp(min=1e-6)
        target_n = n.clone()
        if cfg.relabel == "minimal":
            with torch.no_grad():
                errors = torch.stack([model.reconstruction_error(x, torch.full((B,), k)) for k in range(1, T + 1)], 1)
                good = errors <= achieved[:, None] * (1 + cfg.minimal_tolerance)
                target_n = torch.where(good.any(1), good.float().argmax(1) + 1, n)
        command = achieved
        infeasible = torch.rand(B, generator=g) < cfg.infeasible_fraction
        if infeasible.any():
            with torch.no_grad():
                full_error = model.reconstruction_error(x[infeasible], torch.full((int(infeasible.sum()),), T))
            shrink = 0.1 + 0.8 * torch.rand(int(infeasible.sum()), generator=g)
            command = command.clone()
            command[infeasible] = (full_error * shrink).clamp(min=1e-6)
            target_n = torch.where(infeasible, torch.full_like(target_n, T), target_n)
        tokens, halting = model.encode(x, command, torch.full((B,), T))
        keep = model.prefix(target_n)
        loss_b = (F.binary_cross_entropy_with_logits(halting, (~keep).float())
                  + (model.decode(tokens, keep) - x).square().mean())
        opt.zero_grad(set_to_none=True)
        (loss_a + loss_b).backward()
        opt.step()
    return model, {"loss_reconstruction": float(error.mean().detach()), "loss_total": float((loss_a + loss_b).detach())}


def timed(fn, *args) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start
