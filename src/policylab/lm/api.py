"""The native RLVR engine on your own model, prompts and rewards, in the shape TRL users know.

    trainer = policylab.RLVRTrainer("path/to/hf-model", reward_funcs=[exact_match(extract=boxed)],
                                    train_dataset=dataset, objective="bapo", max_new_tokens=256)
    trainer.train(200)                       # updates; each samples prompts_per_step x group_size completions
    trainer.save_pretrained("out/")          # a folder transformers loads back, tokenizer included

`model` is a `transformers` causal LM or a local folder; `processing_class` its tokenizer (loaded from the
folder when omitted). `reward_funcs` take TRL's signature (`policylab.lm.rewards`), `train_dataset` TRL's
shapes (`policylab.lm.tasks.prompts`); `eval_dataset`, when given, is scored greedily `evals` times.
`objective` is any single-turn objective (`policylab list`); the other keywords are its config's fields
(`RLVRConfig`: prompts_per_step, group_size, max_new_tokens, lr, ...). Training is `trainer.fit_rlvr`, the
loop `policylab train <objective>` and the claim checks run.

`lora` (a `peft.LoraConfig` or its fields as a dict) trains LoRA adapters through peft, the base frozen;
`save_pretrained` then writes the merged model, which plain `transformers` loads. `gradient_checkpointing`
recomputes activations in the update's backward (transformers' own switch), trading time for memory.
`bf16=True` runs generation, the update's forward and evaluation under `torch.autocast` in bfloat16 (weights,
gradients and Adam stay float32; log-probs are taken in float32 from the bf16 logits).
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from policylab.core.api_classes import as_callbacks, open_run
from policylab.core.config import from_dict, validate
from policylab.core.errors import ConfigError
from policylab.core.registry import ALGORITHMS
from policylab.core.seeding import check_seed, seed_everything
from policylab.core.tracking import logging_to
from policylab.lm import SINGLE_TURN
from policylab.lm.evaluate import evaluate_lm
from policylab.lm.policy import HFPolicy
from policylab.lm.rewards import RewardFunction, RewardFunctions
from policylab.lm.rollout import RolloutSource
from policylab.lm.tasks.prompts import PromptTask
from policylab.lm.tasks.tokenizer import HFTokenizer
from policylab.lm.trainer import RLVR, check_context, fit_rlvr

REAL_MODEL_NEW_TOKENS = 256
"""max_new_tokens when a user's model is given and the field is not: room for reasoning before the answer."""


