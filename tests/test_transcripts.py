"""Transcript parsing (SRT, WebVTT, JSON) and segment validation: modeling_hilbert/transcripts_hilbert.py."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modeling_hilbert.transcripts_hilbert import (
    Problem,
    TranscriptError,
    load_transcript,
    load_transcript_with_lines,
    parse_json_transcript,
    parse_srt,
    parse_vtt,
    validate_segments,
)


def seg(start, end, text, speaker=None):
    return {"start": start, "end": end, "text": text, "speaker": speaker}


# ---------------------------------------------------------------------------------------- happy paths

SRT = """1
00:00:01,000 --> 00:00:02,500
JOHN: Hello <i>there</i>,
general Kenobi.

2
00:00:03,000 --> 00:00:04,250 X1:10 X2:20
[Mary Jane] <font color="red">Hi</font> {\\an8}again

3
00:00:04,500 --> 00:00:05,000
[MUSIC]

4
01:02:03,004 --> 01:02:04,000
The time is 10:30 now.
"""


def test_srt_happy_path():
    assert parse_srt(SRT) == [
        seg(1.0, 2.5, "Hello there, general Kenobi.", "JOHN"),
        seg(3.0, 4.25, "Hi again", "Mary Jane"),
        seg(4.5, 5.0, "[MUSIC]"),  # a bracket alone is a sound description, not a speaker
        seg(3723.004, 3724.0, "The time is 10:30 now."),
    ]


def test_srt_crlf_bom_and_missing_index():
    text = "\ufeff1\r\n00:00:00,000 --> 00:00:01,000\r\nA\r\n\r\n00:00:01,000 --> 00:00:02,000\r\nB\r\n"
    assert parse_srt(text) == [seg(0.0, 1.0, "A"), seg(1.0, 2.0, "B")]


VTT = """WEBVTT - a title
Kind: captions

NOTE this is a comment
spanning two lines

STYLE
::cue { color: yellow }

intro
00:01.000 --> 00:02.000 align:start position:10%
<v.loud Roger Bingham>We are &amp; <b>live</b></v>

00:00:02.000 --> 00:00:03.500
<c.yellow>Plain</c> <00:00:02.500>text &lt;3

