"""The two ways CSV records are counted give the same shapes (field counts, blank lines).

Files without quotes or a byte-order mark are counted on their bytes (the fast path); the rest
by joining quoted lines. Any text the fast path takes must come out of both identically.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from salesflow.contract import FIELD_COUNT
from salesflow.sources.csv_records import (
    _plain_record_shapes,
    _record_shapes,
    read_csv_records,
)

# Lines built from the characters that matter to counting: separators, line ends, multi-byte
# and undecodable text; never a quote or a byte-order mark (those take the other path).
_pieces = st.sampled_from(["a", "12", ",", "\r", "\n", " ", "é", "€", "\x00", "", "\n\n"])
_texts = st.lists(_pieces, max_size=60).map("".join)


@settings(max_examples=400, deadline=None)
@given(header=st.sampled_from(["a,b,c", "\n\na,b", "x", "\r\na,b,c\r"]), body=_texts)
def test_byte_counting_matches_line_joining_on_quote_free_text(header: str, body: str) -> None:
    text = header + "\n" + body
    assert_frame_equal(_plain_record_shapes(text.encode()), _record_shapes(text))


@settings(max_examples=100, deadline=None)
@given(body=_texts, junk=st.binary(min_size=1, max_size=4).filter(lambda b: b'"' not in b))
def test_byte_counting_matches_on_undecodable_bytes(body: str, junk: bytes) -> None:
    data = b"a,b\n" + junk + body.encode()
    assume(b"\xef\xbb\xbf" not in data)  # a byte-order mark takes the other path
    assert_frame_equal(
        _plain_record_shapes(data), _record_shapes(data.decode("utf-8", errors="replace"))
    )


def test_ragged_and_blank_records_are_counted_on_the_fast_path(tmp_path: Path) -> None:
    source = tmp_path / "plain.csv"
    source.write_bytes(b"a,b,c\r\n1,2,3\r\n\r\n4,5\r\n6,7,8,9\r\n")
    records = read_csv_records(source)
    assert records.get_column(FIELD_COUNT).to_list() == [3, 2, 4]
    assert records.get_column("a").to_list() == ["1", "4", "6"]
