"""Students built from teachers, and the checks between teacher, student and task."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel

from kdkit import models
from kdkit.attribution import embedding_block
from kdkit.errors import ModelError
from kdkit.tasks import get_task
from kdkit.testing import tiny_classifier, tiny_tokenizer


@pytest.mark.parametrize(
    ("teacher_layers", "student_layers", "expected"),
    [(6, 3, [1, 3, 5]), (12, 6, [1, 3, 5, 7, 9, 11]), (6, 1, [5]), (6, 6, [0, 1, 2, 3, 4, 5]), (6, 4, [1, 2, 4, 5])],
)
def test_evenly_spaced_layers(teacher_layers, student_layers, expected):
    assert models.evenly_spaced_layers(teacher_layers, student_layers) == expected


@pytest.mark.parametrize("architecture", ["bert", "roberta", "distilbert"])
def test_copy_student_takes_the_teachers_weights(architecture):
    teacher = tiny_classifier(architecture, num_layers=4)
    student = models.copy_student(teacher, 2)
    assert student.config.kdkit_copied_layers == [1, 3]
    prefix, teacher_layers = models.layer_list(teacher)
    _, student_layers = models.layer_list(student)
    assert len(student_layers) == 2
    for s_index, t_index in enumerate([1, 3]):
        for (name, s_param), (_, t_param) in zip(
            student_layers[s_index].named_parameters(), teacher_layers[t_index].named_parameters(), strict=True
        ):
            assert torch.equal(s_param, t_param), name
    assert torch.equal(student.get_input_embeddings().weight, teacher.get_input_embeddings().weight)
    teacher_head = {k: v for k, v in teacher.state_dict().items() if not k.startswith(prefix)}
    for key, value in teacher_head.items():
        assert torch.equal(student.state_dict()[key], value), key


def test_copy_student_layer_count_is_checked():
    with pytest.raises(ModelError, match="copy:5 needs 1 to 2 layers"):
        models.copy_student(tiny_classifier("bert", num_layers=2), 5)


def test_copy_student_with_eager_attention():
    student = models.copy_student(tiny_classifier("bert"), 1, attn_implementation="eager")
    assert student.config._attn_implementation == "eager"


def test_head_must_fit_the_task(tmp_path, tiny_teacher):
    with pytest.raises(ModelError, match="has 2 output\\(s\\) but task 'mnli' needs 3 labels"):
        models.load_classifier(str(tiny_teacher), get_task("mnli"), role="teacher")
    with pytest.raises(ModelError, match="needs a regression output"):
        models.load_classifier(str(tiny_teacher), get_task("stsb"), role="teacher")
    assert models.load_classifier(str(tiny_teacher), get_task("sst2")).config.num_labels == 2


def test_a_model_without_a_classifier_head_is_refused(tmp_path):
    base = AutoModel.from_config(tiny_classifier("bert").config)
    base.config.architectures = ["BertModel"]
    base.save_pretrained(tmp_path / "base")
    with pytest.raises(ModelError, match="is a BertModel, not a sequence classifier"):
        models.load_classifier(str(tmp_path / "base"), get_task("sst2"), role="teacher")
    with pytest.raises(ModelError, match="has no config.json"):
        models.load_classifier(str(tmp_path), get_task("sst2"), role="teacher")


def test_vocabulary_mismatch_is_refused(tmp_path):
    a = tiny_tokenizer(tmp_path / "a")
    b = tiny_tokenizer(tmp_path / "b")
    models.check_same_vocabulary(a, b)
    b.add_tokens(["zebra"])
    with pytest.raises(ModelError, match="student's tokenizer \\(141 tokens\\) differs from the teacher's \\(140"):
        models.check_same_vocabulary(a, b)


def test_fingerprint_changes_with_the_weights():
    model = tiny_classifier("bert", seed=0)
    same = tiny_classifier("bert", seed=0)
    assert models.model_fingerprint(model) == models.model_fingerprint(same)
    with torch.no_grad():
        same.classifier.bias.add_(1e-3)
    assert models.model_fingerprint(model) != models.model_fingerprint(same)


@pytest.mark.parametrize("architecture", ["bert", "roberta", "distilbert", "electra", "deberta-v2"])
def test_embedding_block_is_found_through_the_models_own_api(architecture):
    model = tiny_classifier(architecture)
    block = embedding_block(model)
    assert model.get_input_embeddings() in list(block.children())
    captured = []
    handle = block.register_forward_hook(lambda _m, _a, out: captured.append(out))
    ids = torch.randint(5, 100, (2, 7))
    model(input_ids=ids, attention_mask=torch.ones_like(ids))
    handle.remove()
    assert captured[0].shape == (2, 7, model.config.hidden_size if architecture != "distilbert" else model.config.dim)


def test_saved_model_records_its_task(tmp_path, tiny_teacher):
    task, max_length = models.read_task_file(tiny_teacher)  # type: ignore[misc]
    assert task.label_names == ("neg", "pos") and max_length == 64
    assert models.read_task_file(tmp_path) is None
