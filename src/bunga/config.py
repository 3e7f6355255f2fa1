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
    data_dir: Path = Field(
        Path("collected_data"), description="raw inputs (never modified) and the feedback inbox (feedback/)"
    )
    dataset_dir: Path = Field(Path("Dataset Bunga"), description="merged dataset")
    aliases_file: Path | None = Field(
        None,
        description="extra header and species spellings (YAML, same shape as src/bunga/resources/column_aliases.yaml)",
    )
    tabular_classes: list[str] = Field(
        ["setosa", "versicolor", "virginica"], description="the measurement species list"
    )
    max_length_cm: float = Field(50.0, gt=0, description="plausible maximum of any measurement")
    missing_policy: Literal["reject", "median"] = Field(
        "reject", description="or median (imputed in training from the training split only)"
    )
    image_min_side: int = Field(32, ge=1, description="photo acceptance in the merge")
    image_max_pixels: int = Field(50_000_000, ge=1, description="photo acceptance in the merge")

    # --- tracking and registry --------------------------------------------------------------
    mlflow_tracking_uri: str = Field(
        "sqlite:///mlflow.db",
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "BUNGA_MLFLOW_TRACKING_URI"),
        description="tracking and registry store, read from MLFLOW_TRACKING_URI (a remote server: http://host:5000)",
    )
    artifact_dir: Path = Field(Path("mlartifacts"), description="artifact folder of a local store")
    experiment_measurements: str = Field(
        "bunga-measurements", description="MLflow experiment of the measurement model's runs"
    )
    experiment_photos: str = Field("bunga-photos", description="MLflow experiment of the photo model's runs")
    model_measurements: str = Field(
        "bunga-measurements", description="registered model names (also the experiment names, BUNGA_EXPERIMENT_*)"
    )
    model_photos: str = Field(
        "bunga-photos", description="registered model names (also the experiment names, BUNGA_EXPERIMENT_*)"
    )

    # --- training ---------------------------------------------------------------------------
    seed: int = Field(42, description="the fixed split and cross-validation")
    test_size: float = Field(0.25, gt=0, lt=1, description="the fixed split and cross-validation")
    cv_folds: int = Field(5, ge=2, description="the fixed split and cross-validation")
    cache_dir: Path = Field(
        Path(".bunga-cache"),
        description="embedding cache, photo validation results, downloaded bundles, exported backbone",
    )
    image_batch_size: int = Field(16, ge=1, description="photos per backbone batch when computing embeddings")
    backbone: Literal["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"] = Field(
        "efficientnet-lite0",
        description=(
            "The photo model's pretrained backbone. Lite0 by the rule in benchmarks/garden_bands.py "
            "(Lite1 and Lite2 need the [backbones] extra; every bundle records its own, so serving "
            "needs no setting)."
        ),
    )

    # --- promotion gate ---------------------------------------------------------------------
    gate_min_f1_measurements: float = Field(
        0.90, ge=0, le=1, description="promotion gate: the measurement model's macro-F1 floor on the test split"
    )
    gate_min_f1_photos: float = Field(
        0.85,
        ge=0,
        le=1,
        description="promotion gate: the photo model's macro-F1 floor on the test split (named species only)",
    )
    gate_tolerance: float = Field(0.02, ge=0, le=1, description="promotion gate")
    abstain_max_refused: float = Field(
        0.05, ge=0, le=1, description="share of known-species photos the 'not recognised' threshold may refuse"
    )
    not_flower_max_refused: float = Field(
        0.02, ge=0, le=1, description="share of known flower photos the 'not a flower' check may refuse"
    )
    sure_precision: float = Field(
        0.97,
        gt=0,
        le=1,
        description=(
            "share of 'sure' photo answers that must be right on the training split's hold-outs (known "
            "photos mixed with held-out classes): below it a recognised photo is answered 'possible'"
        ),
    )

    # --- serving ----------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="where bunga serve binds")
    port: int = Field(8000, ge=1, le=65535, description="where bunga serve binds")
    model_dir: Path | None = Field(None, description="serve an exported folder instead of the registry")
    catalog_file: Path | None = Field(None, description="species information (YAML)")
    serve_kinds: list[DataKind] = Field(["measurements", "photos"], description="which kinds to serve")
    admin_token: str | None = Field(None, description="enables /admin/* (at least 16 characters)")
    curators: dict[str, str] = Field(
        {},
        description=(
            "Curators of the review page: name -> sha256 (hex) of their token (the token itself is "
            "never stored): BUNGA_CURATORS='{'ani': '<sha256sum of ani's token>'}'; the admin token is "
            "a curator too, named 'admin'."
        ),
    )
    review_url_key: str | None = Field(
        None,
        description=(
            "Signs the expiring photo URLs of a Label Studio export (`bunga review export --kind label-"
            "studio`), so Label Studio fetches photos without a curator token; unset: no signed URLs "
            "(at least 16 characters)"
        ),
    )
    cors_origins: list[str] = Field([], description="CORS allow-list")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="largest JSON request body (413 beyond it)")
    max_upload_bytes: int = Field(15_000_000, ge=1024, description="largest photo upload, per file (413 beyond it)")
    max_files: int = Field(
        8, ge=1, description="photos per /predict/image request (/predict/observation takes at most 5)"
    )
    max_batch: int = Field(256, ge=1, description="measurement records per /predict request (413 beyond it)")
    serve_max_pixels: int = Field(
        40_000_000,
        ge=1,
        description="largest photo, in pixels, the service decodes (413 beyond it: decompression bombs)",
    )
    request_timeout_s: float = Field(
        20.0, gt=0, description="seconds a request may take before 504 (file downloads have a rate floor instead)"
    )
    max_concurrency: int = Field(64, ge=1, description="requests served at once per worker; past it 503 + Retry-After")
    photo_batch_max: int = Field(
        1,
        ge=1,
        le=256,
        description=(
            "Adaptive micro-batching of photos, per worker: photos queued while the model is busy share"
            " its next call (at most photo_batch_max photos); photo_batch_wait_ms > 0 also holds a "
            "photo that long for photo requests still being read. Off by default (1): on 2 CPU cores "
            "the backbone is about as fast per photo at batch 1 as at batch 32, and batching measured "
            "no gain (docs/performance.md)."
        ),
    )
    photo_batch_wait_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description=(
            "adaptive micro-batching of photos per worker: with a maximum above 1, photos that queue "
            "while the model is busy share its next call; a wait above 0 also holds a photo that long "
            "for photo requests still being read"
        ),
    )
    reload_interval_s: float = Field(
        10.0,
        ge=0,
        description=(
            "How often each worker checks the registry aliases (or the exported folder) for a new "
            "champion and swaps it in: a model promoted by `bunga pipeline` reaches visitors within "
            "this many seconds, without a restart. 0 turns polling off (POST /admin/reload then swaps)."
        ),
    )
    catalog_refresh_s: float = Field(
        2.0,
        gt=0,
        description="how often each worker re-reads curators' catalogue edits from the inbox (new species, edits)",
    )
    # --- abuse limits on the public endpoints ----------------------------------------------------
    inbox_max_bytes: int = Field(2_000_000_000, ge=0, description="feedback stored in all, photos and records")
    inbox_max_files: int = Field(
        50_000,
        ge=0,
        description=(
            "Counts files, not uploads: a photo upload stores 2 (the photo and its record; 1 when the "
            "photo is already there), a measurement 1. Held across the workers of one machine "
            "(bunga.garden.quota), or by the database's transaction with BUNGA_INBOX_DB."
        ),
    )
    inbox_db: str | None = Field(
        None,
        validation_alias=AliasChoices("BUNGA_INBOX_DB", "DATABASE_URL", "inbox_db"),
        description=(
            "The inbox in PostgreSQL instead of the folder (replicas that share no disk; "
            "bunga.garden.inbox). Heroku's DATABASE_URL feeds it too: the prediction log and the inbox "
            "then share the add-on's database."
        ),
    )
    inbox_db_pool: int = Field(
        4,
        ge=1,
        le=100,
        description=(
            "The PostgreSQL inbox: connections per worker process, and how long a request waits on the "
            "database (a lock held elsewhere, a busy pool) before it is answered 503 + Retry-After; "
            "statements run at most 4x that, and a session idle in a transaction (a frozen holder) is "
            "ended after 4x that."
        ),
    )
    inbox_db_wait_s: float = Field(
        3.0,
        gt=0,
        le=60,
        description=(
            "PostgreSQL inbox: connections per worker; how long a request waits on a lock or a busy "
            "pool before 503 + Retry-After (statements run at most 4x that; a session idle in a "
            "transaction is ended after 4x that)"
        ),
    )
    feedback_rate_per_min: float = Field(6.0, ge=0, description="per client; 0 turns the limit off")
    feedback_burst: int = Field(
        10, ge=1, description="feedback requests a client may send at once before the per-minute rate applies"
    )
    predict_rate_per_min: float = Field(0.0, ge=0, description="/predict and /predict/image; 0: off (school groups)")
    predict_burst: int = Field(
        120, ge=1, description="prediction requests a client may send at once when the prediction rate limit is on"
    )
    phone_rate_per_min: float = Field(
        60.0,
        ge=0,
        description=(
            "Answers computed on phones (POST /predictions/phone), counted per record, not per batch: a"
            " phone back from a day without signal sends at most a burst's worth at once. 0 turns the "
            "limit off"
        ),
    )
    phone_burst: int = Field(
        256, ge=1, description="phone answer records a client may send at once before the per-minute rate applies"
    )
    phone_clock_skew_s: float = Field(300.0, ge=0, description="how far in the future a phone's clock may be")
    download_max_concurrency: int = Field(
        16,
        ge=1,
        description=(
            "File downloads (the phone's graphs and rules, the on-phone runtime) stream from disk: "
            "their own slots per worker (never /predict's), a minimum rate instead of the request time "
            "limit, and a budget in bytes per client address (a 304 Not Modified costs nothing)."
        ),
    )
    download_min_rate: float = Field(
        20_000.0, gt=0, description="bytes/s: a download slower than this over download_rate_window_s is cut off"
    )
    download_rate_window_s: float = Field(
        15.0, gt=0, description="seconds over which a download's rate is judged against download_min_rate"
    )
    download_budget_bytes: int = Field(500_000_000, ge=0, description="what one address may take at once; 0: off")
    download_refill_bytes_per_hour: int = Field(2_000_000_000, ge=1, description="and how fast that budget refills")
    signin_failures_per_min: float = Field(
        5.0,
        ge=0,
        description=(
            "Wrong admin or curator tokens per client: past the burst, 429 + Retry-After before any "
            "comparison. 0 turns the limit off"
        ),
    )
    signin_failures_burst: int = Field(
        10, ge=1, description="wrong admin or curator tokens per client before 429 + Retry-After"
    )
    trusted_proxies: list[str] = Field(["127.0.0.1"], description="peers whose X-Forwarded-For names the client")
    feedback_min_votes: int = Field(2, ge=1, description="agreeing visitor votes before a photo joins the dataset")
    # --- monitoring ------------------------------------------------------------------------------
    monitor_log: bool = Field(True, description="log every prediction (off the request path) for `bunga monitor`")
    monitor_db: str = Field(
        "bunga-monitor.db",
        validation_alias=AliasChoices("BUNGA_MONITOR_DB", "DATABASE_URL", "monitor_db"),
        description="the prediction log: a SQLite file, or postgresql://user:password@host:port/database "
        "(DATABASE_URL feeds it when BUNGA_MONITOR_DB is unset)",
    )
    monitor_queue: int = Field(10_000, ge=1, description="records waiting to be written; beyond it they are dropped")
    monitor_retention_days: float = Field(
        90.0, gt=0, description="days the prediction log keeps rows (older ones are pruned)"
    )
    monitor_psi_alarm: float = Field(0.25, gt=0, description="population stability index that raises an alarm")
    monitor_p_alarm: float = Field(0.01, gt=0, lt=1, description="p-value under which a test raises an alarm")
    monitor_min_volume: int = Field(30, ge=1, description="predictions a window needs before drift can alarm")

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
