"""Zero-shot synthesis: a voice prompt and its transcript plus target text -> speech in that voice.

``Synthesizer.from_pretrained(release_dir).synthesize("prompt.wav", "Hello there.", prompt_text="...")`` is what
``tts synthesize`` runs. Long text is split at sentence boundaries; the sentences of all texts are decoded in batches
and joined back with a short pause.
"""

from __future__ import annotations

import math
import os
import re
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import torch

from codec import LanguageCodec, load_codec
from toolkit.audio import load_audio
from toolkit.errors import InputError
from tts.models.base import GenerationRequest
from tts.models.registry import MODELS
from tts.models.sampling import SamplingConfig
from tts.release import BUNDLED_MODELS  # noqa: F401  (re-exported: callers find the bundled releases here)
from tts.release import Release, ReleaseError, bundled_release, load_token_model, weights_sha256
from tts.text.phonemize import WORD_BOUNDARY, TextError, build_phonemizer, is_phone

PathLike = Union[str, os.PathLike]
MODEL_TYPES = tuple(name for name, kind in MODELS.items() if kind.synthesizes)
DEFAULT_MODEL = "mobilespeech"  # the bundled model used when none is named: the one that measures better
MIN_PROMPT_SECONDS = 1.0
SILENCE_DB = -40.0  # frames this far below the prompt's loudest frame count as silence
SENTENCE_PAUSE_SECONDS = 0.2


class SynthesisError(ValueError):
    """Input the synthesizer cannot use (prompt, text, model); the message is one line for the user."""


@dataclass
class Prompt:
    """Attributes:
        audio: ``[L]`` the part of the prompt that is used, at the codec's rate.
        codes: ``[K, T]`` its codes.
        phonemes: its transcript's phoneme tokens.
    """

    audio: torch.Tensor
    codes: torch.Tensor
    phonemes: List[str]


@dataclass
class Sentence:
    """One sentence ready for the model.

    Attributes:
        text: index of the text it belongs to.
        phonemes: ``[P]`` the ids the model reads (the prompt's transcript, a word boundary and the sentence for
            models that need the transcript; the sentence alone for the others).
        target_phonemes: how many of those ids are the sentence's.
    """

    text: int
    phonemes: torch.Tensor
    target_phonemes: int


MAX_TEXT_CHARS = 2000  # per call, all texts together; raise it with max_chars (tts synthesize --max-chars)
# MobileSpeech's decoding rounds of its first layer: synthesize's and the API's default (tts synthesize --steps has
# the same 16 as a literal: tts/cli.py imports this module only when a command runs)
DEFAULT_STEPS = 16
MAX_SENTENCE_WORDS = 40  # longer sentences are split at clauses, then words: each piece stays under the 40 s guard
# Ranges of the numeric options, checked once at the boundary (CLI and API alike).
LIMITS = {"batch_size": (1, 256), "steps": (1, 256), "speed": (0.25, 4.0), "temperature": (0.0, 10.0),
          "top_k": (0, 100_000), "top_p": (0.0, 1.0), "prompt_seconds": (MIN_PROMPT_SECONDS, 60.0),
          "seed": (0, 2 ** 63 - 1), "guidance": (0.0, 10.0)}
MARKUP = re.compile(r"<[^<>]{0,200}>")
SYMBOLS_SPOKEN = set("$£€%&+=@#")  # symbols the normalizer spells out


def split_sentences(text: str, max_words: int = MAX_SENTENCE_WORDS) -> List[str]:
    """Split at ``.``, ``!``, ``?`` (and ``;``) followed by white space; blank pieces are dropped. A sentence of more
    than ``max_words`` words is split further after commas, colons and dashes, and then every ``max_words`` words."""
    pieces = re.split(r"(?<=[.!?;])\s+", text.strip())
    out = []
    for piece in (p.strip() for p in pieces if p.strip()):
        if len(piece.split()) <= max_words:
            out.append(piece)
            continue
        chunk: List[str] = []
        for clause in re.split(r"(?<=[,:\u2013\u2014])\s+", piece):
            words = clause.split()
            if chunk and len(chunk) + len(words) > max_words:
                out.append(" ".join(chunk))
                chunk = []
            while len(words) > max_words:
                out.append(" ".join(words[:max_words]))
                words = words[max_words:]
            chunk += words
        if chunk:
            out.append(" ".join(chunk))
    return out


