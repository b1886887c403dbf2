"""Comparison: :func:`check_guards` compares the signatures of two prompts, guard by guard
(:class:`GuardSettings`), into a :class:`GuardReport`.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

from deja.semantic.guards.extract import (
    _DENIALS,
    _NOUN_END,
    _REQUEST_VERBS,
    Signature,
    _is_denial,
    _is_plural,
    _plain,
    _signature,
)
from deja.semantic.guards.literals import _CALL_RE, _bare_words
from deja.semantic.guards.spelling import misspelt
from deja.semantic.guards.spelling import one_word as _one_word
from deja.semantic.guards.tokenizer import _STOP, _plain_stem, _tokens_of, unaccented
from deja.semantic.guards.words import (
    _ADVISED,
    _ALIASES,
    _EVERYDAY_SPELLINGS,
    _EXCLUSIONS,
    _NAME_ALIASES,
    _NEGATIONS,
    _NUMBER_WORDS,
    _ORDINAL_WORDS,
    _PERMITTED,
    _POLES,
    _REQUIRED,
    _ROLE_PAIRS,
    _SWAPS,
    _SYMMETRIC_JOINS,
    _poles_of,
)


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """Which guards run. All are on by default; turn one off only with a measured reason."""

    numbers: bool = True
    dates: bool = True
    units: bool = True
    quotes: bool = True
    code: bool = True
    entities: bool = True
    polarity: bool = True
    # Off by default: Banking77 paraphrases flip negation all the time ("my payment
    # failed" / "why didn't my payment work?"); the verifier weighs it instead.
    negation: bool = False
    # One prompt is the other word for word with a negation added or removed ("fruits
    # high in potassium" / "not high in potassium"): a rewording that flips negation
    # changes more ("why did my top-up fail" / "why did my top-up not work").
    contradiction: bool = True
    # One prompt is the other word for word with a condition or scope added: a phrase of
    # 2+ words led by a preposition or "if"/"when" ("side effects of the vaccine" / "...
    # in children", "sort by a key" / "... in descending order"); "at all", "if any" and
    # the like are no condition.
    qualifier: bool = True
    # The two prompts are the same words in the same order but for one content word on
    # each side ("how to install nginx" / "how to configure nginx"): the pair is reported
    # (``GuardReport.substituted``) and refused unless the two words are near-synonyms
    # by the embedded model (:func:`deja.semantic.decision.decide`).
    substitution: bool = True
    # Most of the two prompts is one shared text (a pasted document, a policy, earlier
    # turns) and what differs asks about it with other words ("<leaflet> Can I take it
    # while pregnant?" / "<leaflet> How often can I take it?"): the shared text makes them
    # look alike to the model and the verifier, so the differing parts must hold the same
    # content words; else the exact tier answers.
    context: bool = True
    # The two prompts say the same words, but their symbols come in another order or are
    # other symbols ("age > 30" / "age < 30", "HEAD~1" / "HEAD^1"), or their lines are
    # indented otherwise (a Python line inside or after a block): the words the model
    # reads are the same (cosine 1.0 for the indentation), the question is not.
    symbols: bool = True
    # Words written in another script than Latin (a mostly Latin prompt that quotes
    # "你好" or names "Москва"): the other guards cannot read them, so they must be the
    # same words on both sides. (A prompt mostly in another script is left to the exact
    # tier before any guard: ``SemanticCache.query``.)
    script: bool = True

    @classmethod
    def none(cls) -> GuardSettings:
        """Every guard off (a bare threshold, for comparisons)."""
        return cls(**dict.fromkeys((f.name for f in fields(cls)), False))


@dataclass(frozen=True, slots=True)
class GuardReport:
    """The outcome of comparing two signatures: ``failed`` names the guards that failed.

    ``substituted``: when every guard passed and the prompts differ in one content word
    only, that word on each side (the substitution guard's question, which the words'
    meaning answers: see :data:`deja.semantic.decision.SUBSTITUTION_SIMILARITY`).
    """

    failed: tuple[str, ...]
    shared_anchors: int
    substituted: tuple[str, str] | None = None

    @property
    def ok(self) -> bool:
        """True when every enabled guard passed."""
        return not self.failed


def _occurrences_at(candidates: Iterable[str], low_text: str) -> list[tuple[int, str]]:
    """Where each candidate entity occurs in ``low_text`` (whole words): (start, name) in
    text order, where ``start`` indexes ``f" {low_text} "`` (the space before the name).
    The text's words are indexed once, so a long prompt with many names costs its length
    plus the names' occurrences, not their product."""
    words = low_text.split(" ")
    at: dict[str, list[int]] = {}
    for i, word in enumerate(words):
        at.setdefault(word, []).append(i)
    starts: list[int] = []
    pos = 0
    for word in words:
        starts.append(pos)
        pos += len(word) + 1
    padded = f" {low_text} "
    found: list[tuple[int, str]] = []
    for name in candidates:
        parts = name.split(" ")
        last = len(parts) - 1
        needle = f" {name} "
        after = -1  # the end of this name's last match: one that overlaps it is not new
        for i in at.get(parts[0], ()):
            # its last word first (one look), then the whole name at C speed: a long name
            # (a prompt's run of one capitalised word) compared word by word at each of
            # its words' places was quadratic in the prompt's length
            if i < after or i + last >= len(words) or words[i + last] != parts[last]:
                continue
            if padded.startswith(needle, starts[i]):
                found.append((starts[i], name))
                after = i + last + 1
    # an entity inside a longer one found at the same place ("york" in "new york") is
    # dropped: keep the first, longest match at each position
    out: list[tuple[int, str]] = []
    end = -1
    for start, name in sorted(found, key=lambda f: (f[0], -len(f[1]))):
        if start < end:
            continue
        out.append((start, name))
        end = start + len(name) + 1
    return out


# what joins two names with a direction, read from the first to the second: "Oslo to
# Berlin", "Madrid north of Paris"; "to Berlin from Oslo" is read backwards
_FORWARD = frozenset(
    {"to", "into", "onto", "->", "=>", "\u2192", "than"}
    | {f"{b} of" for b in ("north", "south", "east", "west")}
    | {f"{b} of" for b in ("northeast", "northwest", "southeast", "southwest")}
)


_ALIASED = frozenset(_NAME_ALIASES)
_CANONICAL = frozenset(_NAME_ALIASES.values())
# every spelling of each name, the usual one included; a spelling that is also an
# everyday word ("node", "go", "mac") is found only where a prompt marks it as a name
_SPELLINGS: dict[str, tuple[str, ...]] = {
    canon: tuple(
        spelling
        for spelling in (
            canon,
            *(alias for alias, usual in _NAME_ALIASES.items() if usual == canon),
        )
        if spelling not in _EVERYDAY_SPELLINGS
    )
    for canon in _CANONICAL
}


def _entity_arrows(seen: list[tuple[int, str]], low_text: str) -> frozenset[tuple[str, str]]:
    """The (source, target) pairs of the names ``seen`` in ``low_text`` (as
    :func:`_occurrences_at` finds them) that it joins with a direction: neighbours with a
    direction word between them, and "from X ... to Y"."""
    padded = f" {low_text} "
    out: set[tuple[str, str]] = set()
    for (start, first), (nxt, second) in itertools.pairwise(seen):
        between = padded[start + len(first) + 1 : nxt].strip()
        x, y = _NAME_ALIASES.get(first, first), _NAME_ALIASES.get(second, second)
        if between in _FORWARD:
            out.add((x, y))
        elif between == "from":
            out.add((y, x))
        elif padded[:start].endswith(" from") and between.rsplit(" ", 1)[-1] in ("to", "into"):
            out.add((x, y))
    return frozenset(out)


# A language written with a capital that in lower case is an everyday word: "Translate
# this to Polish" / "Translate this to polish", "What is Polish?" / "What is polish?"
# (the embedded model reads no letter case: cosine 1.0). Only these: other languages and
# peoples in lower case are the same words ("French toast" / "french toast").
_CAPITONYMS_RE = re.compile(r"\bpolish\b", re.IGNORECASE)
# what ends a sentence: a capital after it (and at the start of the text) says nothing
_SENTENCE_ENDS = ".!?:;\n"
_LOOK_BACK = 24  # characters before a word in which the word before it is read


