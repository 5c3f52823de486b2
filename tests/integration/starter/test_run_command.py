"""`rmqkit run module:app` in a real subprocess: embedded cluster, a listener, SIGTERM stops it
cleanly after the in-flight message is done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rmqkit.client.message import Message
from rmqkit.client.producer import Producer
from rmqkit.testing.polling import check_for

pytestmark = pytest.mark.integration

SERVICE = '''
from pathlib import Path
from rmqkit.starter import RocketApp, RocketSettings, rocket_listener

OUT = Path(__file__).with_name("out.txt")

@rocket_listener(topic="jobs", group="workers", consume_from_where="CONSUME_FROM_FIRST_OFFSET")
async def work(job: dict) -> None:
    with OUT.open("a") as f:
        f.write(job["name"] + "\\n")

def make_app() -> RocketApp:
    app = RocketApp(RocketSettings(_env_file=None))

    @app.on_startup
    def announce() -> None:
        Path(__file__).with_name("ns.txt").write_text(app.name_server or "")

    @app.on_shutdown
    def bye() -> None:
        with OUT.open("a") as f:
            f.write("stopped\\n")

    return app
'''


async def test_run_serves_until_sigterm(tmp_path: Path) -> None:
    (tmp_path / "jobs_service.py").write_text(textwrap.dedent(SERVICE))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROCKETMQ_")}
    proc = subprocess.Popen(  # noqa: ASYNC220 -- starting it does not block; waits are bounded
        [sys.executable, "-m", "rmqkit.cli.main", "run", "jobs_service:make_app"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        ns_file = tmp_path / "ns.txt"
        await check_for(lambda: ns_file.exists() and ns_file.read_text(), timeout=20)
        async with Producer("p", ns_file.read_text()) as producer:
            await producer.send(Message("jobs", b'{"name": "first"}'))
        out = tmp_path / "out.txt"
        await check_for(lambda: out.exists() and "first" in out.read_text(), timeout=20)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stdout.read() if proc.stdout else ""
        assert out.read_text().splitlines() == ["first", "stopped"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def test_run_reports_a_bad_target(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rmqkit.cli.main", "run", "nowhere:app"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "cannot import 'nowhere'" in result.stderr
