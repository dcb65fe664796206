"""The regression gate's statistics on simulated latency runs (no timing anywhere).

A simulated run: `n` samples `ms * slowdown * exp(drift + e_t)`, where `drift` ~ N(0, drift_sd) is
drawn once per run (a fresh process lands on other cores, other frequencies, another memory
layout) and `e_t` is an AR(1) series with stationary sd `noise_sd` and coefficient `phi` (a slow
thermal or scheduler state that lasts for several calls). The model is multiplicative, so the true
candidate/baseline ratio of p50, mean, p90 and p99 alike is `slowdown`.

`python tests/report/test_gate_stats.py` prints the simulation table of docs/regression-gate.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekd.errors import EdgekdError
from edgekd.report.gate_stats import (holm, judge, judge_paired, judge_paired_entries,
                                      log_ratio, student_t_ppf, student_t_sf)


def simulate_runs(rng, sims: int, k: int, n: int = 200, ms: float = 10.0, slowdown: float = 1.0,
                  drift_sd: float = 0.03, noise_sd: float = 0.05, phi: float = 0.8) -> np.ndarray:
    """Latency samples of shape (sims, k, n): `sims` comparisons' worth of k runs of n samples."""
    e = np.empty((sims, k, n))
    e[..., 0] = rng.normal(0.0, noise_sd, (sims, k))
    innovation = noise_sd * math.sqrt(1.0 - phi ** 2)  # keeps the sd of e_t at noise_sd
    for t in range(1, n):
        e[..., t] = phi * e[..., t - 1] + rng.normal(0.0, innovation, (sims, k))
    drift = rng.normal(0.0, drift_sd, (sims, k, 1))
    return ms * slowdown * np.exp(drift + e)


def gate_rates(k: int, sims: int, *, slowdown: float = 1.0, threshold: float = 0.0,
               method: str = "welch", seed: int = 0, resamples: int = 1000, rule: str = "bound",
               **model):
    """(share regressed, share of 95% intervals covering the true ratio, median log-width)."""
    rng = np.random.default_rng(seed)
    base = simulate_runs(rng, sims, k, **model)
    cand = simulate_runs(rng, sims, k, slowdown=slowdown, **model)
    flagged = covered = 0
    widths = []
    for i in range(sims):
        v = judge({"e": (list(base[i]), list(cand[i]))}, threshold=threshold, method=method,
                  seed=i, resamples=resamples, rule=rule)[0]
        flagged += v.regressed
        covered += v.ci_low <= slowdown <= v.ci_high
        widths.append(math.log(v.ci_high / v.ci_low))
    return flagged / sims, covered / sims, float(np.median(widths))


def iid_bootstrap_interval(base, cand, rng, resamples: int = 1000) -> tuple[float, float]:
    """What `edgekd compare` did before: every sample of every run pooled and resampled alone."""
    base, cand = np.ravel(base), np.ravel(cand)
    b = np.median(base[rng.integers(0, base.size, (resamples, base.size))], axis=1)
    c = np.median(cand[rng.integers(0, cand.size, (resamples, cand.size))], axis=1)
    low, high = np.quantile(c / b, [0.025, 0.975])
    return float(low), float(high)


# --- the t distribution against closed forms (df = 1: Cauchy; df = 2) -------------------------

@pytest.mark.parametrize("t", [-30.0, -2.5, -0.3, 0.0, 1e-7, 0.7, 4.0, 250.0])
def test_student_t_matches_closed_forms(t):
    assert student_t_sf(t, 1) == pytest.approx(0.5 - math.atan(t) / math.pi, abs=1e-13)
    assert student_t_sf(t, 2) == pytest.approx(0.5 - t / (2 * math.sqrt(2 + t * t)), abs=1e-13)
    for df in (1.0, 2.0, 3.7, 12.0, 80.0):
        q = 1.0 - student_t_sf(t, df)
        if 1e-12 < q < 1 - 1e-12:
            assert student_t_ppf(q, df) == pytest.approx(t, rel=1e-6, abs=1e-6)
    # Large df tends to the normal: P(Z > 1.959964) = 0.025.
    assert student_t_sf(1.959964, 1e7) == pytest.approx(0.025, abs=1e-6)


