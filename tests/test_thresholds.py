from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from nadkit.errors import ConfigError
from nadkit.evaluation.labels import NAD_CLASSES, NAD_COST, attack_mask
from nadkit.evaluation.thresholds import (
    GeneralisedPareto,
    Spot,
    Threshold,
    apply,
    cost_optimal_decision,
    expected_costs,
    f_beta_optimal_threshold,
    fit_generalised_pareto,
    fit_threshold,
    quantile_threshold,
    threshold_settings,
)
from nadkit.training.fit import holdout_threshold

# ---------------------------------------------------------------------------------------------
# quantile and F-beta


def test_quantile_threshold_gives_the_target_false_positive_rate() -> None:
    normal = np.random.default_rng(0).normal(size=100_000)
    threshold = quantile_threshold(normal, 0.01)
    assert threshold == pytest.approx(2.326, abs=0.03)  # the 99th percentile of N(0, 1)
    assert (normal >= threshold).mean() == pytest.approx(0.01, abs=0.001)


def test_quantile_on_a_uniform_grid_is_exact() -> None:
    scores = np.arange(1000) / 1000  # 0.000, 0.001, ..., 0.999
    threshold = fit_threshold("quantile", scores, false_positive_rate=0.01)
    assert threshold.value == pytest.approx(0.990)
    assert int(threshold.apply(scores).sum()) == 10  # exactly 1 % of the rows alert
    assert threshold.rows == 1000 and threshold.attacks is None
    assert threshold.params == {"false_positive_rate": 0.01}


def test_quantile_fits_on_the_normal_rows_only_when_labels_are_given() -> None:
    normal = np.arange(1000) / 1000
    scores = np.r_[normal, np.full(500, 5.0)]
    labels = np.array(["normal"] * 1000 + ["DDOS-smurf"] * 500)
    threshold = fit_threshold("quantile", scores, labels, false_positive_rate=0.05)
    assert threshold.value == pytest.approx(0.950)
    assert threshold.rows == 1000


def test_a_quantile_of_few_rows_is_read_off_an_exponential_tail_of_the_largest_ten() -> None:
    scores = np.random.default_rng(5).lognormal(size=100)
    threshold = fit_threshold("quantile", scores, false_positive_rate=0.01)
    top = np.sort(scores)[-11:]  # one row in 100 is too few: the ten largest and the one below them
    expected = top[0] + (top[1:] - top[0]).mean() * math.log(10 / (100 * 0.01))
    assert threshold.value == pytest.approx(expected)
    assert threshold.params["peaks"] == 10 and threshold.params["initial_threshold"] == top[0]
    assert threshold.params["scale"] == pytest.approx((top[1:] - top[0]).mean())
    assert Threshold.from_dict(json.loads(json.dumps(threshold.to_dict()))) == threshold
    # from 1,000 rows on (ten above the 1% quantile) the empirical quantile, with no tail kept
    many = np.random.default_rng(5).lognormal(size=1000)
    assert fit_threshold("quantile", many).value == quantile_threshold(many, 0.01)
    assert fit_threshold("quantile", many).params == {"false_positive_rate": 0.01}
    # ten rows or fewer, or no spread among the largest: the empirical quantile
    assert fit_threshold("quantile", scores[:10]).value == scores[:10].max()
    assert fit_threshold("quantile", np.r_[np.zeros(80), np.ones(20)]).value == 1.0
    # a quantile far past the top of a few dozen rows stays within the top plus its excess
    steps = np.r_[np.zeros(30), np.ones(10)]
    assert fit_threshold("quantile", steps, false_positive_rate=0.01).value == pytest.approx(2.0)


def test_the_tail_quantile_of_few_rows_varies_less_than_their_empirical_quantile() -> None:
    """On 2,000 samples of 200 exponential scores (the 1% quantile is ln 100): how many new normal
    rows exceed the threshold. The empirical quantile rests on two scores and its rate spreads over
    more than a factor of ten; the tail's rate stays near 1% far more often."""
    rng = np.random.default_rng(11)
    empirical, tail = [], []
    for _ in range(2000):
        sample = rng.exponential(size=200)
        empirical.append(math.exp(-quantile_threshold(sample, 0.01)))
        tail.append(math.exp(-fit_threshold("quantile", sample, false_positive_rate=0.01).value))
    empirical_rate, tail_rate = np.array(empirical), np.array(tail)
    assert np.std(np.log(tail_rate)) < 0.8 * np.std(np.log(empirical_rate))
    assert np.mean(tail_rate < 0.004) < 0.5 * np.mean(empirical_rate < 0.004)
    assert np.median(tail_rate) == pytest.approx(0.01, rel=0.25)


