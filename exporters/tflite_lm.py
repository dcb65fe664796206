"""TFLite export of a causal LM with a KV cache, through litert-torch's generative API.

litert-torch 0.10's generic Hugging Face export needs transformers 5, so the model is rebuilt
here from the student's config as the generative API's `DecoderOnlyModel` (the layers its
SmolLM / TinyLlama examples use) and the Hugging Face weights are loaded into it by name with
its `ModelLoader`. The file holds one `prefill_<n>` signature per prefill length and one
`decode` signature; each takes `tokens`, `input_pos` and the whole KV cache (`kv_cache_k_<i>`,
`kv_cache_v_<i>`, [1, context, kv_heads, head_dim] per layer) and returns `logits` and the
updated cache, which the runtime feeds back (see `Generator` in benchmarks/runtime_tflite.py).
Prefill is exported with logits for every position (`output_logits_on_prefill`), so the
perplexity of an artifact needs no teacher forcing.

The Llama family (Llama, SmolLM/SmolLM2, TinyLlama: RMSNorm, rotary positions, gated SiLU
MLP, GQA) maps onto these layers as is; GPT-2 needs its learned positions added to the token
embeddings (a small subclass) and its checkpoint renamed (Conv1D weights transposed, the fused
QKV split). Other architectures are refused in one line.

Precisions are litert-torch's own recipes, applied while converting: weights in fp16, int8 (per
channel) or int4 (blocks of 32). Activations are float tensors; the dynamic-range kernels
(int8, int4) quantize them on the fly inside each matrix multiply.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

from edgekd.benchmarks.environment import installed_versions
from edgekd.errors import EdgekdError, first_line

ARTIFACT = "model.tflite"
LM_PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int4")
# edgekd precision -> litert-torch's quantization recipe name (converter.QuantizationName):
# fp16 weights; int8 weights per channel; int4 weights in blocks of INT4_GROUP_SIZE along the
# input dimension. Activations are never calibrated (no int8-static).
RECIPES = {"fp32": "none", "fp16": "fp16", "int8-dynamic": "dynamic_int8",
           "int4": "dynamic_int4_block32"}
INT4_GROUP_SIZE = 32
# the int4 block sizes litert-torch's converter has a recipe for
INT4_RECIPES = {32: "dynamic_int4_block32", 128: "dynamic_int4_block128"}
SUPPORTED_MODEL_TYPES = ("llama", "gpt2")
# Prefill signatures: these lengths below the context, plus the context itself, so a prompt
# runs in the smallest one that fits (a 64-token prompt does not pay for a full-context
# prefill, which would inflate its time to first token). Signatures share the weights: each
# one adds graph, not size, and some conversion time.
PREFILL_LENGTHS = (32, 64, 128, 256, 512, 1024)


def prefill_lengths(context: int) -> list[int]:
    """The prefill signature lengths of an artifact whose KV cache holds `context` tokens."""
    return sorted({n for n in PREFILL_LENGTHS if n < context} | {context})


def export(model_dir: Path, out_dir: Path, precision: str, *, seq_len: int, task,
           group_size: int | None = None) -> dict:
    """Convert the causal LM in `model_dir` to `out_dir/model.tflite` with a KV cache of
    `seq_len` (the context: prompt + new tokens) entries; return the export.json fields.
    `input_names` are the task's (prompt ids and mask, what inputs.npz keeps for the runner):
    the graph's own inputs (tokens, input_pos, the cache) belong to the Generator.
    `group_size`: int4's block size (32 or 128; default INT4_GROUP_SIZE)."""
    if precision not in LM_PRECISIONS:
        raise EdgekdError(f"tflite cannot export {precision} for a causal LM (supported: "
                          f"{', '.join(LM_PRECISIONS)})")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    group = group_size or INT4_GROUP_SIZE
    if precision == "int4" and group not in INT4_RECIPES:
        raise EdgekdError(f"tflite int4 has blocks of {' or '.join(map(str, INT4_RECIPES))} weights "
                          f"(litert-torch's recipes), not {group}: set export.int4_group_size to one")
    quantize = INT4_RECIPES[group] if precision == "int4" else RECIPES[precision]
    config = model_config(_hf_config(model_dir), seq_len)
    if precision == "int4":
        _check_int4_blocks(config, group)
    api = generative_api()
    model = _build_model(api, model_dir, config, seq_len)
    lengths = prefill_lengths(seq_len)
    with tempfile.TemporaryDirectory(prefix="edgekd-tflite-lm-") as tmp, _quiet_converter():
        try:
            written = api.converter.convert_to_tflite(
                model, output_path=tmp, output_name_prefix="model",
                prefill_seq_len=lengths, kv_cache_max_len=seq_len,
                quantize=quantize, config=config,
                export_config=api.converter.ExportConfig(output_logits_on_prefill=True))
        except Exception as exc:  # the converter raises many types; all mean "cannot convert"
            raise EdgekdError(f"tflite: litert-torch conversion of the causal LM failed: "
                              f"{first_line(exc)}") from exc
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(written, out_dir / ARTIFACT)
    tools = installed_versions("torch", "transformers", "litert-torch", "ai-edge-litert")
    settings = {"kv_cache": "litert-torch generative: prefill_<n> + decode signatures, KV cache "
                            "passed in and out ([1, context, kv_heads, head_dim] per layer)",
                "context": seq_len, "prefill_lengths": lengths, "batch_size": 1,
                "prefill_logits": "every position", "quantization": quantize}
    if precision == "int4":
        settings["group_size"] = group
    return {"artifact": ARTIFACT, "batch_size": 1, "input_names": list(task.INPUT_NAMES),
            "tools": tools, "settings": settings}


