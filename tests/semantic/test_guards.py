"""Guards are pure: anchors extracted from text, compared in order."""

from __future__ import annotations

import time
from typing import Any

import pytest

from deja.semantic.guards import GuardSettings, check_guards, content_words, signature


def failed(a: str, b: str, settings: GuardSettings | None = None) -> tuple[str, ...]:
    return check_guards(signature(a), signature(b), settings).failed


def passes_both_ways(a: str, b: str) -> bool:
    """Every guard passes serving ``a`` for ``b``; asserts the other way agrees."""
    forward, backward = failed(a, b) == (), failed(b, a) == ()
    assert forward is backward, (failed(a, b), failed(b, a))
    return forward


@pytest.mark.parametrize(
    ("a", "b", "guard"),
    [
        ("convert 5 km to miles", "convert 8 km to miles", "numbers"),
        ("what is five plus two", "what is 5 plus 3", "numbers"),
        ("increase the price by 10%", "increase the price by 10", "numbers"),
        ("what is 3.5 times 2", "what is 3.25 times 2", "numbers"),
        ("what day was March 14, 2030?", "what day was March 15, 2030?", "dates"),
        ("weather in Rome today", "weather in Rome tomorrow", "dates"),
        ("how do I convert km to miles?", "miles to km conversion", "units"),
        ("convert 100 CAD to GBP", "convert 100 CAD to AUD", "units"),
        ("translate 'good morning' into French", "translate 'good night' into French", "quotes"),
        ("what does `os.path.join` do?", "what does `os.path.split` do?", "code"),
        ("how tall is Barack Obama?", "how tall is Tom Cruise?", "entities"),
        ("what is the capital of sweden?", "what is the capital of norway?", "entities"),
        ("cheap flights from Oslo to Berlin", "cheap flights Berlin -> Oslo", "entities"),
        ("how to increase heart rate", "how to decrease heart rate", "polarity"),
        ("foods high in sugar", "foods low in sugar", "polarity"),
        ("should I buy bitcoin now", "should I sell bitcoin now", "polarity"),
    ],
)
def test_guard_rejects_a_near_duplicate(a: str, b: str, guard: str) -> None:
    assert guard in failed(a, b)
    assert guard in failed(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("what is 15 cups in ml?", "how many ml is 15 cups?"),
        ("convert 8 miles to km", "what is 8 miles in km?"),
        ("what is 10 EUR worth in USD?", "convert 10 EUR to USD"),
        ("what day of the week was July 1, 1969?", "which weekday is July 1 1969?"),
        ("what is twenty-five percent of 80", "what is 25% of 80"),
        ("track order #62100", "where is my order 62100?"),
        ("Lionel Messi height", "how tall is Lionel Messi?"),
        ("what's Lithuania's capital?", "capital city of Lithuania"),
        (
            "low-cost flights Oslo -> Berlin next week",
            "a cheap flight from Oslo to Berlin next week",
        ),
        ("Do I get a mastercard and visa?", "Would I get a Visa or Mastercard?"),
        ("Someone stole my phone, what should I do?", "My phone was stolen, what do I do?"),
        ("how do I parse JSON in C++?", "C++ code to parse JSON"),
        ("translate 'I don't understand' into Dutch", "Dutch for 'I don't understand'"),
    ],
)
def test_guards_accept_a_rewording(a: str, b: str) -> None:
    assert failed(a, b) == ()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("can the model tell whether a pair of sentences agree?", "do two sentences agree?"),
        ("how much is a hundred dollars in euros?", "convert 100 USD to EUR"),
        ("how many calories in two dozen eggs?", "calories in 24 eggs"),
    ],
)
def test_written_counts_read_as_numbers(a: str, b: str) -> None:
    assert failed(a, b) == ()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("a pair of socks costs how much?", "two pairs of socks cost how much?"),
        ("how many calories in two dozen eggs?", "calories in 14 eggs"),
        ("can I order a card?", "can I order a second card?"),  # one-sided count words stay
    ],
)
def test_counts_that_differ_still_reject(a: str, b: str) -> None:
    assert "numbers" in failed(a, b) or "units" in failed(a, b)


def test_pair_is_a_count_only_beside_a_number() -> None:
    assert signature("how to pair bluetooth headphones").units == ()
    assert signature("a pair of socks").numbers == ("2",)


def test_code_spans_compare_without_letter_case() -> None:
    a = "load images with `ImageFolder` via `load_dataset`, type `imagefolder`"
    b = "use `load_dataset` to load an `ImageFolder` dataset"
    assert failed(a, b) == ()
    assert "code" in failed("what does `ImageFolder` do?", "what does `AudioFolder` do?")


def test_a_slash_between_plain_words_is_prose_not_a_path() -> None:
    a = "the argument takes a list or dictionary of URLs"
    b = "the argument takes a list/dictionary of URLs"
    assert failed(a, b) == ()
    assert signature("convert 100 km/h to mph").units == ("kmh", "mph")
    assert failed("convert 100 km/h to mph", "convert 100 kph to mph") == ()
    # real paths keep a dot, digit, underscore or second slash
    assert "code" in failed("open src/main.py", "open src/test.py")
    assert "code" in failed("see usr/local/bin", "see usr/local/lib")


def test_double_quotes_of_any_shape_are_quotes() -> None:
    a = "a download manager that uses the \u201d::\u201d separator"
    b = 'a download manager that uses the "::" separator'
    assert failed(a, b) == ()
    assert failed("say \u201chello\u201d in French", "say \u201ehello\u201c in French") == ()
    assert "quotes" in failed('split on the "::" separator', "split on the \u201d:\u201d separator")


def test_a_v_before_a_dotted_number_is_a_version() -> None:
    assert failed("does UPLOAD_DATASET exist in v2.10.0?", "UPLOAD_DATASET in version 2.10.0") == ()
    assert "numbers" in failed("what changed in v2.10.0?", "what changed in version 2.11.0?")
    assert signature("how does the v8 engine work").code == ("v8",)  # not a version


def test_a_possessive_or_comma_ends_a_name() -> None:
    a = "BuilderConfig in Datasets lets the user pick a configuration"
    b = "Datasets' BuilderConfig lets the user pick a configuration"
    assert failed(a, b) == ()
    assert failed("which phones run Android by Google?", "which phones run Google's Android?") == ()
    assert signature("pay with Visa, Mastercard or Amex").entities == ("visa", "mastercard", "amex")
    assert signature("what is Tom Cruise's height?").entities == ("tom cruise",)
    a, b = "Datasets' BuilderConfig options", "Datasets' DownloadConfig options"
    assert "entities" in failed(a, b)


def test_a_name_a_prompt_marks_counts_inside_a_longer_one_elsewhere() -> None:
    a = "The Inference API serves 50k models through a public inference API"
    b = "The Inference API serves 50k models through a public API"
    assert failed(a, b) == ()
    # a longer name is still not its part ("York" is not "New York")
    assert "entities" in failed("flights to New York", "flights to York")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("how do I use os.path.join in python", "how do I use os.path.split in python"),
        ("what does np.array do?", "what does np.asarray do?"),
        ("list files with fs.ls", "list files with fs.glob"),
        ("what goes in package.json?", "what goes in tsconfig.json?"),
        ("is google.com down?", "is bing.com down?"),
    ],
)
def test_a_bare_dotted_name_is_code(a: str, b: str) -> None:
    assert "code" in failed(a, b)


def test_a_dotted_name_reads_the_same_however_it_is_written() -> None:
    a = "how do I use os.path.join in python"
    assert failed(a, "how to use `os.path.join` in Python?") == ()
    assert failed("what does os.path.join() do?", "what does os.path.join do") == ()
    assert failed("open README.md", "open the readme.md file") == ()
    # a technology of the gazetteer stays a name; other ".js" names are code in any case
    assert failed("install Node.js on Ubuntu", "install node.js on ubuntu") == ()
    assert failed("is Vue.js better than React?", "is vue.js better than react") == ()
    assert "entities" in failed("install Node.js on Ubuntu", "install Deno on Ubuntu")


def test_dotted_abbreviations_are_not_code() -> None:
    sig = signature("e.g. open at 9 a.m. in the U.S.A., i.e. with a Ph.D. or an M.Sc")
    assert sig.code == ()
    assert failed("e.g. can I open an account in the U.S.?", "can I open a U.S. account?") == ()


def test_absolute_and_home_paths_are_code() -> None:
    assert "code" in failed("what is in /etc/hosts?", "what is in /etc/passwd?")
    assert "code" in failed("how do I edit ~/.bashrc", "how do I edit ~/.zshrc")
    assert "code" in failed(r"open C:\Users\me\a.txt", r"open C:\Users\me\b.txt")
    assert failed("what goes in /etc/hosts", "what is the /etc/hosts file for?") == ()
    assert failed("what's in ~/.bashrc?", "explain the ~/.bashrc file.") == ()
    assert failed("what is in /etc/hosts.", "what is in /etc/hosts") == ()  # a full stop
    # one word after a slash is prose ("card /account"), not a path
    assert signature("my card /account is locked").code == ()


def test_a_digit_then_a_double_quote_is_an_inch_mark() -> None:
    a = 'a 12" pizza vs a 14" pizza'
    assert signature(a).numbers == ("12", "14")
    assert signature(a).quotes == ()
    assert "numbers" in failed(a, 'a 12" pizza vs a 16" pizza')
    assert failed(a, "a 12 inch pizza vs a 14 inch pizza") == ()
    assert (
        failed("I'm 5'10\", what should I weigh?", "what should I weigh at 5 feet 10 inches?") == ()
    )
    # a double quote after a digit still closes a quote left open
    assert signature('search for "iPhone 12" reviews').quotes == ("iphone 12",)
    assert failed('search for "iPhone 12" reviews', "search for 'iPhone 12' reviews") == ()


def test_a_name_before_an_opening_parenthesis_is_a_call() -> None:
    assert "code" in failed("what does print(x) return?", "what does len(x) return?")
    assert "code" in failed("how to use df.groupby()", "how to use df.pivot()")
    assert failed("what does df.groupby(key) do?", "what does df.groupby() do?") == ()
    assert signature("attach the file(s) to the form").code == ()


def test_extraction() -> None:
    sig = signature(
        "Send $1,250.50 to Alice in Paris on 2024-05-01, twenty-one days after `init()`"
    )
    assert sig.numbers == ("1250.5", "21")
    assert sig.units[0] == "USD"
    assert "2024-5-1" in sig.dates
    assert "init()" in sig.code
    assert "paris" in sig.entities and "alice" in sig.entities
    assert sig.anchors >= 5


def test_negation_is_off_by_default_and_can_be_turned_on() -> None:
    a, b = "my card payment failed", "why didn't my card payment work?"
    assert failed(a, b) == ()
    assert failed(a, b, GuardSettings(negation=True)) == ("negation",)


def test_settings_turn_a_guard_off() -> None:
    assert failed("5 km", "8 km", GuardSettings(numbers=False)) == ()
    everything_off = GuardSettings.none()
    assert failed("convert 5 km to miles", "convert 8 miles to km", everything_off) == ()
    assert not any(getattr(everything_off, name) for name in GuardSettings.__dataclass_fields__)


def test_content_words_are_stemmed_without_stop_words() -> None:
    assert content_words("How long should I boil the eggs?") == ["long", "boil", "egg"]


