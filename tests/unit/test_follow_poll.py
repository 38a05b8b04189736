"""The download command's status refresh: the usual interval, but no later than the end the
rate so far predicts (so the user sees the end at once), never more often than the floor."""
from types import SimpleNamespace

from ctl.follow import _next_poll_s
from node import config


def status(done: int, hashing: int = 0):
    return SimpleNamespace(bytes_done=done, hash_bytes=hashing)


def test_far_from_the_end_the_usual_refresh():
    assert _next_poll_s(status(100), 10_000, 1.0) == config.STATUS_POLL_S


def test_near_the_end_the_refresh_comes_when_it_should_end():
    assert _next_poll_s(status(950), 1000, 1.0) == 50 / 950     # 50 bytes left at 950 a second


def test_never_more_often_than_the_floor_nor_without_a_rate():
    assert _next_poll_s(status(1000), 1000, 1.0) == config.STATUS_POLL_MIN_S
    assert _next_poll_s(status(0), 1000, 1.0) == config.STATUS_POLL_S
    assert _next_poll_s(status(500, hashing=1000), 1000, 1.0) == config.STATUS_POLL_S


def test_the_end_is_predicted_from_the_faster_of_the_overall_and_the_recent_rate():
    """The rate so far includes the slow start: at 950 of 1000 bytes after 1 s but 1900 a second
    lately, the end is 50/1900 s away, not 50/950; a recent stall does not push it later."""
    assert _next_poll_s(status(950), 1000, 1.0, recent_bps=1900) == 50 / 1900
    assert _next_poll_s(status(950), 1000, 1.0, recent_bps=10) == 50 / 950
    assert _next_poll_s(status(100), 10_000, 1.0, recent_bps=1000) == config.STATUS_POLL_S
