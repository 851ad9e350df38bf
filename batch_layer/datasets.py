"""Public rating datasets as canonical interaction logs, and MovieLens-100K fetched at run time.

Every importer returns the same columns, ready for :func:`batch_layer.interactions.read_interactions`:

=============  ========  ==================================================================
``user_id``    Utf8      the dataset's user id
``item_id``    Utf8      the dataset's item id
``timestamp``  Int64     epoch seconds, UTC
``event_type`` Utf8      ``"rating"``
``weight``     Float32   the rating (1 when the file has none)
``event_id``   Utf8      ``"user:item:timestamp"``: the same rating always gets the same id
=============  ========  ==================================================================

Example
-------
>>> frame = import_dataset("ml-100k", "ml-100k/u.data")  # doctest: +SKIP
>>> write_log(frame, "var/ml-100k.parquet")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import polars as pl

from batch_layer.errors import BadInputError, DatasetFetchError, RegistryUnreachableError

#: Format name -> (what it is, the file name it usually has).
FORMATS: dict[str, tuple[str, str]] = {
    "ml-100k": ("MovieLens 100K: tab-separated user, item, rating, timestamp; no header", "u.data"),
    "ml-1m": ("MovieLens 1M/10M: '::'-separated user, item, rating, timestamp; no header", "ratings.dat"),
    "ml-latest": ("MovieLens latest/20M/25M: CSV with header userId,movieId,rating,timestamp", "ratings.csv"),
    "recbole": ("RecBole atomic file: tab-separated, typed header such as user_id:token", ".inter"),
}
LOG_COLUMNS = ("user_id", "item_id", "timestamp", "event_type", "weight", "event_id")
_ML_FIELDS = {"user": 0, "item": 1, "rating": 2, "timestamp": 3}
_ML_LATEST_HEADER = ["userId", "movieId", "rating", "timestamp"]

RECBOLE_VERSION = "1.2.1"
ML100K_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
# sha256 of ml-100k.inter inside recbole 1.2.1's wheel: a changed file is refused, never used silently.
ML100K_SHA256 = "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff"
# What pip prints when it cannot reach the index (DNS, refused connection, proxy, TLS, offline).
_UNREACHABLE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|"
    r"Name or service not known|ConnectTimeout|ReadTimeout|ProxyError|Network is unreachable|"
    r"Connection refused|SSLError|Max retries exceeded",
    re.IGNORECASE,
)


def import_dataset(fmt: str, path: str | Path) -> pl.DataFrame:
    """Read a public rating file in ``fmt`` (a key of :data:`FORMATS`, or ``auto`` to go by the file name).

    Raises
    ------
    BadInputError
        The file is missing, the format unknown, or a line does not fit the format (named by number).
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"dataset file {path} does not exist")
    fmt = guess_format(path) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise BadInputError(f"unknown dataset format {fmt!r}; expected one of {', '.join(FORMATS)} or auto")
    header = fmt in ("ml-latest", "recbole")
    separator = {"ml-100k": "\t", "ml-1m": "::", "ml-latest": ",", "recbole": "\t"}[fmt]
    fields, width = _recbole_fields(path) if fmt == "recbole" else (_ML_FIELDS, 4)
    try:
        lines = pl.read_csv(
            path, has_header=False, separator="\x1f", quote_char=None, infer_schema=False, raise_if_empty=False
        )
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read {path} as {fmt} ({FORMATS[fmt][0]}): {exc}") from exc
    if lines.width != 1:
        raise BadInputError(f"dataset file {path} is empty or not text; expected {FORMATS[fmt][0]}")
    lines = lines.rename({lines.columns[0]: "line"}).with_row_index("lineno", offset=1)
    if fmt == "ml-latest" and lines.height and lines["line"][0].strip().split(",")[:4] != _ML_LATEST_HEADER:
        raise BadInputError(
            f"{path}, line 1: expected the header {','.join(_ML_LATEST_HEADER)}; got {lines['line'][0]!r}"
        )
    lines = lines.slice(1 if header else 0).filter(pl.col("line").str.strip_chars().str.len_bytes() > 0)
    return _canonical(lines, fields, width, separator=separator, path=path, fmt=fmt)


def guess_format(path: Path) -> str:
    """The format a file's name suggests: ``u.data`` -> ml-100k, ``ratings.dat`` -> ml-1m, ..."""
    name = path.name.lower()
    for fmt, (_, usual) in FORMATS.items():
        if name == usual or (usual.startswith(".") and name.endswith(usual)):
            return fmt
    raise BadInputError(
        f"cannot tell the format of {path} from its name; name it: "
        + ", ".join(f"{k} ({v[1]})" for k, v in FORMATS.items())
    )


