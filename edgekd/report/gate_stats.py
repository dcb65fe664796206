"""Statistics of the latency regression gate: is the candidate slower than the baseline?

Data model: one entry (an artifact on a target at some threads/batch/seq) is measured as K
*repeats* per side, each repeat a fresh process with its own list of latency samples (ms).
The quantity compared is the ratio candidate/baseline of the geometric mean over repeats of each
repeat's statistic (p50 by default): "how much slower is a typical run's p50".

Method ("welch", the default; docs/regression-gate.md shows it is calibrated):
  1. each repeat is reduced to log(statistic of its samples); noise inside a run, serial
     correlation included, and drift between runs both show up as scatter of these numbers;
  2. Welch's t on the two sets of log-statistics gives the log-ratio, its interval, and a
     one-sided p-value for "ratio > 1 + threshold";
  3. with one repeat on one side, that side is given the other side's between-repeat spread;
     with one repeat on both sides the interval comes from a circular block bootstrap inside
     the runs (blocks of sqrt(n) samples keep serial correlation) and cannot see drift between
     runs: the verdict says so in `warning`.
The alternative `method="bootstrap"` is the two-stage bootstrap (repeats with replacement, then
blocks within each chosen repeat); its interval is too narrow with few repeats (see docs).

Several entries: regressions are decided by Holm's step-down on the one-sided p-values, so the
chance of *any* false alarm in one comparison stays at most `alpha`. Each interval is two-sided
at level 1 - alpha/m (m entries): the intervals hold simultaneously with probability >= 1 - alpha,
and an interval whose low end is above 1 + threshold always comes with `regressed`.

Paired A/B (`judge_paired`): baseline and candidate measured alternately in fresh processes;
each pair gives log(stat B / stat A); drift that hits both members of a pair cancels; a one-sided
t-test over pairs decides.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edgekd.errors import EdgekdError

STATISTICS = {"p50": 50.0, "median": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "mean": None}
METHODS = ("welch", "bootstrap")
RESAMPLES = 4000
# The simulation of docs/regression-gate.md shows that Welch is calibrated from K = 2 up.
NO_DRIFT_WARNING = ("one repeat on each side: the interval covers noise within the two runs "
                    "only and cannot see drift between runs; measure K >= 3 repeats")


@dataclass(frozen=True)
class Verdict:
    """The gate's answer for one entry. Ratios are candidate/baseline (> 1: slower)."""

    name: str
    ratio: float
    ci_low: float
    ci_high: float
    confidence: float        # two-sided level of [ci_low, ci_high] (1 - alpha/m)
    p_value: float           # one-sided, null hypothesis: ratio <= 1 + threshold
    p_adjusted: float        # after `correction` over the m entries of the comparison
    regressed: bool          # p_adjusted <= alpha
    improved: bool           # ci_high < 1: faster, with the same simultaneous confidence
    method: str
    correction: str
    n_repeats_baseline: int
    n_repeats_candidate: int
    warning: str | None = None


# --- Student's t distribution (numpy only: scipy is not a dependency of the core) ---------------

def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz, Numerical Recipes)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _regularized_beta(a: float, b: float, x: float, y: float) -> float:
    """I_x(a, b); y = 1 - x is passed apart because computing it from x near 1 loses digits."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log(y))
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, y) / b


def student_t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` (real, > 0) degrees of freedom."""
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * _regularized_beta(df / 2.0, 0.5, df / (df + t * t), t * t / (df + t * t))
    return tail if t > 0 else 1.0 - tail


