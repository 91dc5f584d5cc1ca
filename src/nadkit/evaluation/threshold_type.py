"""The saved threshold (:class:`Threshold`): the checks of its fields, the parameters each method
saves (:data:`THRESHOLD_METHODS` for the tunable ones and their defaults), and applying it to scores
(:func:`apply`). Fitting is in :mod:`nadkit.evaluation.thresholds`."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np

from nadkit.errors import ConfigError

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# checks shared by every method


def _check(scores: np.ndarray, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) == 0:
        raise ConfigError("threshold fitting needs a non-empty 1-D array of scores")
    if not np.isfinite(scores).all():
        raise ConfigError("threshold fitting needs finite scores")
    if labels is None:
        return scores, None
    labels = np.asarray(labels, dtype=bool)
    if labels.shape != scores.shape:
        raise ConfigError("scores and labels differ in length")
    return scores, labels


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError(f"threshold field {name!r}: must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"threshold field {name!r}: must be finite, got {value!r}")
    return number


def _probability(name: str, value: Any) -> float:
    number = _real(name, value)
    if not 0 < number < 1:
        raise ConfigError(f"threshold field {name!r}: must be between 0 and 1 (exclusive), got {value!r}")
    return number


def _positive(name: str, value: Any) -> float:
    number = _real(name, value)
    if number <= 0:
        raise ConfigError(f"threshold field {name!r}: must be positive, got {value!r}")
    return number


def _count(name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < minimum:
        raise ConfigError(f"threshold field {name!r}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _peaks(name: str, value: Any) -> int:
    return _count(name, value, minimum=1)


_TAIL_PARAMS = {
    "risk": _probability,
    "initial_quantile": _probability,
    "initial_threshold": _real,
    "shape": _real,
    "scale": _positive,
    "peaks": _peaks,
}

#: each method's saved parameters (all required) and their checks
_PARAMS: dict[str, dict[str, Any]] = {
    "quantile": {"false_positive_rate": _probability},
    "f_beta": {"beta": _positive},
    "pot": _TAIL_PARAMS,
    "spot": _TAIL_PARAMS,
}

#: saved parameters a method has only sometimes, all or none of them: a ``quantile`` threshold read
#: off an exponential tail (too few normal rows for the empirical quantile) keeps its tail
_OPTIONAL: dict[str, dict[str, Any]] = {
    "quantile": {"initial_threshold": _real, "scale": _positive, "peaks": _peaks},
}

#: the methods :func:`fit_threshold` knows, and their tunable parameters with defaults
THRESHOLD_METHODS: dict[str, dict[str, float]] = {
    "quantile": {"false_positive_rate": 0.01},
    "f_beta": {"beta": 1.0},
    "pot": {"risk": 1e-4, "initial_quantile": 0.98},
    "spot": {"risk": 1e-4, "initial_quantile": 0.98},
}


def _check_method(method: Any) -> str:
    if not isinstance(method, str) or method not in _PARAMS:
        known = ", ".join(sorted(_PARAMS))
        raise ConfigError(f"threshold field 'method': unknown method {method!r} (known: {known})")
    return method


def _check_tail_levels(risk: float, initial_quantile: float) -> None:
    if risk >= 1 - initial_quantile:
        raise ConfigError(
            f"threshold field 'risk': must be below 1 - initial_quantile = {1 - initial_quantile:.6g} "
            f"(the share of rows above the initial threshold), got {risk!r}"
        )


# --------------------------------------------------------------------------------------------------
# the saved threshold


@dataclass(frozen=True)
class Threshold:
    """A fitted alert threshold: ``score >= value`` is an alert.

    ``params`` holds the method's settings and what was fitted besides the value (for ``pot`` and
    ``spot`` the tail model); ``rows`` and ``attacks`` count the validation rows it was fitted on
    (``attacks`` only where labels were used). Saved flat: ``{"method", "value", **params, "rows",
    "attacks"}``, the layout model bundles have always stored.
    """

    method: str
    value: float
    params: dict[str, Any] = field(default_factory=dict)
    rows: int | None = None
    attacks: int | None = None

    def __post_init__(self) -> None:
        method = _check_method(self.method)
        object.__setattr__(self, "value", _real("value", self.value))
        if self.rows is not None:
            object.__setattr__(self, "rows", _count("rows", self.rows))
        if self.attacks is not None:
            object.__setattr__(self, "attacks", _count("attacks", self.attacks))
        if not isinstance(self.params, Mapping):
            raise ConfigError(f"threshold field 'params': must be a mapping, got {self.params!r}")
        checks = dict(_PARAMS[method])
        optional = _OPTIONAL.get(method, {})
        for name in self.params:
            if name not in checks and name not in optional:
                raise ConfigError(f"threshold field {name!r}: not a parameter of the {method!r} method")
        given = [name for name in optional if name in self.params]
        absent = [name for name in optional if name not in self.params]
        if given and absent:
            raise ConfigError(f"threshold field {absent[0]!r}: missing (saved together with {given[0]!r})")
        if given:
            checks.update(optional)
        params: dict[str, Any] = {}
        for name, check in checks.items():
            if name not in self.params:
                raise ConfigError(f"threshold field {name!r}: missing (needed by the {method!r} method)")
            params[name] = check(name, self.params[name])
        if method in ("pot", "spot"):
            _check_tail_levels(params["risk"], params["initial_quantile"])
        object.__setattr__(self, "params", params)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready flat dict, readable back with :meth:`from_dict`."""
        out: dict[str, Any] = {"method": self.method, **self.params, "value": self.value}
        if self.rows is not None:
            out["rows"] = self.rows
        if self.attacks is not None:
            out["attacks"] = self.attacks
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Threshold:
        """The threshold saved by :meth:`to_dict` (or by any earlier nadkit version); a missing,
        unknown or invalid field raises :class:`ConfigError` naming it."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a threshold must be a JSON object, got {type(data).__name__}")
        if "method" not in data:
            raise ConfigError("threshold field 'method': missing")
        if "value" not in data:
            raise ConfigError("threshold field 'value': missing")
        params = {k: v for k, v in data.items() if k not in ("method", "value", "rows", "attacks")}
        return cls(
            method=data["method"],
            value=data["value"],
            params=params,
            rows=data.get("rows"),
            attacks=data.get("attacks"),
        )

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Alerts (``score >= value``) for ``scores``."""
        return apply(self, scores)

    def describe(self) -> str:
        """How the threshold was chosen, in a few words: the method and its settings."""
        settings = {k: v for k, v in self.params.items() if not isinstance(v, Mapping | list)}
        if not settings:
            return self.method
        inner = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items())
        return f"{self.method} ({inner})"


def threshold_value(threshold: Threshold | Mapping[str, Any] | float) -> float:
    """The alert value of a threshold given as a :class:`Threshold`, a saved dict, or a number."""
    if isinstance(threshold, Threshold):
        return threshold.value
    if isinstance(threshold, Mapping):
        return Threshold.from_dict(threshold).value
    return _real("value", threshold)


def apply(threshold: Threshold | Mapping[str, Any] | float, scores: np.ndarray) -> np.ndarray:
    """Alerts for ``scores``: ``score >= value`` (a NaN score never alerts, and is logged)."""
    value = threshold_value(threshold)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ConfigError("scores must be a 1-D array")
    missing = int(np.isnan(scores).sum())
    if missing:
        log.warning("%d of %d scores are NaN and raise no alert", missing, len(scores))
    return scores >= value
