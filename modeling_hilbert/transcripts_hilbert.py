"""Timestamped transcripts (SRT, WebVTT, JSON) -> segments, with line-exact errors.

HILBERT treats a recording as a sequence of segments (transcript turns), so the transcript is the
document's skeleton: a wrong timestamp silently pairs text with the wrong audio. This module therefore
separates two kinds of trouble:

* **syntax** -- the file cannot be read as a transcript (bad timestamp, missing ``-->``, a cue cut
  off, a cue whose end precedes its start, non-UTF-8 bytes). Parsers raise `TranscriptError` at the
  first such line, naming ``file:line`` and what to do.
* **semantics** -- the file parses, but the segments do not fit together or with the audio
  (out of order, overlapping, negative, past the end of the audio, empty text).
  `validate_segments` returns *all* of them as `Problem`s, so a corpus can be fixed in one pass.

This file ships to the Hugging Face Hub as remote code: it imports the standard library only.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

__all__ = [
    "Segment",
    "TranscriptError",
    "Problem",
    "parse_srt",
    "parse_vtt",
    "parse_json_transcript",
    "load_transcript",
    "load_transcript_with_lines",
    "validate_segments",
    "format_timestamp",
]


class Segment(TypedDict):
    """One transcript turn: ``{"start": float, "end": float, "text": str, "speaker": str | None}``.

    ``start``/``end`` are seconds from the beginning of the recording; ``text`` has markup removed and
    whitespace collapsed to single spaces; ``speaker`` is None when the transcript does not say.
    """

    start: float
    end: float
    text: str
    speaker: str | None


class TranscriptError(ValueError):
    """A transcript that cannot be parsed (a syntax error), located at ``path:line``.

    Attributes: ``path`` (str or None when parsing a string), ``line`` (1-based, or None when the
    problem concerns the whole file), ``reason`` (what is wrong) and ``fix`` (what to do).
    """

    def __init__(self, reason: str, *, path: str | Path | None = None, line: int | None = None, fix: str = ""):
        self.path = None if path is None else str(path)
        self.line = line
        self.reason = reason
        self.fix = fix
        where = self.path or "<transcript>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {reason}" + (f" {fix}" if fix else ""))


@dataclass(frozen=True)
class Problem:
    """One semantic problem (or, in the corpus builder, one problem of a metadata row).

    ``line`` is the 1-based line in ``path`` when known; ``index`` the 0-based segment index when the
    problem concerns a segment; ``kind`` a short machine-readable tag (e.g. ``"overlap"``).
    """

    path: str | None
    line: int | None
    kind: str
    message: str
    index: int | None = None

    def __str__(self) -> str:
        where = self.path or "<segments>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.message}"


# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------

# [HH:]MM:SS(,|.)mmm -- SRT mandates hours and a comma, WebVTT makes hours optional and uses a dot;
# both spellings are accepted in both formats because real files mix them. Hours are capped at six
# digits so a corrupt line cannot turn into an absurd float.
_TIMESTAMP = re.compile(r"(?:(\d{1,6}):)?(\d{1,2}):(\d{1,2})[,.](\d{3})", re.ASCII)
_ARROW = "-->"
_TIMING_HINT = "Expected 'HH:MM:SS,mmm --> HH:MM:SS,mmm' (SRT) or 'HH:MM:SS.mmm --> HH:MM:SS.mmm' (WebVTT)."

# Markup removed from cue text: HTML-like tags (<i>, </b>, <font ...>, <c.cls>, <v Name>) and
# WebVTT inline timestamps (<00:00:01.000>), plus ASS override blocks ({\an8}) found in SRT files.
# A tag must start with a letter, '/', or a digit right after '<' so "a < b" stays text.
_TAG = re.compile(r"<(?:/?[A-Za-z][^<>]*|\d[\d:.]*)>|\{\\[^{}]*\}")
_VOICE = re.compile(r"<v(?:\.[^\s>]*)?[ \t]+([^>]+)>")
# "NAME: text" -- up to three words, the first starting with a letter (so "10:30 am" is not a name),
# followed by a colon and whitespace (so "http://x" is not either).
_NAME_PREFIX = re.compile(r"^([^\W\d_][\w.'-]*(?: [\w.'-]+){0,2}):\s+(?=\S)")
# "[NAME] text" -- a bracket alone on the line ("[MUSIC]") is a sound description, kept as text.
_BRACKET_PREFIX = re.compile(r"^\[([^\[\]]{1,40})\]\s*(?=\S)")
_SPACES = re.compile(r"\s+")

# Error messages end up in logs and build reports, where transcripts must not. A line that is mostly digits (a
# timestamp, a cue number, a corrupt time such as 00:00:0x,000) is quoted; anything else could be speech, so the
# message only says how long it is.
def _describe(value: str) -> str:
    value = value.strip()
    digits = sum(c.isdigit() for c in value)
    if len(value) <= 40 and 2 * digits >= len(value.replace(" ", "")):
        return repr(value)
    return f"a {len(value)}-character text (not shown: transcripts are private)"


def format_timestamp(seconds: float) -> str:
    """Seconds -> ``HH:MM:SS.mmm`` (for messages; rounds to the millisecond)."""
    if not math.isfinite(seconds):
        return str(seconds)
    sign = "-" if seconds < 0 else ""
    ms = round(abs(seconds) * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{sign}{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def _lines(text: str) -> list[str]:
    """Split on \\n, \\r\\n or \\r only (str.splitlines also splits on \\f, \\x1c, U+2028..., which
    would make our line numbers disagree with the user's editor). A leading BOM is dropped."""
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _parse_timestamp(token: str, *, path, line: int) -> float:
    match = _TIMESTAMP.fullmatch(token.strip())
    if match is None:
        raise TranscriptError(f"bad timestamp {_describe(token)}.", path=path, line=line, fix=_TIMING_HINT)
    hours, minutes, seconds, millis = match.groups()
    if int(minutes) > 59 or int(seconds) > 59:
        raise TranscriptError(
            f"bad timestamp {_describe(token)}: minutes and seconds must be below 60.", path=path, line=line,
            fix=_TIMING_HINT,
        )
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000


def _parse_timing_line(raw: str, *, path, line: int) -> tuple[float, float]:
    """``start --> end [cue settings]`` -> (start, end); rejects end < start (a self-contradictory cue)."""
    if _ARROW not in raw:
        raise TranscriptError(f"missing '-->' in timing line {_describe(raw)}.", path=path, line=line, fix=_TIMING_HINT)
    left, right = raw.split(_ARROW, 1)
    right_parts = right.split()
    if not right_parts:
        raise TranscriptError("timing line has no end time after '-->'.", path=path, line=line, fix=_TIMING_HINT)
    start = _parse_timestamp(left, path=path, line=line)
    end = _parse_timestamp(right_parts[0], path=path, line=line)  # what follows are cue settings
    if end < start:
        raise TranscriptError(
            f"cue ends ({format_timestamp(end)}) before it starts ({format_timestamp(start)}).", path=path, line=line,
            fix="Swap or correct the two times.",
        )
    return start, end


def _speaker_and_text(cue_lines: list[str], *, unescape: bool) -> tuple[str | None, str]:
    """Cue text lines -> (speaker, clean text).

    The speaker comes from the first WebVTT voice tag ``<v Name>``, else from a ``NAME:`` or
    ``[NAME]`` prefix of the first line (which is then removed). Markup is stripped, lines are joined
    with a space and whitespace is collapsed.
    """
    joined = "\n".join(cue_lines)
    voice = _VOICE.search(joined)
    speaker = voice.group(1).strip() if voice else None
    lines = [_TAG.sub("", line) for line in cue_lines]
    if unescape:  # WebVTT escapes &, <, > as entities; SRT defines no entities
        lines = [html.unescape(line) for line in lines]
    lines = [line.strip() for line in lines]
    if speaker is None and lines:
        for pattern in (_NAME_PREFIX, _BRACKET_PREFIX):
            prefix = pattern.match(lines[0])
            if prefix:
                speaker = prefix.group(1).strip()
                lines[0] = lines[0][prefix.end():]
                break
    text = _SPACES.sub(" ", " ".join(lines)).strip()
    return (speaker or None), text


def _blocks(lines: list[str], first: int = 0) -> list[tuple[int, list[str]]]:
    """Group lines into blank-line separated blocks: [(0-based index of first line, lines), ...]."""
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] = []
    start = first
    for i in range(first, len(lines)):
        if lines[i].strip():
            if not current:
                start = i
            current.append(lines[i])
        elif current:
            blocks.append((start, current))
            current = []
    if current:
        blocks.append((start, current))
    return blocks


