"""Timestamped transcripts -> segments, with line-exact errors.

HILBERT treats a recording as a sequence of segments (transcript turns), so the transcript is the
document's skeleton: a wrong timestamp silently pairs text with the wrong audio. This module therefore
separates two kinds of trouble:

* **syntax** -- the file cannot be read as a transcript (bad timestamp, missing ``-->``, a cue cut
  off, two cues run together, a cue whose end precedes its start, bytes that are not UTF-8/UTF-16).
  Parsers raise `TranscriptError` at the first such line, naming ``file:line`` and what to do. Nothing
  malformed is merged into a neighbour or dropped.
* **semantics** -- the file parses, but the segments do not fit together or with the audio
  (out of order, overlapping, negative, past the end of the audio, empty text).
  `validate_segments` returns *all* of them as `Problem`s, so a corpus can be fixed in one pass.

Formats (`load_transcript` picks the parser from the extension):

=====================  =====================================================  ==============================
extension              format                                                 ``speaker``
=====================  =====================================================  ==============================
``.srt``               SubRip                                                 ``NAME:`` / ``[NAME]`` prefix
``.vtt``               WebVTT                                                 ``<v Name>`` or a prefix
``.json``              ``[{start, end, text, speaker?}]`` (seconds)           the ``speaker`` field
``.csv .tsv .txt``     a table, recognised by its header: DAIC-WOZ            the ``speaker`` column
                       (``start_time stop_time speaker value``, tab- or       (E-DAIC has none: None)
                       comma-separated), E-DAIC (``Start_Time,End_Time,
                       Text,Confidence``) or ``start,end,text[,speaker]``
``.cha``               TalkBank CHAT with time bullets (DementiaBank,         ``"Role (CODE)"``, e.g.
                       ADReSS, AphasiaBank)                                   ``"Participant (PAR)"``
``.TextGrid``          Praat TextGrid, long or short text format              the interval tier's name
``.eaf``               ELAN annotation file                                   ``"PARTICIPANT (TIER_ID)"``
                                                                              or ``TIER_ID``
=====================  =====================================================  ==============================

Speaker names of the form ``"Name (ID)"`` keep both what a file calls a speaker (CHAT's role, ELAN's
participant) and its identifier there (CHAT's code, ELAN's tier); `select_speakers` matches either part or
the whole, case-insensitively, so ``["Participant"]`` selects DAIC-WOZ's ``Participant`` and CHAT's
``Participant (PAR)`` alike, and ``["PAR"]`` the latter too.

Files are read as UTF-8 (a BOM is allowed), or as UTF-16/UTF-32 when they start with a byte-order mark
(Windows tools and Praat write those), or as UTF-16 without one when the NUL bytes say so; anything else
(Latin-1, cp1252) is refused at the line of the first undecodable byte.

This file ships to the Hugging Face Hub as remote code: it imports the standard library only.
"""

from __future__ import annotations

import codecs
import csv
import html
import io
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict
from xml.parsers import expat

__all__ = [
    "Segment",
    "TranscriptError",
    "SpeakerSelectionError",
    "Problem",
    "parse_srt",
    "parse_vtt",
    "parse_json_transcript",
    "parse_table_transcript",
    "parse_chat",
    "parse_textgrid",
    "parse_eaf",
    "load_transcript",
    "load_transcript_with_lines",
    "decode_transcript_bytes",
    "select_speakers",
    "speaker_names",
    "validate_segments",
    "format_timestamp",
    "TRANSCRIPT_EXTENSIONS",
]


