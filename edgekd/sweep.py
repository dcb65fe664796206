"""`edgekd sweep SWEEP.yaml`: several student shapes through distil -> export -> bench, one report.

A sweep file names a base recipe and its variants, each a set of recipe overrides:

    recipe: bbc-news                     # a built-in recipe name or a recipe file
    set: {export.formats: [onnx], export.precisions: [int8-dynamic]}   # shared by all variants
    variants:
      - name: w384                       # the base student
      - name: w256-trim
        set: {student.width: {hidden: 256, ffn: 1024}, student.vocabulary: {trim: true}}
      - name: w256-trim-no-kd            # the same shape trained on the labels alone
        set: {student.width: {hidden: 256, ffn: 1024}, student.vocabulary: {trim: true},
              distill.alpha: 0.0}

Each variant is an ordinary run folder (`<out>/<variant>/`), so a sweep resumes like
`edgekd run`; every variant is validated before any work starts. Variants with the same teacher
and data share the fine-tuned teacher and its cached predictions (hard links), so the teacher is
trained once. The sweep report (`sweep.json`, `sweep.md`, `sweep.html`) puts every student
artifact of every variant on the accuracy-latency and accuracy-size planes with their Pareto
fronts, and pairs each distilled variant with its no-distillation twin (alpha 0) when there is
one: what distilling from the teacher adds over plain fine-tuning of the same small model.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from argparse import Namespace
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError

SCHEMA = "edgekd.sweep/1"
SHARED_SECTIONS = ("task", "data", "teacher")


@dataclass
class Variant:
    name: str
    set: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", self.name):
            raise ValueError(f"variant name '{self.name}' must be letters, digits, '.', '_', '-'")


@dataclass
class SweepFile:
    variants: list[Variant]
    recipe: str | None = None
    name: str | None = None
    set: dict[str, Any] = field(default_factory=dict)   # overrides every variant shares

    def __post_init__(self):
        if not self.variants:
            raise ValueError("a sweep needs at least one variant")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be distinct (got {', '.join(names)})")


def load_sweep(path: str) -> SweepFile:
    """Read and validate a sweep file (a bare name is a built-in one)."""
    import yaml

    from edgekd.config import from_dict
    from edgekd.recipe import Recipe, builtin_recipe_path

    file = Path(path)
    if not file.suffix and not file.exists():
        file = builtin_recipe_path(path, kind="sweep")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EdgekdError(f"sweep file {file}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise EdgekdError(f"sweep file {file} is not valid YAML: {str(exc).splitlines()[0]}") from None
    recipe_keys = ({f.name for f in dataclasses.fields(Recipe)}
                   - {f.name for f in dataclasses.fields(SweepFile)})
    if isinstance(data, dict) and "variants" not in data and recipe_keys & set(data):
        raise EdgekdError(f"{file} is a recipe, not a sweep file (a sweep names a `recipe:` and its "
                          f"`variants:`): run it with `edgekd run {path}`")
    sweep = from_dict(SweepFile, data if data is not None else {})
    if sweep.recipe and not Path(sweep.recipe).suffix:
        sweep.recipe = str(builtin_recipe_path(sweep.recipe))
    elif sweep.recipe and not Path(sweep.recipe).is_absolute():
        sweep.recipe = str((file.parent / sweep.recipe).resolve())
    sweep.name = sweep.name or file.stem
    return sweep


def _overrides(settings: dict[str, Any]) -> list[str]:
    """A `set` mapping as `--set KEY=VALUE` strings (values as YAML flow)."""
    import yaml

    return [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
            for key, value in settings.items()]


def sweep_command(args) -> int:
    """Handler of `edgekd sweep`: validate every variant, run each, write the sweep report."""
    from edgekd.console import console
    from edgekd.pipeline import prepare, run_stages

    sweep = load_sweep(args.sweep)
    out = Path(args.out) if args.out else Path("runs") / sweep.name
    plans = []
    for variant in sweep.variants:   # every variant checked before any is run
        plan = Namespace(recipe=sweep.recipe, out=str(out / variant.name),
                         overrides=_overrides(sweep.set) + list(args.overrides)
                         + _overrides(variant.set))
        plans.append((variant, plan))
    prepared = [(variant, prepare(plan)) for variant, plan in plans]
    reports = []
    for i, (variant, run) in enumerate(prepared):
        console.rule(f"[bold]edgekd sweep[/] {sweep.name}: variant {i + 1}/{len(prepared)} "
                     f"{variant.name} -> {run.run_dir}")
        _share_teacher(run, [p for _, p in prepared[:i]])
        reports.append((variant, run.recipe, run_stages(run)))
    document = sweep_document(sweep.name, reports)
    write_sweep(out, document)
    console.print(sweep_table(document))
    console.print(f"sweep report: {out / 'sweep.html'} (also sweep.md, sweep.json)")
    failed = [e["name"] for _, _, r in reports for e in r["entries"] if e.get("status") != "ok"]
    return 1 if failed else 0


def _share_teacher(run, earlier) -> None:
    """Hard-link an earlier variant's finished teacher and cached predictions into `run` when
    both use the same task, data and teacher (the cache's fingerprint still guards the reuse)."""
    if (run.run_dir / "teacher").exists():
        return
    mine = run.recipe.to_dict()
    for other in earlier:
        theirs = other.recipe.to_dict()
        if all(mine[k] == theirs[k] for k in SHARED_SECTIONS) and \
                (other.run_dir / "teacher" / "metrics.json").is_file():
            shutil.copytree(other.run_dir / "teacher", run.run_dir / "teacher", copy_function=os.link)
            cache = other.run_dir / "cache" / "teacher_logits.npz"
            if cache.is_file() and mine["data"]["max_length"] == theirs["data"]["max_length"]:
                (run.run_dir / "cache").mkdir(exist_ok=True)
                os.link(cache, run.run_dir / "cache" / cache.name)
            return


def sweep_document(name: str, reports: list) -> dict:
    """The sweep's JSON: per variant its student shape and artifacts, then the Pareto fronts."""
    from edgekd.report.rows import is_ok, latency, pareto_front, setting
    from edgekd.report.summary import primary_setting

    variants, points = [], []
    for variant, recipe, report in reports:
        where = primary_setting(report)
        entries = [e for e in report["entries"] if is_ok(e) and setting(e) == where]
        teacher = next((e for e in entries if e.get("role") == "teacher"
                        and e.get("format") == "pytorch"), None)
        artifacts = [{"variant": variant.name, "name": e["name"], "format": e.get("format"),
                      "precision": e.get("precision"), "accuracy": e.get("accuracy"),
                      "p50_ms": latency(e), "size_bytes": e.get("size_bytes"),
                      "gflop": e.get("gflop")}
                     for e in entries if e.get("role") == "student"]
        points += artifacts
        variants.append({"name": variant.name, "overrides": variant.set,
                         "distilled": recipe.distill.alpha > 0, "student": _shape(recipe),
                         "teacher": {"accuracy": teacher and teacher.get("accuracy"),
                                     "p50_ms": teacher and latency(teacher),
                                     "size_bytes": teacher and teacher.get("size_bytes"),
                                     "gflop": teacher and teacher.get("gflop")},
                         "artifacts": artifacts})
    scored = [p for p in points if p["accuracy"] is not None and p["p50_ms"] and p["size_bytes"]]
    fronts = {cost: [scored[i]["variant"] + "/" + scored[i]["name"] for i in pareto_front(
        [(p[key], 100 * p["accuracy"]) for p in scored])]
        for cost, key in (("latency", "p50_ms"), ("size", "size_bytes"))}
    return {"schema": SCHEMA, "sweep": name, "variants": variants, "pareto": fronts,
            "baselines": _baseline_pairs(variants)}


def _shape(recipe) -> dict:
    """The student shape a variant asked for."""
    return {"from_teacher": recipe.student.from_teacher and recipe.student.from_teacher.layers,
            "width": recipe.student.width and {k: getattr(recipe.student.width, k)
                                               for k in ("hidden", "heads", "ffn")},
            "vocabulary_trim": bool(recipe.student.vocabulary and recipe.student.vocabulary.trim)}


def _baseline_pairs(variants: list[dict]) -> list[dict]:
    """Each distilled variant with its no-distillation twin (same overrides but alpha 0): the
    best accuracy of each, and the difference distillation makes."""
    def key(v):
        return {k: val for k, val in v["overrides"].items() if k != "distill.alpha"}

    pairs = []
    for kd in (v for v in variants if v["distilled"]):
        for plain in (v for v in variants if not v["distilled"] and key(v) == key(kd)):
            best = [max((a["accuracy"] for a in v["artifacts"] if a["accuracy"] is not None),
                        default=None) for v in (kd, plain)]
            pairs.append({"distilled": kd["name"], "baseline": plain["name"],
                          "accuracy_distilled": best[0], "accuracy_baseline": best[1],
                          "gain_points": None if None in best else 100 * (best[0] - best[1])})
    return pairs


def sweep_table(document: dict):
    """A rich table: per variant, its most accurate and its fastest student artifact."""
    from rich.table import Table

    from edgekd.report.rows import fmt_acc, fmt_bytes, fmt_ms

    front = set(document["pareto"]["latency"])
    table = Table(title=f"sweep {document['sweep']} (★ = on the accuracy-latency Pareto front)")
    for column in ("variant", "artifact", "accuracy", "p50", "size", "GFLOP"):
        table.add_column(column, justify="left" if column in ("variant", "artifact") else "right",
                         overflow="fold")
    for v in document["variants"]:
        for a in sorted(v["artifacts"], key=lambda a: a["p50_ms"] or 0)[:3]:
            star = " ★" if f"{v['name']}/{a['name']}" in front else ""
            table.add_row(v["name"], a["name"] + star, fmt_acc(a["accuracy"]), fmt_ms(a["p50_ms"]),
                          fmt_bytes(a["size_bytes"]), f"{a['gflop']:.2f}" if a["gflop"] else "—")
    return table


def write_sweep(out: Path, document: dict) -> None:
    """sweep.json, sweep.md and sweep.html in `out` (each atomically)."""
    from edgekd.files import write_json_atomic, write_text_atomic
    from edgekd.report.sweep_views import sweep_html, sweep_markdown

    write_text_atomic(out / "sweep.md", sweep_markdown(document))
    write_text_atomic(out / "sweep.html", sweep_html(document))
    write_json_atomic(out / "sweep.json", document)
