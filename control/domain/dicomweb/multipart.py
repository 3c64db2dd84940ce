"""``multipart/related`` bodies (RFC 2387): an incremental reader with limits, and a writer.

The reader is fed the request body chunk by chunk and keeps only the part being read (plus
one delimiter's worth of look-ahead) besides the parts already complete, so a STOW-RS body is
never held twice. Limits (number of parts, bytes per part, header bytes) are checked as bytes
arrive; a body over them is refused before it is read to the end.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterable
from dataclasses import dataclass, field

from control.errors import InvalidInputError, PayloadTooLargeError

__all__ = [
    "PART_END",
    "Part",
    "PartLimits",
    "RelatedReader",
    "closing_delimiter",
    "new_boundary",
    "part_head",
    "read_parts",
]

#: Longest header block of one part (RFC 2046 puts no limit; a DICOM part needs a few lines).
MAX_PART_HEADER_BYTES = 8 * 1024
_CRLF = b"\r\n"
_HEADER_END = b"\r\n\r\n"


@dataclass(frozen=True)
class PartLimits:
    """How much one body may carry: parts, and bytes in each part's content."""

    max_parts: int
    max_part_bytes: int


@dataclass
class Part:
    """One body part: its headers (names lower-cased) and its content."""

    headers: dict[str, str]
    content: bytes

    @property
    def content_type(self) -> str | None:
        """The part's media type without parameters, lower-cased; None when absent."""
        value = self.headers.get("content-type")
        return value.split(";", 1)[0].strip().lower() if value else None


def _malformed(message: str) -> InvalidInputError:
    return InvalidInputError(message, code="malformed_multipart")


@dataclass
class RelatedReader:
    """Splits a ``multipart/related`` body into :class:`Part` objects as it is fed.

    Call :meth:`feed` with each chunk, then :meth:`finish`, which returns the parts or raises
    ``400 malformed_multipart`` when the closing delimiter never came. Raises ``413
    too_many_parts`` / ``part_too_large`` as soon as a limit is passed.
    """

    boundary: bytes
    limits: PartLimits
    parts: list[Part] = field(default_factory=list)
    _buffer: bytearray = field(default_factory=lambda: bytearray(_CRLF))
    _state: str = "preamble"
    _headers: dict[str, str] = field(default_factory=dict)
    _search_from: int = 0

    @property
    def _delimiter(self) -> bytes:
        return _CRLF + b"--" + self.boundary

    def feed(self, chunk: bytes) -> None:
        """Add ``chunk`` of the body and split off every part it completes."""
        if self._state == "done":
            return  # the epilogue after the closing delimiter is ignored (RFC 2046)
        self._buffer += chunk
        while self._step():
            pass

    def finish(self) -> list[Part]:
        """The parts, once the whole body was fed; 400 when it ended early or had none."""
        if self._state != "done":
            raise _malformed("the multipart body ended before its closing boundary")
        if not self.parts:
            raise InvalidInputError("the multipart body has no parts", code="no_parts")
        return self.parts

    def _step(self) -> bool:
        """Advance by one delimiter, header block or part; False when more bytes are needed."""
        buffer = self._buffer
        if self._state in ("preamble", "content"):
            index = buffer.find(self._delimiter, self._search_from)
            if index < 0:
                self._search_from = max(0, len(buffer) - len(self._delimiter) + 1)
                # A preamble is held to the same bound as a part.
                if len(buffer) > self.limits.max_part_bytes + len(self._delimiter):
                    raise PayloadTooLargeError(
                        f"a part exceeds {self.limits.max_part_bytes} bytes",
                        code="part_too_large",
                        detail={"part": len(self.parts) + 1},
                    )
                return False
            if self._state == "content":
                if index > self.limits.max_part_bytes:
                    raise PayloadTooLargeError(
                        f"a part exceeds {self.limits.max_part_bytes} bytes",
                        code="part_too_large",
                        detail={"part": len(self.parts) + 1},
                    )
                # One copy of the part (slicing the bytearray first would make two).
                with memoryview(buffer) as view:
                    content = bytes(view[:index])
                self.parts.append(Part(self._headers, content))
                self._headers = {}
            del buffer[: index + len(self._delimiter)]
            self._search_from = 0
            self._state = "after_delimiter"
            return True
        if self._state == "after_delimiter":
            line_end = buffer.find(_CRLF)
            if buffer[:2] == b"--":
                self._state = "done"
                buffer.clear()
                return False
            if line_end < 0:
                if len(buffer) > 1024:
                    raise _malformed("garbage after a boundary delimiter")
                return False
            if buffer[:line_end].strip(b" \t"):
                raise _malformed("garbage after a boundary delimiter")
            if len(self.parts) >= self.limits.max_parts:
                raise PayloadTooLargeError(
                    f"at most {self.limits.max_parts} parts per request", code="too_many_parts"
                )
            del buffer[: line_end + len(_CRLF)]
            self._state = "headers"
            return True
        # headers: a part without headers starts with the blank line straight away
        if buffer[:2] == _CRLF:
            del buffer[:2]
            self._state = "content"
            return True
        end = buffer.find(_HEADER_END)
        if end < 0:
            if len(buffer) > MAX_PART_HEADER_BYTES:
                raise _malformed(f"a part's headers exceed {MAX_PART_HEADER_BYTES} bytes")
            return False
        if end > MAX_PART_HEADER_BYTES:
            raise _malformed(f"a part's headers exceed {MAX_PART_HEADER_BYTES} bytes")
        self._headers = _parse_headers(bytes(buffer[:end]))
        del buffer[: end + len(_HEADER_END)]
        self._state = "content"
        return True


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise _malformed("a part header line has no name")
        headers[name.strip().lower()] = value.strip()
    return headers


async def read_parts(chunks: AsyncIterable[bytes], boundary: str, limits: PartLimits) -> list[Part]:
    """Every part of the ``multipart/related`` body arriving as ``chunks``; see
    :class:`RelatedReader` for the limits and errors."""
    reader = RelatedReader(boundary.encode("latin-1"), limits)
    async for chunk in chunks:
        reader.feed(chunk)
    return reader.finish()


def new_boundary() -> str:
    """A fresh random boundary that cannot occur by chance in the parts it separates."""
    return "medvision-" + secrets.token_hex(16)


def part_head(boundary: str, media_type: str) -> bytes:
    """What precedes a part's content in a ``multipart/related`` body: the delimiter line,
    its Content-Type and the blank line. A part is ``part_head + content + CRLF``; the body
    is its parts followed by :func:`closing_delimiter` (sent in pieces: no copy of content).
    """
    return f"--{boundary}\r\nContent-Type: {media_type}\r\n\r\n".encode("latin-1")


#: What follows each part's content.
PART_END = _CRLF


def closing_delimiter(boundary: str) -> bytes:
    """The bytes that end a ``multipart/related`` body."""
    return f"--{boundary}--\r\n".encode("latin-1")
