import pytest

from protocol.pieces import Bitfield, auto_piece_length, piece_count


@pytest.mark.parametrize("mib", [32, 64, 256, 1024, 4096])
def test_auto_piece_length_aims_at_1000_to_2000_pieces(mib):
    length = mib * 1024 * 1024
    assert 1000 <= piece_count(length, auto_piece_length(length)) <= 2000


def test_auto_piece_length_clamps():
    assert auto_piece_length(1) == 32 * 1024
    assert auto_piece_length(10**12) == 4 * 1024 * 1024


def test_bitfield_bep3_order_and_count():
    bf = Bitfield(10)
    assert bf.add(0) and bf.add(9) and not bf.add(9)
    assert bf.to_bytes() == b"\x80\x40"
    assert len(bf) == 2 and 9 in bf and 1 not in bf and 10 not in bf
    assert Bitfield(10, bf.to_bytes()).indexes() == [0, 9]
    with pytest.raises(IndexError):
        bf.add(10)


def test_bitfield_rejects_spare_bits_and_wrong_size():
    with pytest.raises(ValueError, match="past the last piece"):
        Bitfield(10, b"\x00\x01")
    with pytest.raises(ValueError, match="expected 2"):
        Bitfield(10, b"\x00")
    assert Bitfield.full(10).complete
