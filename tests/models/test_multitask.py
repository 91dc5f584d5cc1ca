"""The multi-task detector: shake-shake mixing, CMD, the self-normalising layers, the input
gradient behind its attributions, and what it learns from simulated traffic."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.numpy import load_file, save_file

from nadkit.errors import ConfigError
from nadkit.evaluation.labels import is_nad_label_set
from nadkit.evaluation.metrics import macro_f_beta, nad_score
from nadkit.evaluation.split import supervised_split
from nadkit.features.data import detector_data
from nadkit.features.pipeline import FeaturePipeline
from nadkit.models.base import DetectorData
from nadkit.models.export import export_onnx
from nadkit.models.multitask import (
    SELU_ALPHA,
    SELU_SCALE,
    AlphaDropout,
    MultitaskClassifier,
    MultitaskConfig,
    MultitaskDetector,
    MultitaskNetwork,
    SeedEpochReport,
    ShakeShakeBlock,
    Standardize,
    central_moment_discrepancy,
    class_draw_probabilities,
    selection_score,
    shake_shake,
)
from nadkit.models.multitask import _selu_derivative as selu_derivative
from nadkit.models.multitask.bins import BinEncoding
from nadkit.models.multitask.periodic import PeriodicEncoding
from nadkit.models.onnx_runtime import OnnxScorer
from nadkit.models.trainer import EpochReport
from nadkit.simulate import SimulationConfig, simulate
from nadkit.training.fit import default_features

QUICK = MultitaskConfig(
    width=32,
    latent=8,
    head_width=16,
    epochs=12,
    patience=4,
    batch_size=256,
    steps_per_epoch=25,
    seeds=1,
    attribution_steps=16,
    device="cpu",
)

# -- shake-shake ---------------------------------------------------------------------------------


def test_shake_shake_mixes_forward_and_backward_independently() -> None:
    """With branches 1 and 0 the output is the forward coefficient ``a`` and the gradients reaching
    the branches are ``b`` and ``1 - b``: uniform, and unrelated to ``a``."""
    torch.manual_seed(0)
    rows = 20000
    first = torch.ones(rows, 1, requires_grad=True)
    second = torch.zeros(rows, 1, requires_grad=True)
    out = shake_shake(first, second)
    out.sum().backward()
    forward_mix = out.detach().numpy().ravel()
    backward_mix = first.grad.numpy().ravel()
    np.testing.assert_allclose(second.grad.numpy().ravel(), 1.0 - backward_mix, atol=1e-6)
    for mix in (forward_mix, backward_mix):
        assert mix.min() >= 0 and mix.max() <= 1
        assert abs(mix.mean() - 0.5) < 0.01
        assert abs(mix.var() - 1 / 12) < 0.005  # U(0, 1)
    assert abs(np.corrcoef(forward_mix, backward_mix)[0, 1]) < 0.03
    assert np.abs(forward_mix - backward_mix).mean() > 0.3  # about 1/3 for independent uniforms


def test_shake_shake_block_mixes_in_training_and_halves_in_evaluation() -> None:
    torch.manual_seed(1)
    block = ShakeShakeBlock(width=8, dropout=0.0)
    x = torch.randn(64, 8)
    halves = x + 0.5 * (block.first(x) + block.second(x))
    block.eval()
    torch.testing.assert_close(block(x), halves)
    torch.testing.assert_close(block(x), block(x))
    block.train()
    once, twice = block(x), block(x)
    assert not torch.allclose(once, twice)
    # every training output lies between the two branches' pure mixes, row by row
    low = x + torch.minimum(block.first(x), block.second(x))
    high = x + torch.maximum(block.first(x), block.second(x))
    assert bool(((once >= low - 1e-6) & (once <= high + 1e-6)).all())


# -- CMD -----------------------------------------------------------------------------------------


def test_cmd_is_zero_for_identical_batches() -> None:
    batch = torch.rand(256, 6)
    assert float(central_moment_discrepancy(batch, batch.clone())) == pytest.approx(0.0, abs=1e-7)


def test_cmd_grows_with_mean_and_variance_shifts() -> None:
    generator = torch.Generator().manual_seed(2)
    base = torch.rand(4000, 4, generator=generator) * 0.5 + 0.25
    mean_shifts = [
        float(central_moment_discrepancy(base, (base + shift).clamp(0, 1))) for shift in (0.05, 0.1, 0.2)
    ]
    assert 0 < mean_shifts[0] < mean_shifts[1] < mean_shifts[2]
    centre = base.mean(dim=0)
    spread_shifts = [
        float(central_moment_discrepancy(base, centre + (base - centre) * factor))
        for factor in (1.2, 1.5, 1.9)
    ]
    assert 0 < spread_shifts[0] < spread_shifts[1] < spread_shifts[2]


def test_cmd_matches_a_hand_computation_for_two_moments() -> None:
    x = torch.tensor([[0.0, 0.2], [1.0, 0.4], [0.5, 0.9]])
    y = torch.tensor([[0.1, 0.1], [0.3, 0.3]])
    # means: x (0.5, 0.5), y (0.2, 0.2); variances (population): x (1/6, 0.26/3), y (0.01, 0.01)
    mean_term = math.hypot(0.3, 0.3)
    variance_term = math.hypot(1 / 6 - 0.01, 0.26 / 3 - 0.01)
    assert float(central_moment_discrepancy(x, y, moments=2)) == pytest.approx(mean_term + variance_term)
    # the span of the bounded interval divides the k-th term by span ** k
    scaled = float(central_moment_discrepancy(x, y, moments=2, span=2.0))
    assert scaled == pytest.approx(mean_term / 2 + variance_term / 4)
    with pytest.raises(ConfigError):
        central_moment_discrepancy(x, y, moments=0)


# -- self-normalising layers ---------------------------------------------------------------------


def test_linear_layers_have_lecun_normal_initialisation() -> None:
    torch.manual_seed(3)
    config = MultitaskConfig(width=256, latent=64, head_width=64, seeds=2)
    network = MultitaskClassifier(features=300, classes=4, config=config)
    linears = [m for m in network.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 2 * (1 + 2 * 3 + 1 + 1 + 2)  # per member: input, 3 blocks, latent, heads
    for layer in linears:
        weights = layer.weight.detach().numpy()
        expected = 1.0 / math.sqrt(layer.in_features)
        assert abs(weights.mean()) < 0.1 * expected
        assert abs(weights.std() / expected - 1.0) < 0.05
        assert not layer.bias.detach().numpy().any()


def test_selu_input_layer_keeps_activations_normalised() -> None:
    torch.manual_seed(4)
    network = MultitaskNetwork(features=200, classes=3, config=MultitaskConfig(width=512, dropout=0.0))
    with torch.no_grad():
        out = network.input_layer(torch.randn(4000, 200)).numpy()
    assert abs(out.mean()) < 0.05
    assert abs(out.var() - 1.0) < 0.1


def test_alpha_dropout_keeps_mean_and_variance() -> None:
    torch.manual_seed(5)
    layer = AlphaDropout(0.2)
    x = torch.randn(200000, 8)
    out = layer(x)
    assert abs(float(out.mean())) < 0.01
    assert abs(float(out.var()) - 1.0) < 0.01
    dropped = torch.isclose(
        out, torch.full_like(out, layer.scale * -1.0507009873554805 * 1.6732632423543772 + layer.shift)
    )
    assert abs(float(dropped.float().mean()) - 0.2) < 0.01
    layer.eval()
    assert torch.equal(layer(x), x)


# -- sampling, splitting, selection ----------------------------------------------------------------


def test_class_draw_probabilities() -> None:
    counts = np.array([900, 90, 10, 0])
    np.testing.assert_allclose(class_draw_probabilities(counts, 1.0), [1 / 3, 1 / 3, 1 / 3, 0])
    np.testing.assert_allclose(class_draw_probabilities(counts, 0.0), [0.9, 0.09, 0.01, 0])
    root = np.sqrt([900, 90, 10])
    np.testing.assert_allclose(class_draw_probabilities(counts, 0.5)[:3], root / root.sum())


def test_nad_label_set_is_recognised() -> None:
    assert is_nad_label_set(["normal", "DDOS-smurf", "Probing-Nmap"])
    assert is_nad_label_set(["Normal", "Probing-IP sweep"])
    assert not is_nad_label_set(["normal", "DoS", "Probe"])
    assert not is_nad_label_set([])


def test_selection_score_is_the_nad_score_for_nad_labels_else_macro_f_beta() -> None:
    nad_true = np.array(["normal", "normal", "DDOS-smurf", "Probing-Nmap", "normal"])
    nad_guess = np.array(["normal", "DDOS-smurf", "DDOS-smurf", "normal", "normal"])
    assert selection_score(nad_true, nad_guess) == pytest.approx(nad_score(nad_true, nad_guess))
    other_true = np.array(["normal", "DoS", "Probe", "DoS"])
    other_guess = np.array(["normal", "DoS", "DoS", "DoS"])
    # F2: normal 1, DoS 5*1*(2/3)/(4*(2/3)+1) = 10/11, Probe 0
    assert selection_score(other_true, other_guess, beta=2.0) == pytest.approx((1 + 10 / 11 + 0) / 3)
    assert selection_score(other_true, other_guess, beta=1.0) == pytest.approx(
        macro_f_beta(other_true, other_guess, beta=1.0)
    )


def test_config_is_checked() -> None:
    for options in (
        {"width": 0},
        {"seeds": 0},
        {"cmd_moments": 0},
        {"dropout": 1.0},
        {"class_balance": 1.5},
        {"cmd_source": "target"},
        {"steps_per_epoch": 0},
        {"cmd_weight": -1.0},
        {"input_transform": "rank"},
        {"quantile_knots": 1},
        {"input_bins": -1},
        {"input_bins": 257},
    ):
        with pytest.raises(ConfigError):
            MultitaskConfig(**options)


# -- the quantile map of the inputs -----------------------------------------------------------------


def _mapped_standardize(x: np.ndarray, knots: int = 16) -> Standardize:
    standardize = Standardize(x.shape[1], clip=10.0, knots=knots)
    standardize.fit_quantiles(x)
    return standardize


def test_quantile_map_sends_training_quantiles_to_normal_scores() -> None:
    rng = np.random.default_rng(0)
    x = np.stack([rng.lognormal(0.0, 2.0, 5000), rng.normal(size=5000)], axis=1).astype(np.float32)
    standardize = _mapped_standardize(x)
    levels = np.linspace(0.0, 1.0, 16)[1:-1]
    knots = torch.from_numpy(np.quantile(x, levels, axis=0).astype(np.float32))
    expected = torch.tensor([statistics.NormalDist().inv_cdf(p) for p in levels], dtype=torch.float32)
    mapped = standardize.quantile(knots)
    torch.testing.assert_close(mapped, expected[:, None].expand(-1, 2), rtol=1e-3, atol=1e-3)
    # monotone, bounded, flat beyond the training range
    grid = torch.linspace(-50.0, 5000.0, 2001)[:, None].expand(-1, 2).contiguous()
    values = standardize.quantile(grid)
    assert bool((values.diff(dim=0) >= -1e-6).all())
    assert float(values.abs().max()) <= statistics.NormalDist().inv_cdf(0.999) + 1e-5


def test_quantile_map_handles_discrete_and_constant_features() -> None:
    rng = np.random.default_rng(1)
    binary = (rng.random(4000) < 0.1).astype(np.float32)
    constant = np.full(4000, 3.0, dtype=np.float32)
    x = np.stack([binary, constant], axis=1)
    standardize = _mapped_standardize(x, knots=32)
    mapped = standardize.quantile(torch.tensor([[0.0, 3.0], [1.0, 3.0], [0.5, 7.0]]))
    assert bool(torch.isfinite(mapped).all())
    assert float(mapped[1, 0]) > float(mapped[2, 0]) > float(mapped[0, 0])  # 0 < 0.5 < 1 stay ordered
    assert float(mapped[0, 1]) == float(mapped[2, 1])  # a constant feature maps to one value


def test_quantile_map_derivative_matches_autograd() -> None:
    rng = np.random.default_rng(2)
    x = rng.lognormal(0.0, 1.5, size=(3000, 3)).astype(np.float32)
    standardize = _mapped_standardize(x)
    standardize.mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
    standardize.scale.copy_(torch.tensor([0.9, 1.1, 0.2]))
    points = torch.from_numpy(rng.lognormal(0.0, 1.5, size=(400, 3)).astype(np.float32)).requires_grad_(True)
    (expected,) = torch.autograd.grad(standardize(points).sum(), points)
    _, derivative = standardize.with_derivative(points.detach())
    torch.testing.assert_close(derivative, expected, rtol=1e-4, atol=1e-5)


def test_state_saved_without_the_quantile_map_loads_as_standardised(toy_detector: MultitaskDetector) -> None:
    plain = MultitaskDetector(MultitaskConfig(**{**QUICK.to_dict(), "input_transform": "standard"}))
    plain.fit(_toy(600, seed=9))
    arrays = plain.state()
    assert not any(key.startswith("standardize.knot") for key in arrays)
    restored = MultitaskDetector(QUICK).load_state(arrays, NAMES)  # QUICK maps by quantiles
    assert restored.config.input_transform == "standard"
    test = _toy(200, seed=10)
    np.testing.assert_array_equal(restored.predict_proba(test), plain.predict_proba(test))
    assert any(key.startswith("standardize.knot") for key in toy_detector.state())


# -- the bin encoding of the inputs -------------------------------------------------------------------


def test_bin_encoding_places_values_in_their_quantile_bins() -> None:
    rng = np.random.default_rng(3)
    z = np.stack([rng.normal(size=4000), (rng.random(4000) < 0.2).astype(float)], axis=1)
    encoding = BinEncoding(2, bins=4)
    encoding.fit(z)
    edges = np.quantile(z[:, 0], np.linspace(0, 1, 5)).astype(np.float32)
    assert encoding.width == 10
    # the binary feature has one bin (two distinct edges), the other three are unused
    assert int((encoding.inverse[1] > 0).sum()) == 1
    middle = float((edges[1] + edges[2]) / 2)
    out = encoding(torch.tensor([[middle, 1.0], [edges[0] - 1.0, 0.0], [edges[-1] + 1.0, 0.0]]))
    ramps = out[:, 2:].reshape(3, 2, 4)
    torch.testing.assert_close(
        out[:, :2], torch.tensor([[middle, 1.0], [edges[0] - 1.0, 0.0], [edges[-1] + 1.0, 0.0]])
    )
    # halfway up the second bin: the first is full, the rest empty
    torch.testing.assert_close(ramps[0, 0], torch.tensor([1.0, 0.0, -1.0, -1.0]), atol=1e-5, rtol=0)
    assert bool((ramps[1, 0] == -1).all()) and bool((ramps[2, 0] == 1).all())  # below / above every bin
    torch.testing.assert_close(ramps[:, 1, 1:], torch.full((3, 3), -1.0))  # unused bins are constant
    assert float(ramps[0, 1, 0]) == 1.0 and float(ramps[1, 1, 0]) == -1.0


def _bins(rng: np.random.Generator) -> BinEncoding:
    encoding = BinEncoding(3, bins=8)
    encoding.fit(rng.normal(size=(3000, 3)))
    return encoding


def _periodic(rng: np.random.Generator) -> PeriodicEncoding:
    torch.manual_seed(int(rng.integers(2**31)))
    return PeriodicEncoding(3, frequencies=8, width=6, scale=1.0)


@pytest.mark.parametrize(("make", "atol"), [(_bins, 1e-5), (_periodic, 1e-4)], ids=["bins", "periodic"])
def test_input_encoding_gradient_matches_autograd(
    make: Callable[[np.random.Generator], BinEncoding | PeriodicEncoding], atol: float
) -> None:
    rng = np.random.default_rng(4)
    encoding = make(rng)
    z = torch.from_numpy(rng.normal(size=(300, 3)).astype(np.float32)).requires_grad_(True)
    weights = torch.from_numpy(rng.normal(size=(encoding.width,)).astype(np.float32))
    (expected,) = torch.autograd.grad((encoding(z) * weights).sum(), z)
    found = encoding.backward_gradient(z.detach(), weights.expand(300, -1))
    torch.testing.assert_close(found, expected, rtol=1e-4, atol=atol)


def _assert_input_gradient_is_autograds(detector: MultitaskDetector, atol: float) -> None:
    """The classifier's written-out input gradient equals autograd's, on rows beyond the training
    range too."""
    classifier = detector.probability_module()
    x = (torch.from_numpy(_toy(200, seed=5).features) * 3.0).requires_grad_(True)
    (expected,) = torch.autograd.grad(classifier(x)[:, 1:].sum(), x)
    _, gradient = classifier.score_gradient(x.detach())
    torch.testing.assert_close(gradient, expected, rtol=1e-4, atol=atol)


def test_bin_encoded_network_gradient_and_saving() -> None:
    """With the bin encoding: the input gradient is autograd's, the state round-trips, and a state
    saved without it loads as the standardised features alone."""
    binned_config = MultitaskConfig(**{**QUICK.to_dict(), "input_bins": 8})
    binned = MultitaskDetector(binned_config).fit(_toy(600, seed=9))
    assert any(".bins." in key for key in binned.state())
    _assert_input_gradient_is_autograds(binned, atol=1e-6)
    test = _toy(200, seed=10)
    again = MultitaskDetector(binned_config).load_state(binned.state(), NAMES)
    np.testing.assert_array_equal(again.predict_proba(test), binned.predict_proba(test))

    # several networks share one set of bins
    pair = MultitaskDetector(MultitaskConfig(**{**binned_config.to_dict(), "seeds": 2})).fit(
        _toy(600, seed=9)
    )
    state = pair.state()
    for name in ("start", "inverse"):
        np.testing.assert_array_equal(state[f"members.0.bins.{name}"], state[f"members.1.bins.{name}"])
    assert float(np.abs(state["members.0.bins.inverse"]).sum()) > 0

    plain = MultitaskDetector(QUICK).fit(_toy(600, seed=9))
    assert not any(".bins." in key for key in plain.state())
    restored = MultitaskDetector(binned_config).load_state(plain.state(), NAMES)
    assert restored.config.input_bins == 0
    np.testing.assert_array_equal(restored.predict_proba(test), plain.predict_proba(test))


# -- the periodic encoding of the inputs --------------------------------------------------------------


def test_periodic_encoding_keeps_the_features_and_adds_rectified_waves() -> None:
    torch.manual_seed(0)
    encoding = PeriodicEncoding(3, frequencies=4, width=5, scale=1.0)
    assert encoding.width == 3 * 6
    z = torch.tensor([[0.0, 1.0, -2.0], [0.5, 0.5, 0.5]])
    out = encoding(z)
    torch.testing.assert_close(out[:, :3], z)
    waves = out[:, 3:].reshape(2, 3, 5)
    assert bool((waves >= 0).all())
    # feature 0 at 0: every sine is 0 and every cosine 1, so its units are relu(sum of cosine weights + bias)
    expected = torch.relu(encoding.weight[0, 4:].sum(dim=0) + encoding.bias[0])
    torch.testing.assert_close(waves[0, 0], expected)
    # a fresh draw under the same seed is the same encoding
    torch.manual_seed(0)
    again = PeriodicEncoding(3, frequencies=4, width=5, scale=1.0)
    torch.testing.assert_close(again(z), out)


def test_periodic_network_gradient_saving_and_older_states() -> None:
    """With the periodic encoding: the input gradient is autograd's, the state round-trips, each of
    several networks draws its own frequencies, and a state saved without it loads as the
    standardised features alone; ``input_bins`` replaces it."""
    config = MultitaskConfig(**{**QUICK.to_dict(), "input_bins": 0, "input_periodic": 4, "seeds": 2})
    fitted = MultitaskDetector(config).fit(_toy(600, seed=9))
    state = fitted.state()
    assert "members.0.periodic.frequencies" in state
    assert not np.array_equal(
        state["members.0.periodic.frequencies"], state["members.1.periodic.frequencies"]
    )
    _assert_input_gradient_is_autograds(fitted, atol=1e-5)
    test = _toy(200, seed=10)
    again = MultitaskDetector(config).load_state(state, NAMES)
    np.testing.assert_array_equal(again.predict_proba(test), fitted.predict_proba(test))

    plain_config = MultitaskConfig(**{**QUICK.to_dict(), "input_bins": 0, "input_periodic": 0})
    plain = MultitaskDetector(plain_config).fit(_toy(600, seed=9))
    assert not any(".periodic." in key for key in plain.state())
    one = MultitaskConfig(**{**config.to_dict(), "seeds": 1})
    restored = MultitaskDetector(one).load_state(plain.state(), NAMES)
    assert restored.config.input_periodic == 0
    np.testing.assert_array_equal(restored.predict_proba(test), plain.predict_proba(test))

    binned = MultitaskDetector(MultitaskConfig(**{**one.to_dict(), "input_bins": 4}))
    assert not any(".periodic." in key for key in binned.fit(_toy(600, seed=9)).state())


def test_periodic_network_exports_to_onnx(tmp_path: Path) -> None:
    """ONNX Runtime gives torch's scores and contributions for a periodic-encoded network."""
    config = MultitaskConfig(**{**QUICK.to_dict(), "input_bins": 0, "input_periodic": 4})
    fitted = MultitaskDetector(config).fit(_toy(600, seed=9))
    path = export_onnx(fitted, tmp_path / "periodic.onnx")
    test = _toy(150, seed=11)
    scorer = OnnxScorer(path, batch_size=64, threads=1)
    np.testing.assert_allclose(scorer.score(test), fitted.score(test), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(scorer.contributions(test), fitted.contributions(test), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("field", "value"),
    [("input_periodic", -1), ("input_periodic", 65), ("periodic_width", 0), ("periodic_scale", 0.0)],
)
def test_periodic_settings_are_checked(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        MultitaskConfig(**{field: value})


# -- fitting on a toy problem ------------------------------------------------------------------------

NAMES = tuple(f"f{j}" for j in range(6))
#: class names with spaces, punctuation and non-ASCII letters, to survive saving
ODD_CLASSES = ("Probe — sweep", "DoS/flood 2", "Zoë")


def _toy(rows: int, seed: int, shift: float = 0.0) -> DetectorData:
    """Normal rows around 0; three attack classes, each raising one feature by 6 standard deviations."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, len(NAMES))).astype(np.float32) + shift
    labels = np.full(rows, "normal", dtype=object)
    for index, name in enumerate(ODD_CLASSES):
        chosen = rng.random(rows) < 0.05
        chosen &= labels == "normal"
        labels[chosen] = name
        features[chosen, index] += 6.0
    return DetectorData(features, NAMES, labels=labels.astype(str))


@pytest.fixture(scope="module")
def toy_detector() -> MultitaskDetector:
    return MultitaskDetector(QUICK).fit(_toy(3000, seed=1))


def test_fit_needs_normal_and_another_class() -> None:
    data = _toy(400, seed=2)
    only_attacks = data.take(data.labels != "normal")
    with pytest.raises(ConfigError, match="'normal'"):
        MultitaskDetector(QUICK).fit(only_attacks)
    with pytest.raises(ConfigError, match="besides"):
        MultitaskDetector(QUICK).fit(data.take(data.labels == "normal"))


def test_score_is_one_minus_the_normal_probability(toy_detector: MultitaskDetector) -> None:
    test = _toy(1000, seed=3)
    probabilities = toy_detector.predict_proba(test)
    assert toy_detector.classes_ == ("normal", *sorted(ODD_CLASSES))
    np.testing.assert_allclose(toy_detector.score(test), 1.0 - probabilities[:, 0], atol=1e-6)
    predicted = toy_detector.predict(test)
    np.testing.assert_array_equal(predicted, np.asarray(toy_detector.classes_)[probabilities.argmax(axis=1)])
    assert macro_f_beta(test.labels, predicted, beta=1.0) > 0.8


def test_class_names_survive_saving(toy_detector: MultitaskDetector, tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in toy_detector.state().items()}, str(path))
    config = MultitaskConfig.from_dict(json.loads(json.dumps(toy_detector.config.to_dict())))
    restored = MultitaskDetector(config).load_state(load_file(str(path)), NAMES)
    assert restored.classes_ == toy_detector.classes_
    test = _toy(300, seed=4)
    np.testing.assert_array_equal(restored.predict_proba(test), toy_detector.predict_proba(test))
    broken = toy_detector.state()
    del broken["classes"]
    with pytest.raises(ConfigError, match="class names"):
        MultitaskDetector(config).load_state(broken, NAMES)


def test_input_gradient_matches_autograd(toy_detector: MultitaskDetector) -> None:
    classifier = toy_detector.probability_module()
    x = torch.from_numpy(_toy(200, seed=5).features) * 3.0  # some rows beyond the standardisation clip
    x.requires_grad_(True)
    attack = classifier(x)[:, 1:].sum()
    (expected,) = torch.autograd.grad(attack, x)
    score, gradient = classifier.score_gradient(x.detach())
    torch.testing.assert_close(gradient, expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(score, 1.0 - classifier(x.detach())[:, 0], rtol=1e-5, atol=1e-6)


def test_contributions_are_integrated_gradients(toy_detector: MultitaskDetector) -> None:
    """Against integrated gradients computed here with autograd (256 midpoints): the contributions
    differ from them by the same amount on every feature of a row (the spread remainder), which is
    about the reference row's score; the raised feature leads a clear attack row."""
    test = _toy(300, seed=6)
    steps = 256
    fine = MultitaskDetector(MultitaskConfig(**{**QUICK.to_dict(), "attribution_steps": steps}))
    fine.load_state(toy_detector.state(), NAMES)
    contributions = fine.contributions(test)
    scores = fine.score(test)
    np.testing.assert_allclose(contributions.sum(axis=1), scores, rtol=1e-9, atol=1e-12)

    classifier = toy_detector.probability_module()
    reference = classifier.reference
    x = torch.from_numpy(test.features)
    delta = x - reference
    midpoints = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps
    path = (reference + midpoints.view(1, steps, 1) * delta.unsqueeze(1)).reshape(-1, len(NAMES))
    path.requires_grad_(True)
    (gradient,) = torch.autograd.grad(classifier(path)[:, 1:].sum(), path)
    integrated = (gradient.view(-1, steps, len(NAMES)).mean(dim=1) * delta).double().numpy()
    difference = contributions - integrated
    np.testing.assert_allclose(difference, difference[:, :1].repeat(len(NAMES), axis=1), atol=1e-5)
    with torch.no_grad():
        reference_score = float(1.0 - classifier(reference[None])[0, 0])
    # the midpoint sum is exact up to its quadrature error, small but larger on steep paths
    remainder_error = np.abs(difference.sum(axis=1) - reference_score)
    assert np.median(remainder_error) < 1e-3
    assert remainder_error.max() < 0.05

    short = toy_detector.contributions(test)  # 16 midpoints: a cruder sum, the same sums
    np.testing.assert_allclose(short.sum(axis=1), scores, rtol=1e-9, atol=1e-12)
    clear = np.flatnonzero((test.labels != "normal") & (scores > 0.9))
    assert len(clear) >= 10
    for row in clear:
        assert int(np.argmax(short[row])) == ODD_CLASSES.index(test.labels[row])


def test_several_seeds_are_averaged() -> None:
    data = _toy(1500, seed=7)
    config = MultitaskConfig(**{**QUICK.to_dict(), "seeds": 2, "epochs": 3, "patience": 10})
    reports: list[EpochReport] = []
    detector = MultitaskDetector(config).fit(data, progress=reports.append)
    assert len(detector.histories_) == 2
    # the progress reports say which network each epoch belongs to
    assert all(isinstance(r, SeedEpochReport) and r.seeds == 2 for r in reports)
    assert [(r.seed_index, r.epoch, r.epochs) for r in reports] == [
        (s, e, 3) for s in (1, 2) for e in (1, 2, 3)
    ]
    members = detector.module_.members
    assert not torch.equal(members[0].to_latent.weight, members[1].to_latent.weight)
    x = torch.from_numpy(data.features[:100])
    with torch.no_grad():
        z = detector.module_.standardize(x)
        each = [torch.softmax(member(z)[1], dim=1) for member in members]
    np.testing.assert_allclose(
        detector.predict_proba(data.take(slice(0, 100))),
        ((each[0] + each[1]) / 2).double().numpy(),
        atol=1e-6,
    )


def test_score_and_predict_come_from_one_pass(toy_detector: MultitaskDetector) -> None:
    test = _toy(500, seed=10)
    scores, predicted = toy_detector.score_and_predict(test)
    np.testing.assert_array_equal(scores, toy_detector.score(test))
    np.testing.assert_array_equal(predicted, toy_detector.predict(test))
    assert toy_detector.costly_contributions and toy_detector.adapts_to_target
    steps = toy_detector.config.attribution_steps
    assert toy_detector.contribution_batch_rows() == toy_detector.config.score_batch_size // steps


def test_selu_derivative_from_the_activation() -> None:
    x = torch.linspace(-8.0, 8.0, 401, dtype=torch.float64)
    expected = torch.where(x > 0, SELU_SCALE, SELU_SCALE * SELU_ALPHA * torch.exp(x))
    torch.testing.assert_close(selu_derivative(x, torch.selu(x)), expected)


def test_early_stopping_keeps_the_best_validation_epoch(toy_detector: MultitaskDetector) -> None:
    history = toy_detector.history_
    assert len(history.selection) == history.epochs_run
    best = int(np.argmax(history.selection)) + 1
    assert history.selection[history.best_epoch - 1] >= max(history.selection) - 1e-4
    assert (
        history.best_epoch <= best
        or history.selection[best - 1] - history.selection[history.best_epoch - 1] < 1e-4
    )


def test_cmd_pulls_the_target_latent_towards_the_source() -> None:
    """Trained with a shifted target, the latent discrepancy between source and target is smaller
    with the CMD term than without it."""
    source, target = _toy(1500, seed=8), _toy(1500, seed=9, shift=0.8)
    unlabelled = DetectorData(target.features, NAMES)
    discrepancy = []
    for weight in (0.0, 5.0):
        options = {"cmd_weight": weight, "validation_fraction": 0.0, "epochs": 5, "steps_per_epoch": 20}
        config = MultitaskConfig(**{**QUICK.to_dict(), **options})
        detector = MultitaskDetector(config).fit(source, target=unlabelled)
        classifier = detector.module_
        with torch.no_grad():
            latent = [
                classifier.members[0].encode(classifier.standardize(torch.from_numpy(d.features)))
                for d in (source, target)
            ]
        discrepancy.append(float(central_moment_discrepancy(*latent)))
    assert discrepancy[1] < 0.7 * discrepancy[0]


# -- simulated traffic ---------------------------------------------------------------------------


def test_learns_the_simulator_classes_on_a_later_day() -> None:
    """Train on two simulated days (group split for validation), test on the third: another address
    plan and class mix, with the features `nadkit train --model multitask` gives it. Predicting
    every flow normal scores about 0.2 (macro F1) and 0.24 (NAD)."""
    flows = simulate(SimulationConfig(days=3, flows_per_day=6000, seed=5))
    days = sorted(flows["day"].unique().to_list())
    split = supervised_split(flows.filter(pl.col("day") < days[-1]), validation_fraction=0.25, seed=0)
    features = default_features(MultitaskDetector)
    assert "exchanges" not in features.groups and "segments" in features.groups
    pipeline = FeaturePipeline(features).fit(split.train)
    train, validation = detector_data(pipeline, split.train), detector_data(pipeline, split.validation)
    test = detector_data(pipeline, flows.filter(pl.col("day") == days[-1]))
    detector = MultitaskDetector(QUICK).fit(train, validation=validation)
    predicted = detector.predict(test)
    assert set(detector.classes_) == set(np.unique(test.labels).tolist())
    assert macro_f_beta(test.labels, predicted, beta=1.0) > 0.6
    assert nad_score(test.labels, predicted) > 0.55
