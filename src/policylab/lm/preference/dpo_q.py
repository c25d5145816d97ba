"""From r to Q*: Your Language Model is Secretly a Q-Function (Rafailov, Hejna, Park, Finn; COLM 2024, arXiv
2404.12358), on DPO (Rafailov et al. 2023; official code eric-mitchell/direct-preference-optimization).

In the token MDP (state = prompt + prefix, action = next token, deterministic transitions) DPO's policy is
the optimal soft policy of a dense reward, and
    r(s_t, a_t) = beta log pi*(a_t | s_t) / pi_ref(a_t | s_t) + V*(s_t) - V*(s_{t+1})          (the paper's Eq. 7)
so the per-token implicit reward
    r_hat(s_t, a_t) = beta log pi_theta(a_t | s_t) / pi_ref(a_t | s_t)
is the true reward up to potential shaping: within one response it assigns credit to tokens. Summed over
a response and put in Bradley-Terry (V*(s_0) cancels for a shared prompt) it gives the DPO loss
    L = -log sigmoid(beta sum_t log pi/pi_ref (y_w) - beta sum_t log pi/pi_ref (y_l)).
Consequences checked here: (i) credit assignment (the minimum of r_hat over a wrong answer falls on the
token that makes it wrong), (ii) likelihood search (beam search on pi_theta maximizes the implicit
KL-regularized return, so it should beat greedy and sampling), (iii) falling likelihoods: for responses
that look like reference samples E[beta log pi*/pi_ref] = -beta KL(pi_ref || pi*) <= 0, so the chosen
responses' log-likelihood is expected to fall during training while the margin grows.
Defaults from the official DPO config where they transfer: beta 0.1, gradient-norm clip 10; Adam at a
learning rate for a model trained from scratch (1e-4), not the 5e-7 of a 2.8B model.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from policylab.core.config import Config, param
from policylab.core.errors import ConfigError
from policylab.core.run import RunDir
from policylab.core.seeding import seed_everything
from policylab.core.trainer import Trainer, TrainerConfig
from policylab.lm.policy import CausalPolicy
from policylab.lm.preference.data import PreferencePairs, label_pairs, train_samples
from policylab.lm.preference.gold import GoldReward
from policylab.lm.pretrain import load_policy, teacher_forced_batch
from policylab.lm.tasks import Problem, Tokenizer, get_task


@dataclass(frozen=True)
class DPOConfig(Config):
    base_model: str = "tiny-mix"
    """The reference policy and the starting point."""
    beta: float = param(0.1, gt=0)
    lr: float = param(1e-4, gt=0)
    batch_size: int = param(64, gt=0)
    """Preference pairs per update."""
    grad_clip: float = param(10.0, gt=0)
    prompts: int = param(1000, gt=0)
    """Train prompts whose base-model samples make the preference pairs (when none are given)."""
    samples_per_prompt: int = param(8, gt=1)
    pairs_per_prompt: int = param(4, gt=0)
    label_noise: float = param(0.0, ge=0, le=0.5)
    max_new_tokens: int = param(12, gt=0)


def pair_batch(tokenizer: Tokenizer, problems: Sequence[Problem], chosen: Sequence[str],
               rejected: Sequence[str]) -> dict[str, Any]:
    """Chosen rows then rejected rows, teacher-forced, one padded batch (the official concatenated forward)."""
    return teacher_forced_batch(tokenizer, [p.prompt for p in problems] * 2, list(chosen) + list(rejected))


def token_logprobs(policy: CausalPolicy, batch: dict[str, Any]) -> torch.Tensor:
    """[B, R] log pi(y_t | s_t) of the response tokens (EOS included), 0 on padding."""
    out = policy.response_outputs(batch["input_ids"], batch["attention_mask"], batch["prompt_len"],
                                  want_entropy=False)
    return out.logprobs * batch["response_mask"]


def implicit_token_reward(logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """r_hat(s_t, a_t) = beta (log pi - log pi_ref), per token (Eq. 7 up to shaping)."""
    return beta * (logp - ref_logp)


def dpo_loss(logp_chosen: torch.Tensor, logp_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-log sigmoid(implicit return of y_w - that of y_l), from sequence log-probs [N] of policy and reference."""
    reward_chosen = beta * (logp_chosen - ref_chosen)
    reward_rejected = beta * (logp_rejected - ref_rejected)
    margin = reward_chosen - reward_rejected
    loss = -F.logsigmoid(margin).mean()
    return loss, {"reward/chosen": reward_chosen.mean().detach(), "reward/rejected": reward_rejected.mean().detach(),
                  "reward/margin": margin.mean().detach(), "reward/accuracy": (margin > 0).float().mean().detach(),
                  "logp/chosen": logp_chosen.mean().detach(), "logp/rejected": logp_rejected.mean().detach()}


