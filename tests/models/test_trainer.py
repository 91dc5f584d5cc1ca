"""The one training loop: early stopping, best weights, time budget, seeds, errors, devices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from nadkit.errors import ConfigError
from nadkit.models.trainer import Batch, EpochReport, Trainer, TrainerConfig, resolve_device, training_threads


def _regression(rows: int = 256, features: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, features, generator=generator)
    y = x @ torch.arange(1.0, features + 1) + 0.1 * torch.randn(rows, generator=generator)
    return x, y.unsqueeze(1)


def _batches(x: torch.Tensor, y: torch.Tensor, size: int = 64):
    def factory(epoch: int = 0):
        order = torch.from_numpy(np.random.default_rng(epoch).permutation(len(x)))
        for start in range(0, len(x), size):
            rows = order[start : start + size]
            yield Batch(x=x[rows], y=y[rows])

    return factory


def _mse(module: nn.Module, batch: Batch) -> torch.Tensor:
    return torch.mean((module(batch.x) - batch.y) ** 2)


def test_learns_a_linear_map() -> None:
    x, y = _regression()
    module = nn.Linear(4, 1)
    history = Trainer(TrainerConfig(epochs=60, learning_rate=0.05, patience=60, device="cpu")).fit(
        module, _mse, _batches(x, y)
    )
    assert history.train_loss[-1] < 0.05 < history.train_loss[0]
    assert history.epochs_run == 60
    assert history.stopped == "epochs"
    assert not module.training


def test_early_stopping_stops_after_patience_and_restores_the_best_weights() -> None:
    x, y = _regression(seed=1)
    x_val, y_val = _regression(rows=64, seed=2)
    validation = _batches(x_val, -y_val)  # opposite target: validation loss rises as training fits
    module = nn.Linear(4, 1)
    patience = 3
    history = Trainer(TrainerConfig(epochs=50, learning_rate=0.05, patience=patience, device="cpu")).fit(
        module, _mse, _batches(x, y), lambda: validation(0)
    )
    assert history.stopped == "early stopping"
    assert history.epochs_run == history.best_epoch + patience
    best = min(history.validation_loss)
    assert history.validation_loss[history.best_epoch - 1] == best
    restored = Trainer.evaluate(module, _mse, validation(0), torch.device("cpu"))
    assert restored == pytest.approx(best, rel=1e-6)
    assert restored < history.validation_loss[-1]


def test_selection_metric_drives_early_stopping() -> None:
    x, y = _regression()
    module = nn.Linear(4, 1)
    values = iter([1.0, 3.0, 2.0, 2.5, 2.9, 2.0, 1.0])
    history = Trainer(TrainerConfig(epochs=7, patience=2, device="cpu")).fit(
        module, _mse, _batches(x, y), selection=lambda _module: next(values), selection_mode="max"
    )
    assert history.best_epoch == 2
    assert history.epochs_run == 4
    assert history.selection == [1.0, 3.0, 2.0, 2.5]


def test_time_budget_is_honoured() -> None:
    x, y = _regression(rows=512)
    budget_s = 0.3
    history = Trainer(
        TrainerConfig(epochs=100_000, patience=100_000, time_budget_s=budget_s, device="cpu")
    ).fit(nn.Linear(4, 1), _mse, _batches(x, y))
    assert history.stopped == "time budget"
    assert history.epochs_run < 100_000
    assert budget_s <= history.seconds < budget_s + 5.0


def test_time_budget_ends_a_long_epoch_part_way() -> None:
    """An epoch far longer than the budget is cut after the batch that spends it, validated, and
    its weights kept."""
    x, y = _regression(rows=200_000)
    x_val, y_val = _regression(rows=256, seed=4)
    module = nn.Sequential(nn.Linear(4, 256), nn.ReLU(), nn.Linear(256, 1))
    budget_s = 0.3
    history = Trainer(TrainerConfig(epochs=3, learning_rate=0.01, time_budget_s=budget_s, device="cpu")).fit(
        module, _mse, _batches(x, y, size=32), lambda: _batches(x_val, y_val)(0)
    )
    assert history.stopped == "time budget"
    assert history.epochs_run == 1 and history.best_epoch == 1
    assert len(history.validation_loss) == 1 and math.isfinite(history.validation_loss[0])
    assert history.seconds < budget_s + 2.0  # a whole epoch of 6,250 batches takes several seconds


def test_same_seed_reproduces_training() -> None:
    x, y = _regression()

    def run(seed: int) -> tuple[list[float], torch.Tensor]:
        torch.manual_seed(seed)
        module = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.ReLU(), nn.Linear(8, 1))
        history = Trainer(TrainerConfig(epochs=5, seed=seed, device="cpu")).fit(module, _mse, _batches(x, y))
        return history.train_loss, module[0].weight.detach().clone()

    losses, weights = run(3)
    again_losses, again_weights = run(3)
    other_losses, _ = run(4)
    assert losses == again_losses
    assert torch.equal(weights, again_weights)
    assert losses != other_losses


def test_non_finite_loss_raises_a_clear_error() -> None:
    x, y = _regression()

    def broken(module: nn.Module, batch: Batch) -> torch.Tensor:
        return _mse(module, batch) * math.nan

    with pytest.raises(FloatingPointError, match="training loss became nan at epoch 1"):
        Trainer(TrainerConfig(epochs=3, device="cpu")).fit(nn.Linear(4, 1), broken, _batches(x, y))


def test_progress_is_called_once_per_epoch() -> None:
    x, y = _regression()
    reports: list[EpochReport] = []
    history = Trainer(TrainerConfig(epochs=4, patience=10, device="cpu")).fit(
        nn.Linear(4, 1), _mse, _batches(x, y), progress=reports.append
    )
    assert [r.epoch for r in reports] == [1, 2, 3, 4]
    assert all(r.epochs == 4 for r in reports)
    assert [r.train_loss for r in reports] == history.train_loss


def test_device_resolution() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError):
        resolve_device("not-a-device")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_device_trains_on_cuda() -> None:
    x, y = _regression()
    module = nn.Linear(4, 1)
    history = Trainer(TrainerConfig(epochs=2, device="auto")).fit(module, _mse, _batches(x, y))
    assert history.device.startswith("cuda")
    assert next(module.parameters()).device.type == "cuda"


@pytest.mark.parametrize(
    "options",
    [
        {"epochs": 0},
        {"learning_rate": 0.0},
        {"patience": 0},
        {"time_budget_s": -1.0},
        {"threads": 0},
        {"relative_delta": 1.0},
        {"soup": 0},
    ],
)
def test_bad_trainer_config_raises(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        TrainerConfig(**options)


def test_a_loss_that_creeps_down_by_a_hair_counts_as_converged() -> None:
    x, y = _regression()
    module = nn.Linear(4, 1)
    # the selection improves by 0.02% an epoch: three epochs stay within 0.1% of the best, so
    # patience runs out
    values = iter([1.0 - 0.0002 * epoch for epoch in range(30)])
    config = TrainerConfig(epochs=30, patience=3, min_delta=0.0, relative_delta=0.001, device="cpu")
    history = Trainer(config).fit(
        module, _mse, _batches(x, y), selection=lambda _module: next(values), selection_mode="min"
    )
    assert history.stopped == "early stopping"
    assert history.epochs_run == 4 and history.best_epoch == 1


def test_small_networks_train_on_one_cpu_thread_and_the_setting_is_restored() -> None:
    cpu = torch.device("cpu")
    assert training_threads(nn.Linear(4, 1), cpu, None) == 1
    assert training_threads(nn.Linear(4, 1), cpu, 3) == 3
    assert training_threads(nn.Linear(3000, 2000), cpu, None) is None  # 6 M parameters: torch decides
    assert training_threads(nn.Linear(4, 1), torch.device("meta"), None) is None
    before = torch.get_num_threads()
    seen: list[int] = []

    def loss(module: nn.Module, batch: Batch) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return _mse(module, batch)

    x, y = _regression()
    Trainer(TrainerConfig(epochs=1, device="cpu", threads=2)).fit(nn.Linear(4, 1), loss, _batches(x, y))
    assert set(seen) == {2}
    assert torch.get_num_threads() == before


def test_a_small_training_set_still_takes_many_steps_an_epoch() -> None:
    """A few hundred rows with the default batch of 512 would be one optimizer step an epoch: the
    batch shrinks so an epoch takes ``min_batches`` steps, never below 8 rows a batch."""
    from nadkit.models.neural import NeuralConfig, epoch_batch_size

    assert epoch_batch_size(512, 270, 16) == 17  # 16 steps of 17 rows (the last shorter)
    assert epoch_batch_size(512, 100_000, 16) == 512  # plenty of rows: unchanged
    assert epoch_batch_size(512, 40, 16) == 8  # never below 8 rows
    assert epoch_batch_size(4, 40, 16) == 4  # nor above the configured batch
    assert epoch_batch_size(512, 270, 1) == 512  # the rule switched off
    with pytest.raises(ConfigError, match="min_batches"):
        NeuralConfig(min_batches=0)


def test_an_autoencoder_on_few_rows_learns_them() -> None:
    """300 rows: with 16 steps an epoch, 20 epochs bring the reconstruction error down to a
    fraction of what one step an epoch reaches (about 0.06 here)."""
    from nadkit.models import create

    rng = np.random.default_rng(0)
    latent = rng.normal(size=(300, 3))
    rows = np.tanh(latent @ rng.normal(size=(3, 20))).astype(np.float32)
    detector = create("ae", {"epochs": 20, "seed": 0, "device": "cpu"}).fit(rows)
    history = detector.history_
    assert history.train_loss[-1] < 0.02, history.train_loss


def _recording_selection(module: nn.Module, x: torch.Tensor, y: torch.Tensor, seen: list[torch.Tensor]):
    """A selection score (minus the mean squared error on ``x``, ``y``) that records the weights it
    judged, epoch by epoch and then each trial average."""

    def selection(judged: nn.Module) -> float:
        seen.append(torch.cat([p.detach().flatten().clone() for p in judged.parameters()]))
        return -float(torch.mean((judged(x) - y) ** 2))

    return selection


def test_soup_averages_the_weights_of_the_best_epochs_it_keeps() -> None:
    x, y = _regression(seed=3)
    x_val, y_val = _regression(rows=64, seed=4)
    module = nn.Linear(4, 1)
    seen: list[torch.Tensor] = []
    config = TrainerConfig(epochs=12, learning_rate=0.02, patience=12, soup=4, device="cpu")
    history = Trainer(config).fit(
        module, _mse, _batches(x, y), selection=_recording_selection(module, x_val, y_val, seen)
    )
    epochs = seen[: history.epochs_run]
    assert history.averaged[0] == history.best_epoch
    assert 1 <= len(history.averaged) <= 4
    assert len(set(history.averaged)) == len(history.averaged)
    # the restored best epoch first, every other kept epoch among the four best by its score, and
    # the weights their mean
    ranked = sorted(range(1, history.epochs_run + 1), key=lambda e: -history.selection[e - 1])[:4]
    assert set(history.averaged[1:]) <= set(ranked)
    expected = torch.stack([epochs[e - 1] for e in history.averaged]).mean(dim=0)
    final = torch.cat([p.detach().flatten() for p in module.parameters()])
    assert torch.allclose(final, expected, atol=1e-6)
    # the average is judged no worse than the best epoch alone
    best = history.selection[history.best_epoch - 1]
    with torch.no_grad():
        assert -float(torch.mean((module(x_val) - y_val) ** 2)) >= best - 1e-9


def test_soup_keeps_the_best_epoch_alone_when_averages_judge_worse() -> None:
    x, y = _regression(seed=5)
    module = nn.Linear(4, 1)
    calls = iter(range(100))

    def selection(_module: nn.Module) -> float:
        call = next(calls)
        return 10.0 - abs(call - 2) if call < 6 else 0.0  # epoch 3 best; every trial average worse

    history = Trainer(TrainerConfig(epochs=6, patience=6, soup=3, device="cpu")).fit(
        module, _mse, _batches(x, y), selection=selection, selection_mode="max"
    )
    assert history.best_epoch == 3
    assert history.averaged == [3]


def test_soup_without_held_out_rows_keeps_the_best_epoch() -> None:
    """With neither a selection score nor validation batches there is nothing to judge an average on."""
    x, y = _regression(seed=6)
    module = nn.Linear(4, 1)
    history = Trainer(TrainerConfig(epochs=8, patience=8, soup=4, device="cpu")).fit(
        module, _mse, _batches(x, y)
    )
    assert history.averaged == [history.best_epoch]
    assert history.train_loss[history.best_epoch - 1] == min(history.train_loss)


def test_soup_starts_from_the_restored_best_epoch_when_later_ones_edge_past_it() -> None:
    """Epochs better than the best by less than ``min_delta`` do not replace it as the best; the
    average starts from the best epoch all the same."""
    x, y = _regression(seed=7)
    module = nn.Linear(4, 1)
    # epochs 1-6: epoch 2 is the best; 3-6 edge past it by less than min_delta (1e-4); trial
    # averages are judged worse, so the best epoch stays alone
    values = iter([1.0, 2.0, 2.00001, 2.00002, 2.00003, 2.00004] + [0.0] * 10)
    history = Trainer(TrainerConfig(epochs=6, patience=6, soup=3, device="cpu")).fit(
        module, _mse, _batches(x, y), selection=lambda _module: next(values), selection_mode="max"
    )
    assert history.best_epoch == 2
    assert history.averaged == [2]
