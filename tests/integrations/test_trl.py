"""policylab's objectives inside TRL's GRPOTrainer (CPU, a tiny Llama built from a config): each objective
trains a few TRL steps with finite metrics; on one fixed batch the trainer's loss and gradient equal
policylab's native objective on the same per-token log-probs (which match a plain forward's), and its
advantages equal the native transform."""

from __future__ import annotations

import math
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
trl = pytest.importorskip("trl")
transformers = pytest.importorskip("transformers")
from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402

from policylab.core.errors import ConfigError  # noqa: E402
from policylab.integrations.objectives import SINGLE_TURN, objective_config  # noqa: E402
from policylab.integrations.trl import PolicylabGRPOTrainer  # noqa: E402
from policylab.lm.advantages import ADVANTAGES  # noqa: E402
from policylab.lm.losses.objective import RLVRObjective  # noqa: E402

WORDS = ["<pad>", "<eos>", "<unk>", "+", "=", *[str(d) for d in range(10)], "yes", "no"]
OBJECTIVES = [n for n in SINGLE_TURN if n != "thr"]
G, MAX_LEN = 4, 6
WIDTH = MAX_LEN - 1  # TRL pads a batch to its longest completion, which may be shorter than the maximum


def tokenizer():
    vocab = {w: i for i, w in enumerate(WORDS)}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>", pad_token="<pad>",
                                                unk_token="<unk>")


def tiny_llama(seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=64, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    return transformers.LlamaForCausalLM(config)


def says_yes(prompts, completions, **_):
    return [float("yes" in c.split()) for c in completions]


def trainer_for(objective: str, tmp_path, **overrides):
    settings = dict(output_dir=str(tmp_path), use_cpu=True, bf16=False, gradient_checkpointing=False,
                    per_device_train_batch_size=G, num_generations=G, max_completion_length=MAX_LEN, max_steps=2,
                    logging_steps=1, report_to="none", save_strategy="no", beta=0.0, learning_rate=1e-3, seed=0)
    args = trl.GRPOConfig(**{**settings, **overrides})
    prompts = Dataset.from_dict({"prompt": [f"{a} + {b} =" for a in range(4) for b in range(2)]})
    return PolicylabGRPOTrainer(tiny_llama(), reward_funcs=[says_yes], args=args, train_dataset=prompts,
                                processing_class=tokenizer(), objective=objective)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_each_objective_trains_trl_steps_with_finite_metrics(objective, tmp_path):
    trainer = trainer_for(objective, tmp_path)
    trainer.train()
    logged = [r for r in trainer.state.log_history if "loss" in r]
    assert len(logged) == 2 and all(math.isfinite(r["loss"]) for r in logged)
    assert all("policylab/loss/policy" in r for r in logged)  # the objective's loss ran, not TRL's
    assert all(math.isfinite(v) for r in logged for k, v in r.items() if k.startswith("policylab/"))


def fixed_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    prompt_ids = torch.randint(3, len(WORDS), (G, 3), generator=g)
    completion_ids = torch.randint(3, len(WORDS), (G, WIDTH), generator=g)
    lengths = torch.tensor([WIDTH, 3, 1, 4])
    completion_mask = (torch.arange(WIDTH) < lengths[:, None]).long()
    return {"prompt_ids": prompt_ids, "prompt_mask": torch.ones_like(prompt_ids), "completion_ids": completion_ids,
            "completion_mask": completion_mask}


def hand_logps(model, batch):
    """log pi(o_t | q, o_<t) by a plain forward and log-softmax: the native side of the comparison."""
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    logits = model(input_ids=ids, attention_mask=attention).logits[:, -WIDTH - 1:-1]
    return torch.log_softmax(logits.float(), -1).gather(-1, batch["completion_ids"][..., None]).squeeze(-1)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_on_one_fixed_batch_the_trl_loss_and_gradient_equal_native(objective, tmp_path):
    trainer = trainer_for(objective, tmp_path)
    model = trainer.model
    model.train()
    batch = fixed_batch()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        old = hand_logps(model, batch) + 0.2 * torch.randn(G, WIDTH, generator=g)  # an off-policy old policy
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0])
    facts = trainer.policylab_advantages(rewards, G)
    inputs = {**batch, "old_per_token_logps": old, **facts}

    trainer.current_gradient_accumulation_steps = 1
    model.zero_grad()
    loss = trainer._compute_loss(model, inputs)
    loss.backward()
    trl_grads = [p.grad.clone() for p in model.parameters()]

    cfg = objective_config(objective)
    native_adv = ADVANTAGES.get(cfg.advantage)(rewards.view(1, G), eps=cfg.adv_eps, cfg=cfg, metrics={}).view(-1)
    assert torch.allclose(facts["advantages"], native_adv, atol=1e-6, rtol=0) or objective == "red_drop"
    model.zero_grad()
    mask = batch["completion_mask"].float()
    rows = {"correct": facts["policylab_correct"], "success_rate": facts["policylab_success_rate"]}
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    trl_logps = trainer._get_per_token_logps_and_entropies(model, ids, attention, WIDTH)[0]
    # TRL scores the same tokens as a plain forward (its fused head rounds differently, about 1e-6)
    assert float(((trl_logps - hand_logps(model, batch)) * mask).abs().max()) <= 1e-4
    native, _ = RLVRObjective(cfg, default_constant=float(MAX_LEN))(trl_logps, old,
                                                                     facts["advantages"][:, None] * mask, mask,
                                                                     rows=rows)
    native.backward()
    assert rel_err(loss.detach(), native.detach()) <= 1e-6, objective
    worst = max(rel_err(a, p.grad) for a, p in zip(trl_grads, model.parameters()) if p.grad.abs().max() > 0)
    assert worst <= 1e-6, (objective, worst)


