"""Training: a flow table in, a fitted :class:`~nadkit.training.bundle.ModelBundle` out.

:func:`fit` does it in memory (split, features, detector, threshold, metrics); :func:`train_model`
is `nadkit train`: read the flows, :func:`fit`, save. Unsupervised training fits on normal rows only
and keeps a labelled hold-out for thresholds. Supervised training splits labelled flows into
training and validation parts without leaking sessions (the group split where addresses exist, a
stratified random split otherwise); the validation part selects the epoch and the threshold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from nadkit.errors import ConfigError, NadkitError
from nadkit.evaluation.calibration import Calibration, NormalScores
from nadkit.evaluation.drift import DriftReference
from nadkit.evaluation.labels import is_nad_label_set
from nadkit.evaluation.metrics import BinaryMetrics, binary_metrics, macro_f_beta, nad_score
from nadkit.evaluation.overlap import TrainingRows
from nadkit.evaluation.split import (
    MIN_WEIGHING_ROWS,
    bucket_split,
    supervised_split,
    unsupervised_split,
    weighing_split,
)
from nadkit.evaluation.thresholds import Threshold, check_threshold_choice, choose_threshold
from nadkit.features.buckets import BucketView
from nadkit.features.data import detector_data
from nadkit.features.pipeline import ALL_GROUPS, GROUP_NAMES, FeatureConfig, FeaturePipeline
from nadkit.features.ranges import metric_ranges, typical_ranges
from nadkit.features.series import SILENT_SHARE, BucketConfig
from nadkit.fileio import refuse_file
from nadkit.models.base import Detector, DetectorData
from nadkit.models.registry import create
from nadkit.models.trainer import EpochReport
from nadkit.schema import NORMAL, label_expr
from nadkit.sources import BadRows, FileProgress, load_flows
from nadkit.training.bundle import ModelBundle, fingerprint
from nadkit.training.holdout import capture_groups, captures_in, check_holdout_by, training_flows

log = logging.getLogger(__name__)


def use_label_column(frame: pl.DataFrame, label_column: str = "label") -> pl.DataFrame:
    """``frame`` with ``label_column`` as its ``label`` (benign values read as ``normal``), e.g. the
    NSL-KDD ``attack_family``; the chosen column itself is dropped so it cannot become a feature."""
    if label_column == "label":
        return frame
    if label_column not in frame.columns:
        raise ConfigError(
            f"no label column {label_column!r} in the data (columns: {', '.join(frame.columns)})"
        )
    return frame.with_columns(label_expr(pl.col(label_column)).alias("label")).drop(label_column)


def holdout_threshold(
    scores: np.ndarray,
    labels: np.ndarray | None,
    false_positive_rate: float = 0.01,
    *,
    method: str = "auto",
    **params: Any,
) -> tuple[Threshold, BinaryMetrics | None]:
    """The alert threshold chosen on a hold-out's scores (:func:`choose_threshold`), and the
    hold-out's metrics at it (None unless it has attack and normal rows)."""
    threshold = choose_threshold(scores, labels, false_positive_rate, method=method, **params)
    attack = labels != NORMAL if labels is not None else np.zeros(len(scores), dtype=bool)
    both = bool(attack.any() and (~attack).any())
    measured = binary_metrics(scores, attack, threshold.value) if both else None
    return threshold, measured