def test_f1_optimal_threshold_on_a_known_ranking() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    attack = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
    # cut after 0.6: precision 3/4, recall 1 -> F1 0.857; after 0.8: P 1, R 2/3 -> 0.8
    assert f_beta_optimal_threshold(scores, attack) == 0.6
    # recall-heavy beta keeps the lower cut, precision-heavy beta prefers the higher one
    assert f_beta_optimal_threshold(scores, attack, beta=2.0) == 0.6
    assert f_beta_optimal_threshold(scores, attack, beta=0.3) == 0.8
    fitted = fit_threshold("f_beta", scores, attack, beta=0.3)
    assert fitted.value == 0.8 and fitted.rows == 6 and fitted.attacks == 3


def test_f_beta_on_separable_scores_cuts_at_the_lowest_attack() -> None:
    rng = np.random.default_rng(1)
    normal, attack = rng.uniform(0, 0.4, size=300), rng.uniform(0.6, 1.0, size=40)
    scores = np.r_[normal, attack]
    labels = np.array(["normal"] * 300 + ["Probing-Nmap"] * 40)
    for beta in (0.5, 1.0, 2.0):
        threshold = fit_threshold("f_beta", scores, labels, beta=beta)
        assert threshold.value == attack.min()
        alerts = threshold.apply(scores)
        assert alerts[300:].all() and not alerts[:300].any()


def test_f1_threshold_never_splits_tied_scores() -> None:
    scores = np.array([1.0, 1.0, 1.0, 0.0])
    attack = np.array([True, False, False, False])
    assert f_beta_optimal_threshold(scores, attack) == 1.0


def test_f_beta_with_ties_across_the_classes() -> None:
    # two attacks and one normal row share 0.5: cutting at 0.5 gives P 3/4, R 3/4 (F1 0.75); at 0.9
    # P 1, R 1/4 (F1 0.4); at 0.1 P 4/7, R 1 (F1 0.727)
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1, 0.1, 0.1])
    attack = np.array([1, 1, 1, 0, 1, 0, 0], dtype=bool)
    assert fit_threshold("f_beta", scores, attack).value == 0.5
    # recall-heavy: F4 at 0.1 is 17·(4/7)/(16·4/7 + 1) = 0.958 > 0.75 at 0.5
    assert fit_threshold("f_beta", scores, attack, beta=4.0).value == 0.1


def test_threshold_errors() -> None:
    with pytest.raises(ConfigError):
        f_beta_optimal_threshold(np.array([1.0, 2.0]), np.array([False, False]))
    with pytest.raises(ConfigError):
        quantile_threshold(np.array([1.0, np.nan]))
    with pytest.raises(ConfigError):
        quantile_threshold(np.array([1.0]), 1.5)


# ---------------------------------------------------------------------------------------------
# peaks over threshold


@pytest.mark.parametrize("shape", [0.4, 0.1, 0.0, -0.2, -0.45])
def test_generalised_pareto_fit_is_the_maximum_likelihood(shape: float) -> None:
    """Grimshaw's fit reaches at least the likelihood of scipy's numerical MLE, and recovers the
    shape of a large sample."""
    rng = np.random.default_rng(7)
    excesses = stats.genpareto.rvs(shape, scale=2.0, size=4000, random_state=rng)
    fitted = fit_generalised_pareto(excesses)
    reference_shape, _, reference_scale = stats.genpareto.fit(excesses, floc=0)
    reference = stats.genpareto.logpdf(excesses, reference_shape, 0, reference_scale).sum()
    assert fitted.log_likelihood(excesses) >= reference - 1e-6
    assert fitted.shape == pytest.approx(shape, abs=0.05)
    assert fitted.scale == pytest.approx(2.0, rel=0.08)


