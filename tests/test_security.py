"""Security and privacy guarantees (issue 7, part 3).

1. **Loading never unpickles arbitrary objects.** A static check over every project file (no pickle-family
   loaders, `torch.load` only with `weights_only=True`, no `np.load(allow_pickle=True)`, no
   `from_pretrained(use_safetensors=False / weights_only=False)`); saved models and processors hold only
   `.safetensors` weights; a `pytorch_model.bin` carrying a code-running pickle is refused without running it;
   resuming training (transformers' `Trainer`, which reads rng/optimizer/scheduler states with `torch.load`)
   loads every file with `weights_only=True`.
2. **The Hub-shipped code** (`modeling_hilbert/*_hilbert.py`, `__init__.py`) writes no file and opens no socket
   when it is imported, loaded with the Auto classes, run, and used through the pipeline: checked with an audit
   hook in a fresh process (`sys.addaudithook`), events attributed to our files by the call stack. The imports
   themselves are checked in tests/test_hub_code.py.
3. **Privacy.** Pushes are private unless `--public`; a canary word in the transcripts (and a sample pattern in
   the audio) never reaches logs, metrics, reports, model cards, TensorBoard files or pushed repositories (only
   the dataset itself holds them, by design); the CLIs write nothing outside their output folders; the
   pipeline returns no text unless `return_text=True`; transcript errors quote no transcript text.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from synthetic import make_features_dataset, save_tiny_encoders
from tiny_models import hilbert_config

from modeling_hilbert import HilbertForSequenceClassification, HilbertProcessor
from modeling_hilbert.pipeline_hilbert import PIPELINE_TASK, HilbertDocumentClassificationPipeline

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
SHIPPED = sorted(p.name for p in (REPO / "modeling_hilbert").glob("*_hilbert.py"))


# =============================================================================================== 1. no unpickling
# Modules whose `load`/`loads`/`Unpickler` run arbitrary code from the bytes they read.
PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "joblib", "cloudpickle", "shelve"}


def _dotted(node: ast.AST) -> str:
    """`torch.serialization.load` -> "torch.serialization.load"; "" for anything that is not a plain name chain."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _is_constant(node: ast.AST | None, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unsafe_loading(source: str, filename: str = "<source>") -> list[str]:
    """Every place in `source` that could unpickle untrusted bytes, as "file:line: what (what to do)".

    Static and conservative: a `torch.load` whose `weights_only` is not the literal True (a variable, `**kwargs`)
    is reported too, since it cannot be checked here.
    """
    problems = []

    def report(node, message):
        problems.append(f"{filename}:{node.lineno}: {message}")

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PICKLE_MODULES:
                    report(
                        node,
                        f"import {alias.name} (pickle-family loaders run code; store tensors as safetensors, data as "
                        f"JSON)",
                    )
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            root = node.module.split(".")[0]
            if root in PICKLE_MODULES:
                report(node, f"from {node.module} import ... (pickle-family loaders run code)")
            if node.module in ("torch", "torch.serialization") and any(a.name == "load" for a in node.names):
                report(
                    node, "from torch import load (call torch.load(..., weights_only=True) so that it can be checked)"
                )
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            last = name.rsplit(".", 1)[-1]
            keywords = {k.arg: k.value for k in node.keywords if k.arg is not None}
            if name in ("torch.load", "torch.serialization.load"):
                if not _is_constant(keywords.get("weights_only"), True):
                    report(node, f"{name} without weights_only=True")
                if "pickle_module" in keywords:
                    report(node, f"{name} with a pickle_module")
            elif name in ("torch.jit.load", "torch.hub.load", "torch.package.PackageImporter"):
                report(node, f"{name} runs code from the file (use safetensors)")
            elif name in ("np.load", "numpy.load"):
                allow = keywords.get("allow_pickle", node.args[2] if len(node.args) > 2 else None)
                if allow is not None and not _is_constant(allow, False):
                    report(node, f"{name} with allow_pickle")
            elif last in ("read_pickle", "from_pickle"):
                report(node, f"{name} unpickles")
            elif last == "from_pretrained":
                if "use_safetensors" in keywords and not _is_constant(keywords["use_safetensors"], True):
                    report(node, "from_pretrained with use_safetensors other than True (may load a pickled .bin)")
                if "weights_only" in keywords and not _is_constant(keywords["weights_only"], True):
                    report(node, "from_pretrained with weights_only other than True")
    return problems


