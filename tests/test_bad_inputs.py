"""Every case of the misuse catalogue (`tests/bad_inputs.py`) gets its
error and message, and `docs/bad_inputs.md` shows what the code says today."""

import pytest

from bad_inputs import CASES, DOC_PATH, Context, render, run_case


@pytest.fixture(scope="module")
def context(bert_preset, tmp_path_factory):
    return Context(tmp_path_factory.mktemp("bad_inputs"), bert_preset)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case(case, context):
    error, message = run_case(case, context)
    if case.error is None:
        assert error is None, f"{case.description}: raised {error.__name__}: {message}"
        return
    assert error is not None, f"{case.description}: no error was raised"
    assert issubclass(error, case.error), f"{case.description}: {error.__name__}: {message}"
    for fragment in case.fragments:
        assert fragment in message, f"{case.description}: {fragment!r} not in {message!r}"


def test_case_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


def test_doc_is_up_to_date(context):
    expected = render(context)
    current = DOC_PATH.read_text() if DOC_PATH.exists() else ""
    assert current == expected, (
        "docs/bad_inputs.md is out of date: run "
        "`.venv/bin/python scripts/bad_input_catalogue.py`."
    )