def test_generalised_pareto_quantile_and_exponential_limit() -> None:
    # survival (1 + 0.5 y)^-2 = 0.01 at y = 18; exponential: y = -ln(0.01)
    assert GeneralisedPareto(0.5, 1.0).excess_quantile(0.01) == pytest.approx(18.0)
    assert GeneralisedPareto(0.0, 2.0).excess_quantile(0.01) == pytest.approx(-2 * math.log(0.01))
    assert GeneralisedPareto(1e-14, 2.0).excess_quantile(0.01) == pytest.approx(-2 * math.log(0.01))
    # bounded tail: (1 - 0.5 y)^2 = 0.01 at y = 1.8, below the end point 2
    assert GeneralisedPareto(-0.5, 1.0).excess_quantile(0.01) == pytest.approx(1.8)


def test_pot_on_exponential_scores_finds_the_analytic_quantile() -> None:
    scores = np.random.default_rng(11).exponential(size=200_000)
    threshold = fit_threshold("pot", scores, risk=1e-4, initial_quantile=0.98)
    assert threshold.value == pytest.approx(-math.log(1e-4), rel=0.03)  # 9.21
    assert threshold.params["shape"] == pytest.approx(0.0, abs=0.05)
    assert threshold.params["peaks"] == pytest.approx(4000, abs=1)
    assert threshold.rows == 200_000


def test_pot_on_pareto_scores_finds_the_analytic_quantile() -> None:
    # classic Pareto, x_m = 1, alpha = 3: P(X > x) = x^-3, so the 1 - 1e-4 quantile is 1e4^(1/3)
    scores = np.random.default_rng(12).pareto(3.0, size=1_000_000) + 1
    threshold = fit_threshold("pot", scores, risk=1e-4)
    assert threshold.value == pytest.approx(1e4 ** (1 / 3), rel=0.04)  # 21.54
    assert threshold.params["shape"] == pytest.approx(1 / 3, abs=0.05)


def test_pot_on_a_bounded_tail_finds_the_analytic_quantile() -> None:
    # X = 1 - U^(1/3): P(X > x) = (1 - x)^3 exactly, a generalised Pareto tail of shape -1/3
    scores = 1 - np.random.default_rng(13).uniform(size=200_000) ** (1 / 3)
    threshold = fit_threshold("pot", scores, risk=1e-4)
    assert threshold.value == pytest.approx(1 - 1e-4 ** (1 / 3), rel=0.01)  # 0.9536
    assert threshold.params["shape"] == pytest.approx(-1 / 3, abs=0.05)


def test_pot_reaches_beyond_the_validation_rows_where_the_quantile_cannot() -> None:
    scores = np.random.default_rng(14).exponential(size=5000)
    pot = fit_threshold("pot", scores, risk=1e-5)
    assert pot.value > scores.max()  # 1e-5 is 1/20 of a row here; the tail model extrapolates
    assert pot.value == pytest.approx(-math.log(1e-5), rel=0.15)


def test_pot_ignores_attack_rows_when_labels_are_given() -> None:
    rng = np.random.default_rng(15)
    normal = rng.exponential(size=50_000)
    scores = np.r_[normal, rng.uniform(50, 100, size=2000)]
    labels = np.r_[np.zeros(50_000, dtype=bool), np.ones(2000, dtype=bool)]
    with_labels = fit_threshold("pot", scores, labels)
    assert with_labels == fit_threshold("pot", normal)


# ---------------------------------------------------------------------------------------------
# streaming SPOT


def test_spot_calibration_equals_pot() -> None:
    scores = np.random.default_rng(20).exponential(size=20_000)
    spot = Spot(risk=1e-4, initial_quantile=0.98).fit(scores)
    pot = fit_threshold("pot", scores)
    assert spot.value_ == pytest.approx(pot.value, rel=1e-12)
    assert fit_threshold("spot", scores).value == pytest.approx(pot.value, rel=1e-12)
    assert spot.threshold_.method == "spot"


def test_spot_raises_alarms_on_planted_spikes_and_does_not_learn_from_them() -> None:
    rng = np.random.default_rng(21)
    stream = rng.exponential(size=20_000)
    spikes = np.arange(1000, 20_000, 2000)
    stream[spikes] = 30.0  # P(exp > 30) ~ 1e-13
    spot = Spot(risk=1e-4, initial_quantile=0.98).fit(rng.exponential(size=10_000))
    alarms = spot.update(stream)
    assert alarms[spikes].all()
    assert int(alarms.sum()) - len(spikes) <= 8  # about 20,000 · 1e-4 = 2 false alarms expected
    assert spot.initial_threshold_ + max(spot.peaks_) < 30.0
    assert len(spot.last_thresholds_) == len(stream)
    assert (stream[alarms] > spot.last_thresholds_[alarms]).all()
    assert (stream[~alarms] <= spot.last_thresholds_[~alarms]).all()
    assert spot.rows_ == 10_000 + len(stream) - int(alarms.sum())


