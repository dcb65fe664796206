"""Causal language modelling: a Hugging Face decoder-only LM (Llama, SmolLM2, Qwen2, GPT-2, ...).

Inputs are token ids and an attention mask; the output is next-token logits at every position.
Quality on held-out text is perplexity, top-1 next-token agreement with the teacher, and the
agreement of greedy continuations with the teacher's (token match rate over the first
`GREEDY_NEW_TOKENS` new tokens of held-out prompts). Parity between an artifact and its PyTorch
source is greedy-token parity: the share of identical generated tokens (`parity`, on token
arrays, so an exporter can use it on whatever runtime generated the tokens).

`reference_outputs` is therefore not logits but the greedy tokens an artifact must reproduce.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError, first_line

TASK = "causal-lm"
ONNX_TASK = "text-generation-with-past"     # optimum's name for the export with a KV cache
INPUT_NAMES = ("input_ids", "attention_mask")
GREEDY_NEW_TOKENS = 32
GENERATED_EXAMPLES = 8
# Share of greedy tokens that must equal PyTorch's (fp32/fp16: the 99 %). One early flip
# changes every later token, so for quantized weights greedy agreement is reported with a low bar
# and the perplexity on held-out text (MAX_PERPLEXITY_INCREASE over the source's) decides; a
# recipe may set both for the quantized precisions (export.min_token_agreement,
# export.max_perplexity_increase).
# Quantized weights: the rate is reported and the perplexity decides (measured on a 20-layer
# SmolLM2 student: OpenVINO int8 weights +0.4 % perplexity at 48 % greedy agreement; ONNX's
# dynamic int8, activations quantized too, +50 % perplexity at 34 %).
MIN_AGREEMENT = {"fp32": 0.99, "fp16": 0.99, "bf16": 0.90, "int8-dynamic": 0.0,
                 "int8-static": 0.0, "int4": 0.0}
MAX_PERPLEXITY_INCREASE = {"fp32": 0.01, "fp16": 0.02, "bf16": 0.05, "int8-dynamic": 0.10,
                           "int8-static": 0.10, "int4": 0.25}
QUANTIZED = ("int8-dynamic", "int8-static", "int4")
BUILTIN_TEACHERS = ("builtin:smollm2",)
# The teacher is measured as PyTorch (its own KV cache): converting a 135M-parameter teacher to
# every format would cost more of the run's time than it tells.
TEACHER_EXPORTS = ()
DISTILL_STAGE = "edgekd.distillation.lm_stage:run_lm_distill"   # called by stage.run_distill
GENERATIVE = True       # artifacts are exported with a KV cache and verified by generating


def resolve_model(value: str) -> str:
    """`builtin:smollm2` -> the folder of the SmolLM2-135M-Instruct teacher (built once from its
    GGUF by `edgekd.llm_teacher.prepare_smollm2`); any other value unchanged."""
    if not value.startswith("builtin:"):
        return value
    if value not in BUILTIN_TEACHERS:
        raise EdgekdError(f"unknown built-in model '{value}' (known: {', '.join(BUILTIN_TEACHERS)})")
    from edgekd.llm_teacher import prepare_smollm2

    return str(prepare_smollm2())


def load_data(cfg):
    """Plain text for language modelling (labels, if the source has any, are ignored)."""
    from edgekd.data import load_text_data

    return load_text_data(cfg)


def check_config(config, where: str) -> None:
    """Refuse a model that is not a causal LM (e.g. an encoder classifier) before any work starts."""
    architectures = getattr(config, "architectures", None) or []
    if not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        kind = architectures[0] if architectures else getattr(config, "model_type", "unknown")
        raise EdgekdError(f"{where} is not a causal language model ({kind}); a {TASK} recipe "
                          "needs a decoder such as Llama, SmolLM2 or GPT-2")


def check_recipe(recipe, teacher_source: str, teacher_config) -> None:
    """Before any work: the teacher's weights must be readable, and the student's vocabulary
    must map index to index onto the teacher's (same size and the same tokens; a trimmed
    student gets its map from `student.vocabulary`)."""
    from edgekd.models import check_model_source, load_config

    _check_weights(teacher_source, "the teacher")
    student = recipe.student
    size = teacher_config.vocab_size
    if student.config is not None and student.config.get("vocab_size", size) != size:
        raise EdgekdError(f"student.config.vocab_size={student.config['vocab_size']} does not map "
                          f"onto the teacher's vocabulary of {size}; use student.vocabulary to trim")
    if student.model is None:
        return
    source = check_model_source(student.model, "student")
    config = load_config(source)
    check_config(config, f"the student {source}")
    _check_weights(source, "the student")
    if config.vocab_size != size or _vocabulary(source) != _vocabulary(teacher_source):
        raise EdgekdError(f"the student {source} has another vocabulary than the teacher "
                          f"({config.vocab_size} vs {size} tokens, or other tokens): token-level "
                          "distillation needs the teacher's tokenizer")


def _vocabulary(source: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source).get_vocab()
    except (OSError, ValueError, TypeError) as exc:
        raise EdgekdError(f"cannot load the tokenizer of '{source}': {first_line(exc)}") from None


def _check_weights(source: str, what: str) -> None:
    """A local folder's weight files must exist and their headers parse (a truncated or
    corrupt file is caught here, not after the run folder exists)."""
    folder = Path(source)
    if not folder.is_dir():
        return                                   # a hub id: loading will tell
    files = sorted(folder.glob("*.safetensors"))
    if not files and not list(folder.glob("*.bin")):
        raise EdgekdError(f"{what} folder {source} holds no weights (*.safetensors or *.bin)")
    from safetensors import safe_open

    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as exc:  # safetensors raises its own error types
            raise EdgekdError(f"{what} weights {file} are unreadable: {first_line(exc)}") from None


def load_model(source: str, labels=None, what: str = "model", attn_implementation: str | None = None):
    """The causal LM for training, from a folder or id (`labels` is accepted and ignored, so the
    call matches the classification task's)."""
    from transformers import AutoModelForCausalLM

    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **extra)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise EdgekdError(f"cannot load {what} from '{source}': {first_line(exc)}") from None
    return model.float()


