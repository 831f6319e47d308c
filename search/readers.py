"""Reading raw data: CSV and NPZ files (scikit-learn's bundled sets: ``builtin``), into a
``Table``.

Everything here returns raw columns (numeric ones as float64 with NaN for a missing
cell, text ones as category codes) and the target as given; imputing, encoding and
scaling are ``tabular``'s job, splitting ``data``'s. CSV files are parsed by pandas'
C parser. ``read_rows`` reads the rows ``predict`` gets, by column name.

A cell or a column name from a file is quoted in an error only once the file has
shown itself to be the user's table: a header of two or more columns that holds
the target. A ``data.source`` that points at some other file (a symlink to a system
file, say) gets errors that name lines and counts, never its content.
"""

from __future__ import annotations

import csv
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .builtin import BUILTIN, numeric_table
from .errors import UsageError, require_file
from .tabular import MISSING, Column, Table

logger = logging.getLogger(__name__)

KINDS = (".csv", ".npz")
IDENTIFIER_SHARE = 0.9  # a text column with this share of distinct values is an id
TYPO_SHARE = 0.05  # a column numeric but for at most this share of cells has typos
Raw = tuple[Table, np.ndarray]  # the features, the target as given


def resolve_path(source: str, base: Path | None) -> Path:
    """An absolute path, symlinks kept: a DVC or git-annex link named ``x.csv`` points to
    a cache file without an extension, and the link's own name says what it holds."""
    path = Path(source).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return Path(os.path.abspath(path))


def file_kind(path: Path) -> str:
    """``.csv`` or ``.npz``: by the name given, else by the file a symlink points to."""
    for name in (path, path.resolve()):
        if name.suffix.lower() in KINDS:
            return name.suffix.lower()
    raise UsageError(f"{path}: unknown data file type {path.suffix!r}; use .csv or .npz, "
                     f"or a bundled dataset ({', '.join(BUILTIN)}).")


def is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def stripped_distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, labels): ``labels[codes]`` is ``values`` as stripped text. Each distinct
    value is converted once (hashing, not a Python loop over a million cells)."""
    import pandas as pd

    codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=False)
    return codes, np.array([str(v).strip() for v in uniques])


def csv_header(path: Path) -> list[str]:
    """The column names of a CSV file (its first non-empty row)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            for row in csv.reader(fh):
                if any(cell.strip() for cell in row):
                    return [h.strip() for h in row]
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a UTF-8 text CSV file.") from None
    except csv.Error as exc:
        raise UsageError(f"{path}: not a CSV file ({exc}).") from None
    raise UsageError(f"{path}: the CSV file is empty (it needs a header row and data).")


def _columns(header: list[str]) -> str:
    """The header for an error message, if the file looks like a table at all."""
    if len(header) < 2:
        return "its first line is not a header of comma-separated names"
    shown = ", ".join(header[:20]) + (" ..." if len(header) > 20 else "")
    return f"columns: {shown}"


def _read_frame(path: Path, header: list[str], keep: list[str], dtype: dict[int, Any]) -> Any:
    """The columns ``keep`` of a CSV file. Every column is parsed (pandas checks a row's
    field count only then); a row with fewer fields than the header has its last
    cells missing, as in pandas."""
    import pandas as pd

    try:
        # index_col=False: rows that all end with a comma (one field more than the
        # header) would otherwise turn their first column into the index and shift the
        # rest one place left.
        with warnings.catch_warnings():
            # A first data row longer than the header (not by an empty trailing field)
            # only warns, and pandas drops its extra cells: refused, as further down.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, header=0, dtype=dtype, encoding="utf-8-sig",
                                skipinitialspace=True, low_memory=False, index_col=False)
    except pd.errors.ParserWarning:
        raise UsageError(_longer_row(path, len(header))) from None
    except pd.errors.ParserError as exc:
        import re

        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if found:
            raise UsageError(f"{path}: line {found.group(2)} has {found.group(3)} fields, the "
                             f"header has {found.group(1)}.") from None
        raise UsageError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]}).") \
            from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a UTF-8 text CSV file.") from None
    except pd.errors.EmptyDataError:
        raise UsageError(f"{path}: the CSV file is empty (it needs a header row and "
                         "data).") from None
    frame.columns = header
    return frame[keep]


