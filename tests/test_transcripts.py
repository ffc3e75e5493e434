"""Transcript parsing (SRT, WebVTT, JSON, DAIC-WOZ/E-DAIC tables, CHAT, TextGrid, ELAN) and segment validation:
modeling_hilbert/transcripts_hilbert.py. Fixtures: tests/fixtures/transcripts/ (hand-written)."""

import json
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modeling_hilbert.transcripts_hilbert import (
    Problem,
    SpeakerSelectionError,
    TranscriptError,
    decode_transcript_bytes,
    load_transcript,
    load_transcript_with_lines,
    parse_chat,
    parse_eaf,
    parse_json_transcript,
    parse_srt,
    parse_table_transcript,
    parse_textgrid,
    parse_vtt,
    select_speakers,
    speaker_names,
    validate_segments,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "transcripts"


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
    path.write_text(
        '{"segments": [\n  {"start": 0, "end": 1, "text": "a"},\n\n  {"start": 1, "end": 2, "text": "b"}\n]}'
    )
    assert load_transcript_with_lines(path)[1] == [2, 4]


# ---------------------------------------------------------------------------------------- syntax errors


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("1\n00:00:01,000 -> 00:00:02,000\nx\n", 2, "missing '-->'"),
        ("1\n00:00:01,000 --> 00:00:0x,000\nx\n", 2, "bad timestamp '00:00:0x,000'"),
        ("1\n00:00:01,000 --> 00:00:02,000\nx\n\n2\n00:61:01,000 --> 00:62:00,000\ny\n", 6, "below 60"),
        ("1\n00:00:03,000 --> 00:00:02,000\nx\n", 2, "before it starts"),
        ("1\n00:00:01,000 --> 00:00:02,000\nx\n\nabc\n00:00:03,000 --> 00:00:04,000\ny\n", 5, "expected a cue number"),
        ("1\n00:00:01,000 --> 00:00:02,000\nx\n\n2\n", 5, "truncated cue"),
        ("1\n00:00:01,000 -->\nx\n", 2, "no end time"),
        ("1\n00:00:01,000 --> 00:00:02,000\nfirst\n\nsecond paragraph\n", 5, "expected a cue number"),
    ],
)
def test_malformed_srt_names_the_line(text, line, fragment):
    with pytest.raises(TranscriptError) as info:
        parse_srt(text, path="talk.srt")
    assert info.value.line == line and info.value.path == "talk.srt"
    assert fragment in str(info.value) and str(info.value).startswith(f"talk.srt:{line}: ")


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("00:01.000 --> 00:02.000\nx\n", 1, "missing WEBVTT header"),
        ("WEBVTT\n\n00:01.000 --> 00:02.000\nx\n\nid\n00:03.000 --> 00:0a.000\n", 7, "bad timestamp"),
        ("WEBVTT\n\nid\nno arrow here\n", 4, "missing '-->'"),
        ("WEBVTT\n\n00:01.000 --> 00:02.000\nx\n\nlonely-id\n", 6, "truncated cue"),
    ],
)
def test_malformed_vtt_names_the_line(text, line, fragment):
    with pytest.raises(TranscriptError) as info:
        parse_vtt(text, path="talk.vtt")
    assert (info.value.line, fragment in str(info.value)) == (line, True), str(info.value)


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ('[\n  {"start": 0, "end": 1, "text": "a"},\n  {"start": 1, "end": 2, "text": "b"\n]', 4, "invalid JSON"),
        ('[\n  {"start": 0, "end": 1, "text": "a"},\n  {"start": "1", "end": 2}\n]', 3, "'start' is not a number"),
        ('[\n\n  {"end": 2, "text": "a"}]', 3, "missing 'start'"),
        ('[{"start": 3, "end": 2, "text": "a"}]', 1, "before it starts"),
        ('[{"start": 0, "end": 1e999, "text": "a"}]', 1, "not a finite number"),
        ('[{"start": true, "end": 1, "text": "a"}]', 1, "not a number"),
        ('[{"start": 0, "end": 1, "text": 5}]', 1, "'text' is not a string"),
        ("[\n 7\n]", 2, "not an object"),
        ('{"segs": []}', 1, "expected a list of segments"),
    ],
)
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
    with pytest.raises(TranscriptError, match="unknown transcript extension '.docx'"):
        load_transcript(tmp_path / "a.docx")
    with pytest.raises(TranscriptError, match="cannot read the file"):
        load_transcript(tmp_path / "missing.srt")


# ---------------------------------------------------------------------------------------- validation


def test_validate_segments_reports_every_problem_with_its_line():
    segments = [
        seg(0.0, 2.0, "a"),
        seg(1.0, 3.0, "  "),  # overlaps 0, empty text
        seg(0.5, 0.2, "c"),  # out of order, ends before it starts
        seg(-1.0, 20.0, "d"),  # negative, out of order, beyond the audio
        seg(20.0, 10.2, "e"),  # end < start, start beyond audio
        seg(20.5, 21.0, "f"),  # beyond audio
    ]
    problems = validate_segments(segments, audio_duration=10.0, path="x.srt", lines=[2, 6, 10, 14, 18, 22])
    assert [(p.line, p.kind) for p in problems] == [
        (6, "overlap"),
        (6, "empty_text"),
        (10, "end_before_start"),
        (10, "out_of_order"),
        (14, "negative_time"),
        (14, "out_of_order"),
        (14, "beyond_audio"),
        (18, "end_before_start"),
        (18, "beyond_audio"),
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
        f"{s['speaker'] + ': ' if s['speaker'] else ''}{s['text']}\n\n"
        for i, s in enumerate(segments, 1)
    )


def write_vtt(segments):
    return "WEBVTT\n\n" + "".join(
        f"{_clock(s['start'], '.')} --> {_clock(s['end'], '.')}\n"
        f"{'<v ' + s['speaker'] + '>' if s['speaker'] else ''}{s['text']}\n\n"
        for s in segments
    )


def write_json(segments):
    return json.dumps([{k: v for k, v in s.items() if v is not None} for s in segments], indent=1)


@settings(max_examples=60, deadline=None)
@given(
    _segments(), st.sampled_from([(write_srt, parse_srt), (write_vtt, parse_vtt), (write_json, parse_json_transcript)])
)
def test_written_segments_parse_back(segments, codec):
    write, parse = codec
    parsed = parse(write(segments))
    assert [(round(s["start"] * 1000), round(s["end"] * 1000), s["text"], s["speaker"]) for s in parsed] == [
        (round(s["start"] * 1000), round(s["end"] * 1000), s["text"], s["speaker"]) for s in segments
    ]
    assert validate_segments(parsed) == []


