"""Every advertised backbone pairing, built the way a user has it (issue 11), and padding-free audio batching.

Each tiny backbone is saved with `save_pretrained` as its FULL pretrained class (`tiny_models.save_checkpoint`:
WhisperForConditionalGeneration, T5ForConditionalGeneration, T5EncoderModel, HubertModel and Wav2Vec2Model with
feat_extract_norm "group" and "layer", BertModel, RobertaModel) beside its feature extractor or tokenizer, then goes
through our loading code: `from_encoders_pretrained`, the processor on raw audio + segments, `attach_encoders`,
`save_pretrained` and a fresh-process `AutoModel.from_pretrained(..., trust_remote_code=True)`. Segment features are
checked against transformers' own classes loading the same folders, each segment encoded alone.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tiny_models import CHECKPOINTS, N_MELS, WHISPER_FULL, save_checkpoint
from torch import nn

from modeling_hilbert import (
    HilbertConfig,
    HilbertForSequenceClassification,
    HilbertModel,
    HilbertProcessor,
    encoders_hilbert,
)
from modeling_hilbert.encoders_hilbert import load_pretrained_encoder, masked_group_norm

REPO = Path(__file__).resolve().parents[1]
SR = 16000
HEAD = dict(
    hidden_size=16,
    num_attention_heads=2,
    num_cross_attention_layers=1,
    intermediate_size=32,
    pooling_heads=2,
    pooling_hidden_size=8,
    projection_dim=8,
    num_experts=2,
    expert_hidden_size=16,
    num_labels=3,
    dropout=0.0,
)
AUDIO = ["whisper", "hubert_group", "hubert_layer", "wav2vec2_group", "wav2vec2_layer"]
TEXT = ["bert", "roberta", "t5"]
# (audio checkpoint, text checkpoint, audio_mode)
PAIRINGS = [(a, t, "exact") for a in AUDIO for t in TEXT] + [
    ("whisper", "bert", "fast"),
    ("whisper", "t5_encoder", "exact"),
    ("hubert_group", "t5_encoder", "exact"),
]
REL_TOL = 1e-5  # float32 rounding of differently shaped batches (measured ~2e-7)


def pairing_id(pairing) -> str:
    audio, text, mode = pairing
    return f"{audio}-{text}" + ("-fast" if mode == "fast" else "")


@contextlib.contextmanager
def threads_of_the_child():
    """Run this process's reference forward with the child's one thread (child_env: OMP_NUM_THREADS=1), so that a
    comparison with a child process checks the code, not the thread count: a float32 forward with 2 threads and one
    with 1 sum in other orders (the wav2vec2 + BERT logits of ~0.05 once differed by 3.7e-6, flaking CI)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def assert_rel_close(got: torch.Tensor, expected: torch.Tensor, tol: float = REL_TOL, what: str = "") -> None:
    error = float((got - expected).abs().max() / expected.abs().max().clamp(min=1e-12))
    assert error <= tol, f"{what}: relative error {error:.2e} > {tol:.0e}"


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("backbones")
    return {name: str(save_checkpoint(name, root / name)) for name in CHECKPOINTS}


@pytest.fixture(scope="session")
def build_pairing(checkpoints):
    """(model, processor) of a pairing, built once per session through from_encoders_pretrained."""
    cache = {}

    def build(audio: str, text: str, mode: str = "exact"):
        if (audio, text, mode) not in cache:
            torch.manual_seed(0)
            model = HilbertForSequenceClassification.from_encoders_pretrained(
                checkpoints[audio], checkpoints[text], audio_mode=mode, encoder_batch_size=2, **HEAD
            ).eval()
            processor = HilbertProcessor.from_encoders_pretrained(
                checkpoints[audio], checkpoints[text], audio_mode=mode, max_text_tokens=32
            )
            cache[audio, text, mode] = model, processor
        return cache[audio, text, mode]

    return build


def reference_encoder(name: str, folder: str) -> nn.Module:
    """The encoder of the saved checkpoint as transformers' own class gives it (independent of our loading code)."""
    from transformers import (
        BertModel,
        HubertForCTC,
        HubertModel,
        RobertaModel,
        T5EncoderModel,
        T5ForConditionalGeneration,
        Wav2Vec2ForCTC,
        Wav2Vec2Model,
        WhisperForConditionalGeneration,
    )

    loaders = {
        "whisper": lambda: WhisperForConditionalGeneration.from_pretrained(folder).model.encoder,
        "hubert_group": lambda: HubertModel.from_pretrained(folder),
        "hubert_layer": lambda: HubertModel.from_pretrained(folder),
        "wav2vec2_group": lambda: Wav2Vec2Model.from_pretrained(folder),
        "wav2vec2_layer": lambda: Wav2Vec2Model.from_pretrained(folder),
        "wav2vec2_ctc": lambda: Wav2Vec2ForCTC.from_pretrained(folder).wav2vec2,
        "hubert_ctc": lambda: HubertForCTC.from_pretrained(folder).hubert,
        "bert": lambda: BertModel.from_pretrained(folder),
        "roberta": lambda: RobertaModel.from_pretrained(folder),
        "t5": lambda: T5ForConditionalGeneration.from_pretrained(folder).encoder,
        "t5_encoder": lambda: T5EncoderModel.from_pretrained(folder).encoder,
    }
    return loaders[name]().eval()


