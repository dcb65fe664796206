"""Cross-check of an OpenVINO causal-LM export with openvino-genai's own pipeline.

`GenaiPipeline` runs the same IR (the export folder's openvino_model.xml) through
`openvino_genai.LLMPipeline` on the CPU with the same plugin settings as edgekd's runtime adapter
(`benchmarks/runtime_openvino.settings`), greedy, exactly `new_tokens` new tokens, no chat
template, and reports genai's own time to first token and time per output token.
`side_by_side` times it and edgekd's Generator in alternating rounds. It answers "is edgekd's
Generator loop as fast as Intel's C++ pipeline on this IR?", and its tokens must equal the
Generator's for an fp32 export.

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


class GenaiPipeline:
    """openvino-genai's `LLMPipeline` on the export `folder`, greedy, with the same plugin
    settings as edgekd's runtime adapter; `run(prompt, new_tokens)` is one timed generation."""

    def __init__(self, folder, threads: int = 1, *, precision: str = "fp32",
                 attention_backend: str = ATTENTION_BACKEND):
        genai, ov = _import_genai()
        from edgekd.benchmarks.runtime_openvino import settings

        folder = Path(folder)
        if not (folder / "openvino_model.xml").is_file():
            raise EdgekdError(f"{folder} holds no openvino_model.xml (an OpenVINO causal-LM export)")
        self.genai, self.ov, self.version = genai, ov, genai.__version__
        options = dict(settings(precision, threads), ATTENTION_BACKEND=attention_backend)
        pipeline_config = dict(options)
        if attention_backend == "PA":
            # paged attention caches prompt prefixes across calls: the timed runs would reuse
            # the warm-up's prompt and report a prefill that never happened
            scheduler = genai.SchedulerConfig()
            scheduler.enable_prefix_caching = False
            pipeline_config["scheduler_config"] = scheduler
            options["prefix_caching"] = False
        self.runtime_settings = options
        with tempfile.TemporaryDirectory(prefix="edgekd-ov-tokenizer-") as tokenizer_dir:
            self.tokenizer = genai.Tokenizer(str(convert_tokenizer(folder, Path(tokenizer_dir))))
            self.pipe = genai.LLMPipeline(str(folder), self.tokenizer, "CPU", **pipeline_config)

    def run(self, prompt, new_tokens: int) -> dict:
        """One greedy generation of `prompt` (token ids, or text tokenized by the folder's
        tokenizer without a chat template): genai's own {"ttft_ms", "tpot_ms"} and "tokens"."""
        # text is tokenized here (the tokenizer's own special tokens, no chat template), so both
        # kinds of prompt give EncodedResults with the generated token ids
        inputs = (self.tokenizer.encode(prompt) if isinstance(prompt, str)
                  else _tokenized(self.genai, self.ov, prompt))
        result = self.pipe.generate(inputs, greedy_config(self.genai, new_tokens))
        metrics = result.perf_metrics
        return {"ttft_ms": metrics.get_ttft().mean, "tpot_ms": metrics.get_tpot().mean,
                "tokens": np.asarray(result.tokens[0], dtype=np.int64)}


def genai_perf(folder, prompt, new_tokens: int, threads: int = 1, *, precision: str = "fp32",
               runs: int = 3, attention_backend: str = ATTENTION_BACKEND) -> dict:
    """Greedy generation of `new_tokens` tokens from `prompt` by openvino-genai on the export
    `folder`. One warm-up, then `runs` timed runs; returns {"ttft_ms", "tpot_ms"} (means over
    the runs of genai's own perf metrics), "tokens" (int64 [new_tokens]), "runtime_settings",
    "version"."""
    pipeline = GenaiPipeline(folder, threads, precision=precision,
                             attention_backend=attention_backend)
    pipeline.run(prompt, new_tokens)   # warm-up: first-call allocations are not the model's speed
    results = [pipeline.run(prompt, new_tokens) for _ in range(max(1, int(runs)))]
    return {"ttft_ms": float(np.mean([r["ttft_ms"] for r in results])),
            "tpot_ms": float(np.mean([r["tpot_ms"] for r in results])),
            "tokens": results[0]["tokens"], "runtime_settings": pipeline.runtime_settings,
            "version": pipeline.version}


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


