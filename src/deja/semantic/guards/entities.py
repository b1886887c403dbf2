"""Named entities: names by their letters (capitals, acronyms, camel case), gazetteer
phrases, short place names written out, place qualifiers, hyphenated package and model
names, and the packages of install commands.
"""

from __future__ import annotations

import functools
import itertools
import json
import re

from deja.semantic.guards.tokenizer import _STOP, _Tok
from deja.semantic.guards.words import (
    _ALIASES,
    _CAPITAL_ALIASES,
    _CAPITALISED_NAMES,
    _COMMON,
    _DEMONYM_NOT_AFTER,
    _DEMONYM_NOT_BEFORE,
    _DEMONYMS,
    _GAZETTEER,
    _GAZETTEER_MAX_WORDS,
    _LONG_NAMES,
    _PLACE_QUALIFIERS,
    _is_hyphenated_name,
)

# "pip install NAME", "yarn add NAME": the words after an installer's command are package
# names, and an installer written there is a name even when it is also a common word.
# (The names are looked ahead at, and at most 20, so that a second command in the same
# text, "npm i lodash then yarn add leftpad", is read too, in linear time; a flag is "-"
# then [\w-]+, one way only: "-{1,2}[\w-]+" splits "--x" two ways, 2**k tries for k flags.)
_INSTALL_RE = re.compile(
    r"\b(apt-get|apt|brew|cargo|conda|gem|mamba|npm|pip3?|pipx|pnpm|poetry|uv|yarn)\s+"
    r"(?:install|add|i)\b((?:\s+-[\w-]+|\s+[\ue000-\uefff])*)"
    r"(?=((?:\s+[A-Za-z][\w.-]*){1,20}))",
    re.IGNORECASE,
)
_NOT_PACKAGES = frozenset(
    [
        "command",
        "error",
        "globally",
        "library",
        "locally",
        "module",
        "package",
        "packages",
        "version",
    ]
)


def _installed_names(text: str) -> set[int]:
    """Where the installers and package names of install commands start in ``text``."""
    starts: set[int] = set()
    for m in _INSTALL_RE.finditer(text):
        starts.add(m.start(1))
        for word in _WORD_RE.finditer(text, m.start(3), m.end(3)):
            low = word.group().lower().rstrip(".")
            if low in _STOP or low in _COMMON or low in _NOT_PACKAGES:
                break
            starts.add(word.start())
            if word.group().endswith("."):
                break
    return starts


_WORD_RE = re.compile(r"\S+")


def _is_name_like(tok: _Tok) -> bool:
    """Does ``tok`` look like (part of) a name, judged by its letters?"""
    text = tok.text
    if tok.kind != "word" or tok.low in _STOP:
        return False
    if len(text) >= 2 and text.isupper():
        return tok.low not in _COMMON  # acronym (SSD, JSON), not shouting ("HOW?")
    if len(text) >= 3 and text[:-1].isupper() and text[-1] == "s":
        return True  # ETFs
    if any(c.isupper() for c in text[1:]) and any(c.islower() for c in text):
        return True  # macOS, iPhone, JavaScript
    return text[0].isupper() and tok.low not in _COMMON


_CONNECTORS = frozenset({"to", "->", "=>", "→", "into", "vs", "versus", "than", "from"})
# "Madrid north of Paris" is not "Paris north of Madrid"
_BEARINGS = frozenset(
    {"north", "south", "east", "west", "northeast", "northwest", "southeast", "southwest"}
)


_LOWER_RE = re.compile("[a-z]")


_GERUND_RE = re.compile(r"[a-z]{3,}ing")


def _is_gerund(low: str) -> bool:
    """Whether ``low`` is a verb's -ing form: "clearing", "updating", "running" (not
    "wyoming", "sterling", "beijing"), by the embedded model's vocabulary."""
    if _GERUND_RE.fullmatch(low) is None:
        return False
    stem = low[:-3]
    verbs = {stem, stem + "e"}
    if stem[-1] == stem[-2]:
        verbs.add(stem[:-1])
    return not verbs.isdisjoint(_vocabulary())


@functools.cache
def _vocabulary() -> frozenset[str]:
    """The whole words of the embedded model's tokenizer (30k, read once)."""
    from deja.semantic.embedders import _TOKENIZER_PATH

    vocab = json.loads(_TOKENIZER_PATH.read_bytes())["model"]["vocab"]
    return frozenset(w for w in vocab if w.isalpha() and len(w) >= 3)