# litert-torch prints a line per conversion step and the MLIR converter its own info lines:
# edgekd's stage progress is the one display. (ai-edge-quantizer's progress bars read their
# settings when tqdm is imported, so they still show.)
_QUIET_ENV = {"LITERT_TORCH_SHOW_PROGRESS": "n", "TF_CPP_MIN_LOG_LEVEL": "2"}


@contextlib.contextmanager
def _quiet_converter():
    saved = {name: os.environ.get(name) for name in _QUIET_ENV}
    os.environ.update(_QUIET_ENV)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def generative_api() -> types.SimpleNamespace:
    """litert-torch's generative modules (cfg, converter, loader, model_builder). Its lora.py
    imports `tensorflow.lite.python.schema_py_generated`; without TensorFlow, that name is
    aliased to ai-edge-litert's identical copy while lora.py alone is imported. Everything else
    is imported before or after: a fake `tensorflow` seen by another import (torch._dynamo
    probes for TensorFlow) or left in sys.modules would pass for an installed TensorFlow."""
    import litert_torch  # noqa: F401  (the converter core and torch._dynamo, alias-free)
    import torch._dynamo  # noqa: F401

    stubs = {}
    if importlib.util.find_spec("tensorflow") is None:
        from ai_edge_litert import schema_py_generated

        stubs = {name: types.ModuleType(name)
                 for name in ("tensorflow", "tensorflow.lite", "tensorflow.lite.python")}
        stubs["tensorflow.lite.python.schema_py_generated"] = schema_py_generated
        stubs = {name: module for name, module in stubs.items() if name not in sys.modules}
    sys.modules.update(stubs)
    try:
        import litert_torch.generative.layers.lora  # noqa: F401
    finally:
        for name in stubs:
            sys.modules.pop(name, None)
    from litert_torch.generative.layers import model_config as cfg
    from litert_torch.generative.utilities import converter, loader, model_builder

    return types.SimpleNamespace(cfg=cfg, converter=converter, loader=loader,
                                 model_builder=model_builder)


def _hf_config(model_dir: Path):
    if not (model_dir / "config.json").is_file():
        raise EdgekdError(f"tflite: {model_dir} is not a Hugging Face model folder "
                          "(no config.json)")
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model_dir)


def model_config(hf, context: int):
    """The generative API's `ModelConfig` equivalent to a Hugging Face Llama-family or GPT-2
    config, or EdgekdError naming what is supported."""
    model_type = getattr(hf, "model_type", "unknown")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise EdgekdError(f"tflite: causal-LM export with a KV cache supports "
                          f"{', '.join(SUPPORTED_MODEL_TYPES)} models (Llama, SmolLM2, "
                          f"TinyLlama; GPT-2), not '{model_type}'; export it to onnx or openvino")
    max_positions = getattr(hf, "max_position_embeddings", None)
    if max_positions and context > max_positions:
        raise EdgekdError(f"tflite: context {context} exceeds the model's "
                          f"max_position_embeddings ({max_positions})")
    build = _llama_config if model_type == "llama" else _gpt2_config
    return build(generative_api().cfg, hf, context)


def _refuse(model: str, unsupported: list[str]) -> None:
    if unsupported:
        raise EdgekdError(f"tflite: this {model} model uses {', '.join(unsupported)}, which the "
                          "KV-cache export does not support")


