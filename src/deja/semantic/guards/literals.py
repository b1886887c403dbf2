"""Quotes and code spans: the expressions that find them (quotes of any shape, backticks,
identifiers, paths, URLs, e-mail addresses), inch and feet marks, and the private-use
marks that keep their place in the text so that their order can be read.
"""

from __future__ import annotations

import re

from deja.semantic.guards.words import _GAZETTEER

# Double quotes are read whatever their shape: typed ("), typographic (“ ”), low („), or a
# closing mark used to open (”::”, as autocorrect leaves it): text quoted one way on one
# side and another way on the other is the same quote. Single curly quotes keep their
# pairing: a lone right single quote is an apostrophe. (A quote's text holds no opening
# mark of its own kind: a line of unclosed "\u2018" would be scanned once per mark.)
_DQ = '"\u201c\u201d\u201e\u201f'
_QUOTE_RE = re.compile(
    r"""(?:(?<![\w])'(?P<s>[^'\n]*?(?:\w'\w[^'\n]*?)*)'(?![\w]))"""  # 'I don't know'
    rf"""|[{_DQ}](?P<d>[^{_DQ}\n]+)[{_DQ}]|\u2018(?P<t>[^\u2018\u2019\n]+)\u2019"""
)
# A "v" before a dotted number is the word "version": "v2.10.0" is "version 2.10.0".
# Undotted ones ("v8", "V2") stay identifiers.
# (Not inside a path: "/docs/v2.10.0/x" keeps its segment.)
_VERSION_RE = re.compile(r"(?<!/)\b[vV](?=\d+(?:\.\d+)+\b)")
_CODE_RE = re.compile(r"```.*?```|`[^`\n]+`", re.DOTALL)
# Identifiers come in two passes: addresses and paths first (only in a text with a slash,
# backslash or "@", which most prompts lack: one regex with every alternative makes the
# scan of every prompt ~30% slower), then names.
_PATH_RE = re.compile(
    r"""
    https?://\S*[^\s.,;:!?)\]'"]                   # URLs (not a trailing "." "," ")")
    | (?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+     # e-mail addresses
    | (?<![\w/~.\\])(?:(?:~|\.\.?)(?=/)(?:/(?:\.\.?(?=/)|[\w.-]*[\w-]))+  # ~/.bashrc ../x
      | (?=/[A-Za-z_.])(?:/(?:\.\.?(?=/)|[\w.-]*[\w-])){2,}             # /etc/hosts
      | [A-Za-z]:\\[\w.\\-]*[\w-])                                      # C:\Users\me
    | (?<![\w/.-])(?:[\w.-]+/)+[\w.-]*[\w-]        # src/main.py
    """,
    re.VERBOSE,
)
_IDENT_RE = re.compile(
    r"""
    (?P<dotted>(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?:\([^()\n]{0,40}\))?(?!\w)
                                                   # os.path.join, df.groupby(key), fs.ls
    | \b[A-Za-z_]\w*(?:\((?!e?s\))[^()\n]{0,40}\)|(?=\((?!e?s\))))
                                                   # call(), print(x); not "file(s)"
    | \b\w*_\w+\b                                  # snake_case
    | (?<!\w)--?[a-z][\w-]*                        # --flag
    | \b(?=\w*\d)(?=\w*[A-Za-z])\w{2,}\b           # 2FA, x86, A1234, ES2015
    | (?P<ext>\.(?<![\w.]\.)(?:[a-z][a-z0-9]{1,11}|[A-Z][A-Z0-9]{1,11})\b)(?![.\w])
                                                   # .docx, .PDF, .gitignore (file types)
    """,
    re.VERBOSE,
)


# Scoped names (C++, Rust, Ruby, PHP): ``std::vector``, ``Foo::~Foo()``, ``a::b::c``. Only
# in a text with "::" (another alternative in ``_IDENT_RE`` costs every prompt ~15%).
_SCOPED_RE = re.compile(
    r"(?<![\w:])[A-Za-z_]\w*(?:::~?[A-Za-z_]\w*)+(?:\([^()\n]{0,40}\))?(?![\w:])"
)


