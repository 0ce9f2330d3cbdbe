"""Wording shared by the library's messages."""


def counted(count, noun, plural=None):
    """`"1 text"`, `"2 texts"`: `count` and `noun`, plural unless the count
    is 1 (`plural` for a noun that does not just take an "s")."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