def _cue(block: list[str], first_line: int, *, path, unescape: bool, numbered: bool) -> tuple[Segment, int]:
    """One cue block -> (segment, 1-based line of its timing line).

    ``block[0]`` is either the timing line or an identifier (SRT: a number; WebVTT: any text without
    '-->') followed by the timing line.
    """
    timing_at = 0 if _ARROW in block[0] else 1
    if timing_at == 1:
        ident = block[0].strip()
        if numbered and not (ident.isascii() and ident.isdigit()):
            raise TranscriptError(
                f"expected a cue number or a timing line, got {_describe(ident)}.", path=path, line=first_line,
                fix="Each SRT cue starts with its number, then 'start --> end', then text; cues are separated "
                "by one blank line (a blank line inside a cue's text splits it).",
            )
        if len(block) < 2:
            raise TranscriptError(
                f"truncated cue: {_describe(ident)} is not followed by a timing line.", path=path, line=first_line,
                fix="Add the 'start --> end' line or delete the cue.",
            )
    line = first_line + timing_at
    start, end = _parse_timing_line(block[timing_at], path=path, line=line)
    speaker, text = _speaker_and_text(block[timing_at + 1:], unescape=unescape)
    return Segment(start=start, end=end, text=text, speaker=speaker), line


# --------------------------------------------------------------------------------------------------
# Parsers. Each `_parse_*` returns [(segment, line)], the public ones drop the lines.
# --------------------------------------------------------------------------------------------------


