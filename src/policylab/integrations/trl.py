"""policylab's objectives inside TRL (1.16): a `GRPOTrainer` whose advantages and loss are policylab's.

    from policylab.integrations.trl import PolicylabGRPOTrainer
    trainer = PolicylabGRPOTrainer(model, reward_funcs=[my_reward], args=GRPOConfig(...), train_dataset=ds,
                                   processing_class=tokenizer, objective="bapo")
    trainer.train()

Everything else is TRL's own: generation (vLLM mode included), reward functions and their weights,
accelerate / DeepSpeed, PEFT, logging. TRL offers no public hook for either piece, so the trainer overrides
its three narrowest private methods (checked against TRL 1.16): `_calculate_rewards` (keeps the gathered
rewards), `_generate_and_score_completions` (replaces `advantages` with the objective's, computed on the
whole gathered batch, each prompt's `num_generations` completions a group, then sliced for this process as
TRL slices its own), and `_compute_loss` (the objective's ratio, clip, loss form, aggregation and KL on TRL's
per-token log-probs). The math is `integrations.objectives`, i.e. policylab's code.

Rules: TRL's `loss_type`, `epsilon`, `scale_rewards` and `importance_sampling_level` are not read (the
objective defines them; `objective_overrides` changes its fields). The KL to the reference model is the
objective's `kl_coef`, and TRL computes the reference log-probs only when `args.beta` equals it, so the two
must agree. NFT and RFT read each completion's correctness: reward > 0. `thr` is refused (its advantage needs
the policy's per-token influence scores mid-generation). The aggregation is the method's own over the
micro-batch, divided by the gradient-accumulation steps, as TRL's `grpo` loss type is.
"""

from __future__ import annotations

from typing import Any

import torch

from policylab.core.errors import ConfigError
from policylab.integrations.objectives import group_advantages, objective_config, objective_loss, row_facts

try:
    from trl import GRPOTrainer
except ImportError as err:  # pragma: no cover - the bench extra installs TRL
    raise ConfigError(f"policylab.integrations.trl needs TRL (pip install 'trl>=1.16'): {err}") from None


