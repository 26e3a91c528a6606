"""The regime filter against a plain NumPy forward algorithm, plus its guards."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aggregates.errors import DomainError, InvalidRegimeModel, InvalidRegimeState
from aggregates.regime import REGIMES, RegimeFilter, RegimeModel, regime_step
from glassbox import GlassboxError


def simulate(model: RegimeModel, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """States and standardised returns drawn from the model's own HMM."""
    rng = np.random.default_rng(seed)
    trans = np.array(model.transition)
    states = np.empty(n, dtype=np.int64)
    state = rng.choice(3, p=np.array(model.initial))
    for t in range(n):
        state = rng.choice(3, p=trans[state])
        states[t] = state
    z = rng.normal(np.array(model.means)[states], np.array(model.stds)[states])
    return states, z


def numpy_forward(model: RegimeModel, z: np.ndarray) -> np.ndarray:
    """Normalised alpha recursion; row t is P(state_t | z_1..z_t), the prior is state_0."""
    trans, means, stds = np.array(model.transition), np.array(model.means), np.array(model.stds)
    alpha = np.array(model.initial)
    out = np.empty((len(z), 3))
    for t, zt in enumerate(z):
        predicted = alpha @ trans
        if np.isfinite(zt):
            weighted = predicted * np.exp(-0.5 * ((zt - means) / stds) ** 2) / (stds * np.sqrt(2 * np.pi))
            alpha = weighted / weighted.sum()
        else:
            alpha = predicted / predicted.sum()
        out[t] = alpha
    return out


def test_matches_numpy_forward_algorithm() -> None:
    model = RegimeModel()
    _, z = simulate(model, 1_000, seed=1)
    z[[10, 11, 500]] = np.nan  # missing ticks take the prediction-only path in both
    expected = numpy_forward(model, z)
    regime_filter = RegimeFilter(model)
    for t, zt in enumerate(z):
        probs, entropy = regime_filter.update(zt)
        np.testing.assert_allclose(probs, expected[t], atol=1e-12, rtol=0)
        assert math.isclose(probs.sum(), 1.0, abs_tol=1e-12)
        assert -1e-15 <= entropy <= math.log(3) + 1e-12
        assert entropy == pytest.approx(-(expected[t] * np.log(expected[t])).sum(), abs=1e-12)


def test_nan_does_prediction_only() -> None:
    model = RegimeModel()
    prior = [0.7, 0.2, 0.1]
    probs, _ = RegimeFilter(model, probs=prior).update(math.nan)
    predicted = np.array(prior) @ np.array(model.transition)
    np.testing.assert_allclose(probs, predicted / predicted.sum(), atol=1e-15, rtol=0)


def test_underflowing_likelihoods_fall_back_to_prediction() -> None:
    model = RegimeModel()
    prior = np.array([0.7, 0.2, 0.1])
    out = np.empty(3)
    entropy = regime_step(prior, 1e6, model._trans, model._means, model._stds, out)
    predicted = prior @ np.array(model.transition)
    np.testing.assert_allclose(out, predicted / predicted.sum(), atol=1e-15, rtol=0)
    assert entropy == pytest.approx(-(out * np.log(out)).sum())


def test_identifies_clearly_separated_regimes() -> None:
    model = RegimeModel(means=(1.5, -1.5, 0.0), stds=(1.0, 1.2, 0.3))
    states, z = simulate(model, 5_000, seed=7)
    regime_filter = RegimeFilter(model)
    guesses = np.array([np.argmax(regime_filter.update(zt)[0]) for zt in z])
    assert (guesses == states).mean() > 0.7
    assert regime_filter.most_likely in REGIMES


def test_state_round_trips_through_a_list_of_floats() -> None:
    model = RegimeModel()
    _, z = simulate(model, 300, seed=3)
    original = RegimeFilter(model)
    for zt in z[:150]:
        original.update(zt)
    restored = RegimeFilter(model, probs=original.state())
    for zt in z[150:]:
        np.testing.assert_array_equal(original.update(zt)[0], restored.update(zt)[0])
    assert isinstance(original.state()[0], float)


def test_probs_property_is_a_copy() -> None:
    regime_filter = RegimeFilter(RegimeModel())
    regime_filter.probs[0] = 5.0
    np.testing.assert_allclose(regime_filter.probs, [1 / 3] * 3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"transition": ((0.9, 0.05, 0.04), (0.01, 0.98, 0.01), (0.01, 0.01, 0.98))},
        {"transition": ((1.1, -0.05, -0.05), (0.01, 0.98, 0.01), (0.01, 0.01, 0.98))},
        {"transition": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))},
        {"stds": (1.0, 0.0, 1.0)},
        {"stds": (1.0, -1.0, 1.0)},
        {"means": (0.0, math.nan, 0.0)},
        {"means": (0.0, 0.0)},
        {"initial": (0.5, 0.5, 0.5)},
    ],
)
def test_invalid_model_is_rejected(kwargs: dict) -> None:
    with pytest.raises(InvalidRegimeModel):
        RegimeModel(**kwargs)


@pytest.mark.parametrize("probs", [[0.5, 0.5], [0.5, 0.6, -0.1], [math.nan, 0.5, 0.5], [0.2, 0.2, 0.2], ["a", 1, 1]])
def test_invalid_state_is_rejected(probs: list) -> None:
    with pytest.raises(InvalidRegimeState):
        RegimeFilter(RegimeModel(), probs=probs)


def test_errors_belong_to_the_project_hierarchy() -> None:
    assert issubclass(InvalidRegimeModel, DomainError)
    assert issubclass(DomainError, GlassboxError)


def test_model_is_frozen_and_hashable() -> None:
    model = RegimeModel(means=[0.3, -0.3, 0.0])
    assert model.means == (0.3, -0.3, 0.0)
    assert model == RegimeModel(means=(0.3, -0.3, 0.0))
    assert hash(model) == hash(RegimeModel(means=(0.3, -0.3, 0.0)))
    with pytest.raises(AttributeError):
        model.means = (0.0, 0.0, 0.0)  # type: ignore[misc]
