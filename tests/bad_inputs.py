"""The catalogue of misuse: one list, used by the tests and by the docs.

Each `Case` is a misuse a user can make (a description, a function doing
it on tiny local models, the exception expected and fragments its message
must hold), or, with `error=None`, an odd-looking input that must simply
work. `tests/test_bad_inputs.py` runs every case; `scripts/bad_input_catalogue.py`
runs them to capture the real messages and writes `docs/bad_inputs.md`,
which a test keeps up to date.

Many cases repeat a call that another test file also makes; the catalogue
is the one place that lists them all, with the message a user sees.
"""

import dataclasses
import functools
import json
import math
import os
import pathlib
import shutil
import zipfile

import numpy as np

from helpers import BERT_VOCAB, LABELS, TEXTS

DOC_PATH = pathlib.Path(__file__).resolve().parent.parent / "docs" / "bad_inputs.md"


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    description: str
    run: object  # a function of a `Context`
    error: type | None  # None: the call must succeed
    fragments: tuple = ()
    note: str = ""  # shown in the doc instead of a message when error is None


class Context:
    """What the cases work on: a tiny BERT preset and a scratch folder."""

    def __init__(self, root, bert_preset):
        self.root = pathlib.Path(root)
        self.bert_preset = str(bert_preset)
        self.outcomes = {}

    def path(self, case_id, name):
        folder = self.root / case_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    @functools.cached_property
    def model(self):
        """A tiny classifier shared by the cases that do not change it."""
        return self.new_model()

    def new_model(self, **kwargs):
        import keras_transfer as kt

        kwargs.setdefault("num_classes", 2)
        return kt.TextClassifier.from_preset(self.bert_preset, sequence_length=16, **kwargs)

    def saved_model(self, case_id):
        path = self.path(case_id, "model.keras")
        self.model.save(path)
        return path

    def normalize(self, message):
        """The message with this run's scratch paths replaced by stable names."""
        message = message.replace(self.bert_preset, "<bert_preset>")
        return message.replace(str(self.root), "<tmp>")


def make_bert_preset(path):
    """The tiny BERT preset, by the recipe of conftest's `bert_preset`."""
    import keras_hub

    from conftest import _save_tiny_preset

    tokenizer = keras_hub.models.BertTokenizer(vocabulary=BERT_VOCAB, lowercase=True)
    return _save_tiny_preset(path, keras_hub.models.BertBackbone, tokenizer, len(BERT_VOCAB), seed=1)


def run_case(case, context):
    """Runs a case once per context; returns (error type name or None, message)."""
    if case.id not in context.outcomes:
        try:
            case.run(context)
            outcome = (None, "")
        except (Exception, SystemExit) as error:  # the point: capture whatever it raises (the CLI exits)
            outcome = (type(error), context.normalize(str(error)))
        context.outcomes[case.id] = outcome
    return context.outcomes[case.id]


# --- The cases -----------------------------------------------------------------


def _kt():
    import keras_transfer as kt

    return kt


def _keras():
    _kt()  # keras_transfer first: it sets the backend
    import keras

    return keras


def _corrupt_keras_file(c):
    path = c.path("corrupted_keras", "model.keras")
    path.write_bytes(b"this is not a zip archive" * 10)
    _kt().load_model(path)


def _truncated_keras_file(c):
    path = c.saved_model("truncated_keras")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _kt().load_model(path)


def _keras_file_with_lambda(c):
    import keras

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    path = c.path("lambda_layer", "lambda.keras")
    model.save(path)
    _kt().load_model(path)


def _other_backend(c):
    """Keras records no backend in a .keras file (metadata.json holds the
    Keras version and date); a file claiming another one loads the same."""
    source = c.saved_model("other_backend")
    path = c.path("other_backend", "jax.keras")
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(path, "w") as new:
        for item in old.infolist():
            data = old.read(item.filename)
            if item.filename == "metadata.json":
                meta = json.loads(data)
                meta["backend"] = "jax"
                data = json.dumps(meta).encode()
            new.writestr(item, data)
    loaded = _kt().load_model(path)
    np.testing.assert_allclose(
        loaded.predict(TEXTS[:3], verbose=0), c.model.predict(TEXTS[:3], verbose=0), rtol=1e-5, atol=1e-6
    )


def _preset_copy(c, case_id):
    path = c.root / case_id / "preset"
    shutil.copytree(c.bert_preset, path)
    return path


def _corrupt_preset_config(c):
    path = _preset_copy(c, "corrupt_preset_config")
    (path / "config.json").write_text('{"class_name": "BertBack')
    _kt().load_backbone(str(path))


