"""One budget for both wires (issue 17: "put the bounds where both wires can use them").

Raw-socket BEP 3 clients that flood requests and never read, beside ZeroMQ clients that
flood GetBlocks and never read: what the seeder holds for all of them together stays
within the shared REMOTES_TOTAL_BYTES bound (node/budget.py: at most twice it, counting
one first block per remote), its RSS stays within 64 MiB of idle, and libtorrent still
downloads from it, byte-identical."""
from __future__ import annotations

import socket

import zmq

from node import config
from node.peer.bt import framing as f
from protocol import messages as m
from protocol.codec import encode
from protocol.metainfo import read
from tests.hostile.btwire import RawPeer, request
from tests.hostile.test_strangers import dealer, pid_of, vm_hwm_mib
from tests.integration.bt_clients import bt_port, lt_add, lt_session, lt_wait_done, wrote
from tests.procs import wait_for

MIB = 1024 * 1024
ZMQ_FLOODERS = 16               # x REMOTE_MAX_REQUESTS pieces of 32 KiB: 4 MiB each (on loopback the kernel's
                                # socket buffers take most of it; what it does not stays here, counted)
BT_FLOODERS = 4                 # the upload slots but the optimistic one, which libtorrent gets
BT_REQUESTS = config.REMOTE_MAX_REQUESTS  # 2 MiB each, at once (one more would be refused, 64 more cut off)


def test_floods_on_both_wires_share_one_budget_and_libtorrent_still_downloads(swarm, tmp_path):
    src, up = swarm.seeded("z1", [], "f.bin", 32 * MIB, seed=57)
    meta = read(swarm.workdir / up["torrent"])
    ih = bytes.fromhex(meta.info_hash)
    pid = pid_of(swarm, "z1")
    before = vm_hwm_mib(pid)
    zctx = zmq.Context()
    peers: list[RawPeer] = []
    try:
        blocks = [(p, b) for p in range(meta.num_pieces) for b in range(0, meta.piece_size(p), f.BLOCK_BYTES)]
        for n in range(BT_FLOODERS):
            peer = RawPeer(bt_port(swarm, "z1"))
            peers.append(peer)
            peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            assert peer.handshake(ih, peer_id=b"-XX0001-flood%07d" % n)[28:48] == ih
            peer.send(f.simple(f.INTERESTED))
            peer.until(f.UNCHOKE)
            mine = blocks[n * BT_REQUESTS:(n + 1) * BT_REQUESTS]
            peer.send(b"".join(request(p, b, min(f.BLOCK_BYTES, meta.piece_size(p) - b)) for p, b in mine))
            # and never read again
        # Each BEP 3 flood arrives in one read and is served in one batch before the first send:
        # its 2 MiB are claimed from the budget the status reports, i.e. the data port's.
        wait_for(lambda: swarm.status("z1")["held_peak_bytes"] >= BT_REQUESTS * f.BLOCK_BYTES,
                 timeout_s=10, what="the BEP 3 floods to be counted in the shared budget")
        endpoint = f"tcp://127.0.0.1:{swarm.peer_ports['z1']}"
        for k in range(ZMQ_FLOODERS):                   # within the per-remote request cap, so none is cut off:
            sock = dealer(zctx, endpoint, reads=False)  # each holds what the budget lets it
            for i in range(config.REMOTE_MAX_REQUESTS):
                p = (i + 37 * k) % meta.num_pieces
                sock.send_multipart(encode(m.GetBlock(info_hash=meta.info_hash, piece_index=p, block_offset=0,
                                                      length=meta.piece_size(p), requester=""), i + 1))
        ses = lt_session()
        handle = lt_add(ses, swarm.workdir / up["torrent"], tmp_path)
        handle.connect_peer(("127.0.0.1", bt_port(swarm, "z1")))
        lt_wait_done(handle, timeout_s=60, what="libtorrent to download beside the floods")
        wrote(tmp_path / "f.bin", src)
        status = swarm.status("z1")
        grown = vm_hwm_mib(pid) - before
        print(f"\nheld by strangers now {status['held_bytes'] / MIB:.1f} MiB, at most "
              f"{status['held_peak_bytes'] / MIB:.1f} MiB (shared total {config.REMOTES_TOTAL_BYTES // MIB} MiB); "
              f"seeder peak RSS grew {grown:.1f} MiB")
        assert status["held_peak_bytes"] <= 2 * config.REMOTES_TOTAL_BYTES, status["held_peak_bytes"]
        assert grown < 64, f"seeder peak RSS grew {grown:.0f} MiB"
    finally:
        for peer in peers:
            peer.close()
        zctx.destroy(linger=0)
