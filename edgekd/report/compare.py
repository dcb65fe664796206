"""`edgekd compare BASELINE.json CANDIDATE.json`: the latency regression gate for CI.

Entries are matched on (name, format, precision, target, threads, batch size, sequence length),
and a causal LM's (scenario "generate") also on its prompt lengths and new tokens.
Matched entries must have been measured on comparable machines: the same CPU model, CPU flags,
logical cores and runtime versions, read from each entry's own environment (collected by the
runner on the target); a difference is refused with one line unless `--allow-different-env`.

Each matched pair is judged by `gate_stats.judge` on the entries' repeats (K fresh-process
measurements per side; docs/regression-gate.md): Welch's t on the per-repeat log-statistic, a
one-sided test of "slower by more than the threshold", Holm's correction over all entries so the
chance of any false alarm in the comparison is at most alpha. An old entry without repeats is
one repeat (its verdict carries the warning). A causal LM is gated on its time per output token
(TPOT: `latency_ms`/`samples_ms`) and on its time to first token at each prompt length (TTFT:
each repeat's `generation.prompts[j].ttft_samples_ms`): one row each, all in Holm's family, its
perplexity shown beside. Exit code: 0 nothing regressed, 1 something did;
bad input raises EdgekdError (exit 2). `--md FILE` writes the Markdown summary (a PR comment),
`--json FILE` the verdicts.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edgekd.benchmarks.contracts import ContractError, Report
from edgekd.errors import EdgekdError

MATCH_KEY = ("name", "format", "precision", "target", "threads", "batch_size", "seq_len")
METRICS = ("p50", "median", "p90", "p95", "p99", "mean")
ALPHA = 0.05
GATE_SCHEMA = "edgekd.gate/1"
FLAT_WARNING = "{side} has no repeats: its samples are one repeat (measure with --repeats >= 3)"


def parse_threshold(text: str) -> float:
    """"5%" or "0.05" -> 0.05. A bare number above 1 is ambiguous and rejected."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise EdgekdError(f"--max-slowdown expects a percentage like 5% or a fraction like 0.05, "
                          f"got '{text}'") from None
    if not raw.endswith("%") and value > 1:
        raise EdgekdError(f"--max-slowdown {text} is ambiguous: write {raw}% or {value / 100:g}")
    if value < 0:
        raise EdgekdError(f"--max-slowdown must not be negative, got '{text}'")
    return value


def load_entries(path: str | Path) -> list[dict[str, Any]]:
    """The entries of a report.json or `edgekd bench --out` file (schema edgekd.report/1)."""
    from edgekd.files import read_json

    try:
        data = read_json(path)
    except OSError as exc:
        raise EdgekdError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise EdgekdError(f"cannot read {path}: not JSON ({exc}); give a report.json or an "
                          "`edgekd bench --out` file") from None
    try:
        return Report.from_dict(data, str(path)).entries
    except ContractError as exc:
        raise EdgekdError(str(exc)) from None


def key_of(entry: dict[str, Any]) -> tuple:
    """What an entry is matched on; a causal LM's key adds its prompt lengths and new tokens."""
    from edgekd.report.generation import prompt_lengths
    from edgekd.report.rows import is_generative

    key = tuple(entry.get(k) for k in MATCH_KEY)
    if is_generative(entry):
        key += (tuple(prompt_lengths(entry)), entry["generation"].get("new_tokens"))
    return key


def repeats_of(entry: dict[str, Any]) -> tuple[list[list[float]], bool]:
    """The entry's repeats as lists of samples, and whether it had a `repeats` list at all (an
    older entry's flat `samples_ms` is one repeat)."""
    reps = [r.get("samples_ms") or [] for r in entry.get("repeats") or []]
    if reps and all(reps):
        return reps, True
    samples = entry.get("samples_ms") or []
    return ([samples] if samples else []), False


def measures_of(entry: dict[str, Any]) -> dict[str, tuple[list[list[float]], bool, dict]]:
    """What the gate judges of an entry: {measure: (repeats, had repeats, summary)}. A
    classifier: its latency. A causal LM: TPOT, and TTFT at each prompt length."""
    from edgekd.report.generation import prompt_lengths, prompt_record, ttft_repeats
    from edgekd.report.rows import is_generative

    if not is_generative(entry):
        return {"latency": (*repeats_of(entry), entry.get("latency_ms") or {})}
    out = {"TPOT": (*repeats_of(entry), entry.get("latency_ms") or {})}
    for length in prompt_lengths(entry):
        out[f"TTFT @{length}"] = (*ttft_repeats(entry, length),
                                  (prompt_record(entry, length) or {}).get("ttft_ms") or {})
    return out


