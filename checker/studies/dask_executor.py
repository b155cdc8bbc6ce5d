"""The Dask executor of the sweep and of the landscape study: connect, run, watch the workers.

``run_on_dask(todo, scheduler, measure, warn=...)`` submits one task per point to a
Dask scheduler and yields ``(point, outcome)`` as the tasks finish, in the one process
that writes the results (the caller appends the lines).  What it adds to a bare
``distributed.Client``:

* **The connection step** (``probe_scheduler``), before any ``Client`` exists, so that
  a wrong address is one clear line within seconds instead of a silent hang:

  - nothing listening (connection refused, retried for ``CONNECT_SECONDS`` in case the
    scheduler is just starting) or no answer at all: "cannot connect";
  - something that accepts the connection but does not speak Dask (the dashboard's
    HTTP port, a web server, ssh): Dask's handshake reads the first 8 bytes of the
    answer as a frame length and can wait forever for the rest, or try to allocate
    exabytes (``MemoryError``).  The handshake runs under ``HANDSHAKE_SECONDS``, and a
    failed read of the answer is reported as "not a Dask scheduler";
  - a Dask process that is not the scheduler (a worker's port): said so.

* **Lost workers**: a task whose worker dies is rerun by the scheduler on another
  worker (the scheduler's own retry, up to ``distributed.scheduler.allowed-failures``
  deaths, 3 by default); its line is written once, when its one result arrives, so a
  killed worker loses nothing and duplicates nothing.  A point whose worker died under it
  more often than that (``KilledWorker``) is not written (a rerun retries it) and is
  reported through ``warn``.
* **No workers at all**: while tasks are pending and the cluster has no worker, ``warn``
  receives one line every ``NO_WORKERS_WARN_SECONDS`` (first after ``NO_WORKERS_GRACE_SECONDS``).
  The sweep **keeps waiting**: workers of a batch system come and go (a job requeued,
  an adaptive ``dask-jobqueue`` cluster scaling up again), and the scheduler hands them
  the pending points as soon as they join.  Ctrl-C stops the wait (exit 130, finished
  lines kept).
* **The scheduler gone** (stopped, its host down): Dask cancels the pending tasks; that is
  one ``CheckerError`` line (the finished lines are kept; a rerun measures the rest).

Runs against any scheduler address; tested on a scheduler and workers started as
separate processes on 127.0.0.1 (``dask scheduler``, ``dask worker``; docs/dask.md).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from concurrent.futures import CancelledError
from typing import Any, Callable, Iterable, Mapping

from checker.core.errors import CheckerError

#: Seconds during which a refused TCP connection is retried (a scheduler starting up);
#: the error for "nothing listening" comes after this long.
CONNECT_SECONDS = 5.0
#: Seconds for the Dask handshake and the scheduler's identity reply, once the TCP
#: connection is accepted.  A scheduler answers in milliseconds; this leaves room for a
#: loaded or distant one, and bounds the wait on a port that is not Dask.
HANDSHAKE_SECONDS = 10.0
#: Seconds between two looks at the cluster while no task finishes.
POLL_SECONDS = 2.0
#: The cluster must have had no worker for this long before the first warning ...
NO_WORKERS_GRACE_SECONDS = 5.0
#: ... and the warning is repeated this often while it still has none.
NO_WORKERS_WARN_SECONDS = 60.0

HINT = "start one with `dask scheduler`, whose address it prints; docs/dask.md"


def _tcp_location(address: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a tcp address, None for another protocol (tls, ucx, inproc)."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, loc = parse_address(address)
    except (ValueError, TypeError):
        raise CheckerError(f"--scheduler {address!r}: not an address (expected tcp://HOST:PORT)") from None
    if scheme != "tcp":
        return None
    try:
        host, port = parse_host_port(loc)
    except (ValueError, TypeError):
        raise CheckerError(f"--scheduler {address!r}: expected tcp://HOST:PORT (the port is needed)") from None
    if not 0 < int(port) < 65536:
        raise CheckerError(f"--scheduler {address!r}: the port must be 1 to 65535")
    return scheme, host, int(port)


def _tcp_reachable(address: str, host: str, port: int, seconds: float) -> None:
    """Open and close one TCP connection; a refused one is retried for ``seconds``."""
    deadline = time.monotonic() + seconds
    delay = 0.1
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.5, deadline - time.monotonic())):
                return
        except socket.gaierror as exc:
            raise CheckerError(f"--scheduler {address}: cannot resolve the host {host!r} ({exc.strerror})") from None
        except (ConnectionRefusedError, ConnectionResetError):
            if time.monotonic() + delay >= deadline:
                raise CheckerError(f"--scheduler {address}: cannot connect: nothing listening at {host}:{port} "
                                   f"(retried for {seconds:g} s; {HINT})") from None
        except (socket.timeout, TimeoutError):
            raise CheckerError(f"--scheduler {address}: cannot connect: no answer from {host}:{port} within "
                               f"{seconds:g} s (a firewall, or a host that is down)") from None
        except OSError as exc:
            raise CheckerError(f"--scheduler {address}: cannot connect ({exc.strerror or exc})") from None
        time.sleep(delay)
        delay = min(2 * delay, 1.0)


async def _identity(address: str, seconds: float) -> Any:
    from distributed.comm import connect

    comm = await asyncio.wait_for(connect(address, timeout=seconds), seconds)
    try:
        await asyncio.wait_for(comm.write({"op": "identity", "reply": True}), seconds)
        return await asyncio.wait_for(comm.read(), seconds)
    finally:
        comm.abort()


def probe_scheduler(address: str, *, connect_seconds: float | None = None,
                    handshake_seconds: float | None = None) -> dict[str, Any]:
    """Check that ``address`` is a reachable Dask scheduler; returns its identity (a dict with
    ``address`` and ``n_workers``), or raises ``CheckerError`` with one line saying what
    answers there instead.  Bounded: about ``connect_seconds + handshake_seconds``.  Only
    tcp addresses are probed; another protocol is left to the ``Client``'s own timeout."""
    connect_seconds = CONNECT_SECONDS if connect_seconds is None else connect_seconds
    handshake_seconds = HANDSHAKE_SECONDS if handshake_seconds is None else handshake_seconds
    loc = _tcp_location(address)
    if loc is None:  # tls (needs the cluster's security settings), ucx, inproc: the Client checks it
        return {"address": address, "n_workers": None}
    _tcp_reachable(address, loc[1], loc[2], connect_seconds)
    not_dask = (f"--scheduler {address}: not a Dask scheduler: something answers there but not with the Dask "
                "protocol (the dashboard's HTTP port? the scheduler's port is the one `dask scheduler` prints "
                "as 'Scheduler at', 8786 by default)")
    try:
        ident = asyncio.run(_identity(address, handshake_seconds))
    except (asyncio.TimeoutError, TimeoutError):
        raise CheckerError(f"{not_dask}; no Dask handshake within {handshake_seconds:g} s") from None
    except MemoryError:  # the answer's first 8 bytes read as a frame length of exabytes
        raise CheckerError(not_dask) from None
    except OSError:  # the comm closed: the other side hung up on the handshake
        raise CheckerError(f"{not_dask}; it closed the connection during the handshake") from None
    except Exception:  # noqa: BLE001 -- garbled frames, a msgpack error: not Dask either
        raise CheckerError(not_dask) from None
    if not isinstance(ident, Mapping) or ident.get("type") != "Scheduler":
        kind = ident.get("type") if isinstance(ident, Mapping) else None
        if kind:
            raise CheckerError(f"--scheduler {address}: a Dask {kind}, not the scheduler (give the address "
                               "`dask scheduler` prints as 'Scheduler at')")
        raise CheckerError(not_dask)
    return dict(ident)


