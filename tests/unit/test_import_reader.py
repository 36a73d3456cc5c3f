"""Reading an import file: encodings and BOMs, delimiters, quoted newlines, line numbers and the
original text of each record, whatever the chunk boundaries."""

from __future__ import annotations

import codecs

import pytest

from service.imports.errors import FileTooLargeError, InvalidFileError
from service.imports.lines import detect_delimiter
from service.imports.parsing import ContactFile, scan
from service.imports.reader import CsvRecords
from service.imports.text import decoded


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def records(data: bytes, *, size: int = 3, encoding: str | None = None) -> CsvRecords:
    return CsvRecords(decoded(chunked(data, size), encoding))


@pytest.mark.parametrize("size", [1, 2, 5, 1000])
def test_utf8_bom_semicolons_crlf_and_quoted_newlines_in_any_chunking(size: int) -> None:
    data = codecs.BOM_UTF8 + (
        'EMAIL;FIRSTNAME;NOTE\r\n'
        'a@x.io;Zoë;"two\r\nlines; and ""quotes"""\r\n'
        '\r\n'
        'b@x.io;Bo;plain\r\n'
    ).encode()  # fmt: skip
    parsed = records(data, size=size)
    assert parsed.delimiter == ";"
    assert parsed.header is not None
    assert parsed.header.fields == ["EMAIL", "FIRSTNAME", "NOTE"]  # no BOM in the first name
    rows = list(parsed)
    assert [(r.line, r.fields) for r in rows] == [
        (2, ["a@x.io", "Zoë", 'two\r\nlines; and "quotes"']),
        (5, ["b@x.io", "Bo", "plain"]),  # line 4 was blank
    ]
    assert rows[0].raw == 'a@x.io;Zoë;"two\r\nlines; and ""quotes"""'


@pytest.mark.parametrize(
    ("line", "expected"),
    [("EMAIL,NAME", ","), ("EMAIL;NAME;CITY", ";"), ("EMAIL\tNAME", "\t"), ("EMAIL", ","),
     ('"A;B",C', ","), ("A;B,C;D", ";")],
)  # fmt: skip
def test_the_delimiter_is_the_one_the_header_uses_most_outside_quotes(
    line: str, expected: str
) -> None:
    assert detect_delimiter(line) == expected


def test_utf16_with_a_bom_is_recognised_without_being_told() -> None:
    data = "EMAIL\tNAME\r\nä@x.io\tÄnne\r\n".encode("utf-16")  # BOM + little endian
    parsed = records(data, size=7)
    assert parsed.delimiter == "\t"
    assert [r.fields for r in parsed] == [["ä@x.io", "Änne"]]


def test_other_encodings_by_name_and_bare_cr_line_ends() -> None:
    data = "EMAIL,NAME\rb@x.io,Jos\xe9\r".encode("latin-1")
    assert [r.fields for r in records(data, encoding="latin-1")] == [["b@x.io", "José"]]


def test_undecodable_bytes_fail_with_where_and_what_to_do() -> None:
    data = "EMAIL,NAME\nb@x.io,Jos\xe9\n".encode("latin-1")
    with pytest.raises(InvalidFileError) as caught:
        list(records(data))
    assert caught.value.code == "INVALID_FILE"
    assert "0xe9" in caught.value.message
    assert "encoding" in caught.value.message


def test_binary_files_are_not_text() -> None:
    with pytest.raises(InvalidFileError, match="NUL"):
        list(records(b"PK\x03\x04\x14\x00\x00\x00\x08\x00EMAIL"))


def test_scan_counts_rows_hashes_and_enforces_the_limits() -> None:
    data = b"EMAIL\na@x.io\n\nb@x.io\n"
    result = scan(chunked(data, 4), encoding=None, max_bytes=100, max_rows=2)
    assert (result.rows, result.size) == (2, len(data))
    assert len(result.sha256) == 64
    with pytest.raises(FileTooLargeError, match="rows"):
        scan(chunked(data, 4), encoding=None, max_bytes=100, max_rows=1)
    with pytest.raises(FileTooLargeError, match="bytes"):
        scan(chunked(data, 4), encoding=None, max_bytes=10, max_rows=10)
    with pytest.raises(InvalidFileError, match="empty"):
        scan([b"\n\n"], encoding=None, max_bytes=100, max_rows=10)


def test_batches_hold_rows_and_rejections_with_progress() -> None:
    lines = (
        ["EMAIL,NAME"] + [f"u{n}@x.io,N{n}" for n in range(5)] + ["bad,row,extra", "u0@x.io,Again"]
    )
    data = ("\n".join(lines) + "\n").encode()
    contact_file = ContactFile(chunked(data, 8), encoding=None, max_field_chars=100)
    batches = list(contact_file.batches(3, 1 << 20))
    assert [len(batch) for batch in batches] == [3, 3, 1]
    rows = [row.line for batch in batches for row in batch.rows]
    assert rows == [2, 3, 4, 5, 6]
    rejected = [(r.line, r.reason) for batch in batches for r in batch.rejections]
    assert rejected == [(7, "ragged_row"), (8, "duplicate_email")]
    assert batches[-1].bytes_read == len(data)
    assert batches[0].bytes_read < batches[-1].bytes_read


def test_an_unreadable_record_is_rejected_and_reading_goes_on() -> None:
    huge = "x" * 200_000  # beyond the parser's field limit
    data = f'EMAIL,NOTE\na@x.io,"{huge}"\nb@x.io,fine\n'.encode()
    batch = next(ContactFile([data], encoding=None, max_field_chars=10).batches(10, 1 << 20))
    assert [r.reason for r in batch.rejections] == ["malformed_row"]
    assert [row.identifiers for row in batch.rows] == [{"email": "b@x.io"}]
