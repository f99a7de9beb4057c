"""Documents to text, and text to chunks for a knowledge base.

``extract`` turns the bytes of a plain-text, Markdown, HTML or PDF document into blocks
(paragraphs, list items, table rows, code) that remember the headings above them and,
in a PDF, their page. ``chunk`` packs the blocks into pieces small enough for an
embedding model (all-MiniLM-L6-v2 reads 256 tokens), never across a heading and
preferring paragraph, then sentence, then word boundaries, with some overlap where a
paragraph has to be cut. Every chunk knows where it lies in the document's text: the
blocks joined by blank lines.

Refusals (empty, too large, not the format it claims, no text) raise ``DocumentRefused``
with a reason a person can act on. Nothing here does I/O beyond reading a stream.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import AsyncIterable, Iterator
from dataclasses import dataclass
from typing import Any

from klikkflow.kit.errors import InvalidInput

PLAIN, MARKDOWN, HTML, PDF = "text/plain", "text/markdown", "text/html", "application/pdf"
CONTENT_TYPES = (PLAIN, MARKDOWN, HTML, PDF)
_ALIASES = {
    "text/x-markdown": MARKDOWN,
    "application/xhtml+xml": HTML,
    "application/x-pdf": PDF,
}
_EXTENSIONS = {
    ".txt": PLAIN,
    ".text": PLAIN,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
    ".xhtml": HTML,
    ".pdf": PDF,
}
#: Chunks stay below this many characters: about 200 to 250 English tokens, so that the
#: heading put in front of each still fits all-MiniLM-L6-v2's 256 tokens.
CHUNK_CHARS = 900
#: Characters a chunk repeats from the end of the one before when a block had to be cut.
OVERLAP_CHARS = 150
#: A chunk is not cut shorter than this to reach a nicer boundary.
MIN_CHUNK_CHARS = 300
#: HTML elements whose text is not the document's.
_HTML_DROPPED = ("script", "style", "nav", "noscript", "template", "svg", "iframe", "head")
_HTML_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_HTML_BLOCKS = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "caption",
        "dd",
        "details",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hr",
        "li",
        "main",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
    }
)
#: Where a chunk may end inside a paragraph, best first: a sentence's end, a line's end.
_BREAKS = (re.compile(r"[.!?][\"')\]]*\s+"), re.compile(r"[;:]\s+|\n"))
_WHITESPACE = re.compile(r"\s+")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class DocumentRefused(InvalidInput):
    """The document cannot go into a knowledge base; ``reason`` says why."""

    def __init__(self, reason: str, field: str = "content") -> None:
        super().__init__({field: reason})
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class DocumentTooLarge(DocumentRefused):
    def __init__(self, limit: int, size: int | None = None) -> None:
        got = f" ({size:,} bytes)" if size is not None else ""
        super().__init__(f"the document is larger than the limit of {limit:,} bytes{got}")
        self.limit, self.size = limit, size


@dataclass(frozen=True)
class Block:
    """A paragraph (list item, table row, code block, ...) of extracted text."""

    text: str
    headings: tuple[str, ...] = ()
    page: int | None = None


@dataclass(frozen=True)
class Extracted:
    content_type: str
    blocks: list[Block]
    title: str | None = None
    pages: int | None = None

    @property
    def text(self) -> str:
        """The document's text, to which chunk offsets point."""
        return "\n\n".join(b.text for b in self.blocks)


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    text: str
    headings: tuple[str, ...]
    start: int  # offsets in Extracted.text
    end: int
    page: int | None = None  # the page it starts on (PDF)
    last_page: int | None = None

    @property
    def heading(self) -> str | None:
        return " > ".join(self.headings) or None

    def embedding_text(self) -> str:
        return embedding_text(self.text, self.heading)

    def metadata(self) -> dict[str, Any]:
        found: dict[str, Any] = {"start": self.start, "end": self.end}
        if self.headings:
            found["heading"] = self.heading
            found["headings"] = list(self.headings)
        if self.page is not None:
            found["page"] = self.page
            found["lastPage"] = self.last_page
        return found


