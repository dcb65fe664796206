"""`edgekd targets list` and `edgekd targets check NAME`."""

from __future__ import annotations

import argparse

from edgekd.errors import EdgekdError

RUNTIMES = ("onnxruntime", "openvino", "ai_edge_litert", "tflite_runtime", "tensorflow", "torch")


def targets_command(args: argparse.Namespace) -> int:
    """Handler of `edgekd targets list|check`."""
    if args.targets_command == "list":
        return list_targets()
    return check_target(args.name)


def list_targets() -> int:
    """Print `local` and every profile in the search path."""
    from rich.table import Table

    from edgekd.console import make_console
    from edgekd.targets.profiles import find_profiles, profile_dirs

    table = Table(title="edgekd targets")
    for col in ("name", "target", "python", "threads", "notes", "file"):
        table.add_column(col)
    table.add_row("local", "local", "(this Python)", "1", "this host", "(built in)")
    for p in find_profiles():
        table.add_row(p.name, p.target, p.python or "(default)", ",".join(map(str, p.threads)),
                      p.notes or "", p.path)
    console = make_console()
    console.print(table)
    console.print("profiles are read from: " + ", ".join(f"{d}/*.yaml" for d in profile_dirs()))
    return 0


def check_target(name: str) -> int:
    """Reach the target, report its Python and which runtimes it has; exit 1 if it has none."""
    from edgekd.targets.profiles import get_target

    target = get_target(name)
    info = target.python_info()
    packages = info.get("packages", {})
    print(f"target {target.name}: reachable")
    print(f"  python   {info.get('python')} ({info.get('executable')}), {info.get('system')} "
          f"{info.get('machine')}, {info.get('cores')} cores")
    print(f"  numpy    {packages.get('numpy') or 'MISSING (pip install numpy)'}")
    found = {r: packages.get(r) for r in RUNTIMES if packages.get(r)}
    for runtime in RUNTIMES:
        print(f"  {runtime:<14} {packages.get(runtime) or '-'}")
    if not packages.get("numpy"):
        raise EdgekdError(f"target {target.name}: numpy is missing there; the runner needs it")
    if not found:
        raise EdgekdError(f"target {target.name}: no runtime installed (pip install onnxruntime, "
                          "openvino or ai-edge-litert)")
    return 0
