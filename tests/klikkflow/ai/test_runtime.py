"""Which part of a conversation a memory hands back: a window of messages, a token limit,
and never a conversation that starts with the assistant."""

from __future__ import annotations

from klikkflow.ai.runtime import MemoryLimit, Turn, estimate_tokens, within

TALK = [
    Turn("user", "Hi, I am Ada."),  # 4 tokens
    Turn("assistant", "Hello Ada!"),  # 3
    Turn("user", "I like sailing."),  # 4
    Turn("assistant", "Sailing is fun."),  # 4
    Turn("user", "Where should I sail next summer?"),  # 8
    Turn("assistant", "Try the Lofoten islands."),  # 6
]


def test_tokens_are_estimated_at_four_characters_each_rounded_up():
    assert [estimate_tokens(t.content) for t in TALK] == [4, 3, 4, 4, 8, 6]
    assert estimate_tokens("") == 1


def test_a_window_keeps_the_last_messages_from_a_user_message_on():
    assert within(TALK, MemoryLimit(window=4)) == TALK[2:]
    assert within(TALK, MemoryLimit(window=3)) == TALK[4:]  # it would start with "Sailing is fun."
    assert within(TALK, MemoryLimit(window=None)) == TALK


def test_a_token_limit_keeps_the_most_recent_messages_that_fit():
    assert within(TALK, MemoryLimit(window=None, token_limit=14)) == TALK[4:]
    assert within(TALK, MemoryLimit(window=None, token_limit=22)) == TALK[2:]
    assert within(TALK, MemoryLimit(window=None, token_limit=5)) == []
    assert within(TALK, MemoryLimit(window=2, token_limit=1000)) == TALK[4:]