_NOISE = st.text(
    alphabet=st.sampled_from(list('0123456789:,.->\n \tWEBVTT NOTE<v>[]{}"segmnts:abc\r\ufeff')), max_size=200
)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=200), _NOISE), st.sampled_from([parse_srt, parse_vtt, parse_json_transcript]))
def test_arbitrary_text_raises_only_transcript_error(text, parse):
    try:
        segments = parse(text)
    except TranscriptError as err:
        assert err.line is None or err.line >= 1
    else:
        validate_segments(segments)  # whatever parses can be validated


# ================================================================================ issue 12: strict cue structure


@pytest.mark.parametrize(
    "text, line",
    [
        # cue 2's number and timing line directly under cue 1's text: before, they became cue 1's text
        ("1\n00:00:01,000 --> 00:00:02,000\nhello\n2\n00:00:02,500 --> 00:00:03,000\nworld\n", 4),
        # the same without the number
        ("1\n00:00:01,000 --> 00:00:02,000\nhello\n00:00:02,500 --> 00:00:03,000\nworld\n", 4),
        # an empty cue directly followed by the next one
        ("1\n00:00:01,000 --> 00:00:02,000\n2\n00:00:02,500 --> 00:00:03,000\nworld\n", 3),
        # further down, after good cues, with CRLF line endings
        (
            "1\r\n00:00:01,000 --> 00:00:02,000\r\na\r\n\r\n2\r\n00:00:03,000 --> 00:00:04,000\r\nb\r\nc\r\n3\r\n"
            "00:00:05,000 --> 00:00:06,000\r\nd\r\n",
            9,
        ),
    ],
)
def test_srt_missing_blank_line_between_cues_is_refused_at_its_line(text, line):
    with pytest.raises(TranscriptError) as info:
        parse_srt(text, path="talk.srt")
    assert info.value.line == line and "blank line is missing" in str(info.value), str(info.value)


def test_srt_text_that_merely_contains_an_arrow_or_a_number_stays_text():
    text = "1\n00:00:01,000 --> 00:00:02,000\nprices went up --> a lot\n42\nis the answer\n"
    assert parse_srt(text) == [seg(1.0, 2.0, "prices went up --> a lot 42 is the answer")]


def test_srt_cue_numbers_are_labels_and_order_is_checked_on_the_times():
    shuffled = (
        "3\n00:00:01,000 --> 00:00:02,000\na\n\n1\n00:00:02,000 --> 00:00:03,000\nb\n\n"
        "7\n00:00:04,000 --> 00:00:05,000\nc\n"
    )
    segments = parse_srt(shuffled)
    assert [s["text"] for s in segments] == ["a", "b", "c"] and validate_segments(segments) == []
    reversed_times = "1\n00:00:05,000 --> 00:00:06,000\na\n\n2\n00:00:01,000 --> 00:00:02,000\nb\n"
    assert [p.kind for p in validate_segments(parse_srt(reversed_times), lines=[2, 6])] == ["out_of_order"]


def test_srt_empty_cue_is_kept_for_validation_to_report_with_its_line(tmp_path):
    path = tmp_path / "e.srt"
    path.write_text("1\n00:00:01,000 --> 00:00:02,000\n\n2\n00:00:03,000 --> 00:00:04,000\nb\n")
    segments, lines = load_transcript_with_lines(path)
    assert segments == [seg(1.0, 2.0, ""), seg(3.0, 4.0, "b")]
    assert [(p.line, p.kind) for p in validate_segments(segments, path=path, lines=lines)] == [(2, "empty_text")]


@pytest.mark.parametrize(
    "timing, start, end",
    [
        ("00:00:01,250 --> 00:00:02.500", 1.25, 2.5),  # comma and dot mixed
        ("00:01.250 --> 00:02,500", 1.25, 2.5),  # WebVTT short form in an SRT file
        ("100:00:00,000 --> 123:45:06,789", 360000.0, 445506.789),  # hours above 99
    ],
)
def test_srt_and_vtt_timestamp_spellings(timing, start, end):
    assert parse_srt(f"1\n{timing}\nx\n") == [seg(start, end, "x")]
    assert parse_vtt(f"WEBVTT\n\n{timing}\nx\n") == [seg(start, end, "x")]


@pytest.mark.parametrize(
    "timing, fragment",
    [
        ("-00:00:01,000 --> 00:00:02,000", "bad timestamp"),  # negative times cannot be written
        ("00:00:03,000 --> 00:00:02,000", "before it starts"),
        ("00:00:01:000 --> 00:00:02:000", "bad timestamp"),  # colon before the milliseconds
    ],
)
def test_srt_negative_reversed_and_misspelt_times_are_refused(timing, fragment):
    with pytest.raises(TranscriptError, match=fragment) as info:
        parse_srt(f"1\n{timing}\nx\n")
    assert info.value.line == 2


@pytest.mark.parametrize(
    "text, expected",
    [
        # WebVTT spec ("collect a WebVTT block"): a NOTE block ends at a '-->' line; a one-line NOTE right above a
        # timing line is that cue's identifier. Before, the whole block was skipped as a comment: the cue vanished.
        ("WEBVTT\n\nNOTE a comment\n00:01.000 --> 00:02.000\nhello\n", [seg(1.0, 2.0, "hello")]),
        (
            "WEBVTT\n\nNOTE\nline one\nline two\n00:01.000 --> 00:02.000\nhello\n\n00:03.000 --> 00:04.000\nyo\n",
            [seg(1.0, 2.0, "hello"), seg(3.0, 4.0, "yo")],
        ),
        ("WEBVTT\n\nSTYLE\n::cue { color: red }\n00:01.000 --> 00:02.000\nhello\n", [seg(1.0, 2.0, "hello")]),
        ("WEBVTT\n00:01.000 --> 00:02.000\nhello\n", [seg(1.0, 2.0, "hello")]),  # glued to the header
        ("WEBVTT\nKind: captions\nLanguage: en\n00:01.000 --> 00:02.000\nhello\n", [seg(1.0, 2.0, "hello")]),
        ("\ufeffWEBVTT\r\n\r\nNOTE x\r\n00:01.000 --> 00:02.000\r\nhello\r\n", [seg(1.0, 2.0, "hello")]),
    ],
)
def test_vtt_cue_right_after_a_note_style_or_header_is_parsed_as_the_spec_says(text, expected):
    assert parse_vtt(text) == expected


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("WEBVTT\n\n00:01.000 --> 00:02.000\nhello\n00:02.000 --> 00:03.000\nyo\n", 5, "blank line is missing"),
        ("WEBVTT\n\n00:01.000 --> 00:02.000\nhello\ncue-2\n00:02.000 --> 00:03.000\nyo\n", 6, "blank line is missing"),
        ("WEBVTT\n00:01.000 --> 00:02.000\nhello\n00:02.000 --> 00:03.000\nyo\n", 4, "blank line is missing"),
        ("WEBVTT\n\n00:01.000 --> 00:02.000\nprices --> up\n", 4, "'-->' inside a cue's text"),
        ("WEBVTT\n\nNOTE a --> b\n", 3, "bad timestamp"),  # a NOTE may not contain '-->'
    ],
)
def test_vtt_timing_line_inside_a_cue_is_refused_at_its_line(text, line, fragment):
    with pytest.raises(TranscriptError) as info:
        parse_vtt(text, path="talk.vtt")
    assert info.value.line == line and fragment in str(info.value), str(info.value)


