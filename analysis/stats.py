"""Intervals, significance and verdicts: small pure functions over timing samples.

A cell is timed in R interleaved passes (A B A B), each of many rounds. Rounds within a pass are not
independent of each other (they share the pass's machine state), so the pass is the unit:
- R >= 2: a t interval on the mean of the passes' log-medians (a ratio: Welch's t on the two sets of
  pass log-medians). This is pyperf's choice (many processes, t-test), with passes in place of
  processes. It is wide for small R, and honest about it.
- R == 1: a bootstrap over the rounds (scipy.stats.bootstrap), which sees only within-run noise; the
  interval says so in its `method` and callers warn.
Times are compared in log space: ratios are symmetric there and noise is multiplicative.
A comparison of many cells asks many questions at once: its intervals are simultaneous (family_confidence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import optimize, stats
from scipy.stats import mstats

from infra.record import pass_median

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    method: str  # "passes-t" (between-pass, run-to-run noise) or "rounds-bootstrap" (within-run only)
    p_value: float | None = None  # of "no difference", for ratios
    log_se: float | None = None  # standard error of the log estimate, where a t interval gives one
    df: float | None = None  # the t interval's degrees of freedom (Welch's), where it has them
    blocks: int | None = None  # in-run pairs: the ABBA blocks it rests on (over all passes)
    passes: int | None = None  # the independent units it rests on, where they are passes (PASS_PAIRS)

    @property
    def units(self) -> int | None:
        """The independent repetitions the interval rests on: passes, else blocks (a run before schema 7)."""
        return self.passes or self.blocks

    @property
    def excludes_one(self) -> bool:
        return self.low > 1.0 or self.high < 1.0

    @property
    def half_width(self) -> float:
        """Relative half-width: (high / low) ** 0.5 - 1, the change this interval can resolve."""
        return math.sqrt(self.high / self.low) - 1.0 if self.low > 0 else math.inf


def pass_log_medians(passes: list[list[float]]) -> np.ndarray:
    return np.log([pass_median(p) for p in passes])


def family_confidence(cells: int, confidence: float = CONFIDENCE) -> float:
    """The level of each of `cells` intervals such that all of them cover their truth together with
    probability >= `confidence` (Bonferroni). At 95% each, a comparison of 24 unchanged cells would flag
    about one by chance; a gate over a grid must be wrong about the whole grid at most 5% of the time."""
    return 1 - (1 - confidence) / max(cells, 1)


def _bootstrap(data: tuple[np.ndarray, ...], statistic, confidence: float = CONFIDENCE) -> tuple[float, float]:
    res = stats.bootstrap(
        data,
        statistic,
        confidence_level=confidence,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        vectorized=True,
        random_state=np.random.default_rng(0),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def median_interval(passes: list[list[float]]) -> Interval:
    """The cell's typical time with its interval."""
    if len(passes) >= 2:
        logs = pass_log_medians(passes)
        ci = stats.ttest_1samp(logs, 0.0).confidence_interval(CONFIDENCE)
        return Interval(math.exp(logs.mean()), math.exp(ci.low), math.exp(ci.high), "passes-t")
    samples = np.asarray(passes[0], float)
    low, high = _bootstrap((samples,), lambda x, axis: np.median(x, axis=axis))
    return Interval(float(np.median(samples)), low, high, "rounds-bootstrap")


def ratio_interval(new: list[list[float]], base: list[list[float]], confidence: float = CONFIDENCE) -> Interval:
    """new / base, with its interval and the p-value of 'no change'."""
    if len(new) >= 2 and len(base) >= 2:
        a, b = pass_log_medians(new), pass_log_medians(base)
        if np.ptp(np.concatenate([a - a.mean(), b - b.mean()])) == 0:  # no spread at all: exact
            ratio = math.exp(a.mean() - b.mean())
            return Interval(ratio, ratio, ratio, "passes-t", 1.0 if ratio == 1.0 else 0.0)
        test = stats.ttest_ind(a, b, equal_var=False)
        ci = test.confidence_interval(confidence)
        se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))  # Welch's
        return Interval(
            math.exp(a.mean() - b.mean()),
            math.exp(ci.low),
            math.exp(ci.high),
            "passes-t",
            float(test.pvalue),
            se,
            float(test.df),
        )
    x, y = np.concatenate(new).astype(float), np.concatenate(base).astype(float)
    low, high = _bootstrap((x, y), lambda u, v, axis: np.median(u, axis=axis) / np.median(v, axis=axis), confidence)
    p = float(stats.mannwhitneyu(x, y).pvalue) if not np.array_equal(x, y) else 1.0
    return Interval(float(np.median(x) / np.median(y)), low, high, "rounds-bootstrap", p)