def _truncated_preset_weights(c):
    path = _preset_copy(c, "truncated_preset_weights")
    weights = path / "model.weights.h5"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    _kt().load_backbone(str(path))


def _preset_without_config(c):
    path = _preset_copy(c, "preset_without_config")
    os.remove(path / "config.json")
    _kt().load_backbone(str(path))


def _unfreeze_without_compile(c):
    model = c.new_model()
    model.fit(TEXTS, LABELS, epochs=1, verbose=0)  # builds the optimizer for the head
    model.unfreeze()
    model.fit(TEXTS, LABELS, epochs=1, verbose=0)


def _unfreeze_before_first_fit(c):
    model = c.new_model()  # compiled for a frozen backbone: the head's rate
    model.unfreeze()
    model.fit(TEXTS, LABELS, epochs=1, verbose=0)


def _corrupt_backup(c):
    folder = c.root / "corrupt_backup" / "backup"
    folder.mkdir(parents=True)
    (folder / "training_state.json").write_text("{not json")
    c.model.fit(TEXTS, LABELS, epochs=1, verbose=0, callbacks=[_kt().callbacks.BackupAndRestore(folder)])


def _texts_with_labels_twice(c):
    data = _kt().datasets.from_lists(TEXTS, LABELS)
    c.model.fit(data, LABELS, verbose=0)


def _empty_text_data(c):
    c.model.fit(_kt().datasets.from_lists([], []), verbose=0)


class _RawTextBatches:
    """A PyDataset whose batches hold raw strings (built on first use: Keras
    is imported only once the test environment is set)."""

    def __new__(cls):
        import keras

        class RawText(keras.utils.PyDataset):
            def __len__(self):
                return 1

            def __getitem__(self, index):
                return np.array(TEXTS), np.array(LABELS)

        return RawText()


def _unfreeze_a_lora_model(c):
    model = c.new_model()
    model.enable_lora(rank=2)
    _kt().unfreeze(model)


def _max_blocks_below_training(c):
    kt = _kt()
    c.new_model(freeze=2).fit(TEXTS, LABELS, verbose=0, callbacks=[kt.callbacks.GradualUnfreezing(max_blocks=1)])


def _save_into_missing_folder(c):
    c.model.save(c.root / "no" / "such" / "folder" / "model.keras")


def _non_utf8_csv(c):
    path = c.path("non_utf8_csv", "reviews.csv")
    path.write_bytes("text,label\ngood film,pos\ncaf\u00e9 cr\u00e8me,neg\n".encode("latin-1"))
    _kt().datasets.read_csv(path, text_column="text", label_column="label")


def _conll_word_without_tag(c):
    path = c.path("conll_word_without_tag", "train.txt")
    path.write_text("EU B-ORG\nrejects\n", encoding="utf-8")
    _kt().datasets.read_conll(path)


def _csv_empty_delimiter(c):
    path = c.path("csv_empty_delimiter", "reviews.csv")
    path.write_text("text,label\ngood film,1\n", encoding="utf-8")
    _kt().datasets.read_csv(path, delimiter="")


def _conll_tag_column_name(c):
    path = c.path("conll_tag_column_name", "train.txt")
    path.write_text("EU B-ORG\nrejects O\n", encoding="utf-8")
    _kt().datasets.read_conll(path, tag_column="tag")


def _zip_without_config(c):
    path = c.path("zip_without_config", "model.keras")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a model")
    _kt().load_model(path)


def _cli_predict_regressor(c):
    from keras_transfer import cli

    path = c.path("cli_predict_regressor", "regressor.keras")
    _kt().TextRegressor.from_preset(c.bert_preset, sequence_length=16).save(path)
    cli.main(["predict", "--model", str(path), "a good film"])


def _backup_dir_is_file(c):
    path = c.path("backup_dir_is_file", "notes.txt")
    path.write_text("not a folder")
    _kt().callbacks.BackupAndRestore(path)


