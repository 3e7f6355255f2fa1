"""Give the heap memory a model load freed back to the operating system.

Opening an ONNX graph parses it and builds its tensors; the parse buffers are freed afterwards, but
glibc keeps freed pages in the process (about 20 MB for the photo graph). ``malloc_trim`` returns
them; C libraries without it (musl, macOS) are left as they are."""

from __future__ import annotations

import ctypes


def release_free_heap() -> bool:
    """Return free heap pages to the OS (glibc's ``malloc_trim``); False where it is not available."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True
