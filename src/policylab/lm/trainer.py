"""RLVR on the core Trainer: rollout -> score -> shape -> advantages -> minibatch epochs -> log.

`RLVR` is the algorithm (policy, optimizer, optional reference, the six-slot objective);
`RolloutSource` is its batch source; `train_rlvr` wires them to a task and a base model.
Every method of the family (GRPO, DAPO, Dr. GRPO, GSPO, Lite PPO, ...) is an `RLVRConfig`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from policylab.core.config import param
from policylab.core.errors import ConfigError
from policylab.core.run import RunDir
from policylab.core.seeding import seed_everything
from policylab.core.trainer import Trainer, TrainerConfig
from policylab.lm.advantages import ADVANTAGES, token_advantages
from policylab.lm.evaluate import evaluate_lm
from policylab.lm.losses import ObjectiveConfig, RLVRObjective
from policylab.lm.policy import CausalPolicy
from policylab.lm.pretrain import load_policy
from policylab.lm.rollout import RolloutBatch, RolloutSource
from policylab.lm.tasks import distinct_problems, get_task, prompt_ids, task_members

TEST_SET_SEED = 20_251_126  # the held-out questions are the same for every seed and arm
MAX_ROLLOUTS_PER_STEP = 1 << 16
"""The most responses one step may generate (prompts_per_step x group_size), each field bounded on its own too."""


@dataclass(frozen=True)
class RLVRConfig(ObjectiveConfig):
    base_model: str = "tiny-mix"
    """Starting policy: a base-model name (built on first use), a base-model file, or hf:<directory>."""
    prompts_per_step: int = param(16, gt=0)
    group_size: int = param(8, gt=0)
    """G responses per prompt."""
    max_new_tokens: int = param(12, gt=0)
    """L_max, the generation budget of a response."""
    temperature: float = param(1.0, gt=0)
    top_p: float = param(1.0, gt=0, le=1)
    lr: float = param(5e-5, gt=0)
    grad_clip: float = param(1.0, gt=0)
    epochs: int = param(1, gt=0)
    """Passes over each rollout batch (PPO epochs)."""
    minibatches: int = param(2, gt=0)
    """Optimizer steps per epoch; the batch is split into this many shuffled parts."""
    staleness: int = param(0, ge=0)
    """Roll out with the policy from this many updates ago (off-policy stress test)."""
    max_gen_batches: int = param(3, gt=0)
    """With a group filter (dynamic sampling): generation rounds allowed to fill one step."""
    overlong_buffer: int = param(4, ge=0)
    """L_cache of the soft overlong penalty."""
    overlong_penalty_factor: float = param(1.0, ge=0)
    eval_prompts: int = param(200, gt=0)
    """Distinct held-out (test-split) questions per evaluation."""
    eval_ks: tuple[int, ...] = (1, 4, 16)
    """pass@k values reported; max(eval_ks) samples per question at temperature 1."""
    device: str = "cpu"
    """Where the policy trains and generates: cpu, cuda, cuda:1, ..."""

    def check(self) -> None:
        super().check()
        rollouts = self.prompts_per_step * self.group_size
        if rollouts > MAX_ROLLOUTS_PER_STEP:
            raise ConfigError(f"{type(self).__name__}: prompts_per_step x group_size = {self.prompts_per_step} x "
                              f"{self.group_size} = {rollouts} responses per step is not allowed: at most "
                              f"{MAX_ROLLOUTS_PER_STEP}")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ConfigError(f"{type(self).__name__}.device = {self.device!r} is not allowed: use cpu, cuda or "
                              "cuda:<index>") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"{type(self).__name__}.device = {self.device!r} is not allowed: CUDA is not "
                              "available on this machine")


class RLVR:
    """Policy, optimizer and the composed objective; `update` consumes one rollout batch."""

    def __init__(self, policy: CausalPolicy, cfg: RLVRConfig, reference: CausalPolicy | None = None,
                 name: str = "rlvr"):
        self.name, self.cfg, self.policy, self.reference = name, cfg, policy, reference
        self.objective = RLVRObjective(cfg, default_constant=float(cfg.max_new_tokens))
        self.advantage_fn = ADVANTAGES.get(cfg.advantage)
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
        if cfg.kl_coef > 0 and reference is None:
            raise ConfigError(f"{type(cfg).__name__}.kl_coef = {cfg.kl_coef} needs a reference policy")

    def advantages(self, batch: RolloutBatch, metrics: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Token advantages [B, R]. Transforms also see the batch, the policy (before this update) and
        the config, for those that read more than the rewards (reward components, hidden states), and
        may record what they chose in `metrics` (logged with the update)."""
        rewards = batch.rewards.view(-1, batch.group_size)
        adv = self.advantage_fn(rewards, eps=self.cfg.adv_eps, batch=batch, policy=self.policy, cfg=self.cfg,
                                metrics=metrics if metrics is not None else {})
        return token_advantages(adv, batch.response_mask)

    @staticmethod
    def row_context(batch: RolloutBatch) -> dict[str, torch.Tensor]:
        """Per-response facts a loss slot may read: exact-match correctness and its group's success rate."""
        correct = batch.exact
        success = correct.view(-1, batch.group_size).mean(-1).repeat_interleave(batch.group_size)
        return {"correct": correct, "success_rate": success}

    def update(self, batch: RolloutBatch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        if batch.num_groups == 0:  # every group was filtered out: nothing to learn from this step
            return {**{k: torch.zeros(()) for k in METRIC_KEYS}, "skipped": torch.ones(())}
        advantage_metrics: dict[str, torch.Tensor] = {}
        adv = self.advantages(batch, advantage_metrics)
        mask = batch.response_mask
        stats = {**batch_statistics(batch, adv), **advantage_metrics}
        context = self.row_context(batch)
        rows = batch.rewards.shape[0]
        losses, grad_norms, clip_fracs, entropies, kls = [], [], [], [], []
        slot_metrics: dict[str, list[torch.Tensor]] = {}
        self.policy.train()
        for _ in range(cfg.epochs):
            order = torch.randperm(rows, device=batch.rewards.device)
            for part in order.chunk(min(cfg.minibatches, rows)):
                ids, attn = batch.input_ids[part], batch.attention_mask[part]
                out = self.policy.response_outputs(ids, attn, batch.prompt_len, temperature=cfg.temperature)
                ref_logp = None
                if cfg.kl_coef > 0:
                    with torch.no_grad():
                        ref_logp = self.reference.response_outputs(ids, attn, batch.prompt_len, cfg.temperature,
                                                                   want_entropy=False).logprobs
                loss, m = self.objective(out.logprobs, batch.behaviour_logprobs[part], adv[part], mask[part],
                                         ref_logp, out.entropy, {k: v[part] for k, v in context.items()})
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norms.append(torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip))
                self.optimizer.step()
                losses.append(loss.detach())
                clip_fracs.append(m["clip_frac"])
                kls.append(m.get("kl_ref", torch.zeros(())))
                for key, value in m.items():
                    if key not in OBJECTIVE_KEYS:
                        slot_metrics.setdefault(key, []).append(value)
                tokens = mask[part].sum().clamp(min=1)
                entropies.append((out.entropy.detach() * mask[part]).sum() / tokens)
        grad = torch.stack(grad_norms)
        return {**stats, "loss": torch.stack(losses).mean(), "grad_norm": grad.mean(), "grad_norm_max": grad.max(),
                "clip_frac": torch.stack(clip_fracs).mean(), "entropy": torch.stack(entropies).mean(),
                "kl_ref": torch.stack(kls).mean(), "skipped": torch.zeros(()),
                **{key: torch.stack(values).float().mean() for key, values in slot_metrics.items()}}

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])