# ================================================================================ issue 13: the field's formats

INTERVIEW = [  # interview.srt/.vtt/.json/_long.TextGrid/_short.TextGrid/.eaf, speakers aside
    (0.5, 3.2, "How have you been sleeping this past week?"),
    (3.9, 7.45, "Not well. I wake up around four and can't get back to sleep."),
    (8.0, 9.1, "Every night?"),
    (9.6, 12.3, "Most nights, yes."),
]


def rows(segments):
    return [(s["start"], s["end"], s["text"], s["speaker"]) for s in segments]


def test_srt_vtt_json_fixtures():
    speakers = ["INTERVIEWER", "PATIENT", "INTERVIEWER", "PATIENT"]
    assert load_transcript_with_lines(FIXTURES / "interview.srt") == (
        [seg(*turn, who) for turn, who in zip(INTERVIEW, speakers)],
        [2, 7, 12, 16],
    )
    vtt = [seg(*turn, who) for turn, who in zip(INTERVIEW, ["Interviewer", "Patient"] * 2)]
    vtt[1]["text"] = vtt[1]["text"].replace(" and ", " & ")
    assert load_transcript_with_lines(FIXTURES / "interview.vtt") == (vtt, [5, 8, 11, 14])
    json_speakers = ["Interviewer", "Patient", "Interviewer", None]
    assert load_transcript_with_lines(FIXTURES / "interview.json") == (
        [seg(*turn, who) for turn, who in zip(INTERVIEW, json_speakers)],
        [4, 5, 6, 7],
    )


DAIC_WOZ = [
    (36.588, 39.868, "hi i'm ellie thanks for coming in today", "Ellie"),
    (40.221, 43.003, "i was created to talk to people in a safe and secure environment", "Ellie"),
    (44.5, 45.27, "okay", "Participant"),
    (46.01, 49.8, "how are you doing today", "Ellie"),
    (50.2, 53.775, "i'm doing alright <laughter> a little tired", "Participant"),  # spaces collapsed, tags kept
    (54.9, 57.43, "where are you from originally", "Ellie"),
    (58.001, 61.5, "i'm from los angeles", "Participant"),
    (62.3, 66.09, "when was the last time you felt really happy", "Ellie"),
    (67.4, 74.25, "um it's been a while i guess \"a while\" since i've felt like that", "Participant"),  # '"' is text
    (75.0, 76.1, "mhm", "Ellie"),
]
E_DAIC = [
    (9.4, 12.9, "so i've been feeling pretty good lately", None),
    (13.6, 17.25, "well, work has been busy", None),
    (18.0, 22.4, "i sleep about six hours most nights", None),
    (23.15, 27.8, "my sister calls me every sunday, which helps", None),
    (28.5, 30.05, "not really", None),
]


def test_daic_woz_tab_separated_csv_and_its_comma_separated_copy(tmp_path):
    segments, lines = load_transcript_with_lines(FIXTURES / "daic_woz_TRANSCRIPT.csv")
    assert rows(segments) == DAIC_WOZ and lines == list(range(2, 12))
    text = (FIXTURES / "daic_woz_TRANSCRIPT.csv").read_text()
    as_commas = "\n".join(
        ",".join(
            f'"{c}"' if '"' in c or "," in c else c
            for c in [cell.replace('"', '""') if '"' in cell else cell for cell in line.split("\t")]
        )
        for line in text.splitlines()
    )
    for suffix in (".csv", ".tsv", ".txt"):
        (tmp_path / f"t{suffix}").write_text(as_commas if suffix == ".csv" else text)
        assert rows(load_transcript(tmp_path / f"t{suffix}")) == DAIC_WOZ


def test_e_daic_csv_has_no_speaker_and_drops_confidence():
    segments, lines = load_transcript_with_lines(FIXTURES / "e_daic_Transcript.csv")
    assert rows(segments) == E_DAIC and lines == [2, 3, 4, 5, 6]
    assert all(set(s) == {"start", "end", "text", "speaker"} for s in segments)


def test_generic_table_columns_in_any_order_and_case():
    text = 'Speaker,TEXT,end,start,notes\nA,"a, b",2.5,1,x\n,c,4,3,\n'
    assert parse_table_transcript(text) == [seg(1.0, 2.5, "a, b", "A"), seg(3.0, 4.0, "c")]


def _with_line(text, number, new):
    lines = text.split("\n")
    lines[number - 1] = new
    return "\n".join(lines)


DAIC_TEXT = (FIXTURES / "daic_woz_TRANSCRIPT.csv").read_text()
E_DAIC_TEXT = (FIXTURES / "e_daic_Transcript.csv").read_text()


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        (_with_line(DAIC_TEXT, 4, "44.5\t45.27\tokay"), 4, "row has 3 field(s) but the header has 4"),
        (_with_line(DAIC_TEXT, 4, "44.5\t45.27\tParticipant\tokay\tmore"), 4, "row has 5 field(s)"),
        (_with_line(DAIC_TEXT, 4, "4x.5\t45.27\tParticipant\tokay"), 4, "'start_time' is not a number"),
        (_with_line(DAIC_TEXT, 4, "46.5\t45.27\tParticipant\tokay"), 4, "before it starts"),
        (_with_line(DAIC_TEXT, 4, "44.5\tnan\tParticipant\tokay"), 4, "not a finite number"),
        (DAIC_TEXT.split("\n", 1)[1], 1, "the first line is data, not a header"),
        (_with_line(DAIC_TEXT, 1, "begin\tfinish\twho\twhat"), 1, "not a recognised header"),
        (_with_line(DAIC_TEXT, 1, "start_time\tstart\tstop_time\tvalue"), 1, "names the start column twice"),
        (_with_line(E_DAIC_TEXT, 3, "13.6,17.25,well, work has been busy,0.87"), 3, "row has 5 field(s)"),
        (_with_line(E_DAIC_TEXT, 6, '28.5,30.05,"not really,0.95'), 6, "unreadable row"),
        (
            "\n\n" + _with_line(E_DAIC_TEXT, 4, '18.0,22.4,"i sleep\nabout six hours",0.9\n18,x,y,0'),
            8,
            "is not a number",
        ),
    ],
)
def test_malformed_tables_name_the_line(text, line, fragment):
    with pytest.raises(TranscriptError) as info:
        parse_table_transcript(text, path="t.csv")
    assert (info.value.line, fragment in str(info.value)) == (line, True), str(info.value)
    assert info.value.fix


