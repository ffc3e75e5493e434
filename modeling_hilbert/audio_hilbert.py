"""Audio for HILBERT: decode any audio source users have to one mono float32 waveform, and resample it.

Sources `decode_audio` takes (and so `HilbertProcessor` takes as a document's `"audio"`):

    waveform          1-D `(samples,)` or 2-D `(channels, samples)` float tensor / numpy array / list, with an
                      explicit `sampling_rate` (there is no default rate)
    {"array", "sampling_rate"}   a decoded audio dict (datasets before 4, `Audio(decode=True)` exported as dicts)
    {"bytes", "path"}            `datasets.Audio(decode=False)`: the bytes are decoded when present, else the file
    decoder object    anything with `get_all_samples()`: the torchcodec `AudioDecoder` that `datasets.Audio()`
                      columns return when decoded (datasets 4 and 5), or one built directly
    file              a path (str / PathLike), the file's bytes, or a binary file object

Channels are mixed down to mono by their mean. Integer PCM arrays are refused (scale them to [-1, 1] first),
as are empty waveforms and NaN/inf samples.

Files are read by soundfile (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF, ...) block by block, each block
mixed to mono as it is read: the peak memory is the mono waveform plus one block, not `channels` times the
recording. Formats libsndfile cannot open (M4A/AAC, WebM, ...) are decoded by torchcodec (FFmpeg) when it is
installed, in one go. `resample` works block by block too (see there). Everything is a float32 torch tensor.

Ships to the Hub with the processor: imports only `torch`, the standard library and sibling files; `soundfile`,
`torchaudio` and `torchcodec` are imported lazily, only when a file is read or audio must be resampled.
"""

from __future__ import annotations

import io
import math
import numbers
import os
import re
import warnings
from collections.abc import Mapping
from typing import NamedTuple

import torch

__all__ = [
    "AudioError",
    "AudioFileNotFoundError",
    "AudioScan",
    "decode_audio",
    "load_waveform",
    "read_audio",
    "resample",
    "resampled_length",
    "scan_audio",
]

RESAMPLE_BLOCK = 1 << 20  # input samples per resampling call (~65 s at 16 kHz): bounds its temporary memory
READ_BLOCK = 1 << 20  # frames per soundfile read (channels x 4 MB of float32): bounds the multichannel buffer
CHECK_BLOCK = 1 << 20  # samples per finiteness check: bounds its temporaries
# torchaudio.functional.resample's defaults, which `resample` uses and whose reach it must know.
LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99
CONVERT_ADVICE = "Convert it to WAV or FLAC (e.g. `ffmpeg -i IN OUT.flac`) and check that it is not empty or truncated."


class AudioError(ValueError):
    """Audio that cannot be turned into a waveform; the message names the source and says what to do."""


class AudioFileNotFoundError(AudioError, FileNotFoundError):
    """An audio path that does not exist (catchable as `ValueError` like every audio error, or as
    `FileNotFoundError`)."""


# ------------------------------------------------------------------------------------------------ public API
def decode_audio(source, sampling_rate: int | None = None, *, where: str | None = None) -> tuple[torch.Tensor, int]:
    """Any audio source (see the module docstring) -> `(waveform (samples,) float32 mono contiguous, rate)`.

    No resampling: the rate is the source's own. `sampling_rate` is needed for bare waveforms; for sources that
    carry their rate (files, dicts, decoders) it may be given only if it agrees. `where` prefixes every error
    message (e.g. "document 3"). Raises `AudioError` (a `ValueError`) with a message saying what to do.
    """
    label = where or "audio"  # the subject of messages about in-memory audio; files name themselves
    if sampling_rate is not None:
        _check_rate(sampling_rate, label)
    if isinstance(source, Mapping):
        if "array" in source:  # decoded dict: its own rate wins over none, must agree with a given one
            rate = _agree(source.get("sampling_rate"), sampling_rate, label, "the audio dict's 'sampling_rate'")
            return _as_waveform(source["array"], rate, label)
        data, path = source.get("bytes"), source.get("path")
        if data is None and not path:
            raise AudioError(
                f"{label}: an audio dict needs 'array' (+ 'sampling_rate'), 'bytes' or 'path'; got keys "
                f"{sorted(source)} with neither bytes nor a path."
            )
        name = (
            f"{path} (audio bytes)"
            if data is not None and path
            else (os.fspath(path) if data is None else "audio bytes")
        )
        wave, rate = _read_file(io.BytesIO(data) if data is not None else os.fspath(path), name, where, mono=True)
    elif callable(getattr(source, "get_all_samples", None)):
        wave, rate = _from_decoder(source, where, mono=True)
    elif _is_file_source(source):
        wave, rate = _read_file(*_file_and_name(source), where, mono=True)
    else:
        return _as_waveform(source, sampling_rate, label)
    rate = _agree(rate, sampling_rate, label, "the audio")
    return _as_waveform(wave, rate, label)


