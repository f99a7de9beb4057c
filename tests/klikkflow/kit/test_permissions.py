"""The permission matrix: what the README shows is what the code enforces."""

from __future__ import annotations

from pathlib import Path

import pytest

from klikkflow.kit.auth import ROLES, Viewer
from klikkflow.kit.errors import NotAllowed
from klikkflow.kit.permissions import MATRIX, allowed, require, table

README = Path(__file__).resolve().parents[3] / "README.md"


def test_the_readme_shows_the_enforced_matrix():
    text = README.read_text()
    shown = text.split("<!-- permissions:start -->")[1].split("<!-- permissions:end -->")[0]
    assert shown.strip() == table()


@pytest.mark.parametrize("action", sorted(MATRIX))
@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_exactly_what_the_matrix_says(action, role):
    viewer = Viewer(user_id="u", organization_id="o", role=role)
    expected = ROLES.index(role) <= ROLES.index(MATRIX[action])
    assert allowed(viewer, action) is expected
    if expected:
        require(viewer, action)
    else:
        with pytest.raises(NotAllowed, match="your role may not"):
            require(viewer, action)


def test_owners_may_do_everything_and_viewers_nothing_listed():
    assert all(allowed(Viewer("u", "o", "owner"), a) for a in MATRIX)
    assert not any(allowed(Viewer("u", "o", "viewer"), a) for a in MATRIX)