def test_spot_threshold_stays_close_to_pot_on_stationary_scores() -> None:
    """On a stationary stream the streamed threshold stays near the batch POT one of all the data;
    it sits somewhat lower, as SPOT never learns from the scores it alarmed on."""
    scores = np.random.default_rng(22).exponential(size=40_000)
    spot = Spot(risk=1e-3).fit(scores[:10_000])
    spot.update(scores[10_000:])
    pot = fit_threshold("pot", scores, risk=1e-3).value
    assert spot.value_ == pytest.approx(pot, rel=0.15)
    assert spot.value_ == pytest.approx(-math.log(1e-3), rel=0.15)  # 6.91


def test_truncated_spot_holds_a_high_risk_where_plain_spot_sinks() -> None:
    """At a risk of a few percent, a good share of the normal scores lies over the line, and plain SPOT,
    which never learns from them, sees a lighter tail at each step and sinks to its initial threshold.
    Counting the peaks over the line as unseen (``truncated``) keeps it near the true quantile."""
    rng = np.random.default_rng(25)
    true = float(np.exp(2.054))  # the 98 % quantile of a standard log-normal
    results = {}
    for truncated in (False, True):
        spot = Spot(risk=0.02, initial_quantile=0.9, truncated=truncated, refit_every=10)
        spot.fit(rng.lognormal(size=5000))
        alarms = [spot.update(rng.lognormal(size=1000)).mean() for _ in range(20)]
        results[truncated] = (spot.value_, float(np.mean(alarms[10:])))
    plain, truncated = results[False], results[True]
    assert plain[0] < 0.8 * true and plain[1] > 0.035  # sunk: nearly twice the risk alarmed
    assert truncated[0] == pytest.approx(true, rel=0.25)
    assert 0.01 < truncated[1] < 0.03


def test_truncated_spot_round_trips_its_limits() -> None:
    rng = np.random.default_rng(26)
    spot = Spot(risk=0.02, initial_quantile=0.9, truncated=True).fit(rng.lognormal(size=3000))
    spot.update(rng.lognormal(size=2000), ceiling=float(np.exp(2.0)))
    assert any(math.isfinite(c) for c in spot.limits_) and any(math.isinf(c) for c in spot.limits_)
    assert max(c for c in spot.limits_ if math.isfinite(c)) <= np.exp(2.0) - spot.initial_threshold_ + 1e-9
    resumed = Spot.from_dict(json.loads(json.dumps(spot.to_dict())))
    assert resumed.truncated and resumed.limits_ == spot.limits_ and resumed.value_ == spot.value_
    later = rng.lognormal(size=1000)
    assert np.array_equal(resumed.update(later), spot.update(later))
    state = spot.to_dict()
    state["limits"] = state["limits"][:-1]
    with pytest.raises(ConfigError, match="'limits'"):
        Spot.from_dict(state)


def test_spot_refitting_every_few_peaks_gives_a_similar_threshold() -> None:
    scores = np.random.default_rng(23).exponential(size=30_000)
    every = Spot(risk=1e-3).fit(scores[:10_000])
    every.update(scores[10_000:])
    sparse = Spot(risk=1e-3, refit_every=20).fit(scores[:10_000])
    sparse.update(scores[10_000:])
    assert sparse.value_ == pytest.approx(every.value_, rel=0.03)


def test_drift_aware_spot_follows_a_rising_level() -> None:
    rng = np.random.default_rng(5)
    n = 30_000
    scores = np.linspace(0, 20, n) + rng.normal(size=n)
    spikes = np.arange(12_000, n, 1500)
    scores[spikes] += 8
    drift = Spot(risk=1e-4, depth=50).fit(scores[:10_000])
    alarms = drift.update(scores[10_000:])
    assert alarms[spikes - 10_000].all()
    assert int(alarms.sum()) - len(spikes) <= 12
    plain = Spot(risk=1e-4, refit_every=100).fit(scores[:10_000])
    assert int(plain.update(scores[10_000:]).sum()) > 5000  # the level alone crosses its threshold
    with pytest.raises(ConfigError):
        _ = drift.threshold_


