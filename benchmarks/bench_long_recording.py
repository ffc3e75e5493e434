"""Benchmark: one long recording end to end (audio file + transcript on disk -> prediction), against a lower bound.

    .venv/bin/python benchmarks/bench_long_recording.py [--minutes 60] [--modes exact,fast]
        [--paths streaming,all-at-once] [--scaling-minutes 6] [--threads 2]
        [--output benchmarks/results/long_recording.json]

The recording: the demo corpus's recordings (outputs/demo/corpus, `bash scripts/demo.sh`) concatenated in
metadata order until `--minutes` of audio, with their transcripts shifted to the new times and each turn split into
equal pieces of at most `--max-piece-seconds` (words shared as the processor splits them): a one-hour interview of
about a thousand 2-5 s segments. Cached as 16-bit WAV + JSON transcript under outputs/bench/.

The model: the demo's trained model (outputs/demo/model: Whisper tiny.en + all-MiniLM-L6-v2 + the head), copied to
outputs/bench/model with THIS checkout's code files (a saved folder runs the code it was saved with), and loaded as
users do: `pipeline("hilbert-document-classification", model=folder, trust_remote_code=True)`. The audio mode is
switched at load time, on both sides: `model_kwargs={"audio_mode": mode}` (the config) and
`processor=AutoProcessor.from_pretrained(folder, trust_remote_code=True, audio_mode=mode)`.

Each configuration (audio mode x path) runs in a fresh subprocess: `streaming` (the pipeline's default) or
`all-at-once` (`streaming=False`: the processor builds every segment's padded input first). It is warmed up on the
recording's first 20 s, then timed once on the whole file: wall time from `pipe({"audio": wav, "transcript":
json})` to the returned prediction, and peak resident memory during that call (VmHWM, reset just before it; the
memory held before the call, model included, is reported as the baseline). Timers wrapped around the components
(soundfile.read, the feature extractor, the tokenizer, the two encoders, the head) give the breakdown; "other" is
the rest (planning, tensor copies, pooling, Python).

Lower bound, from ANALYTIC operation counts: for every encoder call of the run (the input shape of each call is
recorded by a hook), 2 x multiply-adds of the matmuls and convolutions (Whisper: conv1, conv2, per layer the Q/K/V/O
projections, QK^T, AV, the MLP; BERT: the same without convolutions, plus the pooler); plus the head, counted by
FlopCounterMode on one head call on the run's feature shapes. The analytic counts are checked against
FlopCounterMode (attention forced to the math kernel, whose matmuls it counts; CPU flash attention is not counted)
on one real batch of each encoder. Seconds = operations / the machine's dense float32 matmul rate, the best of a
few GEMMs of encoder shapes at the same thread count. Elementwise work (GELU, softmax, LayerNorm), the log-mel, the
tokenizer and decoding are not in the bound: they are what the ratio wall / bound charges for.

Timings are wall-clock on a shared machine: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "outputs/bench"
PIPELINE_TASK = "hilbert-document-classification"
RATE = 16000
WARMUP_SECONDS = 20.0
GEMM_SHAPES = [  # (batch, M, K, N): Whisper tiny's projections and MLP over 1500 frames, and a shorter fast-mode batch
    (8, 1500, 384, 1536),
    (8, 1500, 1536, 384),
    (8, 1500, 384, 384),
    (32, 300, 384, 1536),
]
COMPONENTS = ("decode", "log_mel", "tokenizer", "audio_encoder", "text_encoder", "head")


# ------------------------------------------------------------------------------------------- the recording
def split_turn(start: float, end: float, text: str, max_seconds: float) -> list[tuple[float, float, str]]:
    """A turn -> ceil(duration / max) equal pieces, words shared as the processor does (its own `_split`)."""
    from modeling_hilbert.processing_hilbert import _split

    return _split(start, end, text, max(1, math.ceil((end - start) / max_seconds - 1e-9)))


def build_recording(corpus: Path, minutes: float, max_piece_seconds: float) -> tuple[Path, Path, dict]:
    """Concatenate the corpus's recordings to `minutes` of audio; WAV + JSON transcript, cached under outputs/bench."""
    import csv

    import numpy as np
    import soundfile as sf

    stem = BENCH_DIR / f"long_{minutes:g}min_{max_piece_seconds:g}s"
    wav, transcript, meta_path = stem.with_suffix(".wav"), stem.with_suffix(".json"), stem.with_suffix(".meta.json")
    if meta_path.exists() and wav.exists() and transcript.exists():
        return wav, transcript, json.loads(meta_path.read_text())
    rows = list(csv.DictReader(open(corpus / "metadata.csv", encoding="utf-8")))
    if not rows:
        raise SystemExit(f"{corpus / 'metadata.csv'} lists no recordings: run `bash scripts/demo.sh` first.")
    total = int(round(minutes * 60 * RATE))
    chunks, segments, offset, used = [], [], 0, 0
    while offset < total:
        row = rows[used % len(rows)]  # an hour needs fewer than the demo's 86 min; a longer run wraps around
        used += 1
        audio, rate = sf.read(corpus / row["file_name"], dtype="float32", always_2d=True)
        if rate != RATE:
            raise SystemExit(
                f"{row['file_name']}: {rate} Hz; this benchmark expects the demo corpus's {RATE} Hz audio."
            )
        audio = audio.mean(1)[: total - offset]
        for seg in json.loads((corpus / row["transcript"]).read_text(encoding="utf-8")):
            start, end = float(seg["start"]) + offset / RATE, min(float(seg["end"]) + offset / RATE, total / RATE)
            if end - start <= 0.05:  # cut off by the end of the hour
                continue
            for p_start, p_end, p_text in split_turn(start, end, seg["text"], max_piece_seconds):
                segments.append(
                    {"start": round(p_start, 4), "end": round(p_end, 4), "text": p_text, "speaker": seg.get("speaker")}
                )
        chunks.append(audio)
        offset += audio.shape[0]
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    sf.write(wav, np.concatenate(chunks), RATE, subtype="PCM_16")
    transcript.write_text(json.dumps(segments, indent=0), encoding="utf-8")
    lengths = [s["end"] - s["start"] for s in segments]
    meta = {
        "minutes": minutes,
        "audio_seconds": total / RATE,
        "segments": len(segments),
        "source_recordings": used,
        "segment_seconds": {"min": min(lengths), "mean": sum(lengths) / len(lengths), "max": max(lengths)},
        "segments_2_to_8_s": sum(2.0 <= x <= 8.0 for x in lengths),
        "max_piece_seconds": max_piece_seconds,
    }
    meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return wav, transcript, meta


