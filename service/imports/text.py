"""Bytes to text, incrementally: a chunk at a time, never the whole file.

UTF-8 by default, with or without the BOM Excel writes; a file starting with a UTF-16 BOM (what
Excel's "Unicode text" export writes) is read as UTF-16 without being told; any other encoding
by name, as long as it is a character set: codecs that turn bytes into bytes (`bz2`, `zlib`,
`base64`, ...) would decompress a few KB into gigabytes in one call, and a few text codecs
(`idna`, `punycode`, `unicode_escape`, `utf-7`) either buffer without bound or are not
character sets at all; both are refused. Undecodable bytes and NUL characters (a spreadsheet or
an archive rather than text) fail the file with INVALID_FILE, saying where.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator

from service.error_codes import ErrorCode
from service.errors import JobFailedError
from service.imports.errors import InvalidFileError, excerpt

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_SNIFF_BYTES = 4
# Text codecs (str <-> bytes) that are not character sets a CSV file is written in.
_NOT_CHARSETS = frozenset(
    {"idna", "punycode", "unicode-escape", "raw-unicode-escape", "utf-7", "undefined"}
)


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
        except UnicodeError as exc:  # also a UTF-16 file without its BOM, a CJK codec's overflow
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
    except UnicodeError as exc:
        raise _undecodable(exc, offset, codec) from None
    if tail:
        yield tail


def charset(encoding: str) -> str:
    """The codec name of `encoding` if it is a character set; else LookupError saying why."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise LookupError(
            f"unknown encoding {excerpt(repr(encoding))} (e.g. utf-8, latin-1, cp1252)"
        ) from None
    # CodecInfo marks the bytes-to-bytes and str-to-str codecs (bz2, zlib, rot13...) this way.
    if not getattr(info, "_is_text_encoding", False) or info.name in _NOT_CHARSETS:
        raise LookupError(
            f"{excerpt(repr(encoding))} is not a text encoding (character set); name the file's "
            "character set, e.g. utf-8, latin-1, cp1252 (compressed files are not accepted)"
        )
    return info.name


def _codec(head: bytes, encoding: str | None) -> str:
    if encoding is None:
        return "utf-16" if head.startswith(_UTF16_BOMS) else "utf-8-sig"
    try:
        name = charset(encoding)
    except LookupError as exc:  # a job accepted before the check, or by an older version
        raise JobFailedError(ErrorCode.INVALID_REQUEST, f"encoding: {exc}") from None
    return "utf-8-sig" if name == "utf-8" else name


def _chained(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


def _undecodable(exc: UnicodeError, offset: int, codec: str) -> InvalidFileError:
    shown = "UTF-8" if codec == "utf-8-sig" else codec
    advice = (
        "if it is in another encoding, say which with the `encoding` option (e.g. latin-1, cp1252)"
    )
    if not isinstance(exc, UnicodeDecodeError):
        return InvalidFileError(
            f"the file is not valid {shown} text near offset {offset}: {excerpt(str(exc))}; "
            + advice
        )
    byte = exc.object[exc.start : exc.start + 1].hex() if exc.object else "??"
    return InvalidFileError(
        f"the file is not valid {shown} text: byte 0x{byte} near offset {offset + exc.start}; "
        + advice
    )
