"""Per-document dropout and the repeats filter: what makes one process and several train the same model.

Issue 11 items 9 and 10: documents that accelerate repeats to fill the last batch (`even_batches`) must count
nowhere, and dropout masks must not depend on batch mates or on the number of processes.
"""

from __future__ import annotations

import hashlib

import torch
from tiny_models import feature_inputs, hilbert_config
from torch import nn

from hilbert_app.training.trainer import HilbertTrainer
from modeling_hilbert import HilbertForSequenceClassification
from modeling_hilbert.dropout_hilbert import DocumentDropout, document_dropout, document_key, mix_seed


def test_a_documents_mask_ignores_batch_mates_position_and_padding():
    layer = DocumentDropout(0.5).train()
    a, b, c = torch.randn(3, 4, 6).unbind(0)
    torch.manual_seed(7)
    with document_dropout(torch.tensor([11, 22])):
        first = layer(torch.stack([a, b]))
    torch.manual_seed(7)  # same step seed: the same masks for the same documents, wherever they sit
    with document_dropout(torch.tensor([33, 11, 22])):
        padded = torch.cat([torch.stack([c, a, b]), torch.zeros(3, 2, 6)], dim=1)  # 2 more padded segments
        second = layer(padded)
    torch.testing.assert_close(second[1, :4], first[0])
    torch.testing.assert_close(second[2, :4], first[1])
    # the kept elements are scaled by 1/(1-p), the others are 0
    kept = first[0] != 0
    torch.testing.assert_close(first[0][kept], a[kept] * 2.0)


def test_masks_change_with_the_step_and_keep_the_rate():
    layer = DocumentDropout(0.3).train()
    x = torch.ones(2, 200, 50)
    with document_dropout(torch.tensor([1, 2])):
        one = layer(x)
    with document_dropout(torch.tensor([1, 2])):
        two = layer(x)
    assert not torch.equal(one, two)  # a new step seed from the global generator each time
    rate = (one == 0).float().mean().item()
    assert abs(rate - 0.3) < 0.01, rate  # 20,000 draws: the binomial's sd is 0.003
    assert not torch.equal(one[0], one[1])  # two documents, two masks


def test_outside_the_block_or_in_eval_it_is_plain_dropout():
    layer = DocumentDropout(0.5)
    x = torch.randn(3, 8)
    torch.manual_seed(0)
    expected = nn.Dropout(0.5).train()(x)
    torch.manual_seed(0)
    torch.testing.assert_close(layer.train()(x), expected)
    with document_dropout(torch.tensor([1, 2, 3])):
        assert torch.equal(layer.eval()(x), x)


def test_keys_and_seeds_are_stable():
    assert document_key("doc_001") == document_key("doc_001") != document_key("doc_002")
    # pinned (no process-dependent hash() salt): the first 8 bytes of sha256("doc_001"), little-endian, >> 1
    assert document_key("doc_001") == int.from_bytes(hashlib.sha256(b"doc_001").digest()[:8], "little") >> 1
    assert document_key("doc_001") == 5010561717659815492
    assert 0 <= mix_seed(1, 2, 3) < 2**63 and mix_seed(1, 2, 3) != mix_seed(1, 3, 2)


def _model(**kw):
    config = hilbert_config(dropout=0.3, **kw)
    torch.manual_seed(0)
    return HilbertForSequenceClassification(config).train()


def test_the_model_gives_each_document_its_own_masks():
    model = _model()
    batch = feature_inputs(model.config, batch=3, segments=4)
    ids = torch.tensor([101, 202, 303])
    torch.manual_seed(5)
    whole = model(**batch, document_ids=ids).joint_embeds
    reversed_batch = {k: v.flip(0) for k, v in batch.items()}
    torch.manual_seed(5)
    flipped = model(**reversed_batch, document_ids=ids.flip(0)).joint_embeds
    torch.testing.assert_close(flipped.flip(0), whole)


def test_masked_documents_count_in_no_loss_term():
    """A batch with a repeated document masked out gives exactly the losses of the batch without it."""
    model = _model(moe_top_k=None, moe_balance_weight=0.1).eval()  # eval: no dropout, only the loss terms
    batch = feature_inputs(model.config, batch=4, segments=3, dtype=torch.float64)
    model = model.to(torch.float64)
    labels = torch.tensor([0, 1, 2, 1])
    reference = model(**batch, labels=labels)
    repeated = {k: torch.cat([v, v[:2]]) for k, v in batch.items()}  # rows 0 and 1 again, as accelerate pads
    mask = torch.tensor([True, True, True, True, False, False])
    got = model(**repeated, labels=torch.cat([labels, labels[:2]]), document_mask=mask)
    for name in ("loss", "classification_loss", "contrastive_loss", "cka_loss", "mi_loss", "moe_balance_loss"):
        torch.testing.assert_close(getattr(got, name), getattr(reference, name), msg=name)
    unmasked = model(**repeated, labels=torch.cat([labels, labels[:2]]))
    assert not torch.allclose(unmasked.contrastive_loss, reference.contrastive_loss)  # the bug the mask removes


class _Accelerator:
    num_processes, process_index = 1, 0


def test_the_trainer_marks_documents_already_seen_in_the_epoch():
    trainer = HilbertTrainer.__new__(HilbertTrainer)  # only _mark_repeats is exercised: no full set-up needed
    trainer.accelerator = _Accelerator()
    seen: set[int] = set()
    first = trainer._mark_repeats({"document_ids": torch.tensor([1, 2, 3])}, seen)
    assert "document_mask" not in first  # nothing repeated: no mask at all
    last = trainer._mark_repeats({"document_ids": torch.tensor([4, 1, 4])}, seen)  # 1 from before, 4 twice
    assert last["document_mask"].tolist() == [True, False, False]
    seen.clear()  # a new epoch
    assert "document_mask" not in trainer._mark_repeats({"document_ids": torch.tensor([1, 2])}, seen)
