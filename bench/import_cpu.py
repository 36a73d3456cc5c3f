"""The importer's reading cost in rows per CPU-second, in process, against anchors in the same run.

    .venv/bin/python bench/import_cpu.py [--rows N] [--rounds R] [--mixed] [--baseline REF]

What a dry run does to a file before it touches the database: the scan (decode, parse, count,
hash) and the second pass (parse, validate, find duplicates, make batches), on a generated
contacts CSV (EMAIL,FIRSTNAME,LASTNAME,CITY; with --mixed also quoted cells, invalid emails,
repeated emails and ragged rows), fed in 1 MiB chunks as the object store hands them out. Each
figure is the best of R rounds of `time.process_time`, each variant in a fresh interpreter:

- `ferry`: the code in this tree; `ferry + matching`: the same, and each batch planned against
  no stored contact (`plan_batch`, what a dry run of new contacts does next);
- `baseline`: the same work by the code at git REF (default `main`), when it differs;
- `anchor csv`: stdlib `csv` over the decoded text, one email regex, a set for duplicates;
- `anchor arrow`: pyarrow's streaming CSV reader and an Arrow compute regex (if installed).

Target (issue 15): 150,000 rows per CPU-second for the dry run. bench/cpu.py measures a real
`ferry worker` process running the whole job.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 1 << 20
CITIES = ("Paris", "Lyon", "Oslo", "Berlin", "Madrid", "Porto")


def csv_bytes(rows: int, *, mixed: bool) -> bytes:
    lines = ["EMAIL,FIRSTNAME,LASTNAME,CITY\r\n"]
    for n in range(rows):
        email = f"user{n:08d}@example.com"
        city = CITIES[n % len(CITIES)]
        if mixed and n % 50 == 7:
            email = f"user{n:08d}.example.com"  # invalid
        elif mixed and n % 100 == 13:
            email = f"USER{n - 13:08d}@EXAMPLE.COM"  # repeats an earlier row
        if mixed and n % 10 == 3:
            city = f'"{city}, ""centre"""'  # quoted, with a delimiter and quotes
        extra = ",extra" if mixed and n % 500 == 11 else ""  # ragged
        lines.append(f"{email},First{n},Last{n % 997},{city}{extra}\r\n")
    return "".join(lines).encode()


