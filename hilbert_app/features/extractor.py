"""How a segment is encoded: the frozen encoders and the processor that feeds them, loaded once.

`load_extractor` builds an `Extractor` from two encoder names (Hub ids, folders or `offline:` names) or from a HILBERT
checkpoint; `Extractor.encode` turns the processor's output into per-segment features, with exactly the calls of
`HilbertModel.forward`'s raw-input path, so cached features equal what the model computes itself.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from hilbert_app.encoders import check_encoder, encoder_provenance
from hilbert_app.errors import ExtractionError
from modeling_hilbert import HilbertModel, HilbertProcessor
from modeling_hilbert.audio_hilbert import AudioError
from modeling_hilbert.audio_hilbert import decode_audio as decode_waveform
from modeling_hilbert.encoders_hilbert import (
    auto_encoder_batch_size,
    encoder_hidden_size,
    is_whisper,
    resolve_encoder_dtype,
)
from modeling_hilbert.modeling_hilbert import CheckpointError, weights_sha256

logger = logging.getLogger(__name__)


@dataclass
class Extractor:
    """The frozen encoders (inside a `HilbertModel`, whose head is unused) and the processor that feeds them."""

    model: HilbertModel
    processor: HilbertProcessor
    sources: dict  # modality -> {name_or_path, model_type, revision, sha256, ...}
    device: torch.device
    dtype: torch.dtype

    @property
    def widths(self) -> dict[str, int]:
        return {
            "audio": encoder_hidden_size(self.model.config.audio_config),
            "text": encoder_hidden_size(self.model.config.text_config),
        }

    def processor_options(self) -> dict:
        """The processor's policies, exactly its `__init__` options: `HilbertProcessor.from_encoders_pretrained(audio,
        text, **options)` rebuilds the processor that made the features."""
        return json.loads(json.dumps({name: getattr(self.processor, name) for name in HilbertProcessor.option_names()}))

    def processor_components(self) -> dict:
        """What the processor's feature extractor and tokenizer are (their settings decide the inputs too)."""
        extractor = self.processor.feature_extractor.to_dict()
        extractor.pop("mel_filters", None)
        tokenizer = self.processor.tokenizer
        return json.loads(
            json.dumps(
                {
                    "feature_extractor": extractor,
                    "tokenizer": {
                        "class": type(tokenizer).__name__,
                        "name_or_path": str(tokenizer.name_or_path),
                        "vocab_size": len(tokenizer),
                    },
                },
                default=str,
            )
        )

    @torch.inference_mode()
    def encode(self, inputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Processor output -> audio (B, S, D_a), text (B, S, D_t) float32 on CPU and both segment masks (B, S).

        The same calls, with the same arguments, as `HilbertModel.forward`'s raw-input path.
        """
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        audio, audio_mask = self.model.get_audio_segment_features(
            inputs.get("input_features"),
            inputs.get("input_values"),
            inputs.get("audio_attention_mask"),
            inputs.get("audio_segment_mask"),
        )
        text, text_mask = self.model.get_text_segment_features(
            inputs["input_ids"], inputs.get("attention_mask"), inputs.get("text_segment_mask")
        )
        return audio.float().cpu(), text.float().cpu(), audio_mask.cpu(), text_mask.cpu()


def load_extractor(
    audio_encoder: str | None = None,
    text_encoder: str | None = None,
    *,
    model: str | os.PathLike | None = None,
    fast: bool | None = None,
    speakers: list[str] | None = None,
    max_segments: int | None = None,
    encoder_batch_size: int | str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
) -> Extractor:
    """Load the frozen encoders and the processor, from two encoder names/folders or from a HILBERT checkpoint.

    Args:
        audio_encoder, text_encoder: Hub ids, folders or `offline:` names (see `hilbert_app/encoders.py`).
        model: a HILBERT checkpoint folder instead: its encoders and its saved processor are used.
        fast: Whisper's fast mode (only the real mel frames are encoded) or, False, the exact 30-s window. None:
            exact, or the checkpoint processor's mode.
        speakers, max_segments: processor policies (None: the default, or the checkpoint processor's).
        encoder_batch_size: segments per encoder call. None or "auto": by device, 4 on CPU (fastest there in
            benchmarks/README.md), 64 on CUDA (`auto_encoder_batch_size`).
        device: default CUDA when available, else CPU.
        dtype: of the frozen encoders ("float32", "float16", "bfloat16" or a torch dtype). None or "auto": float16 on
            CUDA, float32 on CPU (where half precision is slower). The head is unused here; features are pooled in
            float32 and stored as float16 whatever the encoders ran in. The dtype is recorded in the fingerprint
            (`encoder_dtype`, and `dtype` in each encoder's source) so features of different dtypes are not mixed.
    """
    if (model is None) == (audio_encoder is None or text_encoder is None):
        if model is not None:
            raise ExtractionError("Give either --model or --audio-encoder/--text-encoder, not both.")
        raise ExtractionError("Give both --audio-encoder and --text-encoder (or --model CHECKPOINT_DIR).")
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        dtype = resolve_encoder_dtype(dtype, device)
    except ValueError as error:
        raise ExtractionError(f"--encoder-dtype: {error}") from error
    if encoder_batch_size is None or encoder_batch_size == "auto":
        encoder_batch_size = auto_encoder_batch_size(device)
    elif not isinstance(encoder_batch_size, int) or isinstance(encoder_batch_size, bool) or encoder_batch_size < 1:
        raise ExtractionError(f"--encoder-batch-size must be a positive integer or 'auto', got {encoder_batch_size!r}.")

    options = {}
    if fast is not None:
        options["audio_mode"] = "fast" if fast else "exact"
    if speakers is not None:
        options["speakers"] = list(speakers)
    if max_segments is not None:
        options["max_segments"] = max_segments
    head = {"encoder_batch_size": encoder_batch_size}

    if model is not None:
        folder = Path(model)
        if not (folder / "config.json").is_file():
            raise ExtractionError(f"--model {model}: no config.json there; give a folder saved by save_pretrained.")
        try:
            hilbert = HilbertModel.from_pretrained(str(folder), **head)
        except CheckpointError as error:  # a damaged file, or tensors missing: say which, as one paragraph
            raise ExtractionError(f"--model {model}: {error}") from None
        if not getattr(hilbert.config, "with_encoders", True):
            names = {
                k: v.get("requested") or v.get("name_or_path")
                for k, v in (hilbert.config.encoder_sources or {}).items()
            }
            raise ExtractionError(
                f"--model {model} is a head-only checkpoint (with_encoders=False): it holds no encoders. "
                f"Pass the encoders it was trained with instead: --audio-encoder {names.get('audio', '?')} "
                f"--text-encoder {names.get('text', '?')}."
            )
        if not hilbert.config.is_multimodal:
            raise ExtractionError(
                f"--model {model} uses modalities={hilbert.config.modalities!r}; feature extraction "
                "needs both an audio and a text encoder."
            )
        try:
            saved = HilbertProcessor.from_pretrained(str(folder))
        except (OSError, ValueError, TypeError) as error:
            raise ExtractionError(
                f"--model {model} holds no usable HilbertProcessor ({error}); save the processor with "
                "the checkpoint, or pass --audio-encoder and --text-encoder."
            ) from error
        kept = {name: getattr(saved, name) for name in HilbertProcessor.option_names() if hasattr(saved, name)}
        processor = HilbertProcessor(saved.feature_extractor, saved.tokenizer, **{**kept, **options})
        recorded = dict(hilbert.config.encoder_sources or {})
        sources = {}
        for key in ("audio", "text"):
            encoder = getattr(hilbert, f"{key}_encoder")
            sha = weights_sha256(encoder)
            source = dict(recorded.get(key) or {"name_or_path": f"{folder}#{key}_encoder", "revision": None})
            source["model_type"] = encoder.config.model_type
            if source.get("sha256") and source["sha256"] != sha:
                logger.warning(
                    "The %s encoder of %s does not match the sha256 its config records (%s, weights %s); "
                    "recording the weights' own.",
                    key,
                    model,
                    source["sha256"][:12],
                    sha[:12],
                )
            source["sha256"] = sha
            source["checkpoint"] = str(folder)
            sources[key] = source
    else:
        resolved = {
            "audio": check_encoder(audio_encoder, "--audio-encoder"),
            "text": check_encoder(text_encoder, "--text-encoder"),
        }
        hilbert = HilbertModel.from_encoders_pretrained(resolved["audio"], resolved["text"], **head)
        processor = HilbertProcessor.from_encoders_pretrained(resolved["audio"], resolved["text"], **options)
        recorded = hilbert.config.encoder_sources
        sources = {
            key: encoder_provenance(
                requested,
                getattr(hilbert, f"{key}_encoder"),
                revision=recorded[key].get("revision"),
                sha256=recorded[key]["sha256"],
            )
            for key, requested in (("audio", audio_encoder), ("text", text_encoder))
        }

    if is_whisper(hilbert.config.audio_config):  # the model's Whisper mode must be the processor's
        hilbert.config.audio_mode = processor.audio_mode
    hilbert.eval()
    hilbert.to(device)
    hilbert.audio_encoder.to(dtype)  # the encoders only: get_*_segment_features cast their inputs to match
    hilbert.text_encoder.to(dtype)
    for source in sources.values():  # travels with the features into a trained head's config.encoder_sources
        source["dtype"] = str(dtype).replace("torch.", "")
    return Extractor(hilbert, processor, sources, device, dtype)


def decode_audio(audio, doc_id: str, split: str = "train", row: int | None = None) -> tuple[torch.Tensor, int]:
    """A dataset's audio value -> `(waveform (samples,) float32 mono, its own rate)`; names the document on failure.

    The one decoder of the project (`modeling_hilbert.audio_hilbert.decode_audio`, which the processor uses too),
    with the document's id and row in its messages.
    """
    where = f"document id {doc_id!r} ([{split}] row {row})"
    if audio is None:
        raise ExtractionError(f"{where} has no audio; rebuild the dataset with build_dataset.py, which stores it.")
    try:
        return decode_waveform(audio, where=where)
    except AudioError as error:
        raise ExtractionError(f"{error} If the bytes are missing, rebuild the dataset with build_dataset.py.") from None
