"""The corpus the language-model chapters train on (``book/data``).

``book/data/README.md`` records where ``tinyshakespeare.txt`` comes from, its
size and its SHA-256; these tests hold the file to that record, so that a
changed, truncated or re-encoded copy fails the suite instead of silently
changing every number the chapters print.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "book" / "data"
CORPUS = DATA / "tinyshakespeare.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SIZE = 1_115_394
CUT = 1_003_854  # int(0.9 * SIZE): the first 90% for training


def test_the_corpus_is_the_recorded_file():
    data = CORPUS.read_bytes()
    assert len(data) == SIZE
    assert hashlib.sha256(data).hexdigest() == SHA256


def test_the_readme_records_the_same_hash_size_and_split():
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    assert SHA256 in readme
    assert f"{SIZE:,}" in readme
    assert f"{CUT:_}" in readme
    assert int(0.9 * SIZE) == CUT


def test_the_corpus_is_plain_ascii_so_characters_are_bytes():
    text = CORPUS.read_text(encoding="ascii")
    assert len(text) == SIZE
    assert text.startswith("First Citizen:\n")


def test_the_chapters_split_the_corpus_the_documented_way():
    # Every chapter that reads the corpus cuts it at int(0.9 * len(text)).
    users = []
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        source = "\n".join(
            "".join(c["source"]) for c in cells if c["cell_type"] == "code"
        )
        if "tinyshakespeare.txt" not in source:
            continue
        users.append(path.stem)
        assert re.search(r"int\(0\.9 \* len\(text\)\)", source), path.name
    assert users, "no chapter reads the corpus"
