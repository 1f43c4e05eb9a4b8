"""Matching blocked terms against prompts, through the obfuscations people actually type.

A prompt and a term are both reduced to *words* the same way, then compared word by word:

- case, accents and full-width forms are folded (`NUDE`, `nüde`, `ｎｕｄｅ` → `nude`);
- leetspeak digits and symbols become the letters they stand for (`n00d3`, `$3x`, `p0rn` → …);
  `i`, `l`, `1`, `!` and `|` are one letter class, so `1oli` and `ioli` read as `loli`;
- punctuation inside a word is dropped (`s.e.x`, `n-u-d-e`, `p*rn` → one word), and punctuation
  between words splits them (`girl,nude`);
- letters spelt out with spaces are joined (`s e x`, `n u d e`);
- a repeated letter counts once (`nuuuude`), but a word may not be *shorter* than the term, so the
  term `ass` matches `asss` and never `as`;
- a trailing plural `s`/`es` is allowed (`nudes`).

Matching is on whole words only: `class`, `assistant`, `sextant` and `Essex` never match `ass` or `sex`.
A multi-word term matches the same words in a row (`revenge porn`), or run together (`revengeporn`).

The built-in lists are deliberately short and unambiguous; servers add their own terms. Sexual content
involving minors is refused by a rule, not a term: a minor word *and* a sexual word in one prompt (or a
word that means both), and that rule cannot be turned off.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from itertools import groupby

#: Characters that stand for letters. Digits only count inside a word with letters (`n00d`), so "4 cats"
#: stays a number and a word.
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g", "@": "a", "$": "s",
     "!": "i", "|": "i", "+": "t", "l": "i"}
)  # fmt: skip
_CHUNK = re.compile(r"\S+")
_NOT_WORD = re.compile(r"[^a-z0-9@$!|+]+")
_LEET_SYMBOLS = re.compile(r"[@$!|+]")
_EDGE_PUNCTUATION = "!|+.,;:?\"'()[]{}<>*_~`-"
_AGE = re.compile(r"\b(\d{1,2})\s*(?:-|\s)?\s*(?:y\.?o\.?|yrs?|years?)(?:\s*-?\s*old)?\b")

#: Always refused, in every server; moderators cannot remove these.
MINOR_WORDS = (
    "child", "children", "kid", "kids", "minor", "minors", "underage", "preteen", "pre teen", "toddler",
    "infant", "baby", "babies", "schoolgirl", "schoolboy", "little girl", "little boy", "young girl",
    "young boy", "tween", "middle schooler", "elementary school",
)  # fmt: skip
#: Words that mean sexual content involving minors by themselves.
MINOR_SEXUAL_WORDS = ("loli", "lolicon", "shota", "shotacon", "jailbait", "pedo", "pedophile")
SEXUAL_WORDS = (
    "nude", "naked", "nsfw", "sex", "sexy", "sexual", "porn", "porno", "pornographic", "hentai", "erotic",
    "explicit", "topless", "bottomless", "lingerie", "genitals", "penis", "vagina", "nipples",
    "boobs", "undressed", "undress", "stripper", "striptease", "orgasm", "fetish", "bdsm", "xxx", "lewd",
    "nudity", "seductive",
)  # fmt: skip
#: Default, removable per server: sexual content and images of people who did not agree to them.
DEFAULT_TERMS = (
    *SEXUAL_WORDS,
    "deepfake", "deep fake", "revenge porn", "upskirt", "downblouse", "voyeur", "nudify", "gore",
    "beheading", "dismembered",
)  # fmt: skip

CATEGORY_MINORS = "minors"
CATEGORY_DEFAULT = "default"
CATEGORY_SERVER = "server"


def _fold(text: str) -> str:
    """Lower case, without accents or compatibility forms."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _letters(word: str) -> str:
    """A word's letters, leetspeak decoded (only in a word that has letters or leet symbols)."""
    if any(c.isalpha() for c in word) or _LEET_SYMBOLS.search(word):
        word = word.translate(_LEET)
    return re.sub(r"[^a-z]", "", word)


def _collapse(letters: str) -> str:
    return "".join(letter for letter, _ in groupby(letters))