def _parse_srt(text: str, path=None) -> list[tuple[Segment, int]]:
    lines = _lines(text)
    return [_cue(block, i + 1, path=path, unescape=False, numbered=True) for i, block in _blocks(lines)]


def _parse_vtt(text: str, path=None) -> list[tuple[Segment, int]]:
    lines = _lines(text)
    header = lines[0] if lines else ""
    if not (header == "WEBVTT" or header.startswith(("WEBVTT ", "WEBVTT\t"))):
        raise TranscriptError(
            f"missing WEBVTT header (first line is {_describe(header)}).", path=path, line=1,
            fix="A WebVTT file must start with the line 'WEBVTT'; if this is an SRT file, rename it to .srt.",
        )
    blocks = _blocks(lines, first=1)
    if blocks and blocks[0][0] == 1:  # header text continues until the first blank line
        header_block = blocks.pop(0)[1]
        arrows = [n for n, line in enumerate(header_block) if _ARROW in line]
        if arrows:  # a cue glued to the header would otherwise vanish with it
            raise TranscriptError(
                "cue inside the WEBVTT header block.", path=path, line=arrows[0] + 2,
                fix="Put one blank line between the WEBVTT header and the first cue.",
            )
    out = []
    for i, block in blocks:
        keyword = block[0].split(maxsplit=1)[0] if block[0].split() else ""
        if keyword in ("NOTE", "STYLE", "REGION") and _ARROW not in block[0]:
            continue  # comments and style/region definitions carry no speech
        out.append(_cue(block, i + 1, path=path, unescape=True, numbered=False))
    return out


def _json_element_lines(text: str, container) -> list[int]:
    """1-based line of each element of the segment array, found by re-scanning the (valid) JSON.

    ``json`` reports no positions for values, so we walk the top-level value with ``raw_decode``.
    """
    decoder = json.JSONDecoder()
    ws = re.compile(r"[ \t\n\r]*")

    def skip(i: int) -> int:
        return ws.match(text, i).end()

    i = skip(0)
    if isinstance(container, dict):  # {"segments": [...], ...}: find the array's opening bracket
        array_at = None
        i = skip(i + 1)
        while text[i] != "}":
            key, i = decoder.raw_decode(text, i)
            i = skip(skip(i) + 1)  # past ':'
            if key == "segments":
                array_at = i  # the last duplicate key wins, as in json.loads
            _, i = decoder.raw_decode(text, i)
            i = skip(i)
            if text[i] == ",":
                i = skip(i + 1)
        i = array_at
    i = skip(i + 1)  # past '['
    lines = []
    # Count newlines incrementally (from the previous element on): counting from the top of the file for every
    # element made a 10,000-segment transcript take seconds (quadratic).
    line, counted_to = 1, 0
    while text[i] != "]":
        line += text.count("\n", counted_to, i)
        counted_to = i
        lines.append(line)
        _, i = decoder.raw_decode(text, i)
        i = skip(i)
        if text[i] == ",":
            i = skip(i + 1)
    return lines


