"""Word, token and character alignment across the tokenizer families.

Swapping the preset name must keep labels on the right tokens: the first
sub-token of each word for a tagger (`kt.tagging`), the answer's tokens for
question answering (`kt.qa`), and each family's own special tokens, segment
ids and truncation for packed texts and pairs (`kt.TextPreprocessor`),
compared with KerasHub's preprocessors where KerasHub has one.
"""

import dataclasses

import keras
import keras_hub
import numpy as np
import pytest
from family_models import FAMILY_CLASSES, make_tokenizer, train_sentencepiece
from helpers import gpt2_vocabulary_and_merges
from test_xlnet import train_spiece

import keras_transfer as kt
from keras_transfer import qa
from keras_transfer.tagging import TaggedBatches, word_token_ids

WORDS = ["the", "film", "was", "boring", "!"]


def llama_style_tokenizer():
    """Llama's and Mistral's SentencePiece settings: a dummy "▁" before the
    text and extra whitespace kept, so " film" is "▁", "▁film"."""
    proto = train_sentencepiece(
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        add_dummy_prefix=True, remove_extra_whitespaces=False,
    )
    return keras_hub.models.LlamaTokenizer(proto=proto)


def gemma_style_tokenizer():
    """Gemma's: no dummy prefix ("film" is "film", " film" is "▁film")."""
    proto = train_sentencepiece(
        pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        add_dummy_prefix=False, remove_extra_whitespaces=False,
    )
    return keras_hub.models.GemmaTokenizer(proto=proto)


def tokenizer_and_class(name):
    if name == "llama_style":
        return llama_style_tokenizer(), "LlamaBackbone"
    if name == "gemma_style":
        return gemma_style_tokenizer(), "GemmaBackbone"
    if name == "xlnet":
        return kt.XLNetTokenizer(train_spiece()), "XLNetBackbone"
    return make_tokenizer(name), FAMILY_CLASSES[name]


TAGGING_CASES = ["bert", "roberta", "xlm_roberta", "albert", "deberta_v3", "gpt2", "qwen", "llama3", "gemma"]
TAGGING_CASES += ["llama_style", "gemma_style", "xlnet"]


# ------------------------------------------------------------ tagging


@pytest.mark.parametrize("name", TAGGING_CASES)
def test_words_get_their_running_text_tokens(name):
    tokenizer, backbone_class = tokenizer_and_class(name)
    preprocessor = kt.TextPreprocessor(tokenizer, backbone_class, sequence_length=32)
    words = word_token_ids(preprocessor, [WORDS])[0]
    running = preprocessor.token_ids([" ".join(WORDS)])[0]
    assert np.concatenate(words).tolist() == running.tolist()


def test_llama_style_words_do_not_start_with_a_bare_space_token():
    # " film" alone is "▁", "▁film": every word's first sub-token, the one
    # that carries its tag, would be the same "▁" for every word.
    tokenizer = llama_style_tokenizer()
    preprocessor = kt.TextPreprocessor(tokenizer, "LlamaBackbone", sequence_length=32)
    first = [tokenizer.id_to_token(int(ids[0])) for ids in word_token_ids(preprocessor, [WORDS[:4]])[0]]
    assert first == ["▁the", "▁film", "▁was", "▁boring"]


@pytest.mark.parametrize("name", TAGGING_CASES)
def test_tagged_windows_pack_like_the_family(name):
    """A tagged sentence is packed as the preprocessor packs its text (XLNet:
    `a <sep> <cls>`, `<cls>` in segment 2), and each tag sits on its word's
    first sub-token."""
    tokenizer, backbone_class = tokenizer_and_class(name)
    preprocessor = kt.TextPreprocessor(tokenizer, backbone_class, sequence_length=32)
    tags = [1, 2, 3, 4, 5]
    x, y = TaggedBatches(preprocessor, [WORDS], [tags], batch_size=1)[0]
    expected = preprocessor([" ".join(WORDS)])
    assert set(x) == set(expected)
    for key in expected:
        np.testing.assert_array_equal(x[key], expected[key])
    words = word_token_ids(preprocessor, [WORDS])[0]
    labelled = np.flatnonzero(y[0] >= 0)
    assert y[0, labelled].tolist() == tags
    assert x["token_ids"][0, labelled].tolist() == [int(ids[0]) for ids in words]


