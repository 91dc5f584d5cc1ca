"""The multi-task detector (:class:`MultitaskDetector`): its training (class-weighted batches, the
joint loss with CMD towards target rows, model selection on validation rows, an ensemble over seeds),
scoring, attribution, export and saved state."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Self

import numpy as np
import torch
import torch.nn.functional as functional
from torch import nn

from nadkit.errors import ConfigError
from nadkit.evaluation.labels import is_nad_label_set
from nadkit.evaluation.metrics import macro_f_beta, nad_score
from nadkit.evaluation.split import stratified_holdout
from nadkit.models.base import Detector, DetectorData, NotFittedError
from nadkit.models.multitask.config import MultitaskConfig
from nadkit.models.multitask.layers import BinaryHeads, central_moment_discrepancy, lecun_normal_
from nadkit.models.multitask.network import IntegratedGradients, MultitaskClassifier
from nadkit.models.multitask.periodic import PeriodicEncoding
from nadkit.models.multitask.quantile import Standardize
from nadkit.models.neural import build_for_weights
from nadkit.models.trainer import Batch, EpochReport, Trainer, TrainingHistory, resolve_device
from nadkit.schema import NORMAL

log = logging.getLogger(__name__)

#: the state entry holding the class names
CLASSES_KEY = "classes"
#: rows of each class kept at least (when there are that many) by ``max_train_rows``
_MIN_ROWS_PER_CLASS = 1000


def selection_score(true: np.ndarray, predicted: np.ndarray, beta: float = 1.0) -> float:
    """The model-selection metric of predicted class names: the NAD 2021 score when every label is a
    NAD class, else the macro F-beta."""
    if is_nad_label_set([*np.unique(true).tolist(), *np.unique(predicted).tolist()]):
        return nad_score(true, predicted)
    return macro_f_beta(true, predicted, beta)


@dataclass
class SeedEpochReport(EpochReport):
    """An epoch of one of the ``seeds`` networks: ``seed_index`` (1-based) of ``seeds``, whose epochs
    count from 1 again."""

    seed_index: int = 1
    seeds: int = 1


@dataclass
class _Rows:
    """Standardised features of labelled (``codes``) or unlabelled rows, as float32 arrays."""

    x: np.ndarray
    codes: np.ndarray | None = None

    def batches(self, size: int) -> Iterator[Batch]:
        for start in range(0, len(self.x), size):
            x = torch.from_numpy(self.x[start : start + size])
            y = None if self.codes is None else torch.from_numpy(self.codes[start : start + size])
            yield Batch(x=x, y=y)


class MultitaskDetector(Detector):
    """Supervised multi-class detector (see :mod:`nadkit.models.multitask`): learns the classes of
    ``train.labels`` (which must include ``normal``); scores ``1 - P(normal)``; ``predict`` names the
    most probable class."""

    name = "multitask"
    summary = "multi-class network (one head per class, CMD domain adaptation); score 1 - P(normal)"
    input = "rows"
    supervised = True
    adapts_to_target = True
    costly_contributions = True
    prefers_onnx = True
    config_class = MultitaskConfig
    config: MultitaskConfig

    @classmethod
    def test_config(cls) -> MultitaskConfig:
        """Small and quick: trains in a few seconds on a few thousand rows."""
        return MultitaskConfig(
            width=32,
            latent=8,
            head_width=16,
            epochs=12,
            patience=4,
            batch_size=256,
            steps_per_epoch=25,
            seeds=1,
            attribution_steps=16,
            input_bins=4,
            device="cpu",
        )

    # -- fitting ------------------------------------------------------------------------------------

    def fit(
        self,
        train: DetectorData,
        *,
        validation: DetectorData | None = None,
        target: DetectorData | None = None,
        progress: Callable[[EpochReport], None] | None = None,
    ) -> Self:
        """Learn the classes of ``train.labels``. ``validation`` (labelled) selects the best epoch,
        else a stratified random ``validation_fraction`` of ``train`` is held out for it (the caller
        should split by sessions where it can, see :func:`nadkit.training.fit.train_model`).
        ``target``: unlabelled rows of the domain to be scored, aligned to by CMD. ``progress`` is
        called after every epoch of each of the ``seeds`` networks with a :class:`SeedEpochReport`."""
        self._start_fit(train)
        config = self.config
        if train.labels is None:
            raise ConfigError(f"{self.name} is supervised: the training data needs labels")
        rng = np.random.default_rng(config.seed)
        labels = np.asarray(train.labels).astype(str)
        others = sorted(set(labels.tolist()) - {NORMAL})
        if len(others) == len(set(labels.tolist())):
            raise ConfigError(f"{self.name}: the training labels need {NORMAL!r} rows")
        if not others:
            raise ConfigError(f"{self.name}: the training labels need at least one class besides {NORMAL!r}")
        classes = (NORMAL, *others)
        codes = _encode(labels, classes)
        rows = np.arange(len(train))
        if validation is None and config.validation_fraction > 0:
            held = stratified_holdout(codes, config.validation_fraction, config.seed)
            rows = np.flatnonzero(~held)
            validation = train.take(np.flatnonzero(held))
        if config.max_train_rows is not None and len(rows) > config.max_train_rows:
            rows = rows[_class_sample(codes[rows], config.max_train_rows, rng)]
        train_codes = codes[rows]
        train_x = train.features[rows]
        validation_codes: np.ndarray | None = None
        if validation is not None:
            if validation.labels is None:
                raise ConfigError(f"{self.name}: the validation data needs labels")
            validation_labels = np.asarray(validation.labels).astype(str)
            unknown = sorted(set(validation_labels.tolist()) - set(classes))
            if unknown:
                log.warning("validation classes not in the training data (never predicted): %s", unknown)
            validation_codes = _encode(validation_labels, classes, unknown=-1)

        classifier = MultitaskClassifier(train.width, len(classes), config)
        classifier.standardize.fit_quantiles(_quantile_sample(train_x, rng))
        mapped = _mapped(classifier.standardize, train_x)
        mean = mapped.mean(axis=0)
        std = mapped.std(axis=0)
        classifier.standardize.mean.copy_(torch.from_numpy(mean))
        classifier.standardize.scale.copy_(torch.from_numpy(np.where(std > 1e-6, std, 1.0)))
        normal_rows = train_x[train_codes == 0]
        classifier.reference.copy_(torch.from_numpy(normal_rows.astype(np.float64).mean(axis=0)))

        def standardised(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return classifier.standardize(torch.from_numpy(x)).numpy()

        source = _Rows(standardised(train_x), train_codes.astype(np.int64))
        binned = [member.bins for member in classifier.members if member.bins is not None]
        if binned:
            # the members share one set of bins, from one sample of the standardised rows
            binned[0].fit(_quantile_sample(source.x, rng))
            for bins in binned[1:]:
                bins.load_state_dict(binned[0].state_dict())
        held_out = (
            _Rows(standardised(validation.features), validation_codes.astype(np.int64))
            if validation is not None and validation_codes is not None
            else None
        )
        target_rows = _Rows(standardised(target.features)) if target is not None and len(target) else None
        if target_rows is not None and config.cmd_weight == 0:
            log.warning("%s: target rows given but cmd_weight is 0; they are not used", self.name)
            target_rows = None
        log.info(
            "%s: %d training rows, %d validation rows, %d target rows, classes %s",
            self.name,
            len(source.x),
            0 if held_out is None else len(held_out.x),
            0 if target_rows is None else len(target_rows.x),
            list(classes),
        )
        self.histories_: list[TrainingHistory] = []
        trainer_config = config.trainer_config()
        budget = None if config.time_budget_s is None else config.time_budget_s / config.seeds
        for member_index, member in enumerate(classifier.members):
            member_seed = config.seed + member_index
            torch.manual_seed(member_seed)
            # each member starts from its own seed's initialisation
            _initialise(member)
            member_config = dataclasses.replace(trainer_config, seed=member_seed, time_budget_s=budget)
            history = Trainer(member_config).fit(
                member,
                self._loss,
                self._batch_factory(source, target_rows, member_seed),
                (lambda: held_out.batches(config.score_batch_size)) if held_out is not None else None,
                selection=self._selection(held_out, classes) if held_out is not None else None,
                progress=_seed_progress(progress, member_index + 1, config.seeds),
            )
            self.histories_.append(history)
        classifier.eval()
        self.device_ = resolve_device(config.device)
        self.module_ = classifier.to(self.device_)
        self.classes_: tuple[str, ...] = classes
        self.history_ = self.histories_[0]
        self._finish_fit(train)
        return self

    def _batch_factory(
        self, source: _Rows, target: _Rows | None, seed: int
    ) -> Callable[[int], Iterator[Batch]]:
        """Each epoch's batches: class-weighted labelled rows, plus (with a target) a target batch
        and, for ``cmd_source="natural"``, a uniform draw of labelled rows."""
        config = self.config
        assert source.codes is not None
        codes = source.codes
        counts = np.bincount(codes)
        members = [np.flatnonzero(codes == c) for c in range(len(counts))]
        class_weights = class_draw_probabilities(counts, config.class_balance)
        size = min(config.batch_size, max(len(codes), 1))
        steps = config.steps_per_epoch or max(1, math.ceil(len(codes) / config.batch_size))

        def batches(epoch: int) -> Iterator[Batch]:
            rng = np.random.default_rng([seed, epoch])
            drawn_classes = rng.choice(len(counts), size=(steps, size), p=class_weights)
            for step in range(steps):
                chosen = drawn_classes[step]
                rows = np.empty(size, dtype=np.int64)
                for cls in np.unique(chosen):
                    where = chosen == cls
                    rows[where] = members[cls][rng.integers(0, len(members[cls]), int(where.sum()))]
                extra: dict[str, torch.Tensor] = {}
                if target is not None:
                    extra["target"] = torch.from_numpy(target.x[rng.integers(0, len(target.x), size)])
                    if config.cmd_source == "natural":
                        extra["natural"] = torch.from_numpy(source.x[rng.integers(0, len(source.x), size)])
                yield Batch(x=torch.from_numpy(source.x[rows]), y=torch.from_numpy(codes[rows]), extra=extra)

        return batches

    def _loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """Multi-class cross-entropy + binary heads' cross-entropy + CMD (with a target batch)."""
        config = self.config
        assert batch.y is not None
        latent, class_logits, binary_logits = module(batch.x)
        known = batch.y >= 0
        if not bool(known.all()):  # validation rows of classes the training data lacks
            latent, class_logits, binary_logits = latent[known], class_logits[known], binary_logits[known]
        y = batch.y[known]
        if len(y) == 0:
            return class_logits.sum() * 0.0
        loss = functional.cross_entropy(class_logits, y)
        if config.binary_weight > 0:
            one_hot = functional.one_hot(y, class_logits.shape[1]).to(binary_logits.dtype)
            loss = loss + config.binary_weight * functional.binary_cross_entropy_with_logits(
                binary_logits, one_hot
            )
        target = batch.extra.get("target")
        if target is not None and config.cmd_weight > 0:
            natural = batch.extra.get("natural")
            source_latent = module.encode(natural) if natural is not None else latent
            target_latent = module.encode(target)
            loss = loss + config.cmd_weight * central_moment_discrepancy(
                source_latent, target_latent, config.cmd_moments
            )
        return loss

    def _selection(self, validation: _Rows, classes: tuple[str, ...]) -> Callable[[nn.Module], float]:
        """The validation selection score of a member network's multi-class predictions."""
        assert validation.codes is not None
        names = np.asarray([*classes, "(unknown class)"], dtype=object)
        truth = names[validation.codes]  # code -1 (a class unseen in training) is the last name
        beta = self.config.selection_beta
        size = self.config.score_batch_size

        def score(module: nn.Module) -> float:
            device = next(module.parameters()).device
            guesses = []
            for batch in validation.batches(size):
                guesses.append(module(batch.x.to(device))[1].argmax(dim=1).cpu().numpy())
            return selection_score(truth, names[np.concatenate(guesses)], beta)

        return score

    # -- the contract ------------------------------------------------------------------------------

    def predict_proba(self, data: DetectorData) -> np.ndarray:
        """Class probabilities ``(rows, classes)`` in the order of ``classes_``, float64."""
        self._check_fitted(data)
        out = np.zeros((len(data), len(self.classes_)), dtype=np.float64)
        module = self.module_.eval()
        size = self.config.score_batch_size
        with torch.no_grad():
            for start in range(0, len(data), size):
                x = torch.from_numpy(data.features[start : start + size]).to(self.device_)
                out[start : start + size] = module(x).double().cpu().numpy()
        return out

    def predict(self, data: DetectorData) -> np.ndarray:
        """The most probable class name of each row."""
        return np.asarray(self.classes_)[self.predict_proba(data).argmax(axis=1)]

    def score(self, data: DetectorData) -> np.ndarray:
        """``1 - P(normal)`` of each row (summed over the attack classes, precise near 0), float64."""
        return self.predict_proba(data)[:, 1:].sum(axis=1)

    def score_and_predict(self, data: DetectorData) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`score` and :meth:`predict` of each row from one pass over the networks."""
        probabilities = self.predict_proba(data)
        return probabilities[:, 1:].sum(axis=1), np.asarray(self.classes_)[probabilities.argmax(axis=1)]

    def contribution_batch_rows(self) -> int:
        """Rows per batch of the attribution: ``score_batch_size`` path points in all."""
        return max(1, self.config.score_batch_size // self.config.attribution_steps)

    def contributions(self, data: DetectorData) -> np.ndarray:
        """Integrated-gradients attribution of the score from the mean normal training row: signed,
        each row summing to its score (see :mod:`nadkit.models.multitask`)."""
        self._check_fitted(data)
        out = np.zeros((len(data), data.width), dtype=np.float64)
        if len(data) == 0:
            return out
        attribution = IntegratedGradients(self.module_.eval(), self.config.attribution_steps)
        attribution.to(self.device_)
        chunk = self.contribution_batch_rows()
        with torch.no_grad():
            for start in range(0, len(data), chunk):
                x = torch.from_numpy(data.features[start : start + chunk]).to(self.device_)
                out[start : start + chunk] = attribution(x).double().cpu().numpy()
        # the float32 rows sum to the score up to rounding; make the float64 sums exact
        out += ((self.score(data) - out.sum(axis=1)) / data.width)[:, None]
        return out

    def export_module(self) -> nn.Module:
        """The contributions as a CPU module in evaluation mode: ``forward(x)`` gives the ``(b, d)``
        float32 integrated-gradients contributions, whose row sums are the scores."""
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} is not fitted yet (call fit first)")
        classifier = copy.deepcopy(self.module_).cpu().eval()
        return IntegratedGradients(classifier, self.config.attribution_steps).eval()

    def probability_module(self) -> nn.Module:
        """The class probabilities as a CPU module in evaluation mode: ``forward(x)`` gives the
        ``(b, k)`` probabilities of feature rows, in the order of ``classes_``."""
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} is not fitted yet (call fit first)")
        return copy.deepcopy(self.module_).cpu().eval()

    def to(self, device: str | torch.device) -> Self:
        """Move the fitted network to ``device`` for scoring."""
        self.device_ = resolve_device(str(device))
        self.module_.to(self.device_)
        return self

    # -- saving -------------------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        """The network's parameters and buffers, and the class names (``classes``: JSON as bytes)."""
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} is not fitted yet (call fit first)")
        arrays = {k: v.detach().cpu().numpy().copy() for k, v in self.module_.state_dict().items()}
        arrays[CLASSES_KEY] = np.frombuffer(json.dumps(list(self.classes_)).encode(), dtype=np.uint8).copy()
        return arrays

    def load_state(self, arrays: Mapping[str, np.ndarray], feature_names: tuple[str, ...]) -> Self:
        """Rebuild the network for ``feature_names`` and the saved classes, and load its weights."""
        arrays = dict(arrays)
        try:
            classes = tuple(json.loads(np.asarray(arrays.pop(CLASSES_KEY), dtype=np.uint8).tobytes()))
        except (KeyError, ValueError) as error:
            raise ConfigError(f"saved state of {self.name} has no readable class names") from error
        if len(classes) < 2 or classes[0] != NORMAL or not all(isinstance(c, str) for c in classes):
            raise ConfigError(f"saved classes of {self.name} are not valid: {classes}")
        if self.config.input_bins and "members.0.bins.start" not in arrays:
            # saved before the bin encoding: the standardised features alone
            self.config = dataclasses.replace(self.config, input_bins=0)
        if (
            self.config.input_periodic
            and not self.config.input_bins
            and "members.0.periodic.frequencies" not in arrays
        ):
            # saved before the periodic encoding: the standardised features alone
            self.config = dataclasses.replace(self.config, input_periodic=0)
        if self.config.input_transform == "quantile" and "standardize.knot_start" not in arrays:
            # saved before inputs could be quantile-mapped: the plain standardisation
            self.config = dataclasses.replace(self.config, input_transform="standard")
        module = build_for_weights(
            lambda: MultitaskClassifier(len(feature_names), len(classes), self.config), arrays, self.name
        )
        tensors = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
        try:
            module.load_state_dict(tensors, strict=True)
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0]
            raise ConfigError(f"saved weights do not fit {self.name}'s network: {first}") from error
        self.device_ = resolve_device(self.config.device)
        self.module_ = module.eval().to(self.device_)
        self.classes_ = classes
        self.feature_names_ = tuple(feature_names)
        return self