def embedding_text(text: str, heading: str | None) -> str:
    """What is embedded for a chunk: its text with its headings in front, for context."""
    return f"{heading}\n{text}" if heading else text


# ---- content types and limits ---------------------------------------------------------------


def content_type_of(content_type: str | None, name: str = "") -> str:
    """One of CONTENT_TYPES, from the declared type or else the name's extension."""
    declared = (content_type or "").split(";")[0].strip().lower()
    declared = _ALIASES.get(declared, declared)
    if declared in CONTENT_TYPES:
        return declared
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix in _EXTENSIONS and declared in ("", "application/octet-stream", "text/x-unknown"):
        return _EXTENSIONS[suffix]
    what = f"content type {declared!r}" if declared else f"name {name!r}"
    raise DocumentRefused(
        f"unsupported {what}: a document is plain text, Markdown, HTML or PDF "
        f"({', '.join(CONTENT_TYPES)})",
        field="contentType",
    )


def check_size(size: int, limit: int) -> None:
    if size > limit:
        raise DocumentTooLarge(limit, size)
    if size == 0:
        raise DocumentRefused("the document is empty")


async def read_limited(stream: AsyncIterable[bytes], limit: int) -> bytes:
    """Read a stream, refusing it as soon as it passes ``limit`` bytes (so an oversized
    upload is never held whole)."""
    parts, size = [], 0
    async for part in stream:
        size += len(part)
        if size > limit:
            raise DocumentTooLarge(limit)
        parts.append(part)
    return b"".join(parts)


# ---- extraction -----------------------------------------------------------------------------


def extract(data: bytes, content_type: str, max_bytes: int) -> Extracted:
    """The document's text as blocks; DocumentRefused when it has none or is not what its
    content type says."""
    check_size(len(data), max_bytes)
    kind = content_type_of(content_type)
    if kind == PDF:
        extracted = _pdf(data)
    elif kind == HTML:
        extracted = _html(data)
    elif kind == MARKDOWN:
        extracted = _markdown(_decode(data))
    else:
        extracted = Extracted(PLAIN, _paragraphs(_decode(data)))
    extracted = _without_controls(extracted)
    if not extracted.blocks:
        raise DocumentRefused("the document holds no text")
    return extracted


def _without_controls(extracted: Extracted) -> Extracted:
    """Control characters (but tab and line break) removed: they mean nothing in text,
    and search highlighting uses two of them as markers."""
    blocks = []
    for block in extracted.blocks:
        text = _CONTROLS.sub("", block.text).strip()
        if text:
            headings = tuple(_CONTROLS.sub("", h) for h in block.headings)
            blocks.append(Block(text, headings, block.page))
    title = _CONTROLS.sub("", extracted.title or "").strip()[:300] or None
    return Extracted(extracted.content_type, blocks, title, extracted.pages)


def _decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentRefused(
            f"the document is not UTF-8 text (byte {exc.start} cannot be read)"
        ) from None
    if "\x00" in text:
        raise DocumentRefused("the document is binary, not text (it holds NUL bytes)")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _clean(text: str) -> str:
    """Whitespace runs to one space, but keep line breaks (they separate lines of a list,
    a poem, an address)."""
    lines = (_WHITESPACE.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _paragraphs(text: str, headings: tuple[str, ...] = (), page: int | None = None) -> list[Block]:
    found = (_clean(p) for p in re.split(r"\n\s*\n", text))
    return [Block(p, headings, page) for p in found if p]


class _Headings:
    """The headings above the current position, by level."""

    def __init__(self) -> None:
        self.levels: dict[int, str] = {}

    def enter(self, level: int, text: str) -> None:
        self.levels = {k: v for k, v in self.levels.items() if k < level}
        if text:
            self.levels[level] = text

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.levels[k] for k in sorted(self.levels))