# --- calibration --------------------------------------------------------------------------------

def test_identical_distributions_flag_at_most_alpha_at_zero_threshold():
    # 2000 comparisons of K=5 runs against K=5 runs of the same distribution (drift and AR noise).
    # Welch's t is slightly conservative at small K: 4.2% expected (4000-draw simulation), one
    # binomial sd 0.45%. An anti-conservative method (the two-stage bootstrap: 7-12%) fails this.
    flagged, _, _ = gate_rates(5, 2000, threshold=0.0, seed=1, n=100)
    assert 0.03 <= flagged <= 0.055


def test_interval_coverage_near_nominal_with_drift_between_repeats():
    for k in (3, 5):
        _, covered, _ = gate_rates(k, 400, slowdown=1.07, seed=2 + k)
        assert 0.92 <= covered <= 0.99, (k, covered)


def test_serial_correlation_does_not_shrink_the_interval_below_what_repeats_justify():
    # No drift at all: the only excess variance is AR(1) with phi = 0.8 inside each run. Pooling
    # and resampling single samples (the old method) treats 5 x 200 samples as 1000 independent
    # ones and is far too narrow; the t on repeats sees the spread the correlation really causes.
    rng = np.random.default_rng(3)
    sims = 200
    base = simulate_runs(rng, sims, 5, drift_sd=0.0, phi=0.8)
    cand = simulate_runs(rng, sims, 5, drift_sd=0.0, phi=0.8)
    ours_covered = iid_covered = 0
    ours_width, iid_width = [], []
    for i in range(sims):
        v = judge({"e": (list(base[i]), list(cand[i]))}, threshold=0.0)[0]
        low, high = iid_bootstrap_interval(base[i], cand[i], rng, resamples=500)
        ours_covered += v.ci_low <= 1.0 <= v.ci_high
        iid_covered += low <= 1.0 <= high
        ours_width.append(v.ci_high / v.ci_low - 1)
        iid_width.append(high / low - 1)
    assert ours_covered / sims >= 0.92
    assert iid_covered / sims <= 0.80
    assert np.median(iid_width) < 0.6 * np.median(ours_width)


def test_one_repeat_each_uses_block_bootstrap_and_says_it_cannot_see_drift():
    rng = np.random.default_rng(4)
    sims = 60
    base = simulate_runs(rng, sims, 1, drift_sd=0.0, phi=0.8)
    cand = simulate_runs(rng, sims, 1, drift_sd=0.0, phi=0.8)
    block_width, iid_width = [], []
    for i in range(sims):
        v = judge({"e": (base[i, 0], cand[i, 0])}, threshold=0.0, resamples=1000)[0]
        assert v.method == "block bootstrap within runs" and "cannot see drift" in v.warning
        assert (v.n_repeats_baseline, v.n_repeats_candidate) == (1, 1)
        low, high = iid_bootstrap_interval(base[i], cand[i], rng)
        block_width.append(v.ci_high / v.ci_low - 1)
        iid_width.append(high / low - 1)
    # Blocks of sqrt(200) = 14 samples keep most of the correlation (phi = 0.8 lasts ~5 samples).
    assert np.median(block_width) > 1.8 * np.median(iid_width)


def test_the_default_rule_catches_ten_percent_at_five_and_stays_quiet_when_nothing_changed():
    # rule "estimate": shown slower at all (Holm) and estimated beyond the threshold. +10% true
    # slowdown, 3% drift sd per run, gate at +5%, K = 5: the docs' table says ~98%.
    hits, _, _ = gate_rates(5, 300, slowdown=1.10, threshold=0.05, seed=15, rule="estimate")
    assert hits >= 0.93
    # unchanged: the estimate must exceed +5% AND be significant, rarer than alpha
    alarms, _, _ = gate_rates(5, 600, slowdown=1.0, threshold=0.05, seed=16, rule="estimate")
    assert alarms <= 0.03
    # exactly at the threshold it is a coin toss (the threshold is a tolerance on the estimate)
    half, _, _ = gate_rates(5, 300, slowdown=1.05, threshold=0.05, seed=17, rule="estimate")
    assert 0.35 <= half <= 0.65