class RLVRTrainer:
    """RLVR on your own Hugging Face model (see the module docstring)."""

    def __init__(self, model: Any, reward_funcs: RewardFunction | Sequence[RewardFunction], *, train_dataset: Any,
                 processing_class: Any = None, objective: str = "grpo", reward_weights: Sequence[float] | None = None,
                 eval_dataset: Any = None, seed: int = 0, lora: Any = None, gradient_checkpointing: bool = False,
                 bf16: bool = False, **config: Any):
        if objective not in SINGLE_TURN:
            raise ConfigError(f"objective = {objective!r} is not allowed: known single-turn objectives: "
                              f"{', '.join(SINGLE_TURN)}")
        config.setdefault("max_new_tokens", REAL_MODEL_NEW_TOKENS)
        self.objective, self.seed = objective, check_seed(seed)
        self.cfg = validate(from_dict(ALGORITHMS.get(objective).config, config, source=f"RLVRTrainer({objective})"))
        self.model, self.hf_tokenizer = _model_and_tokenizer(model, processing_class)
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.lora, self.bf16 = lora is not None, bool(bf16)
        if self.lora:
            self.model = _with_lora(self.model, lora)
        # the lean decoding loop reads a plain Llama's modules; a peft-wrapped model decodes through HF's forward
        self.policy = HFPolicy(self.model, fast_decode=False if self.lora else None).to(self.cfg.device)
        self.tokenizer = HFTokenizer(self.hf_tokenizer)
        rewards = RewardFunctions(reward_funcs, reward_weights)
        self.task = PromptTask(train_dataset, rewards, self.hf_tokenizer)
        self.eval_task = PromptTask(eval_dataset, rewards, self.hf_tokenizer, "eval", "eval_dataset") \
            if eval_dataset is not None else None
        check_context(self.task, self.tokenizer, self.policy, self.cfg)
        self.algo: RLVR | None = None
        self.source: RolloutSource | None = None
        self.last_summary: dict[str, Any] = {}

    def train(self, steps: int, callback: Callable | Sequence[Callable] | None = None, *,
              run_dir: str | Path | None = None, fresh: bool = False, evals: int = 5, checkpoints: int = 5,
              max_seconds: float | None = None, progress: bool | None = None,
              log: str | Sequence[str] | None = None) -> RLVRTrainer:
        """`steps` updates (a later call goes on from here); evaluation only with an `eval_dataset`."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
            raise ConfigError(f"steps = {steps!r} is not allowed: must be an integer > 0 updates")
        if self.algo is None:
            seed_everything(self.seed)
            reference = copy.deepcopy(self.policy).eval() if self.cfg.kl_coef > 0 else None
            self.algo = RLVR(self.policy, self.cfg, reference, self.objective)
            self.source = RolloutSource(self.task, self.tokenizer, self.cfg, self.seed)
        problems = self.eval_task.problems if self.eval_task is not None else []

        def evaluate(algo: RLVR) -> dict[str, float]:
            if not problems:
                return {}
            result = evaluate_lm(algo.policy, self.tokenizer, self.eval_task, problems, self.cfg.max_new_tokens,
                                 ks=(1,), seed=self.seed)
            return {"eval_reward": result["greedy_acc"]}

        device = torch.device(self.cfg.device).type
        with logging_to(log), torch.autocast(device, dtype=torch.bfloat16, enabled=self.bf16):
            self.last_summary = fit_rlvr(self.algo, self.source, evaluate, run=open_run(run_dir, fresh), steps=steps,
                                         max_seconds=max_seconds, progress=progress,
                                         evals=evals if problems else 0, checkpoints=checkpoints if run_dir else 0,
                                         callbacks=as_callbacks(callback),
                                         run_info={"task": "prompts", "seed": self.seed})
        return self

    def save_pretrained(self, path: str | Path) -> Path:
        """The trained model and its tokenizer, as a folder `transformers.AutoModelForCausalLM` loads (LoRA
        adapters merged into a copy of the base)."""
        path = Path(path)
        model = copy.deepcopy(self.model).merge_and_unload() if self.lora else self.model
        # written beside the target and moved into place, so a killed save never leaves a half folder there
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        model.save_pretrained(staging)
        self.hf_tokenizer.save_pretrained(staging)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(staging, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return path


def _with_lora(model: Any, lora: Any) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError("lora needs peft: pip install 'policylab[lm]'") from None
    if isinstance(lora, dict):
        try:
            lora = LoraConfig(task_type="CAUSAL_LM", **lora)
        except TypeError as err:
            raise ConfigError(f"lora = {lora!r} is not allowed: {err}") from None
    if not isinstance(lora, LoraConfig):
        raise ConfigError(f"lora of type {type(lora).__name__} is not allowed: a peft.LoraConfig or a dict of its "
                          "fields")
    return get_peft_model(model, lora)


def _model_and_tokenizer(model: Any, tokenizer: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

    if isinstance(model, (str, Path)):
        if not Path(model).is_dir():
            raise ConfigError(f"model = {str(model)!r} is not a directory holding a Hugging Face model (nothing is "
                              "downloaded here: save the model locally first)")
        loaded = AutoModelForCausalLM.from_pretrained(model)
        return loaded, tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(model)
    if not isinstance(model, PreTrainedModel):
        raise ConfigError(f"model of type {type(model).__name__} is not allowed: a transformers causal LM or a local "
                          "model folder")
    if tokenizer is None:
        raise ConfigError("processing_class is required with a model object: give its tokenizer")
    return model, tokenizer
