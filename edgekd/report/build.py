"""Build report.json / report.md / report.html from a run folder, and the `edgekd report` command.

The report gathers every bench result (`bench/<target>/<name>-t<threads>.json`), fills each
entry's accuracy, quality metrics (a causal LM's perplexity, greedy agreement) and parity from
`exports/<name>/export.json` (or `teacher|student/metrics.json` for the PyTorch originals),
lists failed exports as failed entries (never with a latency), and records the environment plus
the recipe's bench settings. Raw latency samples are kept, so `edgekd compare` can put a
confidence interval on a later change.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from edgekd.report.recommend import DEFAULT_BUDGET, DEFAULT_PERPLEXITY_BUDGET, recommend
from edgekd.benchmarks.contracts import REPORT_SCHEMA, BenchEntry, ContractError, Report
from edgekd.errors import EdgekdError
from edgekd.files import read_json, write_json_atomic, write_text_atomic
from edgekd.report.rows import is_generative
ROLE_ORDER = {"teacher": 0, "student": 1}
FORMAT_ORDER = {"pytorch": 0, "onnx": 1, "openvino": 2, "tflite": 3}
PRECISION_ORDER = {"fp32": 0, "fp16": 1, "int8-dynamic": 2, "int8-static": 3, "int4": 4}


def _read(path: Path) -> Any:
    try:
        return read_json(path)
    except (OSError, ValueError) as exc:
        raise EdgekdError(f"cannot read {path}: {exc}") from None


def entries_of(data: Any, path: Path) -> list[dict[str, Any]]:
    """The entries of a bench file (one entry, or a report-shaped document from `bench --out`),
    validated against the typed contract."""
    try:
        if isinstance(data, dict) and data.get("schema") == REPORT_SCHEMA:
            return list(Report.from_dict(data, str(path)).entries)
        if isinstance(data, dict) and "name" in data and "latency_ms" in data:
            return [BenchEntry.from_dict(data, str(path)).to_dict()]
    except ContractError as exc:
        raise EdgekdError(str(exc)) from None
    raise EdgekdError(f"{path} is neither a bench entry nor an {REPORT_SCHEMA} document")


def _recipe(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "recipe.yaml"
    if not path.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise EdgekdError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return data if isinstance(data, dict) else {}


def _exports(run_dir: Path) -> dict[str, dict[str, Any]]:
    exports = {}
    for path in sorted((run_dir / "exports").glob("*/export.json")):
        data = _read(path)
        if isinstance(data, dict):
            exports[data.get("name") or path.parent.name] = data
    return exports


def _failed_export_entry(export: dict[str, Any]) -> dict[str, Any]:
    """An entry for an export that failed: it carries the error and no numbers."""
    return BenchEntry.failed(name=export.get("name"), role=export.get("role"),
                             fmt=export.get("format"), precision=export.get("precision"),
                             target=None, error=export.get("error") or "export failed",
                             batch_size=export.get("batch_size"), seq_len=export.get("seq_len"),
                             parity=export.get("parity"),
                             size_bytes=export.get("size_bytes")).to_dict()


def _fill_operations(entries: list[dict[str, Any]], run_dir: Path) -> None:
    """Each measured entry's GFLOP per inference (batch x seq_len), from its role's config
    (every artifact of a role is that model), and the rate its p50 achieves. A causal LM's is
    per output token (one decode step, `causal_lm.operations`), at the mean context of its
    decode steps, and its rate is against the TPOT p50."""
    from edgekd.tasks import get_task

    task = get_task(_recipe(run_dir).get("task"))
    configs = {role: _read(run_dir / role / "config.json") for role in ("teacher", "student")
               if (run_dir / role / "config.json").is_file()}
    for entry in entries:
        config = configs.get(entry.get("role"))
        if config is None or not entry.get("seq_len") or entry.get("status") != "ok":
            continue
        if is_generative(entry):
            gflop = get_task("causal-lm").operations(config, _decode_context(entry), 1)
        else:
            gflop = task.operations(config, int(entry["seq_len"]), int(entry.get("batch_size") or 1))
        p50 = (entry.get("latency_ms") or {}).get("p50")
        entry["gflop"] = gflop
        entry["gflop_per_s"] = gflop / (p50 / 1000) if gflop and p50 else None


def _decode_context(entry: dict[str, Any]) -> int:
    """The mean context of a generate entry's timed decode steps: TPOT is pooled over the
    prompt lengths, and a step k of a generation from L tokens attends to L + k of them."""
    generation = entry["generation"]
    lengths = generation.get("prompt_lengths") or [p["prompt_len"] for p in generation["prompts"]]
    return round(sum(lengths) / len(lengths) + generation.get("new_tokens", 0) / 2)


def _quality(source: dict[str, Any]) -> dict[str, Any] | None:
    """The quality metrics of an export.json (its `metrics`) or a metrics.json (itself)."""
    if "schema" in source:
        return source.get("metrics")
    return source or None


def _sort_key(entry: dict[str, Any]) -> tuple:
    return (ROLE_ORDER.get(entry.get("role"), 2), FORMAT_ORDER.get(entry.get("format"), 9),
            PRECISION_ORDER.get(entry.get("precision"), 9), str(entry.get("target")),
            entry.get("threads") or 0, entry.get("batch_size") or 0, str(entry.get("name")))


def build_report(run_dir: Path) -> dict[str, Any]:
    """Collect a run folder's bench results into an `edgekd.report/1` document (not written)."""
    from edgekd.benchmarks import environment

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EdgekdError(f"run folder not found: {run_dir}")
    entries: list[dict[str, Any]] = []
    for path in sorted((run_dir / "bench").glob("*/*.json")):
        if not path.name.startswith("."):  # temporary files of an interrupted write
            entries += entries_of(_read(path), path)
    exports = _exports(run_dir)
    metrics = {role: _read(run_dir / role / "metrics.json") for role in ("teacher", "student")
               if (run_dir / role / "metrics.json").is_file()}
    for entry in entries:
        export = exports.get(entry.get("name"))
        if entry.get("format") == "pytorch" and entry.get("role") in metrics:
            source = metrics[entry["role"]]
        else:
            source = export or {}
        if entry.get("accuracy") is None and source.get("accuracy") is not None:
            entry["accuracy"] = source["accuracy"]
        if entry.get("metrics") is None and is_generative(entry) and _quality(source):
            entry["metrics"] = _quality(source)
        if entry.get("parity") is None and export and export.get("parity") is not None:
            entry["parity"] = export["parity"]
        if not entry.get("size_bytes") and export and export.get("size_bytes"):
            entry["size_bytes"] = export["size_bytes"]
    _fill_operations(entries, run_dir)
    benched = {e.get("name") for e in entries}
    entries += [_failed_export_entry(x) for x in exports.values()
                if x.get("status") == "failed" and x.get("name") not in benched]
    if not entries:
        raise EdgekdError(f"nothing to report in {run_dir}: no bench results under "
                          f"{run_dir / 'bench'} and no failed exports")
    entries.sort(key=_sort_key)
    recipe = _recipe(run_dir)
    env = environment.collect()
    generative = any(is_generative(e) for e in entries)
    bench = dict(recipe.get("bench") or {})
    if not generative:   # a classifier run generates nothing
        bench = {k: v for k, v in bench.items() if k not in ("prompt_lengths", "new_tokens")}
    env["bench"] = bench or None
    env["targets"] = target_environments(entries)
    report = Report(entries=entries, environment=env, run=recipe.get("name") or run_dir.name,
                    created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    accuracy_budget=(recipe.get("report") or {}).get("accuracy_budget",
                                                                       DEFAULT_BUDGET)).to_dict()
    if generative:
        report["perplexity_budget"] = (recipe.get("report") or {}).get("perplexity_budget",
                                                                     DEFAULT_PERPLEXITY_BUDGET)
    report["recommended"] = [{"setting": pick["label"], "name": pick["entry"]["name"],
                              "within_budget": pick["within_budget"], "why": pick["why"]}
                             for pick in recommend(report, report["accuracy_budget"])]
    return report