def _json_time(item: dict, key: str, *, path, line: int, index: int) -> float:
    value = item.get(key)
    where = f"segment {index}: "
    if value is None:
        raise TranscriptError(f"{where}missing {key!r}.", path=path, line=line,
                              fix='Each segment needs "start" and "end" in seconds, e.g. {"start": 1.5, "end": 3.0, "text": "..."}.')
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TranscriptError(f"{where}{key!r} is not a number (got a {type(value).__name__}).", path=path, line=line,
                              fix=f'Write {key!r} as a number of seconds, e.g. 1.5, not a string.')
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise TranscriptError(f"{where}{key!r} is not a finite number (got {value!r}).", path=path, line=line,
                              fix="Write the time in seconds as an ordinary number.")
    return seconds


def _parse_json(text: str, path=None) -> list[tuple[Segment, int]]:
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise TranscriptError(f"invalid JSON: {err.msg}.", path=path, line=err.lineno,
                              fix="Fix the JSON syntax (a validator such as `python -m json.tool FILE` shows it).") from None
    except (ValueError, RecursionError) as err:  # e.g. an integer too long to convert, absurd nesting
        raise TranscriptError(f"invalid JSON: {err}.", path=path, line=None,
                              fix="Fix the JSON so that it is a list of segments.") from None
    items = data.get("segments") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise TranscriptError(
            "expected a list of segments or an object with a 'segments' list.", path=path, line=1,
            fix='Write [{"start": 0.0, "end": 1.2, "text": "...", "speaker": "A"}, ...].',
        )
    lines = _json_element_lines(text, data)
    out = []
    for index, (item, line) in enumerate(zip(items, lines)):
        if not isinstance(item, dict):
            raise TranscriptError(f"segment {index} is a {type(item).__name__}, not an object.", path=path, line=line,
                                  fix='Each segment is an object like {"start": 0.0, "end": 1.2, "text": "..."}.')
        start = _json_time(item, "start", path=path, line=line, index=index)
        end = _json_time(item, "end", path=path, line=line, index=index)
        if end < start:
            raise TranscriptError(
                f"segment {index} ends ({format_timestamp(end)}) before it starts ({format_timestamp(start)}).",
                path=path, line=line, fix="Swap or correct the two times.",
            )
        seg_text, speaker = item.get("text", ""), item.get("speaker")
        if not isinstance(seg_text, str):
            raise TranscriptError(f"segment {index}: 'text' is not a string (got a {type(seg_text).__name__}).", path=path, line=line,
                                  fix='Write the text as a JSON string ("...").')
        if isinstance(speaker, bool) or not isinstance(speaker, (str, int, type(None))):
            raise TranscriptError(f"segment {index}: 'speaker' is not a string (got a {type(speaker).__name__}).", path=path,
                                  line=line, fix="Write the speaker as a string, or leave it out.")
        speaker = None if speaker is None else (str(speaker).strip() or None)
        out.append((Segment(start=start, end=end, text=seg_text.strip(), speaker=speaker), line))
    return out


def parse_srt(text: str, path: str | Path | None = None) -> list[Segment]:
    """Parse SubRip (.srt) text. ``path`` only labels error messages. Raises `TranscriptError`."""
    return [segment for segment, _ in _parse_srt(text, path)]


def parse_vtt(text: str, path: str | Path | None = None) -> list[Segment]:
    """Parse WebVTT (.vtt) text; NOTE/STYLE/REGION blocks are skipped. Raises `TranscriptError`."""
    return [segment for segment, _ in _parse_vtt(text, path)]