def project_python_files() -> list[Path]:
    """Every Python file of the project: the shipped code, dataset scripts, training, scripts, benchmarks, train.py.
    (Not tests/: they load only what they wrote themselves, and this file holds deliberate unsafe controls.)"""
    files = [REPO / "train.py"]
    for folder in ("modeling_hilbert", "hilbert_app", "dataset_scripts", "scripts", "benchmarks"):
        files += sorted((REPO / folder).rglob("*.py"))
    return [f for f in files if "__pycache__" not in f.parts]


def test_no_project_file_loads_pickles():
    files = project_python_files()
    assert len(files) > 20 and REPO / "modeling_hilbert" / "modeling_hilbert.py" in files
    problems = [p for f in files for p in unsafe_loading(f.read_text(encoding="utf-8"), str(f.relative_to(REPO)))]
    assert problems == []


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle\npickle.load(f)",
        "import dill",
        "from joblib import load",
        "import cloudpickle as cp",
        "torch.load(path)",
        "torch.load(path, weights_only=False)",
        "torch.load(path, **kwargs)",
        "torch.load(path, weights_only=flag)",
        "torch.load(path, weights_only=True, pickle_module=dill)",
        "from torch import load",
        "torch.jit.load('m.pt')",
        "np.load('x.npy', allow_pickle=True)",
        "numpy.load('x.npy', None, True)",
        "pd.read_pickle('x.pkl')",
        "AutoModel.from_pretrained(p, use_safetensors=False)",
        "Model.from_pretrained(p, weights_only=False)",
    ],
)
def test_the_static_check_finds_each_unsafe_form(snippet):
    assert len(unsafe_loading(snippet)) >= 1, snippet


def test_the_static_check_accepts_the_safe_forms():
    safe = (
        "torch.load(p, weights_only=True)\ntorch.load(p, map_location='cpu', weights_only=True)\n"
        "np.load('x.npy')\nnp.load('x.npy', allow_pickle=False)\nAutoModel.from_pretrained(p)\n"
        "AutoModel.from_pretrained(p, use_safetensors=True)\nsafetensors.torch.load_file(p)\njson.load(f)\n"
    )
    assert unsafe_loading(safe) == []


# ---------------------------------------------------------------------------------------------- saved folders
WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".h5", ".msgpack")


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    return save_tiny_encoders(tmp_path_factory.mktemp("security_encoders"))


def tiny_pipeline(encoders) -> HilbertDocumentClassificationPipeline:
    audio_dir, text_dir = encoders
    torch.manual_seed(0)
    model = HilbertForSequenceClassification.from_encoders_pretrained(
        str(audio_dir),
        str(text_dir),
        tasks=[{"name": "label", "type": "multiclass", "labels": ["calm", "tense"]}],
        hidden_size=16,
        num_attention_heads=2,
        intermediate_size=32,
        pooling_heads=2,
        pooling_hidden_size=8,
        projection_dim=8,
        num_experts=2,
        expert_hidden_size=16,
        dropout=0.0,
    ).eval()
    processor = HilbertProcessor.from_encoders_pretrained(str(audio_dir), str(text_dir), max_text_tokens=32)
    return HilbertDocumentClassificationPipeline(model=model, processor=processor, device=-1)


@pytest.fixture(scope="module")
def saved_model(encoders, tmp_path_factory) -> Path:
    """A full tiny model (encoders + head + processor + code), saved the way users save it."""
    folder = tmp_path_factory.mktemp("saved") / "model"
    tiny_pipeline(encoders).save_pretrained(folder)
    return folder


def test_saved_models_and_processors_hold_only_safetensors_weights(saved_model, tmp_path):
    files = sorted(p.name for p in saved_model.iterdir())
    assert "model.safetensors" in files and "processor_config.json" in files
    assert [f for f in files if f.endswith(WEIGHT_SUFFIXES)] == [], files
    # a head-only model (what training saves in its checkpoints) too
    HilbertForSequenceClassification(hilbert_config(with_encoders=False)).save_pretrained(tmp_path / "head")
    assert sorted(p.name for p in (tmp_path / "head").iterdir() if p.suffix not in (".py",)) == [
        "config.json",
        "model.safetensors",
    ]


