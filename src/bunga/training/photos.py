"""Photo training: frozen backbone embeddings (cached) -> linear head with calibrated abstention,
"not a flower" rule, reference photos and monitoring profile -> one ONNX graph, logged to MLflow and
registered as the challenger."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bunga.bundle import read_bundle, write_bundle
from bunga.bundle_check import record_and_verify
from bunga.catalog import Catalog, load_catalog
from bunga.data.dataset import (
    MIN_PHOTOS_PER_SPECIES,
    PhotoSet,
    check_classes,
    hold_back_scarce,
    holdout_mask,
    load_photos,
)
from bunga.data.merge import CATALOG_FILE
from bunga.errors import BungaError
from bunga.imaging import photo_tensor
from bunga.models.backbone import backbone
from bunga.models.bands import MARGIN, NEVER_MARGIN, fit_sure, pool_index, sure_values
from bunga.models.export import IMAGE_TOLERANCE
from bunga.models.not_flower import NotFlowerRule, fit_not_flower, refusal_score
from bunga.models.signature import reference_sample
from bunga.models.unit_rows import normalise_in_place
from bunga.monitor.profile import reference_profile
from bunga.pyfunc import log_photo_model
from bunga.schemas import OTHER_FLOWERS, Abstention, Bands, ModelCard, NotFlower, ObservationBands, ReferencePhoto
from bunga.tracking import Tracker
from bunga.training.evaluate import evaluate
from bunga.training.references import reference_photos
from bunga.training.reports import contact_sheet
from bunga.training.train import (
    ALIAS_CHALLENGER,
    Candidate,
    PhotoProgress,
    Say,
    TrainConfig,
    environment,
    git_commit,
    log_report,
    register,
    requirements,
)

if TYPE_CHECKING:
    from bunga.models import image


@dataclass
class PhotoFit:
    """What photo fitting hands to logging: test scores, abstention, graph, facts."""

    backbone: str
    family: str
    computed: int
    embed_seconds: float
    probs: np.ndarray  # test split
    sims: np.ndarray
    method: str
    threshold: float
    params: dict[str, Any]
    open_set: dict[str, dict[str, float]]
    graph: bytes
    checks: dict[str, float]
    cv_metrics: dict[str, float]  # out-of-fold scores of each candidate strength
    not_flower: NotFlowerRule
    test_not_flower_rate: float  # share of the test split's (flower) photos called "not a flower"
    references: dict[str, ReferencePhoto]  # one typical training photo per class, for the page
    signature_sample: list[list[float]]  # monitoring signatures of a sample of training photos
    bands: Bands  # when a recognised answer is sure
    test_known_sure: float  # share of the test split's photos whose margin reaches the sure threshold
    observation: dict[str, ObservationBands]  # thresholds for several photos of one plant


MAX_CROPS = 300  # training photos whose crop view is embedded too, for the observation thresholds


@dataclass
class PhotoSplit:
    """The photos, the fixed test split, the training labels, the classes and the check photos."""

    data: PhotoSet
    mask: np.ndarray  # True: test split
    y_train: np.ndarray
    classes: list[str]
    check_x: np.ndarray  # a few preprocessed test photos to check the exported graph with
    groups: np.ndarray | None = None  # the training photos' observation groups (None: each its own)

    @property
    def pairs(self) -> list[tuple[Path, str]]:
        """(path, sha256) of every photo, in order."""
        return list(zip(self.data.paths, self.data.shas, strict=True))


@dataclass
class HeadFit:
    """Everything fitted on the embeddings: once it exists, the embedding matrix can go."""

    head: image.PhotoHead
    selection: image.HeadSelection
    probs: np.ndarray  # test split
    sims: np.ndarray
    rule: NotFlowerRule
    test_not_flower_rate: float
    open_set: dict[str, dict[str, float]]
    references: dict[str, ReferencePhoto]
    signature_sample: list[list[float]]
    bands: Bands
    test_known_sure: float  # share of the test split's photos answered sure (before abstention)
    observation: dict[str, ObservationBands]


@dataclass
class Crops:
    """Feature rows of the crop views of some training photos, and which training row each belongs to."""

    x: np.ndarray
    of: np.ndarray


def _embed(cfg: TrainConfig, split: PhotoSplit, progress: PhotoProgress | None) -> tuple[np.ndarray, int, Crops]:
    """One float32 matrix, training rows first then test rows: unit-length embedding | ImageNet
    probabilities (every part the head needs is a view of it, never a copy); and how many photos
    were computed. Missing photos go into the cache first and the backbone's session is closed
    before the matrix is read from the cache: peak memory is the larger of the two phases, not
    their sum."""
    from bunga.models import image

    order = np.concatenate([np.flatnonzero(~split.mask), np.flatnonzero(split.mask)])
    every = split.pairs
    pairs = [every[i] for i in order]
    spec = backbone(cfg.backbone)
    runner = image.BackboneRunner(cfg.cache_dir, tta=cfg.tta, spec=spec)
    cache = image.EmbeddingCache(cfg.cache_dir, runner.id, spec.feature_dim)
    computed = image.fill_cache(pairs, cache, runner, cfg.batch_size, cfg.max_pixels, progress)
    n_train = len(split.y_train)
    rng = np.random.default_rng(cfg.seed)
    of = np.sort(rng.choice(n_train, size=min(MAX_CROPS, n_train), replace=False))
    crop_cache = image.EmbeddingCache(cfg.cache_dir / "crop-views", runner.id, spec.feature_dim)
    crops = image.crop_features([pairs[i] for i in of], crop_cache, runner, cfg.batch_size, cfg.max_pixels)
    del runner
    matrix = image.cached_features(pairs, cache)
    normalise_in_place(matrix[:, : spec.embedding_dim])  # the head, centroids and signatures use unit rows
    crop_x = np.ascontiguousarray(crops[:, : spec.embedding_dim])
    normalise_in_place(crop_x)
    return matrix, computed, Crops(crop_x, of)


def _observation_bands(
    cfg: TrainConfig,
    selection: image.HeadSelection,
    held: list[image.HeldOut],
    crops: Crops,
    pool: int | None,
) -> dict[str, ObservationBands]:
    """Thresholds for 2 and for 3-5 photos of one plant (bunga.models.observation), from the training
    split's out-of-fold scores and its held-out-class stand-ins."""
    from bunga.models import image

    fits = image.observation_fits(
        selection, held, crops.of, pool, cfg.abstain_max_refused, cfg.sure_precision, cfg.seed
    )
    return {
        key: ObservationBands(
            abstain_threshold=f.abstain_threshold,
            sure_threshold=f.sure_threshold,
            fitted_known_sure=f.known_sure.get("different", 0.0),
            fitted_known_sure_same=f.known_sure.get("same", 0.0),
        )
        for key, f in fits.items()
    }