def machine_of(entry: dict[str, Any]) -> dict[str, Any]:
    """What must be equal for two entries' numbers to be compared: CPU model, flags, logical
    cores and runtime versions, from the entry's own environment (the target machine); an older
    entry without one falls back to its `cpu` and `runtime_version` fields."""
    from edgekd.benchmarks.runner import INTERESTING_FLAGS

    env = entry.get("environment")
    if env:
        cpu = env.get("cpu") or {}
        return {"CPU model": cpu.get("model"), "CPU flags": sorted(cpu.get("flags") or []),
                "cores": cpu.get("cores_logical"), "runtime versions": env.get("runtimes") or {}}
    cpu = entry.get("cpu") or {}
    flags = set(cpu.get("flags") or [])
    return {"CPU model": cpu.get("model"), "CPU flags": [f for f in INTERESTING_FLAGS if f in flags],
            "cores": cpu.get("cores"),
            "runtime versions": {entry.get("runtime"): entry.get("runtime_version")}}


def machine_difference(base: dict[str, Any], cand: dict[str, Any]) -> str | None:
    """The first difference between the machines of two entries, as words; None when equal."""
    a, b = machine_of(base), machine_of(cand)
    if bool(base.get("environment")) != bool(cand.get("environment")):
        # one side is an older entry: compare only what both sides can say
        a["runtime versions"] = b["runtime versions"] = None
    for what in a:
        if a[what] != b[what]:
            if what == "CPU flags":
                only_a = sorted(set(a[what]) - set(b[what]))
                only_b = sorted(set(b[what]) - set(a[what]))
                return f"CPU flags differ (baseline only: {only_a or 'none'}, candidate only: {only_b or 'none'})"
            return f"{what} {a[what]!r} vs {b[what]!r}"
    return None


def _row(base: dict[str, Any], cand: dict[str, Any], measure: str = "latency") -> dict[str, Any]:
    from edgekd.report.generation import perplexity

    return {"key": key_of(base), "name": base.get("name"), "target": base.get("target"),
            "threads": base.get("threads"), "batch_size": base.get("batch_size"),
            "seq_len": base.get("seq_len"), "measure": measure, "base": None, "cand": None,
            "ratio": None, "ci_low": None, "ci_high": None, "confidence": None, "p_value": None,
            "p_adjusted": None, "n_repeats": [0, 0], "method": None, "verdict": "unchanged",
            "warning": None, "perplexity": [perplexity(base), perplexity(cand)]}


def compare_reports(baseline: list[dict[str, Any]], candidate: list[dict[str, Any]],
                    metric: str = "p50", threshold: float = 0.05, *, alpha: float = ALPHA,
                    allow_different_env: bool = False, rule: str | None = None) -> dict[str, Any]:
    """Match entries, check that their machines are comparable, and judge every pair.
    Returns {"rows", "only_baseline", "only_candidate", "regressed", "method", "correction",
    "env_differences", ...}. Raises EdgekdError when nothing matches or a machine differs."""
    from edgekd.report.gate_stats import DEFAULT_RULE, judge, statistic_of

    rule = rule or DEFAULT_RULE

    if metric not in METRICS:
        raise EdgekdError(f"--metric must be one of {', '.join(METRICS)}, got '{metric}'")
    cand_by_key = {key_of(e): e for e in candidate}
    base_keys = {key_of(e) for e in baseline}
    pairs = [(e, cand_by_key[key_of(e)]) for e in baseline if key_of(e) in cand_by_key]
    if not pairs:
        raise EdgekdError("nothing to compare: no entry of the candidate matches the baseline on "
                          f"({', '.join(MATCH_KEY)})")
    differences = []
    for base, cand in pairs:
        if base.get("status", "ok") == "ok" and cand.get("status", "ok") == "ok":
            diff = machine_difference(base, cand)
            if diff:
                differences.append(f"{base['name']} on {base.get('target')}: {diff}")
    if differences and not allow_different_env:
        raise EdgekdError(f"not comparable: {differences[0]} (--allow-different-env to compare anyway)")
    rows, judged, flat = [], {}, {}
    for base, cand in pairs:
        if base.get("status", "ok") != "ok" or cand.get("status", "ok") != "ok":
            # A candidate that stopped working is worse than any slowdown.
            row = _row(base, cand, next(iter(measures_of(base if base.get("status", "ok") == "ok"
                                                          else cand))))
            rows.append(row)
            row["verdict"] = "regressed (failed)" if base.get("status", "ok") == "ok" else "baseline failed"
            row["method"] = cand.get("error") or base.get("error") or "failed"
            continue
        cand_measures = measures_of(cand)
        for measure, (b_reps, b_has, b_summary) in measures_of(base).items():
            if measure not in cand_measures:
                continue
            c_reps, c_has, c_summary = cand_measures[measure]
            row = _row(base, cand, measure)
            rows.append(row)
            if b_reps and c_reps:
                judged[len(rows) - 1] = (b_reps, c_reps)
                flat[len(rows) - 1] = [FLAT_WARNING.format(side=side) for side, has in
                                       (("the baseline", b_has), ("the candidate", c_has)) if not has]
                row["base"] = math.exp(sum(math.log(statistic_of(r, metric)) for r in b_reps) / len(b_reps))
                row["cand"] = math.exp(sum(math.log(statistic_of(r, metric)) for r in c_reps) / len(c_reps))
                continue
            # No samples at all (a hand-made or trimmed report): point values, no test.
            stat = "p50" if metric == "median" else metric
            b, c = b_summary.get(stat), c_summary.get(stat)
            if not b or c is None:
                row.update(verdict="no data", method=f"no {stat} value")
                continue
            row.update(base=float(b), cand=float(c), ratio=float(c) / float(b),
                       method="no samples: point values, no test")
            row["verdict"] = "REGRESSED" if row["ratio"] - 1 > threshold else "unchanged"
    method = correction = None
    if judged:
        verdicts = judge({i: v for i, v in judged.items()}, threshold=threshold, alpha=alpha,
                         statistic=metric, rule=rule)
        for i, v in zip(judged, verdicts):
            apply_verdict(rows[i], v, flat[i])
        method, correction = verdicts[0].method, verdicts[0].correction
    return {"rows": rows, "metric": metric, "threshold": threshold, "alpha": alpha, "rule": rule,
            "method": method, "correction": correction, "env_differences": differences,
            "only_baseline": [key_of(e) for e in baseline if key_of(e) not in cand_by_key],
            "only_candidate": [key_of(e) for e in candidate if key_of(e) not in base_keys],
            "regressed": sum(r["verdict"].startswith(("REGRESSED", "regressed")) for r in rows)}