CASES = [
    # Presets and checkpoints
    Case("unknown_preset", "unknown preset name",
         lambda c: _kt().load_backbone("my_great_model"), ValueError,
         ("Unknown preset 'my_great_model'", "keras-transfer presets")),
    Case("typo_preset", "typo in a preset name",
         lambda c: _kt().load_backbone("bert_base_en_uncasd"), ValueError,
         ("Did you mean 'bert_base_en_uncased'",)),
    Case("offline_preset", "a real preset name on an offline machine",
         lambda c: _kt().load_backbone("bert_tiny_en_uncased"), RuntimeError,
         ("Could not download the weights of preset 'bert_tiny_en_uncased'", "offline")),
    Case("non_text_preset", "a preset of a non-text family",
         lambda c: _kt().load_backbone("resnet_50_imagenet"), ValueError,
         ("'resnet' family", "Supported text families")),
    Case("missing_preset_dir", "a preset directory that does not exist",
         lambda c: _kt().load_backbone(str(c.root / "no" / "such" / "preset")), FileNotFoundError,
         ("No preset directory at", "Check the path")),
    Case("preset_without_config", "a directory that is not a preset (no config.json)",
         _preset_without_config, ValueError, ("no config.json", "save_to_preset")),
    Case("corrupt_preset_config", "a preset whose config.json is corrupted",
         _corrupt_preset_config, ValueError, ("is not valid JSON", "corrupted")),
    Case("truncated_preset_weights", "a preset whose weights file is truncated",
         _truncated_preset_weights, ValueError, ("Could not read the preset directory", "truncated")),
    Case("unknown_family", "kt.list_presets of a family that does not exist",
         lambda c: _kt().list_presets("resnet"), ValueError, ("Unknown family 'resnet'", "bert")),
    Case("bad_preset_type", "a preset that is not a string",
         lambda c: _kt().load_backbone(42), ValueError, ("Expected `preset`", "preset=42")),
    Case("load_weights_string", "kt.load_backbone(preset, load_weights='no')",
         lambda c: _kt().load_backbone(c.bert_preset, load_weights="no"), ValueError,
         ("Expected `load_weights` to be True", "load_weights='no'")),
    Case("compile_string", "TextClassifier.from_preset(preset, compile='no')",
         lambda c: c.new_model(compile="no"), ValueError,
         ("Expected `compile` to be True or False", "compile='no'")),
    # Model options
    Case("num_classes_1", "num_classes=1 for a binary task",
         lambda c: c.new_model(num_classes=1), ValueError, ("at least 2", "num_classes=1")),
    Case("num_classes_vs_names", "num_classes disagrees with label_names",
         lambda c: c.new_model(num_classes=3, label_names=["neg", "pos"]), ValueError,
         ("num_classes=3", "2 label names")),
    Case("label_names_string", "label_names given as one string",
         lambda c: c.new_model(num_classes=None, label_names="neg,pos"), ValueError,
         ("single string", "wrap the names in a list")),
    Case("bad_freeze", "freeze='yes'",
         lambda c: c.new_model(freeze="yes"), ValueError, ("Expected `freeze`", "freeze='yes'")),
    Case("negative_freeze", "freeze=-1",
         lambda c: c.new_model(freeze=-1), ValueError, ("non-negative integer", "freeze=-1")),
    Case("bad_truncation", "truncation='middle'",
         lambda c: _kt().load_backbone(c.bert_preset, truncation="middle"), ValueError,
         ("Unknown truncation 'middle'", "'head+tail'")),
    Case("tagger_truncation", "TokenClassifier.from_preset(..., truncation='tail')",
         lambda c: _kt().TokenClassifier.from_preset(c.bert_preset, num_tags=3, tag_scheme=None, truncation="tail"),
         ValueError, ("TokenClassifier takes no `truncation`", "split into windows")),
    Case("qa_truncation", "QuestionAnswerer.from_preset(..., truncation='tail')",
         lambda c: _kt().QuestionAnswerer.from_preset(c.bert_preset, truncation="tail"),
         ValueError, ("QuestionAnswerer takes no `truncation`", "split into windows")),
    Case("short_sequence_length", "sequence_length too small to hold the special tokens",
         lambda c: _kt().load_backbone(c.bert_preset, sequence_length=2), ValueError,
         ("at least 3", "sequence_length=2")),
    Case("bad_dropout", "dropout=1.5",
         lambda c: c.new_model(dropout=1.5), ValueError, ("[0, 1)", "dropout=1.5")),
    Case("misspelt_argument", "a misspelt model argument (droput=0.5)",
         lambda c: c.new_model(droput=0.5), TypeError,
         ("unexpected keyword argument 'droput'", "did you mean 'dropout'")),
    Case("unfreeze_embeddings_string", "kt.unfreeze(model, top=1, embeddings='no')",
         lambda c: _kt().unfreeze(c.new_model(), top=1, embeddings="no"), ValueError,
         ("True or False", "embeddings='no'")),
    Case("preprocessor_from_preset", "kt.TextPreprocessor.from_preset(preset)",
         lambda c: _kt().TextPreprocessor.from_preset(c.bert_preset), ValueError,
         ("has no `from_preset`", "kt.load_backbone(")),
    Case("numpy_integers", "NumPy integers as counts (num_classes=np.int64(2), batch_size=np.int64(4))",
         lambda c: c.new_model(num_classes=np.int64(2), freeze=np.int64(1))
         .fit(TEXTS, LABELS, batch_size=np.int64(4), verbose=0), None,
         note="works: NumPy integers are integers"),
    # Texts
    Case("single_string", "one string instead of a list of texts",
         lambda c: c.model.predict("a great film"), ValueError,
         ("got a single string", "Wrap it in a list")),
    Case("non_string_texts", "texts that are not strings (numbers, None)",
         lambda c: c.model.predict([1.5, None]), ValueError, ("Expected every text to be a string", "str(...)")),
    Case("unequal_text_columns", "two text columns of different lengths, (texts_a, texts_b)",
         lambda c: c.model.predict((["a", "b", "c"], ["d", "e"]), verbose=0), ValueError,
         ("two text columns of different lengths (3 and 2)",)),
    Case("mixed_pairs", "single texts mixed with text pairs",
         lambda c: c.model.predict(["good", ("good", "film")], verbose=0), ValueError, ("Mixed single texts",)),
    Case("bad_pair", "a text 'pair' of three texts",
         lambda c: c.model.predict([("a", "b", "c")], verbose=0), ValueError, ("text pair must be two strings",)),
    Case("none_texts", "predict(None)",
         lambda c: c.model.predict(None, verbose=0), ValueError, ("`predict` got no data", "`x` is None")),
    Case("empty_texts", "an empty list of texts",
         lambda c: c.model.fit([], [], verbose=0), ValueError, ("is empty",)),
    Case("empty_text_data", "an empty split (a TextData with no examples)",
         _empty_text_data, ValueError, ("empty",)),
    Case("odd_texts", "empty, whitespace-only, control characters, emoji, RTL, lone surrogates, typed [CLS]",
         lambda c: c.model.predict(["", "   ", "\x00\x07", "😀 مرحبا", "caf\udce9", "[CLS] <|endoftext|>"], verbose=0),
         None, note="works: tokenized as text (typed special tokens stay text; lone surrogates become U+FFFD)"),
    # Labels
    Case("length_mismatch", "texts and labels of different lengths",
         lambda c: c.model.fit(TEXTS, LABELS[:4], verbose=0), ValueError, ("Got 10 texts but 4 labels",)),
    Case("labels_out_of_range", "a label outside 0..num_classes-1",
         lambda c: c.model.fit(TEXTS, [0, 1, 2] + LABELS[3:], verbose=0), ValueError,
         ("outside 0..1", "num_classes=3")),
    Case("negative_label", "a negative label",
         lambda c: c.model.fit(TEXTS, [-1] + LABELS[1:], verbose=0), ValueError, ("outside 0..1", "from 0")),
    Case("mixed_label_types", "labels mixing names and ids",
         lambda c: c.model.fit(TEXTS, ["pos"] + LABELS[1:], verbose=0), ValueError, ("mixes string and numeric",)),
    Case("string_labels_no_names", "string labels on a model without label_names",
         lambda c: c.model.fit(TEXTS, ["pos", "neg"] * 5, verbose=0), ValueError, ("label_names=[...]",)),
    Case("float_labels", "real-valued labels for a classifier",
         lambda c: c.model.fit(TEXTS, [0.5] * 10, verbose=0), ValueError, ("Expected integer class ids", "regression")),
    Case("nan_labels", "a NaN label",
         lambda c: c.model.fit(TEXTS, [math.nan] + [0.0] * 9, verbose=0), ValueError, ("Expected integer class ids",)),
    Case("single_label_value", "one label value for all the texts: fit(texts, 1)",
         lambda c: c.model.fit(TEXTS, 1, verbose=0), ValueError, ("one label per text", "single value: 1")),
    Case("label_names_string_in_data", "kt.datasets.from_lists(..., label_names='neg,pos')",
         lambda c: _kt().datasets.from_lists(["good", "bad"], ["pos", "neg"], label_names="neg,pos"), ValueError,
         ("a single string", "label_names=['neg', 'pos']")),
    Case("one_hot_labels", "one-hot labels",
         lambda c: c.model.fit(TEXTS, np.eye(2)[LABELS], verbose=0), ValueError, ("argmax",)),
    Case("non_utf8_csv", "a CSV file that is not UTF-8",
         _non_utf8_csv, ValueError, ("cannot be decoded", "encoding=")),
    Case("csv_empty_delimiter", "kt.datasets.read_csv(path, delimiter='')",
         _csv_empty_delimiter, ValueError, ("`delimiter` to be one character", "delimiter=''")),
    Case("conll_tag_column_name", "kt.datasets.read_conll(path, tag_column='tag') (a name, not a position)",
         _conll_tag_column_name, ValueError, ("`tag_column` to be a column index", "no header")),
    Case("conll_path_none", "kt.datasets.read_conll(None)",
         lambda c: _kt().datasets.read_conll(None), ValueError,
         ("expected `path` to be a str or pathlib.Path", "path=None")),
    Case("shuffle_seed_string", "TextData.shuffle(seed='x')",
         lambda c: _kt().datasets.from_lists(TEXTS, LABELS).shuffle(seed="x"), ValueError,
         ("`seed` to be an int >= 0", "seed='x'")),
    Case("conll_word_without_tag", "a CoNLL line with a word but no tag",
         _conll_word_without_tag, ValueError, ("train.txt:2 has 1 column ", "too few")),
    Case("no_labels", "fit on texts without labels",
         lambda c: c.model.fit(TEXTS, verbose=0), ValueError, ("no labels",)),
    Case("labels_twice", "a TextData (labels included) and y",
         _texts_with_labels_twice, ValueError, ("already holds its labels",)),
    Case("texts_labels_tuple", "texts and labels as one tuple: fit((texts, labels))",
         lambda c: c.model.fit((TEXTS, LABELS), verbose=0), ValueError, ("is a tuple `(texts, labels)`", "fit(texts, labels)")),
    Case("evaluate_without_labels", "evaluate on texts without labels",
         lambda c: c.model.evaluate(TEXTS, verbose=0), ValueError, ("`evaluate` got texts but no labels",)),
    Case("validation_without_labels", "validation_data of texts without labels",
         lambda c: c.model.fit(TEXTS, LABELS, validation_data=(TEXTS, None), verbose=0), ValueError,
         ("`validation_data` holds texts but no labels",)),
    Case("validation_texts_only", "validation_data=texts (a list of texts, no labels)",
         lambda c: c.model.fit(TEXTS, LABELS, validation_data=TEXTS, verbose=0), ValueError,
         ("`validation_data` holds texts but no labels",)),
    Case("labels_beside_token_ids", "a label out of range beside token-id inputs",
         lambda c: c.model.fit(c.model.preprocessor(TEXTS), np.arange(10) % 3, verbose=0), ValueError,
         ("outside 0..1",)),
    Case("dataset_of_raw_text", "a keras.utils.PyDataset whose batches hold raw strings",
         lambda c: c.model.fit(_RawTextBatches(), verbose=0, cache_features=False), ValueError,
         ("holds text", "Give raw texts and labels to `fit`")),
    # Training options
    Case("bad_batch_size", "batch_size=-1",
         lambda c: c.model.fit(TEXTS, LABELS, batch_size=-1, verbose=0), ValueError, ("positive integer", "batch_size=-1")),
    Case("negative_epochs", "fit with epochs=-1",
         lambda c: c.model.fit(TEXTS, LABELS, epochs=-1, verbose=0), ValueError, ("`epochs`", "epochs=-1")),
    Case("fractional_epochs", "fit with epochs=1.5",
         lambda c: c.model.fit(TEXTS, LABELS, epochs=1.5, verbose=0), ValueError, ("whole number", "epochs=1.5")),
    Case("callback_class", "a callback class instead of an instance: callbacks=[StopOnNaN]",
         lambda c: c.model.fit(TEXTS, LABELS, callbacks=[_kt().callbacks.StopOnNaN], verbose=0), ValueError,
         ("`callbacks[0]`", "make one with `StopOnNaN()`")),
    Case("callback_name", "a callback given by name: callbacks=['early_stopping']",
         lambda c: c.model.fit(TEXTS, LABELS, callbacks=["early_stopping"], verbose=0), ValueError,
         ("'early_stopping'", "not a Keras callback")),
    Case("single_callback", "one callback not in a list: callbacks=StopOnNaN()",
         lambda c: c.new_model().fit(TEXTS, LABELS, callbacks=_kt().callbacks.StopOnNaN(), verbose=0), None,
         note="works, as in Keras: one callback alone is taken as a list of one"),
    Case("backup_dir_is_file", "BackupAndRestore on a path that is a file",
         _backup_dir_is_file, ValueError, ("is a file", "directory")),
    Case("bad_cache_features", "cache_features='yes'",
         lambda c: c.model.fit(TEXTS, LABELS, cache_features="yes", verbose=0), ValueError, ("'auto', True or False",)),
    Case("bad_cache_memory_limit", "cache_memory_limit='2GB'",
         lambda c: c.model.fit(TEXTS, LABELS, cache_memory_limit="2GB", verbose=0), ValueError,
         ("number of bytes", "cache_memory_limit='2GB'")),
    Case("missing_cache_dir", "cache_dir that does not exist",
         lambda c: c.model.fit(TEXTS, LABELS, cache_dir="/nonexistent/kt-cache", verbose=0), ValueError,
         ("not an existing directory", "/nonexistent/kt-cache")),
    Case("rate_with_own_optimizer", "learning_rate together with your own optimizer",
         lambda c: c.new_model().compile(optimizer="adam", learning_rate=1e-3), ValueError,
         ("give the rate to the optimizer",)),
    Case("schedule_as_learning_rate", "a schedule as compile()'s learning_rate",
         lambda c: c.new_model().compile(learning_rate=_kt().schedules.OneCycle(1e-3, 10)), ValueError,
         ("Received a schedule: OneCycle", "keras.optimizers.AdamW(learning_rate=schedule)")),
    Case("negative_weight_decay", "weight_decay=-1",
         lambda c: c.new_model().compile(weight_decay=-1), ValueError, ("`weight_decay`", ">= 0")),
    Case("fine_tune_bad_layer_decay", "fine_tune with layer_decay=5 (checked before anything changes)",
         lambda c: c.new_model().fine_tune(TEXTS, LABELS, layer_decay=5), ValueError, ("`layer_decay`", "(0, 1]")),
    Case("unfreeze_lora_model", "kt.unfreeze on a LoRA model",
         _unfreeze_a_lora_model, ValueError, ("LoRA is enabled", "Train the LoRA model as it is")),
    Case("max_blocks_below_training", "GradualUnfreezing(max_blocks=1) on a model whose top 2 blocks train",
         _max_blocks_below_training, ValueError, ("max_blocks",)),
    Case("bad_warmup", "warmup=1.5",
         lambda c: c.new_model().compile(warmup=1.5), ValueError, ("[0, 1)", "warmup=1.5")),
    Case("unfreeze_without_compile", "fit, unfreeze, then fit again without compiling",
         _unfreeze_without_compile, ValueError, ("became trainable after `compile()`", "compile")),
    Case("unfreeze_before_first_fit", "unfreeze a freshly built model, then fit without compiling",
         _unfreeze_before_first_fit, ValueError, ("unfrozen after `compile()`", "model.compile()")),
    Case("zero_batch_size", "fit with batch_size=0",
         lambda c: c.model.fit(TEXTS, LABELS, batch_size=0, verbose=0), ValueError,
         ("positive integer", "batch_size=0")),
    Case("shuffle_string", "fit(shuffle='yes')",
         lambda c: c.model.fit(TEXTS, LABELS, shuffle="yes", verbose=0), ValueError,
         ("Expected `shuffle` to be True or False", "shuffle='yes'")),
    Case("verbose_string", "fit(verbose='x')",
         lambda c: c.model.fit(TEXTS, LABELS, verbose="x"), ValueError,
         ("Expected `verbose` to be 'auto', 0", "verbose='x'")),
    Case("fine_tune_callbacks_string", "fine_tune(..., callbacks='early_stopping') (checked before anything changes)",
         lambda c: c.new_model().fine_tune(TEXTS, LABELS, callbacks="early_stopping"), ValueError,
         ("Expected `callbacks` to be a list", "'early_stopping'")),
    Case("fine_tune_callback_list", "fine_tune(..., callbacks=keras.callbacks.CallbackList([...]))",
         lambda c: _kt().recipes.fine_tune(c.new_model(), TEXTS, LABELS, head_epochs=1, epochs=1, verbose=0,
                                           callbacks=_keras().callbacks.CallbackList([_keras().callbacks.History()])),
         None, note="works, as `fit` takes it: the list's callbacks join both stages"),
    Case("layerwise_multipliers_none", "kt.optimizers.layerwise_multipliers(None)",
         lambda c: _kt().optimizers.layerwise_multipliers(None), ValueError,
         ("expects a Keras layer or model", "Received: None")),
    Case("add_variables_uncompiled", "kt.optimizers.add_variables(model.optimizer, ...) before compile (None)",
         lambda c: _kt().optimizers.add_variables(None, []), ValueError,
         ("Expected `optimizer` to be a Keras optimizer", "Compile the model first")),
    Case("lr_finder_none", "kt.lr_finder.find_learning_rate(None, texts, labels)",
         lambda c: _kt().lr_finder.find_learning_rate(None, TEXTS, LABELS), ValueError,
         ("expects a keras_transfer task model", "Received: None")),
    Case("fine_tune_none", "kt.recipes.fine_tune(None, texts, labels)",
         lambda c: _kt().recipes.fine_tune(None, TEXTS, LABELS), ValueError,
         ("`kt.recipes.fine_tune` expects a Keras layer or model", "Received: None")),
    Case("normalize_answer_none", "kt.metrics.normalize_answer(None)",
         lambda c: _kt().metrics.normalize_answer(None), ValueError, ("an answer string", "NoneType")),
    Case("bad_stop_on_nan", "stop_on_nan='no'",
         lambda c: c.model.fit(TEXTS, LABELS, stop_on_nan="no", verbose=0), ValueError, ("stop_on_nan='no'",)),
    Case("bad_validation_split", "validation_split=1.5",
         lambda c: c.model.fit(TEXTS, LABELS, validation_split=1.5, verbose=0), ValueError,
         ("`validation_split`", "between 0 and 1")),
    Case("bad_sample_weight", "sample_weight of the wrong length",
         lambda c: c.model.fit(TEXTS, LABELS, sample_weight=[1.0, 2.0], verbose=0), ValueError,
         ("one number per text (10)",)),
    Case("class_weight_unknown_name", "class_weight naming a class the model does not have",
         lambda c: c.new_model(num_classes=None, label_names=["neg", "pos"])
         .fit(TEXTS, LABELS, class_weight={"good": 2.0}, verbose=0), ValueError,
         ("names the class 'good'", "['neg', 'pos']")),
    Case("negative_class_weight", "a negative class_weight",
         lambda c: c.model.fit(TEXTS, LABELS, class_weight={0: -1.0, 1: 1.0}, verbose=0), ValueError,
         ("weight -1.0", "0 or more")),
    Case("layerwise_negative_rate", "kt.optimizers.LayerwiseAdamW(learning_rate=-1e-3)",
         lambda c: _kt().optimizers.LayerwiseAdamW(learning_rate=-1e-3), ValueError,
         ("`learning_rate`", ">= 0")),
    Case("bad_seed", "a negative shuffling seed",
         lambda c: c.model.fit(TEXTS, LABELS, seed=-1, verbose=0), ValueError, ("non-negative integer", "seed=-1")),
    Case("corrupt_backup", "resuming from a corrupted backup",
         _corrupt_backup, ValueError, ("unreadable", "Delete the directory")),
    Case("predict_untrained", "predict before fit",
         lambda c: c.new_model().predict(TEXTS[:2], verbose=0), None,
         note="works, as in Keras: the head is built with the model (functional), so it predicts with its initial weights"),
    # Other tasks
    Case("pair_single_texts", "single texts to a TextPairClassifier",
         lambda c: _kt().TextPairClassifier.from_preset(c.bert_preset, num_classes=2, sequence_length=16).predict(TEXTS),
         ValueError, ("is a single text", "(text_a, text_b) pairs")),
    Case("multi_label_class_ids", "class ids to a MultiLabelClassifier (multi-hot expected)",
         lambda c: _kt().MultiLabelClassifier.from_preset(c.bert_preset, label_names=["a", "b", "c"], sequence_length=16)
         .fit(TEXTS, np.array(LABELS), verbose=0), ValueError, ("Class ids are not accepted", "multi-hot")),
    Case("regression_nan_target", "a NaN target to a TextRegressor",
         lambda c: _kt().TextRegressor.from_preset(c.bert_preset, sequence_length=16)
         .fit(TEXTS, [1.0] * 9 + [math.nan], verbose=0), ValueError, ("finite", "Drop or fill")),
    Case("regression_string_targets", "string targets to a TextRegressor",
         lambda c: _kt().TextRegressor.from_preset(c.bert_preset, sequence_length=16)
         .fit(TEXTS, ["4.5"] * 10, verbose=0), ValueError, ("must be numbers",)),
    Case("tags_words_mismatch", "a sentence with more words than tags (TokenClassifier)",
         lambda c: _kt().TokenClassifier.from_preset(c.bert_preset, tag_names=["O", "B-PER", "I-PER"], sequence_length=16)
         .fit([["one"], ["two", "film"]], [["B-PER"], ["I-PER"]], verbose=0), ValueError,
         ("Sentence 1 has 2 words but 1 tag ",)),
    Case("tagger_raw_sentences", "raw sentence strings to TokenClassifier.predict_tags (words expected)",
         lambda c: _kt().TokenClassifier.from_preset(c.bert_preset, tag_names=["O", "B-PER", "I-PER"], sequence_length=16)
         .predict_tags(["good film"]), ValueError, ("holds raw strings", "sentence.split()", "predict_entities")),
    Case("qa_answer_not_in_context", "an answer that does not occur in its context (QuestionAnswerer)",
         lambda c: _kt().QuestionAnswerer.from_preset(c.bert_preset, sequence_length=24, stride=6, max_question_length=8)
         .fit(questions=["q ?"], contexts=["the plot"], answers=["great"]), ValueError, ("'great'", "does not occur")),
    Case("translator_encoder_only", "a Translator over an encoder-only backbone (BERT)",
         lambda c: _kt().Translator.from_preset(c.bert_preset), ValueError, ("cannot generate text with BertBackbone",)),
    # Saving and loading
    Case("save_missing_folder", "saving into a folder that does not exist",
         _save_into_missing_folder, FileNotFoundError, ("does not exist", "Create it first")),
    Case("save_h5", "saving a task model to .h5",
         lambda c: c.model.save(c.path("save_h5", "model.h5")), ValueError,
         ("saves to a `.keras` file", "save_weights")),
    Case("save_to_none", "model.save(None)",
         lambda c: c.model.save(None), ValueError, ("Expected a file path", "Received: None")),
    Case("plot_evaluate_results", "plot_history on evaluate's results ({'loss': 0.5, ...})",
         lambda c: _kt().plot_history({"loss": 0.5, "accuracy": 0.7}), ValueError,
         ("holds one value", "not the results of `evaluate`")),
    Case("plot_into_missing_folder", "plot_history into a folder that does not exist",
         lambda c: _kt().plot_history({"loss": [1.0, 0.5]}, path=c.root / "no" / "curves.png"), FileNotFoundError,
         ("does not exist", "Create it first")),
    Case("missing_keras_file", "loading a file that does not exist",
         lambda c: _kt().load_model(c.root / "missing.keras"), FileNotFoundError, ("No saved model at",)),
    Case("not_a_keras_file", "loading a file that is not .keras",
         lambda c: _kt().load_model(c.bert_preset + "/config.json"), ValueError, ("reads `.keras` files",)),
    Case("load_model_none", "kt.load_model(None)",
         lambda c: _kt().load_model(None), ValueError, ("Expected `filepath`", "Received: None")),
    Case("custom_objects_list", "custom_objects as a list of classes",
         lambda c: _kt().load_model(c.saved_model("custom_objects_list"), custom_objects=[_kt().TextClassifier]),
         ValueError, ("Expected `custom_objects` to be a dict",)),
    Case("zip_without_config", "loading a zip archive named .keras that model.save did not write",
         _zip_without_config, ValueError, ("not a valid `.keras` file", "config.json")),
    Case("corrupted_keras", "loading a corrupted .keras file",
         _corrupt_keras_file, ValueError, ("not a valid `.keras` file", "Save the model again")),
    Case("truncated_keras", "loading a truncated .keras file (a save killed half-way)",
         _truncated_keras_file, ValueError, ("not a valid `.keras` file",)),
    Case("lambda_layer", "loading a .keras file with a Lambda layer (code)",
         _keras_file_with_lambda, ValueError, ("safe_mode",)),
    Case("cli_predict_regressor", "keras-transfer predict with a saved TextRegressor",
         _cli_predict_regressor, SystemExit, ("classifies single texts with a TextClassifier", "TextRegressor")),
    Case("other_backend", "loading a .keras file saved by another backend",
         _other_backend, None,
         note="works: the .keras format is backend-neutral (Keras records no backend in it)"),
]


# --- The document ----------------------------------------------------------------------


def _cell(text):
    return text.replace("|", "\\|").replace("\n", " ").strip()


def render(context):
    """`docs/bad_inputs.md`: every case, run, with the message it gives."""
    errors = sum(case.error is not None for case in CASES)
    lines = [
        "# Bad inputs and what they get",
        "",
        "Generated by `scripts/bad_input_catalogue.py` from `tests/bad_inputs.py`;",
        "`tests/test_bad_inputs.py` runs every case and checks this page is current.",
        f"{len(CASES)} cases: {errors} misuses that must raise a clear error, and "
        f"{len(CASES) - errors} odd inputs that must work. `<tmp>` and `<bert_preset>` "
        "stand for the scratch folder and the tiny test preset.",
        "",
        "| misuse | error | message |",
        "|---|---|---|",
    ]
    for case in CASES:
        error, message = run_case(case, context)
        if case.error is None:
            lines.append(f"| {_cell(case.description)} | none | {_cell(case.note)} |")
        else:
            lines.append(f"| {_cell(case.description)} | `{error.__name__ if error else 'none'}` | {_cell(message)} |")
    return "\n".join(lines) + "\n"