def test_trl_settings_that_would_disagree_with_the_objective_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="args.beta = 0.1 is not allowed with objective 'grpo'"):
        trainer_for("grpo", tmp_path, beta=0.1)
    with pytest.raises(ConfigError, match="objective = 'thr' is not allowed with TRL"):
        trainer_for("thr", tmp_path)
    with pytest.raises(ConfigError, match="objective = 'grpoo' is not allowed"):
        trainer_for("grpoo", tmp_path)


def test_dpo_token_rewards_on_a_model_trls_dpo_trainer_trained(tmp_path):
    """dpo_q's per-token implicit reward on a TRL DPOTrainer model: it sums, response by response, to
    beta (log pi(y) - log pi_ref(y)) computed by hand from the two models' plain forwards."""
    from policylab.integrations.trl import dpo_token_rewards

    tok = tokenizer()
    tiny_llama().save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    pairs = Dataset.from_dict({"prompt": ["1 + 2 =", "2 + 2 ="] * 4, "chosen": ["3", "4"] * 4,
                               "rejected": ["no", "no"] * 4})
    args = trl.DPOConfig(output_dir=str(tmp_path / "dpo"), use_cpu=True, bf16=False, per_device_train_batch_size=4,
                         max_steps=3, learning_rate=1e-2, report_to="none", save_strategy="no", beta=0.1,
                         logging_steps=1)
    trainer = trl.DPOTrainer(str(tmp_path / "base"), args=args, train_dataset=pairs, processing_class=tok)
    trainer.train()
    model = trainer.model
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    rewards = dpo_token_rewards(model, ref, tok, ["1 + 2 =", "2 + 2 ="], ["3", "no"], beta=args.beta)
    assert [len(r) for r in rewards] == [2, 2]  # the answer token and EOS

    def sequence_logp(m, prompt, response):
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        full = torch.tensor([ids + tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]])
        with torch.no_grad():
            logp = torch.log_softmax(m(full).logits[0, :-1].float(), -1)
        return float(logp[torch.arange(len(ids) - 1, full.shape[1] - 1), full[0, len(ids):]].sum())

    for reward, (prompt, response) in zip(rewards, [("1 + 2 =", "3"), ("2 + 2 =", "no")]):
        by_hand = args.beta * (sequence_logp(model, prompt, response) - sequence_logp(ref, prompt, response))
        assert abs(float(reward.sum()) - by_hand) <= 1e-5
    assert float(rewards[0].sum()) > float(rewards[1].sum())  # DPO raised the chosen answer over "no"


