"""Speech recognition for recordings that have no transcript: Whisper turns audio into timestamped segments.

    transcriber = WhisperTranscriber.from_pretrained("openai/whisper-base", language="de")
    segments = transcriber("interview.wav")   # [{"start": 0.0, "end": 5.54, "text": "...", "speaker": None}, ...]

The segments are what `load_transcript` returns for a file, so they go through `HilbertProcessor` as usual
(`HilbertProcessor(..., asr_model=...)`, `pipeline(..., asr_model=...)` and `build_dataset.py --transcribe MODEL`
call this module). Whisper gives no speakers: `speaker` is None (a `speakers=` selection keeps nothing of it).

How: `WhisperForConditionalGeneration.generate(return_timestamps=True, return_segments=True)`, Whisper's own
long-form decoding (OpenAI's sequential algorithm, paper section 3.8): 30-s windows, each one starting where the
last complete segment of the previous one ended, so no word is cut at a window edge; the segments' times are the
model's timestamp tokens (0.02 s steps). It is the transformers-recommended way for Whisper on long audio (its ASR
pipeline calls chunking with `chunk_length_s` "very experimental" for seq2seq models).

Bounded memory: the log-mel of a whole recording grows with its length (~32 MB per hour and 80 mel bins, more for
128), so a long recording is transcribed in blocks of `block_seconds` (default 600 s): the next block starts at
the end of the previous block's last segment, which is decoded again in the next block (the same rule as between
Whisper's 30-s windows). Peak memory is one block's log-mel plus the decoder, whatever the recording's length.

Language: `language=None` lets a multilingual model detect it per 30-s window; `language="de"` (code or English
name) fixes it; `task="translate"` makes a multilingual model translate into English. English-only checkpoints
(`*.en`, `generation_config.is_multilingual` False) refuse any other language, and translation, here with a
message (their generate would not know the language tokens).

Ships to the Hub with the model: imports only torch, transformers, the standard library and sibling files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import torch

from .audio_hilbert import decode_audio, resample

__all__ = ["ASR_TASKS", "WhisperTranscriber", "load_transcriber", "normalize_words", "word_error_rate"]

ASR_TASKS = ("transcribe", "translate")
DEFAULT_BLOCK_SECONDS = 600.0
_ENGLISH = {"en", "english", "<|en|>"}


class WhisperTranscriber:
    """A Whisper model + its processor, with the decoding settings; call it on a recording to get segments.

    Args:
        model: a `WhisperForConditionalGeneration` (its `generation_config` must carry `no_timestamps_token_id`,
            as the Hub's Whisper checkpoints and HILBERT's offline conversions do).
        processor: its `WhisperProcessor` (feature extractor + tokenizer).
        language: None (detected, multilingual models) or a language code / English name ("de", "german").
        task: "transcribe" (default) or "translate" (multilingual models: into English).
        block_seconds: audio per `generate` call (bounds memory; see the module docstring). At least 60 s.
        num_beams: beam search width (1: greedy, Whisper's default without temperature fallback).
        name_or_path: where the model came from (for provenance; default `model.config._name_or_path`).
    """

    def __init__(
        self,
        model,
        processor,
        *,
        language: str | None = None,
        task: str = "transcribe",
        block_seconds: float = DEFAULT_BLOCK_SECONDS,
        num_beams: int = 1,
        name_or_path: str | None = None,
    ):
        config = getattr(model, "config", None)
        if getattr(config, "model_type", None) != "whisper" or not callable(getattr(model, "generate", None)):
            raise ValueError(
                f"asr_model must be a Whisper speech recogniser (WhisperForConditionalGeneration), got "
                f"{type(model).__name__}{'' if config is None else ' (model_type ' + repr(config.model_type) + ')'}."
            )
        generation = model.generation_config
        if getattr(generation, "no_timestamps_token_id", None) is None:
            raise ValueError(
                f"{name_or_path or config._name_or_path}: its generation_config.json has no no_timestamps_token_id, "
                "so Whisper cannot predict timestamps. Use a checkpoint with a complete generation config (the "
                "Hub's openai/whisper-*, or re-save one with WhisperForConditionalGeneration.save_pretrained)."
            )
        if task not in ASR_TASKS:
            raise ValueError(f"task={task!r} is not one of {ASR_TASKS}.")
        self.multilingual = bool(getattr(generation, "is_multilingual", config.vocab_size >= 51865))
        if not self.multilingual:
            if language is not None and str(language).strip().lower() not in _ENGLISH:
                raise ValueError(
                    f"{name_or_path or config._name_or_path} is an English-only Whisper model: it cannot transcribe "
                    f"language={language!r}. Use a multilingual Whisper (e.g. openai/whisper-base, or "
                    "offline:whisper-base in HILBERT's scripts), or language=None / 'en'."
                )
            if task != "transcribe":
                raise ValueError("An English-only Whisper model only transcribes English: use task='transcribe'.")
            language = None  # its prompt has no language token: generate refuses one
        if (
            isinstance(block_seconds, bool)
            or not isinstance(block_seconds, (int, float))
            or not (math.isfinite(block_seconds) and block_seconds >= 60)
        ):
            raise ValueError(f"block_seconds={block_seconds!r} must be a number of seconds >= 60.")
        self.model = model.eval()
        self.processor = processor
        self.language = language
        self.task = task
        self.block_seconds = float(block_seconds)
        self.num_beams = int(num_beams)
        self.name_or_path = name_or_path or getattr(config, "_name_or_path", None) or "whisper"

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs) -> WhisperTranscriber:
        """Load `WhisperForConditionalGeneration` + `WhisperProcessor` from a Hub id or a folder."""
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        options = {k: kwargs.pop(k) for k in ("language", "task", "block_seconds", "num_beams") if k in kwargs}
        model = WhisperForConditionalGeneration.from_pretrained(name_or_path, **kwargs)
        processor = WhisperProcessor.from_pretrained(name_or_path)
        return cls(model, processor, name_or_path=str(name_or_path), **options)

    def __repr__(self) -> str:
        return f"WhisperTranscriber({self.name_or_path!r}, language={self.language!r}, task={self.task!r})"

    # ------------------------------------------------------------------------------------------------- call
    def __call__(self, audio, sampling_rate: int | None = None, *, where: str | None = None) -> list[dict[str, Any]]:
        """Transcribe one recording -> segments `[{start, end, text, speaker: None}, ...]`, in time order.

        Args:
            audio: anything `audio_hilbert.decode_audio` takes (a file path, a waveform with `sampling_rate`, a
                `{"array", "sampling_rate"}` / `{"bytes"}` / `{"path"}` dict, a datasets `AudioDecoder`).
            sampling_rate: the rate of a bare waveform.
            where: prefix of error messages (e.g. "document 2").

        Segments with no words are left out; times are clipped to the recording.
        """
        waveform, rate = decode_audio(audio, sampling_rate, where=where)
        target = self.processor.feature_extractor.sampling_rate
        if rate != target:
            waveform = resample(waveform, rate, target)
        return self.transcribe_waveform(waveform)

    def transcribe_waveform(self, waveform: torch.Tensor) -> list[dict[str, Any]]:
        """`(samples,)` mono float waveform at the feature extractor's rate -> segments (see `__call__`)."""
        rate = self.processor.feature_extractor.sampling_rate
        duration = waveform.shape[-1] / rate
        block = int(self.block_seconds * rate)
        segments: list[dict[str, Any]] = []
        start = 0
        while start < waveform.shape[-1]:
            end = min(start + block, waveform.shape[-1])
            found = self._generate(waveform[start:end])
            last_block = end >= waveform.shape[-1]
            if not last_block and len(found) > 1:
                # The last segment may be cut by the block's end: decode it again at the start of the next block.
                found, resume = found[:-1], found[-1][0]
            else:
                resume = (end - start) / rate
            offset = start / rate
            for seg_start, seg_end, text in found:
                segments.append({"start": offset + seg_start, "end": offset + seg_end, "text": text, "speaker": None})
            # Always move forward, by at least a tenth of a block (a block with one long segment).
            start = max(start + max(1, block // 10), start + int(round(resume * rate))) if not last_block else end
        out = []
        for seg in segments:
            seg_start, seg_end = min(max(0.0, seg["start"]), duration), min(seg["end"], duration)
            text = seg["text"].strip()
            if text:
                seg_end = max(seg_start, seg_end)
                out.append({**seg, "start": round(seg_start, 3), "end": round(seg_end, 3), "text": text})
        return out

    @torch.inference_mode()
    def _generate(self, waveform: torch.Tensor) -> list[tuple[float, float, str]]:
        """One block -> `[(start, end, text)]` in seconds from the block's start (Whisper long-form decoding)."""
        fe, tokenizer = self.processor.feature_extractor, self.processor.tokenizer
        # truncation=False + attention_mask: generate's long-form path walks the whole block in 30-s windows.
        features = fe(
            waveform.numpy(),
            sampling_rate=fe.sampling_rate,
            truncation=False,
            padding="longest",
            return_attention_mask=True,
            return_tensors="pt",
        )
        if features["input_features"].shape[-1] < fe.nb_max_frames:  # short audio: one padded 30-s window
            features = fe(
                waveform.numpy(), sampling_rate=fe.sampling_rate, return_attention_mask=True, return_tensors="pt"
            )
        device, dtype = self.model.device, self.model.dtype
        kwargs = dict(return_timestamps=True, return_segments=True, num_beams=self.num_beams)
        if self.multilingual:
            kwargs.update(task=self.task, language=self.language)
        out = self.model.generate(
            features["input_features"].to(device, dtype), attention_mask=features["attention_mask"].to(device), **kwargs
        )
        found = []
        for seg in out["segments"][0] if isinstance(out, Mapping) else []:
            text = tokenizer.decode(seg["tokens"], skip_special_tokens=True)
            found.append((float(seg["start"]), float(seg["end"]), text))
        return found


# Loaded transcribers by name, so that a pipeline or processor given `asr_model="openai/whisper-base"` loads it once.
_LOADED: dict[tuple, WhisperTranscriber] = {}


def load_transcriber(asr_model, **options) -> WhisperTranscriber:
    """`asr_model` -> a `WhisperTranscriber`: one as it is (options must then be empty), a Hub id or folder (loaded
    once per process and options), or a loaded `WhisperForConditionalGeneration` (its processor is loaded from the
    model's `name_or_path`). `options`: `language`, `task`, `block_seconds`, `num_beams`."""
    if isinstance(asr_model, WhisperTranscriber):
        if options:
            raise ValueError(f"asr_model is already a WhisperTranscriber; set {sorted(options)} when building it.")
        return asr_model
    if isinstance(asr_model, (str, os.PathLike)):
        key = (os.fspath(asr_model), tuple(sorted(options.items())))
        if key not in _LOADED:
            _LOADED[key] = WhisperTranscriber.from_pretrained(asr_model, **options)
        return _LOADED[key]
    model_type = getattr(getattr(asr_model, "config", None), "model_type", None)
    if callable(getattr(asr_model, "generate", None)) and model_type == "whisper":
        from transformers import WhisperProcessor

        source = asr_model.config._name_or_path
        if not source:
            raise ValueError(
                "asr_model is a Whisper model without a name_or_path to load its processor from: pass "
                "WhisperTranscriber(model, WhisperProcessor.from_pretrained(...)) instead."
            )
        return WhisperTranscriber(asr_model, WhisperProcessor.from_pretrained(source), **options)
    raise ValueError(
        f"asr_model must be a Whisper model id or folder, a loaded WhisperForConditionalGeneration or a "
        f"WhisperTranscriber; got {type(asr_model).__name__}."
    )


# ---------------------------------------------------------------------------------------------- evaluation
# Written-out forms of the abbreviations Whisper prints (references such as LibriSpeech's spell them out).
_ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint"}


def normalize_words(text: str) -> list[str]:
    """Lower-case words for scoring: hyphens and other punctuation become spaces (an apostrophe inside a word is
    kept), `mr`/`mrs`/`dr`/`st` are spelt out, `<s>`-style tags are dropped."""
    import re

    text = re.sub(r"<[^>]*>", " ", text.lower())
    text = re.sub(r"[^\w' ]+", " ", text.replace("_", " "))
    words = [w.strip("'") for w in text.split()]
    return [_ABBREVIATIONS.get(w, w) for w in words if w]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER = (substitutions + deletions + insertions) / reference words, on `normalize_words` of both.

    The minimum edit distance between the two word sequences (Levenshtein, one row at a time). An empty reference
    gives 0.0 for an empty hypothesis and inf otherwise.
    """
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else math.inf
    previous = list(range(len(hyp) + 1))  # distance from ref[:0] to hyp[:j]
    for i, r in enumerate(ref, start=1):
        current = [i]
        for j, h in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / len(ref)
