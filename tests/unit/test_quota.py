"""The folder inbox's quota charges one upload once, however its retries interleave."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bunga.garden.folder_inbox import DirectoryInbox
from bunga.garden.quota import CLAIMED, STORED, InboxQuota, Reservation
from tests.helpers import photo_bytes


def test_a_retry_reserving_after_the_first_try_committed_is_told_stored(tmp_path: Path) -> None:
    """The order CI caught: try B looks after try A's record is written and its reservation committed.
    B must learn the upload is stored (under the ledger's lock), not reserve and be charged again."""
    quota = InboxQuota(tmp_path, max_bytes=10**6, max_files=4)
    record = tmp_path / "photos" / "abc-key.json"
    first = quota.reserve(100, 2, "abc-key", record)
    assert isinstance(first, Reservation)
    assert quota.reserve(100, 2, "abc-key", record) == CLAIMED  # A still writing
    record.parent.mkdir(parents=True)
    record.write_text("{}")
    quota.commit(first)
    assert quota.reserve(100, 2, "abc-key", record) == STORED
    assert quota.usage() == (100, 2)


def test_twenty_threads_storing_one_upload_store_and_charge_it_once(tmp_path: Path) -> None:
    """The same upload (one Idempotency-Key) sent by 20 threads at once: one record, charged once,
    so a quota of four files still takes another upload."""
    inbox = DirectoryInbox(tmp_path, max_bytes=10**7, max_files=4)
    photo = photo_bytes("sintetis_merah", 7)
    with ThreadPoolExecutor(20) as pool:
        shas = set(pool.map(lambda _: inbox.store_photo(photo, "jpg", "sintetis_merah", "one-upload"), range(20)))
    assert len(shas) == 1
    assert inbox.usage()[1] == 2
    inbox.store_photo(photo_bytes("sintetis_merah", 8), "jpg", "sintetis_merah", "other-upload")
    assert sorted(p.name.endswith(".json") for p in (tmp_path / "photos").iterdir()) == [False, False, True, True]