@pytest.mark.parametrize("depth", [None, 20])
def test_spot_state_round_trips_through_json_and_resumes_identically(depth: int | None) -> None:
    rng = np.random.default_rng(24)
    scores = rng.exponential(size=12_000) + np.linspace(0, 1, 12_000)
    original = Spot(risk=1e-3, depth=depth).fit(scores[:6000])
    original.update(scores[6000:9000])
    resumed = Spot.from_dict(json.loads(json.dumps(original.to_dict())))
    assert resumed.value_ == original.value_
    assert np.array_equal(resumed.update(scores[9000:]), original.update(scores[9000:]))
    assert resumed.value_ == original.value_


def test_spot_errors() -> None:
    with pytest.raises(ConfigError, match="risk"):
        Spot(risk=0.05, initial_quantile=0.98)  # not below the 2 % above the initial threshold
    with pytest.raises(ConfigError, match="depth"):
        Spot(depth=0)
    with pytest.raises(ConfigError, match="fitted"):
        Spot().update(np.ones(3))
    with pytest.raises(ConfigError, match="peaks over threshold needs"):
        Spot().fit(np.arange(100.0))  # 2 peaks above the 98 % quantile
    with pytest.raises(ConfigError, match="'rows'"):
        state = Spot(risk=1e-3).fit(np.random.default_rng(0).exponential(size=2000)).to_dict()
        Spot.from_dict({**state, "rows": -1})


# ---------------------------------------------------------------------------------------------
# saving, loading and applying


def _fitted_thresholds() -> list[Threshold]:
    rng = np.random.default_rng(30)
    scores = rng.exponential(size=20_000)
    labels = rng.uniform(size=20_000) < 0.05
    scores[labels] += 3
    return [
        fit_threshold("quantile", scores, false_positive_rate=0.02),
        fit_threshold("f_beta", scores, labels, beta=2.0),
        fit_threshold("pot", scores, risk=1e-4, initial_quantile=0.97),
        fit_threshold("spot", scores, labels),
    ]


@pytest.mark.parametrize("index", range(4))
def test_each_threshold_kind_round_trips_through_json(index: int) -> None:
    threshold = _fitted_thresholds()[index]
    text = json.dumps(threshold.to_dict(), allow_nan=False)
    loaded = Threshold.from_dict(json.loads(text))
    assert loaded == threshold
    assert loaded.to_dict() == threshold.to_dict()
    assert loaded.to_dict()["method"] == ("quantile", "f_beta", "pot", "spot")[index]


def test_thresholds_saved_by_earlier_bundles_still_load() -> None:
    f_beta = {"method": "f_beta", "beta": 1.0, "value": 0.25, "rows": 120}
    quantile = {"method": "quantile", "false_positive_rate": 0.01, "value": 3.5, "rows": 80}
    for saved in (f_beta, quantile):
        loaded = Threshold.from_dict(saved)
        assert loaded.to_dict() == saved
        assert loaded.value == saved["value"]


def test_holdout_thresholds_of_training_load_as_thresholds() -> None:
    rng = np.random.default_rng(31)
    scores = rng.normal(size=500)
    labels = np.where(rng.uniform(size=500) < 0.1, "Probing-IP sweep", "normal")
    scores[labels != "normal"] += 2
    for given in (labels, None):
        chosen, _ = holdout_threshold(scores, given)
        saved = json.loads(json.dumps(chosen.to_dict()))
        assert Threshold.from_dict(saved) == chosen
    chosen, _ = holdout_threshold(scores, labels)
    assert chosen.value == fit_threshold("f_beta", scores, labels).value
    assert holdout_threshold(scores, None)[0] == fit_threshold("quantile", scores)


