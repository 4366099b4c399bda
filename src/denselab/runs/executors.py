"""Where runs train: in this process, in N local worker processes, or on a Ray cluster.

Every executor offers the same session to the engine: `capacity` (how many tasks it takes
at a time), `groups_seeds` (whether a variant's seeds should share one task),
`submit(task, variant, data_key, seeds, on_progress)` returning a token (`data_key` names
one of the session's datasets: RunRequest.data_key), and `next_done()` returning
(token, results, error) for the next task that ended, with one result per seed and the
error as text ("Type: message", then details) or None.

Local worker processes are those of a Ray instance started here, so a worker process that
dies is retried exactly as on a cluster. On Ray every dataset goes into the object store
once, and each task sends its model back as bytes: the nodes need no shared file system.
"""

import contextlib
import os
import socket
import sys
import traceback
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from denselab.errors import BadInput
from denselab.extras import extra_imports
from denselab.quiet import c_output_silenced, verbose

MAX_RETRIES = 2  # a Ray task whose worker process dies is run again up to this many times
UNBOUNDED = 1_000_000  # Ray schedules every submitted task itself
# How long the cluster's address may take to accept a connection. Ray itself retries an
# address where nothing listens for minutes before it gives up; a head node on a network
# answers in milliseconds.
CONNECT_SECONDS = 5
RAY_OWN_ADDRESSES = ("auto", "local")  # Ray's words for "the cluster on this machine" and "a new one"


def describe_error(error: BaseException) -> str:
    """How a failed run is stored: "Type: message" on the first line, a short traceback after."""
    details = "".join(traceback.format_exception(error, limit=5))
    return f"{type(error).__name__}: {error}\n{details}"


class InProcess:
    """One task at a time, in this process, with progress reported batch by batch.

    A variant's seeds share a task: they then share one compiled training program, which
    saves its tracing per seed, and train side by side in it where that pays (denselab.training.loop).
    """

    @contextlib.contextmanager
    def session(self, datasets):
        yield _InProcessSession(datasets)


class _InProcessSession:
    capacity = 1
    groups_seeds = True

    def __init__(self, datasets):
        self.datasets, self.done, self.count = datasets, deque(), 0

    def submit(self, task, variant, data_key, seeds, on_progress) -> int:
        self.count += 1
        try:
            self.done.append((self.count, task(variant, self.datasets[data_key], seeds, on_progress), None))
        except Exception as error:  # noqa: BLE001 - one broken run must not end the others
            self.done.append((self.count, None, describe_error(error)))
        return self.count

    def next_done(self):
        return self.done.popleft()


@dataclass(frozen=True)
class RayExecutor:
    """A Ray task per run, on the cluster at `address` or on a local Ray instance.

    Args:
        address: a cluster's "HOST:PORT"; None starts a local instance of `local_cpus` CPUs.
        cpus_per_run, gpus_per_run: what each task asks Ray for.
    """

    address: str | None = None
    cpus_per_run: float = 1
    gpus_per_run: float = 0
    local_cpus: int | None = None

    @contextlib.contextmanager
    def session(self, datasets):
        # Ray turns token authentication on by itself for a local instance, and for a cluster when
        # ~/.ray/auth_token exists, and then logs a warning that says so to the terminal. Asking
        # for it explicitly in those same cases, before Ray reads its configuration at import,
        # keeps the same security without that line. (Once Ray is imported, its configuration is
        # read: changing the mode then leaves its processes disagreeing, seen as a GCS timeout.)
        local_or_token = self.address is None or (Path.home() / ".ray" / "auth_token").is_file()
        if local_or_token and "ray" not in sys.modules:
            os.environ.setdefault("RAY_AUTH_MODE", "token")
        # Ray's C++ core logs its start-up straight to the terminal (for one, failing to reach
        # 8.8.8.8 to learn the machine's address on a machine without internet).
        with c_output_silenced(), extra_imports():
            import ray

            started = not ray.is_initialized()
            if started:
                self._join(ray)
        try:
            yield _RaySession(self, {name: ray.put(dataset) for name, dataset in datasets.items()})
        finally:
            if started:
                ray.shutdown()

    def _join(self, ray) -> None:
        where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
        if self.address:
            check_reachable(self.address)  # again: it may have gone since the command started
        try:
            with warnings.catch_warnings():
                # JAX warns at every fork once it is imported; Ray's fork is subprocess's fork-and-exec,
                # which runs no JAX code in the child.
                if not verbose():
                    warnings.filterwarnings("ignore", message="os.fork\\(\\) was called", category=RuntimeWarning)
                ray.init(**self._init_options())
        except ray.exceptions.AuthenticationError:
            raise BadInput(f"{where} needs its authentication token: copy ~/.ray/auth_token from the head node "
                           "into this machine's ~/.ray/ (or set RAY_AUTH_TOKEN_PATH)") from None
        except ConnectionError as error:
            raise BadInput(f"cannot connect to {where}: {str(error).splitlines()[0]}") from None

    def _init_options(self) -> dict:
        # "local" always starts a new instance, even where another cluster already runs.
        options = dict(address=self.address or "local", include_dashboard=False, log_to_driver=False,
                       configure_logging=False)
        if self.address is None and self.local_cpus is not None:
            options["num_cpus"] = self.local_cpus
        if self.address is None or self.address.split(":")[0] in ("127.0.0.1", "localhost"):
            # Left alone, Ray advertises the machine's network address even for a cluster
            # on loopback; a local study should not talk over the network at all.
            # A hidden option of ray.init's **kwargs: tests/test_private_apis.py fails first when it changes.
            options["_node_ip_address"] = "127.0.0.1"
        return options


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of a cluster's "HOST:PORT" ("[::1]:6379" for IPv6, "ray://HOST:PORT" for Ray Client)."""
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    plain_host = host.isprintable() and not any(character.isspace() for character in host)
    if not (colon and host and plain_host and port.isascii() and port.isdigit() and len(port) <= 5
            and 0 < int(port) < 65536):
        raise BadInput(f"--ray-address {address!r} is not HOST:PORT, the head node's address and port "
                       "(e.g. 10.0.0.5:6379)")
    return host, int(port)