def line_of(path: Path, row: int) -> int:
    """The line on which data row ``row`` (0-based, as pandas counts them: blank lines
    skipped) starts: a quoted cell may hold line breaks. Read only for an error."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            seen, end = -1, 0  # -1: the header
            for cells in reader:
                start, end = end + 1, reader.line_num
                if not cells:
                    continue
                if seen == row:
                    return start
                seen += 1
    except (OSError, UnicodeDecodeError, csv.Error):
        pass
    return row + 2


def _longer_row(path: Path, width: int) -> str:
    """The message for the first row with a non-empty cell beyond the header's ``width``."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        for row in reader:  # up to the header, the first non-empty row
            if any(cell.strip() for cell in row):
                break
        for row in reader:
            if len(row) > width and any(cell.strip() for cell in row[width:]):
                return (f"{path}: line {reader.line_num} has {len(row)} fields, the header "
                        f"has {width}.")
    return f"{path}: a row has more fields than the header's {width}."


def _text_column(name: str, series: Any) -> Column:
    """Category codes of a text column; a missing cell is the category <missing>."""
    import pandas as pd

    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    labels = [str(u).strip() for u in uniques]
    categories = sorted(set(labels) | ({MISSING} if (codes < 0).any() else set()))
    index = {v: i for i, v in enumerate(categories)}
    lookup = np.array([index[v] for v in labels] + [index.get(MISSING, 0)], dtype=np.int32)
    return Column(name, lookup[codes], categories)  # codes -1 take the last entry


def _numeric_column(path: Path, name: str, series: Any, categorical: bool,
                    at_predict: bool = False) -> Column:
    """A numeric column as float64, or a UsageError naming the first bad cell."""
    import pandas as pd

    if categorical:
        column = _text_column(name, series.astype(object).where(series.notna(), None).map(
            lambda v: v if v is None else _label(v)))
        column.codes = True
        return column
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(values) & series.notna().to_numpy())
    if bad.size:
        line = line_of(path, int(bad[0]))
        raise UsageError(f"{path}: column {name!r} is numeric except {bad.size} cell(s) (e.g. "
                         f"{str(series.iloc[bad[0]])!r} at line {line}); fix them"
                         + ("." if at_predict else ", or list the column in data.categorical."))
    if np.isinf(values).any():
        row = int(np.flatnonzero(np.isinf(values))[0])
        raise UsageError(f"{path}: column {name!r} holds infinite values (first at line "
                         f"{line_of(path, row)}).")
    return Column(name, values)


def _mostly_numeric(cells: Any) -> Any:
    """The cells as numbers (NaN where one is not) if at most ``TYPO_SHARE`` of them are
    not numbers, else None. Judged on 2,000 cells spread over the column first: parsing a
    whole text column as numbers costs a second per million rows, and a sample 4x over
    the share rules a text column out."""
    import pandas as pd

    sample = cells.iloc[np.linspace(0, len(cells) - 1, min(len(cells), 2000)).astype(int)]
    if pd.to_numeric(sample, errors="coerce").isna().mean() > 4 * TYPO_SHARE:
        return None
    numbers = pd.to_numeric(cells, errors="coerce")
    return numbers if numbers.isna().mean() <= TYPO_SHARE else None


def _label(value: Any) -> str:
    """A numeric code as a category name: 1, 1.0 and "1" are one category."""
    text = str(value).strip()
    if is_float(text) and float(text).is_integer():
        return str(int(float(text)))
    return text


UNLABELLED = ("refuse", "drop")  # data.unlabelled: what a row with no target value gets


