"""The methods with pipelines of their own (SS-ORL, MBRCSL, RL-VLM-F, CDSA, OPPO, ObsHistory, HIB; IWOCS online)
driven from Python as a user would: numpy-array data with no env, fit / predict / save / load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import policylab
from policylab.core.errors import CheckpointError, ConfigError
from policylab.core.registry import ALGORITHMS

EPISODE = 25


def logged(n_episodes: int = 40, seed: int = 0):
    """Episodes of a 1-d reach task logged with no simulator: the action should be 1.5 x the target."""
    rng = np.random.default_rng(seed)
    n = n_episodes * EPISODE
    target = np.repeat(rng.uniform(-1, 1, n_episodes), EPISODE)
    obs = np.stack([target, (np.arange(n) % EPISODE) / EPISODE], 1).astype(np.float32)
    skill = np.repeat(rng.uniform(0, 1, n_episodes), EPISODE)  # some episodes near-expert, some random
    actions = np.where(rng.random(n) < skill, 1.5 * target + rng.normal(0, 0.1, n), rng.uniform(-2, 2, n))
    actions = actions.clip(-2, 2).astype(np.float32).reshape(n, 1)
    rewards = (-(actions[:, 0] - 1.5 * target) ** 2).astype(np.float32)
    timeouts = np.arange(n) % EPISODE == EPISODE - 1
    return policylab.Dataset.from_arrays(obs, actions, rewards, np.zeros(n, bool), timeouts), obs


def tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict):
        for value in tree.values():
            yield from tensors(value)
    elif isinstance(tree, (list, tuple)):
        for value in tree:
            yield from tensors(value)


SMALL = {
    "ssorl": dict(idm_steps=60, idm_eval_every=30, idm_hidden=(32, 32), idm_batch_size=128, base="bc",
                  base_hidden=(32, 32), labelled_fraction=0.3),
    "cdsa": dict(base="bc", base_hidden=(32, 32), guide_steps=30, score_hidden=(32, 32), model_hidden=(32, 32)),
    "oppo": dict(num_pairs=50, segment_length=5, hidden=(32, 32), encoder_hidden=(32, 32), foresee=10),
    "obs_history": dict(hidden=(32, 32)),
}


def test_ssorl_fits_arrays_with_no_env_on_the_registered_path_and_saves(tmp_path):
    dataset, obs = logged()
    model = policylab.SSORL(seed=0, **SMALL["ssorl"]).fit(dataset, 100)
    assert model.last_summary["eval"] == {} and model.last_summary["ssorl"]["labelled_trajectories"] > 0
    assert model.predict(obs[0]).shape == (1,) and model.predict(obs[:9]).shape == (9, 1)
    spec = ALGORITHMS.get("ssorl")  # the CLI's and the claim check's path: the same policy, bit for bit
    direct = spec.train(spec.config(**SMALL["ssorl"]), env_id=dataset, seed=0, steps=100, evals=0, eval_episodes=0,
                        checkpoints=0, progress=False)
    assert np.array_equal(direct["policy"].act(obs[:50]), model.predict(obs[:50]))
    loaded = policylab.SSORL.load(model.save(tmp_path / "ssorl.pt"))
    assert np.array_equal(loaded.predict(obs[:50]), model.predict(obs[:50]))
    saved = torch.load(tmp_path / "ssorl.pt", weights_only=True)
    assert len(dataset) not in {t.shape[0] for t in tensors(saved) if t.ndim}  # no per-transition data in the file
    with pytest.raises(CheckpointError, match="was not saved by MBRCSL"):
        policylab.MBRCSL.load(tmp_path / "ssorl.pt")


def test_rl_vlm_f_takes_the_users_labeller():
    dataset, obs = logged()

    class PrefersLargerTargets:  # a user's labeller (a VLM client in real use)
        def label(self, first: torch.Tensor, second: torch.Tensor, goal: str) -> torch.Tensor:
            return (first[..., 0] > second[..., 0]).long()

    model = policylab.RLVLMF(seed=0, goal="reach", num_pairs=100, reward_steps=30, ensemble=1, base="bc",
                             base_hidden=(32, 32)).fit(dataset, 50, oracle=PrefersLargerTargets())
    assert model.last_summary["rl_vlm_f"]["pairs_answered"] > 0 and model.predict(obs[:4]).shape == (4, 1)
    with pytest.raises(ConfigError, match="has no scripted teacher"):
        policylab.RLVLMF(seed=0, num_pairs=10).fit(dataset, 10)  # no labeller and no known env


@pytest.mark.parametrize("name,cls", [("cdsa", "CDSA"), ("oppo", "OPPO"), ("obs_history", "ObsHistory")])
def test_the_other_pipelines_fit_and_predict_and_refuse_save_in_one_line(name, cls, tmp_path):
    dataset, obs = logged()
    model = getattr(policylab, cls)(seed=0, **SMALL[name]).fit(dataset, 40)
    action = model.predict(obs[0])
    assert action.shape == (1,) and np.all(np.abs(action) <= 2 + 1e-5)
    assert model.predict(obs[:6]).shape == (6, 1)
    with pytest.raises(ConfigError, match=rf"{cls}.save: its final policy .* fit\(run_dir=...\) keeps"):
        model.save(tmp_path / "model.pt")


def test_hib_says_what_its_dataset_lacks():
    dataset, _ = logged(4)
    with pytest.raises(Exception, match="privileged"):
        policylab.HIB(seed=0).fit(dataset, 10)


def test_pipeline_input_errors_are_one_line():
    dataset, obs = logged(4)
    with pytest.raises(ConfigError, match="eval_env = .* evaluates by env id"):
        policylab.SSORL().fit(dataset, 10, eval_env=object())
    with pytest.raises(ConfigError, match="SSORL.predict: the model is not fitted yet"):
        policylab.SSORL().predict(obs[0])
    with pytest.raises(ConfigError, match="steps = 0 is not allowed"):
        policylab.MBRCSL().fit(dataset, 0)


def test_iwocs_learns_predicts_saves_and_loads(tmp_path):
    robust = policylab.IWOCS("Pendulum-v1", seed=0, iterations=1, learning_starts=100, hidden=(32, 32),
                             search_size=2, search_episodes=1, batch_size=32)
    robust.learn(300, eval_episodes=1, progress=False)
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    assert robust.predict(obs[0]).shape == (1,) and robust.predict(obs).shape == (5, 1)
    loaded = policylab.IWOCS.load(robust.save(tmp_path / "iwocs.pt"))
    assert np.array_equal(loaded.predict(obs), robust.predict(obs))
    with pytest.raises(ConfigError, match="env = 'CartPole-v1' is not allowed for IWOCS"):
        policylab.IWOCS("CartPole-v1")


def test_mbrcsl_fits_arrays_and_its_rcsl_model_saves(tmp_path):
    dataset, obs = logged()
    small = dict(dynamics_ensemble=2, dynamics_elites=1, dynamics_hidden=(32, 32),
                 dynamics_weight_decay=(2.5e-5, 5e-5, 1e-4), dynamics_max_epochs=2,
                 behaviour_hidden=(32, 32), behaviour_train_steps=50, rcsl_hidden=(32, 32), rollout_batch=20,
                 keep=10, max_rollout_batches=3)
    model = policylab.MBRCSL(seed=0, **small).fit(dataset, 40)
    loaded = policylab.MBRCSL.load(model.save(tmp_path / "mbrcsl.pt"))
    assert np.array_equal(loaded.predict(obs[:20]), model.predict(obs[:20]))
