"""Extractive question answering: reader, windows, offsets, decoding, the task."""

import gzip
import json

import keras
import numpy as np
import pytest
from helpers import changed, raises, snapshot

import keras_transfer as kt
from keras_transfer import qa
from keras_transfer.datasets.squad import QAData, normalize_answers

# Every word is in the tiny BERT vocabulary (tests/helpers.py).
CONTEXT = (
    "the film was good and the plot was boring , the acting was fun and the "
    "story was very good so i loved it . one two three four five six seven "
    "eight nine ten , the end of the movie was the best and the worst ever ."
)
QUESTIONS = ["what was the plot ?", "what was the acting ?", "what was the end ?"]
ANSWER_TEXTS = ["boring", "fun", "the best and the worst"]


def answers_for(context=CONTEXT, texts=ANSWER_TEXTS):
    return [{"text": [t], "answer_start": [context.index(t)]} for t in texts]


def tiny_model(preset, sequence_length=24, stride=6, **kwargs):
    kwargs.setdefault("max_question_length", 8)
    return kt.QuestionAnswerer.from_preset(
        preset, sequence_length=sequence_length, stride=stride, **kwargs
    )


# --- Offsets ---------------------------------------------------------------


def test_offsets_map_tokens_back_to_the_original_text(preset):
    _, preprocessor = kt.load_backbone(preset, sequence_length=32)
    texts = ["The film was GOOD, really!", "  fun  story . "]
    encoded = qa.token_offsets(preprocessor, texts)
    tokenizer = preprocessor.tokenizer
    for text, (ids, offsets), expected_ids in zip(texts, encoded, preprocessor.token_ids(texts)):
        np.testing.assert_array_equal(ids, expected_ids)  # the same ids as training uses
        assert len(ids) == len(offsets) > 0
        for token_id, (start, end) in zip(ids, offsets):
            piece = text[start:end]
            assert piece == piece.strip()
            token = tokenizer.id_to_token(int(token_id))
            if preprocessor.family.name == "bert":
                assert piece.lower() == token.removeprefix("##")
            else:
                assert piece == tokenizer.detokenize([int(token_id)]).strip()


def test_offsets_point_into_the_text_before_normalisation(hf_bert_dir):
    # The HF checkpoint's uncased tokenizer strips accents: "naïve" is the
    # token "naive", whose span is still the accented word.
    _, preprocessor = kt.load_backbone(str(hf_bert_dir), sequence_length=32)
    text = "the naïve café was good"
    ids, offsets = qa.token_offsets(preprocessor, [text])[0]
    vocab = preprocessor.tokenizer.get_vocabulary()
    assert [vocab[i] for i in ids] == ["the", "naive", "cafe", "was", "good"]
    assert [text[s:e] for s, e in offsets] == ["the", "naïve", "café", "was", "good"]
    windows = qa.make_windows(
        preprocessor, ["what was good ?"], [text], normalize_answers(["café"], [text]),
        stride=4, max_question_length=8,
    )
    (window,) = windows
    s, e = window.start_position, window.end_position
    assert text[window.offsets[s, 0] : window.offsets[e, 1]] == "café"


# --- Windows ---------------------------------------------------------------