def test_iq_lm_runs_in_trls_sft_trainer_and_equals_the_native_loss(tmp_path):
    from policylab.integrations.trl import iq_lm_loss_func
    from policylab.lm.iq_lm import iq_lm_loss
    from policylab.lm.policy import HFPolicy
    from policylab.lm.pretrain import teacher_forced_batch
    from policylab.lm.tasks.tokenizer import HFTokenizer

    tok, model = tokenizer(), tiny_llama()
    prompts, answers = ["1 + 2 =", "2 + 2 = 4 + 1 ="], ["3", "5 yes"]
    # TRL's layout: prompt + completion + EOS in one row, labels -100 outside the completion
    rows = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    done = [tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for a in answers]
    width = max(len(r) + len(d) for r, d in zip(rows, done))
    ids = torch.full((2, width), tok.pad_token_id)
    labels = torch.full((2, width), -100)
    for i, (r, d) in enumerate(zip(rows, done)):
        ids[i, :len(r) + len(d)] = torch.tensor(r + d)
        labels[i, len(r):len(r) + len(d)] = torch.tensor(d)
    attention = (labels != -100) | (torch.arange(width) < torch.tensor([len(r) for r in rows])[:, None])
    outputs = model(input_ids=ids, attention_mask=attention.long())
    ours = iq_lm_loss_func(lam=0.5)(outputs, labels)
    assert torch.allclose(iq_lm_loss_func(lam=0.0)(outputs, labels),
                          model(input_ids=ids, attention_mask=attention.long(), labels=labels).loss, atol=1e-6)
    batch = teacher_forced_batch(HFTokenizer(tok), prompts, answers)  # policylab's own layout (left-padded)
    out = HFPolicy(model).response_outputs(batch["input_ids"], batch["attention_mask"], batch["prompt_len"],
                                           want_entropy=False, want_logits=True)
    native, _ = iq_lm_loss(out.logits, batch["input_ids"][:, batch["prompt_len"]:], batch["response_mask"], 0.5)
    assert abs(float(ours) - float(native)) <= 1e-5

    data = Dataset.from_dict({"prompt": prompts * 4, "completion": [" " + a for a in answers] * 4})
    args = trl.SFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=4,
                         max_steps=2, logging_steps=1, report_to="none", save_strategy="no", learning_rate=1e-3)
    trainer = trl.SFTTrainer(model, args=args, train_dataset=data, processing_class=tok,
                             compute_loss_func=iq_lm_loss_func(lam=0.5))
    trainer.train()
    assert all(math.isfinite(r["loss"]) for r in trainer.state.log_history if "loss" in r)


def test_the_gpu_check_script_runs_dry_on_cpu(tmp_path):
    """benchmarks/integrations_gpu_check.py is meant for a lent device; its --tiny dry run keeps it working."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "integrations_gpu_check.py"
    proc = subprocess.run([sys.executable, str(script), "--tiny", "--device", "cpu", "--steps", "1", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "integrations_gpu_check_dry_run.json").read_text())
    assert result["trl"]["all_losses_finite"] and result["trl"]["policylab_metrics_logged"]
    assert result["verl"]["registry"] == "ok" and result["verl"]["loss_max_rel_err_vs_native"] <= 1e-6


def test_the_objectives_kl_to_trls_reference_model(tmp_path):
    """kl_coef > 0 with args.beta equal: TRL computes the reference log-probs and the objective's k3 KL uses
    them; on a fixed batch the loss equals the native objective with the same reference log-probs."""
    folder = tmp_path / "base"
    tiny_llama().save_pretrained(folder)  # TRL builds its reference model from the model's path
    tokenizer().save_pretrained(folder)
    args = trl.GRPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, gradient_checkpointing=False,
                          per_device_train_batch_size=G, num_generations=G, max_completion_length=MAX_LEN,
                          max_steps=2, logging_steps=1, report_to="none", save_strategy="no", beta=0.05,
                          learning_rate=1e-2, seed=0)
    prompts = Dataset.from_dict({"prompt": [f"{a} + {b} =" for a in range(4) for b in range(2)]})
    trainer = PolicylabGRPOTrainer(str(folder), reward_funcs=[says_yes], args=args, train_dataset=prompts,
                                   processing_class=tokenizer(), objective="grpo",
                                   objective_overrides={"kl_coef": 0.05})
    trainer.train()
    logged = [r for r in trainer.state.log_history if "loss" in r]
    assert all("policylab/kl_ref" in r and math.isfinite(r["policylab/kl_ref"]) for r in logged)

    model, batch = trainer.model, fixed_batch()
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    with torch.no_grad():
        ref = trainer._get_per_token_logps_and_entropies(trainer.ref_model, ids, attention, WIDTH)[0]
    assert float(ref.abs().sum()) > 0
    facts = trainer.policylab_advantages(torch.tensor([1.0, 0.0, 1.0, 0.0]), G)
    trainer.current_gradient_accumulation_steps = 1
    loss = trainer._compute_loss(model, {**batch, **facts, "ref_per_token_logps": ref})
    logps = trainer._get_per_token_logps_and_entropies(model, ids, attention, WIDTH)[0]
    mask = batch["completion_mask"].float()
    native, metrics = RLVRObjective(objective_config("grpo", {"kl_coef": 0.05}), default_constant=float(MAX_LEN))(
        logps, logps.detach(), facts["advantages"][:, None] * mask, mask, ref)
    assert rel_err(loss.detach(), native.detach()) <= 1e-6 and float(metrics["kl_ref"]) > 0
