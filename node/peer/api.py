"""What the peer's request handlers may use of the node (node/peer/handlers.py): a narrow
interface, so handlers need nothing of node/peer/main.py and can be tested with a stand-in.
A second wire that serves the same pieces (e.g. BEP 3) takes the same interface."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

from node.budget import Budget
from node.dispatch import Source
from node.peer.holdings import Holding
from node.peer.storage import PieceFile
from protocol import messages as m
from protocol.metainfo import Metainfo


class HoldingsView(Protocol):
    def get(self, info_hash: str) -> Holding | None: ...

    def __contains__(self, info_hash: object) -> bool: ...

    def values(self) -> list[Holding]: ...


class PeerApi(Protocol):
    peer_id: str
    bt_port: int                # the BEP 3 port (0: none)
    holdings: HoldingsView
    source: Source                                     # the connection of the request being handled
    budget: Budget                                     # node/budget.py, shared by both wires

    @property
    def registered(self) -> bool: ...                  # the tracker took our registration

    def read_failed(self, piece_file: PieceFile, err: BaseException) -> None: ...   # integrity.py: changed?

    def add_seed(self, meta: Metainfo, path: Path) -> Holding: ...

    def add_download(self, meta: Metainfo, path: Path) -> Holding: ...

    def remove(self, info_hash: str, delete_data: bool) -> None: ...

    def job_status(self, h: Holding, alone: bool = False) -> m.JobStatus: ...

    def stop_soon(self) -> None: ...                   # stop once the current reply has gone out
