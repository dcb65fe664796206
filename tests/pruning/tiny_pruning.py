"""Tiny random-init models of every pruned family and real tokenizers trained in the test.

Nothing is downloaded: configs are built here, tokenizers are trained with the `tokenizers`
library on generated sentences and wrapped in `PreTrainedTokenizerFast`.
"""

from __future__ import annotations

import random

WORDS = ("the a of and to in is was for on with as by at from model student teacher small "
         "large prune keep drop layer head token word page data train learn fast slow edge "
         "device phone chip memory speed value score result report city river mountain").split()
RARE = "xylophone quizzical jazz oxygen zephyr"  # letters x, q, j, z appear only here


def sentences(count: int, seed: int = 0, words=WORDS) -> list[str]:
    """`count` generated sentences of 6-12 words, some punctuation."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(6, 12)))
        out.append(text.capitalize() + rng.choice([".", "!", "?", ","]))
    return out


def family_model(family: str, seed: int = 0, vocab_size: int = 64, **overrides):
    """A tiny random-init model of `family`: hidden 32, 4 heads (GQA: 2 KV heads), FFN 64."""
    import torch
    import transformers as tr

    torch.manual_seed(seed)
    builders = {
        "bert": lambda: tr.BertForSequenceClassification(tr.BertConfig(
            vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=64, num_labels=3, **overrides)),
        "roberta-mlm": lambda: tr.RobertaForMaskedLM(tr.RobertaConfig(
            vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=64, **overrides)),
        "distilbert": lambda: tr.DistilBertForSequenceClassification(tr.DistilBertConfig(
            vocab_size=vocab_size, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
            max_position_embeddings=64, num_labels=3, **overrides)),
        "llama": lambda: tr.LlamaForCausalLM(tr.LlamaConfig(
            vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
            **{"tie_word_embeddings": True, **overrides})),
        "qwen2-cls": lambda: tr.Qwen2ForSequenceClassification(tr.Qwen2Config(
            vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
            num_labels=3, pad_token_id=0, **overrides)),
        "gpt2": lambda: tr.GPT2LMHeadModel(tr.GPT2Config(
            vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=64,
            **{"bos_token_id": 0, "eos_token_id": 0, **overrides})),
    }
    model = builders[family]()
    # Random-init norms are all ones/zeros; give them spread so a wrong slice shows in outputs.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1:
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


def random_batch(seed: int = 0, vocab_size: int = 64, batch: int = 3, length: int = 10) -> dict:
    """Token ids with an attention mask whose last row is padded."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab_size, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[-1, length // 2:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def wordpiece_tokenizer(texts):
    """A BERT-style WordPiece tokenizer trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=400, special_tokens=special))
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", backend.token_to_id("[CLS]")), ("[SEP]", backend.token_to_id("[SEP]"))])
    backend.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def byte_bpe_tokenizer(texts):
    """A GPT-2-style byte-level BPE tokenizer trained on `texts` (all 256 bytes in the vocab)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=700, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", unk_token="<|endoftext|>")
