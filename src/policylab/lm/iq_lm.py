"""Imitating Language via Scalable Inverse RL (Wulfmeier et al., NeurIPS 2024, arXiv 2409.01369).

Supervised fine-tuning seen as imitation in the token MDP: the state s_t is the prompt and the first t
response tokens, the action a_t the next token, the transition to s_{t+1} deterministic, and EOS ends
the episode. The paper applies inverse soft-Q learning (IQLearn, Garg et al. 2021) to it with the
language model's logits as the soft Q-function:

    Q(s, .) := l_theta(s, .)                                     the logits of the next-token head
    V(s)    = logsumexp_a Q(s, a),   log pi(a|s) = Q(s, a) - V(s)  soft value of the softmax policy
    V(s')   = 0 after EOS                                          the absorbing end of an episode

IQLearn with the chi^2 choice phi(x) = x - x^2 / (4 alpha) and the telescoping identity on data
trajectories, E_D[V(s) - gamma V(s')] = (1 - gamma) E[V(s_0)], turns into maximum likelihood plus a
temporal-difference regularizer on the implicit reward (the paper's Eq. 14, written as a loss):

    L(theta) = E_D[ -log pi(a|s) ] + lambda E_D[ (V(s) + log pi(a|s) - gamma V(s'))^2 ]          (Eq. 14)
             = E_D[ -log pi(a|s) ] + lambda E_D[ r(s, a)^2 ],   r(s, a) = Q(s, a) - gamma V(s')  (14')

with lambda = 1 / (4 alpha); lambda = 0 is exactly maximum likelihood. Gradients flow through V(s')
(detaching it would be another method). The recovered reward is IQLearn's inverse Bellman operator,
r(s, a) = Q(s, a) - gamma V(s'); its sum over a response scores the whole sequence, and with gamma = 1
it telescopes: sum_t r_t = sum_t log pi(a_t|s_t) + V(s_0).

Sources. Eq. 14 follows the paper's J = E_{mu_E}[lambda (v + log pi - gamma E_{s'} v')^2 - log pi] as
quoted by an auto-generated summary of the NeurIPS version (a public paper-notes repository): the square
covers the whole residual V(s) + log pi(a|s) - gamma V(s') = Q(s, a) - gamma V(s'), not V(s) - gamma V(s')
alone, which is also what IQLearn's chi^2 objective gives when derived by hand. The reward r = Q - gamma V'
is IQLearn's (Garg et al. 2021). The paper's own text beyond its abstract could not be read here, so
gamma's default (1, with V = 0 after EOS) and the per-token mean over the batch are this module's choices,
not verified values; the optimizer and learning-rate schedule are the supervised recipe's (`pretrain.SFT`),
so that lambda is the only difference from MLE.

Also here: `between`, a task with many valid answers per question (any integer strictly between two
numbers), for measuring the diversity of correct generations, and `train_iq_lm`, the training entry
on core.Trainer with the supervised batch source of `pretrain`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

from policylab.core.config import Config, param
from policylab.core.errors import ConfigError
from policylab.core.run import RunDir
from policylab.core.seeding import seed_everything
from policylab.core.stats import probability_of_improvement
from policylab.core.trainer import Trainer, TrainerConfig
from policylab.lm.evaluate import evaluate_lm
from policylab.lm.generate import SamplingConfig, generate
from policylab.lm.policy import CausalPolicy, TinyGPT, TinyGPTConfig
from policylab.lm.pretrain import SFT, SFTSource, load_policy
from policylab.lm.tasks import (
    TASKS,
    CharTokenizer,
    Problem,
    Score,
    Task,
    Tokenizer,
    distinct_problems,
    get_task,
    prompt_ids,
)
from policylab.lm.tasks.base import SplitSampler, check_split

TEST_SET_SEED = 20_240_902
"""Seed of the fixed held-out question list (the same for every run and arm)."""


# -- the objective ----------------------------------------------------------------------------------

def soft_values(logits: torch.Tensor) -> torch.Tensor:
    """V(s) = logsumexp_a Q(s, a) with Q := logits [B, R, V] -> [B, R]."""
    return torch.logsumexp(logits, dim=-1)


def next_state_values(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """V(s_{t+1}) for each response position: the next position's value, 0 after the last token (EOS).

    A response occupies a prefix of its row (`mask` [B, R] is 1 up to and including EOS), so position
    t + 1 holds a real state exactly when mask[t + 1] = 1; past that the episode has ended.
    """
    following = torch.zeros_like(values)
    following[:, :-1] = values[:, 1:]
    next_mask = torch.zeros_like(mask)
    next_mask[:, :-1] = mask[:, 1:]
    return torch.where(next_mask > 0, following, torch.zeros_like(following))


def token_rewards(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0
                  ) -> torch.Tensor:
    """The recovered reward r(s_t, a_t) = Q(s_t, a_t) - gamma V(s_{t+1}) [B, R], 0 on padding (Eq. 14')."""
    logits = _masked_logits(logits, mask)
    q_taken = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    reward = q_taken - gamma * next_state_values(soft_values(logits), mask)
    return reward * mask


def sequence_rewards(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0
                     ) -> torch.Tensor:
    """sum_t r(s_t, a_t) per response [B]: the recovered reward of the whole sequence."""
    return token_rewards(logits, targets, mask, gamma).sum(-1)


def iq_lm_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, lam: float, gamma: float = 1.0
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 14 as a loss to minimize: token-mean NLL + lambda * token-mean squared implicit reward.

    `logits` [B, R, V] predict the response tokens `targets` [B, R]; `mask` [B, R] is 1 on response
    tokens up to and including EOS. Logits at padded positions do not enter the loss or its gradient.
    """
    logits = _masked_logits(logits, mask)
    tokens = mask.sum()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    nll = -(logp * mask).sum() / tokens
    reward = token_rewards(logits, targets, mask, gamma)
    td = (reward.square() * mask).sum() / tokens
    loss = nll + lam * td
    return loss, {"loss/nll": nll.detach(), "loss/td": td.detach(),
                  "reward/token_mean": ((reward * mask).sum() / tokens).detach()}


def _masked_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # Zeros at padded positions: whatever the model put there (even inf) cannot reach a value or gradient.
    return torch.where(mask.unsqueeze(-1) > 0, logits, torch.zeros((), dtype=logits.dtype, device=logits.device))


# -- the algorithm ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class IQLMConfig(Config):
    lam: float = param(0.1, ge=0)
    """lambda of Eq. 14, the TD regularizer's weight (1 / (4 alpha) of IQLearn's chi^2); 0 is plain MLE."""
    gamma: float = param(1.0, ge=0, le=1)
    """Discount of the next state's soft value; V = 0 after EOS keeps gamma = 1 well defined."""
    base_model: str = ""
    """Starting policy: '' for a fresh tiny GPT of the sizes below, else a base-model name, file or hf:<dir>."""
    n_layer: int = param(2, gt=0)
    n_head: int = param(2, gt=0)
    d_model: int = param(64, gt=0)
    block_size: int = param(32, gt=0)
    """Context of a fresh model: prompt plus response."""
    max_steps: int = param(2000, gt=0)
    """Updates: the length of the run and of the learning-rate schedule."""
    batch_size: int = param(64, gt=0)
    lr: float = param(2e-3, gt=0)
    warmup: int = param(100, ge=0)
    weight_decay: float = param(0.01, ge=0)
    demonstrations: int = param(0, ge=0)
    """0: every batch draws fresh train-split questions; N > 0: a fixed set of N distinct train-split
    questions with one demonstration each, revisited for the whole run (a fixed SFT dataset)."""
    max_new_tokens: int = param(6, gt=0)
    eval_prompts: int = param(200, gt=0)
    """Distinct held-out (test-split) questions per evaluation."""
    eval_samples: int = param(8, gt=1)
    """k responses per held-out question at temperature 1 (sampled accuracy, diversity, reward ranking)."""

    def check(self) -> None:
        if self.d_model % self.n_head:
            raise ConfigError(f"IQLMConfig.d_model = {self.d_model} is not allowed: must be divisible by "
                              f"n_head = {self.n_head}")


