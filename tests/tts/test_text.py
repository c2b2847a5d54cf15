"""Text frontend: normalization, both phonemizers offline, symbol table round trip and unknown symbols."""

from __future__ import annotations

import shutil
import socket

import pytest

from tts.text import (WORD_BOUNDARY, SymbolTable, TextError, UnknownSymbolError, build_phonemizer, is_phone,
                      normalize_text)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None and shutil.which("espeak") is None,
                                  reason="espeak-ng is not installed (README: apt-get install espeak-ng)")


@pytest.mark.parametrize("text, expected", [
    ("I have $250 in my pocket.", "I have two hundred fifty dollars in my pocket."),
    ("Meet me at 3:30 p.m. on the 21st.", "Meet me at three thirty p m on the twenty-first."),
    ("Mr. Smith paid $3.50.", "mister Smith paid three dollars and fifty cents."),
    ("In 1984, 1,000 people came.", "In nineteen eighty-four, one thousand people came."),
    ("It's 50% off & 3.14 more", "It's fifty percent off and three point one four more"),
    ("Born in 2005, at 10:00.", "Born in two thousand five, at ten o'clock."),
    ("“Quotes” — dashes…", '"Quotes", dashes...'),
])
def test_normalize(text, expected):
    assert normalize_text(text) == expected


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the text frontend tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_arpabet_offline_with_homographs(no_network):
    g2p = build_phonemizer("arpabet")
    verb, noun = g2p(["I refuse it.", "Take the refuse out."])
    assert verb[:9] == ["AY1", WORD_BOUNDARY, "R", "IH0", "F", "Y", "UW1", "Z", WORD_BOUNDARY]
    assert ["R", "EH1", "F", "Y", "UW2", "Z"] == noun[noun.index("R"):noun.index("R") + 6]
    assert g2p(["Zorblaxian!"])[0][-1] == "!" and len(g2p(["Zorblaxian!"])[0]) > 4  # neural model for OOV words


@needs_espeak
def test_espeak_tokens():
    espeak = build_phonemizer("espeak")
    tokens = espeak(["Hello, world!"])[0]
    assert tokens == ["h", "ə", "l", "ˈ", "oʊ", ",", WORD_BOUNDARY, "w", "ˈ", "ɜː", "l", "d", "!"]
    batch = espeak(["One.", "Two three.", "Four"])
    assert [sum(t == WORD_BOUNDARY for t in b) for b in batch] == [0, 1, 0]  # aligned per text
    assert "espeak" in espeak.name and espeak.version


@needs_espeak
def test_unpronounceable_and_empty():
    espeak = build_phonemizer("espeak")
    with pytest.raises(TextError, match="empty"):
        espeak.phonemize_one("   ")
    with pytest.raises(TextError, match="nothing pronounceable"):
        espeak.phonemize_one("?!...")
    assert any(is_phone(t) for t in espeak.phonemize_one("Fine."))


def test_unknown_frontend():
    with pytest.raises(ValueError, match="unknown text frontend"):
        build_phonemizer("festival")


def test_symbol_table_round_trip(tmp_path):
    table = SymbolTable.build([["a", "b", "_"], ["b", "c"]], frontend="test", frontend_version="1")
    assert table.symbols[:3] == ["<pad>", "<bos>", "<eos>"] and table.pad_id == 0 and len(table) == 7
    ids = table.encode(["a", "c", "_"])
    assert table.decode(ids) == ["a", "c", "_"]
    table.save(tmp_path)
    loaded = SymbolTable.load(tmp_path / "symbols.json")
    assert loaded.symbols == table.symbols and loaded.frontend == "test" and loaded.version == 1
    with pytest.raises(UnknownSymbolError, match="'z'"):
        table.encode(["a", "z"])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="cannot read symbol table"):
        SymbolTable.load(tmp_path / "bad.json")
