"""The CLI agent verbs against a real gateway: identity from the token, epochs remembered."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import socket
import sys
import threading
from pathlib import Path

import pytest

from cli.gateway_client import RETRY_DELAYS, GatewayClient, GatewayError
from core.backlog import Backlog
from core.models import Actor, Lane
from core.settings import load_settings
from core.spec import make_spec

OP = Actor.operator("test")


async def ob(env: dict[str, str], *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode() if stdin else None)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_agent_verbs_work_loop(
    gateway: str, backlog: Backlog, make_agent, tmp_path: Path
) -> None:
    _, token = await make_agent("codex")
    await backlog.file(make_spec(title="ship it", steps=["one"]), OP, lane=Lane.AUTONOMOUS)
    await backlog.file(make_spec(title="look into it"), OP, lane=Lane.INVESTIGATION)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OB_")}
    env.update(OB_URL=gateway, OB_AGENT_TOKEN=token, OB_DATA_DIR=str(tmp_path))

    code, out, err = await ob(env, "next", "--json")
    assert code == 0, err
    lease = json.loads(out)["lease"]
    assert (lease["key"], lease["epoch"]) == ("OB-1", 1)

    code, out, _ = await ob(env, "heartbeat", "OB-1", "--json")
    assert code == 0 and json.loads(out)["epoch"] == 1
    code, out, err = await ob(env, "done", "OB-1", "-c", "abc1234", "-m", "shipped", "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "done"
    # the lease is forgotten after done: a second done needs an explicit epoch
    code, _, err = await ob(env, "done", "OB-1")
    assert code == 1 and "no lease on OB-1 remembered here" in err

    code, out, _ = await ob(env, "next")
    assert code == 0 and "OB-2 look into it" in out
    code, out, err = await ob(env, "findings", "OB-2", "-", "--json", stdin="it is DNS")
    assert code == 0, err
    assert json.loads(out)["lane"] == "requires_decision"

    code, out, _ = await ob(env, "file", "An agent idea", "-r", "web", "--json")
    assert json.loads(out)["status"] == "draft" and json.loads(out)["created_by"] == "agent:codex"
    task = await backlog.get("OB-1")
    assert task.completed_by == "agent:codex" and task.commits == ["abc1234"]


async def test_stale_epoch_exits_4_with_json_error(
    gateway: str, backlog: Backlog, make_agent, tmp_path: Path
) -> None:
    _, token = await make_agent("codex")
    await backlog.file(make_spec(title="x"), OP, lane=Lane.AUTONOMOUS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OB_")}
    env.update(OB_URL=gateway, OB_AGENT_TOKEN=token, OB_DATA_DIR=str(tmp_path))
    await ob(env, "next", "--json")
    code, out, _ = await ob(env, "done", "OB-1", "--epoch", "9", "--json")
    assert code == 4
    body = json.loads(out)
    assert body["status"] == 409 and body["error"] == "lease_refused"
    env["OB_AGENT_TOKEN"] = "ob_000000000000_" + "x" * 43
    code, _, err = await ob(env, "next")
    assert code == 1 and "invalid token" in err


async def test_a_rotated_token_still_finds_the_epoch_its_claim_got(
    gateway: str, backlog: Backlog, make_agent, tmp_path: Path
) -> None:
    """`ob agent rotate` keeps the leases: an agent given its new token finishes the task it
    claimed with the old one, without passing --epoch."""
    _, token = await make_agent("codex")
    _, other = await make_agent("grok")
    await backlog.file(make_spec(title="long job"), OP, lane=Lane.AUTONOMOUS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OB_")}
    env.update(OB_URL=gateway, OB_AGENT_TOKEN=token, OB_DATA_DIR=str(tmp_path))
    code, _, err = await ob(env, "next", "--json")
    assert code == 0, err
    operator = {**env, "OB_DATABASE_URL": backlog.settings.database_url or ""}
    code, out, err = await ob(operator, "agent", "rotate", "codex")
    assert code == 0, err
    new = next(line for line in out.splitlines() if line.startswith("ob_"))
    code, _, err = await ob(env, "heartbeat", "OB-1")
    assert code == 1 and "invalid token" in err  # the old token is dead
    # another agent on this machine does not get codex's epoch
    code, _, err = await ob({**env, "OB_AGENT_TOKEN": other}, "done", "OB-1")
    assert code == 1 and "no lease on OB-1 remembered here" in err
    env["OB_AGENT_TOKEN"] = new
    code, out, err = await ob(env, "done", "OB-1", "-c", "abc1234", "--json")
    assert code == 0, err
    assert json.loads(out)["completed_by"] == "agent:codex"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_url_follows_ob_gateway_port_and_nothing_listening_fails_fast(
    gateway: str, backlog: Backlog, make_agent, tmp_path: Path
) -> None:
    _, token = await make_agent("codex")
    await backlog.file(make_spec(title="x"), OP, lane=Lane.AUTONOMOUS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OB_")}
    env.update(OB_AGENT_TOKEN=token, OB_DATA_DIR=str(tmp_path))
    port = gateway.rsplit(":", 1)[1]
    code, out, err = await ob({**env, "OB_GATEWAY_PORT": port}, "next", "--json")
    assert code == 0, err
    assert json.loads(out)["lease"]["key"] == "OB-1"
    nobody = free_port()
    code, out, err = await ob({**env, "OB_GATEWAY_PORT": str(nobody)}, "heartbeat", "OB-1")
    assert code == 1 and err.splitlines() == [
        f"error: nothing is listening at http://127.0.0.1:{nobody} (is `ob serve` running? "
        "The URL is OB_URL, else OB_GATEWAY_HOST and OB_GATEWAY_PORT)"
    ]


class Answers(http.server.BaseHTTPRequestHandler):
    """A gateway that answers 503 (its database restarting) a few times, then 200."""

    unavailable = 0

    def do_GET(self) -> None:
        if Answers.unavailable:
            Answers.unavailable -= 1
            self.send_response(503)
            body = b'{"error": "database_unavailable", "message": "retry shortly"}'
        else:
            self.send_response(200)
            body = b'{"agent": "codex"}'
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_retries_wait_out_a_503_but_not_an_absent_gateway(tmp_path: Path) -> None:
    token = "ob_123456789012_" + "x" * 43
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        slept: list[float] = []
        live = load_settings(
            url=f"http://127.0.0.1:{server.server_port}",
            agent_token=token,
            data_dir=tmp_path,
            _env_file=None,
        )
        Answers.unavailable = 4
        client = GatewayClient(live, sleep=slept.append)
        assert client.call("GET", "/v1/me") == {"agent": "codex"}
        assert len(slept) == 4  # a live gateway whose database restarts: waited out
    finally:
        server.shutdown()
        server.server_close()
    slept.clear()
    absent = load_settings(
        gateway_port=free_port(), agent_token=token, data_dir=tmp_path, _env_file=None
    )
    client = GatewayClient(absent, sleep=slept.append)
    with pytest.raises(GatewayError, match="nothing is listening at"):
        client.call("GET", "/v1/me")
    assert sum(slept) < sum(RETRY_DELAYS) / 10  # a moment for a restart, not half a minute