@pytest.mark.parametrize(
    ("a", "b", "guard"),
    [
        ("convert `list` to `tuple`", "convert `tuple` to `list`", "code"),
        ("how do I convert .docx to .pdf?", "how do I convert .pdf to .docx?", "code"),
        ("convert a .docx file to .pdf", "convert a .pdf file to .docx", "code"),
        ("migrate from /etc/a to /etc/b", "migrate from /etc/b to /etc/a", "code"),
        ("rename 'draft' to 'final'", "rename 'final' to 'draft'", "quotes"),
    ],
)
def test_a_connector_orders_code_and_quotes(a: str, b: str, guard: str) -> None:
    assert guard in failed(a, b)
    assert guard in failed(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("convert `list` to `tuple`", "`list` to `tuple` conversion"),
        ("how to convert a `list` into a `tuple`", "convert `list` to `tuple`"),
        ("convert .docx to .pdf", "turn a .docx file into a .pdf"),
        # without a direction, paraphrases reorder code and quotes freely
        ("sort with `sorted` and `key`", "use `key` and `sorted` to sort"),
        ("what do 'foo' and 'bar' mean?", "meaning of 'bar' and 'foo'"),
    ],
)
def test_code_and_quotes_without_a_direction_reorder_freely(a: str, b: str) -> None:
    assert failed(a, b) == ()


def test_a_file_type_is_code_but_a_stray_full_stop_is_not() -> None:
    assert signature("convert .docx to .pdf").code == (".docx", ".pdf")
    assert signature("what goes in .dockerignore?").code == (".dockerignore",)
    assert "code" in failed("what goes in .gitignore?", "what goes in .dockerignore?")
    assert signature("no cash with me .is it possible?").code == ()
    assert signature("not made by me .Never seen it").code == ()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("what does print(x) print?", "what does print(y) print?"),
        ("what does range(10) return?", "what does range(20) return?"),
        ("what does df.groupby(key) do?", "what does df.groupby(name) do?"),
        ("what does O(n) mean?", "what does O(n^2) mean?"),
    ],
)
def test_a_calls_short_arguments_are_part_of_its_value(a: str, b: str) -> None:
    assert "code" in failed(a, b)


def test_a_call_without_arguments_names_the_function() -> None:
    assert failed("what does df.groupby(key) do?", "what does df.groupby() do?") == ()
    assert failed("what does `f()` return?", "what does `f` return?") == ()
    assert failed("what does print( x ) do?", "what does `print(x)` do?") == ()
    # a quoted argument is compared as a quote
    sig = signature('what does load_dataset("imdb") return?')
    assert sig.quotes == ("imdb",)
    assert sig.code == ("load_dataset()",)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("how do I install scikit-learn?", "how do I install scikit-image?"),
        ("what does react-dom do?", "what does react-router do?"),
        ("is gpt-4 better at maths?", "is gpt-3 better at maths?"),
        ("read a file as utf-8", "read a file as utf-16"),
        ("pip install requests fails", "pip install httpx fails"),
        ("yarn add react", "npm install react"),
        ("brew install wget", "apt install wget"),
    ],
)
def test_package_and_tool_names_are_names(a: str, b: str) -> None:
    assert "entities" in failed(a, b)


def test_hyphenated_prose_is_not_a_name() -> None:
    prose = "a well-known, state-of-the-art e-mail follow-up for a top-up, python-based"
    assert signature(prose).entities == ()
    assert failed("how do I install scikit-learn?", "Scikit-learn installation steps") == ()
    assert failed("pip install requests", "how to install requests with pip") == ()
    assert failed("npm i lodash", "npm install lodash") == ()
    assert "entities" in failed("pip3 install requests", "pip3 install httpx")
    assert signature("pip install --user requests on windows").entities == (
        "pip",
        "requests",
        "windows",
    )


def test_developer_tools_in_lower_case_are_names() -> None:
    assert "entities" in failed("install numpy with pip", "install numpy with conda")
    assert "entities" in failed("how to undo a commit in git", "how to undo a commit in svn")
    assert "entities" in failed("list pods with kubectl", "list pods with docker")
    assert failed("how do I rebase in git?", "git rebase explained") == ()
    # "yarn" alone is a word: only an install command makes it a name
    assert signature("how much yarn for a scarf").entities == ()


def test_a_number_slash_word_is_a_rate_not_a_path() -> None:
    assert failed("is $5/month a good price?", "is $5 per month a good price?") == ()
    assert "numbers" in failed("is $5/month a good price?", "is $8/month a good price?")
    assert failed("is the shop open 24/7?", "is the shop open 24-7?") == ()
    assert signature("is the shop open 24/7?").numbers == ("24", "7")
    assert "numbers" in failed("add 1/2 cup of sugar", "add 1/3 cup of sugar")
    assert "code" in failed("open src/main.py", "open src/test.py")  # paths stay paths


def test_addresses_do_not_keep_trailing_punctuation() -> None:
    assert failed("open https://example.com/a.", "open https://example.com/a") == ()
    assert failed("open (https://example.com/a), please", "open https://example.com/a") == ()
    assert failed("mail bob@example.com, thanks", "mail bob@example.com") == ()
    assert failed("mail bob@example.com.", "mail bob@example.com") == ()
    assert "code" in failed("mail bob@example.com.", "mail bob@example.org.")


def test_a_technology_reads_the_same_with_or_without_js() -> None:
    assert failed("how do hooks work in React.js?", "how do React hooks work?") == ()
    assert failed("reactjs hooks", "React hooks") == ()
    assert failed("install nodejs on ubuntu", "install Node.js on Ubuntu") == ()
    assert "entities" in failed("how do hooks work in React.js?", "how do hooks work in Vue.js?")
    assert "code" in failed("what goes in index.js?", "what goes in main.js?")


def test_a_digit_then_a_lone_single_quote_is_feet() -> None:
    assert failed("is 6' tall for a man?", "is 6 feet tall for a man?") == ()
    assert "units" in failed("is 6' tall for a man?", "is 6 inches tall for a man?")
    assert signature("press '5' to continue").quotes == ("5",)
    assert signature("search for 'iPhone 12' reviews").quotes == ("iphone 12",)


# Not speed targets (those live in bench/): these catch a scan that hangs on a hostile
# prompt. The bounds are ~100x what a linear scan takes here and far below what the old
# super-linear scans took (45 s to hours), so a loaded machine cannot make them flaky.
def _signature_seconds(text: str) -> float:
    start = time.perf_counter()
    signature(text)
    return time.perf_counter() - start


@pytest.mark.parametrize(
    "text",
    [
        "a" * 100_000 + " /",  # a long token (a hex dump, a base64 blob) in a text with a "/"
        "." * 100_000 + "/",
        "-" * 100_000 + "/",
        "+" * 100_000 + "@",
        "http://" + "." * 100_000,
        "see /" + "a." * 50_000,
        "~/" + "." * 100_000,
        "\u2018" * 100_000,  # unclosed opening single quotes: each scanned to the line's end
    ],
)
def test_paths_addresses_and_quotes_are_read_in_linear_time(text: str) -> None:
    # each e-mail, path or quote attempt used to scan the rest of a run from every position
    # in it (~45 s for 100k characters); one scan per run takes milliseconds
    assert _signature_seconds(text) < 10.0


def test_install_flags_are_read_in_linear_time() -> None:
    # "-{1,2}" split every "--" two ways: 2**30 tries for this 130-character prompt
    assert _signature_seconds("pip install " + "--A " * 30 + "1") < 10.0
    assert signature("pip install --A --no-deps requests").entities == ("pip", "requests")


def test_every_install_command_names_its_packages() -> None:
    a = "npm i lodash then yarn add leftpad"
    assert signature(a).entities == ("npm", "lodash", "yarn", "leftpad")
    assert "entities" in failed(a, "npm i lodash then yarn add rightpad")


@pytest.mark.parametrize(
    "text",
    [
        "call me at " + "5" * 5000,  # int() refuses more than 4300 digits
        "#" + "9" * 5000 + " and 1" + "0" * 5000 + ".5%",
        "0" * 5000 + "5 March 2030",
        "two" + " hundred" * 2200,  # 2 * 100**2200: a 4401-digit number
        "dozen " * 4000,
    ],
)
def test_very_long_numbers_do_not_raise(text: str) -> None:
    signature(text)


def test_long_numbers_keep_their_value() -> None:
    long = "1" + "0" * 5000
    assert failed(f"is {long} prime?", f"is 000{long} prime?") == ()
    assert "numbers" in failed(f"is {long} prime?", f"is {long}1 prime?")
    assert signature("0" * 5000 + "5 March 2030").dates == ("2030-3-5",)
    # a scale multiplies a small number only: "twelve hundred", not "hundred hundred"
    assert signature("twelve hundred").numbers == ("1200",)
    assert signature("two dozen").numbers == ("24",)
    assert signature("two hundred thousand").numbers == ("200000",)


def test_an_opening_single_quote_inside_a_quote_starts_a_new_one() -> None:
    assert signature("say \u2018hello\u2019 and \u2018bye\u2019").quotes == ("hello", "bye")
    assert signature("an open \u2018a then \u2018b\u2019").quotes == ("b",)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Is it safe to eat raw chicken?", "Is it safe to eat cooked chicken?"),
        ("Is it legal to fly a drone here?", "Is it illegal to fly a drone here?"),
        ("Explain recursion to a beginner", "Explain recursion to an expert"),
        ("How do I get a physical card?", "How do I get a virtual card?"),
        (
            "How long does a domestic transfer take?",
            "How long does an international transfer take?",
        ),
        ("Can I pay with a debit card?", "Can I pay with a credit card?"),
        ("Validate the form on the client side", "Validate the form on the server side"),
        ("How do I install the package?", "How do I uninstall the package?"),
    ],
)
def test_antonyms_of_states_kinds_and_products_conflict(a: str, b: str) -> None:
    assert "polarity" in failed(a, b)