def noise(seconds: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(int(round(seconds * SR)), generator=g) * 0.1


def documents() -> list[dict]:
    """Two recordings with segments of different lengths (at most 1 s: the tiny Whisper's window), one without text."""

    def seg(start, end, text):
        return {"start": start, "end": end, "text": text, "speaker": None}

    return [
        {
            "audio": noise(2.0, 1),
            "sampling_rate": SR,
            "segments": [
                seg(0.0, 0.6, "hello there"),
                seg(0.7, 1.6, "a much longer sentence with many words"),
                seg(1.7, 1.95, "thanks"),
            ],
        },
        {
            "audio": noise(1.3, 2),
            "sampling_rate": SR,
            "segments": [seg(0.1, 1.05, "one two three four"), seg(1.1, 1.25, "")],
        },
    ]


# ------------------------------------------------------------------------------------------ loading classes
ENCODER_CLASS = {
    "whisper": "WhisperEncoder",
    "hubert_group": "HubertModel",
    "hubert_layer": "HubertModel",
    "wav2vec2_group": "Wav2Vec2Model",
    "wav2vec2_layer": "Wav2Vec2Model",
    "wav2vec2_ctc": "Wav2Vec2Model",
    "hubert_ctc": "HubertModel",
    "bert": "BertModel",
    "roberta": "RobertaModel",
    "t5": "T5EncoderModel",
    "t5_encoder": "T5EncoderModel",
}


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_each_full_class_loads_as_the_encoder_with_the_saved_weights(name, checkpoints):
    encoder = load_pretrained_encoder(checkpoints[name])
    assert type(encoder).__name__ == ENCODER_CLASS[name]
    reference = reference_encoder(name, checkpoints[name])
    ours = encoder.encoder if name.startswith("t5") else encoder  # T5EncoderModel holds the T5 stack as .encoder
    theirs = reference.state_dict()
    # the same tensors, but BERT/RoBERTa's [CLS] pooler, which HILBERT never uses (encoders_hilbert._without_pooler)
    assert set(ours.state_dict()) == {key for key in theirs if not key.startswith("pooler.")}
    for key, tensor in ours.state_dict().items():
        assert torch.equal(tensor, theirs[key]), key
    if name.startswith("t5"):
        # Regression: the encoder stack was given the full T5 config (use_cache=True) and refused to run.
        assert encoder.config.use_cache is False and encoder.config.is_encoder_decoder is False
        ids = torch.tensor([[5, 6, 7, 1]])
        torch.testing.assert_close(encoder(input_ids=ids).last_hidden_state, reference(input_ids=ids).last_hidden_state)


def test_whisper_encoder_keeps_the_full_whisper_config(checkpoints):
    encoder = load_pretrained_encoder(checkpoints["whisper"])
    assert encoder.config.model_type == "whisper" and encoder.config.max_source_positions == WHISPER_FULL // 2
    assert not any("decoder" in k for k in encoder.state_dict())


# ------------------------------------------------------------------------------------------- the matrix
@pytest.mark.parametrize("pairing", PAIRINGS, ids=pairing_id)
def test_pairing_as_a_user_builds_it(pairing, build_pairing, checkpoints, tmp_path):
    audio, text, mode = pairing
    model, processor = build_pairing(audio, text, mode)
    inputs = processor(documents())
    hilbert = model.hilbert
    with torch.no_grad():
        out = model(**inputs)
        audio_feats, audio_mask = hilbert.get_audio_segment_features(
            inputs.get("input_features"),
            inputs.get("input_values"),
            inputs["audio_attention_mask"],
            inputs["audio_segment_mask"],
        )
        text_feats, text_mask = hilbert.get_text_segment_features(
            inputs["input_ids"], inputs["attention_mask"], inputs["text_segment_mask"]
        )
    assert torch.isfinite(out.task_logits["label"]).all() and out.task_logits["label"].shape == (2, 3)
    assert audio_mask.sum() == 5 and text_mask.sum() == 4  # one segment has no text

    # 1. segment features = the saved class's own encoder on each segment alone (masked mean of its output)
    with torch.no_grad():
        ref_audio = reference_encoder(audio, checkpoints[audio])
        for b, s in audio_mask.nonzero().tolist():
            real = int(inputs["audio_attention_mask"][b, s].sum())
            if audio == "whisper":
                if mode == "fast":  # the reduced context has no transformers counterpart (see test_batching below)
                    continue
                hidden = ref_audio(input_features=inputs["input_features"][b, s][None]).last_hidden_state[0]
                expected = hidden[: math.ceil(real / 2)].mean(0)  # output frames covering real mel frames
            else:
                expected = (
                    ref_audio(input_values=inputs["input_values"][b, s, :real][None]).last_hidden_state[0].mean(0)
                )
            assert_rel_close(audio_feats[b, s], expected, what=f"audio {b},{s}")
        ref_text = reference_encoder(text, checkpoints[text])
        for b, s in text_mask.nonzero().tolist():
            real = int(inputs["attention_mask"][b, s].sum())
            assert inputs["attention_mask"][b, s, :real].all()  # right padding
            expected = ref_text(input_ids=inputs["input_ids"][b, s, :real][None]).last_hidden_state[0].mean(0)
            assert_rel_close(text_feats[b, s], expected, what=f"text {b},{s}")

    # 2. the precomputed-features path gives the same logits
    with torch.no_grad():
        cached = model(
            audio_segment_embeds=audio_feats,
            audio_segment_mask=audio_mask,
            text_segment_embeds=text_feats,
            text_segment_mask=text_mask,
            segment_times=inputs["segment_times"],
        )
    torch.testing.assert_close(cached.task_logits["label"], out.task_logits["label"], rtol=0, atol=0)

    # 3. a head trained on features (configs from AutoConfig, as train.py has them) + attach_encoders
    from transformers import AutoConfig

    head = HilbertForSequenceClassification(
        HilbertConfig(
            audio_config=AutoConfig.from_pretrained(checkpoints[audio]),
            text_config=AutoConfig.from_pretrained(checkpoints[text]),
            with_encoders=False,
            audio_mode=mode,
            encoder_batch_size=3,
            **HEAD,
        )
    ).eval()
    head.load_state_dict({k: v for k, v in model.state_dict().items() if "_encoder." not in k})
    full = head.attach_encoders(
        load_pretrained_encoder(checkpoints[audio]), load_pretrained_encoder(checkpoints[text])
    ).eval()
    with torch.no_grad():
        attached = full(**inputs)
    torch.testing.assert_close(attached.task_logits["label"], out.task_logits["label"], rtol=0, atol=1e-6)

    # 4. save_pretrained + from_pretrained (the fresh process: test_fresh_process_reload_of_every_pairing)
    model.save_pretrained(tmp_path / "model")
    reloaded = HilbertForSequenceClassification.from_pretrained(tmp_path / "model").eval()
    assert type(reloaded.hilbert.text_encoder).__name__ == ENCODER_CLASS[text]
    with torch.no_grad():
        again = reloaded(**inputs)
    torch.testing.assert_close(again.task_logits["label"], out.task_logits["label"], rtol=0, atol=0)
    torch.testing.assert_close(again.joint_embeds, out.joint_embeds, rtol=0, atol=0)


# Network attempts are recorded and refused: loading local folders must never reach a hub, offline mode or not.
NO_NETWORK = textwrap.dedent(
    """
    import socket
    ATTEMPTS = []
    def _refuse(self, address, *args, **kwargs):
        ATTEMPTS.append(repr(address))
        raise OSError("network blocked by the test")
    socket.socket.connect = _refuse
    socket.socket.connect_ex = _refuse
    """
)
BLOCK_PACKAGE = textwrap.dedent(
    """
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("modeling_hilbert", "hilbert_app"):
                raise ImportError(f"{name} must not be importable in this test")
            return None
    sys.meta_path.insert(0, _Block())
    sys.path = [p for p in sys.path if p not in ("", ".", %r)]
    """
    % str(REPO)
)
RELOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoProcessor
    root = sys.argv[1]
    docs = torch.load(f"{root}/docs.pt", weights_only=True)
    results = {}
    for name in json.load(open(f"{root}/pairings.json")):
        folder = f"{root}/{name}"
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        inputs = processor(docs)
        classifier = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
        base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        with torch.no_grad():
            results[name] = {"logits": classifier(**inputs).task_logits["label"], "joint": base(**inputs).joint_embeds,
                             "module": type(base).__module__, "base": type(base).__name__,
                             "text_encoder": type(base.text_encoder).__name__}
    assert "modeling_hilbert" not in sys.modules
    torch.save({"results": results, "attempts": ATTEMPTS}, f"{root}/out.pt")
    """
)


def child_env(tmp_path: Path) -> dict:
    """A user's environment: no PYTHONPATH, an empty HF cache and NOT offline (the socket guard catches any
    download)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "fresh_hf_home"), HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1")
    return env


