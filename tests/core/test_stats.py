"""IQM, bootstrap intervals, effects and verdicts on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from policylab.core.errors import ConfigError
from policylab.core.stats import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Effect,
    bootstrap_ci,
    effect_interval,
    iqm,
    mean,
    normalized_score,
    probability_of_improvement,
    verdict,
)


def test_iqm_of_three_is_the_plain_mean():
    assert iqm([1.0, 2.0, 9.0]) == pytest.approx(4.0)


def test_iqm_of_four_averages_the_middle_two():
    assert iqm([10.0, 1.0, 3.0, 2.0]) == pytest.approx(2.5)


def test_iqm_of_five_drops_one_each_end():
    assert iqm([100.0, 1.0, 2.0, 3.0, -100.0]) == pytest.approx(2.0)


def test_iqm_of_eight_drops_two_each_end():
    values = [100.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -50.0]
    assert iqm(values) == pytest.approx(3.5)  # mean of 2, 3, 4, 5


def test_iqm_single_value():
    assert iqm([7.0]) == pytest.approx(7.0)


def test_iqm_along_an_axis():
    grid = np.array([[1.0, 2.0, 3.0, 100.0], [0.0, 0.0, 4.0, 4.0]])
    np.testing.assert_allclose(iqm(grid, axis=-1), [2.5, 2.0])
    np.testing.assert_allclose(iqm(grid.T, axis=0), [2.5, 2.0])


def test_iqm_of_empty_input_raises():
    with pytest.raises(ValueError, match="empty"):
        iqm([])


def test_mean_helper():
    np.testing.assert_allclose(mean(np.array([[1.0, 3.0], [2.0, 6.0]])), [2.0, 4.0])


def test_bootstrap_ci_contains_point_estimate_and_is_ordered():
    sample = np.arange(1.0, 11.0)
    point = float(iqm(sample))
    assert point == pytest.approx(5.5)
    low, high = bootstrap_ci(sample)
    assert low < point < high
    assert 1.0 <= low and high <= 10.0


def test_bootstrap_ci_is_deterministic_for_a_fixed_seed():
    sample = [0.3, 1.7, 2.2, 5.0, 0.1, 3.3, 4.4, 2.9]
    first = bootstrap_ci(sample, seed=7)
    assert bootstrap_ci(sample, seed=7) == first
    assert bootstrap_ci(sample, seed=8) != first


def test_bootstrap_ci_of_a_constant_sample_is_degenerate():
    low, high = bootstrap_ci([3.0] * 6)
    assert low == pytest.approx(3.0)
    assert high == pytest.approx(3.0)


def test_bootstrap_ci_widens_with_confidence():
    sample = np.arange(20.0)
    low50, high50 = bootstrap_ci(sample, confidence=0.5)
    low99, high99 = bootstrap_ci(sample, confidence=0.99)
    assert high99 - low99 > high50 - low50
    assert low99 <= low50 and high50 <= high99


def test_bootstrap_ci_with_mean_statistic():
    low, high = bootstrap_ci([1.0, 2.0, 3.0, 4.0], stat=mean)
    assert low < 2.5 < high


def test_bootstrap_ci_of_empty_raises():
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci([])


def test_paired_constant_difference_gives_zero_width_interval():
    method = [3.0, 5.0, 9.0, 4.0, 11.0]
    baseline = [1.0, 3.0, 7.0, 2.0, 9.0]
    effect = effect_interval(method, baseline, paired=True)
    assert effect.paired is True
    assert effect.value == pytest.approx(2.0)
    assert effect.low == pytest.approx(2.0)
    assert effect.high == pytest.approx(2.0)


def test_unpaired_same_data_has_wide_interval_around_the_difference():
    method = [3.0, 5.0, 9.0, 4.0, 11.0]
    baseline = [1.0, 3.0, 7.0, 2.0, 9.0]
    effect = effect_interval(method, baseline, paired=False)
    assert effect.paired is False
    assert effect.value == pytest.approx(2.0)  # IQM shifts with the sample
    assert effect.low < 2.0 < effect.high
    assert effect.high - effect.low > 2.0


def test_paired_uses_per_seed_differences_not_difference_of_iqms():
    method = [0.0, 10.0, 20.0, 30.0]
    baseline = [30.0, 0.0, 10.0, 20.0]
    # per-seed differences -30, 10, 10, 10 -> IQM 10; IQMs of the arms are both 15
    assert effect_interval(method, baseline, paired=True).value == pytest.approx(10.0)
    assert effect_interval(method, baseline, paired=False).value == pytest.approx(0.0)


def test_effect_interval_is_deterministic_for_a_seed():
    m = [1.0, 4.0, 2.0, 8.0, 3.5, 6.1, 0.2, 5.5]
    b = [0.5, 1.0, 3.0, 2.0, 2.2, 0.1, 4.4, 1.7]
    first = effect_interval(m, b, paired=False, seed=3)
    assert effect_interval(m, b, paired=False, seed=3) == first
    assert effect_interval(m, b, paired=False, seed=4) != first


def test_paired_effect_needs_equal_seed_counts():
    with pytest.raises(ValueError, match="equal seeds per arm, got 3 and 2"):
        effect_interval([1.0, 2.0, 3.0], [1.0, 2.0], paired=True)


def test_effect_needs_values_on_both_sides():
    with pytest.raises(ValueError, match="at least one value per arm"):
        effect_interval([], [1.0], paired=False)


@pytest.mark.parametrize(
    ("low", "high", "direction", "min_effect", "expected"),
    [
        (0.1, 0.5, "higher", 0.0, REPRODUCED),
        (-0.5, -0.1, "higher", 0.0, NOT_REPRODUCED),
        (-0.1, 0.5, "higher", 0.0, INCONCLUSIVE),
        (0.0, 0.5, "higher", 0.0, INCONCLUSIVE),  # touching zero is not "entirely above"
        (-0.5, -0.1, "lower", 0.0, REPRODUCED),
        (0.1, 0.5, "lower", 0.0, NOT_REPRODUCED),
        (-0.1, 0.5, "lower", 0.0, INCONCLUSIVE),
        (0.1, 0.5, "higher", 0.2, INCONCLUSIVE),
        (0.3, 0.5, "higher", 0.2, REPRODUCED),
        (-0.5, -0.3, "lower", 0.2, REPRODUCED),
        (-0.5, -0.1, "lower", 0.2, INCONCLUSIVE),
    ],
)
def test_verdict(low, high, direction, min_effect, expected):
    effect = Effect((low + high) / 2, low, high, True)
    assert verdict(effect, direction, min_effect) == expected


def test_verdict_bad_direction_raises_config_error():
    with pytest.raises(ConfigError, match="direction = 'up' is not allowed"):
        verdict(Effect(1.0, 0.5, 1.5, True), "up")


def test_verdict_from_a_real_effect():
    method = [10.0, 11.0, 12.0, 13.0, 14.0]
    baseline = [0.0, 1.0, 2.0, 3.0, 4.0]
    effect = effect_interval(method, baseline, paired=False)
    assert verdict(effect, "higher") == REPRODUCED
    assert verdict(effect, "lower") == NOT_REPRODUCED


def test_normalized_score_hand_case():
    assert float(normalized_score(50.0, 0.0, 200.0)) == pytest.approx(25.0)
    assert float(normalized_score(-10.0, -20.0, 80.0)) == pytest.approx(10.0)
    np.testing.assert_allclose(normalized_score(np.array([-20.0, 80.0, 130.0]), -20.0, 80.0),
                               [0.0, 100.0, 150.0])


def test_normalized_score_needs_distinct_references():
    with pytest.raises(ValueError, match="ref_max != ref_min"):
        normalized_score(1.0, 5.0, 5.0)


def test_probability_of_improvement_hand_cases():
    assert probability_of_improvement([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert probability_of_improvement([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert probability_of_improvement([1.0, 1.0], [1.0, 1.0]) == 0.5
    assert probability_of_improvement([1.0, 3.0], [2.0]) == 0.5
    # pairs: (2,2) tie 0.5, (2,1) 1, (3,2) 1, (3,1) 1 -> 3.5 / 4
    assert probability_of_improvement([2.0, 3.0], [2.0, 1.0]) == pytest.approx(0.875)


def test_probability_of_improvement_needs_both_sides():
    with pytest.raises(ValueError, match="both sides"):
        probability_of_improvement([], [1.0])


def test_spearman_by_hand_with_ties():
    from policylab.core.stats import average_ranks, spearman

    assert average_ranks([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0
    # ranks (1, 2.5, 2.5, 4) vs (1, 2, 3, 4): r = 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / np.sqrt(4.5 * 5))
    with pytest.raises(ValueError, match="same length"):
        spearman([1, 2], [1])


@pytest.mark.parametrize("low, high, direction, expected", [
    (-0.03, 0.02, "higher", REPRODUCED),       # worst case -0.03 is within the 0.05 margin
    (-0.08, 0.02, "higher", INCONCLUSIVE),     # could be worse than the margin
    (-0.12, -0.06, "higher", NOT_REPRODUCED),  # surely worse by more than the margin
    (-0.02, 0.03, "lower", REPRODUCED),        # "lower is better": +0.03 is within the margin
    (0.06, 0.09, "lower", NOT_REPRODUCED),
])
def test_verdict_with_a_non_inferiority_margin(low, high, direction, expected):
    assert verdict(Effect((low + high) / 2, low, high, True), direction, margin=0.05) == expected


def test_verdict_refuses_a_negative_margin():
    with pytest.raises(ConfigError, match="margin = -0.1 is not allowed"):
        verdict(Effect(0.0, -0.01, 0.01, True), "higher", margin=-0.1)


@pytest.mark.parametrize("low, high, expected", [
    (-0.03, 0.04, REPRODUCED),        # inside +-0.05 on both sides: equal within the margin
    (-0.03, 0.06, INCONCLUSIVE),      # could be better by more than the margin: not shown equal
    (-0.08, 0.02, INCONCLUSIVE),      # could be worse by more than the margin
    (0.06, 0.09, NOT_REPRODUCED),     # surely better by more than the margin: not equal
    (-0.12, -0.06, NOT_REPRODUCED),   # surely worse by more than the margin
])
def test_verdict_of_an_equivalence_claim(low, high, expected):
    effect = Effect((low + high) / 2, low, high, True)
    assert verdict(effect, "higher", margin=0.05, equivalence=True) == expected
    assert verdict(effect, "lower", margin=0.05, equivalence=True) == expected  # symmetric band


def test_equivalence_needs_a_margin():
    with pytest.raises(ConfigError, match="margin"):
        verdict(Effect(0.0, -0.01, 0.01, True), "higher", equivalence=True)
