"""The template every neural detector fills in: build a plain ``nn.Module``, say how a batch's loss
and per-feature errors are computed; batching (rows or windows), training (through the one
:class:`~nadkit.models.trainer.Trainer`), scoring in batches and explanations are done here.

A subclass sets ``name``, ``input``, ``config_class`` (a subclass of :class:`NeuralConfig`) and
implements :meth:`NeuralDetector.build_module`, :meth:`NeuralDetector.loss` and
:meth:`NeuralDetector.errors`. For ``input = "windows"`` a batch's ``x`` is ``(b, window, d)`` with a
``mask`` of real rows; the window of row ``i`` ends at row ``i``, which is the row scored.
"""

from __future__ import annotations

import logging
import sys
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

import numpy as np

from nadkit.errors import ConfigError
from nadkit.features.series import SlidingWindows, gather, sliding_windows
from nadkit.models.base import Detector, DetectorConfig, DetectorData, NotFittedError
from nadkit.models.trainer import (
    Batch,
    EpochReport,
    Trainer,
    TrainerConfig,
    TrainingHistory,
    probable_device_type,
    resolve_device,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NeuralConfig(DetectorConfig):
    """Training settings shared by the neural detectors (a model adds its architecture fields)."""

    epochs: int = 30
    batch_size: int = 512
    #: the fewest optimizer steps an epoch takes: on a small training set the batch shrinks (to no
    #: fewer than 8 rows), so a few hundred rows still train for as many steps as early stopping needs
    min_batches: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 5
    relative_delta: float = 0.001
    threads: int | None = None
    gradient_clip: float | None = 1.0
    validation_fraction: float = 0.1
    time_budget_s: float | None = None
    max_train_rows: int | None = None
    device: str = "auto"
    window: int = 16
    score_batch_size: int = 8192
    #: divide each feature's error by its typical error on normal held-out rows (floored at the
    #: median feature's), so features the model reconstructs poorly even on normal traffic do not
    #: drown out the others; see :func:`error_weights`. The held-out rows are the ``validation`` rows
    #: ``fit`` is given (``nadkit train`` gives half its normal hold-out, the earlier half in time),
    #: else a ``validation_fraction`` of the training rows
    weigh_errors: bool = False
    #: average the weights of up to this many of the best epochs (see :class:`TrainerConfig`)
    soup: int = 1

    def __post_init__(self) -> None:
        if self.soup < 1:
            raise ConfigError(f"soup must be at least 1, got {self.soup}")
        if self.min_batches < 1:
            raise ConfigError(f"min_batches must be at least 1, got {self.min_batches}")
        if self.batch_size < 1 or self.score_batch_size < 1:
            raise ConfigError("batch sizes must be at least 1")
        if not 0 <= self.validation_fraction < 1:
            raise ConfigError("validation_fraction must be in [0, 1)")
        if self.window < 2:
            raise ConfigError("window must be at least 2")

    def trainer_config(self) -> TrainerConfig:
        """The :class:`TrainerConfig` these settings describe."""
        return TrainerConfig(
            epochs=self.epochs,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            patience=self.patience,
            relative_delta=self.relative_delta,
            threads=self.threads,
            gradient_clip=self.gradient_clip,
            soup=self.soup,
            time_budget_s=self.time_budget_s,
            seed=self.seed,
            device=self.device,
        )


def epoch_batch_size(batch_size: int, rows: int, min_batches: int) -> int:
    """The training batch size: ``batch_size``, smaller where ``rows`` would make fewer than
    ``min_batches`` batches an epoch, but never below 8 rows (or ``batch_size`` if smaller)."""
    if min_batches <= 1 or rows <= 0:
        return batch_size
    return max(min(8, batch_size), min(batch_size, -(-rows // min_batches)))


class NeuralDetector(Detector):
    """Template base of the torch detectors (see the module docstring)."""

    config_class = NeuralConfig
    prefers_onnx = True
    config: NeuralConfig
    #: per-feature weights of the errors (``weigh_errors``), None where the errors are not weighed
    error_weights_: np.ndarray | None = None
    #: the network, its saved parameters before it is rebuilt, and the resolved device
    _module: nn.Module | None = None
    _saved: dict[str, np.ndarray] | None = None
    _device: torch.device | None = None

    # -- what a model supplies --------------------------------------------------------------------

    @abstractmethod
    def build_module(self, features: int) -> nn.Module:
        """The network for ``features`` input features (a plain, exportable ``nn.Module``)."""

    @abstractmethod
    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """Scalar training loss of a batch (mean over its rows)."""

    @abstractmethod
    def errors(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """``(b, d)`` non-negative per-feature errors of each scored row; their sum is the score."""

    # -- the contract -----------------------------------------------------------------------------

    def fit(
        self,
        train: DetectorData,
        *,
        validation: DetectorData | None = None,
        target: DetectorData | None = None,
        progress: Callable[[EpochReport], None] | None = None,
    ) -> Self:
        """Train on ``train`` (normal traffic); ``validation`` (normal rows too) drives early stopping,
        else a random ``validation_fraction`` of ``train`` is held out for it."""
        import torch

        self._start_fit(train)
        config = self.config
        if self.input == "windows" and train.entity is None and train.time is None:
            log.warning(
                "%s reads windows of consecutive rows, but these rows have no time or entity column: "
                "the windows follow the file's row order, which may carry no sequence (a row model "
                "such as ae suits tabular records)",
                self.name,
            )
        rng = np.random.default_rng(config.seed)
        if config.max_train_rows is not None and len(train) > config.max_train_rows:
            keep = np.sort(rng.choice(len(train), config.max_train_rows, replace=False))
            train = train.take(keep)
        if validation is None and config.validation_fraction > 0 and len(train) >= 20:
            rows = rng.permutation(len(train))
            cut = max(1, int(len(train) * config.validation_fraction))
            train_rows, held_rows = np.sort(rows[cut:]), np.sort(rows[:cut])
            # windows keep their context: both parts read the whole table, each scores its rows
            train_view = _View.of(self, train, train_rows)
            validation_view: _View | None = _View.of(self, train, held_rows)
        else:
            train_view = _View.of(self, train, None)
            validation_view = _View.of(self, validation, None) if validation is not None else None
        torch.manual_seed(config.seed)
        trained_rows = len(train) if validation is not None or validation_view is None else len(train_rows)
        batch_size = epoch_batch_size(config.batch_size, trained_rows, config.min_batches)
        if batch_size < config.batch_size:
            log.info(
                "%d training rows: batches of %d rows, %d steps an epoch",
                trained_rows,
                batch_size,
                -(-trained_rows // batch_size),
            )
        self.module_ = self.build_module(train.width)
        self.history_: TrainingHistory = Trainer(config.trainer_config()).fit(
            self.module_,
            self.loss,
            lambda epoch: train_view.batches(batch_size, shuffle=True, seed=config.seed + epoch),
            (lambda: validation_view.batches(config.score_batch_size)) if validation_view else None,
            progress=progress,
        )
        self.device_ = resolve_device(config.device)
        self.error_weights_ = None
        self._after_training(train_view, validation_view if validation_view is not None else train_view)
        if config.weigh_errors:
            held = validation_view if validation_view is not None else train_view
            self.error_weights_ = error_weights(self._mean_errors(held))
        self._finish_fit(train)
        return self

    @property
    def weighs_errors(self) -> bool:  # type: ignore[override]
        """Whether ``fit`` weighs the errors (``weigh_errors``) on its ``validation`` rows."""
        return bool(self.config.weigh_errors)

    def _after_training(self, train: _View, held: _View) -> None:
        """What a model sets on its network once trained, before it is scored (nothing here):
        ``train`` the rows it trained on, ``held`` its held-out normal rows (or ``train`` without)."""

    def _mean_errors(self, view: _View) -> np.ndarray:
        """Each feature's mean error over the rows of ``view``."""
        import torch

        module = self.module_.to(self.device_).eval()
        total = torch.zeros(view.data.width, dtype=torch.float64)
        with torch.no_grad():
            for batch in view.batches(self.config.score_batch_size):
                total += self.errors(module, batch.to(self.device_)).double().sum(dim=0).cpu()
        return (total / max(1, len(view.rows))).numpy()

    def score(self, data: DetectorData) -> np.ndarray:
        """Sum of the per-feature errors of each row, float64."""
        return self.contributions(data).sum(axis=1)

    def contributions(self, data: DetectorData) -> np.ndarray:
        """Per-feature errors of each row, float64 ``(rows, features)``."""
        import torch

        self._check_fitted(data)
        out = np.zeros((len(data), data.width), dtype=np.float64)
        view = _View.of(self, data, None)
        module = self.module_
        module.eval()
        with torch.no_grad():
            for rows, batch in view.indexed_batches(self.config.score_batch_size):
                errors = self.errors(module, batch.to(self.device_))
                out[rows] = errors.double().cpu().numpy()
        if self.error_weights_ is not None:
            out *= self.error_weights_
        return out

    def state(self) -> dict[str, np.ndarray]:
        """The network's parameters and buffers, by their ``state_dict`` names, and the error
        weights (``error_weights``) where the errors are weighed."""
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} is not fitted yet (call fit first)")
        arrays = {k: v.detach().cpu().numpy().copy() for k, v in self.module_.state_dict().items()}
        if self.error_weights_ is not None:
            arrays[ERROR_WEIGHTS_KEY] = np.asarray(self.error_weights_, dtype=np.float32).copy()
        return arrays

    def load_state(self, arrays: Mapping[str, np.ndarray], feature_names: tuple[str, ...]) -> Self:
        """Take the saved parameters for ``feature_names``. The network is rebuilt from them where
        torch is loaded already (training, tests) and otherwise on first use (:attr:`module_`), so
        that a bundle scored on ONNX Runtime never imports torch; either way, parameters that do not
        fit the network's settings are a ConfigError."""
        arrays = dict(arrays)
        weights = arrays.pop(ERROR_WEIGHTS_KEY, None)
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float32)
            if weights.shape != (len(feature_names),) or not np.all(np.isfinite(weights) & (weights > 0)):
                raise ConfigError(
                    f"saved error weights of {self.name} are not {len(feature_names)} positive numbers"
                )
        self.error_weights_ = weights
        self._module = None
        self._saved = arrays
        self._device = None
        self.feature_names_ = tuple(feature_names)
        if "torch" in sys.modules:
            try:
                self._restore()
            except ConfigError:
                self.feature_names_, self._saved = None, None  # left unfitted, not half loaded
                raise
        return self

    def _restore(self) -> nn.Module:
        """The network rebuilt from the parameters :meth:`load_state` took, on :attr:`device_`."""
        import torch

        assert self._saved is not None and self.feature_names_ is not None
        arrays, features = self._saved, len(self.feature_names_)
        module = build_for_weights(lambda: self.build_module(features), arrays, self.name)
        tensors = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
        try:
            module.load_state_dict(tensors, strict=True)
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0]
            raise ConfigError(f"saved weights do not fit {self.name}'s network: {first}") from error
        module.eval()
        self._module = module.to(self.device_)
        self._saved = None
        return self._module

    def finish_loading(self) -> None:
        """Rebuild the network from the saved parameters now, if :meth:`load_state` deferred it."""
        if self._module is None and self._saved is not None:
            self._restore()

    @property
    def module_(self) -> nn.Module:
        """The fitted network (rebuilt from saved parameters on first use)."""
        if self._module is None:
            if self._saved is None:
                raise AttributeError(f"{self.name} has no network yet (call fit first)")
            return self._restore()
        return self._module

    @module_.setter
    def module_(self, module: nn.Module) -> None:
        self._module, self._saved = module, None

    @property
    def device_(self) -> torch.device:
        """The device the network scores on (the ``device`` setting, resolved on first use)."""
        if self._device is None:
            self._device = resolve_device(self.config.device)
        return self._device

    @device_.setter
    def device_(self, device: torch.device) -> None:
        self._device = device

    @property
    def device_type(self) -> str:
        """The type of :attr:`device_` (``cpu``, ``cuda``), known without importing torch where the
        network can only be on the CPU."""
        if self._device is None:
            return probable_device_type(self.config.device)
        return self._device.type

    def export_module(self) -> nn.Module:
        """The per-feature errors of :meth:`errors` around a CPU copy of the fitted network."""
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} is not fitted yet (call fit first)")
        from nadkit.models.neural_modules import ErrorsModule

        return ErrorsModule(self)

    def to(self, device: str | torch.device) -> Self:
        """Move the fitted network to ``device`` for scoring."""
        self.device_ = resolve_device(str(device))
        self.module_.to(self.device_)
        return self


#: the state key of the per-feature error weights
ERROR_WEIGHTS_KEY = "error_weights"


def error_weights(mean_errors: np.ndarray) -> np.ndarray:
    """Per-feature weights of the errors, from each feature's mean error on normal held-out rows:
    ``median / max(mean, median)``, with the median over the features. A feature the model
    reconstructs worse than the typical feature even on normal traffic counts for proportionally
    less; none counts for more than 1, so a feature that was constant in training keeps its full
    weight when it changes. float32, all in ``(0, 1]``."""
    mean = np.asarray(mean_errors, dtype=np.float64)
    floor = float(np.median(mean)) if len(mean) else 0.0
    if not np.isfinite(floor) or floor <= 0:
        positive = mean[np.isfinite(mean) & (mean > 0)]
        floor = float(np.median(positive)) if len(positive) else 1.0
    return (floor / np.maximum(np.where(np.isfinite(mean), mean, floor), floor)).astype(np.float32)


def build_for_weights(
    make: Callable[[], nn.Module], arrays: Mapping[str, np.ndarray], name: str
) -> nn.Module:
    """``make()``, once its shapes are known to match the saved ``arrays``: the network is first laid
    out on torch's meta device (no memory), so settings that describe a network far larger than
    its weights (an altered bundle) are refused before anything is allocated."""
    import torch

    with torch.device("meta"):
        layout = make()
    needed = sum(t.numel() for t in layout.state_dict().values())
    saved = sum(int(np.asarray(v).size) for v in arrays.values())
    if needed != saved:
        raise ConfigError(
            f"saved weights do not fit {name}'s network: its settings describe {needed:,} values, "
            f"the weights hold {saved:,}"
        )
    return make()


def scoring_batches(
    data: DetectorData, size: int, *, window: int | None = None
) -> Iterator[tuple[np.ndarray, Batch]]:
    """The batches neural scoring reads, in order: the row numbers of each batch of ``size`` rows
    and its :class:`Batch` (``x`` of the rows, or with ``window`` the windows of ``window`` rows
    ending at each row, from ``data``'s entity and time, and their ``mask`` of real rows)."""
    if size < 1:
        raise ConfigError(f"batch size must be at least 1, got {size}")
    return _View.with_window(data, None, window).indexed_batches(size)


@dataclass
class _View:
    """Rows of a :class:`DetectorData` to batch, as single rows or as windows ending at each row."""

    data: DetectorData
    rows: np.ndarray
    windows: SlidingWindows | None

    @classmethod
    def of(cls, detector: NeuralDetector, data: DetectorData, rows: np.ndarray | None) -> _View:
        window = detector.config.window if detector.input == "windows" else None
        return cls.with_window(data, rows, window)

    @classmethod
    def with_window(cls, data: DetectorData, rows: np.ndarray | None, window: int | None) -> _View:
        """Single rows (``window`` None) or windows of ``window`` rows ending at each row."""
        windows = None
        if window is not None:
            # without entity and time the rows are one sequence in their given order
            times = data.time if data.entity is not None or data.time is not None else np.arange(len(data))
            windows = sliding_windows(data.entity, times, window)
        chosen = np.arange(len(data), dtype=np.int64) if rows is None else rows
        return cls(data=data, rows=chosen, windows=windows)

    def _batch(self, rows: np.ndarray) -> Batch:
        import torch

        if self.windows is None:
            return Batch(x=torch.from_numpy(self.data.features[rows]))
        index = self.windows.index(rows)
        x = gather(self.data.features, index)
        mask = index >= 0
        return Batch(x=torch.from_numpy(x), mask=torch.from_numpy(mask))

    def indexed_batches(
        self, size: int, *, shuffle: bool = False, seed: int = 0
    ) -> Iterator[tuple[np.ndarray, Batch]]:
        rows = self.rows
        if shuffle:
            rows = np.random.default_rng(seed).permutation(rows)
        for start in range(0, len(rows), size):
            chosen = rows[start : start + size]
            yield chosen, self._batch(chosen)

    def batches(self, size: int, *, shuffle: bool = False, seed: int = 0) -> Iterator[Batch]:
        for _, batch in self.indexed_batches(size, shuffle=shuffle, seed=seed):
            yield batch
