"""`printable`: what salesflow shows of a name or value holds no control character."""

from __future__ import annotations

import pytest

from salesflow.text import printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("sales_\x1b[31mred.csv", "sales_\\x1b[31mred.csv"),
        ("a\nb", "a\\nb"),
        ("a\rb\tc", "a\\rb\\tc"),
        ("nul\x00bell\x07", "nul\\x00bell\\x07"),
        ("del\x7f", "del\\x7f"),
        ("csi\x9b31m", "csi\\x9b31m"),  # C1: a lone CSI is an escape sequence to some terminals
        ("next\x85line", "next\\x85line"),
        ("line\u2028sep", "line\\u2028sep"),
        ("gnp.\u202eexe", "gnp.\\u202eexe"),  # a right-to-left override reorders what is shown
    ],
)
def test_control_characters_become_visible_escapes(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_ordinary_text_and_non_ascii_letters_stay_as_they_are() -> None:
    text = "ventas_año_café_Ñandú 2024-01-05 [x] C:\\data\\wh.duckdb 東京 €"

    assert printable(text) == text


def test_escaping_twice_changes_nothing() -> None:
    once = printable("a\x1b[2Jb\nc")

    assert printable(once) == once == "a\\x1b[2Jb\\nc"


def test_every_c0_c1_and_del_character_is_escaped() -> None:
    controls = "".join(chr(code) for code in [*range(0x20), *range(0x7F, 0xA0)])

    shown = printable(controls)

    assert shown.isprintable() and shown.isascii()
    assert len(shown) == 4 * len(controls) - 2 * 3  # \n \r \t are two characters, others four
