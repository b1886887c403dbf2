"""Guards: the facts two prompts must share before one's answer may serve the other.

An embedding says "convert 5 km to miles" and "convert 8 km to miles" mean nearly the same
thing (cosine 0.95); they do not share an answer. Guards are pure functions over the text
that extract the *anchors* of a prompt and compare them, in order:

* numbers (digits with separators, decimals, ``#1234``, a minus sign after a space, the
  start or what opens or assigns a value ("-5" is not "5"; "COVID-19" and "5-10" carry
  none), ordinals, written forms like
  "twenty-five", "a hundred", "two dozen", "a pair of" or "twice", percentages, versions
  such as ``v2.10.0``, rates and fractions such as ``$5/month``, ``24/7`` or ``1/2``;
  currency amounts as number + currency; a scale word after digits is part of the number,
  "2 million" is 2000000 and "50 thousand" "50k"; a time of the clock in words is the
  clock's, "noon" is "12pm" and "quarter to 6" "5:45"), and how many things a request asks
  for ("give me an example" is one, "give me examples" several; compared where both prompts ask),
  and how a number both prompts hold is bounded, where both bound it ("up to 3000 mg" /
  "more than 3000 mg", "exactly 3" / "more than 3", "50 or more" / "fewer than 50"; "100
  days ago" / "in 100 days");
* dates (``March 15, 2030``, ``15 March 2030``, ``2030-03-15``, ``3/15/2030``; weekdays,
  "Tuesdays" as "Tuesday", and relative days such as ``tomorrow`` or ``next week``); a
  relative date that a prompt only tells as part of the user's story ("I lost my phone
  yesterday, what can I do?") is no date asked about, against a prompt without one;
* units and currencies, source before target (``15 cups in ml`` == ``how many ml is 15 cups``
  but ``km to miles`` != ``miles to km``; a digit then ``'`` is feet, ``6'``; letter case
  names some units after a number: ``8 Gb`` is gigabits, ``8 GB`` gigabytes, ``5 mW`` is
  not ``5 MW``);
* quoted strings (any double-quote shape; a digit then ``"`` is an inch mark, ``12"``) and
  code spans (backticks, identifiers such as ``os.path.join``, ``std::vector``,
  ``df.groupby()``, ``print(x)``, ``snake_case`` or ``2FA``, file names and types
  (``.docx``), paths such as ``/etc/hosts`` or ``~/.bashrc``, URLs and e-mail addresses
  without a trailing ``.``/``,``/``)``, but not dotted abbreviations such as ``e.g.`` or
  ``U.S.``; subscripts such as ``arr[i][j]`` or ``arr[i, j]``; compared without letter
  case or a call's ``()``, with a call's short arguments where both prompts give some:
  ``print(x)`` != ``print(y)``); compared as sets,
  but in order when a connector joins two of them ("convert `list` to `tuple`", "from
  /etc/a to /etc/b"); a span in backticks is the same words written bare on the other side
  ("run `git rebase -i`" == "run git rebase -i");
* named entities, found by heuristics (capitalised words that are not common words,
  acronyms, camel case, ``C++``), a small gazetteer of places, languages, technologies and
  developer tools that users often type in lower case (``git``, ``pip``, ``kubectl``;
  ``React.js`` is ``React``; ``NYC``, ``LA``, ``SF``, ``UK`` and ``US``/``USA`` are the
  full names), hyphenated package and model names (``scikit-learn``, ``react-dom``,
  ``gpt-4``; not prose such as "well-known") and the packages of an install command
  (``pip install requests``); a possessive or a comma ends a name ("Google's Android",
  "Visa, Mastercard"); a place qualifier after a name is part of it ("New York City" !=
  "New York state"), unless the other prompt leaves it out ("New York"); a name said
  shorter ("Carlsen" / "Magnus Carlsen"; not "Korea" / "North Korea") or mistyped
  ("Theseus" / "thesius") is the same name; compared case-insensitively and in order,
  but for a language whose lower-case letters are an everyday word ("to Polish" / "to
  polish", in a prompt whose letter case says something);
* polarity and direction words (increase/decrease, high/low, before/after, buy/sell,
  max/min, enable/disable, send/receive, safer/more dangerous, borrow/lend, raw/cooked,
  legal/illegal, beginner/expert, client/server, debit/credit, domestic/international,
  brief/detailed, formal/casual, narrow/wide, dark/light, full-time/part-time...;
  "prior to", "days prior", "ahead of", "leading up to" and "up until" say "before",
  "following" "after"; "too much" / "too little"; a parent / a child of someone
  ("Queen Victoria's mother" / "daughter"); "into" / "out of" after a verb of moving
  ("bring alcohol into Dubai" / "out of Dubai");
  "less"/"least" before one says its other side: "less healthy" is "unhealthy", and
  before any other word it is no "-est": "the least dense" / "the densest";
  "turn it on"/"off" but not the preposition "on"; the same words joined by
  "to"/"into"/"than" the other way round: "string to int" / "int to string", "a pdf to a
  word document" / "a word document to a pdf"), groups of alternatives (times of day,
  seasons, meals, diets, roles such as tenant/landlord), and, between prompts otherwise
  word for word the same, a swapped quantifier, modal or preposition ("all"/"some",
  "must"/"can", "to"/"from", "within"/"after", "only"/"also") or two words trading
  places ("substitute soda for powder" / "powder for soda"; not around "and"); one thing
  named by another letter ("the x-axis" / "the y-axis"); the modal opening a yes/no
  question ("can I" / "should I"); questions about the same words opening with who /
  when / where / why; between near-duplicates (2 other content words apart at most), all
  of something against a part of it ("close all tabs" / "close one tab", "a whole
  pizza" / "a slice of pizza", "a single interface" / "a range of interfaces") and
  required against allowed ("must my dog get" / "can my dog get"); two parties named the other
  way round (interviewer / candidate, owner / member, mother / baby...); who the prompt
  asks as ("As a coach, ..." / "As a player, ..."); between near-duplicates, needed
  against allowed or how to get it ("do I need a visa" / "can I get a visa"), one against
  a bundle ("a ticket" / "family tickets"), the one who acts trading places with the one
  acted on ("can my employer see my history" / "can I see my employer's history"; "who
  killed Caesar" / "who did Caesar kill"), two steps the other way round ("heat the pan
  before adding oil" / "add oil before heating the pan"; not one order told from each
  end: "brush before flossing" / "floss after brushing"), "the" one against "the" list
  after a superlative ("the largest moon" / "the largest moons") or of a kind the one
  does not name ("the capital of Australia" / "the state capitals"), a particle against
  "to" and a target ("round half up" / "round half to even") and the word a question asks
  about ("the plural of mouse" / "of mice"); when against whether ("When will the
  iPhone 16 be released?" / "Has the iPhone 16 been released?"), coming to be against
  being ("get pregnant" / "be pregnant") and a verb's particle traded ("carry out" /
  "carry over");
* symbols: two prompts of the same words must have their symbols in the same order
  ("age > 30" / "age < 30", "HEAD~1" / "HEAD^1"; punctuation, quotes and code spans
  aside), their code spans in the same order ("f(g(x))" / "g(f(x))"), the word a "what
  does X mean" asks about written alike ("TODO!" / "TODO:") and their lines indented
  alike (by rank: 2 or 4 spaces a level are one); and a text whose writing a prompt asks
  about after a colon ("Is this sentence correct: ...") punctuated alike ("Let's eat
  grandma" / "Let's eat, grandma");
* script: the words of a mostly Latin prompt written in another script ("Translate 你好
  into English") must be the same on both sides (a prompt mostly in another script never
  reaches the guards: :meth:`deja.semantic.SemanticCache.query`);
* contradiction: one prompt is the other word for word with a negation added or removed
  ("planets that have rings" / "planets that don't"), or "still" said as "no longer"
  ("is Pluto still a planet" / "no longer a planet"); and negation at all (not, no,
  never, -n't; off by default);
* qualifier: one prompt is the other word for word with a condition or scope added, a
  phrase led by a preposition or "if"/"when" ("side effects of the vaccine" / "... in
  children", "sort by a key" / "... in descending order"; not "at all", "if any").

Two prompts that say the same words but for framing words and typing slips
(:mod:`deja.semantic.guards.spelling`) need no verifier, and a mistyped word is no
substitution; a short word in capitals against the same letters in lower case ("IT" /
"it") is no same word, nor are two prompts of no words at all. No model is downloaded:
everything here is regular expressions and word lists. A candidate hit must pass every
enabled guard (:class:`GuardSettings`).
"""

from deja.semantic.guards.compare import GuardReport, GuardSettings, check_guards
from deja.semantic.guards.extract import Signature, signature
from deja.semantic.guards.tokenizer import content_words, tokens

__all__ = [
    "GuardReport",
    "GuardSettings",
    "Signature",
    "check_guards",
    "content_words",
    "signature",
    "tokens",
]
