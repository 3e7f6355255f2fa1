"""The merge's promises: lossless accounting, idempotence, order independence, immutability,
crash safety and clear messages for bad input."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bunga.cli import app
from bunga.config import Settings
from bunga.data.merge import MergeOptions, load_manifest, merge
from bunga.data.tabular import load_aliases
from bunga.files import sha256_file
from tests.helpers import kill_when

runner = CliRunner()


def _options(data: Path, out: Path) -> MergeOptions:
    s = Settings()
    return MergeOptions(data_dir=data, dataset_dir=out, aliases=load_aliases(s.tabular_classes))


def _hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_sample_data_merges_with_balanced_accounting(sample_data: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["merge"])
    assert result.exit_code == 0, result.output
    assert "151 read = 147 kept + 3 rejected + 1 duplicate" in result.output
    out = tmp_path / "Dataset Bunga"
    manifest = load_manifest(out)
    assert manifest is not None and manifest.balanced()
    assert (manifest.rows_read, manifest.rows_kept, manifest.rows_rejected, manifest.rows_duplicate) == (
        151,
        147,
        3,
        1,
    )
    with (out / "flowers_dataset.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 147
    assert {r["species"] for r in rows} == {"setosa", "versicolor", "virginica"}
    assert all(r["source"] and int(r["line"]) >= 2 for r in rows)
    by_id = {r["specimen_id"]: r for r in rows}
    assert by_id["ITR-060"]["sepal_length"] == "5.2"  # from the millimetre sheet
    assert by_id["ITR-106"]["petal_length"] == "6.6"  # from the decimal-comma sheet
    with (out / "rejected.csv").open() as f:
        rejected = list(csv.DictReader(f))
    assert {r["specimen_id"] for r in rejected} == {"ITR-077", "ITR-118", "ITR-131", "ITR-010"}
    assert all(r["reason"] and r["source"] and r["line"] for r in rejected)
    files = {f.path: f.sha256 for f in manifest.files}
    assert files["pengamat_a_2024.csv"] == sha256_file(sample_data / "pengamat_a_2024.csv")


def test_merge_is_idempotent(sample_data: Path, synthetic_photos: Path, tmp_path: Path) -> None:
    shutil.copytree(synthetic_photos, sample_data / "foto")
    out = tmp_path / "Dataset Bunga"
    first = merge(_options(sample_data, out))
    before = _hashes(out)
    second = merge(_options(sample_data, out))
    assert first.changed and not second.changed
    assert second.manifest.dataset_digest == first.manifest.dataset_digest
    assert _hashes(out) == before
    result = runner.invoke(app, ["merge"])
    assert "unchanged, nothing new" in result.output


def test_digest_does_not_depend_on_input_order(sample_data: Path, tmp_path: Path) -> None:
    reference = merge(_options(sample_data, tmp_path / "a")).manifest.dataset_digest
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    rng = random.Random(7)
    for index, sheet in enumerate(sorted(sample_data.glob("*.csv"), reverse=True)):
        lines = sheet.read_text().splitlines()
        body = lines[1:]
        rng.shuffle(body)
        (shuffled / f"{index}_{sheet.name}").write_text("\n".join([lines[0], *body]) + "\n")
    assert merge(_options(shuffled, tmp_path / "b")).manifest.dataset_digest == reference


def test_raw_data_is_never_modified(sample_data: Path, synthetic_photos: Path, tmp_path: Path) -> None:
    shutil.copytree(synthetic_photos, sample_data / "foto")
    (sample_data / "inbox").mkdir()
    shutil.copy(next(synthetic_photos.glob("*/*.jpg")), sample_data / "inbox" / "tanpa_label.jpg")
    before = _hashes(sample_data)
    merge(_options(sample_data, tmp_path / "out"))
    assert _hashes(sample_data) == before


def test_photos_are_copied_deduplicated_and_queued(synthetic_photos: Path, tmp_path: Path) -> None:
    data = tmp_path / "collected_data"
    shutil.copytree(synthetic_photos, data / "staff")
    one = next((data / "staff" / "sintetis_merah").glob("*.jpg"))
    (data / "copy" / "sintetis_merah").mkdir(parents=True)
    shutil.copy(one, data / "copy" / "sintetis_merah" / "again.jpg")  # same photo, same label
    (data / "inbox").mkdir()
    Image.new("RGB", (64, 64), "red").save(data / "inbox" / "visitor.png")
    (data / "inbox" / "notes.jpg").write_text("this is not a photo")
    Image.new("RGB", (64, 64), "blue").save(data / "inbox" / "scan.gif")
    truncated = one.read_bytes()
    (data / "staff" / "sintetis_merah" / "cut.jpg").write_bytes(truncated[: len(truncated) // 2])
    out = tmp_path / "Dataset Bunga"
    manifest = merge(_options(data, out)).manifest
    assert manifest.balanced()
    assert manifest.images_kept == 48 and manifest.images_duplicate == 1 and manifest.images_queued == 1
    assert manifest.images_rejected == 3
    kept = sorted(out.glob("sintetis_*/*.jpg"))
    assert len(kept) == 48
    assert sha256_file(kept[0]).startswith(kept[0].stem)
    reasons = (out / "rejected.csv").read_text()
    assert "notes.jpg" in reasons and "cut.jpg" in reasons and "scan.gif" in reasons
    queue = list(csv.DictReader((out / "review_queue.csv").open()))
    assert len(queue) == 1 and (out / queue[0]["path"]).is_file()


def test_review_round_trip_labels_queued_photos(synthetic_photos: Path, tmp_path: Path) -> None:
    data = tmp_path / "collected_data"
    (data / "inbox").mkdir(parents=True)
    for index, photo in enumerate(sorted(synthetic_photos.glob("sintetis_ungu/*.jpg"))[:3]):
        shutil.copy(photo, data / "inbox" / f"p{index}.jpg")
    assert runner.invoke(app, ["merge"]).exit_code == 0
    assert runner.invoke(app, ["review", "export", "todo.csv"]).exit_code == 0
    with open("todo.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(Path(r["photo"]).is_file() for r in rows)
    rows[0]["label"], rows[1]["label"] = "Sintetis Ungu", "sintetis_ungu"
    with open("todo.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = runner.invoke(app, ["review", "import", "todo.csv"])
    assert result.exit_code == 0 and "2 labels recorded" in result.output
    assert runner.invoke(app, ["merge"]).exit_code == 0
    manifest = load_manifest(tmp_path / "Dataset Bunga")
    assert manifest is not None
    assert manifest.classes_photos == {"sintetis_ungu": 2} and manifest.images_queued == 1
    assert len(list((tmp_path / "Dataset Bunga" / "_review").iterdir())) == 1


def test_existing_dataset_folder_is_accepted_as_it_is(synthetic_photos: Path, tmp_path: Path) -> None:
    shutil.copytree(synthetic_photos, tmp_path / "Dataset Bunga")
    before = _hashes(tmp_path / "Dataset Bunga")
    result = runner.invoke(app, ["merge"])
    assert result.exit_code == 0, result.output
    manifest = load_manifest(tmp_path / "Dataset Bunga")
    assert manifest is not None and manifest.images_kept == 48 and manifest.rows_read == 0
    after = _hashes(tmp_path / "Dataset Bunga")
    assert all(after[k] == v for k, v in before.items())  # nothing moved or rewritten
    lines = (tmp_path / "Dataset Bunga" / "images.csv").read_text().splitlines()
    assert len(lines) == 49


def test_feedback_records_label_photos(tmp_path: Path) -> None:
    from bunga.garden.records import store_measurement, store_photo

    inbox = tmp_path / "collected_data" / "feedback"
    photos = []
    for colour in ("yellow", "pink", "blue", "white", "red"):
        buffer = io.BytesIO()
        Image.new("RGB", (80, 80), colour).save(buffer, "JPEG")
        photos.append(buffer.getvalue())
    store_photo(inbox, photos[0], "jpg", "Kembang Sepatu", predicted="kana", model_version="3", voter="a")
    store_photo(inbox, photos[0], "jpg", "kembang_sepatu", voter="b")  # a second visitor agrees
    store_photo(inbox, photos[1], "jpg", None)  # "I don't know"
    store_photo(inbox, photos[2], "jpg", "kana")
    store_photo(inbox, photos[2], "jpg", "tabebuya")  # visitors disagree: a curator decides
    for _ in range(3):  # one visitor voting again and again is still one voter
        store_photo(inbox, photos[3], "jpg", "kana", voter="c")
    store_photo(inbox, photos[4], "jpg", "kana", voter="d")  # one vote alone is not enough
    store_measurement(inbox, [5.1, 3.5, 1.4, 0.2], "setosa", predicted="setosa")
    manifest = merge(_options(tmp_path / "collected_data", tmp_path / "out")).manifest
    assert manifest.classes_photos == {"kembang_sepatu": 1}
    assert manifest.images_queued == 4 and manifest.images_read == 5
    # a visitor's measurement waits for a curator: votes cannot vouch for four numbers
    assert (manifest.rows_read, manifest.rows_kept, manifest.rows_queued) == (1, 0, 1) and manifest.balanced()


def test_conflicting_records_are_rejected_naming_both_sources(tmp_path: Path) -> None:
    data = tmp_path / "collected_data"
    data.mkdir()
    header = "specimen_id,sepal_length,sepal_width,petal_length,petal_width,species\n"
    (data / "a.csv").write_text(header + "S1,5.1,3.5,1.4,0.2,setosa\nS2,6,3,4,1.3,versicolor\n")
    (data / "b.csv").write_text(header + "S1,5.9,3.5,1.4,0.2,setosa\nS3,6,3,4,1.3,versicolor\n")
    manifest = merge(_options(data, tmp_path / "out")).manifest
    assert (manifest.rows_kept, manifest.rows_rejected) == (2, 2)  # S2 and S3: equal values, both kept
    rejected = (tmp_path / "out" / "rejected.csv").read_text()
    assert "a.csv:2" in rejected and "b.csv:2" in rejected


def test_formula_injection_is_neutralised_in_outputs(tmp_path: Path) -> None:
    data = tmp_path / "collected_data"
    data.mkdir()
    (data / "x.csv").write_text(
        "specimen_id,sepal_length,sepal_width,petal_length,petal_width,species\n"
        '"=HYPERLINK(""http://evil"",""x"")",5.1,3.5,1.4,0.2,setosa\n'
        "@SUM(A1),5.1,3.5,1.4,0.2,=cmd\n"
    )
    merge(_options(data, tmp_path / "out"))
    for name in ("flowers_dataset.csv", "rejected.csv"):
        for row in csv.reader((tmp_path / "out" / name).open()):
            assert not any(cell.startswith(("=", "@", "+")) for cell in row), row


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "no measurement sheet"),
        ({"x.csv": b"colour,smell\nred,sweet\n"}, "no recognisable columns"),
        ({"x.csv": b"\x00\x01\x02binary"}, "binary file"),
        (
            {"x.csv": b"specimen_id,sepal_length,sepal_width,petal_length,petal_width,species\n"},
            "nothing could",
        ),
        ({"a.jpg": b"just text"}, "nothing could be merged"),
    ],
)
def test_nothing_to_merge_exits_non_zero_with_one_line(tmp_path: Path, files: dict[str, bytes], message: str) -> None:
    data = tmp_path / "collected_data"
    data.mkdir()
    for name, content in files.items():
        (data / name).write_bytes(content)
    result = runner.invoke(app, ["merge"])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_file_beside_good_data_still_merges(sample_data: Path) -> None:
    (sample_data / "rusak.csv").write_bytes(b"\x00\xff\x00garbage")
    (sample_data / "kosong.csv").write_text("no_spesimen,panjang_sepal\n")
    result = runner.invoke(app, ["merge"])
    assert result.exit_code == 0, result.output
    assert "rusak.csv: binary file" in result.output


def test_bad_impute_option_is_a_usage_error(sample_data: Path) -> None:
    result = runner.invoke(app, ["merge", "--impute", "mean"])
    assert result.exit_code == 2 and "--impute takes 'median'" in result.output


def test_impute_median_keeps_rows_with_missing_values(sample_data: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["merge", "--impute", "median"])
    assert result.exit_code == 0, result.output
    manifest = load_manifest(tmp_path / "Dataset Bunga")
    assert manifest is not None
    assert manifest.rows_kept == 149 and manifest.rows_with_missing == 2 and manifest.missing_policy == "median"


@pytest.mark.slow
def test_merge_killed_midway_converges_to_the_same_digest(tmp_path: Path, synthetic_photos: Path) -> None:
    data = tmp_path / "collected_data"
    data.mkdir()
    shutil.copytree(synthetic_photos, data / "foto")
    rng = random.Random(3)
    with (data / "big.csv").open("w") as f:
        f.write("specimen_id,sepal_length,sepal_width,petal_length,petal_width,species\n")
        for i in range(60_000):
            f.write(
                f"B{i},{rng.uniform(4, 8):.1f},{rng.uniform(2, 4):.1f},{rng.uniform(1, 7):.1f},"
                f"{rng.uniform(0.1, 2.5):.1f},{rng.choice(['setosa', 'versicolor', 'virginica'])}\n"
            )
    clean = merge(_options(data, tmp_path / "clean")).manifest.dataset_digest
    crashed = tmp_path / "crashed"
    env = {**os.environ, "BUNGA_DATASET_DIR": str(crashed), "BUNGA_DATA_DIR": str(data)}

    def writing(at_least: int) -> Callable[[], list[Path]]:
        def temps() -> list[Path]:
            found = []
            for tmp in crashed.glob(".flowers_dataset.csv.*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    if tmp.stat().st_size >= at_least:
                        found.append(tmp)
            return found

        return temps

    # Kill while the 60,000-row dataset file is being written: just begun, 1 MB in, 2 MB in.
    for at_least in (1, 1 << 20, 2 << 20):
        proc = subprocess.Popen(
            [sys.executable, "-m", "bunga", "merge"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        temps = writing(at_least)
        kill_when(proc, lambda temps=temps: bool(temps()))
        assert temps(), "the kill did not land while the dataset file was being written"
        assert not (crashed / "flowers_dataset.csv").exists()  # the half-written file never became visible
        assert not (crashed / "manifest.json").exists()
        for path in crashed.rglob("*.csv"):
            assert path.read_text().endswith("\n")  # every visible file is whole
    rerun = merge(_options(data, crashed))
    assert rerun.manifest.dataset_digest == clean
    assert not list(crashed.rglob(".*.tmp"))


def test_merge_decodes_only_photos_it_has_not_validated(
    synthetic_photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation results are kept by sha256 between merges: the next merge decodes only the new
    photo, a broken photo is checked (and rejected) every time, other limits or an unreadable cache
    file mean checking everything again, and the dataset never differs."""
    from bunga.data import images

    data = tmp_path / "collected_data"
    shutil.copytree(synthetic_photos, data / "staff")
    whole = sorted((data / "staff").rglob("*.jpg"))
    (data / "staff" / "sintetis_merah" / "cut.jpg").write_bytes(whole[0].read_bytes()[:500])
    decoded: list[str] = []
    real = images.load_photo

    def counting(path: Path, **kwargs: int) -> object:
        decoded.append(path.name)
        return real(path, **kwargs)

    monkeypatch.setattr(images, "load_photo", counting)
    options = dataclasses.replace(_options(data, tmp_path / "Dataset Bunga"), cache_dir=tmp_path / "cache")
    first = merge(options)
    assert len(decoded) == len(whole) + 1 and first.manifest.images_rejected == 1

    decoded.clear()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(data / "staff" / "sintetis_merah" / "baru.png")
    second = merge(options)
    assert sorted(decoded) == ["baru.png", "cut.jpg"]
    assert second.manifest.images_kept == first.manifest.images_kept + 1 and second.manifest.images_rejected == 1

    for changed in (dataclasses.replace(options, image_max_pixels=40_000_000), options):
        if changed is options:
            next((tmp_path / "cache").glob(f"photo-checks-{options.image_max_pixels}-*.json")).write_text("{not json")
        decoded.clear()
        again = merge(changed)
        assert len(decoded) == len(whole) + 2
        assert again.manifest.dataset_digest == second.manifest.dataset_digest
