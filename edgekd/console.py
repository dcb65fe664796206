"""Terminal output: one rich console and the small summary tables of the stages."""

from __future__ import annotations

import os

from rich.console import Console
from rich.table import Table

# Tables written to a pipe, a file or a CI log: rich would cut them at 80 columns ("…" in the
# size and accuracy cells), so a console that is not a terminal gets this width instead.
PIPED_WIDTH = 160


def make_console(stderr: bool = False, **options) -> Console:
    """A rich Console on stdout (or stderr): as wide as the terminal, or PIPED_WIDTH columns
    when the output is not a terminal and COLUMNS does not say otherwise."""
    out = Console(stderr=stderr, **options)
    if not out.is_terminal and "COLUMNS" not in os.environ and "width" not in options:
        out.width = PIPED_WIDTH
    return out


console = make_console(highlight=False)

# Library loggers whose start-up chatter says nothing to an edgekd user (optional kernels that
# a CPU build lacks, deprecation notes aimed at library authors).
QUIET_LOGGERS = ("torchao", "torch.utils._pytree", "torch._dynamo", "nncf", "absl")
# Libraries whose Python warnings (deprecations, tracer notes) are for their developers: a bad
# input must leave one line on stderr, not that line under a screenful of these.
QUIET_WARNING_MODULES = (r"(torch|torchao|transformers|optimum|litert_torch|ai_edge_\w+|nncf|openvino"
                         r"|onnx\w*|tensorflow|copyreg)(\.|$)")


def quiet_libraries() -> None:
    """Raise the noisy libraries' log level to errors and ignore their Python warnings;
    edgekd's own output is on `console`."""
    import logging
    import os
    import warnings

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # transformers sets its own level when first imported, from this variable.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", module=QUIET_WARNING_MODULES)


def distill_table(teacher: dict, student: dict) -> Table:
    """Teacher vs student: accuracy, macro-F1, retention %, parameters."""
    table = Table(title="Distillation result (test split)")
    for column in ("model", "accuracy", "macro-F1", "retention", "parameters", "train time"):
        table.add_column(column, justify="left" if column == "model" else "right")
    retention = student["accuracy"] / teacher["accuracy"] if teacher["accuracy"] else float("nan")
    table.add_row("teacher", f"{teacher['accuracy']:.4f}", f"{teacher['macro_f1']:.4f}", "100.0%",
                  f"{teacher['parameters'] / 1e6:.2f}M", f"{teacher.get('train_time_s', 0):.0f}s")
    table.add_row("student", f"{student['accuracy']:.4f}", f"{student['macro_f1']:.4f}",
                  f"{retention:.1%}", f"{student['parameters'] / 1e6:.2f}M "
                  f"({teacher['parameters'] / student['parameters']:.1f}x fewer)",
                  f"{student.get('train_time_s', 0):.0f}s")
    return table


def lm_distill_table(teacher: dict, student: dict) -> Table:
    """A causal LM's teacher vs student on the held-out split: perplexity, next-token and
    greedy agreement, parameters, time."""
    table = Table(title="Distillation result (held-out split)")
    for column in ("model", "perplexity", "next-token agr.", "greedy agr.", "parameters", "train time"):
        table.add_column(column, justify="left" if column == "model" else "right")

    def number(value, fmt):
        return format(value, fmt) if value is not None else "-"

    for name, m in (("teacher", teacher), ("student", student)):
        fewer = f" ({teacher['parameters'] / m['parameters']:.1f}x fewer)" if name == "student" else ""
        table.add_row(name, number(m.get("perplexity"), ".2f"),
                      number(m.get("next_token_agreement"), ".1%"),
                      number(m.get("greedy_agreement"), ".1%"),
                      f"{m['parameters'] / 1e6:.2f}M{fewer}", f"{m.get('train_time_s', 0):.0f}s")
    return table
