"""TFLite post-training quantization with ai-edge-quantizer, applied to a float `.tflite`.

Each edgekd precision maps to one of ai-edge-quantizer's own recipes:

- `fp16`: weight-only with the `float_casting` algorithm at 16 bits (fp16 weights, fp32 ops);
- `int8-dynamic`: `recipe.dynamic_wi8_afp32()` (int8 channelwise weights; the kernels quantize
  activations on the fly);
- `int8-static`: `recipe.static_wi8_ai8()` plus calibration (int8 weights and activations),
  with int8 embedding tables added (see `make_recipe`).

The quantizer works on the float flatbuffer, so the expensive PyTorch conversion is done once
and every precision is derived from it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError, first_line

SIGNATURE = "serving_default"  # the signature name litert_torch gives the default model entry

RECIPE_NAMES = {
    "fp16": "weight_only_wf16_afp32 (float_casting)",
    "int8-dynamic": "dynamic_wi8_afp32",
    "int8-static": "static_wi8_ai8 + dynamic_wi8 EMBEDDING_LOOKUP",
}


def make_recipe(precision: str):
    """The ai-edge-quantizer recipe (a list of op configs) for `precision`."""
    from ai_edge_quantizer import qtyping, recipe, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    if precision == "int8-dynamic":
        return recipe.dynamic_wi8_afp32()
    if precision == "int8-static":
        # static_wi8_ai8 leaves EMBEDDING_LOOKUP tables in float (their input is integer ids, so
        # there is no activation to calibrate); for BERT those tables are half the model
        # (MiniLM-L6: 47 of 91 MB), so they get int8 weights as in the dynamic recipe.
        manager = recipe_manager.RecipeManager()
        manager.load_quantization_recipe(recipe.static_wi8_ai8())
        manager.add_dynamic_config(regex=".*", num_bits=8,
                                   operation_name=qtyping.TFLOperationName.EMBEDDING_LOOKUP)
        return manager.get_quantization_recipe()
    if precision == "fp16":
        # The library has no named fp16 recipe; this is the one its float_casting algorithm
        # supports: weight-only, 16-bit float weights on FC / conv / embedding ops.
        manager = recipe_manager.RecipeManager()
        manager.add_weight_only_config(
            regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
            algorithm_key=AlgorithmName.FLOAT_CASTING)
        return manager.get_quantization_recipe()
    raise EdgekdError(f"tflite: no quantization recipe for precision '{precision}'")


def signature_inputs(model_path: Path) -> dict[str, dict]:
    """Input name -> tensor details of the model's default signature (dtype, shape)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path))
    signatures = interpreter.get_signature_list()
    if SIGNATURE not in signatures:
        raise EdgekdError(f"tflite: {model_path.name} has no '{SIGNATURE}' signature "
                          f"(found: {', '.join(signatures) or 'none'})")
    return interpreter.get_signature_runner(SIGNATURE).get_input_details()


def calibration_samples(calibration: dict[str, np.ndarray], inputs: dict[str, dict]) -> list[dict]:
    """Split [N, seq_len] int64 arrays into N single-row feeds in the dtypes the model expects
    (the model has a fixed batch of 1). Names the model lacks are ignored."""
    missing = [name for name in inputs if name not in calibration]
    if missing:
        raise EdgekdError(f"tflite: calibration data lacks '{missing[0]}' "
                          f"(has: {', '.join(sorted(calibration))})")
    arrays = {}
    for name, detail in inputs.items():
        array = np.asarray(calibration[name])
        want = tuple(int(d) for d in detail["shape"])
        if array.ndim != 2 or array.shape[1:] != want[1:]:
            raise EdgekdError(f"tflite: calibration '{name}' has shape {array.shape}; the model "
                              f"takes rows of shape {want[1:]} (seq_len must match the export)")
        arrays[name] = array.astype(detail["dtype"])
    rows = {len(a) for a in arrays.values()}
    if len(rows) != 1 or 0 in rows:
        raise EdgekdError(f"tflite: calibration arrays must be non-empty and have the same "
                          f"number of rows (got {sorted(rows)})")
    return [{name: a[i:i + 1] for name, a in arrays.items()} for i in range(rows.pop())]


def quantize(float_model: Path, out_path: Path, precision: str,
             calibration: dict[str, np.ndarray] | None = None) -> dict:
    """Quantize the float `.tflite` at `float_model` to `precision`, write `out_path`, and
    return the settings to record in export.json."""
    from ai_edge_quantizer import quantizer

    if precision == "int8-static" and calibration is None:
        raise EdgekdError("tflite int8-static needs calibration data (export.calibration_samples)")
    quant = quantizer.Quantizer(Path(float_model), make_recipe(precision))
    settings = {"quantizer_recipe": RECIPE_NAMES[precision]}
    calibration_result = None
    try:
        if quant.need_calibration:
            samples = calibration_samples(calibration, signature_inputs(Path(float_model)))
            calibration_result = quant.calibrate({SIGNATURE: samples},
                                                 num_threads=os.cpu_count() or 1)
            settings["calibration_samples"] = len(samples)
        result = quant.quantize(calibration_result, enable_progress_bar=False,
                               enable_progress_report=False)
    except EdgekdError:
        raise
    except (ValueError, RuntimeError, KeyError) as exc:
        raise EdgekdError(f"tflite {precision}: ai-edge-quantizer failed: "
                          f"{first_line(exc)}") from None
    Path(out_path).write_bytes(bytes(result.quantized_model))
    return settings