def student_t_ppf(q: float, df: float) -> float:
    """The t with P(T <= t) = q (bisection on `student_t_sf`)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {q}")
    low, high = -1.0, 1.0
    while student_t_sf(low, df) < 1.0 - q:
        low *= 2.0
    while student_t_sf(high, df) > 1.0 - q:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if student_t_sf(mid, df) > 1.0 - q:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * max(1.0, abs(mid)):
            break
    return 0.5 * (low + high)


# --- inputs -------------------------------------------------------------------------------------

def as_repeats(repeats, what: str = "samples") -> list[np.ndarray]:
    """Repeats as a list of 1-D float arrays. A flat list of numbers is one repeat (K = 1), so an
    old report's `samples_ms` can be judged as it is. Raises EdgekdError on empty or bad values."""
    if len(repeats) and all(np.ndim(r) == 0 for r in repeats):
        repeats = [repeats]
    out = [np.asarray(r, dtype=float).ravel() for r in repeats]
    if not out or any(r.size == 0 for r in out):
        raise EdgekdError(f"{what}: every side needs at least one repeat with at least one sample")
    if any(not np.all(np.isfinite(r) & (r > 0)) for r in out):
        raise EdgekdError(f"{what}: latency samples must be positive finite numbers")
    return out


def _check_statistic(statistic: str) -> None:
    if statistic not in STATISTICS:
        raise EdgekdError(f"statistic must be one of {', '.join(STATISTICS)}, got '{statistic}'")


def statistic_of(samples: np.ndarray, statistic: str, axis=None):
    """The statistic (percentile, or mean) of samples along `axis`."""
    q = STATISTICS[statistic]
    return np.mean(samples, axis=axis) if q is None else np.percentile(samples, q, axis=axis)


# --- one entry: the log-ratio and its uncertainty -----------------------------------------------

@dataclass(frozen=True)
class LogRatio:
    """log(candidate/baseline) with either a t reference (se, df) or bootstrap draws."""

    estimate: float
    method: str
    se: float = math.nan
    df: float = math.nan
    draws: np.ndarray | None = None
    warning: str | None = None

    def p_above(self, margin: float) -> float:
        """One-sided p-value of the null hypothesis log-ratio <= margin."""
        if self.draws is not None:  # percentile bootstrap, inverted
            return float((1 + np.sum(self.draws <= margin)) / (1 + self.draws.size))
        if self.se == 0:  # no scatter at all: the data decide without doubt
            return 0.0 if self.estimate > margin else 1.0
        return student_t_sf((self.estimate - margin) / self.se, self.df)

    def interval(self, level: float) -> tuple[float, float]:
        """Two-sided interval of the log-ratio at `level`."""
        tail = (1.0 - level) / 2.0
        if self.draws is not None:
            low, high = np.quantile(self.draws, [tail, 1.0 - tail])
            return float(low), float(high)
        half = 0.0 if self.se == 0 else student_t_ppf(1.0 - tail, self.df) * self.se
        return self.estimate - half, self.estimate + half


