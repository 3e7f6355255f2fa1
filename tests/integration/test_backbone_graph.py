"""The backbone graph bunga builds without torch, checked against the torch implementation the
weights were trained with; and the weight reader, which reads tensors and refuses anything else."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from bunga.errors import BungaError
from bunga.models.backbone import IMAGENET_CLASSES, TAP_BLOCKS, weights_path
from bunga.models.export import onnx_session
from bunga.models.lite_graph import blocks, build_backbone, same_pads
from bunga.models.weights import read_state_dict

torch = pytest.importorskip("torch")  # the dev extra: torch is the reference here and nowhere else
pytestmark = pytest.mark.image
TOLERANCE = 1e-5  # float32 reordering between two implementations; measured about 4e-7


def test_the_weight_reader_returns_exactly_what_torch_loads() -> None:
    ours = read_state_dict(weights_path())
    theirs = torch.load(weights_path(), map_location="cpu", weights_only=True)
    assert set(ours) == set(theirs)
    for key, tensor in theirs.items():
        expected = tensor.numpy()
        assert ours[key].dtype == expected.dtype and ours[key].shape == expected.shape, key
        assert np.array_equal(ours[key], expected), key


def test_the_weight_reader_reads_torchs_zip_layout_too(tmp_path: Path) -> None:
    state = {"a.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4).t(), "a.steps": torch.tensor(7)}
    torch.save(state, tmp_path / "w.pt")  # zip layout; the transposed tensor is a strided view
    got = read_state_dict(tmp_path / "w.pt")
    assert np.array_equal(got["a.weight"], state["a.weight"].numpy()) and got["a.steps"] == 7


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("touch pwned",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    for name, writer in (
        ("legacy", lambda f: [pickle.dump(x, f) for x in (0x1950A86A20F9469CFC6C, 1001, {}, _Payload())]),
        ("plain", lambda f: pickle.dump({"w": _Payload()}, f)),
    ):
        path = tmp_path / f"{name}.pth"
        with path.open("wb") as handle:
            writer(handle)
        with pytest.raises(BungaError, match=r"refused|not a"):
            read_state_dict(path)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_the_architecture_matches_the_weights() -> None:
    state = read_state_dict(weights_path())
    spec = blocks()
    assert len(spec) == 16 and [spec[i].outputs for i in TAP_BLOCKS] == [192, 192, 320]
    for index, block in enumerate(spec):
        depthwise = state[f"_blocks.{index}._depthwise_conv.weight"]
        assert depthwise.shape == (block.inputs * block.expand, 1, block.kernel, block.kernel), index
    assert same_pads(224, 3, 2) == [0, 0, 1, 1] and same_pads(56, 5, 2) == [1, 1, 2, 2]
    assert same_pads(14, 5, 1) == [2, 2, 2, 2] and same_pads(7, 1, 1) == [0, 0, 0, 0]


@pytest.mark.parametrize("tta", [False, True])
def test_the_built_graph_matches_torch(tta: bool) -> None:
    from bunga.models.torch_reference import make_embedder

    x = np.random.default_rng(3).normal(0, 0.6, (3, 3, 224, 224)).astype(np.float32)
    embedding, imagenet = onnx_session(build_backbone(weights_path(), TAP_BLOCKS, tta=tta)).run(
        ["embedding", "imagenet"], {"input": x}
    )
    with torch.no_grad():
        expected_embedding, expected_imagenet = make_embedder(tta=tta, imagenet=True)(torch.from_numpy(x))
    assert imagenet.shape == (3, IMAGENET_CLASSES)
    assert float(np.abs(embedding - expected_embedding.numpy()).max()) < TOLERANCE
    assert float(np.abs(imagenet - expected_imagenet.numpy()).max()) < TOLERANCE
    assert np.allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)
