import pytest

from klikkflow.kit.passwords import check_password, common_passwords

TOO_SHORT = "Use at least 10 characters."
TOO_LONG = "Use at most 1024 characters."
REPETITIVE = "Don't repeat one character so often."
COMMON = "This is one of the most common passwords; choose something less predictable."
CONTAINS_EMAIL = "Don't include your e-mail address."
CONTAINS_NAME = "Don't include your name."
TOO_SIMPLE = "Make it longer, or mix in capital letters, digits or symbols."

ADA = {"email": "ada.lovelace@example.com", "name": "Ada Lovelace"}
GRACE = {"email": "grace@navy.example", "name": "Grace Hopper"}


@pytest.mark.parametrize(
    ("password", "account"),
    [
        ("correct horse battery staple", ADA),
        ("Tr0ub4dor&3x", ADA),
        ("vN7#qL2!zR", ADA),  # exactly 10 characters
        ("4829175036182", ADA),  # 13 digits: 43 bits
        ("mückenstich-regen", ADA),
        ("Adamant-Weather-88", ADA),  # "ada" is too short to count as the name
        ("olive wurst 77", {"email": "li@example.com", "name": "Li Wu"}),
        ("workflows rock, 2024", {"email": "kite+workflows@example.com", "name": ""}),
        ("ab1!" * 256, ADA),  # exactly 1024 characters
    ],
)
def test_acceptable_passwords_have_no_problems(password: str, account: dict[str, str]) -> None:
    assert check_password(password, **account) == []


@pytest.mark.parametrize(
    ("password", "account", "problems"),
    [
        ("", ADA, [TOO_SHORT, TOO_SIMPLE]),
        ("abcdefghi", ADA, [TOO_SHORT]),
        ("ab1!" * 256 + "x", ADA, [TOO_LONG]),
        ("aaaaaaaaaa", ADA, [REPETITIVE]),
        ("zzzzzzzzzzzzzzzzzzzzzzzz9", ADA, [REPETITIVE]),
        ("password", ADA, [TOO_SHORT, COMMON, TOO_SIMPLE]),
        ("qwertyuiop", ADA, [COMMON]),
        ("1qaz2wsx3edc", ADA, [COMMON]),
        ("1234567890", ADA, [COMMON, TOO_SIMPLE]),
        ("Password123!", ADA, [COMMON]),
        ("P@ssw0rd2024", ADA, [COMMON]),  # l33t spelling undone
        ("we1come2024", ADA, [COMMON]),  # "1" read as "l"
        ("Sunshine1987!", ADA, [COMMON]),
        ("!!Football!!", ADA, [COMMON]),  # digits or symbols around a common one
        ("839201746512", ADA, [TOO_SIMPLE]),  # 12 digits: 39.9 bits
        (
            "x-ADA.LOVELACE-x9",
            {"email": "ada.lovelace+work@example.com", "name": ""},
            [CONTAINS_EMAIL],
        ),
        ("my lovelace machine", ADA, [CONTAINS_EMAIL, CONTAINS_NAME]),
        (
            "flying a kite in 2024",
            {"email": "kite+workflows@example.com", "name": ""},
            [CONTAINS_EMAIL],
        ),
        ("Hopper-cobol-1952", GRACE, [CONTAINS_NAME]),
        ("ok-LiWu-secure", {"email": "li@example.com", "name": "Li Wu"}, [CONTAINS_NAME]),
        ("Hopper1", GRACE, [TOO_SHORT, CONTAINS_NAME]),
    ],
)
def test_refused_passwords_name_every_problem(
    password: str, account: dict[str, str], problems: list[str]
) -> None:
    assert check_password(password, **account) == problems


def test_personal_checks_need_an_account() -> None:
    assert check_password("lovelace-engine-1843") == []


def test_the_common_password_list_is_shipped_in_lower_case() -> None:
    listed = common_passwords()

    assert 3000 < len(listed) < 10_000
    assert all(entry == entry.casefold() and entry.strip() == entry for entry in listed)
    assert {"password", "123456", "qwerty", "letmein", "iloveyou", "dragon"} <= listed