def block_bootstrap_log_stats(samples: np.ndarray, statistic: str, resamples: int,
                              rng: np.random.Generator, block: int | None = None) -> np.ndarray:
    """`resamples` draws of log(statistic) of one run, by the circular block bootstrap: blocks of
    `block` (default round(sqrt(n))) consecutive samples, so serial correlation inside the run
    widens the spread as it should instead of being averaged away as with single samples."""
    n = samples.size
    block = max(1, min(n, block or round(math.sqrt(n))))
    n_blocks = -(-n // block)
    out = np.empty(resamples)
    chunk = max(1, 4_000_000 // (n_blocks * block))  # bounds the index matrix's memory
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        starts = rng.integers(0, n, (rows, n_blocks, 1))
        index = ((starts + np.arange(block)) % n).reshape(rows, -1)[:, :n]
        out[start:start + rows] = np.log(statistic_of(samples[index], statistic, axis=1))
    return out


def _two_stage_draws(repeats: list[np.ndarray], statistic: str, resamples: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Draws of the mean log-statistic of one side: repeats resampled with replacement, then
    each chosen repeat block-resampled (an independent within-run draw per chosen slot)."""
    within = np.stack([block_bootstrap_log_stats(r, statistic, resamples, rng) for r in repeats])
    k = len(repeats)
    chosen = rng.integers(0, k, (resamples, k))
    column = rng.integers(0, resamples, (resamples, k))
    return within[chosen, column].mean(axis=1)


def log_ratio(baseline, candidate, *, statistic: str = "p50", method: str = "welch",
              seed: int = 0, resamples: int = RESAMPLES) -> LogRatio:
    """log(candidate/baseline) of the mean per-repeat log-statistic, with its uncertainty.
    `baseline` and `candidate` are lists of repeats (lists of samples in ms)."""
    _check_statistic(statistic)
    if method not in METHODS:
        raise EdgekdError(f"method must be one of {', '.join(METHODS)}, got '{method}'")
    base, cand = as_repeats(baseline, "baseline"), as_repeats(candidate, "candidate")
    x = np.log([statistic_of(r, statistic) for r in base])
    y = np.log([statistic_of(r, statistic) for r in cand])
    estimate = float(y.mean() - x.mean())
    if method == "bootstrap" or (len(x) == 1 and len(y) == 1):
        rng = np.random.default_rng(seed)
        draws = (_two_stage_draws(cand, statistic, resamples, rng)
                 - _two_stage_draws(base, statistic, resamples, rng))
        if len(x) == len(y) == 1:
            return LogRatio(estimate, "block bootstrap within runs", draws=draws,
                            warning=NO_DRIFT_WARNING)
        warning = None if min(len(x), len(y)) > 1 else (
            "one repeat on one side: the two-stage bootstrap sees no drift on that side")
        return LogRatio(estimate, "two-stage bootstrap", draws=draws, warning=warning)
    if len(x) == 1 or len(y) == 1:
        # One side cannot show its drift: assume it drifts like the other side (same machine,
        # same kind of artifact) rather than pretend that it has none.
        single, other = ("baseline", y) if len(x) == 1 else ("candidate", x)
        spread = float(np.std(other, ddof=1))
        se = spread * math.sqrt(1 / len(x) + 1 / len(y))
        return LogRatio(estimate, "t on log-statistics (one-side spread)", se=se,
                        df=float(len(other) - 1),
                        warning=f"one {single} repeat: its drift between runs is assumed equal "
                                f"to the other side's ({len(other)} repeats)")
    vx, vy = np.var(x, ddof=1) / len(x), np.var(y, ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    # Welch–Satterthwaite degrees of freedom (the larger df when the sides have no spread).
    df = float((vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))) if se else \
        float(len(x) + len(y) - 2)
    warning = None if se else "no scatter between repeats: the interval has zero width"
    return LogRatio(estimate, "welch-t on log-statistics of repeats", se=se, df=df, warning=warning)


# --- many entries: family-wise control ----------------------------------------------------------

def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: rejecting where adjusted <= alpha keeps the chance of
    any false rejection among all m hypotheses at most alpha, whatever their dependence."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted.tolist()


def _entry_seed(seed: int, name: str) -> int:
    # crc32, not hash(): str hashes change per process, and a rerun must print the same numbers.
    return seed * 1_000_003 + zlib.crc32(name.encode())


RULES = ("estimate", "bound")
DEFAULT_RULE = "estimate"


def _verdicts(estimates: dict[str, LogRatio], counts: dict[str, tuple[int, int]],
              threshold: float, alpha: float, rule: str = DEFAULT_RULE) -> list[Verdict]:
    """Verdicts under `rule`:
    - "estimate" (default): regressed when the candidate is shown slower at all (one-sided test
      of ratio <= 1, Holm over the entries) AND the estimated ratio exceeds 1 + threshold: a
      significant slowdown whose best estimate is beyond the tolerance;
    - "bound": regressed only when the data reject ratio <= 1 + threshold (the slowdown is shown
      to exceed the tolerance): stricter, far less power near the threshold.
    Both keep the chance that an unchanged report fails at most alpha."""
    if rule not in RULES:
        raise EdgekdError(f"gate rule must be one of {', '.join(RULES)}, got '{rule}'")
    if not estimates:
        raise EdgekdError("nothing to judge: no entries")
    if not 0.0 < alpha < 1.0:
        raise EdgekdError(f"alpha must be between 0 and 1, got {alpha}")
    if threshold < 0:
        raise EdgekdError(f"threshold must not be negative, got {threshold}")
    m = len(estimates)
    margin = math.log1p(threshold)
    p_values = [e.p_above(margin if rule == "bound" else 0.0) for e in estimates.values()]
    adjusted = holm(p_values)
    level = 1.0 - alpha / m
    correction = "none (one entry)" if m == 1 else f"holm over {m} entries"
    out = []
    for (name, est), p, p_adj in zip(estimates.items(), p_values, adjusted):
        low, high = est.interval(level)
        out.append(Verdict(name=name, ratio=math.exp(est.estimate), ci_low=math.exp(low),
                           ci_high=math.exp(high), confidence=level, p_value=p, p_adjusted=p_adj,
                           regressed=p_adj <= alpha and (rule == "bound" or est.estimate > margin),
                           improved=high < 0.0, method=est.method,
                           correction=correction, n_repeats_baseline=counts[name][0],
                           n_repeats_candidate=counts[name][1], warning=est.warning))
    return out


def judge(entries: dict, *, threshold: float = 0.05, alpha: float = 0.05,
          statistic: str = "p50", method: str = "welch", seed: int = 0,
          resamples: int = RESAMPLES, rule: str = DEFAULT_RULE) -> list[Verdict]:
    """One verdict per entry of {name: (baseline_repeats, candidate_repeats)}: regressed when the
    candidate/baseline ratio of `statistic` is a significant slowdown beyond 1 + threshold
    (`rule`, see `_verdicts`), with Holm's correction so that the family-wise false-alarm rate
    of the whole comparison is at most `alpha`."""
    estimates, counts = {}, {}
    for name, (baseline, candidate) in entries.items():
        estimates[name] = log_ratio(baseline, candidate, statistic=statistic, method=method,
                                    seed=_entry_seed(seed, str(name)), resamples=resamples)
        counts[name] = (len(as_repeats(baseline)), len(as_repeats(candidate)))
    return _verdicts(estimates, counts, threshold, alpha, rule)


def paired_log_ratio(pairs, *, statistic: str = "p50", seed: int = 0,
                     resamples: int = RESAMPLES) -> LogRatio:
    """log(B/A) from pairs (a_samples, b_samples) measured alternately: the mean over pairs of
    log(stat(b) / stat(a)) with a t reference on n_pairs - 1 degrees of freedom."""
    _check_statistic(statistic)
    if len(pairs) == 0:
        raise EdgekdError("paired comparison: no pairs")
    a = [as_repeats(p[0], "A") for p in pairs]
    b = [as_repeats(p[1], "B") for p in pairs]
    if any(len(r) != 1 for r in a + b):
        raise EdgekdError("paired comparison: each pair member is one list of samples")
    if len(pairs) == 1:
        return log_ratio(a[0], b[0], statistic=statistic, seed=seed, resamples=resamples)
    d = np.log([statistic_of(rb[0], statistic) / statistic_of(ra[0], statistic)
                for ra, rb in zip(a, b)])
    se = float(np.std(d, ddof=1) / math.sqrt(d.size))
    return LogRatio(float(d.mean()), "paired t on log-ratios of pairs", se=se,
                    df=float(d.size - 1),
                    warning=None if se else "no scatter between pairs: zero-width interval")


def judge_paired_entries(entries: dict, *, threshold: float = 0.05, alpha: float = 0.05,
                         statistic: str = "p50", seed: int = 0,
                         rule: str = DEFAULT_RULE) -> list[Verdict]:
    """`judge_paired` for several entries {name: pairs}, with Holm's correction across them."""
    estimates = {name: paired_log_ratio(pairs, statistic=statistic,
                                        seed=_entry_seed(seed, str(name)))
                 for name, pairs in entries.items()}
    counts = {name: (len(pairs), len(pairs)) for name, pairs in entries.items()}
    return _verdicts(estimates, counts, threshold, alpha, rule)


def judge_paired(pairs, *, threshold: float = 0.05, alpha: float = 0.05, statistic: str = "p50",
                 seed: int = 0, name: str = "ab", rule: str = DEFAULT_RULE) -> Verdict:
    """The verdict of a paired A/B run: pairs [(a_samples, b_samples), ...], each pair measured
    back to back in fresh processes; regressed when B/A is a significant slowdown beyond
    1 + threshold (`rule`)."""
    return judge_paired_entries({name: pairs}, threshold=threshold, alpha=alpha,
                                statistic=statistic, seed=seed, rule=rule)[0]
