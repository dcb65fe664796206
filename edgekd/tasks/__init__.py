"""Tasks: one module per task (`text_classification.py`, ...), chosen by the recipe's `task:`.

The recipe value is the module name with dashes (`task: text-classification` loads
`tasks/text_classification.py`), the way `format: onnx` loads `exporters/onnx.py`: adding a task
is adding a file. A task owns everything that depends on what the model computes: the model
class, how examples become model inputs, the reference outputs, the quality metrics, the parity
measure between an artifact and its source, and the module wrapped for conversion. Outside this
package no code names a model class.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from edgekd.errors import EdgekdError

DEFAULT_TASK = "text-classification"


def available_tasks() -> list[str]:
    """Every task module in this package, by its recipe name (no import needed)."""
    return sorted(info.name.replace("_", "-") for info in pkgutil.iter_modules(__path__)
                  if not info.name.startswith("_"))


def get_task(name: str | None = None) -> ModuleType:
    """The module of task `name` (the default task when None), or EdgekdError listing the known."""
    name = name or DEFAULT_TASK
    if name not in available_tasks():
        raise EdgekdError(f"unknown task '{name}' (known: {', '.join(available_tasks())})")
    return importlib.import_module(f"{__name__}.{name.replace('-', '_')}")


def task_for_model(config, name: str | None, where: str) -> ModuleType:
    """The task to export a model with: `name` when given (EdgekdError when the model is not
    one that task handles, e.g. `text-classification` for a Llama), else the first task that
    accepts the model's config, the default task first (a `*ForCausalLM` folder is a
    `causal-lm` without being told)."""
    if name:
        task = get_task(name)
        task.check_config(config, where)
        return task
    names = [DEFAULT_TASK] + [n for n in available_tasks() if n != DEFAULT_TASK]
    first_error = None
    for candidate in names:
        task = get_task(candidate)
        try:
            task.check_config(config, where)
        except EdgekdError as exc:
            first_error = first_error or exc
            continue
        return task
    raise first_error
