"""Dropout whose masks depend on the document, not on its batch mates, its position in the batch or its process.

Why: with `nn.Dropout`, each process draws masks from its own random stream for its own share of the batch, so two
processes training on the same global batch draw other masks than one process does, and the trained models differ.
`DocumentDropout` draws each document's mask from a generator seeded by (a per-step seed shared by every process,
the document's id, the call's index within the forward), so one process and several processes on the same global
batch apply the same masks to every document, and the results agree (tests/test_training.py). The per-step seed comes
from torch's global generator, which `set_seed` seeds alike on every process and which checkpoints save, so resuming
draws the same masks too.

It is active only inside `document_dropout(document_ids)` (the model enters it when the batch carries
`document_ids`, as HILBERT's trainer gives them) and in training mode; otherwise it is plain `nn.Dropout`.
Masks are drawn per element in row-major order, so a document's real segments get the same mask whatever the
padded length of its batch. Attention-probability dropout (`attention_dropout`, 0 by default) stays batch-dependent.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from collections.abc import Iterator

import torch
from torch import nn

_MASK64 = (1 << 64) - 1
_ACTIVE: contextvars.ContextVar[_DropoutState | None] = contextvars.ContextVar("hilbert_document_dropout", default=None)


def mix_seed(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 steps): nearby inputs give unrelated seeds."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (int(value) & _MASK64)) & _MASK64
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        state = z ^ (z >> 31)
    return state >> 1


def document_key(document_id: str | int) -> int:
    """A stable 63-bit integer for a document id (its `id` column): the same on every machine and process."""
    digest = hashlib.sha256(str(document_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class _DropoutState:
    def __init__(self, document_ids: list[int], step_seed: int):
        self.document_ids = document_ids
        self.step_seed = step_seed
        self.calls = 0

    def next_seeds(self) -> list[int]:
        """One seed per document for the next dropout call of this forward (calls run in a fixed order)."""
        self.calls += 1
        return [mix_seed(self.step_seed, self.calls, doc) for doc in self.document_ids]


@contextlib.contextmanager
def document_dropout(document_ids: torch.Tensor | None, enabled: bool = True) -> Iterator[None]:
    """Within this block, `DocumentDropout` layers draw per-document masks for the documents `document_ids` `(B,)`.

    Draws one per-step seed from torch's global generator on entry (the same on every process: see the module
    docstring). Nested blocks keep the outer one's masks. Does nothing when `document_ids` is None or not `enabled`.
    """
    if document_ids is None or not enabled or _ACTIVE.get() is not None:
        yield
        return
    step_seed = int(torch.randint(0, 2**62, (1,)).item())
    token = _ACTIVE.set(_DropoutState([int(i) for i in document_ids.reshape(-1).tolist()], step_seed))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


class DocumentDropout(nn.Dropout):
    """`nn.Dropout(p)` that, inside `document_dropout`, draws row b's mask from its document's own generator.

    Input `(B, ...)` with B the documents of the active block; output the same shape, scaled by 1/(1-p) as usual.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:  # before the context variable: torch.compile cannot trace its read
            return super().forward(x)
        state = _ACTIVE.get()
        if state is None or x.shape[0] != len(state.document_ids):
            return super().forward(x)
        keep = 1.0 - self.p
        masks = []
        for seed in state.next_seeds():
            generator = torch.Generator(device="cpu").manual_seed(seed)
            masks.append(torch.rand(x.shape[1:], generator=generator) < keep)
        mask = torch.stack(masks).to(device=x.device)
        return x * mask.to(x.dtype) / keep
