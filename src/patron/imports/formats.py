"""Reading an import file: UTF-8 CSV (a byte-order mark is skipped), a header row naming
the columns (docs/imports.md), one record per row. Rows are read one at a time, so a
file of any size takes the same memory."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from typing import IO

from patron.imports.errors import BadColumns

# A cell larger than this is not a value of any column.
csv.field_size_limit(64 * 1024)
_NOT_TEXT = "\ufffd"


class CsvRows:
    """The data rows of a CSV file as ``(line, values)``: ``line`` is the row's line
    in the file (the header is line 1), ``values`` its non-empty cells by column."""

    def __init__(self, binary: IO[bytes], *, columns: Sequence[str],
                 required: Sequence[str]) -> None:
        # Bytes that are not UTF-8 become U+FFFD: their row is refused, the file goes on.
        self._text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="replace",
                                      newline="")
        self._reader = csv.reader(self._text)
        try:
            header = next(self._reader, None)
        except csv.Error as exc:
            raise BadColumns(f"the header row cannot be read as CSV: {exc}") from exc
        if header is None:
            raise BadColumns(f"the file is empty: its first row names the columns "
                             f"({', '.join(columns)})")
        self.header = [name.strip().lower() for name in header]
        unknown = [name for name in self.header if name not in columns]
        missing = [name for name in required if name not in self.header]
        repeated = sorted({name for name in self.header if self.header.count(name) > 1})
        if unknown or missing or repeated:
            problems = ([f"unknown {', '.join(map(repr, unknown))}"] if unknown else []) + (
                [f"missing {', '.join(missing)}"] if missing else []) + (
                [f"repeated {', '.join(repeated)}"] if repeated else [])
            raise BadColumns(f"columns: {'; '.join(problems)}. This import takes "
                             f"{', '.join(columns)} (required: {', '.join(required)})",
                             field="header")
        self.rows = 0

    def __iter__(self) -> Iterator[tuple[int, dict[str, str] | str]]:
        """Each row as its values, or as why it cannot be read (a wrong number of cells,
        bytes that are not UTF-8): such a row is refused, the file goes on."""
        reader = self._reader
        while True:
            line = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                self.rows += 1
                yield line, f"line {line} cannot be read as CSV: {exc}"
                continue
            if not any(cell.strip() for cell in cells):
                continue  # a blank line
            self.rows += 1
            if any(_NOT_TEXT in cell for cell in cells):
                yield line, "the row has bytes that are not UTF-8: save the file as UTF-8"
                continue
            if len(cells) != len(self.header):
                yield line, (f"the row has {len(cells)} cells; the header has "
                             f"{len(self.header)}")
                continue
            yield line, {name: cell for name, cell in zip(self.header, cells, strict=True)
                         if cell.strip()}
