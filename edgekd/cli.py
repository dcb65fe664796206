"""The `edgekd` command line: one parser, one handler per subcommand.

Handlers are named as "module:function" strings and imported only when their subcommand runs,
so `edgekd --help` never imports torch, transformers or a runtime. A handler takes the parsed
arguments and returns the exit code. `EdgekdError` (a user mistake) becomes one line on stderr
and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from edgekd import __version__
from edgekd.errors import EdgekdError
from edgekd.exporters import available_formats
from edgekd.tasks import available_tasks


def _add_recipe_options(parser: argparse.ArgumentParser, recipe_required: bool) -> None:
    if recipe_required:
        parser.add_argument("recipe", help="recipe YAML file")
    else:
        parser.add_argument("recipe", nargs="?", default=None,
                            help="recipe YAML file (default: the built-in BBC News recipe)")
    parser.add_argument("--out", help="run folder (default: runs/<recipe name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. --set distill.epochs=1 (repeatable)")


def _add_measure_options(parser: argparse.ArgumentParser, min_time: float, time_help: str) -> None:
    """Where and how an artifact is measured: shared by `bench` and `ab`."""
    parser.add_argument("--target", default="local",
                        help="local, ssh://user@host:port or a profile name")
    parser.add_argument("--threads", type=int, default=1,
                        help="the runtime's intra-op threads (default 1)")
    parser.add_argument("--batch-size", type=int, default=1, help="examples per call (default 1)")
    parser.add_argument("--seq-len", type=int, default=None,
                        help="tokens per example (default: the artifact's exported length)")
    parser.add_argument("--warmup", type=int, default=10,
                        help="untimed calls first (default 10; causal LMs: generations, at most 3)")
    parser.add_argument("--min-iterations", type=int, default=50,
                        help="timed calls at least (default 50; causal LMs: generations per "
                             "prompt length)")
    parser.add_argument("--min-time", type=float, default=min_time,
                        help=f"{time_help} of timed calls at least (default {min_time:g})")


def _add_generate_options(parser: argparse.ArgumentParser) -> None:
    """How a causal LM is measured generating: shared by `bench` and `ab`."""
    parser.add_argument("--prompt-lengths", default="64,256",
                        help="causal LMs (measured generating): prompt lengths in tokens, "
                             "comma-separated (default 64,256)")
    parser.add_argument("--new-tokens", type=int, default=32,
                        help="causal LMs: new tokens generated per prompt, greedy (default 32)")


def _add_gate_outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rule", default="estimate", choices=("estimate", "bound"),
                        help="estimate (default): a significant slowdown whose estimate exceeds "
                             "--max-slowdown; bound: only a slowdown shown to exceed it "
                             "(stricter, less power; docs/regression-gate.md)")
    parser.add_argument("--md", metavar="FILE", help="write a Markdown summary (for a PR comment)")
    parser.add_argument("--json", metavar="FILE", help="write the verdicts as JSON")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (cheap: imports nothing heavy)."""
    parser = argparse.ArgumentParser(
        prog="edgekd",
        description="Distil a compact student from a teacher, export it to ONNX / OpenVINO / "
                    "TFLite, and benchmark teacher against student on edge targets.")
    parser.add_argument("--version", action="version", version=f"edgekd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="the whole path: distil, export, verify, bench, report")
    _add_recipe_options(p, recipe_required=False)
    p.set_defaults(handler="edgekd.pipeline:run_command")

    p = sub.add_parser("distill", help="fine-tune the teacher (if asked) and distil the student")
    _add_recipe_options(p, recipe_required=False)
    p.set_defaults(handler="edgekd.pipeline:distill_command")

    p = sub.add_parser("sweep", help="several student shapes through the whole path, one "
                       "comparison report with Pareto fronts")
    p.add_argument("sweep", help="sweep YAML (a base recipe and its variants) or a built-in "
                   "name, e.g. bbc-news-sweep")
    p.add_argument("--out", help="sweep folder (default: runs/<sweep name>); one run folder per variant")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the base recipe for every variant (repeatable)")
    p.set_defaults(handler="edgekd.sweep:sweep_command")

    p = sub.add_parser("export", help="export a model folder to ONNX / OpenVINO / TFLite, verified")
    p.add_argument("model_dir", help="a Hugging Face model folder (save_pretrained)")
    p.add_argument("--format", required=True, choices=available_formats(),
                   help="one of the exporter modules found: %(choices)s")
    p.add_argument("--precision", default="fp32",
                   help="fp32 (default), fp16, int8-dynamic, int8-static, or another the format "
                        "exports (OpenVINO: bf16)")
    p.add_argument("--task", default=None, choices=available_tasks(),
                   help="what the model computes (default: from the model's config: "
                        "causal-lm for a *ForCausalLM, else text-classification)")
    p.add_argument("--data", help="recipe YAML or data path: inputs for verification and calibration")
    p.add_argument("--seq-len", type=int, default=None, help="sequence length (default: the recipe's "
                   "data.max_length, else 128)")
    p.add_argument("--calibration-samples", type=int, default=100,
                   help="examples nncf / the converters calibrate on (int8-static, data-aware "
                        "int4; default 100)")
    p.add_argument("--int4-group-size", type=int, default=None,
                   help="int4 weights per scale (a power of two, or -1 per output channel; "
                        "default: the format's)")
    p.add_argument("--int4-ratio", type=float, default=None,
                   help="OpenVINO int4: the share of weights in int4, the rest int8 (default 1)")
    p.add_argument("--int4-data-aware", action="store_true",
                   help="OpenVINO int4: AWQ + scale estimation on the recipe's training text "
                        "(needs --data RECIPE)")
    p.add_argument("--out", required=True, help="output folder for the artifact and export.json")
    p.set_defaults(handler="edgekd.exporters.command:export_command")

    p = sub.add_parser("bench", help="benchmark artifacts on a target")
    p.add_argument("artifacts", nargs="+", help="artifact files or export folders")
    _add_measure_options(p, 5.0, "seconds")
    p.add_argument("--energy", default="auto", help="auto, rapl, nvml, hwmon, command, estimate, none")
    p.add_argument("--repeats", type=int, default=3,
                   help="fresh-process measurements of each artifact, interleaved (default 3; "
                        "5 for a CI gate, docs/regression-gate.md)")
    _add_generate_options(p)
    p.add_argument("--out", required=True, help="result JSON file")
    p.set_defaults(handler="edgekd.benchmarks.command:bench_command")

    p = sub.add_parser("predict", help="classify text with an export bundle (same runtime and "
                       "settings it was verified with)")
    p.add_argument("artifact", help="an export folder (runs/<run>/exports/<name>/, or an unpacked "
                   "`edgekd pack` bundle) or the artifact file inside one")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="text to classify; text longer than "
                   "the exported sequence length is truncated to it (a note says so)")
    p.add_argument("--file", help="more texts, one per line (blank lines are skipped)")
    p.add_argument("--top-k", type=int, default=3, help="labels shown per text (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--target", default=None, help="only 'local' for now: predict runs on this "
                   "machine (to try a board, copy the bundle there with edgekd pack)")
    p.set_defaults(handler="edgekd.predict:predict_command")

    p = sub.add_parser("pack", help="pack one export bundle of a run, with its report entry and "
                       "checksums, into a .zip or .tar.gz")
    p.add_argument("run_dir", help="run folder (runs/<name>)")
    p.add_argument("--artifact", required=True, help="export name, e.g. student-onnx-int8-dynamic")
    p.add_argument("--out", required=True, help="archive file: FILE.zip or FILE.tar.gz")
    p.set_defaults(handler="edgekd.pack:pack_command")

    p = sub.add_parser("targets", help="list or check target device profiles")
    tsub = p.add_subparsers(dest="targets_command", metavar="ACTION", required=True)
    tsub.add_parser("list", help="list known target profiles")
    c = tsub.add_parser("check", help="reachability, Python version, runtimes on a target")
    c.add_argument("name", help="profile name, profile file, local or ssh://user@host:port")
    p.set_defaults(handler="edgekd.targets.command:targets_command")

    p = sub.add_parser("report", help="rebuild the report of one run, or compare runs across targets")
    p.add_argument("run_dirs", nargs="+", help="run folders: one is rebuilt (report.md, "
                   "report.html, report.json); several are also compared, target against target")
    p.add_argument("--out", help="output folder for the hardware comparison (default: "
                   "hardware-comparison/ beside the first run folder)")
    p.set_defaults(handler="edgekd.report.build:report_command")

    p = sub.add_parser("compare", help="latency regression gate: baseline report vs candidate")
    p.add_argument("baseline", help="baseline report.json (or bench result JSON)")
    p.add_argument("candidate", help="candidate report.json (or bench result JSON)")
    p.add_argument("--metric", default="p50", help="p50 (default; also: median), p90, p95, p99, mean")
    p.add_argument("--max-slowdown", default="5%", help="threshold, e.g. 5%% or 0.05")
    p.add_argument("--allow-different-env", action="store_true",
                   help="compare even when CPU, cores or runtime versions differ")
    _add_gate_outputs(p)
    p.set_defaults(handler="edgekd.report.compare:compare_command")

    p = sub.add_parser("ab", help="paired A/B latency gate: measure baseline and candidate now, "
                                  "alternately (the recommended CI mode)")
    p.add_argument("baseline", help="baseline artifact (file or export folder)")
    p.add_argument("candidate", help="candidate artifact (file or export folder)")
    p.add_argument("--pairs", type=int, default=5, help="A/B pairs, each two fresh processes (default 5)")
    _add_measure_options(p, 2.0, "seconds per process")
    _add_generate_options(p)
    p.add_argument("--metric", default="p50", help="p50 (default; also: median), p90, p95, p99, mean")
    p.add_argument("--max-slowdown", default="5%", help="threshold, e.g. 5%% or 0.05")
    p.add_argument("--out", help="also write both sides' entries (edgekd.report/1 JSON)")
    _add_gate_outputs(p)
    p.set_defaults(handler="edgekd.report.ab:ab_command")
    for command_parser in sub.choices.values():  # main() refuses an unknown option with it
        command_parser.set_defaults(command_parser=command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `edgekd` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # refused by the subcommand's own parser: its usage line, not the top-level one
        (getattr(args, "command_parser", None) or parser).error(
            f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    module_name, _, func_name = args.handler.partition(":")
    try:
        handler = getattr(importlib.import_module(module_name), func_name)
        return int(handler(args) or 0)
    except EdgekdError as exc:
        print(f"edgekd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgekd {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