def parse_json_transcript(text: str, path: str | Path | None = None) -> list[Segment]:
    """Parse a JSON list of ``{start, end, text, speaker?}`` (or ``{"segments": [...]}``).

    Times are seconds. Text is only stripped of surrounding whitespace (JSON carries no markup), and
    the speaker comes from the ``speaker`` field only. Raises `TranscriptError`.
    """
    return [segment for segment, _ in _parse_json(text, path)]


_PARSERS = {".srt": _parse_srt, ".vtt": _parse_vtt, ".json": _parse_json}


def load_transcript_with_lines(path: str | Path) -> tuple[list[Segment], list[int]]:
    """Like `load_transcript`, also returning each segment's 1-based source line (for `validate_segments`)."""
    path = Path(path)
    parser = _PARSERS.get(path.suffix.lower())
    if parser is None:
        raise TranscriptError(
            f"unknown transcript extension {path.suffix!r}.", path=path,
            fix=f"Use one of {', '.join(sorted(_PARSERS))} (the extension picks the parser).",
        )
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise TranscriptError(f"cannot read the file ({err.strerror or err}).", path=path,
                              fix="Check that the path exists and is readable.") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise TranscriptError(
            f"not UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start}).", path=path, line=line,
            fix="Re-encode the file as UTF-8, e.g. `iconv -f cp1252 -t utf-8 FILE > FILE.utf8` (use the file's real encoding).",
        ) from None
    pairs = parser(text, str(path))
    return [segment for segment, _ in pairs], [line for _, line in pairs]


def load_transcript(path: str | Path) -> list[Segment]:
    """Read a .srt, .vtt or .json transcript (UTF-8, BOM allowed) into segments. Raises `TranscriptError`."""
    return load_transcript_with_lines(path)[0]


# --------------------------------------------------------------------------------------------------
# Semantic validation
# --------------------------------------------------------------------------------------------------


def validate_segments(
    segments: list[Segment],
    audio_duration: float | None = None,
    path: str | Path | None = None,
    *,
    lines: list[int] | None = None,
    tolerance: float = 0.5,
) -> list[Problem]:
    """Every semantic problem of a segment list (an empty list means none), not only the first.

    Checks: non-finite or negative times, end before start, start earlier than the previous segment's
    start (out of order), overlap with an earlier segment, times past ``audio_duration + tolerance``
    (the tolerance absorbs subtitle tools that round cue ends up), and empty text.
    ``lines`` (from `load_transcript_with_lines`) lets each problem point at its source line.
    """
    path = None if path is None else str(path)
    problems: list[Problem] = []

    def report(i: int, kind: str, message: str) -> None:
        line = lines[i] if lines is not None and i < len(lines) else None
        problems.append(Problem(path, line, kind, f"segment {i}: {message}", index=i))

    latest_end, latest_i = -math.inf, None  # the earlier segment reaching furthest, for overlaps
    for i, seg in enumerate(segments):
        start, end = seg["start"], seg["end"]
        span = f"{format_timestamp(start)} --> {format_timestamp(end)}"
        if not (math.isfinite(start) and math.isfinite(end)):
            report(i, "not_finite", f"time is not a finite number ({start!r} --> {end!r}); fix the timestamps.")
            continue
        if start < 0 or end < 0:
            report(i, "negative_time", f"negative time ({span}); times are seconds from the start of the audio.")
        if end < start:
            report(i, "end_before_start", f"ends before it starts ({span}); swap or correct the times.")
        if i > 0 and start < segments[i - 1]["start"]:
            report(i, "out_of_order",
                   f"starts at {format_timestamp(start)}, before segment {i - 1} "
                   f"({format_timestamp(segments[i - 1]['start'])}); sort the segments by start time.")
        elif latest_i is not None and start < latest_end:
            report(i, "overlap",
                   f"starts at {format_timestamp(start)}, before segment {latest_i} ends "
                   f"({format_timestamp(latest_end)}); trim one of the two so they do not overlap.")
        if audio_duration is not None and max(start, end) > audio_duration + tolerance:
            report(i, "beyond_audio",
                   f"{span} goes past the end of the audio ({format_timestamp(audio_duration)}, tolerance "
                   f"{tolerance:g} s); is this the transcript of another recording?")
        if not str(seg.get("text") or "").strip():
            report(i, "empty_text", "empty text; remove the segment or fill in its text.")
        if end > latest_end:
            latest_end, latest_i = end, i
    return problems
