"""Synthetic sequences with known structure for the window detectors, and the checks every window
detector must pass (run on every window detector by test_sequence_detectors; the model-specific
tests live in test_recurrent, test_transformer and test_cnn_lstm)."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch

from nadkit.models.base import DetectorData
from nadkit.models.neural import NeuralConfig, NeuralDetector
from nadkit.models.trainer import Batch

NAMES = ("wave_0", "wave_1", "wave_2", "wave_3")
PERIOD = 12.0
#: the planted-anomaly ROC-AUC every window detector must beat
MINIMUM_AUC = 0.9


def sine_sequences(
    entities: int = 6, steps: int = 400, seed: int = 0, anomaly_share: float = 0.0
) -> tuple[DetectorData, np.ndarray]:
    """Per entity, four phase-shifted sine waves (period 12 steps) with a random phase and a little
    noise, rows shuffled across entities (windows must come from entity and time). With
    ``anomaly_share``, that share of the rows (not among an entity's first 10) jumps half a period
    out of phase: each value stays in the normal range, only the sequence breaks. Returns the data
    and the mask of planted rows."""
    rng = np.random.default_rng(seed)
    features, entity, time, planted = [], [], [], []
    for code in range(entities):
        steps_index = np.arange(steps)
        phase = rng.uniform(0, 2 * np.pi)
        angle = 2 * np.pi * steps_index / PERIOD + phase
        broken = np.zeros(steps, dtype=bool)
        if anomaly_share:
            chosen = rng.choice(np.arange(10, steps), int(anomaly_share * steps), replace=False)
            broken[chosen] = True
            angle = np.where(broken, angle + np.pi, angle)
        waves = np.stack([np.sin(angle + k * np.pi / 4) for k in range(len(NAMES))], axis=1)
        features.append(waves + rng.normal(0, 0.05, waves.shape))
        entity.append(np.full(steps, 100 + code))
        time.append(1_700_000_000_000_000 + steps_index * 1_000_000)
        planted.append(broken)
    order = rng.permutation(entities * steps)
    data = DetectorData(
        np.concatenate(features)[order].astype(np.float32),
        NAMES,
        entity=np.concatenate(entity)[order],
        time=np.concatenate(time)[order],
    )
    return data, np.concatenate(planted)[order]


def planted_auc(detector: NeuralDetector) -> float:
    """ROC-AUC of ``detector``'s scores for the planted rows of a fresh test series."""
    test, planted = sine_sequences(seed=11, anomaly_share=0.03)
    ranks = np.argsort(np.argsort(detector.score(test), kind="stable")) + 1.0
    positives, negatives = planted.sum(), (~planted).sum()
    return float((ranks[planted].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def random_windows(detector: NeuralDetector, rows: int = 64, seed: int = 0) -> Batch:
    """A batch of random windows of the detector's length, with 1 to ``window`` real rows each."""
    generator = torch.Generator().manual_seed(seed)
    window = detector.config.window
    x = torch.randn(rows, window, len(NAMES), generator=generator)
    real = torch.randint(1, window + 1, (rows,), generator=generator)
    mask = torch.arange(window).unsqueeze(0) >= (window - real).unsqueeze(1)
    return Batch(x=x * mask.unsqueeze(-1), mask=mask)


def predict(detector: NeuralDetector, batch: Batch) -> torch.Tensor:
    """The fitted network's ``(b, window, d)`` predictions of a batch."""
    with torch.no_grad():
        return detector.module_(batch.x, batch.mask)


def check_scores_and_contributions(detector: NeuralDetector) -> None:
    """Contributions are non-negative, sum to the finite float64 scores, and are the squared
    error of the network's prediction of each window's last row."""
    data, _ = sine_sequences(entities=3, steps=50, seed=5)
    scores = detector.score(data)
    contributions = detector.contributions(data)
    assert scores.dtype == np.float64 and np.isfinite(scores).all()
    assert contributions.shape == (len(data), len(NAMES)) and (contributions >= 0).all()
    np.testing.assert_allclose(contributions.sum(axis=1), scores, rtol=1e-6)
    batch = random_windows(detector)
    expected = (predict(detector, batch)[:, -1] - batch.x[:, -1]).square()
    with torch.no_grad():
        np.testing.assert_allclose(
            detector.errors(detector.module_, batch).numpy(), expected.numpy(), rtol=1e-6
        )


def check_padding(detector: NeuralDetector) -> None:
    """Padding rows are never read, and an entity of one row (a window of padding and the row) has a
    finite score that only depends on the row."""
    batch = random_windows(detector)
    garbage = torch.randn(batch.x.shape, generator=torch.Generator().manual_seed(3)) * 10
    filled = Batch(x=torch.where(batch.mask.unsqueeze(-1), batch.x, garbage), mask=batch.mask)
    np.testing.assert_allclose(
        predict(detector, filled).numpy()[batch.mask.numpy()],
        predict(detector, batch).numpy()[batch.mask.numpy()],
        rtol=1e-5,
        atol=1e-6,
    )
    data, _ = sine_sequences(entities=3, steps=20, seed=6)
    lonely = DetectorData(
        np.vstack([data.features, data.features[:1]]),
        NAMES,
        entity=np.append(data.entity, -1),
        time=np.append(data.time, data.time[0]),
    )
    scores = detector.score(lonely)
    assert np.isfinite(scores).all()
    alone = DetectorData(data.features[:1], NAMES, entity=np.array([7]), time=np.array([0]))
    np.testing.assert_allclose(detector.score(alone)[0], scores[-1], rtol=1e-5)


def check_forecast_ignores_the_scored_row(detector: NeuralDetector) -> None:
    """In forecast mode the prediction of the last row does not change when that row's features do,
    while its error does."""
    batch = random_windows(detector)
    changed_x = batch.x.clone()
    changed_x[:, -1] += 3.0
    changed = Batch(x=changed_x, mask=batch.mask)
    np.testing.assert_array_equal(
        predict(detector, changed)[:, -1].numpy(), predict(detector, batch)[:, -1].numpy()
    )
    with torch.no_grad():
        before = detector.errors(detector.module_, batch).sum(dim=1)
        after = detector.errors(detector.module_, changed).sum(dim=1)
    assert not torch.allclose(before, after)


def check_windows_follow_entity_and_time(detector: NeuralDetector) -> None:
    """Scores do not depend on the row order or on scoring in chunks that keep entities whole."""
    data, _ = sine_sequences(entities=4, steps=60, seed=8)
    scores = detector.score(data)
    order = np.random.default_rng(1).permutation(len(data))
    np.testing.assert_allclose(detector.score(data.take(order)), scores[order], rtol=1e-5, atol=1e-7)
    pieced = np.empty_like(scores)
    for group in (data.entity % 2 == 0, data.entity % 2 == 1):
        pieced[group] = detector.score(data.take(group))
    np.testing.assert_allclose(pieced, scores, rtol=1e-5, atol=1e-7)


def check_same_seed_same_scores(detector_class: type[NeuralDetector], config: NeuralConfig) -> None:
    """Two short fits with the same config give identical scores; another seed does not."""
    train, _ = sine_sequences(entities=2, steps=120, seed=4)
    data, _ = sine_sequences(entities=2, steps=50, seed=9)
    config = dataclasses.replace(config, epochs=2)
    first = detector_class(config).fit(train).score(data)
    np.testing.assert_array_equal(detector_class(config).fit(train).score(data), first)
    other = detector_class(dataclasses.replace(config, seed=config.seed + 1)).fit(train)
    assert not np.array_equal(other.score(data), first)


def check_exportable(detector: NeuralDetector) -> None:
    """The network exports as a graph (no Python branches on data values) with a free batch size,
    and the graph matches the network on windows with other padding."""
    batch = random_windows(detector, rows=8, seed=1)
    other = random_windows(detector, rows=5, seed=2)
    size = torch.export.Dim("batch")
    program = torch.export.export(
        detector.module_, (batch.x, batch.mask), dynamic_shapes=({0: size}, {0: size})
    )
    with torch.no_grad():
        torch.testing.assert_close(program.module()(other.x, other.mask), predict(detector, other))


@functools.cache
def fitted_detector(cls: type[NeuralDetector], mode: str) -> NeuralDetector:
    """``cls`` in ``mode`` (its test settings) fitted on the training sequences, once per test run."""
    config = dataclasses.replace(cls.test_config(), mode=mode)
    return cls(config).fit(sine_sequences(seed=1)[0])
