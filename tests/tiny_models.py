"""Tiny encoders and HILBERT configs built from configs (no downloads), shared by the tests.

`save_checkpoint` saves a tiny backbone as users have it: its FULL pretrained class (`WhisperForConditionalGeneration`,
`T5ForConditionalGeneration`, ...) with `save_pretrained`, beside its feature extractor or tokenizer (tiny tokenizers
trained offline with `tokenizers` on a few sentences).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertConfig, HubertConfig, RobertaConfig, T5Config, Wav2Vec2Config, WhisperConfig

from modeling_hilbert import HilbertConfig

N_MELS = 16
WHISPER_FULL = 100  # 2 * max_source_positions: the tiny Whisper's "30 s"
VOCAB = 100


def whisper_config() -> WhisperConfig:
    return WhisperConfig(
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=64,
        num_mel_bins=N_MELS,
        max_source_positions=WHISPER_FULL // 2,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=32,
        vocab_size=VOCAB,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        max_target_positions=16,
    )


def _wav2vec_like(cls, feat_extract_norm: str):
    # "layer": the large/lv60 layout (LayerNorm in every conv layer, pre-LN transformer); "group": the base layout
    # (wav2vec2-base, hubert-base: one GroupNorm over time after the first conv, post-LN transformer).
    return cls(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm=feat_extract_norm,
        do_stable_layer_norm=feat_extract_norm == "layer",
        vocab_size=VOCAB,
        mask_time_prob=0.0,
    )


def hubert_config(feat_extract_norm: str = "layer") -> HubertConfig:
    return _wav2vec_like(HubertConfig, feat_extract_norm)


def wav2vec2_config(feat_extract_norm: str = "layer") -> Wav2Vec2Config:
    return _wav2vec_like(Wav2Vec2Config, feat_extract_norm)


def bert_config() -> BertConfig:
    return BertConfig(
        hidden_size=24,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=48,
        vocab_size=VOCAB,
        max_position_embeddings=64,
    )


def roberta_config() -> RobertaConfig:
    return RobertaConfig(
        hidden_size=24,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=48,
        vocab_size=VOCAB,
        max_position_embeddings=64,
        pad_token_id=1,
    )


def t5_config() -> T5Config:
    return T5Config(d_model=24, d_kv=12, d_ff=48, num_layers=1, num_decoder_layers=1, num_heads=2, vocab_size=VOCAB)


AUDIO_CONFIGS = {
    "whisper": whisper_config,
    "hubert": hubert_config,
    "wav2vec2": wav2vec2_config,
    "hubert_group": lambda: hubert_config("group"),
    "wav2vec2_group": lambda: wav2vec2_config("group"),
}
TEXT_CONFIGS = {"bert": bert_config, "roberta": roberta_config, "t5": t5_config}


def hilbert_config(audio="whisper", text="bert", **overrides) -> HilbertConfig:
    """A small HILBERT config (dropout off so that outputs are deterministic)."""
    kwargs = dict(
        audio_config=AUDIO_CONFIGS[audio](),
        text_config=TEXT_CONFIGS[text](),
        hidden_size=16,
        num_attention_heads=2,
        num_cross_attention_layers=2,
        intermediate_size=32,
        pooling_heads=2,
        pooling_hidden_size=8,
        projection_dim=8,
        num_experts=3,
        expert_hidden_size=16,
        num_labels=3,
        dropout=0.0,
        encoder_batch_size=4,
        # Ungated: an untrained gated block is the identity (its gates start at 0), so a test of a freshly built
        # model would not exercise the cross-attention at all. The gate has its own tests
        # (test_small_data_methods.py); models trained by train.py in the tests use the default (gated).
        cross_attention_gate=False,
    )
    kwargs.update(overrides)
    return HilbertConfig(**kwargs)


def raw_inputs(config: HilbertConfig, batch=3, segments=4, frames=WHISPER_FULL, samples=800, tokens=7, seed=0) -> dict:
    """Random raw encoder inputs with some padded frames/tokens and one padded segment per modality."""
    g = torch.Generator().manual_seed(seed)
    inputs = {}
    if config.audio_config.model_type == "whisper":
        inputs["input_features"] = torch.randn(batch, segments, N_MELS, frames, generator=g)
        mask = torch.ones(batch, segments, frames, dtype=torch.long)
        mask[0, 1, frames // 2 :] = 0  # a short segment
    else:
        inputs["input_values"] = torch.randn(batch, segments, samples, generator=g)
        mask = torch.ones(batch, segments, samples, dtype=torch.long)
        mask[0, 1, samples // 2 :] = 0
    if batch > 1:
        mask[1, segments - 1] = 0  # document 1 has one segment fewer
    inputs["audio_attention_mask"] = mask
    inputs["input_ids"] = torch.randint(3, VOCAB, (batch, segments, tokens), generator=g)
    tmask = torch.ones(batch, segments, tokens, dtype=torch.long)
    if batch > 2:
        tmask[2, 0, 4:] = 0  # a short text segment
    if batch > 1:
        tmask[1, segments - 1] = 0
    inputs["attention_mask"] = tmask
    inputs["segment_times"] = torch.cumsum(torch.rand(batch, segments, 2, generator=g) * 3, dim=1)
    return inputs


def feature_inputs(config: HilbertConfig, batch=4, segments=5, seed=0, dtype=torch.float32) -> dict:
    """Random precomputed segment features with masks."""
    from modeling_hilbert.encoders_hilbert import encoder_hidden_size

    g = torch.Generator().manual_seed(seed)
    audio_mask = torch.ones(batch, segments, dtype=torch.bool)
    audio_mask[0, -2:] = False
    text_mask = audio_mask.clone()
    if batch > 1:
        text_mask[1, 0] = False  # a segment without text
    return {
        "audio_segment_embeds": torch.randn(
            batch, segments, encoder_hidden_size(config.audio_config), generator=g, dtype=dtype
        ),
        "text_segment_embeds": torch.randn(
            batch, segments, encoder_hidden_size(config.text_config), generator=g, dtype=dtype
        ),
        "audio_segment_mask": audio_mask,
        "text_segment_mask": text_mask,
        "segment_times": torch.cumsum(torch.rand(batch, segments, 2, generator=g, dtype=dtype) * 3, dim=1),
    }


# ------------------------------------------------------------------------ checkpoints saved as users have them
SENTENCES = [
    "hello there",
    "I read the words",
    "a much longer sentence with many words",
    "one two three four five six seven",
    "please describe how you have been sleeping over the last two weeks",
    "the stock market fell sharply today",
    "thanks and bye",
    "only one segment here",
    "a long single turn of speech",
    "left right calm steady urgent loud",
]
MAX_TEXT_TOKENS = 60  # the tiny BERT/RoBERTa have 64 position embeddings (RoBERTa's first two are its padding offset)


def tiny_tokenizer(kind: str):
    """A tokenizer trained on `SENTENCES` (milliseconds), as a `PreTrainedTokenizerFast` saved as tokenizer.json.

    kind: "wordpiece" (BERT: lower-cased, [CLS] x [SEP]), "bpe" (RoBERTa: byte-level BPE, <s> x </s>) or "unigram"
    (T5's SentencePiece: Metaspace pieces, x </s>, with T5's ids pad=0, eos=1, unk=2).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = SENTENCES * 3
    if kind == "wordpiece":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=120, special_tokens=specials))
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
        )
        names = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
        max_length = MAX_TEXT_TOKENS
    elif kind == "bpe":
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(
            corpus,
            trainers.BpeTrainer(
                vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
            ),
        )
        tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
        names = dict(
            bos_token="<s>",
            pad_token="<pad>",
            eos_token="</s>",
            unk_token="<unk>",
            mask_token="<mask>",
            cls_token="<s>",
            sep_token="</s>",
        )
        max_length = MAX_TEXT_TOKENS
    elif kind == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        tok.train_from_iterator(
            corpus,
            trainers.UnigramTrainer(vocab_size=100, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"),
        )
        tok.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
        )
        names = dict(pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
        max_length = 512
    else:
        raise ValueError(kind)
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_length, **names)


