"""The stages in order, over one run folder: distill -> export -> verify -> bench -> report.

Every stage reads and writes files in the run folder and skips work whose output is complete,
so `edgekd run` can be rerun after an interruption and resumes where it stopped. All user input
is checked before the run folder is created or touched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.recipe import Recipe, load_recipe, save_recipe

# Sections whose change makes finished distillation results stale.
DISTILL_SECTIONS = ("task", "data", "teacher", "student", "distill")


@dataclass
class Prepared:
    recipe: Recipe
    run_dir: Path
    data: object
    teacher_source: str
    timings: dict = field(default_factory=dict)


def prepare(args) -> Prepared:
    """Load and check everything the run needs (recipe, output folder, data, weights, student,
    layer map, targets), then create the run folder and save the recipe. Nothing is written
    before every check has passed."""
    from edgekd.checks import check_output_dir
    from edgekd.console import quiet_libraries
    from edgekd.data import load_task_data
    from edgekd.tasks import get_task

    quiet_libraries()
    recipe = load_recipe(recipe_file(args.recipe), args.overrides)
    run_dir = Path(args.out) if args.out else Path("runs") / recipe.name
    check_output_dir(run_dir, "run folder")
    check_run_folder(run_dir, recipe)
    # A task may read its own data (optional hook; the classifier's labelled data otherwise).
    data = getattr(get_task(recipe.task), "load_data", load_task_data)(recipe.data)
    teacher_source = check_models(recipe)
    check_targets(recipe)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_recipe(recipe, run_dir / "recipe.yaml")
    return Prepared(recipe, run_dir, data, teacher_source)


def recipe_file(value: str | None):
    """A recipe argument as a path: a bare name that is no file (`smollm2-bbc`) is a built-in."""
    from edgekd.recipe import builtin_recipe_path

    if value and not Path(value).exists() and Path(value).suffix == "" and "/" not in value:
        return builtin_recipe_path(value)
    return value


def check_models(recipe: Recipe) -> str:
    """The teacher's source, after checking its config and weights headers, the student that
    will be built from it, the layer map and the sequence length; returns the teacher source."""
    from edgekd.checks import check_weights
    from edgekd.distillation.features import parse_layer_map
    from edgekd.models import (check_model_source, check_student_config, check_weights_fit,
                               load_config, student_layer_count)
    from edgekd.pruning.student import check_shape
    from edgekd.tasks import get_task

    task = get_task(recipe.task)

    def checked(value: str, role: str):
        """(source, config) of a model the task can use, its weights' headers checked."""
        source = check_model_source(value, role)
        if Path(source).is_dir():
            check_weights(source, role)
        config = load_config(source)
        task.check_config(config, f"the {role} {source}")
        if Path(source).is_dir():
            check_weights_fit(source, config, f"{role} {source}:")
        return source, config

    # optional task hook: a task may name models of its own (causal-lm: `builtin:smollm2`)
    teacher_source, teacher_config = checked(
        getattr(task, "resolve_model", str)(recipe.teacher.model), "teacher")
    positions = getattr(teacher_config, "max_position_embeddings", None)
    if positions and recipe.seq_len > positions:
        raise EdgekdError(f"sequence length {recipe.seq_len} (data.max_length / bench.seq_len) is "
                          f"longer than the teacher's {positions} positions")
    check_student_config(recipe.student, teacher_config)
    check_shape(recipe.student, teacher_config)
    if recipe.student.model is not None:
        checked(recipe.student.model, "student")
    d = recipe.distill
    if d.layer_map is not None or d.hidden_loss > 0 or d.attention_loss > 0:
        parse_layer_map(d.layer_map, student_layer_count(recipe.student, teacher_config),
                        teacher_config.num_hidden_layers)
    if hasattr(task, "check_recipe"):           # optional task hook: its own checks
        task.check_recipe(recipe, teacher_source, teacher_config)
    return teacher_source


def check_targets(recipe: Recipe) -> None:
    """Every bench target resolved (profile found, valid), its energy meter known, and a remote
    one reached, before distillation starts rather than after it and the exports."""
    from edgekd.checks import check_energy_meter
    from edgekd.targets.profiles import get_target

    check_energy_meter(recipe.bench.energy, "bench.energy")
    for spec in recipe.bench.targets:
        target = get_target(spec)
        if recipe.bench.energy == "auto" and target.profile is not None:
            check_energy_meter(target.profile.energy, f"target profile {target.profile.path}")
        if target.kind != "local" or target.profile is not None:
            target.python_info(timeout_s=60)


