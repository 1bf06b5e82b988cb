"""Data loading, validation, tokenisation and batching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kdkit.config import DataConfig
from kdkit.data.batching import DistillationCollator
from kdkit.data.loading import load_raw
from kdkit.data.tokenizing import load_task_data
from kdkit.errors import DataError
from kdkit.testing import tiny_tokenizer


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _csv_pair(tmp_path: Path, train: str, validation: str | None = None, suffix: str = ".csv") -> DataConfig:
    return DataConfig(
        train_file=_write(tmp_path / f"train{suffix}", train),
        validation_file=_write(tmp_path / f"validation{suffix}", validation if validation is not None else train),
    )


def test_label_names_become_sorted_classes(tmp_path):
    task, train, validation = load_raw(_csv_pair(tmp_path, "text,label\ngood film,pos\nbad film,neg\nfine,pos\n"))
    assert task.label_names == ("neg", "pos")
    assert task.text_fields == ("text",)
    assert task.name == "custom"  # one name for custom data without --task (issue 14)
    assert train is not None and len(train) == 3


def test_integer_labels_are_class_ids_and_floats_make_regression(tmp_path):
    task, _, _ = load_raw(_csv_pair(tmp_path, "text,label\na,0\nb,2\nc,1\n"))
    assert task.label_names == ("0", "1", "2")
    task, _, _ = load_raw(_csv_pair(tmp_path, "text,label\na,0.5\nb,2.25\nc,1.0\n"))
    assert task.is_regression and task.main_metric == "pearson"


def test_tsv_and_jsonl_with_sentence_pairs(tmp_path):
    rows = [
        {"premise": "a cat", "hypothesis": "a dog", "gold": "no"},
        {"premise": "x", "hypothesis": "y", "gold": "yes"},
    ]
    jsonl = "\n".join(json.dumps(r) for r in rows) + "\n"
    config = _csv_pair(tmp_path, jsonl, suffix=".jsonl").model_copy(
        update={"text_columns": ["premise", "hypothesis"], "label_column": "gold"}
    )
    task, _, _ = load_raw(config)
    assert task.text_fields == ("premise", "hypothesis") and task.label_names == ("no", "yes")
    tsv = _csv_pair(tmp_path, "sentence\tlabel\nhello, world\tyes\nbye\tno\n", suffix=".tsv")
    task, train, _ = load_raw(tsv)
    assert task.text_fields == ("sentence",) and train is not None and train[0]["sentence"] == "hello, world"


@pytest.mark.parametrize(
    ("train", "validation", "message"),
    [
        (
            'text,label\n"a, b",pos\nc,neg,extra\n',
            None,
            "malformed row at line 3 of .*train.csv: 3 fields, header has 2",
        ),
        ("text,label\n", None, "train.csv has a header but no examples"),
        ("", None, "is empty"),
        ("words,label\na,pos\n", None, "no text column found among words, label"),
        ("text,label\na,pos\nb,neg\n", "text,label\na,pos\nb,maybe\n", "row 2 of the validation set has label 'maybe'"),
        ("text,label\na,pos\n,neg\n", None, "row 2 of the training set has no text in column 'text'"),
    ],
)
def test_bad_data_gives_one_line_errors(tmp_path, train, validation, message):
    with pytest.raises(DataError, match=message) as info:
        load_raw(_csv_pair(tmp_path, train, validation))
    assert "\n" not in str(info.value)


def test_missing_files_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_raw(DataConfig(train_file=tmp_path / "nope.csv", validation_file=tmp_path / "nope.csv"))
    with pytest.raises(DataError, match="unsupported data file"):
        load_raw(DataConfig(train_file=tmp_path / "x.xlsx", validation_file=tmp_path / "x.xlsx"))
    with pytest.raises(DataError, match="no validation file"):
        load_raw(DataConfig(train_file=tmp_path / "x.csv"))


def test_label_names_option_fixes_the_label_set(tmp_path):
    config = _csv_pair(tmp_path, "text,label\na,pos\nb,neg\n", "text,label\na,neutral\n")
    with pytest.raises(DataError, match="label 'neutral'"):
        load_raw(config)
    task, _, _ = load_raw(config.model_copy(update={"label_names": ["pos", "neg", "neutral"]}))
    assert task.label_names == ("pos", "neg", "neutral")


def test_glue_task_from_a_local_folder(glue_dir):
    task, train, validation = load_raw(
        DataConfig(task="cola", data_dir=glue_dir, max_train_samples=50, max_eval_samples=20)
    )
    assert task.name == "cola" and train is not None and len(train) == 50 and len(validation["validation"]) == 20


def test_glue_errors(tmp_path, glue_dir):
    with pytest.raises(DataError, match="does not exist"):
        load_raw(DataConfig(task="sst2", data_dir=tmp_path / "missing"))
    with pytest.raises(DataError, match="cannot load GLUE task 'qqp'"):
        load_raw(DataConfig(task="qqp", data_dir=glue_dir))


def test_tokenisation_and_dynamic_padding(tmp_path):
    tokenizer = tiny_tokenizer(tmp_path / "tok")
    config = _csv_pair(tmp_path, "text,label\nthe cat sat,pos\nthe movie was very very boring,neg\n")
    data = load_task_data(config.model_copy(update={"max_length": 6}), tokenizer)
    assert data.train is not None
    first, second = data.train[0], data.train[1]
    assert first["length"] == 5 and second["length"] == 6  # [CLS] the cat sat [SEP]; truncated to 6
    assert second["input_ids"][-1] == tokenizer.sep_token_id
    assert data.train.features["labels"].dtype == "int64"
    batch = DistillationCollator(tokenizer.pad_token_id)([first, second])
    assert batch["input_ids"].shape == (2, 6)
    assert batch["attention_mask"].tolist()[0] == [1, 1, 1, 1, 1, 0]
    assert batch["input_ids"][0, 5] == tokenizer.pad_token_id
    assert batch["labels"].tolist() == [1, 0]


def test_collator_pads_to_max_length_and_pads_token_signals():
    features = [
        {
            "input_ids": [2, 5, 3],
            "attention_mask": [1, 1, 1],
            "labels": 0,
            "teacher_logits": [0.1, 0.9],
            "teacher_attr_map": [[0.2, 0.3, 0.4]],
        },
        {
            "input_ids": [2, 3],
            "attention_mask": [1, 1],
            "labels": 1,
            "teacher_logits": [0.5, 0.5],
            "teacher_attr_map": [[0.6, 0.8]],
        },
    ]
    batch = DistillationCollator(0, pad_to=4, token_signals=["attr_map"])(features)
    assert batch["input_ids"].tolist() == [[2, 5, 3, 0], [2, 3, 0, 0]]
    assert batch["teacher_logits"].shape == (2, 2)
    assert batch["teacher_attr_map"].shape == (2, 1, 4)
    assert torch.allclose(batch["teacher_attr_map"][1, 0], torch.tensor([0.6, 0.8, 0.0, 0.0]))


def test_holdout_fraction_replaces_the_dev_set_with_a_fixed_part_of_train(glue_dir):
    config = DataConfig(task="cola", data_dir=glue_dir, holdout_fraction=0.1)
    task, train, validation = load_raw(config)
    assert list(validation) == ["holdout"]
    holdout = validation["holdout"]
    assert train is not None and len(train) + len(holdout) == 8551
    assert not set(train["idx"]) & set(holdout["idx"])
    _, _, again = load_raw(config.model_copy(update={"max_train_samples": 100}))
    assert again["holdout"]["idx"] == holdout["idx"]  # the same examples, whatever else changes
