"""A saved checkpoint is self-contained: a fresh process without this package loads it with trust_remote_code."""

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from modeling_hilbert import HilbertForSequenceClassification
from tiny_models import feature_inputs, hilbert_config

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.name for p in (REPO / "modeling_hilbert").glob("*_hilbert.py"))

# Prepended to every child script: makes importing this repository's packages fail, as on a user's machine.
BLOCK_PACKAGE = textwrap.dedent(
    """
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("modeling_hilbert", "dataset_scripts"):
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
    return subprocess.run([sys.executable, "-c", BLOCK_PACKAGE + script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_save_then_load_in_a_fresh_process_gives_identical_outputs(tmp_path):
    config = hilbert_config(tasks=[{"name": "label", "type": "multiclass", "labels": ["a", "b", "c"]},
                                   {"name": "flag", "type": "binary", "labels": ["no", "yes"]}])
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
        assert type(config).__name__ == "HilbertConfig" and "modeling_hilbert" not in type(config).__module__.split(".")[0]
        classifier = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
        base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        assert not any(p.requires_grad for p in classifier.hilbert.audio_encoder.parameters())
        inputs = torch.load("inputs.pt", weights_only=True)
        with torch.no_grad():
            out = classifier(**inputs)
            joint = base(**inputs).joint_embeds
        torch.save({{"logits": out.logits, "joint": joint, "module": type(classifier).__module__}}, "outputs.pt")
        """
    )
    child = run_child(script, tmp_path)
    assert child.returncode == 0, child.stderr[-3000:]
    got = torch.load(tmp_path / "outputs.pt", weights_only=True)
    assert got["module"].startswith("transformers_modules.")  # loaded as remote code, not from this package
    for task in ("label", "flag"):
        torch.testing.assert_close(got["logits"][task], expected.logits[task], rtol=0, atol=0)
    torch.testing.assert_close(got["joint"], expected.joint_embeds, rtol=0, atol=0)
    saved = json.loads((folder / "config.json").read_text())
    assert set(saved["auto_map"]) >= {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"}


def test_every_shipped_file_is_saved_with_the_model(tmp_path):
    build = HilbertForSequenceClassification(hilbert_config())
    build.save_pretrained(tmp_path)
    saved = sorted(p.name for p in tmp_path.glob("*.py"))
    # the processor ships with the processor's save_pretrained, the rest with the model's
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