def test_windows_overlap_by_stride_and_cover_every_answer(bert_preset):
    _, preprocessor = kt.load_backbone(bert_preset, sequence_length=24)
    answers = answers_for()
    windows = qa.make_windows(
        preprocessor, QUESTIONS, [CONTEXT] * 3, answers, stride=6, max_question_length=8
    )
    tokenizer = preprocessor.tokenizer
    context_tokens = len(preprocessor.token_ids([CONTEXT])[0])
    for i, (question, answer) in enumerate(zip(QUESTIONS, answers)):
        mine = [w for w in windows if w.example == i]
        assert len(mine) > 2  # the context is much longer than a window
        question_ids = list(preprocessor.token_ids([question])[0])
        covered = []
        for w in mine:
            # [CLS] question [SEP] context [SEP], segment 0 then 1.
            head = [tokenizer.cls_token_id] + question_ids + [tokenizer.sep_token_id]
            assert list(w.token_ids[: len(head)]) == head
            assert w.token_ids[-1] == tokenizer.sep_token_id
            assert len(w.token_ids) <= 24
            assert list(w.segment_ids) == [0] * len(head) + [1] * (len(w.token_ids) - len(head))
            context = w.offsets[:, 0] >= 0
            assert not context[: len(head)].any() and not context[-1]
            assert context[len(head) : -1].all()
            assert w.span_mask[0] and w.span_mask.sum() == context.sum() + 1
            covered.append(w.offsets[context])
        # Consecutive windows share exactly `stride` context tokens, and
        # together they hold every context token.
        for a, b in zip(covered, covered[1:]):
            np.testing.assert_array_equal(a[-6:], b[:6])
        assert sum(len(c) for c in covered) - 6 * (len(covered) - 1) == context_tokens
        assert covered[-1][-1, 1] == len(CONTEXT)  # ends with the final "."
        # The answer is wholly inside at least one window, whose labels
        # point at exactly its characters; the others point at position 0.
        text, start = answer["text"][0], answer["answer_start"][0]
        holding = [w for w in mine if w.start_position > 0]
        assert holding
        for w in holding:
            s, e = w.start_position, w.end_position
            assert (w.offsets[s, 0], w.offsets[e, 1]) == (start, start + len(text))
        for w in mine:
            if w.start_position == 0:
                assert w.end_position == 0
                inside = w.offsets[w.offsets[:, 0] >= 0]
                assert inside[0, 0] > start or inside[-1, 1] < start + len(text)


def test_long_questions_are_cut_and_windows_checked(bert_preset):
    _, preprocessor = kt.load_backbone(bert_preset, sequence_length=24)
    question = "what was the film and the plot and the acting and the story ?"
    (window, *_) = qa.make_windows(preprocessor, [question], [CONTEXT], max_question_length=4, stride=2)
    assert list(window.segment_ids).count(0) == 1 + 4 + 1
    with raises(ValueError, "stride=20", "sequence_length=24", "max_question_length=8"):
        qa.make_windows(preprocessor, ["q"], [CONTEXT], stride=20, max_question_length=8)


def test_gpt2_windows_use_its_own_packing(gpt2_preset):
    _, preprocessor = kt.load_backbone(gpt2_preset, sequence_length=24)
    context = "the film was good and the plot was boring"
    windows = qa.make_windows(
        preprocessor, ["plot ?"], [context], normalize_answers(["boring"], [context]),
        stride=4, max_question_length=8,
    )
    end = preprocessor.tokenizer.end_token_id
    w = windows[-1]
    assert w.token_ids[0] == preprocessor.tokenizer.start_token_id and w.token_ids[-1] == end
    s, e = w.start_position, w.end_position
    assert context[w.offsets[s, 0] : w.offsets[e, 1]] == "boring"
    batch = qa.QABatches(preprocessor, windows).inputs([0])
    assert set(batch) == {"token_ids", "padding_mask", "span_mask"}  # no segment ids


def test_shuffled_batches_follow_keras_random_seed(bert_preset):
    # Without a seed of its own, the shuffle draws one from NumPy's generator,
    # so `keras.utils.set_random_seed` makes training repeatable.
    _, preprocessor = kt.load_backbone(bert_preset, sequence_length=16)
    contexts = [f"the film number {i} was good and the plot was boring" for i in range(12)]
    windows = qa.make_windows(preprocessor, ["plot ?"] * 12, contexts, stride=4, max_question_length=8)

    def plan():
        keras.utils.set_random_seed(3)
        batches = qa.QABatches(preprocessor, windows, batch_size=2, shuffle=True)
        batches.on_epoch_end()
        return [list(rows) for rows in batches._batches]

    first = plan()
    assert plan() == first
    assert first != [list(rows) for rows in qa.QABatches(preprocessor, windows, batch_size=2)._batches]


