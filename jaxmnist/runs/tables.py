"""A small table type written as Markdown and CSV (the report's tables). No jax."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Table:
    """Rows of cells under named columns, with a title and notes printed under it."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        """Appends one row (cells in column order)."""
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: row has {len(cells)} cells, want {len(self.columns)}")
        self.rows.append(list(cells))

    def markdown(self, level: int = 3) -> str:
        """Markdown: a heading, a pipe table, then the notes."""
        lines = [f"{'#' * level} {self.title}", ""] if self.title else []
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("| " + " | ".join("---" for _ in self.columns) + " |")
        for row in self.rows:
            lines.append("| " + " | ".join(_cell(c).replace("|", "\\|") for c in row) + " |")
        lines += [""] + [f"{n}  " for n in self.notes] if self.notes else []
        return "\n".join(lines).rstrip() + "\n"

    def csv(self) -> str:
        """CSV with a header row; numbers unformatted."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow(["" if c is None else c for c in row])
        return buf.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def write(tables: list[Table], directory: Path, name: str, heading: str = "") -> list[Path]:
    """Writes ``name.md`` (every table) and ``name.csv`` (or ``name_<i>.csv`` for several)."""
    directory.mkdir(parents=True, exist_ok=True)
    md = directory / f"{name}.md"
    body = (f"## {heading}\n\n" if heading else "") + "\n".join(t.markdown() for t in tables)
    md.write_text(body)
    paths = [md]
    for i, table in enumerate(tables):
        path = directory / (f"{name}.csv" if len(tables) == 1 else f"{name}_{i + 1}.csv")
        path.write_text(table.csv())
        paths.append(path)
    return paths