def load_gguf(folder: str, file_name: str, **kwargs):
    """The causal LM dequantized from a GGUF file in `folder` (transformers' own reader)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, gguf_file=file_name, **kwargs)


def load_reference(model_dir: Path, attn_implementation: str | None = None):
    """The saved causal LM in fp32 eval mode: the verification reference, what exporters convert."""
    return load_model(str(model_dir), what="the model", attn_implementation=attn_implementation).eval()


def input_names(model, model_dir: Path) -> tuple[str, ...]:
    """Token ids and attention mask (positions follow from the mask)."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    if "input_ids" not in accepted:
        raise EdgekdError(f"{type(model).__name__} does not take input_ids")
    return tuple(n for n in INPUT_NAMES if n in accepted)


def pad_batch(sequences: list[list[int]], pad_id: int, left: bool = False):
    """int64 (ids, mask) [n, longest] of token lists; left padding for prompts to generate from."""
    longest = max(len(s) for s in sequences)
    ids = np.full((len(sequences), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), longest), dtype=np.int64)
    for row, seq in enumerate(sequences):
        span = slice(longest - len(seq), longest) if left else slice(0, len(seq))
        ids[row, span], mask[row, span] = seq, 1
    return ids, mask


def greedy_tokens(model, prompts: dict[str, np.ndarray], new_tokens: int = GREEDY_NEW_TOKENS,
                  batch_size: int = 8, pad_id: int = 0) -> np.ndarray:
    """Greedy continuations [n, new_tokens] of left-padded prompts (`input_ids`,
    `attention_mask`); exactly `new_tokens` each (an end token does not stop it, so every row
    is comparable position by position)."""
    import torch

    rows, device = [], next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, len(prompts["input_ids"]), batch_size):
            ids, mask = (torch.from_numpy(np.asarray(prompts[key][i:i + batch_size], np.int64))
                         .to(device) for key in ("input_ids", "attention_mask"))
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                 pad_token_id=pad_id)
            rows.append(out[:, ids.shape[1]:].cpu().numpy())
    return np.concatenate(rows).astype(np.int64)