class _RunsCodeWhenUnpickled:
    """Unpickling this calls os.mkdir(marker): what a malicious `pytorch_model.bin` would do with a worse command."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def bin_only_copy(saved_model: Path, folder: Path, payload) -> Path:
    """The saved folder with its model.safetensors replaced by a pytorch_model.bin holding `payload`."""
    shutil.copytree(saved_model, folder)
    (folder / "model.safetensors").unlink()
    torch.save(payload, folder / "pytorch_model.bin")
    return folder


def test_a_pickled_bin_that_runs_code_is_refused_without_running_it(saved_model, tmp_path):
    """HILBERT refuses folders without safetensors. Even when asked to read the .bin, transformers 5.23 reads it
    with `torch.load(weights_only=True)` (modeling_utils.load_state_dict): the restricted unpickler refuses any global
    that is not a tensor type, so the payload never runs."""
    from transformers import AutoModelForSequenceClassification

    marker = tmp_path / "payload_ran"
    folder = bin_only_copy(saved_model, tmp_path / "bin_only", {"weight": _RunsCodeWhenUnpickled(marker)})
    # our loader refuses any folder without safetensors (HilbertPreTrainedModel.from_pretrained)
    with pytest.raises(OSError, match="safetensors"):
        HilbertForSequenceClassification.from_pretrained(folder)
    with pytest.raises(OSError, match="safetensors"):
        AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)
    # and a caller who insists on the .bin still gets transformers' restricted unpickler, which refuses the payload
    with pytest.raises(Exception, match="(?i)weights.only|unpickl"):
        HilbertForSequenceClassification.from_pretrained(folder, use_safetensors=False)
    assert not marker.exists()
    # the control: a plain pickle load of the same file does run it (so the check above means something)
    # the deliberate unsafe control (a pickle load), which tests/test_security.py alone may hold
    torch.load(folder / "pytorch_model.bin", weights_only=False)
    assert marker.exists()


def test_a_folder_with_only_a_pickled_bin_is_refused(saved_model, tmp_path):
    """HILBERT checkpoints are always saved as safetensors, so a folder holding only `pytorch_model.bin` did not
    come from us: refuse it rather than unpickle it (even with the restricted unpickler)."""
    state = {
        k: v.clone() for k, v in HilbertForSequenceClassification.from_pretrained(saved_model).state_dict().items()
    }
    folder = bin_only_copy(saved_model, tmp_path / "benign_bin", state)
    with pytest.raises(OSError, match="safetensors"):
        HilbertForSequenceClassification.from_pretrained(folder)


# ---------------------------------------------------------------------------------------------- resuming training
class LoadRecorder:
    """Wraps `torch.load` and the pickle loaders to record every call: what file, with which `weights_only`.

    `torch.load(weights_only=True)` uses torch's own restricted unpickler; a full unpickle goes through
    `pickle.Unpickler` / `pickle.load(s)`, recorded here as "pickle"."""

    def __init__(self, monkeypatch):
        self.calls: list[dict] = []
        real_load = torch.load

        def recording_load(f, *args, **kwargs):
            self.calls.append({"loader": "torch.load", "file": str(f), "weights_only": kwargs.get("weights_only")})
            return real_load(f, *args, **kwargs)

        recorder = self

        class RecordingUnpickler(pickle.Unpickler):
            def __init__(self, file, *args, **kwargs):
                recorder.calls.append(
                    {"loader": "pickle", "file": str(getattr(file, "name", file)), "weights_only": False}
                )
                super().__init__(file, *args, **kwargs)

        real_loads, real_pickle_load = pickle.loads, pickle.load

        def recording_loads(data, *args, **kwargs):
            self.calls.append({"loader": "pickle", "file": "<bytes>", "weights_only": False})
            return real_loads(data, *args, **kwargs)

        def recording_pickle_load(file, *args, **kwargs):
            self.calls.append({"loader": "pickle", "file": str(getattr(file, "name", file)), "weights_only": False})
            return real_pickle_load(file, *args, **kwargs)

        monkeypatch.setattr(torch, "load", recording_load)
        monkeypatch.setattr(pickle, "Unpickler", RecordingUnpickler)
        monkeypatch.setattr(pickle, "loads", recording_loads)
        monkeypatch.setattr(pickle, "load", recording_pickle_load)

    def unsafe(self) -> list[dict]:
        """The calls that could run code from the file: a full unpickle, or torch.load without weights_only=True."""
        return [c for c in self.calls if c["weights_only"] is not True]


@pytest.mark.slow
def test_resuming_training_loads_checkpoints_with_weights_only(encoders, tmp_path, monkeypatch):
    """Kill a run after its first checkpoint, resume it with every loader recorded: transformers' Trainer reads
    rng_state.pth, optimizer.pt and scheduler.pt with `torch.load(weights_only=True)` (trainer.py 3867, 3929-3946
    in transformers 5.23) and the weights from model.safetensors; nothing is fully unpickled. (trainer_state.json
    is JSON; training_args.bin, a full pickle of the TrainingArguments, is written but never read back.)"""
    from test_training import HEAD, StopAfter, experiment_data, settings

    from hilbert_app.training.data import fold_splits
    from hilbert_app.training.experiment import train_run

    data = experiment_data(make_features_dataset(tmp_path / "features", *encoders))
    train, test = fold_splits(data.dataset, 3)[0]
    run = dict(
        data=data,
        head=HEAD,
        switches={},
        train_indices=train,
        test_indices=test,
        seed=0,
        settings=settings(num_train_epochs=2),
    )
    steps_per_epoch = int(np.ceil(len(train) / 4))
    with pytest.raises(KeyboardInterrupt):
        train_run(run_dir=tmp_path / "run", callbacks=[StopAfter(steps_per_epoch + 1)], **run)
    checkpoint = next((tmp_path / "run").glob("checkpoint-*"))
    assert "model.safetensors" in {p.name for p in checkpoint.iterdir()}

    recorder = LoadRecorder(monkeypatch)
    _, result = train_run(run_dir=tmp_path / "run", **run)
    assert result is not None and "label" in result["tasks"]
    loaded = {Path(c["file"]).name for c in recorder.calls if c["loader"] == "torch.load"}
    assert {"rng_state.pth", "optimizer.pt", "scheduler.pt"} <= loaded, recorder.calls  # it really resumed
    assert recorder.unsafe() == []

    # The recorder sees an unsafe load when there is one (the check above can fail).
    torch.save({"x": torch.ones(2)}, tmp_path / "probe.pt")
    torch.load(tmp_path / "probe.pt", weights_only=False)  # the deliberate unsafe control
    assert [c["loader"] for c in recorder.unsafe()] == ["torch.load", "pickle"]


# =============================================================================================== 2. shipped code
# Runs in a fresh process. The audit hook is installed before anything else is imported; it records
#  * every network event (socket.*, http/urllib/ftp/smtp connections), whoever makes it: loading a local folder
#    offline must make none at all;
#  * every file write (open for writing/appending/creating, mkdir, rename/replace, remove, ...) and process start
#    whose call stack reaches one of our shipped files before it reaches transformers: transformers itself copies
#    the remote code into HF_MODULES_CACHE (its work, not ours), and a write our code asks transformers for (e.g.
#    save_pretrained) is the caller's choice.
# Bytecode caching is turned off (PYTHONDONTWRITEBYTECODE) since writing .pyc files is the interpreter's doing.
AUDIT_CHILD = r'''
import json, os, sys
SHIPPED = set(json.loads(sys.argv[1]))
PACKAGE_INIT = os.path.join(sys.argv[2], "modeling_hilbert", "__init__.py")
WRITE_EVENTS = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.truncate", "os.symlink", "os.link", "os.chmod",
                "os.chown", "os.utime", "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.copytree",
                "shutil.rmtree", "tempfile.mkstemp", "tempfile.mkdtemp"}
PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.startfile"}
NETWORK_PREFIXES = ("socket.", "http.client.", "urllib.", "ftplib.", "smtplib.", "poplib.", "imaplib.", "nntplib.",
    "telnetlib.")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
recording = [True]
network, ours = [], []

def culprit():
    """The innermost shipped file on the stack (file:line), unless transformers' code is reached first."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if os.path.basename(filename) in SHIPPED or filename == PACKAGE_INIT:
            return f"{filename}:{frame.f_lineno}"
        if f"{os.sep}transformers{os.sep}" in filename:
            return None
        frame = frame.f_back
    return None