def _seed_progress(
    progress: Callable[[EpochReport], None] | None, seed_index: int, seeds: int
) -> Callable[[EpochReport], None] | None:
    """``progress`` told which of the ``seeds`` networks each epoch belongs to."""
    if progress is None:
        return None

    def report(epoch: EpochReport) -> None:
        fields = {f.name: getattr(epoch, f.name) for f in dataclasses.fields(EpochReport)}
        progress(SeedEpochReport(**fields, seed_index=seed_index, seeds=seeds))

    return report


def _initialise(network: nn.Module) -> None:
    """Fresh LeCun-normal weights and zero biases for every layer of ``network``."""
    for module in network.modules():
        if isinstance(module, nn.Linear):
            lecun_normal_(module)
        elif isinstance(module, BinaryHeads) and module.hidden is not None:
            nn.init.normal_(module.output_weight, std=1.0 / math.sqrt(module.width))
            nn.init.zeros_(module.output_bias)
        elif isinstance(module, PeriodicEncoding):
            module.reset_parameters()


#: training rows the quantile map is estimated from, at most
_QUANTILE_SAMPLE_ROWS = 100_000


def _quantile_sample(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``x``, or a seeded random ``_QUANTILE_SAMPLE_ROWS`` of its rows."""
    if len(x) <= _QUANTILE_SAMPLE_ROWS:
        return x
    return x[np.sort(rng.choice(len(x), _QUANTILE_SAMPLE_ROWS, replace=False))]


def _mapped(standardize: Standardize, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """The quantile map of rows ``x`` (float64; ``x`` itself without one), in chunks of rows."""
    if not standardize.mapped:
        return x.astype(np.float64)
    out = np.empty(x.shape, dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(x), chunk):
            out[start : start + chunk] = standardize.quantile(
                torch.from_numpy(x[start : start + chunk])
            ).numpy()
    return out


def _encode(labels: np.ndarray, classes: tuple[str, ...], unknown: int | None = None) -> np.ndarray:
    """Class code of each label (``unknown`` for a label not in ``classes``; None: an error)."""
    lookup = {name: code for code, name in enumerate(classes)}
    names, inverse = np.unique(labels, return_inverse=True)
    table = []
    for name in names.tolist():
        if name not in lookup and unknown is None:
            raise ConfigError(f"unknown class {name!r}")
        table.append(lookup.get(name, unknown))
    return np.asarray(table, dtype=np.int64)[inverse]


def class_draw_probabilities(counts: np.ndarray, balance: float) -> np.ndarray:
    """Probability of drawing each class for a batch row: proportional to ``count ** (1 - balance)``
    (``balance`` 1: every present class equally often; 0: at its natural frequency)."""
    counts = np.asarray(counts, dtype=np.float64)
    weights = np.where(counts > 0, counts ** (1.0 - balance), 0.0)
    return weights / weights.sum()


def _class_sample(codes: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of at most about ``limit`` rows: each class in proportion, with at least
    ``min(count, 1000)`` rows."""
    counts = np.bincount(codes)
    floor = np.minimum(counts, _MIN_ROWS_PER_CLASS)
    quota = np.maximum(floor, np.floor(counts * limit / len(codes)).astype(np.int64))
    chosen = [
        rng.choice(np.flatnonzero(codes == c), int(quota[c]), replace=False) for c in np.flatnonzero(counts)
    ]
    return np.sort(np.concatenate(chosen))


#: the detectors this module defines, in registry order
DETECTORS: tuple[type[Detector], ...] = (MultitaskDetector,)
