"""The sending half of a BEP 3 connection (a mixin of connection.BtConnection): one queue
of replies, written until the socket would block. Bytes go out by sendmsg, up to 128 at a
time; blocks queued as spans (spans.py) go out by sendfile, corked so that the kernel
sends full segments, with their files checked before the first span of a flush and after
the last (a change resets the connection). The queue is bounded by the reads: while it
holds more than REMOTE_MAX_BYTES, the connection's socket is not read."""
from __future__ import annotations

import logging
import os
import socket
import struct
import time

import zmq

from node import config
from node.peer.bt.spans import Span, after, before
from node.peer.bt.upload import CLOSED
from node.peer.storage import FileChanged

_LINGER_RESET = struct.pack("ii", 1, 0)         # SO_LINGER on, 0 s: close() sends a reset, drops the queue


class Outbox:
    def send(self, data) -> None:
        if self.state == CLOSED:
            return
        self.out.append(data)
        self.out_bytes += len(data)
        self.out_total += len(data)
        if not self.corked and not self.connecting and not self.polling & zmq.POLLOUT:
            self.flush()

    def flush(self) -> None:
        """Write what is queued until the socket would block; refill from queued requests.
        Bytes go out by sendmsg (up to 128 at a time), block spans by sendfile (spans.py:
        their files are checked before the first span of each and after the last)."""
        out = self.out
        checked: dict | None = None                # (file, index) sent from in this flush
        wrote = False
        while self.state != CLOSED and not self.connecting:
            if not out:
                if not self.requests or self.choked:
                    break
                self.corked = True
                try:
                    self._serve_queued()
                finally:
                    self.corked = False
                if not out:
                    break
            head = out[0]
            try:
                if head.__class__ is Span:
                    if checked is None:             # full segments, not one per 16 KiB block
                        checked = {}
                        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                    key = (head.file, head.index)
                    if key not in checked:
                        why = before(head)
                        if why:
                            self._file_changed(head.file, why)
                            return
                        checked[key] = None
                    sent = os.sendfile(self.fd, head.fd, head.offset, head.length)
                    if sent == 0:                   # the file ends before the block: it shrank
                        self._file_changed(head.file, f"{head.file.path} is shorter than the torrent says")
                        return
                else:
                    batch, flags = [], 0
                    for item in out:
                        if item.__class__ is Span:
                            flags = socket.MSG_MORE     # the header goes out with its block
                            break
                        batch.append(item)
                        if len(batch) == 128:
                            break
                    sent = self.sock.sendmsg(batch, (), flags)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self.close(f"send failed: {exc.strerror or exc}")
                return
            self.out_bytes -= sent
            self.out_sent += sent
            wrote = True
            held = self.held
            while held and held[0][0] <= self.out_sent:   # a piece wholly in the kernel: its bytes are free
                self.service.budget.release(held.popleft()[1])
            while sent:
                head = out[0]
                if head.__class__ is Span:
                    head.offset += sent
                    head.length -= sent
                    if head.length:
                        break
                    head.drop()
                    out.popleft()
                    break
                if len(head) <= sent:
                    sent -= len(head)
                    out.popleft()
                else:
                    out[0] = memoryview(head)[sent:]
                    sent = 0
        if checked is not None:
            if self.state != CLOSED:
                try:
                    self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)   # and push the rest
                except OSError:
                    pass
            changed, why = after(checked)
            if changed is not None:
                self._file_changed(changed, why)
                return
        if wrote:
            self.last_send = time.monotonic()
        if self.state != CLOSED:
            self._update_poll()

    def _file_changed(self, piece_file, why: str) -> None:
        """A file we send from changed (spans.py): reset, so nothing more of it leaves."""
        self.service.read_failed(piece_file, FileChanged(why))
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass
        self.close(f"{why}: connection reset", logging.WARNING)

    def _update_poll(self) -> None:
        if self.state == CLOSED:
            return
        want = zmq.POLLOUT if (self.out or self.connecting) else 0
        if self.out_bytes < config.REMOTE_MAX_BYTES and not self.connecting:
            want |= zmq.POLLIN
        if want != self.polling:
            self.polling = want
            self.service.reactor.modify_fd(self.fd, want)