def apply_verdict(row: dict[str, Any], verdict, extra_warnings: list[str] = ()) -> None:
    """Copy a gate_stats Verdict into a comparison row."""
    row.update(ratio=verdict.ratio, ci_low=verdict.ci_low, ci_high=verdict.ci_high,
               confidence=verdict.confidence, p_value=verdict.p_value,
               p_adjusted=verdict.p_adjusted, method=verdict.method,
               n_repeats=[verdict.n_repeats_baseline, verdict.n_repeats_candidate],
               verdict="REGRESSED" if verdict.regressed else "faster" if verdict.improved
               else "unchanged")
    warnings = [*extra_warnings, *([verdict.warning] if verdict.warning else [])]
    row["warning"] = "; ".join(warnings) or None


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * (value - 1):+.1f}%"


def method_line(result: dict[str, Any]) -> str:
    """How the verdicts were reached, in one sentence."""
    metric, threshold, alpha = result["metric"], result["threshold"], result["alpha"]
    if not result.get("method"):
        return "Method: no entry had samples to test."
    if result.get("rule", "estimate") == "bound":
        test = f"one-sided test of \"slower by more than {100 * threshold:g}%\""
    else:
        test = (f"regressed = shown slower (one-sided test) and estimated more than "
                f"{100 * threshold:g}% slower")
    return (f"Method: {result['method']} (statistic: {metric}); {test} at alpha {alpha:g}, "
            f"correction: {result['correction']}; intervals two-sided and simultaneous "
            f"(docs/regression-gate.md).")