def paired_ratio_interval(
    new: list[list[float]], base: list[list[float]], method: str = "pairs-t", confidence: float = CONFIDENCE
) -> Interval:
    """new / base from passes run in alternating pairs (`python -m bench ab`: pass i of each side back to back,
    so the machine's drift hits both alike): a t interval on the per-pair differences of log-medians, as
    Chromium's pinpoint pairs its runs."""
    if len(new) != len(base) or len(new) < 2:
        return ratio_interval(new, base, confidence)
    return log_mean_interval(pass_log_medians(new) - pass_log_medians(base), method, confidence)


IN_RUN = "in-run pairs"  # the method of an interval from ABBA blocks timed inside one run (bench/pairs.py)
# The share of blocks cut from each end before averaging. A block's log ratio is mostly a few per cent of noise,
# with bursts (another process, a page fault) that put one block 20-100% off: the trimmed mean ignores the bursts
# as the median does, and averages the rest, so its interval is narrower than the median's (Wilcox, "Introduction
# to Robust Estimation and Hypothesis Testing", ch. 4). Fixed before the validation in results/pairs-*/PAIRS.md.
TRIM = 0.2


def trimmed_mean_interval(log_ratios: list[float], method: str, confidence: float = CONFIDENCE) -> Interval:
    """exp of the 20% trimmed mean of paired log ratios, with its Tukey-McLaughlin t interval (scipy.stats.mstats:
    the winsorised variance, as many degrees of freedom as ratios kept, less one) and that t test's p-value of
    'no change'. The one rule for ratios from alternation: ABBA blocks inside a run, and bench ab's pairs of
    processes for the process as a whole (analysis.common_mode)."""
    d = np.asarray(log_ratios, float)
    centre = float(mstats.trimmed_mean(d, limits=(TRIM, TRIM)))
    se = float(mstats.trimmed_stde(d, limits=(TRIM, TRIM)))
    df = d.size - 2 * int(TRIM * d.size) - 1
    if not se > 0 or df < 1:  # every ratio alike (or too few to trim): the ratios themselves are the interval
        low, high = float(d.min()), float(d.max())
        return Interval(
            math.exp(centre),
            math.exp(low),
            math.exp(high),
            method,
            1.0 if centre == 0 else 0.0,
            None,
            None,
            int(d.size),
        )
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    p = float(2 * stats.t.sf(abs(centre) / se, df))
    return Interval(
        math.exp(centre), math.exp(centre - half), math.exp(centre + half), method, p, se, float(df), int(d.size)
    )


def in_run_interval(log_ratios: list[float], confidence: float = CONFIDENCE) -> Interval:
    """A ratio from a pair timed in ABBA blocks inside one run (the trimmed mean's interval over its blocks).
    Blocks, not passes, are the unit: alternation cancels the drift that makes passes differ."""
    return trimmed_mean_interval(log_ratios, IN_RUN, confidence)


PASS_PAIRS = "pass pairs"  # the method of an in-run pair's interval over its passes (schema 7 on)


def pass_pairs_interval(pass_log_ratios: list[list[float]], confidence: float = CONFIDENCE) -> Interval:
    """A ratio from a pair timed in ABBA blocks in each of several passes: each pass's estimate is the trimmed mean
    of its own blocks, and the interval is Student's t over those estimates (passes - 1 degrees of freedom).
    Blocks of one pass share its state (the workloads built afresh, the allocator, the memory layout), so they
    are not independent across passes: a second run agreed with block-pooled intervals half the time, where 95%
    was promised (issue 39). One pass: its blocks' interval, which sees within-pass noise only (IN_RUN)."""
    per_pass = [float(mstats.trimmed_mean(np.asarray(b, float), limits=(TRIM, TRIM))) for b in pass_log_ratios if b]
    if len(per_pass) < 2:
        return in_run_interval([x for b in pass_log_ratios for x in b], confidence)
    blocks = sum(len(b) for b in pass_log_ratios)
    interval = log_mean_interval(np.asarray(per_pass), PASS_PAIRS, confidence)
    return replace(interval, blocks=blocks, passes=len(per_pass))