CHAT_TEXT = (FIXTURES / "interview.cha").read_text(encoding="utf-8")
PAR, INV = "Participant (PAR)", "Investigator (INV)"
CHAT = [  # (start, end, text, speaker) and the line of the utterance
    ((0.0, 2.84, "tell me everything you see going on in that picture", INV), 10),
    ((3.12, 6.05, "um the boy the boy taking cookies from the cookie jar", PAR), 11),
    ((6.4, 11.25, "he's gonna he's going to fall off the stool I think", PAR), 14),
    ((11.6, 17.02, "and the little girl is reaching up for a cookie and the mother is drying dishes", PAR), 15),
    ((17.1, 17.5, "mhm", INV), 17),
    ((17.8, 22.75, "the water's running over onto the floor", PAR), 18),
    # line 20, "*PAR:\txxx .", has no words left: skipped
    ((24.1, 25.0, "anything else", INV), 21),
    ((25.3, 31.4, "uh because she's not paying attention, it goes splash on the floor", PAR), 22),
    ((31.5, 32.1, "okay", INV), 23),
]


def test_chat_fixture_gives_words_times_and_role_code_speakers():
    segments, lines = load_transcript_with_lines(FIXTURES / "interview.cha")
    assert (rows(segments), lines) == ([row for row, _ in CHAT], [line for _, line in CHAT])


@pytest.mark.parametrize(
    "main_tier, words",
    [
        (
            "&-um (.) the boy [/] the boy 0is taking cookies from the cookie+jar .",
            "um the boy the boy taking cookies from the cookie jar",
        ),
        ("<he's gonna> [//] he's going to fall (..) (1.5) (2:03.5) off .", "he's gonna he's going to fall off"),
        (
            "the water's running over [: overflowing] &=laughs onto the floor [+ exc] .",
            "the water's running over onto the floor",
        ),
        ("I goed [* m:=ed] to the store [?] [>] +/.", "I goed to the store"),
        ("&+fr fri:day was &~gaga &*INV:mhm bana:nas@o +...", "fr friday was gaga bananas"),
        ("(be)cause Keks@s:deu , ‡ well „ you know ?", "because Keks, well you know"),
        ("xxx yyy www &=coughs 0 .", ""),
        ('+" he said +< no ↑ ⌈yes⌉ .', "he said no yes"),
        ("ice_cream and “quotes” [= explanation here] ! [x 3]", "ice cream and quotes"),
    ],
)
def test_chat_markup_is_removed_and_the_words_kept(main_tier, words):
    text = f"@UTF8\n@Begin\n@Participants:\tPAR Participant\n*PAR:\t{main_tier} \x151_2\x15\n@End\n"
    assert parse_chat(text) == ([seg(0.001, 0.002, words, PAR)] if words else [])


def test_chat_old_style_bullets_several_bullets_names_in_participants_and_blank_lines():
    text = (
        "@Begin\n@Participants:\tCHI Ross Target_Child, MOT Mother\n\n*CHI:\tmore \x151000_1500\x15 cookie .\n"
        '    \x151500_2100\x15\n*MOT:\there . \x15%snd:"clip"_2500_3000\x15\n@End\n'
    )
    assert parse_chat(text) == [
        seg(1.0, 2.1, "more cookie", "Target_Child (CHI)"),
        seg(2.5, 3.0, "here", "Mother (MOT)"),
    ]


def _chat_variant(number, new):
    return _with_line(CHAT_TEXT, number, new)


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        (_chat_variant(17, "*INV:\tmhm ."), 17, "has no time bullet"),
        (_chat_variant(17, "*MOT:\tmhm . \x1517100_17500\x15"), 17, "*MOT is not declared in @Participants"),
        (_chat_variant(17, "*INV:\tmhm . \x1517100-17500\x15"), 17, "malformed time bullet"),
        (_chat_variant(17, "*INV:\tmhm . \x1517500_17100\x15"), 17, "before it starts"),
        (_chat_variant(16, "\tdrying dishes ."), 15, "has no time bullet"),  # the bullet was on the continuation line
        (_chat_variant(17, "hello there"), 17, "unexpected line"),
        (CHAT_TEXT.replace("@End\n", ""), 24, "missing @End"),
        (CHAT_TEXT.replace("@Begin\n", ""), 9, "utterance before @Begin"),
        (CHAT_TEXT + "*INV:\tbye . \x1533000_33500\x15\n", 25, "text after @End"),
        (_chat_variant(5, "@Participants:\tPAR, INV Investigator"), 5, "entry 'PAR' has no role"),
        (_chat_variant(5, "@Participants:\tINV Investigator, INV Investigator"), 5, "lists 'INV' twice"),
        ("\t@Begin\n", 1, "continuation line"),
        ("hello\n", 1, "unexpected line"),
        ("@UTF8\n@End\n", 1, "no @Begin"),
    ],
)
def test_malformed_chat_names_the_line(text, line, fragment):
    with pytest.raises(TranscriptError) as info:
        parse_chat(text, path="t.cha")
    assert (info.value.line, fragment in str(info.value)) == (line, True), str(info.value)
    assert info.value.fix


TEXTGRID = [  # (row, line of the interval's xmin) in interview_long.TextGrid / interview_short.TextGrid
    (INTERVIEW[0] + ("Interviewer",), 20, 16),
    ((3.9, 7.45, "Not well. I wake up around four and can't get back to sleep.", "Patient"), 46, 36),  # two lines
    (INTERVIEW[2] + ("Interviewer",), 28, 22),
    ((9.6, 12.3, 'Most nights, yes. My wife says "just relax".', "Patient"), 55, 43),  # "" is a quote
]


@pytest.mark.parametrize("name, column", [("interview_long.TextGrid", 1), ("interview_short.TextGrid", 2)])
def test_textgrid_long_and_short_formats(name, column):
    segments, lines = load_transcript_with_lines(FIXTURES / name)  # the point tier "events" is ignored
    assert (rows(segments), lines) == ([t[0] for t in TEXTGRID], [t[column] for t in TEXTGRID])


