"""The native RLVR engine on a user's own Hugging Face model, prompts and TRL-signature rewards."""

from __future__ import annotations

import math
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402

import policylab  # noqa: E402
from policylab.core.errors import ConfigError  # noqa: E402
from policylab.lm.rewards import RewardFunctions, answer_tag, boxed, exact_match, last_number, regex  # noqa: E402

WORDS = ["<pad>", "<eos>", "<unk>", "+", "=", *[str(d) for d in range(10)], "yes", "no", "user:", "bot:"]


def tokenizer(chat: bool = False):
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>", pad_token="<pad>",
                                               unk_token="<unk>")
    if chat:
        tok.chat_template = ("{% for m in messages %}user: {{ m['content'] }} {% endfor %}"
                             "{% if add_generation_prompt %}bot:{% endif %}")
    return tok


def tiny_llama(seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=64, pad_token_id=0, eos_token_id=1)
    return transformers.LlamaForCausalLM(config)


def says_yes(prompts, completions, **_):
    return [float("yes" in c.split()) for c in completions]


PROMPTS = [f"{a} + {b} =" for a in range(5) for b in range(5)]


def yes_rate(trainer, n: int = 200) -> float:
    batch = trainer.source._rollout(trainer.policy, n // trainer.cfg.group_size)
    return float(batch.rewards.mean())


def test_grpo_on_a_users_model_learns_the_users_reward_against_its_start(tmp_path):
    """Margin fixed before the run: the share of completions containing "yes" must rise by 0.25 in 40 updates."""
    trainer = policylab.RLVRTrainer(tiny_llama(), [says_yes], train_dataset=PROMPTS, processing_class=tokenizer(),
                                    objective="grpo", prompts_per_step=4, group_size=8, max_new_tokens=4, lr=3e-3,
                                    seed=0)
    from policylab.lm.rollout import RolloutSource
    trainer.source = RolloutSource(trainer.task, trainer.tokenizer, trainer.cfg, 123)  # a probe, not the run's
    before = yes_rate(trainer)
    trainer.source = None
    trainer.train(40, progress=False)
    after = yes_rate(trainer)
    assert after >= before + 0.25, (before, after)
    folder = trainer.save_pretrained(tmp_path / "model")
    loaded = transformers.AutoModelForCausalLM.from_pretrained(folder)
    ids = torch.tensor([[3, 5, 6]])
    assert torch.allclose(loaded(ids).logits, trainer.model(ids).logits, atol=1e-6)
    assert transformers.AutoTokenizer.from_pretrained(folder).convert_tokens_to_ids("yes") == WORDS.index("yes")


def test_conversational_prompts_use_the_chat_template_and_reward_columns_pass_through():
    seen = {}

    def spy(prompts, completions, answer, **_):
        seen.update(prompts=prompts, completions=completions, answer=answer)
        return [0.0] * len(completions)

    rows = [{"prompt": [{"role": "user", "content": "1 + 2 ="}], "answer": "3"}]
    trainer = policylab.RLVRTrainer(tiny_llama(), spy, train_dataset=rows, processing_class=tokenizer(chat=True),
                                    prompts_per_step=1, group_size=2, max_new_tokens=3)
    assert trainer.task.problems[0].prompt == "user: 1 + 2 = bot:"
    trainer.train(1, progress=False)
    assert seen["answer"] == ["3", "3"] and seen["completions"][0][0]["role"] == "assistant"


def test_extractors_and_exact_match():
    text = "so 12 + 30 = 42. Thus \\boxed{\\frac{1}{2}} and <answer> 1,234 </answer>"
    assert last_number(text) == "1234" and boxed(text) == "\\frac{1}{2}" and answer_tag(text) == "1,234"
    assert regex(r"= (\d+)")(text) == "42" and last_number("none here") is None and boxed("\\boxed{open") is None
    reward = exact_match(extract=answer_tag)
    assert reward(["q", "q", "q"], [text, "<answer>1234.0</answer>", "no tag"], answer=[1234, 1234, 1234]) == \
        [1.0, 1.0, 0.0]
    combined = RewardFunctions([says_yes, lambda prompts, completions, **_: [None, 2.0]], [1.0, 0.5])
    assert combined(["a", "b"], ["yes", "no"], {}).tolist() == [1.0, 1.0]


def test_bad_input_is_one_line():
    with pytest.raises(ConfigError, match="objective = 'grpoo' is not allowed"):
        policylab.RLVRTrainer(tiny_llama(), says_yes, train_dataset=PROMPTS, processing_class=tokenizer(),
                              objective="grpoo")
    with pytest.raises(ConfigError, match="train_dataset row 0 has no 'prompt'"):
        policylab.RLVRTrainer(tiny_llama(), says_yes, train_dataset=[{"text": "1 + 1 ="}], processing_class=tokenizer())
    with pytest.raises(ConfigError, match="has no chat template"):
        policylab.RLVRTrainer(tiny_llama(), says_yes, train_dataset=[[{"role": "user", "content": "1"}]],
                              processing_class=tokenizer())
    with pytest.raises(ConfigError, match="is not a directory holding a Hugging Face model"):
        policylab.RLVRTrainer("no/such/model", says_yes, train_dataset=PROMPTS)
    with pytest.raises(ConfigError, match="reward_weights has 1 entries for 2 reward functions"):
        RewardFunctions([says_yes, says_yes], [1.0])
    with pytest.raises(ConfigError, match="regular expression"):
        regex("(unclosed")


def test_a_reward_ensemble_is_one_reward_function():
    from policylab.lm.rewards import ensemble

    members = [lambda prompts, completions, k=k, **_: [float(len(c)) * k for c in completions] for k in (1, 2, 4)]
    scores = torch.tensor([[1.0, 2.0], [2.0, 4.0], [4.0, 8.0]], dtype=torch.float64)  # [k, B] for "a", "bb"
    assert ensemble(members, "mean")(["p", "p"], ["a", "bb"]) == scores.mean(0).tolist()
    assert ensemble(members, "wco")(["p", "p"], ["a", "bb"]) == [1.0, 2.0]
    uwo = ensemble(members, "uwo", uwo_weight=0.1)(["p", "p"], ["a", "bb"])
    assert uwo == (scores.mean(0) - 0.1 * scores.var(0, correction=0)).tolist()
    with pytest.raises(ConfigError, match="objective = 'max' is not allowed"):
        ensemble(members, "max")


def test_reasoning_gym_tasks_take_a_config_and_name_a_valid_run_directory(tmp_path):
    pytest.importorskip("reasoning_gym")
    from policylab.cli import default_run_name
    from policylab.core.run import RunDir
    from policylab.lm.tasks import get_task

    task = get_task("rg:chain_sum?min_terms=2&max_terms=2&max_digits=1")
    assert task.dataset.config.max_terms == 2 and task.dataset.config.max_digits == 1
    name = default_run_name("grpo", "rg:chain_sum?min_terms=2&max_terms=2", False)
    assert name == "grpo-rg_chain_sum_min_terms_2_max_terms_2" and RunDir(tmp_path, name).path.is_dir()
    assert default_run_name("iql", "/data/pendulum-mix10.parquet", True) == "iql-pendulum-mix10"
    with pytest.raises(ConfigError, match="is not allowed; a reasoning-gym config is"):
        get_task("rg:chain_sum?2terms")


def longer_is_better(prompts, completions, **_):
    """A reward that varies from the first batch on (an untrained model rarely says "yes")."""
    return [len(c.split()) / 3 for c in completions]


def test_lora_trains_only_the_adapters_and_saves_a_merged_model(tmp_path):
    pytest.importorskip("peft")
    trainer = policylab.RLVRTrainer(tiny_llama(), [longer_is_better], train_dataset=PROMPTS,
                                    processing_class=tokenizer(), prompts_per_step=4, group_size=4, max_new_tokens=3,
                                    lr=1e-2, lora={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    before = {k: v.clone() for k, v in trainer.model.named_parameters()}
    trainer.train(3, progress=False)
    changed = {k for k, v in trainer.model.named_parameters() if not torch.equal(v, before[k])}
    assert changed and all("lora_" in k for k in changed)
    ids = torch.tensor([[3, 5, 6, 4]])
    with torch.no_grad():
        expected = trainer.model(input_ids=ids).logits
    loaded = transformers.AutoModelForCausalLM.from_pretrained(trainer.save_pretrained(tmp_path / "merged"))
    assert not any("lora" in k for k in loaded.state_dict())
    assert torch.allclose(loaded(ids).logits, expected, atol=1e-5)


def trained_weights(steps: int, lr: float, **switches) -> list[torch.Tensor]:
    """The weights after `steps` updates of a small run with the given RLVRTrainer switches."""
    trainer = policylab.RLVRTrainer(tiny_llama(), [longer_is_better], train_dataset=PROMPTS,
                                    processing_class=tokenizer(), prompts_per_step=4, group_size=4,
                                    max_new_tokens=3, lr=lr, seed=3, **switches)
    trainer.train(steps, progress=False)
    assert math.isfinite(trainer.last_summary["last"]["loss"])
    return [p.detach().clone() for p in trainer.model.parameters()]


def largest_gap(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def test_gradient_checkpointing_changes_memory_not_the_update():
    start = [p.detach().clone() for p in tiny_llama().parameters()]
    plain = trained_weights(2, 1e-2, gradient_checkpointing=False)
    recomputed = trained_weights(2, 1e-2, gradient_checkpointing=True)
    assert largest_gap(plain, start) > 1e-4  # the updates did move it
    assert largest_gap(plain, recomputed) <= 1e-6


def test_bf16_autocast_trains_with_float32_weights_close_to_the_float32_run():
    exact, mixed = trained_weights(1, 1e-3, bf16=False), trained_weights(1, 1e-3, bf16=True)
    assert all(p.dtype == torch.float32 for p in mixed)
    gap = largest_gap(exact, mixed)
    assert 0 < gap <= 1e-2, gap  # bf16 rounding moved the update a little, not a lot


def test_a_datasets_dataset_with_columns_and_trls_completion_ids_reach_the_reward():
    from datasets import Dataset

    seen = {}

    def trl_style(prompts, completions, completion_ids, level, **_):
        seen.update(ids=completion_ids, completions=completions, level=level)
        return [float(n) for n in level]

    data = Dataset.from_dict({"prompt": ["1 + 2 =", "3 + 4 ="], "level": [1, 2]})
    trainer = policylab.RLVRTrainer(tiny_llama(), trl_style, train_dataset=data, processing_class=tokenizer(),
                                    prompts_per_step=2, group_size=2, max_new_tokens=3)
    trainer.train(1, progress=False)
    tok = tokenizer()
    assert seen["ids"] == [tok.encode(c, add_special_tokens=False) for c in seen["completions"]]
    assert set(seen["level"]) <= {1, 2} and len(seen["level"]) == 4  # one value per completion


def test_save_pretrained_replaces_a_folder_whole(tmp_path):
    trainer = policylab.RLVRTrainer(tiny_llama(), [says_yes], train_dataset=PROMPTS, processing_class=tokenizer(),
                                    prompts_per_step=2, group_size=2, max_new_tokens=2)
    target = tmp_path / "out" / "model"
    trainer.save_pretrained(target)
    (target / "stale.txt").write_text("from an earlier save")
    trainer.save_pretrained(target)
    assert not (target / "stale.txt").exists() and (target / "config.json").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]  # no staging or old folder left
