"""Bytes to text, incrementally: a chunk at a time, never the whole file.

UTF-8 by default, with or without the BOM Excel writes; a file starting with a UTF-16 BOM (what
Excel's "Unicode text" export writes) is read as UTF-16 without being told; any other encoding
by name. Undecodable bytes and NUL characters (a spreadsheet or an archive rather than text)
fail the file with INVALID_FILE, saying where.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator

from service.imports.errors import InvalidFileError

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_SNIFF_BYTES = 4


def decoded(chunks: Iterable[bytes], encoding: str | None) -> Iterator[str]:
    """The text of `chunks`, in pieces; a leading BOM is dropped."""
    stream = iter(chunks)
    head = b""
    for chunk in stream:  # gather enough bytes to recognise a BOM
        head += chunk
        if len(head) >= _SNIFF_BYTES:
            break
    codec = _codec(head, encoding)
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    offset = 0
    first = True
    for chunk in _chained(head, stream):
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise _undecodable(exc, offset, codec) from None
        offset += len(chunk)
        if first and text:
            text = text.removeprefix("\ufeff")  # a BOM the codec did not consume
            first = False
        if "\x00" in text:
            raise InvalidFileError(
                "the file contains NUL characters, so it is not a text file; if it is a "
                "spreadsheet (.xlsx), save it as CSV first"
            )
        if text:
            yield text
    try:
        tail = decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise _undecodable(exc, offset, codec) from None
    if tail:
        yield tail


def _codec(head: bytes, encoding: str | None) -> str:
    if encoding is None:
        return "utf-16" if head.startswith(_UTF16_BOMS) else "utf-8-sig"
    name = codecs.lookup(encoding).name
    return "utf-8-sig" if name == "utf-8" else name


def _chained(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


def _undecodable(exc: UnicodeDecodeError, offset: int, codec: str) -> InvalidFileError:
    shown = "UTF-8" if codec == "utf-8-sig" else codec
    byte = exc.object[exc.start : exc.start + 1].hex() if exc.object else "??"
    return InvalidFileError(
        f"the file is not valid {shown} text: byte 0x{byte} near offset {offset + exc.start}; "
        "if it is in another encoding, say which with the `encoding` option (e.g. latin-1, cp1252)"
    )
