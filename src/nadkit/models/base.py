"""The Detector contract, the data detectors read, and the explicit registry of detectors.

A detector reads a :class:`DetectorData`: the scaled feature matrix that a fitted
:class:`~nadkit.features.pipeline.FeaturePipeline` produced, the feature names, and for sequence
models the entity and time of each row (windows are built from those, see
:mod:`nadkit.features.series`). Flows in, features out is the pipeline's job; scores out is the
detector's; thresholds live outside both (:mod:`nadkit.evaluation.thresholds`).

Contract (every registered detector passes ``tests/conformance``):

- the constructor only stores a frozen config; learned state ends in ``_``;
- ``fit(train, *, validation=None, target=None)`` returns ``self``; unsupervised detectors learn
  from ``train`` as normal traffic; ``target`` is unlabelled traffic of the domain to be scored
  (used by domain-adapting models, which say so with ``adapts_to_target``; ignored by others);
- ``score(data)`` gives one finite float64 per row, higher = more anomalous; it raises
  :class:`NotFittedError` before ``fit``;
- ``contributions(data)`` gives an ``(n, d)`` array: each feature's share of a row's score (each
  row sums to its score); for unsupervised detectors the shares are per-feature errors, at least 0;
  supervised models' contributions may be signed (an attribution such as integrated gradients:
  negative where a feature pulls the row towards normal); ``explain(data, top)`` turns it into the
  top features per row (largest first); detectors whose contributions cost far more than their
  scores say so with ``costly_contributions``, and scoring then explains only the alerts;
- ``input`` says whether the detector reads single rows or windows of rows;
- ``test_config()`` is a config that trains in seconds, for the test suite;
- ``export_module()`` gives a fitted detector's scoring as a plain ``nn.Module`` that maps ``x``
  (rows ``(b, d)``, or windows ``(b, window, d)`` with their ``(b, window)`` boolean ``mask``) to the
  ``(b, d)`` float32 contributions, for export to ONNX (:mod:`nadkit.models.export`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import numpy as np

from nadkit.config import typed_settings
from nadkit.errors import ConfigError, NadkitError
from nadkit.features.data import DetectorData, as_detector_data

if TYPE_CHECKING:
    from torch import nn

    from nadkit.models.trainer import EpochReport

log = logging.getLogger(__name__)

InputKind = Literal["rows", "windows"]


class NotFittedError(NadkitError):
    """A detector was used before it was fitted."""


@dataclass(frozen=True)
class DetectorConfig:
    """Base of every detector's configuration (frozen; saved into the model bundle)."""

    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from a dict (e.g. loaded from YAML/TOML); unknown keys are an error naming them."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"unknown option {unknown[0]!r} for {cls.__name__} (known: {', '.join(sorted(fields))})"
            )
        values = {}
        for key, value in typed_settings(cls, data, f"{cls.__name__} option").items():
            default = getattr(cls, key, None) if key in fields else None
            values[key] = tuple(value) if isinstance(default, tuple) and isinstance(value, list) else value
        return cls(**values)