def prepare_model(source: Path) -> Path:
    """The demo model with this checkout's code files (so that the pipeline under test is the current one)."""
    if not (source / "config.json").exists():
        raise SystemExit(f"No trained model in {source}: run `bash scripts/demo.sh` first.")
    target = BENCH_DIR / "model"
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file() and not path.name.endswith("_hilbert.py"):
            if not (target / path.name).exists() or (target / path.name).stat().st_mtime < path.stat().st_mtime:
                shutil.copy2(path, target / path.name)
    for path in (ROOT / "modeling_hilbert").glob("*_hilbert.py"):
        shutil.copy2(path, target / path.name)
    return target


# ------------------------------------------------------------------------------------------- operation counts
def whisper_flops(config, n: int, mel_frames: int) -> int:
    """2 x multiply-adds of a Whisper encoder call on (n, n_mels, T): convolutions, projections, attention, MLP."""
    d, f, layers, mels = config.d_model, config.encoder_ffn_dim, config.encoder_layers, config.num_mel_bins
    frames = (mel_frames - 1) // 2 + 1  # conv2: kernel 3, stride 2, padding 1
    convs = 2 * mel_frames * (mels * 3) * d + 2 * frames * (d * 3) * d
    layer = 8 * frames * d * d + 4 * frames * frames * d + 4 * frames * d * f  # QKVO, QK^T + AV, fc1 + fc2
    return n * (convs + layers * layer)


