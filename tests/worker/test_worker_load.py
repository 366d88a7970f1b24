"""Capacity in jobs: what a worker takes, and the load it reports to livekit-server for it."""

from __future__ import annotations

import pytest

from worker.capacity import Capacity


def test_an_idle_worker_takes_as_many_concurrent_offers_as_it_has_places():
    capacity = Capacity(max_jobs=3, target_load=0.7)
    with capacity.taking():
        assert capacity.has_room()
        with capacity.taking():
            assert capacity.has_room()
            with capacity.taking():
                assert not capacity.has_room()
    assert capacity.in_use == 0


def test_running_jobs_and_jobs_being_taken_both_count():
    running = [1, 2]
    capacity = Capacity(max_jobs=3, target_load=0.7)
    capacity.count_running(lambda: len(running))
    assert capacity.has_room()
    with capacity.taking():
        assert not capacity.has_room()
    running.pop()
    assert capacity.has_room()


def test_a_place_is_given_back_when_taking_fails():
    capacity = Capacity(max_jobs=1, target_load=0.7)
    with pytest.raises(RuntimeError), capacity.taking():
        raise RuntimeError("assignment timed out")
    assert capacity.has_room()


def test_load_reaches_livekits_target_only_when_full():
    running: list[int] = []
    capacity = Capacity(max_jobs=4, target_load=0.7)
    capacity.count_running(lambda: len(running))
    loads = []
    for _ in range(5):
        loads.append(capacity.load())
        running.append(0)
    assert loads[:4] == [0.0, 0.7 / 4, 0.7 / 2, 0.7 * 3 / 4]
    assert all(load < 0.7 for load in loads[:4])
    assert loads[4] == 1.0  # full: livekit-server gives it no weight at all


def test_capacity_is_at_least_one_job():
    with pytest.raises(ValueError):
        Capacity(max_jobs=0, target_load=0.7)
