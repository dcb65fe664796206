"""OpenVINO exporter: IR (.xml + .bin) via `openvino.convert_model`, fp16 weights, NNCF int8.

- fp32: the PyTorch model traced by `openvino.convert_model` with dynamic batch and sequence
  dimensions; logits are the only output.
- fp16: the same graph saved with `compress_to_fp16` (fp16 weights; the CPU plugin computes in
  f32 unless told otherwise).
- int8-dynamic: `nncf.compress_weights` (int8 weights, data-free; activations stay float and
  are handled by the plugin at run time) — OpenVINO's analogue of dynamic quantisation.
- int8-static: `nncf.quantize` with `ModelType.TRANSFORMER` on the calibration examples.
- bf16: the fp32 graph, run by the CPU plugin in bf16 (`INFERENCE_PRECISION_HINT: bf16`, set by
  the runtime adapter). Only on CPUs with native bf16 (AVX512-BF16 or AMX); elsewhere refused.
  fp32 is always run as f32: bf16 is never a silent substitute for it.

A causal LM (a task with `GENERATIVE`) is exported with a KV cache by optimum-intel
(`text-generation-with-past`, stateful: the cache is the infer request's internal state, the
IR's inputs are input_ids, attention_mask, position_ids and beam_idx), then
- fp32: saved as is (optimum's size-based int8 compression is turned off: `OVConfig(dtype=
  "fp32")`), with the KV cache pinned to f32 in the IR's runtime options.
- fp16: fp16 weights (`compress_to_fp16`); f16 KV cache (optimum's runtime option).
- int8-dynamic: `nncf.compress_weights(INT8_ASYM)`, data-free; int4: `INT4_ASYM` with a group
  size of `INT4_GROUP_SIZE` or the largest power of two that divides every weight's input width
  (embeddings and the LM head stay int8, nncf's backup precision), all weights in int4 or the
  recipe's `export.int4_ratio` of them, data-free or (`export.int4_data_aware`) with AWQ and
  scale estimation on training text.
  Both drop optimum's f16 KV-cache option, as optimum-intel does for a compressed model, so the
  CPU plugin's own default (a u8 cache on x86) applies.
"""


from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.benchmarks.environment import installed_versions
from edgekd.errors import EdgekdError
from edgekd.exporters.verify import conversion_error

FORMAT = "openvino"
PRECISIONS = ("fp32", "fp16", "bf16", "int8-dynamic", "int8-static")
LM_PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int4")
OPTIONS = ("int4_group_size", "int4_ratio", "int4_data_aware")   # recipe export.* it honours
INT4_GROUP_SIZE = 128
# Below this an int4 group is no better than a per-channel scale (-1) and costs more to store.
MIN_INT4_GROUP = 16
# optimum-intel's OVModelFor*.from_pretrained(folder) recognises a converted folder by this
# name, so the export folder loads with the ecosystem's own classes as it is.
ARTIFACT = "openvino_model.xml"
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def runtime_missing(precision: str | None = None) -> str | None:
    """Why this format (and precision) cannot be used here, or None."""
    for module, package in (("openvino", "openvino"), ("nncf", "nncf")):
        try:
            __import__(module)
        except ImportError as exc:
            return f"{package} is not installed ({exc}); pip install 'edgekd[openvino]'"
    if precision == "bf16" and not cpu_has_bf16():
        return ("this CPU has no native bf16 (avx512_bf16 or amx_bf16), so OpenVINO would "
                "emulate it; export bf16 on a CPU that has it")
    return None


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU computes bf16 natively (x86 AVX512-BF16 or AMX-BF16)."""
    from edgekd.exporters.onnx import cpu_flags

    return any(flag in cpu_flags(cpuinfo) for flag in BF16_FLAGS)


def export(model_dir: Path, out_dir: Path, precision: str, *, seq_len: int,
           calibration: dict[str, np.ndarray] | None, task, options: dict | None = None) -> dict:
    """Write `out_dir/model.xml` + `model.bin` for `precision`; return export.json's part.
    `options` (`OPTIONS`) shape a causal LM's int4 weights (see `_compress_lm_weights`)."""
    import openvino as ov

    if getattr(task, "GENERATIVE", False):
        return _export_lm(Path(model_dir), Path(out_dir), precision, seq_len, options or {},
                          calibration)
    if precision not in PRECISIONS:
        raise EdgekdError(f"openvino cannot export precision {precision}")
    model, names = _convert(Path(model_dir), seq_len, task)
    settings: dict = {"dynamic_axes": ["batch", "sequence"]}
    if precision == "int8-dynamic":
        model = _compress_weights(model)
        settings.update({"quantization": "nncf.compress_weights", "mode": "int8_asym"})
    elif precision == "int8-static":
        if not calibration:
            raise EdgekdError("openvino int8-static needs calibration examples (--data)")
        model, n = _quantize(model, names, calibration)
        settings.update({"quantization": "nncf.quantize", "model_type": "transformer",
                         "calibration_samples": n, "preset": "performance"})
    try:
        ov.save_model(model, str(Path(out_dir) / ARTIFACT), compress_to_fp16=precision == "fp16")
    except Exception as exc:  # the converter raises many types; all mean "cannot save"
        raise conversion_error("openvino", "saving the IR", exc) from None
    if precision == "fp16":
        settings["weights"] = "fp16"
    if precision == "bf16":
        settings["weights"] = "fp32 (computed in bf16 by the CPU plugin)"
    return {"artifact": ARTIFACT, "batch_size": None, "input_names": names,
            "tools": installed_versions("openvino", "nncf", "torch", "transformers"), "settings": settings}