class IQLM(SFT):
    """SFT's optimizer and schedule (AdamW, warmup, cosine to 10%) on the loss of Eq. 14."""

    name = "iq_lm"

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.policy.response_outputs(batch["input_ids"], batch["attention_mask"], batch["prompt_len"],
                                           want_entropy=False, want_logits=True)
        targets = batch["input_ids"][:, batch["prompt_len"]:]
        loss, metrics = iq_lm_loss(out.logits, targets, batch["response_mask"], self.cfg.lam, self.cfg.gamma)
        return loss, {"loss": loss.detach(), **metrics}


@torch.no_grad()
def response_rewards(policy: CausalPolicy, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int,
                     response_mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """The recovered sequence reward sum_t r_t [B] of [left-padded prompt | response] rows under `policy`."""
    out = policy.response_outputs(input_ids, attention_mask, prompt_len, want_entropy=False, want_logits=True)
    return sequence_rewards(out.logits, input_ids[:, prompt_len:], response_mask, gamma)


# -- a task with many valid answers -----------------------------------------------------------------

class Between(SplitSampler):
    """`between(23,57)=` -> any integer strictly between the two, written plainly (`24` ... `56`).

    Numbers 0-99 at least 3 apart, so every question has 2 to 98 valid answers; a demonstration is
    one of them drawn uniformly. Exact: a canonical integer (no sign, space or leading zero) inside
    the interval; dense: 1 - distance to the interval / 100.
    """

    name = "between"
    max_value = 99
    min_gap = 3

    def draw(self, rng: random.Random) -> Problem:
        while True:
            low, high = sorted((rng.randint(0, self.max_value), rng.randint(0, self.max_value)))
            if high - low >= self.min_gap:
                break
        answer = rng.randint(low + 1, high - 1)
        return Problem(self.name, f"between({low},{high})=", str(answer), {"low": low, "high": high})

    def score(self, problem: Problem, response: str) -> Score:
        low, high = problem.meta["low"], problem.meta["high"]
        text = response.strip()
        if not text.isdigit() or len(text) > 3:
            return Score(0.0, 0.0)
        value = int(text)
        exact = float(low < value < high and response == str(value))
        distance = max(low + 1 - value, value - (high - 1), 0)
        return Score(exact, max(0.0, 1.0 - distance / 100.0))


TASKS.add(Between.name, Between)


class DemonstrationSet:
    """A fixed list of demonstrations behind the task protocol's `sample` (train split only)."""

    def __init__(self, task: Task, problems: list[Problem]):
        if not problems:
            raise ConfigError("a demonstration set needs at least one problem")
        self.task, self.problems, self.name = task, problems, task.name

    def sample(self, n: int, split: str, rng: random.Random) -> list[Problem]:
        if check_split(split) != "train":
            raise ConfigError(f"a demonstration set holds train-split questions only, not {split!r}")
        return [self.problems[rng.randrange(len(self.problems))] for _ in range(n)]

    def score(self, problem: Problem, response: str) -> Score:
        return self.task.score(problem, response)


# -- held-out evaluation ----------------------------------------------------------------------------

@torch.no_grad()
def evaluate_iq_lm(policy: CausalPolicy, tokenizer: Tokenizer, task: Task, problems: list[Problem],
                   max_new_tokens: int, samples: int, gamma: float = 1.0, seed: int = 0,
                   chunk: int = 512) -> dict[str, float]:
    """Greedy accuracy, and over `samples` responses per question at temperature 1: accuracy, distinct
    correct answers per question (diversity), and how well the recovered sequence reward separates
    correct from wrong responses (AUC, pooled over questions and within each question).

    A truncated response (no EOS) counts as wrong; its reward is summed over the tokens it has.
    """
    was_training = policy.training
    policy.eval()
    greedy = evaluate_lm(policy, tokenizer, task, problems, max_new_tokens, ks=())["greedy_acc"]
    generator = torch.Generator(device=next(policy.parameters()).device).manual_seed(seed)
    rows = [i for i in range(len(problems)) for _ in range(samples)]
    correct, rewards, texts = [], [], []
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        gen = generate(policy, [prompt_ids(tokenizer, problems[i].prompt) for i in part],
                       SamplingConfig(max_new_tokens=max_new_tokens), tokenizer.eos_id, tokenizer.pad_id, generator)
        rewards += response_rewards(policy, gen.input_ids, gen.attention_mask, gen.prompt_len, gen.response_mask,
                                    gamma).tolist()
        for i, row, cut in zip(part, gen.responses, gen.truncated.tolist()):
            text = tokenizer.decode(row.tolist())
            texts.append(text)
            correct.append(not cut and task.score(problems[i], text).exact == 1.0)
    policy.train(was_training)
    per_question = [range(q * samples, (q + 1) * samples) for q in range(len(problems))]
    distinct = [len({texts[j] for j in idx if correct[j]}) for idx in per_question]
    within = [_auc([rewards[j] for j in idx if correct[j]], [rewards[j] for j in idx if not correct[j]])
              for idx in per_question]
    within = [a for a in within if a is not None]
    pooled = _auc([r for r, c in zip(rewards, correct) if c], [r for r, c in zip(rewards, correct) if not c])
    good = [r for r, c in zip(rewards, correct) if c]
    bad = [r for r, c in zip(rewards, correct) if not c]
    return {"greedy_acc": greedy, "sample_acc": sum(correct) / len(correct),
            "distinct_correct": sum(distinct) / len(distinct),
            "reward_auc": 0.5 if pooled is None else pooled,
            "reward_auc_within": sum(within) / len(within) if within else 0.5,
            "reward_correct": sum(good) / len(good) if good else 0.0,
            "reward_wrong": sum(bad) / len(bad) if bad else 0.0}


def _auc(positives: list[float], negatives: list[float]) -> float | None:
    """P(score of a correct response > score of a wrong one), ties half; None when a side is empty."""
    if not positives or not negatives:
        return None
    return probability_of_improvement(positives, negatives)


# -- training entry ---------------------------------------------------------------------------------

def initial_policy(cfg: IQLMConfig, progress: bool | None = None) -> tuple[CausalPolicy, Tokenizer]:
    """A fresh tiny GPT over the character tokenizer (seeded by the caller), or a named base model."""
    if cfg.base_model:
        return load_policy(cfg.base_model, progress=progress)
    tokenizer = CharTokenizer()
    model = TinyGPTConfig(vocab_size=tokenizer.vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer,
                          n_head=cfg.n_head, d_model=cfg.d_model)
    return TinyGPT(model), tokenizer


def train_iq_lm(cfg: IQLMConfig, *, env_id: str = "between", seed: int = 0, steps: int | None = None,
                run: RunDir | None = None, max_seconds: float | None = None, progress: bool | None = None,
                evals: int = 5, checkpoints: int = 5, name: str = "iq_lm") -> dict[str, Any]:
    """Train on a task's demonstrations (its train-split answers) for `steps` updates (default
    cfg.max_steps); held-out evaluation before training and `evals` times during it."""
    if steps is not None and steps != cfg.max_steps:
        cfg = cfg.replace(max_steps=steps)
    task = get_task(env_id)
    seed_everything(seed)
    policy, tokenizer = initial_policy(cfg, progress)
    algo = IQLM(policy, cfg)
    algo.name = name
    data = (DemonstrationSet(task, distinct_problems(task, cfg.demonstrations, "train", seed=seed))
            if cfg.demonstrations else task)
    source = SFTSource(data, tokenizer, cfg.batch_size, seed)
    test = distinct_problems(task, cfg.eval_prompts, "test", seed=TEST_SET_SEED)

    def evaluate(a: IQLM) -> dict[str, float]:
        return evaluate_iq_lm(a.policy, tokenizer, task, test, cfg.max_new_tokens, cfg.eval_samples, cfg.gamma,
                              seed=TEST_SET_SEED + seed)

    initial = evaluate(algo)
    if run is not None:
        run.save_config(cfg, algo=name, task=env_id, seed=seed, steps=cfg.max_steps,
                        demonstrations=len(getattr(data, "problems", [])))
    trainer_cfg = TrainerConfig(max_steps=cfg.max_steps, max_seconds=max_seconds,
                                log_every=max(cfg.max_steps // 100, 1),
                                eval_every=max(cfg.max_steps // evals, 1) if evals > 0 else 0,
                                checkpoint_every=max(cfg.max_steps // checkpoints, 1) if checkpoints > 0 else 0,
                                progress=progress)
    summary = Trainer(algo, source, trainer_cfg, run, evaluate).fit()
    summary.update(initial_eval={f"eval/{k}": v for k, v in initial.items()}, algorithm=algo, tokenizer=tokenizer,
                   test_problems=test, examples=source.examples)
    return summary