def load_waveform(
    source, target_rate: int | None = None, *, sampling_rate: int | None = None, where: str | None = None
) -> tuple[torch.Tensor, int]:
    """`decode_audio`, then `resample` to `target_rate` (None: keep the source's rate).

    Returns `(waveform (samples,) float32 mono at target_rate, the source's original rate)`.
    """
    wave, rate = decode_audio(source, sampling_rate, where=where)
    if target_rate is not None and int(target_rate) != rate:
        wave = resample(wave, rate, int(target_rate))
    return wave, rate


def read_audio(source, *, where: str | None = None) -> tuple[torch.Tensor, int]:
    """A file (path, bytes, binary file object) -> `((channels, samples) float32, rate)`, channels kept.

    For callers that want the channels (`HilbertProcessor.load_document`); `decode_audio` gives mono with less
    memory. Missing, undecodable and empty files raise `AudioError` naming the file.
    """
    if not _is_file_source(source):
        raise AudioError(
            f"{where or 'audio'}: read_audio takes a path, bytes or a binary file, got {type(source).__name__}."
        )
    return _read_file(*_file_and_name(source), where, mono=False)


class AudioScan(NamedTuple):
    """What decoding a whole file found (`scan_audio`): the decoded length, not the header's claim.

    (A NamedTuple, not a dataclass: this file is also loaded on its own, outside any package.)"""

    frames: int  # decoded frames (samples per channel)
    sampling_rate: int
    channels: int
    header_frames: int | None  # what the file's header claims (None: it does not say)
    first_non_finite: int | None  # the first frame holding a NaN/inf sample, None if every sample is finite
    decoder: str  # "soundfile" or "torchcodec": the decoder `decode_audio` uses for this file too

    @property
    def duration(self) -> float:
        """Decoded seconds: frames / sampling_rate."""
        return self.frames / self.sampling_rate