# --- Decoding on hand-made logits -------------------------------------------


@pytest.fixture
def one_window(bert_preset):
    _, preprocessor = kt.load_backbone(bert_preset, sequence_length=64)
    context = "the film was good and the plot was boring"
    (window,) = qa.make_windows(
        preprocessor, ["what was it ?"], [context], stride=8, max_question_length=8
    )
    positions = {
        context[s:e]: i for i, (s, e) in enumerate(window.offsets) if s >= 0 and context[s:e] != "the"
    }
    return context, window, positions


def logits_for(window, **values):
    out = np.zeros(len(window.token_ids), "float32")
    for position, value in values.items():
        out[int(position.removeprefix("p"))] = value
    return out


def test_decoding_keeps_end_after_start_and_inside_the_context(one_window):
    context, window, at = one_window
    start = logits_for(window, **{f"p{at['plot']}": 5.0, f"p{at['film']}": 1.0, "p2": 50.0})
    end = logits_for(window, **{f"p{at['film']}": 6.0, f"p{at['boring']}": 4.0, "p3": 50.0})
    # Positions 2 and 3 hold question tokens: never chosen. "plot"..."film"
    # would end before it starts; "plot"…"boring" is the best valid span.
    (answer,) = qa.decode([start], [end], [window], [context])
    assert answer["text"] == "plot was boring"
    assert context[answer["start"] : answer["end"]] == answer["text"]
    assert 0 < answer["score"] <= 1
    assert qa.best_span(start, end, window)[1:] == (at["plot"], at["boring"])


def test_decoding_respects_max_answer_length(one_window):
    context, window, at = one_window
    start = logits_for(window, **{f"p{at['film']}": 5.0, f"p{at['boring']}": 1.0})
    end = logits_for(window, **{f"p{at['boring']}": 5.0})
    (long_answer,) = qa.decode([start], [end], [window], [context], max_answer_length=30)
    assert long_answer["text"] == "film was good and the plot was boring"
    (short,) = qa.decode([start], [end], [window], [context], max_answer_length=3)
    assert short["text"] == "boring"  # "film…boring" is 8 tokens; the best within 3


def test_decoding_picks_the_best_window_and_maps_to_original_characters(bert_preset):
    _, preprocessor = kt.load_backbone(bert_preset, sequence_length=24)
    windows = qa.make_windows(preprocessor, ["what ?"], [CONTEXT.upper()], stride=6, max_question_length=8)
    assert len(windows) > 2
    starts = [np.zeros(len(w.token_ids)) for w in windows]
    ends = [np.zeros(len(w.token_ids)) for w in windows]
    # A good span in the first window, a better one in the last.
    first, last = windows[0], windows[-1]
    f = np.flatnonzero(first.offsets[:, 0] >= 0)[1]
    starts[0][f], ends[0][f] = 3.0, 3.0
    l0, l1 = np.flatnonzero(last.offsets[:, 0] >= 0)[[2, 3]]
    starts[-1][l0], ends[-1][l1] = 4.0, 4.0
    (answer,) = qa.decode(starts, ends, windows, [CONTEXT.upper()])
    s, e = last.offsets[l0, 0], last.offsets[l1, 1]
    assert (answer["start"], answer["end"]) == (s, e)
    assert answer["text"] == CONTEXT.upper()[s:e] and answer["text"].isupper()


