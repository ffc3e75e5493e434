"""The contrastive memory (modeling_hilbert/memory_hilbert.py): extra negatives from earlier batches, keyed by
document. Its InfoNCE is checked against numpy loops; its bookkeeping against a plain-Python reference."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_losses import normalised_rows, t64
from test_model import projected
from tiny_models import feature_inputs, hilbert_config

from modeling_hilbert import HilbertConfig, HilbertForSequenceClassification
from modeling_hilbert.losses_hilbert import info_nce, reciprocal_dual_contrastive_loss, symmetric_info_nce_on
from modeling_hilbert.memory_hilbert import ContrastiveMemory


def np_info_nce_with(q: np.ndarray, k: np.ndarray, extra: np.ndarray, s: float) -> float:
    """-1/B sum_i log( exp(s q_i.k_i) / (sum_j exp(s q_i.k_j) + sum_l exp(s q_i.m_l)) ), as explicit loops."""
    total = 0.0
    for i in range(q.shape[0]):
        logits = [s * float(q[i] @ k[j]) for j in range(k.shape[0])] + [s * float(q[i] @ m) for m in extra]
        top = max(logits)
        total -= logits[i] - (top + math.log(sum(math.exp(v - top) for v in logits)))
    return total / q.shape[0]


def np_sym_with(x, y, extra_x, extra_y, s):
    return 0.5 * (np_info_nce_with(x, y, extra_y, s) + np_info_nce_with(y, x, extra_x, s))


# ----------------------------------------------------------------------------------------------- losses
@given(b=st.integers(1, 6), m=st.integers(0, 7), seed=st.integers(0, 10_000))
@settings(max_examples=40, deadline=None)
def test_info_nce_with_extra_negatives_matches_loops(b, m, seed):
    rng = np.random.default_rng(seed)
    q, k, extra = normalised_rows(rng, b, 5), normalised_rows(rng, b, 5), normalised_rows(rng, m, 5)
    got = info_nce(t64(q), t64(k), torch.tensor(3.0, dtype=torch.float64), t64(extra).reshape(m, 5))
    assert abs(got.item() - np_info_nce_with(q, k, extra, 3.0)) < 1e-10


def test_extra_negatives_raise_the_loss_and_a_single_document_can_be_contrasted():
    rng = np.random.default_rng(0)
    x, y, mx, my = (normalised_rows(rng, n, 6) for n in (4, 4, 5, 5))
    s = torch.tensor(5.0, dtype=torch.float64)
    alone, _ = symmetric_info_nce_on(t64(x), t64(y), s)
    more, _ = symmetric_info_nce_on(t64(x), t64(y), s, extra=(t64(mx), t64(my)))
    assert more.item() > alone.item()  # more candidates in every softmax denominator
    assert abs(more.item() - np_sym_with(x, y, mx, my, 5.0)) < 1e-10
    # one document of the batch has no in-batch negative, but the memory gives it some
    present = torch.tensor([True, False, False, False])
    skipped, count = symmetric_info_nce_on(t64(x), t64(y), s, present)
    assert count == 1 and skipped.item() == 0.0
    one, _ = symmetric_info_nce_on(t64(x), t64(y), s, present, extra=(t64(mx), t64(my)))
    assert abs(one.item() - np_sym_with(x[:1], y[:1], mx, my, 5.0)) < 1e-10


def test_reciprocal_dual_loss_uses_each_terms_own_extra_negatives():
    rng = np.random.default_rng(1)
    a, t, j = (normalised_rows(rng, 5, 4) for _ in range(3))
    ma, mja, mt, mjt = (normalised_rows(rng, n, 4) for n in (3, 3, 2, 2))
    s = torch.tensor(4.0, dtype=torch.float64)
    dual, aj, tj = reciprocal_dual_contrastive_loss(
        t64(a), t64(t), t64(j), s, audio_extra=(t64(ma), t64(mja)), text_extra=(t64(mt), t64(mjt))
    )
    assert abs(aj.item() - np_sym_with(a, j, ma, mja, 4.0)) < 1e-10
    assert abs(tj.item() - np_sym_with(t, j, mt, mjt, 4.0)) < 1e-10
    assert abs(dual.item() - 0.5 * (aj.item() + tj.item())) < 1e-12


# ------------------------------------------------------------------------------------------- bookkeeping
@given(
    size=st.integers(1, 6),
    batches=st.lists(st.lists(st.integers(0, 9), min_size=1, max_size=5), min_size=1, max_size=8),
)
@settings(max_examples=60, deadline=None)
def test_memory_holds_the_latest_vectors_of_the_most_recently_seen_documents(size, batches):
    """Reference: an OrderedDict in recency order, capped at `size`; a batch's rows are stored in order (a
    document twice in one batch keeps its last row)."""
    memory = ContrastiveMemory(size, 2)
    reference: OrderedDict[int, float] = OrderedDict()
    value = 0.0
    for step, ids in enumerate(batches):
        rows = torch.arange(len(ids), dtype=torch.float32) + value
        vectors = torch.stack([rows, -rows], dim=1)
        memory.update(
            torch.tensor(ids),
            vectors,
            vectors,
            vectors,
            torch.ones(len(ids), dtype=torch.bool),
            torch.ones(len(ids), dtype=torch.bool),
        )
        for row, key in enumerate(ids):
            reference.pop(key, None)
            reference[key] = float(rows[row])
            while len(reference) > size:
                reference.popitem(last=False)
        value += 100.0
        held = {int(k): float(v) for k, v, f in zip(memory.ids, memory.joint[:, 0], memory.filled) if f}
        # eviction is by step: documents stored in the same step are equally recent, so when several of them are
        # candidates any may go. Compare only where the reference's choice is not a tie.
        assert len(held) == len(reference), (step, held, reference)
        for key in set(held) & set(reference):
            assert held[key] == reference[key]
    # negatives never include a document of the current batch
    last = torch.tensor(batches[-1])
    negatives = memory.negatives(last)
    assert len(negatives.joint) == len(memory) - int(torch.isin(memory.ids[memory.filled], last).sum())


def test_memory_eviction_takes_the_least_recently_updated_document():
    memory = ContrastiveMemory(3, 1)
    yes = torch.ones(2, dtype=torch.bool)

    def put(ids, value):
        v = torch.full((len(ids), 1), float(value))
        memory.update(torch.tensor(ids), v, v, v, yes[: len(ids)], yes[: len(ids)])

    put([1, 2], 1)
    put([3], 2)
    put([1], 3)  # 1 refreshed: 2 is now the oldest
    put([4], 4)
    held = sorted(int(i) for i in memory.ids[memory.filled])
    assert held == [1, 3, 4]
    assert float(memory.joint[memory.ids == 1][0]) == 3.0


def test_rows_that_do_not_count_are_not_stored_and_flags_are_kept():
    memory = ContrastiveMemory(4, 2)
    v = torch.randn(3, 2)
    memory.update(
        torch.tensor([7, 8, 9]),
        v,
        v,
        v,
        has_audio=torch.tensor([True, False, True]),
        has_text=torch.tensor([False, True, True]),
        counts=torch.tensor([True, True, False]),
    )
    negatives = memory.negatives(torch.tensor([0]))
    assert len(memory) == 2 and len(negatives.joint) == 2
    assert negatives.has_audio.tolist() == [True, False] and negatives.has_text.tolist() == [False, True]
    memory.reset()
    assert len(memory) == 0


def test_config_checks_the_memory_size():
    for bad in (-1, 1.5, True, "8"):
        with pytest.raises(ValueError, match="contrastive_memory_size"):
            HilbertConfig(contrastive_memory_size=bad)
    assert HilbertConfig().contrastive_memory_size == 0


# ------------------------------------------------------------------------------------------------ model
def memory_model(size=16):
    torch.manual_seed(0)
    config = hilbert_config(with_encoders=False, contrastive_memory_size=size)
    return HilbertForSequenceClassification(config).double().train()


def test_a_training_step_contrasts_with_the_other_documents_held_and_keeps_mi_in_batch():
    """Step 1 stores documents 0-3; step 2 (documents 2-5) contrasts with 0 and 1 only (2 and 3 are in the batch:
    never their own negatives). The loss matches numpy over batch + held vectors; the MI estimates are in-batch."""
    from test_losses import np_sym_info_nce

    model = memory_model()
    feats = feature_inputs(model.config, batch=4, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 1])
    first = model(**feats, labels=labels, document_ids=torch.tensor([0, 1, 2, 3]))
    assert first.memory_documents.item() == 0
    stored = projected(model, first)
    feats2 = feature_inputs(model.config, batch=4, dtype=torch.float64, seed=1)
    second = model(**feats2, labels=labels, document_ids=torch.tensor([2, 3, 4, 5]))
    assert second.memory_documents.item() == 2
    pa, pt, pj = projected(model, second)
    ma, mt, mj = (x[:2] for x in stored)
    s = model.hilbert.logit_scale.exp().item()
    expected = 0.5 * (np_sym_with(pa, pj, ma, mj, s) + np_sym_with(pt, pj, mt, mj, s))
    assert abs(second.contrastive_loss.item() - expected) < 1e-10
    assert abs(second.mi_audio_joint.item() - (math.log(4) - np_sym_info_nce(pa, pj, s))) < 1e-10
    # gradients reach only the live batch: the held vectors are constants
    second.loss.backward()
    assert not model.hilbert.contrastive_memory.joint.requires_grad
    assert len(model.hilbert.contrastive_memory) == 6


def test_without_document_ids_or_in_evaluation_the_memory_is_neither_used_nor_filled():
    model = memory_model()
    plain = HilbertForSequenceClassification(hilbert_config(with_encoders=False, contrastive_memory_size=0)).double()
    plain.load_state_dict(model.state_dict())
    feats = feature_inputs(model.config, batch=4, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 1])
    model(**feats, labels=labels, document_ids=torch.arange(4))  # fills the memory
    model.eval()
    out = model(**feats, labels=labels, document_ids=torch.arange(4) + 10)
    reference = plain.eval()(**feats, labels=labels)
    assert out.memory_documents is None and len(model.hilbert.contrastive_memory) == 4
    assert abs(out.contrastive_loss.item() - reference.contrastive_loss.item()) < 1e-12
    model.train()
    no_ids = model(**feats, labels=labels)
    assert no_ids.memory_documents is None and len(model.hilbert.contrastive_memory) == 4


def test_the_memory_is_not_saved_and_a_loaded_model_starts_empty(tmp_path):
    """Regression: transformers 5 builds a loaded model's buffers uninitialised; the memory's buffers must be
    reset by `_init_weights` (they held garbage: filled entries with values ~1e16) and never be in the weights."""
    model = memory_model()
    feats = feature_inputs(model.config, batch=4, dtype=torch.float64)
    model(**feats, labels=torch.tensor([0, 1, 2, 1]), document_ids=torch.arange(4))
    assert len(model.hilbert.contrastive_memory) == 4
    assert not any("contrastive_memory" in key for key in model.state_dict())
    model.float().save_pretrained(tmp_path)
    loaded, info = HilbertForSequenceClassification.from_pretrained(tmp_path, output_loading_info=True)
    memory = loaded.hilbert.contrastive_memory
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert len(memory) == 0 and memory.step.item() == 0
    assert (memory.ids == -1).all() and memory.joint.abs().sum().item() == 0.0
