"""Benchmark: does the feature path change what HILBERT learns? Macro-AUC of HILBERT trained on naive, exact and
fast segment features of the same demo corpus, same folds, seeds and head settings.

    .venv/bin/python benchmarks/bench_feature_quality.py [--dataset outputs/demo/dataset]
        [--exact-features outputs/demo/features] [--work-dir outputs/bench] [--seeds 0,1,2]
        [--output benchmarks/results/feature_quality.json]

The three feature sets (audio: Whisper tiny.en; text: all-MiniLM-L6-v2, both offline):

* exact -- `extract_features.py` (default exact mode), i.e. `--exact-features` (what `scripts/demo.sh` built).
* fast  -- `extract_features.py --fast` on the same dataset (built here once, cached in --work-dir).
* naive -- the per-segment loop users write by hand: for every segment slot of the exact features (its
           `segment_times`), the clip padded to Whisper's 30-s window, one `WhisperEncoder` call per segment, masked
           mean over the real frames. Text features are taken from the exact set (tokenizer + MiniLM does not depend
           on the audio path; `bench_extraction.py` measured the per-segment and batched text vectors identical).

Then `train.py --config configs/demo.yaml --variants HILBERT --no_final_model` on each set (5 grouped folds x the
seeds, identical splits), and the macro-AUC per fold/seed run. Reported: mean +- std per set, the paired difference
to exact (same fold and seed) with its mean and std, and the whole-corpus cosine of each set's audio vectors to
the exact ones. Everything is cached in --work-dir, so an interrupted run resumes.

Wall-clock numbers are not the point here (see bench_extraction.py); quality is.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm

from hilbert_app.features.extract import decode_audio, load_extractor
from hilbert_app.features.store import METADATA_NAME, load_features
from modeling_hilbert.pooling_hilbert import masked_mean

ROOT = Path(__file__).resolve().parents[1]

AUDIO = "offline:whisper-tiny.en"
TEXT = "offline:all-MiniLM-L6-v2"
SETS = ("naive", "exact", "fast")


def run(command: list[str], log: Path) -> None:
    """Run a CLI step, its output in `log`; fail loudly with the log's tail."""
    print("  $ " + " ".join(command), flush=True)
    with open(log, "a", encoding="utf-8") as out:
        code = subprocess.call(
            command,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
        )
    if code != 0:
        tail = log.read_text(encoding="utf-8").splitlines()[-30:]
        raise SystemExit(f"{command[1]} failed (exit {code}); the end of {log}:\n" + "\n".join(tail))


@torch.inference_mode()
def naive_audio_features(extractor, wave: np.ndarray, rate: int, times: np.ndarray, mask: list[bool]) -> np.ndarray:
    """(S, D) float32: one Whisper call per real segment slot on its clip padded to 30 s (zeros where mask is False)."""
    fe, encoder = extractor.processor.feature_extractor, extractor.model.audio_encoder
    width = encoder.config.d_model
    out = np.zeros((len(mask), width), dtype=np.float32)
    for s, keep in enumerate(mask):
        if not keep:
            continue
        start, end = float(times[s][0]), float(times[s][1])
        samples = wave[round(start * rate) : round(end * rate)]  # the processor's sample range
        mel = fe(samples, sampling_rate=rate, return_tensors="pt")["input_features"]  # (1, 80, 3000)
        hidden = encoder(input_features=mel.to(encoder.dtype)).last_hidden_state  # (1, 1500, D)
        real_mel = math.ceil(len(samples) / fe.hop_length)
        frame_mask = (torch.arange(mel.shape[-1]) < real_mel)[::2][: hidden.shape[1]][None]
        out[s] = masked_mean(hidden.float(), frame_mask)[0].numpy()
    return out