def reference_outputs(model, inputs: dict[str, np.ndarray], threads: int = 1) -> np.ndarray:
    """PyTorch's greedy tokens [n, GREEDY_NEW_TOKENS] from the prompts in `inputs` (left-padded
    `input_ids` + `attention_mask`; padding is stripped, one prompt at a time): what an artifact
    must reproduce. It runs the same greedy loop (`runtimes.greedy`) as every artifact does,
    through the PyTorch runtime's Generator, so fp32 artifacts match token for token."""
    from edgekd.benchmarks import runtimes
    from edgekd.benchmarks.runtime_pytorch import Generator

    try:
        return runtimes.greedy_rows(Generator.from_model(model, threads), inputs, GREEDY_NEW_TOKENS)
    except runtimes.ArtifactError as exc:
        raise EdgekdError(f"the PyTorch reference cannot generate from the eval prompts: {exc}") from None


def logits_of(model, chunks: list[list[int]], pad_id: int = 0, batch_size: int = 8,
              keep=None) -> list[np.ndarray]:
    """Per chunk, the model's logits [len, V] (float32), right padding; `keep(logits)` may cut
    the vocabulary axis first (e.g. to teacher ids of a trimmed student), which saves memory."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(chunks), batch_size):
            batch = chunks[i:i + batch_size]
            ids, mask = pad_batch(batch, pad_id)
            logits = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.float()
            logits = keep(logits) if keep is not None else logits
            out += [logits[j, :len(seq)].numpy() for j, seq in enumerate(batch)]
    return out


def quality(outputs: list[np.ndarray], labels: list[np.ndarray]) -> dict:
    """Perplexity exp(mean -log q(y_{t+1} | y_<=t)) of per-sequence logits `outputs` ([len, V]
    each) on the token ids `labels` ([len] each), over every next-token prediction; when
    `labels` carries `reference_predictions` (`lm_eval.HeldOutChunks`), the summed NLL is
    divided by the teacher's count on the same texts instead (own count: `perplexity_own_tokens`)."""
    total, count = 0.0, 0
    for logits, ids in zip(outputs, labels):
        if len(ids) < 2:
            continue
        z = np.asarray(logits[:-1], np.float64)
        log_norm = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
        total += float((log_norm - z[np.arange(len(z)), np.asarray(ids[1:])]).sum())
        count += len(z)
    if count == 0:
        return {"perplexity": None, "tokens": 0}
    reference = getattr(labels, "reference_predictions", None)
    if reference:
        return {"perplexity": float(np.exp(total / reference)), "tokens": reference,
                "perplexity_own_tokens": float(np.exp(total / count)), "own_tokens": count}
    return {"perplexity": float(np.exp(total / count)), "tokens": count}


