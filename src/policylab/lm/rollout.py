"""Groups of responses -> a batch with masks, behaviour log-probs, rewards; and the rollout source.

The source is the LM pillar's batch source for the core Trainer: each call samples prompts,
generates G responses per prompt with the behaviour policy (the live policy, or a snapshot k
updates old when `staleness` = k), scores them with the task and applies the shaping slot.
"""

from __future__ import annotations

import copy
import random
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import torch

from policylab.lm.generate import Generation, SamplingConfig, generate
from policylab.lm.losses.shaping import SHAPERS
from policylab.lm.policy import CausalPolicy
from policylab.lm.tasks import Problem, Task, TaskMix, Tokenizer, prompt_ids


@dataclass
class RolloutBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompt_len: int
    response_mask: torch.Tensor
    behaviour_logprobs: torch.Tensor
    truncated: torch.Tensor
    group_size: int
    rewards: torch.Tensor
    """[B] the reward the advantage slot sees (exact match, plus any shaping)."""
    exact: torch.Tensor
    """[B] exact-match correctness, untouched by shaping."""
    dense: torch.Tensor
    problems: list[Problem]
    """One per group."""
    texts: list[str]

    @property
    def num_groups(self) -> int:
        return self.rewards.shape[0] // self.group_size if self.group_size else 0

    def with_rewards(self, rewards: torch.Tensor) -> RolloutBatch:
        return replace(self, rewards=rewards)

    def with_response_mask(self, mask: torch.Tensor) -> RolloutBatch:
        return replace(self, response_mask=mask)

    def select_groups(self, keep: torch.Tensor) -> RolloutBatch:
        """The groups where `keep` [num_groups] is true, in order."""
        rows = keep.repeat_interleave(self.group_size)
        groups = keep.nonzero().flatten().tolist()
        index = rows.nonzero().flatten()
        return RolloutBatch(
            self.input_ids[index], self.attention_mask[index], self.prompt_len, self.response_mask[index],
            self.behaviour_logprobs[index], self.truncated[index], self.group_size, self.rewards[index],
            self.exact[index], self.dense[index], [self.problems[g] for g in groups],
            [self.texts[i] for i in index.tolist()])

    @staticmethod
    def concat(parts: list[RolloutBatch], pad_id: int) -> RolloutBatch:
        """Join batches of different widths: prompts re-padded on the left, responses on the right."""
        if len(parts) == 1:
            return parts[0]
        P = max(b.prompt_len for b in parts)
        R = max(b.response_mask.shape[1] for b in parts)

        def pad(b: RolloutBatch, t: torch.Tensor, value: float, with_prompt: bool) -> torch.Tensor:
            left = P - b.prompt_len if with_prompt else 0
            right = R - (t.shape[1] - (b.prompt_len if with_prompt else 0))
            return torch.nn.functional.pad(t, (left, right), value=value)

        return RolloutBatch(
            torch.cat([pad(b, b.input_ids, pad_id, True) for b in parts]),
            torch.cat([pad(b, b.attention_mask, 0, True) for b in parts]),
            P,
            torch.cat([pad(b, b.response_mask, 0.0, False) for b in parts]),
            torch.cat([pad(b, b.behaviour_logprobs, 0.0, False) for b in parts]),
            torch.cat([b.truncated for b in parts]), parts[0].group_size,
            torch.cat([b.rewards for b in parts]), torch.cat([b.exact for b in parts]),
            torch.cat([b.dense for b in parts]), [p for b in parts for p in b.problems],
            [t for b in parts for t in b.texts])


