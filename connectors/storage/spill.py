"""Row batches parked on local disk as Arrow IPC files while Postgres is unreachable.

Files are named ``<seq>-<table>.arrow`` with a sequence that keeps growing across restarts, written
to a temporary name and renamed, so a crash never leaves a half file under a real name. A
writer replays them oldest first once the database answers again, deleting each after commit.
Batches Postgres refused for good (bad data, missing table) go to ``rejected/`` with the error.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

_NAME = re.compile(r"^(\d{12})-([a-z_]+)\.arrow$")


@dataclass(frozen=True)
class SpillFile:
    """One parked batch: its order, table and path."""

    seq: int
    table: str
    path: Path
    rows: int


class SpillDir:
    """A folder of parked batches for one writer."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        files = self.files()
        self._seq = files[-1].seq + 1 if files else 0

    def files(self) -> list[SpillFile]:
        """Parked batches, oldest first."""
        out = []
        for p in self.path.iterdir():
            m = _NAME.match(p.name)
            if m:
                out.append(SpillFile(int(m.group(1)), m.group(2), p, -1))
        return sorted(out, key=lambda f: f.seq)

    def put(self, table: str, data: pa.Table) -> SpillFile:
        """Park a batch durably (fsync before the rename); returns its file."""
        seq, self._seq = self._seq, self._seq + 1
        final = self.path / f"{seq:012d}-{table}.arrow"
        tmp = final.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            with ipc.new_file(f, data.schema) as w:
                w.write_table(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        return SpillFile(seq, table, final, data.num_rows)

    @staticmethod
    def read(file: SpillFile) -> pa.Table:
        """The batch a file holds."""
        with ipc.open_file(file.path) as r:
            return r.read_all()

    @staticmethod
    def remove(file: SpillFile) -> None:
        file.path.unlink(missing_ok=True)

    def reject(self, table: str, data: pa.Table, error: str) -> Path:
        """Set a batch Postgres refused aside with the reason, for a person to look at and reload."""
        rejected = SpillDir(self.path / "rejected")
        f = rejected.put(table, data)
        f.path.with_suffix(".error.txt").write_text(error + "\n")
        return f.path

    def pending_rows(self) -> int:
        """Rows in every parked batch (reads each file's metadata only)."""
        total = 0
        for f in self.files():
            with ipc.open_file(f.path) as r:
                total += sum(r.get_batch(i).num_rows for i in range(r.num_record_batches))
        return total
