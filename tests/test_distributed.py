"""Two gloo processes on the CPU give the gradients of one process on the concatenated batch (float64)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import feature_inputs, hilbert_config

from modeling_hilbert import HilbertForSequenceClassification

HERE = Path(__file__).parent


@pytest.mark.slow
@pytest.mark.parametrize("memory", [0, 16], ids=["in-batch", "contrastive-memory"])
def test_two_process_gradients_equal_single_process_on_the_global_batch(tmp_path, memory):
    """With a contrastive memory, a warm-up forward first stores the documents under other ids on both ranks (ids
    gathered without gradient): every rank must hold the same memory as one process does."""
    tasks = [{"name": "label", "type": "multiclass", "labels": ["a", "b", "c"], "class_weights": [1.0, 3.0, 0.5]}]
    config = hilbert_config(
        tasks=tasks, dropout=0.0, moe_top_k=2, moe_balance_weight=0.1, contrastive_memory_size=memory
    )
    torch.manual_seed(0)
    model = HilbertForSequenceClassification(config).to(torch.float64)
    model.save_pretrained(tmp_path / "model")
    batch = feature_inputs(config, batch=6, segments=5, dtype=torch.float64)
    batch["labels"] = torch.tensor([0, 1, 2, 1, -100, 2])  # class weights + an unlabelled item: unequal normalisers
    # documents missing a modality (on different ranks): each modality's terms select their documents globally
    batch["audio_segment_mask"][1] = False
    batch["text_segment_mask"][4] = False
    batch["document_ids"] = torch.arange(6)
    torch.save(batch, tmp_path / "inputs.pt")

    # Reference: one process, the whole batch.
    reference = HilbertForSequenceClassification.from_pretrained(tmp_path / "model", dtype=torch.float64).train()
    if memory:
        with torch.no_grad():
            reference(**{**batch, "document_ids": batch["document_ids"] + 100})
    out = reference(**batch)
    if memory:
        assert out.memory_documents.item() == 6
    out.loss.backward()
    expected = {n: p.grad for n, p in reference.named_parameters() if p.requires_grad}
    assert all(g is not None for g in expected.values())

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE.parent))
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--main_process_port",
        "0",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(HERE / "distributed_grad_check.py"),
        "--model",
        str(tmp_path / "model"),
        "--inputs",
        str(tmp_path / "inputs.pt"),
        "--splits",
        "3,4",
        "--out",
        str(tmp_path / "grads.pt"),
        *(["--memory-warmup"] if memory else []),
    ]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    results = torch.load(tmp_path / "grads.pt", weights_only=True)
    for split in (3, 4):  # equal shares, then 4 + 2
        got = results[split]
        torch.testing.assert_close(got["loss"], out.loss.detach(), rtol=1e-12, atol=1e-12)
        assert set(got["grads"]) == set(expected)
        for name, grad in expected.items():
            # float64: a real mismatch (a missing factor of 2, a local-only term) is orders of magnitude above this
            torch.testing.assert_close(got["grads"][name], grad, rtol=1e-9, atol=1e-12, msg=f"{name} (split {split})")