def side_by_side(folder, prompt_ids, new_tokens: int, threads: int = 1, *,
                 precision: str = "fp32", runs: int = 5) -> dict:
    """openvino-genai and edgekd's own Generator and greedy loop (what the runner's generate
    scenario times) on the same IR and prompt, one warm-up each, then `runs` rounds that
    alternate the two, so that a change in the machine's load falls on both alike. Returns
    {"genai": {...}, "edgekd": {...}}, each with the medians of "ttft_ms" and "tpot_ms" (a
    run's TPOT: the mean of its steps) and the first run's "tokens"."""
    from edgekd.benchmarks import runtimes

    pipeline = GenaiPipeline(folder, threads, precision=precision)
    generator, _ = runtimes.open_generator(str(Path(folder) / "openvino_model.xml"),
                                           precision=precision, threads=threads, fmt="openvino",
                                           last_logits_only=True)

    def ours() -> dict:
        result = runtimes.greedy(generator, prompt_ids, new_tokens)
        return {"ttft_ms": result.ttft_ms, "tpot_ms": float(np.mean(result.step_ms)),
                "tokens": np.asarray(result.tokens, dtype=np.int64)}

    timed = {"genai": lambda: pipeline.run(prompt_ids, new_tokens), "edgekd": ours}
    for run in timed.values():
        run()   # warm-up
    rounds = [{name: run() for name, run in timed.items()} for _ in range(max(1, int(runs)))]
    return {name: {"ttft_ms": float(np.median([r[name]["ttft_ms"] for r in rounds])),
                   "tpot_ms": float(np.median([r[name]["tpot_ms"] for r in rounds])),
                   "tokens": rounds[0][name]["tokens"]}
            for name in timed}


def main(argv=None) -> int:
    """`python -m edgekd.exporters.openvino_genai_check EXPORT_FOLDER`: TTFT and TPOT of the
    same IR and prompt through openvino-genai and through edgekd, side by side."""
    import argparse
    import json

    from edgekd.benchmarks.generation import load_prompts

    p = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    p.add_argument("folder", help="an OpenVINO causal-LM export folder (openvino_model.xml, inputs.npz)")
    p.add_argument("--prompt-length", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    folder = Path(args.folder)
    export = json.loads((folder / "export.json").read_text()) if (folder / "export.json").is_file() else {}
    precision = export.get("precision", "fp32")
    try:
        prompt = load_prompts(str(folder / "inputs.npz"), [args.prompt_length])[args.prompt_length][0]
    except (OSError, ValueError) as exc:
        raise EdgekdError(f"{folder}: no prompt of {args.prompt_length} tokens ({exc})") from None
    both = side_by_side(folder, prompt, args.new_tokens, args.threads, precision=precision,
                        runs=args.runs)
    genai, ours = both["genai"], both["edgekd"]
    n = min(len(genai["tokens"]), len(ours["tokens"]))
    same = float(np.mean(genai["tokens"][:n] == ours["tokens"][:n])) if n else 0.0
    print(f"{folder.name}: prompt {args.prompt_length} tokens, {args.new_tokens} new, "
          f"{args.threads} thread(s), medians of {args.runs} alternating runs")
    for what in ("ttft_ms", "tpot_ms"):
        print(f"  {what[:4].upper()}: openvino-genai {genai[what]:.2f} ms, edgekd {ours[what]:.2f} ms "
              f"({ours[what] / genai[what] - 1:+.1%})")
    print(f"  same greedy tokens: {same:.0%}")
    return 0


if __name__ == "__main__":
    import sys

    try:
        sys.exit(main())
    except EdgekdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
