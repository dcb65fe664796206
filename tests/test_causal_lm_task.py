"""The causal-LM task module (metrics, parity, greedy tokens), its text data and chunking, the
recipe keys, and the bad inputs refused before a run folder exists."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from edgekd.cli import main
from edgekd.errors import EdgekdError
from edgekd.recipe import KD_KINDS, DistillConfig
from edgekd.tasks import causal_lm, get_task
from tiny_lm import lm_tokenizer, make_text_data, save_tiny_lm, write_lm_recipe


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("task")
    tokenizer = lm_tokenizer()
    return (root, make_text_data(root / "data"), save_tiny_lm(root / "llama", tokenizer=tokenizer),
            tokenizer)


def test_perplexity_against_hand_values():
    # uniform logits over 4 tokens: every next token has probability 1/4 -> perplexity 4
    assert causal_lm.quality([np.zeros((3, 4))], [np.array([0, 1, 2])])["perplexity"] == pytest.approx(4)
    # one position, logits (log 3, 0): p(token 0) = 3/4 -> perplexity 4/3
    logits = np.array([[math.log(3), 0.0], [0.0, 0.0]])
    result = causal_lm.quality([logits], [np.array([1, 0])])
    assert result == {"perplexity": pytest.approx(4 / 3), "tokens": 1}


def test_agreements_and_parity_on_token_arrays():
    ref = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    got = np.array([[1, 2, 0, 4], [5, 6, 7, 8]])
    assert causal_lm.token_match_rate(ref, got) == pytest.approx(7 / 8)
    result = causal_lm.parity(ref, got, "fp32")
    assert result["token_agreement"] == pytest.approx(7 / 8) and result["new_tokens"] == 4
    assert "below 99%" in causal_lm.parity_error(result)
    assert causal_lm.parity_error(causal_lm.parity(ref, got, "int8-dynamic")) is None
    with pytest.raises(EdgekdError, match="shape"):
        causal_lm.token_match_rate(ref, got[:, :3])
    logits = [np.eye(3)[[0, 1, 2]], np.eye(3)[[2, 2]]]
    assert causal_lm.next_token_agreement(logits, [np.array([0, 1, 1]), np.array([2, 0])]) == pytest.approx(3 / 5)


def test_greedy_tokens_match_an_argmax_loop(tiny):
    _, _, model_dir, tokenizer = tiny
    model = causal_lm.load_reference(model_dir)
    prompts = [tokenizer("the cat sat on")["input_ids"], tokenizer("dogs ran")["input_ids"]]
    ids, mask = causal_lm.pad_batch(prompts, tokenizer.pad_token_id, left=True)
    got = causal_lm.reference_outputs(model, {"input_ids": ids, "attention_mask": mask})
    assert got.shape == (2, causal_lm.GREEDY_NEW_TOKENS)
    sequence = list(prompts[1])                      # no padding, no cache: the plain definition
    with torch.no_grad():
        for _ in range(8):
            sequence.append(int(model(input_ids=torch.tensor([sequence])).logits[0, -1].argmax()))
    assert list(got[1, :8]) == sequence[len(prompts[1]):]
    assert causal_lm.input_names(model, model_dir) == ("input_ids", "attention_mask")


def test_check_config_refuses_the_other_kind():
    from transformers import BertConfig, LlamaConfig

    bert = BertConfig(architectures=["BertForSequenceClassification"])
    llama = LlamaConfig(architectures=["LlamaForCausalLM"])
    causal_lm.check_config(llama, "x")
    with pytest.raises(EdgekdError, match="not a causal language model"):
        causal_lm.check_config(bert, "the teacher")
    with pytest.raises(EdgekdError, match="is a causal language model"):
        get_task("text-classification").check_config(llama, "the teacher")


def test_recipe_keys_validated():
    assert set(KD_KINDS) == set(__import__("edgekd.distillation.lm_losses", fromlist=["x"]).DIVERGENCES)
    assert DistillConfig().kd == "forward_kl" and DistillConfig().top_k == 32
    for bad in ({"kd": "kl"}, {"beta": 1.0}, {"skew": 1.0}, {"top_k": 0}):
        with pytest.raises(ValueError):
            DistillConfig(**bad)


def test_text_data_and_chunks(tiny):
    from edgekd.data import chunk_texts, load_text_data
    from edgekd.recipe import DataConfig

    _, data_dir, _, tokenizer = tiny
    data = load_text_data(DataConfig(path=str(data_dir)))
    assert data.labels == [] and len(data.train) + len(data.validation) + len(data.test) == 60
    texts = [e.text for e in data.train]
    pieces = chunk_texts(tokenizer, texts, 16, min_tokens=1)
    assert max(len(tokenizer(p)["input_ids"]) for p in pieces) == 16
    assert len(pieces) > len(texts)
    assert "".join(pieces) == "".join(t.rstrip() for t in texts)      # nothing lost or repeated


def test_builtin_recipe_by_bare_name():
    from edgekd.pipeline import recipe_file
    from edgekd.recipe import load_recipe

    recipe = load_recipe(recipe_file("smollm2-bbc"))
    assert recipe.task == "causal-lm" and recipe.teacher.model == "builtin:smollm2"
    assert recipe_file("some/file.yaml") == "some/file.yaml"


def _exit_code(capsys, argv):
    code = main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


def test_bad_inputs_one_line_exit_2_no_run_folder(tiny, tmp_path, capsys, tiny_model_dir, tiny_data_dir):
    root, data_dir, llama_dir, _ = tiny
    cases = {}
    # a BERT classifier as the teacher of a causal-LM recipe
    (tmp_path / "a").mkdir()
    cases["not a causal language model"] = write_lm_recipe(tmp_path / "a", data_dir, tiny_model_dir)
    # a causal LM as the teacher of a classification recipe
    from tests_recipe import write_tiny_recipe
    (tmp_path / "b").mkdir()
    cls = write_tiny_recipe(tmp_path / "b", tiny_data_dir, llama_dir)
    cases["is a causal language model"] = cls
    # a student whose vocabulary does not map onto the teacher's
    other = save_tiny_lm(tmp_path / "other", layers=1, tokenizer=_other_tokenizer())
    (tmp_path / "c").mkdir()
    cases["another vocabulary"] = write_lm_recipe(tmp_path / "c", data_dir, llama_dir,
                                                  student={"from_teacher": None, "model": str(other)})
    # corrupt weights and a missing folder
    broken = tmp_path / "broken"
    save_tiny_lm(broken, layers=4)
    (broken / "model.safetensors").write_bytes(b"\x00garbage")
    (tmp_path / "d").mkdir()
    cases["corrupt or truncated"] = write_lm_recipe(tmp_path / "d", data_dir, broken)
    (tmp_path / "e").mkdir()
    cases["not found"] = write_lm_recipe(tmp_path / "e", data_dir, tmp_path / "missing")
    for expected, recipe in cases.items():
        out = tmp_path / "runs" / expected.replace(" ", "-")
        code, err = _exit_code(capsys, ["distill", str(recipe), "--out", str(out)])
        assert code == 2 and len(err) == 1 and expected in err[0], (expected, err)
        assert not out.exists()
    # a precision no format makes for the task (int4 of a classifier, int8-static of an LM):
    # refused before any work
    for recipe, precision in ((cls, "int4"), (write_lm_recipe(tmp_path / "e", data_dir, llama_dir),
                                              "int8-static")):
        raw = yaml.safe_load(Path(recipe).read_text())
        raw["export"] = {"formats": ["onnx"], "precisions": [precision]}
        Path(recipe).write_text(yaml.safe_dump(raw))
        code, err = _exit_code(capsys, ["run", str(recipe), "--out", str(tmp_path / "runs" / "run")])
        assert code == 2 and len(err) == 1 and f"model in '{precision}'" in err[0], err
        assert not (tmp_path / "runs" / "run").exists()


def _other_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.train_from_iterator(["completely different words here"] * 50, trainers.BpeTrainer(
        vocab_size=280, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")
