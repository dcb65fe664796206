"""Held-out quality of a causal LM, teacher and student on the same text (issue 9's measures).

- perplexity: exp(mean next-token negative log-likelihood) over held-out chunks;
- next-token agreement: share of positions where the model's top-1 next token is the teacher's;
- greedy agreement: token match rate of the greedy continuations (the first `new_tokens` new
  tokens) of held-out prompts against the teacher's.

Everything is measured on the teacher's held-out chunks and prompts. The teacher's
per-position NLL, top-1, greedy tokens and the decoded texts are saved once (`reference.npz` in
the teacher folder), so scoring a student never runs the teacher. A vocabulary-trimmed student
reads a chunk in the same tokens when its vocabulary has them all, else as text through its own
tokenizer (see `score_student`).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from edgekd.tasks.causal_lm import GREEDY_NEW_TOKENS, greedy_tokens, pad_batch, token_match_rate

REFERENCE_FILE = "reference.npz"


def shuffled_chunk_ids(tokenizer, texts: list[str], max_length: int, seed: int,
                       limit: int | None = None) -> list[list[int]]:
    """The token ids of the first `limit` (default all) pieces of at most `max_length` tokens
    cut from `texts` (`data.chunk_texts`), in an order shuffled with `seed`."""
    from edgekd.data import chunk_texts

    pieces = chunk_texts(tokenizer, texts, max_length)
    random.Random(seed).shuffle(pieces)
    return tokenizer(pieces[:limit], truncation=True, max_length=max_length)["input_ids"]


def heldout_sets(tokenizer, texts: list[str], max_length: int, n_chunks: int, n_prompts: int,
                 prompt_tokens: int = 32, seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    """(chunks, prompts) in the tokenizer's ids: `n_chunks` pieces of `max_length` tokens cut
    from the held-out `texts` (shuffled with `seed`), and `n_prompts` prompts of at most
    `prompt_tokens` tokens (half the chunk, if shorter), the starts of other pieces."""
    encoded = [ids for ids in shuffled_chunk_ids(tokenizer, texts, max_length, seed) if len(ids) >= 2]
    chunks = encoded[:n_chunks]
    rest = encoded[n_chunks:] or encoded
    prompts = [ids[:min(prompt_tokens, len(ids) // 2)] for ids in rest[:n_prompts]]
    return chunks, prompts


def calibration_ids(tokenizer, texts: list[str], max_length: int, n: int, seed: int = 0) -> np.ndarray:
    """[<= n, max_length] token ids: full-length chunks of `texts` (the training split: what
    data-aware weight compression calibrates on), shuffled with `seed`."""
    encoded = shuffled_chunk_ids(tokenizer, texts, max_length, seed, limit=2 * n)
    full = [ids for ids in encoded if len(ids) == max_length][:n]
    return np.asarray(full, np.int64).reshape(len(full), max_length)


def position_scores(model, chunks: list[list[int]], pad_id: int, batch_size: int = 8):
    """(NLL of each next token, top-1 prediction) per position, concatenated over chunks
    ([sum(len - 1)] each); logits are reduced batch by batch, never held for the whole set."""
    import torch

    nll, top1 = [], []
    device = next(model.parameters()).device     # a student just trained on a GPU stays there
    with torch.no_grad():
        for i in range(0, len(chunks), batch_size):
            batch = chunks[i:i + batch_size]
            ids, mask = (torch.from_numpy(a).to(device) for a in pad_batch(batch, pad_id))
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            log_q = torch.log_softmax(logits[:, :-1], dim=-1)
            token_nll = -log_q.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1).cpu()
            best = log_q.argmax(-1).cpu()
            for j, seq in enumerate(batch):
                nll.append(token_nll[j, :len(seq) - 1].numpy())
                top1.append(best[j, :len(seq) - 1].numpy())
    if not nll:
        return np.zeros(0, np.float64), np.zeros(0, np.int64)
    return np.concatenate(nll).astype(np.float64), np.concatenate(top1).astype(np.int64)


def pad_id_of(model, tokenizer) -> int:
    """The id to pad with (masked out anyway): pad, else end-of-sequence, else 0."""
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id, model.config.eos_token_id):
        if value is not None:
            return value[0] if isinstance(value, list) else int(value)
    return 0


def teacher_reference(model, tokenizer, chunks, prompts, folder: Path,
                      new_tokens: int = GREEDY_NEW_TOKENS) -> dict:
    """Score the teacher, save its per-position NLL, top-1 and greedy tokens (with the chunks
    and prompts) as `folder/reference.npz`, and return its metrics."""
    pad = pad_id_of(model, tokenizer)
    nll, top1 = position_scores(model, chunks, pad)
    prompt_ids, prompt_mask = pad_batch(prompts, pad, left=True)
    greedy = greedy_tokens(model, {"input_ids": prompt_ids, "attention_mask": prompt_mask},
                           new_tokens, pad_id=pad)
    np.savez(Path(folder) / REFERENCE_FILE, chunk_ids=np.concatenate(chunks).astype(np.int64),
             chunk_offsets=np.cumsum([0] + [len(c) for c in chunks]),
             chunk_texts=np.array([tokenizer.decode(c, skip_special_tokens=True) for c in chunks]),
             prompt_texts=np.array([tokenizer.decode(p, skip_special_tokens=True) for p in prompts]),
             prompt_ids=prompt_ids, prompt_mask=prompt_mask, nll=nll, top1=top1, greedy=greedy)
    return {"perplexity": float(np.exp(nll.mean())), "next_token_agreement": 1.0,
            "greedy_agreement": 1.0, "eval_chunks": len(chunks), "eval_tokens": int(len(nll)),
            "eval_prompts": len(prompts), "greedy_new_tokens": new_tokens}


def _split(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [flat[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


def score_student(model, tokenizer, teacher_dir: Path, student_to_teacher=None) -> dict:
    """The student's metrics against the teacher's saved reference (see module doc).

    A chunk whose teacher tokens all exist in the student's vocabulary is read in the same
    tokens (and counts for next-token agreement); any other chunk (a trimmed student meeting
    tokens its training text never used) is read as text through the student's own tokenizer.
    `perplexity` is exp(student NLL summed over the text / the teacher's token count), so it
    compares with the teacher's directly whatever the tokenization; `perplexity_own_tokens`
    divides by the student's own count. Prompts are handled the same way; greedy tokens are
    compared in teacher ids."""
    ref = np.load(Path(teacher_dir) / REFERENCE_FILE)
    chunks = _split(ref["chunk_ids"], ref["chunk_offsets"])
    to_student, to_teacher = _id_maps(student_to_teacher)
    pad = pad_id_of(model, tokenizer)
    same, same_ids, other, own = _read_chunks(ref, chunks, tokenizer, to_student)
    nll_same, top1 = position_scores(model, same_ids, pad)
    nll_other, _ = position_scores(model, own, pad)
    positions = _split(np.arange(len(ref["nll"])), np.cumsum([0] + [len(c) - 1 for c in chunks]))
    # next-token agreement also on the other chunks, up to their first token the student lacks
    prefixes = {i: _mapped_prefix(chunks[i], to_student) for i in other}
    prefixes = {i: ids for i, ids in prefixes.items() if len(ids) >= 2}
    _, top1_prefix = position_scores(model, [list(ids) for ids in prefixes.values()], pad)
    top1 = np.concatenate([top1, top1_prefix])
    at = np.concatenate([positions[i] for i in same] + [positions[i][:len(ids) - 1]
                                                        for i, ids in prefixes.items()] + [[]]).astype(np.int64)
    total = float(nll_same.sum() + nll_other.sum())
    metrics = {"perplexity": float(np.exp(total / len(ref["nll"]))),
               "perplexity_own_tokens": float(np.exp(total / max(1, len(nll_same) + len(nll_other)))),
               "teacher_perplexity_same_chunks": float(np.exp(ref["nll"].mean())),
               "next_token_agreement": float((to_teacher(top1) == ref["top1"][at]).mean()) if len(at) else None,
               "next_token_positions": int(len(at)),
               "eval_chunks": len(chunks), "eval_chunks_same_tokens": len(same),
               "eval_tokens": int(len(ref["nll"]))}
    prompts = []
    for r in range(len(ref["prompt_ids"])):
        mapped = to_student(ref["prompt_ids"][r][ref["prompt_mask"][r] == 1])
        prompts.append(list(mapped) if mapped is not None else
                       tokenizer(str(ref["prompt_texts"][r]))["input_ids"])
    ids, mask = pad_batch(prompts, pad, left=True)
    greedy = greedy_tokens(model, {"input_ids": ids, "attention_mask": mask}, ref["greedy"].shape[1],
                           pad_id=pad)
    metrics.update({"greedy_agreement": token_match_rate(ref["greedy"], to_teacher(greedy)),
                    "eval_prompts": len(prompts), "greedy_new_tokens": int(ref["greedy"].shape[1])})
    return metrics


def _read_chunks(ref, chunks, tokenizer, to_student):
    """(indices of the teacher's chunks the student reads in the same tokens, those chunks in
    student ids, the other indices, those chunks' texts in the student's own tokens (2+ only))."""
    same = [i for i, c in enumerate(chunks) if to_student(c) is not None]
    other = [i for i in range(len(chunks)) if i not in set(same)]
    own = [tokenizer(str(ref["chunk_texts"][i]))["input_ids"] for i in other]
    same_ids = [list(to_student(chunks[i])) for i in same]
    return same, same_ids, other, [ids for ids in own if len(ids) >= 2]


class HeldOutChunks(list):
    """Held-out chunks (token-id arrays in a model's own ids) with `reference_predictions`: how
    many next tokens the teacher predicted on the same texts. `causal_lm.quality` divides the
    summed NLL by that count, so an artifact of a vocabulary-trimmed student (more, shorter
    tokens) gets the same perplexity basis as the teacher and the PyTorch student."""

    def __init__(self, chunks, reference_predictions: int | None = None):
        super().__init__(chunks)
        self.reference_predictions = reference_predictions


def reference_chunks(teacher_dir: Path, tokenizer, student_to_teacher=None) -> HeldOutChunks:
    """The teacher's held-out chunks (its `reference.npz`) as a model with `tokenizer` (and, when
    vocabulary-trimmed, the id map) reads them: exactly the texts and tokens `score_student`
    scores, so an artifact's perplexity compares with the teacher's and the student's."""
    ref = np.load(Path(teacher_dir) / REFERENCE_FILE)
    chunks = _split(ref["chunk_ids"], ref["chunk_offsets"])
    _, same_ids, _, own = _read_chunks(ref, chunks, tokenizer, _id_maps(student_to_teacher)[0])
    return HeldOutChunks([np.asarray(ids, np.int64) for ids in same_ids + own], int(len(ref["nll"])))


def run_reference_chunks(role_dir: Path, tokenizer) -> HeldOutChunks | None:
    """`reference_chunks` for a run folder's teacher/ or student/ (its teacher's reference and
    the role's vocabulary map), or None when the run's teacher has no reference."""
    from edgekd.pruning.vocab import load_vocab_map

    teacher_dir = Path(role_dir).parent / "teacher"
    if not (teacher_dir / REFERENCE_FILE).is_file():
        return None
    return reference_chunks(teacher_dir, tokenizer, load_vocab_map(role_dir))


def _mapped_prefix(ids, to_student) -> np.ndarray:
    """The student ids of the longest prefix of teacher `ids` the student's vocabulary holds."""
    for end in range(len(ids), 0, -1):
        mapped = to_student(ids[:end])
        if mapped is not None:
            return mapped
    return np.zeros(0, np.int64)


def _id_maps(student_to_teacher):
    """(teacher ids -> student ids or None when one is missing, student ids -> teacher ids)."""
    if student_to_teacher is None:
        return (lambda ids: np.asarray(ids)), (lambda ids: ids)
    forward = np.asarray(student_to_teacher, np.int64)
    reverse = {int(t): s for s, t in enumerate(forward)}

    def to_student(ids):
        mapped = [reverse.get(int(t), -1) for t in ids]
        return None if min(mapped, default=0) < 0 else np.asarray(mapped, np.int64)

    return to_student, (lambda ids: forward[ids])
