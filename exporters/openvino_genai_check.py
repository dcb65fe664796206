"""Cross-check of an OpenVINO causal-LM export with openvino-genai's own pipeline.

`genai_perf` runs the same IR (the export folder's openvino_model.xml) through
`openvino_genai.LLMPipeline` on the CPU with the same plugin settings as edgekd's runtime adapter
(`benchmarks/runtime_openvino.settings`), greedy, exactly `new_tokens` new tokens, no chat
template, and returns genai's own time to first token and time per output token. It answers
"is edgekd's Generator loop as fast as Intel's C++ pipeline on this IR?", and its tokens must
equal the Generator's for an fp32 export.

genai needs the tokenizer as OpenVINO models (openvino_tokenizer.xml, openvino_detokenizer.xml):
they are converted from the folder's Hugging Face tokenizer (the bundle's) with
openvino_tokenizers into a temporary folder, so the export folder itself is not changed.
Needs `pip install openvino-genai openvino-tokenizers` (the same release as openvino).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError

# genai's default on CPU is paged attention (its continuous-batching backend); SDPA runs the
# stateful IR as exported, like edgekd's Generator, so the two time the same computation.
ATTENTION_BACKEND = "SDPA"


def genai_perf(folder, prompt, new_tokens: int, threads: int = 1, *, precision: str = "fp32",
               runs: int = 3, attention_backend: str = ATTENTION_BACKEND) -> dict:
    """Greedy generation of `new_tokens` tokens from `prompt` (token ids, or text tokenized by
    the folder's tokenizer without a chat template) by openvino-genai on the export `folder`.
    One warm-up, then `runs` timed runs; returns {"ttft_ms", "tpot_ms"} (means over the runs of
    genai's own perf metrics), "tokens" (int64 [new_tokens]), "runtime_settings", "version"."""
    genai, ov = _import_genai()
    from edgekd.benchmarks.runtime_openvino import settings

    folder = Path(folder)
    if not (folder / "openvino_model.xml").is_file():
        raise EdgekdError(f"{folder} holds no openvino_model.xml (an OpenVINO causal-LM export)")
    options = dict(settings(precision, threads), ATTENTION_BACKEND=attention_backend)
    pipeline_config = dict(options)
    if attention_backend == "PA":
        # paged attention caches prompt prefixes across calls: the timed runs would reuse the
        # warm-up's prompt and report a prefill that never happened
        scheduler = genai.SchedulerConfig()
        scheduler.enable_prefix_caching = False
        pipeline_config["scheduler_config"] = scheduler
        options["prefix_caching"] = False
    with tempfile.TemporaryDirectory(prefix="edgekd-ov-tokenizer-") as tokenizer_dir:
        tokenizer = genai.Tokenizer(str(convert_tokenizer(folder, Path(tokenizer_dir))))
        pipe = genai.LLMPipeline(str(folder), tokenizer, "CPU", pipeline_config)
    config = greedy_config(genai, new_tokens)
    # text is tokenized here (the tokenizer's own special tokens, no chat template), so both
    # kinds of prompt give EncodedResults with the generated token ids
    inputs = tokenizer.encode(prompt) if isinstance(prompt, str) else _tokenized(genai, ov, prompt)
    pipe.generate(inputs, config)   # warm-up: first-call allocations are not the model's speed
    ttft, tpot, tokens = [], [], None
    for _ in range(max(1, int(runs))):
        result = pipe.generate(inputs, config)
        metrics = result.perf_metrics
        ttft.append(metrics.get_ttft().mean)
        tpot.append(metrics.get_tpot().mean)
        if tokens is None:
            tokens = np.asarray(result.tokens[0], dtype=np.int64)
    return {"ttft_ms": float(np.mean(ttft)), "tpot_ms": float(np.mean(tpot)),
            "tokens": tokens, "runtime_settings": options, "version": genai.__version__}


def greedy_config(genai, new_tokens: int):
    """Greedy, exactly `new_tokens` new tokens (an end-of-text token does not stop it, as in
    edgekd's greedy loop), the prompt used as given (no chat template)."""
    config = genai.GenerationConfig()
    config.do_sample = False
    config.num_beams = 1
    config.max_new_tokens = config.min_new_tokens = int(new_tokens)
    config.ignore_eos = True
    config.apply_chat_template = False
    return config


def convert_tokenizer(model_folder: Path, out_dir: Path) -> Path:
    """openvino_tokenizer.xml + openvino_detokenizer.xml in `out_dir`, converted from the Hugging
    Face tokenizer in `model_folder`; returns `out_dir`."""
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer as convert
    from transformers import AutoTokenizer

    try:
        hf_tokenizer = AutoTokenizer.from_pretrained(model_folder)
    except (OSError, ValueError) as exc:
        raise EdgekdError(f"no tokenizer in {model_folder} to convert for openvino-genai: {exc}") \
            from None
    tokenizer, detokenizer = convert(hf_tokenizer, with_detokenizer=True)
    ov.save_model(tokenizer, str(out_dir / "openvino_tokenizer.xml"))
    ov.save_model(detokenizer, str(out_dir / "openvino_detokenizer.xml"))
    return out_dir


def _tokenized(genai, ov, ids):
    ids = np.asarray(ids, dtype=np.int64).reshape(1, -1)
    if ids.size == 0:
        raise EdgekdError("openvino-genai needs a prompt of at least one token")
    return genai.TokenizedInputs(ov.Tensor(ids), ov.Tensor(np.ones_like(ids)))


def _import_genai():
    try:
        import openvino as ov
        import openvino_genai
    except ImportError as exc:
        raise EdgekdError(f"openvino-genai is not installed ({exc}); pip install "
                          "openvino-genai openvino-tokenizers (the release of your openvino)") \
            from None
    return openvino_genai, ov