def _capitonyms(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """The words of :data:`_CAPITONYMS_RE` that ``text`` writes with a capital after a word
    in lower case (a capital that starts a sentence, or follows another capital as in a
    title, "How To Polish Shoes", says nothing), and those it writes in lower case (none
    for a text written all in lower case: its letter case says nothing either)."""
    capital: set[str] = set()
    lower: set[str] = set()
    for m in _CAPITONYMS_RE.finditer(text):
        word = m.group()
        if word.islower():
            lower.add(word)
            continue
        start = m.start()
        before = text[max(0, start - _LOOK_BACK) : start].split()
        previous = before[-1] if before else ""
        if (
            word[0].isupper()
            and word[1:].islower()
            and previous[:1].islower()
            and previous[-1] not in _SENTENCE_ENDS
        ):
            capital.add(word.lower())
    if lower and not any(c.isupper() for c in text):
        lower.clear()
    return frozenset(capital), frozenset(lower)


def _recapitalised(x: str, y: str) -> bool:
    """Does one prompt write a language with its capital where the other writes the
    everyday word of the same letters (:data:`_CAPITONYMS_RE`), and not both?"""
    if _CAPITONYMS_RE.search(x) is None or _CAPITONYMS_RE.search(y) is None:
        return False
    capital_x, lower_x = _capitonyms(x)
    capital_y, lower_y = _capitonyms(y)
    return bool(
        (capital_x - capital_y) & (lower_y - lower_x)
        or (capital_y - capital_x) & (lower_x - lower_y)
    )


def _spelled_out(name: str, text: str, other_low: str) -> str | None:
    """The words of ``other_low`` that ``name`` abbreviates, when it is an acronym written
    in capitals in ``text``: a word an initial, the first and last not little words
    ("my MIL" / "my mother in law"), or, in an acronym of three letters or more, content
    words with little words standing one at a time between them ("CBT-I" / "cognitive
    behavioral therapy for insomnia"; not "ATM" / "attempted to get money"). Hyphenated
    words count by their parts ("CTR" / "click-through rate"). Else ``None``."""
    letters = name.replace("-", "")
    if not (2 <= len(letters) <= 6 and letters.isalpha()):
        return None
    if re.search(rf"(?<![\w.]){re.escape(name.upper())}(?!\w)", text) is None:
        return None
    words = other_low.replace("-", " ").split()
    n = len(letters)
    for i, first in enumerate(words):
        if first[0] != letters[0] or first in _STOP:
            continue
        run = words[i : i + n]
        if "".join(w[0] for w in run) == letters and run[-1] not in _STOP:
            return " ".join(run)
        if n < 3:
            continue
        at, j, skipped = 1, i + 1, 0  # letters matched, next word, little words in a row
        while at < n and j < len(words) and skipped <= 1:
            if words[j] in _STOP:
                skipped += 1
            elif words[j][0] == letters[at]:
                at, skipped = at + 1, 0
            else:
                break
            j += 1
        if at == n:
            return " ".join(words[i:j])
    return None


def _acronyms_spelled_out(extra_a: set[str], extra_b: set[str], a: Signature, b: Signature) -> bool:
    """Are the names only one prompt has acronyms of words the other spells out, and the
    other's names only those words? ("DPO" / "Data Protection Officer", "BP" / "blood
    pressure", "CTR" / "click-through rate")"""
    for short, mine, theirs, text, other in (
        (set(extra_a), extra_a, extra_b, a.text, b),
        (set(extra_b), extra_b, extra_a, b.text, a),
    ):
        # the other prompt's words as written: its low text reads "American" as "united
        # states" already
        other_low = " ".join(_tokens_of(other.text.lower())) if short else ""
        for name in short:
            head, _, rest = name.partition(" ")
            words = _spelled_out(head, text, other_low)
            if words is None:
                continue
            spelled = words.replace("-", " ")
            if rest:  # "IRS Form 1040" / "Internal Revenue Service Form 1040"
                if f"{spelled} {rest}" not in theirs:
                    continue
                theirs.discard(f"{spelled} {rest}")
            mine.discard(name)
            said = spelled.split(" ")
            theirs.difference_update(
                # the words' own names ("Data Protection Officer"), and a country named
                # by its people ("American Academy of Pediatrics": the United States)
                n
                for n in list(theirs)
                if n.replace("-", " ") in spelled or any(_ALIASES.get(w) == n for w in said)
            )
    return not extra_a and not extra_b


# words before a name that make it another one: "North Korea" is not "Korea", "New
# Mexico" not "Mexico", "El Salvador" not "Salvador"
_NAME_HEADS = frozenset({
    "north", "south", "east", "west", "northern", "southern", "eastern", "western",
    "northeast", "northwest", "southeast", "southwest", "central", "new", "old", "upper",
    "lower", "greater", "little", "latin", "el", "equatorial",
})  # fmt: skip


def _inside_literals(name: str, other: Signature) -> bool:
    """Whether ``name`` (or another spelling of it) is a word of one of ``other``'s code
    spans or quotes."""
    if not (other.code or other.quotes):
        return False
    spans = [f" {' '.join(_tokens_of(span.lower()))} " for span in other.code + other.quotes]
    return any(
        f" {spelling} " in span for spelling in (name, *_SPELLINGS.get(name, ())) for span in spans
    )


def _ends_of(name: str) -> list[str]:
    """The shorter names ``name`` ends with, dropping first words that are no heads of
    another name ("magnus carlsen": ["carlsen"]; "north korea": [])."""
    words = name.split(" ")
    ends = []
    for k in range(1, len(words)):
        if words[k - 1] in _NAME_HEADS:
            break
        ends.append(" ".join(words[k:]))
    return ends


def _names_shortened(extra_a: set[str], extra_b: set[str], a: Signature, b: Signature) -> bool:
    """Are the names only one prompt has the others' names said shorter or mistyped?

    The end of a longer name on the other side ("Carlsen" / "Magnus Carlsen", "the Nano" /
    "the Arduino Nano", "Caesar" / "Julius Caesar"; not "Korea" / "North Korea"), or, where
    the other side names nothing else, written there as words ("Pixel 8" / "the Google
    Pixel 8"); a one-word name mistyped on the other side ("Theseus" / "thesius", see
    :func:`~deja.semantic.guards.spelling.misspelt`). "Apple Pay" / "Google Pay" stay two
    names.
    """
    for mine, theirs, other in ((extra_a, extra_b, b), (extra_b, extra_a, a)):
        for name in list(mine):
            ends = _ends_of(name)
            shorter = next((end for end in ends if end in theirs), None)
            if shorter is not None:
                mine.discard(name)
                theirs.discard(shorter)
            elif not theirs and any(f" {end} " in f" {other.low_text} " for end in ends):
                mine.discard(name)
    for mine, theirs, other in ((extra_a, extra_b, b), (extra_b, extra_a, a)):
        for name in list(mine):
            if " " in name:
                continue
            slip = next((w for w in other.low_text.split(" ") if misspelt(name, w)), None)
            if slip is not None:
                mine.discard(name)
                theirs.discard(slip)
    return not extra_a and not extra_b


def _speaks_as_another(x: str | None, y: str | None) -> bool:
    """Do both prompts say who they ask as (:attr:`Signature.speaker`), and not the same one
    ("As a coach, how do I give feedback to my team" / "As a player, how do I give feedback
    to my coach"; a "tenant" is a "renter")?"""
    if x is None or y is None or _plain_stem(x) == _plain_stem(y):
        return False
    sides_x, sides_y = _poles_of(frozenset({x})), _poles_of(frozenset({y}))
    return not (sides_x == sides_y and any(sides_x))


def _quoted_bare(a: Signature, b: Signature) -> bool:
    """Does ``a`` quote only what ``b`` writes bare (``b`` quoting nothing): "translate
    'thank you' into Japanese" / "how do you say thank you in japanese", "what does 'ça
    va' mean" / "meaning of ca va" (accents aside)? A quote of one word only when it is a
    content word, in any form ("what does 'tannin' mean" / "what are tannins"): a little
    word bare is too often just a word ("count the word 'the'" / "count the words")."""
    return bool(a.quotes) and not b.quotes and _written_bare(a.quotes, b.text, one_word=True)


def _quote_paraphrased(a: Signature, b: Signature) -> bool:
    """Does ``a`` quote only words that ``b`` uses bare, in any order and form, each quote
    three content words or more: an error message quoted on one side and retold on the
    other ('"fatal: refusing to merge unrelated histories" when doing git pull' / 'git
    pull fails saying it refuses to merge unrelated histories')? Its numbers, names and
    code are the other guards' to compare."""
    if not a.quotes or b.quotes:
        return False
    stems = {_plain_stem(w) for w in _tokens_of(unaccented(b.text.lower()))}
    for quote in a.quotes:
        # a label before a colon is how the tool prints it ("fatal:", "ERROR:")
        head, colon, rest = quote.partition(": ")
        said = rest if colon and " " not in head else quote
        words = [w for w in _tokens_of(unaccented(said)) if w not in _STOP]
        if len(words) < _PARAPHRASED_WORDS or any(_plain_stem(w) not in stems for w in words):
            return False
    return True


_PARAPHRASED_WORDS = 3


def _code_bare(a: Signature, b: Signature) -> bool:
    """Does ``a`` write as code only what ``b`` writes as words (``b`` has no code): "the
    derivative of sin(x)" / "derivative of sin x"? Each span needs two words or more."""
    return bool(a.code) and not b.code and _written_bare(a.code, b.text, one_word=False)


def _written_bare(spans: tuple[str, ...], text: str, *, one_word: bool) -> bool:
    """Whether ``text`` has the words of every span, in order (accents aside); with
    ``one_word``, a span of one content word in any form of it too."""
    words_of_text = _tokens_of(unaccented(text.lower()))
    bare = f" {' '.join(words_of_text)} "
    stems: set[str] | None = None
    for span in spans:
        words = _tokens_of(unaccented(span))
        if one_word and len(words) == 1 and words[0] not in _STOP:
            if stems is None:
                stems = {_plain_stem(w) for w in words_of_text}
            if _plain_stem(words[0]) not in stems:
                return False
        elif len(words) < 2 or f" {' '.join(words)} " not in bare:
            return False
    return True


def _drop_lone_qualifiers(
    seen: tuple[str, ...], other: tuple[str, ...], qualified: frozenset[str]
) -> tuple[str, ...]:
    """``seen`` with the place qualifiers that ``other`` does not give its own names
    left out: "new york city" is "new york" beside "new york", not beside "new york state".
    """
    qualifying = {name.rsplit(" ", 1)[0] for name in other if name in qualified}
    return tuple(
        base if name in qualified and (base := name.rsplit(" ", 1)[0]) not in qualifying else name
        for name in seen
    )


def _same_numbers(a: Signature, b: Signature) -> bool:
    """The same numbers, the loose ones ("twice") counting only where both prompts give
    some: "twice" is "two times" and not "thrice", nor "3 times", but may be "duplicate".
    """
    if a.all_numbers == b.all_numbers:
        return True
    return (
        (a.numbers == b.numbers and not (a.loose and b.loose))
        or _same_quantities(a, b)
        or _ones_in_words(a, b)
        or _ones_in_words(b, a)
    )


def _units_of_ones(a: Signature, b: Signature) -> bool:
    """Are ``b``'s units ``a``'s and those of the 1s that ``a`` writes "one" ("a ten-mile
    hike in one day" / "a 10 mile hike in 1 day": "one day" carries no unit, as "days"
    alone would not)?"""
    if not _ones_in_words(a, b):
        return False
    units = list(b.units)
    for value, unit in zip(b.all_numbers, b.measured, strict=True):
        if value == "1" and unit in units:
            units.remove(unit)
    return sorted(units) == sorted(a.units)


def _ones_in_words(a: Signature, b: Signature) -> bool:
    """Are ``b``'s numbers ``a``'s and some 1s that ``a`` writes "one" ("squash my last three
    commits into one" / "squash last 3 commits into 1"; "one" alone is no number: "which
    one", "one of them")?"""
    extra = len(b.all_numbers) - len(a.all_numbers)
    if extra <= 0 or b.all_numbers.count("1") - a.all_numbers.count("1") != extra:
        return False
    if tuple(v for v in b.all_numbers if v != "1") != tuple(v for v in a.all_numbers if v != "1"):
        return False
    return a.low_text.split(" ").count("one") >= extra


def _same_quantities(a: Signature, b: Signature) -> bool:
    """The same numbers in another order where only numbers of one unit keep theirs:
    "a 440 Hz wave, sound at 343 m/s" / "sound speed 343 m/s, frequency 440 Hz", "near a
    tower, may I fly above 400 feet under Part 107" / "under Part 107, may I fly above 400
    feet near a tower" (numbers without a unit are one unit: "from 3 to 5" is not "from 5
    to 3")."""
    if len(set(a.measured)) < 2:
        return False
    return _by_unit(a) == _by_unit(b)


def _by_unit(a: Signature) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for value, unit in zip(a.all_numbers, a.measured, strict=True):
        grouped.setdefault(unit, []).append(value)
    return grouped


def _numbers_mirrored(a: Signature, b: Signature) -> bool:
    """The same numbers in another order because one comparison is said from the other
    side: "is 5G faster than 4G" / "is 4G slower than 5G"."""
    return (
        sorted(a.numbers) == sorted(b.numbers)
        and len(a.numbers) > 1
        and _comparison(a.plain, b.plain) == "mirrored"
    )


def _swap_index() -> dict[str, list[tuple[int, int]]]:
    """Stem -> the (group, side) it stands for, over the swap groups and the poles."""
    index: dict[str, list[tuple[int, int]]] = {}
    for k, sides in enumerate(_SWAPS + _POLES):
        for side, words in enumerate(sides):
            for word in words:
                index.setdefault(_plain_stem(word), []).append((k, side))
    return index


_SWAP_INDEX = _swap_index()
_ARTICLES = frozenset({"a", "an", "the"})
# as plain words are (stems: "the" is "th")
_ARTICLE_STEMS = frozenset(map(_plain_stem, _ARTICLES))
_JOIN_STEMS = frozenset(map(_plain_stem, _SYMMETRIC_JOINS))
# articles and the possessives that stand for them ("its processor" / "the processor")
_DETERMINERS = _ARTICLE_STEMS | frozenset(
    map(_plain_stem, ["its", "their", "his", "her", "my", "your", "our"])
)


def _swapped(x: str, y: str) -> bool:
    """Are two stems on different sides of one group of alternatives? (Hyphenated words
    by their parts: "longer-acting" / "shorter-acting".)"""
    if "-" in x and "-" in y:
        parts_x, parts_y = x.split("-"), y.split("-")
        if len(parts_x) == len(parts_y):
            diff = [(p, q) for p, q in zip(parts_x, parts_y, strict=True) if p != q]
            if len(diff) == 1:
                x, y = _plain_stem(diff[0][0]), _plain_stem(diff[0][1])
    sides_y = dict(_SWAP_INDEX.get(y, ()))
    return any(k in sides_y and sides_y[k] != side for k, side in _SWAP_INDEX.get(x, ()))


# what may stand between a number and the name it is said of ("3pm in Paris", "5 km of
# the Thames", "20 degrees at Oslo")
_BINDING = frozenset({"in", "at", "for", "of", "on", "to", "from"})


def _numbers_moved(a: Signature, b: Signature) -> bool:
    """Do two prompts with the same numbers and names say some number of another name?
    A number is said of the name right after it ("15 00 in paris": past its other
    numbers, units and one of :data:`_BINDING`); a number followed by no name is said of
    none, and is not compared."""
    if not a.numbers or sorted(a.numbers) != sorted(b.numbers):
        return False
    bound_a, bound_b = _bound_names(a), _bound_names(b)
    return bool(bound_a and bound_b) and bound_a != bound_b


def _bound_names(a: Signature) -> frozenset[tuple[str, str]]:
    words = a.low_text.split()
    numbers = set(a.all_numbers)
    names = sorted(set(a.entities), key=len, reverse=True)
    bound: set[tuple[str, str]] = set()
    for i, w in enumerate(words):
        if w not in numbers:
            continue
        j = i + 1
        while j < len(words) and (words[j] in numbers or words[j].isdigit()):
            j += 1
        if j < len(words) and words[j] in _BINDING:
            j += 1
        rest = " ".join(words[j : j + 4]) + " "
        name = next((n for n in names if rest.startswith(n + " ")), None)
        if name is not None:
            bound.add((w, name))
    return frozenset(bound)


def _same_side(x: str, y: str) -> bool:
    """Are two stems on one side of a group of alternatives ("quicker" / "faster")?"""
    sides_y = dict(_SWAP_INDEX.get(y, ()))
    return any(sides_y.get(k) == side for k, side in _SWAP_INDEX.get(x, ()))


def _aligned_conflict(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Two prompts word for word the same but for one or two words that change the
    question: an alternative for another ("all" / "some", "to" / "from"), or two words
    trading places ("substitute baking soda for baking powder"; not around "and": "London
    and Tokyo", nor two neighbours). A word written hyphenated on one side only is its
    parts ("tubeless-ready" / "tubeless ready"); articles and the possessives that stand
    for them are no words of the question ("can a controller audit its processor" /
    "can a processor audit the controller")."""
    if len(a) != len(b):
        a, b = _unhyphenated(a, b), _unhyphenated(b, a)
    diff = [i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y]
    if len(a) != len(b) or len(diff) > 2:
        a = tuple(w for w in a if w not in _DETERMINERS)
        b = tuple(w for w in b if w not in _DETERMINERS)
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y]
    if len(a) != len(b) or a == b or len(diff) > 2:
        return False
    if len(diff) == 2 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]:
        return _places_traded(a, *diff)
    return any(_swapped(a[i], b[i]) or (i == 0 and _modal_swapped(a[0], b[0])) for i in diff)


def _unhyphenated(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    """``a`` with each hyphenated word that ``b`` writes as its parts split into them."""
    if not any("-" in w for w in a):
        return a
    other = set(b)
    out: list[str] = []
    for w in a:
        parts = [_plain_stem(p) for p in w.split("-")] if "-" in w else []
        out.extend(parts if parts and all(p in other for p in parts) else [w])
    return tuple(out)


def _places_traded(a: tuple[str, ...], i: int, j: int) -> bool:
    """Whether words ``i`` < ``j`` of ``a`` trading places changes the question: not two
    neighbours ("still pending" / "pending still"), not two little words ("can I" / "I
    can"), not around "and" / "or" / "vs" ("London and Tokyo")."""
    between = a[i + 1 : j]
    return (
        bool(between)
        and not (a[i] in _STOP and a[j] in _STOP)
        and not (set(between) <= _JOIN_STEMS and not _ARTICLE_STEMS.issuperset(between))
    )


def _name_slots(
    low_text: str, seen: list[tuple[int, str]]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``low_text``'s words with each name ``seen`` in it (:func:`_occurrences_at`) as an
    empty slot, the others stemmed; and the names in their slots, in order (one
    spelling each: "js" is "javascript")."""
    padded = f" {low_text} "
    frame: list[str] = []
    filled: list[str] = []
    pos = 0
    for start, name in seen:
        frame.extend(_plain_stem(w) for w in padded[pos:start].split())
        frame.append("")
        filled.append(_NAME_ALIASES.get(name, name))
        pos = start + len(name) + 1
    frame.extend(_plain_stem(w) for w in padded[pos:].split())
    return tuple(frame), tuple(filled)


def _names_traded(
    a: Signature, b: Signature, seen_a: list[tuple[int, str]], seen_b: list[tuple[int, str]]
) -> bool:
    """Two names trading places around the same words: "why did the United States declare
    war on Germany" / "why did Germany declare war on the United States", "Tom is older
    than twice Jerry's age" / "Jerry is older than twice Tom's age" (a name of several
    words counts as one; little words added or dropped aside; not around "and" / "or" /
    "vs": "Python and Java")."""
    frame_a, filled_a = _name_slots(a.low_text, seen_a)
    frame_b, filled_b = _name_slots(b.low_text, seen_b)
    if [w for w in frame_a if w not in _STOP_STEMS] != [w for w in frame_b if w not in _STOP_STEMS]:
        return False
    slots = [k for k, (x, y) in enumerate(zip(filled_a, filled_b, strict=True)) if x != y]
    if len(slots) < 2 or len({frozenset((filled_a[k], filled_b[k])) for k in slots}) != 1:
        return False
    # words between the first two names traded on both sides (slot k is the k-th empty
    # word): "BuilderConfig in Datasets" / "Datasets' BuilderConfig" name one thing
    empty_a = [k for k, w in enumerate(frame_a) if not w]
    empty_b = [k for k, w in enumerate(frame_b) if not w]
    return _places_traded(frame_a, empty_a[slots[0]], empty_a[slots[1]]) and _places_traded(
        frame_b, empty_b[slots[0]], empty_b[slots[1]]
    )


# question words that ask for different things, and the words a question form moves or
# adds around the rest ("who created Python" / "when was Python created")
_QUESTION_WORDS = {
    _plain_stem(word): side
    for side, words in enumerate(("who whom whose", "when", "where", "why"))
    for word in words.split()
}
_AUXILIARIES = frozenset(_plain_stem(word) for word in [
    "is", "was", "are", "were", "be", "been", "being", "do", "does", "did", "will", "would",
    "can", "could", "should", "has", "have", "had", "a", "an", "the",
])  # fmt: skip


def _why_not(x: Signature, y: Signature) -> bool:
    """Whether one of two questions is a "why not" one, which asks when, as a complaint:
    "why hasn't my card arrived" / "when will my card arrive" are one question."""
    opens = {s.plain[:1] for s in (x, y)}
    return opens == {("why",), ("when",)} and any(
        s.denies and s.plain[:1] == ("why",) for s in (x, y)
    )


def _asks_other(x: Signature, y: Signature) -> bool:
    """Two questions about the same words that open with question words asking for
    different things: "who created Python" / "when was Python created" (in any order of
    the other words; a question that changes more words is left to the other guards),
    unless one is a "why not" question (:func:`_why_not`)."""
    a, b = x.plain, y.plain
    if not a or not b or a[0] == b[0]:
        return False
    side_a, side_b = _QUESTION_WORDS.get(a[0]), _QUESTION_WORDS.get(b[0])
    if side_a is None or side_b is None or side_a == side_b:
        return False
    if _why_not(x, y):
        return False
    return {w for w in a[1:] if w not in _AUXILIARIES} == {
        w for w in b[1:] if w not in _AUXILIARIES
    }


# what a "how" question measures: "how long is the train from Paris to London" asks the
# time, "how much is the train ..." the price (words of one side ask alike; not "high",
# "big" or "large", which ask an amount too: "how high is the fee" / "how much is the fee")
_HOW_MEASURES = {
    _plain_stem(word): side
    for side, words in enumerate(
        (
            "long", "much many", "far", "old", "often", "tall", "fast", "deep", "heavy",
            "soon early", "late", "hot warm", "cold", "wide",
        )
    )
    for word in words.split()
}  # fmt: skip


def _measure_asked_apart(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Two questions of the same words but for what their "how" measures ("how long is
    the train from Paris to London" / "how much is the train ...")."""
    i = a.index("how") if "how" in a else -1
    if i < 0 or len(a) != len(b) or i + 1 >= len(a) or a[: i + 1] != b[: i + 1]:
        return False
    side_a, side_b = _HOW_MEASURES.get(a[i + 1]), _HOW_MEASURES.get(b[i + 1])
    if side_a is None or side_b is None or side_a == side_b:
        return False
    return a[i + 2 :] == b[i + 2 :]


# the words that open a yes/no question, and those that a whether question adds to a when
# question's words ("has the iPhone 16 been released yet")
_YES_NO_OPENERS = frozenset([
    "is", "are", "am", "was", "were", "do", "does", "did", "has", "have", "had", "will",
    "would", "can", "could", "should", "shall", "may", "might", "must",
])  # fmt: skip
_WHETHER_FILLERS = frozenset(_plain_stem(w) for w in ["yet", "already", "ever", "still"])


def _when_against_whether(a: Signature, b: Signature) -> bool:
    """Does one prompt ask when something happens and the other whether it does, about the
    same words: "When will the iPhone 16 be released?" / "Has the iPhone 16 been
    released?" (a date against a yes or no, and the first takes for granted what the
    second asks), "When should I take vitamin D?" / "Should I take vitamin D?". The
    "when" must open a question, before an auxiliary: "When I use my card, ..." opens a
    clause. (A "why not" question, which asks when, opens with "why": :func:`_why_not`.)"""
    for x, y in ((a, b), (b, a)):
        when = x.low_text.split(" ", 2)
        if len(when) < 2 or when[0] != "when" or when[1] not in _YES_NO_OPENERS:
            continue
        if y.low_text.split(" ", 1)[0] not in _YES_NO_OPENERS:
            return False
        return _content_stems(x.plain) - _WHETHER_FILLERS == (
            _content_stems(y.plain) - _WHETHER_FILLERS
        )
    return False


# a state that coming to be in and being in ask other things of: "what should I do if I
# might get pregnant" (contraception) / "... if I may be pregnant" (a test). Only these:
# of most states the two ask one thing ("if I get sick abroad" / "if I am sick abroad",
# "can I get married at 16" / "can I be married at 16")
_BECOMING_STATES = frozenset({"pregnant"})
_BECOMING = frozenset([
    "get", "gets", "getting", "got", "gotten", "become", "becomes", "becoming", "became",
])  # fmt: skip
_BEING = frozenset([
    "be", "is", "am", "are", "was", "were", "being", "been", "i'm", "im", "you're",
    "she's", "we're", "they're",
])  # fmt: skip
# how far before the state its verb may stand ("am I pregnant", "could I be pregnant")
_STATE_VERB_WITHIN = 3


def _becoming_or_being(low_text: str) -> frozenset[str]:
    """Whether ``low_text`` says of each of :data:`_BECOMING_STATES` that it comes to be
    ("becoming") or is ("being"), by the nearest verb before it."""
    words = low_text.split(" ")
    kinds: set[str] = set()
    for i, w in enumerate(words):
        if w not in _BECOMING_STATES:
            continue
        for before in reversed(words[max(0, i - _STATE_VERB_WITHIN) : i]):
            if before in _BECOMING:
                kinds.add("becoming")
                break
            if before in _BEING:
                kinds.add("being")
                break
    return frozenset(kinds)


def _becoming_against_being(a: Signature, b: Signature) -> bool:
    """Does one prompt ask about coming to be in a state and the other about being in it,
    in the same content words ("if I might get pregnant" / "if I may be pregnant"; "might
    be" / "may be" is one question)?"""
    if _BECOMING_STATES.isdisjoint(a.plain) or _BECOMING_STATES.isdisjoint(b.plain):
        return False
    kinds_a, kinds_b = _becoming_or_being(a.low_text), _becoming_or_being(b.low_text)
    return (
        len(kinds_a) == len(kinds_b) == 1
        and kinds_a != kinds_b
        and _content_stems(a.plain) == _content_stems(b.plain)
    )


# A verb's particle makes it another verb ("carry out" / "carry over", "give in" / "give
# up", "sign up" / "sign in"): the embedded model reads two particles as near words. Only
# after these verbs, which take particles (after any other word one is a preposition:
# "hotels in Paris" / "hotels around Paris"), and but for two particles that say one
# thing after some of them ("log in" / "log on", "go over" / "go through my notes").
_VERB_PARTICLES = frozenset(map(_plain_stem, [
    "up", "down", "in", "out", "on", "off", "over", "away", "back", "through", "around",
    "about", "along", "across", "apart", "aside", "forward",
]))  # fmt: skip
_PHRASAL_HEADS = [
    "back", "blow", "break", "bring", "build", "burn", "call", "calm", "carry", "catch",
    "check", "cheer", "clean", "clear", "close", "come", "count", "cross", "cut", "drop",
    "end", "fall", "figure", "fill", "find", "get", "give", "go", "grow", "hand", "hang",
    "hold", "keep", "kick", "knock", "lay", "leave", "let", "lie", "line", "lock", "log",
    "look", "make", "mix", "move", "pass", "pay", "pick", "play", "point", "pull", "push",
    "put", "run", "sell", "send", "set", "settle", "shut", "sign", "sit", "slow", "sort",
    "speak", "stand", "start", "stay", "step", "sum", "take", "talk", "tear", "think",
    "throw", "tie", "try", "turn", "wake", "walk", "wear", "wind", "wipe", "work", "write",
]  # fmt: skip
_IRREGULAR_PASTS = [
    "got", "gave", "taken", "took", "made", "ran", "sold", "sent", "sat", "spoke", "stood",
    "came", "went", "fell", "found", "grew", "held", "kept", "left", "brought", "built",
    "broke", "caught", "threw", "thought", "tore", "wore", "woke", "wrote", "paid",
]  # fmt: skip
_PHRASAL_VERBS = frozenset(
    _plain_stem(form)
    for verb in _PHRASAL_HEADS
    for form in (
        verb,
        f"{verb}s",
        f"{verb}ing",
        f"{verb}ed",
        # "carries", "carried"
        *((f"{verb[:-1]}ies", f"{verb[:-1]}ied") if verb.endswith("y") else ()),
    )
) | frozenset(map(_plain_stem, _IRREGULAR_PASTS))
_SAME_PARTICLES = {
    frozenset(map(_plain_stem, ["in", "on"])): frozenset(map(_plain_stem, ["log", "sign"])),
    frozenset(map(_plain_stem, ["over", "through"])): frozenset(
        map(_plain_stem, ["go", "look", "read", "run", "talk", "think"])
    ),
}


def _particle_traded(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Are two prompts (plain words) word for word the same but for the particle of a
    verb that takes particles (:data:`_PHRASAL_VERBS`): "what does carry out mean" /
    "what does carry over mean"?"""
    if len(a) != len(b):
        return False
    diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    if len(diff) != 1 or diff[0] == 0:
        return False
    i = diff[0]
    x, y, verb = a[i], b[i], a[i - 1]
    return (
        x in _VERB_PARTICLES
        and y in _VERB_PARTICLES
        and verb in _PHRASAL_VERBS
        and verb not in _SAME_PARTICLES.get(frozenset((x, y)), frozenset())
    )


_TARGET_LEADS = frozenset(map(_plain_stem, ["to", "toward", "towards"]))


def _particle_against_target(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Are two prompts (plain words) word for word the same but for a particle on one side
    where the other names a target with "to": "round half up" / "round half to even",
    "scroll up" / "scroll to the top" (a variant of one method, named by where it goes)?"""
    short, long = (a, b) if len(a) < len(b) else (b, a)
    if not 1 <= len(long) - len(short) <= 2:
        return False
    i = 0
    while i < len(short) and short[i] == long[i]:
        i += 1
    if i == 0 or i == len(short) or short[i] not in _VERB_PARTICLES:
        return False
    # "to" and the target, with an article between them at most ("to the top")
    d = len(long) - len(short)
    if long[i] not in _TARGET_LEADS or (d == 2 and long[i + 1] not in _ARTICLE_STEMS):
        return False
    target = long[i + d]
    return (
        short[i + 1 :] == long[i + d + 1 :]
        and target not in _STOP_STEMS
        and target not in _VERB_PARTICLES
    )


# Two prompts that differ in little more than whether they ask about all of something or
# one part of it ("close all open tabs" / "close one tab", "all occurrences" / "the first
# occurrence"), or whether something is required or only allowed ("must my dog get by
# law" / "can my dog get"). Whole-prompt versions of these refused thousands of Banking77
# same-intent pairs, so each applies only between near-duplicates: at most
# _NEAR_DIFFERENCE other content words apart.
_NEAR_DIFFERENCE = 2
_STOP_STEMS = frozenset(_plain_stem(w) for w in _STOP)
_WHOLE_WORDS = frozenset({"all", "every", "entire", "whole", "each"})
# (and a share of one thing: "a slice of pizza" / "a whole pizza")
_PART_WORDS = frozenset({
    "one", "single", "some", "first", "main", "specific", "particular", "certain",
    "slice", "slices", "piece", "pieces", "portion", "portions", "half",
})  # fmt: skip
_ALL_OF = frozenset(map(_plain_stem, _WHOLE_WORDS))
_PART_OF = frozenset(map(_plain_stem, _PART_WORDS))
_MUST = frozenset(map(_plain_stem, _REQUIRED.split()))
_HAVE = frozenset(_plain_stem(w) for w in ["have", "has", "had"])
_MAY = frozenset(map(_plain_stem, (_PERMITTED + " " + _ADVISED).split()))
_YOU = _plain_stem("you")
_TO = _plain_stem("to")
_AT = _plain_stem("at")
_NO_WHOLE_AFTER = frozenset(
    w for word in ["this", "time", "times"] for w in (word, _plain_stem(word))
)
# a prompt's words or their stems: the stem of "one" is the preposition "on", no part
_WHOLE = _WHOLE_WORDS | _ALL_OF
_PART = _PART_WORDS | (_PART_OF - {_plain_stem(w) for w in _STOP - _PART_WORDS})


def _near(a: tuple[str, ...], b: tuple[str, ...], rule_words: frozenset[str]) -> bool:
    """Whether two prompts' content words, the words of a rule left out, differ in at most
    _NEAR_DIFFERENCE words."""
    ignored = _STOP_STEMS | rule_words
    return len({w for w in a if w not in ignored} ^ {w for w in b if w not in ignored}) <= (
        _NEAR_DIFFERENCE
    )


def _universal(words: Sequence[str]) -> tuple[bool, bool]:
    """Whether a prompt (its words, or their stems) names all of something, and whether one
    part of it ("at all", "all this time", "every time" name no whole). Its words say
    more: the stem of "one" is the preposition "on" ("block notifications on my mac")."""
    whole = part = False
    for i, w in enumerate(words):
        after = words[i + 1] if i + 1 < len(words) else ""
        if w in _WHOLE and not (i and words[i - 1] == _AT) and after not in _NO_WHOLE_AFTER:
            whole = True
        elif w in _PART:
            part = True
    return whole, part


_MANY = frozenset(_plain_stem(w) for w in ["several", "multiple", "both"])
_TIMES = frozenset(_plain_stem(w) for w in ["time", "times"])


def _several(plain: tuple[str, ...]) -> bool:
    """Whether a prompt asks about several of a thing ("tried several times" is not)."""
    return any(
        w in _MANY and (i + 1 == len(plain) or plain[i + 1] not in _TIMES)
        for i, w in enumerate(plain)
    )


# nouns that gather several of a thing after "a" and before "of" and a plural: "a range
# of interfaces", "a set of files", "a number of users" ("the number of users" counts them)
_COLLECTIVES = frozenset({
    "range", "set", "group", "batch", "bunch", "number", "series", "handful", "lot",
})  # fmt: skip
_COLLECTIVE_STEMS = frozenset(map(_plain_stem, _COLLECTIVES))


def _gathered(low_text: str) -> bool:
    """Whether a prompt asks about several of a thing gathered by a collective noun ("a
    range of interfaces"; not "a range of motion")."""
    words = low_text.split()
    return any(
        w in _COLLECTIVES
        and words[i - 1] in ("a", "an")
        and words[i + 1] == "of"
        and _is_plural(words[i + 2])
        for i, w in enumerate(words[1:-2], start=1)
    )


def _how_many(a: Signature, b: Signature) -> bool:
    """One near-duplicate asks about several of a thing, the other about one ("return an
    error from a function" / "return multiple errors from one function", "both parents'
    consent" / "one parent's consent", "a single interface" / "a range of interfaces")."""
    x, y = a.plain, b.plain
    if _MANY.isdisjoint(x) and _MANY.isdisjoint(y) and _COLLECTIVE_STEMS.isdisjoint(x + y):
        return False
    many_a = _several(x) or _gathered(a.low_text)
    many_b = _several(y) or _gathered(b.low_text)
    return many_a != many_b and _near(x, y, _MANY | _PART_OF | _COLLECTIVE_STEMS)


# One of a thing against all or some of them, said with articles: "name a country in
# Africa" / "name the countries in Africa", "one benefit" / "the benefits", "a good name" /
# "some good names". A bare plural counts nothing: it is as often the generic singular
# said another way ("what does a cat eat" / "what do cats eat").
_ONE_ARTICLES = frozenset({"a", "an", "one"})
_PLURAL_ARTICLES = frozenset({"the", "all", "some", "these", "those", "various"})
# the words after an article read as its noun phrase: "a good name", "the prime numbers"
_NOUN_PHRASE = 3
_COUNT_STEMS = frozenset(map(_plain_stem, _ONE_ARTICLES | _PLURAL_ARTICLES))
_THERE = frozenset({"there", "there's"})
# words that ask for items, not for how to do something with them: "name a planet",
# "list the planets", "suggest some names", "give me an example"
_ASKING = frozenset(
    {"name", "list", "give", "suggest", "recommend", "mention", "pick", "choose", "show"}
)
_WHAT_IS = frozenset((w, v) for w in ("what", "which", "who") for v in ("is", "are", "was", "were"))


def _asks_for(words: list[str], i: int) -> bool:
    """Whether the article at ``words[i]`` asks for the items it counts: after a word that
    asks for items ("name a planet", "give me an example", "list all the countries") or
    right after "what / which / who is / are" ("what is a good name", "what are the
    benefits", "who is a member" / "who are the members"); not in "how do I cancel an
    order" / "... the orders", one procedure for one or for all."""
    before = words[max(i - 2, 0) : i]
    if not _ASKING.isdisjoint(before):
        return True
    # (a prompt's low_text drops the "'s": "What's the ..." opening it reads "what the";
    # inside a sentence, "what the cards are for" asks for no items)
    return (
        before[-1:] in (["what's"], ["who's"])
        or before in (["what"], ["who"])
        or (len(before) == 2 and tuple(before) in _WHAT_IS)
    )


@dataclass(slots=True)
class _Counts:
    """What a prompt counts, by noun stem (see :func:`_counted`)."""

    ones: set[str]  # one of a thing asked for: "name a country", "one benefit"
    explicit: set[str]  # one said in words: "one benefit", "one of the planets"
    many: set[str]  # all or some asked for: "list the countries", "each country"
    many_said: set[str]  # in the plural after an article at all: "the benefits"
    single: set[str]  # after "a", "an" or "one" at all: "cancel an order"
    plurals: set[str]  # in the plural elsewhere


def _counted(low_text: str) -> _Counts:
    """What a prompt counts as one and as many, by noun stem."""
    words = low_text.split()
    counts = _Counts(set(), set(), set(), set(), set(), set())
    counted_at = -1  # the words up to here belong to a counted noun phrase
    for i, word in enumerate(words):
        if _is_plural(word) and i > counted_at:
            counts.plurals.add(_plain_stem(word))
        if word in _ONE_ARTICLES:
            if i and words[i - 1] in _THERE:
                continue  # "is there an exchange rate" asks whether there is one, not for one
            plural, one_of = False, False
        elif word in _PLURAL_ARTICLES or word == "each":
            # "one of the virtual cards" is one card
            one_of = i > 1 and words[i - 1] == "of" and words[i - 2] in _ONE_ARTICLES
            plural = word != "each"
        else:
            continue
        asked = one_of or word in ("one", "each") or _asks_for(words, i)
        # each word is looked at by at most _NOUN_PHRASE articles: linear in the prompt
        for k, after in enumerate(words[i + 1 : i + 1 + _NOUN_PHRASE], start=i + 1):
            if after in _STOP or after in _ONE_ARTICLES or after in _PLURAL_ARTICLES:
                break
            if _is_plural(after) != plural:
                continue
            stem = _plain_stem(after)
            counted_at = max(counted_at, k)
            if word == "each":  # "each country": all of them, one by one
                counts.many_said.add(stem)
                counts.many.add(stem)
            elif one_of or not plural:
                counts.single.add(stem)
                if asked:
                    counts.ones.add(stem)
                if one_of or word == "one":
                    counts.explicit.add(stem)
            else:
                counts.many_said.add(stem)
                if asked:
                    counts.many.add(stem)
    return counts


def _one_against_all(a: Signature, b: Signature) -> bool:
    """One near-duplicate asks for one of a thing ("name a planet", "what is one benefit")
    where the other asks for all or some of it ("name the planets", "what are the
    benefits"), and neither says it the other way too."""
    if not _near(a.plain, b.plain, _COUNT_STEMS):  # (the cheaper test first)
        return False
    ca, cb = _counted(a.low_text), _counted(b.low_text)

    def one_against(x: _Counts, y: _Counts) -> set[str]:
        asked = (x.ones & y.many) | (x.explicit & y.many_said)
        return asked - x.plurals - y.single

    if one_against(ca, cb) or one_against(cb, ca):
        return True
    ta, tb = _definite_heads(a.low_text), _definite_heads(b.low_text)
    return _the_one_against_the_many(ta, tb, a.plain) or _the_one_against_the_many(tb, ta, b.plain)


# "the" + a superlative: "the largest moon" is one, "the largest moons" a list
_SUPERLATIVES = frozenset({"best", "worst", "most", "least", "fewest"})
_NOT_SUPERLATIVE = frozenset([
    "interest", "request", "contest", "protest", "suggest", "digest", "arrest", "invest",
    "harvest", "forest", "honest", "modest", "manifest", "earnest", "unrest", "conquest",
    "bequest", "behest", "tempest", "priest", "midwest", "southwest", "northwest",
    "inquest", "pretest", "retest", "attest", "detest", "divest", "ingest", "infest",
])  # fmt: skip
# plurals not made with "s": "the richest person" / "the richest people"
_IRREGULAR_PLURALS = {"people": "person", "men": "man", "women": "woman", "children": "child"}
_HEAD_WITHIN = 5  # words after "the" in which its noun is read
_EDGE_MARKS = "?.,!;:\"'()"


def _superlative(word: str) -> bool:
    return word in _SUPERLATIVES or (
        len(word) >= 6 and word.endswith("est") and word not in _NOT_SUPERLATIVE
    )


# a noun the prompt asks for: in the plural, the words before it in its noun phrase, and
# whether "of" follows it ("the capital of Australia")
_Head = tuple[bool, frozenset[str], bool]


def _definite_heads(low_text: str) -> dict[str, _Head]:
    """The nouns a prompt asks for with "the" ("what is the largest moon of Jupiter",
    "what are the state capitals"), by stem (see :data:`_Head`)."""
    words = low_text.split()
    out: dict[str, _Head] = {}
    for i, word in enumerate(words):
        if word != "the" or not _asks_for(words, i):
            continue
        phrase: list[str] = []
        end = ""
        for after in words[i + 1 : i + 1 + _HEAD_WITHIN]:
            bare = after.strip(_EDGE_MARKS)
            if not bare or (bare in _STOP and bare not in _SUPERLATIVES) or bare in _NOUN_END:
                end = bare
                break
            phrase.append(bare)
            if bare != after:  # punctuation ends the noun phrase
                break
        if not phrase or _superlative(phrase[-1]):
            continue
        head = phrase[-1]
        plural = head in _IRREGULAR_PLURALS or _is_plural(head)
        # (the stem of the singular: the stemmer makes "building" "build", "buildings"
        # "building")
        if head in _IRREGULAR_PLURALS:
            head = _IRREGULAR_PLURALS[head]
        elif plural:
            head = head[:-3] + "y" if head.endswith("ies") else head[:-1]
        stem = _plain_stem(head)
        out[stem] = (plural, frozenset(phrase[:-1]), end == "of")
    return out


def _the_one_against_the_many(
    x: dict[str, _Head], y: dict[str, _Head], x_plain: tuple[str, ...]
) -> bool:
    """``x`` (a prompt's :func:`_definite_heads`, its words ``x_plain``) asks for the one
    thing that ``y`` asks a list of: "the largest moon" / "the largest moons" (a
    superlative), "the capital of Australia" / "the state capitals of Australia" (one
    thing of a place or a thing, against a kind of them that ``x`` does not name). "The
    fee" / "the fees", "the exchange fee" / "the currency exchange fees" ask alike."""
    for stem, (plural, before, of_after) in x.items():
        other = y.get(stem)
        if plural or other is None or not other[0]:
            continue
        if any(map(_superlative, before)):
            return True
        if of_after and not {_plain_stem(w) for w in other[1] - before}.issubset(x_plain):
            return True
    return False


def _quantified(a: Signature, b: Signature) -> bool:
    """One near-duplicate asks about all of something, the other about a part ("close all
    open tabs" / "close one tab"); a negation makes a whole a part ("didn't get all the
    cash" / "only got some of the cash"), so negated prompts are left out."""
    if a.denies or b.denies or (_ALL_OF.isdisjoint(a.plain) and _ALL_OF.isdisjoint(b.plain)):
        return False
    whole_a, part_a = _universal(a.low_text.split())
    whole_b, part_b = _universal(b.low_text.split())
    if not (
        (whole_a and part_b and not whole_b and not part_a)
        or (whole_b and part_a and not whole_a and not part_b)
    ):
        return False
    return _near(a.plain, b.plain, _ALL_OF | _PART_OF)


_LEAST, _MOST, _EXACTLY = _plain_stem("least"), _plain_stem("most"), _plain_stem("exactly")
_BOUND_WORDS = frozenset({_AT, _LEAST, _MOST, _EXACTLY})


def _bounds(plain: tuple[str, ...]) -> frozenset[str]:
    """The bounds a prompt puts on a count: "at least", "at most", "exactly"."""
    if _LEAST not in plain and _MOST not in plain and _EXACTLY not in plain:
        return frozenset()
    return frozenset(
        w
        for i, w in enumerate(plain)
        if w == _EXACTLY or (w in (_LEAST, _MOST) and i and plain[i - 1] == _AT)
    )


def _bounds_differ(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Two near-duplicates that bound a count differently ("at least one six in four
    rolls" / "exactly one six in four rolls")."""
    bounds_a, bounds_b = _bounds(a), _bounds(b)
    return bool(bounds_a and bounds_b) and bounds_a != bounds_b and _near(a, b, _BOUND_WORDS)


_BOUND_KINDS = (frozenset({"min", "max", "exact"}), frozenset({"ago", "ahead"}))


def _bounded_apart(a: Signature, b: Signature) -> bool:
    """Do two prompts bound a number they share each their own way ("up to 2 bags" /
    "more than 2 bags", "exactly 3 logins" / "more than 3 logins", "100 days ago" / "in
    100 days")?"""
    if set(a.all_numbers).isdisjoint(b.all_numbers):
        return False
    if not a.bounds or not b.bounds:
        return False
    bounds_b = dict(b.bounds)
    for number, ways_a in a.bounds:
        ways_b = bounds_b.get(number)
        if not ways_b:
            continue
        for kind in _BOUND_KINDS:
            x, y = ways_a & kind, ways_b & kind
            if x and y and x.isdisjoint(y):
                return True
    return False


# one of several things named by a letter before a hyphen: "the x-axis" / "the y-axis",
# "the x-intercept" / "the y-intercept" (the embedded model reads each two alike, 0.8-0.9)
_LETTERED_RE = re.compile(r"(?<![\w-])([a-z])-([a-z]{3,})\b")


def _lettered(low_text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for m in _LETTERED_RE.finditer(low_text):
        out.setdefault(m.group(2), set()).add(m.group(1))
    return out


def _lettered_apart(a: Signature, b: Signature) -> bool:
    """Do two prompts name one thing by other letters ("x-axis" / "y-axis")?"""
    if "-" not in a.low_text or "-" not in b.low_text:
        return False
    lettered_a = _lettered(a.low_text)
    if not lettered_a:
        return False
    lettered_b = _lettered(b.low_text)
    return any(
        letters.isdisjoint(lettered_b[thing])
        for thing, letters in lettered_a.items()
        if thing in lettered_b
    )


# "least" or "less" before a word grades it down, "-est" or "-er" up: "the least dense"
# is not "the densest", "the least sweet wine" not "the sweetest" (for the words of an
# antonym group, "least" says the other side: extract._graded)
_GRADED_DOWN = frozenset({"least", "less"})
_NOT_GRADED = frozenset({"than", "of", "and", "or", "a", "an", "the", "to", "in", "for"})


def _base_stem(word: str) -> str:
    """An adjective as its graded forms start: "dense" "dens", "windy" "windi"."""
    if word.endswith("y"):
        return word[:-1] + "i"
    return word.removesuffix("e")


def _graded_stem(word: str) -> str:
    """A superlative or comparative as its adjective's :func:`_base_stem`: "densest" and
    "denser" are "dens", "windiest" "windi", "biggest" "big"."""
    base = word[: -3 if word.endswith("est") else -2]
    if base[-1] == base[-2] and base[-1] not in "ls":  # "bigg", "hott"
        base = base[:-1]
    return base


def _grades(words: list[str]) -> tuple[set[str], set[str]]:
    """The stems ``words`` grade down ("least dense") and up ("densest", "denser")."""
    down: set[str] = set()
    up: set[str] = set()
    for i, w in enumerate(words):
        if w in _GRADED_DOWN:
            if (
                i + 1 < len(words)
                and words[i + 1] not in _NOT_GRADED
                and (not i or words[i - 1] != "at")
            ):
                down.add(_base_stem(words[i + 1]))
        elif w.endswith(("est", "er")) and len(w) > 4:
            up.add(_graded_stem(w))
    return down, up


def _graded_apart(a: Signature, b: Signature) -> bool:
    """One prompt grades a word down ("the least dense planet"), the other up ("the
    densest planet"), and neither both."""
    if not any("less" in x.low_text or "least" in x.low_text for x in (a, b)):
        return False  # (the cheap look first: most prompts grade nothing down)
    down_a, up_a = _grades(a.low_text.split())
    down_b, up_b = _grades(b.low_text.split())
    return bool((down_a - down_b) & (up_b - up_a) or (down_b - down_a) & (up_a - up_b))


def _may_oblige(plain: tuple[str, ...]) -> bool:
    """A quick look: can :func:`_modality` find an obligation in ``plain`` at all?"""
    return not _MUST.isdisjoint(plain) or (_TO in plain and not _HAVE.isdisjoint(plain))


def _modality(plain: tuple[str, ...]) -> tuple[bool, bool]:
    """Whether a prompt asks what is required (must, have to, mandatory...), and whether
    what is allowed or advised (can, may, should...; not "can you", a request)."""
    must = may = False
    for i, w in enumerate(plain):
        after = plain[i + 1] if i + 1 < len(plain) else ""
        if w in _MUST or (w in _HAVE and after == _TO):
            must = True
        elif w in _MAY and after != _YOU:
            may = True
    return must, may


# a yes/no question opening "do I need to", "does my dog need to", "will we need to": asking
# what is required (a statement, "I need to change my PIN", says what one wants; "how
# early do I need to arrive" asks when, not whether)
_NEED_ASKED = re.compile(r"^(?:do|does|did|will|would)\b(?: \w+){1,3}? (?:really )?need\b")
_NEED = _plain_stem("need")
_NEED_WORDS = _MUST | _HAVE | _MAY | {_TO, _NEED}


def _needed(a: Signature, b: Signature) -> bool:
    """One near-duplicate asks whether something is needed, the other whether it is
    allowed or advised ("do I need to declare cash" / "can I declare cash", "do I need a
    visa to visit Japan" / "can I get a visa to visit Japan"). Not where the other asks
    whether one can go without it ("can I visit Japan without a visa"): the same
    question."""
    asked_a, asked_b = bool(_NEED_ASKED.search(a.low_text)), bool(_NEED_ASKED.search(b.low_text))
    if asked_a == asked_b:
        return False
    needy, other = (a, b) if asked_a else (b, a)
    if _WITHOUT in other.plain:
        return False
    must, may = _modality(other.plain)
    return may and not must and _near(needy.plain, other.plain, _NEED_WORDS)


# a question of how or where to get a thing ("how do I get a permit", "where to buy a
# ticket"), which asks for a procedure, not whether the thing is required
_OBTAIN_ASKED = re.compile(
    r"^(?:how|where)\b(?: \w+){0,3}? (?:get|obtain|apply for|buy|find|renew)\b"
)
_OBTAIN_WORDS = _NEED_WORDS | frozenset(
    _plain_stem(w) for w in ["how", "where", "get", "obtain", "apply", "buy", "find", "renew"]
)


def _obtaining(a: Signature, b: Signature) -> bool:
    """One near-duplicate asks whether something is required, the other how or where to
    get it ("is a permit required to build a fence" / "how do I get a permit to build a
    fence")."""
    asked_a, asked_b = (
        bool(_OBTAIN_ASKED.search(a.low_text)),
        bool(_OBTAIN_ASKED.search(b.low_text)),
    )
    if asked_a == asked_b:
        return False
    how, other = (a, b) if asked_a else (b, a)
    required = bool(_NEED_ASKED.search(other.low_text)) or (
        _may_oblige(other.plain) and _modality(other.plain)[0]
    )
    return required and _near(how.plain, other.plain, _OBTAIN_WORDS)


def _obliged(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """One near-duplicate asks what is required, the other only what is allowed ("what
    vaccines must my dog get by law" / "what vaccines can my dog get", "do I have to
    enroll" / "can I enroll")."""
    if not (_may_oblige(a) or _may_oblige(b)):
        return False
    must_a, may_a = _modality(a)
    must_b, may_b = _modality(b)
    if must_a == must_b or not (must_a or may_a) or not (must_b or may_b):
        return False
    return _near(a, b, _MUST | _HAVE | _MAY | {_TO})


_ROLE_STEMS = tuple(
    (frozenset(map(_plain_stem, x)), frozenset(map(_plain_stem, y))) for x, y in _ROLE_PAIRS
)
_ROLE_WORDS = frozenset().union(*(x | y for x, y in _ROLE_STEMS))


def _first_of(plain: tuple[str, ...], x: frozenset[str], y: frozenset[str]) -> int:
    """0 when a word of ``x`` comes before any of ``y``, 1 the other way, -1 when
    the prompt does not name both."""
    first_x = next((i for i, w in enumerate(plain) if w in x), -1)
    first_y = next((i for i, w in enumerate(plain) if w in y), -1)
    if first_x < 0 or first_y < 0 or first_x == first_y:
        return -1
    return 0 if first_x < first_y else 1


def _roles_reversed(a: Signature, b: Signature) -> bool:
    """Both prompts name the two parties of a role pair, in the other order ("can a mother
    with covid pass it to her baby" / "can a baby with covid pass it to the mother"), and
    not only because a clause moved to the front ("If both parents are carriers, what is
    the chance their child has it?" / "What is the chance a child has it if both parents
    are carriers?")."""
    if _ROLE_WORDS.isdisjoint(a.plain) or _ROLE_WORDS.isdisjoint(b.plain):
        return False
    return _order_differs(a.plain, b.plain) and _order_differs(_main_first(a), _main_first(b))


def _order_differs(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    for x, y in _ROLE_STEMS:
        order_a, order_b = _first_of(a, x, y), _first_of(b, x, y)
        if order_a >= 0 and order_b >= 0 and order_a != order_b:
            return True
    return False


# a clause put before the question, up to a comma ("If both parents are carriers, ...")
_FRONTED_RE = re.compile(
    r"\s*((?:if|when|whenever|once|after|before|while|since|unless|for|with|near)\b[^,?]*),(.+)",
    re.IGNORECASE | re.DOTALL,
)


def _main_first(a: Signature) -> tuple[str, ...]:
    """``a``'s plain words with a clause put before the question put after it."""
    m = _FRONTED_RE.match(a.text)
    if m is None:
        return a.plain
    return _plain(_tokens_of(m.group(2).lower()))[0] + _plain(_tokens_of(m.group(1).lower()))[0]


# the words that open the clause whose subject :func:`_subject` reads ("can my employer
# see", "should I ask", "will the interviewer ask"), the determiners it skips, and the
# persons of the pronouns (what "me" or "my" says of the one asking)
_MODALS = frozenset({"can", "could", "may", "might", "should", "must", "will", "would", "shall"})
_SUBJECT_AUXILIARIES = _MODALS | {
    "do", "does", "did", "is", "are", "was", "were", "has", "have", "had",
}  # fmt: skip
_SUBJECT_DETERMINERS = frozenset({
    "a", "an", "the", "my", "your", "his", "her", "their", "our", "its", "this", "that",
})  # fmt: skip
_PERSONS = {
    word: person
    for person, words in (
        ("i", "i me my mine myself"),
        ("we", "we us our ours ourselves"),
        ("you", "you your yours yourself"),
        ("he", "he him his himself"),
        ("she", "she her hers herself"),
        ("they", "they them their theirs themselves"),
    )
    for word in words.split()
}
# how far into a prompt its auxiliary is looked for ("what questions should I ask"), and
# how many of its first words are read for the clause
_SUBJECT_WITHIN = 4
_SUBJECT_WORDS = 10


def _subject(low_text: str) -> tuple[str, str] | None:
    """(who, what they do) of the clause a question opens with an auxiliary or a modal:
    "can my employer see my history": ("employer", "see"), "what questions will the
    interviewer ask me": ("interviewer", "ask"), "should I ask": ("i", "ask"); a pronoun
    by its person. ``None`` without such a clause."""
    # (the first words only: a long prompt is not split whole for it)
    words = low_text.split(" ", _SUBJECT_WORDS)[:_SUBJECT_WORDS]
    for i, word in enumerate(words[:_SUBJECT_WITHIN]):
        if word not in _SUBJECT_AUXILIARIES:
            continue
        j = i + 1
        while j < len(words) and words[j] in _SUBJECT_DETERMINERS:
            j += 1
        if j + 1 >= len(words):
            return None
        return _PERSONS.get(words[j], words[j]), words[j + 1]
    return None


def _parties(words: list[str]) -> set[str]:
    """The persons and the noun stems ``words`` name (as :func:`_subject` reads them)."""
    return {_PERSONS.get(w) or _plain_stem(w) for w in words}


def _roles_traded(a: Signature, b: Signature) -> bool:
    """The same words, with the one who acts and the one acted on or for trading places:
    "can my employer see my browsing history" / "can I see my employer's browsing
    history", "what questions should I ask the interviewer" / "what questions will the
    interviewer ask me" (the same verb after each subject: "can I get a refund from the
    seller" / "can the seller give me a refund" is one question)."""
    subject_a = _subject(a.low_text)
    subject_b = _subject(b.low_text) if subject_a else None
    if subject_a is None or subject_b is None:
        return False
    (who_a, verb_a), (who_b, verb_b) = subject_a, subject_b
    if who_a == who_b:  # (most questions: "how do I" / "can I")
        return False
    who_a, who_b = _plain_stem(who_a), _plain_stem(who_b)
    if who_a == who_b or _plain_stem(verb_a) != _plain_stem(verb_b):
        return False
    if who_a not in _parties(b.low_text.split()) or who_b not in _parties(a.low_text.split()):
        return False
    return _content_stems(a.plain) == _content_stems(b.plain)


def _content_stems(plain: tuple[str, ...]) -> frozenset[str]:
    return frozenset(w for w in plain if w not in _STOP_STEMS)


# the question words that ask for a party, which a question asks for as the one who acts
# ("who killed Caesar") or as the one acted on ("who did Caesar kill"); the auxiliary that
# puts the question word before a subject of its own; how many words that subject may
# hold ("did Queen Victoria succeed"), and how far after the question word the verb or the
# auxiliary may stand (past a noun of the question word's: "which animals do wolves hunt")
_PARTY_ASKERS = frozenset({"who", "whom", "what", "which"})
_DO_FORMS = frozenset({"do", "does", "did"})
_OBJECT_WORDS = 4
_ASKER_NOUN = 2
_NOT_ACTING = _SUBJECT_AUXILIARIES | _DO_FORMS | _PARTY_ASKERS


def _inflects(word: str, verb: str) -> bool:
    """Is ``word`` a form of ``verb`` said bare ("killed", "kills" of "kill"; "succeeded"
    of "succeed", which the stems part; "wrote" of "write")?"""
    if _plain_stem(word) == _plain_stem(verb):
        return True
    rest = word.removeprefix(verb)
    return len(rest) < len(word) and rest in ("s", "es", "ed", "d")


def _party_asked(words: list[str]) -> tuple[int, int] | None:
    """Where the first question word for a party (:data:`_PARTY_ASKERS`) stands in
    ``words`` and where the auxiliary after it does ("who did Caesar kill": (0, 1)), or
    -1 for none ("who killed Caesar": (0, -1)); ``None`` without such a question word."""
    at = next((i for i, w in enumerate(words) if w in _PARTY_ASKERS), -1)
    if at < 0:
        return None
    do = -1
    for k in range(at + 1, min(at + 1 + _ASKER_NOUN, len(words))):
        if words[k] in _DO_FORMS:
            do = k
            break
        if words[k] in _NOT_ACTING:
            break
    return at, do


def _asked_as_object(subject: list[str], obj: list[str], asker: int, do: int) -> set[str]:
    """The verb's stems, when ``obj`` asks for the one acted on (its auxiliary at ``do``:
    "who did Julius Caesar kill") where ``subject`` asks (its question word at ``asker``)
    for the one who acts with the same verb, whom ``obj`` makes act its object ("who
    killed Julius Caesar"); else none."""
    verbs = [
        k
        for k in range(asker + 1, min(asker + 1 + _ASKER_NOUN, len(subject)))
        if subject[k] not in _NOT_ACTING and subject[k] not in _STOP
    ]
    for k in range(do + 2, min(do + 2 + _OBJECT_WORDS, len(obj))):
        doer = [w for w in obj[do + 1 : k] if w not in _STOP]
        if not doer:
            continue
        for v in verbs:
            if not _inflects(subject[v], obj[k]):
                continue
            acted_on = subject[v + 1 : v + 1 + k - do]
            if {_plain_stem(w) for w in doer} <= {_plain_stem(w) for w in acted_on}:
                return {_plain_stem(subject[v]), _plain_stem(obj[k])}
    return set()


def _object_asked(a: Signature, b: Signature) -> bool:
    """One question asks for the one who acts, the other, with "do", for the one acted on,
    in the same content words: "who killed Julius Caesar" / "who did Julius Caesar kill",
    "what eats slugs" / "what do slugs eat" (a predator against a prey). "What do cats eat"
    / "what does a cat eat" both ask for the one acted on; "who wrote Hamlet" / "who is the
    author of Hamlet" have no "do"."""
    words_a, words_b = a.low_text.split(), b.low_text.split()
    asked_a = _party_asked(words_a)
    asked_b = _party_asked(words_b) if asked_a else None
    if asked_a is None or asked_b is None or (asked_a[1] < 0) == (asked_b[1] < 0):
        return False
    if asked_b[1] >= 0:
        verb = _asked_as_object(words_a, words_b, asked_a[0], asked_b[1])
    else:
        verb = _asked_as_object(words_b, words_a, asked_b[0], asked_a[1])
    # (the verb's stems may differ: "succeeded" / "succeed")
    return bool(verb) and _content_stems(a.plain) - verb == _content_stems(b.plain) - verb


_WHO, _WHOSE = _plain_stem("who"), _plain_stem("whose")


def _whose_asked(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """The same words, one asking who did something and the other whose thing it was done
    to: "how do I see who viewed my profile" / "how do I see whose profile I viewed"."""
    if (_WHOSE in a) == (_WHOSE in b):
        return False
    who = b if _WHOSE in a else a
    return _WHO in who and _content_stems(a) == _content_stems(b)


# two steps told in an order: "heat the pan before adding oil", "defrost then cook", up
# to the end of the clause ("..., or cook from frozen"). A match starts where a word does
# and takes words whole (see _CHOSEN_RE: linear in the text).
_STEPS_RE = re.compile(
    r"(?<!\S)((?:\S++\s+){0,4}?\S++)\s+(before|then|after)\s+(.{1,60}?)"
    r"(?=\s*[?.!,;:]|\s+(?:or|and|but)\b|\s*$)"
)
# "X then Y" tells what "X before Y" does
_STEP_JOINS = {"before": "before", "then": "before", "after": "after"}
_STEP_JOIN_WORDS = frozenset(_plain_stem(w) for w in _STEP_JOINS)


def _step_stem(word: str) -> str:
    """A verb's stem with a doubled last consonant undone ("plugging": "plug")."""
    stem = _plain_stem(word)
    # (any doubled last letter: the stemmer keeps "flossing" as "floss" and makes "floss"
    # "flos", so "brush before flossing" / "floss before brushing" met no step of the other)
    if len(stem) > 3 and stem[-1] == stem[-2]:
        return stem[:-1]
    return stem


def _steps(text: str) -> tuple[str, frozenset[str], frozenset[str]] | None:
    """(the join, the content words before it, those after it) of the first two steps
    ``text`` tells in an order, if it tells any (its punctuation ends a step)."""
    m = _STEPS_RE.search(text.lower())
    if m is None:
        return None
    first, join, second = m.groups()
    x, y = (
        frozenset(_step_stem(w) for w in _tokens_of(g) if w not in _STOP) for g in (first, second)
    )
    return (_STEP_JOINS[join], x, y) if x and y else None


def _steps_mirrored(a: Signature, b: Signature) -> bool:
    """Two steps told in one order from each end: "brush before flossing" / "floss after
    brushing" (the same two steps, the join and the sides traded)."""
    if _STEP_JOIN_WORDS.isdisjoint(a.plain) or _STEP_JOIN_WORDS.isdisjoint(b.plain):
        return False
    steps_a, steps_b = _steps(a.text), _steps(b.text)
    if steps_a is None or steps_b is None or steps_a[0] == steps_b[0]:
        return False
    _, before_a, after_a = steps_a
    _, before_b, after_b = steps_b
    return before_a == after_b and after_a == before_b


def _steps_swapped(a: Signature, b: Signature) -> bool:
    """Two steps told the other way round with the same join: "should you heat the pan
    before adding oil" / "should you add oil to the pan before heating it", "cook then
    defrost" / "defrost then cook" ("X before Y" / "Y after X" is one question; the same
    steps with "before" / "after" traded are the poles')."""
    if _STEP_JOIN_WORDS.isdisjoint(a.plain) or _STEP_JOIN_WORDS.isdisjoint(b.plain):
        return False
    steps_a, steps_b = _steps(a.text), _steps(b.text)
    if steps_a is None or steps_b is None or steps_a[0] != steps_b[0]:
        return False
    _, before_a, after_a = steps_a
    _, before_b, after_b = steps_b
    shared = after_a & after_b
    after_a, after_b = after_a - shared, after_b - shared
    return bool(after_a and after_b) and after_a <= before_b and after_b <= before_a


# what a question asks about a word itself: "what is the plural of mouse" is not "... of
# mice", "a synonym for happy" not "... for glad" (the word is the question, not a topic)
_TERM_RE = re.compile(
    r"\b(?:plural|singular|past tense|past participle|spelling|pronunciation|synonyms?"
    r"|antonyms?|opposite|abbreviation)\s+(?:form\s+)?(?:of|for)\s+"
    r"(?:(?:the|a|an)\s+)?(?:(?:word|verb|noun|adjective|adverb|term)\s+)?"
    r"([\w'-]+)"
)
_TERM_STEMS = frozenset(_plain_stem(w) for w in [
    "plural", "singular", "past", "participle", "spelling", "pronunciation", "synonym",
    "synonyms", "antonym", "antonyms", "opposite", "abbreviation",
])  # fmt: skip


def _term_differs(a: Signature, b: Signature) -> bool:
    """Do both prompts ask about a word itself (its plural, a synonym...) and not the same
    word, letter for letter?"""
    if _TERM_STEMS.isdisjoint(a.plain) or _TERM_STEMS.isdisjoint(b.plain):
        return False
    m = _TERM_RE.search(a.low_text)
    n = _TERM_RE.search(b.low_text) if m else None
    return n is not None and m is not None and m[1] != n[1]


# words before a plural noun that make it a bundle ("family tickets", "group rates",
# "full mouth implants"): its price or rule is not that of one ("a ticket")
_BUNDLES = frozenset({
    "family", "group", "bulk", "wholesale", "season", "full", "multiple", "couple",
    "couples", "package", "team",
})  # fmt: skip
_BUNDLE_STEMS = frozenset(map(_plain_stem, _BUNDLES))


def _bundled(a: Signature, b: Signature) -> bool:
    """One near-duplicate asks about one of a thing ("how much is a ticket to the
    Louvre"), the other about a bundle of them ("... are group tickets to the Louvre",
    "a tooth implant" / "full mouth implants")."""
    if _BUNDLE_STEMS.isdisjoint(a.plain) == _BUNDLE_STEMS.isdisjoint(b.plain):
        return False
    bundle, one = (a, b) if _BUNDLE_STEMS.isdisjoint(b.plain) else (b, a)
    if not _near(bundle.plain, one.plain, _BUNDLE_STEMS):
        return False
    single = _counted(one.low_text).single
    words = bundle.low_text.split()
    return any(
        _is_plural(w) and _plain_stem(w) in single and not _BUNDLES.isdisjoint(words[i - 2 : i])
        for i, w in enumerate(words)
        if i
    )


_THAN = "than"
_OVER = "over"
_COMPARATIVE_MARKS = frozenset(_plain_stem(w) for w in ["more", "less", "fewer"])
# verbs that compare like a comparative with "than": "X outperforms Y" = "X is better than Y"
_COMPARING_VERBS = {
    _plain_stem(verb): _plain_stem(comparative)
    for verbs, comparative in [
        (["outperform", "outperforms", "outperformed", "beat", "beats", "surpass"], "better"),
        (["surpasses", "outdo", "outdoes", "outrank", "outranks"], "better"),
        (["underperform", "underperforms", "underperformed"], "worse"),
    ]
    for verb in verbs
}
# "X over Y" compares only after one of these: "the advantages of X over Y", "prefer X over Y"
_OVER_LEADS = frozenset(_plain_stem(w) for w in [
    "advantage", "advantages", "benefit", "benefits", "prefer", "choose", "pick", "edge",
    "recommend", "favor", "favour",
])  # fmt: skip


def _comparative(stem: str) -> bool:
    """A comparative on a side of a group ("better", "cheaper", "slower")."""
    return stem in _SWAP_INDEX and (stem.endswith("er") or stem in _IRREGULAR_COMPARATIVES)


_IRREGULAR_COMPARATIVES = frozenset(_plain_stem(w) for w in ["worse", "more", "less"])


def _than_sides(plain: tuple[str, ...]) -> tuple[str, frozenset[str], frozenset[str]] | None:
    """(the comparative, the content words before it, those after it) of the first
    comparison in ``plain``: "is vinyl flooring more durable than laminate": ("mor
    durabl", {"vinyl", "floor"}, {"laminat"}); "is the median a better measure than the
    mean": ("better", {"median"}, {"mean"}); also "X outperforms Y" (as "better") and
    "the advantages of X over Y" ("over")."""
    if _THAN in plain:
        at = plain.index(_THAN)
        mark, end = at - 1, at  # "faster than": the word itself
        if at >= 2 and plain[at - 2] in _COMPARATIVE_MARKS:
            mark = at - 2  # "more durable than"
        elif at >= 2 and _comparative(plain[at - 2]) and not _comparative(plain[at - 1]):
            mark, end = at - 2, at - 1  # "a better measure than": the noun is no side
    else:
        for at, word in enumerate(plain):
            if word in _COMPARING_VERBS or (
                word == _OVER and not _OVER_LEADS.isdisjoint(plain[:at])
            ):
                break
        else:
            return None
        mark = end = at
    if at < 1 or mark < 0:
        return None
    comparative = _COMPARING_VERBS.get(plain[at]) or " ".join(plain[mark:end]) or plain[at]
    before = frozenset(w for w in plain[:mark] if w not in _STOP_STEMS)
    after = frozenset(w for w in plain[at + 1 : at + 1 + _SPAN_AFTER_THAN] if w not in _STOP_STEMS)
    return comparative, before, after


_SPAN_AFTER_THAN = 4


def _comparison(a: tuple[str, ...], b: tuple[str, ...]) -> str | None:
    """How two prompts compare the same two things, when both do ("than", a comparing
    verb, "advantages of X over Y") and each names after it what the other names before
    (words after it in both are context: "over a monohull for cruising" / "over a
    catamaran for cruising"): "swapped" under the same comparative ("is vinyl plank
    flooring more durable than laminate" / "is laminate more durable than vinyl plank
    flooring": another question), "mirrored" under opposite ones ("is python faster than
    java" / "is java slower than python": the same question); else ``None`` ("cheaper
    than" against "more expensive than" are no two sides of one group: left to the
    groups)."""
    sides_a, sides_b = _than_sides(a), _than_sides(b)
    if sides_a is None or sides_b is None:
        return None
    comparative_a, before_a, after_a = sides_a
    comparative_b, before_b, after_b = sides_b
    shared = after_a & after_b
    after_a, after_b = after_a - shared, after_b - shared
    if not (after_a and after_b and after_a <= before_b and after_b <= before_a):
        return None
    last_a, last_b = comparative_a.split()[-1], comparative_b.split()[-1]
    if comparative_a == comparative_b or _same_side(last_a, last_b):
        return "swapped"  # "is python quicker than go" / "is go faster than python" too
    if _swapped(last_a, last_b):
        return "mirrored"
    return None


# the modal that opens a yes/no question: "can I paint over wallpaper" asks whether it is
# possible, "should I" whether it is wise, "must I" whether it is required. After a question
# word they are one ("what should I do" / "what can I do", "when can I expect my card").
_OPENING_MODALS = {
    _plain_stem(word): side
    for side, words in enumerate((_PERMITTED, _ADVISED, _REQUIRED))
    for word in words.split()
}


def _modal_swapped(x: str, y: str) -> bool:
    side_x, side_y = _OPENING_MODALS.get(x), _OPENING_MODALS.get(y)
    return side_x is not None and side_y is not None and side_x != side_y


def _reversed(a: frozenset[tuple[str, str]], b: frozenset[tuple[str, str]]) -> bool:
    """Does ``b`` join two of ``a``'s (source, target) pairs only the other way round?"""
    return any(x != y and (y, x) in b and (x, y) not in b for x, y in a)


# spans of time a count can be per: (the span, its nouns, the words that say "per" it)
_RATE_SPANS = (
    ("second", "second seconds", ""),
    ("minute", "minute minutes", ""),
    ("hour", "hour hours", "hourly"),
    # "every morning" / "every night": once a day
    ("day", "day days morning mornings night nights evening evenings", "daily nightly"),
    ("week", "week weeks", "weekly"),
    ("2 week", "fortnight", "fortnightly biweekly"),
    ("month", "month months", "monthly"),
    ("quarter", "quarter quarters", "quarterly"),
    ("season", "season seasons", "seasonally"),
    ("year", "year years", "yearly annual annually"),
)
_RATE_UNITS = {
    _plain_stem(word): span for span, nouns, per in _RATE_SPANS for word in f"{nouns} {per}".split()
}
_RATE_WORDS = frozenset(_plain_stem(w) for _, _, per in _RATE_SPANS for w in per.split())
_RATE_LEADS = frozenset(_plain_stem(w) for w in ["per", "every", "each"])
# "twice a day": "a" says "per" after a count of times
_TIMES_A = frozenset(_plain_stem(w) for w in ["once", "twice", "thrice", "time", "times"])
_A_PER = frozenset(_plain_stem(w) for w in ["a", "an"])
_COUNT_WORDS = {_plain_stem(w): str(n) for w, n in {**_NUMBER_WORDS, "one": 1}.items()}
_OTHER, _COUPLE, _OF = map(_plain_stem, ["other", "couple", "of"])


def _rates(plain: tuple[str, ...]) -> frozenset[str]:
    """The spans of time ``plain`` counts something per: "per hour", "every 2 weeks",
    "fortnightly" ({"2 week"}), "monthly" ({"month"})."""
    found = set()
    for i, word in enumerate(plain):
        if word in _RATE_WORDS:
            found.add(_RATE_UNITS[word])
        elif (
            word in _RATE_LEADS or (word in _A_PER and i > 0 and plain[i - 1] in _TIMES_A)
        ) and i + 1 < len(plain):
            after = plain[i + 1 :]
            # "every other day" is every 2 days, "every couple of days" too
            if after[:1] == (_OTHER,):
                after = ("2", *after[1:])
            elif after[:2] == (_COUPLE, _OF):
                after = ("2", *after[2:])
            unit = _RATE_UNITS.get(after[0])
            count = _COUNT_WORDS.get(after[0], after[0])
            if unit is not None:
                found.add(unit)
            elif count.isdigit() and len(after) > 1 and after[1] in _RATE_UNITS:
                found.add(f"{count} {_RATE_UNITS[after[1]]}".removeprefix("1 "))
    return frozenset(found)


def _rates_differ(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Do both prompts count something per a span of time, each per one the other does
    not? ("send volume per hour" / "per day", "monthly" / "biweekly payment", "1000
    requests per hour, how many per second" / "1000 per day, ... per second")."""
    rates_a = _rates(a)
    rates_b = _rates(b) if rates_a else frozenset()
    return bool(rates_a - rates_b) and bool(rates_b - rates_a)


# a choice between alternatives joined by "or" ("a passport or an ID card") against both of
# them joined by "and" ("a passport and an ID card"): the words that say which
_OR_JOINS = frozenset(_plain_stem(w) for w in ["or", "either", "nor"])
_AND_JOINS = frozenset(_plain_stem(w) for w in ["and", "both", "&"])
# an "and" side that still asks to choose ("Python and JavaScript: which should I learn?")
_CHOOSING = frozenset(_plain_stem(w) for w in [
    "which", "between", "vs", "versus", "choose", "pick", "better", "difference", "compare",
])  # fmt: skip


def _neighbours(plain: tuple[str, ...], joins: frozenset[str]) -> set[tuple[str, str]]:
    """The content words right before and after each of ``joins`` in ``plain``."""
    out: set[tuple[str, str]] = set()
    for i, word in enumerate(plain):
        if word not in joins:
            continue
        before = next((w for w in reversed(plain[:i]) if w not in _STOP_STEMS), None)
        after = next((w for w in plain[i + 1 :] if w not in _STOP_STEMS), None)
        if before is not None and after is not None:
            out.add((before, after))
    return out


def _or_against_and(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Does one prompt join two words with "or" that the other joins with "and" ("Do I
    need a passport or an ID card" / "a passport and an ID card", "mix bleach or ammonia
    with water" / "mix bleach and ammonia")? Not where the "and" side still asks to choose
    ("which", "between", "vs")."""
    for x, y in ((a, b), (b, a)):
        if _OR_JOINS.isdisjoint(x) or _AND_JOINS.isdisjoint(y) or not _CHOOSING.isdisjoint(y):
            continue
        traded = _neighbours(x, _OR_JOINS) & _neighbours(y, _AND_JOINS)
        if traded and not traded & _neighbours(y, _OR_JOINS):
            return True
    return False


# the operation a word problem asks for, by the words that say it ("gives away 5" takes
# away, "buys 5 more" adds): two prompts with the same numbers and another operation are
# two problems ("John has 12 apples and gives away 5" / "... and buys 5 more")
_OPERATIONS = tuple(
    frozenset(_plain_stem(w) for w in words.split())
    for words in (
        # takes away
        "give gives gave given giving spend spends spent spending eat eats ate eaten lose"
        " loses lost leak leaks leaked leaking remove removes removed sell sells sold off"
        " discount discounted left remain remains remaining minus subtract subtracted",
        # adds
        "buy buys bought add adds added earn earns earned gain gains gained fill fills"
        " filled more tax plus total extra bring brings brought",
        # multiplies
        "times multiply multiplied product outfits combinations",
        # shares out
        "share shares shared split divide divided equally",
        # compares
        "difference older younger",
        # a chance
        "probability chance odds",
    )
)
_OPERATION_WORDS = frozenset().union(*_OPERATIONS)


def _operations(plain: tuple[str, ...]) -> frozenset[int]:
    found = _OPERATION_WORDS.intersection(plain)
    return frozenset(k for k, words in enumerate(_OPERATIONS) if found & words)


def _operation_differs(a: Signature, b: Signature) -> bool:
    """Do two prompts that each carry two numbers or more (a word problem) ask for another
    operation on them ("12 apples and gives away 5, how many are left" / "12 apples and
    buys 5 more, how many does he have", "25% off" / "tax is 25%")?"""
    if len(a.all_numbers) < 2 or len(b.all_numbers) < 2:
        return False
    ops_a = _operations(a.plain)
    ops_b = _operations(b.plain) if ops_a else frozenset()
    return bool(ops_b) and ops_a != ops_b


# the time a question asks about, by the auxiliary opening it or right after its question
# word: "Was Pluto a planet?" / "Is Pluto a planet?", "What did Apple announce" / "What will
# Apple announce", "Who was the CEO" / "Who is the CEO". "has" / "have" ("has the iPhone 16
# been released") asks of the past and the present alike, not of the future
_TENSES = {
    word: tense
    for tense, words in (
        ("past", "was were did had"),
        ("present", "is are am do does"),
        ("perfect", "has have"),
        ("future", "will"),
    )
    for word in words.split()
}
_AGREEING_TENSES = frozenset(
    map(
        frozenset,
        [
            ("perfect", "past"),
            ("perfect", "present"),
            ("progressive", "present"),
            ("progressive", "future"),
        ],
    )
)
_WH_WORDS = frozenset({"who", "what", "when", "where", "which", "why", "how"})


# words that put a present auxiliary in the future: "What is Apple expected to announce?"
_FUTURE_WORDS = frozenset({"expected", "going", "upcoming", "next", "soon", "planned"})
_WORD_RE = re.compile(r"[a-z]+")


def _question_tense(low_text: str) -> str | None:
    """The tense of the auxiliary opening a yes/no question, or right after the question
    word opening a question (``None``: no such auxiliary)."""
    words = _WORD_RE.findall(low_text[:80])
    if words and words[0] in _WH_WORDS:
        words = words[1:]
    tense = _TENSES.get(words[0]) if words else None
    if tense == "present":
        later = _WORD_RE.findall(low_text)
        if not _FUTURE_WORDS.isdisjoint(later):
            return "future"
        # "When is my card arriving?" asks what "When will my card arrive?" does
        if any(len(w) > 5 and w.endswith("ing") for w in later):
            return "progressive"
    return tense


_WH_STEMS = frozenset(map(_plain_stem, _WH_WORDS))


def _opening(plain: tuple[str, ...]) -> str | None:
    """The question word opening ``plain``, if any."""
    return plain[0] if plain and plain[0] in _WH_STEMS else None


def _tense_differs(a: Signature, b: Signature) -> bool:
    """Do two questions otherwise alike (the same question word, the same content words
    but one) ask about another time ("Was Pluto a planet?" / "Is Pluto a planet?", "What
    did Apple announce" / "What will Apple announce")? Not two questions in other words:
    "Will I be charged for exchanging currencies?" / "Are currency exchanges free?" ask
    one thing."""
    tense_a = _question_tense(a.low_text)
    tense_b = _question_tense(b.low_text) if tense_a else None
    if (
        tense_b is None
        or tense_a == tense_b
        or frozenset({tense_a, tense_b}) in _AGREEING_TENSES
        or _opening(a.plain) != _opening(b.plain)
    ):
        return False
    content_a = {w for w in a.plain if w not in _STOP_STEMS}
    content_b = {w for w in b.plain if w not in _STOP_STEMS}
    return len(content_a ^ content_b) <= 1


_OTHER_STEP_WORDS = 2


def _reordered(a: Signature, b: Signature) -> bool:
    """Do two prompts lay out the same steps in another order ("preheat oven, mix batter,
    bake: is this order right?" / "mix batter, bake, preheat oven: ...", "wash then dry
    then iron" / "iron then wash then dry")?"""
    seq_a, seq_b = a.sequence, b.sequence
    if seq_a is None or seq_b is None:
        return False
    # (the same steps: a rewording in other words that moves a clause is no reordering)
    shared = set(seq_a) & set(seq_b)
    if len(set(seq_a) ^ set(seq_b)) > _OTHER_STEP_WORDS:
        return False
    return len(shared) >= 2 and [w for w in seq_a if w in shared] != [
        w for w in seq_b if w in shared
    ]


def _drops_exception(a: Signature, b: Signature) -> bool:
    """Does ``a`` take something out ("all X except Y", "apart from castling, can the king
    move two squares") and ``b`` ask the same without it? Not when ``b`` says it another
    way: with a negation ("X that is not Y"), an exclusion of its own ("sum of all
    integers to 100 except multiples of 3" / "add up 1 to 100 excluding multiples"), or
    an addition, which "apart from" and "besides" can also mean ("apart from
    understanding X, you will learn Y" / "in addition to learning X, you'll also learn
    Y"), or "without" ("not counting the dressing" / "without the dressing"). "Only" is
    no other way: "all columns except password" / "only the password column" ask the
    opposite ("excluding connections" / "nonstop flights only" is refused with them)."""
    if not a.excludes or b.excludes or b.denies:
        return False
    words = b.low_text.split()
    return _TAKEN_OUT.isdisjoint(words) and _RESTATED.isdisjoint(words)


# the words that take something out: "without the dressing" is "not counting the dressing"
_TAKEN_OUT = _EXCLUSIONS | {"without"}
# words with which a prompt means "in addition" where the other may say "apart from"
_RESTATED = frozenset({"also", "addition", "additionally", "plus", "too"})


def _conflict(a: Signature, b: Signature) -> bool:
    """Does some group have sides named on both prompts, none of them on both? ("X
    before Y" / "Y after X" tells one order: no conflict of before and after.)"""
    skip = _BEFORE_AFTER if a.pole_groups and b.pole_groups and _steps_mirrored(a, b) else -1
    for k in a.pole_groups:
        pb = b.poles[k]
        if pb and not (a.poles[k] & pb) and k != skip:
            return True
    return False


_BEFORE_AFTER = next(k for k, sides in enumerate(_POLES) if "before" in sides[0])


def _first_seen(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def _same_values(a: tuple[str, ...], b: tuple[str, ...], ordered: bool) -> bool:
    """The same values, in the same order of first appearance when ``ordered``."""
    return _first_seen(a) == _first_seen(b) if ordered else set(a) == set(b)


def _code_parts(code: str) -> tuple[str, str | None]:
    """A code span's name without letter case, and a call's arguments (None: none given)."""
    low = code.lower()
    call = _CALL_RE.fullmatch(low)
    if call is None:
        return low, None
    return call[1], "".join(call[2].split()) or None


def _same_code(a: tuple[str, ...], b: tuple[str, ...], ordered: bool) -> bool:
    """Do two prompts name the same code? Names must agree (see :func:`_same_values`); a
    call's arguments must agree where both prompts give some: ``print(x)`` is not
    ``print(y)``, but ``df.groupby()`` or ``df.groupby`` names ``df.groupby(key)``."""
    parts_a = [_code_parts(c) for c in a]
    parts_b = [_code_parts(c) for c in b]
    names_a = tuple(n for n, _ in parts_a)
    if not _same_values(names_a, tuple(n for n, _ in parts_b), ordered):
        return False
    args_a: dict[str, set[str]] = {}
    args_b: dict[str, set[str]] = {}
    for parts, args in ((parts_a, args_a), (parts_b, args_b)):
        for n, g in parts:
            if g is not None:
                args.setdefault(n, set()).add(g)
    return all(args_b.get(name, given) == given for name, given in args_a.items())


# a call whose first argument is a call: "f(g(x))", "len(set(items))"
_NESTED_CALL_RE = re.compile(r"[A-Za-z_][\w.]*\(\s*[A-Za-z_][\w.]*\(")


def _code_order(a: Signature) -> tuple[str, ...]:
    """The names of the code spans of a prompt that nests calls, in the order they come
    (letter case and a call's arguments aside): two prompts of the same words that nest
    two calls the other way round ("f(g(x))" / "g(f(x))") name them in another order.
    Calls side by side are not nested: "map() and filter()" is "filter() and map()"."""
    if len(a.code) < 2 or _NESTED_CALL_RE.search(a.text) is None:
        return ()
    return _first_seen(tuple(_code_parts(c)[0] for c in a.code))


# A question about a text's own writing, before the colon that opens the text ("Is this
# sentence correct: Let's eat grandma", "Check the punctuation: ..."): there, the
# punctuation that the symbols guard leaves aside (prose puts it anywhere) is what is asked
# about ("Let's eat grandma" / "Let's eat, grandma", "its a nice day" / "it's a nice day").
_WRITING_ASKED_RE = re.compile(
    r"\b(?:grammar|grammatical(?:ly)?|punctuat\w*|commas?|semicolons?|apostrophes?"
    r"|sentences?|proofread\w*|correct|incorrect|spelling|spelt|spelled)\b"
)
_ASKED_HEAD = 200  # characters before the colon at most
_NOT_LETTER_RE = re.compile(r"[\W_]+")
_MARK_CHAR_RE = re.compile(r"[^\w\s]")
_SAME_MARKS = str.maketrans("\u2018\u2019\u201c\u201d\u201e", '\'\'"""')
# what ends the text asked about, whatever it is: "Let's eat, grandma" / "Let's eat,
# grandma." / "Let's eat, grandma?" ask one thing
_TEXT_END = " \t\n.!?"


def _asked_text(text: str) -> tuple[str, str] | None:
    """The letters and digits (lower case) and the punctuation (in order; curly quotes as
    straight ones) of the text whose writing ``text`` asks about after a colon, its end
    aside; ``None`` when it asks about no text's writing."""
    head, colon, rest = text.partition(":")
    if not colon or len(head) > _ASKED_HEAD or not _WRITING_ASKED_RE.search(head.lower()):
        return None
    rest = rest.rstrip(_TEXT_END).translate(_SAME_MARKS)
    return _NOT_LETTER_RE.sub("", rest.lower()), "".join(_MARK_CHAR_RE.findall(rest))


def _repunctuated(x: str, y: str) -> bool:
    """Do two prompts ask about the writing of one text (:func:`_asked_text`) punctuated
    otherwise? (Letter case aside: a prompt typed in lower case is no other question; a
    text in other words is the other guards' to compare.)"""
    asked_x = _asked_text(x)
    asked_y = _asked_text(y) if asked_x is not None else None
    if asked_x is None or asked_y is None:
        return False
    return asked_x != asked_y and asked_x[0] == asked_y[0]


# the word that "what does X mean" asks about, glued symbols and all: "TODO!" (Rust's
# macro) is not "TODO:" (a comment's label). A label's colon, a quote or backticks around
# it and the full stops of an abbreviation ("e.g." / "eg") are no part of the word.
_MEANT_WORD_RE = re.compile(
    r"\bwhat\s+(?:does|do|did)\s+(?:(?:the|a|an)\s+)?(\S{1,40})\s+(?:mean|stand\s+for)\b",
    re.IGNORECASE,
)
_AROUND_WORD = "'\"`\u2018\u2019\u201c\u201d"


def _meant_word(text: str) -> str | None:
    """The word, lower case, whose meaning ``text`` asks with "what does X mean", as
    :data:`_MEANT_WORD_RE` reads it; ``None`` when it asks none."""
    m = _MEANT_WORD_RE.search(text)
    if m is None:
        return None
    return m[1].strip(_AROUND_WORD).removesuffix(":").replace(".", "").lower()


def _meant_otherwise(x: str, y: str) -> bool:
    """Do two prompts ask what a word means (:func:`_meant_word`), each written otherwise?"""
    word_x = _meant_word(x)
    word_y = _meant_word(y) if word_x is not None else None
    return word_y is not None and word_x != word_y


def _unticked(a: Signature, b: Signature) -> Signature:
    """``a`` read without its backticks when ``b`` writes every one of its code spans word
    for word ("run `git rebase -i`" / "run git rebase -i"), else ``a``."""
    if not a.ticked:
        return a
    other = f" {_bare_words(b.text)} "
    if all(f" {span} " in other for span in a.ticked):
        # (its text is without accents already, and backticks are no words of any script)
        return _signature(a.text.replace("`", " "), a.foreign)
    return a


def check_guards(a: Signature, b: Signature, settings: GuardSettings | None = None) -> GuardReport:
    """Compare two prompts' anchors; every enabled guard must agree for a hit."""
    s = settings if settings is not None else GuardSettings()
    failed = _failed(a, b, s)
    if "code" in failed and (a.ticked or b.ticked):
        # backticks mark code, but the same words written bare are the same code: compare
        # the two prompts without them when each side's spans are all on the other side
        bare_a, bare_b = _unticked(a, b), _unticked(b, a)
        if (bare_a is not a or bare_b is not b) and not _failed(bare_a, bare_b, s):
            failed = []
    if failed:
        return GuardReport(failed=tuple(failed), shared_anchors=0)
    # quotes and code are not in the framed words (the literal guards compared them), so
    # a prompt with either has no word-for-word frame to compare
    framed = s.substitution and not (a.quotes or a.code or b.quotes or b.code)
    substituted = _substituted(a.framed, b.framed, a.low_text, b.low_text) if framed else None
    if substituted is not None and s.numbers and _counted_apart(*substituted):
        return GuardReport(failed=("numbers",), shared_anchors=0)
    return GuardReport(failed=(), shared_anchors=a.anchors, substituted=substituted)


# "first" as an ordinal: after an article or a possessive ("the first wife", "his first
# album", "Rome's first emperor"); the numbers guard reads no number in "first" alone, as
# chat says it everywhere ("what should I do first", "first, ...", "when did he first")
_FIRST = "first"
_FIRST_AFTER = frozenset({"the", "a", "an", "his", "her", "its", "their", "my", "your", "our"})


def _first_added(a: Signature, b: Signature) -> bool:
    """Is ``b`` ``a`` word for word with an ordinal "first" added before a word ("who was
    the wife of Henry VIII" / "who was the first wife of Henry VIII", "the president of
    the United States" / "the first president")? One of several against the first."""
    if _FIRST not in b.framed or _FIRST in a.framed or len(b.framed) != len(a.framed) + 1:
        return False
    at = b.framed.index(_FIRST)
    if b.framed[:at] + b.framed[at + 1 :] != a.framed or at + 1 == len(b.framed):
        return False
    words = b.low_text.split()
    return any(
        w == _FIRST and i and (words[i - 1] in _FIRST_AFTER or words[i - 1].endswith("'s"))
        for i, w in enumerate(words[:-1])
    )


def _counted_apart(x: str, y: str) -> bool:
    """Two hyphenated words that are one word counted otherwise: "first-degree" /
    "second-degree", "two-factor" / "three-factor" (the number guard reads a number word
    before a unit, not an ordinal heading a compound)."""
    head_x, _, tail_x = x.partition("-")
    head_y, _, tail_y = y.partition("-")
    if not tail_x or tail_x != tail_y or head_x == head_y:
        return False
    return all(h in _COUNTING_HEADS for h in (head_x, head_y))


# ("first" and "one" count here: the words alone are too often no number at all)
_COUNTING_HEADS = frozenset(_ORDINAL_WORDS) | frozenset(_NUMBER_WORDS) | {"first", "one"}


# a run of words this long, shared at the start or the end, is a context
_CONTEXT_WORDS = 15


def _other_question_on_one_context(a: Signature, b: Signature) -> bool:
    """Do two prompts share a context (their first and last words, 15+ together and half of
    the longer one at least) and ask about it with other content words?"""
    words_a, words_b = a.low_text.split(), b.low_text.split()
    longest = max(len(words_a), len(words_b))
    if min(len(words_a), len(words_b)) < _CONTEXT_WORDS:
        return False
    n = min(len(words_a), len(words_b))
    head = 0
    while head < n and words_a[head] == words_b[head]:
        head += 1
    tail = 0
    while tail < n - head and words_a[-1 - tail] == words_b[-1 - tail]:
        tail += 1
    shared = head + tail
    if 2 * shared < longest:
        return False
    # the context first and the question after it, or a question first, then the context
    # (not a sentence reworded at its start whose long end is the same: "The sections of
    # the docs are A, B, C..." / "The docs' parts include A, B, C...")
    if head < _CONTEXT_WORDS and not (
        tail >= _CONTEXT_WORDS and _asked_before(a.text) and _asked_before(b.text)
    ):
        return False
    rest_a = words_a[head : len(words_a) - tail]
    rest_b = words_b[head : len(words_b) - tail]
    only_a = _content_of(rest_a) - _content_of(rest_b)
    only_b = _content_of(rest_b) - _content_of(rest_a)
    # (one word typed or spelt otherwise is the same word: "pregnent" / "pregnant")
    return bool(only_a or only_b) and not (
        len(only_a) == len(only_b) == 1 and _one_word(next(iter(only_a)), next(iter(only_b)))
    )


# a request before a pasted text: its first line, or what comes before a colon there
# ("Summarize this email:\n...", "Fix the grammar: Hi team, ..."), up to 200 characters
_INSTRUCTION_RE = re.compile(r"\s*[^\n:?]{3,200}(?::\s|\n)")


def _asked_before(text: str) -> bool:
    """Does ``text`` ask its question, or make its request, before a context of 15+ words
    ("Can I take it while pregnant? Leaflet: ...", "Summarize this email:\n<email>")?"""
    asked, mark, after = text.partition("?")
    if mark and len(after.split()) >= _CONTEXT_WORDS and asked.strip():
        return True
    request = _INSTRUCTION_RE.match(text)
    return request is not None and len(text[request.end() :].split()) >= _CONTEXT_WORDS


def _content_of(words: list[str]) -> frozenset[str]:
    return frozenset(_plain_stem(w) for w in words if w not in _STOP and not _is_denial(w))


def _failed(a: Signature, b: Signature, s: GuardSettings) -> list[str]:
    """The guards of ``s`` that fail between ``a`` and ``b``."""
    failed: list[str] = []
    if s.context and _other_question_on_one_context(a, b):
        failed.append("context")
    if s.script and a.foreign != b.foreign:
        failed.append("script")
    if (
        s.symbols
        and a.said == b.said
        and (
            a.symbol_order != b.symbol_order
            or a.indents != b.indents
            or _code_order(a) != _code_order(b)
            or _meant_otherwise(a.text, b.text)
        )
    ) or (s.symbols and _repunctuated(a.text, b.text)):
        failed.append("symbols")
    if s.numbers and (
        not (_same_numbers(a, b) or _numbers_mirrored(a, b))
        or (a.requested and b.requested and a.requested != b.requested)
        or _first_added(a, b)
        or _first_added(b, a)
    ):
        failed.append("numbers")
    # a date one prompt only tells as part of the user's story is no question's date
    # ("I lost my phone yesterday, what do I do?" / "what do I do if I lose my phone")
    if (
        s.dates
        and a.dates != b.dates
        and not (a.dates_told and not b.dates)
        and not (b.dates_told and not a.dates)
    ):
        failed.append("dates")
    if (
        s.units
        and a.units != b.units
        and not (sorted(a.units) == sorted(b.units) and _same_quantities(a, b))
        and not _units_of_ones(a, b)
        and not _units_of_ones(b, a)
    ):
        failed.append("units")
    # quotes and code spans are compared as sets, as paraphrases reorder them freely,
    # unless a connector orders them ("convert `list` to `tuple`", "rename 'a' to 'b'")
    ordered = a.literals_directed or b.literals_directed
    if (
        s.quotes
        and not _same_values(a.quotes, b.quotes, ordered)
        and not _quoted_bare(a, b)
        and not _quoted_bare(b, a)
        and not _quote_paraphrased(a, b)
        and not _quote_paraphrased(b, a)
    ):
        failed.append("quotes")
    # and code without letter case: a prompt that names `ImageFolder` and one that names
    # `imagefolder` ask about the same thing far more often than about two things
    # (and with or without a call's empty parentheses: `init()` is `init`)
    if s.code and (
        # "git branch -d" / "-D", regex "\\s" / "\\S": a flag's letter case counts
        a.cased != b.cased
        or (
            not _same_code(a.code, b.code, ordered)
            and not _code_bare(a, b)
            and not _code_bare(b, a)
        )
    ):
        failed.append("code")
    if s.entities:
        # An entity spotted on one side only by its capital letter ("ATM" vs "atm") still
        # counts on the other side if written there: compare where the union occurs. Order
        # counts when either prompt gives the names a direction ("Oslo to Berlin").
        names = a.entity_candidates | b.entity_candidates
        if names and not (_ALIASED.isdisjoint(names) and _CANONICAL.isdisjoint(names)):
            # ... and so does its other spelling ("JavaScript" / "js")
            names = names | frozenset(
                spelling
                for name in names
                for spelling in _SPELLINGS.get(_NAME_ALIASES.get(name, name), ())
            )
        if names:
            at_a = _occurrences_at(names, a.low_text)
            at_b = _occurrences_at(names, b.low_text)
            seen_a = tuple(name for _, name in at_a)
            seen_b = tuple(name for _, name in at_b)
            marked_a: Iterable[str] = a.entity_candidates
            marked_b: Iterable[str] = b.entity_candidates
            qualified = a.qualified | b.qualified
            if qualified:
                seen_a, seen_b, marked_a, marked_b = (
                    _drop_lone_qualifiers(seen_a, seen_b, qualified),
                    _drop_lone_qualifiers(seen_b, seen_a, qualified),
                    _drop_lone_qualifiers(tuple(marked_a), seen_b, qualified),
                    _drop_lone_qualifiers(tuple(marked_b), seen_a, qualified),
                )
            # A name a prompt marks itself is in it, even where the other prompt's longer
            # name swallows it: "public inference API" holds "API" when only the other
            # side capitalised "Inference API".
            set_a, set_b = set(seen_a).union(marked_a), set(seen_b).union(marked_b)
            if not (_ALIASED.isdisjoint(set_a) and _ALIASED.isdisjoint(set_b)):
                # one name, two spellings: "JS" / "JavaScript", "Postgres" / "PostgreSQL"
                set_a = {_NAME_ALIASES.get(n, n) for n in set_a}
                set_b = {_NAME_ALIASES.get(n, n) for n in set_b}
            # an acronym on one side is its words spelled out on the other ("BP" /
            # "blood pressure", "my MIL" / "my mother in law")
            extra_a, extra_b = set_a - set_b, set_b - set_a
            # a name the other prompt writes inside its code or a quote ("kubectl" /
            # "`kubectl rollout undo`") is there too
            extra_a = {n for n in extra_a if not _inside_literals(n, b)}
            extra_b = {n for n in extra_b if not _inside_literals(n, a)}
            same = (not extra_a and not extra_b) or (
                _acronyms_spelled_out(extra_a, extra_b, a, b)
                or _names_shortened(extra_a, extra_b, a, b)
            )
            if same and (a.directed or b.directed):
                # the same names, but two of them joined the other way round ("Oslo to
                # Berlin" / "Berlin to Oslo"); a direction one prompt leaves unsaid, or
                # says the other way ("to Berlin from Oslo"), is no conflict
                same = not _reversed(
                    _entity_arrows(at_a, a.low_text), _entity_arrows(at_b, b.low_text)
                )
            elif same and len(set_a) > 1:
                # (not where one part of the prompt moved whole: "In Hinduism, who is
                # Shiva?" / "Who is Shiva in Hinduism?")
                same = a.same_words_as(b) or not _names_traded(a, b, at_a, at_b)
                # the same numbers, each said of another name ("when it is 3pm in Berlin,
                # what time is it in Paris" / "...3pm in Paris, ... in Berlin")
                same = same and not _numbers_moved(a, b)
            # two prompts of the same words (slips, spellings, acronyms spelt out) name
            # the same things: "VE day" / "Victory in Europe Day"
            if not same and not a.same_words_as(b):
                failed.append("entities")
        if "entities" not in failed and _recapitalised(a.text, b.text):
            failed.append("entities")
    comparison = _comparison(a.plain, b.plain) if s.polarity else None
    if s.polarity and (
        comparison == "swapped"
        # two sides of one group, or the same two words joined the other way round
        # ("string to int" / "int to string"), but not one comparison said from the
        # other side ("python faster than java" / "java slower than python")
        or ((_conflict(a, b) or _reversed(a.arrows, b.arrows)) and comparison != "mirrored")
        or (_aligned_conflict(a.plain, b.plain) and not _why_not(a, b))
        or _asks_other(a, b)
        or _measure_asked_apart(a.plain, b.plain)
        or _quantified(a, b)
        or _bounds_differ(a.plain, b.plain)
        or _bounded_apart(a, b)
        or _lettered_apart(a, b)
        or _graded_apart(a, b)
        or _rates_differ(a.plain, b.plain)
        or _or_against_and(a.plain, b.plain)
        or _operation_differs(a, b)
        or _tense_differs(a, b)
        or _reordered(a, b)
        or _how_many(a, b)
        or _one_against_all(a, b)
        or _roles_reversed(a, b)
        or _obliged(a.plain, b.plain)
        or _needed(a, b)
        or _drops_exception(a, b)
        or _drops_exception(b, a)
        or _speaks_as_another(a.speaker, b.speaker)
        or _ends_swapped(a, b)
        or _choice_swapped(a, b)
        or _obtaining(a, b)
        or _roles_traded(a, b)
        or _object_asked(a, b)
        or _whose_asked(a.plain, b.plain)
        or _steps_swapped(a, b)
        or _term_differs(a, b)
        or _bundled(a, b)
        or _when_against_whether(a, b)
        or _becoming_against_being(a, b)
        or _particle_traded(a.plain, b.plain)
        or _particle_against_target(a.plain, b.plain)
    ):
        failed.append("polarity")
    if s.negation and a.negated != b.negated:
        failed.append("negation")
    if s.contradiction and (
        (
            a.denies != b.denies
            and (
                a.plain == b.plain
                or _unmodal(a.plain) == _unmodal(b.plain)
                or _unstilled(a.plain, b.plain)
                or _denial_traded(a.framed, b.framed)
                or _selection_denied(a, b)
            )
        )
        or (a.denies and b.denies and a.plain == b.plain and _denials_moved(a, b))
    ):
        failed.append("contradiction")
    if s.qualifier and (
        _either_qualified(_how_asked(a.plain), _how_asked(b.plain))
        or _constraint_added(a.framed, b.framed)
        or _constraint_added(b.framed, a.framed)
    ):
        failed.append("qualifier")
    return failed


# Words whose trade is a rewording of the request, not another question ("how to" /
# "steps to install nginx", "I need" / "give me 10 titles")
_REQUEST_WORDS = _REQUEST_VERBS | frozenset([
    "step", "steps", "way", "ways", "tip", "tips", "guide", "explain", "find", "help",
    "need", "needs", "want", "know", "please", "have", "has", "had", "get", "got",
])  # fmt: skip


def _substituted(
    a: tuple[str, ...], b: tuple[str, ...], lows_a: str = "", lows_b: str = ""
) -> tuple[str, str] | None:
    """The one word in which two framed prompts (:attr:`Signature.framed`) differ, each
    side's, when they are otherwise the same words in the same order (3+ words); or the
    word after a preposition traded with it ("on highways" / "in cities").

    ``None`` also when the traded words do not carry the question: function words, two
    request words ("list" / "name"), numbers (the numbers guard's), a negation on both
    sides ("can't" / "cannot"), or two spellings of one word ("recieve" / "receive",
    "colour" / "color").
    """
    if len(a) != len(b) or len(a) < 3:
        return _event_traded(a, b)
    diff = [
        i for i, (x, y) in enumerate(zip(a, b, strict=True))
        if x != y and _plain_stem(x) != _plain_stem(y)
    ]  # fmt: skip
    pair: tuple[str, str] | None = None
    if len(diff) == 1:
        pair = (a[diff[0]], b[diff[0]])
    elif (
        len(diff) == 2
        and diff[1] == diff[0] + 1
        and a[diff[0]] in _PLACE_PREPOSITIONS
        and b[diff[0]] in _PLACE_PREPOSITIONS
        and a[diff[1]] not in _WHICH_ONE
        and b[diff[1]] not in _WHICH_ONE
    ):
        # a place or a means said with another preposition and another word, which the
        # two words tell apart: "the speed limit on highways" / "in cities", "smoke at
        # the airport" / "on the plane", "whipped cream by hand" / "with a mixer"
        pair = (a[diff[1]], b[diff[1]])
    if pair is None or not all(_content_word(w) or w in _REQUEST_WORDS for w in pair):
        return None
    x, y = pair
    if _TIMING_SIDES.get(x, x) == _TIMING_SIDES.get(y, y):
        # the same side of an event said otherwise: "days prior" / "days before", "rest
        # following a marathon" / "after a marathon" (the embedded model sets the words
        # apart: "following" / "after" 0.46, "prior" / "before" 0.45)
        return None
    if x in _REQUEST_WORDS or y in _REQUEST_WORDS:
        # how the request is put ("list" / "name", "explain" / "describe", "please" /
        # "kindly"), unless a request verb stands as a thing, after a determiner: "convert
        # a list to a dict" / "a string to a dict"
        word, lows = (x, lows_a) if x in _REQUEST_WORDS else (y, lows_b)
        if (x in _REQUEST_WORDS and y in _REQUEST_WORDS) or not _as_noun(word, lows):
            return None
    if x[0] == y[0] and difflib.SequenceMatcher(None, x, y).ratio() >= _SPELLING_RATIO:
        return None
    return pair


# an event a "when" clause names, after its subject at most ("how old was Mozart when he
# died" / "... when he started composing"), in this many words at most
_WHEN = "when"
_EVENT_WORDS = 4


def _event_traded(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, str] | None:
    """The events two framed prompts name, each side's, where they are the same words up
    to a "when" clause and that clause names another event in other words ("died" /
    "started composing", "became president" / "was assassinated"), unless both name one
    of its words ("paying with card" / "using card"): what the substitution guard weighs
    as it weighs a traded word ("died" / "passed away" is one event)."""
    if _WHEN not in a:
        return None
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    at = a.index(_WHEN)
    # (the clause starts after "when" and its subject at most, and runs to the end)
    if i < 3 or not at < i <= at + 2:
        return None
    event_a, event_b = a[i:], b[i:]
    if not (0 < len(event_a) <= _EVENT_WORDS and 0 < len(event_b) <= _EVENT_WORDS):
        return None
    content_a = {_plain_stem(w) for w in event_a if _content_word(w)}
    content_b = {_plain_stem(w) for w in event_b if _content_word(w)}
    if not content_a or not content_b or content_a & content_b:
        return None
    return " ".join(event_a), " ".join(event_b)


# prepositions of a place or a means ("on highways", "at the airport", "by hand")
_PLACE_PREPOSITIONS = frozenset(
    {"in", "on", "at", "by", "with", "inside", "outside", "near", "under", "over", "during"}
)

# words that say which one, not what: "in another currency" / "with a different currency"
_WHICH_ONE = frozenset({"another", "other", "different", "same", "new", "any", "some"})

# words that say "before" or "after" another event, one word for one ("prior to" is read
# by the frame's length: "prior to surgery" / "before surgery" trade no single word)
_TIMING_SIDES = {
    **dict.fromkeys(["before", "prior", "beforehand"], "before"),
    **dict.fromkeys(["after", "following", "afterwards", "afterward", "subsequently"], "after"),
}

_NOUN_AFTER = frozenset({"a", "an", "the", "my", "your", "this", "that", "each", "every"})


def _as_noun(word: str, lows: str) -> bool:
    """Is request verb ``word`` a thing in ``lows``: after a determiner ("a list"), or
    naming the one thing after it ("list index", "name field"; a request asks for things
    or a whole: "list countries", "list the...", "name three")?"""
    if word not in _REQUEST_VERBS:
        return False
    words = lows.split()
    for i, w in enumerate(words):
        if w != word:
            continue
        if i and words[i - 1] in _NOUN_AFTER:
            return True
        after = words[i + 1] if i + 1 < len(words) else ""
        if after.isalpha() and _content_word(after) and not _is_plural(after):
            return True
    return False


# words that open a clause picking some of a thing ("wines that don't need decanting",
# "which wines need decanting", "cells that are not blank")
_SELECTORS = frozenset({"which", "what", "that", "who", "whose", "where"})
# what opens a prompt that asks to pick: "which wines...", "count cells that...", "list
# countries that..." (a complaint picks nothing: "a fee that shouldn't have been charged")
_PICKS = _REQUEST_VERBS | frozenset([
    "which", "what", "count", "find", "filter", "select", "delete", "remove", "drop", "sum",
    "highlight", "sort", "get",
])  # fmt: skip


def _selection_denied(a: Signature, b: Signature) -> bool:
    """Two prompts that pick things by the same words, one picking those that do not:
    "which red wines don't need decanting" / "which red wines need to be decanted",
    "count cells that are not blank" / "formula to count blank cells" (one content word
    apart at most)."""
    denying, other = (a, b) if a.denies else (b, a)
    lows = denying.low_text.split()
    first_denial = next((i for i, w in enumerate(lows) if _is_denial(w)), len(lows))
    if _SELECTORS.isdisjoint(lows[:first_denial]) or not (
        set(lows[:1]) & _PICKS or set(other.low_text.split()[:1]) & _PICKS
    ):
        return False
    content = {w for w in denying.plain if w not in _STOP_STEMS}
    other_content = {w for w in other.plain if w not in _STOP_STEMS}
    return len(content) >= 2 and len(content ^ other_content) <= 1


def _unmodal(plain: tuple[str, ...]) -> tuple[str, ...]:
    """``plain`` with every modal read as one: a negation added along with another modal
    still contradicts ("fish that can live with bettas" / "fish that shouldn't live with
    bettas")."""
    return tuple("can" if w in _MODALS else w for w in plain)


# "still" against "no longer" or "not anymore": "is Pluto still a planet" / "is Pluto no
# longer a planet" (the same words, the answer's yes and no the other way round)
_STILL = frozenset(_plain_stem(w) for w in ["still", "longer", "anymore"])


def _unstilled(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Are two plain prompts the same words but for "still" / "(no) longer" / "(not)
    anymore"? (The caller knows one of them denies and the other does not.)"""
    if _STILL.isdisjoint(a) or _STILL.isdisjoint(b):
        return False
    return tuple(w for w in a if w not in _STILL) == tuple(w for w in b if w not in _STILL)


# what parts a sentence into clauses a denial belongs to ("my phone can connect but my
# laptop can't")
_CLAUSE_RE = re.compile(r"\b(?:but|while|whereas|although|though|yet|however)\b|[,;]")


def _denials_moved(a: Signature, b: Signature) -> bool:
    """The same words, denied in another clause: "why can my phone connect but my laptop
    can't" / "why can't my phone connect but my laptop can"."""
    by_a, by_b = _denials_by_clause(a.text), _denials_by_clause(b.text)
    # (as many denials on each side: a denial one side spells its own way, "havn't", is
    # none moved)
    return len(by_a) == len(by_b) > 1 and sum(by_a) == sum(by_b) and by_a != by_b


def _denials_by_clause(text: str) -> tuple[int, ...]:
    return tuple(
        sum(_is_denial(w) for w in _tokens_of(clause))
        for clause in _CLAUSE_RE.split(text.lower())
        if clause.strip()
    )


# "from X to Y", "convert X into Y": the two ends of a change, each a short span of words
_ENDS_RE = re.compile(
    r"\b(?:from|convert|converting|switch|switching|change|changing|migrate|migrating"
    r"|move|moving|transfer|transferring|translate|translating)\s+(.{1,60}?)\s+(?:to|into|onto)"
    r"\s+(.{1,60}?)(?=\s*[?.!,;:]|\s+(?:in|on|for|with|using|via|and|without|if|when)\b|\s*$)"
)


# (_ends and _chosen are not cached: a few µs each, and a cache of texts shared by every
# tenant would tell one tenant by timing what another had sent)
def _ends(text: str) -> tuple[frozenset[str], frozenset[str]] | None:
    """The content words of the two ends of a change the text asks about, if it does."""
    m = _ENDS_RE.search(text.lower())
    if m is None:
        return None
    x, y = (frozenset(_plain_stem(w) for w in _tokens_of(g) if w not in _STOP) for g in m.groups())
    return (x, y) if x and y and x != y else None


# what is chosen over what ("a refund instead of store credit"): the words before the
# connector and those after it, to the end of the clause. A match starts where a word
# does (a match from inside a word is the same one from its start, which a search tries
# first) and a word is taken whole (no part of one is followed by a space): else every
# position of a long run without spaces is retried to its end, quadratic in its length.
_CHOSEN_RE = re.compile(
    r"(?<!\S)((?:\S++\s+){0,3}?\S++)\s+(?:instead\s+of|rather\s+than)\s+(.{1,60}?)"
    r"(?=\s*[?.!,;:]|\s*$)"
)


def _chosen(text: str) -> tuple[frozenset[str], frozenset[str]] | None:
    """The content words before and after "instead of" / "rather than", if the text says
    it between two spans of words."""
    m = _CHOSEN_RE.search(text.lower())
    if m is None:
        return None
    x, y = (frozenset(_plain_stem(w) for w in _tokens_of(g) if w not in _STOP) for g in m.groups())
    return (x, y) if x and y else None


def _choice_swapped(a: Signature, b: Signature) -> bool:
    """What one prompt takes instead of what, the other the other way round: "can I get a
    refund instead of store credit" / "store credit instead of a refund"."""
    chosen_a, chosen_b = _chosen(a.text), _chosen(b.text)
    if chosen_a is None or chosen_b is None:
        return False
    (before_a, after_a), (before_b, after_b) = chosen_a, chosen_b
    return after_a != after_b and after_a <= before_b and after_b <= before_a


def _ends_swapped(a: Signature, b: Signature) -> bool:
    """The two ends of a change the other way round, each end a span of words: "switch
    from brand-name Lipitor to generic atorvastatin" / "from generic atorvastatin to
    brand-name Lipitor", "convert snake_case to camelCase" / "camelCase to snake_case"
    (where single words joined by "to" are the arrows' and the literals' to compare)."""
    ends_a, ends_b = _ends(a.text), _ends(b.text)
    return ends_a is not None and ends_b is not None and ends_a == ends_b[::-1]


def _denial_traded(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Two framed prompts the same but for one word, a denial on one side only ("write a
    tweet, include hashtags" / "..., no hashtags")."""
    if len(a) != len(b):
        return False
    diff = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    if len(diff) != 1:
        return False
    x, y = diff[0]
    # the other word says something ("include"), not how the question is put ("how do I
    # find my PIN" / "I cannot find my PIN") nor a negation spelt without its apostrophe
    return (x in _DENIALS and _content_word(y)) or (y in _DENIALS and _content_word(x))


# two words this alike, first letter equal, are taken for two spellings of one
# ("capitol" / "capital": 0.86; "install" / "uninstall" differ in their first letter)
_SPELLING_RATIO = 0.8


def _content_word(w: str) -> bool:
    return (
        w not in _STOP
        and w not in _REQUEST_WORDS
        and not _is_denial(w)
        and w.replace("nt", "n't") not in _NEGATIONS  # "isnt", "cant"
        and w.replace("-", "").replace("'", "").replace(".", "").isalpha()
    )


# words that lead a condition or a scope ("in children", "on international flights",
# "when it is cold", "without sugar"), and the words that add none after them
_QUALIFIER_LEADS = frozenset(_plain_stem(w) for w in [
    "in", "on", "for", "with", "without", "during", "at", "under", "over", "after", "before",
    "when", "if", "unless", "using", "via", "from", "by", "as", "than", "into", "while",
    "within", "inside", "outside", "except", "per", "through",
])  # fmt: skip
_NO_CONDITION = frozenset(_plain_stem(w) for w in [
    "all", "any", "anything", "ever", "now", "yet", "today", "please", "again", "possible",
    "so", "there",
    # the product being asked about, or anyone: "how do I exchange currencies (in the app,
    # using this, with your website)", "how can I receive money (from someone)"
    "this", "your", "my", "the", "a", "an", "app", "website", "site", "here", "someone",
    "somebody", "anyone", "well",
    # whoever asks or answers, and where they ask from: "won't work (for me)", "(from
    # you)", "(on my account, device, phone)"
    "me", "you", "us", "account", "device", "phone", "service",
])  # fmt: skip


# words between "how" and the verb that only put the question ("how to", "how do I",
# "how can we")
_HOW_FILLERS = frozenset(_plain_stem(w) for w in [
    "to", "i", "can", "could", "should", "would", "you", "we", "one",
])  # fmt: skip
_HOW = _plain_stem("how")


def _how_asked(plain: tuple[str, ...]) -> tuple[str, ...]:
    """``plain`` with "how to", "how do I", "how can we"... all read as "how"."""
    if plain[:1] != (_HOW,):
        return plain
    i = 1
    while i < len(plain) and plain[i] in _HOW_FILLERS:
        i += 1
    return (_HOW, *plain[i:])


_MUST_WORDS = frozenset({"only", "exactly", "exact", "without"})
# a denial before one of these says what the answer may not use ("I can't add libraries",
# "I don't have admin rights"); before others it is a complaint ("it's not working")
_CANNOT_USE = frozenset({"use", "add", "install", "have", "access", "change", "upgrade"})


def _constraint_added(short: tuple[str, ...], long: tuple[str, ...]) -> bool:
    """Is ``long`` (framed words) ``short`` with words after it that say what the answer
    may use ("How do I parse JSON in Kotlin? I can't add any third-party libraries.",
    "... without root", "... using only numpy")? Not "... Thanks a lot!", "... it's not
    working anymore", "... that I must follow" (measured: 12 Banking77 rewordings), nor
    words before the question, which are context ("I need to know ...")."""
    if len(short) < 3 or len(long) < len(short) + 2 or long[: len(short)] != short:
        return False
    extra = long[len(short) :]
    if extra[0] == "and" and len(extra) <= 3 and _content_word(extra[1]):
        return True  # more asked for: "when did the war start" / "... start and end"
    return any(
        w in _MUST_WORDS or (_is_denial(w) and k + 1 < len(extra) and extra[k + 1] in _CANNOT_USE)
        for k, w in enumerate(extra)
    )


def _either_qualified(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Is one prompt the other with a condition added? Articles aside: "return a grocery
    item for a refund" / "return grocery items for a refund if I already opened them"."""
    a = tuple(w for w in a if w not in _ARTICLE_STEMS)
    b = tuple(w for w in b if w not in _ARTICLE_STEMS)
    return _qualified(a, b) or _qualified(b, a)


def _qualified(short: tuple[str, ...], long: tuple[str, ...]) -> bool:
    """Whether ``long`` is ``short`` with one run of words inserted that is a condition or
    a scope: 2+ words, led by a preposition or "if"/"when", not only filler after it."""
    extra = len(long) - len(short)
    if extra < 2 or not short:
        return False
    i = 0
    while i < len(short) and short[i] == long[i]:
        i += 1
    if short[i:] != long[i + extra :]:
        return False
    added = long[i : i + extra]
    if (i == 0 and added[0] == _WHEN) or added[:2] == _ONE_OF:
        return False  # "(when do I get my) card PIN": a question; "one of my transfers"
    if added[0] == _WITHOUT:
        return True  # "set up 2FA (without a phone)": whatever it goes without
    if added[0] == _AND and added[1] in _ALL_STEMS:
        return True  # "list the .log files here (and all its subdirectories)": more of it
    return added[0] in _QUALIFIER_LEADS and not all(w in _NO_CONDITION for w in added[1:])


_WITHOUT = _plain_stem("without")
_AND = _plain_stem("and")
_ALL_STEMS = frozenset(_plain_stem(w) for w in ["all", "every", "each", "any"])
_WHEN = _plain_stem("when")
_ONE_OF = (_plain_stem("one"), _plain_stem("of"))