def test_fresh_process_reload_of_every_pairing(build_pairing, tmp_path):
    """Every pairing saved with its processor reloads in a process without this package (remote code only), on the
    raw documents, with the same logits and joint embeddings, and without any network access."""
    docs = documents()
    torch.save(docs, tmp_path / "docs.pt")
    expected = {}
    for pairing in PAIRINGS:
        model, processor = build_pairing(*pairing)
        name = pairing_id(pairing)
        model.save_pretrained(tmp_path / name)
        processor.save_pretrained(tmp_path / name)
        with torch.no_grad(), threads_of_the_child():
            out = model(**processor(docs))
        expected[name] = (out.task_logits["label"], out.joint_embeds)
    (tmp_path / "pairings.json").write_text(json.dumps(list(expected)))
    child = subprocess.run(
        [sys.executable, "-c", NO_NETWORK + BLOCK_PACKAGE + RELOAD_SCRIPT, str(tmp_path)],
        cwd=tmp_path,
        env=child_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-4000:]
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    assert got["attempts"] == []
    for name, (logits, joint) in expected.items():
        result = got["results"][name]
        assert result["module"].startswith("transformers_modules.") and result["base"] == "HilbertModel", name
        assert result["text_encoder"] == ENCODER_CLASS[name.split("-")[1]], name
        torch.testing.assert_close(result["logits"], logits, rtol=0, atol=1e-6, msg=name)
        torch.testing.assert_close(result["joint"], joint, rtol=0, atol=1e-6, msg=name)


# ------------------------------------------------------------------------ batching never changes a segment
FAMILIES = [
    ("whisper", "exact"),
    ("whisper", "fast"),
    ("hubert_group", "exact"),
    ("hubert_layer", "exact"),
    ("wav2vec2_group", "exact"),
    ("wav2vec2_layer", "exact"),
]


def audio_batch(audio: str, lengths: list[int], documents: int, seed: int):
    """`lengths` segments spread over `documents` documents (B, S, ...) with garbage past each segment's end (exact
    Whisper: the rest of the window is part of the input), plus each segment's own input alone `(1, 1, ...)`."""
    g = torch.Generator().manual_seed(seed)
    slots = math.ceil(len(lengths) / documents)
    whisper = audio == "whisper"
    width = WHISPER_FULL if whisper else max(lengths)
    shape = (documents, slots, N_MELS, width) if whisper else (documents, slots, width)
    values = torch.randn(*shape, generator=g) * (1.0 if whisper else 0.3)
    mask = torch.zeros(documents, slots, width, dtype=torch.long)
    places = []
    for i, length in enumerate(lengths):
        b, s = i % documents, i // documents
        mask[b, s, :length] = 1
        places.append((b, s, length))
    return values, mask, places