# Operators and subscripts, read as code ("== vs ===", "a[::-1]", "2x + 6 = 14"; chained
# or with ", " between indices, "m[i][j]" is not "m[i, j]", which is "m[i,j]"): a run of
# two or more operator characters where it stands alone; one character only between two
# operands (a number, a single letter, a code mark), and "-" only with spaces round it (a
# hyphen, a range or a dash is prose); "/" never alone (fractions, rates, "and/or"). The
# arithmetic ones and "=" are read as words ("2 * 3" is "2 times 3", "r = 5" "r equals 5":
# ``_ARITHMETIC``), so that a prompt in words still matches; but a bare "=" named beside
# another operator ("the difference between = and ==") is the operator itself.
_OPERAND = r"[\d\ue000-\uefff]|\b[A-Za-z]"
_OPERATOR_RE = re.compile(
    rf"""
    (?<![\w\[])[A-Za-z_]\w*(?:\[[^\]\s]{{1,24}}(?:,\s[^\]\s]{{1,24}}){{0,3}}\]){{1,3}}
                                                      # a[::-1], arr[0], m[i][j], m[i, j]
    | (?<![=!<>*&|^%~+\-/:?])
      (?:===|!==|==|!=|<=|>=|\*\*|//|&&|\|\||:=|\+=|-=|\*=|/=|<<|>>)
      (?![=!<>*&|^%~+\-/:]|\?(?!\s|$))                               # ==, **, &&
    | (?<={_OPERAND})\s*[+*=<>%]\s*(?=[\d\ue000-\uefff(]|[A-Za-z]\b)   # x = 5, 2*3
    | (?P<named>(?:(?<=\bbetween\s)|(?<=\band\s)|(?<=\bor\s)|(?<=\bvs\s)|(?<=\bversus\s))
      =(?=\s)|(?<=\s)=(?=\s+(?:and|or|vs|versus)\b))               # "between = and =="
    | (?<={_OPERAND})\s+-\s+(?=[\d\ue000-\uefff(]|[A-Za-z]\b)          # 2x - 6
    """,
    re.VERBOSE,
)
_ARITHMETIC = {"+": "plus", "-": "minus", "*": "times", "=": "equals", "%": "modulo"}
_PROSE_SLASH_RE = re.compile(r"[A-Za-z]+/[A-Za-z]+")
# A number, a slash and one word or number is a rate or a fraction ("$5/month", "24/7",
# "1/2"), not a path: its numbers are read as numbers.
_RATE_RE = re.compile(r"\d+(?:[.,]\d+)?/(?:[A-Za-z]+|\d+(?:\.\d+)?)")
# A call's arguments are part of its value ("print(x)" is not "print(y)"); a call written
# without them names the function whatever its arguments ("df.groupby()", "df.groupby").
_CALL_RE = re.compile(r"([\w.]+)\((.*)\)", re.DOTALL)
_EMPTY_CALL_RE = re.compile(r"\(\s+\)")

# Code spans and quotes leave a mark in the text where they stood (a private-use character
# per span, numbered), so that their order and the words between them can be read after
# every pass: "convert `list` to `tuple`" is directed, "use `a` and `b`" is not.
_CODE_MARK = 0xE000
_QUOTE_MARK = 0xE800
_MARK_SPAN = 0x800  # marks per kind
_MARK_RE = re.compile("[\ue000-\uefff]")
# the words between two marks that give them a direction or an order (as ``_CONNECTORS``
# for names, maybe after one noun: "convert a `.docx` file to `.pdf`", "call `savefig()`
# before `show()`"), and "from" before a mark
# ("migrate from /etc/a ...")
_LITERAL_GAP_RE = re.compile(
    r"\s*(?:(?!and\b|or\b)\w+\s+)?"
    r"(?:to|into|vs\.?|versus|than|from|before|after|then|->|=>|\u2192)\s+"
    r"(?:(?:a|an|the)\s+)?",
    re.IGNORECASE,
)
_FROM_BEFORE_RE = re.compile(r"\bfrom\s+(?:(?:a|an|the)\s+)?$", re.IGNORECASE)


def _mark(base: int, index: int) -> str:
    return f" {chr(base + index)} " if index < _MARK_SPAN else " "


def _marks_in(text: str) -> str:
    """The marks inside ``text`` (a span taken whole keeps those it swallowed)."""
    return "".join(_MARK_RE.findall(text))


def _literal_order(
    rest: str, code: list[str], quotes: list[str]
) -> tuple[list[str], list[str], bool]:
    """Code spans and quotes in text order, and whether a connector orders them."""
    code_at: list[str] = []
    quotes_at: list[str] = []
    directed = False
    prev_end = -1
    for m in _MARK_RE.finditer(rest):
        k = ord(m.group())
        if k >= _QUOTE_MARK:
            quotes_at.append(quotes[k - _QUOTE_MARK])
        else:
            code_at.append(code[k - _CODE_MARK])
        if not directed:
            start = m.start()
            directed = (
                prev_end >= 0 and _LITERAL_GAP_RE.fullmatch(rest, prev_end, start) is not None
            ) or _FROM_BEFORE_RE.search(rest[max(0, start - 12) : start]) is not None
            prev_end = m.end()
    # (a text with thousands of spans runs out of marks: the rest keep extraction order)
    if len(code_at) < len(code):
        code_at += code[_MARK_SPAN:]
    if len(quotes_at) < len(quotes):
        quotes_at += quotes[_MARK_SPAN:]
    return code_at, quotes_at, directed