def test_null_answer_wins_only_when_allowed_and_above_threshold(one_window):
    context, window, at = one_window
    start = logits_for(window, p0=6.0, **{f"p{at['plot']}": 4.0})
    end = logits_for(window, p0=6.0, **{f"p{at['plot']}": 4.0})
    # Null 12 against span 8.
    (span,) = qa.decode([start], [end], [window], [context])
    assert span["text"] == "plot"
    (null,) = qa.decode([start], [end], [window], [context], allow_unanswerable=True)
    assert null == {"text": "", "start": 0, "end": 0, "score": pytest.approx(null["score"])}
    assert 0.5 < null["score"] <= 1
    (answered,) = qa.decode(
        [start], [end], [window], [context], allow_unanswerable=True, null_threshold=5.0
    )
    assert answered["text"] == "plot"


# --- The task -------------------------------------------------------------


# The learning tests' answer is "very boring", wherever it sits: a tiny
# random model learns that from the tokens alone in a few dozen steps.
LEARN_CONTEXTS = [
    "the film was very boring and the plot was good",
    "very boring , i hated it",
    "the acting was fun and the story was good but the end was very boring .",
    CONTEXT.replace("very good so", "so") + " the plot was very boring !",  # several windows
]


def learning_data(n=4, question="what was it ?"):
    contexts = LEARN_CONTEXTS * n
    return QAData([question] * len(contexts), contexts, ["very boring"] * len(contexts))