class DPO:
    """Policy, frozen reference and Adam; `update` takes a batch of pairs with the reference's log-probs."""

    name = "dpo"

    def __init__(self, policy: CausalPolicy, reference: CausalPolicy, cfg: DPOConfig):
        self.policy, self.reference, self.cfg = policy, reference.eval(), cfg
        self.reference.requires_grad_(False)
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)

    def update(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        self.policy.train()
        logp = token_logprobs(self.policy, batch).sum(-1)
        half = logp.shape[0] // 2
        loss, metrics = dpo_loss(logp[:half], logp[half:], batch["ref_logp"][:half], batch["ref_logp"][half:],
                                 self.cfg.beta)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        return {"loss/dpo": loss.detach(), "grad_norm": grad_norm, **metrics}

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])


class PairSource:
    """Shuffled minibatches of preference pairs; the reference's log-probs are computed once, up front."""

    def __init__(self, pairs: PreferencePairs, tokenizer: Tokenizer, reference: CausalPolicy, batch_size: int,
                 seed: int):
        if len(pairs) == 0:
            raise ConfigError("DPO needs at least one preference pair")
        self.pairs, self.tokenizer, self.batch_size = pairs, tokenizer, min(batch_size, len(pairs))
        self.ref_chosen = sequence_logprobs(reference, tokenizer, pairs.problems, pairs.chosen)
        self.ref_rejected = sequence_logprobs(reference, tokenizer, pairs.problems, pairs.rejected)
        self.rng = random.Random(seed)
        self.order: list[int] = []
        self.examples = 0

    def next_batch(self, algo: Any) -> dict[str, Any]:
        if len(self.order) < self.batch_size:
            fresh = list(range(len(self.pairs)))
            self.rng.shuffle(fresh)
            self.order += fresh
        index, self.order = self.order[:self.batch_size], self.order[self.batch_size:]
        sub = self.pairs.subset(index)
        batch = pair_batch(self.tokenizer, sub.problems, sub.chosen, sub.rejected)
        batch["ref_logp"] = torch.cat([self.ref_chosen[index], self.ref_rejected[index]])
        self.examples += len(index)
        return batch

    def metrics(self) -> dict[str, float]:
        return {}

    def counters(self) -> dict[str, float]:
        return {"pairs_seen": self.examples}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate(), "order": list(self.order), "examples": self.examples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.setstate(state["rng"])
        self.order, self.examples = list(state["order"]), state["examples"]


@torch.no_grad()
def sequence_logprobs(policy: CausalPolicy, tokenizer: Tokenizer, problems: Sequence[Problem],
                      responses: Sequence[str], chunk: int = 512) -> torch.Tensor:
    """[N] log pi(response + EOS | prompt), in chunks."""
    return torch.cat([token_logprobs(policy, teacher_forced_batch(
        tokenizer, [p.prompt for p in problems[i:i + chunk]], list(responses[i:i + chunk]))).sum(-1)
        for i in range(0, len(responses), chunk)])