def hook(event, args):
    if not recording[0]:
        return
    if event.startswith(NETWORK_PREFIXES):
        network.append([event, repr(args)[:200], culprit()])
        return
    if event == "open":
        path, mode, flags = args
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS)
        if not writing:
            return
    elif event not in WRITE_EVENTS and event not in PROCESS_EVENTS:
        return
    where = culprit()
    if where is not None:
        ours.append([event, repr(args)[:200], where])

sys.addaudithook(hook)

folder, audio, transcript = sys.argv[3:6]
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoProcessor, pipeline
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
inputs = processor([processor.load_document(audio, transcript)])
with torch.no_grad():
    logits = model(**inputs).task_logits["label"]
    joint = base(**inputs).joint_embeds
pipe = pipeline("hilbert-document-classification", model=folder, trust_remote_code=True, device=-1)
result = pipe({"audio": audio, "transcript": transcript}, return_text=True)
modules = [type(x).__module__ for x in (model, base, processor, pipe)]
sys.path.insert(0, sys.argv[2])
import modeling_hilbert  # the package itself (its __init__ and every module), as a developer imports it
recording[0] = False
print(json.dumps({"network": network, "ours": ours, "modules": modules, "logits": logits.tolist(),
                  "predictions": result["predictions"]}))
'''


def write_document(folder: Path, text: str = "good morning to you", seconds: float = 3.0) -> tuple[Path, Path]:
    """A 16-kHz WAV and a two-cue .srt transcript."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    soundfile.write(folder / "doc.wav", (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000)
    (folder / "doc.srt").write_text(
        f"1\n00:00:00,000 --> 00:00:00,900\nA: {text}\n\n2\n00:00:01,000 --> 00:00:02,500\nB: {text} again\n"
    )
    return folder / "doc.wav", folder / "doc.srt"


def audit_child(folder: Path, document: tuple[Path, Path], tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    child = subprocess.run(
        [sys.executable, "-c", AUDIT_CHILD, json.dumps(SHIPPED), str(REPO), str(folder), *map(str, document)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-4000:]
    return json.loads(child.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_shipped_code_writes_no_file_and_opens_no_socket(saved_model, tmp_path):
    result = audit_child(saved_model, write_document(tmp_path / "doc"), tmp_path)
    assert all(m.startswith("transformers_modules.") for m in result["modules"]), result["modules"]  # remote code
    assert np.isfinite(result["logits"]).all() and list(result["predictions"]) == ["label"]
    assert result["network"] == []
    assert result["ours"] == []


@pytest.mark.slow
def test_the_audit_catches_a_write_and_a_connection_injected_into_shipped_code(saved_model, tmp_path):
    """The same check on a copy of the model whose modeling_hilbert.py writes a file and connects to a local port
    when imported, and whose processor writes a file when called: each must be caught and attributed."""
    folder = tmp_path / "tampered"
    shutil.copytree(saved_model, folder)
    target = tmp_path / "written_by_shipped_code.txt"
    with open(folder / "modeling_hilbert.py", "a") as f:
        f.write(
            textwrap.dedent(f"""
            import socket as _socket
            open({str(target)!r}, "w").close()
            try:
                _socket.create_connection(("127.0.0.1", 9), timeout=0.2).close()
            except OSError:
                pass
        """)
        )
    processing = (folder / "processing_hilbert.py").read_text()
    assert "    def __call__(\n" in processing
    (folder / "processing_hilbert.py").write_text(
        processing.replace(
            "    def __call__(\n",
            f"    def __call__(self, *a, **k):\n        import pathlib; "
            f"pathlib.Path({str(target) + '.2'!r}).write_text('x')\n"
            "        return self._real_call(*a, **k)\n\n    def _real_call(\n",
            1,
        )
    )
    result = audit_child(folder, write_document(tmp_path / "doc"), tmp_path)
    writes = {(event, Path(where.rsplit(":", 1)[0]).name) for event, _, where in result["ours"]}
    assert ("open", "modeling_hilbert.py") in writes and ("open", "processing_hilbert.py") in writes, result["ours"]
    assert any(event == "socket.connect" for event, _, _ in result["network"]), result["network"]


# =============================================================================================== 3. privacy
CANARY = "zorblaxquintet"  # in every transcript; must appear nowhere but in the dataset itself
# A recognisable audio pattern: 64 random 16-bit samples, tiled over every recording (stored as raw PCM_16 WAV).
PATTERN = np.random.default_rng(7).integers(-12000, 12000, 64).astype(np.int16)
AUDIO_SIGNATURES = {"pcm16": PATTERN.tobytes(), "float32": (PATTERN / 32768.0).astype(np.float32).tobytes()}
TINY_HEAD = [
    "--hidden-size",
    "16",
    "--num-attention-heads",
    "2",
    "--intermediate-size",
    "32",
    "--pooling-hidden-size",
    "8",
    "--projection-dim",
    "8",
    "--num-experts",
    "2",
    "--expert-hidden-size",
    "16",
    "--dropout",
    "0.0",
]


def write_canary_corpus(root: Path, documents: int = 8) -> Path:
    """Recordings made of PATTERN (label 'loud' twice as loud), .srt transcripts that all contain CANARY."""
    (root / "audio").mkdir(parents=True)
    rows = ["file_name,transcript,label,group"]
    for i in range(documents):
        label = ["quiet", "loud"][i % 2]
        wave = np.tile(PATTERN, 16000 * 2 // len(PATTERN))  # 2 s at 16 kHz
        soundfile.write(
            root / "audio" / f"r{i}.wav", wave if label == "loud" else wave // 2 * 2, 16000, subtype="PCM_16"
        )
        (root / f"r{i}.srt").write_text(
            f"1\n00:00:00,000 --> 00:00:00,900\nA: the {CANARY} said hello\n\n"
            f"2\n00:00:01,000 --> 00:00:01,900\nB: {CANARY} number {i}\n"
        )
        rows.append(f"audio/r{i}.wav,r{i}.srt,{label},p{i // 2}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def leaks(data: bytes) -> list[str]:
    found = [name for name, signature in AUDIO_SIGNATURES.items() if signature in data]
    for encoding in ("utf-8", "utf-16-le"):
        if CANARY.encode(encoding) in data:
            found.append(f"canary ({encoding})")
    return found


def leaking_files(root: Path, exclude=lambda path: False) -> dict[str, list[str]]:
    return {
        str(p.relative_to(root)): found
        for p in sorted(root.rglob("*"))
        if p.is_file() and not exclude(p) and (found := leaks(p.read_bytes()))
    }


def cli(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def canary_run(encoders, hub_env, tmp_path_factory):
    """build_dataset -> extract_features -> train.py on the canary corpus, each pushed to the local Hub with the
    default visibility, run as a user would: from an empty working folder, with an empty HOME and TMPDIR."""
    root = tmp_path_factory.mktemp("canary")
    corpus = write_canary_corpus(root / "corpus")
    work, home, tmp = root / "cwd", root / "home", root / "tmp"
    for folder in (work, home, tmp):
        folder.mkdir()
    env = dict(
        hub_env,
        HOME=str(home),
        TMPDIR=str(tmp),
        HF_HOME=str(root / "hf_home"),
        PYTHONPATH=str(REPO),
        OMP_NUM_THREADS="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    out = {"dataset": root / "dataset", "features": root / "features", "model": root / "model"}
    runs = [
        cli(
            [
                str(REPO / "dataset_scripts" / "build_dataset.py"),
                "--input",
                str(corpus),
                "--output-dir",
                str(out["dataset"]),
                "--folds",
                "2",
                "--no-progress",
                "--push-to-hub",
                "tester/canary-dataset",
            ],
            env,
            work,
        ),
        cli(
            [
                str(REPO / "dataset_scripts" / "extract_features.py"),
                "--dataset",
                str(out["dataset"]),
                "--output-dir",
                str(out["features"]),
                "--audio-encoder",
                str(encoders[0]),
                "--text-encoder",
                str(encoders[1]),
                "--no-progress",
                "--push-to-hub",
                "tester/canary-features",
            ],
            env,
            work,
        ),
        cli(
            [
                str(REPO / "train.py"),
                "--features",
                str(out["features"]),
                "--output-dir",
                str(out["model"]),
                "--folds",
                "2",
                "--seeds",
                "0",
                "--num-train-epochs",
                "2",
                "--per-device-train-batch-size",
                "2",
                "--logging-steps",
                "1",
                "--variants",
                "audio-only,HILBERT",
                *TINY_HEAD,
                "--push-to-hub",
                "tester/canary-model",
            ],
            env,
            work,
        ),
    ]
    hub_files = root / "from_hub"
    check = textwrap.dedent(f"""
        import json
        from huggingface_hub import HfApi, snapshot_download
        api = HfApi()
        private = {{"dataset": api.dataset_info("tester/canary-dataset").private,
                    "features": api.dataset_info("tester/canary-features").private,
                    "model": api.model_info("tester/canary-model").private}}
        for repo, kind in (("tester/canary-dataset", "dataset"), ("tester/canary-features", "dataset"),
            ("tester/canary-model", "model")):
            snapshot_download(repo, repo_type=kind, local_dir={str(hub_files)!r} + "/" + repo.split("/")[1])
        print(json.dumps(private))
    """)
    pushed = cli(["-c", check], dict(env, HF_HOME=str(root / "hf_checker")), root)
    return {
        "root": root,
        "out": out,
        "runs": runs,
        "work": work,
        "home": home,
        "tmp": tmp,
        "hub_files": hub_files,
        "private": json.loads(pushed.stdout.strip().splitlines()[-1]),
    }


@pytest.mark.slow
def test_pushes_are_private_by_default(canary_run):
    assert canary_run["private"] == {"dataset": True, "features": True, "model": True}


@pytest.mark.slow
def test_transcripts_and_audio_reach_no_output_but_the_dataset(canary_run):
    out, hub = canary_run["out"], canary_run["hub_files"]
    # The checks can see a leak: the dataset holds the transcripts and the audio bytes, by design.
    dataset_leaks = leaking_files(out["dataset"])
    assert any("canary (utf-8)" in found for found in dataset_leaks.values()), dataset_leaks
    assert any("pcm16" in found for found in dataset_leaks.values()), dataset_leaks
    # ... and only its data files: build_report.json, the dataset card, dataset_info.json, state.json are clean.
    assert all(Path(name).suffix == ".arrow" for name in dataset_leaks), dataset_leaks
    hub_dataset = leaking_files(hub / "canary-dataset")
    assert all(Path(name).suffix == ".parquet" for name in hub_dataset), hub_dataset  # the card on the Hub is clean

    # Everything else: features (arrow included), fingerprint, card; metrics, baselines, report, plots, model card,
    # trainer_state.json, run results, TensorBoard event files, the saved model; what was pushed; every log line.
    expected = (
        "hilbert_features.json",
        "metrics.json",
        "baselines.json",
        "report.md",
        "README.md",
        "model.safetensors",
        "trainer_state.json",
        "run_result.json",
    )
    for name in expected:
        assert any(p.name == name for folder in (out["features"], out["model"]) for p in folder.rglob(name)), name
    assert list(out["model"].rglob("events.out.tfevents.*")) and list((out["model"] / "plots").glob("*.png"))
    assert leaking_files(out["features"]) == {}
    assert leaking_files(out["model"]) == {}
    assert leaking_files(hub / "canary-features") == {}
    assert leaking_files(hub / "canary-model") == {}
    for run in canary_run["runs"]:
        assert leaks((run.stdout + run.stderr).encode()) == []


@pytest.mark.slow
def test_the_clis_write_nothing_outside_their_output_folders(canary_run):
    """The working folder and TMPDIR the three CLIs ran with are still empty; HOME holds only matplotlib's font
    list cache (written when train.py draws its plots; MPLCONFIGDIR moves it), free of any data. The Hub cache
    (HF_HOME) is set apart: it is where huggingface_hub is told to cache."""
    for name in ("work", "tmp"):
        assert sorted(str(p.relative_to(canary_run[name])) for p in canary_run[name].rglob("*")) == [], name
    home = canary_run["home"]
    files = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
    assert all(f.startswith(".cache/matplotlib/fontlist-") for f in files), files
    assert leaking_files(home) == {}
    directories = {str(p.relative_to(home)) for p in home.rglob("*") if p.is_dir()}
    assert directories <= {".cache", ".cache/matplotlib", ".config", ".config/matplotlib"}, directories


@pytest.mark.slow
def test_the_saved_model_contains_only_safetensors_weights(canary_run):
    model = canary_run["out"]["model"]
    shipped = [p for p in model.iterdir() if p.is_file()]
    assert "model.safetensors" in {p.name for p in shipped}
    assert [p.name for p in shipped if p.name.endswith(WEIGHT_SUFFIXES)] == []
    assert [
        p.name for p in (canary_run["hub_files"] / "canary-model").rglob("*") if p.name.endswith(WEIGHT_SUFFIXES)
    ] == []


@pytest.mark.slow
def test_the_pipeline_returns_text_only_when_asked(canary_run):
    from transformers import pipeline

    pipe = pipeline(PIPELINE_TASK, model=str(canary_run["out"]["model"]), trust_remote_code=True, device=-1)
    corpus = canary_run["root"] / "corpus"
    document = {"audio": str(corpus / "audio" / "r1.wav"), "transcript": str(corpus / "r1.srt")}
    quiet = pipe(document, top_k_segments=10)
    assert len(quiet["top_segments"]) == 2 and leaks(json.dumps(quiet).encode()) == []
    assert all("text" not in segment for segment in quiet["top_segments"])
    loud = pipe(document, top_k_segments=10, return_text=True)
    assert sorted(s["text"] for s in loud["top_segments"]) == [f"the {CANARY} said hello", f"{CANARY} number 1"]


@pytest.fixture(scope="module")
def public_run(canary_run, encoders, hub_env):
    """The three pushes again with `--public` (in one process, through each CLI's main), then a second push of
    each without `--public` to the now public repositories; returns the visibility after each step."""
    root, out = canary_run["root"], canary_run["out"]
    script = textwrap.dedent(f"""
        import json, sys
        from huggingface_hub import HfApi
        from hilbert_app.cli import build_dataset, extract_features, train
        api = HfApi()
        def visibility():
            return {{"dataset": api.dataset_info("tester/public-dataset").private,
                     "features": api.dataset_info("tester/public-features").private,
                     "model": api.model_info("tester/public-model").private}}
        def commits():
            return {{"dataset": api.dataset_info("tester/public-dataset").sha,
                     "features": api.dataset_info("tester/public-features").sha,
                     "model": api.model_info("tester/public-model").sha}}
        def run_all(*extra):
            tag = "public" if extra else "again"
            codes = {{
                "dataset": build_dataset.main(["--input", {str(root / "corpus")!r}, "--output-dir",
                    {str(root)!r} + "/ds_" + tag,
                                               "--folds", "2", "--no-progress", "--push-to-hub",
                                                   "tester/public-dataset", *extra]),
                "features": extract_features.main(["--dataset", {str(out["dataset"])!r}, "--output-dir",
                    {str(root)!r} + "/ft_" + tag,
                                                   "--audio-encoder", {str(encoders[0])!r}, "--text-encoder",
                                                       {str(encoders[1])!r},
                                                   "--no-progress", "--push-to-hub", "tester/public-features", *extra]),
                "model": train.main(["--features", {str(out["features"])!r}, "--output-dir",
                    {str(root)!r} + "/md_" + tag,
                                     "--folds", "2", "--seeds", "0", "--num-train-epochs", "1", "--report-to", "none",
                                     *{TINY_HEAD!r}, "--push-to-hub", "tester/public-model", *extra]),
            }}
            return {{"codes": codes, "private": visibility(), "commits": commits()}}
        public = run_all("--public")
        again = run_all()
        print(json.dumps({{"public": public, "again": again}}))
    """)
    env = dict(hub_env, HF_HOME=str(root / "hf_public"), OMP_NUM_THREADS="1")
    return json.loads(cli(["-c", script], env, root).stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_pushes_are_public_with_the_public_flag(public_run):
    assert public_run["public"]["codes"] == {"dataset": 0, "features": 0, "model": 0}
    assert public_run["public"]["private"] == {"dataset": False, "features": False, "model": False}


@pytest.mark.slow
def test_a_push_without_the_public_flag_never_publishes(public_run):
    """Without `--public` nothing may become public: a push to a repository that is already public stops before
    any work (exit code 2, hilbert_app/hub.py) and adds nothing to it. Without the check, each CLI
    pushed into the public repository (create_repo/push_to_hub set the visibility only when they create one)."""
    again, before = public_run["again"], public_run["public"]
    assert again["codes"] == {"dataset": 2, "features": 2, "model": 2}
    assert again["commits"] == before["commits"]  # nothing was uploaded
    assert again["private"] == {"dataset": False, "features": False, "model": False}  # and nothing changed


# ---------------------------------------------------------------------------------------------- error messages
TRANSCRIPT_ERRORS = {  # name: (parser, text containing CANARY where a transcript's words would be)
    "srt blank line inside a cue": ("srt", f"1\n00:00:00,000 --> 00:00:01,000\nhello\n\n{CANARY} words\n"),
    "srt cue without timing line": ("srt", f"1\n{CANARY} text here\n"),
    "srt words in the timing line": ("srt", f"1\n00:00:00,000 --> {CANARY}\nhi\n"),
    "vtt without header": ("vtt", f"{CANARY} opening line\n\n00:00.000 --> 00:01.000\nhi\n"),
    "json text not a string": ("json", json.dumps([{"start": 0, "end": 1, "text": [CANARY]}])),
    "json speaker not a string": ("json", json.dumps([{"start": 0, "end": 1, "text": "x", "speaker": [CANARY]}])),
    "json time not a number": ("json", json.dumps([{"start": CANARY, "end": 1, "text": "x"}])),
    "json syntax": ("json", '[{"start": 0, "end": 1, "text": "%s' % CANARY),
    "json segment not an object": ("json", json.dumps([CANARY])),
    "json end before start": ("json", json.dumps([{"start": 2, "end": 1, "text": CANARY}])),
}


@pytest.mark.parametrize("case", list(TRANSCRIPT_ERRORS))
def test_transcript_errors_give_file_and_line_but_no_transcript_text(case, tmp_path):
    from modeling_hilbert.transcripts_hilbert import TranscriptError, load_transcript

    kind, text = TRANSCRIPT_ERRORS[case]
    path = tmp_path / f"interview.{kind}"
    path.write_text(text)
    with pytest.raises(TranscriptError) as error:
        load_transcript(path)
    assert str(error.value).startswith(f"{path}:")  # where, for the user to look
    assert CANARY not in str(error.value)


@pytest.mark.parametrize(
    "segment",
    [
        pytest.param({"end": 1.0, "text": CANARY}, id="missing start"),
        pytest.param({"start": 2.0, "end": 1.0, "text": CANARY}, id="end before start"),
        pytest.param({"start": CANARY, "end": 1.0, "text": "x"}, id="start not a number"),
    ],
)
def test_processor_errors_quote_no_transcript_text(encoders, segment):
    processor = HilbertProcessor.from_encoders_pretrained(str(encoders[0]), str(encoders[1]), max_text_tokens=32)
    document = {
        "audio": np.zeros(16000, dtype=np.float32),
        "sampling_rate": 16000,
        "segments": [{"start": 0.0, "end": 0.5, "text": "fine"}, segment],
    }
    with pytest.raises(ValueError) as error:
        processor([document])
    assert "document 0, segment 1" in str(error.value)
    assert CANARY not in str(error.value)