def test_a_rewording_that_keeps_its_pole_still_passes() -> None:
    assert failed("Is it safe to eat raw chicken?", "can you safely eat chicken raw") == ()
    assert failed("How do I get a virtual card?", "where can I get a virtual card") == ()
    # one side naming a pole and the other none is no conflict (the verifier weighs it)
    assert failed("how long does a transfer take", "how long does a domestic transfer take") == ()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How to convert a string to int in Java", "How to convert an int to string in Java"),
        ("convert list to tuple in python", "convert tuple to list in python"),
        ("turn a pdf into a docx", "turn a docx into a pdf"),
        ("Explain TCP briefly", "Explain TCP in detail"),
        ("Write a formal email declining the offer", "Write a casual email declining the offer"),
        ("is coffee good for you", "is coffee bad for you"),
        ("Explain the difference between TCP and UDP", "Explain the similarities of TCP and UDP"),
        ("Rewrite it in passive voice: the cat ate", "Rewrite it in active voice: the cat ate"),
        ("how long to boil an egg soft", "how long to boil an egg hard"),
    ],
)
def test_reversed_directions_and_opposite_manners_conflict(a: str, b: str) -> None:
    assert "polarity" in failed(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("how to convert celsius to fahrenheit", "convert celsius into fahrenheit"),
        ("How do I move money from savings to checking?", "move money to checking from savings"),
        ("Translate this sentence into French: hi", "Translate hi to French"),
        ("Give me a detailed explanation of TCP", "Explain TCP in detail"),
    ],
)
def test_the_same_direction_reworded_still_passes(a: str, b: str) -> None:
    assert failed(a, b) == ()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # a direction word joins two-word names too, and "than" orders a comparison
        ("how to convert a pdf to a word document", "how to convert a word document to a pdf"),
        ("is python faster than java", "is java faster than python"),
        # "on" as a preposition is no switch ...
        ("how to enable dark mode on iphone", "how to disable dark mode on iphone"),
        ("how do I block someone on instagram", "how do I unblock someone on instagram"),
        # ... after a switch verb it is
        ("turn off dark mode on my iphone", "turn on dark mode on my iphone"),
        ("switch the wifi off", "how do I enable the wifi"),
        # groups of alternatives: any two members conflict, not only a pair's two ends
        ("translate good morning to spanish", "translate good night to spanish"),
        ("benefits of running in the morning", "benefits of running in the afternoon"),
        ("what to plant in spring", "what to plant in summer"),
        ("give me a vegan lasagna recipe", "give me a vegetarian lasagna recipe"),
        ("quick breakfast ideas", "quick dinner ideas"),
        ("can cats eat chocolate", "can dogs eat chocolate"),
        ("boiling point of water in fahrenheit", "freezing point of water in fahrenheit"),
    ],
)
def test_lower_case_alternatives_and_reversals_conflict(a: str, b: str) -> None:
    assert "polarity" in failed(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("how to convert a pdf to a word document", "convert pdf into word document"),
        ("is python faster than java", "is python quicker than java"),
        ("how to enable dark mode on iphone", "turn on dark mode on my iphone"),
        ("how to enable dark mode on iphone", "enable dark mode on an iphone"),
        ("what should my puppy eat", "what food should my puppy eat"),
        ("quick vegan dinner ideas", "fast vegan dinner ideas"),
        # a Banking77 paraphrase pair the preposition "on" used to split
        ("I need to freeze my card", "I see payments on my card I don't recall making"),
    ],
)
def test_the_same_alternative_or_order_reworded_still_passes(a: str, b: str) -> None:
    assert failed(a, b) == ()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("fruits that are high in potassium", "fruits that are not high in potassium"),
        ("Which planets have rings?", "Which planets don't have rings?"),
        ("Why are my cards blocked?", "Why aren't my cards blocked?"),
        # "includes" and "include" are one word ("does not include")
        (
            "How do I check if an array includes a value?",
            "How do I check if an array does not include a value?",
        ),
        (
            "sql to find customers who placed an order",
            "sql to find customers who never placed an order",
        ),
        ("what foods should I eat while pregnant", "what foods shouldn't I eat while pregnant"),
    ],
)
def test_the_same_words_with_a_negation_contradict(a: str, b: str) -> None:
    assert failed(a, b) == ("contradiction",)


def test_a_rewording_that_flips_negation_is_no_contradiction() -> None:
    # Banking77 paraphrases say "failed" as "did not work": more than the negation changes
    assert failed("Why did my top-up fail?", "Why did my top-up not work?") == ()
    assert (
        failed(
            "Why was I unable to complete my transfer?",
            "Why was I not able to complete my transfer?",
        )
        == ()
    )
    assert "contradiction" not in failed("My card doesn't work", "Why doesn't my card work?")
    settings = GuardSettings(contradiction=False)
    assert check_guards(
        signature("Which planets have rings?"),
        signature("Which planets don't have rings?"),
        settings,
    ).ok


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # an alternative swapped in otherwise the same words
        ("do all birds fly", "do some birds fly"),
        (
            "python check if all elements in a list are even",
            "python check if any element in a list is even",
        ),
        ("what information must be on an invoice", "what information can be on an invoice"),
        ("Do you ship to Canada?", "Do you ship from Canada?"),
        ("how to ship a parcel to canada", "how to ship a parcel from canada"),
        (
            "Can I get a refund if I cancel within 14 days?",
            "Can I get a refund if I cancel after 14 days?",
        ),
        ("How many days until Christmas?", "How many days since Christmas?"),
        ("When does my current billing cycle end?", "When did my last billing cycle end?"),
        (
            "What's the area of a circle with radius 5?",
            "What's the area of a circle with diameter 5?",
        ),
        # two words trading places
        (
            "Can I substitute baking soda for baking powder?",
            "Can I substitute baking powder for baking soda?",
        ),
        ("is a square a rectangle?", "is a rectangle a square?"),
        ("sort names from A to Z in excel", "sort names from Z to A in excel"),
        # groups read anywhere in the prompts
        ("what are my rights as a tenant", "what are my rights as a landlord"),
        ("cheapest way to ship a package to canada", "fastest way to ship a package to canada"),
        ("what time is sunrise in Oslo", "what time is sunset in Oslo"),
        ("What plants are toxic to cats?", "What plants are safe for cats?"),
        (
            "kubectl delete all pods in the default namespace",
            "kubectl delete one pod in the default namespace",
        ),
        (
            "Can I cancel one leg of a round-trip ticket?",
            "Can I cancel both legs of a round-trip ticket?",
        ),
        ("When did the Berlin Wall fall?", "Why did the Berlin Wall fall?"),
        ("What foods should I eat if I have gout?", "What foods should I avoid if I have gout?"),
        ("how do I make docker build ignore the cache", "how do I make docker build use the cache"),
        (
            "What happens to Gatsby at the end of the novel?",
            "What happens to Gatsby at the beginning of the novel?",
        ),
        (
            "How do I rebase my feature branch onto main?",
            "How do I rebase main onto my feature branch?",
        ),
        # "all ... except" against the same without the exception
        ("Delete all files in the folder except .txt files", "Delete all .txt files in the folder"),
        (
            "Python: get all keys of a dict except the first one",
            "Python: get only the first key of a dict",
        ),
    ],
)
def test_swapped_alternatives_and_traded_places_conflict(a: str, b: str) -> None:
    assert "polarity" in failed(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("time difference between London and Tokyo", "time difference between Tokyo and London"),
        ("compare python and java", "compare java and python"),
        ("do all birds fly", "can every bird fly"),
        # loose quantifiers and modals in prompts that are not word for word the same
        (
            "Are there any limits to using disposable virtual cards?",
            "I need several cards per day and all of them disposable",
        ),
        ("Can I change my address?", "How do I change my address?"),
        ("ship to canada", "ship to canada please"),
        # an exception read only after "all" / "every" / "any", and not against a negation
        ("Do you support countries other than mine?", "Which countries do you support?"),
        ("Someone besides me might be using my card", "someone is using my card"),
        ("all the table methods except transforms", "the table does not include the transforms"),
        # "why can't I" is often "how can I": only who / when / where / why swap
        (
            "Why can't I transfer money to a beneficiary",
            "How can I transfer money to a beneficiary?",
        ),
        # two neighbours swapped are word order
        ("My top up is pending still", "My top up is still pending"),
        ("what is the cost for exchanging currencies?", "What is the cost for currency exchanges?"),
    ],
)
def test_symmetric_joins_and_loose_quantifiers_still_pass(a: str, b: str) -> None:
    assert "polarity" not in failed(a, b)


def test_only_names_joined_the_other_way_round_conflict() -> None:
    assert "entities" in failed("flights from Oslo to Berlin", "flights from Berlin to Oslo")
    # a name written in lower case on one side still counts there
    assert "entities" in failed("flights from Tromso to Bodo", "flights from bodo to tromso")
    # the same direction said backwards, or left unsaid by one prompt
    assert failed("flights from Oslo to Berlin", "flights to Berlin from Oslo") == ()
    assert failed("convert json to yaml in python", "python: turn JSON into YAML") == ()
    assert (
        failed("translate 'gift' from English to German", "the German word for the English 'gift'")
        == ()
    )
    # "vs" gives no direction
    assert failed("Python vs Java for beginners", "Java vs Python for beginners") == ()


def test_an_acronym_is_its_words_spelled_out() -> None:
    assert failed("normal blood pressure for adults", "what is a normal BP for an adult") == ()
    assert failed("gift ideas for my mother in law", "gift ideas for my MIL") == ()
    assert failed("who was the UK prime minister in 2015", "UK PM in 2015?") == ()
    assert failed("what is the early termination fee", "what's the ETF?") == ()
    # only an acronym written in capitals, only spelled out by content words at both ends
    assert "entities" in failed("normal BP for adults", "normal blood sugar for adults")
    assert "entities" in failed("is the PR ready", "is the pull request ready for review by QA")
    assert "entities" in failed("Paris hotels", "pretty affordable rooms in small hotels")


def test_a_quote_is_the_same_words_written_bare() -> None:
    assert (
        failed("Translate 'thank you' into Japanese", "how do you say thank you in japanese") == ()
    )
    assert (
        failed(
            "Rewrite this sentence in passive voice: The chef cooked the meal.",
            "Put 'The chef cooked the meal.' into the passive voice",
        )
        == ()
    )
    # other words, a one-word quote of a little word, or quotes on both sides: compared
    # as quotes
    assert "quotes" in failed(
        "Translate 'thank you' into Japanese", "translate thanks a lot into japanese"
    )
    assert "quotes" in failed("count the word 'the' in this text", "count the words in it")
    # a content word quoted is that word bare, in any form; accents aside
    assert failed("what does 'run' mean", "what does run mean") == ()
    assert failed("what does 'tannin' mean in wine", "what are tannins in wine") == ()
    # (and a quote leaves no frame to trade words in: "mean" / "tannins" is no substitution)
    assert (
        check_guards(
            signature("what does 'tannin' mean in wine"), signature("what are tannins in wine")
        ).substituted
        is None
    )
    assert failed("what does 'ça va' mean in french", "meaning of ca va french") == ()
    assert "quotes" in failed("Translate 'thank you'", "Translate 'thanks a lot' or thank you")


def test_the_people_of_a_country_are_the_country() -> None:
    assert (
        failed(
            "Do US citizens need a visa to visit Japan?", "Does an American need a visa for Japan?"
        )
        == ()
    )
    assert failed("how to renew a US passport", "steps to renew my American passport") == ()
    assert failed("drive on the left in the UK?", "do they drive on the left in britain") == ()
    # ... not inside other names
    for other in ("Latin American food", "American Express fees", "British Columbia hiking"):
        assert "entities" in failed(
            other, other.replace("American", "US").replace("British", "UK")
        ), other


@pytest.mark.parametrize(
    ("a", "b", "guard"),
    [
        (
            "What's the difference between == and === in JavaScript?",
            "What's the difference between = and == in JavaScript?",
            "code",
        ),
        ("what does a[::-1] do in python", "what does a[:-1] do in python", "code"),
        (
            "What does the * operator do in Python?",
            "What does the ** operator do in Python?",
            "code",
        ),
        ("is 5 > 3", "is 5 < 3", "code"),
        ("Solve 2x + 6 = 14", "Solve 2x - 6 = 14", "polarity"),
        ("what is 5 + 3", "what is 5 times 3", "polarity"),
    ],
)
def test_operators_and_subscripts_are_read(a: str, b: str, guard: str) -> None:
    assert guard in failed(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Solve 2x + 6 = 14", "solve 2x+6=14"),
        ("calculate 33 * 66", "33 multiplied by 66"),
        ("What is the area of a circle with radius 5?", "area of a circle, r = 5"),
        # a dash, a range, a hyphen and doubled question marks are prose
        ("Python - sort a list", "Python: sort a list"),
        ("delivery takes 3-5 days", "delivery takes 3-5 days?"),
        ("why is my top up pending??", "why is my top up pending?"),
    ],
)
def test_operators_written_in_words_or_prose_symbols_still_pass(a: str, b: str) -> None:
    assert failed(a, b) == ()