class Segment(TypedDict):
    """One transcript turn: ``{"start": float, "end": float, "text": str, "speaker": str | None}``.

    ``start``/``end`` are seconds from the beginning of the recording; ``text`` has markup removed and
    whitespace collapsed to single spaces; ``speaker`` is None when the transcript does not say. No other
    key: the corpus builder stores exactly these four (so, e.g., E-DAIC's per-turn ASR confidence is dropped).
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


class SpeakerSelectionError(ValueError):
    """`select_speakers` kept nothing: none of ``requested`` is among ``present`` ({speaker: segment count},
    with None counting the segments that name no speaker)."""

    def __init__(self, message: str, *, requested: list[str], present: dict[str | None, int]):
        super().__init__(message)
        self.requested = requested
        self.present = present


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
            f"bad timestamp {_describe(token)}: minutes and seconds must be below 60.",
            path=path,
            line=line,
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
            f"cue ends ({format_timestamp(end)}) before it starts ({format_timestamp(start)}).",
            path=path,
            line=line,
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
                lines[0] = lines[0][prefix.end() :]
                break
    text = _SPACES.sub(" ", " ".join(lines)).strip()
    return (speaker or None), text


def _collapse(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


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


# A line that starts like a timing line ("00:00:03,000 -->", "3.5 -->"): inside a cue's text it means the blank
# line before the next cue is missing. "a --> b" in speech does not start with a digit, so it stays text.
_GLUED_TIMING = re.compile(r"\s*\d[\d:,.]*\s*-->")
_MISSING_BLANK_FIX = (
    "Put one blank line between two cues (the line before a cue's number or timing line must be empty)."
)


def _glued_cue_line(text_lines: list[str], first_line: int) -> int | None:
    """1-based line at which another cue starts inside an SRT cue's text (a missing blank line), or None:
    a timing line, or a cue number directly followed by a line with '-->'."""
    for k, line in enumerate(text_lines):
        stripped = line.strip()
        if stripped.isascii() and stripped.isdigit() and k + 1 < len(text_lines) and _ARROW in text_lines[k + 1]:
            return first_line + k
        if _GLUED_TIMING.match(line):
            return first_line + k
    return None


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
                f"expected a cue number or a timing line, got {_describe(ident)}.",
                path=path,
                line=first_line,
                fix="Each SRT cue starts with its number, then 'start --> end', then text; cues are separated "
                "by one blank line (a blank line inside a cue's text splits it).",
            )
        if len(block) < 2:
            raise TranscriptError(
                f"truncated cue: {_describe(ident)} is not followed by a timing line.",
                path=path,
                line=first_line,
                fix="Add the 'start --> end' line or delete the cue.",
            )
    line = first_line + timing_at
    start, end = _parse_timing_line(block[timing_at], path=path, line=line)
    text_lines = block[timing_at + 1 :]
    if numbered:
        glued = _glued_cue_line(text_lines, line + 1)
        if glued is not None:  # without this, the next cue's number and timing became this cue's text
            raise TranscriptError(
                f"a new cue starts inside the cue timed at line {line}: a blank line is missing before line {glued}.",
                path=path,
                line=glued,
                fix=_MISSING_BLANK_FIX,
            )
    speaker, text = _speaker_and_text(text_lines, unescape=unescape)
    return Segment(start=start, end=end, text=text, speaker=speaker), line


def _split_vtt_block(start: int, block: list[str]) -> list[tuple[int, list[str]]]:
    """Split a blank-line block where a WebVTT parser does (WebVTT spec, "collect a WebVTT block"): a line
    containing '-->' belongs to the block only as its first line, or as its second after a first line without
    '-->' (the cue identifier); any other such line ends the block and starts the next one."""
    parts: list[tuple[int, list[str]]] = []
    part_start, part = start, []
    for k, line in enumerate(block):
        if _ARROW in line and part and not (len(part) == 1 and _ARROW not in part[0]):
            parts.append((part_start, part))
            part_start, part = start + k, []
        part.append(line)
    parts.append((part_start, part))
    return parts


def _is_cue(part: list[str]) -> bool:
    return _ARROW in part[0] or (len(part) > 1 and _ARROW in part[1])


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
            f"missing WEBVTT header (first line is {_describe(header)}).",
            path=path,
            line=1,
            fix="A WebVTT file must start with the line 'WEBVTT'; if this is an SRT file, rename it to .srt.",
        )
    out = []
    for i, block in _blocks(lines, first=1):
        in_header = i == 1  # header text ("Kind: captions") continues the WEBVTT line until the first blank line
        parts = _split_vtt_block(i, block)
        for n, (j, part) in enumerate(parts):
            if not _is_cue(part):
                keyword = part[0].split(maxsplit=1)[0] if part[0].split() else ""
                if (in_header and n == 0) or keyword in ("NOTE", "STYLE", "REGION"):
                    continue  # header text, comments, style/region definitions: no speech
            elif n > 0 and _is_cue(parts[n - 1][1]):
                # The spec's parser would start a new cue here and keep the previous line as text of the cue above
                # even when it is this cue's identifier: ambiguous, so refuse. After a header, NOTE, STYLE or
                # REGION block, starting the cue loses nothing, so there the spec is followed.
                glued = _GLUED_TIMING.match(part[0]) is not None
                raise TranscriptError(
                    "a new cue starts inside the cue above: a blank line is missing before this line "
                    "(or before the cue identifier above it)."
                    if glued
                    else "'-->' inside a cue's text (WebVTT does not allow it there).",
                    path=path,
                    line=j + 1,
                    fix=_MISSING_BLANK_FIX if glued else "Write '--&gt;' in cue text, or add the missing blank line.",
                )
            out.append(_cue(part, j + 1, path=path, unescape=True, numbered=False))
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
        raise TranscriptError(
            f"{where}missing {key!r}.",
            path=path,
            line=line,
            fix='Each segment needs "start" and "end" in seconds, e.g. {"start": 1.5, "end": 3.0, "text": "..."}.',
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TranscriptError(
            f"{where}{key!r} is not a number (got a {type(value).__name__}).",
            path=path,
            line=line,
            fix=f"Write {key!r} as a number of seconds, e.g. 1.5, not a string.",
        )
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise TranscriptError(
            f"{where}{key!r} is not a finite number (got {value!r}).",
            path=path,
            line=line,
            fix="Write the time in seconds as an ordinary number.",
        )
    return seconds


def _parse_json(text: str, path=None) -> list[tuple[Segment, int]]:
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise TranscriptError(
            f"invalid JSON: {err.msg}.",
            path=path,
            line=err.lineno,
            fix="Fix the JSON syntax (a validator such as `python -m json.tool FILE` shows it).",
        ) from None
    except (ValueError, RecursionError) as err:  # e.g. an integer too long to convert, absurd nesting
        raise TranscriptError(
            f"invalid JSON: {err}.", path=path, line=None, fix="Fix the JSON so that it is a list of segments."
        ) from None
    items = data.get("segments") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise TranscriptError(
            "expected a list of segments or an object with a 'segments' list.",
            path=path,
            line=1,
            fix='Write [{"start": 0.0, "end": 1.2, "text": "...", "speaker": "A"}, ...].',
        )
    lines = _json_element_lines(text, data)
    out = []
    for index, (item, line) in enumerate(zip(items, lines)):
        if not isinstance(item, dict):
            raise TranscriptError(
                f"segment {index} is a {type(item).__name__}, not an object.",
                path=path,
                line=line,
                fix='Each segment is an object like {"start": 0.0, "end": 1.2, "text": "..."}.',
            )
        start = _json_time(item, "start", path=path, line=line, index=index)
        end = _json_time(item, "end", path=path, line=line, index=index)
        if end < start:
            raise TranscriptError(
                f"segment {index} ends ({format_timestamp(end)}) before it starts ({format_timestamp(start)}).",
                path=path,
                line=line,
                fix="Swap or correct the two times.",
            )
        seg_text, speaker = item.get("text", ""), item.get("speaker")
        if not isinstance(seg_text, str):
            raise TranscriptError(
                f"segment {index}: 'text' is not a string (got a {type(seg_text).__name__}).",
                path=path,
                line=line,
                fix='Write the text as a JSON string ("...").',
            )
        if isinstance(speaker, bool) or not isinstance(speaker, (str, int, type(None))):
            raise TranscriptError(
                f"segment {index}: 'speaker' is not a string (got a {type(speaker).__name__}).",
                path=path,
                line=line,
                fix="Write the speaker as a string, or leave it out.",
            )
        speaker = None if speaker is None else (str(speaker).strip() or None)
        out.append((Segment(start=start, end=end, text=seg_text.strip(), speaker=speaker), line))
    return out


# --------------------------------------------------------------------------------------------------
# Tables: DAIC-WOZ, E-DAIC, start/end/text[/speaker]
# --------------------------------------------------------------------------------------------------

# Header names (lower-cased) -> our key. DAIC-WOZ: start_time, stop_time, speaker, value; E-DAIC: Start_Time,
# End_Time, Text, Confidence. Other columns (E-DAIC's Confidence) are ignored: a Segment has no place for them.
_TABLE_COLUMNS = {
    "start": ("start_time", "start"),
    "end": ("stop_time", "end_time", "end", "stop"),
    "text": ("value", "text"),
    "speaker": ("speaker",),
}
_TABLE_HINT = (
    "Expected a header line naming the columns: DAIC-WOZ 'start_time<TAB>stop_time<TAB>speaker<TAB>value', "
    "E-DAIC 'Start_Time,End_Time,Text,Confidence', or 'start,end,text[,speaker]' (times in seconds)."
)


def _table_time(cell: str, column: str, *, path, line: int) -> float:
    try:
        seconds = float(cell.strip())
    except ValueError:
        raise TranscriptError(
            f"column {column!r} is not a number of seconds (got {_describe(cell)}).",
            path=path,
            line=line,
            fix="Write times as seconds, e.g. 36.588.",
        ) from None
    if not math.isfinite(seconds):
        raise TranscriptError(
            f"column {column!r} is not a finite number (got {_describe(cell)}).",
            path=path,
            line=line,
            fix="Write times as seconds, e.g. 36.588.",
        )
    return seconds


def _parse_table(text: str, path=None) -> list[tuple[Segment, int]]:
    lines = _lines(text)
    h = next((i for i, line in enumerate(lines) if line.strip()), None)
    if h is None:
        return []
    header = lines[h]
    # DAIC-WOZ's *_TRANSCRIPT.csv files are tab-separated despite their name: the header says which it is.
    tab = "\t" in header
    delimiter = "\t" if tab else ","
    names = [name.strip().strip('"').strip().lower() for name in header.split(delimiter)]
    column: dict[str, int] = {}
    for key, aliases in _TABLE_COLUMNS.items():
        found = [k for k, name in enumerate(names) if name in aliases]
        if len(found) > 1:
            raise TranscriptError(
                f"the header names the {key} column twice ({names[found[0]]!r}, {names[found[1]]!r}).",
                path=path,
                line=h + 1,
                fix=_TABLE_HINT,
            )
        if found:
            column[key] = found[0]
    missing = [key for key in ("start", "end", "text") if key not in column]
    if missing:
        try:  # a first line of data, not a header
            float(names[0])
            what = "the first line is data, not a header"
        except ValueError:
            what = f"the first line is not a recognised header (no {'/'.join(missing)} column among its {len(names)})"
        raise TranscriptError(f"{what}.", path=path, line=h + 1, fix=_TABLE_HINT)
    # Tab-separated files are not quoted (a '"' in DAIC-WOZ text is text); comma-separated ones quote fields
    # that hold commas.
    reader = csv.reader(
        io.StringIO("\n".join(lines[h + 1 :])),
        delimiter=delimiter,
        strict=True,
        quoting=csv.QUOTE_NONE if tab else csv.QUOTE_MINIMAL,
    )
    out: list[tuple[Segment, int]] = []
    consumed = 0  # physical lines the reader has consumed: a quoted field may span several
    try:
        for row in reader:
            line = h + 2 + consumed
            consumed = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(names):
                raise TranscriptError(
                    f"row has {len(row)} field(s) but the header has {len(names)}.",
                    path=path,
                    line=line,
                    fix="A separator inside the text? Quote the text field (comma-separated files) or remove the "
                    "extra tab; a missing field? Write it, even empty.",
                )
            start = _table_time(row[column["start"]], names[column["start"]], path=path, line=line)
            end = _table_time(row[column["end"]], names[column["end"]], path=path, line=line)
            if end < start:
                raise TranscriptError(
                    f"row ends ({format_timestamp(end)}) before it starts ({format_timestamp(start)}).",
                    path=path,
                    line=line,
                    fix="Swap or correct the two times.",
                )
            speaker = (_collapse(row[column["speaker"]]) or None) if "speaker" in column else None
            out.append((Segment(start=start, end=end, text=_collapse(row[column["text"]]), speaker=speaker), line))
    except csv.Error as err:
        raise TranscriptError(
            f"unreadable row ({err}).",
            path=path,
            line=h + 2 + consumed,
            fix="Check the quoting of this row (a '\"' that opens a field must close it).",
        ) from None
    return out


# --------------------------------------------------------------------------------------------------
# TalkBank CHAT (.cha)
# --------------------------------------------------------------------------------------------------

# A media bullet: NAK-delimited "start_end" in milliseconds; CLAN before 2009 wrote %snd:"file"_start_end.
_BULLET = re.compile('\x15(?:%(?:snd|mov):"[^"\x15]*"_)?(\\d+)_(\\d+)\x15')
_MAIN_TIER = re.compile(r"\*([^:\s]+):")
# [...] annotations after a word or a <scope>: retracing [/] [//] [///], replacements [: word], errors [* m],
# explanations [= x], comments [% x], events [=! laughs], postcodes [+ bch], repetition [x 3], overlap [>] [<].
_CHAT_ANNOTATION = re.compile(r"\[[^\[\]]*\]")
_CHAT_PAUSE = re.compile(r"\((?:\.{1,3}|\d[\d:.]*)\)")  # (.), (..), (...), (1.5), (1:02.5)
# Scope brackets, quotation marks, tag/vocative markers, CA overlap and intonation marks, stress marks,
# within-word pauses: none is spoken.
_CHAT_MARKS = re.compile(
    "[<>\u201c\u201d\u2021\u201e\u2308\u2309\u230a\u230b\u2191\u2193\u21d7\u2197\u2192\u2198"
    "\u21d8\u221e\u224b\u2261\u2219\u2206\u2207\u00b0\u2581\u2594\u263a\u264b\u223e\u21bb"
    "\u02c8\u02cc\u2260\u21ab^]"
)
_CHAT_UNTRANSCRIBED = {"xxx", "yyy", "www", "xx", "yy"}
_CHAT_FIX_BULLET = (
    "A time-aligned transcript is required: link every utterance to the media in CLAN (each main "
    "tier ends with a bullet \u2022start_end\u2022 in milliseconds), or delete the utterance."
)


def _chat_words(body: str) -> str:
    """A main tier's content (bullets removed) -> the spoken words, for a text encoder.

    Kept: words, fillers (``&-uh`` -> ``uh``), fragments and non-words (``&+fr``, ``&~gaga``), both words of a
    retracing (``<the boy> [/] the boy``), the produced word of a replacement (``goed [: went]`` -> ``goed``),
    shortenings in full (``(be)cause`` -> ``because``), compounds as separate words (``ice+cream``), commas.
    Removed: ``[...]`` annotations, ``<>`` scopes, pauses ``(.)``, events ``&=laughs``, interposed words of
    another speaker ``&*INV:mhm``, untranscribed ``xxx yyy www``, omitted words ``0is``, form markers ``@o``,
    lengthening ``:``, terminators and linkers (``. ? ! +... +/. +" +<``), CA and prosody marks.
    """
    body = _CHAT_MARKS.sub("", _CHAT_PAUSE.sub(" ", _CHAT_ANNOTATION.sub(" ", body)))
    words: list[str] = []
    for token in body.split():
        if token.startswith(("&=", "&*", "&{", "&}")):
            continue
        if token.startswith("&"):
            token = token[2:] if len(token) > 1 and token[1] in "-+~" else token[1:]
        if token.startswith(("+", "0", "#")) or token in (".", "?", "!"):
            continue  # linkers/terminators, omitted words, old-style pauses
        if token == ",":
            if words:
                words[-1] += ","
            continue
        token = token.split("@", 1)[0].split("$", 1)[0]  # @o @s:spa @l ..., $pos tags
        if token.lower() in _CHAT_UNTRANSCRIBED:
            continue
        token = token.replace("(", "").replace(")", "").replace(":", "").replace("_", " ").replace("+", " ")
        token = token.rstrip(".?!").strip()
        if token:
            words.append(token)
    return " ".join(words)


def _chat_participants(value: str, *, path, line: int) -> dict[str, str]:
    """``PAR Participant, INV Mary Investigator`` -> {code: role}; the role is the last word of an entry."""
    out: dict[str, str] = {}
    for entry in value.split(","):
        parts = entry.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise TranscriptError(
                f"@Participants entry {parts[0]!r} has no role.",
                path=path,
                line=line,
                fix="Write each participant as 'CODE [Name] Role', e.g. 'PAR Participant, INV Investigator'.",
            )
        if parts[0] in out:
            raise TranscriptError(
                f"@Participants lists {parts[0]!r} twice.", path=path, line=line, fix="Give each participant one entry."
            )
        out[parts[0]] = parts[-1]
    return out


def _parse_chat(text: str, path=None) -> list[tuple[Segment, int]]:
    lines = _lines(text)
    # Logical lines: a line starting with a tab (or, from editors that expand tabs, spaces) continues the
    # header or tier above it.
    tiers: list[tuple[int, list[str]]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if line[0] in "\t ":
            if not tiers:
                raise TranscriptError(
                    "continuation line (starting with a tab) before any header or tier.",
                    path=path,
                    line=i + 1,
                    fix="CHAT files start with '@UTF8' and '@Begin'.",
                )
            tiers[-1][1].append(line.strip())
        else:
            tiers.append((i + 1, [line.rstrip()]))
    participants: dict[str, str] | None = None
    begun = ended = False
    out: list[tuple[Segment, int]] = []
    for line, parts in tiers:
        content = " ".join(parts)
        if ended:
            raise TranscriptError(
                "text after @End.",
                path=path,
                line=line,
                fix="@End must be the last line; move or delete what follows it.",
            )
        if content.startswith("@"):
            name, _, value = content.partition(":")
            name = name.strip()
            if name == "@Begin":
                begun = True
            elif name == "@End":
                ended = True
            elif name == "@Participants":
                participants = _chat_participants(value, path=path, line=line)
            continue
        if content.startswith("%"):
            continue  # dependent tiers (%mor, %gra, %com, %wor, ...) annotate the utterance above
        match = _MAIN_TIER.match(content)
        if not match:
            raise TranscriptError(
                f"unexpected line ({_describe(content)}).",
                path=path,
                line=line,
                fix="CHAT lines start with '@' (header), '*' (utterance), '%' (dependent tier) or "
                "a tab (continuation).",
            )
        if not begun:
            raise TranscriptError(
                "utterance before @Begin.",
                path=path,
                line=line,
                fix="Add the headers '@Begin', '@Languages:' and '@Participants:' before the first utterance.",
            )
        code = match.group(1)
        if participants is None or code not in participants:
            raise TranscriptError(
                f"speaker *{code} is not declared in @Participants"
                + ("." if participants else " (no @Participants header)."),
                path=path,
                line=line,
                fix="List every speaker code in '@Participants:', e.g. 'PAR Participant, INV Investigator'.",
            )
        body = content[match.end() :]
        bullets = list(_BULLET.finditer(body))
        rest = _BULLET.sub(" ", body)
        if "\x15" in rest:
            raise TranscriptError(
                "malformed time bullet (expected \u2022start_end\u2022 in milliseconds).",
                path=path,
                line=line,
                fix=_CHAT_FIX_BULLET,
            )
        if not bullets:
            raise TranscriptError(
                f"utterance of *{code} has no time bullet.", path=path, line=line, fix=_CHAT_FIX_BULLET
            )
        start, end = int(bullets[0].group(1)) / 1000, int(bullets[-1].group(2)) / 1000
        if end < start:
            raise TranscriptError(
                f"utterance ends ({format_timestamp(end)}) before it starts ({format_timestamp(start)}).",
                path=path,
                line=line,
                fix="Correct the bullet's two times (start_end, in milliseconds).",
            )
        words = _chat_words(rest)
        if words:  # an utterance of only events, pauses or xxx has no text for the text encoder
            role = participants[code]
            speaker = code if role == code else f"{role} ({code})"
            out.append((Segment(start=start, end=end, text=words, speaker=speaker), line))
    if not begun:
        raise TranscriptError(
            "no @Begin header: this is not a CHAT transcript.",
            path=path,
            line=1,
            fix="A CHAT file starts with '@UTF8' and '@Begin' and ends with '@End'.",
        )
    if not ended:
        raise TranscriptError(
            "missing @End: is the file cut off?",
            path=path,
            line=len(lines),
            fix="Check that the file is complete; a CHAT file ends with the line '@End'.",
        )
    return out


# --------------------------------------------------------------------------------------------------
# Praat TextGrid (long and short text formats)
# --------------------------------------------------------------------------------------------------

# Praat reads a text file as a stream of free-standing numbers, "strings" (a '"' inside one is written '""', and
# a string may span lines) and <flags>; everything else ("xmin =", "item [1]:") is a comment, and so is
# everything from '!' to the end of a line (Praat manual, "TextGrid file formats"). The long and the short
# format therefore hold the same tokens, and one reader serves both.
_TG_SCAN = re.compile(r'(?P<ws>\s+)|(?P<bang>![^\n]*)|(?P<string>"(?:[^"]|"")*")|(?P<open>")|(?P<word>[^\s!]+)')
_TG_NUMBER = re.compile(r"[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")  # Praat ignores what follows ("0s" is 0)
_TG_FIX = "Save the TextGrid again from Praat (Save as text file... or Save as short text file...)."


def _textgrid_tokens(text: str, path) -> list[tuple[str, object, int]]:
    """Text -> [(kind, value, line)] with kind "string", "number" or "flag"; comments are dropped."""
    tokens: list[tuple[str, object, int]] = []
    line = 1
    for match in _TG_SCAN.finditer(text):
        kind, value = match.lastgroup, match.group()
        if kind == "open":
            raise TranscriptError("a text opened with '\"' is never closed.", path=path, line=line, fix=_TG_FIX)
        if kind == "string":
            tokens.append(("string", value[1:-1].replace('""', '"'), line))
        elif kind == "word":
            number = _TG_NUMBER.match(value)
            if number:
                seconds = float(number.group())
                if not math.isfinite(seconds):
                    raise TranscriptError(
                        f"number {_describe(number.group())} is out of range.", path=path, line=line, fix=_TG_FIX
                    )
                tokens.append(("number", seconds, line))
            elif value.startswith("<") and value.endswith(">"):
                tokens.append(("flag", value, line))
        line += value.count("\n")
    return tokens


def _parse_textgrid(text: str, path=None) -> list[tuple[Segment, int]]:
    text = "\n".join(_lines(text))
    if text.startswith("ooBinaryFile"):
        raise TranscriptError(
            "binary TextGrid.",
            path=path,
            line=1,
            fix="Open it in Praat and use Save as text file... (long or short text format).",
        )
    tokens = _textgrid_tokens(text, path)
    last_line = text.count("\n") + 1
    pos = 0

    def take(kind: str, what: str):
        nonlocal pos
        if pos >= len(tokens):
            raise TranscriptError(
                f"the file ends where {what} was expected: is it cut off?", path=path, line=last_line, fix=_TG_FIX
            )
        got_kind, value, line = tokens[pos]
        if got_kind != kind:
            raise TranscriptError(f"expected {what} (a {kind}), found a {got_kind}.", path=path, line=line, fix=_TG_FIX)
        pos += 1
        return value, line

    def count(what: str) -> int:
        value, line = take("number", what)
        if value != int(value) or value < 0:
            raise TranscriptError(f"{what} is {value:g}, not a count.", path=path, line=line, fix=_TG_FIX)
        return int(value)

    file_type, line = take("string", "the file type")
    if file_type == "Praat chronological TextGrid text file":
        raise TranscriptError(
            "chronological TextGrid: not supported.",
            path=path,
            line=line,
            fix="Open it in Praat and use Save as text file... (long or short text format).",
        )
    if not file_type.startswith("ooTextFile"):
        raise TranscriptError(
            f"not a Praat text file (file type {_describe(file_type)}, expected 'ooTextFile').",
            path=path,
            line=line,
            fix="A TextGrid starts with 'File type = \"ooTextFile\"'.",
        )
    object_class, line = take("string", "the object class")
    if object_class != "TextGrid":
        raise TranscriptError(
            f"a Praat {_describe(object_class)} object, not a TextGrid.",
            path=path,
            line=line,
            fix='Give the TextGrid of the recording (Object class = "TextGrid").',
        )
    take("number", "the TextGrid's start time (xmin)")
    take("number", "the TextGrid's end time (xmax)")
    if pos < len(tokens) and tokens[pos][0] == "flag":
        flag, _ = take("flag", "<exists>")
        if flag == "<absent>":
            return []
    out: list[tuple[Segment, int]] = []
    for t in range(count("the number of tiers")):
        tier_class, line = take("string", f"the class of tier {t + 1}")
        name, _ = take("string", f"the name of tier {t + 1}")
        take("number", f"the start time of tier {t + 1}")
        take("number", f"the end time of tier {t + 1}")
        if tier_class == "IntervalTier":
            for k in range(count(f"the number of intervals of tier {t + 1}")):
                where = f"interval {k + 1} of tier {t + 1}"
                start, line = take("number", f"the start time (xmin) of {where}")
                end, _ = take("number", f"the end time (xmax) of {where}")
                label, _ = take("string", f"the text of {where}")
                if end < start:
                    raise TranscriptError(
                        f"{where} ends ({format_timestamp(end)}) before it starts ({format_timestamp(start)}).",
                        path=path,
                        line=line,
                        fix=_TG_FIX,
                    )
                label = _collapse(label)
                if label:  # empty intervals are the silences between turns
                    out.append((Segment(start=start, end=end, text=label, speaker=_collapse(name) or None), line))
        elif tier_class == "TextTier":  # a point tier: events at instants, no time span to pair with audio
            for k in range(count(f"the number of points of tier {t + 1}")):
                take("number", f"the time of point {k + 1} of tier {t + 1}")
                take("string", f"the mark of point {k + 1} of tier {t + 1}")
        else:
            raise TranscriptError(
                f"tier {t + 1} has unknown class {_describe(tier_class)}.",
                path=path,
                line=line,
                fix='TextGrid tiers are "IntervalTier" or "TextTier".',
            )
    if pos < len(tokens):
        raise TranscriptError(
            "unexpected data after the last tier (is the tier count right?).",
            path=path,
            line=tokens[pos][2],
            fix=_TG_FIX,
        )
    # Tiers are listed one after another; a transcript runs in time order (sorted() is stable: ties keep tier order).
    return sorted(out, key=lambda pair: (pair[0]["start"], pair[0]["end"]))


# --------------------------------------------------------------------------------------------------
# ELAN (.eaf)
# --------------------------------------------------------------------------------------------------

_EAF_FIX = "Open the file in ELAN and save it again, or fix the element named."


class _XmlNode:
    """An XML element with the line of its start tag (ElementTree keeps no lines; expat reports them)."""

    __slots__ = ("tag", "attrs", "line", "children", "text")

    def __init__(self, tag: str, attrs: dict, line: int):
        self.tag, self.attrs, self.line = tag, attrs, line
        # A shared empty tuple until the first child: most elements have none, and tens of thousands of empty lists
        # made the garbage collector's passes cost more than the parse itself (10,000 annotations: 2.0 s -> 0.7 s here).
        self.children: list[_XmlNode] | tuple = ()
        self.text = ""


def _xml_tree(text: str, path, keep_text: Iterable[str]) -> _XmlNode:
    """Parse XML with expat into `_XmlNode`s, keeping character data only inside elements named in ``keep_text``.

    Entity declarations are refused (they are how "billion laughs" and external-entity attacks start; EAF
    files have none), so nothing but the file itself is ever read.
    """
    keep_text = frozenset(keep_text)
    parser = expat.ParserCreate(encoding="UTF-8")  # the text is already decoded: override the declared encoding
    parser.buffer_text = True
    root = _XmlNode("#document", {}, 1)
    stack = [root]

    def start(tag, attrs):
        node, parent = _XmlNode(tag, attrs, parser.CurrentLineNumber), stack[-1]
        if not parent.children:
            parent.children = []
        parent.children.append(node)
        stack.append(node)

    def end(tag):
        stack.pop()

    def data(chunk):
        if stack[-1].tag in keep_text:
            stack[-1].text += chunk

    def entity(*args):
        raise TranscriptError(
            "the XML declares entities (<!ENTITY ...>), which transcripts never need.",
            path=path,
            line=parser.CurrentLineNumber,
            fix="Remove the DOCTYPE/ENTITY declarations.",
        )

    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, data
    parser.EntityDeclHandler = entity
    try:
        parser.Parse(text.encode("utf-8", "surrogatepass"), True)
    except expat.ExpatError as err:
        raise TranscriptError(
            f"invalid XML: {expat.errors.messages[err.code]}.",
            path=path,
            line=err.lineno,
            fix="Fix the XML syntax (e.g. `xmllint --noout FILE` shows it) or save the file again from ELAN.",
        ) from None
    return root


def _parse_eaf(text: str, path=None) -> list[tuple[Segment, int]]:
    root = _xml_tree(text, path, keep_text=("ANNOTATION_VALUE",))
    doc = root.children[0] if root.children else None
    if doc is None or doc.tag != "ANNOTATION_DOCUMENT":
        raise TranscriptError(
            f"not an ELAN file (root element {doc.tag if doc else None!r}, expected ANNOTATION_DOCUMENT).",
            path=path,
            line=doc.line if doc else 1,
            fix="Give the .eaf file ELAN saved.",
        )
    slots: dict[str, int | None] = {}
    tiers: list[_XmlNode] = []
    for child in doc.children:
        if child.tag == "HEADER":
            units = child.attrs.get("TIME_UNITS", "milliseconds")
            if units != "milliseconds":
                raise TranscriptError(
                    f"TIME_UNITS is {units!r}; only milliseconds are supported.",
                    path=path,
                    line=child.line,
                    fix="Save the file from a current ELAN (it writes milliseconds).",
                )
            for media in child.children:
                origin = media.attrs.get("TIME_ORIGIN", "0") if media.tag == "MEDIA_DESCRIPTOR" else "0"
                if origin.strip() not in ("", "0"):
                    # ELAN plays this media offset by TIME_ORIGIN ms: the annotation times are not times in the file.
                    raise TranscriptError(
                        f"the media is offset by TIME_ORIGIN={origin!r} ms, so annotation times are not times in the "
                        "audio file.",
                        path=path,
                        line=media.line,
                        fix="In ELAN, remove the media offset (shifting the annotations by it) and save, or cut the "
                        "audio to match.",
                    )
        elif child.tag == "TIME_ORDER":
            for slot in child.children:
                slot_id, value = slot.attrs.get("TIME_SLOT_ID"), slot.attrs.get("TIME_VALUE")
                if slot_id is None:
                    raise TranscriptError("TIME_SLOT without TIME_SLOT_ID.", path=path, line=slot.line, fix=_EAF_FIX)
                if slot_id in slots:
                    raise TranscriptError(
                        f"time slot {slot_id!r} is defined twice.", path=path, line=slot.line, fix=_EAF_FIX
                    )
                if value is not None and not (value.strip().isascii() and value.strip().isdigit()):
                    raise TranscriptError(
                        f"time slot {slot_id!r} has TIME_VALUE {_describe(value)}, not a number of milliseconds.",
                        path=path,
                        line=slot.line,
                        fix=_EAF_FIX,
                    )
                slots[slot_id] = None if value is None else int(value)
        elif child.tag == "TIER":
            tiers.append(child)
    out: list[tuple[Segment, int]] = []
    for tier in tiers:
        tier_id = tier.attrs.get("TIER_ID")
        if not tier_id:
            raise TranscriptError("TIER without TIER_ID.", path=path, line=tier.line, fix=_EAF_FIX)
        if tier.attrs.get("PARENT_REF"):
            continue  # a dependent tier annotates its parent's annotations (words, glosses, translations)
        participant = tier.attrs.get("PARTICIPANT", "").strip()
        speaker = f"{participant} ({tier_id})" if participant and participant != tier_id else tier_id
        for annotation in tier.children:
            for node in annotation.children:
                if node.tag != "ALIGNABLE_ANNOTATION":
                    continue  # REF_ANNOTATION: symbolic, takes its time from another annotation
                ident = node.attrs.get("ANNOTATION_ID", "?")
                times = []
                for ref in ("TIME_SLOT_REF1", "TIME_SLOT_REF2"):
                    slot_id = node.attrs.get(ref)
                    if slot_id is None or slot_id not in slots:
                        raise TranscriptError(
                            f"annotation {ident!r}: {ref} "
                            + (
                                "is missing."
                                if slot_id is None
                                else f"names time slot {slot_id!r}, which TIME_ORDER lacks."
                            ),
                            path=path,
                            line=node.line,
                            fix=_EAF_FIX,
                        )
                    if slots[slot_id] is None:
                        raise TranscriptError(
                            f"annotation {ident!r} on top-level tier {tier_id!r} uses the unaligned time slot "
                            f"{slot_id!r} "
                            "(no TIME_VALUE).",
                            path=path,
                            line=node.line,
                            fix="Align the annotation in ELAN (top-level annotations need both times) and save.",
                        )
                    times.append(slots[slot_id] / 1000)
                start, end = times
                if end < start:
                    raise TranscriptError(
                        f"annotation {ident!r} ends ({format_timestamp(end)}) before it starts "
                        f"({format_timestamp(start)}).",
                        path=path,
                        line=node.line,
                        fix=_EAF_FIX,
                    )
                value = next((n for n in node.children if n.tag == "ANNOTATION_VALUE"), None)
                words = _collapse(value.text) if value is not None else ""
                out.append((Segment(start=start, end=end, text=words, speaker=speaker), node.line))
    return sorted(out, key=lambda pair: (pair[0]["start"], pair[0]["end"]))


# --------------------------------------------------------------------------------------------------
# Public parsers
# --------------------------------------------------------------------------------------------------


def parse_srt(text: str, path: str | Path | None = None) -> list[Segment]:
    """Parse SubRip (.srt) text. ``path`` only labels error messages. Raises `TranscriptError`.

    Cues are separated by blank lines; a cue number or timing line inside a cue's text (a missing blank line)
    is an error. Cue numbers are labels: gaps and disorder are not errors (`validate_segments` checks the
    times). Timestamps may use ',' or '.' before the milliseconds, and hours may exceed 99.
    """
    return [segment for segment, _ in _parse_srt(text, path)]


def parse_vtt(text: str, path: str | Path | None = None) -> list[Segment]:
    """Parse WebVTT (.vtt) text; NOTE/STYLE/REGION blocks are skipped. Raises `TranscriptError`.

    Blocks end where the WebVTT parsing algorithm ends them: at a blank line, or at a line containing
    '-->' (so a cue written right after a NOTE, STYLE, REGION or the header, without the blank line, is
    still parsed, as browsers do). A timing line inside a *cue* is refused instead: there the spec would keep
    the line before it (perhaps the next cue's identifier) as text.
    """
    return [segment for segment, _ in _parse_vtt(text, path)]


def parse_json_transcript(text: str, path: str | Path | None = None) -> list[Segment]:
    """Parse a JSON list of ``{start, end, text, speaker?}`` (or ``{"segments": [...]}``).

    Times are seconds. Text is only stripped of surrounding whitespace (JSON carries no markup), and
    the speaker comes from the ``speaker`` field only. Raises `TranscriptError`.
    """
    return [segment for segment, _ in _parse_json(text, path)]


def parse_table_transcript(text: str, path: str | Path | None = None) -> list[Segment]:
    """Parse a transcript table (.csv/.tsv/.txt) whose header line says what it is. Raises `TranscriptError`.

    * DAIC-WOZ ``start_time<TAB>stop_time<TAB>speaker<TAB>value`` (the ``*_TRANSCRIPT.csv`` files are
      tab-separated; comma-separated copies are read too), speakers ``Ellie`` and ``Participant``;
    * E-DAIC ``Start_Time,End_Time,Text,Confidence``: no speaker column, so ``speaker`` is None; the ASR
      confidence is dropped (a `Segment` has no field for it);
    * ``start,end,text[,speaker]``.

    Header names are matched case-insensitively, in any order; other columns are ignored. Times are seconds.
    The separator is a tab if the header holds one, else a comma. Tab-separated fields are taken literally;
    comma-separated fields may be quoted (``"well, yes"``). Text is kept as written (DAIC-WOZ's ``<laughter>``
    included), whitespace collapsed. An empty text stays a segment, for `validate_segments` to report.
    """
    return [segment for segment, _ in _parse_table(text, path)]


def parse_chat(text: str, path: str | Path | None = None) -> list[Segment]:
    """Parse a TalkBank CHAT transcript (.cha) with time bullets. Raises `TranscriptError`.

    Each main tier ``*CODE:\\t...`` (with its tab-indented continuation lines) is one segment, timed by its
    media bullet ``\\x15start_end\\x15`` (milliseconds; several bullets span first start to last end). Its
    speaker is ``"Role (CODE)"`` from ``@Participants`` (``"Participant (PAR)"``, ``"Investigator (INV)"``),
    which `select_speakers` matches by role or by code. Dependent tiers (``%mor``, ``%gra``, ...) and other
    headers are ignored. The text is the spoken words with CHAT's markup removed (see `_chat_words`).

    Refused: an utterance without a time bullet (HILBERT pairs each segment with its audio, so an unaligned
    utterance cannot be used, and dropping it would hide that), a speaker missing from ``@Participants``, a
    malformed bullet, a file without ``@Begin`` or ``@End`` (cut off). Skipped, by design: utterances with no
    words left (only ``xxx``, events such as ``&=laughs``, or pauses) -- their audio stays in the recording.
    """
    return [segment for segment, _ in _parse_chat(text, path)]


def parse_textgrid(text: str, path: str | Path | None = None) -> list[Segment]:
    """Parse a Praat TextGrid in the long ("Save as text file") or short text format. Raises `TranscriptError`.

    Every non-empty interval of every IntervalTier is a segment whose speaker is the tier's name (None if the
    name is empty); empty intervals are the silences Praat stores between turns and are skipped. Point tiers
    ("TextTier") mark instants, not spans, and are ignored. Segments are sorted by start time across tiers.
    Forced-alignment TextGrids hold word and phone tiers: keep the one wanted with `select_speakers`.
    Praat writes UTF-16 when a text holds non-ASCII characters: `load_transcript` decodes it.
    """
    return [segment for segment, _ in _parse_textgrid(text, path)]


def parse_eaf(text: str, path: str | Path | None = None) -> list[Segment]:
    """Parse an ELAN annotation file (.eaf). Raises `TranscriptError`.

    Every ALIGNABLE_ANNOTATION of every top-level tier (a TIER without PARENT_REF) is a segment timed by its two
    TIME_SLOTs (milliseconds). Its speaker is ``"PARTICIPANT (TIER_ID)"`` when the tier names a participant
    other than its id, else ``TIER_ID``. Dependent tiers (PARENT_REF: words, glosses, translations) and
    REF_ANNOTATIONs are ignored. Refused: an unaligned time slot (no TIME_VALUE) on a top-level annotation,
    a media offset (TIME_ORIGIN), units other than milliseconds. Errors give the line of the element.
    Segments are sorted by start time across tiers; an empty annotation stays a segment, for
    `validate_segments` to report.
    """
    return [segment for segment, _ in _parse_eaf(text, path)]


_PARSERS = {
    ".srt": _parse_srt,
    ".vtt": _parse_vtt,
    ".json": _parse_json,
    ".csv": _parse_table,
    ".tsv": _parse_table,
    ".txt": _parse_table,
    ".cha": _parse_chat,
    ".textgrid": _parse_textgrid,
    ".eaf": _parse_eaf,
}
TRANSCRIPT_EXTENSIONS = (".srt", ".vtt", ".json", ".csv", ".tsv", ".txt", ".cha", ".TextGrid", ".eaf")

# --------------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------------

_BOMS = (  # UTF-32 first: its little-endian BOM starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"),
)
_REENCODE_FIX = (
    "Re-encode the file as UTF-8, e.g. `iconv -f cp1252 -t utf-8 FILE > FILE.utf8` (use the file's real "
    "encoding); UTF-16 files with a byte-order mark are read as they are."
)


def _bomless_utf16(raw: bytes) -> str | None:
    """'utf-16-le'/'utf-16-be' when the NUL bytes sit at the odd/even offsets (ASCII text saved as UTF-16
    without a byte-order mark), else None."""
    sample = raw[:4096]
    if len(sample) < 4 or b"\x00" not in sample:
        return None
    even, odd = sample[0::2], sample[1::2]
    # a few zero bytes on the other side are characters such as U+0100 or U+4E00
    if odd.count(0) >= 0.3 * len(odd) and even.count(0) <= 0.05 * len(even):
        return "utf-16-le"
    if even.count(0) >= 0.3 * len(even) and odd.count(0) <= 0.05 * len(odd):
        return "utf-16-be"
    return None


def decode_transcript_bytes(raw: bytes, path: str | Path | None = None) -> str:
    """A transcript file's bytes -> text: UTF-8 (BOM optional), UTF-16/UTF-32 with a byte-order mark, or
    UTF-16 without one (recognised from its NUL bytes). Raises `TranscriptError` at the line of the first
    byte that does not decode, or of a NUL character (a binary file)."""
    offset, codec, name = 0, "utf-8", "UTF-8"
    for bom, bom_codec, bom_name in _BOMS:
        if raw.startswith(bom):
            offset, codec, name = len(bom), bom_codec, bom_name
            break
    else:
        guessed = _bomless_utf16(raw)
        if guessed:
            codec, name = guessed, "UTF-16"
    data = raw[offset:]
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as err:
        line = len(_lines(data[: err.start].decode(codec, errors="replace")))
        detail = (
            f"byte 0x{data[err.start]:02x} at offset {err.start + offset}" if err.start < len(data) else "it is cut off"
        )
        raise TranscriptError(
            f"not {name} ({detail}).",
            path=path,
            line=line,
            fix=_REENCODE_FIX if name == "UTF-8" else "Save the file again as UTF-8.",
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise TranscriptError(
            "NUL character: a binary file, or UTF-16/UTF-32 text without a byte-order mark?",
            path=path,
            line=len(_lines(text[:nul])),
            fix="Give the transcript as a text file saved as UTF-8.",
        )
    return text


def load_transcript_with_lines(path: str | Path) -> tuple[list[Segment], list[int]]:
    """Like `load_transcript`, also returning each segment's 1-based source line (for `validate_segments`)."""
    path = Path(path)
    parser = _PARSERS.get(path.suffix.lower())
    if parser is None:
        raise TranscriptError(
            f"unknown transcript extension {path.suffix!r}.",
            path=path,
            fix=f"Use one of {', '.join(TRANSCRIPT_EXTENSIONS)} (the extension picks the parser).",
        )
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise TranscriptError(
            f"cannot read the file ({err.strerror or err}).",
            path=path,
            fix="Check that the path exists and is readable.",
        ) from None
    if raw.startswith(b"ooBinaryFile"):
        raise TranscriptError(
            "binary Praat file.",
            path=path,
            line=1,
            fix="Open it in Praat and use Save as text file... (long or short text format).",
        )
    pairs = parser(decode_transcript_bytes(raw, path), str(path))
    return [segment for segment, _ in pairs], [line for _, line in pairs]


def load_transcript(path: str | Path) -> list[Segment]:
    """Read a transcript file into segments; the extension picks the format (module docstring). Raises
    `TranscriptError`."""
    return load_transcript_with_lines(path)[0]


# --------------------------------------------------------------------------------------------------
# Speakers
# --------------------------------------------------------------------------------------------------

_NAME_AND_ID = re.compile(r"^(.*?\S)\s*\(([^()]*\S[^()]*)\)$")


def speaker_names(speaker: str | None) -> set[str]:
    """The names a segment's speaker answers to, case-folded: the whole name and, for ``"Name (ID)"``, both
    parts (``"Participant (PAR)"`` -> {"participant (par)", "participant", "par"}); empty for None."""
    if speaker is None or not str(speaker).strip():
        return set()
    speaker = str(speaker).strip()
    names = {speaker.casefold()}
    match = _NAME_AND_ID.match(speaker)
    if match:
        names |= {match.group(1).strip().casefold(), match.group(2).strip().casefold()}
    return names


def select_speakers(segments: Sequence[Segment], speakers: str | Iterable[str]) -> list[Segment]:
    """The segments whose speaker is one of ``speakers`` (in order; the same dicts, not copies).

    Matching ignores case and surrounding spaces and accepts either part of a ``"Name (ID)"`` speaker, so
    ``["participant"]`` keeps DAIC-WOZ's ``Participant``, CHAT's ``Participant (PAR)`` and a TextGrid tier
    ``participant``, and ``["PAR"]`` CHAT's too. Names that match nothing are allowed (a list can serve
    several corpora), but if *no* segment matches, `SpeakerSelectionError` lists the speakers present, since
    an empty document is never what was meant. Segments without a speaker are never kept.
    """
    if isinstance(speakers, str):
        speakers = [speakers]
    speakers = list(speakers)
    if not all(isinstance(name, str) for name in speakers):
        raise TypeError(f"speakers must be names (str), got {speakers!r}.")
    wanted = {name.strip().casefold() for name in speakers if name.strip()}
    if not wanted:
        raise ValueError("speakers is empty: give at least one speaker name (or do not select).")
    kept = [segment for segment in segments if speaker_names(segment.get("speaker")) & wanted]
    if segments and not kept:
        present = Counter(segment.get("speaker") for segment in segments)
        listed = ", ".join(
            f"{name!r} ({n} segment{'s' * (n != 1)})"
            for name, n in sorted(((k, v) for k, v in present.items() if k is not None), key=lambda kv: str(kv[0]))
        )
        unnamed = present.get(None, 0)
        raise SpeakerSelectionError(
            f"no segment is spoken by {', '.join(repr(s) for s in speakers)}; the speakers present are "
            f"{listed or 'none (no segment names its speaker)'}"
            + (f", and {unnamed} segment(s) name no speaker." if unnamed and listed else "."),
            requested=speakers,
            present=dict(present),
        )
    return kept


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
            report(
                i,
                "out_of_order",
                f"starts at {format_timestamp(start)}, before segment {i - 1} "
                f"({format_timestamp(segments[i - 1]['start'])}); sort the segments by start time.",
            )
        elif latest_i is not None and start < latest_end:
            report(
                i,
                "overlap",
                f"starts at {format_timestamp(start)}, before segment {latest_i} ends "
                f"({format_timestamp(latest_end)}); trim one of the two so they do not overlap.",
            )
        if audio_duration is not None and max(start, end) > audio_duration + tolerance:
            report(
                i,
                "beyond_audio",
                f"{span} goes past the end of the audio ({format_timestamp(audio_duration)}, tolerance "
                f"{tolerance:g} s); is this the transcript of another recording?",
            )
        if not str(seg.get("text") or "").strip():
            report(i, "empty_text", "empty text; remove the segment or fill in its text.")
        if end > latest_end:
            latest_end, latest_i = end, i
    return problems
