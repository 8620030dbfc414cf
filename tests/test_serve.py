"""`ob serve` and `ob status` as a user runs them (issue 17): real processes. A busy port and a
malformed token are one clear line; an empty token is no token; `ob status` fails when nothing
runs; a graceful stop logs no error."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

import httpx

from tests.conftest import create_database, drop_database
from tests.fake_telegram import FakeTelegram
from tests.test_bot_e2e import Serve
from tests.test_cli import ob

Env = dict[str, str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def arun(env: Env, cwd: Path, *args: str):
    return await asyncio.to_thread(ob, *args, env=env, cwd=cwd)


async def test_a_busy_port_is_one_line_naming_the_setting(cli_env: Env, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = await arun({**cli_env, "OB_GATEWAY_PORT": str(port)}, tmp_path, "serve")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"error: port {port} on 127.0.0.1 is in use (another ob serve?); stop that, or set "
        "OB_GATEWAY_PORT to a free port"
    ]


async def test_a_malformed_bot_token_is_one_line_without_the_token(
    cli_env: Env, tmp_path: Path
) -> None:
    env = {**cli_env, "OB_BOT_TOKEN": "paste-your-token-here"}
    r = await arun(env, tmp_path, "serve")
    assert r.returncode == 2
    (line,) = r.stderr.splitlines()
    assert line.startswith("error: invalid configuration: OB_BOT_TOKEN: ")
    assert "123456789:" in line and "paste-your-token-here" not in line


async def test_an_empty_bot_token_is_no_bot_and_status_says_whether_serve_runs(
    cli_env: Env, tmp_path: Path
) -> None:
    r = await arun(cli_env, tmp_path, "status")
    assert r.returncode == 1 and "no `ob serve` is running" in r.stdout
    # a .env copied from .env.example, with its empty values
    (tmp_path / ".env").write_text("OB_BOT_TOKEN=\nOB_WEBHOOK_URL=\nOB_AGENT_TOKEN=\nOB_URL=\n")
    port = free_port()
    env = {**cli_env, "OB_GATEWAY_PORT": str(port), "OB_DATA_DIR": str(tmp_path / "data")}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli.main", "serve", env=env, cwd=tmp_path, stdout=out, stderr=out
        )
        try:
            async with httpx.AsyncClient(timeout=5) as c:
                for _ in range(300):
                    assert proc.returncode is None, log.read_text()
                    try:
                        health = await c.get(f"http://127.0.0.1:{port}/v1/health")
                        if health.status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
            assert health.json()["parts"]["bot"] == "off", health.json()
            r = await arun(env, tmp_path, "status")
            assert r.returncode == 0 and "OB_BOT_TOKEN is not set" in r.stdout, r.stdout
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
    text = log.read_text()
    assert proc.returncode == 0 and "Traceback" not in text and "ERROR" not in text, text
    r = await arun(env, tmp_path, "status", "--json")
    assert r.returncode == 1


async def test_a_graceful_stop_logs_no_error(admin_url: str, tmp_path: Path) -> None:
    url = await create_database(admin_url)
    try:
        async with FakeTelegram() as fake:
            serve = Serve(url, fake, tmp_path)
            await serve.start()
            await fake.wait_for(lambda: fake.ok("getUpdates"))
            await serve.stop(signal.SIGTERM)
            logs = serve.logs()
    finally:
        await drop_database(admin_url, url)
    assert "Traceback" not in logs and " ERROR " not in logs, logs
    assert "stopped" in logs
