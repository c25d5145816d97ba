"""A small training run for the trainer and reliability tests, runnable as a script so a test can SIGKILL it.

    python toy_train.py RUNS_ROOT [--steps N] [--checkpoint-every K] [--blowup-at U] [--sleep S]

Linear regression by Adam with dropout noise (every update draws from the global RNG), evaluated every
few updates, checkpointed every K: the shape of every policylab training run, in a second.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import torch

from policylab.core.config import Config, param
from policylab.core.run import RunDir
from policylab.core.seeding import seed_everything
from policylab.core.trainer import Trainer, TrainerConfig


@dataclass(frozen=True)
class ToyConfig(Config):
    lr: float = param(0.05, gt=0)
    nan_at: int = param(-1)
    """At this update the loss (and so every gradient) is NaN."""
    blowup_at: int = param(-1)
    """From this update on, Adam's second moments are set to inf while the loss stays finite."""
    sleep: float = param(0.0, ge=0)
    """Seconds per update, so that a kill lands at a random point of the run."""


class Toy:
    name = "toy-regression"

    def __init__(self, cfg: ToyConfig):
        self.cfg = cfg
        self.model = torch.nn.Linear(4, 1)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.updates = 0

    def update(self, batch):
        x, y = batch
        loss = (self.model(torch.nn.functional.dropout(x, 0.1)).squeeze(-1) - y).pow(2).mean()
        self.updates += 1
        if self.updates == self.cfg.nan_at:
            loss = loss * float("nan")
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        if 0 <= self.cfg.blowup_at <= self.updates:
            for group in self.opt.state.values():
                group["exp_avg_sq"].fill_(float("inf"))
        if self.cfg.sleep:
            time.sleep(self.cfg.sleep)
        return {"loss": loss.detach()}

    def state_dict(self):
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "updates": self.updates}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.updates = state["updates"]


class Source:
    def __init__(self):
        self.w = torch.tensor([1.0, -2.0, 0.5, 3.0])
        self.batches = 0

    def next_batch(self, algo):
        self.batches += 1
        x = torch.randn(32, 4)
        return x, x @ self.w + 0.1 * torch.randn(32)

    def metrics(self):
        return {}

    def counters(self):
        return {"batches": float(self.batches)}

    def state_dict(self):
        return {"batches": self.batches}

    def load_state_dict(self, state):
        self.batches = state["batches"]


def evaluate(algo: Toy) -> dict[str, float]:
    x = torch.randn(64, 4)  # draws from the global RNG: the trainer must keep it out of the training stream
    with torch.no_grad():
        return {"mse": float((algo.model(x).squeeze(-1) - x @ torch.tensor([1.0, -2.0, 0.5, 3.0])).pow(2).mean())}


def train(root: str, steps: int = 60, checkpoint_every: int = 10, blowup_at: int = -1, sleep: float = 0.0,
          seed: int = 0) -> dict:
    seed_everything(seed)
    algo = Toy(ToyConfig(blowup_at=blowup_at, sleep=sleep))
    cfg = TrainerConfig(max_steps=steps, log_every=5, eval_every=20, checkpoint_every=checkpoint_every,
                        keep_checkpoints=2, progress=False)
    return Trainer(algo, Source(), cfg, RunDir(root, "toy", "main", seed), evaluate=evaluate,
                   tensorboard=False).fit()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--blowup-at", type=int, default=-1)
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args()
    from policylab.core.errors import PolicylabError

    try:
        train(args.root, args.steps, args.checkpoint_every, args.blowup_at, args.sleep)
    except PolicylabError as err:
        print(f"policylab: error: {err}", file=sys.stderr)
        sys.exit(2)