def _convert(model_dir: Path, seq_len: int, task):
    import openvino as ov
    import torch

    model = task.load_reference(model_dir)
    names = list(task.input_names(model, model_dir))
    example = {n: torch.ones((2, seq_len), dtype=torch.long) for n in names}
    example["token_type_ids" if "token_type_ids" in example else "input_ids"] *= 0
    dynamic = [ov.PartialShape([-1, -1])] * len(names)
    try:
        with torch.no_grad():
            ov_model = ov.convert_model(task.conversion_module(model, tuple(names)),
                                        example_input=example, input=list(zip(names, dynamic)))
    except Exception as exc:  # the converter's message names the unsupported operator
        raise conversion_error("openvino", f"conversion of {model_dir}", exc) from None
    for port, name in zip(ov_model.inputs, names):
        port.get_tensor().set_names({name})
    ov_model.outputs[0].get_tensor().set_names({"logits"})
    return ov_model, names


def _compress_weights(model):
    import nncf

    try:
        return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    except Exception as exc:
        raise conversion_error("openvino", "int8 weight compression", exc) from None


def _quantize(model, names: list[str], calibration: dict[str, np.ndarray]):
    import nncf

    missing = [n for n in names if n not in calibration]
    if missing:
        raise EdgekdError(f"openvino int8-static: calibration data lacks inputs {missing}")
    n = len(calibration[names[0]])
    items = [{k: np.asarray(calibration[k][i:i + 1], dtype=np.int64) for k in names}
             for i in range(n)]
    try:
        quantized = nncf.quantize(model, nncf.Dataset(items), subset_size=n,
                                  model_type=nncf.ModelType.TRANSFORMER,
                                  preset=nncf.QuantizationPreset.PERFORMANCE)
    except Exception as exc:
        raise conversion_error("openvino", "int8-static quantisation", exc) from None
    return quantized, n


def _export_lm(model_dir: Path, out_dir: Path, precision: str, seq_len: int, options: dict,
               calibration: dict[str, np.ndarray] | None = None) -> dict:
    """A stateful IR with a KV cache (optimum-intel), compressed for `precision`; only
    openvino_model.xml + .bin are kept (the bundle adds the tokenizer and config). int4 groups
    are `int4_group_size` weights (which must divide the widths) or, unset, `int4_group_size()`'s."""
    import tempfile

    import openvino as ov

    group_size = options.get("int4_group_size")
    if precision not in LM_PRECISIONS:
        raise EdgekdError(f"openvino cannot export a causal LM in {precision} "
                          f"(supported: {', '.join(LM_PRECISIONS)})")
    group = None
    if precision == "int4":
        widths = _weight_widths(model_dir)
        group = int4_group_size(widths) if group_size is None else group_size
        if group > 0 and any(w % group for w in widths):
            raise EdgekdError(f"openvino int4: export.int4_group_size {group} does not divide the "
                              f"weight widths {widths}; use a divisor of them, or -1 (per channel)")
    with tempfile.TemporaryDirectory(dir=out_dir, prefix="optimum-") as raw:
        _optimum_export(model_dir, Path(raw))
        model = ov.Core().read_model(str(Path(raw) / ARTIFACT))
        settings = {"kv_cache": "stateful", "context": int(seq_len),
                    "exporter": "optimum-intel text-generation-with-past"}
        if precision in ("int8-dynamic", "int4"):
            model, compression = _compress_lm_weights(model, precision, group, options, calibration)
            _set_kv_cache_precision(model, None)
            settings.update({"quantization": "nncf.compress_weights",
                             "mode": "int4_asym" if group else "int8_asym",
                             "kv_cache_precision": "CPU plugin default (u8 on x86)"})
            if group:
                settings.update({"group_size": group,
                                 "requested_group_size": group_size or INT4_GROUP_SIZE,
                                 **compression})
        else:
            _set_kv_cache_precision(model, "f32" if precision == "fp32" else "f16")
            settings.update({"weights": precision,
                             "kv_cache_precision": "f32" if precision == "fp32" else "f16"})
        try:
            ov.save_model(model, str(out_dir / ARTIFACT), compress_to_fp16=precision == "fp16")
        except Exception as exc:  # the converter raises many types; all mean "cannot save"
            raise conversion_error("openvino", "saving the IR", exc) from None
        del model
    names = [port.get_any_name() for port in ov.Core().read_model(str(out_dir / ARTIFACT)).inputs]
    return {"artifact": ARTIFACT, "batch_size": 1, "input_names": names,
            "tools": installed_versions("openvino", "nncf", "optimum-intel", "torch",
                                        "transformers"), "settings": settings}


