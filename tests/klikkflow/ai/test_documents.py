"""Documents to text and chunks: each format, each refusal, and the chunks' promises."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from klikkflow.ai.documents import (
    Block,
    DocumentRefused,
    DocumentTooLarge,
    Extracted,
    chunk,
    content_type_of,
    extract,
    read_limited,
)
from tests.factories.documents import pdf

MB = 1024 * 1024


def texts(extracted: Extracted) -> list[tuple[tuple[str, ...], str]]:
    return [(b.headings, b.text) for b in extracted.blocks]


def test_markdown_keeps_headings_as_context_and_drops_markup():
    source = (
        "# Guide\n\nIntro with *emphasis*, a [link](http://x.test) and `code`.\n\n"
        "## Setup\n\n- first step\n- second **step**\n\n| key | value |\n|---|---|\n| a | 1 |\n\n"
        "```sh\npip install klikkflow\n```\n\n### Deep\n\nDeep text.\n\n## Use\n\nUse it.\n"
    )
    extracted = extract(source.encode(), "text/markdown", MB)
    assert extracted.title == "Guide"
    assert texts(extracted) == [
        (("Guide",), "Intro with emphasis, a link and code."),
        (("Guide", "Setup"), "- first step"),
        (("Guide", "Setup"), "- second step"),
        (("Guide", "Setup"), "key | value"),
        (("Guide", "Setup"), "a | 1"),
        (("Guide", "Setup"), "pip install klikkflow"),
        (("Guide", "Setup", "Deep"), "Deep text."),
        (("Guide", "Use"), "Use it."),  # a heading of the same level replaces the last one
    ]


def test_html_drops_script_style_and_navigation():
    page = (
        b"<!doctype html><html><head><title>Pets &amp; people</title><style>p{}</style>"
        b"<script>var secret = 1;</script></head><body><nav><a>Home</a><a>Shop</a></nav>"
        b"<h1>Animals</h1><p>The cat\n   sleeps<br>on the <b>mat</b>.</p><!-- a comment -->"
        b"<div>Outer<p>inner</p>tail</div><h2>Table</h2>"
        b"<table><tr><th>name</th><th>legs</th></tr><tr><td>cat</td><td>4</td></tr></table>"
        b"<pre>  indented\n  code</pre><noscript>enable js</noscript></body></html>"
    )
    extracted = extract(page, "text/html; charset=utf-8", MB)
    assert extracted.title == "Pets & people"
    assert texts(extracted) == [
        (("Animals",), "The cat sleeps\non the mat."),
        (("Animals",), "Outer"),
        (("Animals",), "inner"),
        (("Animals",), "tail"),
        (("Animals", "Table"), "name | legs"),
        (("Animals", "Table"), "cat | 4"),
        (("Animals", "Table"), "indented\n  code"),
    ]


def test_plain_text_is_split_into_paragraphs():
    extracted = extract(b"\xef\xbb\xbfFirst line\r\nsame paragraph\r\n\r\n\r\nSecond.", PLAIN, MB)
    assert texts(extracted) == [((), "First line\nsame paragraph"), ((), "Second.")]


PLAIN = "text/plain"


def test_pdf_text_is_read_page_by_page():
    document = pdf([["Page one says hello."], ["Page two", "", "says goodbye."]], title="Two")
    extracted = extract(document, "application/pdf", MB)
    assert extracted.title == "Two"
    assert extracted.pages == 2
    assert [(b.page, b.text) for b in extracted.blocks] == [
        (1, "Page one says hello."),
        (2, "Page two\nsays goodbye."),
    ]


@pytest.mark.parametrize(
    ("data", "content_type", "reason"),
    [
        (b"", PLAIN, "the document is empty"),
        (b" \n\t\n ", PLAIN, "the document holds no text"),
        (b"# \n\n---\n", "text/markdown", "the document holds no text"),
        (b"<html><script>x()</script></html>", "text/html", "the document holds no text"),
        (b"\xff\xfeh\x00i\x00", PLAIN, "the document is not UTF-8 text"),
        (b"a\x00b", PLAIN, "the document is binary"),
        (b"hello", "application/pdf", "the document is not a PDF"),
        (b"%PDF-1.7\nnot really", "application/pdf", "the PDF cannot be read"),
        (pdf([[]]), "application/pdf", "no text found in the PDF (1 pages)"),
    ],
)
def test_refusals_say_why(data, content_type, reason):
    with pytest.raises(DocumentRefused) as refused:
        extract(data, content_type, MB)
    assert reason in str(refused.value)
    assert refused.value.problems == {"content": str(refused.value)}


def test_documents_over_the_limit_are_refused_unread():
    with pytest.raises(DocumentTooLarge) as refused:
        extract(b"%PDF-" + b"x" * 96, "application/pdf", 100)
    assert str(refused.value) == "the document is larger than the limit of 100 bytes (101 bytes)"
    assert extract(b"x" * 100, PLAIN, 100).text == "x" * 100


@pytest.mark.parametrize(
    ("declared", "name", "expected"),
    [
        ("text/markdown; charset=utf-8", "x", "text/markdown"),
        ("TEXT/HTML", "x", "text/html"),
        ("application/x-pdf", "x", "application/pdf"),
        (None, "notes.MD", "text/markdown"),
        ("application/octet-stream", "scan.pdf", "application/pdf"),
        ("", "page.htm", "text/html"),
        ("text/plain", "looks.pdf", "text/plain"),  # a declared type wins
    ],
)
def test_content_types_come_from_the_declaration_or_the_name(declared, name, expected):
    assert content_type_of(declared, name) == expected


@pytest.mark.parametrize(("declared", "name"), [("image/png", "a.png"), (None, "a.docx")])
def test_other_content_types_are_refused(declared, name):
    with pytest.raises(DocumentRefused) as refused:
        content_type_of(declared, name)
    assert refused.value.problems.keys() == {"contentType"}


async def test_a_stream_is_read_only_up_to_the_limit():
    sent = []

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(50):
            sent.append(1)
            yield b"x" * MB

    with pytest.raises(DocumentTooLarge):
        await read_limited(stream(), 3 * MB)
    assert len(sent) == 4  # refused at the fourth megabyte of fifty
    assert await read_limited(stream(), 50 * MB) == b"x" * 50 * MB


# ---- chunks ----------------------------------------------------------------------------------


def random_document(seed: int) -> Extracted:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]
    blocks = []
    for section in range(rng.randint(1, 4)):
        headings = (f"Part {section}",) if rng.random() < 0.7 else ()
        for _ in range(rng.randint(1, 6)):
            sentence_words = [rng.choice(words) for _ in range(rng.randint(1, 400))]
            text = " ".join(w + ("." if rng.random() < 0.08 else "") for w in sentence_words)
            blocks.append(Block(text, headings))
    return Extracted(PLAIN, blocks)


@pytest.mark.parametrize("seed", range(25))
def test_chunks_cover_the_text_within_bounds_and_sections(seed):
    extracted = random_document(seed)
    whole = extracted.text
    chunks = chunk(extracted, max_chars=500, overlap=80)
    covered = set()
    for number, piece in enumerate(chunks):
        assert piece.ordinal == number
        assert 0 < len(piece.text) <= 500
        assert piece.text == whole[piece.start : piece.end] == piece.text.strip()
        covered.update(range(piece.start, piece.end))
        blocks = [b for b in extracted.blocks if b.text in whole[piece.start : piece.end]]
        assert all(b.headings == piece.headings for b in blocks)  # never across headings
    assert all(i in covered for i, c in enumerate(whole) if not c.isspace())


def test_a_long_paragraph_is_cut_at_sentences_with_overlap():
    sentences = [f"Sentence number {i} talks about topic {i}." for i in range(60)]
    extracted = Extracted(PLAIN, [Block(" ".join(sentences), ("Topic",))])
    chunks = chunk(extracted, max_chars=400, overlap=100)
    assert len(chunks) > 3
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before.text.endswith(".")  # cut after a sentence
        assert after.text.startswith("Sentence number")  # and the next starts at one
        assert after.start < before.end  # repeating the end of the one before
        assert before.end - after.start <= 100
    assert {c.heading for c in chunks} == {"Topic"}


def test_paragraphs_are_packed_and_cut_between_paragraphs_without_overlap():
    paragraphs = [f"Paragraph {i}. " + "word " * 40 for i in range(10)]
    extracted = Extracted(PLAIN, [Block(p.strip()) for p in paragraphs])
    chunks = chunk(extracted, max_chars=600, overlap=100)
    assert [c.text.count("Paragraph") for c in chunks] == [2, 2, 2, 2, 2]
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start == before.end + 2  # the blank line between them, nothing repeated


def test_words_longer_than_a_chunk_are_cut_hard():
    extracted = Extracted(PLAIN, [Block("x" * 2500)])
    assert [(c.start, c.end) for c in chunk(extracted, max_chars=1000)] == [
        (0, 1000),
        (1000, 2000),
        (2000, 2500),
    ]


def test_chunks_record_their_pages_and_headings():
    extracted = Extracted(
        "application/pdf",
        [Block("One " * 100, page=1), Block("Two " * 100, page=2), Block("Three", ("H",), 3)],
    )
    chunks = chunk(extracted, max_chars=900)
    assert [(c.page, c.last_page, c.heading) for c in chunks] == [(1, 2, None), (3, 3, "H")]
    assert chunks[1].metadata() == {
        "start": chunks[1].start,
        "end": chunks[1].end,
        "heading": "H",
        "headings": ["H"],
        "page": 3,
        "lastPage": 3,
    }
    assert chunks[1].embedding_text() == "H\nThree"
