"""Optional persistence to ``data_dir``: a JSON snapshot plus an append-only JSON-lines journal of events.

Every committed event is appended to ``journal.jsonl`` (flushed to the OS at once, so a killed process loses
nothing the OS received); a clean shutdown writes ``snapshot.json`` (all objects and the resourceVersion counter)
and truncates the journal. Loading replays the snapshot, then the journal.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .storage import Event, Store

if TYPE_CHECKING:
    from .registry import Registry


class Persistence:
    """Snapshot + journal in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.snapshot_path = directory / "snapshot.json"
        self.journal_path = directory / "journal.jsonl"
        self._journal: IO[str] | None = None

    def load(self, store: Store, registry: Registry) -> int:
        """Restore objects into ``store`` (no events); returns how many objects were loaded."""
        if self.snapshot_path.exists():
            data = json.loads(self.snapshot_path.read_text())
            for entry in data.get("objects", []):
                store.restore((entry["group"], entry["plural"]), entry["object"])
            store.rv = max(store.rv, int(data.get("resourceVersion", 0)))
        if self.journal_path.exists():
            with self.journal_path.open() as f:
                for line in f:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        break  # a torn last line from a crash
                    key = (entry["group"], entry["plural"])
                    obj = entry["object"]
                    if entry["type"] == "DELETED":
                        meta = obj["metadata"]
                        store.objects.get(key, {}).pop((meta.get("namespace") or "", meta["name"]), None)
                        store.by_uid.pop(meta.get("uid", ""), None)
                    else:
                        store.restore(key, obj)
                    store.rv = max(store.rv, int(entry.get("rv", 0)))
        self.snapshot(store)
        return sum(len(v) for v in store.objects.values())

    def on_event(self, event: Event) -> None:
        """Store listener: append the event to the journal."""
        if self._journal is None:
            self._journal = self.journal_path.open("a")
        record: dict[str, Any] = {"rv": event.rv, "type": event.type, "group": event.key[0],
                                  "plural": event.key[1], "object": event.obj}
        self._journal.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._journal.flush()

    def snapshot(self, store: Store) -> None:
        """Write every object atomically to ``snapshot.json`` and truncate the journal."""
        objects = [{"group": k[0], "plural": k[1], "object": o} for k in store.keys() for o in store.items(k)]
        tmp = self.snapshot_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"resourceVersion": store.rv, "objects": objects}))
        os.replace(tmp, self.snapshot_path)
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        self.journal_path.write_text("")

    def close(self) -> None:
        """Close the journal file."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
