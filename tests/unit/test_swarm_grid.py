"""bench/swarm_grid.py: the bound a waves cell is judged against."""
import pytest

from bench.swarm_grid import MIB, Regime, grid


def test_a_single_start_is_bounded_by_t_min():
    for cell in grid(leechers=[4, 12], sizes=[64], starts=["once"], rtts=[0.0]):
        assert cell.t_bound() == cell.t_min()


def test_waves_are_bounded_by_the_second_wave_with_the_first_as_seeds():
    cell = Regime("w", 100, (50.0,) * 4, 64, wave_s=10.0)
    bits = 64 * MIB * 8
    first = max(bits / 100e6, 2 * bits / 200e6)             # wave 1: 2 leechers and the seed
    second = max(bits / 200e6, 2 * bits / 300e6)            # wave 2: served by the seed and wave 1
    assert cell.t_bound() == pytest.approx(max(first, 10.0 + second))
    assert cell.t_min() < 10.0 < cell.t_bound()              # T_min is below the schedule itself