def target_environments(entries: list[dict[str, Any]]) -> dict[str, dict]:
    """Each target's machine as its runner described it (the latest measured entry's
    `environment`): the report's top-level environment is the host that built the report,
    which for an SSH target is not the machine that ran the models."""
    out: dict[str, dict] = {}
    for entry in entries:
        if entry.get("status", "ok") == "ok" and entry.get("environment"):
            target = str(entry.get("target"))
            runtimes = {**(out.get(target, {}).get("runtimes") or {}),
                        **(entry["environment"].get("runtimes") or {})}
            # every runtime the target ran (each entry's environment names only its own)
            out[target] = {**entry["environment"], "runtimes": runtimes}
    return out


def _targets(report: dict[str, Any]) -> set:
    from edgekd.report.rows import is_ok

    return {e.get("target") for e in report.get("entries", []) if is_ok(e)}


def write_report(run_dir: Path, report: dict[str, Any]) -> None:
    """Write report.json, report.md and report.html into `run_dir` (each atomically). A run
    measured on several targets also gets the hardware comparison section."""
    from edgekd.report.hardware import compare_targets
    from edgekd.report.html import render_html
    from edgekd.report.markdown import render_markdown

    run_dir = Path(run_dir)
    hardware = compare_targets([report]) if len(_targets(report)) > 1 else None
    # The views first, report.json last: report.json is what marks the report as complete.
    write_text_atomic(run_dir / "report.md", render_markdown(report, hardware))
    write_text_atomic(run_dir / "report.html", render_html(report, hardware))
    write_json_atomic(run_dir / "report.json", report)