def check_run_folder(run_dir: Path, recipe: Recipe) -> None:
    """Refuse to resume into a folder whose finished results came from a different recipe, or
    whose saved recipe cannot be read (it is what tells whether the results can be reused)."""
    import yaml

    saved = run_dir / "recipe.yaml"
    if saved.is_dir() or (saved.exists() and not saved.is_file()):
        raise EdgekdError(f"{saved} is not a file; choose another --out or delete the folder")
    if not saved.is_file():
        return
    try:
        old = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise EdgekdError(f"{saved} is not a readable recipe ({first}); choose another --out "
                          "or delete the folder") from None
    if not isinstance(old, dict):
        raise EdgekdError(f"{saved} is not a recipe (not a mapping); choose another --out or "
                          "delete the folder")
    new = recipe.to_dict()
    changed = [k for k in DISTILL_SECTIONS if old.get(k) != new.get(k)]
    if changed and ((run_dir / "teacher").exists() or (run_dir / "student").exists()):
        raise EdgekdError(f"{run_dir} holds results of a recipe with a different '{changed[0]}' "
                          "section; choose another --out or delete the folder")


def distill_command(args) -> int:
    """`edgekd distill`: the distillation stage alone, with its summary table."""
    from edgekd.console import console, distill_table

    prepared = prepare(args)
    console.rule(f"[bold]edgekd distill[/] {prepared.recipe.name} -> {prepared.run_dir}")
    console.print(f"data: {prepared.data.summary()}")
    result = distill_stage(prepared)
    console.print(_table_of(prepared.recipe, distill_table)(result.teacher_metrics,
                                                           result.student_metrics))
    return 0


def _table_of(recipe: Recipe, default):
    """The task's own teacher-vs-student table, when it has one."""
    from edgekd.tasks import get_task

    return getattr(get_task(recipe.task), "distill_table", default)


def distill_stage(prepared: Prepared):
    """Run (or skip, when complete) the distillation stage; records its time."""
    from edgekd.console import console
    from edgekd.distillation.stage import run_distill

    start = time.perf_counter()
    result = run_distill(prepared.recipe, prepared.data, prepared.run_dir, prepared.teacher_source,
                         log=lambda msg: console.print(f"[cyan]distill[/] {msg}"))
    prepared.timings["distill"] = time.perf_counter() - start
    return result


def run_command(args) -> int:
    """`edgekd run`: distill -> export (+ verify) -> bench -> report, resuming what is done."""
    from edgekd.console import console
    from edgekd.report.summary import print_summary

    started = time.perf_counter()
    prepared = prepare(args)
    console.rule(f"[bold]edgekd run[/] {prepared.recipe.name} -> {prepared.run_dir}")
    report = run_stages(prepared, started)
    timings = prepared.timings
    print_summary(report, console)
    failed = [e["name"] for e in report["entries"] if e.get("status") != "ok"]
    if failed:
        console.print(f"[red]failed artifacts[/] (see report.md): {', '.join(sorted(set(failed)))}")
    console.print("stage times: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    console.print(f"report: {prepared.run_dir / 'report.html'}  (also report.md, report.json)")
    # Everything that could be done was done and reported; a failed artifact still fails the
    # command, so a script or CI job notices it.
    return 1 if failed else 0


def run_stages(prepared: Prepared, started: float | None = None) -> dict:
    """The four stages over a prepared run folder (each skips finished work); the report."""
    from edgekd import stages
    from edgekd.console import console, distill_table

    started = time.perf_counter() if started is None else started
    recipe, run_dir, timings = prepared.recipe, prepared.run_dir, prepared.timings
    console.print(f"data: {prepared.data.summary()}")
    console.rule("1/4 distill")
    result = distill_stage(prepared)
    console.print(_table_of(recipe, distill_table)(result.teacher_metrics, result.student_metrics))
    console.rule("2/4 export + verify")
    timings["export"] = _timed(lambda: stages.export_stage(recipe, prepared.data, run_dir))
    console.rule("3/4 bench")
    timings["bench"] = _timed(lambda: stages.bench_stage(recipe, run_dir))
    console.rule("4/4 report")
    start = time.perf_counter()
    report = stages.report_stage(run_dir, timings)
    timings["report"] = time.perf_counter() - start
    timings["total"] = time.perf_counter() - started
    return report


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start