# Dotted abbreviations with a part longer than two letters (shorter ones go by shape).
_DOTTED_ABBREVIATIONS = frozenset(
    ["b.arch", "m.arch", "b.com", "m.com", "b.tech", "m.tech", "m.phil", "d.phil", "b.pharm"]
)


def _is_dotted_code(name: str, call: bool) -> bool:
    """Is the dotted name ``name`` (``os.path.join``, ``e.g``, ``node.js``) code?

    A call (``a.b()``, ``a.b(x)``) always is. Otherwise dotted abbreviations are not:
    they cut words to one or two letters with at least one single letter (``e.g``,
    ``i.e``, ``U.S``, ``a.m``, ``Ph.D``, ``M.Sc``), or are listed above; nor are the
    technologies of the gazetteer (``node.js``), left to the entity guard. Everything
    else is: an attribute path (``os.path.join``, ``fs.ls``, ``Split.TRAIN``), a file
    name (``README.md``, ``index.js``) or a domain (``amazon.com``), each one value that
    two prompts must share. A missing space after a full stop ("card.What") reads as code
    too, as it read as a name before.
    """
    if call:
        return True
    low = name.lower()
    parts = low.split(".")
    if all(len(p) <= 2 for p in parts) and any(len(p) == 1 for p in parts):
        return False
    return low not in _DOTTED_ABBREVIATIONS and low not in _GAZETTEER


# A digit then a double quote is an inch mark, not a quote ("a 12" pizza"), unless it closes
# a quote left open ('"iPhone 12"'); and a digit then a single quote before inches is feet
# (5'10"). Double primes are inch marks wherever they follow a digit.
_DIGIT_MARK_RE = re.compile(rf"\d[{_DQ}\u2033]")
_INCH_RE = re.compile(rf"[{_DQ}\u2033\n]")
_FEET_RE = re.compile(r"(?<=\d)['\u2032](?=\s?\d+(?:\.\d+)?\s?[\"\u201d\u2033])")


def _inch_marks(text: str) -> str:
    """``text`` with its inch and feet marks written as words (``12"`` -> ``12 inches``)."""
    if _DIGIT_MARK_RE.search(text) is None:
        return text
    text = _FEET_RE.sub(" feet ", text)
    out: list[str] = []
    last = 0
    open_quote = False
    for m in _INCH_RE.finditer(text):
        mark = m.group()
        if mark == "\n":
            open_quote = False  # quotes never span lines
        elif (
            m.start() > 0 and text[m.start() - 1].isdigit() and (mark == "\u2033" or not open_quote)
        ):
            out.append(text[last : m.start()])
            out.append(" inches ")
            last = m.end()
        elif mark != "\u2033":
            open_quote = not open_quote
    out.append(text[last:])
    return "".join(out)


# A digit then a single quote (or prime) left over once quotes are read is feet: "I'm 6'
# tall" is "6 feet" (not "press '5'" or "'iPhone 12'", quotes; "5'10\"" is read above).
_FEET_ALONE_RE = re.compile(r"(?<![\w'\u2018.])(\d+(?:\.\d+)?)['\u2032](?![\w'\u2032])")


_DIGIT_QUOTE_RE = re.compile(r"\d['\u2032]")


def _feet_marks(text: str) -> str:
    if _DIGIT_QUOTE_RE.search(text) is None:
        return text
    return _FEET_ALONE_RE.sub(r"\1 feet ", text)


# "React.js", "reactjs" and "React" name one technology: a ".js" after a technology of the
# gazetteer is dropped ("node" alone is a common word: "nodejs" is written "node.js").
_JS_NAME_RE = re.compile(r"(?<![\w.])([A-Za-z]+)\.?js\b(?!\.\w)", re.IGNORECASE)


def _js_name(m: re.Match[str]) -> str:
    name = m[1]
    low = name.lower()
    if low == "node":
        return "node.js"
    return name if low in _GAZETTEER else m.group()


def _bare_words(text: str) -> str:
    """``text`` as lower-case words without backticks or the punctuation that ends a
    clause, one space apart: how a code span reads written bare in prose."""
    return " ".join(w.rstrip(".,;:!?").strip("\"'") for w in text.replace("`", " ").lower().split())
