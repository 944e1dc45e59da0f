"""A SQL table as a job's sink (any SQLAlchemy URL: sqlite:///out.db, postgresql://...).

Each commit inserts the chunk's rows in one transaction. Every row carries `_row`, its input
row number; rolling back to a checkpoint deletes the rows at or past the checkpoint's
`row_end`, which removes exactly what a crash left between a database commit and the
checkpoint file. A new job (no checkpoint) replaces the table: the job owns it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from numpy.typing import NDArray

from augury.batch.writers import Rows, as_table, flatten_lists

ROW_COLUMN = "_row"


def is_sql_url(output: str) -> bool:
    return "://" in output


def _sql_type(kind: pa.DataType) -> Any:
    if pa.types.is_integer(kind):
        return sa.BigInteger()
    if pa.types.is_floating(kind):
        return sa.Float()
    if pa.types.is_boolean(kind):
        return sa.Boolean()
    return sa.Text()


class SqlSink:
    def __init__(self, url: str, table: str) -> None:
        if not table.replace("_", "").isalnum():
            raise ValueError(f"table name {table!r} must be letters, digits and underscores")
        self.engine = sa.create_engine(url)
        self.name = table
        self.table: sa.Table | None = None
        self.pending: list[pa.Table] = []
        self.row_end = 0

    def open(self, state: dict[str, Any] | None) -> None:
        meta = sa.MetaData()
        with self.engine.begin() as conn:
            exists = sa.inspect(conn).has_table(self.name)
            if exists:
                self.table = sa.Table(self.name, meta, autoload_with=conn)
            if state is None:
                if self.table is not None:
                    self.table.drop(conn)
                self.table = None
                return
            self.row_end = int(state.get("row_end", 0))
            if self.table is not None:
                conn.execute(self.table.delete().where(self.table.c[ROW_COLUMN] >= self.row_end))

    def write(self, rows: Rows, row_numbers: NDArray[np.int64]) -> None:
        table = flatten_lists(as_table(rows))
        if table.num_rows:
            self.pending.append(table.append_column(ROW_COLUMN, pa.array(row_numbers)))
            self.row_end = max(self.row_end, int(row_numbers.max()) + 1)

    def commit(self) -> dict[str, Any]:
        if self.pending:
            data = pa.concat_tables(self.pending, promote_options="permissive")
            self.pending = []
            with self.engine.begin() as conn:
                if self.table is None:
                    columns = [
                        sa.Column(f.name, _sql_type(f.type), index=f.name == ROW_COLUMN)
                        for f in data.schema
                    ]
                    self.table = sa.Table(self.name, sa.MetaData(), *columns)
                    self.table.create(conn)
                conn.execute(self.table.insert(), data.to_pylist())
        return {"row_end": self.row_end}

    def finish(self) -> None:
        self.commit()

    def close(self) -> None:
        self.pending = []
        self.engine.dispose()
