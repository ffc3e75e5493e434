"""HilbertProcessor: raw recordings + timestamped transcripts -> the inputs of `HilbertModel.forward`.

A document is one recording and its segments (transcript turns):

    {"audio": waveform, "sampling_rate": int, "segments": [{"start", "end", "text", "speaker"?}, ...]}

The processor cuts the waveform into segments, applies the policies below (each a constructor option, saved in
`processor_config.json`), and returns, for B documents of at most S segments:

    Whisper           input_features (B, S, n_mels, T) float32, audio_attention_mask (B, S, T)  [mel frames]
    wav2vec2/HuBERT   input_values (B, S, L) float32,           audio_attention_mask (B, S, L)  [samples]
    text              input_ids (B, S, L_tok), attention_mask (B, S, L_tok)
    segments          audio_segment_mask (B, S) bool, text_segment_mask (B, S) bool, segment_times (B, S, 2) float32

Policies, applied in this order to each document (`return_report=True` says what each one did):

1. `speakers`: keep only the segments of these speakers (None: all).
2. `max_segment_seconds`: a longer segment is split into n = ceil(duration / max) consecutive pieces of equal
   length; word k of W goes to the piece holding the middle of its share, floor((k + 1/2) n / W), so words keep
   their order and none is lost (a piece may get no words: it then has no text).
3. Audio: each piece's samples are [round(start * sr), round(end * sr)) of the (resampled, mono) waveform. A
   piece reaching past the end is clipped to the audio (reported); one with no samples at all (zero length, or
   wholly past the end) follows `missing_audio`: "keep" (audio mask False), "drop" or "error". Segments past the
   end are reported (`clipped_*`, `beyond_audio_*`) and logged with the seconds they lose. A document whose
   EVERY segment starts after its audio ends raises `ValueError` (the transcript belongs to another recording:
   a prediction from it would be text-only while looking audio-text), as does a document with no segments.
4. Text: an empty or whitespace-only text follows `missing_text`: "keep" (text mask False) or "drop".
5. `max_segments`: keep the first N remaining segments (None: no cap); the rest are dropped and reported.
6. `max_text_tokens`: texts are truncated by the tokenizer to this many tokens (special tokens included); the
   report counts the tokens cut. Default: 256, or the tokenizer's `model_max_length` where that is smaller (a
   text encoder with 128 or 64 positions works without the option).

`segment_times` are the transcript's times (a split piece's own times), clipped segments included. Segments are
kept in the given order, overlaps included: each segment's audio is cut on its own times, so overlapping speech
(crosstalk) is encoded in both segments. The report counts them (`overlapping_segments`: starts before an earlier
segment ends; `unordered_segments`: starts before the previous segment starts). Order does not change the model's
output: attention and pooling are permutation-invariant and each segment carries its own times (tested). A batch
always has S >= 1: a document left with no segments by the policies (e.g. `speakers`) gets fully masked ones.

Whisper log-mel, exact vs fast (`audio_mode`). Whisper's log-mel is clamped from below at (max - 8) where the max
is taken over the whole feature window the extractor is given. In both modes each segment is its own window
(padded with zeros, whose log-mel sits at the floor -10 and never sets the max), so the clamp depends on the
segment only -- never on its neighbours in the recording or in the batch. Computing the log-mel of the whole
recording and slicing it instead would clamp a quiet segment at the loudest part of the recording (differences of
~0.9 in log-mel units measured). Fast mode also pads each segment with zeros (n_fft + hop samples past the
longest segment's T frames), so the last frames' STFT windows see the same zeros as in the 30-s exact window rather than
torch.stft's reflect padding of the segment's own end (which changes the last 1-2 frames by up to ~1e-2) and
the partial last hop is kept as a frame (ceil(samples / hop) real frames, Whisper's own mask convention). Result:
fast-mode features are exact-mode features cut to T frames (equal to float rounding; the tests check 1e-5).
Exact mode is computed the same way and the silent rest of each 30-s window is filled with its constant log-mel
value (the floor), which the tests check against the extractor's own 30-s output; with `dither` > 0 the silence is
not constant, and exact mode then transforms the full 30 s per segment.

One modality. A document may have one modality only; both are normal input (the model masks the missing one):
- audio alone (no `"segments"` / `text`, and no `asr_model`): an audio-only document. The recording is cut into
  n = ceil(duration / max_segment_seconds) equal windows, which are its segments (without text; `speakers` and
  `missing_text` do not apply); the report says `no_transcript` and lists the `windows`. With `asr_model` the
  audio is transcribed instead.
- a transcript alone (`"audio"` absent or None, timestamped segments): a text-only document. Every audio mask is
  False, the audio policies and checks do not apply, and the report says `no_audio`.

Audio sources: a document's `"audio"` is anything `audio_hilbert.decode_audio` takes -- a waveform (1-D, or
`(channels, samples)`, with `sampling_rate`), a `{"array", "sampling_rate"}` dict, a `{"bytes"}` / `{"path"}` dict
(`datasets.Audio(decode=False)`), the decoder object `datasets.Audio()` columns return (torchcodec
`AudioDecoder`), a file path, bytes or a binary file. Channels are mixed down to mono (their mean); audio at
another rate than the feature extractor's is resampled block by block (`audio_hilbert.resample`, equal to
torchaudio's one-call resampling). Decoding and resampling live in `audio_hilbert.py`.

Ships to the Hub with the model: imports only `torch`, `transformers`, the standard library and sibling files
(`soundfile`, `torchaudio` and `torchcodec` are imported lazily by `audio_hilbert`, only when a file is read or
audio must be resampled).
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoFeatureExtractor, AutoTokenizer, BatchFeature, WhisperFeatureExtractor
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging

from .audio_hilbert import decode_audio, read_audio, resample
from .configuration_hilbert import AUDIO_MODES
from .transcripts_hilbert import TRANSCRIPT_EXTENSIONS, load_transcript, speaker_names

logger = logging.get_logger(__name__)

__all__ = ["HilbertDocumentPlan", "HilbertProcessor"]

MISSING_TEXT_POLICIES = ("keep", "drop")
MISSING_AUDIO_POLICIES = ("keep", "drop", "error")
DROP_REASONS = ("speaker", "missing_text", "missing_audio", "max_segments")
DEFAULT_MAX_SEGMENT_SECONDS = 30.0  # encoders without a fixed window (wav2vec2, HuBERT)
DEFAULT_MAX_TEXT_TOKENS = 256  # tokens per segment text unless the tokenizer allows fewer
FEATURE_CHUNK = 64  # segments per feature-extractor call: bounds the STFT's memory (~7 MB per 30-s segment)


def _where(doc: int, seg: int | None = None) -> str:
    return f"document {doc}" + ("" if seg is None else f", segment {seg}")


class HilbertProcessor(ProcessorMixin):
    r"""Turns documents (recording + timestamped segments) into `HilbertModel` inputs.

    Args:
        feature_extractor: the audio encoder's feature extractor: `WhisperFeatureExtractor` (log-mel
            `input_features`) or a waveform extractor such as `Wav2Vec2FeatureExtractor` (`input_values`; wav2vec2,
            HuBERT, WavLM).
        tokenizer: the text encoder's tokenizer.
        max_segment_seconds: longer segments are split into equal consecutive pieces of at most this length.
            Default: the Whisper extractor's window (`chunk_length`, 30 s); 30 s for waveform extractors. For
            Whisper it cannot exceed the window.
        max_segments: keep at most the first N segments of a document (after the other policies). None: no cap.
        speakers: keep only segments spoken by these speakers (case-insensitive; `"Participant"` also keeps
            CHAT's `"Participant (PAR)"`: the rule of `transcripts_hilbert.select_speakers`). None: keep all.
        missing_text: "keep" (segment kept, text mask False) or "drop", for empty/whitespace text.
        missing_audio: "keep" (audio mask False), "drop" or "error", for segments with no samples.
        max_text_tokens: tokens per segment text, special tokens included (truncated beyond, and counted).
            None (default): `DEFAULT_MAX_TEXT_TOKENS` (256), capped at the tokenizer's `model_max_length`. The
            resolved number is what `processor_config.json` saves.
        audio_mode: Whisper only. "exact": each segment padded to the 30-s window, T = 3000 frames, as Whisper was
            trained. "fast": T = the longest real segment of the batch; the model then runs a reduced context.
    """

    def __init__(
        self,
        feature_extractor,
        tokenizer,
        max_segment_seconds: float | None = None,
        max_segments: int | None = None,
        speakers: list[str] | None = None,
        missing_text: str = "keep",
        missing_audio: str = "keep",
        max_text_tokens: int | None = None,
        audio_mode: str = "exact",
    ):
        super().__init__(feature_extractor, tokenizer)
        self._whisper = isinstance(feature_extractor, WhisperFeatureExtractor)
        input_names = list(getattr(feature_extractor, "model_input_names", []))
        if not self._whisper and input_names[:1] != ["input_values"]:
            raise ValueError(
                f"Unsupported feature extractor {type(feature_extractor).__name__} (model inputs {input_names}): "
                "HilbertProcessor takes a WhisperFeatureExtractor or a waveform extractor whose model input is "
                "`input_values` (Wav2Vec2FeatureExtractor for wav2vec2/HuBERT/WavLM)."
            )
        window = feature_extractor.n_samples / feature_extractor.sampling_rate if self._whisper else None

        if missing_text not in MISSING_TEXT_POLICIES:
            raise ValueError(f"missing_text={missing_text!r} is not one of {MISSING_TEXT_POLICIES}.")
        if missing_audio not in MISSING_AUDIO_POLICIES:
            raise ValueError(f"missing_audio={missing_audio!r} is not one of {MISSING_AUDIO_POLICIES}.")
        if audio_mode not in AUDIO_MODES:
            raise ValueError(f"audio_mode={audio_mode!r} is not one of {AUDIO_MODES}.")
        if audio_mode == "fast" and not self._whisper:
            raise ValueError(
                f"audio_mode='fast' is for Whisper only (it shortens Whisper's 30-s window); "
                f"{type(feature_extractor).__name__} already encodes each segment at its own length: use 'exact'."
            )
        if max_segment_seconds is None:
            max_segment_seconds = window if window is not None else DEFAULT_MAX_SEGMENT_SECONDS
        if (
            isinstance(max_segment_seconds, bool)
            or not isinstance(max_segment_seconds, numbers.Real)
            or not (math.isfinite(max_segment_seconds) and max_segment_seconds > 0)
        ):
            raise ValueError(f"max_segment_seconds={max_segment_seconds!r} must be a positive number of seconds.")
        if window is not None and max_segment_seconds > window + 1e-9:
            raise ValueError(
                f"max_segment_seconds={max_segment_seconds} exceeds the Whisper feature extractor's window "
                f"({window:g} s): Whisper cannot encode longer segments. Use at most {window:g}."
            )
        if max_segments is not None and (
            isinstance(max_segments, bool) or not isinstance(max_segments, int) or max_segments < 1
        ):
            raise ValueError(f"max_segments={max_segments!r} must be None (no cap) or a positive integer.")
        if speakers is not None:
            if (
                isinstance(speakers, str)
                or not isinstance(speakers, Sequence)
                or not all(isinstance(s, str) for s in speakers)
            ):
                raise ValueError(f"speakers={speakers!r} must be None (keep all) or a list of speaker names (str).")
            speakers = list(speakers)
        specials = tokenizer.num_special_tokens_to_add(pair=False)
        model_max = getattr(tokenizer, "model_max_length", None)
        if max_text_tokens is None:
            # A fixed 256 refused every text encoder with fewer positions (e.g. 128) unless the user found the
            # option, which train.py --end-to-end and extract_features.py do not even offer: cap the default instead.
            max_text_tokens = DEFAULT_MAX_TEXT_TOKENS
            if isinstance(model_max, int) and not isinstance(model_max, bool) and model_max > specials:
                max_text_tokens = min(max_text_tokens, model_max)
        if isinstance(max_text_tokens, bool) or not isinstance(max_text_tokens, int) or max_text_tokens <= specials:
            raise ValueError(
                f"max_text_tokens={max_text_tokens!r} must be an integer above the tokenizer's {specials} special "
                f"tokens."
            )
        if isinstance(model_max, int) and max_text_tokens > model_max:
            raise ValueError(
                f"max_text_tokens={max_text_tokens} exceeds the tokenizer's model_max_length ({model_max})."
            )

        # Attribute names equal the __init__ arguments: ProcessorMixin.to_dict saves them in processor_config.json.
        self.max_segment_seconds = float(max_segment_seconds)
        self.max_segments = max_segments
        self.speakers = speakers
        self.missing_text = missing_text
        self.missing_audio = missing_audio
        self.max_text_tokens = max_text_tokens
        self.audio_mode = audio_mode

    @property
    def model_input_names(self) -> list[str]:
        audio = ["input_features"] if self._whisper else ["input_values"]
        return audio + [
            "audio_attention_mask",
            "input_ids",
            "attention_mask",
            "audio_segment_mask",
            "text_segment_mask",
            "segment_times",
        ]

    # ---------------------------------------------------------------------------------------------- loading
    @classmethod
    def option_names(cls) -> list[str]:
        """The processor's policy options (everything its constructor takes besides the two components)."""
        return [
            p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "feature_extractor", "tokenizer")
        ]

    @classmethod
    def from_encoders_pretrained(
        cls,
        audio_name_or_path: str,
        text_name_or_path: str,
        *,
        feature_extractor_kwargs: dict | None = None,
        tokenizer_kwargs: dict | None = None,
        **options,
    ) -> "HilbertProcessor":
        """Build from the two encoders' folders/repos: `AutoFeatureExtractor` + `AutoTokenizer`, then `options`."""
        feature_extractor = AutoFeatureExtractor.from_pretrained(audio_name_or_path, **(feature_extractor_kwargs or {}))
        tokenizer = AutoTokenizer.from_pretrained(text_name_or_path, **(tokenizer_kwargs or {}))
        return cls(feature_extractor, tokenizer, **options)

    def load_document(self, audio_path: str | Path, transcript: str | Path | list[dict]) -> dict:
        """Read an audio file and a .srt/.vtt/.json transcript (or take segments) -> a document dict.

        The waveform is returned as `(channels, samples)` float32 at the file's sampling rate; `__call__` mixes it
        to mono and resamples. (A document may also hold the path itself as its `"audio"`: `__call__` then reads
        it block by block straight to mono, with less memory for multichannel files.) A missing file raises
        `audio_hilbert.AudioFileNotFoundError` ("no such file"), an undecodable or empty one `AudioError`; both
        are `ValueError`s.
        """
        waveform, sampling_rate = read_audio(audio_path)
        segments = load_transcript(transcript) if isinstance(transcript, (str, Path)) else list(transcript)
        return {"audio": waveform, "sampling_rate": sampling_rate, "segments": segments}

    # ---------------------------------------------------------------------------------------------- call
    def __call__(
        self,
        documents: Mapping | Sequence[Mapping] | None = None,
        *,
        audio=None,
        segments: list[dict] | None = None,
        sampling_rate: int | None = None,
        text=None,
        return_report: bool = False,
        return_tensors: str = "pt",
        asr_model=None,
    ) -> BatchFeature | tuple[BatchFeature, list[dict]]:
        """Process one document or a list of documents.

        Args:
            documents: a document dict `{"audio", "sampling_rate", "segments"}` or a list of them. `audio`: a 1-D
                or `(channels, samples)` float tensor/array/list (channels averaged; `sampling_rate` required), a
                `{"array", "sampling_rate"}` dict, an undecoded `{"bytes"}` / `{"path"}` dict
                (`datasets.Audio(decode=False)`), the decoded value of a `datasets.Audio()` column (torchcodec
                `AudioDecoder`), or a file path / bytes (see the module docstring). A source that carries its
                rate takes `sampling_rate` only if it agrees. Either may be left out (one-modality documents, see
                the module docstring): without `segments` (and `asr_model`) the recording is cut into windows
                without text; without `audio` every audio segment is masked.
            audio, segments, sampling_rate: keyword form (instead of `documents`), as transformers processors take
                it: one document, or a batch when `audio` is a list of recordings and `segments` / `text` a list
                of as many transcripts (or either alone: a list of recordings, or of transcripts).
            text: the transcript in the keyword form, instead of `segments`: a list of segments, a transcript file
                (a path, or a string naming an existing file or ending in one of `TRANSCRIPT_EXTENSIONS`), or a
                bare string without times. A bare string becomes ONE segment spanning the whole recording (then
                split into pieces of at most `max_segment_seconds` with its words spread evenly over them), with a
                warning: HILBERT is built on timestamped segments, and without times the text-audio alignment is
                only approximate.
            return_report: also return the per-document report of what the policies did.
            return_tensors: "pt" (torch tensors, what the model takes) or "np" (numpy arrays, e.g. for
                `datasets.map`).
            asr_model: for documents without `segments` (audio alone): a Whisper model id or folder, a loaded
                `WhisperForConditionalGeneration` or an `asr_hilbert.WhisperTranscriber` (language, task), which
                transcribes them into timestamped segments first (`asr_hilbert.py`). None: such documents are an error.

        Returns:
            `BatchFeature` with exactly the keys `HilbertModel.forward` takes; with `return_report=True`, the tuple
            `(batch, report)`, report being one dict per document:
            `segments_in, segments_out, split_segments, split_pieces, dropped {reason: count},
            dropped_seconds {reason: seconds}, kept_without_audio, kept_without_text, clipped_segments,
            clipped_seconds (the seconds cut off segments that run past the end of the audio),
            beyond_audio_segments, beyond_audio_seconds (kept segments that start after the audio ends, hence have
            no audio at all, and their length), truncated_segments, truncated_tokens, audio_seconds,
            audio_seconds_covered,
            resampled_from, segment_sources` (the input segment index of each output segment),
            `overlapping_segments, unordered_segments` (input segments that overlap an earlier one / start before
            the previous one; both are processed as given), `no_audio` (given without audio: a text-only
            document), `no_transcript` (given without transcript: an audio-only document) and `windows` (for
            the latter, the `[start, end]` of the windows its recording was cut into, which are its segments:
            `segment_sources` index them; None otherwise).
        """
        if return_tensors not in ("pt", "np", None):
            raise ValueError(f"return_tensors={return_tensors!r} must be 'pt' (torch) or 'np' (numpy).")
        docs = self._documents(documents, audio, segments, sampling_rate, text, asr_model)
        target_rate = self.feature_extractor.sampling_rate
        plans, reports = [], []
        for i, doc in enumerate(docs):
            waveform, pieces, report = self._decode_and_plan(doc, i)
            plans.append((waveform, pieces))
            reports.append(report)

        batch, slots = len(plans), max([1] + [len(pieces) for _, pieces in plans])
        data = self._audio_inputs(plans, batch, slots)
        data.update(self._text_inputs(plans, reports, batch, slots))
        times = torch.zeros(batch, slots, 2, dtype=torch.float32)
        for b, (_, pieces) in enumerate(plans):
            if pieces:
                times[b, : len(pieces)] = torch.tensor([[p["start"], p["end"]] for p in pieces], dtype=torch.float32)
        data["segment_times"] = times
        for b, report in enumerate(reports):
            report["segments_out"] = len(plans[b][1])
            report["segment_sources"] = [p["source"] for p in plans[b][1]]
            report["audio_seconds_covered"] = sum(p["audio_end"] - p["audio_start"] for p in plans[b][1]) / target_rate
        if return_tensors == "np":
            data = {k: v.numpy() for k, v in data.items()}
        out = BatchFeature(data, tensor_type=return_tensors)
        if return_report:
            return out, reports
        self._warn_losses(reports)
        return out

    # ---------------------------------------------------------------------------------------------- streaming
    def plan_document(self, document: Mapping, *, index: int = 0, asr_model=None) -> "HilbertDocumentPlan":
        """Apply the policies to ONE document and build everything but the audio encoder's inputs.

        Long recordings stream in two steps: this one (cheap: the waveform is decoded, mixed and resampled once,
        the segments are planned and their texts tokenized), then `iter_audio_chunks`, which builds the log-mel /
        waveform inputs of a few segments at a time. Calling `__call__` on a one-hour interview instead holds every
        segment's padded window at once: `(1, S, 80, 3000)` float32, ~1 GB for 1000 segments in exact mode.

        Args:
            document: `{"audio", "sampling_rate", "segments"}` as for `__call__` (one document, not a list).
            index: the document's position, used only in error messages.
            asr_model: transcribes a document without `segments` first (as for `__call__`).

        Returns:
            a `HilbertDocumentPlan` whose `inputs` hold `input_ids`, `attention_mask`, `text_segment_mask`,
            `audio_segment_mask`, `segment_times` (batch of 1) and whose `report` is complete: both equal what
            `__call__([document], return_report=True)` gives. Unlike `__call__`, nothing is logged: the caller has
            the report (`_warn_losses([plan.report])` logs what capacity limits cut).
        """
        if not isinstance(document, Mapping):
            raise ValueError(
                f"plan_document takes one document dict {{audio, sampling_rate, segments}}, got "
                f"{type(document).__name__}."
            )
        (doc,) = self._documents([document], None, None, None, asr_model=asr_model)  # the same checks as __call__
        target_rate = self.feature_extractor.sampling_rate
        waveform, pieces, report = self._decode_and_plan(doc, index)
        slots = max(1, len(pieces))
        data = self._text_inputs([(waveform, pieces)], [report], 1, slots)  # counts truncated tokens in the report
        data["audio_segment_mask"] = torch.zeros(1, slots, dtype=torch.bool)
        data["segment_times"] = torch.zeros(1, slots, 2, dtype=torch.float32)
        if pieces:
            data["audio_segment_mask"][0, : len(pieces)] = torch.tensor([p["has_audio"] for p in pieces])
            data["segment_times"][0, : len(pieces)] = torch.tensor(
                [[p["start"], p["end"]] for p in pieces], dtype=torch.float32
            )
        report["segments_out"] = len(pieces)
        report["segment_sources"] = [p["source"] for p in pieces]
        report["audio_seconds_covered"] = sum(p["audio_end"] - p["audio_start"] for p in pieces) / target_rate
        return HilbertDocumentPlan(waveform, pieces, BatchFeature(data, tensor_type="pt"), report)

    def _decode_and_plan(self, doc: Mapping, index: int) -> tuple[torch.Tensor, list[dict], dict]:
        """One document's mono waveform at the extractor's rate, its planned pieces and its report (policies
        applied; the per-document steps of `__call__`, in the same order, so that the reports are identical)."""
        target_rate = self.feature_extractor.sampling_rate
        if doc.get("audio") is None:  # a transcript alone: no samples; every piece has_audio False
            if doc.get("sampling_rate") is not None:
                raise ValueError(f"{_where(index)}: sampling_rate is given but there is no 'audio'.")
            report = _new_report(len(doc["segments"]), 0.0)
            report["no_audio"] = True
            waveform = torch.zeros(0, dtype=torch.float32)
            return waveform, self._plan(index, doc["segments"], None, target_rate, report), report
        waveform, rate = decode_audio(doc["audio"], doc.get("sampling_rate"), where=_where(index))
        if doc.get("segments") is None and doc.get("text") is None:  # audio alone: equal windows, no text
            duration = waveform.shape[-1] / rate
            count = max(1, math.ceil(duration / self.max_segment_seconds - 1e-9))
            windows = [(duration * k / count, duration * (k + 1) / count) for k in range(count)]
            logger.info(
                f"HilbertProcessor, {_where(index)}: no transcript; the recording ({duration:.1f} s) is cut into "
                f"{count} window(s) of {duration / count:.1f} s without text (an audio-only document). Give its "
                "transcript or asr_model=... for text."
            )
            report = _new_report(count, duration)
            report["no_transcript"], report["windows"] = True, [list(w) for w in windows]
            if rate != target_rate:
                waveform = resample(waveform, rate, target_rate)
                report["resampled_from"] = rate
            segments = [{"start": start, "end": end, "text": ""} for start, end in windows]
            return waveform, self._plan(index, segments, waveform.shape[-1], target_rate, report, windows=True), report
        if doc.get("segments") is None:  # a bare transcript without times (`text=`): one segment over the recording
            logger.warning(
                f"HilbertProcessor, {_where(index)}: the text has no timestamps; it is taken as one segment spanning "
                f"the "
                f"whole recording ({waveform.shape[-1] / rate:.1f} s), split into pieces of at most "
                f"{self.max_segment_seconds:g} s with its words spread evenly. Give timestamped segments (or an "
                ".srt/.vtt/.json transcript) to align text and audio."
            )
            doc = {**doc, "segments": [{"start": 0.0, "end": waveform.shape[-1] / rate, "text": doc["text"]}]}
        report = _new_report(len(doc["segments"]), waveform.shape[-1] / rate)
        if rate != target_rate:
            waveform = resample(waveform, rate, target_rate)
            report["resampled_from"] = rate
        return waveform, self._plan(index, doc["segments"], waveform.shape[-1], target_rate, report), report

    def iter_audio_chunks(self, plan: "HilbertDocumentPlan", chunk_size: int):
        """Yield the audio encoder's inputs for `chunk_size` of a planned document's segments at a time.

        Only segments with audio are yielded, longest first (a stable sort on the real length, as
        `HilbertModel`'s length bucketing sorts them), so that chunks of `config.encoder_batch_size` segments are
        exactly the encoder batches the all-at-once path would run: the features are the same.

        Yields:
            `(segment_indices, inputs)`: `segment_indices` `(n,)` long, the chunk's positions among the document's
            S planned segments; `inputs` a `BatchFeature` with a batch of one document of n segments, as `__call__`
            gives: `input_features` `(1, n, n_mels, T)` (Whisper) or `input_values` `(1, n, L)`, `audio_attention_mask`,
            `audio_segment_mask` `(1, n)` (all True). Peak memory is that of one chunk, whatever S is.
        """
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size!r} must be a positive number of segments.")
        real = [s for s, p in enumerate(plan.pieces) if p["has_audio"]]
        if not real:
            return
        fe = self.feature_extractor
        samples = torch.tensor([plan.pieces[s]["audio_end"] - plan.pieces[s]["audio_start"] for s in real])
        # The length the model sorts on: real mel frames (ceil, as the mask counts them) or real samples.
        lengths = (
            torch.clamp((samples + fe.hop_length - 1) // fe.hop_length, max=fe.nb_max_frames)
            if self._whisper
            else samples
        )
        order = torch.tensor(real, dtype=torch.long)[torch.argsort(lengths, descending=True, stable=True)]
        for chunk in order.split(chunk_size):
            pieces = [plan.pieces[s] for s in chunk.tolist()]
            inputs = self._audio_inputs([(plan.waveform, pieces)], 1, len(pieces))
            yield chunk, BatchFeature(inputs, tensor_type="pt")

    # ---------------------------------------------------------------------------------------------- inputs
    def _documents(self, documents, audio, segments, sampling_rate, text=None, asr_model=None) -> list[Mapping]:
        keyword = audio is not None or segments is not None or sampling_rate is not None or text is not None
        if documents is not None and keyword:
            raise ValueError(
                "Give either `documents` or the keyword form (audio=..., segments=..., sampling_rate=...), not both."
            )
        if documents is None:
            if audio is None and segments is None and text is None:
                raise ValueError(
                    "No input: pass a document dict, a list of them, or audio=..., segments=..., sampling_rate=... "
                    "(audio alone or a transcript alone is a one-modality document)."
                )
            if segments is not None and text is not None:
                raise ValueError("Give the transcript once: segments=... or text=..., not both.")
            transcripts = segments if segments is not None else text
            if _is_batch(audio, transcripts):
                documents = [_keyword_document(a, t, sampling_rate) for a, t in zip(audio, transcripts)]
            elif transcripts is None and _is_recording_list(audio):  # a batch of recordings alone
                documents = [_keyword_document(a, None, sampling_rate) for a in audio]
            elif audio is None and _is_transcript_list(transcripts):  # a batch of transcripts alone
                documents = [_keyword_document(None, t, sampling_rate) for t in transcripts]
            else:
                documents = _keyword_document(audio, transcripts, sampling_rate)
        if isinstance(documents, Mapping):
            column = documents.get("segments")
            if isinstance(column, list) and column and all(isinstance(s, list) for s in column):
                # A batch in columns, as `datasets.Dataset.map(batched=True)` gives: {"audio": [...], "segments":
                # [[...], ...]}
                n = len(column)
                documents = [
                    {k: v[i] if isinstance(v, (list, tuple)) and len(v) == n else v for k, v in documents.items()}
                    for i in range(n)
                ]
            else:
                documents = [documents]
        if not isinstance(documents, Sequence) or isinstance(documents, (str, bytes)) or not documents:
            raise ValueError("`documents` must be a document dict or a non-empty list of document dicts.")
        documents = list(documents)  # a copy: documents given as audio alone are replaced by transcribed ones
        for i, doc in enumerate(documents):
            if not isinstance(doc, Mapping):
                raise ValueError(
                    f"{_where(i)} is a {type(doc).__name__}, not a dict with keys audio, sampling_rate, segments."
                )
            segs = doc.get("segments")
            if doc.get("audio") is None:  # a transcript alone: a text-only document (every audio mask False)
                if segs is None and isinstance(doc.get("text"), str):
                    raise ValueError(
                        f"{_where(i)}: a text without timestamps is spread over the recording, and there is no "
                        "'audio': give timestamped segments (or a transcript file) for a text-only document."
                    )
                if segs is None:
                    raise ValueError(
                        f"{_where(i)} has neither 'audio' nor 'segments': give its recording, its timestamped "
                        "transcript, or both."
                    )
            elif segs is None and isinstance(doc.get("text"), str):  # a bare transcript: one segment, once decoded
                continue
            elif segs is None:
                if asr_model is None:  # audio alone: an audio-only document, cut into windows once decoded
                    continue
                documents[i] = doc = self._transcribed(doc, i, asr_model)
                segs = doc.get("segments")
            if not isinstance(segs, (list, tuple)) or not all(isinstance(s, Mapping) for s in segs):
                hint = " (a dict of lists? give one dict per segment)" if isinstance(segs, Mapping) else ""
                raise ValueError(
                    f"{_where(i)}: 'segments' must be a list of dicts {{start, end, text, speaker?}}, got "
                    f"{type(segs).__name__}{hint}."
                )
        return list(documents)

    @staticmethod
    def _transcribed(doc: Mapping, index: int, asr_model) -> dict:
        """A document given as audio alone -> the same document with the segments a speech recogniser heard."""
        if asr_model is None:
            raise ValueError(
                f"{_where(index)} has no 'segments' (no transcript). Give its timestamped segments, or read a "
                f"transcript file with load_transcript ({', '.join(TRANSCRIPT_EXTENSIONS)}), or pass asr_model=... "
                "(a Whisper model id or folder, e.g. 'openai/whisper-base') to transcribe the audio."
            )
        from .asr_hilbert import load_transcriber

        segments = load_transcriber(asr_model)(doc["audio"], doc.get("sampling_rate"), where=_where(index))
        return {**doc, "segments": segments}

    def _plan(
        self, doc: int, segments, num_samples: int | None, rate: int, report: dict, windows: bool = False
    ) -> list[dict]:
        """Apply the policies to one document's segments -> the output segments (pieces) with their sample ranges.

        `num_samples` None: a document without audio (every piece has_audio False; the audio policies and checks do
        not apply). `windows`: the segments are the windows of a recording without transcript (the text and speaker
        policies do not apply: there is no text and no speaker to select)."""
        no_audio = num_samples is None
        num_samples = 0 if no_audio else num_samples
        pieces = []
        if not segments:  # a batch would hold one fully masked slot: the model would "classify" nothing
            raise ValueError(
                f"{_where(doc)} has no segments (an empty transcript?): give at least one "
                "{start, end, text} segment; there is nothing to encode or classify otherwise."
            )
        # Overlapping (crosstalk) and unordered segments are legitimate input: each segment's audio is cut on its
        # own times, so an overlap is encoded in both segments. They are counted for the report, not changed.
        report["overlapping_segments"] = report["unordered_segments"] = 0
        latest_end = prev_start = -math.inf
        wanted_speakers = {name.strip().casefold() for name in self.speakers or []}
        after_the_end = []  # input segments that start at or after the last sample: they can have no audio
        for index, seg in enumerate(segments):
            start, end = _segment_times(seg, doc, index)
            if not no_audio and round(start * rate) >= num_samples:
                after_the_end.append(start)
            report["unordered_segments"] += start < prev_start
            report["overlapping_segments"] += start >= prev_start and start < latest_end
            prev_start, latest_end = start, max(latest_end, end)
            # the matching rule of `select_speakers`: case-insensitive, either part of "Name (ID)" (CHAT, ELAN)
            if self.speakers is not None and not windows and not speaker_names(seg.get("speaker")) & wanted_speakers:
                _drop(report, "speaker", end - start)
                continue
            text = seg.get("text")
            text = "" if text is None else str(text)
            count = max(1, math.ceil((end - start) / self.max_segment_seconds - 1e-9))
            if count > 1:
                report["split_segments"] += 1
                report["split_pieces"] += count
            for k, (p_start, p_end, p_text) in enumerate(_split(start, end, text, count)):
                where = f"{_where(doc, index)}" + (f" (piece {k} of {count})" if count > 1 else "")
                first = min(round(p_start * rate), num_samples)
                wanted = round(p_end * rate)
                last = min(wanted, num_samples)
                if self._whisper:  # rounding may add a sample to a full-window piece
                    last = min(last, first + self.feature_extractor.n_samples)
                has_audio = last > first
                if not has_audio and not no_audio:
                    if self.missing_audio == "error":
                        raise ValueError(
                            f"{where} has no audio: {p_start:.3f}-{p_end:.3f} s, the recording lasts "
                            f"{num_samples / rate:.3f} s. Fix its times, or set missing_audio='keep' or 'drop'."
                        )
                    if self.missing_audio == "drop":
                        _drop(report, "missing_audio", p_end - p_start)
                        continue
                has_text = bool(p_text.strip())
                if not has_text and self.missing_text == "drop" and not windows:
                    _drop(report, "missing_text", p_end - p_start)
                    continue
                pieces.append(
                    dict(
                        start=p_start,
                        end=p_end,
                        text=p_text,
                        source=index,
                        has_audio=has_audio,
                        has_text=has_text,
                        audio_start=first if has_audio else 0,
                        audio_end=last if has_audio else 0,
                        clipped=max(0, wanted - num_samples) / rate if has_audio else 0.0,
                        beyond=not no_audio and first >= num_samples,
                    )
                )
        if not no_audio and len(after_the_end) == len(segments):
            # Every segment lies past the recording: the transcript is not this audio's. Kept, they would make a
            # text-only prediction that looks like an audio-text one.
            raise ValueError(
                f"{_where(doc)}: all {len(segments)} segments start after the audio ends (the recording lasts "
                f"{num_samples / rate:.3f} s, the first segment starts at {min(after_the_end):.3f} s). Is this the "
                "transcript of another recording? Check that the audio and the transcript belong together."
            )
        if self.max_segments is not None and len(pieces) > self.max_segments:
            for p in pieces[self.max_segments :]:
                _drop(report, "max_segments", p["end"] - p["start"])
            pieces = pieces[: self.max_segments]
        # Tallied on the kept segments only: a dropped segment is reported once, under its drop reason.
        report["kept_without_audio"] = sum(not p["has_audio"] for p in pieces)
        report["kept_without_text"] = sum(not p["has_text"] for p in pieces)
        report["clipped_segments"] = sum(p["clipped"] > 0 for p in pieces)
        report["clipped_seconds"] = sum(p["clipped"] for p in pieces)
        report["beyond_audio_segments"] = sum(p["beyond"] for p in pieces)
        report["beyond_audio_seconds"] = sum(p["end"] - p["start"] for p in pieces if p["beyond"])
        return pieces

    def _audio_inputs(self, plans, batch: int, slots: int) -> dict[str, torch.Tensor]:
        """Batched feature extraction over every real audio segment of the batch, scattered to (B, S, ...)."""
        fe = self.feature_extractor
        rows, clips = [], []
        for b, (waveform, pieces) in enumerate(plans):
            for s, p in enumerate(pieces):
                if p["has_audio"]:
                    rows.append((b, s))
                    clips.append(waveform[p["audio_start"] : p["audio_end"]])
        index = tuple(torch.tensor(x, dtype=torch.long) for x in zip(*rows)) if rows else None
        lengths = torch.tensor([c.shape[0] for c in clips], dtype=torch.long)
        audio_segment_mask = torch.zeros(batch, slots, dtype=torch.bool)
        if index is not None:
            audio_segment_mask[index] = True

        if self._whisper:
            frames = torch.clamp((lengths + fe.hop_length - 1) // fe.hop_length, max=fe.nb_max_frames)  # ceil
            longest = max(1, int(frames.max()) if len(clips) else 1)
            if self.audio_mode == "fast":
                width = computed = longest
            elif fe.dither == 0.0:
                # Exact mode: the STFT runs on the frames whose windows reach real samples (the real frames and up
                # to n_fft / (2 hop) after them); the silent rest of the 30-s window is filled in (see
                # `_whisper_window_floor`): ~4x cheaper than transforming 30 s per segment.
                width = fe.nb_max_frames
                computed = min(longest + math.ceil(fe.n_fft / fe.hop_length), width)
            else:  # dither makes the silence random: transform the whole window
                width = computed = fe.nb_max_frames
            # Zeros past every segment's end for the frames' n_fft windows: the frames touching a segment's end
            # are computed as in the 30-s window (see the module docstring).
            samples = min((computed + 1) * fe.hop_length + fe.n_fft, fe.n_samples)
            features = torch.zeros(batch, slots, fe.feature_size, width, dtype=torch.float32)
            for lo in range(0, len(clips), FEATURE_CHUNK):
                chunk = [c.numpy() for c in clips[lo : lo + FEATURE_CHUNK]]
                out = fe(
                    chunk,
                    sampling_rate=fe.sampling_rate,
                    padding="max_length",
                    max_length=samples,
                    truncation=True,
                    return_attention_mask=False,
                    return_tensors="pt",
                )["input_features"]
                out = out[..., :computed].to(torch.float32)
                if computed < width:
                    out = torch.cat([out, _whisper_window_floor(out, width - computed)], dim=-1)
                sel = tuple(i[lo : lo + FEATURE_CHUNK] for i in index)
                features[sel] = out
            mask = torch.zeros(batch, slots, width, dtype=torch.long)
            if index is not None:
                mask[index] = (torch.arange(width)[None, :] < frames[:, None]).long()
            return {"input_features": features, "audio_attention_mask": mask, "audio_segment_mask": audio_segment_mask}

        width = max(1, int(lengths.max()) if len(clips) else 1)
        values = torch.zeros(batch, slots, width, dtype=torch.float32)
        for lo in range(0, len(clips), FEATURE_CHUNK):
            chunk = [c.numpy() for c in clips[lo : lo + FEATURE_CHUNK]]
            out = fe(
                chunk,
                sampling_rate=fe.sampling_rate,
                padding="max_length",
                max_length=width,
                return_attention_mask=True,
                return_tensors="pt",
            )["input_values"]
            sel = tuple(i[lo : lo + FEATURE_CHUNK] for i in index)
            values[sel] = out.to(torch.float32)
        mask = torch.zeros(batch, slots, width, dtype=torch.long)
        if index is not None:
            mask[index] = (torch.arange(width)[None, :] < lengths[:, None]).long()
        return {"input_values": values, "audio_attention_mask": mask, "audio_segment_mask": audio_segment_mask}

    def _text_inputs(self, plans, reports, batch: int, slots: int) -> dict[str, torch.Tensor]:
        """One tokenizer call over every real text of the batch (truncated, counted), scattered to (B, S, L)."""
        rows, texts = [], []
        for b, (_, pieces) in enumerate(plans):
            for s, p in enumerate(pieces):
                if p["has_text"]:
                    rows.append((b, s))
                    texts.append(p["text"])
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        text_segment_mask = torch.zeros(batch, slots, dtype=torch.bool)
        if not texts:
            return {
                "input_ids": torch.full((batch, slots, 1), pad_id, dtype=torch.long),
                "attention_mask": torch.zeros(batch, slots, 1, dtype=torch.long),
                "text_segment_mask": text_segment_mask,
            }
        full = self.tokenizer(texts, truncation=False, return_attention_mask=False, verbose=False)["input_ids"]
        enc = self.tokenizer(
            texts, truncation=True, max_length=self.max_text_tokens, padding="longest", return_tensors="pt"
        )
        ids, att = enc["input_ids"], enc["attention_mask"]
        kept = att.sum(-1).tolist()
        for (b, _), n_full, n_kept in zip(rows, full, kept):
            if len(n_full) > n_kept:
                reports[b]["truncated_segments"] += 1
                reports[b]["truncated_tokens"] += len(n_full) - n_kept
        index = tuple(torch.tensor(x, dtype=torch.long) for x in zip(*rows))
        input_ids = torch.full((batch, slots, ids.shape[-1]), pad_id, dtype=torch.long)
        attention_mask = torch.zeros(batch, slots, ids.shape[-1], dtype=torch.long)
        input_ids[index] = ids.long()
        attention_mask[index] = att.long()
        text_segment_mask[index] = True
        return {"input_ids": input_ids, "attention_mask": attention_mask, "text_segment_mask": text_segment_mask}

    @staticmethod
    def _warn_losses(reports: list[dict]) -> None:
        """Capacity limits cut content the caller did not ask to remove: say so even without `return_report`."""
        for i, r in enumerate(reports):
            lost = []
            if r["dropped"]["max_segments"]:
                lost.append(
                    f"{r['dropped']['max_segments']} segments ({r['dropped_seconds']['max_segments']:.1f} s) past "
                    f"max_segments"
                )
            if r["truncated_tokens"]:
                lost.append(
                    f"{r['truncated_tokens']} tokens past max_text_tokens in {r['truncated_segments']} segments"
                )
            past = r["clipped_segments"] + r.get("beyond_audio_segments", 0)
            if past:  # the cut-off ends of clipped segments, and whole segments that start after the audio ends
                seconds = r["clipped_seconds"] + r.get("beyond_audio_seconds", 0.0)
                wholly = (
                    f" ({r['beyond_audio_segments']} of them wholly: kept without audio)"
                    if r.get("beyond_audio_segments")
                    else ""
                )
                lost.append(f"{seconds:.2f} s of {past} segments past the end of the audio{wholly}")
            if lost:
                logger.warning(
                    f"HilbertProcessor, {_where(i)}: dropped {'; '.join(lost)}. Pass return_report=True for details."
                )


class HilbertDocumentPlan:
    """One document after `HilbertProcessor.plan_document`: policies applied, texts tokenized, no audio features yet.

    Attributes:
        waveform: `(samples,)` float32, mono, at the feature extractor's sampling rate (decoded and resampled once).
        pieces: the planned output segments, in order (the processor's internal records: times, text, source
            segment, sample range, has_audio / has_text).
        inputs: `BatchFeature` of the small per-segment tensors for a batch of one: `input_ids`, `attention_mask`,
            `text_segment_mask`, `audio_segment_mask`, `segment_times`.
        report: the per-document report (see `HilbertProcessor.__call__`).

    Deliberately not a dict: `transformers.Pipeline` moves the tensors of dict inputs to the model's device, and the
    waveform must stay on the CPU, where the log-mel is computed.
    """

    def __init__(self, waveform: torch.Tensor, pieces: list[dict], inputs: BatchFeature, report: dict):
        self.waveform = waveform
        self.pieces = pieces
        self.inputs = inputs
        self.report = report

    @property
    def num_segments(self) -> int:
        """S: the segment slots of `inputs` (at least 1, as in `__call__`'s output)."""
        return int(self.inputs["segment_times"].shape[1])

    def __repr__(self) -> str:
        return (
            f"HilbertDocumentPlan({len(self.pieces)} segments, {self.waveform.shape[-1]} samples, "
            f"{sum(p['has_audio'] for p in self.pieces)} with audio)"
        )


# ------------------------------------------------------------------------------------------------ helpers
def _is_transcript_file(text) -> bool:
    if isinstance(text, Path):
        return True
    if not isinstance(text, str) or "\n" in text or len(text) > 4096:
        return False
    return text.lower().endswith(tuple(e.lower() for e in TRANSCRIPT_EXTENSIONS)) or Path(text).is_file()


def _keyword_document(audio, transcript, sampling_rate) -> dict:
    """The keyword form's document: `transcript` a list of segments, a transcript file, a bare string, or None
    (audio alone: an audio-only document)."""
    if transcript is None:
        return {"audio": audio, "sampling_rate": sampling_rate}
    if _is_transcript_file(transcript):
        return {
            "audio": audio,
            "sampling_rate": sampling_rate,
            "segments": [dict(s) for s in load_transcript(transcript)],
        }
    if isinstance(transcript, str):
        return {"audio": audio, "sampling_rate": sampling_rate, "text": transcript}
    return {"audio": audio, "sampling_rate": sampling_rate, "segments": transcript}


def _is_batch(audio, transcripts) -> bool:
    """Keyword form with a batch: a list of recordings (not one waveform given as a list of numbers) and a list of
    as many transcripts (each a string, a path or a list of segments)."""
    if not isinstance(audio, (list, tuple)) or not audio or isinstance(audio[0], numbers.Number):
        return False
    if not isinstance(transcripts, (list, tuple)) or len(transcripts) != len(audio):
        return False
    return all(isinstance(t, (str, Path, list, tuple)) for t in transcripts)


def _is_recording_list(audio) -> bool:
    """A list of recordings (paths, arrays, dicts), not one waveform given as a list of numbers."""
    return isinstance(audio, (list, tuple)) and bool(audio) and not isinstance(audio[0], numbers.Number)


def _is_transcript_list(transcripts) -> bool:
    """A list of transcripts (each a path or a list of segments), not one transcript given as a list of segments."""
    return (
        isinstance(transcripts, (list, tuple))
        and bool(transcripts)
        and all(isinstance(t, (str, Path, list, tuple)) for t in transcripts)
    )


def _new_report(segments_in: int, audio_seconds: float) -> dict[str, Any]:
    return {
        "segments_in": segments_in,
        "segments_out": 0,
        "split_segments": 0,
        "split_pieces": 0,
        "dropped": {reason: 0 for reason in DROP_REASONS},
        "dropped_seconds": {reason: 0.0 for reason in DROP_REASONS},
        "kept_without_audio": 0,
        "kept_without_text": 0,
        "clipped_segments": 0,
        "clipped_seconds": 0.0,
        "beyond_audio_segments": 0,
        "beyond_audio_seconds": 0.0,
        "truncated_segments": 0,
        "truncated_tokens": 0,
        "audio_seconds": audio_seconds,
        "audio_seconds_covered": 0.0,
        "resampled_from": None,
        "segment_sources": [],
        "no_audio": False,
        "no_transcript": False,
        "windows": None,
    }


def _drop(report: dict, reason: str, seconds: float) -> None:
    report["dropped"][reason] += 1
    report["dropped_seconds"][reason] += seconds


def _whisper_window_floor(features: torch.Tensor, frames: int) -> torch.Tensor:
    """The log-mel of the silent rest of a segment's 30-s window, `(N, n_mels, frames)`.

    Whisper's extractor computes log10(max(power, 1e-10)) = -10 on silence, clamps at (max - 8) and maps x to
    (x + 4) / 4; the max is its frames' max, which the computed frames already hold (every frame touching real
    samples is computed). So a silent frame is max(-10, m - 8) -> max(-1.5, max(features) - 2).
    """
    floor = (features.amax(dim=(1, 2)) - 2.0).clamp(min=-1.5)  # (N,)
    return floor[:, None, None].expand(features.shape[0], features.shape[1], frames)


def _segment_times(seg: Mapping, doc: int, index: int) -> tuple[float, float]:
    try:
        start, end = float(seg["start"]), float(seg["end"])
    except KeyError as err:
        raise ValueError(
            f"{_where(doc, index)} has no {err.args[0]!r}: every segment needs 'start' and 'end' (seconds)."
        ) from None
    except (TypeError, ValueError):
        raise ValueError(
            f"{_where(doc, index)}: start/end must be numbers of seconds, got {_shown(seg['start'])}, "
            f"{_shown(seg['end'])}."
        ) from None
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start:
        raise ValueError(
            f"{_where(doc, index)}: invalid times {start!r} -> {end!r}; times are finite seconds from the start of "
            "the recording with 0 <= start <= end (transcripts_hilbert.validate_segments lists all such problems)."
        )
    return start, end


def _shown(value) -> str:
    """A segment field for an error message: numbers and time-like strings as they are, anything else by type only
    (a misplaced field may hold transcript words, which must not reach logs)."""
    if isinstance(value, (int, float)) or (
        isinstance(value, str) and len(value) <= 40 and 2 * sum(c.isdigit() for c in value) >= len(value)
    ):
        return repr(value)
    return f"a {type(value).__name__}"


def _split(start: float, end: float, text: str, count: int) -> list[tuple[float, float, str]]:
    """Split [start, end) into `count` equal pieces; word k of W goes to piece floor((k + 1/2) * count / W)."""
    if count == 1:
        return [(start, end, text)]
    words = text.split()
    buckets: list[list[str]] = [[] for _ in range(count)]
    for k, word in enumerate(words):
        buckets[min(count - 1, int((k + 0.5) * count / len(words)))].append(word)
    step = (end - start) / count
    bounds = [start + j * step for j in range(count)] + [end]
    return [(bounds[j], bounds[j + 1], " ".join(buckets[j])) for j in range(count)]
