"""The multi-machine layout on 127.0.0.1 without Docker: a throw-away PostgreSQL cluster, a central
`mlflow server` on it with proxied artifacts, a trainer in its own process, and two stateless API
replicas that resolve `champion` from the server over its REST API."""

from __future__ import annotations

import contextlib
import csv
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from bunga.schemas import FEATURES
from tests.conftest import ROOT, LiveServer, copy_sheets

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
TOKEN = "multi-machine-token-123456"
IRIS = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is missing: .ci/run installs Debian's postgresql")
        pytest.skip("PostgreSQL server binaries are not installed")
    return Path(found[-1]).parent


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class PgCluster:
    """A throw-away PostgreSQL cluster in a temp dir that a test can stop and start again."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="bunga-pg-"))  # pytest's own temp tree is private to root
        os.chmod(self.root, 0o755)
        self.data = self.root / "pg"
        self.data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
        self.port = _port()
        subprocess.run(
            _as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"]),
            check=True,
            capture_output=True,
        )
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/mlflow"

    def _ctl(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        command = _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), *args])
        return subprocess.run(command, capture_output=True, check=False)

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.data}"
        self._ctl("-o", options, "-w", "-l", str(self.data / "log"), "start").check_returncode()

    def stop(self) -> None:
        self._ctl("-m", "immediate", "stop")


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A running cluster with an empty ``mlflow`` database."""
    cluster = PgCluster()
    try:
        cluster.start()
        subprocess.run(
            [str(cluster.bin / "createdb"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "mlflow"],
            check=True,
            capture_output=True,
        )
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture
def postgres(pg_cluster: PgCluster) -> str:
    """The SQLAlchemy URL of a fresh PostgreSQL database."""
    return pg_cluster.url


class MlflowServer:
    """`mlflow server` on PostgreSQL with proxied artifacts, on a fixed port so it can come back."""

    def __init__(self, backend: str, folder: Path) -> None:
        self.backend, self.folder, self.port = backend, folder, _port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.folder / "mlflow.log").open("a")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                self.backend,
                "--serve-artifacts",
                "--artifacts-destination",
                str(self.folder / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.folder / "mlflow.log").read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
        pytest.fail("mlflow server did not start: " + (self.folder / "mlflow.log").read_text()[-3000:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@pytest.fixture
def registry(postgres: str, tmp_path: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(postgres, tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def mlflow_server(registry: MlflowServer) -> str:
    return registry.url


def _bunga(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "bunga", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def test_trainers_and_replicas_share_one_registry(mlflow_server: str, tmp_path: Path) -> None:
    trainer = tmp_path / "trainer"
    copy_sheets(trainer / "collected_data")
    env = {"MLFLOW_TRACKING_URI": mlflow_server}
    _bunga(["pipeline", "--kind", "measurements"], trainer, env)

    replicas = [
        LiveServer(
            {
                **env,
                "BUNGA_ADMIN_TOKEN": TOKEN,
                "BUNGA_SERVE_KINDS": '["measurements"]',
                "BUNGA_CACHE_DIR": str(tmp_path / f"replica{i}"),
                # told replicas do not poll: only POST /admin/reload swaps them (with the default
                # 10 s poll they raced the test when training and promoting were slow)
                "BUNGA_RELOAD_INTERVAL_S": "0",
            },
            [],
            tmp_path,
        )
        for i in range(2)
    ]
    # a third replica, with two workers, is never told: it polls the registry and converges by itself
    polling = LiveServer(
        {
            **env,
            "BUNGA_SERVE_KINDS": '["measurements"]',
            "BUNGA_CACHE_DIR": str(tmp_path / "replica-polling"),
            "BUNGA_RELOAD_INTERVAL_S": "1",
        },
        ["--workers", "2"],
        tmp_path,
    )
    replicas.append(polling)
    try:
        records = [
            {"sepal_length": float(a), "sepal_width": float(b), "petal_length": float(c), "petal_width": float(d)}
            for a, b, c, d in np.random.default_rng(0).uniform([4, 2, 1, 0.1], [8, 4.5, 7, 2.5], (40, 4))
        ]
        for replica in replicas:
            models = httpx.get(f"{replica.url}/model").json()["models"]
            assert models["measurements"]["version"] == "1"
        # a second trainer elsewhere trains and promotes a new version on the same server
        second = tmp_path / "trainer2"
        copy_sheets(second / "collected_data")
        _bunga(["merge"], second, env)
        _bunga(["train", "--kind", "measurements"], second, env)
        promoted = _bunga(["promote", "--kind", "measurements"], second, env)
        assert "champion -> v2" in promoted.stdout
        deadline = time.monotonic() + 30
        while True:  # both workers of the polling replica: 20 answers in a row from version 2
            versions = {
                p["model_version"]
                for _ in range(20)
                for p in httpx.post(f"{polling.url}/predict", json=records[:1], timeout=30).json()["predictions"]
            }
            if versions == {"2"}:
                break
            assert time.monotonic() < deadline, f"the polling replica did not converge: {versions}"
            time.sleep(0.5)
        answers = []
        for replica in replicas[:2]:
            reload = httpx.post(
                f"{replica.url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
            ).json()["results"]
            assert reload == [
                {"kind": "measurements", "status": "swapped", "old_version": "1", "new_version": "2", "error": None}
            ]
            response = httpx.post(f"{replica.url}/predict", json=records, timeout=30).json()["predictions"]
            assert {p["model_version"] for p in response} == {"2"}
            answers.append([p["probabilities"] for p in response])
        assert answers[0] == answers[1]
    finally:
        for replica in replicas:
            replica.stop()


def test_replicas_ride_out_a_registry_and_database_outage(
    registry: MlflowServer, pg_cluster: PgCluster, tmp_path: Path
) -> None:
    """The tracking server and its PostgreSQL go away under steady prediction load: replicas keep
    serving the last good champion (and say it is stale), one restarted meanwhile starts from its
    local copy, and once both come back a newly promoted version reaches both by polling alone.
    Not one prediction request fails."""
    trainer = tmp_path / "trainer"
    copy_sheets(trainer / "collected_data")
    env = {"MLFLOW_TRACKING_URI": registry.url}
    _bunga(["pipeline", "--kind", "measurements"], trainer, env)
    replica_env = {
        **env,
        "BUNGA_SERVE_KINDS": '["measurements"]',
        "BUNGA_CACHE_DIR": str(tmp_path / "replica-cache"),
        "BUNGA_RELOAD_INTERVAL_S": "1",
    }
    first = LiveServer(replica_env, [], tmp_path)
    replicas = [first]
    failures: list[str] = []
    sent = [0]
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                for replica in list(replicas):
                    try:
                        answer = http.post(f"{replica.url}/predict", json=IRIS)
                        if answer.status_code != 200:
                            failures.append(f"{answer.status_code} {answer.text[:200]}")
                    except Exception as err:  # every exception is a failed request
                        failures.append(repr(err))
                    sent[0] += 1

    thread = threading.Thread(target=load)
    thread.start()
    try:
        time.sleep(1)
        registry.stop()
        pg_cluster.stop()
        deadline = time.monotonic() + 30
        while not httpx.get(f"{first.url}/ready").json()["stale"]:
            assert time.monotonic() < deadline, "the replica never noticed the registry was gone"
            time.sleep(0.5)
        ready = httpx.get(f"{first.url}/ready").json()
        assert ready["status"] == "ready" and ready["models"] == {"measurements": "1"}
        assert ready["stale"]["measurements"]
        info = httpx.get(f"{first.url}/model").json()["models"]["measurements"]
        assert info["stale"] is True and info["stale_since"] and info["version"] == "1"
        # a replica (re)started during the outage serves the last good bundle from its local disk
        second = LiveServer(replica_env, [], tmp_path)
        replicas.append(second)
        assert httpx.get(f"{second.url}/ready").json()["stale"]["measurements"]
        time.sleep(3)  # polls fail, with backoff, while requests keep being answered
        pg_cluster.start()
        registry.start()
        _bunga(["merge"], trainer, env)
        _bunga(["train", "--kind", "measurements"], trainer, env)
        assert "champion -> v2" in _bunga(["promote", "--kind", "measurements"], trainer, env).stdout
        deadline = time.monotonic() + 30  # within the capped backoff (8 poll intervals) and then some
        for replica in replicas:
            while True:
                ready = httpx.get(f"{replica.url}/ready").json()
                if ready["models"] == {"measurements": "2"} and not ready["stale"]:
                    break
                assert time.monotonic() < deadline, f"{replica.url} did not converge: {ready}"
                time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=30)
        for replica in replicas:
            replica.stop()
    assert not thread.is_alive()
    assert sent[0] > 100 and failures == [], (sent[0], failures[:5])


def test_prediction_log_in_postgresql_across_workers_and_an_outage(
    pg_cluster: PgCluster, model_dir: Path, trained_workspace: Path, tmp_path: Path
) -> None:
    """Two workers log to one PostgreSQL database, created at start-up (a phone's batch sent again is
    logged once there too); while PostgreSQL is down
    every prediction is still answered and the lost records are counted; once it is back the log
    resumes, and `bunga monitor` reads it."""
    import psycopg2
    from typer.testing import CliRunner

    from bunga.cli import app

    url = f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/monitor"  # no such database yet

    def logged() -> int:
        with psycopg2.connect(url) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM predictions")
            return int(cursor.fetchone()[0])

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 15
        while logged() != count:
            assert time.monotonic() < deadline, logged()
            time.sleep(0.2)

    with (trained_workspace / "Dataset Bunga" / "flowers_dataset.csv").open() as handle:
        dataset = [{f: float(r[f]) for f in FEATURES} for r in csv.DictReader(handle)]
    rng = np.random.default_rng(2)
    visitors = iter([dataset[i] for i in rng.integers(0, len(dataset), 170)])  # the training flowers again
    env = {"BUNGA_DATA_DIR": str(tmp_path / "d"), "BUNGA_MONITOR_DB": url}
    server = LiveServer(env, ["--model-dir", str(model_dir), "--workers", "2"], tmp_path)
    try:
        for _ in range(100):
            assert httpx.post(f"{server.url}/predict", json=next(visitors)).status_code == 200
        wait_for(100)
        answer = {"photo_sha256": "c" * 64, "model_version": "1", "band": "not_recognised", "top_probability": 0.3}
        batch = {"records": [{**answer, "at": time.time() - 5}]}
        for _ in range(3):  # a phone's batch sent again, to either worker: one answer in the log
            assert httpx.post(f"{server.url}/predictions/phone", json=batch).status_code == 202
        wait_for(101)
        time.sleep(1)  # the other worker's writer has flushed too
        assert logged() == 101
        with psycopg2.connect(url) as conn, conn.cursor() as cursor:
            cursor.execute("DELETE FROM predictions WHERE arm = 'phone'")
    finally:
        server.stop()
    single = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)
    try:
        pg_cluster.stop()
        for _ in range(50):
            assert httpx.post(f"{single.url}/predict", json=next(visitors)).status_code == 200
        deadline = time.monotonic() + 15
        while "bunga_prediction_log_dropped_total 50.0" not in httpx.get(f"{single.url}/metrics").text:
            assert time.monotonic() < deadline, "the lost records were not counted"
            time.sleep(0.2)
        pg_cluster.start()
        for _ in range(20):
            assert httpx.post(f"{single.url}/predict", json=next(visitors)).status_code == 200
        wait_for(120)
    finally:
        single.stop()
    result = CliRunner().invoke(
        app,
        ["monitor", "--no-mlflow", "--model-dir", str(model_dir), "--out", str(tmp_path / "r")],
        env={"BUNGA_MONITOR_DB": url},
    )
    assert result.exit_code == 0, result.output  # the same record again and again: no drift, no alarm
    report = json.loads((tmp_path / "r" / "monitor-report.json").read_text())
    assert [v["volume"] for v in report["versions"]] == [120]


def test_heroku_web_process_starts_with_port_and_database_url(
    pg_cluster: PgCluster, model_dir: Path, tmp_path: Path
) -> None:
    """The web process Heroku runs (the runtime image's CMD, heroku.yml builds that stage), started
    the way the platform starts it: PORT set, DATABASE_URL from the Postgres add-on (here the test's
    PostgreSQL, in Heroku's postgres:// form). It serves, and its prediction log lands in that
    database. (It binds 127.0.0.1 here instead of 0.0.0.0: tests touch only the loopback.)"""
    import psycopg2

    dockerfile = (ROOT / "Dockerfile").read_text()
    command = json.loads(re.findall(r"^CMD (\[.*\])$", dockerfile, flags=re.M)[-1])
    assert command[:2] == ["sh", "-c"] and "${PORT:-8000}" in command[2]
    port = _port()
    database = f"postgres://postgres@127.0.0.1:{pg_cluster.port}/herokulog"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PORT": str(port),
        "DATABASE_URL": database,
        "BUNGA_MODEL_DIR": str(model_dir),
        "BUNGA_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("BUNGA_MONITOR_DB", None)
    proc = subprocess.Popen(
        ["sh", "-c", command[2].replace("0.0.0.0", "127.0.0.1")],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the web process did not start"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        assert httpx.post(f"{url}/predict", json=IRIS).status_code == 200
        deadline = time.monotonic() + 15
        while True:  # the log writer flushes within a second; the database was created at start-up
            with contextlib.suppress(psycopg2.Error), psycopg2.connect(database) as conn, conn.cursor() as cursor:
                cursor.execute("SELECT COUNT(*) FROM predictions")
                if cursor.fetchone()[0] == 1:
                    break
            assert time.monotonic() < deadline, "the prediction never reached DATABASE_URL"
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _pg_inbox_servers(
    pg_cluster: PgCluster, model_dir: Path, tmp_path: Path, **env: str
) -> tuple[str, list[LiveServer]]:
    """Two API processes with no shared disk (each its own data folder) on one PostgreSQL inbox."""
    url = f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/mlflow"
    servers = []
    for name in ("a", "b"):
        settings = {"BUNGA_DATA_DIR": str(tmp_path / name), "BUNGA_INBOX_DB": url, **env}
        servers.append(LiveServer(settings, ["--model-dir", str(model_dir)], tmp_path))
    return url, servers


async def _upload(url: str, photos: list[tuple[str, bytes]], clients: int) -> list[tuple[int, str]]:
    """Each photo from its own visitor (X-Forwarded-For behind the trusted 127.0.0.1); (status, id)."""
    import asyncio

    gate = asyncio.Semaphore(clients)
    async with httpx.AsyncClient(timeout=60) as http:

        async def one(i: int, target: str, data: bytes) -> tuple[int, str]:
            async with gate:
                try:
                    answer = await http.post(
                        f"{target}/feedback",
                        files={"file": ("x.jpg", data, "image/jpeg")},
                        data={"label": "sintetis_merah"},
                        headers={"X-Forwarded-For": f"10.7.{i // 250}.{i % 250}"},
                    )
                except httpx.HTTPError:
                    return 0, ""  # the process was killed under this request
                return answer.status_code, answer.json().get("id", "") if answer.status_code == 201 else ""

        return list(await asyncio.gather(*(one(i, t, d) for i, (t, d) in enumerate(photos))))


def _stored(url: str) -> set[str]:
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        try:
            cursor.execute("SELECT sha256 FROM inbox_files WHERE kind = 'photo'")
        except psycopg2.errors.UndefinedTable:
            return set()  # made by the first upload
        return {sha for (sha,) in cursor.fetchall()}


def test_replicas_without_a_shared_disk_keep_feedback_in_postgresql(
    pg_cluster: PgCluster, model_dir: Path, tmp_path: Path
) -> None:
    """200 concurrent uploads from distinct visitors to two processes on one PostgreSQL inbox, one
    process killed with SIGKILL midway: every upload answered 201 is stored, and the next merge (on a
    third machine's folder) accounts for each stored photo exactly once."""
    import asyncio
    import signal

    from typer.testing import CliRunner

    from bunga.cli import app
    from tests.helpers import photo_bytes

    url, servers = _pg_inbox_servers(pg_cluster, model_dir, tmp_path)
    photos = [(servers[i % 2].url, photo_bytes("sintetis_merah", 1000 + i)) for i in range(200)]
    try:

        def kill_midway() -> None:
            deadline = time.monotonic() + 60
            while len(_stored(url)) < 60 and time.monotonic() < deadline:
                time.sleep(0.02)
            servers[0].proc.send_signal(signal.SIGKILL)

        killer = threading.Thread(target=kill_midway)
        killer.start()
        answers = asyncio.run(_upload(url, photos, clients=20))
        killer.join()
    finally:
        for server in servers:
            server.stop()
    accepted = {sha for status, sha in answers if status == 201}
    assert 60 <= len(accepted) < 200, len(accepted)  # killed midway; the other process kept taking them
    assert {status for status, _ in answers} <= {0, 201, 500, 503}
    stored = _stored(url)
    assert accepted <= stored  # nothing answered 201 is lost
    assert not (tmp_path / "a" / "feedback" / "photos").exists()  # nothing went to a local disk
    env = {"BUNGA_INBOX_DB": url, "BUNGA_DATA_DIR": str(tmp_path / "trainer")}
    merged = CliRunner().invoke(app, ["merge"], env=env)
    assert merged.exit_code == 0, merged.output
    n = len(stored)  # one visitor each: every photo waits for a second vote or a curator
    assert f"photos: {n} read = 0 kept + 0 rejected + 0 duplicate + {n} queued" in merged.output
    digest = json.loads((tmp_path / "Dataset Bunga" / "manifest.json").read_text())["dataset_digest"]
    again = CliRunner().invoke(app, ["merge"], env=env)
    assert "unchanged" in again.output and digest in again.output  # exactly once: a re-export adds nothing


def test_the_quota_holds_across_replicas_on_postgresql(pg_cluster: PgCluster, model_dir: Path, tmp_path: Path) -> None:
    """40 concurrent uploads to two processes on one database inbox against 20 files: at most 10."""
    import asyncio

    from tests.helpers import photo_bytes

    url, servers = _pg_inbox_servers(pg_cluster, model_dir, tmp_path, BUNGA_INBOX_MAX_FILES="20")
    try:
        answers = asyncio.run(
            _upload(url, [(servers[i % 2].url, photo_bytes("sintetis_merah", 2000 + i)) for i in range(40)], 40)
        )
        inbox = httpx.get(f"{servers[1].url}/model").json()["inbox"]
    finally:
        for server in servers:
            server.stop()
    statuses = [status for status, _ in answers]
    assert set(statuses) <= {201, 507} and 1 <= statuses.count(201) <= 10, statuses
    assert len(_stored(url)) == statuses.count(201) and inbox["files"] == 2 * statuses.count(201)


def test_a_feedback_database_that_is_down_costs_feedback_not_predictions(model_dir: Path, tmp_path: Path) -> None:
    """The inbox's PostgreSQL does not answer: the service starts and predicts, /feedback says 503."""
    env = {"BUNGA_DATA_DIR": str(tmp_path / "d"), "BUNGA_INBOX_DB": f"postgresql://postgres@127.0.0.1:{_port()}/x"}
    server = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)
    try:
        assert httpx.post(f"{server.url}/predict", json=IRIS).status_code == 200
        answer = httpx.post(f"{server.url}/feedback", json={**IRIS, "label": "setosa"}, timeout=30)
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "30"
        assert "feedback database" in answer.json()["detail"]
        assert httpx.get(f"{server.url}/model").json()["inbox"] is None
        assert 'reason="inbox_unavailable"' in httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()


def test_review_decisions_in_the_database_inbox_reach_the_merge(
    pg_cluster: PgCluster, model_dir: Path, tmp_path: Path
) -> None:
    """On replicas without a shared disk, a curator's decisions go to the same database as the
    photos; the trainer's merge exports and applies them."""
    import hashlib

    from typer.testing import CliRunner

    from bunga.cli import app
    from tests.helpers import photo_bytes

    token = "a-curators-token-0000000002"
    curators = json.dumps({"ani": hashlib.sha256(token.encode()).hexdigest()})
    url, servers = _pg_inbox_servers(pg_cluster, model_dir, tmp_path, BUNGA_CURATORS=curators)
    ani = {"Authorization": f"Bearer {token}"}
    try:
        shas = []
        for i in range(3):  # sent to replica a, decided on replica b
            sent = httpx.post(
                f"{servers[0].url}/feedback",
                files={"file": ("x.jpg", photo_bytes("sintetis_kuning", 500 + i), "image/jpeg")},
                data={"label": "sintetis_kuning"},
                headers={"X-Forwarded-For": f"10.8.0.{i}"},
            )
            shas.append(sent.json()["id"])
        queue = httpx.get(f"{servers[1].url}/review/queue", headers=ani).json()
        assert sorted(e["sha256"] for e in queue) == sorted(shas)
        assert httpx.get(f"{servers[1].url}/review/photos/{shas[0]}", headers=ani).status_code == 200
        for sha, body in zip(
            shas,
            [
                {"decision": "label", "label": "sintetis_kuning"},
                {"decision": "label", "label": "sintetis_ungu"},
                {"decision": "reject"},
            ],
            strict=True,
        ):
            assert (
                httpx.post(f"{servers[1].url}/review/decisions", json={"sha256": sha, **body}, headers=ani).status_code
                == 201
            )
        assert httpx.get(f"{servers[0].url}/review/queue", headers=ani).json() == []
    finally:
        for server in servers:
            server.stop()
    merged = CliRunner().invoke(
        app, ["merge"], env={"BUNGA_INBOX_DB": url, "BUNGA_DATA_DIR": str(tmp_path / "trainer")}
    )
    assert merged.exit_code == 0 and "photos: 3 read = 2 kept + 1 rejected" in merged.output, merged.output
    assert {p.parent.name for p in (tmp_path / "Dataset Bunga").glob("sintetis_*/*")} == {
        "sintetis_kuning",
        "sintetis_ungu",
    }


def test_a_species_added_on_one_replica_is_served_by_the_other_and_reaches_the_merge(
    pg_cluster: PgCluster, model_dir: Path, tmp_path: Path
) -> None:
    """Replicas without a shared disk: a catalogue edit goes to the database inbox, the other replica
    shows it without a restart and takes visitors' votes for it, and the trainer's merge writes it."""
    import hashlib
    import time

    from typer.testing import CliRunner

    from bunga.cli import app
    from tests.helpers import photo_bytes

    token = "a-curators-token-0000000004"
    curators = json.dumps({"ani": hashlib.sha256(token.encode()).hexdigest()})
    url, servers = _pg_inbox_servers(
        pg_cluster, model_dir, tmp_path, BUNGA_CURATORS=curators, BUNGA_CATALOG_REFRESH_S="0.2"
    )
    form = {"id": "melati", "nama": "Melati", "latin": "Jasminum sambac", "famili": "Oleaceae"}
    try:
        added = httpx.post(f"{servers[0].url}/review/species", data=form, headers={"Authorization": f"Bearer {token}"})
        assert added.status_code == 201, added.text
        deadline = time.monotonic() + 15
        while not any(s["id"] == "melati" for s in httpx.get(f"{servers[1].url}/species").json()):
            assert time.monotonic() < deadline, "replica b never showed the new species"
            time.sleep(0.1)
        photo = photo_bytes("sintetis_putih", 950)
        for voter in ("10.11.0.1", "10.11.0.2"):
            sent = httpx.post(
                f"{servers[1].url}/feedback",
                files={"file": ("x.jpg", photo, "image/jpeg")},
                data={"label": "melati"},
                headers={"X-Forwarded-For": voter},
            )
            assert sent.status_code == 201, sent.text
    finally:
        for server in servers:
            server.stop()
    merged = CliRunner().invoke(
        app, ["merge"], env={"BUNGA_INBOX_DB": url, "BUNGA_DATA_DIR": str(tmp_path / "trainer")}
    )
    assert merged.exit_code == 0 and "species added by curators: melati" in merged.output, merged.output
    assert len(list((tmp_path / "Dataset Bunga" / "melati").glob("*"))) == 1  # the voted photo, labelled
    assert "Jasminum sambac" in (tmp_path / "Dataset Bunga" / "species.yaml").read_text()


def test_a_retry_on_another_replica_is_recorded_once(pg_cluster: PgCluster, model_dir: Path, tmp_path: Path) -> None:
    """Queued feedback sent to replica a, its answer lost, sent again to replica b with the same
    Idempotency-Key: one record row in the database and the quota charged once."""
    import psycopg2

    from tests.helpers import photo_bytes

    url, servers = _pg_inbox_servers(pg_cluster, model_dir, tmp_path)
    photo = photo_bytes("sintetis_kuning", 990)
    try:
        for server in (*servers, servers[0]):
            sent = httpx.post(
                f"{server.url}/feedback",
                files={"file": ("x.jpg", photo, "image/jpeg")},
                data={"label": "sintetis_kuning"},
                headers={"Idempotency-Key": "phone-queue-item-0001", "X-Forwarded-For": "10.12.0.1"},
            )
            assert sent.status_code == 201, sent.text
        assert httpx.get(f"{servers[1].url}/model").json()["inbox"]["files"] == 2
    finally:
        for server in servers:
            server.stop()
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT kind, COUNT(*) FROM inbox_files WHERE sha256 IS NOT NULL GROUP BY kind ORDER BY kind")
        assert cursor.fetchall() == [("photo", 1), ("record", 1)]


def test_a_frozen_lock_holder_gets_fast_503s_and_is_ended(
    pg_cluster: PgCluster, model_dir: Path, tmp_path: Path
) -> None:
    """A session of bunga's (its timeouts) takes the inbox's advisory lock and freezes: uploads answer
    503 + Retry-After within a few seconds (not at the 20 s request limit), and the server ends the
    frozen session after 4 x BUNGA_INBOX_DB_WAIT_S, releasing the lock: uploads succeed again."""
    import asyncio

    from bunga.garden.database_inbox import INBOX_LOCK
    from bunga.postgres import connect, timeouts
    from tests.helpers import photo_bytes

    url, servers = _pg_inbox_servers(pg_cluster, model_dir, tmp_path, BUNGA_INBOX_DB_WAIT_S="1")
    try:
        assert (
            asyncio.run(_upload(servers[0].url, [(servers[0].url, photo_bytes("sintetis_merah", 1))], 1))[0][0] == 201
        )
        frozen = connect(url, timeouts(1.0))
        with frozen.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (INBOX_LOCK,))  # and never commits
        photos = [(servers[i % 2].url, photo_bytes("sintetis_merah", 10 + i)) for i in range(10)]
        started = time.monotonic()
        answers = asyncio.run(_upload(url, photos, 10))
        assert [status for status, _ in answers] == [503] * 10, answers
        assert time.monotonic() - started < 8, "uploads waited on the lock"
        answer = httpx.post(
            f"{servers[0].url}/feedback", files={"file": ("x.jpg", photo_bytes("sintetis_merah", 99), "image/jpeg")}
        )
        assert answer.status_code == 503 and int(answer.headers["retry-after"]) >= 1
        time.sleep(5)  # past 4 x 1 s idle in the transaction: the server ended the frozen session
        later = asyncio.run(_upload(url, [(servers[1].url, photo_bytes("sintetis_merah", 50))], 1))
        assert later[0][0] == 201, later
        with contextlib.suppress(Exception):
            frozen.close()
    finally:
        for server in servers:
            server.stop()


def test_each_worker_holds_a_bounded_pool_of_inbox_connections(pg_cluster: PgCluster, tmp_path: Path) -> None:
    """40 threads of one worker store photos at once while another session holds the inbox's lock
    for 1.5 s (every store waits at once): at most BUNGA_INBOX_DB_POOL (4) inbox sessions are open
    (one per waiting thread before: 40), and every photo is stored once the lock is free."""
    from concurrent.futures import ThreadPoolExecutor

    import psycopg2

    from bunga.garden.database_inbox import INBOX_LOCK, PostgresInbox
    from tests.helpers import photo_bytes

    url = f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/mlflow"
    inbox = PostgresInbox(url, 10**9, 10**6, pool_size=4, wait_s=10.0)
    inbox.store_photo(photo_bytes("sintetis_kuning", 199), "jpg", None)  # the table exists
    holder = psycopg2.connect(url)
    sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = 'mlflow' AND pid <> pg_backend_pid() AND pid <> %s"
    with holder.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (INBOX_LOCK,))
    photos = [photo_bytes("sintetis_kuning", 200 + i) for i in range(40)]
    with ThreadPoolExecutor(40) as pool, psycopg2.connect(url) as watcher:
        watcher.autocommit = True
        stored = [pool.submit(inbox.store_photo, photo, "jpg", None) for photo in photos]
        peak = 0
        deadline = time.monotonic() + 1.5
        with watcher.cursor() as cursor:
            while time.monotonic() < deadline:
                cursor.execute(sql, (holder.get_backend_pid(),))
                peak = max(peak, cursor.fetchone()[0])
                time.sleep(0.02)
        holder.commit()  # the lock is free: the waiting stores go on
        shas = [future.result(timeout=60) for future in stored]
    holder.close()
    assert len(set(shas)) == 40 and shas[0] in _stored(url)
    assert 1 <= peak <= 4, peak


def test_an_inbox_row_named_outside_the_inbox_is_never_written_by_the_merge(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    """A row in the database inbox whose name would leave the inbox folder (written by anything but
    bunga) is refused by the merge's export; the rest is exported."""
    import psycopg2
    from typer.testing import CliRunner

    from bunga.cli import app
    from bunga.garden.database_inbox import PostgresInbox

    url = f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/mlflow"
    inbox = PostgresInbox(url, 10**9, 10**6)
    inbox.store_decision(f"decisions/{'a' * 64}-1-ani.json", "{}\n")
    outside = tmp_path / "elsewhere" / "evil.json"  # an absolute name
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        for name in ("decisions/../../../app.json", str(outside), "catalog/sub/x.json"):
            cursor.execute(
                "INSERT INTO inbox_files (name, kind, sha256, data, bytes) VALUES (%s, 'decision', NULL, %s, 2)",
                (name, b"{}"),
            )
    work = tmp_path / "work"
    work.mkdir()
    merged = CliRunner().invoke(app, ["merge", "--data-dir", str(work / "collected_data")], env={"BUNGA_INBOX_DB": url})
    assert merged.exit_code in (0, 1), merged.output
    assert (work / "collected_data" / "feedback" / "decisions" / f"{'a' * 64}-1-ani.json").is_file()
    assert not (work / "collected_data" / "app.json").exists() and not (work / "app.json").exists()
    assert not outside.exists() and not (work / "collected_data" / "feedback" / "catalog" / "sub").exists()
