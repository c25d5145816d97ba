"""The misspecification analysis (policylab.irl.irl_misspec): inverses recover the reward exactly under
the right model, a wrong temperature costs nothing (the paper's 0-robustness), a wrong discount or wrong
dynamics costs more the larger the admissible shaping, and bad input is named."""

from dataclasses import replace

import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.irl import BEHAVIOUR_MODELS, MisspecConfig, misspecification_error
from policylab.irl.irl_misspec import assumed_mdp
from policylab.tabular import random_mdp, starc_distance


@pytest.mark.parametrize("model", sorted(BEHAVIOUR_MODELS))
def test_inverse_of_the_right_model_is_the_reward_up_to_shaping(model):
    mdp = random_mdp(8, 3, seed=0)
    forward, inverse = BEHAVIOUR_MODELS[model]
    recovered = inverse(forward(mdp, 0.5), mdp, 0.5)
    assert float(starc_distance(mdp, mdp.rewards, recovered)) < 1e-6


@pytest.mark.parametrize("model", sorted(BEHAVIOUR_MODELS))
@pytest.mark.parametrize("assumed", [0.25, 4.0])
def test_a_wrong_temperature_is_harmless_even_in_the_worst_case(model, assumed):
    mdp = random_mdp(10, 3, seed=1)
    cfg = MisspecConfig(data_model=model, learner_model=model, learner_temperature=assumed, potentials=50)
    out = misspecification_error(mdp, cfg, seed=0)
    assert out["starc_worst"] < 1e-6 and out["regret_canonical"] < 1e-9


def test_a_wrong_discount_or_dynamics_grows_with_the_shaping_bound():
    mdp = random_mdp(10, 3, seed=2)
    for cfg in (MisspecConfig(learner_gamma=0.85), MisspecConfig(dynamics_noise=0.1)):
        small = misspecification_error(mdp, replace(cfg, bound=1.0), seed=0)
        large = misspecification_error(mdp, cfg, seed=0)
        assert large["starc_worst"] > small["starc_worst"] > 0.001
        assert large["starc_canonical"] == pytest.approx(small["starc_canonical"])  # Phi = 0 has no bound
    worse = misspecification_error(mdp, MisspecConfig(learner_gamma=0.5), seed=0)
    assert worse["starc_worst"] > misspecification_error(mdp, MisspecConfig(learner_gamma=0.85), seed=0)["starc_worst"]


def test_model_class_mismatch_leaves_a_moderate_error():
    mdp = random_mdp(10, 3, seed=3)
    out = misspecification_error(mdp, MisspecConfig(data_model="boltzmann", bound=0.0, potentials=1), seed=0)
    assert 0.005 < out["starc_canonical"] < 0.5


def test_assumed_mdp_mixes_dynamics_and_keeps_them_valid():
    mdp = random_mdp(5, 2, seed=4)
    believed = assumed_mdp(mdp, MisspecConfig(dynamics_noise=0.3, learner_gamma=0.7), seed=0)
    assert believed.gamma == 0.7 and not torch.allclose(believed.transitions, mdp.transitions)
    assert torch.allclose(believed.transitions.sum(-1), torch.ones(5, 2, dtype=torch.float64))
    assert torch.equal(assumed_mdp(mdp, MisspecConfig(), seed=0).transitions, mdp.transitions)


def test_unknown_model_is_named():
    with pytest.raises(ConfigError, match="MisspecConfig.learner_model = 'optimal'.*boltzmann, mce"):
        MisspecConfig(learner_model="optimal")
