"""``multipart/related`` bodies (RFC 2387): an incremental reader with limits, and a writer.

The reader is fed the request body chunk by chunk and keeps only the part being read (plus
one delimiter's worth of look-ahead) besides the parts already complete, so a STOW-RS body is
never held twice; each complete part can be processed while the rest arrives. Limits
(number of parts, bytes per part, header bytes) are checked as bytes arrive; a body over
them is refused before it is read to the end.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import anyio.to_thread

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

T = TypeVar("T")

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

    Each byte of the body is copied twice (into the buffer, then into its part) and searched
    once: what has been read is skipped by an offset, and the buffer is compacted only when
    the next chunk arrives (deleting from a ``bytearray``'s front makes every later growth
    copy it whole).
    """

    boundary: bytes
    limits: PartLimits
    parts: list[Part] = field(default_factory=list)
    _buffer: bytearray = field(default_factory=lambda: bytearray(_CRLF))
    #: Where the unread bytes of ``_buffer`` start.
    _start: int = 0
    _state: str = "preamble"
    _headers: dict[str, str] = field(default_factory=dict)
    _search_from: int = 0

    @property
    def _delimiter(self) -> bytes:
        return _CRLF + b"--" + self.boundary

    def feed(self, chunk: bytes) -> list[Part]:
        """Add ``chunk`` of the body; the parts it completed, in order."""
        if self._state == "done":
            return []  # the epilogue after the closing delimiter is ignored (RFC 2046)
        if self._start:
            self._buffer = self._buffer[self._start :]
            self._search_from = max(0, self._search_from - self._start)
            self._start = 0
        self._buffer += chunk
        completed = len(self.parts)
        while self._step():
            pass
        return self.parts[completed:]

    def finish(self) -> list[Part]:
        """The parts, once the whole body was fed; 400 when it ended early or had none."""
        if self._state != "done":
            raise _malformed("the multipart body ended before its closing boundary")
        if not self.parts:
            raise InvalidInputError("the multipart body has no parts", code="no_parts")
        return self.parts

    def _step(self) -> bool:
        """Advance by one delimiter, header block or part; False when more bytes are needed."""
        buffer, start = self._buffer, self._start
        if self._state in ("preamble", "content"):
            delimiter = self._delimiter
            index = buffer.find(delimiter, max(start, self._search_from))
            if index < 0:
                self._search_from = max(start, len(buffer) - len(delimiter) + 1)
                # A preamble is held to the same bound as a part.
                if len(buffer) - start > self.limits.max_part_bytes + len(delimiter):
                    raise self._part_too_large()
                return False
            if self._state == "content":
                if index - start > self.limits.max_part_bytes:
                    raise self._part_too_large()
                # One copy of the part (slicing the bytearray first would make two).
                with memoryview(buffer) as view:
                    content = bytes(view[start:index])
                self.parts.append(Part(self._headers, content))
                self._headers = {}
            self._start = index + len(delimiter)
            self._state = "after_delimiter"
            return True
        if self._state == "after_delimiter":
            if buffer[start : start + 2] == b"--":
                self._state = "done"
                self._buffer, self._start = bytearray(), 0
                return False
            line_end = buffer.find(_CRLF, start)
            if line_end < 0:
                if len(buffer) - start > 1024:
                    raise _malformed("garbage after a boundary delimiter")
                return False
            if buffer[start:line_end].strip(b" \t"):
                raise _malformed("garbage after a boundary delimiter")
            if len(self.parts) >= self.limits.max_parts:
                raise PayloadTooLargeError(
                    f"at most {self.limits.max_parts} parts per request", code="too_many_parts"
                )
            self._start = line_end + len(_CRLF)
            self._state = "headers"
            return True
        # headers: a part without headers starts with the blank line straight away
        if buffer[start : start + 2] == _CRLF:
            self._start = start + 2
            self._state = "content"
            return True
        end = buffer.find(_HEADER_END, start)
        if end < 0:
            if len(buffer) - start > MAX_PART_HEADER_BYTES:
                raise _malformed(f"a part's headers exceed {MAX_PART_HEADER_BYTES} bytes")
            return False
        if end - start > MAX_PART_HEADER_BYTES:
            raise _malformed(f"a part's headers exceed {MAX_PART_HEADER_BYTES} bytes")
        self._headers = _parse_headers(bytes(buffer[start:end]))
        self._start = end + len(_HEADER_END)
        self._search_from = self._start
        self._state = "content"
        return True

    def _part_too_large(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"a part exceeds {self.limits.max_part_bytes} bytes",
            code="part_too_large",
            detail={"part": len(self.parts) + 1},
        )


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise _malformed("a part header line has no name")
        headers[name.strip().lower()] = value.strip()
    return headers


async def read_parts(
    chunks: AsyncIterable[bytes],
    boundary: str,
    limits: PartLimits,
    process: Callable[[int, Part], T],
) -> list[T]:
    """``process(index, part)`` of every part of the ``multipart/related`` body arriving as
    ``chunks``, in the parts' order.

    Each part goes to the blocking ``process`` in a worker thread as soon as its closing
    delimiter has arrived, one part at a time, while the rest of the body is still being
    received: a request's work overlaps its upload. See :class:`RelatedReader` for the limits
    and errors; when the body fails, the parts being processed are finished and their results
    dropped.
    """
    reader = RelatedReader(boundary.encode("latin-1"), limits)
    one_at_a_time = anyio.CapacityLimiter(1)
    pending: list[asyncio.Future[T]] = []
    try:
        async for chunk in chunks:
            for part in reader.feed(chunk):
                work = anyio.to_thread.run_sync(process, len(pending), part, limiter=one_at_a_time)
                pending.append(asyncio.ensure_future(work))
        reader.finish()
        return list(await asyncio.gather(*pending))
    except BaseException:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        raise


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