def render_markdown(result: dict[str, Any]) -> str:
    """The comparison as a Markdown table, the unmatched entries, warnings, method and verdict."""
    from edgekd.report.generation import fmt_ppl
    from edgekd.report.markdown import table
    from edgekd.report.rows import fmt_ms

    metric = result["metric"]
    # A causal LM has several rows (TPOT, TTFT per prompt length): the table then names the
    # measure of each row and shows perplexity beside; a classifier-only table is as it was.
    generative = any(r.get("measure", "latency") != "latency" for r in result["rows"])
    rows, warnings = [], []
    for r in result["rows"]:
        interval = (f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}] @{100 * r['confidence']:.1f}%"
                    if r["ci_low"] is not None else (r["method"] or "—"))
        p_adj = "—" if r["p_adjusted"] is None else f"{r['p_adjusted']:.3g}"
        cells = [r["name"], r["target"], r["threads"], r["batch_size"], r["seq_len"],
                 f"{r['n_repeats'][0]}/{r['n_repeats'][1]}", fmt_ms(r["base"]),
                 fmt_ms(r["cand"]), _pct(r["ratio"]), interval, p_adj, r["verdict"]]
        what = r["name"]
        if generative:
            ppl = r.get("perplexity") or [None, None]
            cells[1:1] = [r.get("measure", "latency")]
            cells[-1:-1] = [f"{fmt_ppl(ppl[0])} → {fmt_ppl(ppl[1])}" if any(ppl) else "—"]
            what = f"{r['name']} ({r.get('measure', 'latency')})"
        rows.append(cells)
        if r["warning"]:
            warnings.append(f"- {what} on {r['target']}: {r['warning']}")
    header = (f"### edgekd latency gate ({result.get('mode', 'compare')}): "
              + (f"{result['regressed']} regressed" if result["regressed"] else "no regression"))
    columns = ["artifact", "target", "threads", "batch", "seq", "repeats (base/cand)",
               f"baseline {metric}", f"candidate {metric}", "change", "CI", "p (adjusted)", "verdict"]
    if generative:
        columns[1:1] = ["measure"]
        columns[-1:-1] = ["perplexity (base → cand)"]
    out = [header, "", table(columns, rows), ""]
    for label, keys in (("Only in the baseline", result.get("only_baseline") or []),
                        ("Only in the candidate", result.get("only_candidate") or [])):
        if keys:
            out.append(f"{label} (not compared): " + "; ".join(
                f"{k[0]} on {k[3]} t{k[4]} b{k[5]} s{k[6]}"
                + (f" prompts {'/'.join(str(n) for n in k[7])} new {k[8]}" if len(k) > 7 else "")
                for k in keys))
    for diff in result.get("env_differences") or []:
        out.append(f"Different machines (compared anyway, --allow-different-env): {diff}")
    if warnings:
        out += ["Warnings:", *warnings]
    out.append(method_line(result))
    n = result["regressed"]
    what = "compared rows (measures)" if generative else "compared entries"
    out.append(f"**{n} of {len(result['rows'])} regressed.**" if n else
               f"**No regression** in {len(result['rows'])} {what}.")
    return "\n".join(out) + "\n"


def verdicts_document(result: dict[str, Any]) -> dict[str, Any]:
    """The verdicts as plain data (`--json`), schema edgekd.gate/1."""
    keep = ("name", "target", "threads", "batch_size", "seq_len", "measure", "verdict", "base",
            "cand", "ratio", "ci_low", "ci_high", "confidence", "p_value", "p_adjusted",
            "n_repeats", "method", "warning", "perplexity")
    return {"schema": GATE_SCHEMA, "mode": result.get("mode", "compare"),
            "metric": result["metric"], "threshold": result["threshold"], "alpha": result["alpha"],
            "rule": result.get("rule", "estimate"),
            "method": result.get("method"), "correction": result.get("correction"),
            "regressed": result["regressed"], "compared": len(result["rows"]),
            "env_differences": result.get("env_differences") or [],
            "only_baseline": [list(k) for k in result.get("only_baseline") or []],
            "only_candidate": [list(k) for k in result.get("only_candidate") or []],
            "entries": [{k: r.get(k) for k in keep} for r in result["rows"]]}


def check_outputs(md_file: str | None, json_file: str | None, out_file: str | None = None) -> None:
    """Refuse, before any work, an output file that cannot be written (a folder of that name,
    a file where a folder should be): an error after the verdict would exit 1, which a CI gate
    reads as a regression."""
    from edgekd.checks import check_output_file

    for path, flag in ((md_file, "--md"), (json_file, "--json"), (out_file, "--out")):
        if path:
            check_output_file(path, flag)


def write_outputs(result: dict[str, Any], markdown: str, md_file: str | None,
                  json_file: str | None) -> None:
    """Write the Markdown summary and/or the JSON verdicts, atomically, where asked."""
    from edgekd.files import write_json_atomic, write_text_atomic

    if md_file:
        write_text_atomic(md_file, markdown)
    if json_file:
        write_json_atomic(json_file, verdicts_document(result))


def compare_command(args) -> int:
    """`edgekd compare BASELINE CANDIDATE [--metric p50] [--max-slowdown 5%]
    [--allow-different-env] [--md FILE] [--json FILE]`: 0 ok, 1 regressed."""
    threshold = parse_threshold(args.max_slowdown)
    check_outputs(getattr(args, "md", None), getattr(args, "json", None))
    result = compare_reports(load_entries(args.baseline), load_entries(args.candidate),
                             args.metric, threshold,
                             allow_different_env=getattr(args, "allow_different_env", False),
                             rule=getattr(args, "rule", None))
    result["mode"] = "compare"
    text = render_markdown(result)
    print(text, end="")
    write_outputs(result, text, getattr(args, "md", None), getattr(args, "json", None))
    return 1 if result["regressed"] else 0