def _worker_count(client: Any) -> int | None:
    """Workers the scheduler knows now; None when the scheduler does not answer."""
    try:
        return len(client.nthreads())
    except Exception:  # noqa: BLE001 -- a lost scheduler: the caller warns, Dask reconnects
        return None


def _lost(scheduler: Any, missing: int) -> CheckerError:
    return CheckerError(f"--scheduler {scheduler}: lost the connection to the scheduler (stopped?); {missing} "
                        "point(s) not measured, the finished lines are kept: rerun the same command against a "
                        "running scheduler")


def run_on_dask(todo: list[dict[str, Any]], scheduler: Any, measure: Callable[[Mapping[str, Any]], dict], *,
                warn: Callable[[str], None] = lambda text: None
                ) -> Iterable[tuple[dict[str, Any], dict[str, Any]]]:
    """Run ``measure`` on every point of ``todo`` on the cluster at ``scheduler`` (an address,
    probed first, or a ``distributed.Client``); yields ``(point, outcome)`` as they finish."""
    try:
        from distributed import Client, KilledWorker
        from distributed.client import _wait
        from distributed.comm.core import CommClosedError
    except ImportError:
        raise CheckerError("--scheduler needs dask.distributed: pip install -e \".[dask]\"") from None
    own = not isinstance(scheduler, Client)
    if own:
        probe_scheduler(str(scheduler))
        try:
            client = Client(str(scheduler), timeout=f"{CONNECT_SECONDS + HANDSHAKE_SECONDS}s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise CheckerError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
    else:
        client = scheduler
    # the client logs a lost scheduler as a multi-line traceback; it is reported here in one line
    client_log = logging.getLogger("distributed.client")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    futs: dict[Any, dict[str, Any]] = {}
    try:
        futs = {client.submit(measure, p, key=f"zhou-ge-point-{p['key']}", pure=False): p for p in todo}
        pending = set(futs)
        no_workers_since: float | None = None
        last_warning = -float("inf")
        while pending:
            try:
                # distributed.wait on this client (not the process's default one)
                done, _ = client.sync(_wait, list(pending), timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            except (CancelledError, CommClosedError):  # the scheduler went away: Dask cancels the pending tasks
                raise _lost(scheduler, len(pending)) from None
            if not done:
                now = time.monotonic()
                n = _worker_count(client)
                if n == 0 or n is None:
                    no_workers_since = now if no_workers_since is None else no_workers_since
                    if (now - no_workers_since >= NO_WORKERS_GRACE_SECONDS
                            and now - last_warning >= NO_WORKERS_WARN_SECONDS):
                        last_warning = now
                        what = "has no workers" if n == 0 else "does not answer"
                        warn(f"the Dask cluster at {client.scheduler.address} {what} "
                             f"(for {now - no_workers_since:.0f} s); {len(pending)} point(s) wait for a worker "
                             "to join (Ctrl-C stops; finished lines are kept)")
                else:
                    no_workers_since = None
                continue
            for fut in done:
                pending.discard(fut)
                try:
                    outcome = fut.result()
                except (CancelledError, CommClosedError):  # gone while the result was fetched
                    raise _lost(scheduler, len(pending) + 1) from None
                except KilledWorker:
                    warn(f"point {futs[fut]['key']}: its worker died under it more often than Dask allows "
                         "(distributed.scheduler.allowed-failures); not written, a rerun of the same command "
                         "retries it")
                    continue
                except (ImportError, RuntimeError) as exc:
                    if isinstance(exc, RuntimeError) and "deserializ" not in str(exc):
                        raise
                    raise CheckerError(f"--scheduler {client.scheduler.address}: the cluster cannot load the "
                                       f"checker's task ({type(exc).__name__}): the scheduler and every worker "
                                       "need this checker importable, the same version as here "
                                       "(pip install -e . on each host; docs/dask.md)") from None
                yield futs[fut], outcome
    finally:
        try:
            if futs and client.status == "running":
                client.cancel(list(futs))
        finally:
            if own:
                client.close()
            client_log.setLevel(level)