@pytest.mark.parametrize(
    ("saved", "field"),
    [
        ({"value": 1.0}, "method"),
        ({"method": "median", "value": 1.0}, "method"),
        ({"method": "quantile", "false_positive_rate": 0.01}, "value"),
        ({"method": "quantile", "false_positive_rate": 0.01, "value": "high"}, "value"),
        ({"method": "quantile", "false_positive_rate": 0.01, "value": float("nan")}, "value"),
        ({"method": "quantile", "value": 1.0}, "false_positive_rate"),
        ({"method": "quantile", "false_positive_rate": 2.0, "value": 1.0}, "false_positive_rate"),
        ({"method": "f_beta", "beta": -1, "value": 1.0}, "beta"),
        ({"method": "f_beta", "beta": 1.0, "value": 1.0, "rows": -3}, "rows"),
        ({"method": "f_beta", "beta": 1.0, "value": 1.0, "rows": 2.5}, "rows"),
        ({"method": "f_beta", "beta": 1.0, "value": 1.0, "colour": "red"}, "colour"),
        ({"method": "pot", "value": 1.0, "risk": 1e-4, "initial_quantile": 0.98}, "initial_threshold"),
        ({"method": "quantile", "false_positive_rate": 0.01, "value": 1.0, "peaks": 10}, "initial_threshold"),
        (
            {
                "method": "quantile",
                "false_positive_rate": 0.01,
                "value": 1.0,
                "peaks": 10,
                "initial_threshold": 0.5,
            },
            "scale",
        ),
    ],
)
def test_bad_saved_thresholds_name_the_field(saved: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=f"'{field}'"):
        Threshold.from_dict(saved)


def test_bad_fit_parameters_raise_config_errors() -> None:
    scores = np.random.default_rng(32).exponential(size=5000)
    with pytest.raises(ConfigError, match="false_positive_rate"):
        fit_threshold("quantile", scores, false_positive_rate=1.5)
    with pytest.raises(ConfigError, match="beta"):
        fit_threshold("f_beta", scores, scores > 3, beta=0)
    with pytest.raises(ConfigError, match="labels"):
        fit_threshold("f_beta", scores)
    with pytest.raises(ConfigError, match="risk"):
        fit_threshold("pot", scores, risk=0.5)
    with pytest.raises(ConfigError, match="initial_quantile"):
        fit_threshold("pot", scores, initial_quantile=1.0)
    with pytest.raises(ConfigError, match="alpha"):
        fit_threshold("pot", scores, alpha=0.1)
    with pytest.raises(ConfigError, match="method"):
        fit_threshold("median", scores)
    with pytest.raises(ConfigError, match="length"):
        fit_threshold("quantile", scores, np.zeros(3, dtype=bool))
    with pytest.raises(ConfigError, match="normal"):
        fit_threshold("quantile", scores, np.ones(len(scores), dtype=bool))
    with pytest.raises(ConfigError, match="finite"):
        fit_threshold("pot", np.r_[scores, np.inf])


def test_apply_alerts_at_or_above_the_value_whatever_form_the_threshold_takes() -> None:
    scores = np.array([0.1, 0.5, 0.5000001, 2.0, np.nan])
    expected = np.array([False, True, True, True, False])
    threshold = Threshold("quantile", 0.5, {"false_positive_rate": 0.1}, rows=10)
    for given in (threshold, threshold.to_dict(), 0.5):
        assert np.array_equal(apply(given, scores), expected)


def test_attack_mask_reads_booleans_numbers_and_class_names() -> None:
    assert attack_mask(np.array([True, False])).tolist() == [True, False]
    assert attack_mask(np.array([0, 1, 2])).tolist() == [False, True, True]
    assert attack_mask(np.array(["normal", "DDOS-smurf"])).tolist() == [False, True]
    assert attack_mask(np.array(["normal", None, "x"], dtype=object)).tolist() == [False, False, True]


# ---------------------------------------------------------------------------------------------
# cost-optimal decisions


def test_nad_cost_matrix_constant() -> None:
    assert NAD_CLASSES == ("normal", "DDOS-smurf", "Probing-IP sweep", "Probing-Nmap", "Probing-Port sweep")
    assert NAD_COST.shape == (5, 5) and np.all(np.diag(NAD_COST) == 0)
    assert NAD_COST[0, 1] == NAD_COST[1, 0] == 2 and NAD_COST[2, 0] == 1
    with pytest.raises(ValueError):
        NAD_COST[0, 0] = 5


