"""English text normalization before phonemization: numbers, currency, times, ordinals, abbreviations, symbols.

espeak reads "$250" as "dollar two hundred fifty" and keeps ":" in "3:30" as punctuation, so these are spelled out
first. Number words come from ``inflect`` (a dependency of g2p_en).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

ABBREVIATIONS = {
    "mr": "mister", "mrs": "missus", "ms": "miss", "dr": "doctor", "st": "saint", "prof": "professor",
    "jr": "junior", "sr": "senior", "co": "company", "ltd": "limited", "vs": "versus", "gen": "general",
    "capt": "captain", "lt": "lieutenant", "col": "colonel", "sgt": "sergeant", "rev": "reverend", "hon": "honorable",
    "mt": "mount", "ft": "fort", "maj": "major", "gov": "governor", "esq": "esquire", "etc": "et cetera",
}
SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "=": " equals ", "@": " at ", "#": " number "}
NUMBER = r"\d{1,3}(?:,\d{3})+|\d+"  # commas only as thousands separators: "1984," keeps its comma
CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
              "€": ("euro", "euros", "cent", "cents")}
TRANSLATE = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": ", ", "—": ", ", "…": "...", "\u00a0": " "})


@lru_cache(maxsize=1)
def _engine():
    # Imported on first use: inflect type-checks itself with typeguard, which re-compiles its source on import
    # (about 4 s on our CPUs), and most texts have no number to spell out.
    import inflect

    return inflect.engine()


def cardinal(n: int) -> str:
    """Number words; numbers of more than 15 digits (IDs, long digit strings) are read digit by digit."""
    if n >= 10 ** 15:
        return " ".join(cardinal(int(d)) for d in str(n))
    return _engine().number_to_words(n, andword="").replace(",", "")


def ordinal(n: int) -> str:
    return _engine().number_to_words(_engine().ordinal(n), andword="").replace(",", "")


def year(n: int) -> str:
    """1984 -> nineteen eighty-four, 1900 -> nineteen hundred, 2005 -> two thousand five, 2021 -> twenty twenty-one."""
    if 2000 <= n <= 2009 or n % 1000 == 0:
        return cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{cardinal(high)} hundred"
    return f"{cardinal(high)} {'oh ' if low < 10 else ''}{cardinal(low)}"


def _money(m: re.Match) -> str:
    one, many, cent, cents = CURRENCIES[m.group(1)]
    whole = int(m.group(2).replace(",", ""))
    frac = int((m.group(3) or "0").ljust(2, "0")[:2])
    scale = m.group(4)
    if scale:
        return f"{cardinal(whole)}{' point ' + ' '.join(cardinal(int(d)) for d in m.group(3)) if m.group(3) else ''} " \
               f"{scale} {many}"
    parts = []
    if whole or not frac:
        parts.append(f"{cardinal(whole)} {one if whole == 1 else many}")
    if frac:
        parts.append(f"{cardinal(frac)} {cent if frac == 1 else cents}")
    return " and ".join(parts)


def _time(m: re.Match) -> str:
    hour, minute = int(m.group(1)), int(m.group(2))
    words = cardinal(hour)
    if minute == 0:
        words += " o'clock" if not m.group(3) else ""
    elif minute < 10:
        words += f" oh {cardinal(minute)}"
    else:
        words += f" {cardinal(minute)}"
    if m.group(3):
        words += " " + " ".join(m.group(3).lower().replace(".", ""))
    return words


def _number(m: re.Match) -> str:
    text = m.group(0).replace(",", "")
    if "." in text:
        whole, frac = text.split(".", 1)
        return f"{cardinal(int(whole or 0))} point {' '.join(cardinal(int(d)) for d in frac)}"
    n = int(text)
    if len(m.group(0)) == 4 and 1100 <= n <= 2099:
        return year(n)
    return cardinal(n)


def normalize_text(text: str) -> str:
    """Spell out what espeak and g2p would misread; keep sentence punctuation. Returns one line."""
    text = unicodedata.normalize("NFKC", text).translate(TRANSLATE)
    text = re.sub(r"\b(e\.g|i\.e)\.", lambda m: "for example" if m.group(1) == "e.g" else "that is", text,
                  flags=re.I)
    text = re.sub(r"\b([A-Za-z]+)\.(?=\s|$)", lambda m: ABBREVIATIONS.get(m.group(1).lower(), m.group(0)), text)
    text = re.sub(r"\bNo\.\s*(?=\d)", "number ", text)
    text = re.sub(rf"([$£€])\s?({NUMBER})(?:\.(\d+))?(?:\s?(thousand|million|billion|trillion))?", _money, text)
    text = re.sub(r"\b(\d{1,2}):(\d{2})\s?([ap]\.?m\.?)?(?=\W|$)", _time, text, flags=re.I)
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: ordinal(int(m.group(1))), text, flags=re.I)
    text = re.sub(rf"(?:{NUMBER})(?:\.\d+)?|\.\d+", _number, text)
    for symbol, word in SYMBOLS.items():
        text = text.replace(symbol, word)
    text = re.sub(r"\s+([,.!?;:])", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()
