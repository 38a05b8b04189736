"""node/tracker/stats.py: the tracker counts its requests by type and logs them per second,
at most once a TRACKER_TYPE_LOG_S and never when there were none."""
import logging

from node import config
from node.dispatch import Dispatcher
from node.tracker.stats import TrackerCounters, counting
from protocol import messages as m


def test_requests_are_counted_by_type_and_logged_per_second(caplog):
    d = Dispatcher("t")

    @d.handles(m.MsgType.PING)
    def ping(ctx, msg):
        return m.Pong(node="tracker", peer_id="", pid=1)

    c = TrackerCounters()
    counted = counting(d, c)
    for _ in range(3):
        assert isinstance(counted.handlers[m.MsgType.PING](None, m.Ping()), m.Pong)
    assert c.by_type == {"ping": 3} and d.handlers[m.MsgType.PING] is ping   # the original is untouched
    start = c.by_type_since
    with caplog.at_level(logging.INFO, logger="zorrent.tracker"):
        c.log_types(start + 1)                       # too soon: nothing, the count stays
        assert c.by_type == {"ping": 3} and not caplog.records
        c.log_types(start + config.TRACKER_TYPE_LOG_S)
        assert "requests/s over 60 s: ping 0.1" in caplog.text and not c.by_type
        caplog.clear()
        c.log_types(start + 3 * config.TRACKER_TYPE_LOG_S)    # none since: no line
        assert not caplog.records