def bert_flops(config, n: int, tokens: int) -> int:
    """2 x multiply-adds of a BERT encoder call on (n, L) tokens: projections, attention, MLP, pooler."""
    d, f, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    layer = 8 * tokens * d * d + 4 * tokens * tokens * d + 4 * tokens * d * f
    return n * (layers * layer + 2 * d * d)


def counted_flops(fn) -> int:
    """FlopCounterMode's count of `fn()`, with attention on the math kernel (decomposed into counted matmuls)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def matmul_rate(threads: int, repeats: int = 5) -> dict:
    """Best dense float32 GEMM rate (FLOP/s) over encoder-like shapes at `threads` threads."""
    import torch

    torch.set_num_threads(threads)
    rates = {}
    for b, m, k, n in GEMM_SHAPES:
        x, w = torch.randn(b, m, k), torch.randn(k, n)
        x @ w  # warm-up
        best = min(_timed(lambda x=x, w=w: x @ w) for _ in range(repeats))
        rates[f"({b}x{m}x{k})@({k}x{n})"] = 2 * b * m * k * n / best
    return {"best_flops_per_s": max(rates.values()), "per_shape_flops_per_s": rates}


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------------- one configuration
class Timers:
    """Seconds spent in each component; encoder time inside the model's forward is subtracted to get the head."""

    def __init__(self):
        self.seconds = {name: 0.0 for name in COMPONENTS}
        self.forward_seconds = 0.0
        self.encoder_in_forward = 0.0
        self.in_forward = False
        self.audio_shapes: list[tuple[int, int]] = []  # (segments, mel frames) of each audio encoder call
        self.text_shapes: list[tuple[int, int]] = []  # (segments, tokens) of each text encoder call
        self.head_inputs: dict = {}  # the segment masks and times of the model's forward call
        self._starts: dict[str, float] = {}
        self.active = False  # only the timed call is recorded (not the warm-up, not the operation counting after it)

    def wrap(self, owner, attribute: str, name: str) -> None:
        inner = getattr(owner, attribute)

        def timed(*args, **kwargs):
            if not self.active:
                return inner(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t0

        setattr(owner, attribute, timed)

    def start(self, name: str) -> None:
        if self.active:
            self._starts[name] = time.perf_counter()

    def stop(self, name: str) -> None:
        if not self.active:
            return
        elapsed = time.perf_counter() - self._starts.pop(name)
        self.seconds[name] += elapsed
        if self.in_forward and name.endswith("_encoder"):
            self.encoder_in_forward += elapsed


def instrument(pipe, timers: Timers) -> None:
    """Timers around decoding, log-mel, tokenizer, encoders (hooks that also record each call's shape) and head."""
    import soundfile

    timers.wrap(soundfile, "read", "decode")  # the processor's `_read_audio` calls soundfile.read
    timers.wrap(type(pipe.processor.feature_extractor), "__call__", "log_mel")
    timers.wrap(type(pipe.processor.tokenizer), "__call__", "tokenizer")
    base = pipe.model.hilbert
    audio, text = base.audio_encoder, base.text_encoder

    def audio_start(module, args):
        if timers.active:
            timers.audio_shapes.append((int(args[0].shape[0]), int(args[0].shape[-1])))
        timers.start("audio_encoder")

    # Whisper's exact mode calls the encoder, its fast mode the encoder's modules: both start at conv1, end at
    # layer_norm.
    audio.conv1.register_forward_pre_hook(audio_start)
    audio.layer_norm.register_forward_hook(lambda *_: timers.stop("audio_encoder"))

    def text_start(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if timers.active:
            timers.text_shapes.append((int(ids.shape[0]), int(ids.shape[1])))
        timers.start("text_encoder")

    text.register_forward_pre_hook(text_start, with_kwargs=True)
    text.register_forward_hook(lambda *_: timers.stop("text_encoder"))

    def forward_start(module, args, kwargs):
        if not timers.active:
            return
        timers.in_forward, timers.encoder_in_forward = True, 0.0
        timers.head_inputs = {k: kwargs[k] for k in ("audio_segment_mask", "text_segment_mask", "segment_times")}
        timers.start("forward")

    def forward_end(*_):
        if not timers.active:
            return
        timers.in_forward = False
        elapsed = time.perf_counter() - timers._starts.pop("forward")
        timers.seconds["head"] += elapsed - timers.encoder_in_forward

    pipe.model.register_forward_pre_hook(forward_start, with_kwargs=True)
    pipe.model.register_forward_hook(forward_end)


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_child(args) -> dict:
    """One configuration, in this (fresh) process: load, warm up, time one call, count operations."""
    import soundfile as sf
    import torch

    torch.set_num_threads(args.threads)
    from transformers import AutoProcessor, pipeline

    t0 = time.perf_counter()
    processor = AutoProcessor.from_pretrained(args.model, trust_remote_code=True, audio_mode=args.mode)
    pipe = pipeline(
        PIPELINE_TASK,
        model=args.model,
        processor=processor,
        trust_remote_code=True,
        device=-1,
        model_kwargs={
            "audio_mode": args.mode,
            "encoder_batch_size": None if args.encoder_batch_size == "auto" else int(args.encoder_batch_size),
        },
    )
    load_s = time.perf_counter() - t0
    assert pipe.model.config.audio_mode == pipe.processor.audio_mode == args.mode
    streaming = args.path == "streaming"

    # Warm-up (kernels, allocator, lazy imports) on the recording's first seconds, same path.
    segments = json.loads(Path(args.transcript).read_text())
    head, rate = sf.read(args.wav, dtype="float32", frames=int(WARMUP_SECONDS * RATE))
    pipe(
        {"audio": head, "sampling_rate": rate, "transcript": [s for s in segments if s["end"] <= WARMUP_SECONDS]},
        streaming=streaming,
    )

    timers = Timers()
    instrument(pipe, timers)
    gc.collect()
    baseline, before_peak = rss_mb("VmRSS"), rss_mb("VmHWM")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    timers.active = True
    t0, cpu0 = time.perf_counter(), time.process_time()
    result = pipe({"audio": args.wav, "transcript": args.transcript}, streaming=streaming)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    timers.active = False
    seconds = dict(timers.seconds)
    seconds["other"] = wall - sum(seconds.values())
    peak = rss_mb("VmHWM")
    process_peak = max(peak, before_peak)  # loading and warm-up included

    # Operation counts for exactly the calls of the run, and the head on the run's feature shapes.
    audio_config, text_config = pipe.model.config.audio_config, pipe.model.config.text_config
    audio_flops = sum(whisper_flops(audio_config, n, t) for n, t in timers.audio_shapes)
    text_flops = sum(bert_flops(text_config, n, length) for n, length in timers.text_shapes)
    masks = timers.head_inputs  # the masks and times the model's forward got in the run
    s = masks["segment_times"].shape[1]
    head_inputs = {
        "audio_segment_embeds": torch.randn(1, s, audio_config.d_model),
        "text_segment_embeds": torch.randn(1, s, text_config.hidden_size),
        **masks,
    }
    head_flops = counted_flops(lambda: pipe.model(**head_inputs))

    # Check the analytic formulas against FlopCounterMode on one real call of each encoder (one row of a recorded
    # shape).
    base = pipe.model.hilbert
    n, t = timers.audio_shapes[0]
    mel = torch.randn(1, audio_config.num_mel_bins, t)
    from_module = sys.modules[type(base).__module__]
    audio_check = counted_flops(
        lambda: from_module.encode_audio_batch(
            base.audio_encoder, mel, None, torch.ones(1, t, dtype=torch.long), args.mode
        )
    )
    n, length = timers.text_shapes[0]
    ids = torch.randint(1000, 2000, (1, length))
    text_check = counted_flops(lambda: base.text_encoder(input_ids=ids, attention_mask=torch.ones_like(ids)))

    return {
        "mode": args.mode,
        "path": args.path,
        "minutes": args.minutes,
        "segments": len(segments),
        "encoder_batch_size": pipe.model.encoder_batch_size(),
        "wall_s": wall,
        "load_s": load_s,
        "cpu_s": cpu,
        "cpu_share": cpu / (wall * args.threads),  # < 1: the process waited (other jobs on the cores, or serial work)
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak,
        "peak_over_baseline_mb": peak - baseline,
        "process_peak_rss_mb": process_peak,
        "breakdown_s": seconds,
        "flops": {
            "audio_encoder": audio_flops,
            "text_encoder": text_flops,
            "head": head_flops,
            "total": audio_flops + text_flops + head_flops,
        },
        "flop_check": {
            "whisper_analytic": whisper_flops(audio_config, 1, timers.audio_shapes[0][1]),
            "whisper_flop_counter": audio_check,
            "bert_analytic": bert_flops(text_config, 1, timers.text_shapes[0][1]),
            "bert_flop_counter": text_check,
        },
        "encoder_calls": {
            "audio": len(timers.audio_shapes),
            "text": len(timers.text_shapes),
            "audio_segments": sum(n for n, _ in timers.audio_shapes),
            "audio_mel_frames": sorted({t for _, t in timers.audio_shapes})[-3:],
        },
        "prediction": result["predictions"],
        "top_segments": result["top_segments"],
    }


# ------------------------------------------------------------------------------------------- the parent
def spawn(args, mode: str, path: str, wav: Path, transcript: Path, minutes: float, model: Path) -> dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--mode",
        mode,
        "--path",
        path,
        "--wav",
        str(wav),
        "--transcript",
        str(transcript),
        "--model",
        str(model),
        "--threads",
        str(args.threads),
        "--minutes",
        str(minutes),
        "--encoder-batch-size",
        str(args.encoder_batch_size),
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "PYTHONWARNINGS": "ignore",
        "TOKENIZERS_PARALLELISM": "false",
    }
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{mode}/{path} ({minutes:g} min) failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument(
        "--scaling-minutes",
        type=float,
        default=6.0,
        help="also run every configuration on a recording this long, to show how memory scales (0: skip)",
    )
    parser.add_argument("--max-piece-seconds", type=float, default=4.0)
    parser.add_argument("--modes", default="exact,fast")
    parser.add_argument("--paths", default="streaming,all-at-once")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (the CI machine has 2 cores)")
    parser.add_argument(
        "--encoder-batch-size",
        default="auto",
        help="segments per encoder call: auto (the package default, by device: 4 on CPU) or a number "
        "(the demo model's saved config says 32, from before the default became auto)",
    )
    parser.add_argument("--corpus", default=str(ROOT / "outputs/demo/corpus"))
    parser.add_argument("--demo-model", default=str(ROOT / "outputs/demo/model"))
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/long_recording.json"))
    # child-only
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--wav", help=argparse.SUPPRESS)
    parser.add_argument("--transcript", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args)))
        return 0

    modes, paths = args.modes.split(","), args.paths.split(",")
    model = prepare_model(Path(args.demo_model))
    rate = matmul_rate(args.threads)
    print(
        f"dense float32 matmul rate ({args.threads} threads, best of {len(GEMM_SHAPES)} shapes): "
        f"{rate['best_flops_per_s'] / 1e9:.1f} GFLOP/s",
        flush=True,
    )
    lengths = [args.minutes] + ([args.scaling_minutes] if 0 < args.scaling_minutes < args.minutes else [])
    recordings, results = {}, []
    for minutes in lengths:
        wav, transcript, meta = build_recording(Path(args.corpus), minutes, args.max_piece_seconds)
        recordings[f"{minutes:g}"] = {
            **meta,
            "wav": str(wav.relative_to(ROOT)),
            "transcript": str(transcript.relative_to(ROOT)),
        }
        print(
            f"{minutes:g} min recording: {meta['segments']} segments, {meta['segment_seconds']['mean']:.2f} s mean "
            f"({meta['segment_seconds']['min']:.2f}-{meta['segment_seconds']['max']:.2f} s)",
            flush=True,
        )
        for mode in modes:
            for path in paths:
                r = spawn(args, mode, path, wav, transcript, minutes, model)
                r["lower_bound_s"] = r["flops"]["total"] / rate["best_flops_per_s"]
                r["wall_over_lower_bound"] = r["wall_s"] / r["lower_bound_s"]
                r["encoders_over_their_bound"] = (
                    r["breakdown_s"]["audio_encoder"] + r["breakdown_s"]["text_encoder"]
                ) / ((r["flops"]["audio_encoder"] + r["flops"]["text_encoder"]) / rate["best_flops_per_s"])
                results.append(r)
                print(
                    f"  {mode:5s} {path:11s} {minutes:g} min: wall {r['wall_s']:.1f} s, bound {r['lower_bound_s']:.1f} "
                    f"s "
                    f"({r['wall_over_lower_bound']:.2f}x), CPU share {r['cpu_share']:.2f}, peak RSS "
                    f"{r['peak_rss_mb']:.0f} MB "
                    f"(+{r['peak_over_baseline_mb']:.0f} MB over {r['baseline_rss_mb']:.0f})",
                    flush=True,
                )
    for mode in modes:  # the paths must agree (the tests check this on tiny models; here on the real one)
        same = [r for r in results if r["mode"] == mode and r["minutes"] == args.minutes]
        for r in same[1:]:
            scores = [
                (a["score"], b["score"])
                for t in r["prediction"]
                for a, b in zip(r["prediction"][t], same[0]["prediction"][t])
            ]
            r["max_score_diff_vs_" + same[0]["path"]] = max(abs(a - b) for a, b in scores)

    import torch

    report = {
        "benchmark": "one long recording end to end (file on disk -> prediction)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": args.threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "model": str(Path(args.demo_model).relative_to(ROOT))
        if Path(args.demo_model).is_relative_to(ROOT)
        else args.demo_model,
        "recordings": recordings,
        "matmul_rate": rate,
        "lower_bound": "analytic matmul/convolution operation counts of every encoder call of the run + "
        "FlopCounterMode "
        "on the head, divided by matmul_rate.best_flops_per_s",
        "results": results,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(
        "\n| mode | path | minutes | segments | wall s | lower bound s | wall / bound | peak RSS MB | over baseline MB "
        "| decode | log-mel | tokenizer | audio enc | text enc | head | other |\n" + "|---" * 16 + "|"
    )
    for r in results:
        b = r["breakdown_s"]
        print(
            f"| {r['mode']} | {r['path']} | {r['minutes']:g} | {r['segments']} | {r['wall_s']:.1f} | "
            f"{r['lower_bound_s']:.1f} "
            f"| {r['wall_over_lower_bound']:.2f} | {r['peak_rss_mb']:.0f} | {r['peak_over_baseline_mb']:.0f} | "
            + " | ".join(f"{b[k]:.1f}" for k in (*COMPONENTS, "other"))
            + " |"
        )
    checks = results[0]["flop_check"]
    print(
        f"\nanalytic vs FlopCounterMode, one segment: Whisper {checks['whisper_analytic']:.4g} vs "
        f"{checks['whisper_flop_counter']:.4g}, BERT {checks['bert_analytic']:.4g} vs {checks['bert_flop_counter']:.4g}"
    )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
