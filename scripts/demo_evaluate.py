"""Demo step 4: train HILBERT's head on cached features, compare with unimodal baselines, save a full model.

This is the small end-to-end evaluation the README's demo command runs until `train.py` (HilbertTrainer,
seeds, the full baseline/ablation table, reports) lands. It keeps to the honest minimum: grouped, stratified
folds from the dataset, class weights from each training split only, macro ROC-AUC / macro-F1 / balanced
accuracy per fold reported as mean and standard deviation, never the best fold.

    python scripts/demo_evaluate.py --features DIR --audio-encoder offline:whisper-tiny.en \
        --text-encoder offline:all-MiniLM-L6-v2 --output-dir DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataset_scripts.features import check_fingerprint, load_features  # noqa: E402
from dataset_scripts.offline_encoders import encoder_revision, resolve_encoder  # noqa: E402
from modeling_hilbert import HilbertForSequenceClassification  # noqa: E402
from modeling_hilbert.encoders_hilbert import load_pretrained_encoder  # noqa: E402
from modeling_hilbert.modeling_hilbert import weights_sha256  # noqa: E402
from modeling_hilbert.configuration_hilbert import HilbertConfig  # noqa: E402

VARIANTS = {
    "audio-only": {"modalities": "audio"},
    "text-only": {"modalities": "text"},
    "HILBERT": {},
}
HEAD = dict(hidden_size=128, num_attention_heads=4, num_cross_attention_layers=1, intermediate_size=256,
            pooling_heads=2, pooling_hidden_size=64, projection_dim=64, num_experts=4, expert_hidden_size=128, dropout=0.1)


def collate(rows: list[dict]) -> dict:
    """Pad a list of feature rows to the longest document: `(B, S, D)` features, `(B, S)` masks."""
    longest = max(len(r["audio_segment_mask"]) for r in rows)
    batch = {}
    for key in ("audio_features", "text_features", "segment_times"):
        width = np.asarray(rows[0][key]).shape[-1]
        out = np.zeros((len(rows), longest, width), dtype=np.float32)
        for i, r in enumerate(rows):
            value = np.asarray(r[key], dtype=np.float32)
            out[i, : len(value)] = value
        batch[key] = torch.from_numpy(out)
    for key in ("audio_segment_mask", "text_segment_mask"):
        out = np.zeros((len(rows), longest), dtype=bool)
        for i, r in enumerate(rows):
            out[i, : len(r[key])] = r[key]
        batch[key] = torch.from_numpy(out)
    return {
        "audio_segment_embeds": batch["audio_features"], "text_segment_embeds": batch["text_features"],
        "audio_segment_mask": batch["audio_segment_mask"], "text_segment_mask": batch["text_segment_mask"],
        "segment_times": batch["segment_times"],
    }


def class_weights(labels: np.ndarray, num_classes: int) -> list[float]:
    """Inverse-frequency weights from the training split, normalised to mean 1 (absent classes get weight 1)."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / num_classes, 1.0)
    return (weights / weights.mean()).tolist()


def train_head(model, rows, labels, epochs: int, batch_size: int, seed: int) -> None:
    generator = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01)
    model.train()
    for _ in range(epochs):
        order = generator.permutation(len(rows))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out = model(**collate([rows[i] for i in idx]), labels=torch.as_tensor(labels[idx]))
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
    model.eval()


@torch.no_grad()
def predict(model, rows) -> np.ndarray:
    model.eval()
    probs = [torch.softmax(model(**collate(rows[i : i + 16])).logits["label"], -1) for i in range(0, len(rows), 16)]
    return torch.cat(probs).numpy()


def metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    predictions = probs.argmax(-1)
    present = np.unique(labels)
    # macro ROC-AUC over the classes present in this fold (one-vs-rest); renormalise the columns it uses
    sub = probs[:, present] / probs[:, present].sum(-1, keepdims=True)
    auc = roc_auc_score(labels, sub, multi_class="ovr", average="macro", labels=present) if len(present) > 2 else roc_auc_score(labels == present[1], sub[:, 1])
    return {
        "macro_auc": float(auc),
        "macro_f1": float(f1_score(labels, predictions, average="macro", labels=present)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predictions)),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", required=True)
    parser.add_argument("--dataset", help="the raw dataset (for a prediction on one raw recording at the end)")
    parser.add_argument("--audio-encoder", required=True)
    parser.add_argument("--text-encoder", required=True)
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)

    features, metadata = load_features(args.features)
    split = features["train"]
    label_names = split.features["label"].names
    audio_path, text_path = resolve_encoder(args.audio_encoder), resolve_encoder(args.text_encoder)
    audio_encoder, text_encoder = load_pretrained_encoder(audio_path), load_pretrained_encoder(text_path)
    sources = {
        key: {"name_or_path": name, "model_type": enc.config.model_type, "revision": encoder_revision(name), "sha256": weights_sha256(enc)}
        for key, name, enc in (("audio", args.audio_encoder, audio_encoder), ("text", args.text_encoder, text_encoder))
    }
    check_fingerprint(metadata, sources)  # refuse features made by other encoders

    rows = [dict(r) for r in split]
    labels = np.asarray(split["label"])
    folds = np.asarray(split["fold"])
    results = {}
    started = time.time()
    for variant, switches in VARIANTS.items():
        per_fold = []
        for fold in np.unique(folds):
            train_idx, test_idx = np.where(folds != fold)[0], np.where(folds == fold)[0]
            torch.manual_seed(args.seed)
            config = HilbertConfig(
                audio_config=audio_encoder.config, text_config=text_encoder.config, encoder_sources=sources,
                tasks=[{"name": "label", "labels": label_names, "class_weights": class_weights(labels[train_idx], len(label_names))}],
                **HEAD, **switches,
            )
            model = HilbertForSequenceClassification(config, audio_encoder=audio_encoder, text_encoder=text_encoder)
            train_head(model, [rows[i] for i in train_idx], labels[train_idx], args.epochs, args.batch_size, args.seed)
            per_fold.append(metrics(labels[test_idx], predict(model, [rows[i] for i in test_idx])))
        results[variant] = {
            key: {"mean": float(np.mean([f[key] for f in per_fold])), "std": float(np.std([f[key] for f in per_fold])), "folds": [f[key] for f in per_fold]}
            for key in per_fold[0]
        }
        print(f"{variant:>11}: " + "  ".join(f"{k} {v['mean']:.3f} ± {v['std']:.3f}" for k, v in results[variant].items()), flush=True)
    (args.output_dir / "baselines.json").write_text(json.dumps(results, indent=2))

    # The final model: HILBERT trained on every document, saved with its encoders (and the processor).
    torch.manual_seed(args.seed)
    config = HilbertConfig(
        audio_config=audio_encoder.config, text_config=text_encoder.config, encoder_sources=sources,
        tasks=[{"name": "label", "labels": label_names, "class_weights": class_weights(labels, len(label_names))}], **HEAD,
    )
    model = HilbertForSequenceClassification(config, audio_encoder=audio_encoder, text_encoder=text_encoder)
    train_head(model, rows, labels, args.epochs, args.batch_size, args.seed)
    model_dir = args.output_dir / "model"
    model.save_pretrained(model_dir)
    processor_options = metadata.get("processor", {}).get("options", {}) if isinstance(metadata.get("processor"), dict) else {}
    try:
        from modeling_hilbert.processing_hilbert import HilbertProcessor

        HilbertProcessor.from_encoders_pretrained(audio_path, text_path, **processor_options).save_pretrained(model_dir)
    except ImportError:
        print("note: HilbertProcessor not available; the model is saved without a processor")
    print(f"cross-validated comparison and final model in {time.time() - started:.0f} s; model saved to {model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