def scan_audio(source, *, where: str | None = None) -> AudioScan:
    """Decode a whole file (path, bytes, binary file object) once, to measure it: its real length and the first
    NaN/inf sample, with the decoder `decode_audio` would use, so the length is the one the processor will see.

    Headers lie: a truncated MP3 keeps the header of the whole file, a truncated WAV claims the missing frames,
    and a truncated FLAC opens fine and fails part way. soundfile's formats (WAV, FLAC, OGG, MP3, ...) are read
    block by block (memory: one block of `READ_BLOCK` frames); the others (M4A/AAC, ...) go through torchcodec, in
    one go, as `decode_audio` does. Raises `AudioError` (`AudioFileNotFoundError` for a missing path) for a file
    that cannot be decoded to its end; an empty one scans to `frames=0` (the caller decides what that means).
    """
    if not _is_file_source(source):
        kind = type(source).__name__
        raise AudioError(f"{where or 'audio'}: scan_audio takes a path, bytes or a binary file, got {kind}.")
    source, name = _file_and_name(source)
    handle, sf_reason = _open_soundfile(source, name, where)
    if handle is None:
        decoder, samples = _decode_with_torchcodec(source, name, where, sf_reason)
        data = torch.as_tensor(samples.data)
        data = data[None] if data.dim() == 1 else data  # (channels, samples)
        header = getattr(getattr(decoder, "metadata", None), "duration_seconds_from_header", None)
        rate = int(samples.sample_rate)
        bad = (~torch.isfinite(data).all(0)).nonzero()
        header_frames = None if header is None else round(header * rate)
        return AudioScan(
            int(data.shape[-1]),
            rate,
            int(data.shape[0]),
            header_frames,
            int(bad[0, 0]) if len(bad) else None,
            "torchcodec",
        )
    with handle:
        known = handle.frames if 0 <= handle.frames < (1 << 40) else None  # a stream may not know its length
        frames, first_bad = 0, None
        buffer = torch.empty(min(READ_BLOCK, known or READ_BLOCK), handle.channels, dtype=torch.float32).numpy()
        while True:
            try:
                read = handle.read(buffer.shape[0], out=buffer)
            except (RuntimeError, ValueError, OSError) as err:
                raise AudioError(
                    f"{_prefix(where, name)}: decoding failed after {frames / handle.samplerate:.2f} s "
                    f"({str(err).strip()}). {CONVERT_ADVICE}"
                ) from None
            if read.shape[0] == 0:
                break
            # A float64 sum of float32 samples cannot overflow, so it is finite exactly when every sample is: ~1 ms
            # per block, where torch.isfinite took ~80 ms here; the index is looked for only in a bad block.
            if first_bad is None:
                with warnings.catch_warnings():  # inf + -inf: numpy's "invalid value" warning, for what is reported
                    warnings.simplefilter("ignore", RuntimeWarning)
                    finite = math.isfinite(float(read.sum(dtype="float64")))
                if not finite:
                    first_bad = frames + int((~torch.isfinite(torch.from_numpy(read)).all(1)).nonzero()[0, 0])
            frames += read.shape[0]
        return AudioScan(frames, int(handle.samplerate), int(handle.channels), known, first_bad, "soundfile")


