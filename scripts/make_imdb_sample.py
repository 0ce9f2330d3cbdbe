"""Make the IMDB sample shipped in keras_transfer/datasets/_sample/.

Picks a class-balanced random subset of the Large Movie Review Dataset
(Maas et al., ACL 2011): PER_CLASS reviews of each class (neg, pos) from
each split (train, test), and writes them as gzip JSON Lines with the
fields {"split", "text", "label"} (label is "neg" or "pos").

The choice needs no random number generator, so it does not depend on the
Python or NumPy version: every review file is ranked by
sha256(f"{SEED}:{file name in the archive}") and the PER_CLASS lowest of
each (split, class) are kept. Within a split the kept reviews are written
in rank order (classes mixed), train before test. The gzip header carries
no file name or time stamp, so the output is byte-for-byte reproducible.

Usage:
    python scripts/make_imdb_sample.py [ARCHIVE] [OUTPUT]

ARCHIVE defaults to /work/shared/data/aclImdb.tar.gz (or aclImdb_v1.tar.gz
from https://ai.stanford.edu/~amaas/data/sentiment/, which holds the same
review files); OUTPUT defaults to
keras_transfer/datasets/_sample/imdb_sample.jsonl.gz. The script prints
the counts, the size and the sha256 of the result, and fails if the file
is larger than MAX_BYTES.
"""

import gzip
import hashlib
import io
import json
import re
import sys
import tarfile
from pathlib import Path

SEED = 20110619
PER_CLASS = 450
MAX_BYTES = 1_000_000
SPLITS = ("train", "test")
LABELS = ("neg", "pos")
MEMBER = re.compile(r"(?:^|/)(train|test)/(neg|pos)/([^/]+\.txt)$")
DEFAULT_ARCHIVE = "/work/shared/data/aclImdb.tar.gz"
DEFAULT_OUTPUT = (
    Path(__file__).resolve().parents[1]
    / "keras_transfer/datasets/_sample/imdb_sample.jsonl.gz"
)


def rank(name):
    """The sort key that decides which reviews are picked."""
    return hashlib.sha256(f"{SEED}:{name}".encode("utf-8")).hexdigest()


def select(archive_path, per_class):
    """Return {split: [(rank, label, text), ...]} for the chosen reviews."""
    candidates = {(split, label): [] for split in SPLITS for label in LABELS}
    with tarfile.open(archive_path, "r|*") as archive:
        for member in archive:
            match = MEMBER.search(member.name)
            if match and member.isfile():
                split, label, file_name = match.groups()
                name = f"{split}/{label}/{file_name}"
                data = archive.extractfile(member).read().decode("utf-8")
                candidates[split, label].append((rank(name), label, data))
    chosen = {}
    for split in SPLITS:
        rows = []
        for label in LABELS:
            found = sorted(candidates[split, label])
            if len(found) < per_class:
                raise ValueError(
                    f"expected at least {per_class} reviews in {split}/{label}. "
                    f"Received: {len(found)} in '{archive_path}'. "
                    "Fix: pass the labelled aclImdb archive."
                )
            rows.extend(found[:per_class])
        chosen[split] = sorted(rows)
    return chosen


def write(chosen, output_path):
    """Write the chosen reviews as reproducible gzip JSON Lines."""
    lines = []
    for split in SPLITS:
        for _, label, text in chosen[split]:
            record = {"split": split, "text": text, "label": label}
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    payload = "".join(lines).encode("utf-8")
    buffer = io.BytesIO()
    with gzip.GzipFile(
        filename="", mode="wb", compresslevel=9, fileobj=buffer, mtime=0
    ) as file:
        file.write(payload)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_bytes(buffer.getvalue())
    return len(payload), buffer.getvalue()


def main(argv):
    archive_path = Path(argv[1] if len(argv) > 1 else DEFAULT_ARCHIVE)
    output_path = Path(argv[2] if len(argv) > 2 else DEFAULT_OUTPUT)
    chosen = select(archive_path, PER_CLASS)
    text_bytes, data = write(chosen, output_path)
    for split in SPLITS:
        counts = {
            label: sum(row[1] == label for row in chosen[split]) for label in LABELS
        }
        print(f"{split}: {len(chosen[split])} reviews {counts}")
    print(f"seed={SEED} per_class={PER_CLASS}")
    print(f"uncompressed: {text_bytes:,} bytes; gzip: {len(data):,} bytes")
    print(f"sha256: {hashlib.sha256(data).hexdigest()}")
    print(f"written to {output_path}")
    if len(data) > MAX_BYTES:
        print(f"too large: {len(data):,} > {MAX_BYTES:,} bytes; lower PER_CLASS")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