def test_cost_optimal_decisions_on_hand_made_rows() -> None:
    probabilities = np.array(
        [
            [0.6, 0.0, 0.4, 0.0, 0.0],  # costs N 0.4, I 0.6          -> normal
            [0.4, 0.0, 0.6, 0.0, 0.0],  # costs N 0.6, I 0.4          -> IP sweep
            [0.45, 0.35, 0.2, 0.0, 0.0],  # N 0.9, D 1.3, I 0.8, Nm/P 1 -> IP sweep, not the likeliest
            [0.3, 0.7, 0.0, 0.0, 0.0],  # N 1.4, D 0.6               -> smurf
            [0.0, 0.0, 0.0, 0.0, 1.0],  # certain port sweep
        ]
    )
    costs = expected_costs(probabilities)
    assert costs[2].tolist() == pytest.approx([0.9, 1.3, 0.8, 1.0, 1.0])
    decided = cost_optimal_decision(probabilities)
    assert decided.tolist() == [
        "normal",
        "Probing-IP sweep",
        "Probing-IP sweep",
        "DDOS-smurf",
        "Probing-Port sweep",
    ]
    assert cost_optimal_decision(probabilities, classes=None).tolist() == [0, 2, 2, 1, 4]


def test_cost_optimal_decisions_with_a_user_cost_matrix() -> None:
    # missing an attack costs ten times a false alarm: alert from a 1/11 attack probability on
    cost = np.array([[0, 1], [10, 0]])
    probabilities = np.array([[0.95, 0.05], [0.85, 0.15], [0.5, 0.5]])
    assert cost_optimal_decision(probabilities, cost, ["benign", "attack"]).tolist() == [
        "benign",
        "attack",
        "attack",
    ]
    # a reject option: a third, constant-cost decision between the two
    reject = np.array([[0, 1, 0.7], [10, 0, 0.7]])
    assert cost_optimal_decision(probabilities, reject, ["benign", "attack", "review"]).tolist() == [
        "benign",
        "review",
        "attack",
    ]


def test_cost_optimal_decision_errors() -> None:
    with pytest.raises(ConfigError):
        cost_optimal_decision(np.ones((2, 3)))  # three probabilities for a five-class matrix
    with pytest.raises(ConfigError):
        cost_optimal_decision(np.array([[0.5, -0.1, 0.6, 0, 0]]))
    with pytest.raises(ConfigError):
        cost_optimal_decision(np.ones((1, 2)), np.zeros((2, 2)), ["only one"])


def test_threshold_settings_are_checked_without_scores() -> None:
    assert threshold_settings("quantile") == {"false_positive_rate": 0.01}
    assert threshold_settings("pot", risk=1e-3) == {"risk": 1e-3, "initial_quantile": 0.98}
    assert threshold_settings("f_beta", beta=2) == {"beta": 2.0}
    with pytest.raises(ConfigError, match="'beta': not a parameter of 'quantile'"):
        threshold_settings("quantile", beta=2.0)
    with pytest.raises(ConfigError, match="'risk': must be below 1 - initial_quantile"):
        threshold_settings("pot", risk=0.05)
    with pytest.raises(ConfigError, match="false_positive_rate"):
        threshold_settings("quantile", false_positive_rate=0.0)
    with pytest.raises(ConfigError, match="unknown method 'median'"):
        threshold_settings("median")


def test_auto_keeps_the_f_beta_optimum_within_the_false_positive_band() -> None:
    """Where attacks are most of the hold-out (as in labelled data sets), the F1 optimum flags a
    large part of the normal rows; auto flags at most ``max_false_positive_rate`` of them."""
    rng = np.random.default_rng(5)
    normal, attacks = rng.normal(size=1000), rng.normal(loc=1.5, size=3000)
    scores = np.r_[normal, attacks]
    labels = np.array(["normal"] * 1000 + ["Exploits"] * 3000)
    optimum = fit_threshold("f_beta", scores, labels)
    assert (normal >= optimum.value).mean() > 0.3, "the optimum itself floods"
    chosen, _ = holdout_threshold(scores, labels)
    assert (normal >= chosen.value).mean() == pytest.approx(0.05, abs=0.002)
    wider, _ = holdout_threshold(scores, labels, max_false_positive_rate=0.99)
    assert wider.value == optimum.value
    with pytest.raises(ConfigError, match="max_false_positive_rate"):
        holdout_threshold(scores, labels, max_false_positive_rate=0.001)  # below the 1% budget
    with pytest.raises(ConfigError, match="only the auto threshold"):
        holdout_threshold(scores, labels, method="f_beta", max_false_positive_rate=0.1)