def write_log(frame: pl.DataFrame, out: str | Path) -> Path:
    """Write a log to parquet (or CSV when ``out`` ends in ``.csv``) via a temporary file and a rename."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix.lower() == ".csv":
        frame.write_csv(tmp)
    else:
        frame.write_parquet(tmp)
    tmp.replace(out)
    return out


def default_cache_dir() -> Path:
    """``$LAMBDAREC_CACHE``, else ``~/.cache/lambdarec``."""
    return Path(os.environ.get("LAMBDAREC_CACHE") or Path.home() / ".cache" / "lambdarec")


def fetch_movielens_100k(cache_dir: str | Path | None = None) -> Path:
    """MovieLens-100K as RecBole's ``ml-100k.inter``, from the ``recbole`` wheel on the package index.

    The file is cached as ``CACHE/datasets/ml-100k.inter`` (``CACHE`` = ``cache_dir`` or
    :func:`default_cache_dir`) and checked against a pinned SHA-256; later calls use the cache.

    Raises
    ------
    RegistryUnreachableError
        pip could not reach the package index (offline, DNS, proxy).
    DatasetFetchError
        pip failed otherwise, or the file in the wheel is missing or not the expected one.
    """
    target = Path(cache_dir or default_cache_dir()) / "datasets" / "ml-100k.inter"
    if target.is_file() and _sha256(target.read_bytes()) == ML100K_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        argv = [sys.executable, "-m", "pip", "download", f"recbole=={RECBOLE_VERSION}", "--no-deps", "-d", tmp]
        argv += ["--disable-pip-version-check", "--no-input", "--retries", "2", "--timeout", "20"]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr)[-2000:]
            if _UNREACHABLE.search(output):
                raise RegistryUnreachableError(
                    f"could not download recbole=={RECBOLE_VERSION} with pip to get MovieLens-100K: the package "
                    f"index is unreachable (check the network, PIP_INDEX_URL and proxy settings). pip said:\n{output}"
                )
            raise DatasetFetchError(
                f"could not download recbole=={RECBOLE_VERSION} with pip to get MovieLens-100K. pip said:\n{output}"
            )
        wheels = list(Path(tmp).glob("recbole-*.whl"))
        if not wheels:
            raise DatasetFetchError(f"pip download recbole=={RECBOLE_VERSION} left no wheel in {tmp}")
        try:
            with zipfile.ZipFile(wheels[0]) as wheel:
                data = wheel.read(ML100K_MEMBER)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise DatasetFetchError(f"{wheels[0].name} has no readable {ML100K_MEMBER}: {exc}") from exc
        if _sha256(data) != ML100K_SHA256:
            raise DatasetFetchError(
                f"{ML100K_MEMBER} in {wheels[0].name} has sha256 {_sha256(data)}, expected {ML100K_SHA256}"
            )
        partial = Path(tmp) / target.name
        partial.write_bytes(data)
        partial.replace(target)
    return target


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _recbole_fields(path: Path) -> tuple[dict[str, int], int]:
    try:
        with path.open(encoding="utf-8") as fh:
            header = fh.readline().rstrip("\r\n").split("\t")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read RecBole file {path}: {exc}") from exc
    names = [h.split(":", 1)[0] for h in header]
    fields = {key: names.index(name) for key, name in _RECBOLE_NAMES.items() if name in names}
    for key in ("user", "item", "timestamp"):
        if key not in fields:
            raise BadInputError(
                f"RecBole file {path} has no {_RECBOLE_NAMES[key]} field; its header is {'  '.join(header)!r} "
                "(expected tab-separated fields such as user_id:token, item_id:token, rating:float, "
                "timestamp:float)"
            )
    return fields, len(header)


_RECBOLE_NAMES = {"user": "user_id", "item": "item_id", "rating": "rating", "timestamp": "timestamp"}


def _canonical(
    lines: pl.DataFrame, fields: dict[str, int], width: int, *, separator: str, path: Path, fmt: str
) -> pl.DataFrame:
    parts = pl.col("line").str.strip_chars_end("\r").str.split(separator)
    field = {k: parts.list.get(i, null_on_oob=True).str.strip_chars() for k, i in fields.items()}
    rating = field["rating"].cast(pl.Float32, strict=False) if "rating" in field else pl.lit(1.0, pl.Float32)
    seconds = field["timestamp"].cast(pl.Float64, strict=False).floor().cast(pl.Int64, strict=False)
    parsed = lines.select(
        "lineno",
        "line",
        parts.list.len().alias("n"),
        field["user"].alias("user_id"),
        field["item"].alias("item_id"),
        seconds.alias("timestamp"),
        rating.alias("weight"),
    )
    problems = {
        f"it has the wrong number of fields (expected {width} separated by {separator!r})": pl.col("n") != width,
        "the user id is empty": pl.col("user_id").fill_null("") == "",
        "the item id is empty": pl.col("item_id").fill_null("") == "",
        "the timestamp is not a number of epoch seconds": pl.col("timestamp").is_null(),
        "the rating is not a number": pl.col("weight").is_null() | ~pl.col("weight").is_finite(),
    }
    for why, broken in problems.items():
        bad = parsed.filter(broken)
        if bad.height:
            lineno, line = bad.row(0)[:2]
            raise BadInputError(
                f"{path}, line {lineno}: {why}; the line is {line!r}. Expected {fmt}: {FORMATS[fmt][0]} "
                f"({bad.height} such line(s) in all)"
            )
    return parsed.select(
        "user_id",
        "item_id",
        "timestamp",
        pl.lit("rating").alias("event_type"),
        "weight",
        pl.concat_str("user_id", "item_id", pl.col("timestamp").cast(pl.String), separator=":").alias("event_id"),
    )
