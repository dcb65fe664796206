"""`edgekd ab BASELINE CANDIDATE`: the paired A/B latency gate, the recommended CI mode.

Both artifacts are measured now, on one target, each run in its own fresh runner process, in
pairs: A B, then B A, then A B, ... (each pair starts with the side the previous one ended with,
so a trend over the session does not favour a side). Each pair gives log(stat of B / stat of A);
whatever slows the machine for both members of a pair (another job, a thermal state) cancels in
that ratio. `gate_stats.judge_paired` decides with a one-sided t-test over the pairs
(docs/regression-gate.md). A causal LM is judged on its time per output token (TPOT) and on its
time to first token at each prompt length (TTFT), with Holm's correction over those. Exit code: 0 no regression, 1 regression, 2 bad input.
"""

from __future__ import annotations

from typing import Any

from edgekd.errors import EdgekdError


def pair_order(pairs: int) -> list[tuple[int, int]]:
    """(pair index, side) in the order they are measured; side 0 is A (baseline), 1 is B."""
    order = []
    for i in range(pairs):
        first = i % 2
        order += [(i, first), (i, 1 - first)]
    return order


def measure_pairs(baseline, candidate, pairs: int, on_run=None) -> tuple[list[tuple], list[dict]]:
    """Run two prepared `Measurement`s (edgekd.benchmarks.bench) alternately in `pairs` pairs.
    Returns the pairs [(a_samples, b_samples), ...] and the two entries holding every repeat.
    `on_run(pair, side, entry)` is called after each runner process."""
    if pairs < 1:
        raise EdgekdError(f"--pairs must be >= 1, got {pairs}")
    sides = (baseline, candidate)
    samples: list[list] = [[None, None] for _ in range(pairs)]
    entries: list[dict | None] = [None, None]
    for i, side in pair_order(pairs):
        result = sides[side].run_once()
        entries[side] = sides[side].entry(result, entries[side])
        samples[i][side] = result.samples_ms
        if on_run:
            on_run(i, side, entries[side])
    return [tuple(p) for p in samples], entries


def ttft_pairs(entries: list[dict], n_pairs: int) -> dict[str, list[tuple]]:
    """A causal LM's TTFT pairs per prompt length, {"TTFT @L": [(a_samples, b_samples), ...]},
    from each side's repeats (a side's repeat i is its run in pair i); {} for a classifier."""
    from edgekd.report.generation import prompt_lengths, prompt_record
    from edgekd.report.rows import is_generative

    a, b = entries
    reps = [e.get("repeats") or [] for e in entries]
    if not (is_generative(a) and is_generative(b)) or any(len(r) != n_pairs for r in reps):
        return {}
    out = {}
    for length in sorted(set(prompt_lengths(a)) & set(prompt_lengths(b))):
        sides = [[(prompt_record(rep, length) or {}).get("ttft_samples_ms") for rep in side]
                 for side in reps]
        if all(all(side) for side in sides):
            out[f"TTFT @{length}"] = list(zip(*sides))
    return out


def ab_result(pairs: list[tuple], entries: list[dict], metric: str, threshold: float,
              alpha: float, rule: str | None = None) -> dict[str, Any]:
    """The paired verdict as a comparison result (the shape `compare.render_markdown` shows):
    one row, or for a causal LM one per measure (TPOT, TTFT per prompt length)."""
    import math

    from edgekd.report.compare import METRICS, apply_verdict
    from edgekd.report.gate_stats import (DEFAULT_RULE, judge_paired, judge_paired_entries,
                                          statistic_of)

    rule = rule or DEFAULT_RULE

    if metric not in METRICS:
        raise EdgekdError(f"--metric must be one of {', '.join(METRICS)}, got '{metric}'")
    a, b = entries
    ttft = ttft_pairs(entries, len(pairs))
    if ttft:
        measures = {"TPOT": pairs, **ttft}
        verdicts = judge_paired_entries(measures, threshold=threshold, alpha=alpha,
                                        statistic=metric, rule=rule)
    else:
        measures = {None: pairs}
        verdicts = [judge_paired(pairs, threshold=threshold, alpha=alpha, statistic=metric,
                                 rule=rule)]

    def geo(measured: list[tuple], side: int) -> float:
        return math.exp(sum(math.log(statistic_of(p[side], metric)) for p in measured) / len(measured))

    rows = []
    for (measure, measured), verdict in zip(measures.items(), verdicts):
        row = {"key": None, "name": a["name"] if a["name"] == b["name"] else f"{a['name']} → {b['name']}",
               "target": a["target"], "threads": a["threads"], "batch_size": a["batch_size"],
               "seq_len": a["seq_len"], "base": geo(measured, 0), "cand": geo(measured, 1)}
        if measure:
            row["measure"] = measure
        apply_verdict(row, verdict)
        rows.append(row)
    return {"rows": rows, "metric": metric, "threshold": threshold, "alpha": alpha, "rule": rule,
            "method": verdicts[0].method, "correction": verdicts[0].correction,
            "env_differences": [], "only_baseline": [], "only_candidate": [], "mode": "ab",
            "regressed": sum(row["verdict"] == "REGRESSED" for row in rows)}


def ab_command(args) -> int:
    """Handler of `edgekd ab`."""
    from edgekd.benchmarks.bench import bench_document, prepare
    from edgekd.benchmarks.command import check_measure_options, generate_options
    from edgekd.console import make_console
    from edgekd.files import write_json_atomic
    from edgekd.report.compare import (ALPHA, check_outputs, parse_threshold, render_markdown,
                                       write_outputs)
    from edgekd.targets.profiles import get_target

    threshold = parse_threshold(args.max_slowdown)
    check_measure_options(args)
    if args.pairs < 2:
        raise EdgekdError(f"--pairs must be >= 2 for a paired test (5 recommended), got {args.pairs}")
    # Every output place is checked before the first measurement, not after minutes of it.
    check_outputs(args.md, args.json, args.out)
    generate = generate_options(args)
    target = get_target(args.target)
    sides = [prepare(path, target, threads=args.threads, batch_size=args.batch_size,
                     seq_len=args.seq_len, warmup=args.warmup, min_iterations=args.min_iterations,
                     min_time_s=args.min_time, energy="none", generate=generate)
             for path in (args.baseline, args.candidate)]
    console = make_console(stderr=True)

    def ran(pair: int, side: int, entry: dict) -> None:
        p50 = entry["repeats"][-1]["latency_ms"]["p50"]
        console.print(f"  pair {pair + 1}/{args.pairs} {'AB'[side]} ({entry['name']}): p50 {p50:.3f} ms")

    pairs, entries = measure_pairs(*sides, args.pairs, on_run=ran)
    result = ab_result(pairs, entries, args.metric, threshold, ALPHA, getattr(args, "rule", None))
    text = render_markdown(result)
    print(text, end="")
    write_outputs(result, text, args.md, args.json)
    if args.out:
        write_json_atomic(args.out, bench_document(entries))
    return 1 if result["regressed"] else 0