@dataclass(frozen=True)
class TrainingResult:
    """What a fit produced: the bundle (in memory until :meth:`save`), and the numbers to show."""

    bundle: ModelBundle
    train_rows: int
    holdout_rows: int
    holdout_attacks: int
    fit_seconds: float
    supervised: bool = False
    classes: tuple[str, ...] = ()
    #: rows of each class in the training and hold-out parts (``{"train": {...}, "holdout": {...}}``)
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: unlabelled target rows given to a domain-adapting model
    target_rows: int = 0
    #: normal hold-out rows a detector weighed its errors on (``weigh_errors``), not among
    #: ``holdout_rows``, where the threshold was chosen
    weighing_rows: int = 0
    #: whether the model reads time buckets (``train_rows`` count buckets, ``holdout_rows`` flows)
    buckets: bool = False
    #: training buckets that hold no flow (the bucket view; see ``BucketSeries.silent``)
    silent_buckets: int = 0
    #: the captures whose normal flows were held out whole (``--holdout-by capture``)
    held_out_captures: tuple[str, ...] = ()
    #: how the normal hold-out was drawn: ``rows``, ``time`` or ``capture`` (``rows`` where the flows
    #: had no times or one capture; an unsupervised model of single flows, empty for the others)
    holdout_by: str = ""
    #: packet captures the training flows came from (several pcap files, or a mix's ``capture``
    #: column); 0 for flow records and for flows given in memory
    captures: int = 0
    #: where the bundle was saved (None while it is in memory)
    path: Path | None = None
    #: whether the saved bundle holds ``model.onnx`` (False where the export failed or was not asked)
    onnx: bool = False

    def save(self, out: str | Path, *, overwrite: bool = False, onnx: bool = True) -> TrainingResult:
        """Save the bundle to ``out`` with its ONNX graph (``model.onnx``, for ONNX Runtime scoring)
        when ``onnx``; a model whose export fails is saved without it, with a warning. In a torchrun
        launch of several processes only rank 0 writes. Returns the result with ``path`` and
        ``onnx`` set."""
        from nadkit.models.distributed import is_primary

        out = Path(out)
        refuse_file(out)
        if out.exists() and not overwrite:
            raise ConfigError(f"{out}: already exists (use --force to replace it)")
        if not is_primary():
            return replace(self, path=out, onnx=onnx)
        saved = False
        if onnx:
            try:
                self.bundle.save(out, overwrite=overwrite, onnx=True)
                saved = True
            except NadkitError as error:
                if out.exists() and not overwrite:
                    raise
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                log.warning("%s: saved without model.onnx, it scores on torch (%s)", out, first)
        if not saved:
            self.bundle.save(out, overwrite=overwrite)
        return replace(self, path=out, onnx=saved)


def _class_counts(labels: np.ndarray | None) -> dict[str, int]:
    """Rows of each class, largest first (normal first among equals)."""
    if labels is None:
        return {}
    names, counts = np.unique(np.asarray(labels).astype(str), return_counts=True)
    order = sorted(zip(names.tolist(), counts.tolist(), strict=True), key=lambda item: (-item[1], item[0]))
    return {name: int(count) for name, count in order}


def _bundle(
    detector: Detector,
    threshold: Threshold,
    metrics: dict[str, Any],
    data: DetectorData,
    seen: Sequence[pl.DataFrame],
    *,
    pipeline: FeaturePipeline | None = None,
    view: BucketView | None = None,
    calibration: Calibration | None = None,
    reference: DriftReference | None = None,
) -> ModelBundle:
    """The bundle of a fitted detector, with the fingerprint of the features it was fitted on, the
    row hashes of every flow training read (fitted on, or held out to choose the epoch and the
    threshold), so that evaluation can tell training data (see :mod:`nadkit.evaluation.overlap`),
    and its ``calibration`` (see :func:`calibrate`)."""
    bundle = ModelBundle(
        pipeline=pipeline, view=view, detector=detector, threshold=threshold, metrics=metrics
    )
    bundle.manifest["data_fingerprint"] = fingerprint(data)
    bundle.training_rows = TrainingRows.of(*seen)
    bundle.calibration = calibration
    bundle.reference = reference
    return bundle


def drift_reference(
    holdout: DetectorData, scores: np.ndarray, labels: np.ndarray | None = None
) -> DriftReference | None:
    """The reference drift is measured against (:mod:`nadkit.evaluation.drift`): the detector's input
    and scores of the normal hold-out rows (``labels``: one per row, None for all rows)."""
    normal = _normal_rows(labels, len(scores))
    if not normal.any():
        return None
    return DriftReference.of(holdout.features[normal], np.asarray(scores)[normal], holdout.feature_names)


