"""Read a catalog CSV as text, row by row, so that no bad cell or bad line costs any other row.

A column-typed reader (pyarrow, or pandas' C parser) fails the whole file for one empty
cell in an integer-looking column, one line with an extra field or one byte that is not
UTF-8. Here every cell is text (an empty cell is missing), the columns the config uses
are converted later, per row, and every line that is not a well-formed record becomes a
``malformed_row`` problem with its line number and a snippet, while the other rows go on:

- a record with more or fewer fields than the header, a quote that is never closed or
  a quote followed by text (``"ab"c``), a byte that is not UTF-8, a ``#`` comment line
  after the header. A quote that is never closed swallows at most one field's worth of
  text (``MAX_FIELD``); reading resumes on the line after the one that opened it.
- Blank lines are skipped; ``#`` lines before the header are a preamble (as many survey
  tools write) and skipped too, as is Excel's ``sep=;`` line (which sets the delimiter).

The file is read once, as bytes (so a FIFO or a pipe works), gzip, bz2, xz and
single-file zip archives are recognised by their first bytes, a UTF-8 byte-order mark is
dropped, and the delimiter is ``,``, ``;``, tab or ``|``: the one that splits the header
into the most fields, unless given.
"""

import bz2
import csv
import difflib
import gzip
import hashlib
import io
import lzma
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice

import pandas as pd

DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
MAX_FIELD = 1 << 20  # characters in one cell; a longer one is an unclosed quote, not data
SNIPPET = 80
_NOT_UTF8 = re.compile("[\udc80-\udcff]")
_CHUNK = 100_000
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"PK\x03\x04")  # gzip, bz2, xz, zip


class CatalogReadError(ValueError):
    """The catalog cannot be read at all (no file, no header, not text); the message says why."""


@dataclass
class CatalogText:
    """The catalog's good records as text, and what was wrong with the others."""

    frame: pd.DataFrame  # one "string" column per header name; empty cells are <NA>
    rows: list[int]  # per record of ``frame``: its 1-based data row (malformed rows count too)
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (data row, detail)
    n_rows: int = 0  # data rows in the file, good and malformed
    delimiter: str = ","
    sha256: str = ""


