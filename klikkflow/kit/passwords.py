"""Minimum password strength, without a heavy dependency.

``check_password`` returns every problem it finds as a sentence to show the user, so a
form can list them all at once; an empty list means the password is acceptable. The
rules follow NIST SP 800-63B in spirit: a length floor, a list of common passwords
(``common_passwords.txt``, generated from well-known patterns: see its header), nothing
from the account itself, and a rough entropy floor instead of composition rules.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from functools import cache
from importlib.resources import files

MIN_LENGTH = 10
MAX_LENGTH = 1024
MIN_ENTROPY_BITS = 40
MIN_PERSONAL_WORD = 4  # shorter parts of a name or address are too likely by chance

TOO_SHORT = f"Use at least {MIN_LENGTH} characters."
TOO_LONG = f"Use at most {MAX_LENGTH} characters."
REPETITIVE = "Don't repeat one character so often."
COMMON = "This is one of the most common passwords; choose something less predictable."
CONTAINS_EMAIL = "Don't include your e-mail address."
CONTAINS_NAME = "Don't include your name."
TOO_SIMPLE = "Make it longer, or mix in capital letters, digits or symbols."

# A common password with digits or symbols around it is still a common password.
_CORE = re.compile(r"[\d\W_]*(.*?)[\d\W_]*", re.DOTALL)
# l33t spelling undone; "1" stands for "i" as often as for "l", so both are tried.
_LEET = {"@": "a", "4": "a", "3": "e", "0": "o", "$": "s", "5": "s", "7": "t", "!": "i", "|": "l"}
_UNLEET = [str.maketrans({**_LEET, "1": one}) for one in ("i", "l")]

_CHARACTER_CLASSES = [
    (frozenset(string.ascii_lowercase), 26),
    (frozenset(string.ascii_uppercase), 26),
    (frozenset(string.digits), 10),
    (frozenset(string.punctuation + " "), 33),
]
_OTHER_CLASS = 100  # any other character: a rough guess for letters of other scripts
_ASCII = frozenset(string.ascii_letters + string.digits + string.punctuation + " ")


def check_password(password: str, *, email: str = "", name: str = "") -> list[str]:
    """Every problem with ``password`` for the account of ``email`` and ``name``."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(TOO_SHORT)
    if len(password) > MAX_LENGTH:
        problems.append(TOO_LONG)
    if _mostly_one_character(password):
        problems.append(REPETITIVE)
    if _is_common(password):
        problems.append(COMMON)
    lowered = password.casefold()
    if any(word in lowered for word in _email_words(email)):
        problems.append(CONTAINS_EMAIL)
    if any(word in lowered for word in _name_words(name)):
        problems.append(CONTAINS_NAME)
    if entropy_bits(password) < MIN_ENTROPY_BITS:
        problems.append(TOO_SIMPLE)
    return problems


def entropy_bits(password: str) -> float:
    """Length times log2 of the character classes used: an upper bound, good as a floor."""
    used = set(password)
    pool = sum(size for members, size in _CHARACTER_CLASSES if not used.isdisjoint(members))
    if not used <= _ASCII:
        pool += _OTHER_CLASS
    return len(password) * math.log2(pool) if pool else 0.0


@cache
def common_passwords() -> frozenset[str]:
    text = files("klikkflow.kit").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(
        line for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def _mostly_one_character(password: str) -> bool:
    if not password:
        return False
    [(_, most)] = Counter(password).most_common(1)
    return most * 2 > len(password)


def _is_common(password: str) -> bool:
    lowered = password.casefold()
    core = _core(lowered)
    candidates = {lowered, core, *(core.translate(table) for table in _UNLEET)}
    return not candidates.isdisjoint(common_passwords())


def _core(lowered: str) -> str:
    match = _CORE.fullmatch(lowered)
    return match.group(1) if match else lowered


def _email_words(email: str) -> set[str]:
    local = email.casefold().rpartition("@")[0] or email.casefold()
    local = local.partition("+")[0]  # ada+klikkflow@: the tag is no part of the person
    return _long_enough({local, *re.split(r"[\W_]+", local)})


def _name_words(name: str) -> set[str]:
    parts = re.split(r"[\W_]+", name.casefold())
    return _long_enough({"".join(parts), *parts})


def _long_enough(words: set[str]) -> set[str]:
    return {word for word in words if len(word) >= MIN_PERSONAL_WORD}