def test_true_slowdown_is_detected_with_the_power_the_docs_claim():
    # rule "bound". +10% true slowdown, 3% drift sd per run, gate at +5%: the docs' table says
    # ~64% of cases at K = 5 and ~92% at K = 10 (the margin above the threshold is only 4.8%).
    hits5, _, _ = gate_rates(5, 300, slowdown=1.10, threshold=0.05, seed=5)
    hits10, _, _ = gate_rates(10, 300, slowdown=1.10, threshold=0.05, seed=6)
    assert 0.52 <= hits5 <= 0.76
    assert hits10 >= 0.87
    # A 20% slowdown is caught nearly always with K = 5.
    hits, _, _ = gate_rates(5, 200, slowdown=1.20, threshold=0.05, seed=7)
    assert hits >= 0.97


def test_fifteen_null_entries_keep_the_family_wise_false_alarm_rate():
    rng = np.random.default_rng(8)
    comparisons, entries, k = 300, 15, 5
    base = simulate_runs(rng, comparisons * entries, k, n=100)
    cand = simulate_runs(rng, comparisons * entries, k, n=100)
    any_holm = any_raw = 0
    for c in range(comparisons):
        rows = range(c * entries, (c + 1) * entries)
        verdicts = judge({f"e{i}": (list(base[i]), list(cand[i])) for i in rows}, threshold=0.0)
        any_holm += any(v.regressed for v in verdicts)
        any_raw += any(v.p_value <= 0.05 for v in verdicts)
        assert all(v.correction == "holm over 15 entries" for v in verdicts)
    assert any_holm / comparisons <= 0.07  # alpha 5% + about 1.6 binomial sd
    assert any_raw / comparisons >= 0.35   # without a correction: 1 - 0.95**15 = 54% expected


def test_two_stage_bootstrap_is_too_narrow_with_few_repeats():
    # Why it is not the default: resampling 3 repeats sees (K-1)/K of their variance and only 10
    # distinct sets, so its 95% interval covers the truth far less often than 95%.
    _, covered, _ = gate_rates(3, 200, slowdown=1.0, method="bootstrap", seed=13, resamples=500,
                               n=100)
    assert covered <= 0.90


# --- paired A/B ---------------------------------------------------------------------------------

def test_paired_drift_that_hits_both_members_cancels():
    rng = np.random.default_rng(9)
    sims, pairs = 300, 8
    # Large drift per pair (10% sd) shared by A and B; tiny independent drift per process.
    shared = rng.normal(0.0, 0.10, (sims, pairs, 1))
    a = simulate_runs(rng, sims, pairs, drift_sd=0.005) * np.exp(shared)
    b_same = simulate_runs(rng, sims, pairs, drift_sd=0.005) * np.exp(shared)
    b_slow = simulate_runs(rng, sims, pairs, slowdown=1.03, drift_sd=0.005) * np.exp(shared)
    false_alarms = hits = unpaired_hits = 0
    paired_width, unpaired_width = [], []
    for i in range(sims):
        null = judge_paired(list(zip(a[i], b_same[i])), threshold=0.0)
        false_alarms += null.regressed
        slow = judge_paired(list(zip(a[i], b_slow[i])), threshold=0.0)
        hits += slow.regressed
        unpaired = judge({"e": (list(a[i]), list(b_slow[i]))}, threshold=0.0)[0]
        unpaired_hits += unpaired.regressed
        paired_width.append(slow.ci_high / slow.ci_low)
        unpaired_width.append(unpaired.ci_high / unpaired.ci_low)
    assert false_alarms / sims <= 0.075
    assert hits / sims >= 0.95             # 3% found through 10% drift
    assert unpaired_hits / sims <= 0.10    # which the unpaired test cannot do (0.3% here)
    assert np.median(np.log(paired_width)) < 0.3 * np.median(np.log(unpaired_width))


