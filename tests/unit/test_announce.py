"""The HTTP tracker's wire format: queries parsed from raw bytes, replies on exact bytes."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import announce
from protocol import messages as m

LIBTORRENT_QUERY = ("info_hash=%01%02%03%04%05%06%07%08%09%10%11%12%13%14%15%16%17%18%19%20"
                    "&peer_id=-LT2110-%ff%00abcdefghij&port=6881&uploaded=0&downloaded=0&left=1000"
                    "&corrupt=0&key=1A2B&event=started&numwant=200&compact=1&no_peer_id=1&supportcrypto=1")


def test_a_libtorrent_announce():
    q = announce.parse_announce(LIBTORRENT_QUERY, "127.0.0.1", 4096, 50)
    assert q.msg == m.ClientAnnounce(info_hash="0102030405060708091011121314151617181920",
                                     peer_id=b"-LT2110-\xff\x00abcdefghij".hex(), host="127.0.0.1", port=6881,
                                     left=1000, event="started", numwant=200)
    assert (q.compact, q.no_peer_id) == (True, True)


def test_defaults_and_paused():
    q = announce.parse_announce(LIBTORRENT_QUERY.replace("&numwant=200&compact=1&no_peer_id=1", "")
                                .replace("event=started", "event=paused"), "10.0.0.1", 4096, 50)
    assert (q.msg.numwant, q.msg.event, q.compact, q.no_peer_id) == (50, "", True, False)


def test_compact_peers_and_peers6_exact_bytes():
    swarm = m.ClientSwarm(interval_s=300, min_interval_s=60, complete=1, incomplete=2, peers=[
        m.ClientPeer("aa" * 20, "127.0.0.1", 6881), m.ClientPeer("bb" * 20, "::1", 6882)])
    assert announce.swarm_reply(swarm, compact=True, no_peer_id=False) == (
        b"d8:completei1e10:incompletei2e8:intervali300e12:min intervali60e"
        b"5:peers6:\x7f\x00\x00\x01\x1a\xe1"
        b"6:peers618:" + b"\x00" * 15 + b"\x01\x1a\xe2" + b"e")
    assert announce.swarm_reply(swarm, compact=False, no_peer_id=True) == (
        b"d8:completei1e10:incompletei2e8:intervali300e12:min intervali60e"
        b"5:peersld2:ip9:127.0.0.14:porti6881eed2:ip3:::14:porti6882eeee")


def test_scrape_and_failure_bytes():
    reply = m.ScrapeReply(files=[m.ScrapeEntry("01" * 20, 3, 4, 5)])
    assert announce.scrape_reply(reply) == (b"d5:filesd20:" + b"\x01" * 20 +
                                            b"d8:completei3e10:downloadedi5e10:incompletei4eeee")
    assert announce.failure("no") == b"d14:failure reason2:noe"
    q = announce.parse_scrape("info_hash=" + "%01" * 20 + "&info_hash=" + "%02" * 20, 4096, 32)
    assert q.info_hashes == ["01" * 20, "02" * 20]


@pytest.mark.parametrize("raw,plain", [("::ffff:127.0.0.1", "127.0.0.1"), ("::1", "::1"),
                                       ("fe80::1%eth0", "fe80::1"), ("10.1.2.3", "10.1.2.3")])
def test_addresses_are_normalised(raw, plain):
    assert announce.normal_host(raw) == plain


ALPHABET = "info_hashpeer_idportleftevent=&%0123456789abcdefABCDEF+-.é\x00 "


@settings(max_examples=100, derandomize=True, deadline=None, database=None)
@given(st.text(alphabet=ALPHABET, max_size=300) | st.builds(
    lambda parts: "&".join(parts), st.lists(st.sampled_from(LIBTORRENT_QUERY.split("&")) | st.text(ALPHABET, max_size=30),
                                            max_size=20)))
def test_any_query_parses_or_fails_with_a_reason(raw):
    for parse in (lambda: announce.parse_announce(raw, "127.0.0.1", 4096, 50),
                  lambda: announce.parse_scrape(raw, 4096, 32)):
        try:
            parse()
        except announce.QueryError as exc:
            assert exc.message and "\n" not in exc.message
