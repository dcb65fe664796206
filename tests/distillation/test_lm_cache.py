"""The causal-LM teacher cache: top-k shards and sequence-level KD, with tiny random teachers
(Llama with GQA, GPT-2) and a byte-level BPE tokenizer trained here."""

import json
import random

import numpy as np
import pytest
import torch

from edgekd.distillation import lm_cache
from edgekd.distillation.lm_cache import (TopKShardDataset, build_topk_cache, collate_topk,
                                          tokenizer_hash)
from edgekd.distillation.lm_sequence_kd import build_sequence_kd, read_sequence_kd, split_decoded
from edgekd.distillation.lm_losses import SparseTeacher, forward_kl, lm_distill_loss
from edgekd.errors import EdgekdError

WORDS = ("the cat sat on a mat while dogs ran far away from big red cars and small birds sang "
         "songs about rivers, hills, café crème, naïve rôles").split()


def _texts(count, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) for _ in range(count)]


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(_texts(300, seed=1), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>",
                                   model_input_names=["input_ids", "attention_mask"])


def _save_teacher(folder, kind, seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    tokenizer = _tokenizer()
    torch.manual_seed(seed)
    eos = tokenizer.eos_token_id
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.5,
            bos_token_id=eos, eos_token_id=eos, pad_token_id=eos))
    else:
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2,
                                           n_head=4, n_positions=64, initializer_range=0.5, bos_token_id=eos,
                                           eos_token_id=eos, pad_token_id=eos))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def teacher_dir(request, tmp_path_factory):
    return _save_teacher(tmp_path_factory.mktemp(request.param), request.param)


