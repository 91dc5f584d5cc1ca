"""The Python API: read flows, train a model, detect, in a few lines.

>>> import nadkit
>>> flows = nadkit.read_flows("capture.pcap")          # any supported format -> Polars frame
>>> model = nadkit.train(flows, model="ae")            # in memory; model.save(dir), nadkit.load(dir)
>>> alerts = model.detect(new_flows, alerts_only=True)  # scored, explained records

Everything here is the same code the command line runs: :func:`read_flows` is the readers of
``nadkit detect``, :func:`train` is ``nadkit train`` without the files
(:func:`nadkit.training.fit.fit`), :meth:`Model.detect` is the scorer of the service and the stream.
For arrays instead of flow tables, :func:`nadkit.models.create` gives a detector that fits and
scores NumPy arrays and pandas or Polars tables directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from nadkit.detection.detect import score_flows
from nadkit.errors import ConfigError
from nadkit.evaluation.metrics import BinaryMetrics, binary_metrics
from nadkit.evaluation.thresholds import Threshold
from nadkit.schema import NORMAL
from nadkit.sources import load_flows
from nadkit.training.bundle import ModelBundle
from nadkit.training.choice import AUTO_CANDIDATES, choose
from nadkit.training.fit import TrainingResult, fit
from nadkit.training.holdout import captures_in, training_flows

Flows = pl.DataFrame | str | Path


def read_flows(
    source: str | Path, *, format: str | None = None, mapping: Mapping[str, str] | str | None = None
) -> pl.DataFrame:
    """The flows of ``source`` (a packet capture, a flow log in any format ``nadkit formats``
    lists, or a folder of them) as a canonical Polars frame. ``format`` names the format when it
    cannot be told from the file; ``mapping`` maps a CSV's own column names to canonical ones."""
    frame, _ = load_flows(source, format=format, mapping=mapping)
    return frame


def _frame(flows: Flows) -> pl.DataFrame:
    if isinstance(flows, pl.DataFrame):
        return flows
    if isinstance(flows, str | Path):
        return read_flows(flows)
    raise ConfigError(f"flows must be a Polars frame or a file path, not {type(flows).__name__}")


@dataclass
class Model:
    """A trained model: its :class:`~nadkit.training.bundle.ModelBundle` (features, detector,
    threshold) and, when trained in this process, what training measured."""

    bundle: ModelBundle
    training: TrainingResult | None = None

    @property
    def name(self) -> str:
        """The detector's registry name (``ae``, ``iforest``...)."""
        return self.bundle.detector.name

    @property
    def threshold(self) -> Threshold:
        """The alert threshold: a flow whose score reaches ``threshold.value`` is an alert."""
        if self.bundle.threshold is None:
            raise ConfigError("the model has no threshold")
        return self.bundle.threshold

    def score(self, flows: Flows) -> np.ndarray:
        """One anomaly score per flow, in input order (higher is more anomalous)."""
        return self.bundle.score(_frame(flows))

    def detect(self, flows: Flows, *, top: int = 5, alerts_only: bool = False) -> pl.DataFrame:
        """Score ``flows`` as one table: each flow's record (its identifying columns, ``score``,
        ``threshold``, ``alert``, ``class`` for models with classes, and the ``top`` features that
        explain the score), in input order; ``alerts_only`` keeps the alerts."""
        return score_flows(self.bundle, _frame(flows), top=top, alerts_only=alerts_only)

    def evaluate(self, flows: Flows) -> BinaryMetrics:
        """Detection quality on labelled ``flows`` at the model's threshold (ROC-AUC, PR-AUC,
        precision, recall, F1, false-positive rate)."""
        frame = _frame(flows)
        if "label" not in frame.columns:
            raise ConfigError("evaluation needs labelled flows (a 'label' column)")
        attack = (frame["label"].fill_null(NORMAL) != NORMAL).to_numpy()
        return binary_metrics(self.score(frame), attack, self.threshold.value)

    def save(self, path: str | Path, *, overwrite: bool = False, onnx: bool = True) -> Path:
        """Save the model as a bundle directory (``onnx``: with its ONNX graph where the model
        exports), loadable with :func:`load` and every ``nadkit`` command."""
        if self.training is not None:
            self.training = self.training.save(path, overwrite=overwrite, onnx=onnx)
            return Path(path)
        return self.bundle.save(path, overwrite=overwrite, onnx=onnx)


def train(
    flows: Flows,
    *,
    model: str = "ae",
    config: Mapping[str, Any] | None = None,
    candidates: Sequence[str] | None = None,
    **settings: Any,
) -> Model:
    """Train ``model`` on ``flows`` (a frame, or a file read with :func:`read_flows`), in memory,
    as ``nadkit train`` does: normal flows to learn from, a labelled hold-out for the threshold.
    ``config``: the detector's settings (``nadkit models show NAME`` lists them); ``settings``: those
    of :func:`nadkit.training.fit.fit` (``seed``, ``holdout_fraction``, ``false_positive_rate``,
    ``threshold_method``...). ``model="auto"`` is ``nadkit train --auto``: each of ``candidates``
    (default ``ae``, ``vae``, ``iforest``, ``ecod``) trained with its defaults, the best hold-out
    PR-AUC kept (:func:`nadkit.training.choice.choose`; the flows need labelled attacks)."""
    source_format = None
    if isinstance(flows, str | Path):
        frame, source_format, settings = training_flows(flows, settings)
    else:
        frame = _frame(flows)
    if candidates is not None and model != "auto":
        raise ConfigError('candidates are what model="auto" chooses among')
    if model == "auto":
        chosen_among = AUTO_CANDIDATES if candidates is None else candidates
        result = choose(frame, chosen_among, config=config, **settings).result
    else:
        result = fit(frame, model=model, config=config, **settings)
    if result.bundle.pipeline is not None:  # flows of another kind are then told what it expects
        result.bundle.pipeline.read_from(source_format)
    if isinstance(flows, str | Path) and source_format is not None:
        result = replace(result, captures=captures_in(flows, frame, source_format))
    return Model(bundle=result.bundle, training=result)


def load(path: str | Path) -> Model:
    """A model saved by :meth:`Model.save` or ``nadkit train``."""
    return Model(bundle=ModelBundle.load(path))
