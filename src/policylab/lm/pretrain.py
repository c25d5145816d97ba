"""Base models trained here: supervised warm start of the tiny GPT on a task mix.

No pretrained weights can be downloaded, so RL starts from a model this module trains: answer-only
cross-entropy on train-split questions (test and validation questions never appear), stopped as
soon as the greedy pass rate on validation questions reaches `target_pass` so that RL has room
above it (the notes' testbed, §7.4). The result is cached under `models_dir()` keyed by a hash of
the recipe; the same recipe and seed give the same weights (one thread, fixed seeds).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from policylab.core.atomic import atomic_write_bytes, exclusive
from policylab.core.config import Config, param, to_dict
from policylab.core.errors import CheckpointError, ConfigError
from policylab.core.provenance import record_model
from policylab.core.registry import Registry
from policylab.core.run import RunDir
from policylab.core.seeding import seed_everything
from policylab.core.trainer import Trainer, TrainerConfig
from policylab.lm.evaluate import evaluate_lm
from policylab.lm.generate import left_pad
from policylab.lm.policy import CausalPolicy, HFPolicy, TinyGPT, TinyGPTConfig
from policylab.lm.tasks import CharTokenizer, HFTokenizer, Problem, Tokenizer, distinct_problems, get_task, prompt_ids

FORMAT = "policylab-lm-base-v1"
BASE_MODELS: Registry = Registry("base model")


@dataclass(frozen=True)
class PretrainConfig(Config):
    task: str = "mix"
    """Task or mix the base model learns (see `policylab.lm.tasks.get_task`)."""
    n_layer: int = param(4, gt=0)
    n_head: int = param(4, gt=0)
    d_model: int = param(128, gt=0)
    block_size: int = param(48, gt=0)
    max_steps: int = param(4000, gt=0)
    batch_size: int = param(64, gt=0)
    lr: float = param(2e-3, gt=0)
    warmup: int = param(100, ge=0)
    weight_decay: float = param(0.01, ge=0)
    target_pass: float = param(0.3, gt=0, le=1)
    """Stop once the greedy validation pass rate reaches this (the base must leave RL room)."""
    eval_every: int = param(250, gt=0)
    eval_prompts: int = param(200, gt=0)
    """Distinct validation questions for the stopping rule (and test questions for the report)."""
    max_new_tokens: int = param(12, gt=0)
    seed: int = 0

    # What the recipe trains on and how it is judged; a recipe of another kind (multi-turn
    # demonstrations) overrides these three.
    def sft_source(self, tokenizer: Tokenizer) -> Any:
        return SFTSource(get_task(self.task), tokenizer, self.batch_size, self.seed)

    def validation(self, tokenizer: Tokenizer) -> Any:
        """policy -> the greedy validation pass rate that the stopping rule reads."""
        task = get_task(self.task)
        val = distinct_problems(task, self.eval_prompts, "val", seed=self.seed + 1)
        return lambda policy: evaluate_lm(policy, tokenizer, task, val, self.max_new_tokens, ks=())["greedy_acc"]

    def test_report(self, tokenizer: Tokenizer) -> Any:
        """policy -> the held-out metrics stored with the base model."""
        task = get_task(self.task)
        test = distinct_problems(task, self.eval_prompts, "test", seed=self.seed + 2)
        return lambda policy: evaluate_lm(policy, tokenizer, task, test, self.max_new_tokens, ks=(1, 16),
                                          seed=self.seed)


BASE_MODELS.add("tiny-mix", PretrainConfig())
BASE_MODELS.add("tiny-gcd", PretrainConfig(task="gcd", n_layer=2, n_head=2, d_model=64, max_steps=1500,
                                            target_pass=0.25, eval_every=100, eval_prompts=100))


def models_dir() -> Path:
    return Path(os.environ.get("POLICYLAB_MODELS", Path.home() / ".cache" / "policylab" / "models"))


def recipe_hash(cfg: PretrainConfig) -> str:
    text = json.dumps({"format": FORMAT, **to_dict(cfg)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def teacher_forced_batch(tokenizer: Tokenizer, prompts: list[str], responses: list[str]) -> dict[str, Any]:
    """[left-padded BOS+prompt | response+EOS right-padded] rows and the response mask."""
    ids, mask = left_pad([prompt_ids(tokenizer, p) for p in prompts], tokenizer.pad_id)
    rows = [tokenizer.encode(r) + [tokenizer.eos_id] for r in responses]
    width = max(len(r) for r in rows)
    resp = torch.full((len(rows), width), tokenizer.pad_id, dtype=torch.long)
    resp_mask = torch.zeros(len(rows), width)
    for i, r in enumerate(rows):
        resp[i, :len(r)] = torch.tensor(r)
        resp_mask[i, :len(r)] = 1.0
    return {"input_ids": torch.cat([ids, resp], 1), "attention_mask": torch.cat([mask, resp_mask.long()], 1),
            "prompt_len": ids.shape[1], "response_mask": resp_mask}


def sft_batch(tokenizer: Tokenizer, problems: list[Problem]) -> dict[str, Any]:
    """The answer-only supervised batch of `problems` (see `teacher_forced_batch`)."""
    return teacher_forced_batch(tokenizer, [p.prompt for p in problems], [p.answer for p in problems])


class SFT:
    """Answer-only maximum likelihood, AdamW with linear warmup and cosine decay to 10%."""

    name = "sft"

    def __init__(self, policy: CausalPolicy, cfg: PretrainConfig):
        self.policy, self.cfg = policy, cfg
        self.optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           betas=(0.9, 0.95))
        self.updates = 0

    def _lr(self) -> float:
        cfg = self.cfg
        if self.updates < cfg.warmup:
            return cfg.lr * (self.updates + 1) / cfg.warmup
        progress = min((self.updates - cfg.warmup) / max(cfg.max_steps - cfg.warmup, 1), 1.0)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The token-mean negative log-likelihood of the answers (subclasses change only this)."""
        out = self.policy.response_outputs(batch["input_ids"], batch["attention_mask"], batch["prompt_len"],
                                           want_entropy=False)
        mask = batch["response_mask"]
        loss = -(out.logprobs * mask).sum() / mask.sum()
        return loss, {"loss/nll": loss.detach()}

    def update(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr()
        loss, metrics = self.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), 1.0)
        self.optimizer.step()
        self.updates += 1
        return {**metrics, "grad_norm": grad_norm}

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = state["updates"]