class PolicylabGRPOTrainer(GRPOTrainer):
    """TRL's GRPOTrainer with a policylab objective (`objective`: grpo, dapo, dr_grpo, gspo, lite_ppo, bnpo,
    bapo, rec, opmd, asymre, red_drop, red_weight, nft, rft)."""

    def __init__(self, *args: Any, objective: str = "grpo", objective_overrides: dict[str, Any] | None = None,
                 **kwargs: Any):
        cfg = objective_config(objective, objective_overrides)
        if objective == "thr":
            raise ConfigError("objective = 'thr' is not allowed with TRL: its advantage needs the policy's per-token "
                              "influence scores, which TRL's advantage step does not have")
        trl_args = kwargs.get("args") if "args" in kwargs else (args[2] if len(args) > 2 else None)
        beta = getattr(trl_args, "beta", 0.0)
        if beta != cfg.kl_coef:
            raise ConfigError(f"args.beta = {beta} is not allowed with objective {objective!r}: it must equal the "
                              f"objective's kl_coef = {cfg.kl_coef} (set objective_overrides={{'kl_coef': ...}})")
        self.objective_name, self.objective_cfg = objective, cfg
        self._gathered_rewards: torch.Tensor | None = None
        super().__init__(*args, **kwargs)

    # -- advantages ---------------------------------------------------------------------------
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._gathered_rewards = rewards_per_func  # [B_global, n_funcs], gathered across processes
        return rewards_per_func

    def policylab_advantages(self, rewards: torch.Tensor, group_size: int) -> dict[str, torch.Tensor]:
        """Advantages and row facts [B] of gathered rewards [B] in generation order (groups of `group_size`)."""
        groups = (torch.arange(len(rewards)) // group_size).tolist()
        scores = torch.nan_to_num(rewards.detach().float().cpu(), nan=0.0)
        return {"advantages": group_advantages(self.objective_cfg, scores, groups),
                **{f"policylab_{k}": v for k, v in row_facts(scores, groups).items()}}

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        weights = self.reward_weights.to(self._gathered_rewards.device)
        rewards = (self._gathered_rewards * weights.unsqueeze(0)).nansum(dim=1)
        group_size = self.num_generations if self.model.training else self.num_generations_eval
        local = output["completion_ids"].size(0)
        start = self.accelerator.process_index * local  # TRL's own slice of the gathered batch
        device = output["completion_ids"].device
        for key, value in self.policylab_advantages(rewards, group_size).items():
            output[key] = value[start:start + local].to(device)
        return output

    # -- loss ---------------------------------------------------------------------------------
    def _compute_loss(self, model, inputs):
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        logps, _, _ = self._get_per_token_logps_and_entropies(model, input_ids, attention_mask,
                                                               completion_ids.size(1))
        old = inputs.get("old_per_token_logps")
        old = logps.detach() if old is None else old
        rows = {k: inputs[f"policylab_{k}"] for k in ("correct", "success_rate") if f"policylab_{k}" in inputs}
        loss, metrics = objective_loss(self.objective_cfg, logps, old, inputs["advantages"], mask, rows,
                                       inputs.get("ref_per_token_logps"), self.max_completion_length)
        mode = "train" if self.model.training else "eval"
        for key, value in metrics.items():
            self._metrics[mode][f"policylab/{key}"].append(self.accelerator.gather(value.detach()).nanmean().item())
        return loss / (self.current_gradient_accumulation_steps if mode == "train" else 1.0)


def dpo_token_rewards(model: Any, ref_model: Any, tokenizer: Any, prompts: list[str], responses: list[str],
                      beta: float) -> list[torch.Tensor]:
    """"Your language model is secretly a Q-function" on a model TRL's `DPOTrainer` trained: the per-token
    implicit reward beta log pi(y_t | s_t) / pi_ref(y_t | s_t) of each response (EOS included), one tensor
    per response, by `lm.preference.dpo_q`'s code (`token_logprobs`, `implicit_token_reward`). `model` and
    `ref_model` are the trained and reference causal LMs (`trainer.model`, `trainer.ref_model`), `beta` the
    trainer's (`trainer.args.beta`)."""
    from policylab.lm.policy import HFPolicy
    from policylab.lm.preference.dpo_q import implicit_token_reward, token_logprobs
    from policylab.lm.pretrain import teacher_forced_batch
    from policylab.lm.tasks.tokenizer import HFTokenizer

    if len(prompts) != len(responses):
        raise ConfigError(f"prompts and responses differ in length ({len(prompts)} and {len(responses)})")
    batch = teacher_forced_batch(HFTokenizer(tokenizer), list(prompts), list(responses))
    with torch.no_grad():
        logp = token_logprobs(HFPolicy(model).eval(), batch)
        ref_logp = token_logprobs(HFPolicy(ref_model).eval(), batch)
    rewards = implicit_token_reward(logp, ref_logp, beta)
    return [row[: int(n)] for row, n in zip(rewards, batch["response_mask"].sum(1))]


def iq_lm_loss_func(lam: float, gamma: float = 1.0):
    """Wulfmeier et al.'s IQ-Learn objective (`lm.iq_lm.iq_lm_loss`, Eq. 14) as TRL's `SFTTrainer(...,
    compute_loss_func=iq_lm_loss_func(lam))`: token-mean NLL plus lam x the token-mean squared implicit
    reward, on the completion tokens TRL labels (labels != -100, EOS included). lam = 0 is TRL's own NLL. The
    mean is over the micro-batch's tokens (TRL's num_items_in_batch is not read)."""
    from policylab.lm.iq_lm import iq_lm_loss

    if lam < 0:
        raise ConfigError(f"lam = {lam} is not allowed: must be >= 0 (0 is maximum likelihood)")

    def compute_loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        targets = labels[:, 1:]
        mask = (targets != -100).to(outputs.logits.dtype)
        loss, _ = iq_lm_loss(outputs.logits[:, :-1].float(), targets.clamp(min=0), mask.float(), lam, gamma)
        return loss

    return compute_loss
