"""Autoencoder and variational autoencoder: what they learn and how they score."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from nadkit.errors import ConfigError
from nadkit.evaluation.metrics import roc_auc
from nadkit.models.autoencoder import (
    Autoencoder,
    AutoencoderConfig,
    VariationalAutoencoder,
    VariationalAutoencoderConfig,
)
from nadkit.models.base import DetectorData
from nadkit.models.trainer import Batch

NAMES = tuple(f"f{j}" for j in range(10))


def _low_rank(rows: int = 2000, rank: int = 3, seed: int = 0) -> DetectorData:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(rank, len(NAMES)))
    features = rng.normal(size=(rows, rank)) @ mixing + 0.01 * rng.normal(size=(rows, len(NAMES)))
    return DetectorData(features / features.std(axis=0), NAMES)


def test_autoencoder_reconstructs_a_low_rank_dataset() -> None:
    train = _low_rank(rows=1000)
    config = AutoencoderConfig(
        hidden=(32,), bottleneck=4, epochs=40, patience=10, batch_size=64, learning_rate=5e-3, device="cpu"
    )
    detector = Autoencoder(config).fit(train)
    test = _low_rank(rows=500, seed=0)
    per_feature = detector.contributions(test).mean(axis=0)
    assert per_feature.max() < 0.05  # features have unit variance: over 95 % of it is reconstructed
    # a row off the learned subspace reconstructs badly
    outlier = DetectorData(np.eye(1, len(NAMES), 2, dtype=np.float32) * 4.0, NAMES)
    assert detector.score(outlier)[0] > 20 * np.median(detector.score(test))
    assert detector.explain(outlier, top=1)[0][0][0] == "f2"


def test_autoencoder_errors_are_squared_reconstruction_errors() -> None:
    data = _low_rank(rows=300)
    detector = Autoencoder(AutoencoderConfig(hidden=(8,), bottleneck=2, epochs=2, device="cpu")).fit(data)
    x = torch.from_numpy(data.features)
    with torch.no_grad():
        expected = ((detector.module_(x) - x) ** 2).double().numpy()
    np.testing.assert_allclose(detector.contributions(data), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "options",
    [
        {"activation": "swish"},
        {"bottleneck": 0},
        {"hidden": (16, 0)},
        {"dropout": 1.0},
        {"batch_size": 0},
        {"input_noise": -0.1},
        {"input_noise": float("nan")},
        {"input_mask": 1.0},
        {"input_mask": -0.1},
        {"members": 0},
        {"members": 17},
        {"latent_neighbours": -1},
        {"latent_neighbours": 65},
        {"latent_neighbours": 5, "latent_references": 4},
        {"latent_neighbours": 5, "members": 2},
    ],
)
def test_autoencoder_config_is_validated(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        AutoencoderConfig(**options)


def test_a_denoising_autoencoder_corrupts_only_its_training_rows() -> None:
    data = _low_rank(rows=400)
    x = torch.from_numpy(data.features)
    batch = Batch(x=x)
    plain = Autoencoder(AutoencoderConfig(hidden=(8,), bottleneck=2, epochs=2, device="cpu")).fit(data)
    noisy = Autoencoder(dataclasses.replace(plain.config, input_noise=0.5, input_mask=0.3))
    module = plain.module_
    # in evaluation mode (validation loss, scoring) the rows are as they are: the same loss as plain
    module.eval()
    with torch.no_grad():
        assert float(noisy.loss(module, batch)) == pytest.approx(float(plain.loss(module, batch)))
        # in training mode the network reads corrupted rows but is measured against the clean ones
        module.train()
        torch.manual_seed(0)
        corrupted = noisy._corrupted(x)
        torch.manual_seed(0)
        loss = float(noisy.loss(module, batch))
        assert loss == pytest.approx(float(torch.mean((module(corrupted) - x) ** 2)))
        assert loss > float(plain.loss(module, batch))
    masked = corrupted == 0
    assert 0.2 < float(masked.float().mean()) < 0.4  # about input_mask of the values
    spread = (corrupted - x)[~masked]
    assert 0.4 < float(spread.std()) < 0.6  # the added noise, where not masked
    # a denoising fit trains and scores as any autoencoder (its config saved with it)
    fitted = Autoencoder(dataclasses.replace(plain.config, input_noise=0.1, input_mask=0.1)).fit(data)
    assert np.isfinite(fitted.score(data)).all()
    assert AutoencoderConfig.from_dict(fitted.config.to_dict()).input_mask == 0.1


def test_configs_load_from_dicts() -> None:
    config = AutoencoderConfig.from_dict({"hidden": [16, 8], "bottleneck": 3, "activation": "gelu"})
    assert config.hidden == (16, 8)
    assert AutoencoderConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown option"):
        VariationalAutoencoderConfig.from_dict({"latent_size": 3})
    with pytest.raises(ConfigError):
        VariationalAutoencoderConfig(beta=-1.0)
    with pytest.raises(ConfigError):
        VariationalAutoencoderConfig(output_variance=0.0)


def test_vae_score_decreases_with_training() -> None:
    data = _low_rank(rows=800)
    options = {"hidden": (32,), "latent": 4, "output_variance": 1.0, "patience": 50, "device": "cpu"}
    options |= {"learning_rate": 5e-3, "batch_size": 64}
    short = VariationalAutoencoder(VariationalAutoencoderConfig(epochs=1, **options)).fit(data)
    long = VariationalAutoencoder(VariationalAutoencoderConfig(epochs=20, **options)).fit(data)
    assert long.score(data).mean() < 0.5 * short.score(data).mean()
    assert long.history_.train_loss[-1] < long.history_.train_loss[0]


def test_vae_scores_are_deterministic_and_match_the_negative_elbo() -> None:
    data = _low_rank(rows=800)
    config = VariationalAutoencoderConfig(hidden=(16,), latent=3, epochs=5, beta=0.5, device="cpu")
    detector = VariationalAutoencoder(config).fit(data)
    scores = detector.score(data)
    np.testing.assert_array_equal(scores, detector.score(data))
    # the score is the deterministic negative ELBO less its row-independent constant
    module = detector.module_
    x = torch.from_numpy(data.features)
    with torch.no_grad():
        loss = detector.loss(module, Batch(x=x))  # evaluation mode: latent mean, no sampling
        constant = 0.5 * torch.sum(np.log(2 * np.pi) + module.output_log_variance()).item()
    assert scores.mean() + constant == pytest.approx(loss.item(), rel=1e-4)


def test_vae_learned_variance_stays_bounded_on_constant_features() -> None:
    rng = np.random.default_rng(1)
    features = np.concatenate([rng.normal(size=(600, 3)), np.zeros((600, 1))], axis=1)
    names = ("a", "b", "c", "constant")
    detector = VariationalAutoencoder(
        VariationalAutoencoderConfig(hidden=(8,), latent=2, epochs=20, learning_rate=0.05, device="cpu")
    ).fit(DetectorData(features, names))
    odd = DetectorData(np.array([[0.0, 0.0, 0.0, 5.0]]), names)
    scores = detector.score(odd)
    assert np.isfinite(scores).all()
    assert detector.explain(odd, top=1)[0][0][0] == "constant"


@pytest.mark.parametrize("detector_class", [Autoencoder, VariationalAutoencoder])
def test_networks_export_without_data_dependent_control_flow(detector_class: type) -> None:
    data = _low_rank(rows=200)
    detector = detector_class(detector_class.test_config()).fit(data)
    x = torch.from_numpy(data.features[:8])
    exported = torch.export.export(detector.module_, (x,))
    with torch.no_grad():
        expected = detector.module_(x)
        got = exported.module()(x)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = got if isinstance(got, tuple) else (got,)
    for left, right in zip(expected, got, strict=True):
        torch.testing.assert_close(left, right)


def _reconstruction_probability_vae(data: DetectorData, **options: object) -> VariationalAutoencoder:
    config = VariationalAutoencoderConfig(
        hidden=(16,), latent=3, epochs=8, device="cpu", score="reconstruction_probability", samples=5
    )
    return VariationalAutoencoder(dataclasses.replace(config, **options)).fit(data)


def test_vae_reconstruction_probability_is_the_mean_likelihood_over_the_fixed_draws() -> None:
    data = _low_rank(rows=600)
    detector = _reconstruction_probability_vae(data)
    module = detector.module_
    assert tuple(module.score_noise.shape) == (5, 3)
    x = torch.from_numpy(data.features[:50])
    with torch.no_grad():
        mean, log_variance = module.encode(x)
        variance = torch.exp(module.output_log_variance())
        expected = torch.zeros(50, dtype=torch.float64)
        for draw in module.score_noise:
            z = mean + torch.exp(0.5 * log_variance) * draw
            nll = 0.5 * torch.sum((x - module.decode(z)) ** 2 / variance, dim=1)
            expected += nll.double() / 5
    np.testing.assert_allclose(detector.score(data.take(np.arange(50))), expected.numpy(), rtol=1e-5)
    # a row is scored the same alone, in chunks and after a save and load of the weights
    whole = detector.score(data)
    chunked = np.concatenate([detector.score(data.take(rows)) for rows in np.array_split(np.arange(600), 7)])
    np.testing.assert_allclose(chunked, whole, rtol=1e-6)
    restored = VariationalAutoencoder(detector.config).load_state(detector.state(), NAMES)
    np.testing.assert_array_equal(restored.score(data), whole)


def test_vae_reconstruction_probability_ranks_off_subspace_rows_first() -> None:
    data = _low_rank(rows=1500)
    detector = _reconstruction_probability_vae(data, epochs=30, learning_rate=5e-3, batch_size=64)
    normal = _low_rank(rows=300, seed=5)
    outliers = DetectorData(np.random.default_rng(3).normal(scale=3.0, size=(30, len(NAMES))), NAMES)
    scores = np.concatenate([detector.score(normal), detector.score(outliers)])
    assert roc_auc(scores, np.arange(len(scores)) >= len(normal)) > 0.95
    # the draws come from the seed: another seed draws others, the same seed the same
    same = _reconstruction_probability_vae(data, epochs=30, learning_rate=5e-3, batch_size=64)
    np.testing.assert_array_equal(same.module_.score_noise, detector.module_.score_noise)


def test_vae_score_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="score must be one of"):
        VariationalAutoencoderConfig(score="likelihood")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="samples"):
        VariationalAutoencoderConfig(score="reconstruction_probability", samples=0)


def test_vae_reconstruction_probability_exports_to_onnx(tmp_path: Path) -> None:
    from nadkit.models.export import export_onnx
    from nadkit.models.onnx_runtime import OnnxScorer

    data = _low_rank(rows=400)
    detector = _reconstruction_probability_vae(data, epochs=3)
    path = tmp_path / "vae.onnx"
    export_onnx(detector, path)
    got = OnnxScorer(path, batch_size=128, threads=1).contributions(data)
    np.testing.assert_allclose(got, detector.contributions(data), rtol=1e-4, atol=1e-4)


def test_an_autoencoder_ensemble_scores_by_its_members_mean_error(tmp_path: Path) -> None:
    """``members: 3`` trains three networks from their own initial weights; a row's per-feature
    errors are the mean of theirs, and the ensemble saves, loads and exports as one network does."""
    from nadkit.models.export import export_onnx
    from nadkit.models.onnx_runtime import OnnxScorer

    data = _low_rank(rows=400)
    config = AutoencoderConfig(hidden=(8,), bottleneck=2, epochs=3, members=3, device="cpu")
    detector = Autoencoder(config).fit(data)
    members = detector.module_.members
    assert len(members) == 3
    first = [m.encoder[0][0].weight for m in members]
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])
    x = torch.from_numpy(data.features)
    with torch.no_grad():
        expected = torch.stack([(m(x) - x) ** 2 for m in members]).mean(dim=0).double().numpy()
    np.testing.assert_allclose(detector.contributions(data), expected, rtol=1e-6)
    np.testing.assert_allclose(detector.score(data), expected.sum(axis=1), rtol=1e-6)

    loaded = Autoencoder(AutoencoderConfig.from_dict(detector.config.to_dict()))
    loaded.load_state(detector.state(), detector.feature_names_)
    np.testing.assert_array_equal(loaded.score(data), detector.score(data))
    single = Autoencoder(dataclasses.replace(config, members=1))
    with pytest.raises(ConfigError, match="do not fit"):
        single.load_state(detector.state(), detector.feature_names_)

    path = tmp_path / "members.onnx"
    export_onnx(detector, path)
    got = OnnxScorer(path, batch_size=128, threads=1).contributions(data)
    np.testing.assert_allclose(got, detector.contributions(data), rtol=1e-4, atol=1e-4)


def test_latent_neighbours_add_the_distance_to_the_nearest_training_codes(tmp_path: Path) -> None:
    """``latent_neighbours: 3``: a row's error gains its weighed mean distance to the 3 nearest training
    codes, spread over the features by how it differs from its nearest training row; a row near
    a lone training row that the network reconstructs well still scores above the crowd's rows."""
    from nadkit.models.export import export_onnx
    from nadkit.models.onnx_runtime import OnnxScorer

    rng = np.random.default_rng(3)
    crowd = rng.normal(size=(300, len(NAMES)))
    lone = np.full((1, len(NAMES)), 4.0)
    train = DetectorData(np.vstack([crowd, lone]).astype(np.float32), NAMES)
    config = AutoencoderConfig(
        hidden=(32,), bottleneck=8, epochs=30, batch_size=32, device="cpu", latent_neighbours=3
    )
    held = DetectorData(rng.normal(size=(60, len(NAMES))).astype(np.float32), NAMES)
    detector = Autoencoder(config).fit(train, validation=held)
    module = detector.module_
    assert module.references.shape == (1024, 8)
    used = module.references[:, 0] < 1e3
    assert int(used.sum()) == 301  # every training row, the other slots empty
    x = torch.from_numpy(train.features)
    with torch.no_grad():
        code = module.encoder(x)
        reconstruction = ((module.decoder(code) - x) ** 2).double().numpy()
        distance = torch.cdist(code, module.references[used]).topk(3, largest=False).values.mean(dim=1)
    extra = detector.contributions(train) - reconstruction
    assert np.all(extra >= -1e-6)
    weight = float(module.neighbour_weight)
    assert weight > 0
    np.testing.assert_allclose(extra.sum(axis=1), weight * distance.double().numpy(), rtol=1e-3, atol=1e-4)

    near_lone = DetectorData((lone + 0.1).astype(np.float32), NAMES)
    typical = DetectorData(rng.normal(size=(200, len(NAMES))).astype(np.float32), NAMES)
    assert detector.score(near_lone)[0] > np.quantile(detector.score(typical), 0.9)

    loaded = Autoencoder(AutoencoderConfig.from_dict(detector.config.to_dict()))
    loaded.load_state(detector.state(), detector.feature_names_)
    np.testing.assert_array_equal(loaded.score(typical), detector.score(typical))
    path = tmp_path / "neighbours.onnx"
    export_onnx(detector, path)
    got = OnnxScorer(path, batch_size=64, threads=1).contributions(typical)
    np.testing.assert_allclose(got, detector.contributions(typical), rtol=1e-3, atol=1e-3)


def test_latent_neighbours_need_as_many_training_rows() -> None:
    data = DetectorData(np.random.default_rng(0).normal(size=(12, len(NAMES))).astype(np.float32), NAMES)
    config = AutoencoderConfig(hidden=(8,), bottleneck=2, epochs=1, device="cpu", latent_neighbours=20)
    with pytest.raises(ConfigError, match="at least as many training rows"):
        Autoencoder(config).fit(data)
