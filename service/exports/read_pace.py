"""At most so many rows a second: how an export reads gently from the application's database.

An export reads its collection as fast as the database serves it; on a busy primary that
competes with the platform's own traffic, so an operator may cap it. The cap is kept on
average from the first batch, so a slow batch is made up by the next ones, not lost."""

from __future__ import annotations

import asyncio


class ReadPace:
    """Paces one reader: call `after(rows)` once each batch has been used."""

    def __init__(self, rows_per_second: float) -> None:
        """`rows_per_second`: 0 for no limit."""
        self._rate = rows_per_second
        self._started: float | None = None
        self._rows = 0

    async def after(self, rows: int) -> None:
        if self._rate <= 0:
            return
        loop = asyncio.get_running_loop()
        if self._started is None:
            self._started = loop.time()
        self._rows += rows
        delay = self._started + self._rows / self._rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
