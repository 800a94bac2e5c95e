"""restore-db's pieces that need no server: the digest checked when the stream ends
(from a manifest read meanwhile), and target names."""

from __future__ import annotations

import hashlib
import io

import pytest

from shipper.databases import DatabaseError
from shipper.slave import restore


def test_the_digest_is_asked_for_only_when_the_stream_ends() -> None:
    data = b"-- dump\n" * 1000
    asked = []

    def expected() -> str:
        asked.append(True)
        return hashlib.sha256(data).hexdigest()

    reader = restore.DigestCheckingReader(io.BytesIO(data), expected, "mariadb:app")
    assert reader.read(100) and not asked
    reader.drain()
    assert asked == [True]

    wrong = restore.DigestCheckingReader(io.BytesIO(data), lambda: "0" * 64, "mariadb:app")
    with pytest.raises(DatabaseError, match="does not match its manifest"):
        wrong.drain()


def test_target_names_take_a_pattern_and_a_suffix() -> None:
    dump = restore.Dump("mariadb:shop", "mariadb", "shop", "s", "mariadb-shop.sql", 0, None, "")
    assert restore.target_name(dump) == "shop"
    assert restore.target_name(dump, suffix="_20261125") == "shop_20261125"
    assert restore.target_name(dump, "old_{db}") == "old_shop"
    assert restore.target_name(dump, "copy") == "copy"
