"""Task data from every supported source, and clear errors for bad data."""

import json

import pytest

from edgekd.data import load_task_data
from edgekd.errors import EdgekdError
from edgekd.recipe import DataConfig


def test_label_folders_are_split_stratified(tiny_data_dir):
    data = load_task_data(DataConfig(path=str(tiny_data_dir)))
    assert data.labels == ["politics", "sport", "tech"]
    assert len(data.train) + len(data.validation) + len(data.test) == 180
    assert {e.label for e in data.test} == {0, 1, 2}          # every label in the test split
    assert len(data.test) == 36 and len(data.validation) == 18


def test_csv_and_jsonl_with_columns(tmp_path):
    rows = [{"body": f"text number {i}", "topic": "x" if i % 2 else "y"} for i in range(40)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "d.csv").write_text("body,topic\n" + "\n".join(f"{r['body']},{r['topic']}" for r in rows))
    for name in ("d.jsonl", "d.csv"):
        data = load_task_data(DataConfig(path=str(tmp_path / name), text_column="body", label_column="topic"))
        assert data.labels == ["x", "y"] and len(data.test) == 8


def test_unlabeled_texts_are_loaded(tmp_path, tiny_data_dir):
    (tmp_path / "extra.txt").write_text("one more text\nand another\n\n")
    data = load_task_data(DataConfig(path=str(tiny_data_dir), unlabeled=str(tmp_path / "extra.txt")))
    assert data.unlabeled == ["one more text", "and another"]


@pytest.mark.parametrize("setup, message", [
    (lambda p: (p / "empty").mkdir(), "holds no examples"),
    (lambda p: [(p / "one" / "only").mkdir(parents=True)] + [
        (p / "one" / "only" / f"{i}.txt").write_text("x y z") for i in range(9)], "at least 2"),
    (lambda p: (p / "bad.jsonl").write_text('{"text": "a", "label": 1}\nnot json\n'), "bad.jsonl:2"),
    (lambda p: (p / "cols.csv").write_text("words,tag\na,b\n"), "column 'text' not found"),
])
def test_bad_data_gives_clear_errors(tmp_path, setup, message):
    setup(tmp_path)
    target = {"holds no examples": "empty", "at least 2": "one", "bad.jsonl:2": "bad.jsonl",
              "column 'text' not found": "cols.csv"}[message]
    with pytest.raises(EdgekdError, match=message.replace("(", r"\(")):
        load_task_data(DataConfig(path=str(tmp_path / target)))


def test_missing_path_and_unseen_test_labels(tmp_path):
    with pytest.raises(EdgekdError, match="not found"):
        load_task_data(DataConfig(path=str(tmp_path / "nowhere")))
    train = "\n".join(json.dumps({"text": f"t{i}", "label": "ab"[i % 2]}) for i in range(20))
    (tmp_path / "train.jsonl").write_text(train)
    data_dir = tmp_path / "ds"
    # A source with its own splits, whose test split has a label that train never shows.
    datasets = pytest.importorskip("datasets")
    datasets.DatasetDict({
        "train": datasets.Dataset.from_list([{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(20)]),
        "test": datasets.Dataset.from_list([{"text": "u", "label": "c"}]),
    }).save_to_disk(str(data_dir))
    with pytest.raises(EdgekdError, match="not seen in train: c"):
        load_task_data(DataConfig(path=str(data_dir)))