def test_textgrid_comments_units_and_absent_tiers():
    text = (
        'File type = "ooTextFile short"\n"TextGrid"\n! a comment "not a string"\n0s 2.5s <exists> 1\n'
        '"IntervalTier" "" 0 2.5 2 ! type, name (empty), xmin, xmax, size\n0 1.25 "a ! b" 1.25 2.5 ""\n'
    )
    assert parse_textgrid(text) == [seg(0.0, 1.25, "a ! b")]
    assert parse_textgrid('File type = "ooTextFile"\nObject class = "TextGrid"\n0\n1\n<absent>\n') == []


TG_LONG = (FIXTURES / "interview_long.TextGrid").read_text()
TG_SHORT = (FIXTURES / "interview_short.TextGrid").read_text()


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("\n".join(TG_LONG.split("\n")[:47]), 47, "the file ends where the text of interval 2 of tier 2 was expected"),
        ("\n".join(TG_SHORT.split("\n")[:30]), 30, "the file ends where"),
        (_with_line(TG_LONG, 56, "            xmax = 9.0 "), 55, "interval 4 of tier 2 ends"),
        (TG_LONG.replace('mark = "cough"', 'mark = "cou'), 70, "never closed"),
        (_with_line(TG_LONG, 10, '        class = "IntervalTeir" '), 10, "unknown class"),
        (_with_line(TG_LONG, 2, 'Object class = "Pitch"'), 2, "not a TextGrid"),
        (_with_line(TG_LONG, 1, 'File type = "ooBinaryFile"'), 1, "not a Praat text file"),
        (TG_LONG + '"IntervalTier"\n', 71, "unexpected data after the last tier"),
        (_with_line(TG_LONG, 14, "        intervals: size = 2.5 "), 14, "not a count"),
        # "zero" is a comment to Praat, so xmax is read as xmin and the text where xmax should be
        (
            _with_line(TG_LONG, 16, "            xmin = zero "),
            18,
            "expected the end time (xmax) of interval 1 of tier 1",
        ),
        (_with_line(TG_LONG, 16, "            xmin = 1e999 "), 16, "out of range"),
    ],
)
def test_malformed_textgrid_names_the_line(text, line, fragment):
    with pytest.raises(TranscriptError) as info:
        parse_textgrid(text, path="t.TextGrid")
    assert (info.value.line, fragment in str(info.value)) == (line, True), str(info.value)
    assert info.value.fix


EAF_TEXT = (FIXTURES / "interview.eaf").read_text()


def test_eaf_fixture_top_level_tiers_only_sorted_with_participant_speakers():
    segments, lines = load_transcript_with_lines(FIXTURES / "interview.eaf")
    doctor = "Dr. Lee (Interviewer)"
    assert rows(segments) == [
        INTERVIEW[0] + (doctor,),
        (3.9, 7.45, "Not well. I wake up around four & can't get back to sleep.", "PAT"),  # PARTICIPANT == TIER_ID
        INTERVIEW[2] + (doctor,),
        INTERVIEW[3] + ("PAT",),
        (12.4, 13.05, "[door closes]", "Room"),  # no PARTICIPANT
    ]  # PAT-words (PARENT_REF, unaligned slot ts4) and PAT-translation (REF_ANNOTATION) are ignored
    assert lines == [22, 34, 27, 40, 66]


@pytest.mark.parametrize(
    "old, new, line, fragment",
    [
        (
            'ANNOTATION_ID="a1" TIME_SLOT_REF1="ts1" TIME_SLOT_REF2="ts2"',
            'ANNOTATION_ID="a1" TIME_SLOT_REF1="ts1" TIME_SLOT_REF2="ts4"',
            22,
            "uses the unaligned time slot 'ts4'",
        ),
        ('TIME_SLOT_REF2="ts2"', 'TIME_SLOT_REF2="ts99"', 22, "names time slot 'ts99', which TIME_ORDER lacks"),
        ('TIME_SLOT_REF1="ts1" TIME_SLOT_REF2="ts2"', 'TIME_SLOT_REF1="ts2" TIME_SLOT_REF2="ts1"', 22, "'a1' ends"),
        ('TIME_SLOT_REF1="ts1" ', "", 22, "TIME_SLOT_REF1 is missing"),
        ('TIME_VALUE="3900"', 'TIME_VALUE="39oo"', 10, "not a number of milliseconds"),
        ('<TIME_SLOT TIME_SLOT_ID="ts9"', '<TIME_SLOT TIME_SLOT_ID="ts8"', 16, "'ts8' is defined twice"),
        ('MIME_TYPE="audio/x-wav"', 'MIME_TYPE="audio/x-wav" TIME_ORIGIN="1500"', 4, "TIME_ORIGIN='1500'"),
        ('TIME_UNITS="milliseconds"', 'TIME_UNITS="PAL-frames"', 3, "only milliseconds"),
        (
            "How have you been sleeping this past week?</ANNOTATION_VALUE>",
            "How have you",
            24,
            "invalid XML: mismatched tag",
        ),
        ('TIER_ID="Room"', "", 64, "TIER without TIER_ID"),
        ("ANNOTATION_DOCUMENT", "DOCUMENT", 2, "not an ELAN file"),  # both tags
    ],
)
def test_malformed_eaf_names_the_element_line(old, new, line, fragment):
    assert EAF_TEXT.count(old) == (2 if old == "ANNOTATION_DOCUMENT" else 1)
    with pytest.raises(TranscriptError) as info:
        parse_eaf(EAF_TEXT.replace(old, new), path="t.eaf")
    assert (info.value.line, fragment in str(info.value)) == (line, True), str(info.value)
    assert info.value.fix


def test_eaf_refuses_entity_declarations():
    bomb = (
        '<?xml version="1.0"?>\n<!DOCTYPE d [\n<!ENTITY a "aaaaaaaaaa">\n<!ENTITY b "&a;&a;&a;&a;&a;">\n]>\n'
        "<ANNOTATION_DOCUMENT>&b;</ANNOTATION_DOCUMENT>\n"
    )
    with pytest.raises(TranscriptError, match="declares entities") as info:
        parse_eaf(bomb)
    assert info.value.line == 3


# ---------------------------------------------------------------------------------------- encodings

ALL_FIXTURES = sorted(p.name for p in FIXTURES.iterdir())


def _encode(text, encoding):
    if encoding == "utf-16-be-bom":
        return b"\xfe\xff" + text.encode("utf-16-be")
    if encoding == "utf-16-le-no-bom":
        return text.encode("utf-16-le")
    if encoding == "utf-8-crlf":
        return text.replace("\n", "\r\n").encode("utf-8")
    if encoding == "utf-16-crlf":  # Windows Notepad's "Unicode": little-endian with a BOM, CRLF
        return text.replace("\n", "\r\n").encode("utf-16")
    return text.encode(encoding)