def test_an_entity_north_of_another_is_directed() -> None:
    assert "entities" in failed("is Madrid north of Paris", "is Paris north of Madrid")
    assert failed("is Madrid north of Paris", "is Madrid to the north of Paris") == ()


def test_particles_count_only_where_their_verb_sets_them() -> None:
    from deja.semantic.guards.extract import _pole_words

    def words(text: str) -> frozenset[str]:
        lows = text.split(" ")
        return _pole_words(frozenset(lows), lows) & {"on", "off", "in", "out"}

    assert words("turn off dark mode on my phone") == {"off"}
    assert words("turn dark mode on") == {"on"}
    assert words("dark mode on my phone") == frozenset()
    assert words("switch it on and then turn it off") == {"on", "off"}
    assert words("zoom in on a mac") == {"in"}
    assert words("how do i log out of gmail in chrome") == {"out"}
    assert words("dark mode in chrome") == frozenset()


_LEAFLET = (
    "Leaflet: Ibuprofen 200 mg tablets. Adults and children 12 years and over: take 1 tablet"
    " every 4 to 6 hours while symptoms persist. Do not exceed 6 tablets in 24 hours."
)


def test_other_questions_about_one_shared_context_are_other_questions() -> None:
    often = f"{_LEAFLET} Question: How often can I take it?"
    assert "context" in failed(often, f"{_LEAFLET} Question: Can I take it while pregnant?")
    assert "context" in failed(
        f"How often can I take it? {_LEAFLET}", f"Can I take it while pregnant? {_LEAFLET}"
    )
    # the same question, its words the same: left to the other guards and the verifier
    assert "context" not in failed(often, f"{_LEAFLET} Question: how often can i take it")
    # one long sentence reworded at its start, its list the same: no context
    assert "context" not in failed(
        "The different sections of the Datasets documentation are Get started, Tutorials,"
        " How-to guides, General usage, Audio, Vision, Text, Tabular, Dataset repository,"
        " Conceptual guides, and Reference.",
        "The various parts of the Datasets documentation include: Introduction, Tutorials,"
        " How-to guides, General usage, Audio, Vision, Text, Tabular, Dataset repository,"
        " Conceptual guides, and Reference.",
    )
    assert "context" not in failed(
        often, f"{_LEAFLET} Question: Can I take it while pregnant?", GuardSettings(context=False)
    )


def test_what_is_needed_chosen_or_compared_the_other_way_is_another_question() -> None:
    # "do I need to" asks what is required, "can I" what is allowed
    assert "polarity" in failed(
        "Do I need to declare cash at customs?", "Can I declare cash at customs?"
    )
    assert failed("I need to change my PIN", "Can I change my PIN?") == ()  # a want, no question
    assert (
        failed(
            "How early should I arrive at the airport?",
            "How early do I need to get to the airport?",
        )
        == ()
    )  # (how early, not whether)
    # what is taken instead of what, each a phrase
    assert "polarity" in failed(
        "Can I get store credit instead of a refund?", "Can I get a refund instead of store credit?"
    )
    assert (
        failed(
            "Can I get a refund instead of store credit?",
            "Instead of store credit, can I get a refund?",
        )
        == ()
    )
    # two things trading places, each with its own determiner
    assert "polarity" in failed(
        "Why does git show my local branch ahead of the remote branch?",
        "Why does git show the remote branch ahead of my local branch?",
    )


def test_numbers_in_french_spanish_and_german_are_numbers() -> None:
    assert "numbers" in failed(
        "Je voudrais commander deux articles", "Je voudrais commander trois articles"
    )
    assert "numbers" in failed("Quiero dos entradas", "Quiero tres entradas")
    assert "numbers" in failed("Ich brauche zwei Tickets", "Ich brauche drei Tickets")


def test_the_new_rules_leave_rewordings_alone() -> None:
    """Rewordings the rules added this session must not refuse (a review found each)."""
    leaflet = f"{_LEAFLET} Question: Can I take it while"
    assert "context" not in failed(f"{leaflet} pregnent?", f"{leaflet} pregnant?")
    assert (
        failed(
            "What are the dos and don'ts of a job interview?",
            "What are the do's and don'ts of a job interview?",
        )
        == ()
    )
    for a, b in [
        ("Please explain recursion in Python", "Kindly explain recursion in Python"),
        ("Write a poem about cats", "Compose a poem about cats"),
        ("Give me steps to bake bread", "Give me instructions to bake bread"),
    ]:
        assert substituted(a, b) is None, (a, b)


def test_a_number_said_of_another_name_is_another_question() -> None:
    a = "what time is it in Paris when it is 3pm in Berlin?"
    assert "entities" in failed(a, "if it's 3pm in Paris, what time is it in Berlin?")
    assert failed(a, "when it's 3pm in Berlin, what's the time in Paris?") == ()
    # a number said of no name may move
    assert (
        failed(
            "How much is a taxi from JFK to Manhattan for 2 people",
            "for 2 people, how much is a taxi from JFK to Manhattan",
        )
        == ()
    )


def test_opposite_comparatives_and_particles_are_other_questions() -> None:
    for a, b in [
        ("is Go slower than Python?", "is Go quicker than Python?"),
        ("is Tokyo colder than Paris in July?", "is Tokyo hotter than Paris in July?"),
        ("how do I reject a pull request on GitHub?", "how do I accept a pull request on GitHub?"),
        ("how to zoom out on a Mac", "how to zoom in on a Mac"),
        ("how do I log in to Gmail", "how do I log out of Gmail"),
    ]:
        assert "polarity" in failed(a, b), (a, b)
    assert failed("how to zoom in on a Mac", "how do I zoom in on my Mac") == ()


def test_an_acronym_with_dots_is_the_acronym() -> None:
    assert failed("Explain the U.S. tax system", "explain the US tax system") == ()
    assert failed("Is the U.K. in the E.U.?", "is the UK in the EU") == ()
    assert "entities" in failed("Explain the U.S. tax system", "Explain the U.K. tax system")
    # its last full stop may also end the sentence: the next capital starts one
    assert failed("I live in the U.S. Can you help?", "I live in the US, can you help?") == ()


def test_poles_are_read_per_pair_and_side() -> None:
    sig = signature("should I buy or sell, and is it cheap?")
    sides = {k: pole for k, pole in enumerate(sig.poles) if pole}
    # cheap; buy and sell; sell (against hold)
    assert sorted(map(sorted, sides.values())) == [[0], [0, 1], [1]]
    assert not any(signature("where is my card").poles)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("what is the population of new york city", "what is the population of new york state"),
        ("New York City income tax", "New York State income tax"),
        ("Washington state sales tax", "Washington DC sales tax"),
        ("hotels in Kansas City", "hotels in Kansas"),  # a capitalised name is one name
        ("hotels in Panama City", "hotels in Panama"),  # as is one of the gazetteer
        ("population of the state of New York", "population of the city of New York"),
        ("taxes in the state of Washington", "taxes in Washington DC"),
    ],
)
def test_a_place_qualifier_tells_two_places_apart(a: str, b: str) -> None:
    assert "entities" in failed(a, b)
    assert "entities" in failed(b, a)


def test_a_long_official_name_is_the_usual_one() -> None:
    for long, short in (
        ("taxes in the United States of America", "taxes in the USA"),
        ("taxes in the United States of America", "taxes in the United States"),
        ("visa for the United Kingdom of Great Britain and Northern Ireland", "visa for the UK"),
        ("visa for the United Kingdom of Great Britain", "visa for the United Kingdom"),
    ):
        assert signature(long).entities == signature(short).entities
        assert failed(long, short) == () and failed(short, long) == ()
    assert "entities" in failed(
        "visa for the United States of America", "visa for the United Kingdom"
    )
    assert signature("united we stand").entities == ()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("New York City weather", "new york city weather"),
        ("New York weather", "New York City weather"),  # one side leaves it out
        ("population of the state of New York", "population of New York State"),
        ("weather in the city of New York", "New York weather"),
        ("is React state global?", "is React state global"),
    ],
)
def test_a_place_qualifier_on_one_side_only_is_a_detail(a: str, b: str) -> None:
    assert passes_both_ways(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("give me one example of a metaphor", "give me examples of a metaphor"),
        ("Give me an example of a metaphor", "can you give some examples of metaphors?"),
        ("Give me an example of a metaphor", "give me a list of metaphor examples"),
        ("Tell me a joke about cats", "tell me jokes about cats"),
        ("Suggest a name for my dog", "suggest names for my dog"),
    ],
)
def test_one_thing_asked_for_is_not_several(a: str, b: str) -> None:
    assert "numbers" in failed(a, b)
    assert "numbers" in failed(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("give me an example of a metaphor", "show me one example of a metaphor"),
        ("give me one example of a metaphor", "give me 1 example of a metaphor"),
        ("Give me ideas for a party", "give me some party ideas"),
        ("Give me an example of a metaphor", "what is an example of a metaphor?"),  # no ask
        ("how to write a unit test", "how to write unit tests"),  # not a request
        ("Show me my transactions", "show me a transaction"),  # "my": no count
        ("Tell me a bit about Rome", "tell me about Rome"),
    ],
)
def test_a_request_count_counts_only_where_both_prompts_ask(a: str, b: str) -> None:
    assert failed(a, b) == ()


def test_cpp_scoped_names_are_code() -> None:
    assert "code" in failed("how to use std::vector", "how to use std::map")
    assert failed("how to use std::vector", "how do I use `std::vector`?") == ()
    assert signature("call Foo::~Foo() here").code == ("Foo::~Foo()",)
    assert signature("std::collections::HashMap in Rust").code == ("std::collections::HashMap",)
    assert signature("the ratio 10::30").code == ()


def test_scoped_names_are_read_in_linear_time() -> None:
    assert _signature_seconds("a::" * 50_000 + ":") < 10.0
    assert _signature_seconds("std::" + "a" * 100_000 + ":") < 10.0
    assert _signature_seconds(" a::b" * 30_000 + "::") < 10.0


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("I was charged twice for one purchase", "I was charged two times for one purchase"),
        ("the card was declined thrice", "the card was declined 3 times"),
        ("I was charged once", "I was charged 1 time"),
        ("I was charged twice", "I have a duplicate charge"),  # loose beside no number
    ],
)
def test_twice_and_thrice_are_counts_of_times(a: str, b: str) -> None:
    assert failed(a, b) == ()


def test_loose_counts_still_conflict_with_other_counts() -> None:
    assert "numbers" in failed("I was charged twice", "I was charged 3 times")
    assert "numbers" in failed("I was charged twice", "I was charged thrice")
    assert "numbers" in failed("I was charged two times", "I was charged")  # as before


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("what does `git rebase -i` do?", "what does git rebase -i do?"),
        ("run `ls -la` and then `git status`", "run ls -la and then `git status`."),
        ("is `sort` stable in Python?", "is sort stable in Python?"),
    ],
)
def test_a_code_span_is_the_same_words_written_bare(a: str, b: str) -> None:
    assert passes_both_ways(a, b)


def test_a_code_span_missing_from_the_bare_side_still_differs() -> None:
    assert "code" in failed("what does `git rebase -i` do?", "what does git rebase do?")
    assert "code" in failed("what does `git rebase -i` do?", "what does `git rebase -x` do?")
    assert "code" in failed("what does `print(x)` do?", "what does print(y) do?")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("is the bank open on Tuesday", "is the bank open on tuesdays"),
        ("is the bank open on Tuesday?", "Is the bank open on Tuesdays?"),
    ],
)
def test_a_weekday_in_the_plural_is_the_weekday(a: str, b: str) -> None:
    assert failed(a, b) == ()