PAIRED_METHODS = (IN_RUN, PASS_PAIRS)  # an interval from a pair timed in ABBA blocks inside the run


def _paired_in_run(r, new: str, base: str) -> bool:
    pairs = r.get(f"pair_log_ratios{new}")
    return r.get(f"partner_id{new}") == r.get(f"id{base}") and isinstance(pairs, (list, np.ndarray)) and len(pairs) > 0


def cell_ratio(r, new: str = "", base: str = "_base", confidence: float = CONFIDENCE) -> Interval:
    """new / base for a merged row of two cells (their columns suffixed `new` and `base`): from their in-run
    pairs where the run timed them as a pair (either way round), else from their passes, unpaired."""
    for side, flip in ((new, False), (base, True)):
        if not _paired_in_run(r, side, base if side == new else new):
            continue
        per_pass = r.get(f"pair_pass_log_ratios{side}")
        if r.get(f"pair_unit{side}", "blocks") == "passes" and per_pass is not None:
            i = pass_pairs_interval([list(b) for b in per_pass], confidence)
        else:  # a run before schema 7: its blocks pooled across passes, as it was planned
            i = in_run_interval(r[f"pair_log_ratios{side}"], confidence)
        return replace(i, estimate=1 / i.estimate, low=1 / i.high, high=1 / i.low) if flip else i
    return ratio_interval(r[f"device_passes_s{new}"], r[f"device_passes_s{base}"], confidence)


def passes_to_decide(
    interval: Interval, passes: int, confidence: float = CONFIDENCE, upper_only: bool = False
) -> int | None:
    """About how many passes would decide an inconclusive ratio (upper_only: a target's met or missed): for
    in-run pairs from the blocks it would need at this many blocks per pass, else from the passes themselves."""
    if interval.blocks and not interval.passes:  # a run before schema 7: blocks were its unit
        need = repetitions_to_decide(interval, interval.blocks, confidence, upper_only=upper_only)
        return None if need is None else max(passes + 1, math.ceil(need * passes / interval.blocks))
    return repetitions_to_decide(interval, passes, confidence, upper_only=upper_only)


def log_mean_interval(d: np.ndarray, method: str, confidence: float = CONFIDENCE) -> Interval:
    """exp(mean of the log ratios `d`) with its t interval and the p-value of 'no change'."""
    d = np.asarray(d, float)
    if np.ptp(d) == 0:
        ratio = math.exp(float(d.mean()))
        return Interval(ratio, ratio, ratio, method, 1.0 if ratio == 1.0 else 0.0)
    test = stats.ttest_1samp(d, 0.0)
    ci = test.confidence_interval(confidence)
    se = float(d.std(ddof=1) / math.sqrt(d.size))
    return Interval(
        math.exp(float(d.mean())), math.exp(ci.low), math.exp(ci.high), method, float(test.pvalue), se, d.size - 1.0
    )


