"""Leftovers of the earlier audits, each noticed there and fixed here:
callbacks as Keras takes them in `fine_tune`, true/false flags that are
refused when they are not True or False, clear errors from the dataset
readers, grammar in descriptions and messages, `truncation` on the tasks
that split long inputs into windows, `keras.models.clone_model` of a task,
and public helpers given None. (The misuses also have cases in
`tests/bad_inputs.py`; these tests cover what works beside them.)"""

import json
import zipfile

import keras
import keras_hub
import numpy as np
import pytest
from family_models import make_tokenizer
from helpers import BERT_VOCAB, LABELS, TEXTS, raises

import keras_transfer as kt
from keras_transfer import freezing

SEQUENCE_LENGTH = 16


def classifier(preset, **kwargs):
    keras.utils.set_random_seed(0)
    kwargs.setdefault("num_classes", 2)
    return kt.TextClassifier.from_preset(preset, sequence_length=SEQUENCE_LENGTH, **kwargs)


class _Epochs(keras.callbacks.Callback):
    """Counts the epochs it sees."""

    def __init__(self):
        super().__init__()
        self.epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1


# --- Callbacks in fine_tune ----------------------------------------------------


def test_fine_tune_takes_a_callback_list_as_fit_does(bert_preset):
    counter = _Epochs()
    given = keras.callbacks.CallbackList([counter])
    history = kt.recipes.fine_tune(
        classifier(bert_preset), TEXTS, LABELS, head_epochs=1, epochs=1, verbose=0, callbacks=given
    )
    assert history.history["stage"] == [1, 2]
    assert counter.epochs == 2  # both stages
    assert given.callbacks == [counter]  # the stages' own callbacks were not added to it


def test_fine_tune_takes_one_callback_alone(bert_preset):
    counter = _Epochs()
    classifier(bert_preset).fine_tune(TEXTS, LABELS, head_epochs=1, epochs=1, verbose=0, callbacks=counter)
    assert counter.epochs == 2


def test_fine_tune_checks_callbacks_and_verbose_before_changing_the_model(bert_preset):
    model = classifier(bert_preset, freeze=False)
    optimizer = model.optimizer
    with raises(ValueError, "Expected `callbacks` to be a list", "'early_stopping'"):
        model.fine_tune(TEXTS, LABELS, callbacks="early_stopping")
    with raises(ValueError, "Expected `verbose`", "verbose='x'"):
        model.fine_tune(TEXTS, LABELS, verbose="x")
    assert model.backbone.trainable_weights and model.optimizer is optimizer  # not frozen, not recompiled


# --- Flags ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["no", "False", 0, None])
def test_load_weights_must_be_true_or_false(bert_preset, value):
    with raises(ValueError, "Expected `load_weights` to be True", f"load_weights={value!r}"):
        kt.load_backbone(bert_preset, load_weights=value)
    with raises(ValueError, "Expected `load_weights` to be True"):
        kt.TokenClassifier.from_preset(bert_preset, num_tags=3, tag_scheme=None, load_weights=value)
    with raises(ValueError, "Expected `load_weights` to be True"):
        kt.Translator.from_preset(bert_preset, load_weights=value)