def batch_statistics(batch: RolloutBatch, adv: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the rollout batch looked like: reward, accuracy, lengths, the advantages' shape."""
    mask = batch.response_mask
    lengths = mask.sum(-1)
    correct = batch.exact > 0
    tokens = mask.sum().clamp(min=1)
    group_abs = (adv.abs() * mask).sum(-1).view(-1, batch.group_size).sum(-1)

    def masked_mean(values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        return (values * where).sum() / where.sum().clamp(min=1)

    return {
        "reward": batch.rewards.mean(),
        "accuracy": batch.exact.mean(),
        "length": lengths.mean(),
        "length_correct": masked_mean(lengths, correct.float()),
        "length_incorrect": masked_mean(lengths, (~correct).float()),
        "pos_adv_token_share": ((adv > 0).float() * mask).sum() / tokens,
        "zero_adv_group_frac": (group_abs < 1e-8).float().mean(),
        "adv_abs_max": adv.abs().max(),
        "truncated_frac": batch.truncated.float().mean(),
    }


METRIC_KEYS = ("reward", "accuracy", "length", "length_correct", "length_incorrect", "pos_adv_token_share",
               "zero_adv_group_frac", "adv_abs_max", "truncated_frac", "loss", "grad_norm", "grad_norm_max",
               "clip_frac", "entropy", "kl_ref")


OBJECTIVE_KEYS = ("loss/policy", "clip_frac", "ratio_mean", "kl_ref")
"""Metrics of the objective itself; any other key a slot reports is averaged over minibatches and logged."""


def check_context(task: Any, tokenizer: Any, policy: CausalPolicy, cfg: RLVRConfig) -> None:
    """Refuse a task whose prompts cannot fit the model's context with max_new_tokens (checked on a sample)."""
    import random

    longest = max(len(prompt_ids(tokenizer, p.prompt)) for p in task.sample(256, "train", random.Random(0)))
    if longest + cfg.max_new_tokens > policy.max_length:
        raise ConfigError(f"max_new_tokens = {cfg.max_new_tokens} is not allowed with this task: prompts reach "
                          f"{longest} tokens and the model's context is {policy.max_length}")


def train_rlvr(cfg: RLVRConfig, *, env_id: str = "mix", seed: int = 0, steps: int = 200, run: RunDir | None = None,
               max_seconds: float | None = None, progress: bool | None = None, evals: int = 10,
               checkpoints: int = 10, callbacks: tuple[Callable, ...] = (), name: str = "rlvr",
               reward_model: Any = None, extra_eval: Callable[[RLVR], dict[str, float]] | None = None
               ) -> dict[str, Any]:
    """Train on a task (or mix) for `steps` updates from `cfg.base_model`; held-out eval `evals` times.

    `reward_model` (anything with `score(problems, responses)`) replaces exact match as the reward;
    `extra_eval(algo)` adds metrics to every evaluation (gold score, KL from the base, ...)."""
    if steps <= 0:
        raise ConfigError(f"steps = {steps} is not allowed: must be > 0 updates")
    if reward_model is not None and not callable(getattr(reward_model, "score", None)):
        raise ConfigError(f"reward_model = {type(reward_model).__name__} is not allowed: it needs a "
                          "score(problems, responses) method (see policylab.lm.preference.RewardModel)")
    task = get_task(env_id)
    policy, tokenizer = load_policy(cfg.base_model, progress=progress)
    policy.to(cfg.device)
    seed_everything(seed)
    check_context(task, tokenizer, policy, cfg)
    reference = copy.deepcopy(policy).eval() if cfg.kl_coef > 0 else None
    algo = RLVR(policy, cfg, reference, name)
    source = RolloutSource(task, tokenizer, cfg, seed, reward_model)
    test = distinct_problems(task, cfg.eval_prompts, "test", seed=TEST_SET_SEED)

    def evaluate(a: RLVR) -> dict[str, float]:
        result = evaluate_lm(a.policy, tokenizer, task, test, cfg.max_new_tokens, ks=cfg.eval_ks,
                             seed=TEST_SET_SEED + seed)
        return {**result, **(extra_eval(a) if extra_eval is not None else {})}

    return fit_rlvr(algo, source, evaluate, run=run, steps=steps, max_seconds=max_seconds, progress=progress,
                    evals=evals, checkpoints=checkpoints, callbacks=callbacks, test_problems=test, tokenizer=tokenizer,
                    run_info={"task": env_id, "seed": seed, "tasks": [t.name for t in task_members(task)]})


def fit_rlvr(algo: RLVR, source: Any, evaluate: Callable[[RLVR], dict[str, float]], *, run: RunDir | None,
             steps: int, max_seconds: float | None, progress: bool | None, evals: int, checkpoints: int,
             callbacks: tuple[Callable, ...], run_info: dict[str, Any], **summary_extras: Any) -> dict[str, Any]:
    """Evaluate the start, save the config, run the core Trainer for `steps` updates; the summary holds
    the initial and final evaluations, the sample count, the algorithm and `summary_extras`."""
    initial = evaluate(algo)
    if run is not None:
        run.save_config(algo.cfg, algo=algo.name, steps=steps, **run_info)
    trainer_cfg = TrainerConfig(max_steps=steps, max_seconds=max_seconds, log_every=max(steps // 100, 1),
                                eval_every=max(steps // evals, 1) if evals > 0 else 0,
                                checkpoint_every=max(steps // checkpoints, 1) if checkpoints > 0 else 0,
                                progress=progress)
    summary = Trainer(algo, source, trainer_cfg, run, evaluate, callbacks).fit()
    summary.update(initial_eval={f"eval/{k}": v for k, v in initial.items()}, samples=source.samples,
                   algorithm=algo, **summary_extras)
    return summary


def accuracy_curve(summary: dict[str, Any], records: list[dict[str, Any]],
                   key: str = "eval/greedy_acc") -> list[tuple[float, float]]:
    """(sampled responses, held-out metric) pairs, starting from the base model at 0 samples."""
    return [(0.0, summary["initial_eval"][key])] + [(r["samples"], r[key]) for r in records if key in r]