def with_run_noise(interval: Interval, run_sd: float, confidence: float = CONFIDENCE) -> Interval:
    """A ratio between two runs, its interval widened by the run-to-run spread: run_sd is the standard
    deviation of one run's log time about the truth, measured by an A/A experiment (analysis/noise.py).
    Passes inside a run share that run's machine state, so their spread cannot see it; each run adds
    run_sd^2 to the variance of the log ratio. The quantile is Welch-Satterthwaite's: the interval's own
    variance carries its degrees of freedom, run_sd (pooled over many cells) counts as known, so a few passes
    keep their wide t quantile; and never narrower than the interval it widens. An interval without a standard
    error (a bootstrap) is read off its width."""
    if run_sd <= 0:
        return interval
    center = math.log(interval.estimate)
    z = stats.norm.ppf(0.5 + confidence / 2)
    own = interval.log_se
    if own is None:
        own = max(math.log(interval.high) - center, center - math.log(interval.low)) / z
    total = own**2 + 2 * run_sd**2
    df = interval.df * total**2 / own**4 if interval.df and own > 0 else math.inf
    quantile = stats.t.ppf(0.5 + confidence / 2, df) if math.isfinite(df) else z
    # Satterthwaite can give a narrower interval than a very-few-pass t interval: never narrower than it
    half = max(quantile * math.sqrt(total), math.log(interval.high) - center, center - math.log(interval.low))
    p = float(
        2
        * (
            stats.t.sf(abs(center) / math.sqrt(total), df)
            if math.isfinite(df)
            else stats.norm.sf(abs(center) / math.sqrt(total))
        )
    )
    return Interval(interval.estimate, math.exp(center - half), math.exp(center + half), interval.method + "+runs", p)


def run_to_run_sd(log_ratios: np.ndarray) -> float:
    """From the per-cell log ratios of an A/A pair: sqrt(mean(r^2) / 2). Not centred, on purpose: a shift
    of the whole second run is exactly the run-to-run noise a comparison must not call a change."""
    r = np.asarray(log_ratios, float)
    return float(math.sqrt(np.mean(r**2) / 2))


def verdict(interval: Interval, target: float, lower_is_better: bool = True) -> str:
    """met: the whole interval is on the good side of the target; missed: the whole interval is on the
    bad side; inconclusive: it straddles the target."""
    good = interval.high <= target if lower_is_better else interval.low >= target
    bad = interval.low > target if lower_is_better else interval.high < target
    return "met" if good else "missed" if bad else "inconclusive"


MARGIN = 0.05  # the change a time comparison is asked to resolve: faster, equivalent or slower by more than it
WORDS = ("faster", "equivalent", "slower", "inconclusive")  # decide()'s answers, in the order reports give them


def open_words(interval: Interval, margin: float = MARGIN) -> tuple[str, ...]:
    """The three words an interval leaves open, in WORDS' order: one where it decides; two where it straddles
    one edge of the margin ('faster' and 'equivalent': at least not slower by more than it); all three where it
    is wider than the margin's band."""
    low, high = 1 / (1 + margin), 1 + margin
    return tuple(
        word
        for word, possible in (
            ("faster", interval.low < low),
            ("equivalent", interval.high >= low and interval.low <= high),
            ("slower", interval.high > high),
        )
        if possible
    )


def decide(interval: Interval, margin: float = MARGIN) -> str:
    """A time ratio new/base in one of three words with a margin, or 'inconclusive' where its interval leaves
    more than one open: 'faster' (the whole interval below 1/(1+margin)), 'slower' (above 1+margin),
    'equivalent' (inside both: two one-sided tests at the interval's level)."""
    words = open_words(interval, margin)
    return words[0] if len(words) == 1 else "inconclusive"


def word_or_words(interval: Interval, margin: float = MARGIN) -> str:
    """decide()'s word, or the words still open joined by 'or' ('faster or equivalent')."""
    return " or ".join(open_words(interval, margin))


def word_order(words: str) -> tuple[int, int]:
    """Sorts word_or_words()'s answers from faster to slower: by the first word open, then the last."""
    open_ = words.split(" or ")
    return WORDS.index(open_[0]), WORDS.index(open_[-1])


def target_verdict(relative: Interval, margin: float = MARGIN) -> str:
    """A time target ('ours/torch at most T'), judged on ratio/T: met where no word but faster and equivalent is
    open (the whole interval at most 1+margin: not slower than the target by more than the margin, whichever
    of the two it is), missed where only slower is, else inconclusive. Read off the same interval as decide()'s
    words, so it is simultaneous at the same level."""
    return verdict(relative, 1 + margin)


