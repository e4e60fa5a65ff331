"""Prefect's distributed setup and the service on it, as real processes on this machine: `Topology`.

One `Topology` starts, in this order (docs/scaling.md says why):

1. `prefect server database upgrade -y` on Prefect's PostgreSQL database (once);
2. Prefect API replica 1 (`prefect server start --no-services --no-ui`), waited for until its
   `/api/health` answers `true`, then replica 2 (two replicas starting together on a fresh
   database race on block registration and one dies);
3. together: one `prefect server services start` (every background service), the store's
   migrations (`altlas-flows db upgrade`);
4. the facades (`altlas-flows api`), facade *i* on replica *i*, and the workers
   (`altlas-flows worker`), worker *i* on replica *i*, all on one work pool.

Every process gets its environment from `Topology` alone (nothing of the caller's `PREFECT_*`
and `ALTLAS_*` leaks in), leads a process group of its own, and writes its output to
`<workdir>/<name>.log`. `kill` sends SIGKILL to a process's group (a machine dying), `restart`
starts it again with the same environment; `stop` ends them all. Used by
`tests/distributed` and meant for benchmarks of the same topology.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx

from interpreter.settings import PREFECT_DEFAULTS

ROOT = Path(__file__).resolve().parents[2]

START_SECONDS = 180.0
"""Longest any one process may take to become ready."""

FLOW_RUN_URL = re.compile(
    r"/runs/flow-run/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)
"""What Prefect's engine logs as a run begins (`View at <ui>/runs/flow-run/<id>`): in a
worker's log it names every flow run that worker executed."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


CLAIM_KEY = "altlas:topology:claimed"
"""Set in a Redis database a topology uses, so that `empty_redis_db` passes it over."""


@dataclass(frozen=True)
class RedisAddress:
    """A Redis server and the database number the topology uses there (flushed at start and
    at stop: give it a database nothing else uses, e.g. from `empty_redis_db`)."""

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 1

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"

    def flush(self, *, keep_claim: bool = False) -> None:
        """Empty the database; with `keep_claim`, mark it as taken again at once."""
        import redis

        with redis.Redis(host=self.host, port=self.port, db=self.db) as connection:
            connection.flushdb()
            if keep_claim:
                connection.set(CLAIM_KEY, str(os.getpid()))


def redis_answers(host: str = "127.0.0.1", port: int = 6379) -> bool:
    """Whether a Redis server answers PING at host:port."""
    import redis

    try:
        with redis.Redis(host=host, port=port, socket_connect_timeout=3) as connection:
            return bool(connection.ping())
    except (redis.RedisError, OSError):
        return False


def empty_redis_db(host: str = "127.0.0.1", port: int = 6379, *, first: int = 1) -> int:
    """The lowest database number ≥ `first` that holds no keys, claimed (a key marks it taken,
    atomically) so that two topologies on one Redis server never share one."""
    import redis

    with redis.Redis(host=host, port=port) as connection:
        databases = int(connection.config_get("databases").get("databases", 16))
    for number in range(first, databases):
        with redis.Redis(host=host, port=port, db=number) as connection:
            if connection.dbsize() == 0 and connection.set(CLAIM_KEY, str(os.getpid()), nx=True):
                if connection.dbsize() == 1:  # nothing else arrived meanwhile
                    return number
                connection.delete(CLAIM_KEY)
    raise RuntimeError(f"every Redis database {first}..{databases - 1} holds keys; flush one")


