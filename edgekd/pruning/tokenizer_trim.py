"""A student tokenizer holding only the tokens a corpus uses, with new contiguous ids.

The teacher's fast tokenizer is rewritten through its `tokenizer.json`: the model's vocabulary
(and, for BPE, its merges) is cut to the kept tokens, every id is renumbered (kept tokens keep
their relative order), and the ids the post-processor and padding name are remapped. On any text
whose teacher tokens are all kept, the student produces the same tokens, so its ids equal the
teacher's ids mapped through `student_to_teacher`; `trim_tokenizer` checks this on the corpus.

What is always kept, besides the corpus tokens:

- every added/special token (and the ids the caller passes in `keep_ids`);
- WordPiece: the single-character pieces (`x` and `##x`) of every character the corpus uses.
  An unseen word is then split greedily into the longest kept pieces, down to single
  characters; only a word with a character the corpus never used becomes `[UNK]` (WordPiece
  turns the whole word into `[UNK]` when one position matches no piece).
- BPE: the 256 byte-level base tokens (byte-level BPE) or the `<0xNN>` byte tokens
  (`byte_fallback`), so any text still tokenizes; plus every intermediate token of each kept
  token's merge tree, without which the teacher's merges could not rebuild it. A merge is kept
  when its two parts and its result are kept. BPE with a continuing-subword prefix or
  end-of-word suffix is not supported.
"""

from __future__ import annotations

import copy
import json
from collections import Counter

from edgekd.errors import EdgekdError

SUPPORTED = ("WordPiece", "BPE")


def _backend_copy(tokenizer):
    """The teacher's backend tokenizer, copied, without padding or truncation."""
    from tokenizers import Tokenizer

    if not getattr(tokenizer, "is_fast", False):
        raise EdgekdError(f"vocabulary trimming needs a fast (tokenizers-backed) tokenizer; "
                          f"{type(tokenizer).__name__} is a slow one")
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    return backend


def _has_byte_level(node) -> bool:
    """Whether a pre-tokenizer description (possibly a Sequence) contains ByteLevel."""
    if isinstance(node, dict):
        return node.get("type") == "ByteLevel" or any(_has_byte_level(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_byte_level(item) for item in node)
    return False


def _corpus_characters(backend, texts) -> set[str]:
    """Every character of the corpus after normalisation and pre-tokenisation (the alphabet
    the tokenizer's model sees)."""
    chars: set[str] = set()
    for text in texts:
        if backend.normalizer is not None:
            text = backend.normalizer.normalize_str(text)
        pieces = (backend.pre_tokenizer.pre_tokenize_str(text) if backend.pre_tokenizer is not None
                  else [(text, None)])
        for piece, _ in pieces:
            chars.update(piece)
    return chars


def _base_tokens(data, backend, texts) -> set[str]:
    """Tokens kept so that text outside the corpus still tokenizes (see the module docstring)."""
    from tokenizers import pre_tokenizers

    model = data["model"]
    vocab = model["vocab"]
    chars = _corpus_characters(backend, texts)
    if model["type"] == "WordPiece":
        prefix = model.get("continuing_subword_prefix") or "##"
        candidates = chars | {prefix + c for c in chars}
    else:
        candidates = set(chars)
        if _has_byte_level(data.get("pre_tokenizer")):
            candidates |= set(pre_tokenizers.ByteLevel.alphabet())
        if model.get("byte_fallback"):
            candidates |= {f"<0x{byte:02X}>" for byte in range(256)}
    return {token for token in candidates if token in vocab}


def _merge_pairs(merges) -> list[tuple[str, str]]:
    """Merges as pairs, from either tokenizer.json format ("a b" strings or [a, b] lists)."""
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]


def _merge_tree(token: str, ranks: dict) -> set[str]:
    """The tokens BPE builds on the way to `token`: its characters merged by lowest rank first,
    exactly as the BPE model applies merges inside one word."""
    symbols = list(token)
    made = set(symbols)
    while len(symbols) > 1:
        rank, i = min((ranks.get((symbols[j], symbols[j + 1]), float("inf")), j)
                      for j in range(len(symbols) - 1))
        if rank == float("inf"):
            break
        symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
        made.add(symbols[i])
    return made


