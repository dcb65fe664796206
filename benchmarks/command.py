"""`edgekd bench ARTIFACT... --target T --out FILE.json`: benchmark artifacts on one target.

Every artifact is checked before the first measurement, so a typo fails in a second, not after
an hour. Each artifact is measured `--repeats` times, each time in a fresh runner process,
round-robin over the artifacts (repeat 1 of each, then repeat 2, ...) so that drift over time
falls on all of them alike. The result file is written once, atomically, after every entry succeeded: a failure
leaves no file that could pass for a complete result.
"""

from __future__ import annotations

import argparse

from edgekd.errors import EdgekdError


def bench_command(args: argparse.Namespace) -> int:
    """Handler of `edgekd bench`."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from edgekd.benchmarks.bench import bench_document, measure_round_robin, prepare
    from edgekd.checks import check_energy_meter, check_output_file
    from edgekd.console import quiet_libraries
    from edgekd.files import write_json_atomic
    from edgekd.targets.profiles import get_target

    if args.threads < 1 or args.batch_size < 1 or args.min_iterations < 1 or args.warmup < 0 \
            or args.min_time < 0 or (args.seq_len is not None and args.seq_len < 1):
        raise EdgekdError("--threads, --batch-size, --min-iterations, --seq-len must be >= 1; "
                          "--warmup and --min-time >= 0")
    if not args.out.endswith(".json"):
        raise EdgekdError(f"--out must name a .json file, got {args.out}")
    repeats = getattr(args, "repeats", 3)
    if repeats < 1:
        raise EdgekdError(f"--repeats must be >= 1, got {repeats}")
    # Everything that can be refused is refused before the first measurement: the result file's
    # place, the energy meter, every artifact (and the files it needs), the target.
    quiet_libraries()
    check_output_file(args.out, "--out")
    check_energy_meter(args.energy, "--energy")
    target = get_target(args.target)
    if args.energy == "auto" and target.profile is not None:
        check_energy_meter(target.profile.energy, f"target profile {target.profile.path}")
    measurements = [prepare(a, target, threads=args.threads, batch_size=args.batch_size,
                            seq_len=args.seq_len, warmup=args.warmup,
                            min_iterations=args.min_iterations, min_time_s=args.min_time,
                            energy=args.energy) for a in args.artifacts]
    if target.kind != "local":  # reach it now, not after a progress line
        target.python_info(timeout_s=60)
    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(f"bench on {target.name}", total=len(measurements) * repeats)

        def measured(i: int, entry: dict) -> None:
            lat, rep = entry["repeats"][-1]["latency_ms"], len(entry["repeats"])
            progress.console.print(escape(
                f"  {entry['name']} repeat {rep}/{repeats}: p50 {lat['p50']:.3f} ms, p99 "
                f"{lat['p99']:.3f} ms (n={lat['n']}), peak {entry['peak_memory_mb']:.0f} MB, "
                f"energy {_energy(entry)}"))
            progress.advance(task)
            if i + 1 < len(measurements) or rep < repeats:
                nxt = measurements[(i + 1) % len(measurements)]
                progress.update(task, description=f"{nxt.art.name} on {target.name} "
                                                  f"({args.threads} thr)")

        entries = measure_round_robin(measurements, repeats, on_entry=measured)
    write_json_atomic(args.out, bench_document(entries))
    console.print(f"wrote {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} to {args.out}")
    return 0


def _energy(entry: dict) -> str:
    if entry["energy_j"] is None:
        return "n/a"
    return f"{entry['energy_j'] * 1000:.3f} mJ/inference [{entry['energy_method']}]"