def test_paired_entries_are_corrected_together_and_one_pair_falls_back():
    rng = np.random.default_rng(10)
    runs = simulate_runs(rng, 2, 6)
    slow = [(a, a * 1.3) for a in runs[0]]
    same = [(a, b) for a, b in zip(runs[0], runs[1])]
    fast, flat = judge_paired_entries({"slow": slow, "same": same}, threshold=0.05)
    assert fast.regressed and not fast.improved and fast.correction == "holm over 2 entries"
    assert fast.ratio == pytest.approx(1.3)
    assert not flat.regressed
    one = judge_paired([(runs[0, 0], runs[1, 0])], threshold=0.0, statistic="p90")
    assert one.method == "block bootstrap within runs" and "cannot see drift" in one.warning


# --- verdict bookkeeping ------------------------------------------------------------------------

def test_holm_adjusts_step_down_and_keeps_order():
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.2]) == [0.2]
    assert holm([0.6, 0.6]) == [1.0, 1.0]


def test_verdicts_are_consistent_deterministic_and_cover_all_statistics():
    rng = np.random.default_rng(11)
    runs = simulate_runs(rng, 6, 5)
    entries = {"slower": (list(runs[0]), list(runs[1] * 1.25)),
               "faster": (list(runs[2]), list(runs[3] * 0.8)),
               "same": (list(runs[4]), list(runs[5]))}
    for statistic in ("p50", "mean", "p90", "p99"):
        for method in ("welch", "bootstrap"):
            verdicts = judge(entries, threshold=0.05, statistic=statistic, method=method,
                             resamples=1000)
            assert verdicts == judge(entries, threshold=0.05, statistic=statistic,
                                     method=method, resamples=1000)
            by_name = {v.name: v for v in verdicts}
            assert by_name["slower"].regressed and not by_name["slower"].improved
            assert by_name["faster"].improved and not by_name["faster"].regressed
            assert not by_name["same"].regressed
            for v in verdicts:
                assert v.ci_low <= v.ratio <= v.ci_high
                assert v.confidence == pytest.approx(1 - 0.05 / 3)
                assert v.p_value <= v.p_adjusted
                if v.ci_low > 1.05:  # a visibly clear regression is always flagged
                    assert v.regressed


def test_one_repeat_on_one_side_borrows_the_other_sides_spread():
    rng = np.random.default_rng(12)
    runs = simulate_runs(rng, 2, 5)
    v = judge({"e": (runs[0, 0], list(runs[1]))})[0]  # a flat list is one repeat
    assert v.method == "t on log-statistics (one-side spread)"
    assert "one baseline repeat" in v.warning
    assert (v.n_repeats_baseline, v.n_repeats_candidate) == (1, 5)
    est = log_ratio([runs[0, 0]], list(runs[1]))
    spread = np.std(np.log(np.median(runs[1], axis=1)), ddof=1)
    assert est.se == pytest.approx(spread * math.sqrt(1 + 1 / 5)) and est.df == 4
    boot = judge({"e": (runs[0, 0], list(runs[1]))}, method="bootstrap", resamples=500)[0]
    assert boot.method == "two-stage bootstrap" and "no drift on that side" in boot.warning


def test_no_scatter_between_repeats_gives_a_point_interval():
    same = [[10.0, 11.0, 12.0]] * 3
    v = judge({"e": (same, [[12.0, 13.2, 14.4]] * 3)}, threshold=0.1)[0]
    assert v.ci_low == v.ci_high == pytest.approx(1.2)
    assert v.regressed and v.p_value == 0.0 and "zero width" in v.warning


