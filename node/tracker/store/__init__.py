"""Tracker state behind one interface; ``open_store(uri)`` picks the backend."""
from __future__ import annotations

from node.tracker.store.base import (
    BITTORRENT,
    ZORRENT,
    Change,
    ClientEntry,
    PeerRecord,
    StoreError,
    TorrentRecord,
    TrackerStore,
)


def open_store(uri: str) -> TrackerStore:
    if uri.startswith("sqlite://"):
        from node.tracker.store.sqlite import SqliteStore

        return SqliteStore(uri)
    if uri.startswith(("mongodb://", "mongodb+srv://")):
        from node.tracker.store.mongo import MongoStore

        return MongoStore(uri)
    raise StoreError(f"unknown store URI {uri!r} (use sqlite:///PATH or mongodb://HOST:PORT/DB)")


__all__ = ["open_store", "PeerRecord", "TorrentRecord", "TrackerStore", "StoreError", "ClientEntry", "Change",
           "ZORRENT", "BITTORRENT"]