def _llama_config(cfg, hf, context: int):
    """Llama: RMSNorm, rotary positions, gated SiLU MLP, grouped-query attention."""
    rope_scaling = getattr(hf, "rope_scaling", None) or {}
    rope_type = rope_scaling.get("rope_type") or rope_scaling.get("type") or "default"
    _refuse("Llama", [what for what, bad in (
        (f"rope_scaling ({rope_type})", rope_type != "default"),
        ("attention_bias", getattr(hf, "attention_bias", False)),
        (f"hidden_act={hf.hidden_act}", hf.hidden_act != "silu")) if bad])
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    norm = cfg.NormalizationConfig(type=cfg.NormalizationType.RMS_NORM, epsilon=hf.rms_norm_eps)
    block = cfg.TransformerBlockConfig(
        attn_config=cfg.AttentionConfig(
            num_heads=hf.num_attention_heads, head_dim=head_dim,
            num_query_groups=getattr(hf, "num_key_value_heads", None) or hf.num_attention_heads,
            rotary_base=getattr(hf, "rope_theta", 10000.0), rotary_percentage=1.0),
        ff_config=cfg.FeedForwardConfig(
            type=cfg.FeedForwardType.GATED, activation=cfg.ActivationConfig(
                cfg.ActivationType.SILU),
            intermediate_size=hf.intermediate_size, use_bias=getattr(hf, "mlp_bias", False)),
        pre_attention_norm_config=norm, post_attention_norm_config=norm)
    return cfg.ModelConfig(
        vocab_size=hf.vocab_size, num_layers=hf.num_hidden_layers, max_seq_len=context,
        embedding_dim=hf.hidden_size, block_configs=block, final_norm_config=norm,
        lm_head_share_weight_with_embedding=bool(getattr(hf, "tie_word_embeddings", False)))


def _gpt2_config(cfg, hf, context: int):
    """GPT-2: LayerNorm, learned absolute positions (no rotary), a GELU MLP, biases
    everywhere, multi-head attention, the head tied to the token embedding."""
    activations = {"gelu_new": cfg.ActivationType.GELU_TANH,
                   "gelu_pytorch_tanh": cfg.ActivationType.GELU_TANH,
                   "gelu": cfg.ActivationType.GELU}
    _refuse("GPT-2", [what for what, bad in (
        (f"activation_function={hf.activation_function}",
         hf.activation_function not in activations),
        ("scale_attn_by_inverse_layer_idx", getattr(hf, "scale_attn_by_inverse_layer_idx", False)),
        ("scale_attn_weights=False", not getattr(hf, "scale_attn_weights", True)),
        ("untied lm_head", not getattr(hf, "tie_word_embeddings", True))) if bad])
    norm = cfg.NormalizationConfig(type=cfg.NormalizationType.LAYER_NORM,
                                   epsilon=hf.layer_norm_epsilon, use_bias=True)
    block = cfg.TransformerBlockConfig(
        attn_config=cfg.AttentionConfig(
            num_heads=hf.n_head, head_dim=hf.n_embd // hf.n_head, num_query_groups=hf.n_head,
            rotary_percentage=0.0, qkv_use_bias=True, output_proj_use_bias=True),
        ff_config=cfg.FeedForwardConfig(
            type=cfg.FeedForwardType.SEQUENTIAL,
            activation=cfg.ActivationConfig(activations[hf.activation_function]),
            intermediate_size=hf.n_inner or 4 * hf.n_embd, use_bias=True),
        pre_attention_norm_config=norm, post_attention_norm_config=norm)
    return cfg.ModelConfig(
        vocab_size=hf.vocab_size, num_layers=hf.n_layer, max_seq_len=context,
        embedding_dim=hf.n_embd, block_configs=block, final_norm_config=norm,
        lm_head_share_weight_with_embedding=True)


def _check_int4_blocks(config, group: int = INT4_GROUP_SIZE) -> None:
    """int4 blocks run along each matrix's input dimension, which must be a whole number of
    blocks (litert-torch fails deep in the quantizer otherwise)."""
    attn = config.block_config(0).attn_config
    sizes = {"hidden_size": config.embedding_dim,
             "intermediate_size": config.block_config(0).ff_config.intermediate_size,
             "num_attention_heads x head_dim": attn.num_heads * attn.head_dim}
    bad = [f"{name}={size}" for name, size in sizes.items() if size % group]
    if bad:
        raise EdgekdError(f"tflite int4 quantizes weights in blocks of {group}: "
                          f"{', '.join(bad)} not a multiple of {group}; export "
                          "int8-dynamic instead (or another export.int4_group_size)")