def resampled_length(num_samples: int, rate: int, target: int) -> int:
    """The number of samples `torchaudio.functional.resample` returns for `num_samples` at `rate` -> `target`.

    Mathematically ceil(n * new / orig) (orig, new = rate, target over their gcd), but torchaudio rounds that
    quotient to float32 before the ceil (`torch.ceil(torch.as_tensor(new * n / orig))`), so when the fraction is
    below float32's resolution it gives one sample fewer (22050 -> 16000 Hz, n = 1620777: 1176074, not 1176075),
    and never more than its convolution computes, (n // orig + 1) * new. Replicated here, same expression, so that
    block-wise resampling returns exactly what one call does.
    """
    if rate == target:
        return num_samples
    gcd = math.gcd(rate, target)
    orig, new = rate // gcd, target // gcd
    return min(int(torch.ceil(torch.as_tensor(new * num_samples / orig))), (num_samples // orig + 1) * new)


def resample(waveform: torch.Tensor, rate: int, target: int, block: int = RESAMPLE_BLOCK) -> torch.Tensor:
    """Resample `(..., samples)` float audio from `rate` to `target` Hz: torchaudio's sinc resampler, block by block.

    The result equals `torchaudio.functional.resample(waveform, rate, target)` (same length, `resampled_length`;
    the same values up to float rounding, ~1e-7; tested) with the temporary memory of one block: torchaudio
    convolves the whole signal at once, which took ~1.2 GB for one hour at 8 kHz -> 16 kHz.

    How it stays exact. With orig, new = rate, target over their gcd, torchaudio zero-pads the signal by `width`
    on the left (and width + orig on the right) and runs a stride-orig convolution: output frame k (outputs
    k * new ... k * new + new - 1) reads inputs [k * orig - width, (k + 1) * orig + width), zeros outside the
    signal, width = ceil(6 orig / (0.99 min(orig, new))). So:
      - blocks start and end on whole frames (multiples of orig input samples), and their own outputs are
        exactly new / orig times their length -- no rounding;
      - each block is resampled with `context` more input samples on both sides (a multiple of orig covering
        `width`), so every kept output reads the same inputs as in the one-call convolution, and the context's
        outputs (a whole number of frames) are cut off;
      - a piece reaching the end of the signal is zero-extended to whole frames, the zeros the one-call padding
        puts there anyway, so the piece's length never goes through torchaudio's rounded length; the total
        length is `resampled_length`.
    """
    if rate == target:
        return waveform
    try:
        from torchaudio.functional import resample as torchaudio_resample
    except ImportError as err:
        raise ImportError(
            f"Audio at {rate} Hz must be resampled to {target} Hz, which needs torchaudio "
            f"(`pip install torchaudio`), or resample it yourself ({err})."
        ) from None
    gcd = math.gcd(rate, target)
    orig, new = rate // gcd, target // gcd  # every `orig` input samples (one frame) give `new` output samples
    width = math.ceil(LOWPASS_FILTER_WIDTH * orig / (min(orig, new) * ROLLOFF))  # torchaudio's expression
    context = orig * (math.ceil(width / orig) + 1)  # whole frames; one spare frame so a rounding of width cannot matter
    # Whole frames per block, and at most 2^23 outputs per piece, so that torchaudio's float32 length of a piece
    # is exact (float32 holds every integer below 2^24).
    frames = max(1, min(block // orig, (1 << 23) // new - 2 * context // orig))
    step = orig * frames
    n = waveform.shape[-1]
    if n <= step + 2 * context:
        return torchaudio_resample(waveform, rate, target).contiguous()
    total = resampled_length(n, rate, target)
    out = waveform.new_empty(waveform.shape[:-1] + (total,))
    for start in range(0, n, step):
        lo, hi = max(0, start - context), min(n, start + step + context)
        piece = waveform[..., lo:hi]
        if (hi - lo) % orig:  # only the piece reaching the end: zeros up to a whole frame
            piece = torch.nn.functional.pad(piece, (0, orig - (hi - lo) % orig))
        resampled = torchaudio_resample(piece, rate, target)  # (hi - lo rounded up to frames) * new / orig outputs
        first, last = start // orig * new, min(total, (start + step) // orig * new)
        skip = (start - lo) // orig * new  # the outputs of the context before the block
        out[..., first:last] = resampled[..., skip : skip + last - first]
    return out


# ------------------------------------------------------------------------------------------------ helpers
def _check_rate(rate, where: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not rate > 0 or int(rate) != rate:
        raise AudioError(f"{where}: sampling_rate={rate!r} must be a positive whole number of Hz.")
    return int(rate)


def _agree(own, given, where: str, what: str) -> int | None:
    """The source's own rate, or the given one if the source has none; both present and different: an error."""
    if own is None:
        return given
    own = _check_rate(own, where)
    if given is not None and int(given) != own:
        raise AudioError(f"{where}: sampling_rate={given} but {what} is at {own} Hz; drop one.")
    return own


def _mix(channels: torch.Tensor) -> torch.Tensor:
    """`(channels, samples)` -> `(samples,)`, the mean of the channels (one channel: a view, no copy)."""
    return channels[0] if channels.shape[0] == 1 else channels.mean(0)


def _as_waveform(audio, rate, where: str) -> tuple[torch.Tensor, int]:
    """An in-memory waveform -> checked `(samples,)` float32 mono contiguous tensor and its rate."""
    if rate is None:
        raise AudioError(f"{where} has no sampling_rate: give the waveform's rate in Hz (e.g. 'sampling_rate': 16000).")
    rate = _check_rate(rate, where)
    try:
        wave = torch.as_tensor(audio)
    except (TypeError, ValueError, RuntimeError) as err:
        raise AudioError(
            f"{where}: audio of type {type(audio).__name__} cannot be read as an array of samples ({err}); give a "
            "waveform, a file path, an audio dict or a decoded datasets Audio value."
        ) from None
    if not wave.is_floating_point():
        raise AudioError(
            f"{where}: audio has dtype {wave.dtype}; give float samples in [-1, 1] (integer PCM: divide by 32768)."
        )
    if wave.dim() not in (1, 2):
        raise AudioError(
            f"{where}: audio must be 1-D (samples,) or 2-D (channels, samples), got shape {tuple(wave.shape)}."
        )
    if wave.numel() == 0:
        raise AudioError(f"{where}: the waveform is empty (0 samples); check the audio file.")
    if wave.dim() == 2:
        if wave.shape[0] > wave.shape[1]:
            raise AudioError(
                f"{where}: audio of shape {tuple(wave.shape)} looks like (samples, channels); give "
                "(channels, samples), e.g. audio.T."
            )
        wave = _mix(wave)
    wave = wave.to(torch.float32).contiguous()
    # Block by block: torch.isfinite allocates a float temporary the size of its input (an hour: ~230 MB).
    starts = range(0, wave.shape[0], CHECK_BLOCK)
    bad = {
        lo: ~torch.isfinite(wave[lo : lo + CHECK_BLOCK])
        for lo in starts
        if not bool(torch.isfinite(wave[lo : lo + CHECK_BLOCK]).all())
    }
    if bad:
        lo, mask = next(iter(bad.items()))
        first = (lo + int(mask.nonzero()[0, 0])) / rate
        raise AudioError(
            f"{where}: the waveform holds {sum(int(m.sum()) for m in bad.values())} NaN/inf samples (the first at "
            f"{first:.3f} s); repair or re-decode the audio (a NaN sample would make every feature of its segment NaN)."
        )
    return wave, rate


def _is_file_source(source) -> bool:
    return isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)) or callable(
        getattr(source, "read", None)
    )


def _file_and_name(source):
    """-> (what soundfile/torchcodec open, the name errors show)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source)), "audio bytes"
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source), os.fspath(source)
    return source, str(getattr(source, "name", "audio file object"))


def _prefix(where: str | None, name: str) -> str:
    return f"{where}: {name}" if where else name


def _open_soundfile(source, name: str, where: str | None):
    """-> (an open `soundfile.SoundFile`, None) or (None, why soundfile cannot read it). A missing path or a folder
    raises `AudioError` at once: no decoder can help."""
    if isinstance(source, str):
        if not os.path.exists(source):
            shown = source if os.path.isabs(source) else f"{source} (from {os.getcwd()})"
            raise AudioFileNotFoundError(f"{_prefix(where, shown)}: no such file; check the audio path.")
        if os.path.isdir(source):
            raise AudioError(f"{_prefix(where, name)}: is a directory, not an audio file.")
    try:
        import soundfile
    except ImportError:
        return None, "soundfile not installed: `pip install soundfile`"
    try:
        return soundfile.SoundFile(source), None
    except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as err:
        return None, (getattr(err, "error_string", None) or str(err)).rstrip(".")


def _decode_with_torchcodec(source, name: str, where: str | None, sf_reason: str):
    """Formats libsndfile cannot open (M4A/AAC, WebM, ...): FFmpeg through torchcodec, if installed, in one go.

    Returns `(torchcodec AudioDecoder, its AudioSamples)`; raises `AudioError` with both decoders' reasons."""
    if hasattr(source, "seek"):
        source.seek(0)
    try:
        from torchcodec.decoders import AudioDecoder
    except (ImportError, OSError, RuntimeError) as err:  # torchcodec raises OSError/RuntimeError without FFmpeg
        codec_reason = f"torchcodec unavailable: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    else:
        try:
            decoder = AudioDecoder(source.read() if hasattr(source, "read") else source)
            return decoder, decoder.get_all_samples()
        except (RuntimeError, ValueError, TypeError, OSError) as err:
            last_line = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            codec_reason = "FFmpeg: " + re.sub(r"^.*?\.cpp:\d+, ", "", last_line)  # drop torchcodec's source location
    raise AudioError(
        f"{_prefix(where, name)}: cannot be decoded as audio (soundfile: {sf_reason}; {codec_reason}). {CONVERT_ADVICE}"
    )


def _read_file(source, name: str, where: str | None, mono: bool) -> tuple[torch.Tensor, int]:
    """A path or binary file object -> `(samples,)` (mono) or `(channels, samples)` float32 and its rate."""
    handle, sf_reason = _open_soundfile(source, name, where)
    if handle is not None:
        with handle:
            wave = _read_blocks(handle, name, where, mono)
            rate = int(handle.samplerate)
        if wave.shape[-1] == 0:
            raise AudioError(
                f"{_prefix(where, name)}: the audio holds no samples (duration 0 s); re-export the recording."
            )
        return wave, rate
    decoder, samples = _decode_with_torchcodec(source, name, where, sf_reason)
    return _from_decoder(decoder, where, mono, name=name, samples=samples)


def _read_blocks(handle, name: str, where: str | None, mono: bool) -> torch.Tensor:
    """Read an open `soundfile.SoundFile` to the end, block by block (mono: each block mixed as it is read)."""
    if not mono:
        try:
            data = handle.read(dtype="float32", always_2d=True)  # (samples, channels)
        except (RuntimeError, ValueError, OSError) as err:
            raise AudioError(f"{_prefix(where, name)}: decoding failed ({err}). {CONVERT_ADVICE}") from None
        return torch.from_numpy(data.T)  # a transposed view: an hour-long file is not held twice
    known = handle.frames if 0 <= handle.frames < (1 << 40) else 0  # a stream may not know its length
    out = torch.empty(known, dtype=torch.float32)
    extra, filled = [], 0
    # (frames, channels), reused for every block
    buffer = torch.empty(min(READ_BLOCK, known or READ_BLOCK), handle.channels, dtype=torch.float32).numpy()
    while True:
        try:
            read = handle.read(buffer.shape[0], out=buffer)  # `buffer`, or a view of its first rows at the end
        except (RuntimeError, ValueError, OSError) as err:
            raise AudioError(
                f"{_prefix(where, name)}: decoding failed after {filled / handle.samplerate:.2f} s "
                f"({err}). {CONVERT_ADVICE}"
            ) from None
        count = read.shape[0]
        if count == 0:
            break
        block = _mix(torch.from_numpy(read).T)
        room = max(0, known - filled)
        out[filled : filled + min(room, count)] = block[:room]
        if count > room:  # the header undercounted the frames
            extra.append(block[room:].clone())
        filled += count
    if extra:
        return torch.cat([out, *extra])
    return out if filled == known else out[:filled].clone()


def _from_decoder(decoder, where: str | None, mono: bool, *, name: str | None = None, samples=None):
    """An object with `get_all_samples()` (torchcodec's `AudioDecoder`, what datasets' `Audio()` columns return)
    -> `(samples,)` (mono) or `(channels, samples)` float32 and its rate. It decodes the whole stream in one go
    (`samples`: what `get_all_samples()` already returned)."""
    if name is None:  # datasets' decoder keeps its source in `_hf_encoded`: a better name for messages, if there
        encoded = getattr(decoder, "_hf_encoded", None)
        name = (encoded.get("path") if isinstance(encoded, Mapping) else None) or f"the {type(decoder).__name__}"
    try:
        samples = decoder.get_all_samples() if samples is None else samples
        data, rate = torch.as_tensor(samples.data), int(samples.sample_rate)
    except (RuntimeError, ValueError, TypeError, OSError, AttributeError) as err:
        raise AudioError(f"{_prefix(where, name)}: decoding failed ({err}). {CONVERT_ADVICE}") from None
    if data.dim() == 1:
        data = data[None]
    if data.shape[-1] == 0:
        raise AudioError(f"{_prefix(where, name)}: the audio holds no samples (duration 0 s); re-export the recording.")
    data = data.to(torch.float32)
    return (_mix(data) if mono else data), rate