def read_csv(path: Path, target: str | None, drop: tuple[str, ...] = (),
             categorical: tuple[str, ...] = (), identifiers: list[str] | None = None,
             unlabelled: str = "refuse", dropped: list[int] | None = None) -> Raw:
    """The table's feature columns and its target column (as given, stripped text).

    An identifier column is refused, or, when ``identifiers`` is a list, left out and
    named there (``nnsearch init`` writes them into data.drop). Rows with no target
    value are refused, or with ``unlabelled = "drop"`` left out (their count appended
    to ``dropped``, when given)."""
    import pandas as pd

    header = csv_header(path)
    if target is not None and target not in header:
        raise UsageError(f"{path}: target column {target!r} is not in the header "
                         f"({_columns(header)}).")
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise UsageError(f"{path}: the header names column(s) {twice} more than once; "
                         "every column needs its own name.")
    for key, names in (("drop", drop), ("categorical", categorical)):
        unknown = [n for n in names if n not in header]
        if unknown:
            raise UsageError(f"{path}: data.{key} names column(s) {unknown} that the header "
                             f"does not have ({_columns(header)}).")
    if target in drop or target in categorical:
        raise UsageError(f"{path}: the target {target!r} cannot be in data.drop or "
                         "data.categorical.")
    dtype = {i: str for i, h in enumerate(header) if h == target or h in categorical}
    frame = _read_frame(path, header, [h for h in header if h not in drop], dtype)
    if frame.empty:
        raise UsageError(f"{path}: the CSV file has a header but no data rows.")
    y = frame.pop(target).to_numpy(dtype=object) if target is not None else np.zeros(0)
    if target is not None:
        empty = np.flatnonzero(pd.isna(y) | (y == ""))
        if empty.size and unlabelled == "drop" and empty.size < len(y):
            keep = np.ones(len(y), bool)
            keep[empty] = False
            frame, y = frame.loc[keep].reset_index(drop=True), y[keep]
            if dropped is not None:  # the caller says so
                dropped.append(int(empty.size))
            else:
                logger.info("%s: %d of %d row(s) have no target %r: left out "
                            "(data.unlabelled = \"drop\")", path.name, empty.size, len(keep),
                            target)
            empty = empty[:0]
        if empty.size:
            line = line_of(path, int(empty[0]))
            raise UsageError(f"{path}: {empty.size} row(s) have an empty or missing target "
                             f"{target!r} (first at line {line}; NA, N/A, null and NaN count "
                             "as missing); fill them, or leave them out with data.unlabelled = "
                             "\"drop\".")
        numbers = _mostly_numeric(pd.Series(y))
        typos = np.zeros(0, dtype=int) if numbers is None else \
            np.flatnonzero(numbers.isna().to_numpy())
        if typos.size:  # a quantity with a typo, not thousands of classes
            raise UsageError(f"{path}: the target {target!r} is numeric except {typos.size} "
                             f"cell(s) (e.g. {str(y[typos[0]]).strip()!r} at line "
                             f"{line_of(path, int(typos[0]))}); fix them.")
        codes, labels = stripped_distinct(y)
        y = labels[codes]
    columns = []
    for name in frame.columns:
        series = frame[name]
        present = int(series.notna().sum())
        if present == 0 and name == "":
            continue  # a trailing comma on every line, the header's too
        if present == 0:
            raise UsageError(f"{path}: column {name!r} is empty (no value in any row); drop it "
                             f"with data.drop = [{name!r}].")
        if pd.api.types.is_numeric_dtype(series) or name in categorical:
            columns.append(_numeric_column(path, name, series, name in categorical))
            continue
        if _mostly_numeric(series.dropna()) is not None:  # numeric but for a few bad cells
            columns.append(_numeric_column(path, name, series, False))
            continue
        column = _text_column(name, series)
        assert column.categories is not None
        distinct = len(column.categories) - (MISSING in column.categories)
        if present >= 20 and distinct >= IDENTIFIER_SHARE * present:
            if identifiers is not None:
                identifiers.append(name)
                continue
            raise UsageError(f"{path}: column {name!r} looks like an identifier ({distinct} "
                             f"distinct values in {present} rows); drop it with data.drop = "
                             f"[{name!r}], or list it in data.categorical if it is a "
                             "category.")
        columns.append(column)
    if not columns:
        raise UsageError(f"{path}: no feature columns besides the target {target!r}"
                         f"{' and identifiers' if identifiers else ''}.")
    return Table(columns), y


