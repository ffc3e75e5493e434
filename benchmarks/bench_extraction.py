"""Benchmark: segment feature extraction, naive per-segment loop vs the project's exact and fast modes.

    .venv/bin/python benchmarks/bench_extraction.py [--dataset outputs/demo/dataset] [--segments 48] [--repeats 3]
        [--threads 2] [--output benchmarks/results/extraction.json]

Same real encoders (offline:whisper-tiny.en, offline:all-MiniLM-L6-v2, loaded once through
`hilbert_app.features.extract.load_extractor`), same segments, same pooling (masked mean of the last hidden
state over the real frames / tokens) in all three paths:

(a) naive  -- one segment at a time: WhisperFeatureExtractor on the clip padded to 30 s, WhisperEncoder forward on
              (1, 80, 3000), masked mean over the real output frames; tokenizer + MiniLM forward on its text.
(b) exact  -- HilbertProcessor(audio_mode="exact") on the documents holding the segments, then
              HilbertModel.get_audio/text_segment_features (Extractor.encode): batched, length-bucketed, 30-s window.
(c) fast   -- the same with audio_mode="fast" (Whisper's reduced context: only the real mel frames are encoded).

Segments: the participant turns of the demo corpus in dataset order, each split into ceil(duration / 8 s) equal
pieces (words shared as the processor does), pieces shorter than 2 s skipped, the first N kept. Each timing
includes the log-mel / tokenizer work (not the audio decoding, done once before). Every path is warmed up once on a
few segments, then timed `--repeats` times; the median is reported. Timings are wall-clock on a shared machine:
compare the RATIOS within one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import datasets
import numpy as np
import soundfile as sf
import torch

from hilbert_app.features.extract import load_extractor
from modeling_hilbert.pooling_hilbert import masked_mean
from modeling_hilbert.processing_hilbert import _split  # (the processor's own word split)

ROOT = Path(__file__).resolve().parents[1]

AUDIO = "offline:whisper-tiny.en"
TEXT = "offline:all-MiniLM-L6-v2"
MIN_S, MAX_S = 2.0, 8.0


def select_segments(dataset_dir: str, count: int, speaker: str = "participant") -> list[dict]:
    """[{doc, start, end, text, wave (float32 mono 16 kHz numpy of the whole recording)}] for the first `count`
    pieces."""
    ds = datasets.load_from_disk(dataset_dir)["train"].cast_column("audio", datasets.Audio(decode=False))
    out, waves = [], {}
    for row in ds:
        for seg in row["segments"]:
            if seg.get("speaker") != speaker:
                continue
            start, end = float(seg["start"]), float(seg["end"])
            pieces = max(1, math.ceil((end - start) / MAX_S - 1e-9))
            for p_start, p_end, p_text in _split(start, end, seg["text"], pieces):
                if p_end - p_start < MIN_S or not p_text.strip():
                    continue
                if row["id"] not in waves:
                    data, rate = sf.read(io.BytesIO(row["audio"]["bytes"]), dtype="float32", always_2d=True)
                    if rate != 16000:
                        raise SystemExit(f"{row['id']}: {rate} Hz; this benchmark expects the demo's 16 kHz audio.")
                    waves[row["id"]] = data.mean(1)
                out.append({"doc": row["id"], "start": p_start, "end": p_end, "text": p_text, "wave": waves[row["id"]]})
                if len(out) == count:
                    return out
    return out


def clip(seg: dict) -> np.ndarray:
    # The processor's sample range: [round(start * sr), round(end * sr)).
    return seg["wave"][round(seg["start"] * 16000) : round(seg["end"] * 16000)]


def documents(segments: list[dict]) -> list[dict]:
    """One processor document per source recording, holding that recording's selected segments, in order."""
    docs: dict[str, dict] = {}
    for seg in segments:
        doc = docs.setdefault(seg["doc"], {"audio": seg["wave"], "sampling_rate": 16000, "segments": []})
        doc["segments"].append({"start": seg["start"], "end": seg["end"], "text": seg["text"]})
    return list(docs.values())