def _fit_head(cfg: TrainConfig, split: PhotoSplit, matrix: np.ndarray, crops: Crops) -> HeadFit:
    """Strength, temperature and abstention thresholds by cross-validation on the training rows,
    the head, the "not a flower" rule, held-out-class figures and the page's reference photos."""
    from bunga.models import image

    mask, y_train, classes = split.mask, split.y_train, split.classes
    n_train, dim = len(y_train), backbone(cfg.backbone).embedding_dim
    x_train, x_test = matrix[:n_train, :dim], matrix[n_train:, :dim]
    imagenet_train, imagenet_test = matrix[:n_train, dim:], matrix[n_train:, dim:]
    y_test = split.data.y.astype(str)[mask]
    folds = min(cfg.cv_folds, 3)  # 3 strengths x 3 folds: enough to choose, cheap to retrain often
    selection = image.select_head(
        x_train, y_train, classes, folds, cfg.seed, cfg.abstain_max_refused, crops.x, crops.of, split.groups
    )
    head = image.fit_head(x_train, y_train, classes, selection.c, selection.temperature)
    probs, sims = head.scores(x_test)
    rule = fit_not_flower(imagenet_train, selection.centroid_distance, cfg.not_flower_max_refused, cfg.seed)
    test_not_flower = refusal_score(imagenet_test, 1.0 - sims.max(axis=1), rule) > rule.threshold
    pool = OTHER_FLOWERS if OTHER_FLOWERS in classes else None
    named = np.asarray(classes)[selection.truth] != OTHER_FLOWERS  # the pool's own photos are no known answers
    held = image.held_out_scores(
        x_train,
        y_train,
        classes,
        selection.c,
        selection.temperature,
        pool=pool,
        companions=crops.x,
        companion_of=crops.of,
    )
    # the margin between the two best named logits: probabilities saturate as photos per species grow
    sure = fit_sure(
        sure_values(selection.probs, selection.logits, pool_index(classes, pool), MARGIN)[named],
        (selection.probs.argmax(axis=1) == selection.truth)[named],
        image.held_out_tops(x_train, y_train, classes, selection.c, selection.temperature, score=MARGIN, scored=held),
        precision=cfg.sure_precision,
        never=NEVER_MARGIN,
    )
    test_sure = sure_values(probs, head.logits(x_test), pool_index(classes, pool), MARGIN) >= sure.threshold
    open_set = (
        image.open_set(
            x_train, y_train, x_test, y_test, classes, selection.c, selection.temperature, cfg.abstain_max_refused
        )
        if len(classes) >= 3
        else {}
    )
    return HeadFit(
        head=head,
        selection=selection,
        probs=probs,
        sims=sims,
        rule=rule,
        test_not_flower_rate=float(test_not_flower.mean()) if len(test_not_flower) else 0.0,
        open_set=open_set,
        references=reference_photos(
            split.data.subset(~mask), x_train, split.data.y.astype(str)[~mask], classes, cfg.max_pixels
        ),
        signature_sample=reference_sample(x_train, cfg.seed),
        bands=Bands(
            sure_threshold=sure.threshold,
            fitted_precision=sure.precision,
            fitted_known_sure=sure.known_sure,
            score=MARGIN,
        ),
        test_known_sure=float(test_sure.mean()) if len(test_sure) else 0.0,
        observation=_observation_bands(cfg, selection, held, crops, pool_index(classes, pool)),
    )