class SFTSource:
    """Supervised batches of train-split problems: answer-only by default, or whatever `make_batch`
    (tokenizer, problems, rng) builds from them (multi-turn demonstrations)."""

    def __init__(self, task: Any, tokenizer: Tokenizer, batch_size: int, seed: int,
                 make_batch: Callable[[Tokenizer, list[Problem], random.Random], dict[str, Any]] | None = None):
        self.task, self.tokenizer, self.batch_size = task, tokenizer, batch_size
        self.make_batch = make_batch
        self.rng = random.Random(seed)
        self.examples = 0

    def next_batch(self, algo: Any) -> dict[str, Any]:
        self.examples += self.batch_size
        problems = self.task.sample(self.batch_size, "train", self.rng)
        if self.make_batch is None:
            return sft_batch(self.tokenizer, problems)
        return self.make_batch(self.tokenizer, problems, self.rng)

    def metrics(self) -> dict[str, float]:
        return {}

    def counters(self) -> dict[str, float]:
        return {"examples": self.examples}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate(), "examples": self.examples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.setstate(state["rng"])
        self.examples = state["examples"]


def model_config(cfg: PretrainConfig, tokenizer: Tokenizer) -> TinyGPTConfig:
    return TinyGPTConfig(vocab_size=tokenizer.vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer,
                         n_head=cfg.n_head, d_model=cfg.d_model)


def base_model_path(name_or_cfg: str | PretrainConfig) -> Path:
    cfg = BASE_MODELS.get(name_or_cfg) if isinstance(name_or_cfg, str) else name_or_cfg
    label = name_or_cfg if isinstance(name_or_cfg, str) else "custom"
    return models_dir() / f"{label}-{recipe_hash(cfg)}.pt"


