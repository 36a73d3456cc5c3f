"""`ferry submit export` refuses a format and compression that cannot go together before it
needs any configuration or server."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.ferry import base_env, ferry_command


def test_parquet_with_gzip_is_refused_on_the_command_line(tmp_path: Path) -> None:
    result = subprocess.run(
        ferry_command(
            "submit",
            "export",
            "--project",
            "p1",
            "--start",
            "2025-01-01T00:00:00Z",
            "--end",
            "2025-01-02T00:00:00Z",
            "--format",
            "parquet",
            "--gzip",
        ),
        env={**base_env(), "COLUMNS": "200"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "drop --gzip" in result.stderr