@dataclass
class Process:
    """One process of the topology: `command` in a process group of its own, its output
    appended to `log`."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    ready: Callable[[Process], bool]
    """Whether it is ready to serve (checked every 0.2 s after a start)."""
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    starts: int = 0
    log_offset: int = 0
    """Where the output of its latest start begins in `log`."""

    def start(self) -> None:
        """Start it (returns at once; `wait_ready` waits)."""
        if self.alive():
            raise RuntimeError(f"{self.name} is running already")
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"\n===== start {self.starts} at {time.strftime('%T')} =====\n".encode())
            log.flush()
            self.log_offset = log.tell()
            self.popen = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT,
                start_new_session=True,
            )  # fmt: skip

    def wait_ready(self, timeout: float = START_SECONDS) -> float:
        """Wait until it is ready; the seconds waited. Raises if it exits or times out."""
        began = time.monotonic()
        while not self.ready(self):
            if self.popen is None or self.popen.poll() is not None:
                code = None if self.popen is None else self.popen.returncode
                raise RuntimeError(f"{self.name} exited (code {code}); see {self.log}")
            if time.monotonic() - began > timeout:
                raise RuntimeError(f"{self.name} was not ready within {timeout:g}s; see {self.log}")
            time.sleep(0.2)
        return time.monotonic() - began

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def kill(self) -> None:
        """SIGKILL its whole process group (nothing gets to clean up), and reap it."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM the group, SIGKILL it if it is still there after `timeout` seconds."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout)
        self.kill()
        with contextlib.suppress(ProcessLookupError):  # children that outlived the leader
            os.killpg(self.popen.pid, signal.SIGKILL)

    def log_text(self) -> str:
        """Its whole log (every start)."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_since_start(self) -> str:
        """What it wrote since its latest start."""
        try:
            with self.log.open("rb") as log:
                log.seek(self.log_offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the processes of its group that are alive,
        and by the children they reaped (`/proc/<pid>/stat`)."""
        if self.popen is None:
            return 0.0
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            if int(fields[2]) == self.popen.pid:  # its process group
                ticks += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        return ticks / os.sysconf("SC_CLK_TCK")


def _http_ok(url: str, expected: object = None) -> bool:
    """Whether `url` answers 200 (with the JSON body `expected`, unless that is None)."""
    try:
        answer = httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return False
    if answer.status_code != 200:
        return False
    if expected is None:
        return True
    try:
        return bool(answer.json() == expected)
    except ValueError:
        return False


def _log_says(text: str) -> Callable[[Process], bool]:
    """Whether the process wrote `text` since its latest start."""
    return lambda process: text in process.log_since_start()


@dataclass
class TopologySettings:
    """What the topology is made of, and the settings it runs with."""

    prefect_database_url: str
    """Prefect's own database (`postgresql+asyncpg://...`), empty: it is migrated here."""
    store_database_url: str
    """The service's store (`postgresql://...`), empty: `altlas-flows db upgrade` migrates it."""
    redis: RedisAddress
    workdir: Path
    """Logs and each process's home go here."""
    replicas: int = 2
    facades: int = 2
    workers: int = 2
    work_pool: str = "altlas"
    worker_env: Mapping[str, str] = field(default_factory=dict)
    """Extra `ALTLAS_WORKER_*` (or other) variables of the workers, e.g. faster crash
    detection."""
    extra_env: Mapping[str, str] = field(default_factory=dict)
    """Extra variables of every process (e.g. `ALTLAS_PIECES_ALLOW`)."""
    secret_key: str = ""
    """`ALTLAS_SECRET_KEY` shared by facades and workers (default: a new one)."""
    admin_key: str = field(default_factory=lambda: "topology-operator-" + secrets.token_hex(16))


