"""Writes docs/bad_inputs.md: every misuse in tests/bad_inputs.py, run on
tiny local models with the network blocked, with the error it gets.

    .venv/bin/python scripts/bad_input_catalogue.py          # rewrite the page
    .venv/bin/python scripts/bad_input_catalogue.py --check  # exit 1 if it is stale

It runs the cases exactly as the test suite does (it loads tests/conftest.py
for the same offline setup: torch backend, private Keras home, no network).
"""

import argparse
import pathlib
import shutil
import sys
import tempfile

TESTS = pathlib.Path(__file__).resolve().parent.parent / "tests"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check the page is current")
    args = parser.parse_args()
    sys.path.insert(0, str(TESTS))
    import conftest  # noqa: F401  (backend, private homes, network blocked)
    from bad_inputs import CASES, DOC_PATH, Context, make_bert_preset, render, run_case

    scratch = pathlib.Path(tempfile.mkdtemp(prefix="bad-inputs-"))
    try:
        preset = make_bert_preset(scratch / "tiny_bert_preset")
        context = Context(scratch / "cases", preset)
        text = render(context)
        wrong = [
            case.id
            for case in CASES
            if (run_case(case, context)[0] is None) != (case.error is None)
            or (case.error is not None and not issubclass(run_case(case, context)[0], case.error))
        ]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(conftest._SCRATCH, ignore_errors=True)
    if wrong:
        print(f"warning: these cases do not behave as the catalogue expects: {wrong}", file=sys.stderr)
    if args.check:
        current = DOC_PATH.read_text() if DOC_PATH.exists() else ""
        if current != text:
            sys.exit(f"{DOC_PATH} is out of date; run {pathlib.Path(__file__).name}")
        print(f"{DOC_PATH} is current ({len(CASES)} cases).")
        return
    DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOC_PATH.write_text(text)
    print(f"wrote {DOC_PATH}: {len(CASES)} cases")


if __name__ == "__main__":
    main()