def test_load_weights_false_and_numpy_bools_still_work(bert_preset):
    with_weights, _ = kt.load_backbone(bert_preset, sequence_length=SEQUENCE_LENGTH, load_weights=np.True_)
    reference, _ = kt.load_backbone(bert_preset, sequence_length=SEQUENCE_LENGTH)
    for a, b in zip(with_weights.weights, reference.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    kt.load_backbone(bert_preset, sequence_length=SEQUENCE_LENGTH, load_weights=False)


def test_fit_refuses_shuffle_and_verbose_keras_does_not_know(bert_preset):
    model = classifier(bert_preset)
    for kwargs, fragment in (
        ({"shuffle": "yes"}, "shuffle='yes'"),
        ({"shuffle": None}, "shuffle=None"),
        ({"verbose": "x"}, "verbose='x'"),
        ({"verbose": 3}, "verbose=3"),
        ({"verbose": "silent"}, "verbose='silent'"),
    ):
        with raises(ValueError, fragment):
            model.fit(TEXTS, LABELS, **kwargs)


def test_fit_takes_every_verbose_keras_takes(bert_preset, capsys):
    model = classifier(bert_preset)
    for verbose in ("auto", 0, 1, 2, True, False, np.int64(0)):
        model.fit(TEXTS, LABELS, verbose=verbose, shuffle=np.False_)
    model.fit(TEXTS, LABELS)  # the defaults


def test_question_answerer_checks_shuffle_before_windowing(bert_preset, monkeypatch):
    model = kt.QuestionAnswerer.from_preset(bert_preset, sequence_length=24, stride=6, max_question_length=8)
    monkeypatch.setattr(model, "_batches", lambda *args: pytest.fail("windowed the data first"))
    with raises(ValueError, "shuffle='yes'"):
        model.fit(questions=["q ?"], contexts=["the plot"], answers=["plot"], shuffle="yes")
    with raises(ValueError, "verbose='x'"):
        model.fit(questions=["q ?"], contexts=["the plot"], answers=["plot"], verbose="x")


def test_translator_fit_refuses_a_string_shuffle(gpt2_preset):
    model = kt.Translator.from_preset(gpt2_preset, prompt="{source} =", source_length=16, target_length=6)
    with raises(ValueError, "Expected `shuffle` to be True or False", "shuffle='no'"):
        model.fit(["good film"], ["great movie"], shuffle="no")


def test_lr_finder_refuses_an_unknown_verbose_and_a_non_task(bert_preset):
    model = classifier(bert_preset)
    with raises(ValueError, "Expected `verbose`", "verbose='x'"):
        model.find_learning_rate(TEXTS, LABELS, steps=5, verbose="x")
    with raises(ValueError, "expects a keras_transfer task model", "of type Functional"):
        inputs = keras.Input((2,))
        kt.lr_finder.find_learning_rate(keras.Model(inputs, keras.layers.Dense(1)(inputs)), TEXTS, LABELS)


# --- Dataset readers ----------------------------------------------------------------


def test_read_csv_delimiter(tmp_path):
    path = tmp_path / "reviews.tsv"
    path.write_text("text\tlabel\ngood film\t1\nbad plot\t0\n", encoding="utf-8")
    assert kt.datasets.read_csv(path, delimiter="\t").texts == ["good film", "bad plot"]
    for delimiter in ("", ",,", None, 9):
        with raises(ValueError, "`delimiter` to be one character", f"delimiter={delimiter!r}"):
            kt.datasets.read_csv(path, delimiter=delimiter)


def test_read_conll_columns_are_positions(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("EU NNP B-ORG\nrejects VBZ O\n", encoding="utf-8")
    assert kt.datasets.read_conll(path, tag_column=np.int64(1)).tags == [["NNP", "VBZ"]]
    with raises(ValueError, "`tag_column` to be a column index", "tag_column='tag'", "no header"):
        kt.datasets.read_conll(path, tag_column="tag")
    with raises(ValueError, "`word_column` to be a column index", "word_column=True"):
        kt.datasets.read_conll(path, word_column=True)
    with raises(ValueError, "`tag_column` to be a column index", "tag_column=1.0"):
        kt.datasets.read_conll(path, tag_column=1.0)


def test_text_data_shuffle_seed():
    data = kt.datasets.from_lists(TEXTS, LABELS)
    assert data.shuffle(np.int64(3)).texts == data.shuffle(3).texts
    assert sorted(data.shuffle(None).texts) == sorted(TEXTS)  # NumPy's fresh random order, as before
    for seed in ("x", -1, 1.5, True):
        with raises(ValueError, "`seed` to be an int >= 0", f"seed={seed!r}"):
            data.shuffle(seed=seed)
    with raises(ValueError, "`seed` to be an int >= 0"):
        data.split(0.5, seed="x")


# --- Grammar -------------------------------------------------------------------------


def test_descriptions_of_one_example_are_singular():
    assert "TextData(1 text," in repr(kt.datasets.from_lists(["good"], [1]))
    assert "TextData(2 texts," in repr(kt.datasets.from_lists(["good", "bad"], [1, 0]))
    assert "TextData(1 sentence pair," in repr(kt.datasets.from_lists([("a", "b")], [1]))
    tagged = kt.datasets.TaggedData([["EU"]], [["O"]])
    assert "TaggedData(1 tagged sentence, 1 word, 1 tag name," in repr(tagged)
    assert "2 tagged sentences, 3 words, 2 tag names" in repr(
        kt.datasets.TaggedData([["EU"], ["a", "b"]], [["B-ORG"], ["O", "O"]])
    )
    assert "QAData(1 question," in repr(kt.datasets.QAData(["q ?"], ["the plot"], ["plot"]))
    assert "ParallelData(1 pair from" in repr(kt.datasets.ParallelData(["a"], ["b"]))
    assert "ParallelData(2 pairs from" in repr(kt.datasets.ParallelData(["a", "c"], ["b", "d"]))


def _one_block_classifier():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(BERT_VOCAB), num_layers=1, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=SEQUENCE_LENGTH,
    )
    return kt.TextClassifier(backbone, num_classes=2, compile=False)


def test_descriptions_of_one_block_and_one_lora_layer_are_singular():
    model = _one_block_classifier()
    kt.unfreeze(model.backbone, top=0, embeddings=True)
    assert freezing.describe(model.backbone) == "embeddings train, its 1 block frozen"
    model = _one_block_classifier()
    kt.freeze(model)
    model.enable_lora(rank=2, target_layer_names=["query"])
    assert "LoRA rank 2 on 1 layer (query)" in "\n".join(model.describe_freezing())


def test_gradual_unfreezing_message_of_one_block(bert_preset):
    model = classifier(bert_preset, freeze=2)
    with raises(ValueError, "trains at most the top 1 block, but"):
        model.fit(TEXTS, LABELS, verbose=0, callbacks=[kt.callbacks.GradualUnfreezing(max_blocks=1)])


def test_conll_messages_of_one_word_or_tag(tmp_path):
    with raises(ValueError, "Sentence 0 has 1 word but 2 tags"):
        kt.datasets.TaggedData([["EU"]], [["O", "O"]])
    path = tmp_path / "train.txt"
    path.write_text("EU B-ORG\nrejects\n", encoding="utf-8")
    with raises(ValueError, "train.txt:2 has 1 column ('rejects')"):
        kt.datasets.read_conll(path)


def test_scheme_names_take_the_right_article():
    with raises(ValueError, "'E-PER' is not an IOB2 tag"):
        kt.tagging.check_tag_names(["O", "B-PER", "E-PER"], "IOB2")
    with raises(ValueError, "'X-PER' is not a BIOES tag"):
        kt.tagging.check_tag_names(["O", "B-PER", "X-PER"], "BIOES")
    with raises(ValueError, "no 'O' tag, which an IOB1 tagger needs"):
        kt.tagging.check_tag_names(["B-PER", "I-PER"], "IOB1")
    with raises(ValueError, "is not an IOB2 tag"):
        kt.metrics.get_entities(["O", "E-PER"], scheme="IOB2", mode="strict")
    with raises(ValueError, "is not a BIOES tag"):
        kt.metrics.get_entities(["O", "X-PER"], scheme="BIOES", mode="strict")


def test_tokenizer_names_take_the_right_article():
    with raises(ValueError, "The tokenizer is an ElectraTokenizer, of the electra family"):
        kt.TextPreprocessor(make_tokenizer("electra"), "GPT2Backbone")
    with raises(ValueError, "The tokenizer is a GPT2Tokenizer"):
        kt.TextPreprocessor(make_tokenizer("gpt2"), "BertBackbone")


def test_translator_backbone_names_take_the_right_article(gpt2_preset):
    import copy

    from keras_transfer.seq2seq import ENCODER_DECODERS
    from keras_transfer.tasks.translator import _check_preprocessor

    model = kt.Translator.from_preset(gpt2_preset, prompt="{source} =", source_length=16, target_length=6)
    preprocessor = copy.copy(model.preprocessor)
    preprocessor.family = ENCODER_DECODERS["BartBackbone"]  # one that packs for another backbone

    class AlbertBackbone:
        pass

    with raises(ValueError, "the backbone is an AlbertBackbone."):
        _check_preprocessor(AlbertBackbone(), preprocessor)
    with raises(ValueError, "the backbone is a GPT2Backbone."):
        _check_preprocessor(model.backbone, preprocessor)


# --- truncation on the windowing tasks --------------------------------------------------


@pytest.mark.parametrize("truncation", ["tail", "head+tail", "middle", None])
def test_windowing_tasks_refuse_a_truncation(bert_preset, truncation):
    with raises(ValueError, "TokenClassifier takes no `truncation`", "split into windows", f"truncation={truncation!r}"):
        kt.TokenClassifier.from_preset(bert_preset, num_tags=3, tag_scheme=None, truncation=truncation)
    with raises(ValueError, "QuestionAnswerer takes no `truncation`", "overlap by `stride` tokens"):
        kt.QuestionAnswerer.from_preset(bert_preset, truncation=truncation)


def test_windowing_tasks_take_the_default_truncation(bert_preset):
    tagger = kt.TokenClassifier.from_preset(
        bert_preset, num_tags=3, tag_scheme=None, sequence_length=SEQUENCE_LENGTH, truncation="head"
    )
    assert tagger.preprocessor.truncation == "head"
    reader = kt.QuestionAnswerer.from_preset(
        bert_preset, sequence_length=24, stride=6, max_question_length=8, truncation="head"
    )
    assert reader.preprocessor.truncation == "head"


# --- keras.models.clone_model of a task ----------------------------------------------------


def test_clone_model_of_a_compiled_task(bert_preset):
    model = classifier(bert_preset, freeze=False)
    model.fit(TEXTS, LABELS, verbose=0)
    clone = keras.models.clone_model(model)  # a plain Functional, compiled from the task's compile config
    assert clone.compiled and type(clone.optimizer) is type(model.optimizer)
    clone.set_weights(model.get_weights())
    x, y = model.preprocessor(TEXTS), np.array(LABELS)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(clone(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6
    )
    clone.fit(x, y, verbose=0)


def test_weight_decay_exclusions_load_from_files_of_earlier_versions(bert_preset, tmp_path):
    """Files saved before kept the excluded names at the top level of the
    compile config; they still load with biases and norms out of weight decay."""
    model = classifier(bert_preset, freeze=False)
    model.save(tmp_path / "new.keras")
    with zipfile.ZipFile(tmp_path / "new.keras") as new, zipfile.ZipFile(tmp_path / "old.keras", "w") as old:
        for item in new.infolist():
            data = new.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                compile_config = config["compile_config"]
                names = compile_config["optimizer"].pop("exclude_from_weight_decay")
                assert names == ["beta", "bias", "gamma"]
                compile_config["exclude_from_weight_decay"] = names
                data = json.dumps(config).encode()
            old.writestr(item, data)
    for name in ("new.keras", "old.keras"):
        reloaded = kt.load_model(tmp_path / name)
        decayed = {v.path for v in reloaded.trainable_variables if reloaded.optimizer._use_weight_decay(v)}
        assert decayed == {v.path for v in model.trainable_variables if model.optimizer._use_weight_decay(v)}, name
        assert not any(part in path for path in decayed for part in ("bias", "gamma", "beta")), name


# --- Public helpers given None ----------------------------------------------------------------


def test_public_helpers_refuse_none():
    with raises(ValueError, "`kt.optimizers.layerwise_multipliers` expects a Keras layer or model"):
        kt.optimizers.layerwise_multipliers(None, layer_decay=0.5)
    with raises(ValueError, "`kt.recipes.fine_tune` expects a Keras layer or model"):
        kt.recipes.fine_tune(None, TEXTS, LABELS)
    with raises(ValueError, "Expected `optimizer` to be a Keras optimizer", "Compile the model first"):
        kt.optimizers.add_variables(None, [])  # `model.optimizer` of a model not compiled
    with raises(ValueError, "an answer string", "int"):
        kt.metrics.normalize_answer(3)
    assert kt.metrics.normalize_answer("The  Eiffel Tower!") == "eiffel tower"
