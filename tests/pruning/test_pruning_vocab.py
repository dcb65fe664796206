"""Vocabulary trimming: same tokens through the id map, sliced rows, fallbacks, bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_pruning import RARE, family_model, sentences

from edgekd.errors import EdgekdError
from edgekd.pruning.tokenizer_trim import trim_tokenizer
from edgekd.pruning.vocab import (kept_teacher_logits, load_vocab_map, trim_embeddings,
                                  trim_vocabulary)

CORPUS = sentences(40, seed=7)  # the task's text: never contains the letters x, q, j, z


def encode(tokenizer, texts):
    return [tokenizer(t)["input_ids"] for t in texts]


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def test_wordpiece_student_tokenizes_kept_text_like_the_teacher(wordpiece):
    teacher = family_model("roberta-mlm", vocab_size=len(wordpiece), pad_token_id=0)
    trim = trim_vocabulary(teacher, wordpiece, CORPUS)
    assert len(trim.tokenizer) < len(wordpiece)
    for teacher_ids, student_ids in zip(encode(wordpiece, CORPUS), encode(trim.tokenizer, CORPUS)):
        assert trim.teacher_to_student[teacher_ids].tolist() == student_ids
        assert trim.student_to_teacher[student_ids].tolist() == teacher_ids
    # contiguous ids, order kept, special tokens kept and renumbered in the config
    assert np.all(np.diff(trim.student_to_teacher) > 0)
    assert trim.model.config.vocab_size == len(trim.tokenizer) == len(trim.student_to_teacher)
    assert trim.model.config.pad_token_id == trim.tokenizer.pad_token_id
    assert trim.tokenizer.convert_ids_to_tokens(trim.tokenizer.cls_token_id) == "[CLS]"


def test_wordpiece_rows_and_outputs_follow_the_map(wordpiece):
    teacher = family_model("roberta-mlm", vocab_size=len(wordpiece), pad_token_id=0)
    trim = trim_vocabulary(teacher, wordpiece, CORPUS)
    index = torch.as_tensor(trim.student_to_teacher)
    old = teacher.roberta.embeddings.word_embeddings.weight
    new = trim.model.roberta.embeddings.word_embeddings.weight
    assert torch.equal(new, old[index])
    assert torch.equal(trim.model.lm_head.bias, teacher.lm_head.bias[index])
    assert trim.model.lm_head.decoder.weight is new  # the tied MLM decoder follows the embedding
    teacher_ids = wordpiece(CORPUS[0])["input_ids"]
    student_ids = trim.tokenizer(CORPUS[0])["input_ids"]
    expected = kept_teacher_logits(logits(teacher, teacher_ids), trim.student_to_teacher)
    assert torch.allclose(logits(trim.model, student_ids), expected, atol=1e-5)


def test_wordpiece_unseen_words_fall_back_to_kept_pieces_or_unk(wordpiece):
    student, _ = trim_tokenizer(wordpiece, CORPUS)
    # a word never seen, made of corpus letters: kept sub-pieces, never [UNK]
    pieces = student.tokenize("teachermodel")
    assert "[UNK]" not in pieces and student.convert_tokens_to_string(pieces) == "teachermodel"
    # a letter the corpus never used (the teacher knows it): the whole word becomes [UNK]
    assert "[UNK]" not in wordpiece.tokenize("oxygen")
    assert student.tokenize("oxygen") == ["[UNK]"]


def test_byte_bpe_student_tokenizes_kept_text_like_the_teacher(byte_bpe, tmp_path):
    teacher = family_model("gpt2", vocab_size=len(byte_bpe))
    eos = byte_bpe.eos_token_id
    teacher.config.bos_token_id = teacher.config.eos_token_id = eos
    teacher.generation_config.bos_token_id = teacher.generation_config.eos_token_id = eos
    trim = trim_vocabulary(teacher, byte_bpe, CORPUS)
    assert len(trim.tokenizer) < len(byte_bpe)
    for teacher_ids, student_ids in zip(encode(byte_bpe, CORPUS), encode(trim.tokenizer, CORPUS)):
        assert trim.teacher_to_student[teacher_ids].tolist() == student_ids
    assert trim.model.config.eos_token_id == trim.tokenizer.eos_token_id
    assert trim.model.generation_config.eos_token_id == trim.tokenizer.eos_token_id
    assert torch.equal(trim.model.lm_head.weight, teacher.lm_head.weight[trim.student_to_teacher])
    ids = trim.tokenizer(CORPUS[1])["input_ids"]
    expected = kept_teacher_logits(logits(teacher, byte_bpe(CORPUS[1])["input_ids"]), trim.student_to_teacher)
    assert torch.allclose(logits(trim.model, ids), expected, atol=1e-5)

    trim.save(tmp_path)
    from transformers import AutoTokenizer

    assert np.array_equal(load_vocab_map(tmp_path), trim.student_to_teacher)
    assert load_vocab_map(tmp_path / "nowhere") is None

    reloaded = type(trim.model).from_pretrained(tmp_path).eval()
    assert AutoTokenizer.from_pretrained(tmp_path)(CORPUS[1])["input_ids"] == ids
    assert torch.allclose(logits(reloaded, ids), logits(trim.model, ids), atol=1e-6, rtol=0)


def test_byte_bpe_still_tokenizes_any_text(byte_bpe):
    student, _ = trim_tokenizer(byte_bpe, CORPUS)
    for text in [RARE, "naïve café 日本語 🙂", CORPUS[0].upper()]:
        ids = student(text)["input_ids"]
        assert student.decode(ids) == text


def test_untied_lm_head_rows_are_sliced_too(byte_bpe):
    teacher = family_model("llama", vocab_size=len(byte_bpe), tie_word_embeddings=False,
                           bos_token_id=None, eos_token_id=None)
    trim = trim_vocabulary(teacher, byte_bpe, CORPUS)
    index = torch.as_tensor(trim.student_to_teacher)
    assert torch.equal(trim.model.lm_head.weight, teacher.lm_head.weight[index])
    assert torch.equal(trim.model.model.embed_tokens.weight, teacher.model.embed_tokens.weight[index])


def test_budget_keeps_the_most_frequent_tokens(byte_bpe):
    counts = {}
    for ids in encode(byte_bpe, CORPUS):
        for i in ids:
            counts[i] = counts.get(i, 0) + 1
    most_frequent = max(counts, key=counts.get)
    student, student_to_teacher = trim_tokenizer(byte_bpe, CORPUS, budget=270)
    assert len(student) <= 270 and most_frequent in student_to_teacher
    with pytest.raises(EdgekdError, match="budget"):
        trim_tokenizer(byte_bpe, CORPUS, budget=100)  # below the 256 bytes + special token


def test_renormalised_soft_labels_over_kept_tokens():
    teacher_logits = torch.randn(2, 5, 10)
    kept = np.array([0, 3, 4, 9])
    probabilities = teacher_logits.softmax(-1)[..., kept]
    renormalised = probabilities / probabilities.sum(-1, keepdim=True)
    assert torch.allclose(kept_teacher_logits(teacher_logits, kept).softmax(-1), renormalised, atol=1e-6)


def test_slow_tokenizer_is_a_user_error(tmp_path):
    from transformers import BertTokenizer

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello"]) + "\n")
    with pytest.raises(EdgekdError, match="fast"):
        trim_tokenizer(BertTokenizer(vocab_file=str(vocab)), ["hello"])


def test_unigram_tokenizer_is_a_user_error():
    from tokenizers import Tokenizer, models, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.Unigram())
    backend.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=60, unk_token="<unk>",
                                                                special_tokens=["<unk>"]))
    with pytest.raises(EdgekdError, match="Unigram"):
        trim_tokenizer(PreTrainedTokenizerFast(tokenizer_object=backend), CORPUS)


def test_no_text_is_a_user_error(wordpiece):
    with pytest.raises(EdgekdError, match="at least one"):
        trim_tokenizer(wordpiece, ["", ""])


def test_ids_outside_the_embedding_are_a_user_error():
    with pytest.raises(EdgekdError, match="embedding rows"):
        trim_embeddings(family_model("bert"), np.array([0, 1, 64]))


def test_reverse_map_covers_every_embedding_row_beyond_the_tokenizer(byte_bpe, tmp_path):
    """Qwen2-style padded vocabulary: more embedding rows (teacher logits) than tokenizer entries."""
    rows = len(byte_bpe) + 37
    teacher = family_model("llama", vocab_size=rows, bos_token_id=None, eos_token_id=None)
    trim = trim_vocabulary(teacher, byte_bpe, CORPUS)
    assert trim.teacher_to_student.shape == (rows,)
    assert np.all(trim.teacher_to_student[len(byte_bpe):] == -1)  # padding rows are never kept
    kept = trim.student_to_teacher
    assert np.array_equal(trim.teacher_to_student[kept], np.arange(len(kept)))
    trim.save(tmp_path)
    assert json.loads((tmp_path / "vocab_map.json").read_text())["teacher_vocab_size"] == rows
