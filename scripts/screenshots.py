"""Regenerate the documentation's screenshots from the real pages in Chromium: runs the browser tests
that photograph the visitor page in each band, without signal and with several photos, the review
page and the monitoring report (they write test-artifacts/), then copies those into docs/assets/.
Run: python scripts/screenshots.py (or `make screenshots`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHOTS = (
    "page-photo-result.png",  # sure
    "page-possible.png",
    "page-not-recognised.png",
    "page-not-a-flower.png",
    "page-observation.png",
    "page-offline.png",
    "page-measurements.png",
    "page-review.png",
    "monitor-report.png",
)
TESTS = (
    "tests/browser/test_page.py",
    "tests/browser/test_ondevice.py",
    "tests/browser/test_review.py",
    "tests/browser/test_monitor_report.py",
)


def main() -> int:
    artifacts = ROOT / "test-artifacts"
    for shot in SHOTS:
        (artifacts / shot).unlink(missing_ok=True)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", *TESTS], cwd=ROOT, check=False)
    missing = [s for s in SHOTS if not (artifacts / s).is_file()]
    if result.returncode != 0 or missing:
        print(f"screenshots not refreshed: the browser tests failed or left out {', '.join(missing) or 'nothing'}")
        return 1
    target = ROOT / "docs" / "assets"
    target.mkdir(parents=True, exist_ok=True)
    for shot in SHOTS:
        shutil.copyfile(artifacts / shot, target / shot)
    print(f"copied {len(SHOTS)} screenshots into docs/assets/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
