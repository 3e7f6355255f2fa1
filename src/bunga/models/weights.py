"""Reading a PyTorch checkpoint (a state dict of tensors) into numpy arrays without torch and without
running pickled code: the unpickler resolves only the names a state dict needs (an ordered dict,
tensor rebuilding, storage types) and refuses every other global. Both of torch's file layouts are
read: the zip archive (torch >= 1.6) and the legacy stream of pickles."""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bunga.errors import BungaError

_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass(frozen=True)
class _StorageType:
    dtype: type[np.generic]


@dataclass
class _Storage:
    dtype: type[np.generic]
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        if self.storage.data is None:
            raise BungaError("a tensor's storage is missing from the checkpoint")
        flat = self.storage.data
        itemsize = flat.dtype.itemsize
        if not self.size:
            return np.array(flat[self.offset])
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :], shape=self.size, strides=tuple(s * itemsize for s in self.stride), writeable=False
        )
        return np.array(view)  # a contiguous copy: the view must not outlive the storage's layout


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any) -> Any:
    return _TensorRef(storage, offset, tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Resolves only what a state dict of plain tensors needs; any other global is refused."""

    def __init__(self, file: Any, storages: dict[str, _Storage], load: Any = None) -> None:
        super().__init__(file)
        self.storages = storages
        self.load_storage = load

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return _StorageType(_DTYPES[name])
        raise BungaError(f"the weights file asks to load {module}.{name}: refused (only tensors are read)")

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise BungaError("the weights file holds an object that is not a tensor storage: refused")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise BungaError("the weights file names an unknown storage type: refused")
        if key not in self.storages:
            storage = _Storage(storage_type.dtype, numel)
            if self.load_storage is not None:
                storage.data = self.load_storage(key, storage)
            self.storages[key] = storage
        return self.storages[key]


def _arrays(state: Any) -> dict[str, np.ndarray]:
    if not isinstance(state, dict):
        raise BungaError("the weights file does not hold a state dict")
    return {str(k): v.array() for k, v in state.items() if isinstance(v, _TensorRef)}


def _read_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickle_name = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pickle_name is None:
            raise BungaError(f"{path.name}: no data.pkl in the archive")
        root = pickle_name[: -len("data.pkl")]

        def load(key: str, storage: _Storage) -> np.ndarray:
            return np.frombuffer(archive.read(f"{root}data/{key}"), dtype=storage.dtype)

        storages: dict[str, _Storage] = {}
        state = _StateDictUnpickler(io.BytesIO(archive.read(pickle_name)), storages, load).load()
        return _arrays(state)


def _read_legacy(path: Path) -> dict[str, np.ndarray]:
    with path.open("rb") as handle:
        storages: dict[str, _Storage] = {}
        if _StateDictUnpickler(handle, storages).load() != _LEGACY_MAGIC:
            raise BungaError(f"{path.name} is not a PyTorch checkpoint")
        _StateDictUnpickler(handle, storages).load()  # protocol version (an integer)
        _StateDictUnpickler(handle, storages).load()  # sys info (a dict of plain values)
        state = _StateDictUnpickler(handle, storages).load()
        keys = _StateDictUnpickler(handle, storages).load()  # the storage keys, in file order
        for key in keys:
            storage = storages[str(key)]
            (numel,) = struct.unpack("<q", handle.read(8))
            size = numel * np.dtype(storage.dtype).itemsize
            storage.data = np.frombuffer(handle.read(size), dtype=storage.dtype)
            if len(storage.data) != numel:
                raise BungaError(f"{path.name} is truncated")
        return _arrays(state)


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a PyTorch state-dict checkpoint, as numpy arrays keyed by name."""
    try:
        return _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
    except (pickle.UnpicklingError, EOFError, struct.error, KeyError, ValueError) as err:
        raise BungaError(f"{path.name} is not a readable PyTorch checkpoint: {err}") from err