def score_generation(gen: Generation, problems: list[Problem], group_size: int, task: Task | TaskMix,
                     tokenizer: Tokenizer) -> RolloutBatch:
    texts = [tokenizer.decode(row.tolist()) for row in gen.responses]
    repeated = [problems[i // group_size] for i in range(len(texts))]
    if hasattr(task, "score_batch"):  # one call for the batch: a user's reward functions take batches, as TRL's do
        scores = task.score_batch(repeated, texts)
    else:
        scores = [task.score(problem, text) for problem, text in zip(repeated, texts)]
    device = gen.truncated.device
    exact = torch.tensor([s.exact for s in scores], device=device)
    # a response cut at max_new_tokens has no final answer: it earns 0 whatever its prefix says
    exact = exact * (~gen.truncated).float()
    dense = torch.tensor([s.dense for s in scores], device=device) * (~gen.truncated).float()
    return RolloutBatch(gen.input_ids, gen.attention_mask, gen.prompt_len, gen.response_mask, gen.logprobs,
                        gen.truncated, group_size, exact.clone(), exact, dense, problems, texts)


class RolloutSource:
    """Batch source: prompts x G responses, scored and shaped, from a possibly stale behaviour policy."""

    def __init__(self, task: Task | TaskMix, tokenizer: Tokenizer, cfg: Any, seed: int, reward_model: Any = None):
        self.task, self.tokenizer, self.cfg = task, tokenizer, cfg
        self.reward_model = reward_model
        """When set, its `score(problems, responses)` replaces exact match as the reward (RLHF against a
        learned reward); exact match and the dense score stay in the batch for evaluation."""
        self.rng = random.Random(seed)
        self.generator = torch.Generator(device=cfg.device).manual_seed(seed)
        self.sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                       top_p=cfg.top_p)
        self.shapers = [SHAPERS.get(name) for name in cfg.shaping]
        self.snapshots: deque[dict[str, torch.Tensor]] = deque(maxlen=cfg.staleness + 1)
        self._behaviour: CausalPolicy | None = None
        self.samples = 0
        self.batches = 0
        self._stats: dict[str, list[float]] = {}

    def behaviour_policy(self, policy: CausalPolicy) -> CausalPolicy:
        """The live policy, or its copy from `staleness` updates ago (the oldest snapshot kept)."""
        if self.cfg.staleness == 0:
            return policy
        self.snapshots.append({k: v.detach().clone() for k, v in policy.state_dict().items()})
        if self._behaviour is None:
            self._behaviour = copy.deepcopy(policy).eval()
        self._behaviour.load_state_dict(self.snapshots[0])
        return self._behaviour

    def _rollout(self, policy: CausalPolicy, prompts: int) -> RolloutBatch:
        problems = self.task.sample(prompts, "train", self.rng)
        G = self.cfg.group_size
        ids = [prompt_ids(self.tokenizer, p.prompt) for p in problems for _ in range(G)]
        was_training = policy.training
        policy.eval()
        gen = generate(policy, ids, self.sampling, self.tokenizer.eos_id, self.tokenizer.pad_id, self.generator)
        policy.train(was_training)
        self.samples += len(ids)
        batch = score_generation(gen, problems, G, self.task, self.tokenizer)
        if self.reward_model is not None:
            proxy = self.reward_model.score([p for p in problems for _ in range(G)], batch.texts)
            batch = batch.with_rewards(proxy.to(batch.rewards.device, batch.rewards.dtype))
        for shaper in self.shapers:
            if not getattr(shaper, "filters_groups", False):
                batch = shaper(batch, self.cfg)
        return batch

    def next_batch(self, algo: Any) -> RolloutBatch:
        behaviour = self.behaviour_policy(algo.policy)
        want = self.cfg.prompts_per_step
        filters = [s for s in self.shapers if getattr(s, "filters_groups", False)]
        kept, generated, raw_correct, raw_rows = [], 0, 0.0, 0
        for _ in range(self.cfg.max_gen_batches if filters else 1):
            batch = self._rollout(behaviour, want)
            generated += batch.num_groups
            raw_correct += float(batch.exact.sum())
            if self.reward_model is not None:
                self._stats.setdefault("rollout/proxy_reward", []).append(float(batch.rewards.mean()))
            raw_rows += batch.exact.numel()
            for shaper in filters:
                batch = shaper(batch, self.cfg)
            kept.append(batch)
            if sum(b.num_groups for b in kept) >= want:
                break
        batch = RolloutBatch.concat(kept, self.tokenizer.pad_id)
        if batch.num_groups > want:
            batch = batch.select_groups(torch.arange(batch.num_groups) < want)
        self.batches += 1
        self._stats.setdefault("rollout/reward", []).append(raw_correct / max(raw_rows, 1))
        self._stats.setdefault("rollout/kept_group_frac", []).append(batch.num_groups / max(generated, 1))
        return batch

    def metrics(self) -> dict[str, float]:
        out = {k: sum(v) / len(v) for k, v in self._stats.items()}
        self._stats = {}
        return out

    def counters(self) -> dict[str, float]:
        return {"samples": self.samples}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate(), "generator": self.generator.get_state(), "samples": self.samples,
                "batches": self.batches, "snapshots": list(self.snapshots)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.setstate(state["rng"])
        self.generator.set_state(state["generator"])
        self.samples, self.batches = state["samples"], state["batches"]
        self.snapshots.clear()
        self.snapshots.extend(state["snapshots"])