def _decompress(raw: bytes, path: str) -> bytes:
    try:
        if raw[:2] == b"\x1f\x8b":
            return gzip.decompress(raw)
        if raw[:3] == b"BZh":
            return bz2.decompress(raw)
        if raw[:6] == b"\xfd7zXZ\x00":
            return lzma.decompress(raw)
        if raw[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                names = [n for n in archive.namelist() if not n.endswith("/")]
                if len(names) != 1:
                    raise CatalogReadError(f"catalog {path}: a zip archive must hold exactly one file, not {names}")
                return archive.read(names[0])
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as error:
        raise CatalogReadError(f"catalog {path}: damaged compressed file ({error})") from None
    return raw


def _snippet(line: str) -> str:
    text = _NOT_UTF8.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", line.rstrip("\r\n"))
    return text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "…"


def detect_delimiter(header_line: str) -> str:
    """The candidate delimiter that splits the header line into the most fields (comma on a tie)."""
    counts = {d: len(next(csv.reader([header_line], delimiter=d), [])) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: (counts[d], d == ","))
    return best if counts[best] > 1 else ","


def _column_names(fields: list[str]) -> list[str]:
    """Header names as pandas would make them: ``Unnamed: i`` for an empty one, ``x.1`` for a repeat."""
    names, seen = [], set()
    for position, name in enumerate(fields):
        name = name if name.strip() else f"Unnamed: {position}"
        base, k = name, 0
        while name in seen:
            k += 1
            name = f"{base}.{k}"
        seen.add(name)
        names.append(name)
    return names


def _records(
    lines: list[str], start: int, n_fields: int, delimiter: str
) -> Iterator[tuple[int, list[str] | None, str]]:
    """(line index, fields or None, why malformed) for every non-blank record from ``lines[start]`` on."""
    position = start
    while position < len(lines):
        reader = csv.reader(islice(lines, position, None), delimiter=delimiter, strict=True)
        consumed = 0
        restart = None
        try:
            for fields in reader:
                first, consumed = position + consumed, reader.line_num
                spanned = position + consumed - first
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                if lines[first].startswith("#"):
                    yield first, None, "a comment line"
                elif len(fields) != n_fields:
                    yield first, None, f"{len(fields)} fields where the header has {n_fields}"
                    if spanned > 1:  # a stray quote joined lines: read again from the next one
                        restart = first + 1
                        break
                elif any(_NOT_UTF8.search(value) for value in fields):
                    yield first, None, "a byte that is not UTF-8"
                else:
                    yield first, fields, ""
        except csv.Error as error:
            first = position + consumed
            if "field larger" in str(error):
                reason = f"a cell of more than {MAX_FIELD} characters (or a quote that is never closed)"
            else:
                reason = f"bad quoting ({error})"
            yield first, None, reason
            restart = first + 1
        if restart is None:
            return
        position = restart


def _lines(data: bytes) -> list[str]:
    """Physical lines (split on bytes, so no Unicode separator splits a cell), undecodable bytes kept."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return [line.decode("utf-8", "surrogateescape") for line in data.splitlines(keepends=True)]


def _header(lines: list[str], path: str, delimiter: str | None) -> tuple[int, list[str], str]:
    """(index of the header line, column names, delimiter) after any preamble and Excel's sep= line."""
    header_at = next((i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")), None)
    sep = re.fullmatch(r"sep=(.)\r?\n?", lines[header_at]) if header_at is not None else None
    if sep is not None and header_at is not None:  # Excel's first line naming the delimiter (sep implies header_at)
        delimiter = delimiter or sep.group(1)
        header_at = next((i for i in range(header_at + 1, len(lines)) if lines[i].strip()), None)
    if header_at is None:
        raise CatalogReadError(f"catalog {path} has no header line (it is empty or holds only comments)")
    header_line = lines[header_at]
    if _NOT_UTF8.search(header_line) or "\x00" in header_line:
        raise CatalogReadError(
            f"catalog {path}: the header line is not UTF-8 text ({_snippet(header_line)!r}); save the file as UTF-8"
        )
    delimiter = delimiter or detect_delimiter(header_line)
    return header_at, _column_names(next(csv.reader([header_line], delimiter=delimiter))), delimiter


def read_catalog_text(path: str | os.PathLike, delimiter: str | None = None) -> CatalogText:
    """Read the whole catalog once; see the module docstring for what counts as malformed."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as error:
        raise CatalogReadError(f"catalog {path}: {error.strerror or error}") from None
    digest = hashlib.sha256(raw).hexdigest()
    lines = _lines(_decompress(raw, str(path)))
    header_at, names, delimiter = _header(lines, str(path), delimiter)

    limit = csv.field_size_limit(MAX_FIELD)
    try:
        chunks, chunk, rows, malformed, n_rows = [], [], [], [], 0
        for line, fields, reason in _records(lines, header_at + 1, len(names), delimiter):
            n_rows += 1
            if fields is None:
                malformed.append((n_rows, f"line {line + 1}: {reason}: {_snippet(lines[line])}"))
                continue
            chunk.append(fields)
            rows.append(n_rows)
            if len(chunk) == _CHUNK:
                chunks.append(pd.DataFrame(chunk, columns=names, dtype="string"))
                chunk = []
    finally:
        csv.field_size_limit(limit)
    chunks.append(pd.DataFrame(chunk, columns=names, dtype="string"))
    frame = pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]
    frame = frame.replace("", pd.NA)
    return CatalogText(frame, rows, malformed, n_rows, delimiter, digest)


def missing_column_message(column: str, key: str, columns: list[str], delimiter: str | None = None) -> str:
    """The config key, the columns that exist, the closest match and how the header was split."""
    close = difflib.get_close_matches(column, columns, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    split = f" (header read with the {DELIMITER_NAMES.get(delimiter, repr(delimiter))} delimiter)" if delimiter else ""
    return (
        f"config key {key}: column {column!r} is not in the catalog. Columns present{split}: {', '.join(columns)}{hint}"
    )


def catalog_columns(
    path: str | os.PathLike, delimiter: str | None = None, max_bytes: int = 1 << 20
) -> tuple[list[str], str]:
    """The header's column names and the delimiter, read from the start of a regular file (no data
    rows are parsed).

    For the checks the workflow makes before any job runs; a compressed catalog is read
    whole (it must be decompressed from the start anyway).
    """
    with open(path, "rb") as handle:
        raw = handle.read(max_bytes)
        if raw.startswith(_COMPRESSED):
            raw += handle.read()
    lines = _lines(_decompress(raw, str(path)))
    _, names, delimiter = _header(lines, str(path), delimiter)
    return names, delimiter