@pytest.mark.parametrize("name", ALL_FIXTURES)
@pytest.mark.parametrize(
    "encoding", ["utf-8-sig", "utf-8-crlf", "utf-16", "utf-16-be-bom", "utf-16-le-no-bom", "utf-16-crlf", "utf-32"]
)
def test_every_format_reads_bom_crlf_and_utf16(tmp_path, name, encoding):
    expected = load_transcript_with_lines(FIXTURES / name)
    path = tmp_path / name
    path.write_bytes(_encode((FIXTURES / name).read_text(encoding="utf-8"), encoding))
    assert load_transcript_with_lines(path) == expected and expected[0]


@pytest.mark.parametrize(
    "name, old, new, line",
    [
        ("interview.cha", "splash", "spl\u00e4sh", 22),
        ("interview_long.TextGrid", "Every night?", "\u00c9very night?", 30),
        ("interview.eaf", "Most nights", "M\u00f6st nights", 41),
        ("daic_woz_TRANSCRIPT.csv", "los angeles", "los \u00e1ngeles", 8),
        ("interview.vtt", "Every night?", "\u00c9very night?", 12),
    ],
)
def test_latin1_bytes_are_refused_at_their_line(tmp_path, name, old, new, line):
    path = tmp_path / name
    path.write_bytes((FIXTURES / name).read_text(encoding="utf-8").replace(old, new).encode("latin-1"))
    with pytest.raises(TranscriptError) as info:
        load_transcript(path)
    assert info.value.line == line and "not UTF-8" in str(info.value) and "Re-encode" in info.value.fix


def test_decoding_errors_and_binary_files():
    with pytest.raises(TranscriptError, match="not UTF-16") as info:
        decode_transcript_bytes(b"\xff\xfe" + "a\nb\n".encode("utf-16-le") + b"\x00\xd8")  # lone surrogate
    assert info.value.line == 3
    with pytest.raises(TranscriptError, match="NUL character") as info:
        decode_transcript_bytes(b"ab\ncd\x00\x01\x02")
    assert info.value.line == 2


def test_binary_praat_file_is_refused(tmp_path):
    path = tmp_path / "b.TextGrid"
    path.write_bytes(b"ooBinaryFile\x08TextGrid\x00\x00\x01")
    with pytest.raises(TranscriptError, match="binary Praat file") as info:
        load_transcript(path)
    assert info.value.fix and info.value.line == 1


# ---------------------------------------------------------------------------------------- privacy

CANARY = "zorblaxquintet"  # where speech would be: must never reach an error message


@pytest.mark.parametrize(
    "parse, text",
    [
        (parse_chat, f"@Begin\n@Participants:\tPAR Participant\n*PAR:\t{CANARY} words .\n@End\n"),
        (parse_chat, f"@Begin\n{CANARY} stray line\n@End\n"),
        (parse_table_transcript, f"start_time\tstop_time\tspeaker\tvalue\n1\t2\tA\t{CANARY}\textra\n"),
        (parse_table_transcript, f"start_time\tstop_time\tspeaker\tvalue\n{CANARY}\t2\tA\tx\n"),
        (parse_table_transcript, f"{CANARY} said hello\n"),
        (parse_textgrid, f'File type = "ooTextFile"\nObject class = "TextGrid"\n0 1 <exists> 1\n"{CANARY} tier"\n'),
        (
            parse_textgrid,
            f'File type = "ooTextFile"\nObject class = "TextGrid"\n0 1 <exists> 1 "IntervalTier" "A" 0 1 1 '
            f'1 0 "{CANARY}"\n',
        ),
        (
            parse_eaf,
            f"<ANNOTATION_DOCUMENT><TIER TIER_ID='A'><ANNOTATION><ALIGNABLE_ANNOTATION TIME_SLOT_REF1='x'>"
            f"<ANNOTATION_VALUE>{CANARY}</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION></TIER>"
            "</ANNOTATION_DOCUMENT>",
        ),
        (parse_eaf, f"<ANNOTATION_DOCUMENT><TIER><ANNOTATION_VALUE>{CANARY}</ANNOTATION_VAL></TIER>"),
        (parse_vtt, f"WEBVTT\n\n00:01.000 --> 00:02.000\n{CANARY}\n00:02.000 --> 00:03.000\n{CANARY}\n"),
        (parse_srt, f"1\n00:00:01,000 --> 00:00:02,000\n{CANARY}\n2\n00:00:02,000 --> 00:00:03,000\n{CANARY}\n"),
    ],
)
def test_new_errors_quote_no_transcript_text(parse, text):
    with pytest.raises(TranscriptError) as info:
        parse(text, path="x")
    assert CANARY not in str(info.value) and info.value.line is not None


# ================================================================================ speaker selection


def test_select_speakers_by_name_role_or_code_case_insensitively():
    daic = load_transcript(FIXTURES / "daic_woz_TRANSCRIPT.csv")
    chat = load_transcript(FIXTURES / "interview.cha")
    eaf = load_transcript(FIXTURES / "interview.eaf")
    assert [s["text"] for s in select_speakers(daic, ["participant"])] == [
        r[2] for r in DAIC_WOZ if r[3] == "Participant"
    ]
    by_role, by_code = select_speakers(chat, ["Participant"]), select_speakers(chat, ["  par "])
    assert by_role == by_code == [s for s in chat if s["speaker"] == PAR] and len(by_role) == 5
    assert select_speakers(chat, "Investigator (INV)") == [s for s in chat if s["speaker"] == INV]  # a str is one name
    assert select_speakers(eaf, ["dr. lee"]) == select_speakers(eaf, ["INTERVIEWER"]) == eaf[0:3:2]
    # one list serves several corpora: names that match nothing here are fine
    assert select_speakers(daic + chat, ["Participant", "PAT"]) == [
        s for s in daic + chat if "Participant" in s["speaker"]
    ]
    assert select_speakers(chat, ["PAR"])[0] is by_role[0]  # the same dicts
    assert select_speakers([], ["PAR"]) == []


