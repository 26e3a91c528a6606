"""The policy's argmax without NumPy picks exactly what ``np.argmax`` picks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aggregates.policy import _first_max


@pytest.mark.parametrize("values", [
    [0.2, 0.5, 0.3], [0.5, 0.5, 0.0], [0.1, 0.2, 0.7], [1.0, 0.0, 0.0], [0.3, math.nan, 0.6],
    [math.nan, math.nan, 0.1], [-0.0, 0.0, -0.0], [0.4, 0.3, 0.4],
])
def test_it_is_numpys_argmax(values) -> None:
    assert _first_max(values) == int(np.argmax(np.asarray(values)))