def check_reachable(address: str) -> None:
    """BadInput within CONNECT_SECONDS when nothing accepts a connection at a cluster's address."""
    if address in RAY_OWN_ADDRESSES:
        return
    host, port = split_address(address)
    where = f"cannot reach the Ray cluster at {address}"
    try:
        socket.create_connection((host, port), timeout=CONNECT_SECONDS).close()
    except (socket.gaierror, UnicodeError):
        raise BadInput(f"{where}: the host name {host} does not resolve") from None
    except ConnectionRefusedError:
        raise BadInput(f"{where}: nothing listens there; start the head node with "
                       f"ray start --head --port={port}") from None
    except TimeoutError:
        raise BadInput(f"{where}: no answer in {CONNECT_SECONDS} s; check the address, and that no firewall "
                       f"drops port {port}") from None
    except OSError as error:
        raise BadInput(f"{where}: {error.strerror or error}; check the address") from None


def local_workers(count: int) -> RayExecutor:
    """`count` runs at a time, in worker processes of a local Ray instance, one CPU each."""
    return RayExecutor(local_cpus=count)


def choose_executor(kind: str, workers: int = 1, address: str | None = None, cpus_per_run: float = 1,
                    gpus_per_run: float = 0):
    """The executor the command-line options ask for (--executor, --workers, --ray-address, ...)."""
    if kind not in ("local", "ray"):
        raise BadInput(f"unknown executor {kind!r}; choose local or ray")
    if not isinstance(workers, int) or workers < 1:
        raise BadInput(f"--workers must be >= 1, got {workers}")
    if not cpus_per_run > 0 or not gpus_per_run >= 0:
        raise BadInput("--cpus-per-run must be > 0 and --gpus-per-run >= 0")
    if address is not None and kind != "ray":
        raise BadInput(f"--ray-address {address!r} needs --executor ray")
    if kind == "ray":
        if address is not None:
            check_reachable(address)  # before anything is written, and in seconds rather than Ray's minutes
        # Without an address, --workers sizes the local Ray instance that is started.
        return RayExecutor(address, cpus_per_run, gpus_per_run, workers if workers > 1 and address is None else None)
    return local_workers(workers) if workers > 1 else InProcess()


def _remote_run(task, variant, dataset, seeds) -> list[dict]:
    """What a Ray worker runs: the task, without progress (it reaches the driver per task)."""
    return task(variant, dataset, seeds, None)


class _RaySession:
    def __init__(self, executor: RayExecutor, dataset_refs: dict):
        with extra_imports():
            import ray

        self.capacity = executor.local_cpus or UNBOUNDED
        # CPU workers take one seed each, which spreads a variant over the workers; a worker
        # with an accelerator trains a variant's seeds side by side (denselab.training.loop).
        self.groups_seeds = executor.gpus_per_run > 0
        self.dataset_refs = dataset_refs
        self.remote = ray.remote(_remote_run).options(
            num_cpus=executor.cpus_per_run, num_gpus=executor.gpus_per_run,
            max_retries=MAX_RETRIES, retry_exceptions=False,
        )
        self.running = []

    def submit(self, task, variant, data_key, seeds, on_progress):
        reference = self.remote.remote(task, variant, self.dataset_refs[data_key], seeds)
        self.running.append(reference)
        return reference

    def next_done(self):
        with extra_imports():
            import ray

        [done], _ = ray.wait(self.running, num_returns=1)
        self.running.remove(done)
        try:
            return done, ray.get(done), None
        except ray.exceptions.RayTaskError as error:
            # The task raised: store its own exception first, Ray's account of it after.
            cause = error.cause if error.cause is not None else error
            return done, None, f"{type(cause).__name__}: {cause}\n{error}"
        except ray.exceptions.RayError as error:  # a worker or node lost for good
            return done, None, describe_error(error)