def test_left_padded_labels_land_on_each_words_first_token():
    # XLNet pads on the left: a shorter window's tags must move with it.
    tokenizer, backbone_class = tokenizer_and_class("xlnet")
    preprocessor = kt.TextPreprocessor(tokenizer, backbone_class, sequence_length=32)
    sentences = [WORDS, ["fun"], ["the", "plot"]]
    tags = [[1, 2, 3, 4, 5], [6], [7, 8]]
    batches = TaggedBatches(preprocessor, sentences, tags, batch_size=3, bucketing=False)
    x, y = batches[0]
    rows = batches._batches[0]
    for row, i in enumerate(rows):
        labelled = np.flatnonzero(y[row] >= 0)
        assert y[row, labelled].tolist() == tags[i]
        assert x["padding_mask"][row, labelled].all()
        firsts = [int(ids[0]) for ids in word_token_ids(preprocessor, [sentences[i]])[0]]
        assert x["token_ids"][row, labelled].tolist() == firsts
    # Predictions are read back from the same positions.
    words = batches.word_outputs(lambda inputs: inputs["token_ids"])
    for i, sentence in enumerate(sentences):
        firsts = [int(ids[0]) for ids in word_token_ids(preprocessor, [sentence])[0]]
        assert words[i].tolist() == firsts


def test_xlnet_tagger_predictions_do_not_depend_on_the_batch():
    tokenizer, backbone_class = tokenizer_and_class("xlnet")
    keras.utils.set_random_seed(0)
    backbone = kt.XLNetBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_heads=2,
        hidden_dim=16, intermediate_dim=32,
    )
    preprocessor = kt.TextPreprocessor(tokenizer, backbone_class, sequence_length=32)
    model = kt.TokenClassifier(backbone, num_tags=3, preprocessor=preprocessor, tag_scheme=None)
    sentences = [WORDS, ["fun"]]
    together = model.predict(sentences, batch_size=2)
    for sentence, rows in zip(sentences, together):
        alone = model.predict([sentence], batch_size=1)[0]
        assert rows.shape == (len(sentence), 3)
        np.testing.assert_allclose(rows, alone, atol=1e-5)


# ------------------------------------------------------------ pairs

KERAS_HUB_PAIR_PREPROCESSORS = {
    "bert": "BertTextClassifierPreprocessor",
    "roberta": "RobertaTextClassifierPreprocessor",
    "xlm_roberta": "XLMRobertaTextClassifierPreprocessor",
    "albert": "AlbertTextClassifierPreprocessor",
    "deberta_v3": "DebertaV3TextClassifierPreprocessor",
}


@pytest.mark.parametrize("family", list(KERAS_HUB_PAIR_PREPROCESSORS))
@pytest.mark.parametrize("budget", [7, 8])
def test_pairs_pack_and_cut_as_keras_hub_does(family, budget):
    """Separators, segment ids and longest-first truncation as KerasHub's
    own preprocessor gives them, an odd budget's extra token included (to
    the first text)."""
    tokenizer = make_tokenizer(family)
    preprocessor = kt.TextPreprocessor(tokenizer, FAMILY_CLASSES[family])
    sequence_length = preprocessor.min_sequence_length(pairs=True) + budget
    ours = kt.TextPreprocessor(tokenizer, FAMILY_CLASSES[family], sequence_length=sequence_length)
    theirs = getattr(keras_hub.models, KERAS_HUB_PAIR_PREPROCESSORS[family])(
        tokenizer, sequence_length=sequence_length
    )
    long_a = "one two three four five six seven eight nine ten"
    long_b = "the plot was good and the acting was great"
    cases = [(long_a, "fun"), ("fun", long_b), ("good film", "bad"), (long_a, long_b)]
    for a, b in cases:
        packed, expected = ours([(a, b)]), theirs(x=([a], [b]))
        assert set(packed) == set(expected)
        for key in packed:
            mask = np.asarray(expected["padding_mask"])[0]
            want = np.asarray(expected[key])[0][mask].tolist()
            assert packed[key][0][packed["padding_mask"][0]].tolist() == want, (a[:9], b[:9], key)


