"""Tiny random backbones and real tokenizers for every supported family.

Each recipe builds a KerasHub backbone of the family (2 blocks, hidden size
16, a vocabulary of a few hundred tokens at most) and the family's own
tokenizer class: WordPiece vocabularies and byte-level BPE vocabularies are
written out here, SentencePiece models are trained here on a few sentences
with the `sentencepiece` package. `save_family_preset` saves both as a local
KerasHub preset directory with `save_to_preset`.

Nothing here imports Keras at module level (conftest.py chooses the backend
first); every function imports it lazily.
"""

import io

from helpers import (
    BERT_VOCAB,
    GPT2_WORDS,
    HIDDEN_DIM,
    MAX_SEQUENCE_LENGTH,
    NUM_LAYERS,
    TEXTS,
    gpt2_vocabulary_and_merges,
)

# Every family the toolkit supports, in FAMILIES' order, with its KerasHub
# backbone class name.
FAMILY_CLASSES = {
    "bert": "BertBackbone",
    "distil_bert": "DistilBertBackbone",
    "roberta": "RobertaBackbone",
    "xlm_roberta": "XLMRobertaBackbone",
    "albert": "AlbertBackbone",
    "deberta_v3": "DebertaV3Backbone",
    "electra": "ElectraBackbone",
    "gpt2": "GPT2Backbone",
    "qwen": "QwenBackbone",
    "llama": "LlamaBackbone",
    "llama3": "Llama3Backbone",
    "mistral": "MistralBackbone",
    "gemma": "GemmaBackbone",
}

DECODERS = ("gpt2", "qwen", "llama", "llama3", "mistral", "gemma")

# Sentences the SentencePiece models learn from: the test texts and a few
# more, so that every test word has its own piece.
SPM_CORPUS = TEXTS + [
    " ".join(GPT2_WORDS),
    "the plot was good and the acting was great",
    "i hated this movie , it was so boring",
    "one two three four five six seven eight nine ten",
    "what an end of a story ! was it fun ? not really .",
]


def train_sentencepiece(vocab_size=80, **special):
    """Trains a tiny SentencePiece model; returns its serialized proto.

    `special` sets the ids and pieces of the special tokens, with
    SentencePiece's trainer options (`pad_id`, `bos_piece`,
    `control_symbols`, …).
    """
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SPM_CORPUS * 4),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=1.0,
        normalization_rule_name="identity",
        hard_vocab_limit=False,
        minloglevel=2,
        num_threads=1,
        **special,
    )
    return model.getvalue()


def _byte_bpe(specials_first=(), specials_last=(), drop_endoftext=False):
    """The GPT-2 test vocabulary with other special tokens around it."""
    base, merges = gpt2_vocabulary_and_merges()
    if drop_endoftext:
        base.pop("<|endoftext|>")
    vocabulary = {token: i for i, token in enumerate(specials_first)}
    for token in base:
        vocabulary[token] = len(vocabulary)
    for token in specials_last:
        vocabulary[token] = len(vocabulary)
    return vocabulary, merges


def make_tokenizer(family):
    """The family's KerasHub tokenizer over a tiny vocabulary."""
    import keras_hub

    models = keras_hub.models
    if family == "bert":
        return models.BertTokenizer(vocabulary=BERT_VOCAB, lowercase=True)
    if family == "distil_bert":
        return models.DistilBertTokenizer(vocabulary=BERT_VOCAB, lowercase=True)
    if family == "electra":
        return models.ElectraTokenizer(vocabulary=BERT_VOCAB, lowercase=True)
    if family == "roberta":
        vocabulary, merges = _byte_bpe(
            ("<s>", "<pad>", "</s>", "<unk>"), ("<mask>",), drop_endoftext=True
        )
        return models.RobertaTokenizer(vocabulary=vocabulary, merges=merges)
    if family == "gpt2":
        vocabulary, merges = gpt2_vocabulary_and_merges()
        return models.GPT2Tokenizer(vocabulary=vocabulary, merges=merges)
    if family == "qwen":
        vocabulary, merges = gpt2_vocabulary_and_merges()
        return models.QwenTokenizer(vocabulary=vocabulary, merges=merges)
    if family == "llama3":
        vocabulary, merges = _byte_bpe(
            specials_last=(
                "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                "<|end_header_id|>", "<|eot_id|>",
            ),
        )
        return models.Llama3Tokenizer(vocabulary=vocabulary, merges=merges)
    if family == "xlm_roberta":
        # XLM-R's SentencePiece layout (fairseq shifts it by one).
        proto = train_sentencepiece(unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
        return models.XLMRobertaTokenizer(proto=proto)
    if family == "albert":
        proto = train_sentencepiece(
            pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
            control_symbols=["[CLS]", "[SEP]", "[MASK]"],
        )
        return models.AlbertTokenizer(proto=proto)
    if family == "deberta_v3":
        proto = train_sentencepiece(
            pad_id=0, pad_piece="[PAD]", bos_id=1, bos_piece="[CLS]",
            eos_id=2, eos_piece="[SEP]", unk_id=3, unk_piece="[UNK]",
            control_symbols=["[MASK]"],
        )
        return models.DebertaV3Tokenizer(proto=proto)
    if family in ("llama", "mistral"):
        proto = train_sentencepiece(unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
        cls = models.LlamaTokenizer if family == "llama" else models.MistralTokenizer
        return cls(proto=proto)
    if family == "gemma":
        proto = train_sentencepiece(
            pad_id=0, eos_id=1, bos_id=2, unk_id=3,
            pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        )
        return models.GemmaTokenizer(proto=proto)
    raise KeyError(f"no tiny recipe for family {family!r}")


def make_backbone(family, vocabulary_size, seed=0):
    """A random 2-block backbone of the family, hidden size 16."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    cls = getattr(keras_hub.models, FAMILY_CLASSES[family])
    encoder = dict(
        num_layers=NUM_LAYERS,
        num_heads=2,
        hidden_dim=HIDDEN_DIM,
        intermediate_dim=32,
        max_sequence_length=MAX_SEQUENCE_LENGTH,
    )
    decoder = dict(
        vocabulary_size=vocabulary_size,
        num_layers=NUM_LAYERS,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=HIDDEN_DIM,
        intermediate_dim=32,
    )
    if family in ("bert", "distil_bert", "roberta", "xlm_roberta", "gpt2"):
        return cls(vocabulary_size=vocabulary_size, **encoder)
    if family == "albert":
        # Two groups: two distinct blocks, so "the top block" is one of them.
        return cls(
            vocabulary_size=vocabulary_size, embedding_dim=8, num_groups=2, **encoder
        )
    if family == "deberta_v3":
        return cls(vocabulary_size=vocabulary_size, bucket_size=16, **encoder)
    if family == "electra":
        return cls(vocab_size=vocabulary_size, embedding_dim=HIDDEN_DIM, **encoder)
    if family == "gemma":
        return cls(head_dim=8, **decoder)
    if family == "mistral":
        return cls(sliding_window=MAX_SEQUENCE_LENGTH, **decoder)
    return cls(**decoder)  # qwen, llama, llama3


def save_family_preset(family, path, seed=0):
    """Saves a tiny backbone and tokenizer of `family` as a KerasHub preset.

    Returns the directory as a string.
    """
    tokenizer = make_tokenizer(family)
    backbone = make_backbone(family, tokenizer.vocabulary_size(), seed=seed)
    backbone.save_to_preset(str(path))
    tokenizer.save_to_preset(str(path))
    return str(path)
