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
    """Load and check everything the run needs, then create the run folder and save the recipe."""
    from edgekd.data import load_task_data
    from edgekd.models import check_model_source, check_student_config, load_config
    from edgekd.pruning.student import check_shape
    from edgekd.tasks import get_task

    from edgekd.console import quiet_libraries

    quiet_libraries()
    recipe = load_recipe(recipe_file(args.recipe), args.overrides)
    run_dir = Path(args.out) if args.out else Path("runs") / recipe.name
    task = get_task(recipe.task)
    # Optional task hooks (a task without them gets the classifier's behaviour).
    data = getattr(task, "load_data", load_task_data)(recipe.data)
    teacher_source = check_model_source(
        getattr(task, "resolve_model", str)(recipe.teacher.model), "teacher")
    teacher_config = load_config(teacher_source)
    task.check_config(teacher_config, f"the teacher {teacher_source}")
    check_student_config(recipe.student, teacher_config)
    check_shape(recipe.student, teacher_config)
    if hasattr(task, "check_recipe"):
        task.check_recipe(recipe, teacher_source, teacher_config)
    check_run_folder(run_dir, recipe)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_recipe(recipe, run_dir / "recipe.yaml")
    return Prepared(recipe, run_dir, data, teacher_source)


def recipe_file(value: str | None):
    """A recipe argument as a path: a bare name that is no file (`smollm2-bbc`) is a built-in."""
    from edgekd.recipe import builtin_recipe_path

    if value and not Path(value).exists() and Path(value).suffix == "" and "/" not in value:
        return builtin_recipe_path(value)
    return value


def check_run_folder(run_dir: Path, recipe: Recipe) -> None:
    """Refuse to resume into a folder whose finished results came from a different recipe."""
    import yaml

    saved = run_dir / "recipe.yaml"
    if not saved.is_file():
        return
    old = yaml.safe_load(saved.read_text()) or {}
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
    from edgekd.tasks import get_task

    started = time.perf_counter()
    planned = load_recipe(recipe_file(args.recipe), args.overrides)
    # A task whose artifacts cannot be exported yet runs only its distillation, and only when
    # the recipe asks for no export (export.formats: []), so nothing is silently left out.
    distill_only = not getattr(get_task(planned.task), "EXPORTABLE", True)
    if distill_only and planned.export.formats:
        raise EdgekdError(f"export and benchmark of task '{planned.task}' are not there yet: set "
                          "export.formats to [] to distil only (or use `edgekd distill`)")
    prepared = prepare(args)
    console.rule(f"[bold]edgekd run[/] {prepared.recipe.name} -> {prepared.run_dir}")
    if distill_only:
        return _distill_only(prepared)
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


def _distill_only(prepared: Prepared) -> int:
    """`edgekd run` of a task without export yet: the distillation stage, then a clear stop."""
    from edgekd.console import console, distill_table

    recipe = prepared.recipe
    console.print(f"data: {prepared.data.summary()}")
    console.rule("1/4 distill")
    result = distill_stage(prepared)
    console.print(_table_of(recipe, distill_table)(result.teacher_metrics, result.student_metrics))
    console.print(f"[yellow]task {recipe.task}: export, bench and report are not there yet; "
                  f"stopped after distillation[/] (results in {prepared.run_dir})")
    return 0


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
