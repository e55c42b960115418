"""CSV files read whole with pandas as strings (FER2013's and FER+'s), with failures that name the file
and line."""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

FIRST_DATA_LINE = 2  # line 1 is the header


def _parser_message(path: Path, exc: pd.errors.ParserError) -> str:
    """pandas' parser error as "file:line: cannot parse ..." (pandas counts lines from 1, the header
    included)."""
    text = str(exc).strip().replace("Error tokenizing data. C error: ", "")
    line = re.search(r"\bin line (\d+)", text)
    return (
        f"{path}:{line.group(1)}: cannot parse the CSV: {text}"
        if line
        else f"{path}: cannot parse the CSV: {text}"
    )


def csv_table(path: Path, columns: Sequence[str], what: str) -> pd.DataFrame:
    """pandas' parse of the file, every field a string and blank lines kept as empty rows (so row i is
    line i + 2); its failures (empty, truncated or mislabelled .gz, bad rows, not text) as ValueErrors
    naming it."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{path}: empty file; expected the header {','.join(columns)} and data rows"
        ) from None
    except (EOFError, zlib.error) as exc:
        raise ValueError(
            f"{path}: truncated or damaged compressed file ({exc}); copy or download it again"
        ) from None
    except gzip.BadGzipFile as exc:
        raise ValueError(f"{path}: not a gzip file although its name ends in .gz ({exc})") from None
    except pd.errors.ParserError as exc:
        raise ValueError(_parser_message(path, exc)) from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: cannot parse: not UTF-8 text (is this {what}?)") from None


def require_columns(path: Path, table: pd.DataFrame, columns: Sequence[str]) -> None:
    """ValueError naming the file, the missing columns and the expected header."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing}; expected the header {','.join(columns)} "
            f"(found {','.join(map(str, table.columns))})"
        )


def data_rows(table: pd.DataFrame, columns: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows that are not blank lines, and the file line number of each."""
    lines = np.arange(len(table)) + FIRST_DATA_LINE
    blank = (table[list(columns)] == "").all(axis=1).to_numpy()
    return table.loc[~blank], lines[~blank]