def test_a_weekday_in_the_plural_is_still_a_date() -> None:
    assert "dates" in failed("is the bank open on Tuesdays", "is the bank open on Fridays")
    assert signature("open on Tuesdays?").entities == ()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("best pizza in NYC", "best pizza in New York City"),
        ("best tacos in LA", "best tacos in Los Angeles"),
        ("rent prices in SF", "rent prices in San Francisco"),
        ("moving to the UK", "moving to the United Kingdom"),
        ("moving to the US", "moving to the USA"),
        ("moving to the US", "moving to the United States"),
        ("moving to the us", "moving to the United States"),
        ("Explain the U.S. tax system", "Explain the United States tax system"),
    ],
)
def test_short_names_of_places_are_their_full_names(a: str, b: str) -> None:
    assert passes_both_ways(a, b)


def test_short_names_of_places_still_tell_places_apart() -> None:
    assert "entities" in failed("best pizza in NYC", "best pizza in new york state")
    assert "entities" in failed("best tacos in LA", "best tacos in San Francisco")
    assert "entities" in failed("moving to the US", "moving to the UK")
    # "us" is a pronoun, and a text in capitals says nothing
    assert signature("can you tell us more").entities == ()
    assert signature("TELL US MORE").entities == ()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            "What are the side effects of the COVID vaccine?",
            "What are the side effects of the COVID vaccine in children?",
        ),
        (
            "Python: sort a list of dicts by a key",
            "Python: sort a list of dicts by a key in descending order",
        ),
        (
            "What is the baggage allowance for economy class?",
            "What is the baggage allowance for economy class on international flights?",
        ),
        ("can I return shoes", "can I return shoes without a receipt"),
        ("is it safe to run", "is it safe to run when it is below freezing"),
    ],
)
def test_the_same_words_with_a_condition_added_ask_something_else(a: str, b: str) -> None:
    assert failed(a, b) == ("qualifier",)
    assert failed(b, a) == ("qualifier",)


def test_words_that_add_no_condition_and_other_insertions_pass() -> None:
    assert failed("My card will not work", "My card will not work at all") == ()
    assert (
        failed("What is the limit for auto top-up?", "What, if any, is the limit for auto top-up?")
        == ()
    )
    # a word that names the thing more closely, not a condition
    assert failed("How do I reset my password", "How do I reset my account password") == ()
    assert failed("can I return shoes", "can I return shoes in") == ()  # one word: no phrase
    settings = GuardSettings(qualifier=False)
    assert check_guards(
        signature("can I return shoes"), signature("can I return shoes without a receipt"), settings
    ).ok


def test_the_modal_that_opens_a_yes_no_question_is_what_it_asks() -> None:
    assert failed("can I paint over wallpaper", "should I paint over wallpaper") == ("polarity",)
    assert failed("must I file a tax return", "can I file a tax return") == ("polarity",)
    # after a question word the modals are one question (Banking77: "what should I do" /
    # "what can I do", "when can I expect my card" / "when should I expect my card")
    assert (
        failed("What should I do if my phone was stolen?", "What can I do if my phone was stolen?")
        == ()
    )
    assert failed("When can I expect my card?", "When should I expect my card?") == ()
    assert failed("Can I change my flight?", "Could I change my flight?") == ()


def test_questions_about_the_same_words_asking_who_when_where_or_why_differ() -> None:
    assert failed("Who created Python?", "When was Python created?") == ("polarity",)
    assert failed("Where can I get my card PIN?", "When do I get my card PIN?") == ("polarity",)
    assert failed("When will my card arrive?", "When is my card arriving?") == ()


# Near-duplicates that ask another question, one table for the polarity rules read
# between them (each rule's passing cases are the tests after it)
_ANOTHER_QUESTION = [
    pytest.param(
        "how to close all open tabs in chrome",
        "how to close one tab in chrome",
        id="all of it or a part",
    ),
    pytest.param(
        "Remove the first occurrence of a value from a JavaScript array",
        "Remove all occurrences of a value from a JavaScript array",
        id="all of it or a part",
    ),
    pytest.param(
        "How do I cancel one item from my order?",
        "How do I cancel my entire order?",
        id="all of it or a part",
    ),
    pytest.param(
        "git command to stage all changed files",
        "git command to stage some of the changed files",
        id="all of it or a part",
    ),
    pytest.param(
        "what vaccines must my dog get by law",
        "what vaccines can my dog get by law",
        id="required or allowed",
    ),
    pytest.param(
        "Do I have to enroll in the pension plan?",
        "Can I enroll in the pension plan?",
        id="required or allowed",
    ),
    pytest.param(
        "Is it mandatory to register my drone?",
        "Is it possible to register my drone?",
        id="required or allowed",
    ),
    pytest.param(
        "What questions should an interviewer ask a candidate for a sales role?",
        "what questions should a candidate ask the interviewer for a sales role?",
        id="parties the other way round",
    ),
    pytest.param(
        "Can a mother with COVID pass it to her baby through breastfeeding?",
        "can a baby with covid pass it to the mother while breastfeeding?",
        id="parties the other way round",
    ),
    pytest.param(
        "Can the Netflix account owner see what extra members watch?",
        "can an extra member see what the netflix account owner watches?",
        id="parties the other way round",
    ),
    pytest.param(
        "Which planet is closest to the Sun?",
        "which planet is the farthest from the sun?",
        id="alternatives",
    ),
    pytest.param(
        "How do I extend my stay at the hotel?",
        "how do I shorten my stay at the hotel",
        id="alternatives",
    ),
    pytest.param(
        "How do I pause my Hulu subscription?",
        "how do I resume my hulu subscription?",
        id="alternatives",
    ),
    pytest.param(
        "Convert a $30 hourly wage to an annual salary",
        "convert a $30 hourly wage to a monthly salary",
        id="alternatives",
    ),
    pytest.param(
        "How do I contact Verizon support by email?",
        "how do I contact verizon support by phone?",
        id="alternatives",
    ),
    pytest.param(
        "current time in milliseconds in Java",
        "current time in nanoseconds in java",
        id="alternatives",
    ),
    pytest.param(
        "How do I return an error from a function in Go?",
        "how do I return multiple errors from one function in Go?",
        id="one or several",
    ),
    pytest.param(
        "Do I need both parents' consent to get a passport?",
        "do I need one parent's consent to get a passport?",
        id="one or several",
    ),
    pytest.param(
        "How do I book a hotel room on Booking.com?",
        "how do I book several hotel rooms on booking.com?",
        id="one or several",
    ),
]


@pytest.mark.parametrize(("a", "b"), _ANOTHER_QUESTION)
def test_near_duplicates_that_ask_another_question_fail_polarity(a: str, b: str) -> None:
    assert failed(a, b) == ("polarity",)


def test_all_and_one_in_prompts_that_differ_more_or_deny_pass() -> None:
    # a negated whole is a part: Banking77 says one thing both ways
    assert (
        failed("I didn't get all the cash I wanted", "I only got some of the cash I wanted") == ()
    )
    assert failed("My card isn't working at all", "Why is one of my card payments failing?") == ()
    assert (
        failed(
            "Why is my transfer still pending after all this time?", "Why is one transfer pending?"
        )
        == ()
    )
    # far apart in their other words: left to the other guards and the verifier
    assert (
        failed(
            "Are all fiat currencies supported?",
            "Can I hold one currency and spend another abroad?",
        )
        == ()
    )


def test_a_request_or_a_need_is_no_obligation() -> None:
    assert failed("Can you track my card for me?", "I have to track my card") == ()
    assert failed("Can you tell me how to track my card?", "How must I track my card?") == ()


def test_two_parties_in_the_same_order_or_one_party_pass() -> None:
    assert failed("Can a host cancel on a guest?", "Is a host allowed to cancel on a guest?") == ()
    assert (
        failed("Can my parents open an account for me?", "Can my mother open an account for me?")
        == ()
    )


def test_from_one_place_to_another_the_other_way_round_is_another_trip() -> None:
    assert failed(
        "What's the last train from Venice airport to my hotel in Mestre?",
        "what's the last train from my hotel in Mestre to Venice airport?",
    ) == ("polarity",)
    # the same trip said another way round, and words that name no place
    assert (
        failed("send money from my account to my son", "send money to my son from my account") == ()
    )
    assert (
        failed(
            "I want to move money from one account to another",
            "How do I move money from another account to this one?",
        )
        == ()
    )
    assert (
        failed(
            "Is it possible to change from USD to GBP with your app?",
            "Can I use your app to exchange USD for GBP?",
        )
        == ()
    )


def test_a_comparison_with_its_sides_swapped_is_another_question_unless_mirrored() -> None:
    assert failed(
        "Is vinyl plank flooring more durable than laminate?",
        "is laminate more durable than vinyl plank flooring?",
    ) == ("polarity",)
    assert failed(
        "Is naproxen longer-acting than ibuprofen?", "is naproxen shorter-acting than ibuprofen?"
    ) == ("polarity",)
    # said from the other side, the same comparison
    assert failed("is python faster than java", "is java slower than python") == ()
    assert failed("Is rice cheaper than pasta?", "is pasta more expensive than rice?") == ()
    assert failed("is python faster than java", "is python slower than java") == ("polarity",)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        # the comparative before a noun; a comparing verb; "the advantages of X over Y"
        (
            "When is the median a better measure than the mean?",
            "When is the mean better than the median?",
            False,
        ),
        (
            "Why does plain-text email sometimes outperform HTML email?",
            "Why do HTML emails often get better results than plain-text ones?",
            False,
        ),
        (
            "What are the advantages of a catamaran over a monohull for cruising?",
            "What advantages does a monohull have over a catamaran for cruising?",
            False,
        ),
        (
            "Why does plain-text email outperform HTML email?",
            "Why does HTML email underperform plain-text email?",
            True,
        ),
        ("Should I paint over wallpaper?", "Can I paint over old wallpaper?", True),
    ],
)
def test_comparisons_said_with_other_words_swap_and_mirror(a: str, b: str, same: bool) -> None:
    expected = () if same else ("polarity",)
    assert failed(a, b) == expected
    assert failed(b, a) == expected


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (
            "Can the king ever move two squares in chess?",
            "Apart from castling, can the king ever move two squares?",
            False,
        ),
        ("What can I eat on a keto diet?", "What can I eat on a keto diet besides meat?", False),
        # the speaker is no exception; "apart from" meaning "in addition to"
        ("Someone might be using my card", "Someone besides me might be using my card", True),
        (
            "Apart from learning to make a dataset, you will learn to upload it.",
            "In addition to learning to make a dataset, you will also learn to upload it.",
            True,
        ),
    ],
)
def test_an_exception_on_one_side_asks_something_else(a: str, b: str, same: bool) -> None:
    expected = () if same else ("polarity",)
    assert failed(a, b) == expected
    assert failed(b, a) == expected


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (
            "What's a good send volume per hour when warming up a new IP?",
            "What's a good send volume per day for warming up a new IP?",
            False,
        ),
        (
            "What's my monthly payment on a $250k loan at 5% for 30 years?",
            "What's my biweekly payment on a $250k loan at 5% for 30 years?",
            False,
        ),
        ("what is the daily withdrawal limit", "how much can I withdraw per day", True),
        ("do I pay every week", "is the payment weekly", True),
    ],
)
def test_counts_per_another_span_of_time_differ(a: str, b: str, same: bool) -> None:
    expected = () if same else ("polarity",)
    assert failed(a, b) == expected
    assert failed(b, a) == expected


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        # a condition added, articles aside
        (
            "Can I return a grocery item for a refund?",
            "Can I return grocery items for a refund if I already opened them?",
            False,
        ),
        ("how to set up 2fa on gmail", "How do I set up 2FA on Gmail without a phone?", False),
        # who asks, and where from, is no condition; nor a question word, nor "one of"
        ("The virtual card won't work.", "virtual card won't work for me", True),
        ("Can I use visa or mastercard with your service", "Can I use a Visa or Mastercard?", True),
        ("Can I change my PIN?", "Can I change my PIN on my phone?", True),
        ("Activate my card", "When are you going to activate my card?", True),
        ("why was a transfer declined", "Why was one of my transfers declined?", True),
    ],
)
def test_a_condition_added_with_other_articles(a: str, b: str, same: bool) -> None:
    expected = () if same else ("qualifier",)
    assert failed(a, b) == expected
    assert failed(b, a) == expected


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        # an acronym for words the other prompt spells out, which its entity guard found
        # as a name; hyphens as parts; little words inside an acronym of three letters
        (
            "Do we need a Data Protection Officer?",
            "How do I know if my company is required to appoint a DPO?",
            True,
        ),
        (
            "Is a 2% click-through rate good for a B2B newsletter?",
            "For a B2B newsletter, would you consider a 2% CTR good?",
            True,
        ),
        (
            "Does CBT-I actually work for insomnia?",
            "Is cognitive behavioral therapy for insomnia effective?",
            True,
        ),
        ("Can I get a card in the EU?", "Can I get a card in the European Union?", True),
        # not initials that happen to line up, nor an acronym for other words
        ("I made a WD at the machine", "I made a withdrawal I don't recognise", False),
        ("Do we need a Data Protection Officer?", "Do we need a CTO?", False),
        (
            "Is a DPO required under HIPAA?",
            "Is a Data Protection Officer required under GDPR?",
            False,
        ),
        # US states by their codes, in capitals
        (
            "How much does it cost to move from Texas to California?",
            "Roughly what would a move from TX to CA set me back?",
            True,
        ),
        (
            "How much does it cost to move from Texas to California?",
            "Roughly what would a move from CA to TX set me back?",
            False,
        ),
    ],
)
def test_acronyms_and_state_codes_name_what_they_stand_for(a: str, b: str, same: bool) -> None:
    assert passes_both_ways(a, b) is same