def _fit_frozen(cfg: TrainConfig, split: PhotoSplit, progress: PhotoProgress | None, say: Say) -> PhotoFit:
    """Frozen backbone embeddings (cached) -> class-balanced linear SVM; its strength, probability
    temperature and abstention thresholds chosen by cross-validation on the training split."""
    from bunga.models import image

    started = time.perf_counter()
    matrix, computed, crops = _embed(cfg, split, progress)
    embed_seconds = time.perf_counter() - started
    say(f"embeddings: {computed} computed, {len(split.mask) - computed} from cache ({embed_seconds:.1f} s)")
    fitted = _fit_head(cfg, split, matrix, crops)
    del matrix  # not held while the graph is composed and checked in a second session
    runner = image.BackboneRunner(cfg.cache_dir, tta=cfg.tta, spec=backbone(cfg.backbone))
    open_set, selection, rule = fitted.open_set, fitted.selection, fitted.rule
    method = max(open_set, key=lambda m: open_set[m]["auroc"]) if open_set else "max_prob"
    graph = image.compose_graph(runner.path, fitted.head)
    diff = image.check_graph(graph, runner, fitted.head, split.check_x)
    if diff > IMAGE_TOLERANCE:
        raise BungaError(f"the exported photo graph disagrees with its parts by {diff:.2e}")
    return PhotoFit(
        backbone=runner.id,
        family=f"{cfg.backbone}+linear-svm",
        computed=computed,
        embed_seconds=embed_seconds,
        probs=fitted.probs,
        sims=fitted.sims,
        method=method,
        threshold=selection.thresholds[method],
        params={
            "head": "linear-svm",
            "head_C": selection.c,
            "head_temperature": selection.temperature,
            "not_flower_classes": len(rule.classes),
            "not_flower_threshold": rule.threshold,
            "sure_threshold": fitted.bands.sure_threshold,
        },
        not_flower=rule,
        references=fitted.references,
        signature_sample=fitted.signature_sample,
        bands=fitted.bands,
        test_known_sure=fitted.test_known_sure,
        observation=fitted.observation,
        test_not_flower_rate=fitted.test_not_flower_rate,
        open_set=open_set,
        graph=graph,
        checks={"onnx_max_abs_diff": diff, "onnx_graph_vs_parts": diff},
        cv_metrics={f"cv_f1_macro_C{c:g}": f1 for c, f1 in selection.f1_macro.items()},
    )