def test_xlnet_pair_packing():
    tokenizer, backbone_class = tokenizer_and_class("xlnet")
    preprocessor = kt.TextPreprocessor(tokenizer, backbone_class, sequence_length=9)
    batch = preprocessor([("one two three four five", "the plot was good")])
    ids = batch["token_ids"][0].tolist()
    sep, cls = tokenizer.sep_token_id, tokenizer.cls_token_id
    assert ids[-1] == cls and ids[-2] == sep and ids.count(sep) == 2
    first_sep = ids.index(sep)
    segments = batch["segment_ids"][0].tolist()
    assert segments == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 2) + [2]


# ------------------------------------------------------------ question answering


def _bytes_to_unicode():
    """GPT-2's byte symbols, so that every byte (accents, emoji, tabs) has a token."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return list(symbols.values())


def full_byte_tokenizer(family):
    vocabulary, merges = gpt2_vocabulary_and_merges()
    if family == "roberta":
        vocabulary.pop("<|endoftext|>")
        specials, cls = ("<s>", "<pad>", "</s>", "<unk>"), keras_hub.models.RobertaTokenizer
    else:
        specials, cls = (), keras_hub.models.GPT2Tokenizer
    full = {token: i for i, token in enumerate(specials)}
    for token in [*vocabulary, *_bytes_to_unicode(), *(["<mask>"] if family == "roberta" else [])]:
        full.setdefault(token, len(full))
    return cls(vocabulary=full, merges=merges)


QA_CONTEXTS = [
    ("good film was great", "good"),  # the very start
    ("the film was great", "great"),  # the very end
    ("the  plot   was\tboring\n\nand the acting was awful", "boring"),
    ("  the movie was fun  ", "fun"),
    ("café is good film", "good film"),
    ("the 😀 film was great", "film"),
    ("good\n", "good"),
    ("a naive cafe , the film was great . the plot was boring and the story was not fun at all", "story"),
]


@pytest.mark.parametrize("family", ["bert", "gpt2", "roberta"])
def test_answer_offsets_round_trip(family):
    """Answer characters → token labels in every window that holds the
    answer (stride 4) → decoded text equal to `context[start:end]`."""
    if family == "bert":
        tokenizer = make_tokenizer("bert")
    else:
        tokenizer = full_byte_tokenizer(family)
    preprocessor = kt.TextPreprocessor(tokenizer, FAMILY_CLASSES[family], sequence_length=16)
    contexts = [c for c, _ in QA_CONTEXTS]
    answers = [{"text": [a], "answer_start": [c.index(a)]} for c, a in QA_CONTEXTS]
    windows = qa.make_windows(
        preprocessor, ["what was it"] * len(contexts), contexts, answers, stride=4, max_question_length=4
    )
    answered = set()
    for window in windows:
        if window.start_position == qa.NULL_POSITION:
            continue
        context, answer = QA_CONTEXTS[window.example]
        start = window.offsets[window.start_position, 0]
        end = window.offsets[window.end_position, 1]
        assert context[start:end] == answer
        logits = np.full((2, len(window.token_ids)), -10.0)
        logits[0, window.start_position] = logits[1, window.end_position] = 10.0
        (decoded,) = qa.decode([logits[0]], [logits[1]], [dataclasses.replace(window, example=0)], [context])
        assert decoded["text"] == answer == context[decoded["start"] : decoded["end"]]
        answered.add(window.example)
    assert answered == set(range(len(QA_CONTEXTS)))


@pytest.mark.parametrize("family", ["gpt2", "roberta"])
def test_special_tokens_typed_in_a_context_stay_text(family):
    """A context that spells "</s>" (HTML's strike-through) or
    "<|endoftext|>" is tokenized as the preprocessor tokenizes text: as
    plain characters, never a separator inside the context, with offsets
    still into the original string."""
    tokenizer = full_byte_tokenizer(family)
    preprocessor = kt.TextPreprocessor(tokenizer, FAMILY_CLASSES[family], sequence_length=64)
    context = "good <s>film</s> <|endoftext|> was great"
    ((ids, offsets),) = qa.token_offsets(preprocessor, [context])
    assert ids.tolist() == preprocessor.token_ids([context])[0].tolist()
    specials = {tokenizer.start_token_id, tokenizer.end_token_id}
    assert not specials & set(ids.tolist())
    answer = {"text": ["great"], "answer_start": [context.index("great")]}
    (window,) = qa.make_windows(preprocessor, ["what"], [context], [answer], stride=4, max_question_length=4)
    start, end = window.offsets[window.start_position, 0], window.offsets[window.end_position, 1]
    assert context[start:end] == "great"