def check_option(name: str, value) -> None:
    """``value`` of the synthesis option ``name`` within ``LIMITS`` (and finite); else a ``SynthesisError``."""
    low, high = LIMITS[name]
    integer = name in ("batch_size", "steps", "top_k", "seed")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        raise SynthesisError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        raise SynthesisError(f"{name} must be between {low} and {high}, got {value!r}")
    if name in ("temperature", "top_p") and value == 0:
        raise SynthesisError(f"{name} must be above 0 (greedy decoding is its own option)")


def check_synthesis_options(sampling: Optional[SamplingConfig], seed: Optional[int], batch_size: int, steps: int,
                            speed: float, prompt_seconds: float) -> None:
    """Every numeric option of ``Synthesizer.synthesize`` within ``LIMITS``."""
    values = {"batch_size": batch_size, "steps": steps, "speed": speed, "prompt_seconds": prompt_seconds}
    if seed is not None:
        values["seed"] = seed
    if sampling is not None:
        values.update(temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p,
                      guidance=sampling.guidance)
    for name, value in values.items():
        check_option(name, value)


def unspeakable(text: str) -> List[str]:
    """The characters of ``text`` the English frontend cannot speak: letters of non-Latin scripts, digits other than
    0-9, emoji and other symbols it does not spell out, control characters."""
    bad = []
    for ch in unicodedata.normalize("NFKC", text):
        cat = unicodedata.category(ch)
        ok = (cat[0] in "PZ" or ch in "\t\n" or ch in SYMBOLS_SPOKEN or "0" <= ch <= "9"
              or (cat[0] == "L" and "LATIN" in unicodedata.name(ch, "")) or cat[0] == "M"
              or ch in "^`~|\\/*_<>[]{}")
        if not ok and ch not in bad:
            bad.append(ch)
    return bad


def check_text(texts: Sequence[str], max_chars: int = MAX_TEXT_CHARS) -> None:
    """Texts the frontend can speak, within ``max_chars`` in all; else a ``SynthesisError`` naming what is wrong."""
    total = sum(len(t) for t in texts)
    if total > max_chars:
        raise SynthesisError(f"the text has {total} characters; the limit is {max_chars} per call (raise it with "
                             f"max_chars / --max-chars, or split the text)")
    for i, text in enumerate(texts):
        where = f"text {i + 1}" if len(texts) > 1 else "the text"
        tag = MARKUP.search(text)
        if tag:
            raise SynthesisError(f"{where} holds markup {tag.group(0)!r}; SSML and other tags are not supported, "
                                 f"give plain text")
        bad = unspeakable(text)
        if bad:
            shown = " ".join(repr(c) for c in bad[:8]) + (" ..." if len(bad) > 8 else "")
            raise SynthesisError(f"{where} has characters the English frontend cannot speak: {shown} (only English "
                                 f"text in Latin script is supported)")