def test_fit_learns_spans_and_answers_by_character_offsets(bert_preset, tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_model(bert_preset)
    model.compile(learning_rate=1e-2)
    data = learning_data()
    history = model.fit(data, epochs=16, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]
    metrics = model.evaluate(data, return_dict=True, verbose=0)
    assert metrics["start_logits_accuracy"] > 0.95 and metrics["end_logits_accuracy"] > 0.95
    test = data.take(4)
    predictions = model.answer(test)
    assert [p["text"] for p in predictions] == ["very boring"] * 4
    for p, context in zip(predictions, test.contexts):
        assert (p["start"], p["end"]) == (context.index("very boring"), context.index("very boring") + 11)
        assert 0.5 < p["score"] <= 1
    assert model.evaluate_answers(test) == {"exact_match": 100.0, "f1": 100.0, "count": 4}

    model.save(tmp_path / "qa.keras")
    loaded = kt.load_model(tmp_path / "qa.keras")
    assert isinstance(loaded, kt.QuestionAnswerer)
    assert loaded.get_config()["stride"] == 6 and loaded.max_answer_length == 30
    assert loaded.answer(test) == predictions


def test_every_family_fits_answers_and_reloads(preset, tmp_path):
    context = "the film was good and the plot was boring"
    model = tiny_model(preset, sequence_length=16, stride=2, max_question_length=4)
    data = QAData(["plot ?", "film ?"], [context] * 2, ["boring", "good"])
    history = model.fit(
        data, epochs=1, batch_size=2, validation_data=(data.questions, data.contexts, data.answers), verbose=0
    )
    assert np.isfinite(history.history["val_loss"][0])
    predictions = model.answer(data)
    for p in predictions:
        assert context[p["start"] : p["end"]] == p["text"] and p["text"]
    model.save(tmp_path / "qa.keras")
    assert kt.load_model(tmp_path / "qa.keras").answer(data) == predictions


def test_frozen_backbone_trains_only_the_span_head(bert_preset):
    model = tiny_model(bert_preset, freeze=True)
    before = snapshot(model.backbone)
    head = snapshot(model.get_layer("span_dense"))
    model.fit(QAData(QUESTIONS, [CONTEXT] * 3, answers_for()), epochs=1, verbose=0)
    assert not changed(before, model.backbone)
    assert changed(head, model.get_layer("span_dense"))


def test_unanswerable_questions_are_learned_and_answered_empty(bert_preset):
    keras.utils.set_random_seed(0)
    model = tiny_model(bert_preset, allow_unanswerable=True)
    model.compile(learning_rate=1e-2)
    empty = ["the film was good and the plot was fun", "i loved it , what a story"]
    data = learning_data(2)
    data = QAData(
        data.questions + ["what was it ?"] * 4, data.contexts + empty * 2, data.answers + [None] * 4
    )
    model.fit(data, epochs=6, batch_size=8, verbose=0)
    test = QAData(["what was it ?"] * 3, [LEARN_CONTEXTS[0], empty[0], LEARN_CONTEXTS[1]], ["very boring", None, "very boring"])
    assert [p["text"] for p in model.answer(test)] == ["very boring", "", "very boring"]
    assert model.evaluate_answers(test)["exact_match"] == 100.0


def test_token_id_inputs_give_masked_logits(bert_preset):
    model = tiny_model(bert_preset)
    windows = model.windows(QUESTIONS[:1], [CONTEXT])
    batch = qa.QABatches(model.preprocessor, windows).inputs([0])
    out = model.predict(batch, verbose=0)
    assert set(out) == {"start_logits", "end_logits"}
    masked = ~batch["span_mask"][0]
    assert (out["start_logits"][0][masked] < -1e8).all()
    assert (out["end_logits"][0][~masked] > -1e8).all()


def test_config_mirrors_init(bert_preset):
    model = tiny_model(bert_preset, max_answer_length=5, allow_unanswerable=True, null_threshold=1.5)
    config = model.get_config()
    for key, value in {
        "stride": 6, "max_question_length": 8, "max_answer_length": 5,
        "allow_unanswerable": True, "null_threshold": 1.5, "dropout": 0.0,
    }.items():
        assert config[key] == value
    clone = kt.QuestionAnswerer.from_config(config)
    assert clone.get_config()["null_threshold"] == 1.5


# --- Bad input ------------------------------------------------------------


@pytest.fixture(scope="module")
def model(bert_preset):
    return tiny_model(bert_preset)


def test_answer_not_at_its_start_names_the_example_and_both_strings(model):
    answers = [{"text": "plot", "answer_start": 3}]
    with raises(ValueError, "example 0", "'plot'", "' fil'", "answer_start=3", "first occurs at"):
        model.fit(questions=["q ?"], contexts=["the film was good and the plot"], answers=answers)
    with raises(ValueError, "id 'q-17'", "'boring'"):
        QAData(["q ?"], ["the plot"], [{"text": "boring", "answer_start": 4}], ids=["q-17"])
    with raises(ValueError, "'great'", "does not occur"):
        model.fit(questions=["q ?"], contexts=["the plot"], answers=["great"])


def test_qa_data_takes_numpy_starts_and_single_values():
    context = "the plot was good"
    data = QAData(["q ?"] * 3, [context] * 3, [
        {"text": "plot", "answer_start": np.int64(4)},
        {"text": ["good"], "answer_start": np.array([13])},
        {"text": np.array(["plot"]), "answer_start": [np.int32(4)]},
    ])
    assert [answer["answer_start"] for answer in data.answers] == [[4], [13], [4]]
    assert all(type(start) is int for answer in data.answers for start in answer["answer_start"])
    with raises(ValueError, "answer_start"):
        QAData(["q ?"], [context], [{"text": "plot", "answer_start": 4.0}])
    with raises(ValueError, "non-empty string"):
        QAData(["q ?"], [context], [{"text": None, "answer_start": 4}])


@pytest.mark.parametrize(
    "questions, contexts, answers, fragments",
    [
        (["a ?", "b ?"], [CONTEXT], None, ["2 questions", "1 context."]),
        (["a ?"], [CONTEXT], ["fun", "good"], ["1 context but", "2 answers"]),
        ([3], [CONTEXT], ["fun"], ["questions[0]=3", "int"]),
        (["a ?"], [None], ["fun"], ["contexts[0]=None"]),
        (["a ?"], ["   "], ["fun"], ["contexts[0]", "empty"]),
        ("a ?", [CONTEXT], ["fun"], ["single string"]),
        (["a ?"], [CONTEXT], [{"text": "fun"}], ["answers[0]", "answer_start"]),
    ],
)
def test_bad_lists_are_refused(model, questions, contexts, answers, fragments):
    with raises(ValueError, *fragments):
        model.fit(questions=questions, contexts=contexts, answers=answers or ["x"])


def test_other_misuse_is_refused(bert_preset, model):
    with raises(ValueError, "need the answers"):
        model.fit(questions=["a ?"], contexts=[CONTEXT])
    with raises(ValueError, "1 of the 2 questions has no answer", "allow_unanswerable=True"):
        model.fit(questions=["a ?", "b ?"], contexts=[CONTEXT] * 2, answers=["fun", None])
    with raises(ValueError, "model.answer(questions, contexts)"):
        model.predict(["what ?"])
    with raises(ValueError, "does not cache features"):
        model.fit(QAData(["a ?"], [CONTEXT], ["fun"]), cache_features=True)
    with raises(ValueError, "QAData", "do not pass"):
        model.fit(QAData(["a ?"], [CONTEXT], ["fun"]), questions=["b ?"])
    with raises(ValueError, "stride=30", "sequence_length=24"):
        tiny_model(bert_preset, stride=30)
    with raises(ValueError, "max_answer_length"):
        tiny_model(bert_preset, max_answer_length=0)
    with raises(ValueError, "freeze"):
        tiny_model(bert_preset, freeze="yes")


def test_numpy_integers_are_integers(bert_preset, model):
    context = "the film was good and the plot was boring"
    start = context.index("boring")
    for answer_start in (np.int64(start), [np.int64(start)], np.array([start]), [np.int32(start)]):
        windows = model.windows(["plot ?"], [context], None)
        history = model.fit(
            questions=["plot ?"], contexts=[context],
            answers=[{"text": "boring", "answer_start": answer_start}], epochs=1, verbose=0,
        )
        assert np.isfinite(history.history["loss"][0]) and windows
    with raises(ValueError, "answer_start", "4.0", "an int"):
        model.fit(questions=["plot ?"], contexts=[context], answers=[{"text": "film", "answer_start": 4.0}])
    with raises(ValueError, "answer_start", "True", "an int"):
        model.fit(questions=["plot ?"], contexts=[context], answers=[{"text": "film", "answer_start": True}])
    with raises(ValueError, "answer text", "None", "non-empty string"):
        model.fit(questions=["plot ?"], contexts=[context], answers=[{"text": None, "answer_start": 4}])
    sized = tiny_model(bert_preset, stride=np.int64(6), max_question_length=np.int32(8), max_answer_length=np.int64(5))
    config = sized.get_config()
    assert [type(config[key]) for key in ("stride", "max_question_length", "max_answer_length")] == [int] * 3
    assert len(qa.QABatches(model.preprocessor, windows, batch_size=np.int64(2))) == 1


def test_lone_surrogates_become_replacement_characters(model):
    broken, clean = "the film \ud800 was good", "the film \ufffd was good"
    (ids, offsets), (clean_ids, clean_offsets) = qa.token_offsets(model.preprocessor, [broken, clean])
    np.testing.assert_array_equal(ids, clean_ids)
    np.testing.assert_array_equal(offsets, clean_offsets)  # still offsets into `broken`
    (answer,) = model.answer(["what was good ?"], [broken])
    assert broken[answer["start"] : answer["end"]] == answer["text"]


def test_unsupported_families_and_tokenizers_are_named():
    import dataclasses
    import types

    from keras_transfer.families import FAMILIES

    bert = FAMILIES["BertBackbone"]
    with raises(ValueError, "'bert' family", "no start token", "BERT, DistilBERT"):
        qa.check_family(dataclasses.replace(bert, start=None))
    with raises(ValueError, "character offset", "object", "WordPiece", "byte-level BPE"):
        qa.token_offsets(types.SimpleNamespace(tokenizer=object()), ["text"])


# --- SQuAD JSON -----------------------------------------------------------


def squad_json(version="1.1"):
    context_a = "The tower is in Paris. It was built in 1889."
    context_b = "Rivers flow to the sea."
    qas_b = [{"id": "b1", "question": "Where do rivers flow?", "answers": [{"text": "to the sea", "answer_start": 12}]}]
    if version == "2.0":
        qas_b.append(
            {
                "id": "b2", "question": "Where do lakes flow?", "answers": [], "is_impossible": True,
                "plausible_answers": [{"text": "the sea", "answer_start": 15}],
            }
        )
    return {
        "version": version,
        "data": [
            {
                "title": "Tower",
                "paragraphs": [
                    {
                        "context": context_a,
                        "qas": [
                            {
                                "id": "a1", "question": "Where is the tower?",
                                "answers": [{"text": "Paris", "answer_start": 16}, {"text": "in Paris", "answer_start": 13}],
                            },
                            {"id": "a2", "question": "When was it built?", "answers": [{"text": "1889", "answer_start": 39}]},
                        ],
                    }
                ],
            },
            {"title": "Rivers", "paragraphs": [{"context": context_b, "qas": qas_b}]},
        ],
    }


def test_read_squad_v1(tmp_path):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(squad_json("1.1")))
    data = kt.datasets.read_squad(path)
    assert len(data) == 3 and data.ids == ["a1", "a2", "b1"]
    assert data.titles == ["Tower", "Tower", "Rivers"] and data.article_titles == ["Tower", "Rivers"]
    assert data.answers[0] == {"text": ["Paris", "in Paris"], "answer_start": [16, 13]}
    assert data.contexts[2] == "Rivers flow to the sea."
    rivers = data.with_titles(["Rivers"])
    assert rivers.ids == ["b1"] and rivers.questions == ["Where do rivers flow?"]
    assert data.take(2).ids == ["a1", "a2"]
    assert "3 questions, 3 answerable" in repr(data)
    gz = tmp_path / "squad.json.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert kt.datasets.read_squad(gz).answers == data.answers