class Topology:
    """The processes of Prefect's distributed setup plus the service (module docstring).

    Example:
        ```python
        with Topology(settings).running() as topology:
            httpx.post(f"{topology.facade_urls[0]}/v1/tenants", ...)
            topology.kill_worker(0)
        ```
    """

    def __init__(self, settings: TopologySettings) -> None:
        self.settings = settings
        if not settings.secret_key:
            from api.store.crypto import generate_secret_key

            settings.secret_key = generate_secret_key()
        settings.workdir.mkdir(parents=True, exist_ok=True)
        self.replica_ports = [free_port() for _ in range(settings.replicas)]
        self.facade_ports = [free_port() for _ in range(settings.facades)]
        self.replicas = [self._replica(i) for i in range(settings.replicas)]
        self.services = self._prefect(
            "prefect-services",
            ["server", "services", "start"],
            ready=_log_says("Starting services"),
        )
        self.facades = [self._facade(i) for i in range(settings.facades)]
        self.workers = [self._worker(i) for i in range(settings.workers)]
        self.timings: dict[str, float] = {}
        """Seconds each step of `start` took."""

    # --- addresses --------------------------------------------------------------------------

    @property
    def prefect_api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}/api" for port in self.replica_ports]

    @property
    def facade_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.facade_ports]

    @property
    def processes(self) -> list[Process]:
        return [*self.replicas, self.services, *self.facades, *self.workers]

    # --- environments -----------------------------------------------------------------------

    def _base_env(self, name: str) -> dict[str, str]:
        """The caller's environment without its Prefect and ALT_LAS settings, plus the
        telemetry defaults, a home of the process's own and unbuffered output."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PREFECT_", "ALTLAS_"))
        }
        env.update(PREFECT_DEFAULTS)
        home = self.settings.workdir / name
        home.mkdir(parents=True, exist_ok=True)
        env["PREFECT_HOME"] = str(home / "prefect-home")
        env["ALTLAS_HOME"] = str(home)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.settings.extra_env)
        return env

    def server_env(self, name: str) -> dict[str, str]:
        """The environment every Prefect server process shares (migrations, replicas,
        services): docs/scaling.md, "Prefect's server processes"."""
        redis = self.settings.redis
        env = self._base_env(name)
        env.update(
            {
                "PREFECT_API_DATABASE_CONNECTION_URL": self.settings.prefect_database_url,
                "PREFECT_API_DATABASE_MIGRATE_ON_START": "false",
                "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
                "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
                "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
                "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
                "PREFECT_REDIS_MESSAGING_HOST": redis.host,
                "PREFECT_REDIS_MESSAGING_PORT": str(redis.port),
                "PREFECT_REDIS_MESSAGING_DB": str(redis.db),
                "PREFECT_SERVER_DOCKET_URL": redis.url,
                # Redis pub/sub channels are shared by every database of a Redis server: a name
                # of its own keeps this topology's Docket apart from any other's.
                "PREFECT_SERVER_DOCKET_NAME": f"prefect-server-db{redis.db}",
                "PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_QUEUE_STORAGE": (
                    "prefect_redis.cleanup_queue"
                ),
                "PREFECT_REDIS_WORKER_CLEANUP_QUEUE_HOST": redis.host,
                "PREFECT_REDIS_WORKER_CLEANUP_QUEUE_PORT": str(redis.port),
                "PREFECT_REDIS_WORKER_CLEANUP_QUEUE_DB": str(redis.db),
            }
        )
        return env

    def service_env(self, name: str, replica: int) -> dict[str, str]:
        """The environment of a facade or worker talking to Prefect API replica `replica`."""
        env = self._base_env(name)
        env.update(
            {
                "PREFECT_API_URL": self.prefect_api_urls[replica],
                "ALTLAS_DATABASE_URL": self.settings.store_database_url,
                "ALTLAS_SECRET_KEY": self.settings.secret_key,
                "ALTLAS_ADMIN_KEY": self.settings.admin_key,
                "ALTLAS_WORKER_POOL": self.settings.work_pool,
            }
        )
        return env

    # --- the processes ----------------------------------------------------------------------

    def _prefect(self, name: str, args: list[str], *, ready: Callable[[Process], bool]) -> Process:
        return Process(
            name=name,
            command=[sys.executable, "-m", "prefect", *args],
            env=self.server_env(name),
            log=self.settings.workdir / f"{name}.log",
            ready=ready,
        )

    def _replica(self, index: int) -> Process:
        port = self.replica_ports[index]
        serve = ["server", "start", "--no-services", "--no-ui", "--host", "127.0.0.1"]
        return self._prefect(
            f"prefect-api-{index + 1}",
            [*serve, "--port", str(port)],
            ready=lambda _: _http_ok(f"http://127.0.0.1:{port}/api/health", True),
        )

    def _facade(self, index: int) -> Process:
        name = f"facade-{index + 1}"
        port = self.facade_ports[index]
        return Process(
            name=name,
            command=[sys.executable, "-m", "api.console", "api", "--port", str(port)],
            env=self.service_env(name, index % self.settings.replicas),
            log=self.settings.workdir / f"{name}.log",
            ready=lambda _: _http_ok(f"http://127.0.0.1:{port}/readyz"),  # store and Prefect
        )

    def _worker(self, index: int) -> Process:
        name = f"worker-{index + 1}"
        env = self.service_env(name, index % self.settings.replicas)
        env.update(self.settings.worker_env)
        return Process(
            name=name,
            command=[sys.executable, "-m", "api.console", "worker"],
            env=env,
            log=self.settings.workdir / f"{name}.log",
            ready=_log_says("runs work pool"),
        )

    def _run_once(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log = self.settings.workdir / f"{name}.log"
        with log.open("ab") as out:
            done = subprocess.run(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                timeout=START_SECONDS,
            )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{name} failed (code {done.returncode}); see {log}")

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start everything in order (module docstring); `timings` says how long each took."""
        began = time.monotonic()
        self.settings.redis.flush(keep_claim=True)
        step = time.monotonic()
        self._run_once(
            "prefect-migrate",
            [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
            self.server_env("prefect-migrate"),
        )
        self.timings["prefect migrations"] = time.monotonic() - step
        first, *others = self.replicas
        step = time.monotonic()
        first.start()
        first.wait_ready()
        self.timings["first API replica"] = time.monotonic() - step
        step = time.monotonic()
        for replica in others:
            replica.start()
        self.services.start()
        store_env = self.service_env("store-migrate", 0)
        with ThreadPoolExecutor(1) as pool:
            migrated = pool.submit(
                self._run_once,
                "store-migrate",
                [sys.executable, "-m", "api.console", "db", "upgrade"],
                store_env,
            )
            for replica in others:
                replica.wait_ready()
            migrated.result()
        self.timings["other replicas and store migrations"] = time.monotonic() - step
        step = time.monotonic()
        for process in [*self.facades, *self.workers]:
            process.start()
        for process in [*self.facades, *self.workers, self.services]:
            process.wait_ready()
        self.timings["facades, workers, services"] = time.monotonic() - step
        self.timings["total"] = time.monotonic() - began

    def stop(self) -> None:
        """SIGTERM every process (workers and facades first), SIGKILL what remains."""
        for group in (self.workers, self.facades, [self.services], self.replicas):
            with ThreadPoolExecutor(max(1, len(group))) as pool:
                list(pool.map(lambda process: process.terminate(timeout=5), group))
        with contextlib.suppress(Exception):
            self.settings.redis.flush()

    @contextlib.contextmanager
    def running(self) -> Iterator[Topology]:
        """Started on entry, stopped on exit (also when the start fails)."""
        try:
            self.start()
            yield self
        finally:
            self.stop()

    # --- failures on purpose ----------------------------------------------------------------

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker `index` (its runs die with it)."""
        self.workers[index].kill()

    def restart_worker(self, index: int, *, wait: bool = True) -> float:
        """Start worker `index` again; the seconds until it was ready (0 when not waited)."""
        return self._restart(self.workers[index], wait)

    def kill_facade(self, index: int) -> None:
        """SIGKILL facade `index` (requests in flight get no answer)."""
        self.facades[index].kill()

    def restart_facade(self, index: int, *, wait: bool = True) -> float:
        """Start facade `index` again; the seconds until it was ready (0 when not waited)."""
        return self._restart(self.facades[index], wait)

    def _restart(self, process: Process, wait: bool) -> float:
        if process.alive():
            process.kill()
        process.start()
        return process.wait_ready() if wait else 0.0

    # --- what happened ----------------------------------------------------------------------

    def flow_runs_of_worker(self, index: int) -> list[str]:
        """The flow runs worker `index` began (in every life of it), in order, as its log
        says (`View at .../runs/flow-run/<id>`; a run it began twice appears twice)."""
        return FLOW_RUN_URL.findall(self.workers[index].log_text())

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds each process (by name) has used so far (see `Process.cpu_seconds`)."""
        return {process.name: process.cpu_seconds() for process in self.processes}

    def dump_logs(self, out: TextIO, *, lines: int = 150) -> None:
        """The last `lines` lines of every process's log (and of the one-off commands)."""
        for log in sorted(self.settings.workdir.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()
            out.write(f"\n----- {log.name} (last {min(lines, len(text))} of {len(text)}) -----\n")
            out.write("\n".join(text[-lines:]) + "\n")
        out.flush()


__all__ = [
    "CLAIM_KEY",
    "FLOW_RUN_URL",
    "Process",
    "RedisAddress",
    "Topology",
    "TopologySettings",
    "empty_redis_db",
    "free_port",
    "redis_answers",
]