def _catalog(dataset_dir: Path) -> Catalog:
    """The catalogue the dataset version carries (the merge writes it), else the shipped one."""
    path = dataset_dir / CATALOG_FILE
    return load_catalog(path if path.is_file() else None)


def _check_photos(cfg: TrainConfig, data: PhotoSet, mask: np.ndarray) -> np.ndarray:
    """A few preprocessed test photos to check the exported graph against its sources."""
    paths = [data.paths[i] for i in np.flatnonzero(mask)[:4]]
    return np.stack([photo_tensor(p, cfg.max_pixels, size=backbone(cfg.backbone).size) for p in paths])


def train_photos(
    cfg: TrainConfig, tracker: Tracker, say: Say = lambda _: None, progress: PhotoProgress | None = None
) -> Candidate:
    """Fit the photo model (frozen backbone + linear head), export the whole graph to ONNX, log
    everything and register it as the challenger."""
    from bunga.models import image

    data, held_back = hold_back_scarce(load_photos(cfg.dataset_dir))
    if held_back:
        listed = ", ".join(f"{name} ({n})" for name, n in sorted(held_back.items()))
        say(f"not named until each has {MIN_PHOTOS_PER_SPECIES} photos (their photos join {OTHER_FLOWERS}): {listed}")
    classes = check_classes(data.y, "photos", minimum=MIN_PHOTOS_PER_SPECIES)
    mask = holdout_mask(data.shas, data.y, cfg.test_size, cfg.seed, data.observations)
    started = time.perf_counter()
    y = data.y.astype(str)
    y_train = y[~mask].copy()
    if cfg.shuffle_labels:
        np.random.default_rng(cfg.seed).shuffle(y_train)
    groups = np.asarray(data.groups(), dtype=object)[~mask] if data.observations is not None else None
    split = PhotoSplit(data, mask, y_train, classes, _check_photos(cfg, data, mask), groups)
    fit = _fit_frozen(cfg, split, progress, say)
    y_test = y[mask]
    predicted = np.asarray(classes)[fit.probs.argmax(axis=1)]
    report = evaluate(list(y_test), list(predicted), classes, "photos").model_copy(
        update={"dataset_digest": data.digest}
    )
    refused_known = float((image.abstain_score(fit.probs, fit.sims, fit.method) > fit.threshold).mean())
    train_seconds = time.perf_counter() - started
    embed_seconds, computed, open_set = fit.embed_seconds, fit.computed, fit.open_set
    head_seconds = train_seconds - embed_seconds
    with (
        tempfile.TemporaryDirectory() as tmp,
        tracker.run(cfg.experiment, f"photos-{datetime.now(UTC):%Y%m%d-%H%M%S}") as run,
    ):
        folder = Path(tmp)
        run.tags(
            {"kind": cfg.kind, "git_commit": git_commit(), "dataset_digest": data.digest, "backbone": fit.backbone}
        )
        run.params(
            {
                **cfg.as_params(),
                "held_back": ", ".join(f"{name} ({n})" for name, n in sorted(held_back.items())) or "none",
                "n_train": int((~mask).sum()),
                "n_test": int(mask.sum()),
                **fit.params,
                "backbone": fit.backbone,
                "abstain_method": fit.method,
                "abstain_threshold": fit.threshold,
            }
        )
        run.dict(cfg.as_params(), "config.json")
        run.dict(environment(), "environment.json")
        run.dataset(data.digest, "photos", str(data.source.resolve()))
        run.metrics(
            {
                "embed_seconds": embed_seconds,
                "embeddings_computed": computed,
                "head_seconds": head_seconds,
                "train_seconds": train_seconds,
                "test_refused_known": refused_known,
                "test_not_flower_known": fit.test_not_flower_rate,
                "bands_fitted_precision": fit.bands.fitted_precision,
                "bands_fitted_known_sure": fit.bands.fitted_known_sure,
                "test_known_sure": fit.test_known_sure,
                **{
                    f"observation{key}_{name}": value
                    for key, o in fit.observation.items()
                    for name, value in (
                        ("fitted_known_sure", o.fitted_known_sure),
                        ("fitted_known_sure_same", o.fitted_known_sure_same),
                    )
                },
                **({"test_lost_to_pool": report.lost_to_pool} if report.lost_to_pool is not None else {}),
            }
        )
        for m, values in open_set.items():
            run.metrics({f"open_set_auroc_{m}": values["auroc"], f"open_set_refused_unknown_{m}": values["refused"]})
        log_report(run, report, folder)
        wrong = [
            (p, t, g)
            for p, t, g in zip(np.asarray(data.paths, dtype=object)[mask], y_test, predicted, strict=True)
            if t != g
        ]
        sheet = contact_sheet(wrong[:60], folder / "misclassified.png")
        if sheet is not None:
            run.file(sheet, "evaluation")
        run.metrics(fit.checks)
        run.metrics(fit.cv_metrics)
        card = ModelCard(
            kind="photos",
            name=cfg.model_name,
            classes=classes,
            onnx_sha256="",
            family=fit.family,
            run_id=run.run_id,
            trained_at=datetime.now(UTC).isoformat(),
            dataset_digest=data.digest,
            metrics={
                "test_f1_macro": report.f1_macro,
                "test_accuracy": report.accuracy,
                **{f"open_set_auroc_{m}": v["auroc"] for m, v in open_set.items()},
            },
            input_size=backbone(cfg.backbone).size,
            backbone=fit.backbone,
            abstention=Abstention(method=fit.method, threshold=fit.threshold),
            not_flower=NotFlower(
                imagenet_classes=fit.not_flower.classes,
                threshold=fit.not_flower.threshold,
                imagenet_reference=fit.not_flower.imagenet_reference,
                centroid_reference=fit.not_flower.centroid_reference,
            ),
            bands=fit.bands,
            observation=fit.observation,
            references=fit.references,
            profile=reference_profile(
                classes,
                y[~mask],
                fit.probs,
                recognised=image.abstain_score(fit.probs, fit.sims, fit.method) <= fit.threshold,
                signature_sample=fit.signature_sample,
            ),
        )
        write_bundle(folder / "bundle", fit.graph, card)
        record_and_verify(folder / "bundle")
        card, _ = read_bundle(folder / "bundle")
        run.folder(folder / "bundle", "bunga")
        # the registered model answers as the server does (bunga.pyfunc): photos in, bands and names out
        model_uri = log_photo_model(
            folder / "bundle",
            _catalog(cfg.dataset_dir),
            classes,
            data.paths[int(np.flatnonzero(mask)[0])],
            requirements(["onnxruntime", "numpy", "pillow", "pandas", "pydantic", "pyyaml"]),
        )
        run_id = run.run_id
    version = register(tracker, cfg, run_id, model_uri, report, data.digest)
    log_seconds = time.perf_counter() - started - train_seconds
    say(
        f"registered {cfg.model_name} version {version} as {ALIAS_CHALLENGER}; time: embeddings {embed_seconds:.1f} s, "
        f"head, evaluation and export {head_seconds:.1f} s, logging {log_seconds:.1f} s"
    )
    timings = {"embed_seconds": embed_seconds, "head_seconds": head_seconds, "log_seconds": log_seconds}
    return Candidate("photos", run_id, version, report, card, {**timings, "computed": computed})
