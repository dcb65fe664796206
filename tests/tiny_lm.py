"""Tiny causal LMs and text for the causal-LM tests (no network): a byte-level BPE tokenizer
trained here, random-init Llama (with GQA) and GPT-2 saved with `save_pretrained`, plain-text
data with a learnable pattern, and a causal-LM recipe pointing at them."""

from __future__ import annotations

import random
from pathlib import Path

import yaml

WORDS = ("the cat sat on a mat while dogs ran far away from big red cars and small birds sang "
         "songs about rivers hills and old towns").split()


def sentence(rng: random.Random) -> str:
    """A short sentence whose word order is mostly predictable (pairs follow each other)."""
    start = rng.randrange(len(WORDS) - 6)
    return " ".join(WORDS[start:start + rng.randint(4, 8)]) + "."


def make_text_data(folder: Path, texts: int = 60, seed: int = 0) -> Path:
    """Write `folder/<i>.txt`: plain texts of a few sentences each (no label folders)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(texts):
        body = " ".join(sentence(rng) for _ in range(rng.randint(3, 7)))
        (folder / f"{i:03d}.txt").write_text(body + "\n", encoding="utf-8")
    return folder


def lm_tokenizer():
    """A byte-level BPE tokenizer of ~420 tokens trained on the generated sentences."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(1)
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    # words the generated text never uses, so a trimmed vocabulary has tokens to drop
    unused = ["zebra quantum violin", "glacier umbrella pyramid", "jazz oxygen knight"] * 40
    backend.train_from_iterator([sentence(rng) for _ in range(400)] + unused, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>",
                                   model_input_names=["input_ids", "attention_mask"])


def save_tiny_lm(folder: Path, kind: str = "llama", layers: int = 4, seed: int = 0,
                 tokenizer=None) -> Path:
    """A random-init causal LM (`llama`: 4 query / 2 KV heads; `gpt2`) + tokenizer in `folder`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or lm_tokenizer()
    torch.manual_seed(seed)
    eos = tokenizer.eos_token_id
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
            bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, tie_word_embeddings=True))
    else:
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=layers,
                                           n_head=4, n_positions=128, bos_token_id=eos,
                                           eos_token_id=eos, pad_token_id=eos))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def write_lm_recipe(folder: Path, data_dir: Path, teacher_dir: Path, **sections) -> Path:
    """A causal-LM recipe: 2 of the teacher's layers, 32-token chunks, forward KL, 2 epochs;
    `sections` replace or extend top-level sections (e.g. student=..., distill=...)."""
    recipe = {
        "name": "tiny-lm", "task": "causal-lm",
        "data": {"path": str(data_dir), "max_length": 32, "split": {"validation": 0.0, "test": 0.2}},
        "teacher": {"model": str(teacher_dir)},
        "student": {"from_teacher": {"layers": [0, 3]}},
        "distill": {"kd": "forward_kl", "alpha": 0.5, "temperature": 1.0, "top_k": 8, "epochs": 2,
                    "learning_rate": 5e-3, "batch_size": 8, "eval_texts": 8, "eval_prompts": 4},
        "export": {"formats": [], "precisions": []},
    }
    for key, value in sections.items():
        recipe[key] = {**recipe[key], **value} if isinstance(value, dict) and key in recipe else value
    path = Path(folder) / "tiny-lm.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


# Run on "the device": only runtimes.py and the format's adapter, torch unimportable.
DEVICE_SCRIPT = """\
import json, sys
sys.modules['torch'] = None
sys.modules['transformers'] = None
import numpy as np, runtimes
gen, _ = runtimes.open_generator({artifact!r}, **{options!r})
prompts = json.load(open('prompts.json'))
rows = [runtimes.greedy(gen, np.array(p), {new_tokens}).tokens.tolist() for p in prompts]
assert 'torch' not in {{m.split('.')[0] for m, v in sys.modules.items() if v}}
print(json.dumps(rows))
"""


def greedy_without_torch(artifact: Path, prompts, new_tokens: int, workdir: Path,
                         **options) -> list[list[int]]:
    """Greedy tokens of each prompt from `artifact`, as a device computes them: runtimes.py and
    the format's adapter copied alone into `workdir`, a fresh process in which torch and
    transformers cannot be imported (the script fails if torch got imported anyway).
    `options` go to `runtimes.open_generator` (precision, threads)."""
    import json
    import shutil
    import subprocess
    import sys

    from edgekd.benchmarks import runtimes

    fmt = runtimes.format_of(str(artifact))
    for module in (runtimes, runtimes.module_for(fmt)):
        shutil.copy(module.__file__, workdir)
    (Path(workdir) / "prompts.json").write_text(json.dumps([[int(t) for t in p] for p in prompts]))
    script = DEVICE_SCRIPT.format(artifact=str(artifact), options=options, new_tokens=new_tokens)
    done = subprocess.run([sys.executable, "-c", script], cwd=workdir, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
