"""Benchmark: word error rate of HILBERT's offline Whisper transcription on real speech.

    .venv/bin/python benchmarks/bench_asr.py [--models offline:whisper-tiny.en,offline:whisper-base]
        [--output benchmarks/results/asr.json]

Data: the five LibriVox utterances (Sense and Sensibility, 3-7 s each, 16 kHz) that Debian's pocketsphinx-testdata
ships with reference transcripts (`apt-get install pocketsphinx-testdata`). Each utterance is transcribed on its
own with `modeling_hilbert.asr_hilbert.WhisperTranscriber` (Whisper's timestamped decoding, greedy, as
`build_dataset.py --transcribe` runs it), and once more all five concatenated into one 24.7-s recording (one
window, timestamps across utterances). WER: `asr_hilbert.word_error_rate` (edit distance over normalised words),
per utterance, and pooled (total edits / total reference words). Multilingual models run with language=None
(detected) and language="en". Also: real-time factor (seconds of compute per second of audio; CPU shared).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import soundfile as sf
import torch

from hilbert_app.encoders import encoder_revision, resolve_encoder
from modeling_hilbert.asr_hilbert import WhisperTranscriber, normalize_words, word_error_rate

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def references() -> dict[str, str]:
    refs = {}
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        words, _, utt = line.rpartition("(")
        refs[utt.strip(" )")] = words.replace("<s>", "").replace("</s>", "").strip()
    return refs


def run(name: str, language: str | None, refs: dict[str, str]) -> dict:
    transcriber = WhisperTranscriber.from_pretrained(resolve_encoder(name), language=language)
    rows, edits, words, compute, audio = [], 0.0, 0, 0.0, 0.0
    waves = []
    for utt, ref in refs.items():
        wave, rate = sf.read(LIBRIVOX / f"{utt}.wav", dtype="float32")
        waves.append(wave)
        start = time.perf_counter()
        segments = transcriber(torch.from_numpy(wave), rate)
        compute += time.perf_counter() - start
        audio += len(wave) / rate
        hyp = " ".join(s["text"] for s in segments)
        wer = word_error_rate(ref, hyp)
        n = len(normalize_words(ref))
        edits, words = edits + wer * n, words + n
        rows.append({"utterance": utt, "reference": ref, "hypothesis": hyp, "wer": wer, "segments": segments})
    joined = np.concatenate(waves)
    start = time.perf_counter()
    segments = transcriber(torch.from_numpy(joined), 16000)
    joined_seconds = time.perf_counter() - start
    joined_wer = word_error_rate(" ".join(refs.values()), " ".join(s["text"] for s in segments))
    return {
        "model": name,
        "revision": encoder_revision(name),
        "language": language,
        "pooled_wer": edits / words,
        "reference_words": words,
        "real_time_factor": compute / audio,
        "utterances": rows,
        "concatenated": {
            "seconds": len(joined) / 16000,
            "wer": joined_wer,
            "segments": segments,
            "real_time_factor": joined_seconds / (len(joined) / 16000),
        },
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="offline:whisper-tiny.en,offline:whisper-base")
    ap.add_argument("--output", type=Path, default=Path("benchmarks/results/asr.json"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if not (LIBRIVOX / "transcription").exists():
        sys.exit("No real speech: apt-get install pocketsphinx-testdata")
    torch.set_num_threads(args.threads)
    refs = references()
    results = []
    for name in args.models.split(","):
        languages = [None] if name.endswith(".en") else [None, "en"]
        for language in languages:
            result = run(name, language, refs)
            results.append(result)
            print(
                f"{name} language={language}: pooled WER {result['pooled_wer']:.3f} over {result['reference_words']} "
                f"words, concatenated {result['concatenated']['wer']:.3f}, RTF {result['real_time_factor']:.2f}"
            )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {"machine": platform.platform(), "torch": torch.__version__, "threads": args.threads, "results": results},
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