def test_select_speakers_lists_the_speakers_present_when_none_match():
    daic = load_transcript(FIXTURES / "daic_woz_TRANSCRIPT.csv")
    with pytest.raises(SpeakerSelectionError) as info:
        select_speakers(daic, ["PAR", "Patient"])
    assert str(info.value) == (
        "no segment is spoken by 'PAR', 'Patient'; the speakers present are 'Ellie' (6 segments), "
        "'Participant' (4 segments)."
    )
    assert info.value.present == {"Ellie": 6, "Participant": 4} and info.value.requested == ["PAR", "Patient"]
    with pytest.raises(SpeakerSelectionError, match=r"none \(no segment names its speaker\)"):
        select_speakers(load_transcript(FIXTURES / "e_daic_Transcript.csv"), ["Participant"])
    with pytest.raises(SpeakerSelectionError, match=r"'A' \(1 segment\), and 2 segment\(s\) name no speaker"):
        select_speakers([seg(0, 1, "a", "A"), seg(1, 2, "b"), seg(2, 3, "c")], ["B"])
    with pytest.raises(ValueError, match="speakers is empty"):
        select_speakers(daic, [" "])
    with pytest.raises(TypeError):
        select_speakers(daic, [1])


_NAME = st.text(alphabet="abcdefgXYZ _.-", min_size=1, max_size=6).filter(lambda s: s.strip())


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(_NAME, st.none() | _NAME), min_size=1, max_size=8), st.data())
def test_select_speakers_matches_an_independent_reading(pool, data):
    """Speaker "Name (ID)" answers to Name, ID and the whole; "Name" to itself (all trimmed, case-folded)."""

    def spelled(name, ident):
        return name.strip() if ident is None else f"{name.strip()} ({ident.strip()})"

    speakers = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=10))
    segments = [seg(i, i + 1, "x", spelled(*who)) for i, who in enumerate(speakers)]
    name, ident = data.draw(st.sampled_from(pool))
    request = data.draw(st.sampled_from([name, spelled(name, ident)] + ([ident] if ident else [])))
    r = request.strip().casefold()

    def answers(who):
        n, i = who
        return r in {n.strip().casefold(), spelled(n, i).casefold()} | ({i.strip().casefold()} if i else set())

    expected = [s for s, who in zip(segments, speakers) if answers(who)]
    if expected:
        assert select_speakers(segments, [request]) == expected
    else:
        with pytest.raises(SpeakerSelectionError):
            select_speakers(segments, [request])
    assert speaker_names(None) == set()


# ================================================================================ round trips


def write_daic(segments):
    return "start_time\tstop_time\tspeaker\tvalue\n" + "".join(
        f"{s['start']:.3f}\t{s['end']:.3f}\t{s['speaker'] or ''}\t{s['text']}\n" for s in segments
    )


def write_csv(segments):
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["start", "end", "text", "speaker"])
    writer.writerows([repr(s["start"]), repr(s["end"]), s["text"], s["speaker"] or ""] for s in segments)
    return out.getvalue()


def _tiers(segments):
    tiers = {}
    for s in segments:
        tiers.setdefault(s["speaker"] or "", []).append(s)
    return tiers


def write_textgrid(segments, short=False):
    """Praat's own layout: each tier tiles [0, xmax] with intervals, the gaps empty."""
    xmax = max(s["end"] for s in segments) + 1.0
    tiers = []
    for name, items in _tiers(segments).items():
        intervals, t = [], 0.0
        for s in items:
            if s["start"] > t:
                intervals.append((t, s["start"], ""))
            intervals.append((s["start"], s["end"], s["text"].replace('"', '""')))
            t = s["end"]
        intervals.append((t, xmax, ""))
        tiers.append((name, intervals))
    if short:
        out = [
            'File type = "ooTextFile"',
            'Object class = "TextGrid"',
            "",
            "0",
            repr(xmax),
            "<exists>",
            str(len(tiers)),
        ]
        for name, intervals in tiers:
            out += ['"IntervalTier"', f'"{name}"', "0", repr(xmax), str(len(intervals))]
            for a, b, text in intervals:
                out += [repr(a), repr(b), f'"{text}"']
        return "\n".join(out) + "\n"
    out = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        "xmin = 0 ",
        f"xmax = {xmax!r} ",
        "tiers? <exists> ",
        f"size = {len(tiers)} ",
        "item []: ",
    ]
    for n, (name, intervals) in enumerate(tiers, 1):
        out += [
            f"    item [{n}]:",
            '        class = "IntervalTier" ',
            f'        name = "{name}" ',
            "        xmin = 0 ",
            f"        xmax = {xmax!r} ",
            f"        intervals: size = {len(intervals)} ",
        ]
        for k, (a, b, text) in enumerate(intervals, 1):
            out += [
                f"        intervals [{k}]:",
                f"            xmin = {a!r} ",
                f"            xmax = {b!r} ",
                f'            text = "{text}" ',
            ]
    return "\n".join(out) + "\n"


def write_eaf(segments):
    slots, tiers = [], []
    for name, items in _tiers(segments).items():
        annotations = []
        for s in items:
            a, b = len(slots) + 1, len(slots) + 2
            slots += [
                f'<TIME_SLOT TIME_SLOT_ID="ts{a}" TIME_VALUE="{round(s["start"] * 1000)}"/>',
                f'<TIME_SLOT TIME_SLOT_ID="ts{b}" TIME_VALUE="{round(s["end"] * 1000)}"/>',
            ]
            annotations.append(
                f'<ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a{a}" TIME_SLOT_REF1="ts{a}" '
                f'TIME_SLOT_REF2="ts{b}"><ANNOTATION_VALUE>{xml_escape(s["text"])}</ANNOTATION_VALUE>'
                "</ALIGNABLE_ANNOTATION></ANNOTATION>"
            )
        tiers.append(
            f'<TIER LINGUISTIC_TYPE_REF="default-lt" TIER_ID="{name}">\n' + "\n".join(annotations) + "\n</TIER>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<ANNOTATION_DOCUMENT FORMAT="3.0" VERSION="3.0">\n'
        '<HEADER MEDIA_FILE="" TIME_UNITS="milliseconds"/>\n<TIME_ORDER>\n'
        + "\n".join(slots)
        + "\n</TIME_ORDER>\n"
        + "\n".join(tiers)
        + '\n<LINGUISTIC_TYPE LINGUISTIC_TYPE_ID="default-lt" TIME_ALIGNABLE="true"/>\n'
        "</ANNOTATION_DOCUMENT>\n"
    )


ROLES = {"PAR": "Participant", "INV": "Investigator", "CHI": "Target_Child"}
# CHAT markup that carries no words: inserting it anywhere between words leaves the text unchanged
REMOVABLE = [
    "(.)",
    "(..)",
    "(1.5)",
    "&=laughs",
    "[/]",
    "[//]",
    "[* p:w]",
    "[: target word]",
    "xxx",
    "0det",
    "+...",
    "[+ exc]",
    "&*INV:mhm",
    "\u2191",
    "<",
    ">",
]