def _build_model(api, model_dir: Path, config, context: int):
    """The generative API model with the folder's weights (a tied model's checkpoint has no
    lm_head: the head shares the embedding, and the loader is told not to expect one)."""
    names = (api.model_builder.TENSOR_NAMES if config.lm_head_share_weight_with_embedding
             else api.model_builder.TENSOR_NAMES_WITH_SEPARATE_LM_HEAD)
    extra = {}
    if config.block_config(0).attn_config.rotary_percentage == 0.0:  # GPT-2
        names = dataclasses.replace(names, ff_gate_proj=None,
                                    embedding_position="model.embed_positions")
        extra = {"model_class": _gpt2_model_class(api),
                 "custom_loader": lambda path: _gpt2_as_llama_names(api, Path(path), context)}
    try:
        return api.model_builder.build_decoder_only_model(
            checkpoint_path=str(model_dir), config=config, tensor_names=names,
            mask_cache_size=context, **extra)
    except (KeyError, ValueError, RuntimeError, FileNotFoundError) as exc:
        raise EdgekdError(f"tflite: cannot load the weights of {model_dir} into the KV-cache "
                          f"model: {first_line(exc)}") from exc


def _gpt2_model_class(api):
    """DecoderOnlyModel with GPT-2's learned positions: the row of each token's position is
    added to its embedding, and no rotary embedding is built."""
    import torch

    class LearnedPositionsDecoder(api.model_builder.DecoderOnlyModel):
        def __init__(self, config, mask_cache_size: int = 0):
            super().__init__(config, mask_cache_size)
            self.tok_embedding_position = torch.nn.Parameter(
                torch.zeros(config.max_seq_len, config.embedding_dim), requires_grad=False)

        @torch.inference_mode
        def forward(self, tokens, input_pos, kv_cache, mask=None, lora=None,
                    export_config=None):
            embeds = self.tok_embedding(tokens) + torch.index_select(
                self.tok_embedding_position, 0, input_pos).unsqueeze(0)
            if mask is None:
                mask = self.mask_cache.index_select(2, input_pos)
                mask = mask[:, :, :, :kv_cache.get_max_seq_len()]
            return self._forward_with_embeds(embeds, None, mask, input_pos, kv_cache, lora,
                                             export_config)

    return LearnedPositionsDecoder


def _gpt2_as_llama_names(api, model_dir: Path, context: int) -> dict:
    """GPT-2's checkpoint under the Llama names the loader maps: Conv1D weights ([in, out])
    transposed to Linear's [out, in], the fused c_attn split into q/k/v (the loader fuses them
    again in the layout the attention expects), position rows cut to the context."""
    import glob

    load = (api.loader.load_safetensors if glob.glob(str(model_dir / "*.safetensors"))
            else api.loader.load_pytorch_statedict)
    state = {name.removeprefix("transformer."): t for name, t in load(str(model_dir)).items()}
    out = {"model.embed_tokens.weight": state["wte.weight"],
           "model.embed_positions": state["wpe.weight"][:context],
           "model.norm.weight": state["ln_f.weight"], "model.norm.bias": state["ln_f.bias"]}
    layer = 0
    while f"h.{layer}.ln_1.weight" in state:
        src, dst = f"h.{layer}.", f"model.layers.{layer}."
        q, k, v = state[src + "attn.c_attn.weight"].t().chunk(3, dim=0)
        qb, kb, vb = state[src + "attn.c_attn.bias"].chunk(3)
        for name, weight, bias in (("q_proj", q, qb), ("k_proj", k, kb), ("v_proj", v, vb)):
            out[f"{dst}self_attn.{name}.weight"], out[f"{dst}self_attn.{name}.bias"] = weight, bias
        for hf_name, name in (("attn.c_proj", "self_attn.o_proj"), ("mlp.c_fc", "mlp.up_proj"),
                              ("mlp.c_proj", "mlp.down_proj")):
            out[f"{dst}{name}.weight"] = state[f"{src}{hf_name}.weight"].t().contiguous()
            out[f"{dst}{name}.bias"] = state[f"{src}{hf_name}.bias"]
        for hf_name, name in (("ln_1", "input_layernorm"), ("ln_2", "post_attention_layernorm")):
            out[f"{dst}{name}.weight"] = state[f"{src}{hf_name}.weight"]
            out[f"{dst}{name}.bias"] = state[f"{src}{hf_name}.bias"]
        layer += 1
    return out
