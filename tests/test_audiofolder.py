"""A raw corpus folder read with `load_dataset("audiofolder")`: the docs/data.md recipe runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from test_asr import _FixedTranscriber
from test_build_dataset import RECORDINGS, make_corpus, write_wav

from modeling_hilbert.transcripts_hilbert import load_transcript

REPO = Path(__file__).resolve().parents[1]
HEARD = [{"start": 0.1, "end": 0.9, "text": "heard words", "speaker": None}]


def _doc_example(name: str) -> str:
    text = (REPO / "docs" / "data.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    return next(b for b in blocks if b.startswith(f"# example: {name}"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from test_hub_workflow import make_pipeline, save_tiny_encoders

    return make_pipeline(
        save_tiny_encoders(tmp_path_factory.mktemp("af_encoders")),
        tasks=[{"name": "label", "type": "multiclass", "labels": ["angry", "calm"]}],
    )


def test_docs_audiofolder_recipe_runs_with_processor_map_and_pipeline(tiny, tmp_path, monkeypatch):
    pipe, model, processor = tiny
    root = tmp_path / "corpus"
    make_corpus(root)  # SRT, VTT and JSON transcripts, paths relative to the folder
    write_wav(root / "audio" / "alone.wav", 1.2, 16000)
    with (root / "metadata.csv").open("a", encoding="utf-8") as f:
        f.write("audio/alone.wav,,calm,news,,\n")  # no transcript: the recipe's asr_model transcribes it
    monkeypatch.chdir(tmp_path)  # the recipe's relative "my_corpus" stays inside tmp_path
    (tmp_path / "my_corpus").symlink_to(root)
    asr = _FixedTranscriber(HEARD)
    scope = {"processor": processor, "model": model.eval(), "pipe": pipe, "asr": asr}
    with torch.no_grad():
        exec(compile(_doc_example("audiofolder"), "docs/data.md", "exec"), scope)

    ds, inputs, predictions = scope["ds"], scope["inputs"], scope["predictions"]
    assert len(ds) == len(inputs) == len(predictions) == len(RECORDINGS) + 1
    assert asr.calls == 2  # the audio-only row, once by the processor and once by the pipeline
    # The map's row equals the processor applied to the file and the transcript read by hand.
    rec1 = next(i for i, row in enumerate(ds) if row["transcript"] == "transcripts/rec1.srt")
    direct = processor(
        {"audio": str(root / "audio" / "rec1.wav"), "segments": load_transcript(root / "transcripts" / "rec1.srt")}
    )
    for name, value in direct.items():
        torch.testing.assert_close(inputs[rec1][name], value[0], msg=name)
    alone = next(i for i, row in enumerate(ds) if not row["transcript"])
    torch.testing.assert_close(inputs[alone]["segment_times"], torch.tensor([[0.1, 0.9]]))
    # The pipeline's scores are the model's probabilities for the same document.
    with torch.no_grad():
        probs = torch.softmax(model(**{n: v[None] for n, v in inputs[rec1].items()}).logits[0], -1)
    scores = {p["label"]: p["score"] for p in predictions[rec1]["predictions"]["label"]}
    assert scores == pytest.approx({"angry": float(probs[0]), "calm": float(probs[1])}, abs=1e-5)
    assert predictions[alone]["top_segments"][0]["start"] == pytest.approx(0.1)  # the transcribed segment
    with torch.no_grad():
        torch.testing.assert_close(scope["first"][0], model(**{n: v[None] for n, v in inputs[0].items()}).logits[0])