def test_two_things_joined_by_and_with_articles_may_come_in_either_order() -> None:
    assert failed("compare the cat and the dog", "compare the dog and the cat") == ()
    assert failed(
        "substitute the baking soda for the baking powder",
        "substitute the baking powder for the baking soda",
    ) == ("polarity",)


def test_two_words_trading_places_with_other_articles_between() -> None:
    assert failed(
        "Can a controller audit its processor under GDPR?",
        "Can a processor audit the controller under GDPR?",
    ) == ("polarity",)
    assert (
        failed("Can a controller audit its processor?", "Can the controller audit a processor?")
        == ()
    )


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        # an hour of the clock glued or not, "k" for thousands, speeds and energy in words
        ("Why do I keep waking up at 3am?", "I wake up around 3 am every night, why?", True),
        ("Is it bad to drink coffee at 4 pm?", "should I skip my 4pm coffee?", True),
        ("wake up at 3am", "wake up at 3:00", True),
        ("wake up at 3am", "wake up at 3pm", False),
        ("wake up at 3am", "wake up after 3 hours", False),
        ("set an alarm for 3 pm", "set an alarm for 3:00 pm", True),
        ("set an alarm for 3:30 pm", "set an alarm for 15:30", True),
        ("set an alarm for 3:30 pm", "set an alarm for 3:30 am", False),
        ("payment on a 300k loan", "payment on a 300,000 loan", True),
        ("How many knots is 12 miles per hour?", "quick one: 12 mph in knots?", True),
        ("How many kWh is 100 therms?", "convert 100 therms to kilowatt-hours", True),
        ("walk 5 miles", "walk 5 mph", False),
    ],
)
def test_times_of_day_thousands_and_units_in_words(a: str, b: str, same: bool) -> None:
    assert passes_both_ways(a, b) is same


def test_the_states_are_the_united_states() -> None:
    assert failed("can I use my card in the States", "can I use my card in the US") == ()
    assert failed("can I use my card in the States", "can I use my card in Canada") == ("entities",)
    assert failed("what are the states of matter", "name the states of matter") == ()


def test_the_same_thing_done_on_another_platform_differs() -> None:
    assert failed(
        "How do I import a PGN into Lichess on the mobile app?",
        "How do I import a PGN into Lichess on the desktop site?",
    ) == ("polarity",)


def test_per_hour_is_not_per_minute() -> None:
    assert failed(
        "How much data does Netflix use per hour in HD?",
        "how much data does netflix use per minute in HD?",
    ) == ("polarity",)


def test_several_times_is_no_count_of_things() -> None:
    assert (
        failed(
            "Why was my card payment declined?", "Why was my card payment declined several times?"
        )
        == ()
    )


def test_idioms_with_all_or_every_name_no_whole() -> None:
    from deja.semantic.guards.compare import _universal

    for text in ("pending after all this time", "it does not work at all", "every time I pay"):
        assert _universal(signature(text).plain) == (False, False), text
    assert _universal(signature("cancel all my payments").plain) == (True, False)
    assert failed("Why is one transfer pending every time?", "Why is one transfer pending?") == ()


def substituted(a: str, b: str, settings: GuardSettings | None = None) -> tuple[str, str] | None:
    return check_guards(signature(a), signature(b), settings).substituted


@pytest.mark.parametrize(
    ("a", "b", "words"),
    [
        (
            "how to install nginx on ubuntu",
            "how to configure nginx on ubuntu",
            ("install", "configure"),
        ),
        (
            "fibonacci in python using recursion",
            "fibonacci in python using iteration",
            ("recursion", "iteration"),
        ),
        (
            "What's the drive time from SF to LA?",
            "What's the flight time from SF to LA?",
            ("drive", "flight"),
        ),
        # a request word traded for another word ("list" is also a thing)
        (
            "convert a string to a dictionary in Go",
            "convert a list to a dictionary in Go",
            ("string", "list"),
        ),
        # articles, possessives, pronouns, "do" and "be" are not words of the question
        (
            "Is there a fee for a physical card?",
            "Is there a charge for physical cards?",
            ("fee", "charge"),
        ),
    ],
)
def test_one_word_traded_between_the_same_words_is_reported(
    a: str, b: str, words: tuple[str, str]
) -> None:
    assert substituted(a, b) == words
    assert substituted(b, a) == words[::-1]
    assert failed(a, b) == ()  # the guards leave it to the words' meaning (decide)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # request words
        ("how to install nginx on Debian 12", "steps to install nginx on Debian 12"),
        ("list 5 fruits high in iron", "name 5 fruits high in iron"),
        (
            "I need 10 blog post titles about remote work",
            "give me 10 blog post titles about remote work",
        ),
        ("capital of Australia", "capitol of australia?"),  # two spellings of one word
        ("How do I recognise a phishing email", "How do I recognize a phishing email"),
        ("I can't log in to the app", "I cannot log in to the app"),  # a negation both sides
        ("How do I delete my account?", "How can you delete the account?"),  # "can" added
        ("install nginx on ubuntu", "configure apache on ubuntu"),  # two words traded
        ("nginx on ubuntu", "apache on ubuntu"),  # too short to be a frame
        ("how do I cancel my card", "how do I cancel my card"),  # nothing traded
        ("how to install nginx", "how to install nginx quickly"),  # a word added, not traded
    ],
)
def test_no_substitution_where_no_content_word_is_traded(a: str, b: str) -> None:
    assert substituted(a, b) is None
    assert substituted(b, a) is None


def test_the_substitution_guard_can_be_turned_off_and_defers_to_a_failed_guard() -> None:
    a, b = "how to install nginx on ubuntu", "how to configure nginx on ubuntu"
    assert substituted(a, b, GuardSettings(substitution=False)) is None
    # a failed guard settles the pair: nothing is left to ask of the words
    report = check_guards(signature("convert 5 km to miles"), signature("convert 8 km to yards"))
    assert report.failed and report.substituted is None


@pytest.mark.parametrize(
    ("a", "b", "guard"),
    [
        # two names trading places around the same words (a name of two words is one)
        (
            "Why did the United States declare war on Germany in 1917?",
            "Why did Germany declare war on the United States in 1917?",
            "entities",
        ),
        # a denial for a word that says something
        (
            "Write a tweet announcing our summer sale, include hashtags",
            "Write a tweet announcing our summer sale, no hashtags",
            "contradiction",
        ),
        # an irregular verb's past forms are the verb: one act, asked who / when
        ("Who wrote Pride and Prejudice?", "When was Pride and Prejudice written?", "polarity"),
        ("Why can't I use a disposable card?", "Where can I use a disposable card?", "polarity"),
        ("why did the Berlin Wall fall", "when did the Berlin Wall fall", "polarity"),
    ],
)
def test_names_traded_denials_traded_and_past_forms(a: str, b: str, guard: str) -> None:
    assert failed(a, b) == (guard,)
    assert failed(b, a) == (guard,)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("what is the difference between Python and Java", "difference between Java and Python"),
        ("Can I use my Visa card with Apple Pay", "Can I use Apple Pay with my Visa card"),
        ("How do I find my PIN?", "I cannot find my PIN."),  # how it is put, not what
        ("My top up is not working", "My top up isnt working"),
        # "why not" asks when, as a complaint
        ("When will my payment go through?", "Why hasn't my payment gone through?"),
        ("When will I get my new card?", "Why haven't I gotten my new card?"),
    ],
)
def test_the_same_question_put_another_way_passes(a: str, b: str) -> None:
    assert passes_both_ways(a, b)