class ForwardCounter:
    """Counts the sequences that go through the teacher (a global forward hook on the top-level
    causal-LM module, so it sees the model the cache loads itself). `fail_at` raises on that
    call, to simulate an interruption."""

    def __init__(self, fail_at=None):
        self.rows, self.calls, self.fail_at = 0, 0, fail_at

    def __call__(self, module, args, kwargs, output):
        if type(module).__name__ in ("LlamaForCausalLM", "GPT2LMHeadModel"):
            self.calls += 1
            if self.calls == self.fail_at:
                raise KeyboardInterrupt("simulated interruption")
            input_ids = kwargs.get("input_ids", args[0] if args else None)
            if input_ids.shape[1] > 1:               # a whole sequence, not one generation step
                self.rows += input_ids.shape[0]

    def __enter__(self):
        self.handle = torch.nn.modules.module.register_module_forward_hook(self, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


SETTINGS = dict(k=8, seq_len=12, shard_size=4, batch_size=3)


def test_teacher_runs_once_per_sequence_and_not_on_rerun(teacher_dir, tmp_path):
    texts = _texts(10)
    with ForwardCounter() as first:
        index = build_topk_cache(teacher_dir, texts, tmp_path, **SETTINGS)
    assert index["sequences"] == 10 and len(index["shards"]) == 3
    assert first.rows == 10
    with ForwardCounter() as second:
        again = build_topk_cache(teacher_dir, texts, tmp_path, **SETTINGS)
    assert second.calls == 0 and again == index


def test_cached_top_k_is_the_teachers_own(teacher_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    texts = _texts(7, seed=3)
    build_topk_cache(teacher_dir, texts, tmp_path, **SETTINGS)
    model = AutoModelForCausalLM.from_pretrained(teacher_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    items = list(TopKShardDataset(tmp_path))
    assert len(items) == 7
    # Stored unpadded: the shards hold exactly one top-k row per token.
    with np.load(tmp_path / "shard-00000.npz") as shard:
        assert shard["topk_indices"].shape == (sum(len(i["input_ids"]) for i in items[:4]), 8)
    for text, item in zip(texts, items):
        ids = tokenizer(text, truncation=True, max_length=12)["input_ids"]
        assert item["input_ids"].tolist() == ids
        with torch.no_grad():
            alone = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)
        # Cached values are the teacher's log-probs of the cached tokens (fp16 rounding) ...
        assert torch.allclose(alone.gather(-1, item["teacher_indices"]), item["teacher_log_probs"],
                              atol=2e-2)
        # ... and those tokens are its top 8: nothing else scores above the 8th.
        kth = alone.topk(8, -1).values[:, -1]
        assert torch.all(item["teacher_log_probs"][:, -1] >= kth - 2e-2)


def test_a_stale_fingerprint_recomputes(teacher_dir, tmp_path):
    texts = _texts(6)
    first = build_topk_cache(teacher_dir, texts, tmp_path / "cache", **SETTINGS)
    with ForwardCounter() as other_k:
        second = build_topk_cache(teacher_dir, texts, tmp_path / "cache", **{**SETTINGS, "k": 5})
    assert other_k.rows == 6 and second["fingerprint"] != first["fingerprint"]
    assert next(iter(TopKShardDataset(tmp_path / "cache")))["teacher_indices"].shape[-1] == 5
    # The same folder re-saved with other weights is another teacher.
    kind = "llama" if "llama" in teacher_dir.name else "gpt2"
    _save_teacher(tmp_path / "teacher", kind, seed=0)
    build_topk_cache(tmp_path / "teacher", texts, tmp_path / "cache", **SETTINGS)
    _save_teacher(tmp_path / "teacher", kind, seed=1)
    with ForwardCounter() as new_weights:
        build_topk_cache(tmp_path / "teacher", texts, tmp_path / "cache", **SETTINGS)
    assert new_weights.rows == 6


def test_an_interrupted_build_keeps_its_finished_shards(teacher_dir, tmp_path):
    texts = _texts(10)
    # Shard 0 holds texts 0-3 (two batches of 3 and 1); the third forward call is in shard 1.
    with ForwardCounter(fail_at=3), pytest.raises(KeyboardInterrupt):
        build_topk_cache(teacher_dir, texts, tmp_path, **SETTINGS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-00000.npz"]
    with ForwardCounter() as resumed:
        index = build_topk_cache(teacher_dir, texts, tmp_path, **SETTINGS)
    assert resumed.rows == 6 and index["sequences"] == 10


def test_dataset_streams_one_shard_at_a_time(teacher_dir, tmp_path, monkeypatch):
    build_topk_cache(teacher_dir, _texts(10), tmp_path, **SETTINGS)
    loaded = []
    real_load = np.load
    monkeypatch.setattr(lm_cache.np, "load", lambda path, *a, **kw: loaded.append(str(path)) or real_load(path, *a, **kw))
    dataset = TopKShardDataset(tmp_path)
    stream = iter(dataset)
    next(stream)
    assert [p.rsplit("/", 1)[-1] for p in loaded] == ["shard-00000.npz"]
    rest = list(stream)
    assert len(rest) + 1 == len(dataset) == 10 and len(loaded) == 3
    in_order = [item["input_ids"].tolist() for item in TopKShardDataset(tmp_path)]
    shuffled = [item["input_ids"].tolist() for item in TopKShardDataset(tmp_path, shuffle=True, seed=4)]
    assert sorted(shuffled) == sorted(in_order) and shuffled != in_order


def test_collated_cache_feeds_the_loss_and_aligns_positions(teacher_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    build_topk_cache(teacher_dir, _texts(6), tmp_path, **SETTINGS)
    dataset = TopKShardDataset(tmp_path)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=collate_topk)
    batch = next(iter(loader))
    assert batch["teacher"].temperature == 1.0
    assert batch["labels"][batch["attention_mask"] == 0].eq(-100).all()
    # The teacher as its own student: the KD term is ~0 only if positions line up.
    model = AutoModelForCausalLM.from_pretrained(teacher_dir)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    same = lm_distill_loss(logits, batch["teacher"], batch["labels"], alpha=1.0)
    assert same.item() < 1e-3            # one position off gives > 1 with these teachers
    # A different (random) student: a real loss whose gradient reaches its weights.
    student = AutoModelForCausalLM.from_pretrained(_save_teacher(tmp_path / "s", "gpt2", seed=7))
    out = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    loss = lm_distill_loss(out, batch["teacher"], batch["labels"], kind="skew_kl", alpha=0.5)
    loss.backward()
    assert loss.item() > 0.05
    assert student.lm_head.weight.grad.abs().sum() > 0


def test_sequence_kd_is_the_teachers_greedy_text_and_resumes(teacher_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    texts = _texts(7, seed=5)
    out = tmp_path / "seqkd.jsonl"
    with ForwardCounter() as first:
        build_sequence_kd(teacher_dir, texts, out, prompt_tokens=4, max_new_tokens=5, batch_size=3)
    assert first.rows == 7                       # one prompt pass per text (then 1-token steps)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    model = AutoModelForCausalLM.from_pretrained(teacher_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    for row in rows:
        prompt = tokenizer(texts[row["text_index"]])["input_ids"][:4]
        alone = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                               do_sample=False, max_new_tokens=5, pad_token_id=tokenizer.eos_token_id)
        # the whole sequence decoded at once, cut where the prompt ends
        assert row["text"] == tokenizer.decode(alone[0], skip_special_tokens=True)
        assert row["text"] == row["prompt"] + row["continuation"]
        assert texts[row["text_index"]].startswith(row["prompt"])
    assert read_sequence_kd(out) == [row["text"] for row in rows]
    with ForwardCounter() as rerun:
        build_sequence_kd(teacher_dir, texts, out, prompt_tokens=4, max_new_tokens=5, batch_size=3)
    assert rerun.calls == 0
    # An interruption after the first batch, mid-way through writing a line: resume from there.
    complete = out.read_text()
    lines = complete.splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][:10])
    meta = out.with_name(out.name + ".meta.json")
    meta.write_text(json.dumps({"fingerprint": json.loads(meta.read_text())["fingerprint"]}))
    with ForwardCounter() as resumed:
        build_sequence_kd(teacher_dir, texts, out, prompt_tokens=4, max_new_tokens=5, batch_size=3)
    assert resumed.rows == 4 and out.read_text() == complete
    # Other settings are a stale fingerprint: everything again.
    with ForwardCounter() as changed:
        build_sequence_kd(teacher_dir, texts, out, prompt_tokens=4, max_new_tokens=2, batch_size=3)
    assert changed.rows == 7 and len(read_sequence_kd(out)) == 7


def test_bad_settings_are_one_line_errors(teacher_dir, tmp_path):
    from edgekd.errors import EdgekdError

    with pytest.raises(EdgekdError, match="k >= 1"):
        build_topk_cache(teacher_dir, _texts(2), tmp_path, k=0)
    with pytest.raises(EdgekdError, match="exceeds the teacher's vocabulary"):
        build_topk_cache(teacher_dir, _texts(2), tmp_path, k=10_000)
    with pytest.raises(EdgekdError, match="no finished top-k cache"):
        TopKShardDataset(tmp_path / "nothing")


def test_a_cache_built_at_t2_collates_as_t2(teacher_dir, tmp_path):
    build_topk_cache(teacher_dir, _texts(5), tmp_path / "t2", **SETTINGS, temperature=2.0)
    rows = list(TopKShardDataset(tmp_path / "t2"))
    batch = collate_topk(rows[:3])
    assert batch["teacher"].temperature == 2.0
    logits = torch.randn(*batch["input_ids"].shape, 320)
    assert lm_distill_loss(logits, batch["teacher"], batch["labels"], temperature=2.0).item() > 0
    with pytest.raises(EdgekdError, match="temperature 2.0"):
        lm_distill_loss(logits, batch["teacher"], batch["labels"], temperature=1.0)
    build_topk_cache(teacher_dir, _texts(5), tmp_path / "t1", **SETTINGS)
    with pytest.raises(EdgekdError, match="mixes"):
        collate_topk(rows[:1] + list(TopKShardDataset(tmp_path / "t1"))[:1])


def test_index_records_the_teachers_vocabulary_and_old_indexes_are_redone(teacher_dir, tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    index = build_topk_cache(teacher_dir, _texts(5), tmp_path, **SETTINGS)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    assert index["teacher_vocab_size"] == AutoConfig.from_pretrained(teacher_dir).vocab_size == 320
    assert index["tokenizer_hash"] == tokenizer_hash(tokenizer)
    other = _tokenizer()
    other.add_tokens(["<extra>"])
    assert tokenizer_hash(other) != index["tokenizer_hash"]
    # An index written before these fields: rebuilt from the shards, the teacher is not run.
    old = {key: value for key, value in index.items() if key not in ("teacher_vocab_size", "tokenizer_hash")}
    (tmp_path / "index.json").write_text(json.dumps(old))
    with pytest.raises(EdgekdError, match="rerun build_topk_cache"):
        TopKShardDataset(tmp_path, vocab_map=list(range(320)))
    with ForwardCounter() as rerun:
        assert build_topk_cache(teacher_dir, _texts(5), tmp_path, **SETTINGS) == index
    assert rerun.calls == 0


def test_a_vocabulary_trimmed_student_reads_the_cache_through_vocab_map(teacher_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from edgekd.pruning import trim_vocabulary

    texts = _texts(6, seed=8)
    build_topk_cache(teacher_dir, texts, tmp_path, **SETTINGS)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir).eval()
    trim = trim_vocabulary(teacher, AutoTokenizer.from_pretrained(teacher_dir), texts)
    plain = list(TopKShardDataset(tmp_path))
    mapped = list(TopKShardDataset(tmp_path, vocab_map=trim.teacher_to_student))
    vocab, to_student = len(trim.student_to_teacher), torch.as_tensor(trim.teacher_to_student)
    for text, before, after in zip(texts, plain, mapped):
        # input ids are now the student tokenizer's own; teacher ids are student ids or -1
        student_ids = trim.tokenizer(text, truncation=True, max_length=12)["input_ids"]
        assert after["input_ids"].tolist() == student_ids
        assert torch.equal(after["teacher_indices"], to_student[before["teacher_indices"]])
        assert torch.equal(after["teacher_log_probs"], before["teacher_log_probs"])
    indices = torch.cat([row["teacher_indices"] for row in mapped])
    assert (indices == -1).any() and (indices >= 0).any() and int(indices.max()) < vocab
    # The loss equals the hand-built buckets: kept top-k tokens + a tail holding the dropped ones.
    row, student = mapped[0], trim.model.eval()
    with torch.no_grad():
        logits = student(row["input_ids"][None]).logits
        full = torch.log_softmax(teacher(plain[0]["input_ids"][None]).logits[0].double(), -1)
    q = torch.softmax(logits[0].double(), -1)
    expected = []
    for t in range(len(row["input_ids"])):
        kept = row["teacher_indices"][t] >= 0
        p_top = full[t, plain[0]["teacher_indices"][t][kept]].exp()
        q_top = q[t, row["teacher_indices"][t][kept]]
        p_b, q_b = torch.cat([p_top, 1 - p_top.sum(0, True)]), torch.cat([q_top, 1 - q_top.sum(0, True)])
        expected.append((p_b * (p_b / q_b).log()).sum())
    sparse = SparseTeacher(row["teacher_indices"][None], row["teacher_log_probs"][None])
    got = forward_kl(logits, sparse, torch.ones(1, len(row["input_ids"]), dtype=torch.bool))
    assert got.item() == pytest.approx(torch.stack(expected).mean().item(), rel=2e-2)
    with pytest.raises(EdgekdError, match="vocab_map must give"):
        TopKShardDataset(tmp_path, vocab_map=trim.teacher_to_student[:-1])
    # Trimmed on other texts: a cached input token the student lacks is a clear error.
    narrow = trim_vocabulary(teacher, AutoTokenizer.from_pretrained(teacher_dir), ["the cat"])
    with pytest.raises(EdgekdError, match="dropped"):
        list(TopKShardDataset(tmp_path, vocab_map=narrow.teacher_to_student))


def _metaspace_tokenizer():
    """A SentencePiece-style tokenizer: words carry their leading space as "▁"."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>"])
    backend.train_from_iterator(_texts(200, seed=2), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")


def test_split_decoded_keeps_the_space_and_the_characters_at_the_boundary():
    tokenizer = _metaspace_tokenizer()
    ids = tokenizer("the cat sat on a mat")["input_ids"]
    first_word = len(tokenizer("the")["input_ids"])
    assert tokenizer.decode(ids[first_word:]) == "cat sat on a mat"      # the space is lost alone
    assert split_decoded(tokenizer, ids[:first_word], ids[first_word:]) == ("the", " cat sat on a mat")
    # Byte-level BPE: "é" is bytes C3 A9 ("Ã" "©"); the prompt ends between the two.
    byte_level = _tokenizer()
    prompt = byte_level.convert_tokens_to_ids(["c", "a", "f", "Ã"])
    continuation = byte_level.convert_tokens_to_ids(["©", "Ġ", "o", "k"])
    assert split_decoded(byte_level, prompt, continuation) == ("caf", "é ok")
    assert split_decoded(byte_level, prompt[:3], continuation[1:]) == ("caf", " ok")
