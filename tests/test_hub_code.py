"""A saved checkpoint is self-contained: a fresh process without this package loads it with trust_remote_code."""

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from tiny_models import feature_inputs, hilbert_config

from modeling_hilbert import HilbertForSequenceClassification

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.name for p in (REPO / "modeling_hilbert").glob("*_hilbert.py"))

# Prepended to every child script: makes importing this repository's packages fail, as on a user's machine.
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


def run_child(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["HF_HOME"] = str(tmp_path / "fresh_hf_home")  # empty cache: the code comes from the folder alone
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run(
        [sys.executable, "-c", BLOCK_PACKAGE + script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_save_then_load_in_a_fresh_process_gives_identical_outputs(tmp_path):
    config = hilbert_config(
        tasks=[
            {"name": "label", "type": "multiclass", "labels": ["a", "b", "c"]},
            {"name": "flag", "type": "binary", "labels": ["no", "yes"]},
        ]
    )
    torch.manual_seed(0)
    model = HilbertForSequenceClassification(config).eval()
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)
    inputs = feature_inputs(config)
    torch.save(inputs, tmp_path / "inputs.pt")
    with torch.no_grad():
        expected = model(**inputs)

    script = textwrap.dedent(
        f"""
        import torch
        from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification
        folder = {str(folder)!r}
        config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        assert type(config).__name__ == "HilbertConfig"
        assert "modeling_hilbert" not in type(config).__module__.split(".")[0]
        classifier = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
        base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        assert not any(p.requires_grad for p in classifier.hilbert.audio_encoder.parameters())
        inputs = torch.load("inputs.pt", weights_only=True)
        with torch.no_grad():
            out = classifier(**inputs)
            joint = base(**inputs).joint_embeds
        torch.save({{"logits": out.task_logits, "joint": joint, "module": type(classifier).__module__}}, "outputs.pt")
        """
    )
    child = run_child(script, tmp_path)
    assert child.returncode == 0, child.stderr[-3000:]
    got = torch.load(tmp_path / "outputs.pt", weights_only=True)
    assert got["module"].startswith("transformers_modules.")  # loaded as remote code, not from this package
    for task in ("label", "flag"):
        torch.testing.assert_close(got["logits"][task], expected.task_logits[task], rtol=0, atol=0)
    torch.testing.assert_close(got["joint"], expected.joint_embeds, rtol=0, atol=0)
    saved = json.loads((folder / "config.json").read_text())
    assert set(saved["auto_map"]) >= {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"}


def test_every_shipped_file_is_saved_with_the_model(tmp_path):
    build = HilbertForSequenceClassification(hilbert_config())
    build.save_pretrained(tmp_path)
    saved = sorted(p.name for p in tmp_path.glob("*.py"))
    # the processor ships with the processor's save_pretrained, the rest with the model's (audio_hilbert.py too:
    # the pipeline's transcription path, asr_hilbert.py, decodes audio with it)
    assert set(saved) == set(SHIPPED) - {"processing_hilbert.py", "transcripts_hilbert.py"}


def test_shipped_files_import_only_torch_transformers_stdlib_and_siblings():
    allowed = {"torch", "transformers", "__future__"} | set(sys.stdlib_module_names)
    siblings = {name[:-3] for name in SHIPPED}
    for name in SHIPPED:
        tree = ast.parse((REPO / "modeling_hilbert" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and node.col_offset == 0:
                for alias in node.names:
                    assert alias.name.split(".")[0] in allowed, f"{name}: import {alias.name}"
            elif isinstance(node, ast.ImportFrom) and node.col_offset == 0:
                if node.level:  # relative: only flat siblings (`from .sub.mod import` breaks save_pretrained)
                    assert node.module in siblings, f"{name}: from .{node.module}"
                else:
                    assert node.module.split(".")[0] in allowed, f"{name}: from {node.module}"


# Imported inside a function only when that feature is used, inside `try: ... except ImportError` with a message
# that says what to install: reading audio files (soundfile; torchcodec for formats libsndfile cannot open) and
# resampling (torchaudio).
OPTIONAL_LAZY_IMPORTS = {"soundfile", "torchaudio", "torchcodec"}
# Calls that would let a shipped file run or import code the import statements do not show.
DYNAMIC_CODE_CALLS = {
    "exec",
    "eval",
    "compile",
    "__import__",
    "importlib.import_module",
    "importlib.__import__",
    "runpy.run_path",
    "runpy.run_module",
}
# The reviewed exceptions: the pipeline and `encode` re-import the module their processor came from (already loaded,
# a sibling) to find that module's transcript reader, so the model's files do not pull in the processor's.
ALLOWED_DYNAMIC_CALLS = {
    ("pipeline_hilbert.py", "importlib.import_module", "type(self.processor).__module__"),
    ("modeling_hilbert.py", "importlib.import_module", "type(processor).__module__"),
}


def _imports_with_context(node: ast.AST, in_function: bool = False, guarded: bool = False):
    """Yield (import node, runs at import time, guarded by `except ImportError`) for every import, at any depth."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node, not in_function, guarded
        return
    in_function = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
    if isinstance(node, ast.Try):
        catches = any(h.type is not None and "ImportError" in ast.unparse(h.type) for h in node.handlers)
        for statement in node.body:
            yield from _imports_with_context(statement, in_function, guarded or catches)
        for part in (*node.handlers, *node.orelse, *node.finalbody):
            yield from _imports_with_context(part, in_function, guarded)
        return
    for child in ast.iter_child_nodes(node):
        yield from _imports_with_context(child, in_function, guarded)


def test_the_import_walk_sees_lazy_and_guarded_imports():
    tree = ast.parse(
        "import os\nclass A:\n    import numpy\ndef f():\n    import soundfile\n    try:\n"
        "        import torchaudio\n    except ImportError:\n        import json\n"
    )
    seen = [(n.names[0].name, top, guarded) for n, top, guarded in _imports_with_context(tree)]
    assert seen == [
        ("os", True, False),
        ("numpy", True, False),
        ("soundfile", False, False),
        ("torchaudio", False, True),
        ("json", False, False),
    ]


def test_every_import_of_the_shipped_code_at_any_depth_is_torch_transformers_stdlib_or_a_sibling():
    """The module-level check above, extended to imports inside functions and to the package's __init__.py: a
    lazy import is allowed only for the optional audio readers, and only behind `except ImportError`."""
    allowed = {"torch", "transformers", "__future__"} | set(sys.stdlib_module_names)
    siblings = {name[:-3] for name in SHIPPED}
    checked = 0
    for name in [*SHIPPED, "__init__.py"]:
        tree = ast.parse((REPO / "modeling_hilbert" / name).read_text())
        for node, top_level, guarded in _imports_with_context(tree):
            checked += 1
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and node.module in siblings, (
                    f"{name}:{node.lineno}: from {'.' * node.level}{node.module}"
                )
                continue
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for module in modules:
                root = module.split(".")[0]
                if root in allowed:
                    continue
                assert not top_level and root in OPTIONAL_LAZY_IMPORTS, f"{name}:{node.lineno}: import {module}"
                assert guarded, f"{name}:{node.lineno}: optional import {module} must be inside try/except ImportError"
    assert checked > 30  # the walk really visited the imports


def test_shipped_code_runs_no_dynamic_code():
    found = set()
    for name in [*SHIPPED, "__init__.py"]:
        for node in ast.walk(ast.parse((REPO / "modeling_hilbert" / name).read_text())):
            if isinstance(node, ast.Call):
                called = ast.unparse(node.func)
                if called in DYNAMIC_CODE_CALLS:
                    found.add((name, called, ast.unparse(node.args[0]) if node.args else ""))
    assert found <= ALLOWED_DYNAMIC_CALLS, found - ALLOWED_DYNAMIC_CALLS
