"""Text frontend: normalization, phonemization (espeak-ng IPA or offline ARPAbet), the versioned symbol table."""

from .normalize import normalize_text
from .phonemize import (WORD_BOUNDARY, ArpabetPhonemizer, EspeakPhonemizer, Phonemizer, TextError, build_phonemizer,
                        is_phone)
from .symbols import SymbolTable, UnknownSymbolError

__all__ = ["ArpabetPhonemizer", "EspeakPhonemizer", "Phonemizer", "SymbolTable", "TextError", "UnknownSymbolError",
           "WORD_BOUNDARY", "build_phonemizer", "is_phone", "normalize_text"]
