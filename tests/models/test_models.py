"""Students built from teachers, and the checks between teacher, student and task."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModel

from kdkit.attribution.base import embedding_block
from kdkit.data.tasks import get_task
from kdkit.errors import ConfigError, ModelError
from kdkit.models.checks import check_length_fits, check_same_vocabulary, check_token_types, position_limit
from kdkit.models.layers import layer_list
from kdkit.models.loading import load_classifier
from kdkit.models.saving import model_fingerprint, read_task_file
from kdkit.models.students import copy_student, evenly_spaced_layers
from kdkit.testing import perturb_parameters, tiny_classifier, tiny_tokenizer
from kdkit.testing.models import ARCHITECTURES


@pytest.mark.parametrize(
    ("teacher_layers", "student_layers", "expected"),
    [(6, 3, [1, 3, 5]), (12, 6, [1, 3, 5, 7, 9, 11]), (6, 1, [5]), (6, 6, [0, 1, 2, 3, 4, 5]), (6, 4, [1, 2, 4, 5])],
)
def test_evenly_spaced_layers(teacher_layers, student_layers, expected):
    assert evenly_spaced_layers(teacher_layers, student_layers) == expected


#: families whose layers copy:N copies (ALBERT shares one set of layer weights: refused)
COPYABLE = ("bert", "roberta", "deberta-v2", "distilbert", "electra", "modernbert")


@pytest.mark.parametrize("architecture", COPYABLE)
def test_copy_student_takes_the_teachers_weights(architecture):
    teacher = tiny_classifier(architecture, num_layers=4)
    student = copy_student(teacher, 2)
    assert student.config.kdkit_copied_layers == [1, 3]
    prefix, teacher_layers = layer_list(teacher)
    _, student_layers = layer_list(student)
    assert len(student_layers) == 2
    for s_index, t_index in enumerate([1, 3]):
        s_params = dict(student_layers[s_index].named_parameters())
        t_params = dict(teacher_layers[t_index].named_parameters())
        # ModernBERT's first layer has no attention norm: teacher layer 1's has no place in the student
        dropped = {"attn_norm.weight"} if architecture == "modernbert" and s_index == 0 else set()
        assert set(s_params) == set(t_params) - dropped
        for name, s_param in s_params.items():
            assert torch.equal(s_param, t_params[name]), name
    assert torch.equal(student.get_input_embeddings().weight, teacher.get_input_embeddings().weight)
    teacher_head = {k: v for k, v in teacher.state_dict().items() if not k.startswith(prefix)}
    for key, value in teacher_head.items():
        assert torch.equal(student.state_dict()[key], value), key


@pytest.mark.parametrize("architecture", COPYABLE)
def test_a_copy_of_every_layer_is_the_teacher_and_reloads_as_built(architecture, tmp_path):
    teacher = perturb_parameters(tiny_classifier(architecture, num_layers=3))
    ids = torch.randint(5, 100, (2, 20))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    whole = copy_student(teacher, 3).eval()
    part = copy_student(teacher, 2).eval()
    part.save_pretrained(tmp_path)
    reloaded = type(part).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(whole(input_ids=ids, attention_mask=mask).logits, teacher(ids, mask).logits)
        torch.testing.assert_close(reloaded(ids, mask).logits, part(input_ids=ids, attention_mask=mask).logits)


@pytest.mark.parametrize("num_layers", [1, 2, 3, 4])
def test_modernbert_copy_keeps_each_layers_attention_and_drops_the_first_layers_norm(num_layers):
    """Student layer j computes teacher layer copied[j] (given the same input): the same attention kind (global or
    an 8-token sliding window, each with its rotary base), the same mask and weights; the first student layer has
    no attention norm, as ModernBERT's first layer never has (its input is the embedding norm's output)."""
    teacher = perturb_parameters(tiny_classifier("modernbert", num_layers=4, attn_implementation="eager"))
    assert teacher.config.layer_types == ["full_attention", "sliding_attention", "sliding_attention", "full_attention"]
    student = copy_student(teacher, num_layers, attn_implementation="eager").eval()
    chosen = student.config.kdkit_copied_layers
    assert student.config.layer_types == [teacher.config.layer_types[k] for k in chosen]
    assert isinstance(student.model.layers[0].attn_norm, torch.nn.Identity)
    ids = torch.randint(5, 100, (2, 20))
    mask = torch.ones_like(ids)
    mask[1, 14:] = 0
    calls = {}
    handles = [
        layer.register_forward_hook(
            lambda _m, a, kw, o, key=(who, j): calls.__setitem__(key, (a, kw, o)), with_kwargs=True
        )
        for who, model in (("s", student), ("t", teacher))
        for j, layer in enumerate(model.model.layers)
    ]
    with torch.no_grad():
        student(input_ids=ids, attention_mask=mask)
        teacher(input_ids=ids, attention_mask=mask)
    for handle in handles:
        handle.remove()
    for j, k in enumerate(chosen):
        args, kwargs, output = calls[("s", j)]
        teacher_kwargs = calls[("t", k)][1]
        assert torch.equal(kwargs["attention_mask"], teacher_kwargs["attention_mask"])
        for mine, theirs in zip(kwargs["position_embeddings"], teacher_kwargs["position_embeddings"], strict=True):
            assert torch.equal(mine, theirs)
        layer = copy.deepcopy(teacher.model.layers[k])
        if j == 0:
            layer.attn_norm = torch.nn.Identity()
        with torch.no_grad():
            torch.testing.assert_close(layer(*args, **kwargs), output)


def test_albert_layers_are_not_copied():
    with pytest.raises(ModelError, match=r"copy:1 cannot copy layers of AlbertForSequenceClassification: its 2 layers"):
        copy_student(tiny_classifier("albert"), 1)


def test_copy_student_layer_count_is_checked():
    with pytest.raises(ModelError, match="copy:5 needs 1 to 2 layers"):
        copy_student(tiny_classifier("bert", num_layers=2), 5)


def test_copy_student_with_eager_attention():
    student = copy_student(tiny_classifier("bert"), 1, attn_implementation="eager")
    assert student.config._attn_implementation == "eager"


def test_head_must_fit_the_task(tmp_path, tiny_teacher):
    with pytest.raises(ModelError, match="has 2 output\\(s\\) but task 'mnli' needs 3 labels"):
        load_classifier(str(tiny_teacher), get_task("mnli"), role="teacher")
    with pytest.raises(ModelError, match="needs a regression output"):
        load_classifier(str(tiny_teacher), get_task("stsb"), role="teacher")
    assert load_classifier(str(tiny_teacher), get_task("sst2")).config.num_labels == 2


def test_a_model_without_a_classifier_head_is_refused(tmp_path):
    base = AutoModel.from_config(tiny_classifier("bert").config)
    base.config.architectures = ["BertModel"]
    base.save_pretrained(tmp_path / "base")
    with pytest.raises(ModelError, match="is a BertModel, not a sequence classifier"):
        load_classifier(str(tmp_path / "base"), get_task("sst2"), role="teacher")
    with pytest.raises(ModelError, match="has no config.json"):
        load_classifier(str(tmp_path), get_task("sst2"), role="teacher")


def test_vocabulary_mismatch_is_refused(tmp_path):
    a = tiny_tokenizer(tmp_path / "a")
    b = tiny_tokenizer(tmp_path / "b")
    check_same_vocabulary(a, b)
    b.add_tokens(["zebra"])
    with pytest.raises(
        ModelError,
        match=r"student's tokenizer \(141 tokens\) differs from the teacher's \(140 tokens; 1 of the student's are not "
        r"the teacher's or have other ids\); kdkit distils between models of one vocabulary: .*--student copy:N",
    ):
        check_same_vocabulary(a, b)


def test_fingerprint_changes_with_the_weights():
    model = tiny_classifier("bert", seed=0)
    same = tiny_classifier("bert", seed=0)
    assert model_fingerprint(model) == model_fingerprint(same)
    with torch.no_grad():
        same.classifier.bias.add_(1e-3)
    assert model_fingerprint(model) != model_fingerprint(same)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_embedding_block_is_found_through_the_models_own_api(architecture):
    model = (
        tiny_classifier(architecture, embedding_size=16) if architecture == "electra" else tiny_classifier(architecture)
    )
    block = embedding_block(model)
    assert model.get_input_embeddings() in list(block.children())
    captured = []
    handle = block.register_forward_hook(lambda _m, _a, out: captured.append(out))
    ids = torch.randint(5, 100, (2, 7))
    model(input_ids=ids, attention_mask=torch.ones_like(ids))
    handle.remove()
    # E is the embedding block's output: before ELECTRA's and ALBERT's projection to the hidden size
    config = model.config
    width = getattr(config, "embedding_size", None) or getattr(config, "hidden_size", None) or config.dim
    assert captured[0].shape == (2, 7, width)


def test_saved_model_records_its_task(tmp_path, tiny_teacher):
    task, max_length = read_task_file(tiny_teacher)  # type: ignore[misc]
    assert task.label_names == ("neg", "pos") and max_length == 64
    assert read_task_file(tmp_path) is None


@pytest.mark.parametrize(
    ("architecture", "limit"),
    [("bert", 40), ("roberta", 38), ("distilbert", 40), ("electra", 40), ("albert", 40), ("modernbert", 40)],
)
def test_position_limit_of_each_family(architecture, limit):
    """RoBERTa numbers positions from its padding id (1) + 1: 40 position embeddings take 38 tokens."""
    config = tiny_classifier(architecture, max_positions=40).config
    assert position_limit(config) == limit
    assert position_limit(config.to_dict()) == limit  # an export's config.json
    check_length_fits(config, limit)
    with pytest.raises(ConfigError, match=rf"--max-length {limit + 1} is longer than the teacher's {limit} positions"):
        check_length_fits(config, limit + 1, role="teacher")


def test_relative_positions_have_no_limit_and_the_padding_offset_is_explained():
    assert position_limit(tiny_classifier("deberta-v2", max_positions=40).config) is None
    roberta = tiny_classifier("roberta", max_positions=40).config
    with pytest.raises(ConfigError, match=r"max_position_embeddings 40 less 2: its positions start after the padding"):
        check_length_fits(roberta, 39)


def test_a_pair_task_needs_a_second_token_type_when_the_tokenizer_gives_one(tmp_path):
    bert_tokenizer = tiny_tokenizer(tmp_path / "bert")
    roberta = tiny_classifier("roberta").config
    pairs, single = get_task("mrpc"), get_task("sst2")
    with pytest.raises(ModelError, match=r"the teacher t has a single token type, but its tokenizer gives the second"):
        check_token_types(roberta, bert_tokenizer, pairs, role="teacher", name="t")
    check_token_types(roberta, bert_tokenizer, single)  # single texts: token type 0 only
    check_token_types(roberta, tiny_tokenizer(tmp_path / "roberta", "roberta"), pairs)  # no token types
    check_token_types(tiny_classifier("bert").config, bert_tokenizer, pairs)