@pytest.mark.parametrize(
    ("a", "b", "guard"),
    [
        # names trading places, little words added or dropped, the question itself alike
        (
            "Tom is 3 years older than twice Jerry's age. Their ages add up to 30. "
            "How old is Jerry?",
            "Jerry is 3 years older than twice Tom's age, and their ages add up to 30. "
            "How old is Jerry?",
            "entities",
        ),
        (
            "best app for learning english as a spanish speaker",
            "What's the best app for learning Spanish as an English speaker?",
            "entities",
        ),
        # "back" joins what comes before it: ONNX model -> PyTorch
        (
            "how to convert a pytorch model to onnx",
            "How can I convert an ONNX model back into PyTorch?",
            "polarity",
        ),
        # a count bounded another way
        (
            "regex for a password that contains at least one digit",
            "Regex to match a password containing exactly one digit",
            "polarity",
        ),
        # another span of time, word for word otherwise
        (
            "how much spanish can i realistically learn in a month",
            "How much Spanish can I realistically learn in a year?",
            "polarity",
        ),
        ("a three-year-old's sleep needs", "a 4 year old's sleep needs", "numbers"),
        ("What is the derivative of sin(x)?", "derivative of cos x?", "code"),
        # a spelling that is an everyday word is no name unless marked as one
        ("read a file in golang", "how do I go about reading a file", "entities"),
        ("How do I enable strict mode in JavaScript?", "turn on strict mode in python", "entities"),
        # one name spelled two ways, joined the other way round
        ("migrate from postgres to mysql", "migrate from MySQL to PostgreSQL", "entities"),
        # a word hyphenated on one side only is its parts: "all" / "any" aligned
        (
            "do all road bikes come with tubeless-ready rims",
            "do any road bikes come with tubeless ready rims?",
            "polarity",
        ),
        # a pick of the things that do not
        (
            "which red wines don't need decanting",
            "Which red wines need to be decanted?",
            "contradiction",
        ),
        (
            "count cells that are not blank in google sheets",
            "google sheets formula to count blank cells",
            "contradiction",
        ),
        # a condition added, however "how" is put
        (
            "how to set up 2fa on gmail",
            "How do I set up 2FA on Gmail without a phone?",
            "qualifier",
        ),
        (
            "How do I revert a transaction?",
            "How can I revert a transaction from this morning?",
            "qualifier",
        ),
    ],
)
def test_traded_names_bounds_spans_and_conditions(a: str, b: str, guard: str) -> None:
    assert failed(a, b) == (guard,)
    assert failed(b, a) == (guard,)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # two spellings of one product or language
        ("What's the difference between let and var in JavaScript?", "JS: var vs let?"),
        (
            "how to migrate from MySQL to PostgreSQL",
            "steps for migrating a database from mysql to postgres",
        ),
        ("How do I update Node.js to the latest LTS?", "How can I upgrade Node to the newest LTS?"),
        ("how to increase font size in vs code", "how do i make the font bigger in vscode"),
        # ... also where one side writes it in lower case, unmarked
        ("How do I enable strict mode in JavaScript?", "turn on strict mode js"),
        ("How do I restart a Kubernetes deployment?", "kubectl restart deployment"),
        ("How do I turn on Wi-Fi calling on my iPhone?", "enable wifi calling iphone how"),
        # a verb in -ing opening the sentence is not part of the name after it
        (
            "How do I clear the cache in Chrome on Android?",
            "Clearing Chrome's cache on an Android phone - steps?",
        ),
        # a number written in words inside a hyphenated word, with its unit
        (
            "How many hours should a 3 year old sleep at night?",
            "how much sleep does my three-year-old need at night",
        ),
        (
            "summarize the french revolution in 50 words",
            "Give me a fifty-word summary of the French Revolution.",
        ),
        # an exception without "all" is still the exception
        (
            "Sum of all integers from 1 to 100 except multiples of 3",
            "add up 1 to 100 excluding multiples of three",
        ),
        # one comparison said from the other side: its numbers swap places with its sides
        ("is 10 bigger than 3", "is 3 smaller than 10"),
        # code written as words on the other side, two words or more
        ("What is the derivative of sin(x)?", "derivative of sin x?"),
        # a complaint with a negation picks nothing
        (
            "I did a transfer and was charged a fee that shouldn't have been charged!",
            "Why is there a fee for my transfer?",
        ),
        # the product asked about, or anyone, is no condition
        ("How can I exchange currencies?", "How can I exchange currencies with this app?"),
        ("Can I activate my card?", "Can I activate my card with the app?"),
        ("How can I receive money?", "How can I receive money from someone?"),
        # a name right beside the other on one side names one thing, not two swapped
        (
            "BuilderConfig in Datasets lets the user pick a configuration",
            "Datasets' BuilderConfig lets the user pick a configuration",
        ),
        # "rub", "cad", "sterling" are words, not currencies, without an amount
        (
            "how to adjust bike brakes that are rubbing",
            "My bike brakes rub on the wheel - how do I adjust them?",
        ),
        # a unit's short form after a number; a superscript power
        (
            "Sam can paint a room in 6 hours and Alex can paint it in 3 hours. How long together?",
            "how long together to paint a room if sam takes 6 h alone and alex takes 3 h alone",
        ),
        (
            "A 5 kg object accelerates at 3 m/s². What net force acts on it?",
            "net force on a 5kg mass accelerating at 3 m/s^2",
        ),
    ],
)
def test_details_that_do_not_change_the_question(a: str, b: str) -> None:
    assert passes_both_ways(a, b)


def test_an_opening_verb_in_ing_starts_no_name_but_a_name_in_ing_stays_whole() -> None:
    assert signature("Updating Windows drivers").entity_candidates == {"windows"}
    assert signature("Sterling Silver price").entity_candidates == {"sterling silver"}
    assert signature("Wyoming State Parks").entity_candidates == {"wyoming state parks"}


def test_numbers_swap_places_only_with_a_comparison_said_from_the_other_side() -> None:
    assert failed("is 10 bigger than 3", "is 3 smaller than 10") == ()
    assert "numbers" in failed("is 10 bigger than 3", "is 3 bigger than 10")
    assert "numbers" in failed("what is 10 minus 3", "what is 3 minus 10")


def test_quantities_with_units_of_their_own_may_come_in_another_order() -> None:
    assert (
        failed(
            "What is the wavelength of a 440 Hz sound wave if the speed of sound is 343 m/s?",
            "sound speed 343 m/s, frequency 440 Hz - find the wavelength",
        )
        == ()
    )
    assert failed("a 5 kg box on a 30 degree slope", "a 30 degree slope with a 5 kg box") == ()
    # the numbers with the other unit, or two numbers of one unit, are other quantities
    assert "units" in failed("a 5 kg box on a 30 degree slope", "a 5 degree slope with a 30 kg box")
    assert "numbers" in failed(
        "Sam takes 6 hours and Alex 3 hours", "Sam takes 3 hours and Alex 6 hours"
    )
    assert "numbers" in failed("$5 for 3 kg", "$3 for 5 kg")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("I lost my phone yesterday, what can I do?", "what should I do if I lose my phone"),
        (
            "The day before yesterday, I sent a transfer. It still has not arrived.",
            "my transfer has not arrived",
        ),
        (
            "I'm going to a gig next weekend with friends - can I print mobile-only tickets?",
            "can I print mobile-only tickets?",
        ),
        (
            "My neighbor got me into beekeeping last year. How much honey should I leave?",
            "how much honey should I leave my bees",
        ),
    ],
)
def test_a_date_the_user_only_tells_is_no_date_asked_about(a: str, b: str) -> None:
    assert signature(a).dates_told
    assert "dates" not in failed(a, b)
    assert "dates" not in failed(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("will my card arrive tomorrow?", "will my card arrive?"),  # asked about
        ("is the bank open on Sunday", "is the bank open"),  # not the user's story
        ("I need a table for tonight", "I need a table"),  # a request's date
        ("I paid on March 5, why is it pending?", "why is my payment pending?"),  # calendar
        ("what is the weather tomorrow", "what is the weather"),
        # told on both sides, but not the same day
        ("I lost my card yesterday, help", "I lost my card last week, help"),
    ],
)
def test_a_date_asked_about_or_written_on_a_calendar_still_counts(a: str, b: str) -> None:
    assert "dates" in failed(a, b)
    assert "dates" in failed(b, a)


@pytest.mark.parametrize(
    ("a", "b", "guard"),
    [
        # a negation added along with another modal
        ("fish that can live with bettas", "fish that shouldn't live with bettas", "contradiction"),
        ("how to dress to look taller", "how to dress to look shorter", "polarity"),
        ("what is the thickest yarn weight", "what is the thinnest yarn weight", "polarity"),
        (
            "What causes ocean acidification?",
            "What are the effects of ocean acidification?",
            "polarity",
        ),
        (
            "my duties as the leader of a group hike",
            "my duties as a participant on a group hike",
            "polarity",
        ),
        # code spans in order around "before" / "after"
        (
            "Does calling plt.savefig() before plt.show() save the plot?",
            "Does calling plt.show() before plt.savefig() save the plot?",
            "code",
        ),
        # one word counted otherwise
        ("first aid for a first-degree burn", "first aid for a second-degree burn", "numbers"),
        # a name is not the end of another with a head that makes it another place
        ("capital of Korea", "capital of North Korea", "entities"),
        ("Can I use Apple Pay here", "Can I use Google Pay here", "entities"),
        ("Is the Pixel 8 waterproof", "Is the Pixel 8 Pro waterproof", "entities"),
        # a code is no word with a slip
        ("questions on the NCLEX-RN", "questions on the NCLEX-PN", "entities"),
        ("apply for the DV-2026 lottery", "apply for the DV-2027 lottery", "entities"),
    ],
)
def test_antonyms_modal_negations_ordered_code_and_counted_compounds(
    a: str, b: str, guard: str
) -> None:
    assert guard in failed(a, b)
    assert guard in failed(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            "What was Magnus Carlsen's peak FIDE rating?",
            "What's the highest FIDE rating Carlsen hit?",
        ),
        (
            "Why does Brutus betray Caesar?",
            "What are Brutus's reasons for betraying Julius Caesar?",
        ),
        (
            "Explain the difference between the Arduino Uno and the Arduino Nano.",
            "What's the difference between the Arduino Uno and the Nano?",
        ),
        ("Pixel 8 battery capacity", "what's the battery capacity of the Google Pixel 8"),
        ("what is the Ship of Theseus paradox", "whats the ship of thesius paradox"),
        ("rotate the tick labels by 45 degrees", "turn the tick labels 45°"),
        ("convert 30 celsius to fahrenheit", "what is thirty degrees celsius in fahrenheit"),
        ("is a second-hand car worth it", "is a used car worth it"),
    ],
)
def test_a_name_said_shorter_or_mistyped_and_degrees_written_as_a_sign(a: str, b: str) -> None:
    assert passes_both_ways(a, b)


@pytest.mark.parametrize(
    ("a", "b", "guard"),
    [
        (
            "transpose a melody up a perfect fifth",
            "transpose a melody down a perfect fifth",
            "polarity",
        ),
        (
            "Give me a weekly gym plan as a table",
            "Give me a weekly gym plan as a bulleted list",
            "polarity",
        ),
        ("write a tweet about our new roster", "write a poem about our new roster", "polarity"),
        (
            "What should a freelancer check before signing a client contract?",
            "What should a client check before signing a contract with a freelancer?",
            "polarity",
        ),
        (
            "As a coach, how do I give feedback to my team after a loss?",
            "As a player, how do I give feedback to my coach after a loss?",
            "polarity",
        ),
        (
            "As a dog owner, what should I expect from a dog trainer?",
            "I'm just starting out as a dog trainer - what should I expect?",
            "polarity",
        ),
        # names trading places are still two questions when more than a part moved
        (
            "why did the United States declare war on Germany",
            "why did Germany declare war on the United States",
            "entities",
        ),
    ],
)
def test_directions_forms_genres_parties_and_speakers(a: str, b: str, guard: str) -> None:
    assert guard in failed(a, b)
    assert guard in failed(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("In Hinduism, who is Shiva?", "Who is Shiva in Hinduism?"),  # a part moved
        ("What is Internal Revenue Service Form 1040?", "What is IRS Form 1040?"),
        (
            "What does the American Academy of Pediatrics recommend for infant sleep?",
            "What does the AAP recommend for infant sleep?",
        ),
        (
            "What is a Neapolitan sixth chord?",
            "I'm a piano student and my teacher said it today: what is a Neapolitan sixth chord?",
        ),
        ("what are my rights as a tenant", "as a renter, what rights do I have"),
        ("shut down my account", "close my account"),  # no direction asked
        ("explain what an ingress is in k8s", "What is a Kubernetes ingress?"),
        ("python3 print on one line", "print on one line in Python 3"),
    ],
)
def test_moved_parts_acronyms_told_dates_same_speakers_and_glued_versions(a: str, b: str) -> None:
    assert passes_both_ways(a, b)


