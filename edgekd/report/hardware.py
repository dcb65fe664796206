"""The hardware comparison: the same artifacts measured on several targets, target against target.

Entries are matched on (name, format, precision, threads, batch size, sequence length), a
causal LM's also on its prompt lengths and new tokens (its p50 is the time per output token, TPOT);
each target is one column. Targets come from one run (a recipe with several targets) or from several
runs; when two runs used the same target name (two machines that both say "local"), the column
is labelled with the run name, else the host, so the columns never merge silently.
"""

from __future__ import annotations

from typing import Any

from edgekd.report.rows import fmt_ms, fmt_ratio, is_generative, is_ok, latency, setting

SCHEMA = "edgekd.hardware/1"
MATCH_KEY = ("name", "format", "precision", "threads", "batch_size", "seq_len")


def target_labels(reports: list[dict[str, Any]]) -> dict[tuple[int, str], str]:
    """A distinct column label for each (report index, target name)."""
    pairs = sorted({(i, str(e.get("target"))) for i, r in enumerate(reports)
                    for e in r.get("entries", []) if is_ok(e)})
    labels: dict[tuple[int, str], str] = {}
    for i, target in pairs:
        if sum(1 for _, t in pairs if t == target) == 1:
            labels[(i, target)] = target
            continue
        report = reports[i]
        hosts = {e.get("host") for e in report.get("entries", []) if e.get("target") == target}
        suffix = report.get("run") or (hosts.pop() if len(hosts) == 1 else None) or f"run {i + 1}"
        labels[(i, target)] = f"{target} ({suffix})"
    # Identical suffixes (two runs with the same name and target): fall back to the run index.
    seen: dict[str, int] = {}
    for key, label in sorted(labels.items()):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[key] = f"{label} #{seen[label]}"
    return labels


def machine_of(entry: dict[str, Any], run: str | None) -> dict[str, Any]:
    """The machine that measured `entry`, as the runner described it on the target (its
    `environment`: for an SSH target the board, not the host that built the report); entries
    from before the runner described itself fall back to their `host` and `cpu` fields."""
    env = entry.get("environment") or {}
    cpu = env.get("cpu") or {}
    old_cpu = entry.get("cpu") or {}
    return {"run": run, "host": env.get("host") or entry.get("host"),
            "cpu": {"model": cpu.get("model") or old_cpu.get("model"),
                    "cores": cpu.get("cores_logical") or old_cpu.get("cores"),
                    "flags": cpu.get("flags") or old_cpu.get("flags") or []},
            "memory_total_mb": env.get("memory_total_mb"), "os": env.get("os"),
            "runtime": entry.get("runtime"), "runtime_version": entry.get("runtime_version")}


def compare_targets(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows of p50/p99 per target for every matched artifact, targets in first-seen order.

    Returns {"schema", "runs", "targets": [label...], "environments": {label: env},
    "rows": [{name, format, precision, threads, batch_size, seq_len, p50_ms: {label: ms},
    p99_ms: {label: ms}, accuracy: {label: acc}}]}.
    """
    labels = target_labels(reports)
    targets: list[str] = []
    rows: dict[tuple, dict[str, Any]] = {}
    environments: dict[str, Any] = {}
    for i, report in enumerate(reports):
        for entry in report.get("entries", []):
            if not is_ok(entry):
                continue
            label = labels[(i, str(entry.get("target")))]
            if label not in targets:
                targets.append(label)
                environments[label] = machine_of(entry, report.get("run"))
            key = tuple(entry.get(k) for k in MATCH_KEY)
            generation = setting(entry)[2:] if is_generative(entry) else None
            row = rows.setdefault(key + (generation,), {
                **dict(zip(MATCH_KEY, key)), "role": entry.get("role"), "p50_ms": {},
                "p99_ms": {}, "accuracy": {}, **({"measure": "TPOT"} if generation else {})})
            row["p50_ms"][label] = latency(entry)
            row["p99_ms"][label] = latency(entry, "p99")
            row["accuracy"][label] = entry.get("accuracy")
    ordered = sorted(rows.values(), key=lambda r: (r["role"] != "teacher", str(r["name"]),
                                                   r["threads"] or 0, r["batch_size"] or 0))
    return {"schema": SCHEMA, "runs": [r.get("run") for r in reports], "targets": targets,
            "environments": environments, "rows": ordered}


def comparison_table(hardware: dict[str, Any]) -> tuple[list[str], list[list]]:
    """Header and rows of the hardware comparison (p50 per target, ratio to the first target),
    shared by the Markdown and HTML views."""
    targets = hardware["targets"]
    reference = targets[0]
    header = ["artifact", "threads", "batch", "seq", *[f"p50 {t}" for t in targets],
              *[f"{t} vs {reference}" for t in targets[1:]]]
    rows = []
    for row in hardware["rows"]:
        p50 = row["p50_ms"]
        name = f"{row['name']} ({row['measure']})" if row.get("measure") else row["name"]
        rows.append([name, row["threads"], row["batch_size"], row["seq_len"],
                     *[fmt_ms(p50.get(t)) for t in targets],
                     *[fmt_ratio(p50[t] / p50[reference]) if p50.get(t) and p50.get(reference)
                       else "—" for t in targets[1:]]])
    return header, rows