def _markdown(source: str) -> Extracted:
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(source)
    headings, blocks, title = _Headings(), [], None
    pending_heading: int | None = None
    row: list[str] | None = None
    in_list = 0
    for token in tokens:
        if token.type == "heading_open":
            pending_heading = int(token.tag[1])
        elif token.type in ("bullet_list_open", "ordered_list_open"):
            in_list += 1
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            in_list -= 1
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close" and row is not None:
            blocks.extend(_paragraphs(" | ".join(row), headings.path))
            row = None
        elif token.type == "inline":
            text = _inline_text(token)
            if pending_heading is not None:
                headings.enter(pending_heading, _clean(text).replace("\n", " "))
                title = title or (text if pending_heading == 1 else None)
                pending_heading = None
            elif row is not None:
                row.append(_clean(text))
            else:
                prefix = "- " if in_list else ""
                blocks.extend(_paragraphs(prefix + text, headings.path))
        elif token.type in ("fence", "code_block"):
            code = token.content.strip("\n")
            if code.strip():
                blocks.append(Block(code, headings.path))
        elif token.type == "html_block":
            blocks.extend(_paragraphs(_html_fragment_text(token.content), headings.path))
    return Extracted(MARKDOWN, blocks, title)


def _inline_text(token: Any) -> str:
    parts = []
    for child in token.children or []:
        if child.type in ("text", "code_inline", "html_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content)  # the alt text
    return "".join(parts)


def _html_fragment_text(fragment: str) -> str:
    from bs4 import BeautifulSoup

    return BeautifulSoup(fragment, "html.parser").get_text(" ")


def _html(data: bytes) -> Extracted:
    from bs4 import BeautifulSoup, CData, NavigableString, Tag
    from bs4.element import PreformattedString

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bs4 warns about text that looks like a URL or file
        soup = BeautifulSoup(data, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for dropped in soup.find_all(_HTML_DROPPED):
        dropped.decompose()
    headings, blocks = _Headings(), []
    buffer: list[str] = []

    def flush() -> None:
        # Source line breaks are spaces in HTML; only <br> breaks a line.
        lines = (" ".join(line.split()) for line in "".join(buffer).split("\n"))
        text = "\n".join(line for line in lines if line)
        if text:
            blocks.append(Block(text, headings.path))
        buffer.clear()

    def walk(node: Tag) -> None:
        for child in node.children:
            if isinstance(child, PreformattedString) and not isinstance(child, CData):
                continue  # comments, doctypes, processing instructions
            if isinstance(child, NavigableString):
                buffer.append(_WHITESPACE.sub(" ", str(child)))
            elif isinstance(child, Tag):
                if child.name == "br":
                    buffer.append("\n")
                elif child.name in _HTML_HEADINGS:
                    flush()
                    headings.enter(_HTML_HEADINGS[child.name], child.get_text(" ", strip=True))
                elif child.name == "pre":
                    flush()
                    code = child.get_text().strip("\n")
                    if code.strip():
                        blocks.append(Block(code, headings.path))
                elif child.name == "tr":
                    flush()
                    cells = [c.get_text(" ", strip=True) for c in child.find_all(["td", "th"])]
                    blocks.extend(_paragraphs(" | ".join(c for c in cells if c), headings.path))
                elif child.name in _HTML_BLOCKS:
                    flush()
                    walk(child)
                    flush()
                else:
                    walk(child)

    walk(soup)
    flush()
    return Extracted(HTML, blocks, title or None)


def _pdf(data: bytes) -> Extracted:
    # The header may follow a little junk (PDF 1.7, 7.5.2 and common practice).
    if b"%PDF-" not in data[:1024]:
        raise DocumentRefused("the document is not a PDF (it does not start with %PDF-)")
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentRefused("the PDF is encrypted with a password")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except DocumentRefused:
        raise
    except Exception as exc:  # pypdf raises many kinds on a damaged file
        raise DocumentRefused(f"the PDF cannot be read: {exc}") from None
    blocks = [b for number, text in enumerate(pages, 1) for b in _paragraphs(text, page=number)]
    if not blocks:
        raise DocumentRefused(
            f"no text found in the PDF ({len(pages)} pages): scanned pages need OCR first"
        )
    return Extracted(PDF, blocks, str(title) if title else None, len(pages))


# ---- chunking -------------------------------------------------------------------------------


def chunk(
    extracted: Extracted,
    max_chars: int = CHUNK_CHARS,
    overlap: int = OVERLAP_CHARS,
) -> list[Chunk]:
    """Pieces of at most ``max_chars`` characters, within one heading's section each."""
    if not 0 <= overlap < max_chars // 2:
        raise ValueError("overlap must be below half of max_chars")
    text = extracted.text
    spans = list(_block_spans(extracted.blocks))
    chunks: list[Chunk] = []
    for section in _sections(spans):
        headings = section[0][2].headings
        start, end = section[0][0], section[-1][1]
        for a, b in _cuts(text, start, end, max_chars, overlap):
            pages = [blk.page for s, e, blk in section if s < b and e > a]
            chunks.append(
                Chunk(
                    ordinal=len(chunks),
                    text=text[a:b],
                    headings=headings,
                    start=a,
                    end=b,
                    page=pages[0] if pages else None,
                    last_page=pages[-1] if pages else None,
                )
            )
    return chunks


def _block_spans(blocks: list[Block]) -> Iterator[tuple[int, int, Block]]:
    position = 0
    for block in blocks:
        yield position, position + len(block.text), block
        position += len(block.text) + 2  # the blank line between blocks


def _sections(
    spans: list[tuple[int, int, Block]],
) -> Iterator[list[tuple[int, int, Block]]]:
    current: list[tuple[int, int, Block]] = []
    for span in spans:
        if current and span[2].headings != current[0][2].headings:
            yield current
            current = []
        current.append(span)
    if current:
        yield current


def _cuts(
    text: str, start: int, end: int, max_chars: int, overlap: int
) -> Iterator[tuple[int, int]]:
    position = start
    while position < end:
        if end - position <= max_chars:
            yield position, end
            return
        cut, between_paragraphs = _best_cut(text, position, position + max_chars)
        yield position, _rstrip(text, position, cut)
        if between_paragraphs:  # nothing was cut apart: no overlap needed
            position = _lstrip(text, cut, end)
        else:  # repeat the end of the cut paragraph, from a sentence's or word's start
            position = _lstrip(text, _overlap_start(text, position, cut, overlap), end)


def _best_cut(text: str, lo: int, hi: int) -> tuple[int, bool]:
    """Where to end a chunk that starts at ``lo`` and may not pass ``hi``: at the last
    blank line, else the last sentence end, line end, space, else at ``hi``. The flag
    says whether the cut falls between paragraphs."""
    floor = lo + MIN_CHUNK_CHARS
    window = text[lo:hi]
    paragraph = window.rfind("\n\n")
    if paragraph >= 0 and lo + paragraph >= floor:
        return lo + paragraph, True
    for pattern in _BREAKS:
        ends = [m.end() for m in pattern.finditer(window)]
        if ends and lo + ends[-1] >= floor:
            return lo + ends[-1], False
    space = window.rfind(" ")
    if space >= 0 and lo + space >= floor:
        return lo + space + 1, False
    return hi, False


def _overlap_start(text: str, start: int, cut: int, overlap: int) -> int:
    """Where the chunk after a cut at ``cut`` begins: the first sentence start in the last
    ``overlap`` characters before it, else the first word start there."""
    lo = max(cut - overlap, start + 1)
    found = _BREAKS[0].search(text, lo, cut)
    if found is not None and found.end() < cut:
        return found.end()
    while lo < cut and not text[lo - 1].isspace():
        lo += 1
    return lo


def _lstrip(text: str, position: int, end: int) -> int:
    while position < end and text[position].isspace():
        position += 1
    return position


def _rstrip(text: str, start: int, position: int) -> int:
    while position > start and text[position - 1].isspace():
        position -= 1
    return position
