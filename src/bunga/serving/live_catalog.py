"""The catalogue requests see: the packaged (or configured) entries with the curators' edits from the
shared inbox applied, re-read every few seconds, so every worker and replica shows a new species
without a restart."""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool

from bunga.catalog import Catalog
from bunga.garden import catalog_edits
from bunga.garden.inbox import Inbox

log = logging.getLogger("bunga.serving")


class LiveCatalog(Catalog):
    """A Catalog whose entries follow the inbox's catalogue edits (records are never changed or
    removed, so only names not seen before are read)."""

    def __init__(self, base: Catalog, inbox: Inbox) -> None:
        super().__init__(dict(base.entries))
        self.base, self.inbox = base, inbox
        self.photos: dict[str, bytes] = {}  # species id -> the reference JPEG its edit in force carries
        self._edits: dict[str, catalog_edits.Edit | None] = {}  # record name -> its edit (None: not one)

    def refresh(self) -> bool:
        """Read edits not seen before; True when the entries changed."""
        fresh = self.inbox.catalog_files(frozenset(self._edits))
        if not fresh:
            return False
        for name, data in fresh:
            self._edits[name] = catalog_edits.parse(data)
        edits = [edit for edit in self._edits.values() if edit is not None]
        in_force = catalog_edits.latest(edits)
        self.photos = {sid: edit.reference_jpeg for sid, edit in in_force.items() if edit.reference_jpeg}
        self.entries = catalog_edits.apply(self.base, edits).entries  # one assignment: readers see old or new
        return True


async def follow(catalog: LiveCatalog, interval: float) -> None:
    """Refresh the catalogue every ``interval`` seconds; an inbox that does not answer is retried."""
    while True:
        try:
            if await run_in_threadpool(catalog.refresh):
                log.info("catalogue: %d species", len(catalog.entries))
        except Exception as err:  # the inbox's database may be away: keep the entries we have
            log.warning("catalogue refresh failed: %s", err)
        await asyncio.sleep(interval)