@pytest.mark.parametrize("audio,mode", FAMILIES, ids=[f"{a}-{m}" for a, m in FAMILIES])
@settings(max_examples=25, deadline=None)
@given(data=st.data(), batch_size=st.integers(1, 6), documents=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_batching_never_changes_a_segments_features(audio, mode, build_pairing, data, batch_size, documents, seed):
    """Regression (group-norm wav2vec2/HuBERT): a segment's features changed with its batch mates and the batch size
    (relative change up to 0.23 for HuBERT-base between 1 and 4 segments per call): the first GroupNorm averaged
    over the padding. Now every family gives each segment its features encoded alone, whatever it is batched with."""
    whisper = audio == "whisper"
    bounds = (1, WHISPER_FULL) if whisper else (50, 1600)  # mel frames / samples (the tiny conv stack needs 45)
    lengths = data.draw(st.lists(st.integers(*bounds), min_size=1, max_size=6), label="lengths")
    model = build_pairing(audio, "bert", mode)[0].hilbert
    values, mask, places = audio_batch(audio, lengths, documents, seed)
    model.config.encoder_batch_size = batch_size
    try:
        key = "input_features" if whisper else "input_values"
        batched, segment_mask = model.get_audio_segment_features(**{key: values}, audio_attention_mask=mask)
        for b, s, length in places:
            cut = WHISPER_FULL if (whisper and mode == "exact") else length  # exact Whisper: the whole window
            alone, _ = model.get_audio_segment_features(
                **{key: values[b : b + 1, s : s + 1, ..., :cut]}, audio_attention_mask=mask[b : b + 1, s : s + 1, :cut]
            )
            assert_rel_close(batched[b, s], alone[0, 0], what=f"segment of length {length}")
    finally:
        model.config.encoder_batch_size = 2
    assert int(segment_mask.sum()) == len(lengths)


def test_group_norm_encoders_without_the_wav2vec2_layout_run_equal_lengths_together(build_pairing, monkeypatch):
    """The fallback for a group-norm encoder whose GroupNorm is not where wav2vec2 keeps it: each set of equal-length
    segments is encoded on its own, unpadded; features equal those of each segment alone."""
    model = build_pairing("hubert_group", "bert")[0].hilbert
    lengths = [900, 300, 900, 1500, 77]
    values, mask, places = audio_batch("hubert_group", lengths, 1, seed=3)
    calls = []
    encoder_forward = type(model.audio_encoder).forward

    def counting_forward(self, input_values=None, attention_mask=None, **kwargs):
        calls.append((tuple(input_values.shape), attention_mask is None))
        return encoder_forward(self, input_values=input_values, attention_mask=attention_mask, **kwargs)

    monkeypatch.setattr(type(model.audio_encoder), "forward", counting_forward)
    monkeypatch.setattr(encoders_hilbert, "_time_group_norm", lambda encoder: None)
    model.config.encoder_batch_size = 5
    try:
        batched, _ = model.get_audio_segment_features(input_values=values, audio_attention_mask=mask)
        assert sorted(calls) == sorted([((2, 900), True), ((1, 300), True), ((1, 1500), True), ((1, 77), True)])
        for b, s, length in places:
            alone, _ = model.get_audio_segment_features(input_values=values[:1, s : s + 1, :length])
            assert_rel_close(batched[b, s], alone[0, 0], what=f"length {length}")
    finally:
        model.config.encoder_batch_size = 2


@settings(max_examples=30, deadline=None)
@given(
    groups=st.sampled_from([1, 2, 4]),
    lengths=st.lists(st.integers(0, 12), min_size=1, max_size=4),
    seed=st.integers(0, 999),
)
@example(groups=4, lengths=[1], seed=0)  # one value per group: torch's kernel refuses it (found by CI)
@example(groups=4, lengths=[1, 0, 12, 2], seed=1)
@example(groups=2, lengths=[1], seed=0)  # two channels per group: a normal group of 2 values
def test_masked_group_norm_equals_group_norm_of_each_row_alone(groups, lengths, seed):
    g = torch.Generator().manual_seed(seed)
    norm = nn.GroupNorm(groups, 4, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(4, generator=g))
        norm.bias.copy_(torch.randn(4, generator=g))
    hidden = torch.randn(len(lengths), 4, 12, generator=g) * 3 + 1
    out = masked_group_norm(norm, hidden, torch.tensor(lengths))
    assert torch.isfinite(out).all()  # also rows without any real frame
    for n, length in enumerate(lengths):
        if length * (4 // groups) == 1:  # one value per group (torch's GroupNorm refuses it): normalised to 0
            expected = norm.bias.detach()[:, None].expand(4, 1)
            torch.testing.assert_close(out[n, :, :1], expected, rtol=1e-5, atol=1e-5)
        elif length:
            torch.testing.assert_close(out[n, :, :length], norm(hidden[n : n + 1, :, :length])[0], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------- extract_features.py
def write_corpus(root: Path) -> Path:
    """Four recordings (two per label, one group each) with turns of 0.2-1.0 s, in the layout build_dataset reads."""
    import soundfile

    (root / "audio").mkdir(parents=True)
    lines = ["file_name,transcript,label,group"]
    turns = {
        "r0": [(0.0, 0.9, "hello there"), (1.0, 1.3, "a much longer sentence"), (1.4, 2.3, "thanks and bye")],
        "r1": [(0.1, 0.35, "one two"), (0.5, 1.5, "three four five six seven")],
        "r2": [(0.0, 0.6, "left right"), (0.7, 1.6, "calm steady"), (1.7, 1.95, "urgent"), (2.0, 2.8, "loud")],
        "r3": [(0.2, 1.1, "only one segment here")],
    }
    for k, (name, segments) in enumerate(turns.items()):
        soundfile.write(root / "audio" / f"{name}.wav", noise(3.0, 10 + k).numpy(), SR)
        (root / f"{name}.json").write_text(
            json.dumps([{"start": a, "end": b, "text": t, "speaker": "p"} for a, b, t in segments])
        )
        lines.append(f"audio/{name}.wav,{name}.json,{'ab'[k % 2]},g{k}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def test_extract_features_script_gives_the_models_features(checkpoints, tmp_path):
    """dataset_scripts/extract_features.py as a user runs it, on a T5 checkpoint and a group-norm HuBERT: the stored
    features are the model's own get_*_segment_features on the same documents, each document encoded alone (the
    script batches documents and segments together: padding used to leak into the HuBERT features)."""
    import io

    import datasets
    import soundfile

    from hilbert_app.corpus.build import build_dataset
    from hilbert_app.features.store import load_features

    build_dataset(write_corpus(tmp_path / "corpus"), tmp_path / "dataset", folds=2, progress=False)
    audio, text = checkpoints["hubert_group"], checkpoints["t5"]
    command = [
        sys.executable,
        str(REPO / "dataset_scripts" / "extract_features.py"),
        "--dataset",
        str(tmp_path / "dataset"),
        "--output-dir",
        str(tmp_path / "features"),
        "--audio-encoder",
        audio,
        "--text-encoder",
        text,
        "--encoder-batch-size",
        "4",
        "--batch-documents",
        "3",
        "--no-progress",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    child = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert child.returncode == 0, child.stderr[-4000:]
    features, metadata = load_features(str(tmp_path / "features"))
    assert (
        metadata["encoders"]["text"]["model_type"] == "t5" and metadata["encoders"]["audio"]["model_type"] == "hubert"
    )

    model = HilbertModel.from_encoders_pretrained(audio, text, encoder_batch_size=1).eval()
    processor = HilbertProcessor.from_encoders_pretrained(audio, text)
    source = {row["id"]: row for row in datasets.load_from_disk(str(tmp_path / "dataset"))["train"]}
    for row in features["train"]:
        samples, rate = soundfile.read(io.BytesIO(source[row["id"]]["audio"]["bytes"]), dtype="float32")
        inputs = processor({"audio": samples, "sampling_rate": rate, "segments": source[row["id"]]["segments"]})
        with torch.no_grad():
            audio_feats, audio_mask = model.get_audio_segment_features(
                None, inputs["input_values"], inputs["audio_attention_mask"], inputs["audio_segment_mask"]
            )
            text_feats, _ = model.get_text_segment_features(
                inputs["input_ids"], inputs["attention_mask"], inputs["text_segment_mask"]
            )
        assert list(row["audio_segment_mask"]) == audio_mask[0].tolist()
        # float16 storage: relative rounding 2^-11
        torch.testing.assert_close(
            torch.as_tensor(np.asarray(row["audio_features"])).float(), audio_feats[0], rtol=2**-10, atol=1e-4
        )
        torch.testing.assert_close(
            torch.as_tensor(np.asarray(row["text_features"])).float(), text_feats[0], rtol=2**-10, atol=1e-4
        )


def test_a_checkpoint_without_a_pooler_has_one_fingerprint(tmp_path):
    """roberta-base is saved as RobertaForMaskedLM (no pooler): a kept pooler was initialised at random at every
    load, so the weights' sha256 (the features' fingerprint) differed between two loads of the same checkpoint."""
    from transformers import RobertaConfig, RobertaForMaskedLM

    from modeling_hilbert.encoders_hilbert import build_encoder, load_pretrained_encoder
    from modeling_hilbert.modeling_hilbert import weights_sha256

    config = RobertaConfig(
        vocab_size=120,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    RobertaForMaskedLM(config).save_pretrained(tmp_path / "mlm")
    first, second = (load_pretrained_encoder(str(tmp_path / "mlm")) for _ in range(2))
    assert weights_sha256(first) == weights_sha256(second)
    assert not any("pooler" in name for name in first.state_dict())
    assert set(build_encoder(first.config).state_dict()) == set(first.state_dict())  # what a saved model rebuilds


def test_the_default_text_length_fits_a_tokenizer_with_fewer_positions(checkpoints, tmp_path):
    """Regression: the default max_text_tokens=256 refused every text encoder whose tokenizer allows fewer tokens
    (the tiny BERT/RoBERTa: 60; real ones with 128 positions), and train.py --end-to-end / extract_features.py offer
    no option to lower it: the default is now capped at the tokenizer's model_max_length."""
    from transformers import AutoTokenizer

    for text, expected in (("bert", 60), ("roberta", 60), ("t5", 256)):
        assert AutoTokenizer.from_pretrained(checkpoints[text]).model_max_length == {"t5": 512}.get(text, 60)
        processor = HilbertProcessor.from_encoders_pretrained(checkpoints["whisper"], checkpoints[text])
        assert processor.max_text_tokens == expected, text
        processor.save_pretrained(tmp_path / text)
        assert HilbertProcessor.from_pretrained(tmp_path / text).max_text_tokens == expected  # saved resolved
        # a long text is cut at exactly that many tokens, special tokens included
        inputs = processor(
            {
                "audio": noise(1.0, 0),
                "sampling_rate": SR,
                "segments": [{"start": 0.0, "end": 0.9, "text": " ".join(["hello there"] * 200)}],
            }
        )
        assert inputs["attention_mask"].shape[-1] == expected and inputs["attention_mask"].all()
    with pytest.raises(ValueError, match="exceeds the tokenizer's model_max_length"):  # an explicit value still checked
        HilbertProcessor.from_encoders_pretrained(checkpoints["whisper"], checkpoints["bert"], max_text_tokens=61)


# ------------------------------------------------------ train.py --end-to-end, then the pipeline, every pairing
# What a user does with each pairing: a raw corpus recorded at 22.05 kHz (odd lengths) -> build_dataset ->
# `train.py --end-to-end` with the two saved checkpoints (2 folds, 2 epochs, a tiny head, the final model saved) ->
# `pipeline("hilbert-document-classification", model=OUTPUT_DIR, trust_remote_code=True)` on a WAV file at 22.05 kHz
# and an SRT transcript, in a process without this package. All pairings train in ONE child process that calls
# train.py's `main` once per pairing (train.py itself is `sys.exit(main())`): 15 interpreters importing transformers
# and accelerate would cost ~8 s each on 2 cores, the training itself ~5 s.
TRAINED = [(a, t) for a in AUDIO for t in TEXT]
RAW_RATE = 22050
TRAIN_ARGS = [  # current option names (train.py); the tiny head of HEAD, 2 folds, 2 epochs, 1 seed
    "--num-threads", "1", "--folds", "2", "--seeds", "0", "--num-train-epochs", "2",
    "--per-device-train-batch-size", "4", "--learning-rate", "3e-3", "--report-to", "none",
    "--hidden-size", "16", "--num-attention-heads", "2", "--num-cross-attention-layers", "1",
    "--intermediate-size", "32", "--pooling-heads", "2", "--pooling-hidden-size", "8", "--projection-dim", "8",
    "--num-experts", "2", "--expert-hidden-size", "16",
    "--initializer-range", "0.3",  # a head far from uniform outputs: the pipeline's scores and weights then tell apart
]  # fmt: skip
TRAIN_DRIVER = textwrap.dedent(
    """
    import contextlib, io, json, sys, traceback
    from hilbert_app.cli.train import main
    root = sys.argv[1]
    results = {}
    for name, argv in json.load(open(f"{root}/runs.json")).items():
        log = io.StringIO()
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            try:
                rc = main(argv)
            except SystemExit as exit:  # argparse refusing the options
                rc = exit.code
            except Exception:  # a bug: keep its traceback, and train the other pairings
                traceback.print_exc()
                rc = -1
        results[name] = {"rc": rc, "log": log.getvalue()[-6000:]}
    json.dump({"results": results, "attempts": ATTEMPTS}, open(f"{root}/trained.json", "w"))
    """
)
PIPELINE_SCRIPT = textwrap.dedent(
    """
    import json, sys, traceback
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoProcessor, pipeline
    root, wav, srt = sys.argv[1:4]
    results = {}
    for name, folder in json.load(open(f"{root}/folders.json")).items():
        try:
            pipe = pipeline("hilbert-document-classification", model=folder, trust_remote_code=True, device=-1)
            classifier = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
            base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
            processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
            document = {"audio": wav, "transcript": srt}
            inputs, reports = processor([processor.load_document(wav, srt)], return_report=True)
            with torch.no_grad():
                out = classifier(**inputs)
                base_joint = base(**inputs).joint_embeds
            results[name] = {
                "streamed": pipe(document, top_k_segments=10),
                "at_once": pipe(document, top_k_segments=10, streaming=False),
                "logits": out.task_logits["label"], "weights": out.joint_pooling_weights, "joint": out.joint_embeds,
                "base_joint": base_joint, "sources": reports[0]["segment_sources"], "inputs": dict(inputs),
                "modules": [type(x).__module__ for x in (pipe, classifier, base, processor)],
            }
        except Exception:
            results[name] = {"error": traceback.format_exc()[-6000:]}
    assert "modeling_hilbert" not in sys.modules
    torch.save({"results": results, "attempts": ATTEMPTS}, f"{root}/piped.pt")
    """
)
# The pipeline's recording: 49.9 s at 22.05 kHz of an odd length (1_100_001 samples: not a whole number of
# resampling frames, and longer than one resampling block, RESAMPLE_BLOCK = 2^20 input samples = 47.55 s), 16-bit
# PCM as recorders write it. Cue 2 is longer than the tiny Whisper's 1-s window (Whisper: two pieces), cue 3 spans
# the resampling block boundary, cue 4 runs past the end of the audio (clipped).
RECORDING_SAMPLES = 1_100_001
SRT = """1
00:00:00,100 --> 00:00:00,800
hello there

2
00:00:20,000 --> 00:00:21,200
a much longer sentence with many words

3
00:00:47,200 --> 00:00:48,100
thanks and bye

4
00:00:49,700 --> 00:00:50,300
only one segment here
"""
CUES = [(0.1, 0.8), (20.0, 21.2), (47.2, 48.1), (49.7, 50.3)]
# Scores and weights of float32 models run with other encoder batches or thread counts (the pipeline streams 4
# segments a call, the child and this process use different thread counts): logits of ~5 differed by ~2e-6.
PIPELINE_TOL = 1e-5


def raw_corpus(root: Path, documents: int = 8) -> Path:
    """Recordings at 22.05 kHz of odd lengths whose loudness and words depend on the label, two documents per
    group (4 groups: 2 grouped folds of 4), three turns of 0.7 s each; built with build_dataset. Returns the dataset."""
    import soundfile

    from hilbert_app.corpus.build import build_dataset

    rng = np.random.default_rng(0)
    corpus = root / "corpus"
    (corpus / "audio").mkdir(parents=True)
    lines = ["file_name,transcript,label,group"]
    for i in range(documents):
        label = ["quiet", "loud"][i % 2]
        samples = int(2.6 * RAW_RATE) + 2 * i + 1
        wave = (0.05 if label == "quiet" else 0.5) * rng.standard_normal(samples)
        soundfile.write(corpus / "audio" / f"r{i}.wav", wave.clip(-1, 1).astype(np.float32), RAW_RATE)
        words = "calm steady" if label == "quiet" else "urgent loud"
        turns = [{"start": 0.85 * k, "end": 0.85 * k + 0.7, "text": f"{words} {k}", "speaker": "p"} for k in range(3)]
        (corpus / f"r{i}.json").write_text(json.dumps(turns))
        lines.append(f"audio/r{i}.wav,r{i}.json,{label},g{i // 2}")
    (corpus / "metadata.csv").write_text("\n".join(lines) + "\n")
    build_dataset(corpus, root / "dataset", folds=2, seed=0, progress=False)
    return root / "dataset"


@pytest.fixture(scope="module")
def trained(checkpoints, tmp_path_factory) -> dict:
    """Every pairing of TRAINED trained with train.py --end-to-end on one raw 22.05-kHz dataset:
    {name: {"rc", "log", "output_dir"}} (plus "attempts": network connections tried, none expected)."""
    root = tmp_path_factory.mktemp("end_to_end")
    dataset = raw_corpus(root)
    runs = {}
    for audio, text in TRAINED:
        output_dir = root / f"{audio}-{text}"
        runs[f"{audio}-{text}"] = [
            "--end-to-end", "--dataset", str(dataset), "--audio-encoder", checkpoints[audio],
            "--text-encoder", checkpoints[text], "--output-dir", str(output_dir), *TRAIN_ARGS,
        ]  # fmt: skip
    (root / "runs.json").write_text(json.dumps(runs))
    child = subprocess.run(
        [sys.executable, "-c", NO_NETWORK + TRAIN_DRIVER, str(root)],
        cwd=root,
        env=child_env(root),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert child.returncode == 0, child.stderr[-4000:]
    record = json.loads((root / "trained.json").read_text())
    for name in runs:
        record["results"][name]["output_dir"] = str(root / name)
    return {**record["results"], "attempts": record["attempts"]}


@pytest.fixture(scope="module")
def piped(trained, tmp_path_factory) -> dict:
    """The pipeline and the Auto classes on the 22.05-kHz recording, for every trained pairing's output folder, in
    one fresh process without this package (remote code only, no network): {name: results} + "attempts"."""
    import soundfile

    root = tmp_path_factory.mktemp("pipeline")
    wave = 0.3 * np.random.default_rng(5).standard_normal(RECORDING_SAMPLES)
    soundfile.write(root / "recording.wav", wave.clip(-1, 1), RAW_RATE, subtype="PCM_16")
    (root / "recording.srt").write_text(SRT)
    folders = {name: run["output_dir"] for name, run in trained.items() if name != "attempts" and run["rc"] == 0}
    (root / "folders.json").write_text(json.dumps(folders))
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_NETWORK + BLOCK_PACKAGE + PIPELINE_SCRIPT,
            str(root),
            str(root / "recording.wav"),
            str(root / "recording.srt"),
        ],
        cwd=root,
        env=child_env(root),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == 0, child.stderr[-4000:]
    record = torch.load(root / "piped.pt", weights_only=True)
    return {
        **record["results"],
        "attempts": record["attempts"],
        "wav": root / "recording.wav",
        "srt": root / "recording.srt",
    }


def e2e_id(pairing) -> str:
    return "-".join(pairing)


@pytest.mark.slow
@pytest.mark.parametrize("pairing", TRAINED, ids=e2e_id)
def test_train_py_end_to_end_trains_every_pairing(pairing, trained, checkpoints):
    """train.py --end-to-end from the raw 22.05-kHz dataset through the frozen saved checkpoints: both folds
    evaluated, and the saved final model holds the checkpoints' encoder weights unchanged (frozen), named in its
    config with their fingerprints, beside a processor built from the same checkpoints."""
    from transformers import AutoTokenizer

    from modeling_hilbert.modeling_hilbert import weights_sha256

    audio, text = pairing
    name = e2e_id(pairing)
    run = trained[name]
    assert run["rc"] == 0, run["log"]
    assert trained["attempts"] == []  # local folders only: no hub was asked for anything
    out = Path(run["output_dir"])
    metrics = json.loads((out / "metrics.json").read_text())["label"]
    assert metrics["num_examples"]["folds"] == [4, 4]  # 2 grouped folds of 4 documents, each tested once
    aucs = metrics["macro_auc"]["folds"]
    assert len(aucs) == 2 and all(0.0 <= auc <= 1.0 for auc in aucs)
    assert metrics["macro_auc"]["mean"] == pytest.approx(np.mean(aucs))

    config = json.loads((out / "config.json").read_text())
    assert config["with_encoders"] is True
    assert config["audio_config"]["model_type"] == audio.split("_")[0]  # the checkpoint names are the model types
    assert config["text_config"]["model_type"] == text
    if audio != "whisper":  # the group-norm variants stay group-norm (their padding-free batching depends on it)
        assert config["audio_config"]["feat_extract_norm"] == audio.split("_")[1]
    assert config["tasks"][0]["id2label"] == {"0": "loud", "1": "quiet"}
    saved = HilbertForSequenceClassification.from_pretrained(out)
    for key, checkpoint, encoder in (
        ("audio", checkpoints[audio], saved.hilbert.audio_encoder),
        ("text", checkpoints[text], saved.hilbert.text_encoder),
    ):
        expected = weights_sha256(load_pretrained_encoder(checkpoint))
        assert config["encoder_sources"][key]["sha256"] == expected, key
        assert weights_sha256(encoder) == expected, f"{key} encoder changed by training (not frozen?)"
    processor = HilbertProcessor.from_pretrained(out)
    model_max = AutoTokenizer.from_pretrained(checkpoints[text]).model_max_length
    assert processor.max_text_tokens == min(256, model_max)  # the capped default (60 for the tiny BERT/RoBERTa)
    assert type(processor.tokenizer).__name__ == type(AutoTokenizer.from_pretrained(checkpoints[text])).__name__


@pytest.mark.slow
@pytest.mark.parametrize("pairing", TRAINED, ids=e2e_id)
def test_pipeline_on_a_22khz_recording_is_the_trained_models_forward(pairing, trained, piped):
    """The final model of train.py, loaded from its folder with the pipeline and the Auto classes in a process
    without this package, on a 22.05-kHz WAV of odd length + an SRT: the pipeline's scores are the softmax of the
    model's logits on the processor's output for that document (streamed or not), its top segments the pooling
    weights summed per cue; the remote code gives what this package gives; and the processor's inputs equal those
    of the recording resampled to 16 kHz in one torchaudio call."""
    audio, _ = pairing
    name = e2e_id(pairing)
    assert trained[name]["rc"] == 0, "training failed: see test_train_py_end_to_end_trains_every_pairing"
    got = piped[name]
    assert "error" not in got, got.get("error")
    assert piped["attempts"] == []
    assert all(module.startswith("transformers_modules.") for module in got["modules"]), got["modules"]

    # 1. the pipeline = the model's forward on the processor's output (streaming=False: the all-at-once path)
    probabilities = torch.softmax(got["logits"][0].double(), dim=-1).tolist()
    expected = sorted(zip(["loud", "quiet"], probabilities), key=lambda item: -item[1])
    for result in (got["streamed"], got["at_once"]):
        predictions = result["predictions"]["label"]
        assert [p["label"] for p in predictions] == [label for label, _ in expected]
        assert [p["score"] for p in predictions] == pytest.approx([p for _, p in expected], abs=PIPELINE_TOL)
    # cue 2 (1.2 s) is split into two pieces by the tiny Whisper's 1-s window; the waveform encoders take it whole
    assert got["sources"] == ([0, 1, 1, 2, 3] if audio == "whisper" else [0, 1, 2, 3])
    per_cue = [0.0] * len(CUES)
    for piece, source in enumerate(got["sources"]):
        per_cue[source] += float(got["weights"][0, :, piece].mean())
    for result in (got["streamed"], got["at_once"]):
        top = result["top_segments"]
        assert sorted(t["segment_index"] for t in top) == list(range(len(CUES)))
        assert {t["segment_index"]: t["weight"] for t in top} == pytest.approx(
            dict(enumerate(per_cue)), abs=PIPELINE_TOL
        )
        assert [t["weight"] for t in top] == sorted((t["weight"] for t in top), reverse=True)
        assert [(t["start"], t["end"]) for t in sorted(top, key=lambda t: t["segment_index"])] == CUES
    assert sum(per_cue) == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(got["base_joint"], got["joint"], rtol=REL_TOL, atol=1e-6)  # AutoModel: the same

    # 2. the remote code = this package's classes on the same folder
    folder = trained[name]["output_dir"]
    processor = HilbertProcessor.from_pretrained(folder)
    document = processor.load_document(piped["wav"], piped["srt"])
    assert document["sampling_rate"] == RAW_RATE and document["audio"].shape[-1] % 2 == 1
    inputs = processor([document])
    assert inputs.keys() == got["inputs"].keys()
    for key, value in inputs.items():
        torch.testing.assert_close(value, got["inputs"][key], rtol=0, atol=0, msg=key)
    model = HilbertForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad(), threads_of_the_child():
        logits = model(**inputs).task_logits["label"]
    torch.testing.assert_close(logits, got["logits"], rtol=REL_TOL, atol=1e-6)

    # 3. the odd rate: block-wise resampling inside the processor = torchaudio on the whole recording, one call
    from modeling_hilbert.audio_hilbert import RESAMPLE_BLOCK

    assert CUES[2][0] < RESAMPLE_BLOCK / RAW_RATE < CUES[2][1] < RECORDING_SAMPLES / RAW_RATE  # cue 3 spans 2 blocks
    from torchaudio.functional import resample

    reference = processor([{**document, "audio": resample(document["audio"], RAW_RATE, SR), "sampling_rate": SR}])
    key = "input_features" if audio == "whisper" else "input_values"
    torch.testing.assert_close(reference["audio_attention_mask"], inputs["audio_attention_mask"], rtol=0, atol=0)
    mask = inputs["audio_attention_mask"].bool()
    real = mask[:, :, None, :].expand_as(inputs[key]) if audio == "whisper" else mask
    assert_rel_close(inputs[key][real], reference[key][real], tol=1e-5, what="resampled audio")
