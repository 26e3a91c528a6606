"""Errors raised by the pure domain code in ``aggregates/``.

Every class here means one thing the caller can act on; all derive from
:class:`DomainError`, itself a :class:`glassbox.GlassboxError`.
"""

from __future__ import annotations

from glassbox import GlassboxError

__all__ = [
    "DomainError",
    "FeatureMismatch",
    "InvalidModelMetadata",
    "InvalidRegimeModel",
    "InvalidRegimeState",
    "ModelIntegrityError",
    "ModelNotFound",
    "TrainingDataError",
    "TradingSwitchError",
    "UnsupportedModel",
]


class DomainError(GlassboxError):
    """Root of errors raised by ``aggregates/``: an input or state broke a domain rule."""


class InvalidRegimeModel(DomainError):
    """A regime HMM's parameters are unusable (bad shapes, rows not summing to 1, stds <= 0)."""


class InvalidRegimeState(DomainError):
    """Regime probabilities to restore are not a probability vector over the three regimes."""


class UnsupportedModel(DomainError):
    """A fitted estimator cannot be compiled (not a fitted binary GradientBoostingClassifier)."""


class TrainingDataError(DomainError):
    """Training arrays are inconsistent or cannot produce a binary classifier."""


class FeatureMismatch(DomainError):
    """A feature vector or matrix does not have the number of features the model was fitted on."""


class ModelNotFound(DomainError):
    """The requested model version is not in the registry folder."""


class ModelIntegrityError(DomainError):
    """A stored model version does not match its content hash (tampered or corrupted files)."""


class InvalidModelMetadata(DomainError):
    """Metadata to store with a model version is not JSON-serialisable (plain dicts, lists, str, numbers)."""


class TradingSwitchError(DomainError):
    """A halt or resume that cannot be: no reason or no name given, or resuming what is not halted."""
