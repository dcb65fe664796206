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
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from edgekd.benchmarks.bench import bench_document, measure_round_robin, prepare
    from edgekd.checks import check_energy_meter, check_output_file
    from edgekd.console import make_console, quiet_libraries
    from edgekd.files import write_json_atomic
    from edgekd.targets.profiles import get_target

    check_measure_options(args)
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
    generate = generate_options(args)
    measurements = [prepare(a, target, threads=args.threads, batch_size=args.batch_size,
                            seq_len=args.seq_len, warmup=args.warmup,
                            min_iterations=args.min_iterations, min_time_s=args.min_time,
                            energy=args.energy, generate=generate) for a in args.artifacts]
    if target.kind != "local":  # reach it now, not after a progress line
        target.python_info(timeout_s=60)
    console = make_console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(f"bench on {target.name}", total=len(measurements) * repeats)

        def measured(i: int, entry: dict) -> None:
            lat, rep = entry["repeats"][-1]["latency_ms"], len(entry["repeats"])
            what = "TPOT p50" if entry.get("generation") else "p50"
            progress.console.print(escape(
                f"  {entry['name']} repeat {rep}/{repeats}: {what} {lat['p50']:.3f} ms, p99 "
                f"{lat['p99']:.3f} ms (n={lat['n']}){_ttft(entry)}, peak "
                f"{entry['peak_memory_mb']:.0f} MB, energy {_energy(entry)}"))
            progress.advance(task)
            if i + 1 < len(measurements) or rep < repeats:
                nxt = measurements[(i + 1) % len(measurements)]
                progress.update(task, description=f"{nxt.art.name} on {target.name} "
                                                  f"({args.threads} thr)")

        entries = measure_round_robin(measurements, repeats, on_entry=measured)
    write_json_atomic(args.out, bench_document(entries))
    console.print(f"wrote {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} to {args.out}")
    return 0


def check_measure_options(args: argparse.Namespace) -> None:
    """EdgekdError naming the first out-of-range measuring option and its value (`bench`, `ab`)."""
    at_least = [("--threads", args.threads, 1), ("--batch-size", args.batch_size, 1),
                ("--min-iterations", args.min_iterations, 1), ("--seq-len", args.seq_len, 1),
                ("--warmup", args.warmup, 0), ("--min-time", args.min_time, 0)]
    for flag, value, low in at_least:
        if value is not None and value < low:
            raise EdgekdError(f"{flag} must be >= {low}, got {value:g}")


def generate_options(args: argparse.Namespace) -> dict:
    """The generate scenario's settings (used for causal LMs only) from --prompt-lengths and
    --new-tokens; EdgekdError for a bad value."""
    from edgekd.benchmarks.generation import parse_lengths

    try:
        lengths = parse_lengths(getattr(args, "prompt_lengths", "64,256"))
    except ValueError as exc:
        raise EdgekdError(f"--prompt-lengths: {exc}") from None
    new_tokens = getattr(args, "new_tokens", 32)
    if new_tokens < 2:
        raise EdgekdError(f"--new-tokens must be >= 2, got {new_tokens}")
    return {"prompt_lengths": lengths, "new_tokens": new_tokens}


def _ttft(entry: dict) -> str:
    generation = entry.get("generation")
    if not generation:
        return ""
    return ", TTFT p50 " + ", ".join(f"{p['ttft_ms']['p50']:.1f} ms @{p['prompt_len']}"
                                     for p in generation["prompts"])


def _energy(entry: dict) -> str:
    if entry["energy_j"] is None:
        return "n/a"
    per = "token" if entry.get("generation") else "inference"
    return f"{entry['energy_j'] * 1000:.3f} mJ/{per} [{entry['energy_method']}]"
