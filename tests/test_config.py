"""HilbertConfig: sub-configs, tasks, validation and round trips."""

import json

import pytest
from tiny_models import AUDIO_CONFIGS, TEXT_CONFIGS, hilbert_config

from modeling_hilbert import HilbertConfig


@pytest.mark.parametrize("audio", list(AUDIO_CONFIGS))
@pytest.mark.parametrize("text", list(TEXT_CONFIGS))
def test_any_audio_and_text_sub_config_round_trips(audio, text, tmp_path):
    config = hilbert_config(audio, text)
    config.save_pretrained(tmp_path)
    loaded = HilbertConfig.from_pretrained(tmp_path)
    assert loaded.audio_config.model_type == config.audio_config.model_type  # "hubert_group" is a hubert
    assert loaded.text_config.model_type == config.text_config.model_type
    assert loaded.audio_config.to_dict() == config.audio_config.to_dict()
    assert loaded.tasks == config.tasks and loaded.hidden_size == 16


def test_defaults_build_whisper_and_bert_sub_configs():
    config = HilbertConfig()
    assert config.audio_config.model_type == "whisper" and config.text_config.model_type == "bert"
    assert config.tasks == [
        {
            "name": "label",
            "type": "multiclass",
            "id2label": {0: "LABEL_0", 1: "LABEL_1"},
            "class_weights": None,
            "focal_gamma": None,
        }
    ]


def test_unknown_keys_raise_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown keys \['hiden_size'\].*known keys:.*hidden_size"):
        HilbertConfig(hiden_size=64)


def test_unknown_keys_in_a_saved_config_are_rejected_on_load(tmp_path):
    HilbertConfig().save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["num_expert"] = 8
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="num_expert"):
        HilbertConfig.from_pretrained(tmp_path)


def test_single_task_from_num_labels_and_id2label():
    config = HilbertConfig(id2label={0: "healthy", 1: "depressed", 2: "anxious"})
    assert config.tasks[0]["id2label"] == {0: "healthy", 1: "depressed", 2: "anxious"}
    assert config.label2id == {"healthy": 0, "depressed": 1, "anxious": 2}
    assert len(HilbertConfig(num_labels=5).tasks[0]["id2label"]) == 5
    assert HilbertConfig(num_labels=4, problem_type="multi_label_classification").tasks[0]["type"] == "multilabel"


def test_tasks_accept_labels_or_id2label_and_sync_the_first_task(tmp_path):
    config = HilbertConfig(
        tasks=[
            {"name": "phq", "type": "multiclass", "id2label": {"0": "none", "1": "mild", "2": "severe"}},
            {"name": "ptsd", "type": "binary", "labels": ["no", "yes"], "class_weights": [4.0], "focal_gamma": 2},
        ]
    )
    assert config.id2label == {0: "none", 1: "mild", 2: "severe"}
    assert config.task("ptsd")["class_weights"] == [4.0] and config.task("ptsd")["focal_gamma"] == 2.0
    assert [config.task_num_outputs(t) for t in config.tasks] == [3, 1]
    config.save_pretrained(tmp_path)
    assert HilbertConfig.from_pretrained(tmp_path).tasks == config.tasks


@pytest.mark.parametrize(
    "tasks, message",
    [
        ([{"name": "a", "type": "ordinal", "labels": ["x", "y"]}], "type must be one of"),
        ([{"name": "a", "type": "binary", "labels": ["x", "y", "z"]}], "exactly 2 labels"),
        ([{"name": "a", "labels": ["x"]}], "at least 2 labels"),
        ([{"name": "a.b", "labels": ["x", "y"]}], "letters, digits"),
        ([{"name": "a", "labels": ["x", "y"]}, {"name": "a", "labels": ["x", "y"]}], "duplicate names"),
        ([{"name": "a", "labels": ["x", "y"], "class_weights": [1.0]}], "class_weights must be 2"),
        ([{"name": "a", "labels": ["x", "y"], "class_weights": [1.0, -1.0]}], "non-negative"),
        ([{"name": "a", "labels": ["x", "y"], "weights": [1.0, 1.0]}], "unknown keys"),
        ([{"name": "a", "id2label": {0: "x", 2: "y"}}], "keys must be 0..C-1"),
        ([], "tasks is empty"),
    ],
)
def test_invalid_tasks_raise(tasks, message):
    with pytest.raises(ValueError, match=message):
        HilbertConfig(tasks=tasks)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"modalities": "video"}, "modalities must be one of"),
        ({"fusion": "sum"}, "fusion must be one of"),
        ({"classifier": "svm"}, "classifier must be one of"),
        ({"contrastive_target": "text"}, "contrastive_target must be one of"),
        ({"joint_sequence": "interleave"}, "joint_sequence must be one of"),
        ({"hidden_size": 0}, "positive integer"),
        ({"hidden_size": 30, "num_attention_heads": 4}, "divisible"),
        ({"num_experts": 2, "moe_top_k": 3}, "moe_top_k"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"cka_weight": -0.1}, "cka_weight must be a finite number >= 0"),
        ({"mi_weight": float("nan")}, "mi_weight must be a finite number"),
        ({"temperature_min": 0.5, "temperature_init": 0.07}, "temperature_min <= temperature_init"),
        ({"num_cross_attention_layers": -1}, ">= 0"),
    ],
)
def test_impossible_settings_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        HilbertConfig(**overrides)


def test_every_ablation_switch_value_is_accepted():
    for key, values in {
        "modalities": ["both", "audio", "text"],
        "fusion": ["cross_attention", "concat"],
        "classifier": ["moe", "mlp"],
        "contrastive_target": ["joint", "audio_text"],
        "joint_sequence": ["per_segment", "concat_sequence"],
    }.items():
        for value in values:
            assert getattr(HilbertConfig(**{key: value}), key) == value


def test_auto_map_names_all_three_auto_classes():
    auto_map = HilbertConfig().auto_map
    assert auto_map["AutoConfig"] == "configuration_hilbert.HilbertConfig"
    assert auto_map["AutoModel"] == "modeling_hilbert.HilbertModel"
    assert auto_map["AutoModelForSequenceClassification"] == "modeling_hilbert.HilbertForSequenceClassification"
