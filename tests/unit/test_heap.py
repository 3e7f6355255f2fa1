"""Freed heap pages go back to the operating system after a model load (glibc)."""

from __future__ import annotations

import platform
import re
from pathlib import Path

import pytest

from bunga.serving.heap import release_free_heap


def rss_mb() -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text())[1]) / 1024  # type: ignore[index]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_is_returned() -> None:
    blocks = [bytearray(64 * 1024) for _ in range(1024)]  # 64 MB in heap chunks (below mmap's threshold)
    pin = bytearray(64 * 1024)  # allocated last: the freed blocks are not at the heap's top, which free() trims
    del blocks
    before = rss_mb()
    assert release_free_heap()
    assert before - rss_mb() > 32, "malloc_trim returned less than half of 64 MB of freed heap"
    del pin
