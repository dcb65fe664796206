"""Sequence-level KD (Kim & Rush 2016) in the causal-LM stage, on a tiny random Llama: the added
texts are the teacher's greedy continuations of prompts from chunks the student does not train
on otherwise, they are in the top-k cache, and the student trains on every one of them."""

from argparse import Namespace

import pytest
import torch

from edgekd.distillation.lm_sequence_kd import prompt_chunks, read_sequence_kd
from edgekd.errors import EdgekdError
from tiny_lm import make_text_data, save_tiny_lm, write_lm_recipe


class TrainingRows:
    """The input ids of every training forward (grad on, module in training mode), per row,
    with the right padding cut off by the attention mask."""

    def __init__(self):
        self.rows, self.handle = [], None

    def hook(self, module, args, kwargs, output):
        if type(module).__name__ != "LlamaForCausalLM" or not (module.training and torch.is_grad_enabled()):
            return
        for ids, mask in zip(kwargs["input_ids"], kwargs["attention_mask"]):
            self.rows.append(ids[mask.bool()].tolist())

    def __enter__(self):
        self.handle = torch.nn.modules.module.register_module_forward_hook(self.hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_prompts_come_from_the_chunks_after_the_training_ones_first():
    chunks = [f"c{i}" for i in range(6)]
    assert prompt_chunks(chunks, used=4, count=2) == ["c4", "c5"]
    assert prompt_chunks(chunks, used=4, count=4) == ["c4", "c5", "c0", "c1"]
    assert prompt_chunks(chunks, used=6, count=2) == ["c0", "c1"]


def test_bad_sequence_kd_settings_are_recipe_errors(tmp_path):
    from edgekd.recipe import load_recipe

    recipe = write_lm_recipe(tmp_path, tmp_path, tmp_path, distill={"sequence_kd": {"prompts": 0}})
    with pytest.raises(EdgekdError, match="sequence_kd: prompts"):
        load_recipe(recipe)
    assert load_recipe(write_lm_recipe(tmp_path, tmp_path, tmp_path)).distill.sequence_kd is None


def test_the_student_trains_on_the_teachers_greedy_continuations(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from edgekd.data import load_text_data
    from edgekd.distillation.lm_stage import shuffled_chunks
    from edgekd.files import read_json
    from edgekd.pipeline import distill_stage, prepare
    from edgekd.recipe import load_recipe

    data = make_text_data(tmp_path / "data")
    teacher_dir = save_tiny_lm(tmp_path / "llama", "llama", layers=4, seed=2)
    recipe_file = write_lm_recipe(tmp_path, data, teacher_dir, data={"max_train_chunks": 6},
                                  student={"from_teacher": {"layers": [0, 3]},
                                           "vocabulary": {"trim": True}},
                                  distill={"epochs": 1, "sequence_kd": {"prompts": 5, "new_tokens": 6,
                                                                        "prompt_tokens": 4}})
    with TrainingRows() as seen:
        result = distill_stage(prepare(Namespace(recipe=str(recipe_file), out=str(tmp_path / "run"),
                                                 overrides=[])))
    run = tmp_path / "run"
    texts = read_sequence_kd(run / "cache" / "sequence-kd.jsonl")
    assert len(texts) == 5 and result.student_metrics["sequence_kd"]["texts"] == 5

    # each text is its prompt + the teacher's own greedy continuation
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    recipe = load_recipe(recipe_file)
    chunks = shuffled_chunks(tokenizer, load_text_data(recipe.data), recipe)
    sources = chunks[6:11]                 # the chunks after the 6 training ones
    for text, source in zip(texts, sources):
        prompt = tokenizer(source)["input_ids"][:4]
        greedy = teacher.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, 4, dtype=torch.long),
                                  do_sample=False, max_new_tokens=6, pad_token_id=tokenizer.eos_token_id)
        assert text == tokenizer.decode(greedy[0], skip_special_tokens=True)
        assert len(greedy[0]) > len(prompt)
    # ... in the top-k cache with the training chunks, and every one went through training
    index = read_json(run / "cache" / "lm-topk" / "index.json")
    assert index["texts"] == 6 + 5 == result.student_metrics["train_chunks"]
    student = AutoTokenizer.from_pretrained(run / "student")
    trained = {tuple(row) for row in seen.rows}
    for text in texts:
        assert tuple(student(text, truncation=True, max_length=32)["input_ids"]) in trained
    assert len(seen.rows) == 11                       # one epoch: 6 chunks + 5 continuations