def _select(data, backend, texts, budget, keep_ids, id_to_token) -> set[int]:
    """Teacher ids to keep: the required ones, then corpus tokens by falling frequency (each with
    its BPE merge tree) while the budget allows."""
    vocab = data["model"]["vocab"]
    kept = {entry["id"] for entry in data["added_tokens"]}
    kept |= {i for i in keep_ids if i in id_to_token}  # an id with no token cannot be kept
    kept |= {vocab[token] for token in _base_tokens(data, backend, texts)}
    if budget is not None and len(kept) > budget:
        raise EdgekdError(f"vocabulary budget {budget} is below the {len(kept)} tokens that must "
                          "stay (special tokens and base characters/bytes)")
    counts = Counter(i for encoding in backend.encode_batch(texts, add_special_tokens=False)
                     for i in encoding.ids)
    ranks = None
    if data["model"]["type"] == "BPE":
        ranks = {pair: rank for rank, pair in enumerate(_merge_pairs(data["model"]["merges"]))}
    for token_id, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if token_id in kept:
            continue
        needed = {token_id}
        if ranks is not None and id_to_token[token_id] in vocab:
            tree = _merge_tree(id_to_token[token_id], ranks)
            needed |= {vocab[t] for t in tree if t in vocab} - kept
        if budget is None or len(kept) + len(needed) <= budget:
            kept |= needed
    return kept


def _remap_ids(node, new_id) -> None:
    """Rewrite in place the token ids a post-processor names (Template `ids`, Bert/Roberta
    `sep`/`cls` pairs), through `new_id`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "ids" and isinstance(value, list):
                node[key] = [new_id(v) for v in value]
            elif key in ("sep", "cls") and isinstance(value, list) and len(value) == 2:
                node[key] = [value[0], new_id(value[1])]
            else:
                _remap_ids(value, new_id)
    elif isinstance(node, list):
        for item in node:
            _remap_ids(item, new_id)


def trim_tokenizer(tokenizer, texts, *, budget: int | None = None, keep_ids=()):
    """A student tokenizer keeping the tokens `texts` use, and `student_to_teacher`.

    Returns `(student_tokenizer, student_to_teacher)`: the student is the teacher's class with a
    rewritten backend; `student_to_teacher[i]` (numpy int64) is the teacher id of student id i.
    `budget` caps the student's vocabulary size (the most frequent corpus tokens win);
    `keep_ids` are teacher ids kept whatever the corpus says (e.g. the config's eos id).
    """
    import numpy as np
    from tokenizers import Tokenizer

    backend = _backend_copy(tokenizer)
    data = json.loads(backend.to_str())
    kind = data["model"]["type"]
    if kind not in SUPPORTED:
        raise EdgekdError(f"vocabulary trimming supports {' and '.join(SUPPORTED)} tokenizers; "
                          f"this one is {kind}")
    if kind == "BPE" and (data["model"].get("continuing_subword_prefix")
                          or data["model"].get("end_of_word_suffix")):
        raise EdgekdError("vocabulary trimming does not support BPE with a subword prefix/suffix")
    texts = [text for text in texts if text]
    if not texts:
        raise EdgekdError("vocabulary trimming needs at least one non-empty text")

    vocab = data["model"]["vocab"]
    id_to_token = {i: t for t, i in vocab.items()}
    id_to_token.update({entry["id"]: entry["content"] for entry in data["added_tokens"]})
    kept = sorted(_select(data, backend, texts, budget, keep_ids, id_to_token))
    new_ids = {teacher: student for student, teacher in enumerate(kept)}

    data["model"]["vocab"] = {t: new_ids[i] for t, i in vocab.items() if i in new_ids}
    for entry in data["added_tokens"]:
        entry["id"] = new_ids[entry["id"]]
    if kind == "BPE":
        kept_tokens = set(data["model"]["vocab"])
        data["model"]["merges"] = [m for m, (a, b) in zip(data["model"]["merges"],
                                                          _merge_pairs(data["model"]["merges"]))
                                   if a in kept_tokens and b in kept_tokens and a + b in kept_tokens]
    _remap_ids(data.get("post_processor"), new_ids.__getitem__)
    if data.get("padding") and data["padding"].get("pad_id") in new_ids:
        data["padding"]["pad_id"] = new_ids[data["padding"]["pad_id"]]

    student = copy.deepcopy(tokenizer)
    student._tokenizer = Tokenizer.from_str(json.dumps(data))  # the fast tokenizer's backend
    student_to_teacher = np.asarray(kept, dtype=np.int64)
    _check_same_tokens(backend, student, texts, new_ids)
    return student, student_to_teacher


def _check_same_tokens(teacher_backend, student, texts, new_ids) -> None:
    """The student must tokenize every corpus text whose tokens were all kept exactly as the
    teacher did; a difference is a bug in the trimming, not a user mistake."""
    student_backend = _backend_copy(student)
    teacher_runs = teacher_backend.encode_batch(texts, add_special_tokens=True)
    student_runs = student_backend.encode_batch(texts, add_special_tokens=True)
    for text, teacher, ours in zip(texts, teacher_runs, student_runs):
        if all(i in new_ids for i in teacher.ids) and [new_ids[i] for i in teacher.ids] != ours.ids:
            raise RuntimeError(f"trimmed tokenizer tokenizes {text[:60]!r} differently")
