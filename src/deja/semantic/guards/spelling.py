"""The same words said otherwise: two prompts that are the same words but for letter
case, order, the words a request is framed with ("explain" / "what is", "can you"), the
pleasantries around it ("Hello, ... Many thanks."), misspelt words, British and American
spellings, words shortened by leaving letters out ("acct"), two names of one thing ("k8s"
/ "Kubernetes") and acronyms against their words ("MFA" / "multi-factor authentication").

A user who asks again, with a typo fixed or made, asks the same thing; the embedded model
does not see it so: a misspelt word falls apart into word pieces, and "how to do the
heimlich maneuver" / "how to do the hiemlich manuver" scores 0.65, below pairs that ask
for different things. :func:`same_words` says when two prompts differ only so (the
semantic decision then needs no verifier for them, see :func:`deja.semantic.decision.decide`)
and :func:`misspelt` when two words are one word, one of them mistyped.

A word is known when an English word list holds it (:func:`_known`); a slip is one edit
(a letter added, dropped, changed, or two neighbours swapped) away from the other word, and
at least one of the two is not a known word: "hnad" / "hand" is a slip, "form" / "from"
and "bake" / "make" are two words.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path

from deja.errors import MissingDependencyError
from deja.semantic.guards.words import same_name

__all__ = [
    "abbreviated",
    "misspelt",
    "one_word",
    "preload",
    "said_words",
    "same_words",
    "symbols_in_order",
    "symbols_of",
    "variant",
]

logger = logging.getLogger(__name__)

_VOCABULARY = Path(__file__).parent.parent / "data" / "minilm-tokenizer.json"
_MIN_LENGTH = 4
_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)?")
_MIN_PART = 2  # words in each part of a prompt that moves as a whole
_MIN_VARIANT = 6  # letters of a word spelt "-ise" / "-ize"

# Words a request is framed with: adding, dropping or trading them does not change what is
# asked ("Explain the difference between X and Y" / "What's the difference between X and
# Y?", "tell me how to X" / "how to X"). Pronouns, question words other than "what",
# prepositions, negations, tenses ("will", "did", "was") and "list" ("list the planets" /
# "describe the planets" ask for other answers) all count.
_FRAMING = frozenset([
    "a", "an", "the", "please", "pls", "plz", "kindly", "me", "what", "whats",
    "explain", "describe", "tell", "show", "give",
    "can", "could", "do", "does", "is", "are", "be",
])  # fmt: skip

# Symbols that say something ("$?" / "$!" in bash, "C#" / "C++", "a/b"); quotes, hyphens,
# dashes and sentence punctuation (after a word, before a space or the end; French puts a
# space before "?", "!", ";" and ":"; Spanish opens a question with "¿", an exclamation
# with "¡") do not.
_PUNCTUATION_RE = re.compile(
    r"(?<=[\w)\]\"'\u2019\u201d=<>+*%&|])[.?!,;:]+(?=\s|$)"
    r"|(?<=\w)[\s\u00a0\u202f]+[?!;:]+(?=\s|$)"
    r"|[\u00bf\u00a1]"
)
_SYMBOL_RE = re.compile(r"[^\w\s'\"\u2018\u2019\u201c\u201d\-\u2013\u2014]")


_known_lock = threading.Lock()
_known_words: list[frozenset[str]] = []  # the word list, once read


def _known() -> frozenset[str]:
    """Known English words: pyspellchecker's English word list (about 160,000 words, MIT)
    and the whole words of the embedded model's WordPiece vocabulary (which adds names and
    technical words such as "cheque" or "passcode"). Read once (~0.15 s), on the first slip
    checked or by :func:`preload`; concurrent first callers wait for one read."""
    if _known_words:
        return _known_words[0]
    with _known_lock:
        if not _known_words:
            try:
                from spellchecker import SpellChecker
            except ImportError as exc:
                raise MissingDependencyError("pyspellchecker", "semantic") from exc
            words = set(SpellChecker(language="en", distance=1).word_frequency.dictionary)
            with _VOCABULARY.open(encoding="utf-8") as f:
                vocab = json.load(f)["model"]["vocab"]
            words.update(w for w in vocab if w.isalpha() and w.isascii())
            _known_words.append(frozenset(words))
        return _known_words[0]


def preload() -> None:
    """Read the word list in a background thread now, so that the first request with a
    typing slip does not wait for it (a :class:`~deja.semantic.SemanticCache` calls this
    when it is made)."""
    if not _known_words:
        threading.Thread(target=_read_quietly, name="deja-word-list", daemon=True).start()


def _read_quietly() -> None:
    try:
        _known()
    except MissingDependencyError as exc:  # said again, raised, where a slip is checked
        logger.warning("typing slips are not recognised until installed: %s", exc)


def _one_edit(x: str, y: str) -> bool:
    """Whether ``x`` and ``y`` (different) are one edit apart: a letter added or dropped,
    changed, or two neighbours swapped."""
    if abs(len(x) - len(y)) > 1:
        return False
    if len(x) == len(y):
        diff = [i for i in range(len(x)) if x[i] != y[i]]
        if len(diff) == 1:
            return True
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and x[diff[0]] == y[diff[1]]
            and x[diff[1]] == y[diff[0]]
        )
    short, long = (x, y) if len(x) < len(y) else (y, x)
    i = 0
    while i < len(short) and short[i] == long[i]:
        i += 1
    return short[i:] == long[i + 1 :]


def misspelt(x: str, y: str) -> bool:
    """Whether the lower-case words ``x`` and ``y`` are one word, one of them mistyped: one
    edit apart, both at least four letters (no digits, no hyphens), neither the other's start
    ("http" / "https"), and not both known words ("form" / "from")."""
    if x == y or min(len(x), len(y)) < _MIN_LENGTH or x.startswith(y) or y.startswith(x):
        return False
    if not (_WORD_RE.fullmatch(x) and _WORD_RE.fullmatch(y)):
        # "dv-2026" / "dv-2027", "x11" / "x12", "nclex-rn" / "nclex-pn": codes, whose
        # every letter may count
        return False
    if not _one_edit(x, y):
        return False
    known = _known()
    if x in known or y in known:
        return x not in known or y not in known
    # two unknown words: names of things ("lapply" / "sapply") unless the start agrees
    return x[0] == y[0]


# chat spellings of everyday words ("wat is progressive overload" / "what is ...")
_CHAT_SPELLINGS = {
    "u": "you", "ur": "your", "r": "are", "wat": "what", "wut": "what", "whta": "what",
    "thx": "thanks", "tho": "though", "cuz": "because", "bc": "because",
    "n": "and", "b4": "before", "abt": "about", "ppl": "people",
    # slips of short words, too short for the one-edit rule ("teh best time")
    "teh": "the", "hte": "the", "adn": "and", "waht": "what",
}  # fmt: skip


def _longest_first(phrases: list[str]) -> tuple[tuple[str, ...], ...]:
    return tuple(sorted((tuple(p.split()) for p in phrases), key=len, reverse=True))


# Pleasantries that open or close a request and ask nothing ("Hello, I hope you're well.
# When does registration open? Many thanks."): taken off its ends only, as inside it they
# may be what is asked ("how do I write a thank you note").
_OPENINGS = _longest_first([
    "hello", "hi", "hey", "hiya", "greetings", "hi there", "hello there", "hey there",
    "good morning", "good afternoon", "good evening", "i hope you're well",
    "hope you're well", "i hope you are well", "hope you are well", "thanks in advance",
    "sorry to bother you", "would you be so kind as to", "would you kindly",
])  # fmt: skip
_CLOSINGS = _longest_first([
    "thanks", "thank you", "thanks a lot", "many thanks", "thanks in advance",
    "thank you in advance", "thanks so much", "thank you so much", "cheers",
])  # fmt: skip
# "you" after these opens a request ("could you explain ...", "can u tell me ...")
_ASKING = frozenset(["can", "could", "would", "will"])


def _trimmed(words: list[str]) -> list[str]:
    """``words`` without the pleasantries at their start and end."""
    start, end = 0, len(words)
    trimmed = True
    while trimmed:
        trimmed = False
        for phrase in _OPENINGS:
            if tuple(words[start : start + len(phrase)]) == phrase and start + len(phrase) < end:
                start += len(phrase)
                trimmed = True
        for phrase in _CLOSINGS:
            if tuple(words[end - len(phrase) : end]) == phrase and end - len(phrase) > start:
                end -= len(phrase)
                trimmed = True
    return words[start:end]


def said_words(lows: list[str]) -> tuple[str, ...]:
    """The words of a prompt's lower-case tokens that :func:`same_words` compares: all but
    the framing words and the pleasantries around the request, in order, chat spellings
    read as the words ("u": "you")."""
    words = _trimmed([_CHAT_SPELLINGS.get(w, w) for w in lows])
    return tuple(
        w
        for i, w in enumerate(words)
        if w not in _FRAMING and not (w == "you" and i and words[i - 1] in _ASKING)
    )


def symbols_in_order(text: str) -> str:
    """The symbols of ``text`` that carry meaning, in their order (see :data:`_SYMBOL_RE`)."""
    return "".join(_SYMBOL_RE.findall(_PUNCTUATION_RE.sub("", text)))


def symbols_of(text: str) -> str:
    """The symbols of ``text`` that carry meaning, sorted (see :data:`_SYMBOL_RE`)."""
    return "".join(sorted(symbols_in_order(text)))


# British and American spellings of one word: (British part, American part)
_VARIANTS = (("our", "or"), ("ogue", "og"), ("ll", "l"), ("ae", "e"), ("oe", "e"))


def variant(x: str, y: str) -> bool:
    """Whether two lower-case words are one word spelt the British and the American way
    ("colour" / "color", "centre" / "center", "travelled" / "traveled", "practise" /
    "practice", "organise" / "organize")."""
    if x == y or min(len(x), len(y)) < _MIN_LENGTH:
        return False
    if len(x) == len(y):
        if x[:-2] == y[:-2] and {x[-2:], y[-2:]} == {"re", "er"}:  # centre / center
            return True
        # "-ise" / "-ize", "-ence" / "-ense", "practise" / "practice": an ending of a
        # longer word ("rice" / "rise", "sold" / "cold" are two words)
        diff = [i for i in range(len(x)) if x[i] != y[i]]
        return (
            len(diff) == 1
            and len(x) >= _MIN_VARIANT
            and diff[0] >= len(x) - 4
            and {x[diff[0]], y[diff[0]]} in ({"s", "z"}, {"s", "c"})
        )
    british, american = (x, y) if len(x) > len(y) else (y, x)
    return any(
        part in british and british.replace(part, short, 1) == american for part, short in _VARIANTS
    )


def abbreviated(x: str, y: str) -> bool:
    """Whether one lower-case word is the other shortened by leaving letters out, the way
    people type it: "acct" / "account", "appt" / "appointment", "divin" / "diving" (3+
    letters, the first kept, the short one no word of its own, the long one a word)."""
    short, long = (x, y) if len(x) < len(y) else (y, x)
    if len(short) < 3 or short == long or short[0] != long[0]:
        return False
    if not (_WORD_RE.fullmatch(short) and _WORD_RE.fullmatch(long)):
        return False
    letters = iter(long)
    if not all(c in letters for c in short):  # a subsequence
        return False
    known = _known()
    return short not in known and long in known


def one_word(x: str, y: str) -> bool:
    """Whether two different lower-case words are one word: mistyped (:func:`misspelt`),
    spelt the British or the American way (:func:`variant`), shortened
    (:func:`abbreviated`), or two names of one thing ("k8s" / "kubernetes")."""
    if x[:1] != y[:1]:  # spellings and shortenings keep the first letter; slips may not
        return misspelt(x, y) or same_name(x, y)
    return misspelt(x, y) or variant(x, y) or abbreviated(x, y) or same_name(x, y)


def _alike(x: str, y: str) -> bool:
    return x == y or one_word(x, y)


# small words an acronym may leave out ("IAM": Identity and Access Management)
_MINOR = frozenset(["and", "of", "the", "for", "to", "in", "on", "a", "an", "&"])


def _spelt(words: tuple[str, ...], start: int, acronym: str) -> int | None:
    """Where a run of ``words`` from ``start`` whose initials spell ``acronym`` ends (two
    words or more; a hyphenated word gives one initial or one per part; small words may
    be left out), if one does."""

    def run(letter: int, at: int) -> int | None:
        if letter == len(acronym):
            return at if at - start >= 2 else None
        if at >= len(words):
            return None
        word = words[at]
        if word[0] == acronym[letter] and (end := run(letter + 1, at + 1)) is not None:
            return end
        parts = word.split("-")
        if (
            len(parts) > 1
            and all(parts)
            and "".join(p[0] for p in parts) == acronym[letter : letter + len(parts)]
            and (end := run(letter + len(parts), at + 1)) is not None
        ):
            return end
        if letter and word in _MINOR:
            return run(letter, at + 1)
        return None

    return run(0, start)


def _contracted(words: tuple[str, ...], acronyms: frozenset[str]) -> tuple[str, ...]:
    """``words`` with each run that spells one of ``acronyms`` said as the acronym (a
    plural one, "SSRIs", by its letters without the "s")."""
    out: list[str] = []
    at = 0
    while at < len(words):
        for acronym in acronyms:
            end = _spelt(words, at, acronym)
            if end is None and acronym.endswith("s"):
                end = _spelt(words, at, acronym[:-1])
            if end is not None:
                out.append(acronym)
                at = end
                break
        else:
            out.append(words[at])
            at += 1
    return tuple(out)


def _same_order(said_a: tuple[str, ...], said_b: tuple[str, ...]) -> bool:
    if len(said_a) != len(said_b):
        return False
    n = len(said_a)
    # Each rotation of said_a is compared from the first word it does not repeat exactly:
    # a prompt of one word said over and over (or of any long repeated run) would else be
    # compared word by word at every shift, quadratic in its length. Two words are
    # compared once.
    exact = _rotation_prefixes(said_a, said_b)
    alike: dict[tuple[str, str], bool] = {}

    def same(x: str, y: str) -> bool:
        found = alike.get((x, y))
        if found is None:
            found = alike[x, y] = _alike(x, y)
        return found

    for shift in (0, *range(_MIN_PART, n - _MIN_PART + 1)):
        if all(same(said_a[(i + shift) % n], said_b[i]) for i in range(exact[shift], n)):
            return True
    return False


def _rotation_prefixes(said_a: tuple[str, ...], said_b: tuple[str, ...]) -> list[int]:
    """For each shift, how many leading words of ``said_b`` said_a rotated by it repeats
    exactly (its Z-function over ``said_b``, a separator and ``said_a`` twice: linear)."""
    n = len(said_b)
    seq: list[str | None] = [*said_b, None, *said_a, *said_a[: n - 1]]
    z = [0] * len(seq)
    left = right = 0
    for k in range(1, len(seq)):
        length = min(right - k, z[k - left]) if k < right else 0
        while k + length < len(seq) and seq[length] == seq[k + length]:
            length += 1
        z[k] = length
        if k + length > right:
            left, right = k, k + length
    return z[n + 1 : 2 * n + 1] if n else [0]


def same_words(
    said_a: tuple[str, ...],
    said_b: tuple[str, ...],
    symbols_a: str,
    symbols_b: str,
    *,
    acronyms_a: frozenset[str] = frozenset(),
    acronyms_b: frozenset[str] = frozenset(),
) -> bool:
    """Whether two prompts (their :func:`said_words` and :func:`symbols_of`) say the same
    words with the same symbols: word for word, some words misspelt, spelt the British
    or the American way or shortened on one side (:func:`misspelt`, :func:`variant`,
    :func:`abbreviated`), an acronym one side writes (``acronyms_a`` / ``_b``, lower
    case) spelt out by the other ("MFA" / "multi-factor authentication"), or with one
    part of two words or more moved before the other ("For a deep cut on the hand, what
    first aid should I give?" / "What first aid should I give for a deep cut on the
    hand?"). Words trading places otherwise ask something else ("savefig before show" /
    "show before savefig"). Two prompts of no words (none the guards read: another script,
    emoji) do not say the same words: nothing says they ask the same thing."""
    if symbols_a != symbols_b or not (said_a or said_b):
        return False
    if _same_order(said_a, said_b):
        return True
    spelt_b = acronyms_a.difference(said_b)
    spelt_a = acronyms_b.difference(said_a)
    if not spelt_a and not spelt_b:
        return False
    short_a, short_b = _contracted(said_a, spelt_a), _contracted(said_b, spelt_b)
    return (short_a, short_b) != (said_a, said_b) and _same_order(short_a, short_b)