def write_comparison(out_dir: Path, reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Write the hardware comparison of several reports: comparison.json / .md / .html."""
    from edgekd.report.hardware import compare_targets
    from edgekd.report.html import render_hardware_html
    from edgekd.report.markdown import hardware_markdown

    hardware = compare_targets(reports)
    if len(hardware["targets"]) < 2:
        raise EdgekdError("nothing to compare: every run was measured on the same target "
                          f"({', '.join(hardware['targets']) or 'none'})")
    out_dir = Path(out_dir)
    runs = ", ".join(str(r) for r in hardware["runs"])
    write_text_atomic(out_dir / "comparison.md",
                      f"# edgekd hardware comparison: {runs}\n\n{hardware_markdown(hardware)}\n")
    write_text_atomic(out_dir / "comparison.html", render_hardware_html(hardware))
    write_json_atomic(out_dir / "comparison.json", hardware)
    return hardware


def report_command(args) -> int:
    """`edgekd report RUN_DIR... [--out DIR]`: rebuild each run's report; with several runs (or
    several targets and --out) also write the hardware comparison. Every report is built and
    the comparison checked before any file is written, so a refusal leaves the runs as they were."""
    from edgekd.checks import check_output_dir
    from edgekd.console import make_console
    from edgekd.report.hardware import compare_targets
    from edgekd.report.summary import summary_table

    resolved = [Path(r).resolve() for r in args.run_dirs]
    twice = next((r for i, r in enumerate(args.run_dirs) if resolved[i] in resolved[:i]), None)
    if twice is not None:
        raise EdgekdError(f"run folder {twice} is given twice: a run compared with itself says nothing")
    compare = len(args.run_dirs) > 1 or bool(args.out)
    out = Path(args.out) if args.out else Path(args.run_dirs[0]).parent / "hardware-comparison"
    if compare:
        check_output_dir(out, "--out")
    for run_dir in (Path(r) for r in args.run_dirs):
        if run_dir.is_dir():  # its reports are rewritten; a missing one is build_report's error
            check_output_dir(run_dir, "run folder")
    reports = [build_report(Path(run_dir)) for run_dir in args.run_dirs]
    if compare:
        targets = compare_targets(reports)["targets"]
        if len(targets) < 2:
            raise EdgekdError("nothing to compare: every run was measured on the same target "
                              f"({', '.join(targets) or 'none'})")
    console = make_console()
    for run_dir, report in zip(args.run_dirs, reports):
        write_report(Path(run_dir), report)
        console.print(summary_table(report))
        console.print(f"report: {Path(run_dir) / 'report.html'}")
    if compare:
        hardware = write_comparison(out, reports)
        console.print(f"hardware comparison of {', '.join(hardware['targets'])}: {out / 'comparison.html'}")
    return 0
