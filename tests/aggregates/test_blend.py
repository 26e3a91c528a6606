"""The meta-controller's weight validation and blend (pure code)."""

import math

import pytest

from aggregates.blend import BlendThresholds, blend, validate_weights


def test_valid_weights_pass_unchanged():
    check = validate_weights([0.2, 0.3, 0.5])
    assert check.weights == (0.2, 0.3, 0.5)
    assert check.anomaly is None


def test_weights_not_summing_to_one_are_normalised_and_flagged():
    check = validate_weights([1.0, 1.0, 2.0])
    assert check.weights == pytest.approx((0.25, 0.25, 0.5))
    assert check.anomaly == "normalised"


def test_negative_weights_are_clipped_then_normalised():
    check = validate_weights([-0.5, 0.5, 1.0])
    assert check.weights == pytest.approx((0.0, 1 / 3, 2 / 3))
    assert check.anomaly == "normalised"
    assert "negative" in check.detail


@pytest.mark.parametrize("raw", [[math.nan, 0.5, 0.5], [math.inf, 0, 0], [0, 0, 0], [-1, -2, 0]])
def test_impossible_weights_fall_back_to_equal(raw):
    check = validate_weights(raw)
    assert check.weights == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert check.anomaly == "equal_fallback"


def test_blend_is_the_weighted_margin_and_sets_direction():
    result = blend([2.0, -1.0, 0.0], (0.5, 0.5, 0.0), BlendThresholds(entry_edge=0.05))
    assert result.score == pytest.approx(0.5)
    assert result.probability_up == pytest.approx(1 / (1 + math.exp(-0.5)))
    assert result.direction == 1
    assert result.confidence == pytest.approx(result.probability_up)
    flat = blend([0.01, 0.0, 0.0], (1.0, 0.0, 0.0), BlendThresholds(entry_edge=0.05))
    assert flat.direction == 0
    short = blend([-3.0, 0.0, 0.0], (1.0, 0.0, 0.0), BlendThresholds())
    assert short.direction == -1
    assert short.confidence == pytest.approx(1 - short.probability_up)