00:00:04.000 --> 00:00:05.000
Alice: hello
"""


def test_vtt_happy_path():
    assert parse_vtt(VTT) == [
        seg(1.0, 2.0, "We are & live", "Roger Bingham"),
        seg(2.0, 3.5, "Plain text <3"),
        seg(4.0, 5.0, "hello", "Alice"),
    ]


def test_json_happy_paths():
    as_list = '[{"start": 0, "end": 1.5, "text": " hi ", "speaker": "A"}, {"start": 2, "end": 3.25, "text": "x"}]'
    expected = [seg(0.0, 1.5, "hi", "A"), seg(2.0, 3.25, "x")]
    assert parse_json_transcript(as_list) == expected
    assert parse_json_transcript(json.dumps({"language": "en", "segments": json.loads(as_list)})) == expected
    # JSON text is taken literally: no markup stripping, no speaker guessing
    assert parse_json_transcript('[{"start": 0, "end": 1, "text": "BOB: a <b> c"}]') == [seg(0.0, 1.0, "BOB: a <b> c")]


@pytest.mark.parametrize("suffix, text", [(".srt", SRT), (".vtt", VTT)])
def test_load_transcript_by_extension_with_bom(tmp_path, suffix, text):
    path = tmp_path / f"t{suffix.upper()}"  # extension match is case-insensitive
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert load_transcript(path) == (parse_srt(text) if suffix == ".srt" else parse_vtt(text))


def test_load_transcript_with_lines_points_at_timing_lines(tmp_path):
    path = tmp_path / "t.srt"
    path.write_text(SRT, encoding="utf-8")
    assert load_transcript_with_lines(path)[1] == [2, 7, 11, 15]
    path = tmp_path / "t.json"
    path.write_text('{"segments": [\n  {"start": 0, "end": 1, "text": "a"},\n\n  {"start": 1, "end": 2, "text": "b"}\n]}')
    assert load_transcript_with_lines(path)[1] == [2, 4]


# ---------------------------------------------------------------------------------------- syntax errors


@pytest.mark.parametrize("text, line, fragment", [
    ("1\n00:00:01,000 -> 00:00:02,000\nx\n", 2, "missing '-->'"),
    ("1\n00:00:01,000 --> 00:00:0x,000\nx\n", 2, "bad timestamp '00:00:0x,000'"),
    ("1\n00:00:01,000 --> 00:00:02,000\nx\n\n2\n00:61:01,000 --> 00:62:00,000\ny\n", 6, "below 60"),
    ("1\n00:00:03,000 --> 00:00:02,000\nx\n", 2, "before it starts"),
    ("1\n00:00:01,000 --> 00:00:02,000\nx\n\nabc\n00:00:03,000 --> 00:00:04,000\ny\n", 5, "expected a cue number"),
    ("1\n00:00:01,000 --> 00:00:02,000\nx\n\n2\n", 5, "truncated cue"),
    ("1\n00:00:01,000 -->\nx\n", 2, "no end time"),
    ("1\n00:00:01,000 --> 00:00:02,000\nfirst\n\nsecond paragraph\n", 5, "expected a cue number"),
])
def test_malformed_srt_names_the_line(text, line, fragment):
    with pytest.raises(TranscriptError) as info:
        parse_srt(text, path="talk.srt")
    assert info.value.line == line and info.value.path == "talk.srt"
    assert fragment in str(info.value) and str(info.value).startswith(f"talk.srt:{line}: ")


@pytest.mark.parametrize("text, line, fragment", [
    ("00:01.000 --> 00:02.000\nx\n", 1, "missing WEBVTT header"),
    ("WEBVTT\n00:01.000 --> 00:02.000\nx\n", 2, "inside the WEBVTT header"),
    ("WEBVTT\n\n00:01.000 --> 00:02.000\nx\n\nid\n00:03.000 --> 00:0a.000\n", 7, "bad timestamp"),
    ("WEBVTT\n\nid\nno arrow here\n", 4, "missing '-->'"),
    ("WEBVTT\n\n00:01.000 --> 00:02.000\nx\n\nlonely-id\n", 6, "truncated cue"),
])
def test_malformed_vtt_names_the_line(text, line, fragment):
    with pytest.raises(TranscriptError) as info:
        parse_vtt(text, path="talk.vtt")
    assert (info.value.line, fragment in str(info.value)) == (line, True), str(info.value)


@pytest.mark.parametrize("text, line, fragment", [
    ('[\n  {"start": 0, "end": 1, "text": "a"},\n  {"start": 1, "end": 2, "text": "b"\n]', 4, "invalid JSON"),
    ('[\n  {"start": 0, "end": 1, "text": "a"},\n  {"start": "1", "end": 2}\n]', 3, "'start' is not a number"),
    ('[\n\n  {"end": 2, "text": "a"}]', 3, "missing 'start'"),
    ('[{"start": 3, "end": 2, "text": "a"}]', 1, "before it starts"),
    ('[{"start": 0, "end": 1e999, "text": "a"}]', 1, "not a finite number"),
    ('[{"start": true, "end": 1, "text": "a"}]', 1, "not a number"),
    ('[{"start": 0, "end": 1, "text": 5}]', 1, "'text' is not a string"),
    ('[\n 7\n]', 2, "not an object"),
    ('{"segs": []}', 1, "expected a list of segments"),
])
def test_malformed_json_names_the_line(text, line, fragment):
    with pytest.raises(TranscriptError) as info:
        parse_json_transcript(text, path="talk.json")
    assert (info.value.line, fragment in str(info.value)) == (line, True), str(info.value)


def test_non_utf8_file_is_named_with_a_fix(tmp_path):
    path = tmp_path / "latin1.srt"
    path.write_bytes("1\n00:00:01,000 --> 00:00:02,000\nCaf\u00e9\n".encode("latin-1"))
    with pytest.raises(TranscriptError) as info:
        load_transcript(path)
    message = str(info.value)
    assert str(path) in message and "not UTF-8" in message and "Re-encode" in message and info.value.line == 3


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(TranscriptError, match="unknown transcript extension '.txt'"):
        load_transcript(tmp_path / "a.txt")
    with pytest.raises(TranscriptError, match="cannot read the file"):
        load_transcript(tmp_path / "missing.srt")


# ---------------------------------------------------------------------------------------- validation


def test_validate_segments_reports_every_problem_with_its_line():
    segments = [
        seg(0.0, 2.0, "a"),
        seg(1.0, 3.0, "  "),      # overlaps 0, empty text
        seg(0.5, 0.2, "c"),       # out of order, ends before it starts
        seg(-1.0, 20.0, "d"),     # negative, out of order, beyond the audio
        seg(20.0, 10.2, "e"),     # end < start, start beyond audio
        seg(20.5, 21.0, "f"),     # beyond audio
    ]
    problems = validate_segments(segments, audio_duration=10.0, path="x.srt", lines=[2, 6, 10, 14, 18, 22])
    assert [(p.line, p.kind) for p in problems] == [
        (6, "overlap"), (6, "empty_text"),
        (10, "end_before_start"), (10, "out_of_order"),
        (14, "negative_time"), (14, "out_of_order"), (14, "beyond_audio"),
        (18, "end_before_start"), (18, "beyond_audio"),
        (22, "beyond_audio"),
    ]
    assert all(isinstance(p, Problem) and p.path == "x.srt" for p in problems)
    assert str(problems[0]).startswith("x.srt:6: segment 1: starts at 00:00:01.000, before segment 0 ends")


def test_validate_segments_tolerance_and_clean_input():
    segments = [seg(0.0, 1.0, "a"), seg(1.0, 10.4, "b")]  # touching is not overlapping
    assert validate_segments(segments, audio_duration=10.0) == []
    problems = validate_segments(segments, audio_duration=10.0, tolerance=0.1)
    assert [p.kind for p in problems] == ["beyond_audio"] and problems[0].line is None and problems[0].index == 1
    assert str(problems[0]).startswith("<segments>: segment 1:")


def test_overlap_with_an_earlier_long_segment():
    segments = [seg(0.0, 10.0, "long"), seg(2.0, 3.0, "a"), seg(4.0, 5.0, "b")]
    assert [(p.index, p.kind) for p in validate_segments(segments)] == [(1, "overlap"), (2, "overlap")]


# ---------------------------------------------------------------------------------------- properties

# Text that survives every format unchanged: no markup characters, no speaker prefix (the first
# character is a lowercase letter and there is no colon or bracket), single spaces, no edge spaces.
_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéü0123456789.,!?'-", min_size=1, max_size=8)
_TEXT = st.lists(_WORD, min_size=1, max_size=6).map(" ".join).filter(lambda t: t[0].isalpha() and t[0].islower())
_SPEAKER = st.none() | st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=8)


@st.composite
def _segments(draw):
    """Well-formed segments with millisecond times (start <= end)."""
    n = draw(st.integers(1, 8))
    out, t = [], 0
    for _ in range(n):
        start = t + draw(st.integers(0, 5_000))
        end = start + draw(st.integers(0, 20_000))
        t = end
        out.append(seg(start / 1000, end / 1000, draw(_TEXT), draw(_SPEAKER)))
    return out


def _clock(seconds, sep):
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def write_srt(segments):
    return "".join(
        f"{i}\n{_clock(s['start'], ',')} --> {_clock(s['end'], ',')}\n"
        f"{s['speaker'] + ': ' if s['speaker'] else ''}{s['text']}\n\n" for i, s in enumerate(segments, 1))


def write_vtt(segments):
    return "WEBVTT\n\n" + "".join(
        f"{_clock(s['start'], '.')} --> {_clock(s['end'], '.')}\n"
        f"{'<v ' + s['speaker'] + '>' if s['speaker'] else ''}{s['text']}\n\n" for s in segments)


def write_json(segments):
    return json.dumps([{k: v for k, v in s.items() if v is not None} for s in segments], indent=1)


@settings(max_examples=60, deadline=None)
@given(_segments(), st.sampled_from([(write_srt, parse_srt), (write_vtt, parse_vtt), (write_json, parse_json_transcript)]))
def test_written_segments_parse_back(segments, codec):
    write, parse = codec
    parsed = parse(write(segments))
    assert [(round(s["start"] * 1000), round(s["end"] * 1000), s["text"], s["speaker"]) for s in parsed] == [
        (round(s["start"] * 1000), round(s["end"] * 1000), s["text"], s["speaker"]) for s in segments]
    assert validate_segments(parsed) == []


_NOISE = st.text(alphabet=st.sampled_from(list("0123456789:,.->\n \tWEBVTT NOTE<v>[]{}\"segmnts:abc\r\ufeff")), max_size=200)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=200), _NOISE),
       st.sampled_from([parse_srt, parse_vtt, parse_json_transcript]))
def test_arbitrary_text_raises_only_transcript_error(text, parse):
    try:
        segments = parse(text)
    except TranscriptError as err:
        assert err.line is None or err.line >= 1
    else:
        validate_segments(segments)  # whatever parses can be validated