def test_a_people_names_its_country_unless_a_thing_is_named_after_it() -> None:
    dutch = "is it normal for Dutch landlords to ask for a payslip"
    assert (
        failed("Is it normal for landlords in the Netherlands to ask for a payslip?", dutch) == ()
    )
    assert failed("what is the capital of France", "what is the French capital") == ()
    assert "entities" in failed("translate this into French", "translate this into German")
    assert "entities" in failed("how to make French toast", "how to make toast")
    assert "netherlands" not in signature("how do I season a Dutch oven").low_text
    assert "netherlands" in signature("do Dutch landlords ask for a payslip").low_text


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        # "APR" in capitals is a rate, not April
        (
            "monthly payment on a five thousand dollar loan at 10% APR over two years?",
            "monthly payment for a $5,000 loan, 10% APR, 2 years?",
            True,
        ),
        ("is the store open on Apr 5", "is the store open on April 5", True),
        # a 1 the other prompt writes "one"
        (
            "How do I squash my last three commits into one?",
            "squash my last 3 commits into 1",
            True,
        ),
        ("give me one example", "give me 2 examples", False),
        # what causes a thing is not how to fix it
        (
            "What causes the 'Unable to resolve module' error in React Native?",
            "How do I fix the 'Unable to resolve module' error in React Native?",
            False,
        ),
        # more of the same scope added with "and all"
        (
            "List all .log files in the current directory.",
            "List all .log files in the current directory and all its subdirectories.",
            False,
        ),
    ],
)
def test_rates_ones_in_words_causes_and_widened_scopes(a: str, b: str, same: bool) -> None:
    assert passes_both_ways(a, b) is same


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        # one thing against all of them, between prompts otherwise the same
        ("How do I delete a key in Redis?", "How do I delete all keys in Redis?", False),
        ("Is there a fee for receiving money?", "Are there any fees for receiving money?", True),
        ("How much does a transfer cost?", "How much does each transfer cost?", True),
        ("Who composed the music for the musical?", "Who wrote the lyrics for the musical?", False),
        # a constraint said after the question
        (
            "How do I parse JSON in Kotlin?",
            "How do I parse JSON in Kotlin? I can't add any third-party libraries.",
            False,
        ),
        ("How do I reset my password?", "How do I reset my password? Thanks a lot!", True),
        ("I left my phone at the hotel", "I left my phone at the hotel, it's not working", True),
        # "one day" is "1 day"
        (
            "Is a ten-mile hike doable for a beginner in one day?",
            "Is a 10 mile hike doable for a beginner in 1 day?",
            True,
        ),
    ],
)
def test_one_against_all_music_against_lyrics_constraints_and_one_unit(
    a: str, b: str, same: bool
) -> None:
    assert passes_both_ways(a, b) is same


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        # a one-letter flag or escape in another case is another option
        ("what does `git branch -d feature` do", "what does `git branch -D feature` do", False),
        ("what does git branch -d feature do", "what does git branch -D feature do", False),
        (
            "In Python `re`, what does `\\s+` match?",
            "In Python `re`, what does `\\S+` match?",
            False,
        ),
        # an error message quoted on one side, retold on the other
        (
            '"fatal: refusing to merge unrelated histories" when doing git pull, how to fix?',
            "git pull fails saying it refuses to merge unrelated histories, how do I fix that?",
            True,
        ),
        ('translate "good morning my friend" to French', "translate good morning to French", False),
        # a name inside the other side's code
        (
            "What does `kubectl rollout undo deployment/web` do?",
            "What does kubectl rollout undo deployment/web do?",
            True,
        ),
        (
            "How do I make an HTTP request synchronously?",
            "How do I make an HTTP request asynchronously?",
            False,
        ),
        ("how do I do an inner join in LINQ", "how do I do a left outer join in LINQ", False),
        (
            "Python: how do I reverse a list in-place?",
            "Python: how do I get a reversed copy of a list?",
            False,
        ),
    ],
)
def test_cased_flags_retold_errors_names_in_code_and_coding_poles(
    a: str, b: str, same: bool
) -> None:
    assert passes_both_ways(a, b) is same


def test_two_spellings_of_one_name_are_no_substitution(embedder: Any) -> None:
    from deja.semantic.decision import guard_report, word_similarity_for

    words = word_similarity_for(embedder)
    a, b = (
        "How do I parse command line flags in golang?",
        "How do I parse command line flags in Go?",
    )
    assert guard_report(signature(a), signature(b), None, words)[0].ok


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        # accents: the same name typed without them
        (
            "what's the difference between a sazerac and a vieux carre",
            "What's the difference between a Sazerac and a Vieux Carré?",
            True,
        ),
        # a superscript power is the caret users type
        ("net force on 5 kg at 3 m/s²", "net force on 5 kg at 3 m/s^2", True),
        # units whose words mean other things too count after a number only
        (
            "With 200 bar in an 11 liter tank, how much air do I have?",
            "How much air do I have in an 11 liter tank filled to 200 bar?",
            True,
        ),
        ("I'm a bit confused about pointers in C", "I'm confused about pointers in C", True),
        ("max value of a 32 bit integer", "max value of a 32 byte integer", False),
        (
            "In C, what does sizeof give for an array of 10 ints, in bytes?",
            "In C, what does sizeof give for an array of 10 ints, in bits?",
            False,
        ),
        # numbers keep their order within one unit only
        (
            "Near a tall tower, am I allowed to fly my drone above 400 feet under Part 107?",
            "Under Part 107, am I allowed to fly my drone above 400 feet if I'm near a tower?",
            True,
        ),
        ("from 3 to 5 km", "from 5 to 3 km", False),
        # a clause put first does not reverse two parties
        (
            "If both parents are carriers of cystic fibrosis, what's the chance their child"
            " has it?",
            "What's the chance a child has cystic fibrosis if both parents are carriers?",
            True,
        ),
        (
            "If a mother has covid, can she pass it to her baby?",
            "If a baby has covid, can it pass it to the mother?",
            False,
        ),
    ],
)
def test_accents_powers_numbered_units_and_fronted_clauses(a: str, b: str, same: bool) -> None:
    assert passes_both_ways(a, b) is same


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            "Does the off-peak membership include classes?",
            "Does the peak membership include classes?",
        ),
        (
            "Which countries have a semi-presidential system?",
            "Which countries have a presidential system?",
        ),
        ("How do I register a non-profit in Ohio?", "How do I register a profit in Ohio?"),
        ("¿Cómo desactivo mi cuenta?", "¿Cómo activo mi cuenta?"),
    ],
)
def test_a_prefixed_word_is_a_substitution_however_alike(embedder: Any, a: str, b: str) -> None:
    from deja.semantic.decision import guard_report, word_similarity_for

    words = word_similarity_for(embedder)
    report, detail = guard_report(signature(a), signature(b), None, words)
    assert report.failed == ("substitution",) and detail is not None and "prefixed" in detail


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (
            "Why does my Wi-Fi keep disconnecting?",
            "How do I stop my Wi-Fi from disconnecting?",
            False,
        ),
        ("Why is my ride payment failing?", "How do I fix my ride payment failing?", False),
        (
            "Why am I getting a SettingWithCopyWarning in pandas?",
            "how do i get rid of the SettingWithCopyWarning in my pandas code",
            False,
        ),
        ("Why does my Wi-Fi keep disconnecting?", "My Wi-Fi keeps disconnecting, why?", True),
        (
            "How do I fix my Wi-Fi disconnecting?",
            "How can I fix Wi-Fi that keeps disconnecting?",
            True,
        ),
    ],
)
def test_why_asks_for_causes_and_how_to_fix_for_steps(a: str, b: str, same: bool) -> None:
    assert passes_both_ways(a, b) is same


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (
            "Why can my phone connect to Wi-Fi but my laptop can't?",
            "Why can't my phone connect to Wi-Fi but my laptop can?",
            False,
        ),
        ("Why doesn't my card work?", "Why does my card not work?", True),
        ("I have not received my pin yet", "I havn't received my PIN yet.", True),
        (
            "list arguments for the claim that the treaty caused the war",
            "list arguments against the claim that the treaty caused the war",
            False,
        ),
        (
            "Do I owe tax on crypto if I just hold it?",
            "Do I owe tax on crypto if I sell it?",
            False,
        ),
        (
            "How much checked baggage is allowed in business class?",
            "How much checked baggage is allowed in economy class?",
            False,
        ),
    ],
)
def test_denials_in_another_clause_sides_of_a_claim_and_sibling_fares(
    a: str, b: str, same: bool
) -> None:
    assert passes_both_ways(a, b) is same


def test_names_of_the_same_words_pass_the_entities_guard() -> None:
    assert passes_both_ways("what happened on VE day", "What happened on Victory in Europe Day?")
    assert passes_both_ways("how to make a vlookup in excell", "How to make a VLOOKUP in Excel")
    assert not passes_both_ways("what happened on VE day", "What happened on D-Day?")


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (
            "Can I switch from brand-name Lipitor to generic atorvastatin?",
            "Can I switch from generic atorvastatin to brand-name Lipitor?",
            False,
        ),
        (
            "regex to convert snake_case to camelCase",
            "regex to convert camelCase to snake_case",
            False,
        ),
        (
            "Can I switch from brand-name Lipitor to generic atorvastatin?",
            "Is switching from brand-name Lipitor to generic atorvastatin ok?",
            True,
        ),
        (
            "How can a renter save on heating bills?",
            "How can a homeowner save on heating bills?",
            False,
        ),
        ("How do I reset my Nest thermostat?", "How do I restart my Nest thermostat?", False),
        (
            "Does the family membership include free parking?",
            "Does the individual membership include free parking?",
            False,
        ),
        ("SQL: get the previous row's value", "SQL: get the following row's value", False),
        (
            "why does numpy warn about divide by zero",
            "how do i silence numpy's divide by zero warning",
            False,
        ),
    ],
)
def test_the_ends_of_a_change_renters_resets_and_tiers(a: str, b: str, same: bool) -> None:
    assert passes_both_ways(a, b) is same


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (
            "Rate limit is 1000 requests per hour, how many per second is that?",
            "If my quota is 1000 requests per day, how many per second is that?",
            False,
        ),
        ("Git LFS: how do I lock a file?", "Git LFS: how do I unlock a file?", False),
    ],
)
def test_each_side_counting_per_another_span_and_locks(a: str, b: str, same: bool) -> None:
    assert passes_both_ways(a, b) is same


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (
            "When did the American Civil War start?",
            "When did the American Civil War start and end?",
            False,
        ),
        (
            "What causes condensation on the inside of windows in winter?",
            "How do I prevent condensation on the inside of windows in winter?",
            False,
        ),
        ("When did the war start?", "When did the war start, roughly?", True),
    ],
)
def test_more_asked_with_and_and_prevention_is_a_fix(a: str, b: str, same: bool) -> None:
    assert passes_both_ways(a, b) is same


def test_a_rate_one_side_adds_is_no_other_rate() -> None:
    from deja.semantic.guards.compare import _rates_differ

    hour, both = signature("emails sent per hour").plain, signature("per hour or per day").plain
    assert not _rates_differ(hour, both) and not _rates_differ(both, hour)
    assert _rates_differ(hour, signature("emails sent per day").plain)
