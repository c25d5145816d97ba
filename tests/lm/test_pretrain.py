"""Base models: reproducible from the recipe's seed, cached, in the pass-rate band, damage refused."""

import pytest
import torch

from policylab.core.errors import CheckpointError
from policylab.lm.pretrain import BASE_MODELS, PretrainConfig, base_model_path, load_base, pretrain


def weights(path):
    policy, _, meta = load_base(path)
    return torch.cat([p.detach().flatten() for p in policy.parameters()]), meta


def test_same_recipe_same_weights_and_a_target_stop(base_models):
    first, meta = weights(pretrain("tiny-gcd"))
    again, _ = weights(pretrain("tiny-gcd", force=True))
    assert torch.equal(first, again)
    recipe = BASE_MODELS.get("tiny-gcd")
    assert meta["stopped_by"] == "target" and meta["val_pass"] >= recipe.target_pass
    assert 0.1 <= meta["test"]["greedy_acc"] <= 0.9 and meta["steps"] < recipe.max_steps


def test_another_seed_is_another_model_in_another_file(base_models):
    recipe = BASE_MODELS.get("tiny-gcd").replace(seed=1, max_steps=50, target_pass=1.0, eval_every=50)
    path = pretrain(recipe)
    assert path == base_model_path(recipe) and path != base_model_path("tiny-gcd")
    other, meta = weights(path)
    assert meta["steps"] == 50 and meta["stopped_by"] == "steps"
    assert not torch.equal(other, weights(pretrain("tiny-gcd"))[0])


def test_damaged_or_foreign_files_are_refused(base_models, tmp_path):
    path = pretrain("tiny-gcd")
    torn = tmp_path / "torn.pt"
    torn.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_base(torn)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": 1}, foreign)
    with pytest.raises(CheckpointError, match="not a policylab base model"):
        load_base(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_base(tmp_path / "missing.pt")


def test_recipe_fields_are_validated():
    with pytest.raises(Exception, match=r"PretrainConfig.target_pass = 1.5"):
        PretrainConfig(target_pass=1.5)
