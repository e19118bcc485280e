"""Intervals, significance and verdicts on samples with a known answer."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.stats import (
    Interval,
    loglog_slope,
    median_interval,
    quadratic_fit,
    quadratic_share_interval,
    ratio_interval,
    verdict,
)


def passes(center: float, spread: float, seed: int, n_passes: int = 3, rounds: int = 30, drift: float = 0.0):
    """Log-normal rounds around `center`, each pass shifted by its own drift (run-to-run noise)."""
    rng = np.random.default_rng(seed)
    shifts = rng.normal(0, drift, n_passes)
    return [list(center * np.exp(s + rng.normal(0, spread, rounds))) for s in shifts]


def test_identical_samples_give_ratio_one_and_no_significance():
    a = passes(1.0, 0.02, seed=1)
    interval = ratio_interval(a, a)
    assert interval.estimate == pytest.approx(1.0) and interval.low <= 1 <= interval.high
    assert not interval.excludes_one and interval.p_value == pytest.approx(1.0)


def test_a_ten_percent_shift_is_found_and_its_interval_covers_it():
    base, new = passes(1.0, 0.02, seed=1), passes(1.1, 0.02, seed=2)
    interval = ratio_interval(new, base)
    assert interval.excludes_one and interval.low < 1.1 < interval.high and interval.p_value < 0.01
    assert interval.method == "passes-t"


def test_run_to_run_drift_widens_the_interval_and_hides_a_small_shift():
    quiet = ratio_interval(passes(1.02, 0.01, seed=3), passes(1.0, 0.01, seed=4))
    noisy = ratio_interval(passes(1.02, 0.01, seed=3, drift=0.05), passes(1.0, 0.01, seed=4, drift=0.05))
    assert quiet.excludes_one and not noisy.excludes_one  # a 2% change: seen without drift, hidden by 5% drift
    assert noisy.half_width > 5 * quiet.half_width


def test_one_pass_falls_back_to_a_bootstrap_over_rounds():
    base, new = passes(1.0, 0.02, seed=5, n_passes=1), passes(1.2, 0.02, seed=6, n_passes=1)
    interval = ratio_interval(new, base)
    assert interval.method == "rounds-bootstrap" and interval.excludes_one and interval.p_value < 1e-6
    single = median_interval(base)
    assert single.method == "rounds-bootstrap" and single.low <= single.estimate <= single.high


def test_median_interval_over_passes_covers_the_center():
    interval = median_interval(passes(2.0, 0.03, seed=7, n_passes=5))
    assert interval.low < 2.0 < interval.high and interval.method == "passes-t"


def test_unchanged_runs_are_called_different_at_most_at_the_nominal_rate():
    # Same distribution twice, 2000 times: at most 5% of the 95% intervals may exclude 1. The bound is the
    # binomial's own 99.9% upper limit at 5% (6.7%), not a tolerance chosen to pass: a rule with 8% false alarms
    # fails it. Welch's t on 3 passes a side is conservative (here about 3%); its power is tested above.
    trials = 2000
    same = [(passes(1.0, 0.03, 100 + i, drift=0.02), passes(1.0, 0.03, 5000 + i, drift=0.02)) for i in range(trials)]
    misses = sum(ratio_interval(a, b).excludes_one for a, b in same)
    assert misses <= stats.binom.ppf(0.999, trials, 0.05), misses


def test_verdicts():
    assert verdict(Interval(0.9, 0.85, 0.95, "passes-t"), 1.0) == "met"
    assert verdict(Interval(1.1, 1.05, 1.15, "passes-t"), 1.0) == "missed"
    assert verdict(Interval(0.99, 0.9, 1.1, "passes-t"), 1.0) == "inconclusive"
    assert verdict(Interval(0.6, 0.55, 0.7, "passes-t"), 0.65, lower_is_better=False) == "inconclusive"
    assert Interval(1.0, 0.9, 1.1, "x").half_width == pytest.approx(math.sqrt(1.1 / 0.9) - 1)


def test_loglog_slope_interval_is_t_based():
    n = np.array([128, 256, 512, 1024, 2048])
    exact = loglog_slope(n, 3e-9 * n**2)
    assert exact.value == pytest.approx(2.0) and exact.high - exact.low == pytest.approx(0.0, abs=1e-9)
    three = loglog_slope(n[:3], 3e-9 * n[:3] ** 2 * np.array([1.0, 1.1, 0.95]))
    five = loglog_slope(n, 3e-9 * n**2 * np.array([1.0, 1.1, 0.95, 1.05, 1.0]))
    assert (three.high - three.low) > 3 * (five.high - five.low)  # 1 degree of freedom: t = 12.7
    assert math.isnan(loglog_slope(n[:2], n[:2]).low)


def test_quadratic_fit_finds_the_n_squared_share():
    n = np.array([128, 256, 512, 1024, 2048], float)
    fit = quadratic_fit(n, 1.0 + 0.01 * n + 1e-5 * n**2)
    top = 2048.0
    assert fit.c == pytest.approx(1e-5, rel=1e-6)
    assert fit.quadratic_share == pytest.approx(1e-5 * top**2 / (1 + 0.01 * top + 1e-5 * top**2), rel=1e-6)
    linear = quadratic_fit(n, 2.0 + 0.01 * n)  # no n^2 term: none is fitted, and no term goes negative
    assert linear.quadratic_share == pytest.approx(0.0, abs=1e-9) and min(linear.a, linear.b, linear.c) >= 0
    assert quadratic_fit(n[:4], n[:4]) is None


def test_run_to_run_noise_widens_a_between_runs_interval():
    from analysis.stats import run_to_run_sd, with_run_noise

    narrow = Interval(1.08, 1.06, 1.10, "passes-t")
    assert narrow.excludes_one
    wide = with_run_noise(narrow, run_sd=0.05)
    assert wide.estimate == 1.08 and wide.low < 1 < wide.high and wide.method == "passes-t+runs"
    assert with_run_noise(narrow, 0.0) == narrow
    # a whole run shifted by 8% is run-to-run noise: the estimate keeps it, uncentred
    assert run_to_run_sd(np.log([0.92] * 10)) == pytest.approx(abs(np.log(0.92)) / np.sqrt(2))


def test_simultaneous_intervals_are_wider_and_the_floor_adds_to_their_own_standard_error():
    from analysis.stats import family_confidence, with_run_noise

    a, b = passes(1.1, 0.02, seed=5, drift=0.01), passes(1.0, 0.02, seed=6, drift=0.01)
    alone, together = ratio_interval(a, b), ratio_interval(a, b, family_confidence(24))
    assert family_confidence(24) == pytest.approx(1 - 0.05 / 24) and family_confidence(1) == 0.95
    assert together.low < alone.low and together.high > alone.high and together.estimate == alone.estimate
    # the floor combines with the interval's standard error, whatever the interval's level, at the
    # Welch-Satterthwaite degrees of freedom: never narrower than the interval it widens
    widened = with_run_noise(together, 0.05, family_confidence(24))
    total = together.log_se**2 + 2 * 0.05**2
    df = together.df * total**2 / together.log_se**4
    own = max(math.log(together.high / together.estimate), math.log(together.estimate / together.low))
    expected = max(stats.t.ppf(1 - 0.025 / 24, df) * math.sqrt(total), own)
    assert math.log(widened.high / widened.estimate) == pytest.approx(expected, rel=1e-3)
    assert widened.low <= together.low and widened.high >= together.high


def test_a_time_comparison_decides_in_three_words_with_its_margin():
    from analysis.stats import decide, repetitions_to_decide

    assert decide(Interval(0.80, 0.75, 0.85, "passes-t")) == "faster"  # all below 1/1.05
    assert decide(Interval(1.20, 1.10, 1.30, "passes-t")) == "slower"  # all above 1.05
    assert decide(Interval(1.00, 0.97, 1.03, "passes-t")) == "equivalent"  # inside ±5% both ways
    assert decide(Interval(0.97, 0.93, 1.01, "passes-t")) == "inconclusive"  # below 1, but not by 5%
    assert decide(Interval(1.00, 0.90, 1.10, "passes-t")) == "inconclusive"
    wide = Interval(1.00, 0.90, 1.11, "passes-t", df=4.0)
    need = repetitions_to_decide(wide, 3)
    assert need is not None and need > 3  # more passes would show it equivalent
    # at the estimate's side of the margin: equivalence needs half-width under log(1.05) - |log 1.03|
    assert repetitions_to_decide(Interval(1.03, 0.93, 1.14, "passes-t", df=4.0), 3) > need
    assert repetitions_to_decide(Interval(1.05, 1.0, 1.1, "passes-t", df=4.0), 3) is None  # on the margin itself
    # a target's met or missed turns on the upper edge alone: 0.96 is far from it, though near the lower one
    near_lower = Interval(0.96, 0.85, 1.08, "passes-t", df=4.0)
    assert repetitions_to_decide(near_lower, 3, upper_only=True) < repetitions_to_decide(near_lower, 3)


def test_the_open_words_of_an_interval_and_the_target_verdict_they_give():
    from analysis.stats import decide, open_words, target_verdict, word_or_words

    cases = [  # (low, high): the words left open, the target 'at most 1' it gives
        ((0.80, 0.90), ("faster",), "met"),
        ((0.93, 0.97), ("faster", "equivalent"), "met"),  # straddles 1/1.05 only: not slower either way
        ((0.97, 1.03), ("equivalent",), "met"),
        ((1.02, 1.08), ("equivalent", "slower"), "inconclusive"),
        ((1.10, 1.20), ("slower",), "missed"),
        ((0.90, 1.10), ("faster", "equivalent", "slower"), "inconclusive"),
    ]
    for (low, high), words, answer in cases:
        interval = Interval(math.sqrt(low * high), low, high, "passes-t")
        assert open_words(interval) == words
        assert word_or_words(interval) == " or ".join(words)
        assert decide(interval) == (words[0] if len(words) == 1 else "inconclusive")
        assert target_verdict(interval) == answer


def test_target_verdicts_on_synthetic_runs_with_known_answers():
    """ours/torch 20% faster, the same, 20% slower, the same but noisy, and on the margin's lower edge, each
    over 6 passes: the words follow; the noisy one is inconclusive and says how many passes would decide it;
    the one on the edge leaves faster and equivalent open, which meets an 'at most 1' target either way."""
    from analysis.verdicts import Target, judge

    rng = np.random.default_rng(3)
    rows = []
    for n, (factor, noise) in enumerate([(0.8, 0.01), (1.0, 0.005), (1.2, 0.01), (1.0, 0.15), (1 / 1.05, 0.002)]):
        for impl, scale in (("ours", factor), ("torch", 1.0)):
            passes = [list(1e-3 * scale * np.exp(rng.normal(0, noise) + rng.normal(0, 0.01, 30))) for _ in range(6)]
            rows.append(
                {
                    "device": "cpu",
                    "dtype": "float32",
                    "shape": "small",
                    "seq_len": 128 * (n + 1),
                    "heads": 4,
                    "mode": "train",
                    "dropout": 0.0,
                    "pos_encoding": "none",
                    "compile": "eager",
                    "passes": 6,
                    "group": "layer",
                    "impl": impl,
                    "baseline": impl == "torch",
                    "device_passes_s": passes,
                    "peak_mem_bytes": 100,
                    "attention_kernel": "flash",
                }
            )
    from analysis.verdicts import pair_table

    judged = judge(pair_table(pd.DataFrame(rows), "ours"), Target("t", "ours", ("train",), "time", 1.0))
    judged = judged.sort_values("seq_len")
    assert judged["word"].tolist() == [
        "faster",
        "equivalent",
        "slower",
        "faster or equivalent or slower",
        "faster or equivalent",
    ]
    assert judged["verdict"].tolist() == ["met", "met", "missed", "inconclusive", "met"]
    assert judged["passes_to_decide"].iloc[3] > 6 and judged["passes_to_decide"].isna().sum() == 4


def test_the_quadratic_share_has_a_bootstrap_interval_over_passes_that_covers_its_truth():
    rng = np.random.default_rng(3)
    n = [128, 256, 512, 1024]

    def passes(t: float) -> list[list[float]]:  # 3 passes, each moved by 6% (between-pass noise measured here)
        return [list(t * math.exp(rng.normal(0, 0.06)) * np.exp(rng.normal(0, 0.01, 20))) for _ in range(3)]

    quadratic = [1e-3 + 1e-5 * x + 3e-8 * x**2 for x in n]
    truth = 3e-8 * 1024**2 / quadratic[-1]
    share = quadratic_share_interval(n, [passes(t) for t in quadratic])
    assert share.low <= truth <= share.high and share.high - share.low < 0.5
    linear = quadratic_share_interval(n, [passes(1e-3 + 1e-5 * x) for x in n])
    assert linear.low < 0.2 and linear.high < truth  # no n² term: the interval stays far from the quadratic's
    assert quadratic_share_interval(n[:3], [passes(t) for t in quadratic[:3]]) is None


def test_an_exponent_is_judged_against_the_physics_by_its_whole_interval():
    from analysis.fits import physics_verdict

    assert physics_verdict(1.03, 1.07, "linear") == "met"
    assert physics_verdict(1.87, 1.91, "quadratic") == "met"
    assert physics_verdict(2.01, 2.30, "quadratic") == "inconclusive"  # straddles the range's edge at 2.15
    assert physics_verdict(1.43, 1.43, "linear") == "missed"  # exact (memory) and outside
    assert physics_verdict(1.43, 1.43, "between linear and quadratic") == "met"
