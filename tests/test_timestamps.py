"""The log's one timestamp format, written and read back (handler/timestamps.py)."""

from __future__ import annotations

import pytest

from handler.timestamps import epoch, iso


def test_a_timestamp_reads_back_to_the_millisecond_and_sorts_as_time():
    assert iso(1796146347.3361) == "2026-12-01T17:32:27.336Z"
    assert epoch(iso(1796146347.3361)) == pytest.approx(1796146347.336, abs=1e-6)
    earlier, later = iso(1796146347.336), iso(1796146347.337)
    assert earlier < later  # a DynamoDB range on the strings is a range in time


def test_no_timestamp_is_as_old_as_can_be_and_bad_text_is_an_error():
    assert epoch("") == 0.0
    with pytest.raises(ValueError):
        epoch("yesterday")