def _normal_rows(labels: np.ndarray | None, rows: int) -> np.ndarray:
    """Which rows are normal: those labelled so, every row of unlabelled data."""
    if labels is None:
        return np.ones(rows, dtype=bool)
    return np.asarray(labels) == NORMAL


def calibrate(
    holdout_scores: np.ndarray,
    holdout_labels: np.ndarray | None,
    *,
    pipeline: FeaturePipeline | None = None,
    normal_train: pl.DataFrame | None = None,
    ranges: Mapping[str, Any] | None = None,
) -> Calibration:
    """What a bundle keeps to put scores on a readable scale and to explain them: the quantiles of
    the normal hold-out (validation) scores, and each feature's typical range on the normal training
    flows ``normal_train`` (through ``pipeline``), or the given ``ranges`` (bucket metrics)."""
    normal = NormalScores.of(np.asarray(holdout_scores)[_normal_rows(holdout_labels, len(holdout_scores))])
    if normal is None:
        log.info("no normal hold-out scores: records will carry no score percentile")
    found = dict(ranges or {})
    if pipeline is not None and normal_train is not None and normal_train.height:
        found = typical_ranges(pipeline, normal_train)
    finite = np.asarray(holdout_scores, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    top = float(finite.max()) if finite.size else None
    return Calibration(normal=normal, ranges=found, holdout_max=top)


def _training_metrics(
    detector: Detector,
    fit_seconds: float,
    train_rows: int,
    measured: BinaryMetrics | None,
    **extra: Any,
) -> dict[str, Any]:
    """What ``metrics.json`` of an unsupervised model records: fit time, training rows, ``extra``,
    the loss curves and the hold-out metrics at the threshold chosen there."""
    metrics: dict[str, Any] = {"fit_seconds": fit_seconds, "train_rows": train_rows, **extra}
    history = getattr(detector, "history_", None)
    if history is not None:
        metrics["history"] = history.to_dict()
    if measured is not None:
        note = "on the hold-out the threshold was chosen on (optimistic)"
        metrics["holdout"] = {**measured.to_dict(), "note": note}
    return metrics


def _detector(
    model: str | Detector,
    config: Mapping[str, Any] | None,
    seed: int,
    *,
    target: bool,
    buckets: bool,
) -> Detector:
    """A new detector of ``model`` (or ``model`` itself), checked against what training is asked."""
    if isinstance(model, Detector):
        detector = model
    else:
        options = dict(config or {})
        options.setdefault("seed", seed)
        detector = create(model, options)
    if target and not detector.adapts_to_target:
        raise ConfigError(
            f"{detector.name} learns from the training traffic alone and would not use target traffic; "
            "leave --target out or train a domain-adapting model (multitask)"
        )
    if buckets and detector.supervised:
        raise ConfigError(
            f"{detector.name} learns the classes of single flows; the bucket view is for unsupervised models"
        )
    return detector


def default_features(
    detector: Detector | type[Detector],
    *,
    calendar: bool | None = None,
    names: bool = False,
    cadence: bool = False,
    slow_counters: bool = False,
) -> FeatureConfig:
    """The feature settings a detector (or detector class) is trained with: the default groups; the
    calendar group for detectors that read the time of day and day of week
    (:attr:`~nadkit.models.base.Detector.wants_calendar`), or as ``calendar`` says when given; the
    name group when ``names``; the cadence group when ``cadence``. Supervised detectors leave out how
    each burst went (``exchanges``): a classifier learns the training attacks' bursts by them, which
    another day's traffic does not repeat (on the simulator's later day `multitask`'s macro F1 fell
    from 0.60 to 0.48, 6 seeds). Unsupervised detectors leave out the slow window's counters
    (:data:`UNSUPERVISED_COUNTER_WINDOWS`) unless ``slow_counters``."""
    extra = {"calendar"} if (detector.wants_calendar if calendar is None else calendar) else set()
    if names:
        extra.add("names")
    if cadence:
        extra.add("cadence")
    left_out = {"exchanges"} if detector.supervised else set()
    groups = tuple(g for g in ALL_GROUPS if (g in GROUP_NAMES or g in extra) and g not in left_out)
    if detector.supervised or slow_counters:
        return FeatureConfig(groups=groups)
    return FeatureConfig(groups=groups, counter_windows=UNSUPERVISED_COUNTER_WINDOWS)


#: The counter windows an unsupervised detector reads: the short time window and the last
#: connections, not the minute-long one. How many flows a host opened in the last minute follows
#: the hour's load, so a model trained on some hours flags the normal flows of busier ones by it,
#: where the same count among the last connections does not grow with the load (the week-long
#: simulator's PR-AUC 0.997 without it against 0.892 with it, see the README).
UNSUPERVISED_COUNTER_WINDOWS: tuple[str, ...] = ("fast", "connections")


#: the ``holdout_by`` of each way :func:`~nadkit.evaluation.split.unsupervised_split` names its split
HELD_OUT_AS = {"random": "rows", "time-blocks": "time", "captures": "capture"}

#: the fewest normal training rows an unsupervised model is fitted on
MIN_TRAIN_ROWS = 10


def fit(
    frame: pl.DataFrame,
    *,
    model: str | Detector,
    config: Mapping[str, Any] | None = None,
    holdout_fraction: float = 0.3,
    false_positive_rate: float = 0.01,
    seed: int = 0,
    progress: Callable[[EpochReport], None] | None = None,
    target: pl.DataFrame | None = None,
    label_column: str = "label",
    threshold_method: str = "auto",
    threshold_params: Mapping[str, Any] | None = None,
    buckets: BucketConfig | None = None,
    on_stage: Callable[[str], None] | None = None,
    features: FeatureConfig | None = None,
    train_only: np.ndarray | None = None,
    holdout_by: str = "rows",
    holdout_groups: np.ndarray | None = None,
) -> TrainingResult:
    """Train ``model`` (a registered name with its ``config``, or a new detector) on a canonical flow
    table, in memory: split, fit the features and the detector, choose the threshold, measure; no
    file is read or written.

    Unsupervised models, labelled data: the detector learns from normal rows only; a labelled
    hold-out (some normal rows and every attack row) sets the threshold (F1-optimal when it holds
    attacks, capped at the score exceeded by ``false_positive_rate`` of its normal rows; else that
    score). Unlabelled data is taken as mostly normal and the threshold is the quantile one.

    Supervised models (e.g. ``multitask``) need labels: the flows are split by
    :func:`~nadkit.evaluation.split.supervised_split` (``holdout_fraction`` of them to validation),
    the validation part selects the epoch and the threshold on ``1 - P(normal)``. ``target``:
    unlabelled flows of the domain to be scored (featurized with the pipeline fitted on the training
    part), which domain-adapting models (``adapts_to_target``) align to; for any other model it is
    an error. ``label_column``: the column holding the classes to learn (e.g. ``attack_family`` for
    NSL-KDD).

    ``threshold_method`` (see :data:`~nadkit.evaluation.thresholds.THRESHOLD_CHOICES`) and its
    ``threshold_params`` (``false_positive_rate``, ``beta``, ``risk``, ``initial_quantile``) choose
    how the threshold is fitted; they are checked before anything is trained.

    ``buckets``: train an unsupervised model on the time-bucket view instead of single flows (see
    :func:`fit_buckets`). ``train_only``: a mask of normal rows an unsupervised model must train on,
    never hold out (the reviewed benign flows of a retraining, repeated by their weight: held out,
    they would not be learnt, and the champion's false positives would set the threshold).
    ``holdout_by``: how an unsupervised model's normal hold-out is drawn, ``rows`` (single rows at
    random), ``time`` (three stretches of consecutive flows, where the flows have times) or
    ``capture`` (whole captures: the groups ``holdout_groups`` names, one name per row, else the
    frame's ``capture`` column; see :func:`~nadkit.evaluation.split.unsupervised_split` and
    :mod:`nadkit.training.holdout`).
    ``on_stage`` is called with the name of each stage as it starts (``computing features``,
    ``training``, ``choosing the threshold``), for progress displays.
    """
    check_threshold_choice(threshold_method, threshold_params)
    check_holdout_by(holdout_by)
    threshold_choice = {"method": threshold_method, **(threshold_params or {})}
    false_positive_rate = threshold_choice.pop("false_positive_rate", false_positive_rate)
    detector = _detector(model, config, seed, target=target is not None, buckets=buckets is not None)
    features = features if features is not None else default_features(detector)
    frame = use_label_column(frame, label_column)
    if holdout_by != "rows" and (buckets is not None or detector.supervised):
        log.warning(
            "--holdout-by %s: only an unsupervised model of single flows draws its hold-out that way "
            "(time buckets are held out by time, supervised models by session)",
            holdout_by,
        )
    if buckets is not None:
        return fit_buckets(
            detector,
            frame,
            buckets,
            holdout_fraction=holdout_fraction,
            false_positive_rate=false_positive_rate,
            threshold_choice=threshold_choice,
            progress=progress,
            on_stage=on_stage,
        )
    if detector.supervised:
        return _fit_supervised(
            detector,
            frame,
            target=target,
            validation_fraction=holdout_fraction,
            false_positive_rate=false_positive_rate,
            threshold_choice=threshold_choice,
            seed=seed,
            progress=progress,
            on_stage=on_stage,
            features=features,
        )
    groups = capture_groups(frame, holdout_groups, holdout_by)
    stage = _stages(on_stage)
    stage("computing features")
    split = unsupervised_split(
        frame,
        holdout_fraction=holdout_fraction,
        seed=seed,
        train_only=train_only,
        stretches=holdout_by == "time",
        groups=groups,
    )
    if split.train.height == 0:
        raise ConfigError("no normal rows left to train on")
    if split.train.height < MIN_TRAIN_ROWS or split.holdout.height == 0:
        raise ConfigError(
            f"{frame.height:,} flows are too few: {split.train.height:,} to train on and "
            f"{split.holdout.height:,} to choose the threshold on; give it at least {MIN_TRAIN_ROWS} "
            "normal flows to train on and some to hold out"
        )
    pipeline = FeaturePipeline(features).fit(split.train)
    train = detector_data(pipeline, split.train)
    holdout, weighing = _weighing_part(detector, detector_data(pipeline, split.holdout), split.holdout, seed)
    stage("training")
    started = time.perf_counter()
    if weighing is None:
        detector.fit(train, progress=progress)
    else:
        detector.fit(train, validation=weighing, progress=progress)
    fit_seconds = time.perf_counter() - started
    stage("choosing the threshold")
    holdout_scores = detector.score(holdout)
    threshold, measured = holdout_threshold(
        holdout_scores, holdout.labels, false_positive_rate, **threshold_choice
    )
    attack = holdout.labels != NORMAL if holdout.labels is not None else np.zeros(len(holdout), dtype=bool)
    extra = {} if weighing is None else {"weighing_rows": len(weighing)}
    metrics = _training_metrics(detector, fit_seconds, len(train), measured, **extra)
    calibration = calibrate(holdout_scores, holdout.labels, pipeline=pipeline, normal_train=split.train)
    seen = (split.train, split.holdout)
    return TrainingResult(
        bundle=_bundle(
            detector,
            threshold,
            metrics,
            train,
            seen,
            pipeline=pipeline,
            calibration=calibration,
            reference=drift_reference(holdout, holdout_scores, holdout.labels),
        ),
        train_rows=len(train),
        holdout_rows=len(holdout),
        holdout_attacks=int(attack.sum()),
        fit_seconds=fit_seconds,
        class_counts={"train": _class_counts(train.labels), "holdout": _class_counts(holdout.labels)},
        weighing_rows=0 if weighing is None else len(weighing),
        held_out_captures=tuple(split.report.get("captures_held_out", ())),
        holdout_by=HELD_OUT_AS[split.method.removeprefix("normal-only, ")],
    )


def _weighing_part(
    detector: Detector, holdout: DetectorData, frame: pl.DataFrame, seed: int
) -> tuple[DetectorData, DetectorData | None]:
    """The hold-out rows the threshold is chosen on, and the normal rows a detector that weighs its
    errors (``weigh_errors``) weighs them on: half of the hold-out's normal rows, in time the earlier
    half (:func:`~nadkit.evaluation.split.weighing_split`; ``frame`` is the hold-out's flows), so
    that the weights measure how unseen normal traffic differs from the training rows and the
    threshold is not chosen on the rows that set them. None for other detectors, and where the
    hold-out is too small to halve (the detector then weighs on a tenth of its training rows)."""
    if not detector.weighs_errors:
        return holdout, None
    weighing = weighing_split(frame, seed=seed)
    if weighing is None:
        log.warning(
            "the hold-out has too few normal rows to weigh the errors on half of them (%d needed): "
            "%s weighs them on a tenth of its training rows",
            2 * MIN_WEIGHING_ROWS,
            detector.name,
        )
        return holdout, None
    log.info(
        "errors weighed on %d hold-out rows; the threshold chosen on the other %d",
        int(weighing.sum()),
        int((~weighing).sum()),
    )
    return holdout.take(np.flatnonzero(~weighing)), holdout.take(np.flatnonzero(weighing))


def _stages(on_stage: Callable[[str], None] | None) -> Callable[[str], None]:
    """``on_stage``, logging each stage too (a no-op display where None)."""

    def stage(name: str) -> None:
        log.debug("training stage: %s", name)
        if on_stage is not None:
            on_stage(name)

    return stage


def fit_bundle(frame: pl.DataFrame, *, model: str | Detector, **settings: Any) -> ModelBundle:
    """The bundle of :func:`fit` (same settings), for callers that need only the model."""
    return fit(frame, model=model, **settings).bundle


def prepare_out(
    out: str | Path,
    overwrite: bool,
    threshold_method: str = "auto",
    threshold_params: Mapping[str, Any] | None = None,
) -> Path:
    """``out`` as a path a bundle may be written to (not a file; not an existing bundle unless
    ``overwrite``), the threshold choice checked too: what `nadkit train` refuses before reading."""
    out = Path(out)
    refuse_file(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out}: already exists (use --force to replace it)")
    check_threshold_choice(threshold_method, threshold_params)
    return out


def train_model(
    source: str | Path,
    out: str | Path,
    *,
    model: str,
    config: Mapping[str, Any] | None = None,
    seed: int = 0,
    format: str | None = None,
    mapping: str | None = None,
    target: str | Path | None = None,
    buckets: BucketConfig | None = None,
    overwrite: bool = False,
    onnx: bool = True,
    threshold_method: str = "auto",
    threshold_params: Mapping[str, Any] | None = None,
    on_bad_rows: BadRows = "error",
    on_file: FileProgress | None = None,
    **settings: Any,
) -> TrainingResult:
    """`nadkit train`: read the flows of ``source`` (and of ``target``, read the same way), :func:`fit`
    with ``settings``, and save the bundle to ``out`` (``onnx``: with its ONNX graph, see
    :meth:`TrainingResult.save`). ``out`` and the threshold choice are checked before anything is
    read or trained."""
    out = prepare_out(out, overwrite, threshold_method, threshold_params)
    detector = _detector(model, config, seed, target=target is not None, buckets=buckets is not None)
    frame, source_format, settings = training_flows(
        source, settings, format=format, mapping=mapping, on_bad_rows=on_bad_rows, on_file=on_file
    )
    target_frame = None
    if target is not None:
        target_frame, _ = load_flows(target, format=format, mapping=mapping, on_bad_rows=on_bad_rows)
        log.info("target: %d flows from %s", target_frame.height, target)
    with source_named(source):
        result = fit(
            frame,
            model=detector,
            seed=seed,
            target=target_frame,
            buckets=buckets,
            threshold_method=threshold_method,
            threshold_params=threshold_params,
            **settings,
        )
    result = replace(result, captures=captures_in(source, frame, source_format))
    return save_read_from(result, source_format, out, overwrite=overwrite, onnx=onnx)


@contextmanager
def source_named(source: str | Path) -> Iterator[None]:
    """A configuration error raised within names ``source`` first: what the flows read from it
    lack."""
    try:
        yield
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def save_read_from(
    result: TrainingResult, source_format: str | None, out: Path, *, overwrite: bool, onnx: bool
) -> TrainingResult:
    """Save a bundle trained on flows of ``source_format`` to ``out``; its pipeline remembers the
    format, so that flows of another kind are told what it expects."""
    if result.bundle.pipeline is not None:
        result.bundle.pipeline.read_from(source_format)
    return result.save(out, overwrite=overwrite, onnx=onnx)


def _fit_supervised(
    detector: Detector,
    frame: pl.DataFrame,
    *,
    target: pl.DataFrame | None,
    validation_fraction: float,
    false_positive_rate: float,
    threshold_choice: Mapping[str, Any],
    seed: int,
    progress: Callable[[EpochReport], None] | None,
    on_stage: Callable[[str], None] | None = None,
    features: FeatureConfig | None = None,
) -> TrainingResult:
    """The supervised path of :func:`fit`."""
    stage = _stages(on_stage)
    if "label" not in frame.columns:
        raise ConfigError(f"{detector.name} is supervised and the data has no labels")
    unlabelled = frame["label"].null_count()
    if unlabelled:
        log.warning("%d rows without a label are left out of supervised training", unlabelled)
        frame = frame.filter(pl.col("label").is_not_null())
    stage("computing features")
    split = supervised_split(frame, validation_fraction=validation_fraction, seed=seed)
    pipeline = FeaturePipeline(features).fit(split.train)
    train = detector_data(pipeline, split.train)
    validation = detector_data(pipeline, split.validation)
    target_data = None
    if target is not None:
        unlabelled_target = detector_data(pipeline, target)
        # the target's labels, if it has any, are never shown to the model
        target_data = DetectorData(
            unlabelled_target.features,
            unlabelled_target.feature_names,
            entity=unlabelled_target.entity,
            time=unlabelled_target.time,
        )
    stage("training")
    started = time.perf_counter()
    detector.fit(train, validation=validation, target=target_data, progress=progress)
    fit_seconds = time.perf_counter() - started
    stage("choosing the threshold")
    scores = detector.score(validation)
    threshold, measured = holdout_threshold(
        scores, validation.labels, false_positive_rate, **threshold_choice
    )
    assert validation.labels is not None
    attack = validation.labels != NORMAL
    metrics: dict[str, Any] = {
        "fit_seconds": fit_seconds,
        "train_rows": len(train),
        "split": split.report,
        "target_rows": 0 if target_data is None else len(target_data),
    }
    history = getattr(detector, "history_", None)
    if history is not None:
        metrics["history"] = history.to_dict()
    histories = getattr(detector, "histories_", None)
    if histories:
        metrics["histories"] = [h.to_dict() for h in histories]
    weight_choice = getattr(detector, "weight_choice_", None)
    if weight_choice:  # a hybrid's share of the network, and where it was chosen
        metrics["network_weight"] = weight_choice
    note = "on the validation part, which also selected the epoch and the threshold (optimistic)"
    if measured is not None:
        metrics["holdout"] = {**measured.to_dict(), "note": note}
    if detector.classes_ and len(validation):
        predicted = detector.predict(validation)
        classification: dict[str, Any] = {
            "classes": list(detector.classes_),
            "macro_f1": macro_f_beta(validation.labels, predicted, beta=1.0),
            "note": note,
        }
        if is_nad_label_set([*validation.labels.tolist(), *predicted.tolist()]):
            classification["nad_score"] = nad_score(validation.labels, predicted)
        metrics["classification"] = classification
    seen = (split.train, split.validation)
    normal_train = split.train.filter(pl.col("label").fill_null(NORMAL) == NORMAL)
    calibration = calibrate(scores, validation.labels, pipeline=pipeline, normal_train=normal_train)
    return TrainingResult(
        bundle=_bundle(
            detector,
            threshold,
            metrics,
            train,
            seen,
            pipeline=pipeline,
            calibration=calibration,
            reference=drift_reference(validation, scores, validation.labels),
        ),
        train_rows=len(train),
        holdout_rows=len(validation),
        holdout_attacks=int(attack.sum()),
        fit_seconds=fit_seconds,
        supervised=True,
        classes=tuple(detector.classes_),
        class_counts={"train": _class_counts(train.labels), "holdout": _class_counts(validation.labels)},
        target_rows=0 if target_data is None else len(target_data),
    )


# ---------------------------------------------------------------------------------------------------
# the time-bucket view
# ---------------------------------------------------------------------------------------------------


def fit_buckets(
    detector: Detector,
    frame: pl.DataFrame,
    config: BucketConfig,
    *,
    holdout_fraction: float = 0.3,
    false_positive_rate: float = 0.01,
    threshold_choice: Mapping[str, Any] | None = None,
    progress: Callable[[EpochReport], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> TrainingResult:
    """Train an unsupervised ``detector`` on the time-bucket view of ``frame``, in memory.

    The flows are split in time (:func:`~nadkit.evaluation.split.bucket_split`); the view
    (application vocabulary, metric scaling) and the detector are fitted on the buckets of the
    normal training flows; a windowed detector reads windows of consecutive buckets of an entity, a
    row detector one bucket. The hold-out is scored bucket by bucket, each flow takes its bucket's
    score, and the threshold is chosen on the flows' labels (a bucket is as anomalous as the attack
    flows in it make it)."""
    stage = _stages(on_stage)
    stage("computing bucket metrics")
    split = bucket_split(frame, config, holdout_fraction)
    view, train_series = BucketView.fit_series(split.train, config)
    train = view.data(train_series)
    silent = train_series.silent
    if silent >= SILENT_SHARE * max(len(train), 1):
        log.warning("%d of %d training buckets hold no flow (flows far apart in time)", silent, len(train))
    holdout_series = view.series(split.holdout)
    holdout_buckets = view.data(holdout_series)
    stage("training")
    started = time.perf_counter()
    detector.fit(train, progress=progress)
    fit_seconds = time.perf_counter() - started
    stage("choosing the threshold")
    bucket_scores = detector.score(holdout_buckets)
    scores = holdout_series.to_flows(bucket_scores)
    labels = split.holdout["label"].fill_null(NORMAL).to_numpy() if "label" in split.holdout.columns else None
    threshold, measured = holdout_threshold(
        scores, labels, false_positive_rate, **dict(threshold_choice or {"method": "auto"})
    )
    attack = labels != NORMAL if labels is not None else np.zeros(len(scores), dtype=bool)
    assert split.edge is not None  # a time split always has its edge
    view_facts = {
        "kind": "buckets",
        "holdout_from": split.edge.isoformat(),
        "holdout_buckets": len(holdout_buckets),
    }
    metrics = _training_metrics(
        detector, fit_seconds, len(train), measured, train_flows=split.train.height, view=view_facts
    )
    calibration = calibrate(scores, labels, ranges=metric_ranges(train_series.frame, view.metrics))
    seen = (split.train, split.holdout)
    return TrainingResult(
        bundle=_bundle(
            detector,
            threshold,
            metrics,
            train,
            seen,
            view=view,
            calibration=calibration,
            # every hold-out bucket: a bucket's flows may mix normal and attack traffic
            reference=drift_reference(holdout_buckets, bucket_scores),
        ),
        train_rows=len(train),
        holdout_rows=len(scores),
        holdout_attacks=int(attack.sum()),
        fit_seconds=fit_seconds,
        class_counts={"holdout": _class_counts(labels)},
        buckets=True,
        silent_buckets=silent,
    )
