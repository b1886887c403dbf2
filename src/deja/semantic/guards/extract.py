"""Signature extraction: :func:`signature` reads the anchors of a prompt into a
:class:`Signature`. Numbers (digits and written forms), dates, units and currencies and
request counts are read here; quotes and code in :mod:`.literals`, names in
:mod:`.entities`.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from deja.semantic.guards.entities import (
    _entities,
    _expand_aliases,
    _installed_names,
    _put_after,
)
from deja.semantic.guards.literals import (
    _ARITHMETIC,
    _CODE_MARK,
    _CODE_RE,
    _EMPTY_CALL_RE,
    _IDENT_RE,
    _JS_NAME_RE,
    _MARK_RE,
    _OPERATOR_RE,
    _PATH_RE,
    _PROSE_SLASH_RE,
    _QUOTE_MARK,
    _QUOTE_RE,
    _RATE_RE,
    _SCOPED_RE,
    _VERSION_RE,
    _bare_words,
    _feet_marks,
    _inch_marks,
    _is_dotted_code,
    _js_name,
    _literal_order,
    _mark,
    _marks_in,
)
from deja.semantic.guards.spelling import said_words, same_words, symbols_in_order, symbols_of
from deja.semantic.guards.tokenizer import (
    _ARROW_WORDS,
    _STOP,
    _arrows,
    _plain_stem,
    _scan,
    _stem,
    _Tok,
    _tokens_of,
    foreign_words,
    unaccented,
)
from deja.semantic.guards.words import (
    _ALIASES,
    _AMBIGUOUS_CURRENCY,
    _CASED_UNITS,
    _COMMON,
    _COUNT_UNITS,
    _CURRENCY_SPELLINGS,
    _DAY_NAMES,
    _DEGREES,
    _EXCLUSION_PAIRS,
    _EXCLUSIONS,
    _GAZETTEER,
    _MONTHS,
    _MOVED_INTO,
    _MOVED_OUT_OF,
    _NAME_ALIASES,
    _NEGATIONS,
    _NUMBER_WORDS,
    _NUMBERED_UNITS,
    _OPPOSITES,
    _ORDINAL_WORDS,
    _PERIODS,
    _POLE_PHRASE_STARTS,
    _POLE_PHRASES,
    _RELATIVE,
    _SCALES,
    _STRICT_MONTHS,
    _TIME_UNITS,
    _TIMES_WORDS,
    _TOO_LITTLE,
    _TOO_MUCH,
    _UNIT_SPELLINGS,
    _UNIT_WORDS,
    _poles_of,
)


@dataclass(frozen=True, slots=True)
class Signature:
    """The anchors of one prompt, in order of appearance (see :mod:`deja.semantic.guards`)."""

    # every number in order, the loose ones of repetition words ("twice": "2") included,
    # and where those loose ones are in it
    all_numbers: tuple[str, ...] = ()
    loose: frozenset[int] = frozenset()
    # the unit each number of ``all_numbers`` carries ("" for none): "440 Hz" and "343 m/s"
    # keep their values whatever the order they come in
    measured: tuple[str, ...] = field(default=(), repr=False)
    dates: tuple[str, ...] = ()
    # every date is a relative one ("yesterday", "last week") that the user tells as part of
    # their story ("I lost my phone yesterday, what can I do?"), not one asked about
    dates_told: bool = False
    units: tuple[str, ...] = ()
    quotes: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    entities: tuple[str, ...] = ()
    entity_candidates: frozenset[str] = frozenset()
    # entities with a place qualifier after them ("new york city"): one the other prompt
    # leaves out is no conflict, another one is
    qualified: frozenset[str] = frozenset()
    # how many things each request asks for ("give me an example": "1", "list examples":
    # "n"), compared with the numbers where both prompts ask
    requested: tuple[str, ...] = ()
    directed: bool = False
    # a connector joins two code spans or quotes ("convert `list` to `tuple`"): their order
    # counts, as the entities' does when ``directed``
    literals_directed: bool = False
    poles: tuple[frozenset[int], ...] = field(default=(), repr=False)
    # the groups of ``poles`` with a side named (most prompts: none)
    pole_groups: tuple[int, ...] = field(default=(), repr=False)
    # (source, target) word stems joined by "to"/"into" ("convert string to int"): the
    # same two words the other way round on the other side are a reversed direction
    arrows: frozenset[tuple[str, str]] = field(default=frozenset(), repr=False)
    negated: bool = False
    # the words stemmed, without negations ("isn't" is "is", "unable" "able") nor "do",
    # and whether there were negations: a prompt that is the other word for word but for
    # a negation contradicts it ("planets that have rings" / "planets that don't")
    plain: tuple[str, ...] = field(default=(), repr=False)
    denies: bool = False
    # the tokens without articles, possessives, personal pronouns, "do" and "be": two
    # prompts that are the same here but for one content word ask about two things
    # ("how to install nginx on ubuntu" / "how to configure nginx on ubuntu")
    framed: tuple[str, ...] = field(default=(), repr=False)
    # whether the prompt leaves something out ("all files except .txt")
    excludes: bool = False
    words: frozenset[str] = frozenset()
    # the words but those a request is framed with, and the symbols that carry meaning:
    # what :meth:`same_words_as` compares
    said: tuple[str, ...] = field(default=(), repr=False)
    symbols: str = field(default="", repr=False)
    # the acronyms it writes in capitals ("MFA", "mRNA"), lower case
    acronyms: frozenset[str] = field(default=frozenset(), repr=False)
    # the words of two to four letters it writes all in capitals, lower case ("IT", "WHO"),
    # unless it writes no lower-case letter at all (shouted: its capitals say nothing;
    # a prompt of no capital letter says nothing by its letter case either)
    capitals: frozenset[str] = field(default=frozenset(), repr=False)
    # the symbols in the order they come, punctuation and what other guards compare aside
    # (:func:`_symbol_order`), and how deep each line is indented (:func:`_indentation`):
    # what two prompts of the same words can still differ in ("age > 30" / "age < 30",
    # "HEAD~1" / "HEAD^1", a Python line in or out of a block)
    symbol_order: str = field(default="", repr=False)
    indents: tuple[int, ...] = field(default=(), repr=False)
    # its words written in another script than Latin, which the other guards cannot read
    # (:func:`~deja.semantic.guards.tokenizer.foreign_words`)
    foreign: tuple[str, ...] = field(default=(), repr=False)
    # one-letter flags and escapes as written, sorted ("-d" is not "-D", "\s" not "\S"):
    # kept from the text, so that reading backticks as bare words keeps them too
    cased: tuple[str, ...] = field(default=(), repr=False)
    # who the prompt asks as ("As a coach, ...": "coach"), if it says
    speaker: str | None = field(default=None, repr=False)
    low_text: str = field(default="", repr=False)
    # how the text bounds its numbers ("up to 3000": "3000" -> "max"; see _bounded)
    bounds: tuple[tuple[str, frozenset[str]], ...] = field(default=(), repr=False)
    # the text as given, and its backtick spans as bare words (see :func:`check_guards`)
    text: str = field(default="", repr=False)
    ticked: tuple[str, ...] = field(default=(), repr=False)
    # the steps a prompt lays out in order, if it lays out any (:func:`_sequence`): worked
    # out once per prompt, not on each comparison
    sequence: tuple[str, ...] | None = field(default=None, repr=False)

    def same_words_as(self, other: Signature) -> bool:
        """Whether the two prompts say the same words, in order or with one part moved,
        framing words and typing slips aside (:func:`deja.semantic.guards.spelling.same_words`).
        A short word in capitals on one side and in lower case on the other is two words
        ("What does IT mean" / "What does it mean", "WHO" / "who", "MS" / "ms"), and so
        are words of another script than Latin (:attr:`foreign`) unless written the same."""
        if self.foreign != other.foreign:
            return False
        if (self.capitals or other.capitals) and (_recased(self, other) or _recased(other, self)):
            return False
        return same_words(
            self.said,
            other.said,
            self.symbols,
            other.symbols,
            acronyms_a=self.acronyms,
            acronyms_b=other.acronyms,
        )

    @property
    def numbers(self) -> tuple[str, ...]:
        """The numbers that are not loose ("twice" is loose: it may be "a duplicate")."""
        if not self.loose:
            return self.all_numbers
        return tuple(v for i, v in enumerate(self.all_numbers) if i not in self.loose)

    @property
    def anchors(self) -> int:
        """How many anchors (numbers, dates, units, quotes, code, entities) were found."""
        return (
            len(self.numbers)
            + len(self.dates)
            + len(self.units)
            + len(self.quotes)
            + len(self.code)
            + len(self.entities)
        )


def _recased(a: Signature, b: Signature) -> bool:
    """Does ``b`` say, not in capitals, a short word that ``a`` writes in capitals? (Not a
    ``b`` written all in lower case: its letter case says nothing, "make an http get
    request" is "Make an HTTP GET request".)"""
    return any(w in b.said and w not in b.capitals for w in a.capitals) and (
        _UPPER_RE.search(b.text) is not None
    )


def _indentation(text: str) -> tuple[int, ...]:
    """How deep each non-blank line of ``text`` is indented, as the rank of its indent among
    the text's indents (an indent of 2 spaces a level or 4 alike), or ``()`` when no line
    is (the text's own leading and trailing whitespace aside)."""
    widths = [len(line) - len(line.lstrip()) for line in text.strip().split("\n") if line.strip()]
    if not any(widths):
        return ()
    rank = {width: r for r, width in enumerate(sorted(set(widths)))}
    return tuple(rank[width] for width in widths)


def _int_text(digits: str) -> str:
    """``str(int(digits))`` for decimal digits of any length: ``int()`` refuses more than
    ``sys.get_int_max_str_digits()`` (4300 by default, 640 at the least), and a prompt may
    hold a longer run of digits (a hex dump, a pasted number)."""
    if len(digits) <= 640:
        return str(int(digits))
    return digits.lstrip("0") or "0"


def _canon_number(raw: str) -> str:
    s = raw.lstrip("#").replace(",", "")
    pct = s.endswith("%")
    s = s.rstrip("%")
    s = re.sub(r"(st|nd|rd|th)$", "", s)
    if s.count(".") == 1:
        whole, frac = s.split(".")
        frac = frac.rstrip("0")
        s = f"{_int_text(whole or '0')}.{frac}" if frac else _int_text(whole or "0")
    elif s.count(".") == 0 and s.isdigit():
        s = _int_text(s)
    return s + ("%" if pct else "")


_DECIMAL_RE = re.compile(r"\d+(?:\.\d+)?")


def _scaled(value: str, scale: int) -> str:
    """A canonical number times a scale word's value, as a canonical number: "2" and a
    million are "2000000", "1.5" and a thousand "1500" (exact: no float rounding)."""
    whole, _, frac = value.partition(".")
    digits = int(whole + frac) * scale
    if not frac:
        return _int_text(str(digits))
    shift = 10 ** len(frac)
    if digits % shift == 0:
        return _int_text(str(digits // shift))
    rest = str(digits % shift).rjust(len(frac), "0").rstrip("0")
    return f"{digits // shift}.{rest}"


# what a number written with a unit glued to it ("5km", "6h") may end in
_GLUED_UNITS = (
    _UNIT_WORDS
    | frozenset(spelling for spellings in _TIME_UNITS.values() for spelling in spellings)
    | {"min"}
)
# a name of the gazetteer with its version glued on ("python3", "windows11")
_VERSIONED_NAME_RE = re.compile(r"([a-z][a-z+#]*[a-z+#])(\d+(?:\.\d+)?)")
# a time of the clock: "3am", "3 pm", "11 p.m.", "3:30 pm" (not "30 am")
_CLOCK_RE = re.compile(r"(?<![\d:.])(\d{1,2})(?::([0-5]\d))?\s?([ap])\.?m\b\.?", re.IGNORECASE)


# a time of the clock in words: "noon", "12 noon", "midnight"; "quarter past 6", "half
# past six", "twenty to eight" (read as "6:15", "6:30", "7:40"). A count before "to" is
# a clock only as "quarter", or when more than the hour ("five to ten" is a range).
_HOURS = {
    w: k + 1
    for k, w in enumerate([
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve",
    ])
}  # fmt: skip
_PAST_HOUR = {"quarter": 15, "half": 30, "five": 5, "ten": 10, "twenty": 20, "twenty-five": 25}
# a cheap test first: most prompts have "to" but no word that counts minutes
_CLOCK_WORDS_RE = re.compile(r"noon|midday|midnight|quarter|half|twenty|ten |five ")
_SAID_CLOCK_RE = re.compile(
    r"\b(?:12\s*)?(noon|midday|midnight)\b"
    r"|\b(quarter|half|twenty-five|twenty|ten|five)\s+(past|after|to|till)"
    r"\s+(1[0-2]|[1-9]|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)\b"
    r"(?![:.]\d|\s*(?:%|percent))",
    re.IGNORECASE,
)


def _said_clock(m: re.Match[str]) -> str:
    """A time of the clock said in words, as the clock shows it (unchanged: a range)."""
    if m[1] is not None:
        return " 0:00 " if m[1].lower() == "midnight" else " 12:00 "
    minutes = _PAST_HOUR[m[2].lower()]
    word = m[4].lower()
    hour = _HOURS[word] if word in _HOURS else int(word)
    if m[3].lower() in ("past", "after"):
        return f" {hour}:{minutes:02d} "
    if m[2].lower() == "half" or (m[2].lower() != "quarter" and minutes <= hour):
        return m.group()
    return f" {(hour - 2) % 12 + 1}:{60 - minutes:02d} "


def _clock_hour(m: re.Match[str]) -> str:
    """The time on a 24-hour clock, as the clock shows it: "3am", "3 am" and "3:00 am" are
    " 3:00 ", "3pm" " 15:00 ", "3:30 pm" " 15:30 " (not a span of hours; unchanged past
    12: "13 pm")."""
    hour = int(m[1])
    if hour > 12:
        return m.group()
    hour = hour % 12 + (12 if m[3].lower() == "p" else 0)
    return f" {hour}:{m[2] or '00'} "


def _spellings(table: dict[str, tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    return {tuple(_tokens_of(s)): canon for canon, names in table.items() for s in names}


def _phrase_table() -> dict[tuple[str, ...], tuple[str, str]]:
    table: dict[tuple[str, ...], tuple[str, str]] = {}
    for spelling, canon in _spellings(_UNIT_SPELLINGS).items():
        table[spelling] = ("unit", canon)
    for spelling, canon in _spellings(_TIME_UNITS).items():
        table[spelling] = ("time", canon)
    for table_of in (_COUNT_UNITS, _NUMBERED_UNITS):
        for spelling, canon in _spellings(table_of).items():
            table[spelling] = ("time", canon)  # same rule: a unit only after a number
    for spelling, canon in _spellings(_CURRENCY_SPELLINGS).items():
        table[spelling] = ("currency", canon)
    return table


@functools.cache
def _phrases() -> tuple[dict[tuple[str, ...], tuple[str, str]], int]:
    table = _phrase_table()
    return table, max(len(k) for k in table)


def _written_number(toks: list[_Tok], i: int) -> tuple[int, int] | None:
    """A number written in words starting at ``toks[i]``: (value, tokens used)."""
    if (
        toks[i].low == "pair"
        and i > 0
        and toks[i - 1].low in ("a", "one")
        and i + 1 < len(toks)
        and toks[i + 1].low == "of"
    ):
        return 2, 1  # "a pair of sentences" is "two sentences"
    total = current = 0
    j = i
    seen = False
    while j < len(toks):
        w = toks[j].low
        parts = w.split("-") if "-" in w else [w]
        if len(parts) > 1 and all(p in _NUMBER_WORDS or p == "one" for p in parts):
            current += sum(_NUMBER_WORDS.get(p, 1) for p in parts)  # "twenty-one"
            seen = True
        elif all(p in _NUMBER_WORDS for p in parts):
            current += sum(_NUMBER_WORDS[p] for p in parts)
            seen = True
        elif (
            w in _SCALES
            and (seen or w == "dozen" or (j == i and i > 0 and toks[i - 1].low in ("a", "one")))
            # "twelve hundred", not "hundred hundred" or "dozen dozen dozen": each would
            # multiply the value again (a number of thousands of digits, which str() refuses)
            and (_SCALES[w] >= 1000 or current < 100)
        ):
            current = max(current, 1) * _SCALES[w]
            if _SCALES[w] >= 1000:
                total += current
                current = 0
            seen = True
        elif w == "and" and seen and j + 1 < len(toks) and toks[j + 1].low in _NUMBER_WORDS:
            pass
        elif w == "one" and (
            seen or (j + 1 < len(toks) and toks[j + 1].low in _SCALES)
        ):  # "one" alone is too often a pronoun ("a new one")
            current += 1
            seen = True
        else:
            break
        j += 1
    if not seen:
        return None
    return total + current, j - i


def _number_compound(low: str) -> tuple[int, str] | None:
    """A hyphenated word that opens with a number written in words: its value and the
    word after the number ("fifty-word": (50, "word"), "three-year-old": (3, "year"))."""
    parts = low.split("-")
    k = 0  # "one" counts after a tens word only ("twenty-one-year-old", not "one-time")
    while k < len(parts) and (parts[k] in _NUMBER_WORDS or (k and parts[k] == "one")):
        k += 1
    if k == 0 or k == len(parts):
        return None  # no number, or nothing but one ("twenty-one": _written_number's)
    return sum(_NUMBER_WORDS.get(p, 1) for p in parts[:k]), parts[k]


def _date_at(toks: list[_Tok], i: int) -> tuple[str, int] | None:
    """A calendar date starting at ``toks[i]``: (canonical ``Y-M-D`` text, tokens used)."""
    n = len(toks)

    def num(k: int, lo: int, hi: int) -> int | None:
        if k < n and toks[k].kind == "num":
            s = re.sub(r"(st|nd|rd|th)$", "", toks[k].low.lstrip("#"))
            s = s.lstrip("0") or "0"  # (int() refuses thousands of digits)
            if s.isdigit() and len(s) <= 4 and lo <= int(s) <= hi:
                return int(s)
        return None

    def month(k: int) -> int | None:
        if k >= n:
            return None
        if toks[k].low in _STRICT_MONTHS and toks[k].text.isupper() and len(toks[k].text) > 2:
            return None  # "10% APR, 2 years": a rate, not April 2 ("DEC 25" is rare in chat)
        return _MONTHS.get(toks[k].low)

    def year_after(k: int) -> tuple[int | None, int]:
        # optional "," is not a token; an optional year follows
        y = num(k, 1000, 2999)
        return (y, 1) if y is not None else (None, 0)

    m = month(i)
    if m is not None:
        d = num(i + 1, 1, 31)
        if d is not None:
            y, used = year_after(i + 2)
            return f"{y or '?'}-{m}-{d}", 2 + used
        y = num(i + 1, 1000, 2999)
        if y is not None:
            return f"{y}-{m}-?", 2
        return None
    d = num(i, 1, 31)
    if d is not None:
        k = i + 1
        if k < n and toks[k].low == "of":
            k += 1
        m = month(k)
        if m is not None:
            y, used = year_after(k + 1)
            return f"{y or '?'}-{m}-{d}", k + 1 - i + used
    return None


_ISO_DATE_RE = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_SLASH_DATE_RE = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{2,4})\b")


# What splits a prompt into the pieces :func:`_told` reads: sentence ends, colons,
# dashes, commas
_CHUNK_END_RE = re.compile(r"[.!?;:\n]+|\s[-\u2013\u2014]+\s|\u2014|,")
_FIRST_PERSON = frozenset(
    {"i", "i'm", "i've", "i'd", "i'll", "im", "ive", "my", "me", "mine", "we", "we're",
     "we've", "our", "us"}
)  # fmt: skip
# a piece that opens so asks, or asks for something ("I need a table for tonight")
_ASKING_OPENERS = frozenset(
    {"what", "how", "when", "why", "where", "which", "who", "whom", "whose", "can", "could",
     "will", "would", "is", "are", "am", "was", "were", "do", "does", "did", "should",
     "shall", "may", "might", "must", "has", "have", "had", "please", "if"}
)  # fmt: skip
_ASKING_AFTER_I = frozenset({"want", "need", "needed", "wanna", "wish", "like", "would", "'d"})
# words a piece may hold besides its date and still be only the date ("The day before
# yesterday, I sent..."; "Earlier this week, my card...")
_DATE_FILLER = frozenset(
    {"on", "the", "earlier", "later", "day", "before", "after", "since", "from", "in",
     "during", "over", "past", "just", "only", "until", "of", "morning", "evening",
     "afternoon", "night", "and"}
)  # fmt: skip


def _told(rest: str, dates: list[tuple[int, str]]) -> bool:
    """Whether every date of ``dates`` (offsets into ``rest``) is a relative one in a piece
    of the prompt that tells the user's own story: first person, neither a question nor a
    request ("I lost my phone yesterday", "My neighbor got me into beekeeping last year";
    not "will my card arrive tomorrow?", "I need a table for tonight"); a piece that is only
    the date ("The day before yesterday, I did a transfer") takes the next piece's reading.
    Calendar dates ("March 5", "2030-03-15") are never only told."""
    if any("-" in value for _, value in dates):
        return False
    pieces: list[tuple[int, int, bool]] = []  # start, end, ends with "?"
    start = 0
    for m in _CHUNK_END_RE.finditer(rest):
        pieces.append((start, m.start(), "?" in m.group()))
        start = m.end()
    pieces.append((start, len(rest), False))
    readings: list[bool | None] = []  # told, asked, or None: only a date
    for begin, end, asked in pieces:
        words = [w.replace("\u2019", "'") for w in rest[begin:end].lower().split()]
        words = [w.strip("\"'()") for w in words if w.strip("\"'()")]
        if not words:
            readings.append(False)
            continue
        if all(
            w in _DATE_FILLER or w in _DAY_NAMES or w in _RELATIVE or w in _PERIODS for w in words
        ):
            readings.append(None)
            continue
        first = words[0]
        request = first in ("i", "we") and len(words) > 1 and words[1] in _ASKING_AFTER_I
        readings.append(
            not asked
            and first not in _ASKING_OPENERS
            and not request
            and not _FIRST_PERSON.isdisjoint(words)
        )
    for at, _ in dates:
        k = next(i for i, (b, e, _) in enumerate(pieces) if at < e or i == len(pieces) - 1)
        reading = readings[k]
        while reading is None and k + 1 < len(readings):
            k += 1
            reading = readings[k]
        if not reading:
            return False
    return True


# one-letter flags and escapes, whose letter case is another option
_CASED_RE = re.compile(r"(?:(?<=\s)|^)-[A-Za-z]\b|\\[A-Za-z]")
_AS_A_RE = re.compile(r"\bas an? ([a-z][a-z'-]*(?: [a-z][a-z'-]*){0,2})")
_PERSON_ENDINGS = ("er", "or", "ist", "ian", "ant", "ent")
_PERSONS = frozenset({
    "coach", "mom", "mum", "dad", "child", "kid", "adult", "nurse", "chef", "guest", "host",
    "employee", "trainee", "retiree", "expat", "senior", "junior", "teen", "teenager",
})  # fmt: skip
# words in "as a ..." that end like a person and are none ("as a matter of fact")
_NO_PERSONS = frozenset({"matter", "reminder", "number", "letter", "order", "paper", "water"})


def _speaker(text: str) -> str | None:
    """Who the prompt speaks as, in "as a(n) ..." ("As a coach, how do I...": "coach",
    "starting out as a dog trainer": "trainer"), or ``None``."""
    m = _AS_A_RE.search(text.lower())
    if m is None:
        return None
    words: list[str] = []
    for w in m[1].split(" "):
        if w in _STOP:
            break
        words.append(w)
    if not words:
        return None
    role = words[-1]
    if role in _NO_PERSONS or not (role in _PERSONS or role.endswith(_PERSON_ENDINGS)):
        return None
    return role


# How a prompt bounds a number: from below ("at least 5", "more than 5", "over $20", "5
# or more", "65 and over"), from above ("up to 5", "no more than 5", "under 18", "5 or
# less") or exactly; and a span of time counted back ("3 days ago") or ahead ("in 3
# days", "3 days from now"). Two near-duplicates that bound the same number each its own
# way ask two things ("take up to 3000 mg" / "more than 3000 mg"; "what day was it 100
# days ago" / "will it be in 100 days"). A number bounded on one side only is left to
# the rest ("pay $30 an hour" / "pay over $30 an hour" is often the same ask).
_BOUND_PHRASES = {
    **dict.fromkeys(
        [
            "at least", "more than", "greater than", "higher than", "over", "above",
            "exceeding", "in excess of", "upwards of", "no less than", "not less than",
            "no fewer than", "not fewer than", "a minimum of", "minimum of", "min",
            "not under", "not below", "starting at", "starting from",
        ],
        "min",
    ),
    **dict.fromkeys(
        [
            "at most", "up to", "upto", "less than", "fewer than", "lower than", "under",
            "below", "no more than", "not more than", "no greater than", "not greater than",
            "not over", "not above", "not exceeding", "a maximum of", "maximum of", "max",
            "within",
        ],
        "max",
    ),
    **dict.fromkeys(["exactly", "precisely"], "exact"),
}  # fmt: skip
_BOUND_AFTER = {
    **dict.fromkeys(
        [
            "or more", "or above", "or higher", "or greater", "or over", "or older",
            "or longer", "or larger", "or bigger", "and over", "and up", "and above",
            "and older", "and higher", "plus",
        ],
        "min",
    ),
    **dict.fromkeys(
        [
            "or less", "or fewer", "or below", "or lower", "or under", "or younger",
            "or shorter", "or smaller", "and under", "and below", "and younger", "and lower",
        ],
        "max",
    ),
}  # fmt: skip


def _alternatives(phrases: Iterable[str]) -> str:
    # the longest first: "no more than" before "more than"
    return "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))


_NUMBER_TEXT = r"(?:[$\u20ac\u00a3\u00a5\u20b9] )?(\d[\d,]*(?:\.\d+)?%?)"
_BOUNDED_BEFORE_RE = re.compile(
    rf"(?<![\w-])({_alternatives(_BOUND_PHRASES)})(?: or equal to)? {_NUMBER_TEXT}(?![\w.])"
)
# (a unit of up to two words may come between: "4 stars or more", "$50 dollars or less")
_BOUNDED_AFTER_RE = re.compile(
    rf"(?<![\w.,-]){_NUMBER_TEXT}(?: [a-z%]+){{0,2}}? ({_alternatives(_BOUND_AFTER)})\b"
)
_SPAN_UNIT = r"(second|minute|hour|day|week|month|year|decade)s?"
_AGO_RE = re.compile(rf"(?<![\w.,-])(\d[\d,]*|a|an|one) {_SPAN_UNIT} ago\b")
_AHEAD_RE = re.compile(
    rf"(?:\bin (\d[\d,]*|a|an|one) {_SPAN_UNIT}\b(?! ago)"
    rf"|(?<![\w.,-])(\d[\d,]*|a|an|one) {_SPAN_UNIT} (?:from now|from today|later|hence)\b)"
)
_ONE_SPAN = frozenset({"a", "an", "one"})


def _bounded(low_text: str) -> Mapping[str, frozenset[str]]:
    """How ``low_text`` bounds each number (see :data:`_BOUND_PHRASES`): the canonical
    number -> "min" / "max" / "exact", and number and unit of a span -> "ago" / "ahead".
    (Worked out once per prompt, in its :class:`Signature`: four regex passes.)"""
    out: dict[str, set[str]] = {}
    for m in _BOUNDED_BEFORE_RE.finditer(low_text):
        out.setdefault(_canon_number(m.group(2)), set()).add(_BOUND_PHRASES[m.group(1)])
    for m in _BOUNDED_AFTER_RE.finditer(low_text):
        out.setdefault(_canon_number(m.group(1)), set()).add(_BOUND_AFTER[m.group(2)])
    for regex, way in ((_AGO_RE, "ago"), (_AHEAD_RE, "ahead")):
        for m in regex.finditer(low_text):
            count, unit = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            count = "1" if count in _ONE_SPAN else _canon_number(count)
            out.setdefault(f"{count} {unit}", set()).add(way)
    return {number: frozenset(ways) for number, ways in out.items()}


def signature(text: str) -> Signature:
    """Extract the anchors of ``text`` (pure; about 0.25 ms for a one-line prompt).

    Not cached here: the semantic tier keeps signatures per tenant scope
    (:class:`~deja.semantic.decision.PreparedText`), as a cache shared by every tenant
    would answer one tenant's prompt faster for another's having sent it.

    Accents are read as their letters ("Vieux Carr\u00e9" / "vieux carre"): the guards'
    words are ASCII letters, and a prompt typed without accents names the same thing. The
    words of other scripts are kept as written (:attr:`Signature.foreign`)."""
    return _signature(unaccented(text), foreign_words(text))


# an acronym written in capitals: "MFA", "GPA", "mRNA" (a lower-case lead letter), "SSRIs"
_ACRONYM_RE = re.compile(r"[a-z]?[A-Z]{2,6}s?")
# a short word in capitals, which the same letters in lower case may not mean ("IT" / "it")
_CAPITALS_RE = re.compile(r"[A-Z]{2,4}")
_LOWER_RE = re.compile(r"[a-z]")
_UPPER_RE = re.compile(r"[A-Z]")
# A minus sign right before a number is part of it ("-5", "\u22125"), after the start, a
# space or what opens or assigns a value; not after a letter or a digit ("COVID-19", a
# range "5-10").
_MINUS = "-\u2212"
_BEFORE_SIGN = " \t\n(=,:[<>$"
# ... and so is "minus" or "negative" said before it (unless it takes one number from
# another: :func:`_said_negative`)
_SIGN_WORDS = frozenset({"minus", "negative"})
# an operator taken as code ("<", "**"): no word character in it
_WORDLESS_RE = re.compile(r"\W+")
# What the order of symbols leaves out: punctuation, which prose puts anywhere, and
# backticks and quotation marks of any shape ("\u201ehello\u201c"), what the code and quote
# guards compare. (Brackets stay where they hold a symbol: "10 / (2 / 5)".)
_UNORDERED = str.maketrans("", "", "`.,;:!?\u2026\u201a\u201e\u201f\u2039\u203a\u00ab\u00bb")
_OPENING = {")": "(", "]": "[", "}": "{"}
_MAYBE_OPERATOR_RE = re.compile(r"[\[=!<>*&|^%~+\-/:?]")
# Capital letters each followed by a full stop ("U.S.", "U.K.", "E.U."): an acronym written
# with dots, the same name as without them. No match starts one letter into a run that a
# match could start before (the run from there ends where the longer one does, and fails
# where it fails), and a run is taken whole (a shorter one is followed by a capital): else
# "A.A.A...A.b" is read to its end from every letter, quadratic in its length.
_DOTTED_ACRONYM_RE = re.compile(r"(?<!\b[A-Z]\.)\b(?:[A-Z]\.){2,}+(?![A-Za-z0-9])")


def _symbol_order(rest: str, code: list[str]) -> str:
    """The symbols of ``rest`` (the text read so far, its code spans and quotes marked) in
    their order, punctuation aside (:data:`_UNORDERED`): an operator taken as code ("age >
    30") in its place, none of other code spans and quotes, which the literal guards
    compare (``os.path.join()`` is ``os.path.join``), nor of what the text reads as words
    ("2 * 3" is "2 times 3", "3am" a time of the clock), nor brackets around no symbol,
    which prose puts around anything ("open (https://example.com/a), please")."""
    if _MARK_RE.search(rest) is not None:

        def stand_in(m: re.Match[str]) -> str:
            mark = ord(m.group())
            if mark >= _QUOTE_MARK:
                return "x"
            operator = code[mark - _CODE_MARK]
            return operator if _WORDLESS_RE.fullmatch(operator) else "x"

        rest = _MARK_RE.sub(stand_in, rest)
    order = symbols_in_order(rest).translate(_UNORDERED)
    if not any(bracket in order for bracket in _OPENING):
        return order
    kept: list[str] = []
    for symbol in order:
        if kept and kept[-1] == _OPENING.get(symbol):
            kept.pop()  # a pair around no symbol
        else:
            kept.append(symbol)
    return "".join(kept)


def _signed(text: str, at: int) -> bool:
    """Is the number at ``at`` in ``text`` written with a minus sign (see :data:`_MINUS`)?"""
    return at > 0 and text[at - 1] in _MINUS and (at == 1 or text[at - 2] in _BEFORE_SIGN)


def _said_negative(toks: list[_Tok], i: int) -> bool:
    """Is the number at token ``i`` said negative in words ("at minus twenty degrees",
    "negative 5"), not what one takes from another ("10 minus 5", "x minus 5")?"""
    if i == 0 or toks[i - 1].low not in _SIGN_WORDS:
        return False
    if i == 1:
        return True
    before = toks[i - 2].low
    return (
        toks[i - 2].kind != "num"
        and len(before) > 1
        and before not in _NUMBER_WORDS
        and before not in _SCALES
    )


def _undot(m: re.Match[str]) -> str:
    # the last full stop stays: it may also end the sentence ("I live in the U.S. Can...")
    return m.group()[:-1].replace(".", "") + "."


def _signature(text: str, foreign: tuple[str, ...] = ()) -> Signature:
    """The signature of ``text`` (accents taken off) whose words of other scripts, read
    before, are ``foreign``."""
    quotes: list[str] = []
    code: list[str] = []

    def take_code(m: re.Match[str]) -> str:
        code.append(m.group().strip("`").strip())
        return _mark(_CODE_MARK, len(code) - 1)

    given = text

    if _MARK_RE.search(text) is not None:
        text = _MARK_RE.sub(" ", text)  # the text's own private-use characters are not marks
    if "." in text:
        text = _DOTTED_ACRONYM_RE.sub(_undot, text)  # "U.S." is "US", "U.K." is "UK"
    if "²" in text or "³" in text:
        text = text.replace("²", "^2").replace("³", "^3")  # "m/s²" is "m/s^2"
    rest = _CODE_RE.sub(take_code, text) if "`" in text else text
    ticked = tuple(_bare_words(c) for c in code) if code else ()

    def take_quote(m: re.Match[str]) -> str:
        inner = next(g for g in m.groups() if g is not None)
        quotes.append(" ".join(_MARK_RE.sub(" ", inner).lower().split()))
        return _mark(_QUOTE_MARK, len(quotes) - 1) + _marks_in(inner)

    rest = _feet_marks(_QUOTE_RE.sub(take_quote, _inch_marks(rest)))
    dates: list[tuple[int, str]] = []

    def take_iso(m: re.Match[str]) -> str:
        dates.append((m.start(), f"{int(m[1])}-{int(m[2])}-{int(m[3])}"))
        return " "

    def take_slash(m: re.Match[str]) -> str:
        year = int(m[3]) + (2000 if len(m[3]) == 2 else 0)
        dates.append((m.start(), f"{year}-{int(m[1])}-{int(m[2])}"))
        return " "

    if _CLOCK_WORDS_RE.search(rest.lower()) is not None:
        rest = _SAID_CLOCK_RE.sub(_said_clock, rest)
    rest = _CLOCK_RE.sub(_clock_hour, rest)
    rest = _ISO_DATE_RE.sub(take_iso, rest)
    rest = _SLASH_DATE_RE.sub(take_slash, rest)

    def take_ident(m: re.Match[str]) -> str:
        value = m.group()
        # plain ordinals and numbers with a unit ("3rd", "5km", "6h") are numbers, not ids
        unit = re.fullmatch(r"\d+(?:\.\d+)?([a-zA-Z]{1,4})", value)
        if re.fullmatch(r"\d+(?:st|nd|rd|th)", value) or (
            unit is not None and (unit[1].lower() in _GLUED_UNITS or unit[1] in _CASED_UNITS)
        ):
            return value
        rate = re.fullmatch(r"(\d+(?:\.\d+)?)([a-zA-Z]+/[a-zA-Z0-9^]+)", value)
        if rate is not None and rate[2].lower() in _UNIT_WORDS:
            return f" {rate[1]} {rate[2]} "  # "120km/h" is "120 km/h"
        # a thousand written "k" is the number ("a 300k loan" / "$300,000"; "2.5k" is left
        # to the tokenizer: the identifier is only its "5k")
        if unit is not None and unit[1] in "kK":
            decimal = re.search(r"\d\.$", m.string[: m.start()]) is not None
            return value if decimal else f" {int(value[:-1]) * 1000} "
        # one slash between two plain words is prose ("list/dictionary", "and/or") or a
        # unit ("km/h"), not a path: paths show a dot, digit, underscore or second slash;
        # a number before it makes a rate or a fraction ("$5/month", "24/7")
        if _PROSE_SLASH_RE.fullmatch(value) or _RATE_RE.fullmatch(value):
            return value
        if m.re is _IDENT_RE and m["ext"] is not None and value[1:].lower() in _COMMON:
            return value  # a full stop before a word, " .is it", is no file type
        low = value.lower()
        if low in _GAZETTEER or low in _NAME_ALIASES:
            return value  # a name with a digit ("pip3", "k8s") is left to the entity guard
        versioned = _VERSIONED_NAME_RE.fullmatch(low)
        if versioned is not None and versioned[1] in _GAZETTEER:
            return f" {versioned[1]} {versioned[2]} "  # "python3" is "Python 3"
        dotted = m["dotted"] if m.re is _IDENT_RE else None
        if dotted is not None and not _is_dotted_code(
            dotted, "(" in value or m.string.startswith("(", m.end())
        ):
            return value
        marks = _marks_in(value)  # a quote among a call's arguments
        code.append(_EMPTY_CALL_RE.sub("()", _MARK_RE.sub("", value)) if marks else value)
        return _mark(_CODE_MARK, len(code) - 1) + marks

    def take_operator(m: re.Match[str]) -> str:
        op = "".join(m.group().split())
        # a word, compared with the others of its group (not "=" named as an operator)
        if op in _ARITHMETIC and m["named"] is None:
            return f" {_ARITHMETIC[op]} "
        code.append(op)
        return f" {_mark(_CODE_MARK, len(code) - 1)} "

    rest = _VERSION_RE.sub(" ", rest)
    if "js" in rest or "JS" in rest or "Js" in rest:
        rest = _JS_NAME_RE.sub(_js_name, rest)
    if "/" in rest or "\\" in rest or "@" in rest:
        rest = _PATH_RE.sub(take_ident, rest)
    if "::" in rest:
        rest = _SCOPED_RE.sub(take_ident, rest)
    rest = _IDENT_RE.sub(take_ident, rest)
    if _MAYBE_OPERATOR_RE.search(rest) is not None:
        rest = _OPERATOR_RE.sub(take_operator, rest)
    symbol_order = _symbol_order(rest, code)
    literals_directed = False
    if len(code) + len(quotes) > 1:
        code, quotes, literals_directed = _literal_order(rest, code, quotes)
    toks = _scan(rest)
    lows = [t.low for t in toks]
    acronyms = frozenset(t.low for t in toks if _ACRONYM_RE.fullmatch(t.text))
    capitals = frozenset(t.low for t in toks if t.kind == "word" and _CAPITALS_RE.fullmatch(t.text))
    if capitals and _LOWER_RE.search(rest) is None:
        capitals = frozenset()
    phrases, longest = _phrases()

    numbers: list[str] = []
    number_at: list[int] = []  # the token index of each number
    unit_of: dict[int, str] = {}  # the unit right after (or the symbol before) a number
    loose: set[int] = set()  # where the loose numbers are
    quantity_units: list[tuple[int, str]] = []
    other_units: list[tuple[int, str]] = []
    consumed = [False] * len(toks)
    i = 0
    while i < len(toks):
        tok = toks[i]
        found = _date_at(toks, i)
        if found is not None:
            dates.append((tok.start, found[0]))
            for k in range(i, i + found[1]):
                consumed[k] = True
            i += found[1]
            continue
        low = tok.low
        if low in _DAY_NAMES:
            dates.append((tok.start, _DAY_NAMES[low]))
            consumed[i] = True
        elif low in _RELATIVE and i + 1 < len(toks) and lows[i + 1] in _PERIODS:
            dates.append((tok.start, f"{low} {lows[i + 1]}"))
            consumed[i] = consumed[i + 1] = True
            i += 2
            continue
        elif low in _MONTHS and low not in _STRICT_MONTHS:
            dates.append((tok.start, f"?-{_MONTHS[low]}-?"))
            consumed[i] = True
        i += 1

    i = 0
    while i < len(toks):
        if consumed[i]:
            i += 1
            continue
        tok = toks[i]
        value: str | None = None
        used = 1
        if tok.kind == "num":
            value = _canon_number(tok.low)
            if i + 1 < len(toks) and lows[i + 1] in _SCALES and _DECIMAL_RE.fullmatch(value):
                # "2 million" is 2000000 ("2 billion" another number, "50 thousand" "50k")
                value = _scaled(value, _SCALES[lows[i + 1]])
                used = 2
            if i + used < len(toks) and lows[i + used] in ("percent", "%") and "%" not in value:
                value += "%"
                used += 1
            if (_signed(rest, tok.start) or _said_negative(toks, i)) and value.strip("0.%"):
                value = "-" + value  # (-0 is 0)
        elif tok.low in _ORDINAL_WORDS:
            value = str(_ORDINAL_WORDS[tok.low])
        elif tok.low in _TIMES_WORDS:
            value = str(_TIMES_WORDS[tok.low])
        elif "-" in tok.low and (counted_compound := _number_compound(tok.low)) is not None:
            # "a fifty-word summary", "my three-year-old": the number, and the unit after
            value = str(counted_compound[0])
            unit = phrases.get((counted_compound[1],))
            if unit is not None:
                quantity_units.append((tok.start, unit[1]))
                unit_of[i] = unit[1]
        else:
            written = _written_number(toks, i)
            if written is not None:
                value, used = str(written[0]), written[1]
                if i + used < len(toks) and lows[i + used] in ("percent", "%"):
                    value += "%"
                    used += 1
                if _said_negative(toks, i) and value.strip("0%"):
                    value = "-" + value  # "minus twenty degrees" is "-20 degrees"
        if value is not None:
            numbers.append(value)
            number_at.append(i)
            if tok.low in _TIMES_WORDS:
                loose.add(i)
            for k in range(i, i + used):
                consumed[k] = True
            # a unit or currency right after the number (or a symbol right before) is
            # the quantity's own unit: it comes first in the unit order
            j = i + used
            cased = _CASED_UNITS.get(toks[j].text) if j < len(toks) else None
            if cased is not None:  # "8 Gb" is not "8 GB", "5 mW" not "5 MW"
                quantity_units.append((toks[j].start, cased))
                unit_of[i] = cased
                consumed[j] = True
            for size in range(min(longest, len(toks) - j), 0, -1) if cased is None else ():
                hit = phrases.get(tuple(lows[j : j + size]))
                if hit is not None:
                    quantity_units.append((toks[j].start, hit[1]))
                    unit_of[i] = hit[1]
                    for k in range(j, j + size):
                        consumed[k] = True
                    break
            if i > 0 and lows[i - 1] in ("$", "€", "£", "¥", "₹") and not consumed[i - 1]:
                quantity_units.append((toks[i - 1].start, phrases[(lows[i - 1],)][1]))
                unit_of[i] = phrases[(lows[i - 1],)][1]
                consumed[i - 1] = True
            i += used
            continue
        i += 1

    i = 0
    while i < len(toks):
        if consumed[i]:
            i += 1
            continue
        for size in range(min(longest, len(toks) - i), 0, -1):
            if any(consumed[i : i + size]):
                continue
            hit = phrases.get(tuple(lows[i : i + size]))
            if hit is None:
                continue
            kind, canon = hit
            if kind == "time":
                break
            if kind == "currency" and size == 1 and lows[i] in _AMBIGUOUS_CURRENCY:
                break
            if kind == "unit" and size == 1 and len(lows[i]) <= 2 and toks[i].text != lows[i]:
                break  # "M", "G", "L" as capitals are more often names than units
            quantity = i > 0 and lows[i - 1] in ("a", "an", "one", "per")
            (quantity_units if quantity else other_units).append((toks[i].start, canon))
            for k in range(i, i + size):
                consumed[k] = True
            i += size - 1
            break
        i += 1

    present = frozenset(lows)
    requested: tuple[str, ...] = ()
    if not present.isdisjoint(_REQUEST_VERBS):
        requested, counted = _requested(toks)
        if counted:  # "give me 1 example" asks for one thing as "give me an example" does
            numbers = [v for k, v in zip(number_at, numbers, strict=True) if k not in counted]
            number_at = [k for k in number_at if k not in counted]
    low_text = lows
    if not _ALIASES.keys().isdisjoint(lows) or "united" in present or "states" in present:
        toks, consumed = _expand_aliases(toks, consumed, rest)
        low_text = [t.low for t in toks]
    names: set[int] = set()
    if "nstall" in rest or "add" in rest or "npm i " in rest:
        starts = _installed_names(rest)
        names = {i for i, t in enumerate(toks) if t.start in starts}
    entities, qualified, directed, prefixed = _entities(toks, consumed, names)
    if prefixed:
        low_text = _put_after(low_text, prefixed)
    poles = _poles_of(_pole_words(present, lows))
    negated = any(w in _NEGATIONS or w.endswith("n't") for w in lows)
    plain, denies = _plain(lows)
    excludes = _excludes(lows)
    arrows = frozenset() if present.isdisjoint(_ARROW_WORDS) else _arrows(lows)
    units = [u for _, u in sorted(quantity_units)] + [u for _, u in sorted(other_units)]
    return Signature(
        all_numbers=tuple(numbers),
        measured=tuple(unit_of.get(k, "") for k in number_at),
        loose=frozenset(p for p, k in enumerate(number_at) if k in loose),
        dates=tuple(d for _, d in sorted(dates)),
        dates_told=bool(dates) and _told(rest, dates),
        units=tuple(units),
        quotes=tuple(quotes),
        code=tuple(code),
        entities=tuple(entities),
        entity_candidates=frozenset(entities),
        qualified=qualified,
        requested=requested,
        directed=directed,
        literals_directed=literals_directed,
        poles=poles,
        pole_groups=tuple(k for k, sides in enumerate(poles) if sides),
        arrows=arrows,
        negated=negated,
        plain=plain,
        denies=denies,
        framed=tuple(w for w in lows if w not in _FRAME_FREE),
        excludes=excludes,
        words=frozenset(_stem(w) for w in lows if w not in _STOP),
        said=said_words(lows),
        acronyms=acronyms,
        capitals=capitals,
        symbols=symbols_of(given),
        symbol_order=symbol_order,
        indents=_indentation(given) if "\n" in given else (),
        foreign=foreign,
        cased=tuple(sorted(_CASED_RE.findall(given))),
        speaker=_speaker(given) if "as a" in given.lower() else None,
        low_text=" ".join(low_text),
        bounds=tuple(_bounded(" ".join(low_text)).items()) if numbers else (),
        text=given,
        ticked=ticked,
        sequence=_sequence(given, entities),
    )


# a sequence a prompt lays out: 3 items or more between commas, "then" or arrows, and a
# word that says the order counts ("then", "order", "steps", "rank", "sort"; not "before",
# "after" or "first", which chat uses everywhere)
_SEQUENCE_SPLIT_RE = re.compile(r",|;|\bthen\b|->|→")
_SEQUENCE_MARK_RE = re.compile(r"\b(?:then|order|orders|steps?|sequence|rank|sort)\b|->|→")
_SEQUENCE_WORDS = frozenset(
    _plain_stem(w)
    for w in ["then", "order", "step", "steps", "sequence", "rank", "sort", "right", "correct"]
)
_SEQUENCE_ASIDE = frozenset(_plain_stem(w) for w in _STOP) | _SEQUENCE_WORDS
_SEQUENCE_WORD_RE = re.compile(r"[a-z]+")


def _sequence(text: str, entities: Iterable[str]) -> tuple[str, ...] | None:
    """The content words (stems, first time each; names aside, which a prompt moves
    freely: "In Python, sort a list, then..." / "Sort a list in Python, then...") of a
    prompt that lays out a sequence, in its order; ``None`` if it lays out none."""
    # (the text itself: the commas and arrows that part the steps)
    low_text = text.lower()
    if not _SEQUENCE_MARK_RE.search(low_text):
        return None
    if len(_SEQUENCE_SPLIT_RE.split(low_text)) < 3:
        return None
    aside = _SEQUENCE_ASIDE | {w for name in entities for w in name.split()}
    stems = (_plain_stem(w) for w in _SEQUENCE_WORD_RE.findall(low_text) if w not in aside)
    return tuple(dict.fromkeys(w for w in stems if w not in aside))


# How many things a request asks for: "give me an example" is one, "give me examples" or
# "list some examples" several. Read only after a verb that hands something over, used as
# a request (first in its sentence, or after "you" or "please"), so that "how to write a
# unit test" and "how to write unit tests" stay one question.
_DENIALS = frozenset({"not", "no", "never", "cannot", "unable"})


def _is_denial(w: str) -> bool:
    """Whether a word denies ("not", "never", "cannot", "unable", any "n't"): what makes a
    prompt's ``denies``."""
    return w in _DENIALS or w.endswith("n't")


_UNDENIED = {"cannot": "can", "unable": "able", "can't": "can", "won't": "will", "shan't": "shall"}
# "do" is left out of the plain words: "countries that use the euro" / "that don't use"
_DO = frozenset({"do", "does", "did", "don't", "doesn't", "didn't"})
# left out of ``Signature.framed``: words a rewording adds, drops or trades without
# changing what is asked ("how do I delete my account" / "how to delete an account")
_FRAME_FREE = _DO | frozenset([
    "a", "an", "the", "my", "your", "our", "their", "his", "her", "its", "this", "that",
    "these", "those", "some", "any", "i", "you", "me", "we", "us", "is", "are", "was",
    "were", "be", "am",
])  # fmt: skip


def _excludes(lows: list[str]) -> bool:
    """Does the prompt take something out ("all files except .txt", "apart from
    castling, can the king move two squares")? Not the speaker ("someone besides me",
    "countries other than mine": who else, not what is left out)."""
    for i, w in enumerate(lows):
        if w in _EXCLUSIONS:
            taken = lows[i + 1 : i + 2]
        elif i + 1 < len(lows) and (w, lows[i + 1]) in _EXCLUSION_PAIRS:
            taken = lows[i + 2 : i + 3]
        else:
            continue
        if not taken or taken[0] not in _SPEAKERS:
            return True
    return False


_SPEAKERS = frozenset(
    {"me", "mine", "myself", "us", "ours", "ourselves", "you", "yours", "yourself", "i", "we"}
)


_WITHOUT = _plain_stem("without")


def _plain(lows: list[str]) -> tuple[tuple[str, ...], bool]:
    """``lows`` stemmed, without negations (a negated verb kept as itself: "isn't" is
    "is") nor "do", and whether there were negations."""
    words: list[str] = []
    denies = False
    for i, w in enumerate(lows):
        if w == "no" and i and lows[i - 1] == "with" and words:
            # "with no receipt" is "without a receipt": no denial of the sentence
            words[-1] = _WITHOUT
            continue
        negation = _is_denial(w)
        denies = denies or negation
        if w in _DO:
            continue
        if negation:
            base = _UNDENIED.get(w, w[:-3] if w.endswith("n't") else None)
            if base:
                words.append(_plain_stem(base))
        else:
            words.append(_plain_stem(w))
    return tuple(words), denies


_ON_OFF = frozenset({"on", "off"})
_SWITCH_VERBS = frozenset([
    "turn", "turns", "turned", "turning", "switch", "switches", "switched", "switching",
    "toggle", "toggles", "toggled", "toggling", "flip", "flips", "flipped", "flipping",
])  # fmt: skip


_IN_OUT = frozenset({"in", "out"})
_IN_OUT_VERBS = frozenset(
    f"{stem}{end}"
    for stem, ends in [
        ("zoom", ("", "s", "ed", "ing")),
        ("log", ("", "s", "ged", "ging")),
        ("sign", ("", "s", "ed", "ing")),
        ("check", ("", "s", "ed", "ing")),
        ("opt", ("", "s", "ed", "ing")),
        ("cash", ("", "es", "ed", "ing")),
        ("plug", ("", "s", "ged", "ging")),
        ("scale", ("", "s", "d")),
        ("scaling", ("",)),
        ("clock", ("", "s", "ed", "ing")),
        ("fade", ("", "s", "d")),
        ("fading", ("",)),
        ("phase", ("", "s", "d")),
        ("phasing", ("",)),
    ]
    for end in ends
)
# particles that say where a verb goes ("turn off", "zoom in"), each with its verbs
_PARTICLES = ((_SWITCH_VERBS, _ON_OFF), (_IN_OUT_VERBS, _IN_OUT))
# asking for the answer alone: a brief answer ("give me the answer only, no explanation"
# is not "explain in detail")
_ANSWER_ALONE = (
    ("answer", "only"),
    ("only", "the", "answer"),
    ("just", "the", "answer"),
    ("no", "explanation"),
    ("no", "explanations"),
    ("without", "explanation"),
    ("without", "explaining"),
)
_ANSWER_ALONE_WORDS = frozenset(phrase[-1] for phrase in _ANSWER_ALONE)
_ANSWER_ALONE_STARTS = frozenset(phrase[0] for phrase in _ANSWER_ALONE)


def _pole_words(present: frozenset[str], lows: list[str]) -> frozenset[str]:
    """The words whose poles a prompt has: ``present``, with the particles ("on"/"off",
    "in"/"out") only where a verb sets them, and "briefly" where it asks for the answer
    alone (:data:`_ANSWER_ALONE`)."""
    words = present
    if not present.isdisjoint(_DEGREES):
        words = _graded(words, lows)
    for verbs, particles in _PARTICLES:
        if not words.isdisjoint(particles):
            words = (words - particles) | _set_by(lows, verbs, particles)
    if not present.isdisjoint(_MOVED) and not present.isdisjoint(_MOTION_VERBS):
        words = words | _moved(lows)
    if not present.isdisjoint(_ANSWER_ALONE_WORDS) and _asks_answer_alone(lows):
        words = words | {"briefly"}
    if not present.isdisjoint(_TIMING_WORDS):
        words = words | _timing(lows)
    if "too" in present:
        words = words | _too(lows)
    if not present.isdisjoint(_POLE_PHRASE_STARTS):
        words = _phrased(words, lows)
    if "with" in present and "no" in present:
        words = _with_none(words, lows)
    return words


def _with_none(words: frozenset[str], lows: list[str]) -> frozenset[str]:
    """``words`` with "without" where "with no" says it ("return an item with no receipt"
    / "without a receipt"). "With" stays: "with" alone is too loose a side to refuse on
    ("I'm stranded with no cash" / "a problem with my card", Banking77, one intent)."""
    if any(x == "with" and y == "no" for x, y in itertools.pairwise(lows)):
        return words | {"without"}
    return words


def _phrased(words: frozenset[str], lows: list[str]) -> frozenset[str]:
    """``words`` with the two-word pole phrases of ``lows`` as their hyphenated word
    ("medium rare": "medium-rare"), in place of the words of them that name a side of the
    same group (:data:`_POLE_PHRASES`)."""
    found = {
        phrase
        for x, y in itertools.pairwise(lows)
        if x in _POLE_PHRASE_STARTS and (phrase := f"{x}-{y}") in _POLE_PHRASES
    }
    if not found:
        return words
    parts = frozenset().union(*(_POLE_PHRASES[phrase] for phrase in found))
    return (words - parts) | found


_TOO = {"much": _TOO_MUCH, "many": _TOO_MUCH, "little": _TOO_LITTLE, "few": _TOO_LITTLE}


def _too(lows: list[str]) -> set[str]:
    """More or less than is right, said with "too": "too much yeast" / "too little yeast"."""
    return {_TOO[after] for w, after in itertools.pairwise(lows) if w == "too" and after in _TOO}


# a verb of moving a thing or oneself, and where "into" or "out of" after it sends it:
# "bring alcohol into Dubai" / "out of Dubai", "move money into my savings" / "out of"
# (not "out of" anywhere: "I'm out of data" is no way out of anything)
_MOTION_VERBS = frozenset(
    f"{stem}{end}"
    for stem, ends in [
        ("bring", ("", "s", "ing")), ("brought", ("",)), ("take", ("", "s")),
        ("taking", ("",)), ("took", ("",)), ("move", ("", "s", "d")), ("moving", ("",)),
        ("transfer", ("", "s", "red", "ring")), ("copy", ("", "ing")), ("copies", ("",)),
        ("copied", ("",)), ("get", ("", "s", "ting")), ("got", ("",)),
        ("carry", ("", "ing")), ("carries", ("",)), ("carried", ("",)),
        ("send", ("", "s", "ing")), ("sent", ("",)), ("put", ("", "s", "ting")),
        ("fly", ("", "ing")), ("flies", ("",)), ("flew", ("",)), ("drive", ("", "s")),
        ("driving", ("",)), ("drove", ("",)), ("ship", ("", "s", "ped", "ping")),
        ("import", ("", "s", "ed", "ing")), ("export", ("", "s", "ed", "ing")),
        ("pull", ("", "s", "ed", "ing")), ("drag", ("", "s", "ged", "ging")),
        ("load", ("", "s", "ed", "ing")), ("roll", ("", "s", "ed", "ing")),
    ]
    for end in ends
)  # fmt: skip
_MOVED = frozenset({"into", "out"})
_MOVED_WITHIN = 4  # words after the verb


def _moved(lows: list[str]) -> set[str]:
    """Where the verbs of moving in ``lows`` send a thing: ``_MOVED_INTO`` or
    ``_MOVED_OUT_OF`` (both where a prompt says both: "out of savings into checking"). Their
    own pole group: "cash in my account" or "log in" say nothing of it."""
    out: set[str] = set()
    for i, w in enumerate(lows):
        if w not in _MOTION_VERBS:
            continue
        for k in range(i + 1, min(i + 1 + _MOVED_WITHIN, len(lows))):
            if lows[k] == "into":
                out.add(_MOVED_INTO)
                break
            if lows[k] == "out" and lows[k + 1 : k + 2] == ["of"]:
                out.add(_MOVED_OUT_OF)
                break
    if len(out) == 1 and "into" in lows and "out" in lows:
        return {_MOVED_INTO, _MOVED_OUT_OF}
    return out


# what else says "before" or "after" another event: "prior to surgery", "ahead of a
# storm", "in the days leading up to", "up until the flight", "the preceding week" /
# "following surgery", "subsequent to", "afterwards"
_TIMING_WORDS = frozenset(
    {"prior", "ahead", "leading", "until", "till", "preceding"}
    | {"following", "subsequent", "afterwards", "afterward"}
)
# ... but not "following" as "the following text" or "am I following", a verb
_NOT_BEFORE_FOLLOWING = frozenset([
    "the", "this", "these", "those", "a", "an", "my", "your", "am", "is", "are", "was",
    "were", "be", "been", "being", "i'm", "you're", "we're", "they're", "he's", "she's",
    "stop", "start", "keep", "quit", "not", "who", "whom", "people", "accounts",
])  # fmt: skip


# "up until now" tells the user's story ("it worked fine up until now"), as "ahead of
# time" says "in advance": neither names an event the question is before
_STORY_NOW = frozenset({"now", "this", "today", "recently", "yesterday", "then"})


# "prior" alone after a span says "before": "how many days prior should I book"
_SPANS_PRIOR = frozenset(
    f"{unit}{end}"
    for unit in ("minute", "hour", "day", "week", "month", "year")
    for end in ("", "s")
)


def _timing(lows: list[str]) -> set[str]:
    """The sides of "before" / "after" that ``lows`` says with :data:`_TIMING_WORDS`."""
    out: set[str] = set()
    for i, w in enumerate(lows):
        after = lows[i + 1] if i + 1 < len(lows) else ""
        before = lows[i - 1] if i else ""
        if (
            (w == "prior" and (after == "to" or before in _SPANS_PRIOR))
            or (w == "ahead" and after == "of" and lows[i + 2 : i + 3] != ["time"])
            or (w == "leading" and after == "up" and lows[i + 2 : i + 3] == ["to"])
            or (w in ("until", "till") and before == "up" and after not in _STORY_NOW)
            or w == "preceding"
        ):
            out.add("before")
        elif (
            (w == "subsequent" and after == "to")
            or w in ("afterwards", "afterward")
            or (w == "following" and after and before not in _NOT_BEFORE_FOLLOWING)
        ):
            out.add("after")
    return out


def _asks_answer_alone(lows: list[str]) -> bool:
    """Does a prompt of lower-case tokens ``lows`` ask for the answer alone?"""
    for i, w in enumerate(lows):
        if w in _ANSWER_ALONE_STARTS and any(
            tuple(lows[i : i + len(phrase)]) == phrase for phrase in _ANSWER_ALONE
        ):
            return True
    return False


def _graded(words: frozenset[str], lows: list[str]) -> frozenset[str]:
    """The pole words with "more"/"most"/"less"/"least" read with the pole word after
    them: "more dangerous" is "dangerous" (and not "more" of anything, against "riskier"),
    "less healthy" and "least healthy" the other side, "unhealthy" (against "healthier" or
    "healthiest"), "least expensive" "cheap"."""
    out = set(words)
    for w, after in itertools.pairwise(lows):
        if w in _DEGREES and after in _OPPOSITES:
            out.discard(w)
            if w in ("less", "least"):
                out.discard(after)
                out.add(_OPPOSITES[after])
    return frozenset(out)


def _set_by(lows: list[str], verbs: frozenset[str], particles: frozenset[str]) -> frozenset[str]:
    """The particles that ``verbs`` set ("turn it off", "switch on dark mode", "zoom in on
    the map"): the first one in the four words after the verb. Any other "on" or "in" is a
    preposition."""
    out: set[str] = set()
    for i, w in enumerate(lows):
        if w in verbs:
            for later in lows[i + 1 : i + 5]:
                if later in particles:
                    out.add(later)
                    break
    return frozenset(out)


_REQUEST_VERBS = frozenset([
    "give", "show", "list", "provide", "suggest", "recommend", "share", "tell", "name",
    "generate", "write", "create",
])  # fmt: skip
_REQUEST_BEFORE = frozenset({"you", "please", "pls", "just"})
_ONE = frozenset({"a", "an", "one", "single"})
_SEVERAL = frozenset({"some", "several", "few", "more", "multiple", "various", "many"})
# after "a": several things ("a list of examples", "a few ideas") or no count ("a bit")
_A_SEVERAL = frozenset([
    "bunch", "collection", "couple", "few", "handful", "list", "lot", "number", "range",
    "selection", "series", "set", "variety",
])  # fmt: skip
_DETERMINERS = frozenset([
    "all", "any", "each", "every", "her", "his", "its", "my", "no", "our", "that", "the",
    "their", "these", "this", "those", "your",
])  # fmt: skip
_A_NONE = frozenset({"bit", "little", "hand", "moment", "second", "minute"})
# words that end the noun a request asks for ("an example *of* a metaphor")
_NOUN_END = frozenset([
    "about", "and", "as", "at", "by", "for", "from", "how", "in", "like", "of", "on", "or",
    "that", "to", "using", "what", "when", "where", "which", "who", "why", "with",
])  # fmt: skip
# singular words that end in "s"
_NOT_PLURAL = frozenset([
    "alias", "atlas", "bias", "canvas", "economics", "ethics", "gas", "lens", "means",
    "mathematics", "news", "physics", "politics", "series", "species", "statistics",
])  # fmt: skip


def _is_plural(word: str) -> bool:
    return (
        len(word) > 3
        and word[-1] == "s"
        and not word.endswith(("ss", "us", "is", "'s"))
        and word not in _NOT_PLURAL
    )


def _requested(toks: list[_Tok]) -> tuple[tuple[str, ...], set[int]]:
    """How many things each request in ``toks`` asks for ("1" or "n": several), and where
    a request counts one thing with the digit "1"."""
    out: list[str] = []
    counted: set[int] = set()
    n = len(toks)
    for i, tok in enumerate(toks):
        if tok.low not in _REQUEST_VERBS:
            continue
        if not (tok.initial or (i > 0 and toks[i - 1].low in _REQUEST_BEFORE)):
            continue
        j = i + 1
        if j < n and toks[j].low in ("me", "us") and not toks[j].initial:
            j += 1
        if j >= n or toks[j].initial:
            continue
        count = ""
        det = toks[j].low
        if det in _DETERMINERS:
            continue  # "show me my transactions", "list the steps": no count
        if det in _ONE or det == "1":
            count = "1"
            if det == "1":
                counted.add(j)
            j += 1
            if j < n and toks[j].low in _A_SEVERAL:
                count = "n"
            elif j < n and toks[j].low in _A_NONE:
                continue
        elif det in _SEVERAL:
            count = "n"
            j += 1
        # the noun: up to four plain words, the last one before a word that ends it
        k = j
        while (
            k < n
            and k - j < 4
            and toks[k].kind == "word"
            and toks[k].text.islower()
            and toks[k].low not in _NOUN_END
            and not toks[k].initial
        ):
            k += 1
        if k == j or (k - j == 4 and k < n and toks[k].low not in _NOUN_END):
            continue
        if not count and _is_plural(toks[k - 1].low):
            count = "n"
        if count:
            out.append(count)
    return tuple(out), counted