def pretrain(name_or_cfg: str | PretrainConfig = "tiny-mix", progress: bool | None = None,
             force: bool = False) -> Path:
    """Train (or find in the cache) a base model; returns the path of its file."""
    cfg = BASE_MODELS.get(name_or_cfg) if isinstance(name_or_cfg, str) else name_or_cfg
    path = base_model_path(name_or_cfg)
    if path.exists() and not force:
        load_base(path)  # a damaged cache file raises here rather than later
        return path
    with exclusive(path):  # parallel workers wanting the same base model build it once
        if path.exists() and not force:
            return path
        _train_base(cfg, path, progress, fresh=force)
    return path


def _train_base(cfg: PretrainConfig, path: Path, progress: bool | None, fresh: bool) -> None:
    """Train with checkpoints in models_dir()/runs, so that a killed build resumes where it stopped."""
    seed_everything(cfg.seed)
    tokenizer = CharTokenizer()
    policy = TinyGPT(model_config(cfg, tokenizer))
    val_pass, test_report = cfg.validation(tokenizer), cfg.test_report(tokenizer)
    evaluate = lambda algo: {"val_pass": val_pass(algo.policy)}
    run = RunDir(models_dir() / "runs", path.stem, "main", cfg.seed)
    if fresh:
        shutil.rmtree(run.path)
        run = RunDir(models_dir() / "runs", path.stem, "main", cfg.seed)
    run.save_config(cfg, algo="sft")
    trainer_cfg = TrainerConfig(max_steps=cfg.max_steps, log_every=25, eval_every=cfg.eval_every,
                                checkpoint_every=cfg.eval_every, progress=progress)
    summary = Trainer(SFT(policy, cfg), cfg.sft_source(tokenizer), trainer_cfg, run, evaluate,
                      stop_when=lambda r: r["eval/val_pass"] >= cfg.target_pass).fit()
    report = test_report(policy)
    meta = {"recipe": to_dict(cfg), "steps": summary["steps"], "stopped_by": summary["stopped_by"],
            "val_pass": summary["eval"].get("eval/val_pass"), "test": report}
    save_base(path, policy, tokenizer, meta)


def save_base(path: Path, policy: TinyGPT, tokenizer: CharTokenizer, meta: dict[str, Any]) -> None:
    payload = {"format": FORMAT, "model_config": to_dict(policy.cfg), "tokenizer": tokenizer.state(),
               "state_dict": policy.state_dict(), "meta": meta}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_base(path: str | Path) -> tuple[TinyGPT, CharTokenizer, dict[str, Any]]:
    path = Path(path)
    try:
        data = path.read_bytes()
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"base model {path} does not exist; `policylab lm pretrain` builds one") from None
    except Exception as err:  # noqa: BLE001 - a torn or foreign file: one line, not a pickle traceback
        raise CheckpointError(f"base model {path} cannot be read ({type(err).__name__}); delete it and rebuild "
                              "it with `policylab lm pretrain`") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a policylab base model (format {FORMAT})")
    policy = TinyGPT(TinyGPTConfig(**payload["model_config"]))
    policy.load_state_dict(payload["state_dict"])
    record_model(path.stem, hashlib.sha256(data).hexdigest())
    return policy, CharTokenizer(payload["tokenizer"]["charset"]), payload["meta"]


def load_policy(spec: str, progress: bool | None = None) -> tuple[CausalPolicy, Tokenizer]:
    """A starting policy from a base-model name (built if missing), a base-model file or `hf:<dir>`."""
    if spec.startswith("hf:"):
        from transformers import AutoTokenizer

        folder = spec[3:]
        if not Path(folder).is_dir():
            raise ConfigError(f"base_model = {spec!r}: {folder} is not a directory holding a Hugging Face model")
        return HFPolicy.from_pretrained(folder), HFTokenizer(AutoTokenizer.from_pretrained(folder))
    if spec in BASE_MODELS:
        policy, tokenizer, _ = load_base(pretrain(spec, progress=progress))
        return policy, tokenizer
    if Path(spec).is_file():
        policy, tokenizer, _ = load_base(spec)
        return policy, tokenizer
    raise ConfigError(f"base_model = {spec!r} is not allowed: give a base-model name "
                      f"({', '.join(BASE_MODELS.names())}), a base-model file, or hf:<directory>")
