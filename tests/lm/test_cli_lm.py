"""`policylab lm pretrain` and `policylab train grpo --task ...` from the command line."""

import json

from policylab.cli import main


def test_pretrain_then_train_grpo_on_a_task(base_models, tmp_path, capsys):
    assert main(["lm", "pretrain", "--name", "tiny-gcd"]) == 0
    out = capsys.readouterr().out
    assert "tiny-gcd" in out and "test greedy_acc" in out
    assert list(base_models.glob("tiny-gcd-*.pt"))
    code = main(["train", "grpo", "--task", "gcd", "--steps", "3", "--runs-root", str(tmp_path),
                 "--base-model", "tiny-gcd", "--prompts-per-step", "4", "--eval-prompts", "20"])
    assert code == 0
    out = capsys.readouterr().out
    assert "eval/greedy_acc (before)" in out and "sampled responses" in out
    config = json.loads((tmp_path / "grpo-gcd" / "main" / "seed0" / "config.json").read_text())
    assert config["task"] == "gcd" and config["values"]["prompts_per_step"] == 4