def test_read_squad_v2_keeps_unanswerable_questions(tmp_path):
    path = tmp_path / "squad2.json"
    path.write_text(json.dumps(squad_json("2.0")))
    data = kt.datasets.read_squad(path)
    assert data.ids[-1] == "b2"
    assert data.answers[-1] == {"text": [], "answer_start": []}
    assert data.plausible_answers[-1] == {"text": ["the sea"], "answer_start": [15]}
    assert kt.metrics.squad_scores(["", "", "", ""], data.answers)["exact_match"] == 25.0


def test_read_squad_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No SQuAD file"):
        kt.datasets.read_squad(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"articles": []}))
    with raises(ValueError, "SQuAD's layout"):
        kt.datasets.read_squad(bad)
    content = squad_json()
    content["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] = 38
    bad.write_text(json.dumps(content))
    with raises(ValueError, "id 'a2'", "'1889'", "' 188'", "answer_start=38"):
        kt.datasets.read_squad(bad)
    with raises(ValueError, "Unknown titles", "'B'"):
        QAData(["q"], ["c"], titles=["A"]).with_titles(["B"])


def test_example_script_runs_on_a_tiny_squad_file(bert_preset, tmp_path, capsys):
    import importlib.util
    import pathlib

    path = tmp_path / "squad.json"
    path.write_text(json.dumps(squad_json("1.1")))
    script = pathlib.Path(__file__).resolve().parent.parent / "examples" / "squad_qa.py"
    spec = importlib.util.spec_from_file_location("squad_qa_example", script)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    scores = example.main(
        ["--data", str(path), "--preset", bert_preset, "--train-articles", "1",
         "--sequence-length", "24", "--stride", "4", "--max-question-length", "8"]
    )
    assert scores["count"] == 1 and 0 <= scores["f1"] <= 100
    out = capsys.readouterr().out
    assert "Train: 2 questions from the first 1 articles; eval: 1 questions" in out
    assert "| model | train questions | eval questions | EM | F1 |" in out
