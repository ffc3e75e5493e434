"""A memory of earlier batches' contrastive-space vectors: more negatives than the batch holds.

With ~50 training documents and a batch of 8, each InfoNCE term contrasts a document with 7 others, a weak,
noisy signal. Large-batch contrastive learning fixes this with bigger batches; without the documents to fill them,
the usual alternatives keep detached vectors of earlier batches as extra negatives: MoCo's queue (He et al. 2020),
the memory bank of Wu et al. (2018), Cross-Batch Memory (Wang et al. 2020, which shows that vectors a few steps old
are still good negatives once the embedding drifts slowly, as a head on frozen features does).

Here the memory is keyed by document: it keeps the latest vectors of each document seen (`document_ids`, stable per
document), so with a memory at least as large as the training set every step contrasts against every training
document, and a document is never its own negative (a plain FIFO queue would hold an older copy of the very
document being contrasted, a false negative, once per epoch: on small data that is every step). The oldest entry
makes room when the memory is full.

The vectors are detached: gradients flow only through the current batch (as in MoCo and XBM). The buffers are not
saved with the model (`persistent=False`): a loaded or resumed model starts with an empty memory, which the first
epoch refills.

Ships to the Hub with the model: imports only `torch` and the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class MemoryNegatives:
    """Entries of the memory that are not in the current batch.

    audio, text, joint: `(M, P)` projected, L2-normalised vectors (detached).
    has_audio, has_text: `(M,)` bool, the entries that had each modality (the others' vectors of it mean nothing).
    """

    audio: torch.Tensor
    text: torch.Tensor
    joint: torch.Tensor
    has_audio: torch.Tensor
    has_text: torch.Tensor


class ContrastiveMemory(nn.Module):
    """Latest projected audio/text/joint vectors of up to `size` documents, keyed by document id.

    Args:
        size: how many documents it holds (>= 1).
        dim: the contrastive space's dimension P.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        if size < 1:
            raise ValueError(f"A contrastive memory needs a size >= 1, got {size}.")
        self.size = size
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long), persistent=False)
        self.register_buffer("filled", torch.zeros(size, dtype=torch.bool), persistent=False)
        self.register_buffer("last_update", torch.zeros(size, dtype=torch.long), persistent=False)
        self.register_buffer("step", torch.zeros((), dtype=torch.long), persistent=False)
        for name in ("audio", "text", "joint"):
            self.register_buffer(name, torch.zeros(size, dim), persistent=False)
        for name in ("has_audio", "has_text"):
            self.register_buffer(name, torch.zeros(size, dtype=torch.bool), persistent=False)

    def __len__(self) -> int:
        return int(self.filled.sum())

    def reset(self) -> None:
        """Forget every entry (a new training run)."""
        self.filled.zero_()
        self.ids.fill_(-1)
        self.last_update.zero_()
        self.step.zero_()

    def negatives(self, batch_ids: torch.Tensor) -> MemoryNegatives:
        """The entries whose document is not in `batch_ids` `(B,)`: the current batch's documents are contrasted
        with their live vectors, never with their own older ones."""
        keep = self.filled & ~torch.isin(self.ids, batch_ids.to(self.ids.device))
        return MemoryNegatives(
            self.audio[keep], self.text[keep], self.joint[keep], self.has_audio[keep], self.has_text[keep]
        )

    @torch.no_grad()
    def update(
        self,
        batch_ids: torch.Tensor,
        audio: torch.Tensor,
        text: torch.Tensor,
        joint: torch.Tensor,
        has_audio: torch.Tensor,
        has_text: torch.Tensor,
        counts: torch.Tensor | None = None,
    ) -> None:
        """Store the batch's vectors: a document already held gets its slot overwritten, a new one takes an empty
        slot or, when full, the least recently updated one.

        Args:
            batch_ids: `(B,)` int64 document ids.
            audio, text, joint: `(B, P)` projected vectors.
            has_audio, has_text: `(B,)` bool.
            counts: `(B,)` bool, the rows to store (False: a repeat that only fills a batch). None = all.
        """
        self.step += 1
        for row in range(batch_ids.shape[0]):
            if counts is not None and not bool(counts[row]):
                continue
            key = int(batch_ids[row])
            held = (self.ids == key) & self.filled
            if held.any():
                slot = int(held.nonzero()[0])
            elif not self.filled.all():
                slot = int((~self.filled).nonzero()[0])
            else:
                slot = int(self.last_update.argmin())
            self.ids[slot] = key
            self.filled[slot] = True
            self.last_update[slot] = self.step
            self.audio[slot] = audio[row].detach().to(self.audio.dtype)
            self.text[slot] = text[row].detach().to(self.text.dtype)
            self.joint[slot] = joint[row].detach().to(self.joint.dtype)
            self.has_audio[slot] = bool(has_audio[row])
            self.has_text[slot] = bool(has_text[row])
