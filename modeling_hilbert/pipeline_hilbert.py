"""`HilbertDocumentClassificationPipeline`: a recording + its transcript in, per-task label scores and the
segments that weighed most out.

Ships to the Hub with every checkpoint (`config.custom_pipelines` names it), so that anywhere, without this package:

    from transformers import pipeline
    pipe = pipeline("hilbert-document-classification", model="org/hilbert-whisper-tiny.en-all-minilm-l6-v2",
                    trust_remote_code=True)
    pipe({"audio": "interview.wav", "transcript": "interview.srt"})
    pipe(audio=waveform, sampling_rate=16000, transcript=[{"start": 0.0, "end": 4.2, "text": "...", "speaker": "A"}])
    pipe([{"audio": "a.flac", "transcript": "a.vtt"}, {"audio": "b.wav", "transcript": "b.json"}])   # -> a list
    pipe(documents, batch_size=8)                # 8 documents per model forward
    pipe({"audio": "interview.wav"})             # audio alone     -> "missing_modalities": ["text"]
    pipe({"transcript": "interview.srt"})        # transcript alone -> "missing_modalities": ["audio"]

Each document gives

    {"predictions": {task: [{"label": name, "score": p}, ...]},          # best first, every label
     "top_segments": [{"start", "end", "speaker", "weight", "segment_index"}, ...],
     "missing_modalities": []}                   # or ["text"] / ["audio"]: what the model reads and this one lacks

Scores: softmax over the labels of a multiclass task; sigmoid for a binary task, reported for both labels (p for
label 1, 1 - p for label 0); an independent sigmoid per label of a multilabel task (they need not sum to 1).

Top segments: the self-attentive pooling weights of the joint sequence (of the one modality in unimodal models),
averaged over the pooling heads, summed over the pieces of an input segment (a long segment is split by the
processor; with `joint_sequence="concat_sequence"` a segment has an audio and a text slot) -- so the weights of all
input segments sum to 1 -- and the `top_k_segments` largest returned with the input segment's own `start`, `end`,
`speaker` and its index in the given transcript (`segment_index`). Segments the model never saw (dropped by the
processor's policies, or with neither audio nor text) are not listed. The transcript's text is NOT in the output
unless `return_text=True`: a prediction can be logged or shared without the words that were spoken.

Options, at construction or per call: `top_k` (labels per task, best first; default: every label, as
`text-classification` with `top_k=None`), `top_k_segments` (default 3), `return_text` (default False), `streaming`
(default True). `batch_size` (at construction or per call, as for every transformers pipeline; default 1): documents
per model forward. Each document is still planned and encoded on its own (the processor's policies and reports are
per document, and its encoder batches are those of `batch_size=1`); the head then runs on the batch's segment
features padded to its longest document, so results equal those of `batch_size=1` (to float rounding, tested).

One modality is a normal document. Audio alone (no transcript, no `asr_model`): the processor cuts the recording
into equal windows of at most `max_segment_seconds`, which are its segments (`top_segments` then name windows,
`speaker` None). A transcript alone (no `"audio"`): every audio segment is masked. A two-modality model classifies
such a document from what it has (missing segments are masked everywhere) and says so: the result's
`missing_modalities` lists each modality it reads that the document lacks (no kept segment has it; also a
transcript whose every text is empty), and a warning names the document and what to pass. An audio-only model
(`modalities="audio"`) needs no transcript; given one, it uses the transcript's times to cut the segments (as in
training) and not its text (one warning per pipeline). A text-only model needs a transcript (or `asr_model`) and
no audio. A document with neither, or without the one modality a unimodal model reads, is an error.

Streaming (every document, by default): the processor plans the document once (`HilbertProcessor.plan_document`:
audio decoded and resampled once, policies applied, texts tokenized), then the audio encoder's inputs are built
`config.encoder_batch_size` segments at a time (`iter_audio_chunks`), encoded and pooled, and only the `(S, D)`
features are kept (`encode_document_in_chunks`); the head then runs on them. Memory no longer grows with the number
of padded 30-s windows (~1 MB each in exact mode), and the chunks are exactly the encoder batches of the all-at-once
path, so the outputs are the same. `streaming=False` runs the processor on the whole document and the model on its
output (the all-at-once path), e.g. to compare.

Also here: `default_repo_name(config)`, the naming convention for HILBERT repositories.

Imports only `torch`, `transformers` and the standard library: the processor (loaded from the same repository) reads
audio and transcripts.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping, Sequence, Sized
from typing import Any

import torch
from transformers import Pipeline
from transformers.utils import logging

logger = logging.get_logger(__name__)

PIPELINE_TASK = "hilbert-document-classification"
_FORMATS = ".srt, .vtt, .json, DAIC-WOZ/E-DAIC .csv/.tsv, CHAT .cha, Praat .TextGrid, ELAN .eaf"
DEFAULT_TOP_K_SEGMENTS = 3

__all__ = ["HilbertDocumentClassificationPipeline", "PIPELINE_TASK", "default_repo_name"]


class HilbertDocumentClassificationPipeline(Pipeline):
    r"""Classify long recordings (audio + timestamped transcript) with a HILBERT model.

    Args:
        model: a `HilbertForSequenceClassification` with its encoders (`config.with_encoders=True`).
        processor: the model's `HilbertProcessor` (loaded with `AutoProcessor` from the same repository).
        top_k_segments (`int`, default 3): how many of the most-weighted input segments to return (0: none).
        return_text (`bool`, default False): include each returned segment's transcript text.
        streaming (`bool`, default True): encode the audio a chunk of segments at a time (see the module docstring);
            False runs the processor on the whole document first.

    Call with a document `{"audio": path | array | {"array", "sampling_rate"}, "sampling_rate"?: int,
    "transcript": path (.srt/.vtt/.json) | [{"start", "end", "text", "speaker"?}, ...]}` (`"segments"` is accepted
    for `"transcript"`; either `"audio"` or `"transcript"` may be left out: see the module docstring), a list of
    documents (`batch_size` of them per model forward), or the keyword form
    `pipe(audio=..., sampling_rate=..., transcript=...)` (also `pipe("a.wav", transcript="a.srt")`). Audio files are
    read with soundfile (WAV, FLAC, OGG, ...) and mixed to mono; audio at another rate than the encoder's is
    resampled.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False
    _load_video_processor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        config = self.model.config
        if not hasattr(config, "tasks") or not hasattr(config, "modalities"):
            raise ValueError(f"{type(self).__name__} needs a HILBERT model; got {type(self.model).__name__}.")
        if not getattr(config, "with_encoders", True):
            raise ValueError(
                "This checkpoint is head-only (with_encoders=False): it takes precomputed segment features, not "
                "recordings. Build the full model with `model.attach_encoders(audio_encoder, text_encoder)`, save "
                "or push it, and use that one."
            )
        if self.processor is None or not callable(getattr(self.processor, "load_document", None)):
            raise ValueError(
                f"{type(self).__name__} needs the model's HilbertProcessor: pass processor=... or save/push the "
                "processor with the model (processor.push_to_hub(repo))."
            )
        _check_batch_size(self._batch_size)
        self._warned_unused_text = False
        self.model.eval()  # inference: no dropout, whatever mode the given model was in

    # ------------------------------------------------------------------------------------------- parameters
    def _sanitize_parameters(
        self, top_k_segments=None, return_text=None, streaming=None, top_k=None, asr_model=None, **unknown
    ):
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown options {sorted(unknown)}; it takes top_k, top_k_segments, "
                "return_text, streaming and asr_model."
            )
        preprocess, postprocess = {}, {}
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise ValueError(f"top_k={top_k!r} must be a positive integer (labels per task; None: every label).")
            postprocess["top_k"] = top_k
        if asr_model is not None:
            from .asr_hilbert import load_transcriber

            preprocess["asr_model"] = load_transcriber(asr_model)  # loaded once, here, not per document
        if streaming is not None:
            if not isinstance(streaming, bool):
                raise ValueError(f"streaming={streaming!r} must be True or False.")
            preprocess["streaming"] = streaming
        if top_k_segments is not None:
            if isinstance(top_k_segments, bool) or not isinstance(top_k_segments, int) or top_k_segments < 0:
                raise ValueError(f"top_k_segments={top_k_segments!r} must be an integer >= 0.")
            postprocess["top_k_segments"] = top_k_segments
        if return_text is not None:
            if not isinstance(return_text, bool):
                raise ValueError(f"return_text={return_text!r} must be True or False.")
            postprocess["return_text"] = return_text
        return preprocess, {}, postprocess

    def __call__(
        self, inputs=None, *, audio=None, sampling_rate=None, transcript=None, segments=None, batch_size=None, **kwargs
    ):
        """Classify one document (a dict, or the keyword form) or a list of documents (-> a list of results)."""
        if transcript is not None and segments is not None:
            raise ValueError("Give the transcript once: transcript=... or segments=..., not both.")
        transcript = transcript if transcript is not None else segments
        keyword = audio is not None or sampling_rate is not None or transcript is not None
        if inputs is None:
            if audio is None and transcript is None:
                raise ValueError(
                    "No document: pass {'audio': ..., 'transcript': ...}, a list of them, or audio=..., transcript=...."
                )
            inputs = {"audio": audio, "sampling_rate": sampling_rate, "transcript": transcript}
        elif keyword:
            if isinstance(inputs, (Mapping, list, tuple)) or audio is not None:
                raise ValueError(
                    "Give either a document (or a list of them) or the keyword form audio=..., transcript=..., not "
                    "both."
                )
            inputs = {"audio": inputs, "sampling_rate": sampling_rate, "transcript": transcript}
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(inputs, list) and not inputs:
            return []
        _check_batch_size(batch_size)
        return super().__call__(inputs, batch_size=batch_size, **kwargs)

    def get_iterator(
        self, inputs, num_workers: int, batch_size: int, preprocess_params, forward_params, postprocess_params
    ):
        """Documents -> results, `batch_size` documents per model forward.

        transformers' own batching pads the tensors of the preprocessed items with a tokenizer's or a feature
        extractor's padding values; a HILBERT item holds a document plan and a report, and its tensors have two
        ragged axes (segments, and frames or tokens). So the items of a batch are collated as a list, and `_forward`
        encodes each document on its own (the encoder batches stay per document, as with `batch_size=1`), pads the
        segment features to the batch's longest document and runs the head once on the batch.
        """
        if batch_size == 1:
            return super().get_iterator(
                inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params
            )
        from torch.utils.data import DataLoader
        from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

        if isinstance(inputs, Sized):
            dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        else:
            dataset = PipelineIterator(inputs, self.preprocess, preprocess_params)
            num_workers = min(num_workers, 1)  # an iterable cannot be split between workers
        loader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=list)

        def results():
            for items in loader:
                for output in self.forward(items, **forward_params):
                    yield self.postprocess(output, **postprocess_params)

        return results()

    def save_pretrained(self, save_directory, **kwargs):
        """The model (weights, config, code files, this pipeline's included) and the processor (the base class saves
        only a tokenizer and a feature extractor), so that `pipeline(PIPELINE_TASK, model=folder,
        trust_remote_code=True)` rebuilds this pipeline. `push_to_hub` uploads the same files."""
        super().save_pretrained(save_directory, **kwargs)
        self.processor.save_pretrained(save_directory)

    # ------------------------------------------------------------------------------------------- steps
    def preprocess(self, document, streaming: bool = True, asr_model=None) -> dict[str, Any]:
        given, document = document, self._load(document, asr_model)
        # A processor or model from before streaming existed (passed in by the caller) takes the all-at-once path.
        streaming = (
            streaming
            and callable(getattr(self.processor, "plan_document", None))
            and callable(getattr(self.model, "encode_document_in_chunks", None))
        )
        try:
            if streaming:
                plan = self.processor.plan_document(document)  # the audio features come later, a chunk at a time
                batch, reports = plan.inputs, [plan.report]
            else:
                plan = None
                batch, reports = self.processor([document], return_report=True)
        except ValueError as error:  # the processor's "document 0" is this pipeline's document: name its files
            if type(error) is not ValueError or not str(error).startswith("document 0"):
                raise
            raise ValueError(_describe(given) + str(error)[len("document 0") :]) from None
        warn = getattr(self.processor, "_warn_losses", None)
        if callable(warn):  # what the processor's capacity limits cut (it warns itself only without a report)
            warn(reports)
        self._check_something_to_classify(batch, reports[0], given)
        report = reports[0]
        missing = self._missing_modalities(batch, report, given)
        segments = document.get("segments")
        if segments is None:  # audio alone: its segments are the windows the processor cut the recording into
            segments = [{"start": start, "end": end, "speaker": None, "text": None} for start, end in report["windows"]]
        # `plan` (not a dict) keeps its waveform on the CPU when the base class moves `model_inputs` to the device.
        return {"model_inputs": dict(batch), "plan": plan, "report": report, "segments": segments, "missing": missing}

    def _forward(self, inputs: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any] | list[dict[str, Any]]:
        """One preprocessed document -> its outputs; a list of them (a batch, see `get_iterator`) -> a list.

        A batch: each document's segment features `(1, S_b, D)` are computed on their own (streamed, or from the
        processor's output), padded to the longest S (padded segments masked) and the head runs once on `(B, S, D)`.
        The masks keep padding out of every attention and pooling, so a document's outputs do not depend on its
        batch mates (tested against `batch_size=1`)."""
        items = inputs if isinstance(inputs, list) else [inputs]
        if len(items) == 1 and items[0]["plan"] is None:
            model_inputs = items[0]["model_inputs"]  # the all-at-once path: the model on the processor's output
        else:
            features = [self._segment_features(item) for item in items]
            if len(features) == 1:
                model_inputs = features[0]
            else:
                from .modeling_hilbert import _pad_feature_rows  # lazily: modeling_hilbert imports this module

                device = features[0]["segment_times"].device
                model_inputs = _pad_feature_rows([{k: v[0] for k, v in f.items()} for f in features], device)
        out = self.model(**model_inputs)
        modalities = self.model.config.modalities
        weights = {
            "both": out.joint_pooling_weights,
            "audio": out.audio_pooling_weights,
            "text": out.text_pooling_weights,
        }[modalities]
        slots = model_inputs["segment_times"].shape[1]
        outputs = [
            {
                "logits": {name: logits[b] for name, logits in out.task_logits.items()},
                "pooling_weights": weights[b],
                "slots": slots,
                "report": item["report"],
                "segments": item["segments"],
                "missing": item.get("missing", []),
            }
            for b, item in enumerate(items)
        ]
        return outputs if isinstance(inputs, list) else outputs[0]

    def _segment_features(self, item: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One document's segment features `{audio_segment_embeds (1, S, D_a), text_segment_embeds, masks,
        segment_times}` (the modalities the model uses): streamed chunk by chunk, or from the processor's output."""
        model_inputs, plan, config = item["model_inputs"], item["plan"], self.model.config
        if plan is not None:  # streaming: log-mel + encoders chunk by chunk, only the pooled features kept
            chunks = self.processor.iter_audio_chunks(plan, self._encoder_batch_size()) if config.uses_audio else ()
            return self.model.encode_document_in_chunks(model_inputs, chunks)
        base = self.model.base_model
        features = {"segment_times": model_inputs["segment_times"]}
        if config.uses_audio:
            features["audio_segment_embeds"], features["audio_segment_mask"] = base.get_audio_segment_features(
                model_inputs.get("input_features"),
                model_inputs.get("input_values"),
                model_inputs["audio_attention_mask"],
                model_inputs["audio_segment_mask"],
            )
        if config.uses_text:
            features["text_segment_embeds"], features["text_segment_mask"] = base.get_text_segment_features(
                model_inputs["input_ids"], model_inputs["attention_mask"], model_inputs["text_segment_mask"]
            )
        return features

    def postprocess(
        self,
        outputs: dict[str, Any],
        top_k_segments: int = DEFAULT_TOP_K_SEGMENTS,
        return_text: bool = False,
        top_k: int | None = None,
    ) -> dict:
        config = self.model.config
        predictions = {}
        for task in config.tasks:
            logits = outputs["logits"][task["name"]].float()
            labels = [task["id2label"][i] for i in range(len(task["id2label"]))]
            if task["type"] == "multiclass":
                scores = torch.softmax(logits, dim=-1).tolist()
            elif task["type"] == "binary":
                p = float(torch.sigmoid(logits[0]))
                scores = [1.0 - p, p]
            else:  # multilabel: each label on its own
                scores = torch.sigmoid(logits).tolist()
            ranked = sorted(zip(labels, scores), key=lambda item: -item[1])
            predictions[task["name"]] = [{"label": label, "score": float(score)} for label, score in ranked[:top_k]]
        return {
            "predictions": predictions,
            "top_segments": self._top_segments(outputs, top_k_segments, return_text),
            "missing_modalities": list(outputs.get("missing", [])),
        }

    # ------------------------------------------------------------------------------------------- helpers
    @staticmethod
    def _top_segments(outputs: dict[str, Any], k: int, return_text: bool) -> list[dict]:
        """Pooling weight per input segment (heads averaged, pieces and streams summed), the k largest."""
        sources = outputs["report"]["segment_sources"]  # input segment index of each processed piece
        weights = outputs["pooling_weights"].float().mean(0)  # (S,) or (2S,) with concat_sequence
        slots = outputs["slots"]
        per_slot = weights.view(-1, slots).sum(0).tolist()  # fold the audio and text halves of a (2S,) sequence
        per_segment: dict[int, float] = {}
        for piece, source in enumerate(sources):
            per_segment[source] = per_segment.get(source, 0.0) + per_slot[piece]
        ranked = sorted((item for item in per_segment.items() if item[1] > 0), key=lambda item: (-item[1], item[0]))
        top = []
        for index, weight in ranked[:k]:
            segment = outputs["segments"][index]
            entry = {
                "start": float(segment["start"]),
                "end": float(segment["end"]),
                "speaker": segment.get("speaker"),
                "weight": float(weight),
                "segment_index": int(index),
            }
            if return_text:
                entry["text"] = segment.get("text")
            top.append(entry)
        return top

    def _check_something_to_classify(self, batch, report: dict, document: dict) -> None:
        """Refuse a document none of whose kept segments carries what the model reads (audio for an audio model,
        text for a text model, either for both): its prediction would be the head's answer to padding."""
        config = self.model.config
        usable = (config.uses_audio and bool(batch["audio_segment_mask"].any())) or (
            config.uses_text and bool(batch["text_segment_mask"].any())
        )
        if usable:
            return
        dropped = ", ".join(f"{n} by {reason}" for reason, n in report["dropped"].items() if n) or "none dropped"
        needs = {"both": "audio or text", "audio": "audio", "text": "text"}[config.modalities]
        raise ValueError(
            f"{_describe(document)}: nothing to classify: of its {report['segments_in']} segments, "
            f"{report['segments_out']} are left ({dropped}) and none has {needs}. Check the transcript's times and "
            "texts and the processor's options (speakers, missing_text, missing_audio)."
        )

    def _missing_modalities(self, batch, report: dict, document: Mapping) -> list[str]:
        """The modalities the model reads that this document lacks (no kept segment has them), with a warning
        naming the document: a two-modality model then classifies from the other one alone."""
        config = self.model.config
        missing = [
            modality
            for modality in ("audio", "text")
            if getattr(config, f"uses_{modality}") and not bool(batch[f"{modality}_segment_mask"].any())
        ]
        if missing:
            (lacking,) = missing  # both missing is refused by _check_something_to_classify
            why = {
                "text": "no transcript was given" if report.get("no_transcript") else "none of its segments has text",
                "audio": "no audio was given" if report.get("no_audio") else "none of its segments has audio",
            }[lacking]
            todo = {
                "text": "give its transcript, or build the pipeline with asr_model=... to transcribe the audio",
                "audio": "give its recording",
            }[lacking]
            other = "audio" if lacking == "text" else "text"
            logger.warning(
                f"{_describe(document)}: no {lacking} ({why}); this model reads audio and text, and classifies it "
                f"from its {other} alone (the result's missing_modalities is {missing}). To use the {lacking}, {todo}."
            )
        return missing

    def _encoder_batch_size(self) -> int:
        """The model's segments per encoder call (device default when its config says None), also for a model
        object from before `encoder_batch_size()` existed."""
        resolve = getattr(self.model, "encoder_batch_size", None)
        if callable(resolve):
            return resolve()
        return self.model.config.encoder_batch_size or 4

    def _load(self, document, asr_model=None) -> dict[str, Any]:
        """A pipeline document -> the processor's `{"audio", "sampling_rate", "segments"}` (files read)."""
        if not isinstance(document, Mapping):
            raise ValueError(
                f"A document is a dict {{'audio': ..., 'transcript': ...}}, got {type(document).__name__}. For a file: "
                "pipe({'audio': 'a.wav', 'transcript': 'a.srt'}) or pipe('a.wav', transcript='a.srt')."
            )
        unknown = set(document) - {"audio", "sampling_rate", "transcript", "segments"}
        if unknown:
            raise ValueError(
                f"Unknown document keys {sorted(unknown)}; a document has audio, sampling_rate?, transcript."
            )
        if "transcript" in document and "segments" in document:
            raise ValueError("A document has 'transcript' or 'segments' (the same thing), not both.")
        audio = document.get("audio")
        transcript = document.get("transcript", document.get("segments"))
        config = self.model.config
        if audio is None and transcript is None:
            raise ValueError(
                "The document has neither 'audio' nor 'transcript': give a recording (a file path or a waveform "
                "with 'sampling_rate'), its transcript, or both."
            )
        if audio is None and not config.uses_text:
            raise ValueError(
                "The document has no 'audio', and this model reads audio only (modalities='audio'): give its "
                "recording (a file path or a waveform with 'sampling_rate')."
            )
        if transcript is None and not config.uses_audio:
            if asr_model is None:
                raise ValueError(
                    "The document has no 'transcript', and this model reads text only (modalities='text'): give a "
                    f"transcript file ({_FORMATS}) or a list of {{start, end, text, speaker?}} segments, or build "
                    "the pipeline with asr_model=... (a Whisper model id or folder, e.g. 'openai/whisper-base') to "
                    "transcribe the audio."
                )
        if transcript is None and asr_model is not None and config.uses_text:
            transcript = asr_model(audio, document.get("sampling_rate"), where="the document")
        if transcript is not None and not config.uses_text and not self._warned_unused_text:
            self._warned_unused_text = True  # once per pipeline: every document of an audio-only model has it
            logger.warning(
                f"{type(self).__name__}: this model reads audio only (modalities='audio'): a transcript's times cut "
                "the recording into segments (as in training), its text is not used. Without a transcript the "
                "recording is cut into equal windows."
            )
        if transcript is None:  # audio alone: the processor cuts the recording into windows (an audio-only document)
            return {"audio": audio, "sampling_rate": document.get("sampling_rate")}
        if audio is None:  # a transcript alone: a text-only document
            loaded = {"audio": None, "segments": self._segments(transcript)}
        else:
            loaded = self._read(audio, transcript, document)
        if not loaded["segments"]:  # an empty transcript: there is nothing to classify
            raise ValueError(
                f"{_describe(document)}: the transcript has no segments; give a transcript with at least "
                "one timed, non-empty segment."
            )
        return loaded

    def _read(self, audio, transcript, document: Mapping) -> dict[str, Any]:
        """Read the audio file and the transcript file, whichever are paths."""
        if isinstance(transcript, (str, os.PathLike)):
            if isinstance(audio, (str, os.PathLike)):
                loaded = self.processor.load_document(audio, transcript)
                if document.get("sampling_rate") not in (None, loaded["sampling_rate"]):
                    raise ValueError(
                        f"sampling_rate={document['sampling_rate']} but {audio} is at {loaded['sampling_rate']} Hz; "
                        f"drop one."
                    )
                return {**loaded, "segments": [dict(s) for s in loaded["segments"]]}
        segments = self._segments(transcript)
        if isinstance(audio, (str, os.PathLike)):
            loaded = self.processor.load_document(audio, segments)
            if document.get("sampling_rate") not in (None, loaded["sampling_rate"]):
                raise ValueError(
                    f"sampling_rate={document['sampling_rate']} but {audio} is at {loaded['sampling_rate']} Hz; drop "
                    f"one."
                )
            return loaded
        return {"audio": audio, "sampling_rate": document.get("sampling_rate"), "segments": segments}

    def _segments(self, transcript) -> list[dict]:
        """A transcript file or a list of segments -> the list of segment dicts."""
        if isinstance(transcript, (str, os.PathLike)):
            return self._load_transcript(transcript)
        if isinstance(transcript, Sequence) and all(isinstance(s, Mapping) for s in transcript):
            return [dict(s) for s in transcript]
        raise ValueError(
            f"transcript must be a transcript file ({_FORMATS}) or a list of {{start, end, text, speaker?}} dicts, "
            f"got {type(transcript).__name__}."
        )

    def _load_transcript(self, path) -> list[dict]:
        """Parse a transcript file with the reader the processor ships with (transcripts_hilbert.load_transcript)."""
        module = importlib.import_module(type(self.processor).__module__)
        load_transcript = getattr(module, "load_transcript", None)
        if load_transcript is None:
            raise ValueError(
                f"{type(self.processor).__name__} cannot read transcript files; pass the segments as a list."
            )
        return [dict(s) for s in load_transcript(path)]


def _check_batch_size(batch_size) -> None:
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer (documents per model forward).")


def _describe(document: Mapping) -> str:
    """A document in messages: its files when it was given files, else "the document" (never transcript words)."""
    names = [
        f"{key} {os.fspath(document[key])!r}"
        for key in ("audio", "transcript", "segments")
        if isinstance(document.get(key), (str, os.PathLike))
    ]
    return f"document ({', '.join(names)})" if names else "the document"


# ---------------------------------------------------------------------------------------------- naming
_GENERIC_PARTS = {
    "model",
    "models",
    "snapshot",
    "snapshots",
    "checkpoint",
    "checkpoints",
    "hf",
    "transformers",
    "pytorch",
    "final",
    "main",
    "encoder",
    "weights",
}
MAX_REPO_NAME = 96  # the Hub's limit on a repository name


def _encoder_short_name(name_or_path: str | None) -> str:
    """'openai/whisper-tiny.en' | 'offline:whisper-tiny.en' | '/cache/whisper-tiny.en-0.1.0' | a Hub cache snapshot
    folder -> 'whisper-tiny.en'; '' when nothing usable is left."""
    if not name_or_path:
        return ""
    name = str(name_or_path).strip()
    if name.startswith("offline:"):
        name = name[len("offline:") :]
    parts = [p for p in re.split(r"[\\/]+", name) if p]
    for part in parts:  # a Hub cache folder: .../models--org--name/snapshots/<sha>
        if part.startswith("models--"):
            parts = [part.split("--")[-1]]
            break
    for part in reversed(parts):
        lowered = part.lower()
        if (
            lowered in _GENERIC_PARTS
            or re.fullmatch(r"[0-9a-f]{40}", lowered)
            or re.fullmatch(r"checkpoint-\d+", lowered)
        ):
            continue
        part = re.sub(r"-v?\d+\.\d+\.\d+$", "", part)  # a package version the offline cache appends
        cleaned = re.sub(r"[^a-z0-9.\-]+", "-", part.lower().replace("_", "-"))
        cleaned = re.sub(r"-{2,}", "-", re.sub(r"\.{2,}", ".", cleaned)).strip("-.")
        if cleaned:
            return cleaned
    return ""


def default_repo_name(config) -> str:
    """The conventional Hub repository name of a HILBERT model: `hilbert-<audio encoder>-<text encoder>`.

    Each encoder's short name comes from `config.encoder_sources[key]` ("requested", else "name_or_path"), else the
    sub-config's `_name_or_path`, else its `model_type`: the organisation, folders, an `offline:` prefix, generic
    folder names ("model", "snapshots", commit hashes) and a trailing package version are dropped; the rest is
    lower-cased, "_" becomes "-". A unimodal model names its one encoder (`hilbert-<audio>`, `hilbert-<text>`). The
    result is a valid Hub name (letters, digits, ".", "-"; at most 96 characters).

    Example: encoders `openai/whisper-tiny.en` (or `offline:whisper-tiny.en`) and
    `sentence-transformers/all-MiniLM-L6-v2` give `hilbert-whisper-tiny.en-all-minilm-l6-v2`; prefix an organisation
    to push: `model.push_to_hub(f"my-org/{default_repo_name(model.config)}")`.

    Args:
        config: a `HilbertConfig` (or a model, whose `.config` is used).
    """
    config = getattr(config, "config", config)
    modalities = getattr(config, "modalities", "both")
    keys = {"both": ("audio", "text"), "audio": ("audio",), "text": ("text",)}.get(modalities, ("audio", "text"))
    sources = getattr(config, "encoder_sources", None) or {}
    names = []
    for key in keys:
        source = sources.get(key) or {}
        sub = getattr(config, f"{key}_config", None)
        candidates = (
            source.get("requested"),
            source.get("name_or_path"),
            getattr(sub, "_name_or_path", None),
            getattr(sub, "model_type", None),
            key,
        )
        names.append(next(n for n in map(_encoder_short_name, candidates) if n))
    name = "-".join(["hilbert", *names])
    return name[:MAX_REPO_NAME].rstrip("-.")
