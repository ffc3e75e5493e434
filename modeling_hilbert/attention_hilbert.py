"""Cross-modal attention: audio segments attend to text segments and text segments attend to audio segments.

Ships to the Hub with the model: imports only `torch`.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .dropout_hilbert import DocumentDropout


class MaskedMultiHeadAttention(nn.Module):
    """Multi-head attention of queries over keys/values with a key padding mask.

    A query whose document has no real key at all (e.g. a recording without any transcript text) gets a zero output
    instead of the NaN that a softmax over nothing would give; the residual connection then carries its input.

    Args:
        hidden_size: d (queries and keys share it).
        num_heads: h; d must be divisible by h.
        dropout: dropout on the attention probabilities (training only).
    """

    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.output = nn.Linear(hidden_size, hidden_size)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.num_heads, width // self.num_heads).transpose(1, 2)  # (B, h, L, d/h)

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            queries: `(B, Sq, d)`.
            keys: `(B, Sk, d)` (also the values).
            key_mask: `(B, Sk)` bool, True for real keys; None means all real.
            return_weights: also return the attention probabilities softmax(q k^T / sqrt(d/h)) `(B, h, Sq, Sk)`
                (zero at padded keys, and everywhere for a document without any real key). SDPA does not give
                them, so this path computes the attention explicitly (same result to float rounding).

        Returns:
            `(B, Sq, d)`, and the weights when `return_weights`.
        """
        attn_mask, has_key = None, None
        if key_mask is not None:
            key_mask = key_mask.bool()
            # The mask only adds -inf to the scores: NaN or huge padded keys would still poison them. Zero them.
            keys = keys.masked_fill(~key_mask.unsqueeze(-1), 0.0)
            has_key = key_mask.any(dim=-1)  # (B,)
            # Rows without any real key would be NaN: let them attend everywhere, then zero their output below.
            safe_mask = key_mask | ~has_key.unsqueeze(-1)
            attn_mask = safe_mask[:, None, None, :]  # (B, 1, 1, Sk), broadcast over heads and queries
        q, k, v = (
            self._split_heads(self.query(queries)),
            self._split_heads(self.key(keys)),
            self._split_heads(self.value(keys)),
        )
        weights = None
        if return_weights:
            scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, h, Sq, Sk)
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            if has_key is not None:  # what the output sees: nothing for a document without keys
                weights = weights * has_key[:, None, None, None].to(weights.dtype)
            probs = F.dropout(weights, self.dropout) if self.training and self.dropout > 0 else weights
            out = probs @ v
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
            )
        out = out.transpose(1, 2).flatten(2)  # (B, Sq, d)
        out = self.output(out)
        if has_key is not None:
            out = out * has_key[:, None, None].to(out.dtype)
        return (out, weights) if return_weights else out


class CrossAttentionBlock(nn.Module):
    """Pre-LayerNorm residual block: x <- x + Attn(LN(x), LN(context)); x <- x + FFN(LN(x)).

    With `gated=True` each residual branch is scaled by a learnt scalar gate tanh(g), g = 0 at initialisation
    (as Flamingo's gated cross-attention, Alayrac et al. 2022):

        x <- x + tanh(g_attn) * Attn(LN(x), LN(context));   x <- x + tanh(g_ffn) * FFN(LN(x))

    so the block starts as the identity and the model starts from the two unimodal streams (the late-fusion head
    that is hard to beat on small data), moving the gates away from 0 only as far as the cross-modal path helps the
    loss. With ~50 documents an ungated block mixes the streams from the first step and costs accuracy.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        dropout: float,
        attention_dropout: float,
        gated: bool = False,
    ):
        super().__init__()
        self.gated = gated
        if gated:  # zeros here and in HilbertPreTrainedModel._init_weights (a reload on the meta device re-inits)
            self.attention_gate = nn.Parameter(torch.zeros(()))
            self.ffn_gate = nn.Parameter(torch.zeros(()))
        self.query_norm = nn.LayerNorm(hidden_size)
        self.context_norm = nn.LayerNorm(hidden_size)
        self.attention = MaskedMultiHeadAttention(hidden_size, num_heads, attention_dropout)
        self.ffn_norm = nn.LayerNorm(hidden_size)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_size, intermediate_size),
            nn.GELU(),
            DocumentDropout(dropout),
            nn.Linear(intermediate_size, hidden_size),
        )
        self.dropout = DocumentDropout(dropout)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None, return_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x `(B, Sq, d)` attends to context `(B, Sk, d)` masked by context_mask `(B, Sk)`; returns `(B, Sq, d)`
        (and the attention weights `(B, h, Sq, Sk)` when `return_weights`)."""
        attended = self.attention(
            self.query_norm(x), self.context_norm(context), context_mask, return_weights=return_weights
        )
        attended, weights = attended if return_weights else (attended, None)
        if self.gated:
            x = x + torch.tanh(self.attention_gate) * self.dropout(attended)
            x = x + torch.tanh(self.ffn_gate) * self.dropout(self.ffn(self.ffn_norm(x)))
        else:
            x = x + self.dropout(attended)
            x = x + self.dropout(self.ffn(self.ffn_norm(x)))
        return (x, weights) if return_weights else x


class CrossModalAttentionLayer(nn.Module):
    """One layer of bidirectional cross-modal attention.

    Both directions read the *input* states of the layer (not each other's updated states), so the layer is
    symmetric in the two modalities:

        audio' = Block_a<-t(audio, text)      audio segments query the transcript
        text'  = Block_t<-a(text, audio)      transcript segments query the audio
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        dropout: float,
        attention_dropout: float,
        gated: bool = False,
    ):
        super().__init__()
        self.audio_from_text = CrossAttentionBlock(
            hidden_size, num_heads, intermediate_size, dropout, attention_dropout, gated
        )
        self.text_from_audio = CrossAttentionBlock(
            hidden_size, num_heads, intermediate_size, dropout, attention_dropout, gated
        )

    def forward(
        self,
        audio: torch.Tensor,
        text: torch.Tensor,
        audio_mask: torch.Tensor | None,
        text_mask: torch.Tensor | None,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """audio `(B, Sa, d)`, text `(B, St, d)` with masks `(B, Sa)`, `(B, St)` -> updated audio and text.

        With `return_weights`, also the weights of audio queries over text keys `(B, h, Sa, St)` and of text
        queries over audio keys `(B, h, St, Sa)`: (audio, text, audio_weights, text_weights)."""
        if not return_weights:
            return self.audio_from_text(audio, text, text_mask), self.text_from_audio(text, audio, audio_mask)
        new_audio, audio_weights = self.audio_from_text(audio, text, text_mask, return_weights=True)
        new_text, text_weights = self.text_from_audio(text, audio, audio_mask, return_weights=True)
        return new_audio, new_text, audio_weights, text_weights