@torch.inference_mode()
def naive(extractor, segments: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    fe, tok = extractor.processor.feature_extractor, extractor.processor.tokenizer
    audio_encoder, text_encoder = extractor.model.audio_encoder, extractor.model.text_encoder
    audio, text = [], []
    for seg in segments:
        samples = clip(seg)
        mel = fe(samples, sampling_rate=16000, return_tensors="pt")["input_features"]  # (1, 80, 3000): padded to 30 s
        hidden = audio_encoder(input_features=mel).last_hidden_state  # (1, 1500, d)
        real_mel = math.ceil(len(samples) / fe.hop_length)
        frame_mask = (torch.arange(mel.shape[-1]) < real_mel)[::2][: hidden.shape[1]][None]
        audio.append(masked_mean(hidden.float(), frame_mask)[0])
        enc = tok(seg["text"], truncation=True, max_length=extractor.processor.max_text_tokens, return_tensors="pt")
        hidden = text_encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        text.append(masked_mean(hidden.float(), enc["attention_mask"])[0])
    return torch.stack(audio), torch.stack(text)


SPLITS: list[tuple[float, float]] = []  # (processor s, encoders s) of each batched call


def batched(extractor, segments: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """The project's path; features come back in the segments' order (documents, then segments within each)."""
    t0 = time.perf_counter()
    inputs = extractor.processor(documents(segments), return_tensors="pt")
    t1 = time.perf_counter()
    audio, text, audio_mask, text_mask = extractor.encode(inputs)
    SPLITS.append((t1 - t0, time.perf_counter() - t1))
    if int(audio_mask.sum()) != len(segments) or int(text_mask.sum()) != len(segments):
        raise RuntimeError("The processor dropped or added segments; the comparison would be misaligned.")
    return audio[audio_mask], text[text_mask]


def timed(fn, repeats: int) -> tuple[float, list[float], tuple]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, result


def cosines(x: torch.Tensor, y: torch.Tensor) -> dict:
    c = torch.nn.functional.cosine_similarity(x.double(), y.double(), dim=-1)
    return {"mean": float(c.mean()), "min": float(c.min()), "max_abs_diff": float((x - y).abs().max())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=str(ROOT / "outputs/demo/dataset"))
    parser.add_argument("--segments", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup-segments", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (the CI machine has 2 cores)")
    parser.add_argument(
        "--encoder-batch-size",
        type=int,
        default=None,
        help="segments per encoder call in (b)/(c) (default: extract_features.py's auto, 4 on CPU)",
    )
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/extraction.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    segments = select_segments(args.dataset, args.segments)
    seconds = sum(len(clip(s)) for s in segments) / 16000
    lengths = [len(clip(s)) / 16000 for s in segments]
    print(
        f"{len(segments)} segments from {len({s['doc'] for s in segments})} documents, {seconds:.1f} s of audio "
        f"({min(lengths):.2f}-{max(lengths):.2f} s each); torch threads {torch.get_num_threads()}",
        flush=True,
    )

    # One set of encoders for every path (the exact/fast extractors differ only in processor + model audio_mode).
    exact = load_extractor(AUDIO, TEXT, fast=False, device="cpu", encoder_batch_size=args.encoder_batch_size)
    fast = load_extractor(AUDIO, TEXT, fast=True, device="cpu", encoder_batch_size=args.encoder_batch_size)
    fast.model.audio_encoder, fast.model.text_encoder = exact.model.audio_encoder, exact.model.text_encoder

    paths = {
        "naive": lambda segs: naive(exact, segs),
        "exact": lambda segs: batched(exact, segs),
        "fast": lambda segs: batched(fast, segs),
    }
    results, features = {}, {}
    for name, fn in paths.items():
        fn(segments[: args.warmup_segments])  # warm-up (allocator, kernels, tokenizer)
        SPLITS.clear()
        median, all_times, (audio, text) = timed(lambda fn=fn: fn(segments), args.repeats)
        features[name] = (audio, text)
        results[name] = {
            "median_s": median,
            "times_s": all_times,
            "segments_per_s": len(segments) / median,
            "real_time_factor": seconds / median,
        }
        if SPLITS:  # where the time goes in the project's path
            results[name]["processor_s_median"] = statistics.median(p for p, _ in SPLITS)
            results[name]["encoders_s_median"] = statistics.median(e for _, e in SPLITS)
        print(f"  {name:5s}: median {median:7.2f} s  ({', '.join(f'{t:.2f}' for t in all_times)})", flush=True)

    for name in ("exact", "fast"):
        results[name]["speedup_vs_naive"] = results["naive"]["median_s"] / results[name]["median_s"]
        results[name]["audio_cosine_vs_naive"] = cosines(features[name][0], features["naive"][0])
        results[name]["text_cosine_vs_naive"] = cosines(features[name][1], features["naive"][1])
    results["fast"]["speedup_vs_exact"] = results["exact"]["median_s"] / results["fast"]["median_s"]

    report = {
        "benchmark": "segment feature extraction",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "encoders": {"audio": AUDIO, "text": TEXT},
        "segments": len(segments),
        "audio_seconds": seconds,
        "segment_seconds_min": min(lengths),
        "segment_seconds_max": max(lengths),
        "encoder_batch_size": exact.model.config.encoder_batch_size,
        "repeats": args.repeats,
        "warmup_segments": args.warmup_segments,
        "results": results,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(
        "\n| path | median s | segments/s | real-time factor | speed-up vs naive | audio cos vs naive (mean / min) "
        "| text cos vs naive (mean / min) |\n|---|---|---|---|---|---|---|"
    )
    for name, r in results.items():
        sp = f"{r['speedup_vs_naive']:.2f}x" if "speedup_vs_naive" in r else "1.00x"
        ac = r.get("audio_cosine_vs_naive")
        tc = r.get("text_cosine_vs_naive")
        ac = f"{ac['mean']:.6f} / {ac['min']:.6f}" if ac else "-"
        tc = f"{tc['mean']:.6f} / {tc['min']:.6f}" if tc else "-"
        print(
            f"| {name} | {r['median_s']:.2f} | {r['segments_per_s']:.2f} | {r['real_time_factor']:.2f} | {sp} | {ac} | "
            f"{tc} |"
        )
    for name in ("exact", "fast"):
        r = results[name]
        print(
            f"{name}: processor (log-mel + tokenizer) {r['processor_s_median']:.2f} s, encoders "
            f"{r['encoders_s_median']:.2f} s "
            f"(medians; encoder_batch_size {report['encoder_batch_size']})"
        )
    print(f"\nfast vs exact: {results['fast']['speedup_vs_exact']:.2f}x; wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
