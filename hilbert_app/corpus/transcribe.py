"""Transcription of corpus rows that come without a transcript (`build_dataset.py --transcribe MODEL`).

`CorpusTranscriber` wraps `modeling_hilbert.asr_hilbert.WhisperTranscriber` for the corpus builder:

* the model name is checked before any long work (`check`: a Hub id, a folder or an `offline:` name that resolves,
  whose config is a Whisper one), and loaded only when a row needs it (a corpus whose rows all have transcripts
  never loads the recogniser);
* `provenance` is the record the build report and the dataset card keep: the requested name, the model type, the
  revision (the shipping package's version for `offline:` names, the Hub commit when transformers knows it), the
  sha256 of the weights (`weights_sha256`), the language and the decoding settings;
* each recording is transcribed at most once per build (rows naming the same audio file share one transcription)
  and, across builds, the segments are cached on disk under a key of the audio file's bytes, the weights' hash and
  the decoding settings (`$HILBERT_CACHE/transcripts`): a build that stops after an hour of transcription (a bad
  label on the last row) does not transcribe again when it is re-run.

Long recordings go through `WhisperTranscriber` in blocks of `block_seconds` (10 min by default), so memory stays
bounded whatever a recording's length.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hilbert_app.encoders import EncoderLoadError, check_encoder, encoder_revision, is_offline_name
from hilbert_app.errors import UserError
from hilbert_app.safe_write import atomic_write_text

__all__ = ["CorpusTranscriber", "transcript_cache_dir"]

CACHE_VERSION = 1  # bump when the cached segments' meaning changes (then old entries are ignored)


def transcript_cache_dir() -> Path:
    """`$HILBERT_CACHE/transcripts` (default `~/.cache/hilbert/transcripts`)."""
    return Path(os.environ.get("HILBERT_CACHE", Path.home() / ".cache" / "hilbert")) / "transcripts"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class CorpusTranscriber:
    """A Whisper speech recogniser for the corpus builder (see the module docstring).

    Args:
        model: what `--transcribe` names (Hub id, folder, `offline:` name), or a ready
            `asr_hilbert.WhisperTranscriber` (tests, or settings beyond `language`).
        language: None (detected by a multilingual Whisper) or a code / English name (`--language`).
        cache_dir: where segments are cached across builds; None: `transcript_cache_dir()`; False: no disk cache.
    """

    model: Any
    language: str | None = None
    cache_dir: Path | str | None | bool = None
    _transcriber: Any = field(default=None, init=False, repr=False)
    _resolved: str | None = field(default=None, init=False, repr=False)
    _provenance: dict | None = field(default=None, init=False, repr=False)
    _done: dict[str, tuple[list[dict], bool]] = field(default_factory=dict, init=False, repr=False)

    @property
    def name(self) -> str:
        return str(self.model) if isinstance(self.model, (str, os.PathLike)) else self.model.name_or_path

    def check(self) -> None:
        """Fail fast on a name that cannot be a Whisper model (`UserError` naming --transcribe), before the rows are
        read; reads only the config (and safetensors headers of a folder), never the weights."""
        if not isinstance(self.model, (str, os.PathLike)):
            return
        from transformers import AutoConfig

        try:
            self._resolved = check_encoder(self.model, "--transcribe")
        except EncoderLoadError as error:
            raise UserError(f"{error} (--transcribe takes a Whisper speech recogniser.)") from None
        model_type = AutoConfig.from_pretrained(self._resolved).model_type
        if model_type != "whisper":
            raise UserError(
                f"--transcribe {self.model}: a {model_type!r} model, not a Whisper speech recogniser; give a Whisper "
                "checkpoint (e.g. openai/whisper-base, offline:whisper-tiny.en, offline:whisper-base)."
            )

    def transcriber(self):
        """The loaded `WhisperTranscriber` (loaded on first use)."""
        if self._transcriber is None:
            from modeling_hilbert.asr_hilbert import WhisperTranscriber, load_transcriber

            if isinstance(self.model, WhisperTranscriber):
                if self.language is not None:
                    raise ValueError("language=: set it when building the WhisperTranscriber passed as transcribe=.")
                self._transcriber = self.model
            else:
                if self._resolved is None:
                    self.check()
                try:
                    self._transcriber = load_transcriber(self._resolved, language=self.language)
                except ValueError as error:  # an English-only model given --language de, ...
                    raise UserError(f"--transcribe {self.model} --language {self.language}: {error}") from None
                self._transcriber.name_or_path = str(self.model)  # the portable name, not the cache folder
        return self._transcriber

    @property
    def provenance(self) -> dict:
        """`{name_or_path, model_type, revision, sha256, language, task, block_seconds, num_beams}` (+ resolved_path
        for `offline:` names): which model, at which revision, with which settings transcribed the rows."""
        if self._provenance is None:
            from modeling_hilbert.modeling_hilbert import weights_sha256

            asr = self.transcriber()
            model = getattr(asr, "model", None)
            config = getattr(model, "config", None)
            name = self.name
            revision = encoder_revision(name) if is_offline_name(name) else getattr(config, "_commit_hash", None)
            self._provenance = {
                "name_or_path": name,
                "model_type": getattr(config, "model_type", None),
                "revision": revision,
                "sha256": weights_sha256(model) if model is not None else None,
                "language": asr.language,
                "task": asr.task,
                "block_seconds": asr.block_seconds,
                "num_beams": asr.num_beams,
            }
            if self._resolved and self._resolved != name:
                self._provenance["resolved_path"] = self._resolved
        return self._provenance

    def _cache_file(self, audio_sha256: str) -> Path | None:
        if self.cache_dir is False:
            return None
        p = self.provenance
        settings = json.dumps(
            [CACHE_VERSION, p["sha256"], p["language"], p["task"], p["block_seconds"], p["num_beams"], audio_sha256]
        )
        root = Path(self.cache_dir) if self.cache_dir not in (None, True) else transcript_cache_dir()
        return root / f"{hashlib.sha256(settings.encode()).hexdigest()}.json"

    def __call__(self, audio_path: Path) -> tuple[list[dict], bool]:
        """Transcribe one recording -> (segments `[{start, end, text, speaker: None}]`, whether they came from a
        cache: this build's, for a file already transcribed, or the disk cache of an earlier build)."""
        key = os.path.abspath(audio_path)
        if key in self._done:
            return [dict(s) for s in self._done[key][0]], True
        cache = None if self.provenance["sha256"] is None else self._cache_file(_file_sha256(Path(audio_path)))
        if cache is not None and cache.is_file():
            try:
                segments = json.loads(cache.read_text(encoding="utf-8"))["segments"]
                self._done[key] = (segments, True)
                return [dict(s) for s in segments], True
            except (ValueError, KeyError, TypeError, OSError):
                pass  # a damaged cache entry: transcribe again (and overwrite it)
        segments = self.transcriber()(str(audio_path))
        self._done[key] = (segments, False)
        if cache is not None:
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(cache, json.dumps({"audio": str(audio_path), "segments": segments}) + "\n")
            except OSError:
                pass  # a read-only cache only costs time on a re-run
        return [dict(s) for s in segments], False
