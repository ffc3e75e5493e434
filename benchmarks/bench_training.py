"""Benchmark: one training epoch of the HILBERT head on cached features vs one that re-encodes every document.

    .venv/bin/python benchmarks/bench_training.py [--features outputs/demo/features] [--dataset outputs/demo/dataset]
        [--config configs/demo.yaml] [--reencode-documents 8] [--repeats 3] [--threads 2]
        [--output benchmarks/results/training.json]

(a) cached  -- the README's training path: rows of the features dataset (`extract_features.py` output) batched by
               `training.data.FeaturesCollator`, `HilbertForSequenceClassification` head only (with_encoders=False),
               forward with labels + backward + AdamW step. One epoch = every document of the split once, batches of
               `per_device_train_batch_size` (configs/demo.yaml: 8) in a seeded shuffled order.
(b) re-encode -- `train.py --end-to-end`'s path: rows of the raw dataset batched by `training.data.RawDocumentsCollator`
               (audio decoding + HilbertProcessor, audio_mode="exact"), the same head with the frozen encoders
               (offline:whisper-tiny.en, offline:all-MiniLM-L6-v2) running inside every forward, + backward + step.
               It runs on a seeded random subset of K documents (default 8, one batch) and is scaled to the epoch per
               document (and, as a check, per segment): the output says so.

The head settings are configs/demo.yaml's. Both paths use a plain loop over the collated batches (no Trainer: no
logging, evaluation or checkpointing in the timings), the same optimizer and `torch.set_num_threads(--threads)`.
(train.py itself uses 1 thread for cached-feature training on CPU.) The cached epoch is warmed up once and timed
`--repeats` times (median); the re-encoding pass is warmed up on one document and timed `--reencode-repeats` times.
Timings are wall-clock on a shared machine: compare the ratio within one run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import datasets
import numpy as np
import torch
import yaml
from transformers import AutoConfig

from hilbert_app.encoders import resolve_encoder
from hilbert_app.features.extract import decode_audio
from hilbert_app.features.store import load_features
from hilbert_app.training.data import FeaturesCollator, RawDocumentsCollator, label_columns, tasks_from_dataset
from hilbert_app.training.settings import head_settings
from modeling_hilbert import HilbertConfig, HilbertProcessor
from modeling_hilbert.encoders_hilbert import load_pretrained_encoder
from modeling_hilbert.modeling_hilbert import HilbertForSequenceClassification

ROOT = Path(__file__).resolve().parents[1]


def batches(order: list[int], size: int) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order), size)]


def run_epoch(model, optimizer, dataset, collator, order: list[int], batch_size: int) -> float:
    """Collate (from the dataset rows) + forward + backward + step over `order`; returns wall seconds."""
    model.train()
    t0 = time.perf_counter()
    for rows in batches(order, batch_size):
        batch = collator([dataset[i] for i in rows])
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", default=str(ROOT / "outputs/demo/features"))
    parser.add_argument("--dataset", default=str(ROOT / "outputs/demo/dataset"))
    parser.add_argument("--config", default=str(ROOT / "configs/demo.yaml"))
    parser.add_argument("--reencode-documents", type=int, default=8, help="K: documents in the re-encoding pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed cached epochs (median)")
    parser.add_argument("--reencode-repeats", type=int, default=1, help="timed re-encoding passes (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/training.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    settings = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    head = head_settings(settings)
    batch_size = int(settings.get("per_device_train_batch_size", 8))
    lr, wd = float(settings.get("learning_rate", 1e-3)), float(settings.get("weight_decay", 0.01))

    features, metadata = load_features(args.features)
    split = features["train"]
    names = {k: v["name_or_path"] for k, v in metadata["encoders"].items()}
    audio_mode = (metadata.get("processor") or {}).get("audio_mode", "exact")
    configs = {k: AutoConfig.from_pretrained(resolve_encoder(n)) for k, n in names.items()}
    tasks = tasks_from_dataset(split)
    n_docs = split.num_rows
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(n_docs).tolist()
    segments_per_doc = np.asarray([int(np.sum(m)) for m in split.with_format(None)["audio_segment_mask"]])

    # (a) cached features
    torch.manual_seed(args.seed)
    config = HilbertConfig(
        audio_config=configs["audio"],
        text_config=configs["text"],
        with_encoders=False,
        audio_mode=audio_mode,
        tasks=tasks,
        **head,
    )
    model = HilbertForSequenceClassification(config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=wd)
    collator = FeaturesCollator(label_columns(split))
    run_epoch(model, optimizer, split, collator, order, batch_size)  # warm-up
    cached_times = [run_epoch(model, optimizer, split, collator, order, batch_size) for _ in range(args.repeats)]
    cached = statistics.median(cached_times)
    print(
        f"cached epoch ({n_docs} documents): median {cached:.3f} s ({', '.join(f'{t:.3f}' for t in cached_times)})",
        flush=True,
    )

    # (b) re-encoding through the frozen encoders (exact mode, as the features were extracted)
    raw = datasets.load_from_disk(args.dataset)["train"].cast_column("audio", datasets.Audio(decode=False))
    if list(raw["id"]) != list(split.with_format(None)["id"]):
        raise SystemExit(
            "The raw dataset and the features list different documents; pass matching --dataset/--features."
        )
    encoders = {k: load_pretrained_encoder(resolve_encoder(n)) for k, n in names.items()}
    processor = HilbertProcessor.from_encoders_pretrained(
        resolve_encoder(names["audio"]), resolve_encoder(names["text"]), audio_mode=audio_mode
    )
    torch.manual_seed(args.seed)
    e2e_config = HilbertConfig(
        audio_config=encoders["audio"].config,
        text_config=encoders["text"].config,
        with_encoders=True,
        audio_mode=audio_mode,
        tasks=tasks,
        **head,
    )
    e2e = HilbertForSequenceClassification(e2e_config, audio_encoder=encoders["audio"], text_encoder=encoders["text"])
    trainable = [p for p in e2e.parameters() if p.requires_grad]
    e2e_optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=wd)
    raw_collator = RawDocumentsCollator(processor, label_columns(raw), decode_audio)
    k = min(args.reencode_documents, n_docs)
    subset = order[:k]
    run_epoch(e2e, e2e_optimizer, raw, raw_collator, order[k : k + 1] or subset[:1], batch_size)  # warm-up, 1 doc
    e2e_times = [
        run_epoch(e2e, e2e_optimizer, raw, raw_collator, subset, batch_size) for _ in range(args.reencode_repeats)
    ]
    e2e_subset = statistics.median(e2e_times)
    subset_segments = int(segments_per_doc[subset].sum())
    per_doc = e2e_subset / k
    e2e_epoch_docs = per_doc * n_docs
    e2e_epoch_segs = e2e_subset / subset_segments * int(segments_per_doc.sum())
    print(
        f"re-encoding pass ({k} documents, {subset_segments} segments): median {e2e_subset:.2f} s "
        f"({', '.join(f'{t:.2f}' for t in e2e_times)}) -> epoch of {n_docs} documents ~{e2e_epoch_docs:.1f} s "
        f"(scaled per document; per segment: {e2e_epoch_segs:.1f} s)",
        flush=True,
    )

    report = {
        "benchmark": "one training epoch: cached features vs re-encoding",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "encoders": names,
        "audio_mode": audio_mode,
        "head": head,
        "batch_size": batch_size,
        "documents": n_docs,
        "segments": int(segments_per_doc.sum()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "cached": {
            "epoch_s": cached,
            "times_s": cached_times,
            "documents_per_s": n_docs / cached,
            "repeats": args.repeats,
        },
        "reencode": {
            "subset_documents": k,
            "subset_segments": subset_segments,
            "subset_s": e2e_subset,
            "times_s": e2e_times,
            "documents_per_s": k / e2e_subset,
            "epoch_s_scaled_per_document": e2e_epoch_docs,
            "epoch_s_scaled_per_segment": e2e_epoch_segs,
            "repeats": args.reencode_repeats,
            "note": f"measured on {k} of {n_docs} documents (seeded random subset), scaled to the epoch per document",
        },
        "ratio_reencode_over_cached": e2e_epoch_docs / cached,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(f"\n| path | epoch s ({n_docs} docs) | documents/s | note |\n|---|---|---|---|")
    print(f"| cached features | {cached:.3f} | {n_docs / cached:.1f} | median of {args.repeats} epochs |")
    print(
        f"| re-encode (exact) | {e2e_epoch_docs:.1f} | {k / e2e_subset:.3f} | {k} docs measured, scaled per document |"
    )
    print(f"\nre-encoding / cached: {report['ratio_reencode_over_cached']:.0f}x; wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