class Detector(ABC):
    """Base class of every detector (see the module docstring for the contract)."""

    #: registry name
    name: ClassVar[str]
    #: one line for users (`nadkit models available`); the docstring's first sentence when empty
    summary: ClassVar[str] = ""
    #: whether the detector scores single rows or windows of rows
    input: ClassVar[InputKind] = "rows"
    #: whether the detector is trained, by default, with the calendar features (time of day and day
    #: of week, :mod:`nadkit.features.calendar`) among its per-flow features
    wants_calendar: ClassVar[bool] = False
    #: whether ``fit`` needs labels
    supervised: ClassVar[bool] = False
    #: whether ``fit`` learns from ``target`` rows (domain adaptation); others ignore them
    adapts_to_target: ClassVar[bool] = False
    #: whether ``contributions`` costs far more than ``score`` (an attribution method rather than
    #: per-feature errors), so that scoring computes every row's score and explains only the alerts
    costly_contributions: ClassVar[bool] = False
    #: whether a saved ONNX graph scores faster on ONNX Runtime than the detector itself (neural
    #: networks; tree and order-statistic baselines are faster in NumPy)
    prefers_onnx: ClassVar[bool] = False
    #: whether ``fit`` weighs its errors on the normal ``validation`` rows it is given, so that
    #: training hands it normal rows held out for the purpose (and chooses the threshold on others)
    weighs_errors: bool = False
    #: the config dataclass of this detector
    config_class: ClassVar[type[DetectorConfig]] = DetectorConfig
    #: the classes a supervised detector predicts, once fitted (empty for the others)
    classes_: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every detector reads arrays and tables too: the data methods a class defines accept what
        :func:`~nadkit.features.data.as_detector_data` reads (a NumPy array, a pandas or Polars
        table) besides :class:`DetectorData`."""
        super().__init_subclass__(**kwargs)
        for name in _DATA_METHODS:
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_reads_arrays", False):
                setattr(cls, name, _reading_arrays(method))

    def __init__(self, config: DetectorConfig | None = None) -> None:
        if config is None:
            config = self.config_class()
        if not isinstance(config, self.config_class):
            raise ConfigError(f"{type(self).__name__} takes a {self.config_class.__name__}")
        self.config = config

    @classmethod
    def test_config(cls) -> DetectorConfig:
        """A configuration that trains in a few seconds on a few thousand rows."""
        return cls.config_class()

    @abstractmethod
    def fit(
        self,
        train: DetectorData,
        *,
        validation: DetectorData | None = None,
        target: DetectorData | None = None,
        progress: Callable[[EpochReport], None] | None = None,
    ) -> Self:
        """Learn from ``train`` (normal traffic for unsupervised detectors); ``progress`` is called
        after each epoch by detectors that train in epochs (others never call it)."""

    @abstractmethod
    def score(self, data: DetectorData) -> np.ndarray:
        """One float64 anomaly score per row (higher = more anomalous)."""

    @abstractmethod
    def contributions(self, data: DetectorData) -> np.ndarray:
        """``(rows, features)`` float64: how much each feature adds to each row's score (each row
        sums to its score). Non-negative for unsupervised detectors; a supervised model's may be
        signed (negative: the feature pulls the row towards normal)."""

    def predict(self, data: DetectorData) -> np.ndarray:
        """Each row's predicted class (one of :attr:`classes_`); only supervised detectors have
        classes, the others raise :class:`NadkitError`."""
        raise NadkitError(f"{self.name} predicts no classes: it scores how anomalous each row is")

    def score_and_predict(self, data: DetectorData) -> tuple[np.ndarray, np.ndarray | None]:
        """Each row's score and, for models with classes, its predicted class (None for others),
        in one pass over the model where it allows (supervised models override this)."""
        if not self.classes_:
            return self.score(data), None
        return self.score(data), np.asarray(self.predict(data))

    def contribution_batch_rows(self) -> int | None:
        """Rows per batch when contributions are computed outside the detector (an exported graph
        on ONNX Runtime); None: the config's ``score_batch_size``."""
        return None

    def explain(self, data: DetectorData, top: int = 5) -> list[list[tuple[str, float]]]:
        """The ``top`` contributing features of each row, largest first, as (name, contribution)."""
        indices, values = top_contributions(self.contributions(data), top)
        names = data.feature_names
        return [
            [(names[j], float(v)) for j, v in zip(row, shares, strict=True)]
            for row, shares in zip(indices.tolist(), values.tolist(), strict=True)
        ]

    # -- saving (the bundle stores these arrays in safetensors, the config as JSON) ---------------

    def state(self) -> dict[str, np.ndarray]:
        """The learned state as named arrays (no pickle); see :meth:`load_state`."""
        raise NotImplementedError(f"{self.name} cannot be saved yet")

    def load_state(self, arrays: Mapping[str, np.ndarray], feature_names: tuple[str, ...]) -> Self:
        """Restore a fitted detector from :meth:`state`'s arrays and the features it was fitted on."""
        raise NotImplementedError(f"{self.name} cannot be loaded yet")

    @property
    def device_type(self) -> str:
        """The type of device the detector scores on: ``cpu`` unless its network sits on a GPU
        (``cuda``); what the ``auto`` scoring engine asks."""
        return str(getattr(getattr(self, "device_", None), "type", "cpu"))

    def finish_loading(self) -> None:
        """Build now whatever :meth:`load_state` left for first use (a neural network, where torch
        was not imported yet), so that saved parameters that do not fit show now; nothing here."""
        return None

    # -- export (see :mod:`nadkit.models.export`) ----------------------------------------------------

    def export_module(self) -> nn.Module:
        """The fitted scoring as a CPU ``nn.Module`` in eval mode: ``forward(x)`` for rows,
        ``forward(x, mask)`` for windows, giving the ``(b, d)`` float32 contributions whose row sums
        are the scores. Detectors that cannot be exported raise :class:`NadkitError` saying why."""
        raise NadkitError(f"{self.name} cannot be exported to ONNX: it has no export module")

    # -- helpers for implementations ---------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        """True once ``fit`` has run."""
        return getattr(self, "feature_names_", None) is not None

    def _check_fitted(self, data: DetectorData) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} is not fitted yet (call fit first)")
        if tuple(data.feature_names) != tuple(self.feature_names_):
            raise ConfigError(
                f"{self.name} was fitted on {len(self.feature_names_)} features and is given "
                f"{len(data.feature_names)} different ones"
            )
        if self.input == "windows" and data.entity is None and data.time is None:
            log.debug("%s: no entity or time given; rows form one sequence in their order", self.name)

    def _start_fit(self, train: DetectorData) -> None:
        """Checks before fitting; forgets an earlier fit so a failed refit leaves no half state."""
        if len(train) == 0:
            raise ConfigError(f"{self.name}: cannot fit on an empty table")
        self.feature_names_ = None

    def _finish_fit(self, train: DetectorData) -> None:
        """Marks the detector fitted on ``train``'s features (the last step of ``fit``)."""
        self.feature_names_: tuple[str, ...] | None = tuple(train.feature_names)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