def write_chat(segments, markup):
    codes = list(dict.fromkeys(s["speaker"] for s in segments))
    out = ["@UTF8", "@Begin", "@Languages:\teng", "@Participants:\t" + ", ".join(f"{c} {ROLES[c]}" for c in codes)]
    out += [f"@ID:\teng|test|{c}|||||{ROLES[c]}|||" for c in codes]
    for i, s in enumerate(segments):
        words = s["text"].split()
        for k, token in sorted(markup.get(i, []), reverse=True):
            words.insert(min(k, len(words)), token)
        tier = f"*{s['speaker']}:\t" + " ".join(words[:4])
        if len(words) > 4:  # wrap as CLAN does: a tab-indented continuation line
            tier += "\n\t" + " ".join(words[4:])
        out += [f"{tier} . \x15{round(s['start'] * 1000)}_{round(s['end'] * 1000)}\x15", "%com:\tnot spoken"]
    return "\n".join(out + ["@End"]) + "\n"


_CHAT_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz'", min_size=1, max_size=8).filter(
    lambda w: w[0].isalpha() and w not in {"xxx", "yyy", "www", "xx", "yy"}
)


@st.composite
def _segments_with(draw, speakers, text=_TEXT):
    n = draw(st.integers(1, 8))
    out, t = [], 0
    for _ in range(n):
        start = t + draw(st.integers(0, 5_000))
        end = start + draw(st.integers(0, 20_000))
        t = end
        out.append(seg(start / 1000, end / 1000, draw(text), draw(speakers)))
    return out


def _ms(segments):
    return [(round(s["start"] * 1000), round(s["end"] * 1000), s["text"], s["speaker"]) for s in segments]


@settings(max_examples=40, deadline=None)
@given(_segments(), st.sampled_from(["daic", "csv"]))
def test_tables_round_trip(segments, kind):
    text = write_daic(segments) if kind == "daic" else write_csv(segments)
    parsed = parse_table_transcript(text)
    assert _ms(parsed) == _ms(segments) and all(abs(a["start"] - b["start"]) < 1e-3 for a, b in zip(parsed, segments))


_TG_TEXT = (
    st.lists(st.text(alphabet='abcdefghij"!<>[]= \u00e9\u4e2d', min_size=1, max_size=8), min_size=1, max_size=5)
    .map(" ".join)
    .map(lambda t: " ".join(t.split()))
    .filter(bool)
)


@settings(max_examples=40, deadline=None)
@given(_segments_with(st.none() | st.sampled_from(["Ellie", "Participant", "tier one"]), _TG_TEXT), st.booleans())
def test_textgrid_round_trip(segments, short):
    parsed = parse_textgrid(write_textgrid(segments, short=short))
    key = lambda r: (r[0], r[1], r[2], r[3] or "")  # noqa: E731  (tiers are merged: order only by time)
    assert sorted(_ms(parsed), key=key) == sorted(_ms(segments), key=key)
    assert [s["start"] for s in parsed] == sorted(s["start"] for s in segments)


@settings(max_examples=40, deadline=None)
@given(_segments_with(st.sampled_from(["Ellie", "Participant", "B"]), _TG_TEXT))
def test_eaf_round_trip(segments):
    parsed = parse_eaf(write_eaf(segments))
    key = lambda r: (r[0], r[1], r[2], r[3])  # noqa: E731
    assert sorted(_ms(parsed), key=key) == sorted(_ms(segments), key=key)
    assert [s["start"] for s in parsed] == sorted(s["start"] for s in segments)


@settings(max_examples=40, deadline=None)
@given(
    _segments_with(st.sampled_from(sorted(ROLES)), st.lists(_CHAT_WORD, min_size=1, max_size=9).map(" ".join)),
    st.data(),
)
def test_chat_round_trip_with_markup_that_carries_no_words(segments, data):
    markup = {
        i: data.draw(st.lists(st.tuples(st.integers(0, 9), st.sampled_from(REMOVABLE)), max_size=3))
        for i in range(len(segments))
    }
    parsed = parse_chat(write_chat(segments, markup))
    expected = [dict(s, speaker=f"{ROLES[s['speaker']]} ({s['speaker']})") for s in segments]
    assert _ms(parsed) == _ms(expected)


@settings(max_examples=40, deadline=None)
@given(_segments(), st.sampled_from([(write_srt, parse_srt), (write_vtt, parse_vtt)]), st.booleans())
def test_subtitles_round_trip_with_crlf(segments, codec, crlf):
    write, parse = codec
    text = write(segments)
    parsed = parse(text.replace("\n", "\r\n") if crlf else text)
    assert _ms(parsed) == _ms(segments)


# ================================================================================ robustness

_NEW_NOISE = st.text(
    alphabet=st.sampled_from(list('0123456789.,_\t\n "@*%:!<>[]()&+=-\x15PARINVBegEndxmiotzTG\u00e9')), max_size=200
)


@settings(max_examples=120, deadline=None)
@given(
    st.one_of(st.text(max_size=200), _NEW_NOISE),
    st.sampled_from([parse_table_transcript, parse_chat, parse_textgrid, parse_eaf]),
)
def test_arbitrary_text_raises_only_transcript_errors_in_the_new_formats(text, parse):
    try:
        segments = parse(text, path="x")
    except TranscriptError as err:
        assert (err.line is None or err.line >= 1) and err.fix
    else:
        validate_segments(segments)


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([".csv", ".tsv", ".txt", ".cha", ".TextGrid", ".eaf"]))
def test_arbitrary_bytes_raise_only_transcript_errors_naming_the_file(tmp_path_factory, data, suffix):
    path = tmp_path_factory.getbasetemp() / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        segments = load_transcript(path)
    except TranscriptError as err:
        assert str(err).startswith(str(path)) and err.fix, str(err)
    else:
        validate_segments(segments, audio_duration=10.0, path=path)


def test_ten_thousand_turns_parse_in_linear_time():
    import time

    segments = [
        seg(0.5 * i, 0.5 * i + 0.4, f"turn {i} with a few words", ["Ellie", "Participant"][i % 2])
        for i in range(10_000)
    ]
    for write, parse in [
        (write_daic, parse_table_transcript),
        (write_textgrid, parse_textgrid),
        (write_eaf, parse_eaf),
    ]:
        text = write(segments)
        start = time.perf_counter()
        assert len(parse(text)) == 10_000
        assert time.perf_counter() - start < 3.0, write.__name__
    chat = write_chat([dict(s, speaker="PAR") for s in segments], {})
    start = time.perf_counter()
    assert len(parse_chat(chat)) == 10_000 and time.perf_counter() - start < 3.0