def preference_data(policy: CausalPolicy, tokenizer: Tokenizer, task: Any, cfg: DPOConfig, seed: int
                    ) -> PreferencePairs:
    """Pairs of the policy's own samples on train prompts, labelled by the gold reward (argmax + noise)."""
    samples = train_samples(policy, tokenizer, task, cfg.prompts, seed, cfg.samples_per_prompt, cfg.max_new_tokens)
    return label_pairs(samples, GoldReward(task), cfg.pairs_per_prompt, seed=seed, temperature=0.0,
                       noise=cfg.label_noise).shuffled(seed)


def train_dpo(cfg: DPOConfig, *, env_id: str = "mix", seed: int = 0, steps: int = 300, run: RunDir | None = None,
              max_seconds: float | None = None, progress: bool | None = None, pairs: PreferencePairs | None = None,
              evaluate: Any = None, evals: int = 5, checkpoints: int = 5, name: str = "dpo") -> dict[str, Any]:
    """DPO from `cfg.base_model` (also the reference) on `pairs`, or on pairs made from its own samples."""
    if steps <= 0:
        raise ConfigError(f"steps = {steps} is not allowed: must be > 0 updates")
    policy, tokenizer = load_policy(cfg.base_model, progress=progress)
    seed_everything(seed)
    task = get_task(env_id)
    if pairs is None:
        pairs = preference_data(policy, tokenizer, task, cfg, seed)
    reference = copy.deepcopy(policy)
    algo = DPO(policy, reference, cfg)
    algo.name = name
    source = PairSource(pairs, tokenizer, reference, cfg.batch_size, seed)
    if run is not None:
        run.save_config(cfg, algo=name, task=env_id, seed=seed, steps=steps, pairs=len(pairs))
    trainer_cfg = TrainerConfig(max_steps=steps, max_seconds=max_seconds, log_every=max(steps // 100, 1),
                                eval_every=max(steps // evals, 1) if evaluate is not None and evals > 0 else 0,
                                checkpoint_every=max(steps // checkpoints, 1) if checkpoints > 0 else 0,
                                progress=progress)
    summary = Trainer(algo, source, trainer_cfg, run, evaluate).fit()
    summary.update(algorithm=algo, tokenizer=tokenizer, pairs=pairs)
    return summary


def first_wrong_position(response: str, answer: str) -> int | None:
    """Index of the token that makes `response` wrong (EOS counts as the token after the last character);
    None when the response is right."""
    if response == answer:
        return None
    for i, (got, want) in enumerate(zip(response, answer)):
        if got != want:
            return i
    return min(len(response), len(answer))  # a prefix of the answer, or the answer with extra characters


@torch.no_grad()
def credit_assignment(policy: CausalPolicy, reference: CausalPolicy, tokenizer: Tokenizer,
                      problems: Sequence[Problem], responses: Sequence[str], beta: float) -> dict[str, float]:
    """For wrong responses: how often the minimum of r_hat falls on the first wrong token, against the rate
    of a uniformly random token position (1 / tokens, EOS included). Character tokenizers only."""
    wrong = [(p, r, first_wrong_position(r, p.answer)) for p, r in zip(problems, responses)]
    wrong = [(p, r, k) for p, r, k in wrong if k is not None]
    if not wrong:
        raise ConfigError("credit_assignment needs at least one wrong response")
    batch = teacher_forced_batch(tokenizer, [p.prompt for p, _, _ in wrong], [r for _, r, _ in wrong])
    reward = implicit_token_reward(token_logprobs(policy, batch), token_logprobs(reference, batch), beta)
    reward = reward.masked_fill(batch["response_mask"] == 0, float("inf"))
    lowest = reward.argmin(-1)
    hits = torch.tensor([float(lowest[i] == k) for i, (_, _, k) in enumerate(wrong)])
    chance = 1.0 / batch["response_mask"].sum(-1)
    return {"credit_hit": float(hits.mean()), "credit_chance": float(chance.mean()), "credit_responses": len(wrong)}
