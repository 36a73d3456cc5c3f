"""The reports: one CSV per Brevo category that has rows, and `rejected_rows` with every
rejected row. Written as the import goes, each through its own object writer (bounded memory),
and visible only when the import finishes: an import that fails or is cancelled leaves none.

- A category's CSV: `line`, the file's own columns (so the rows can be fixed and imported
  again), and `reason`, e.g. "EMAIL a@x.io is already on line 3".
- `rejected_rows.csv`: `line`, `reason` (a code such as `invalid_email`), `message`, and `row`,
  the row's text exactly as in the file (ragged and unreadable rows included).

Cells a spreadsheet would run as a formula are escaped as in exports.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from collections.abc import Sequence

from service.formulas import escape_formula
from service.imports import files
from service.imports.model import REJECTED_ROWS, ReportFile
from service.imports.validation import Rejection
from service.storage import ObjectStore
from service.storage.writer import ObjectWriter

REPORT_NAMES = (
    "invalid_emails",
    "duplicate_email_id",
    "duplicate_ext_id",
    "duplicate_phone_id",
    "duplicate_whatsapp_id",
    "duplicate_landline_number_id",
    REJECTED_ROWS,
)


class Reports:
    def __init__(
        self,
        store: ObjectStore,
        *,
        project_id: str,
        job_id: str,
        columns: Sequence[str],
        part_size: int,
        escape_formulas: bool,
    ) -> None:
        self._store = store
        self._project_id = project_id
        self._job_id = job_id
        self._columns = list(columns)
        self._part_size = part_size
        self._escape = escape_formulas
        self._writers: dict[str, ObjectWriter] = {}
        self._rows: dict[str, int] = {}
        self._closed: list[str] = []

    async def add(self, rejections: list[Rejection]) -> None:
        if not rejections:
            return
        encoded = await asyncio.to_thread(self._encode, sorted(rejections, key=_line))
        for name, data in encoded.items():
            await self._writer(name).write(data)

    async def close(self) -> dict[str, ReportFile]:
        """Make every report visible; on failure, none stays visible."""
        try:
            for name, writer in self._writers.items():
                await writer.close()
                self._closed.append(name)
        except BaseException:
            await asyncio.shield(self.abort())
            raise
        return {
            name: ReportFile(key=self._key(name), rows=self._rows[name]) for name in self._writers
        }

    async def abort(self) -> None:
        """Throw away what was written, including reports already made visible."""
        for name, writer in self._writers.items():
            with contextlib.suppress(Exception):
                if name in self._closed:
                    await self._store.delete(self._key(name))
                else:
                    await writer.abort()

    async def delete_stale(self) -> None:
        """A previous attempt may have made some reports visible before it stopped."""
        for name in REPORT_NAMES:
            await self._store.delete(self._key(name))

    def _key(self, name: str) -> str:
        return files.report_key(self._project_id, self._job_id, name)

    def _writer(self, name: str) -> ObjectWriter:
        if name not in self._writers:
            self._writers[name] = ObjectWriter(
                self._store,
                self._key(name),
                content_type=files.REPORT_CONTENT_TYPE,
                part_size=self._part_size,
                gzip=False,
            )
        return self._writers[name]

    def _encode(self, rejections: list[Rejection]) -> dict[str, bytes]:
        tables: dict[str, list[list[str | int]]] = {}
        cells = self._safe
        for rejection in rejections:
            row: list[str | int] = [
                rejection.line, rejection.reason, cells(rejection.message), cells(rejection.raw)
            ]  # fmt: skip
            self._append(tables, REJECTED_ROWS, ["line", "reason", "message", "row"], row)
            if rejection.category is not None and rejection.fields is not None:
                original: list[str | int] = [cells(cell) for cell in rejection.fields]
                self._append(
                    tables,
                    rejection.category,
                    ["line", *self._columns, "reason"],
                    [rejection.line, *original, cells(rejection.message)],
                )
        encoded = {}
        for name, table in tables.items():
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\r\n").writerows(table)
            encoded[name] = buffer.getvalue().encode()
        return encoded

    def _append(
        self,
        tables: dict[str, list[list[str | int]]],
        name: str,
        header: list[str],
        row: list[str | int],
    ) -> None:
        table = tables.setdefault(name, [])
        if name not in self._rows:
            self._rows[name] = 0
            table.append(list(map(self._safe, header)))
        table.append(row)
        self._rows[name] += 1

    def _safe(self, value: str) -> str:
        return escape_formula(value) if self._escape else value


def _line(rejection: Rejection) -> int:
    return rejection.line
