"""A user's own training designs from a file, checked line by line before anything runs.

Formats (optionally gzipped, ``.gz``):
  ``.csv`` / ``.tsv``   a header row with a ``smiles`` (molecules) or ``sequence`` (sequences) column
  ``.fasta`` / ``.fa``  sequences
  anything else         one design per line (the first whitespace-separated field: ``.smi`` files)

Every problem is a :class:`DataFileError` with one line that names the file, what is wrong (with the
first offending line numbers) and how to fix it. Reading never writes anything.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Sequence
from pathlib import Path


class DataFileError(ValueError):
    """A data file cannot be used; the message names the file, the problem and the fix.

    Always one line: line breaks in the file's own text quoted by the message (a header, a design) are
    shown escaped, as \\n and \\r.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))


def _text(path: Path) -> str:
    if not path.is_file():
        raise DataFileError(f"data file not found: {path}")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataFileError(f"{path}: not a readable gzip file ({e}); re-compress it or pass the plain file") \
                from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataFileError(f"{path}: not a UTF-8 text file; export it as plain text (CSV, FASTA or one design "
                            "per line)") from None
    if "\x00" in text:
        raise DataFileError(f"{path}: contains NUL bytes (a binary file?); pass a text file")
    return text


def read_designs(path: str | Path, column: str) -> list[tuple[int, str]]:
    """(line number, design string) of every design in the file; ``column`` names the CSV column."""
    path = Path(path)
    text = _text(path)
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    kind = suffixes[-1] if suffixes else ""
    out: list[tuple[int, str]] = []
    if kind in (".csv", ".tsv"):
        try:  # newline="": the csv module then reads \r, \n and \r\n line ends itself, as its docs require
            rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t" if kind == ".tsv" else ","))
        except csv.Error as e:
            raise DataFileError(f"{path}: not a readable {kind[1:].upper()} file ({e}); fix the quoting or "
                                "pass one design per line") from None
        rows_numbered = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]
        if not rows_numbered:
            raise DataFileError(f"{path}: the file is empty; it needs a header row with a {column!r} column "
                                "and one design per row")
        header = [c.strip().lower() for c in rows_numbered[0][1]]
        if column not in header:
            raise DataFileError(f"{path}: no {column!r} column (the header has: {', '.join(header)[:200]}); "
                                f"name the column of designs {column!r}")
        j = header.index(column)
        for n, row in rows_numbered[1:]:
            if j >= len(row):
                raise DataFileError(f"{path}: line {n} has {len(row)} fields, the header {len(header)}; "
                                    "fix the row (a missing separator or quote?)")
            if row[j].strip():
                out.append((n, row[j].strip()))
    elif kind in (".fasta", ".fa", ".faa"):
        header_line, parts = None, []
        for n, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if line.startswith(">"):
                if header_line is not None and parts:
                    out.append((header_line, "".join(parts)))
                header_line, parts = n, []
            elif line:
                if header_line is None:
                    raise DataFileError(f"{path}: line {n} holds sequence before any '>' header; "
                                        "start each record with a '>name' line")
                parts.append(line)
        if header_line is not None and parts:
            out.append((header_line, "".join(parts)))
    else:
        for n, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if fields and not fields[0].startswith("#"):
                out.append((n, fields[0]))
    if not out:
        raise DataFileError(f"{path}: holds no designs; put one design per line (or per row of the "
                            f"{column!r} column)")
    return out


def _check_all(path: Path, items: list[tuple[int, str]], problem: Callable[[str], str | None], what: str,
               fix: str) -> None:
    bad = [(n, s, p) for n, s in items if (p := problem(s)) is not None]
    if bad:
        shown = "; ".join(f"line {n}: {s[:40]!r} {p}" for n, s, p in bad[:3])
        raise DataFileError(f"{path}: {len(bad)} of {len(items)} {what} cannot be used ({shown}); {fix}")


def read_smiles_file(path: str | Path) -> list[str]:
    """SMILES strings of a data file; every one must parse with RDKit."""
    from rdkit import Chem, RDLogger

    path = Path(path)
    items = read_designs(path, "smiles")
    RDLogger.DisableLog("rdApp.*")  # the reason is reported below, once
    try:
        _check_all(path, items, lambda s: None if Chem.MolFromSmiles(s) is not None else "is not valid SMILES",
                   "SMILES", "fix or remove those lines")
    finally:
        RDLogger.EnableLog("rdApp.*")
    return [s for _, s in items]


def read_sequence_file(path: str | Path, alphabet: Sequence[str], min_len: int, max_len: int) -> list[str]:
    """Upper-cased sequences of a data file; every one must use ``alphabet`` and fit the length range."""
    path = Path(path)
    items = [(n, s.upper().rstrip("*")) for n, s in read_designs(path, "sequence")]
    allowed = set(alphabet)

    def problem(s: str) -> str | None:
        unknown = sorted(set(s) - allowed)
        if unknown:
            return f"has unknown residue(s) {''.join(unknown)}"
        if not min_len <= len(s) <= max_len:
            return f"has length {len(s)}, outside {min_len}..{max_len}"
        return None

    _check_all(path, items, problem, "sequences",
               f"use only {''.join(alphabet)} and lengths {min_len}..{max_len}, or remove those lines")
    return [s for _, s in items]