def join_sentences(waves: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
    """The sentences of one text as one waveform ``[L]``, with ``SENTENCE_PAUSE_SECONDS`` of silence between them."""
    pause = np.zeros(int(SENTENCE_PAUSE_SECONDS * sample_rate), dtype=np.float32)
    parts: List[np.ndarray] = []
    for wav in waves:
        parts.extend([pause, wav] if parts else [wav])
    return np.concatenate(parts)


def speech_start(wav: torch.Tensor, sample_rate: int) -> int:
    """Sample index of the first 20 ms frame within ``SILENCE_DB`` of the loudest one; raises on a silent clip."""
    frame = sample_rate // 50
    frames = wav[: wav.numel() // frame * frame].view(-1, frame)
    if frames.numel() == 0:
        return 0
    level = 10 * torch.log10(frames.pow(2).mean(1) + 1e-12)
    if float(level.max()) < -70.0:
        raise SynthesisError("the prompt is silent")
    voiced = torch.nonzero(level > level.max() + SILENCE_DB)
    return int(voiced[0]) * frame


class Synthesizer:
    """A token model release (VALL-E or MobileSpeech) with its codec and text frontend.

    VALL-E continues the prompt, so it needs the prompt's transcript; MobileSpeech only takes the prompt's codes.

    Args:
        release: a loaded release (``tts.release.load_token_model``).
        codec: the codec the model was trained with; by default the one the release names.
    """

    def __init__(self, release: Release, codec: Optional[LanguageCodec] = None):
        if release.model_type not in MODEL_TYPES:
            raise SynthesisError(f"synthesis with {release.model_type!r} models is not available")
        self.release = release
        self.model = release.model
        self.symbols = release.symbols
        self.codec = codec if codec is not None else _load_release_codec(release)
        config = self.model.config
        if (self.codec.num_codebooks, self.codec.codebook_size) != (config.num_codebooks, config.codebook_size):
            raise SynthesisError(f"the codec has {self.codec.num_codebooks} x {self.codec.codebook_size} codes, the "
                                 f"model {config.num_codebooks} x {config.codebook_size}: they do not belong together")
        self.phonemizer = build_phonemizer(self.symbols.frontend)
        self._frontend_lock = threading.Lock()  # espeak-ng keeps global state: one text at a time, whatever the thread

    @classmethod
    def from_pretrained(cls, checkpoint: Optional[PathLike] = None, model: Optional[str] = None,
                        device: Union[str, torch.device] = "cpu") -> "Synthesizer":
        """A release directory (of type ``model`` when given), or (``None``) the bundled model of type ``model``
        (default: ``DEFAULT_MODEL``)."""
        if checkpoint is None:
            model = model or DEFAULT_MODEL
        if model is not None and model not in MODEL_TYPES:
            raise SynthesisError(f"unknown model {model!r} (expected one of {', '.join(MODEL_TYPES)})")
        if checkpoint is None:
            checkpoint = bundled_release(model)
            if not checkpoint.is_dir():
                raise SynthesisError(f"this installation has no bundled {model} model ({checkpoint} is missing); "
                                     f"pass --checkpoint with a release directory")
        try:
            release = load_token_model(checkpoint, map_location=device)
        except ReleaseError as err:
            raise SynthesisError(f"{checkpoint} is not a usable model release: {err}") from None
        if model is not None and release.model_type != model:
            raise SynthesisError(f"{checkpoint} holds a {release.model_type} model, not {model}")
        synthesizer = cls(release)
        synthesizer.codec.to(device)
        return synthesizer

    @property
    def needs_prompt_text(self) -> bool:
        return self.model.needs_prompt_text

    @property
    def supports_speed(self) -> bool:
        return self.model.supports_speed

    @property
    def supports_guidance(self) -> bool:
        return self.model.supports_guidance

    @property
    def supports_steps(self) -> bool:
        return self.model.supports_steps

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    # Inputs -------------------------------------------------------------------------------------------------------

    def phonemize(self, text: str) -> List[str]:
        """Phoneme tokens of one text, checked against the model's symbol table; safe to call from several threads."""
        try:
            with self._frontend_lock:
                tokens = self.phonemizer.phonemize_one(text)
        except TextError as err:
            raise SynthesisError(str(err)) from None
        unknown = self.symbols.unknown(tokens)
        if unknown:
            kept = [t for t in tokens if t in self.symbols]
            if not any(is_phone(t) for t in kept):
                raise SynthesisError(f"nothing in the text {text!r} is pronounceable by this model")
            tokens = kept  # symbols the training text never had (rare punctuation, foreign phones) are dropped
        return tokens

    def prepare_prompt(self, prompt: Union[PathLike, torch.Tensor, np.ndarray], prompt_text: str,
                       prompt_seconds: float = 3.0, sample_rate: Optional[int] = None) -> Prompt:
        """The first ``prompt_seconds`` of speech (leading silence skipped) of a file or waveform, encoded.

        ``prompt_text`` must be the transcript of that part. A waveform needs ``sample_rate`` (resampled if needed).
        """
        if prompt_seconds < MIN_PROMPT_SECONDS:
            raise SynthesisError(f"prompt_seconds must be at least {MIN_PROMPT_SECONDS}")
        try:
            if isinstance(prompt, (str, os.PathLike)):
                wav = load_audio(prompt, self.sample_rate)
            else:
                if sample_rate is None:
                    raise SynthesisError("a prompt waveform needs its sample_rate")
                wav = torch.as_tensor(np.asarray(prompt, dtype=np.float32))
                wav = wav.mean(0) if wav.dim() == 2 else wav.reshape(-1)
                if sample_rate != self.sample_rate:
                    from toolkit.audio import resample

                    wav = torch.from_numpy(resample(wav.numpy(), sample_rate, self.sample_rate))
        except InputError as err:
            raise SynthesisError(f"prompt: {err}") from None
        if wav.numel() == 0 or not torch.isfinite(wav).all():
            raise SynthesisError("the prompt is empty or holds NaN/infinite samples")
        start = speech_start(wav, self.sample_rate)
        wav = wav[start: start + int(prompt_seconds * self.sample_rate)]
        if wav.numel() < MIN_PROMPT_SECONDS * self.sample_rate:
            raise SynthesisError(f"the prompt has {wav.numel() / self.sample_rate:.2f} s of speech; at least "
                                 f"{MIN_PROMPT_SECONDS:g} s is needed (3 s recommended)")
        if self.needs_prompt_text and (not prompt_text or not prompt_text.strip()):
            raise SynthesisError("the prompt's transcript is needed (prompt_text / --prompt-text)")
        phonemes = self.phonemize(prompt_text) if self.needs_prompt_text else []
        codes = self.codec.encode(wav[None].to(self.codec.device))[0]
        return Prompt(audio=wav, codes=codes, phonemes=phonemes)

    def transcribe_prompt(self, prompt: PathLike, prompt_seconds: float = 3.0) -> str:
        """The offline transcript (pocketsphinx) of the part of ``prompt`` that ``prepare_prompt`` uses."""
        try:
            wav = load_audio(prompt, self.sample_rate)
        except InputError as err:
            raise SynthesisError(f"prompt: {err}") from None
        start = speech_start(wav, self.sample_rate)
        wav = wav[start: start + int(prompt_seconds * self.sample_rate)]
        try:
            from tts.evaluation import transcribe
        except ImportError:
            raise SynthesisError("the prompt's transcript is needed (--prompt-text); offline transcription needs "
                                 "the eval extras (pip install -e '.[eval]')") from None
        text = transcribe(wav.numpy(), self.sample_rate)
        if not text.strip():
            raise SynthesisError("the prompt could not be transcribed; pass its transcript with --prompt-text")
        return text

    # Synthesis ----------------------------------------------------------------------------------------------------

    def synthesize(self, prompt: Union[PathLike, torch.Tensor, np.ndarray, Prompt], texts: Union[str, Sequence[str]],
                   prompt_text: Optional[str] = None, prompt_seconds: float = 3.0,
                   sampling: Optional[SamplingConfig] = None, seed: Optional[int] = None, batch_size: int = 8,
                   sample_rate: Optional[int] = None, progress: bool = False, steps: int = DEFAULT_STEPS,
                   speed: float = 1.0, max_chars: int = MAX_TEXT_CHARS) -> Union[np.ndarray, List[np.ndarray]]:
        """Speech for one text (a waveform ``[L]`` at ``self.sample_rate``) or for a list of texts (a list).

        Each text is split into sentences; all sentences are decoded in batches of ``batch_size``. ``seed`` makes
        sampling reproducible. MobileSpeech: ``steps`` rounds for its first layer, durations divided by ``speed``, and
        ``sampling.temperature`` (``sampling.greedy``: argmax). VALL-E with durations as input follows ``speed`` too
        (``supports_speed``); other models refuse any speed but 1.0. Options outside ``LIMITS``, texts of more than
        ``max_chars`` characters in all, markup and characters the English frontend cannot speak raise
        ``SynthesisError``.
        """
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        if not texts:
            raise SynthesisError("no text to synthesize")
        if not all(isinstance(t, str) for t in texts):
            raise SynthesisError("texts must be strings")
        check_synthesis_options(sampling, seed, batch_size, steps, speed, prompt_seconds)
        if speed != 1.0 and not self.supports_speed:
            raise SynthesisError(f"this {self.model.name} model cannot follow --speed (only 1.0): it does not "
                                 f"predict durations")
        if sampling is not None and sampling.guidance and not self.supports_guidance:
            raise SynthesisError(f"this {self.model.name} model cannot follow --guidance (only 0): it was not "
                                 f"trained to predict without the text (MobileSpeech's model.text_dropout)")
        check_text(texts, max_chars)
        if not isinstance(prompt, Prompt):
            prompt = self.prepare_prompt(prompt, prompt_text or "", prompt_seconds, sample_rate)
        sentences = self.prepare_sentences(texts, prompt.phonemes)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        audio: List[np.ndarray] = []
        from tqdm import tqdm

        with tqdm(total=len(sentences), desc="synthesize", unit="sentence", disable=not progress, delay=1.0) as bar:
            for b in range(0, len(sentences), batch_size):
                chunk = sentences[b: b + batch_size]
                audio += self.decode_batch(prompt, chunk, sampling, generator, steps, speed)
                bar.update(len(chunk))
        joined = [join_sentences([wav for s, wav in zip(sentences, audio) if s.text == i], self.sample_rate)
                  for i in range(len(texts))]
        return joined[0] if single else joined

    def prepare_sentences(self, texts: Sequence[str], prompt_phonemes: Sequence[str] = ()) -> List[Sentence]:
        """Every sentence of ``texts`` (``split_sentences``) as the model's input ids, in order, after the prompt
        transcript's ``prompt_phonemes`` (``Prompt.phonemes``) for models that read it; a ``SynthesisError`` for a text
        with no sentence or nothing pronounceable. Texts are not length-checked here (``check_text``)."""
        sentences = []
        for i, text in enumerate(texts):
            parts = split_sentences(text)
            if not parts:
                raise SynthesisError(f"text {i + 1} is empty")
            for part in parts:
                target = self.phonemize(part)
                ids = self.symbols.encode(list(prompt_phonemes) + [WORD_BOUNDARY] + target if self.needs_prompt_text
                                          else target)
                sentences.append(Sentence(i, torch.tensor(ids), len(target)))
        return sentences

    def decode_batch(self, prompt: Prompt, sentences: Sequence[Sentence], sampling: Optional[SamplingConfig] = None,
                     generator: Optional[torch.Generator] = None, steps: int = DEFAULT_STEPS,
                     speed: float = 1.0) -> List[np.ndarray]:
        """One batch: the sentences (of any texts, all in the voice of ``prompt``) decoded together by the model and
        the codec; a waveform ``[L_i]`` at ``self.sample_rate`` per sentence.

        The batched entry point under ``synthesize`` and the server's batcher. Options are not range-checked here
        (``check_synthesis_options``). With greedy sampling a sentence's audio does not depend on the batch it is in.
        """
        if not sentences:
            return []
        request = GenerationRequest([s.phonemes for s in sentences], [s.target_phonemes for s in sentences],
                                    prompt.codes, self.codec.frame_rate, sampling or SamplingConfig(), steps,
                                    speed * self.release.pace, generator)
        with torch.inference_mode():
            codes = self.model.generate(request)
            return [self.codec.decode(c[None])[0, 0].float().cpu().numpy() for c in codes]


def _load_release_codec(release: Release) -> LanguageCodec:
    """The codec a release names, refusing one whose weights differ from those the model was trained with, unless
    its codes are the same (``LanguageCodec.codes_sha256``, recorded by newer releases): a decoder fine-tuned alone
    decodes the model's codes, only better."""
    path = None if release.codec == "bundled" else release.codec
    if path is not None and not Path(path).exists():
        raise SynthesisError(f"the model's codec {path} does not exist (export the release with --copy-codec to "
                             f"keep it inside the release directory)")

    def refuse(codes: str = "") -> SynthesisError:
        trained = f", version {release.codec_version}" if release.codec_version is not None else ""
        return SynthesisError(f"the codec at {path or 'bundled'} is not the one the model was trained with "
                              f"(weights SHA-256 differs{trained}{codes})")

    try:
        differs = False
        if release.codec_sha256 is not None:
            from codec import BUNDLED_DIR

            actual = weights_sha256(BUNDLED_DIR if path is None else path)  # a sharded codec: a shard missing
            differs = actual is not None and actual != release.codec_sha256
        if differs and release.codec_codes_sha256 is None:
            raise refuse()
        codec = load_codec(path)
    except InputError as err:
        raise SynthesisError(f"the model's codec: {err}") from None
    if differs and codec.codes_sha256() != release.codec_codes_sha256:
        raise refuse("; its codes differ too")
    if release.codec_rates is not None and (codec.sample_rate, codec.frame_rate) != tuple(release.codec_rates):
        raise SynthesisError(f"the codec at {path or 'bundled'} runs at {codec.sample_rate} Hz and "
                             f"{codec.frame_rate} frames/s, the model was trained on codes at "
                             f"{release.codec_rates[0]} Hz and {release.codec_rates[1]} frames/s")
    return codec