def next_token_agreement(outputs: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """Share of positions where the top-1 next token of `outputs` equals the reference's (both
    per-sequence logits over the same vocabulary, or top-1 id arrays)."""
    def top1(a):
        a = np.asarray(a)
        return a.argmax(-1) if a.ndim == 2 else a
    same = [top1(o) == top1(r) for o, r in zip(outputs, reference)]
    return float(np.concatenate(same).mean()) if same else 0.0


def token_match_rate(reference: np.ndarray, got: np.ndarray) -> float:
    """Share of positions where two token arrays of the same shape hold the same id."""
    reference, got = np.asarray(reference), np.asarray(got)
    if reference.shape != got.shape:
        raise EdgekdError(f"generated tokens of shape {tuple(got.shape)}, reference "
                          f"{tuple(reference.shape)}")
    return float((reference == got).mean()) if reference.size else 0.0


def thresholds(precision: str, recipe_export=None) -> dict:
    """{"min_agreement", "max_perplexity_increase"} for `precision`: the defaults above, or for
    the quantized precisions the recipe's export.min_token_agreement /
    export.max_perplexity_increase when it sets them."""
    out = {"min_agreement": MIN_AGREEMENT.get(precision, 0.0),
           "max_perplexity_increase": MAX_PERPLEXITY_INCREASE.get(precision, 0.25)}
    if recipe_export is not None and precision in QUANTIZED:
        for key, field in (("min_agreement", "min_token_agreement"),
                           ("max_perplexity_increase", "max_perplexity_increase")):
            value = getattr(recipe_export, field, None)
            out[key] = out[key] if value is None else float(value)
    return out


def parity(reference: np.ndarray, got: np.ndarray, precision: str,
           limits: dict | None = None) -> dict:
    """Greedy-token parity of an artifact: the share of its generated tokens equal to PyTorch's
    ([n prompts, new tokens] each), and the threshold for `precision` (`limits`: thresholds())."""
    limits = limits or thresholds(precision)
    return {"token_agreement": token_match_rate(reference, got), "n": int(len(reference)),
            "new_tokens": int(np.asarray(reference).shape[-1]),
            "min_agreement": limits["min_agreement"],
            "max_perplexity_increase": limits["max_perplexity_increase"]}


def perplexity_error(metrics: dict, parity_result: dict) -> str | None:
    """One line when the artifact's perplexity on the held-out texts exceeds its source's by more
    than the precision's budget, else None."""
    got, source = metrics.get("perplexity"), metrics.get("source_perplexity")
    limit = parity_result.get("max_perplexity_increase")
    if got is None or not source or limit is None or got <= source * (1 + limit):
        return None
    return (f"perplexity {got:.2f} is {got / source - 1:.1%} above the PyTorch source's "
            f"{source:.2f} (at most {limit:.0%} allowed)")


def parity_error(result: dict) -> str | None:
    """One line saying why a `parity` result fails its threshold, or None when it passes."""
    if result["token_agreement"] < result["min_agreement"]:
        return (f"greedy-token agreement with PyTorch {result['token_agreement']:.1%} is below "
                f"{result['min_agreement']:.0%}")
    return None


def generated_inputs(model_dir: Path, seq_len: int, n: int = GENERATED_EXAMPLES,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Prompts without task data: random non-special ids, left-padded with varied lengths (so
    masking is exercised), each short enough to leave room for GREEDY_NEW_TOKENS in a context
    of `seq_len`."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise EdgekdError(f"cannot load the model in {model_dir}: {first_line(exc)}") from None
    special = set(tokenizer.all_special_ids)
    body = np.array([i for i in range(min(len(tokenizer), config.vocab_size)) if i not in special])
    rng = np.random.default_rng(seed)
    longest = max(2, seq_len - GREEDY_NEW_TOKENS)
    lengths = rng.integers(max(2, longest // 4), longest + 1, size=n)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    ids, mask = pad_batch([list(rng.choice(body, size=int(k))) for k in lengths], pad, left=True)
    return {"input_ids": ids, "attention_mask": mask}


def distill_table(teacher: dict, student: dict):
    """Teacher vs student on the held-out split (`console.lm_distill_table`)."""
    from edgekd.console import lm_distill_table

    return lm_distill_table(teacher, student)


def export_seq_len(recipe) -> int:
    """The context an exported LM must hold: the longest benchmark prompt plus its new tokens
    (and never less than verification's prompts plus GREEDY_NEW_TOKENS)."""
    return max(recipe.bench.prompt_lengths) + max(recipe.bench.new_tokens, GREEDY_NEW_TOKENS)


def export_inputs(tokenizer, data, recipe, role_dir: Path | None = None) -> dict:
    """What export verifies an LM artifact on and what its benchmark feeds it, in `tokenizer`'s
    ids: `eval_inputs` = held-out prompts (the first max(bench.prompt_lengths) tokens of
    held-out texts, left-padded; the runner cuts each length from them) and `eval_labels` =
    held-out chunks scored for perplexity: for a run folder's `role_dir`, the very chunks the
    teacher and the PyTorch student were scored on (`lm_eval.run_reference_chunks`); else
    data.max_length-token chunks cut in the model's own tokens. `calibration`: training chunks,
    when export.int4_data_aware asks for them."""
    texts = [e.text for e in data.test]
    longest = max(recipe.bench.prompt_lengths)
    encoded = tokenizer(texts, add_special_tokens=True)["input_ids"]
    prompts = [ids[:longest] for ids in encoded if len(ids) >= longest][:recipe.distill.eval_prompts]
    if not prompts:
        raise EdgekdError(f"bench.prompt_lengths asks for prompts of {longest} tokens, but the "
                          f"longest held-out text has {max(map(len, encoded), default=0)}: use "
                          "shorter prompt lengths (or longer texts)")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    ids, mask = pad_batch(prompts, pad, left=True)
    from edgekd.distillation.lm_eval import calibration_ids, heldout_sets, run_reference_chunks

    labels = run_reference_chunks(role_dir, tokenizer) if role_dir is not None else None
    if labels is None:   # the same texts and seed as distillation's, cut in this tokenizer's tokens
        chunks, _ = heldout_sets(tokenizer, texts, recipe.data.max_length,
                                 recipe.distill.eval_texts, 0, seed=recipe.distill.seed)
        labels = [np.asarray(c, dtype=np.int64) for c in chunks]
    calibration = calibration_ids(tokenizer, [e.text for e in data.train], recipe.data.max_length,
                                  recipe.export.calibration_samples, seed=recipe.distill.seed) \
        if recipe.export.int4_data_aware else ()
    return {"eval_inputs": {"input_ids": ids, "attention_mask": mask}, "eval_labels": labels,
            "calibration": {"input_ids": calibration} if len(calibration) else None}


def operations(config: dict, seq_len: int, batch_size: int = 1) -> float | None:
    """Floating-point operations of one decode step (one output token) at a context of
    `seq_len` tokens, in GFLOP (2 per multiply-add), from config.json: per layer the Q and output
    projections (2·h·a), the K and V projections (2·h·a_kv, grouped-query attention shares them),
    the attention over the context (2·seq·a), the gated feed-forward block (3·h·f for Llama-like
    models, 2·h·f for GPT-2), plus the LM head (h·V). Norms, rotary embeddings and softmax are
    left out. None for a config this formula does not describe. Decode time per token is what a
    generation benchmark's TPOT measures, so GFLOP/s here is per output token."""
    hidden = config.get("hidden_size") or config.get("n_embd")
    layers = config.get("num_hidden_layers") or config.get("n_layer")
    heads = config.get("num_attention_heads") or config.get("n_head")
    vocab = config.get("vocab_size")
    if not (hidden and layers and heads and vocab):
        return None
    head_size = config.get("head_dim") or hidden // heads
    kv_heads = config.get("num_key_value_heads") or heads
    gated = "intermediate_size" in config
    ffn = config.get("intermediate_size") or config.get("n_inner") or 4 * hidden
    attention, kv = heads * head_size, kv_heads * head_size
    per_layer = 2 * hidden * attention + 2 * hidden * kv + 2 * seq_len * attention
    per_layer += (3 if gated else 2) * hidden * ffn
    macs = layers * per_layer + hidden * vocab
    return 2 * macs * batch_size / 1e9