def read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named arrays of an .npz file (no pickles), or UsageError naming what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise UsageError(f"{path}: the .npz needs arrays "
                                 f"{' and '.join(map(repr, keys))}; missing "
                                 f"{missing} (has {sorted(npz.files)}).")
            arrays = {k: np.asarray(npz[k]) for k in keys}
    except UsageError:
        raise
    except Exception as exc:  # a corrupt archive, pickled objects, ...
        raise UsageError(f"{path}: cannot read as .npz ({type(exc).__name__}).") from None
    X = arrays["X"]
    if X.ndim != 2 or not np.issubdtype(X.dtype, np.number):
        raise UsageError(f"{path}: X must be a 2-d numeric array, but got shape {X.shape} "
                         f"and dtype {X.dtype}.")
    if np.isinf(X).any():
        raise UsageError(f"{path}: X holds infinite values.")
    return arrays


def raw_file(path: Path, target: str | None, drop: tuple[str, ...] = (),
             categorical: tuple[str, ...] = (), unlabelled: str = "refuse") -> Raw:
    require_file(path, "data file")
    if file_kind(path) == ".csv":
        if not target:
            raise UsageError(f"{path}: a CSV source needs data.target, the name of the "
                             "target column.")
        return read_csv(path, target, drop, categorical, unlabelled=unlabelled)
    arrays = read_npz(path, ("X", "y"))
    X, y = arrays["X"], arrays["y"]
    if y.ndim != 1 or len(X) != len(y):
        raise UsageError(f"{path}: X must be 2-d and y 1-d with as many rows, but got "
                         f"X.shape={X.shape}, y.shape={y.shape}.")
    return numeric_table(X, [f"x{i}" for i in range(X.shape[1])]), y


def read_rows(path: Path, columns: list[dict[str, Any]]) -> Table:
    """The rows to predict on, by the training's raw columns (``Preprocessor.columns``).

    A CSV's columns are found by header name (any order; a target column and other
    columns the model does not use are ignored, with a note); an .npz gives them as
    ``X``, in the training's order.
    """
    require_file(path, "data file")
    names = [c["name"] for c in columns]
    if file_kind(path) == ".npz":
        if any(c["kind"] == "text" for c in columns):
            raise UsageError(f"{path}: the model takes text columns; give it a CSV file.")
        X = read_npz(path, ("X",))["X"]
        if X.shape[1] != len(names):
            raise UsageError(f"{path}: needs {len(names)} feature columns, got {X.shape[1]}.")
        table = numeric_table(X, names)
    else:
        header = csv_header(path)
        missing = [n for n in names if n not in header]
        if missing:
            raise UsageError(f"{path}: missing column(s) {missing[:5]}; the model needs "
                             f"{len(names)} columns named as in training.")
        twice = sorted({h for h in names if header.count(h) > 1})
        if twice:
            raise UsageError(f"{path}: the header names column(s) {twice} more than once.")
        kinds = {c["name"]: c["kind"] for c in columns}
        codes = {c["name"] for c in columns if c.get("codes")}
        dtype = {i: str for i, h in enumerate(header) if kinds.get(h) == "text"}
        frame = _read_frame(path, header, names, dtype)
        if frame.empty:
            raise UsageError(f"{path}: the CSV file has a header but no data rows.")
        table = Table([_text_column(n, frame[n]) if kinds[n] == "text" and n not in codes
                       else _numeric_column(path, n, frame[n], n in codes, at_predict=True)
                       for n in names])
        unused = [h for h in header if h not in names]
        if unused:  # said once the rows are read, so that an error stays one line
            logger.info("ignoring column(s) the model does not use: %s",
                        ", ".join(unused[:10]) + (" ..." if len(unused) > 10 else ""))
    for spec, col in zip(columns, table.columns, strict=True):
        if spec["kind"] == "numeric" and spec.get("median") is None and \
                np.isnan(col.values).any():
            raise UsageError(f"{path}: column {spec['name']!r} has empty or NaN cells, and "
                             "this model (from nnsearch 0.2) cannot impute them.")
    return table
