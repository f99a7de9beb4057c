"""Domain errors every service raises; one place per API renders them (GraphQL unions)."""

from __future__ import annotations


class InvalidInput(Exception):
    """The input was refused; `problems` maps each field path to why."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = problems


class NotAllowed(Exception):
    """The viewer's role does not allow the action."""

    def __init__(self, action: str) -> None:
        super().__init__(f"your role may not {action}")