def top_contributions(contributions: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``top`` largest contributions of each row, largest first, and their feature indices:
    ``(indices, values)``, both ``(rows, min(top, features))``. The one ranking behind every
    explanation (a detector's :meth:`Detector.explain`, the scorers' ``top_features``): equal
    contributions rank by feature index, a NaN ranks first. ``top`` passes of a row-wise argmax, so
    work grows with rows x features x ``top``, not with a full sort of each row."""
    contributions = np.asarray(contributions)
    if contributions.dtype not in (np.float32, np.float64):
        contributions = contributions.astype(np.float64)
    if contributions.ndim != 2:
        raise ConfigError("contributions must be a 2-D array (rows x features)")
    top = max(1, min(int(top), contributions.shape[1]))
    indices = np.empty((len(contributions), top), dtype=np.int64)
    # in blocks of rows, so the working copy stays small and in cache
    for start in range(0, len(contributions), _TOP_BLOCK_ROWS):
        block = contributions[start : start + _TOP_BLOCK_ROWS]
        indices[start : start + len(block)] = _top_of_block(block, top)
    values = np.take_along_axis(contributions, indices, axis=1).astype(np.float64, copy=False)
    return indices, values


#: rows ranked at a time by :func:`top_contributions`
_TOP_BLOCK_ROWS = 8192


def _top_of_block(block: np.ndarray, top: int) -> np.ndarray:
    rows = np.arange(len(block))
    remaining = block.copy()
    indices = np.empty((len(block), top), dtype=np.int64)
    for rank in range(top):
        picked = np.argmax(remaining, axis=1)
        indices[:, rank] = picked
        remaining[rows, picked] = -np.inf
    # once only -inf is left in a row, argmax could pick a feature twice: rank such rows in full
    odd = np.flatnonzero(np.isneginf(block).any(axis=1))
    if len(odd):
        key = np.where(np.isnan(block[odd]), np.inf, block[odd])
        indices[odd] = np.argsort(-key, axis=1, kind="stable")[:, :top]
    return indices


#: the methods whose data arguments :meth:`Detector.__init_subclass__` converts
_DATA_METHODS = ("fit", "score", "contributions", "predict", "score_and_predict", "explain", "predict_proba")
_DATA_ARGUMENTS = ("train", "validation", "target")


def _reading_arrays(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` with its data arguments (the first, and ``validation``/``target``) converted by
    :func:`~nadkit.features.data.as_detector_data`, under the fitted feature names when they match."""

    @functools.wraps(method)
    def wrapper(self: Detector, data: Any, *args: Any, **kwargs: Any) -> Any:
        names = getattr(self, "feature_names_", None)
        data = _converted(data, names)
        for key in _DATA_ARGUMENTS:
            if kwargs.get(key) is not None:
                kwargs[key] = _converted(kwargs[key], names)
        return method(self, data, *args, **kwargs)

    wrapper._reads_arrays = True  # type: ignore[attr-defined]
    return wrapper


def _converted(data: Any, names: tuple[str, ...] | None) -> DetectorData:
    if isinstance(data, DetectorData):
        return data
    converted = as_detector_data(data)
    bare = not hasattr(data, "columns")  # an array has no names of its own: it takes the fitted ones
    if bare and names is not None and converted.width == len(names):
        converted = as_detector_data(converted.features, names)
    return converted


for _name in ("predict", "score_and_predict", "explain"):
    setattr(Detector, _name, _reading_arrays(Detector.__dict__[_name]))