def repetitions_to_decide(
    interval: Interval, have: int, confidence: float = CONFIDENCE, margin: float = MARGIN, upper_only: bool = False
) -> int | None:
    """Roughly how many passes (or pairs) per side would decide an inconclusive interval at the same estimate:
    its standard error shrinks as one over their square root and its t quantile with the degrees of freedom
    they add. upper_only: a target's met or missed, which only the margin's upper edge separates. None where
    the estimate sits on the edge itself (no number decides it) or past 100,000."""
    centre = math.log(interval.estimate)
    half = max(math.log(interval.high) - centre, centre - math.log(interval.low))
    edge = math.log1p(margin)
    if upper_only:  # a target: only the margin's upper edge separates met from missed
        room = abs(edge - centre)
    else:  # to equivalence, or past the margin
        room = edge - abs(centre) if abs(centre) < edge else abs(centre) - edge
    if room <= 1e-3 or half <= 0 or have < 1:
        return None
    df = interval.df if interval.df else max(have - 1, 1)
    quantile = lambda d: stats.t.ppf(0.5 + confidence / 2, d)  # noqa: E731
    se = half / quantile(df)
    n = have + 1
    while n <= 100_000:
        if quantile(df * n / have) * se * math.sqrt(have / n) <= room:
            return n
        n = math.ceil(n * 1.1)
    return None


@dataclass(frozen=True)
class Slope:
    value: float
    low: float
    high: float
    se: float
    points: int


def loglog_slope(x: np.ndarray, y: np.ndarray) -> Slope:
    """Least-squares slope of log y on log x, with its t interval (n - 2 degrees of freedom)."""
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    if len(lx) < 3:
        slope = float(np.polyfit(lx, ly, 1)[0])
        return Slope(slope, math.nan, math.nan, math.nan, len(lx))
    fit = stats.linregress(lx, ly)
    t = stats.t.ppf(0.5 + CONFIDENCE / 2, len(lx) - 2)
    return Slope(float(fit.slope), fit.slope - t * fit.stderr, fit.slope + t * fit.stderr, float(fit.stderr), len(lx))


@dataclass(frozen=True)
class Quadratic:
    """y = a + b*n + c*n^2 with non-negative terms (a step is a sum of costs), and how much of y the n^2
    term is at the longest length."""

    a: float
    b: float
    c: float
    quadratic_share: float  # c*n^2 / (a + b*n + c*n^2) at the longest n, in [0, 1]


def quadratic_fit(n: np.ndarray, y: np.ndarray, min_points: int = 5) -> Quadratic | None:
    """Non-negative least squares on relative errors (every length weighs alike); at least 5 lengths."""
    n, y = np.asarray(n, float), np.asarray(y, float)
    if len(n) < min_points:
        return None
    basis = np.stack([np.ones_like(n), n, n**2], axis=1) / y[:, None]
    (a, b, c), _ = optimize.nnls(basis, np.ones_like(y))
    top = n.max()
    total = a + b * top + c * top**2
    return Quadratic(float(a), float(b), float(c), float(c * top**2 / total) if total else math.nan)


QUADRATIC_MIN_LENGTHS = 4  # three non-negative terms need one length more to be a fit rather than a solve


def quadratic_share_interval(
    lengths: list[int], passes: list[list[list[float]]], confidence: float = CONFIDENCE
) -> Interval | None:
    """The n² term's share of the time at the longest length, from a + b·n + c·n² fitted to each length's
    geometric mean of pass medians, with a percentile bootstrap over each length's passes (scipy.stats.bootstrap,
    the lengths resampled independently: they are separate cells). None below 4 lengths or 2 passes a length."""
    if len(lengths) < QUADRATIC_MIN_LENGTHS or min(len(p) for p in passes) < 2:
        return None
    n = np.asarray(lengths, float)
    logs = [pass_log_medians(p) for p in passes]

    def share(*samples: np.ndarray) -> float:
        fit = quadratic_fit(n, np.exp([s.mean() for s in samples]), QUADRATIC_MIN_LENGTHS)
        return fit.quadratic_share

    point = share(*logs)
    boot = stats.bootstrap(
        logs,
        share,
        vectorized=False,
        paired=False,
        confidence_level=confidence,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(0),
    )
    ci = boot.confidence_interval
    return Interval(point, float(min(ci.low, point)), float(max(ci.high, point)), "passes-bootstrap")