@pytest.mark.parametrize("bad", [
    dict(entries={}),
    dict(entries={"e": ([[1.0, 2.0]], [[]])}),
    dict(entries={"e": ([[1.0, -2.0]], [[1.0]])}),
    dict(entries={"e": ([[1.0, float("nan")]], [[1.0]])}),
    dict(entries={"e": ([[1.0]], [[1.0]])}, statistic="p42"),
    dict(entries={"e": ([[1.0]], [[1.0]])}, method="magic"),
    dict(entries={"e": ([[1.0]], [[1.0]])}, alpha=1.5),
    dict(entries={"e": ([[1.0]], [[1.0]])}, threshold=-0.1),
])
def test_bad_input_is_a_user_error(bad):
    with pytest.raises(EdgekdError):
        judge(bad.pop("entries"), **bad)


# --- the table of docs/regression-gate.md -------------------------------------------------------

def print_docs_table(methods=(("welch", 4000), ("bootstrap", 300))) -> None:  # pragma: no cover
    """The table of docs/regression-gate.md (minutes: the bootstrap rows are slow)."""
    print("| K | method | false alarms (0%) | 95% CI coverage | hits +10% @5% | hits +15% @5% "
          "| hits +20% @5% | any false alarm, 15 entries |")
    print("|---|---|---|---|---|---|---|---|")
    for method, most_sims in methods:
        for k in (1, 2, 3, 5, 10):
            sims = min(most_sims, 1000) if k == 1 else most_sims  # K = 1 bootstraps: slow
            fa, cov, _ = gate_rates(k, sims, method=method, seed=100 + k)
            hits = [gate_rates(k, sims, slowdown=s, threshold=0.05, method=method,
                               seed=200 + k)[0] for s in (1.10, 1.15, 1.20)]
            rng = np.random.default_rng(300 + k)
            fam_sims = sims // 5
            base = simulate_runs(rng, fam_sims * 15, k, n=100)
            cand = simulate_runs(rng, fam_sims * 15, k, n=100)
            fam = sum(any(v.regressed for v in judge(
                {f"e{i}": (list(base[i]), list(cand[i])) for i in range(c * 15, c * 15 + 15)},
                threshold=0.0, method=method, resamples=1000)) for c in range(fam_sims))
            print(f"| {k} | {method} | {fa:.1%} | {cov:.1%} | "
                  + " | ".join(f"{h:.0%}" for h in hits) + f" | {fam / fam_sims:.1%} |", flush=True)


def print_paired_table(sims: int = 1000) -> None:  # pragma: no cover - run by hand
    """Paired A/B: 3% drift shared by the two processes of a pair, 1% of each process's own."""
    print("| pairs | false alarms (0%) | 95% CI coverage | hits +5% @0% | hits +10% @5% |")
    print("|---|---|---|---|---|")
    for pairs in (2, 3, 5, 10):
        rng = np.random.default_rng(400 + pairs)
        shared = [np.exp(rng.normal(0.0, 0.03, (sims, pairs, 1))) for _ in range(3)]
        a = [simulate_runs(rng, sims, pairs, drift_sd=0.01) * d for d in shared]
        cells = []
        for (slowdown, threshold), a_runs, d in zip(((1.0, 0.0), (1.05, 0.0), (1.10, 0.05)), a,
                                                    shared):
            b = simulate_runs(rng, sims, pairs, slowdown=slowdown, drift_sd=0.01) * d
            verdicts = [judge_paired(list(zip(a_runs[i], b[i])), threshold=threshold)
                        for i in range(sims)]
            cells.append(np.mean([v.regressed for v in verdicts]))
            if slowdown == 1.0:
                cells.append(np.mean([v.ci_low <= 1.0 <= v.ci_high for v in verdicts]))
        print(f"| {pairs} | " + " | ".join(f"{c:.1%}" for c in cells) + " |", flush=True)


if __name__ == "__main__":  # pragma: no cover
    import sys

    if sys.argv[1:] == ["paired"]:
        print_paired_table()
    else:
        chosen = sys.argv[1:] or ["welch", "bootstrap"]
        print_docs_table(tuple(m for m in (("welch", 4000), ("bootstrap", 300)) if m[0] in chosen))