def build_naive(dataset_dir: str, exact_dir: str, out_dir: Path, threads: int) -> dict:
    """The naive feature set next to the exact one (same rows, masks, times and text vectors); returns timing."""
    if (out_dir / METADATA_NAME).is_file():
        return json.loads((out_dir / "naive_timing.json").read_text())
    torch.set_num_threads(threads)
    raw = datasets.load_from_disk(dataset_dir)["train"].cast_column("audio", datasets.Audio(decode=False))
    row_of = {doc_id: i for i, doc_id in enumerate(raw["id"])}
    exact = datasets.load_from_disk(exact_dir)
    extractor = load_extractor(AUDIO, TEXT, fast=False, device="cpu", dtype="float32")
    if extractor.processor.feature_extractor.sampling_rate != 16000:
        raise SystemExit("expected a 16 kHz feature extractor")
    new_splits, segments, t0 = {}, 0, time.perf_counter()
    for split, table in exact.items():
        vectors = []
        for row in tqdm(table, desc=f"naive loop [{split}]", unit="doc"):
            audio = raw[row_of[row["id"]]]["audio"]
            wave, rate = decode_audio(audio, row["id"], split)  # mono, as the processor sees it
            wave = wave.numpy()
            if rate != 16000:
                raise SystemExit(
                    f"{row['id']}: {rate} Hz; the demo corpus is 16 kHz (this benchmark does not resample)."
                )
            times = np.asarray(row["segment_times"], dtype=np.float64)
            features = naive_audio_features(extractor, wave, rate, times, row["audio_segment_mask"])
            vectors.append(features.astype(np.float16))  # stored like the exact set
            segments += int(sum(row["audio_segment_mask"]))
        new_splits[split] = table.map(
            lambda _, i, vectors=vectors: {"audio_features": vectors[i]},
            with_indices=True,
            features=table.features,
            desc="naive features",
        )
    seconds = time.perf_counter() - t0
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    datasets.DatasetDict(new_splits).save_to_disk(str(tmp))
    metadata = json.loads((Path(exact_dir) / METADATA_NAME).read_text(encoding="utf-8"))
    metadata["benchmark_note"] = (
        "naive per-segment loop (30-s padded window, one encoder call per segment); text "
        "features copied from the exact set"
    )
    (tmp / METADATA_NAME).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    timing = {"segments": segments, "seconds": seconds, "segments_per_s": segments / seconds, "threads": threads}
    (tmp / "naive_timing.json").write_text(json.dumps(timing) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return timing


def audio_vectors(path: str) -> dict[str, np.ndarray]:
    """{document id: (real segments, D) float32 audio vectors}."""
    dataset, _ = load_features(path)
    out = {}
    for table in dataset.values():
        for row in table:
            mask = row["audio_segment_mask"].bool()
            out[row["id"]] = row["audio_features"][mask].double().numpy()
    return out


def compare(vectors: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict:
    if vectors.keys() != reference.keys():
        raise SystemExit("the feature sets hold different documents")
    cos, diff, shapes_differ = [], 0.0, 0
    for doc_id, ref in reference.items():
        x = vectors[doc_id]
        if x.shape != ref.shape:  # fast/exact plan the same pieces, so this would be a bug
            shapes_differ += 1
            continue
        cos.extend((x * ref).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(ref, axis=1)))
        diff = max(diff, float(np.abs(x - ref).max()))
    return {
        "segments": len(cos),
        "cosine_mean": float(np.mean(cos)),
        "cosine_min": float(np.min(cos)),
        "max_abs_diff": diff,
        "documents_with_other_segment_count": shapes_differ,
    }


def fold_aucs(metrics_path: Path) -> list[float]:
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    task = next(iter(metrics))
    return [float(v) for v in metrics[task]["macro_auc"]["folds"]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=str(ROOT / "outputs/demo/dataset"))
    parser.add_argument("--exact-features", default=str(ROOT / "outputs/demo/features"))
    parser.add_argument("--work-dir", default=str(ROOT / "outputs/bench"))
    parser.add_argument("--config", default=str(ROOT / "configs/demo.yaml"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the naive loop")
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/feature_quality.json"))
    args = parser.parse_args(argv)
    for path in (args.dataset, args.exact_features):
        if not Path(path).is_dir():
            raise SystemExit(f"missing {path}: run 'bash scripts/demo.sh' first")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    paths = {"exact": args.exact_features, "fast": str(work / "features_fast"), "naive": str(work / "features_naive")}

    print("== fast features (extract_features.py --fast)", flush=True)
    if not (Path(paths["fast"]) / METADATA_NAME).is_file():
        run(
            [
                py,
                "dataset_scripts/extract_features.py",
                "--dataset",
                args.dataset,
                "--audio-encoder",
                AUDIO,
                "--text-encoder",
                TEXT,
                "--fast",
                "--output-dir",
                paths["fast"],
                "--no-progress",
            ],
            work / "extract_fast.log",
        )
    print("== naive features (one 30-s padded Whisper call per segment)", flush=True)
    naive_timing = build_naive(args.dataset, args.exact_features, Path(paths["naive"]), args.threads)

    print("== HILBERT on each feature set (same folds, seeds, settings)", flush=True)
    aucs = {}
    for name in SETS:
        out = work / f"train_{name}"
        if not (out / "metrics.json").is_file():
            run(
                [
                    py,
                    "train.py",
                    "--config",
                    args.config,
                    "--features",
                    paths[name],
                    "--output-dir",
                    str(out),
                    "--variants",
                    "HILBERT",
                    "--seeds",
                    args.seeds,
                    "--no_final_model",
                ],
                work / f"train_{name}.log",
            )
        aucs[name] = fold_aucs(out / "metrics.json")

    exact_vectors = audio_vectors(paths["exact"])
    results = {}
    for name in SETS:
        paired = [a - b for a, b in zip(aucs[name], aucs["exact"])]
        results[name] = {
            "macro_auc_mean": statistics.mean(aucs[name]),
            "macro_auc_std": statistics.stdev(aucs[name]),
            "macro_auc_runs": aucs[name],
            "runs": len(aucs[name]),
            "paired_diff_vs_exact_mean": statistics.mean(paired),
            "paired_diff_vs_exact_std": statistics.stdev(paired),
            "audio_vs_exact": compare(audio_vectors(paths[name]), exact_vectors) if name != "exact" else None,
        }
    report = {
        "benchmark": "HILBERT macro-AUC on naive vs exact vs fast segment features",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "dataset": args.dataset,
        "config": args.config,
        "seeds": args.seeds,
        "variant": "HILBERT",
        "naive_loop_timing": naive_timing,
        "results": results,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(
        "\n| features | macro-AUC (mean ± std, runs) | paired diff vs exact (points) | audio cos vs exact (mean / min) "
        "| max abs diff |"
    )
    print("|---|---|---|---|---|")
    for name in SETS:
        r = results[name]
        cmp = r["audio_vs_exact"]
        cos = f"{cmp['cosine_mean']:.4f} / {cmp['cosine_min']:.4f}" if cmp else "-"
        diff = f"{cmp['max_abs_diff']:.3g}" if cmp else "-"
        print(
            f"| {name} | {r['macro_auc_mean']:.3f} ± {r['macro_auc_std']:.3f} ({r['runs']}) | "
            f"{100 * r['paired_diff_vs_exact_mean']:+.1f} ± {100 * r['paired_diff_vs_exact_std']:.1f} | {cos} | {diff} "
            f"|"
        )
    print(
        f"\nnaive loop over the corpus: {naive_timing['segments']} segments in {naive_timing['seconds']:.0f} s "
        f"({naive_timing['segments_per_s']:.2f} segments/s); wrote {args.output}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