def _optimum_export(model_dir: Path, raw: Path) -> None:
    try:
        from optimum.exporters.openvino import main_export
        from optimum.intel.openvino.configuration import OVConfig
    except ImportError as exc:
        raise EdgekdError(f"optimum-intel is not installed ({exc}); "
                          "pip install 'edgekd[openvino]'") from None
    try:
        # dtype fp32 and no quantization config: optimum neither casts to f16 nor compresses
        # a model over 1B parameters to int8 on its own.
        main_export(str(model_dir), raw, task="text-generation-with-past", stateful=True,
                    ov_config=OVConfig(dtype="fp32"), local_files_only=True,
                    library_name="transformers")
    except Exception as exc:  # optimum and the converter raise many types
        raise conversion_error("openvino", f"conversion of {model_dir} with a KV cache", exc) \
            from None


def int4_group_size(widths: list[int], preferred: int | None = None) -> int:
    """The int4 group size: `preferred` (INT4_GROUP_SIZE), halved until it divides every weight
    input width; -1 (one scale per output channel) when that leaves fewer than MIN_INT4_GROUP."""
    group = preferred or INT4_GROUP_SIZE
    while group >= MIN_INT4_GROUP and any(w % group for w in widths):
        group //= 2
    return group if group >= MIN_INT4_GROUP else -1


def _weight_widths(model_dir: Path) -> list[int]:
    """The input widths of a decoder's weight matrices: hidden size and MLP width (config.json
    names of Llama-like models and GPT-2); empty when the config names neither."""
    import json

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    hidden = config.get("hidden_size") or config.get("n_embd")
    if not hidden:
        return []
    inner = config.get("intermediate_size") or config.get("n_inner") or 4 * int(hidden)
    return [int(hidden), int(inner)]


def _compress_lm_weights(model, precision: str, group: int | None, options: dict,
                         calibration: dict[str, np.ndarray] | None):
    """(compressed model, settings for export.json). int8: data-free INT8_ASYM. int4:
    INT4_ASYM in groups of `group`, `int4_ratio` of the weights (the rest, chosen by nncf's
    sensitivity, and the embeddings / LM head stay int8); `int4_data_aware` adds AWQ and scale
    estimation on the calibration chunks, and ranks sensitivity by the Hessian of the inputs.
    On a 20-layer SmolLM2 student: data-free ratio 1.0 +24.9 % perplexity, data-aware ratio
    1.0 +13.2 %, data-aware ratio 0.5 +4.6 % (int8 +0.7 %)."""
    import nncf

    if precision == "int8-dynamic":
        kwargs, settings = {"mode": nncf.CompressWeightsMode.INT8_ASYM}, {}
    else:
        ratio = float(options.get("int4_ratio") or 1.0)
        kwargs = {"mode": nncf.CompressWeightsMode.INT4_ASYM, "group_size": group, "ratio": ratio}
        settings = {"ratio": ratio, "backup_mode": "int8_asym (embeddings, lm head"
                    + (", the least int4-tolerant layers)" if ratio < 1 else ")")}
        if options.get("int4_data_aware"):
            items = _lm_calibration_items(calibration)
            kwargs.update(dataset=nncf.Dataset(items), subset_size=len(items), awq=True,
                          scale_estimation=True)
            if ratio < 1:
                kwargs["sensitivity_metric"] = nncf.SensitivityMetric.HESSIAN_INPUT_ACTIVATION
            settings["data_aware"] = {
                "awq": True, "scale_estimation": True, "calibration_chunks": len(items),
                "sensitivity": "hessian_input_activation" if ratio < 1 else None}
    try:
        return nncf.compress_weights(model, **kwargs), settings
    except Exception as exc:
        raise conversion_error("openvino", f"{precision} weight compression", exc) from None


def _lm_calibration_items(calibration: dict[str, np.ndarray] | None) -> list[dict]:
    """The stateful IR's inputs for each calibration chunk (nncf resets the state per item)."""
    if not calibration or not len(calibration.get("input_ids", ())):
        raise EdgekdError("openvino int4 data-aware needs calibration text (a recipe's training split)")
    from edgekd.benchmarks.runtime_openvino import stateful_lm_feed

    return [stateful_lm_feed(ids) for ids in np.asarray(calibration["input_ids"], np.int64)]


def _set_kv_cache_precision(model, precision: str | None) -> None:
    """Write (or with None, remove) the KV cache precision in the IR's runtime options, which
    the CPU plugin applies unless the caller sets it: so every consumer (edgekd's adapter,
    optimum-intel, openvino-genai) stores the cache alike."""
    options = dict(model.get_rt_info("runtime_options").value) \
        if model.has_rt_info("runtime_options") else {}
    options.pop("KV_CACHE_PRECISION", None)
    if precision:
        options["KV_CACHE_PRECISION"] = precision
    model.set_rt_info(options, "runtime_options")
