"""The one training loop of nadkit. Every neural network trains through :class:`Trainer`.

Mini-batches from a batch factory, Adam, gradient clipping, early stopping on the validation loss (or
on a selection metric the model supplies, e.g. a challenge score), the best weights restored at the
end, seeds, CPU or CUDA, an optional wall-clock budget, and the loss curves kept for the report.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from nadkit.errors import ConfigError
from nadkit.models.adam import Adam
from nadkit.models.distributed import data_parallel, device_for

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU; otherwise the named device (``cpu``, ``cuda:0``)."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ConfigError(f"unknown device {device!r}") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but no CUDA device is available")
    return resolved


def probable_device_type(device: str = "auto") -> str:
    """The type (``cpu``, ``cuda``) of the device ``device`` resolves to, found without importing torch
    where it can only be the CPU: ``cpu`` asked for, or ``auto`` on a Linux machine with no GPU
    driver loaded (neither NVIDIA's nor ROCm's device files) and torch not imported yet."""
    if device == "cpu":
        return "cpu"
    if device == "auto" and "torch" not in sys.modules and sys.platform.startswith("linux"):
        drivers = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd")
        if not any(os.path.exists(path) for path in drivers):
            return "cpu"
    return resolve_device(device).type


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a training run repeats exactly."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@dataclass
class Batch:
    """One mini-batch: inputs ``x`` (rows x features, or rows x window x features), an optional
    ``mask`` (rows x window, True where a window holds a real row), optional ``y`` (targets) and
    ``extra`` tensors a model needs (e.g. a target-domain batch)."""

    x: torch.Tensor
    mask: torch.Tensor | None = None
    y: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device: torch.device) -> Batch:
        """The batch on ``device`` (non-blocking where possible)."""

        def move(value: torch.Tensor | None) -> torch.Tensor | None:
            return None if value is None else value.to(device, non_blocking=True)

        return Batch(
            x=self.x.to(device, non_blocking=True),
            mask=move(self.mask),
            y=move(self.y),
            extra={k: v.to(device, non_blocking=True) for k, v in self.extra.items()},
        )

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class TrainerConfig:
    """How to train: epochs, optimiser settings, early stopping and limits."""

    epochs: int = 30
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 5
    min_delta: float = 1e-4
    relative_delta: float = 0.0
    gradient_clip: float | None = 1.0
    #: average the weights of up to this many of the best epochs: from the best down, an epoch's
    #: weights join the average only where the averaged network's selection score (or validation
    #: loss) is no worse; 1 keeps the best epoch's weights alone
    soup: int = 1
    time_budget_s: float | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError("epochs must be at least 1")
        if self.learning_rate <= 0:
            raise ConfigError("learning_rate must be positive")
        if self.patience < 1:
            raise ConfigError("patience must be at least 1")
        if self.soup < 1:
            raise ConfigError("soup must be at least 1")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError("time_budget_s must be positive")
        if not 0 <= self.relative_delta < 1:
            raise ConfigError("relative_delta must be in [0, 1)")
        if self.threads is not None and self.threads < 1:
            raise ConfigError("threads must be at least 1 (or null: chosen by the model's size)")


@dataclass
class EpochReport:
    """What one epoch did; passed to the progress callback."""

    epoch: int
    epochs: int
    train_loss: float
    validation_loss: float | None
    selection: float | None
    best_epoch: int
    seconds: float


@dataclass
class TrainingHistory:
    """The loss curves and how training ended; saved in the model bundle for the report."""

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    selection: list[float] = field(default_factory=list)
    best_epoch: int = 0
    epochs_run: int = 0
    seconds: float = 0.0
    stopped: str = "epochs"
    device: str = "cpu"
    #: the epochs whose weights were averaged (the best epoch alone unless ``soup`` is above 1)
    averaged: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


LossFunction = Callable[["nn.Module", Batch], "torch.Tensor"]
BatchFactory = Callable[[int], Iterable[Batch]]


#: on CPU, a network with fewer parameters than this trains on one thread (``threads`` unset): its
#: matrix products are too small to gain from a second thread, and on a machine whose cores are busy
#: the threads of one product wait for each other (ten epochs of the default autoencoder on 9,000
#: rows: 5 s on one thread, 45 s on two, with the other core busy)
SMALL_NETWORK_PARAMETERS = 5_000_000


def training_threads(module: nn.Module, device: torch.device, threads: int | None) -> int | None:
    """The torch threads to train ``module`` with on CPU (None: leave torch's setting)."""
    if device.type != "cpu":
        return None
    if threads is not None:
        return threads
    size = sum(p.numel() for p in module.parameters())
    return 1 if size < SMALL_NETWORK_PARAMETERS else None


class Trainer:
    """Train a module by minimising ``loss(module, batch)`` over the batches of each epoch."""

    def __init__(self, config: TrainerConfig | None = None) -> None:
        self.config = config or TrainerConfig()

    def fit(
        self,
        module: nn.Module,
        loss: LossFunction,
        train_batches: BatchFactory,
        validation_batches: Callable[[], Iterable[Batch]] | None = None,
        *,
        selection: Callable[[nn.Module], float] | None = None,
        selection_mode: Literal["min", "max"] = "max",
        progress: Callable[[EpochReport], None] | None = None,
        parameters: Iterable[nn.Parameter] | None = None,
    ) -> TrainingHistory:
        """Train ``module`` in place and return its history; the best epoch's weights are restored.

        ``train_batches(epoch)`` yields the epoch's (shuffled) batches. Early stopping watches
        ``selection(module)`` when given (``selection_mode`` says whether larger is better), else the
        mean validation loss, else the training loss; ``patience`` epochs without an improvement of
        ``min_delta`` (or of ``relative_delta`` times the best value, when that is larger: a loss
        that still creeps down by a hair is converged) stop training, as does ``time_budget_s``,
        checked after every batch: a budget
        spent within an epoch ends it there (its rows so far make its training loss, and it is
        validated like a whole epoch), so one long epoch cannot overrun the budget.

        Launched by ``torchrun`` with several processes, each process computes its share of the rows
        of every batch, gradients are averaged over all of them, and all take the same early-stopping
        decisions (:mod:`nadkit.models.distributed`); a single process trains as described above.
        """
        import torch

        config = self.config
        device = device_for(resolve_device(config.device))
        threads = training_threads(module, device, config.threads)
        previous = torch.get_num_threads()
        if threads is not None and threads != previous:
            torch.set_num_threads(threads)
        try:
            return self._fit(
                module,
                loss,
                train_batches,
                validation_batches,
                device,
                selection,
                selection_mode,
                progress,
                parameters,
            )
        finally:
            if torch.get_num_threads() != previous:
                torch.set_num_threads(previous)

    def _fit(
        self,
        module: nn.Module,
        loss: LossFunction,
        train_batches: BatchFactory,
        validation_batches: Callable[[], Iterable[Batch]] | None,
        device: torch.device,
        selection: Callable[[nn.Module], float] | None,
        selection_mode: Literal["min", "max"],
        progress: Callable[[EpochReport], None] | None,
        parameters: Iterable[nn.Parameter] | None,
    ) -> TrainingHistory:
        import torch
        from torch import nn

        config = self.config
        parallel = data_parallel(device)
        seed_everything(config.seed)
        module.to(device)
        step_loss = parallel.loss(module, loss)
        # on a GPU torch's own Adam, whose multi-tensor kernels launch a few kernels a step instead of
        # several a parameter; on the CPU the same update without importing torch's compiler
        optimiser = (torch.optim.Adam if device.type == "cuda" else Adam)(
            list(parameters) if parameters is not None else module.parameters(),
            lr=config.learning_rate,
            weight_decay=config.weight_decay,
        )
        history = TrainingHistory(device=str(device))
        best_value = math.inf
        best_state: dict[str, torch.Tensor] | None = None
        # (watched value, epoch, weights) of the best ``soup`` epochs, best first; kept only where
        # held-out rows can judge an average (the training loss cannot)
        ranked: list[tuple[float, int, dict[str, torch.Tensor]]] = []
        souping = config.soup > 1 and (selection is not None or validation_batches is not None)
        stale = 0
        started = time.perf_counter()
        spent = False
        for epoch in range(config.epochs):
            module.train()
            total, count = 0.0, 0
            for batch in parallel.split(train_batches(epoch)):
                batch = batch.to(device)
                optimiser.zero_grad()
                value = step_loss(module, batch)
                if not torch.isfinite(value):
                    raise FloatingPointError(
                        f"training loss became {value.item()} at epoch {epoch + 1}; "
                        "lower the learning rate or check the features"
                    )
                value.backward()
                if config.gradient_clip:
                    nn.utils.clip_grad_norm_(module.parameters(), config.gradient_clip)
                optimiser.step()
                total += float(value.detach()) * len(batch)
                count += len(batch)
                if config.time_budget_s is not None:
                    # every process takes the primary's clock, so all leave the epoch at the same batch
                    (now,) = parallel.from_primary(time.perf_counter() - started)
                    if now >= config.time_budget_s:
                        spent = True
                        break
            total, count = parallel.sum(total, count)
            train_loss = total / max(count, 1)
            history.train_loss.append(train_loss)
            validation_loss = None
            if validation_batches is not None:
                shard = parallel.shard(validation_batches())
                held_total, held_count = parallel.sum(*self.evaluate_totals(module, loss, shard, device))
                validation_loss = held_total / max(held_count, 1)
            if validation_loss is not None:
                history.validation_loss.append(validation_loss)
            chosen: float | None = None
            if selection is not None:
                module.eval()
                with torch.no_grad():
                    chosen = float(selection(module)) if parallel.primary else 0.0
                (chosen,) = parallel.from_primary(chosen)
                history.selection.append(chosen)
                watched = -chosen if selection_mode == "max" else chosen
            else:
                watched = validation_loss if validation_loss is not None else train_loss
            history.epochs_run = epoch + 1
            if souping:
                ranked.append((watched, epoch + 1, copy.deepcopy(module.state_dict())))
                ranked = sorted(ranked, key=lambda entry: (entry[0], entry[1]))[: config.soup]
            margin = max(config.min_delta, config.relative_delta * abs(best_value)) if best_state else 0.0
            if best_state is None or watched < best_value - margin:
                best_value = watched
                best_state = copy.deepcopy(module.state_dict())
                history.best_epoch = epoch + 1
                stale = 0
            else:
                stale += 1
            (elapsed,) = parallel.from_primary(time.perf_counter() - started)
            log.debug(
                "epoch %d: train %.5f validation %s selection %s",
                epoch + 1,
                train_loss,
                f"{validation_loss:.5f}" if validation_loss is not None else "-",
                f"{chosen:.5f}" if chosen is not None else "-",
            )
            if progress is not None:
                progress(
                    EpochReport(
                        epoch=epoch + 1,
                        epochs=config.epochs,
                        train_loss=train_loss,
                        validation_loss=validation_loss,
                        selection=chosen,
                        best_epoch=history.best_epoch,
                        seconds=elapsed,
                    )
                )
            if stale >= config.patience:
                history.stopped = "early stopping"
                break
            if spent or (config.time_budget_s is not None and elapsed >= config.time_budget_s):
                history.stopped = "time budget"
                break
        if best_state is not None:
            module.load_state_dict(best_state)
            history.averaged = [history.best_epoch]
        # the restored best epoch first, then the others by their value (an epoch may edge past the
        # best by less than the margin that counts as progress)
        ingredients = [(best_value, history.best_epoch, best_state)] if best_state is not None else []
        ingredients += [entry for entry in ranked if entry[1] != history.best_epoch][: config.soup - 1]
        if len(ingredients) > 1:

            def judged() -> float:
                module.eval()
                if selection is not None:
                    with torch.no_grad():
                        value = float(selection(module)) if parallel.primary else 0.0
                    (value,) = parallel.from_primary(value)
                    return -value if selection_mode == "max" else value
                assert validation_batches is not None  # ``souping`` needs one or the other
                shard = parallel.shard(validation_batches())
                held_total, held_count = parallel.sum(*self.evaluate_totals(module, loss, shard, device))
                return held_total / max(held_count, 1)

            history.averaged = self._soup(module, ingredients, judged)
        parallel.close()
        module.eval()
        history.seconds = time.perf_counter() - started
        log.info(
            "trained %d epoch(s) in %.1f s on %s (best epoch %d, stopped by %s)",
            history.epochs_run,
            history.seconds,
            device,
            history.best_epoch,
            history.stopped,
        )
        return history

    @staticmethod
    def _soup(
        module: nn.Module,
        ingredients: list[tuple[float, int, dict[str, torch.Tensor]]],
        judged: Callable[[], float],
    ) -> list[int]:
        """Average the weights of ``ingredients`` (``(value, epoch, weights)``, the best epoch first)
        greedily into ``module``: each next epoch's weights join where the average is judged no worse
        than without them. Returns the epochs averaged."""
        best_value, first_epoch, best_weights = ingredients[0]
        members = [best_weights]
        epochs = [first_epoch]
        for _, epoch, weights in ingredients[1:]:
            trial = [*members, weights]
            module.load_state_dict(_mean_state(trial))
            value = judged()
            if value <= best_value:
                members, best_value = trial, value
                epochs.append(epoch)
        module.load_state_dict(_mean_state(members))
        return epochs

    @staticmethod
    def evaluate(
        module: nn.Module, loss: LossFunction, batches: Iterable[Batch], device: torch.device
    ) -> float:
        """Mean loss over ``batches`` without gradients (module in evaluation mode)."""
        total, count = Trainer.evaluate_totals(module, loss, batches, device)
        return total / max(count, 1)

    @staticmethod
    def evaluate_totals(
        module: nn.Module, loss: LossFunction, batches: Iterable[Batch], device: torch.device
    ) -> tuple[float, int]:
        """The loss summed over the rows of ``batches`` without gradients, and the number of rows."""
        import torch

        module.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in batches:
                batch = batch.to(device)
                total += float(loss(module, batch)) * len(batch)
                count += len(batch)
        return total, count


def _mean_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of ``states`` (floating tensors; others taken from the first)."""
    first = states[0]
    return {
        name: (sum(state[name] for state in states) / len(states)).to(value.dtype)
        if value.is_floating_point()
        else value
        for name, value in first.items()
    }