def _expand_aliases(
    toks: list[_Tok], consumed: list[bool], text: str
) -> tuple[list[_Tok], list[bool]]:
    """``toks`` with each short place name written out as its full name (``_ALIASES``),
    and each long official one as its usual name (``_LONG_NAMES``)."""
    shouting: bool | None = None  # a text in capitals says nothing of "US" or "LA"
    out: list[_Tok] = []
    out_consumed: list[bool] = []
    skip = 0
    for i, tok in enumerate(toks):
        if skip:
            skip -= 1
            continue
        full = None if consumed[i] else _ALIASES.get(tok.low)
        if full is None and tok.text == "States" and i > 0 and toks[i - 1].low == "the":
            full = "united states"  # "in the States"
        if (
            full is not None
            and tok.low in _DEMONYMS
            and (
                (i > 0 and toks[i - 1].low in _DEMONYM_NOT_AFTER)
                or (i + 1 < len(toks) and toks[i + 1].low in _DEMONYM_NOT_BEFORE)
            )
        ):
            full = None
        if tok.low == "united":
            for words, usual in _LONG_NAMES:
                span = toks[i : i + len(words)]
                if tuple(t.low for t in span) == words and not any(consumed[i : i + len(words)]):
                    full, skip = usual, len(words) - 1
                    break
        if full is not None and not skip and tok.low in _CAPITAL_ALIASES:
            the_us = tok.low == "us" and i > 0 and toks[i - 1].low == "the"
            if not the_us and tok.text.isupper() and shouting is None:
                shouting = _LOWER_RE.search(text) is None
            if not (the_us or (tok.text.isupper() and not shouting)):
                full = None
        if full is None:
            out.append(tok)
            out_consumed.append(consumed[i])
            continue
        for k, word in enumerate(full.split()):
            first = k == 0
            out.append(
                _Tok(word, word, "word", tok.start, tok.initial and first, tok.joined or not first)
            )
            out_consumed.append(False)
    return out, out_consumed


def _entities(
    toks: list[_Tok], consumed: list[bool], names: set[int]
) -> tuple[list[str], frozenset[str], bool, list[tuple[int, int]]]:
    """The names in ``toks``, those of them with a place qualifier ("new york city"),
    whether their order is directed ("Oslo to Berlin"), and the token spans of the names
    whose qualifier comes before them ("the state of New York": see :func:`_put_after`).

    ``names`` holds the indices of tokens known to be names (install commands).
    """
    out: list[str] = []
    qualified: set[str] = set()
    prefixed: list[tuple[int, int]] = []
    spans: list[tuple[int, int]] = []
    i = 0
    n = len(toks)
    while i < n:
        tok = toks[i]
        if consumed[i] or tok.kind != "word":
            i += 1
            continue
        # a package, tool or model name: one token, whatever its letter case
        if i in names or ("-" in tok.low and _is_hyphenated_name(tok.low)):
            out.append(tok.low)
            spans.append((i, i + 1))
            i += 1
            continue
        j = i
        # gazetteer phrases first (lower case allowed), longest match
        for size in range(min(_GAZETTEER_MAX_WORDS, n - i), 0, -1):
            phrase = " ".join(t.low for t in toks[i : i + size])
            if phrase in _GAZETTEER and not any(consumed[i : i + size]):
                j = i + size
                break
        if j == i and tok.text[0].isupper() and tok.low in _CAPITALISED_NAMES:
            j = i + 1
        if j == i and _is_name_like(tok) and tok.text != "I":
            j = i + 1
            while (
                j < n
                and not consumed[j]
                and toks[j].joined
                and not toks[j].initial
                and _is_name_like(toks[j])
            ):
                j += 1
            # A capital at the start of a sentence says nothing, unless the word is
            # written like a name anyway (acronym, camel case) or starts a longer name
            # ("Lionel Messi height").
            letters = tok.text
            plain_capital = letters[0].isupper() and letters[1:].islower()
            if tok.initial and plain_capital and j == i + 1:
                j = i
            elif tok.initial and plain_capital and _is_gerund(tok.low):
                # ... but a verb in -ing opening the sentence starts none: "Clearing
                # Chrome's cache", "Installing PyTorch" (the name starts after it)
                j = i
        if j == i:
            i += 1
            continue
        name = " ".join(t.low for t in toks[i:j])
        if (
            j < n
            and toks[j].low in _PLACE_QUALIFIERS
            and not consumed[j]
            and toks[j].joined
            and not toks[j].initial
        ):
            name = f"{name} {toks[j].low}"
            qualified.add(name)
            j += 1
        elif (
            i >= 2
            and toks[i - 1].low == "of"
            and toks[i - 2].low in _PLACE_QUALIFIERS
            and toks[i].joined
            and toks[i - 1].joined
            and not consumed[i - 1]
            and not consumed[i - 2]
        ):
            # "the state of New York" is "New York State"
            name = f"{name} {toks[i - 2].low}"
            qualified.add(name)
            prefixed.append((i, j))
        out.append(name)
        spans.append((i, j))
        i = j
    directed = any(start > 0 and toks[start - 1].low == "from" for start, _ in spans) or any(
        (nxt[0] == prev[1] + 1 and toks[prev[1]].low in _CONNECTORS)
        or (
            nxt[0] == prev[1] + 2
            and toks[prev[1]].low in _BEARINGS
            and toks[prev[1] + 1].low == "of"
        )
        for prev, nxt in itertools.pairwise(spans)
    )
    return out, frozenset(qualified), directed, prefixed


def _put_after(words: list[str], prefixed: list[tuple[int, int]]) -> list[str]:
    """``words`` (one per token) with each qualifier that came before its name ("state of
    new york", the name at ``start:end``) put after it ("new york state"), as the entity
    was named, so that both ways of writing it occur alike in the text."""
    out: list[str] = []
    last = 0
    for start, end in prefixed:
        out += words[last : start - 2]
        out += [*words[start:end], words[start - 2]]
        last = end
    return out + words[last:]