@dataclass(frozen=True)
class Word:
    key: str  #: letters with repeats collapsed
    length: int  #: letters as typed, so that a word shorter than a term never matches it
    text: str  #: as typed, for the refusal message

    @classmethod
    def of(cls, text: str) -> Word | None:
        letters = _letters(text)
        return cls(_collapse(letters), len(letters), text) if letters else None


def split_words(text: str) -> tuple[list[Word], list[Word]]:
    """(words, joined): `words` split on any punctuation; `joined` one word per whitespace-separated chunk
    with its inner punctuation dropped (`s.e.x` → `sex`), for chunks that punctuation split."""
    found: list[Word] = []
    joined: list[Word] = []
    for chunk in _CHUNK.findall(_fold(text)):
        chunk = chunk.strip(_EDGE_PUNCTUATION)
        parts = [part for part in _NOT_WORD.split(chunk) if part]
        found.extend(word for word in map(Word.of, parts) if word)
        if len(parts) > 1 and (word := Word.of("".join(parts))):
            joined.append(word)
    return found, joined


def _spelt_out(found: list[Word]) -> list[Word]:
    """Runs of single letters joined into words: `s e x` → `sex`."""
    joined = []
    for single, run in groupby(found, key=lambda word: word.length == 1):
        run = list(run)
        if single and len(run) > 1:
            letters = "".join(word.key for word in run)
            joined.append(Word(_collapse(letters), len(letters), " ".join(word.text for word in run)))
    return joined


def _same(word: Word, term: Word) -> bool:
    """Whole-word equality after decoding, allowing longer repeats and a plural ending."""
    if word.length < term.length:
        return False
    return word.key in (term.key, _collapse(term.key + "s"), _collapse(term.key + "es"))


@dataclass(frozen=True)
class Match:
    """A blocked term found in a prompt."""

    term: str  #: the term as listed
    found: str  #: the words as the member typed them
    category: str  #: minors, default or server


class TermList:
    """Terms compiled once, that can tell whether (and where) a text contains one of them."""

    def __init__(self, terms: dict[str, str]) -> None:
        """`terms` maps each term to its category."""
        self._terms: list[tuple[str, str, list[Word], Word]] = []
        for term, category in terms.items():
            parts, _ = split_words(term)
            if parts:
                letters = "".join(part.key for part in parts)
                whole = Word(_collapse(letters), sum(part.length for part in parts), term)
                self._terms.append((term, category, parts, whole))

    def __len__(self) -> int:
        return len(self._terms)

    def find(self, text: str) -> Match | None:
        found, joined = split_words(text)
        run_together = found + joined + _spelt_out(found)
        for term, category, parts, whole in self._terms:
            hit = _find_sequence(found, parts)
            if hit is None and (len(parts) > 1 or whole.length > 2):
                hit = next((word.text for word in run_together if _same(word, whole)), None)
            if hit is not None:
                return Match(term, hit, category)
        return None


def _find_sequence(found: list[Word], parts: list[Word]) -> str | None:
    size = len(parts)
    for start in range(len(found) - size + 1):
        window = found[start : start + size]
        if all(_same(word, part) for word, part in zip(window, parts, strict=True)):
            return " ".join(word.text for word in window)
    return None


_MINORS = TermList(dict.fromkeys(MINOR_WORDS, CATEGORY_MINORS))
_MINOR_SEXUAL = TermList(dict.fromkeys(MINOR_SEXUAL_WORDS, CATEGORY_MINORS))
_SEXUAL = TermList(dict.fromkeys(SEXUAL_WORDS, CATEGORY_MINORS))


def minors_match(text: str) -> Match | None:
    """The always-on rule: sexual content involving minors (a minor and a sexual word, or an age < 18)."""
    direct = _MINOR_SEXUAL.find(text)
    if direct:
        return direct
    sexual = _SEXUAL.find(text)
    if sexual is None:
        return None
    minor = _MINORS.find(text)
    if minor is None:
        ages = [m for m in _AGE.finditer(_fold(text)) if int(m.group(1)) < 18]
        if not ages:
            return None
        minor = Match(ages[0].group(0), ages[0].group(0), CATEGORY_MINORS)
    return Match(f"{minor.term} + {sexual.term}", f"{minor.found} … {sexual.found}", CATEGORY_MINORS)