def chunks_of(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def ferry(data: bytes, *, matching: bool = False) -> int:
    from service.imports.parsing import ContactFile, scan  # noqa: PLC0415 - per interpreter

    chunks = chunks_of(data)
    counted = scan(chunks, encoding=None, max_bytes=1 << 40, max_rows=1 << 40).rows
    try:
        contact_file = ContactFile(
            chunks, encoding=None, max_field_chars=1000, expected_rows=counted
        )
    except TypeError:  # a baseline from before the scan's count was handed on
        contact_file = ContactFile(chunks, encoding=None, max_field_chars=1000)
    rows = 0
    plan: Callable[[list[object]], object] | None = None
    if matching:
        from service.clock import utcnow  # noqa: PLC0415
        from service.imports.matching import plan_batch  # noqa: PLC0415
        from service.imports.model import ImportOptions  # noqa: PLC0415

        options = ImportOptions(dry_run=True)

        def plan(batch_rows: list[object]) -> object:
            return plan_batch(
                batch_rows,  # type: ignore[arg-type]
                [],
                project_id="p",
                options=options,
                job_id="j",
                now=utcnow(),
            )

    for batch in contact_file.batches(1000, 4 * 1024 * 1024):
        rows += len(batch)
        if plan is not None:
            plan(batch.rows)  # type: ignore[arg-type]
    return rows


def anchor_csv(data: bytes) -> int:
    import codecs  # noqa: PLC0415
    import csv  # noqa: PLC0415
    import re  # noqa: PLC0415

    email = re.compile(r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,63}")
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    text = "".join(decoder.decode(chunk) for chunk in chunks_of(data))
    reader = csv.reader(text.splitlines())
    next(reader)
    seen: set[str] = set()
    rows = 0
    for fields in reader:
        rows += 1
        value = fields[0].strip().lower()
        if email.fullmatch(value) and value not in seen:
            seen.add(value)
    return rows


def anchor_arrow(data: bytes) -> int:
    # Looked up by name: pyarrow is optional here (the anchor is skipped without it).
    pc = importlib.import_module("pyarrow.compute")
    csv = importlib.import_module("pyarrow.csv")

    pattern = r"^[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,63}$"
    reader = csv.open_csv(
        BytesIO(data),
        read_options=csv.ReadOptions(block_size=CHUNK),
        parse_options=csv.ParseOptions(invalid_row_handler=lambda _row: "skip"),
        convert_options=csv.ConvertOptions(column_types={"EMAIL": "string"}),
    )
    rows = 0
    for batch in reader:
        emails = pc.utf8_lower(pc.utf8_trim_whitespace(batch.column(0)))
        pc.match_substring_regex(emails, pattern)
        pc.unique(emails)
        rows += batch.num_rows
    return rows


VARIANTS: dict[str, Callable[[bytes], int]] = {
    "ferry": ferry,
    "ferry + matching": lambda data: ferry(data, matching=True),
    "anchor csv": anchor_csv,
    "anchor arrow": anchor_arrow,
}


def measure(variant: str, rows: int, rounds: int, *, mixed: bool) -> dict[str, float]:
    """Run in a child interpreter: the best of `rounds`, in rows per CPU-second."""
    data = csv_bytes(rows, mixed=mixed)
    work = VARIANTS[variant]
    best = float("inf")
    counted = 0
    for _ in range(rounds):
        started = time.process_time()
        counted = work(data)
        best = min(best, time.process_time() - started)
    return {"rows": counted, "seconds": best, "per_second": counted / best}


def child(variant: str, rows: int, rounds: int, *, mixed: bool, path: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", variant, "--rows", str(rows)]
    command += ["--rounds", str(rounds), *(["--mixed"] if mixed else [])]
    env = {**os.environ, "PYTHONPATH": str(path)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}  # type: ignore[dict-item]
    result: dict[str, float] = json.loads(done.stdout)
    return result


def baseline_tree(ref: str, into: Path) -> Path | None:
    """The `service` package at git `ref`, extracted under `into`; None if that fails."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "service"],  # noqa: S607
        capture_output=True,
        check=False,
    )
    if archive.returncode:
        return None
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def rows_of(result: dict[str, float]) -> str:
    if "error" in result:
        return f"{'-':>10}   ({result['error']})"
    return f"{result['per_second']:>10,.0f}   ({result['seconds']:.2f} s for {result['rows']:,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mixed", action="store_true")
    parser.add_argument("--baseline", default="main")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.rows, args.rounds, mixed=args.mixed)))
        return
    load = os.getloadavg()
    shape = "mixed" if args.mixed else "valid"
    print(f"{args.rows:,} {shape} contacts, best of {args.rounds}; load {load[0]:.2f}")
    print(f"{'':<22}{'rows/CPU-s':>10}")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        tree = baseline_tree(args.baseline, Path(scratch))
        runs: list[tuple[str, str, Path]] = [
            ("ferry", "ferry", ROOT),
            ("ferry + matching", "ferry + matching", ROOT),
        ]
        if tree is not None:
            runs.append((f"baseline ({args.baseline})", "ferry", tree))
        runs += [("anchor csv", "anchor csv", ROOT), ("anchor arrow", "anchor arrow", ROOT)]
        for label, variant, path in runs:
            results[label] = child(variant, args.rows, args.rounds, mixed=args.mixed, path=path)
            print(f"{label:<22}{rows_of(results[label])}", flush=True)
    for label in (f"baseline ({args.baseline})", "anchor csv"):
        if "per_second" in results.get(label, {}) and "per_second" in results["ferry"]:
            ratio = results["ferry"]["per_second"] / results[label]["per_second"]
            print(f"ferry / {label}: {ratio:.2f}")
    print(f"load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