def _waveform_extractor(return_attention_mask: bool):
    from transformers import Wav2Vec2FeatureExtractor

    # wav2vec2-base / hubert-base ship return_attention_mask=False (they were trained without masks), the large
    # layer-norm checkpoints True; HilbertProcessor asks for the mask either way.
    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=return_attention_mask,
    )


def _text_config(base, tokenizer):
    config = base()
    config.vocab_size = len(tokenizer)
    if hasattr(config, "pad_token_id"):
        config.pad_token_id = tokenizer.pad_token_id
    return config


def _build_checkpoint(name: str):
    """(full-class model, feature extractor or tokenizer) of a named tiny backbone (see CHECKPOINTS)."""
    from transformers import (
        BertModel,
        HubertForCTC,
        HubertModel,
        RobertaModel,
        T5EncoderModel,
        T5ForConditionalGeneration,
        Wav2Vec2ForCTC,
        Wav2Vec2Model,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    if name == "whisper":
        # chunk_length=1: the tiny Whisper's window is 100 mel frames (1 s), like the real one's 3000 (30 s)
        return WhisperForConditionalGeneration(whisper_config()), WhisperFeatureExtractor(
            feature_size=N_MELS, chunk_length=1
        )
    if name in ("hubert_group", "hubert_layer", "wav2vec2_group", "wav2vec2_layer"):
        family, norm = name.split("_")
        cls, config = (HubertModel, hubert_config) if family == "hubert" else (Wav2Vec2Model, wav2vec2_config)
        return cls(config(norm)), _waveform_extractor(return_attention_mask=norm == "layer")
    if name in ("wav2vec2_ctc", "hubert_ctc"):  # fine-tuned ASR checkpoints: wav2vec2-base-960h, hubert-large-ls960-ft
        cls, config = (
            (Wav2Vec2ForCTC, wav2vec2_config("group"))
            if name == "wav2vec2_ctc"
            else (HubertForCTC, hubert_config("layer"))
        )
        return cls(config), _waveform_extractor(return_attention_mask=name == "hubert_ctc")
    if name == "bert":
        tokenizer = tiny_tokenizer("wordpiece")
        return BertModel(_text_config(bert_config, tokenizer)), tokenizer
    if name == "roberta":
        tokenizer = tiny_tokenizer("bpe")
        config = _text_config(roberta_config, tokenizer)
        config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
        return RobertaModel(config), tokenizer
    if name in ("t5", "t5_encoder"):
        tokenizer = tiny_tokenizer("unigram")
        config = _text_config(t5_config, tokenizer)
        config.eos_token_id, config.decoder_start_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
        return (T5ForConditionalGeneration if name == "t5" else T5EncoderModel)(config), tokenizer
    raise ValueError(f"unknown checkpoint {name!r}; one of {sorted(CHECKPOINTS)}")


# name -> the full class it is saved as
CHECKPOINTS = {
    "whisper": "WhisperForConditionalGeneration",
    "hubert_group": "HubertModel",
    "hubert_layer": "HubertModel",
    "wav2vec2_group": "Wav2Vec2Model",
    "wav2vec2_layer": "Wav2Vec2Model",
    "wav2vec2_ctc": "Wav2Vec2ForCTC",
    "hubert_ctc": "HubertForCTC",
    "bert": "BertModel",
    "roberta": "RobertaModel",
    "t5": "T5ForConditionalGeneration",
    "t5_encoder": "T5EncoderModel",
}


def save_checkpoint(name: str, folder: Path, seed: int = 0) -> Path:
    """Save the tiny backbone `name` (a key of CHECKPOINTS) to `folder` as its full class, with its feature extractor
    or tokenizer; deterministic weights (`seed`). Returns the folder."""
    folder = Path(folder)
    torch.manual_seed(seed)
    model, preprocessor = _build_checkpoint(name)
    assert type(model).__name__ == CHECKPOINTS[name]
    model.save_pretrained(folder)
    preprocessor.save_pretrained(folder)
    return folder
