"""Drive `rmqkit serve` and real RocketMQ clients (ali-ons, the C++ client) as subprocesses.

The clients live in .interop/ (installed by `make interop-deps`, see tools/interop/install.sh);
their driver scripts are tools/interop/{alions_client.js,cpp_client.py}. Each script prints one
JSON object a line; a `Client` collects them as `events`. Everything here is bounded by timeouts.
Set RMQKIT_INTEROP_DEBUG=1 to run the broker with DEBUG logging (kept in the test's tmp dir).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rmqkit.protocol.acl import SessionCredentials
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.record import StoredMessage, decode_records
from rmqkit.remoting.client import RemotingClient
from rmqkit.testing import check_for

REPO = Path(__file__).resolve().parents[2]
INTEROP = REPO / ".interop"
TOOLS = REPO / "tools" / "interop"
NODE = INTEROP / "bin" / "node"
ALIONS_MODULES = INTEROP / "alions" / "node_modules"
CPP_PYTHON = INTEROP / "venv_cpp" / "bin" / "python"

# `rmqkit serve` prints "... listening on <broker>, NameServer on <ns>" (embedded NameServer) or
# "... listening on <broker>, registering with <ns>" (--config); `rmqkit namesrv` its port.
LISTENING = re.compile(rb"listening on (\S+), (?:NameServer on|registering with) (\S+)")
NAMESRV_LISTENING = re.compile(rb"NameServer listening on port (\d+)")
Event = dict[str, Any]
# librocketmq 0.4.4 logs each rebalance as "client id:<cid> of topic:<t>[doRebalance:..]" lines
# (one per group member), then "... averageSize is:<n>, startIndex is:<first queue>[allocate:..]".
CPP_REBALANCE_TOPIC = re.compile(r"of topic:(\S+?)\[doRebalance")
CPP_ALLOCATION = re.compile(r"averageSize is:(\d+), startIndex is:(\d+)\[allocate")


def require_clients() -> None:
    """Fail (never skip) when the client installs are missing: CI must run these tests."""
    missing = [
        str(p.relative_to(REPO))
        for p in (NODE, ALIONS_MODULES / "ali-ons" / "package.json", CPP_PYTHON)
        if not p.exists()
    ]
    if missing:
        pytest.fail(
            f"interop clients not installed ({', '.join(missing)}): run `make interop-deps`"
        )


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(text)


@dataclass
class Client:
    """One client subprocess; `events` fills as it prints JSON lines."""

    name: str
    proc: asyncio.subprocess.Process
    log: Path
    native_log: Path | None = None  # the C++ client's own log file
    events: list[Event] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"event": "raw", "line": line})

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.get("event") == kind]

    @property
    def messages(self) -> list[Event]:
        return self.of("message")

    @property
    def bodies(self) -> list[str]:
        return [m["body"] for m in self.messages]

    def queues(self) -> set[int] | None:
        """The queue ids of the latest allocation the client reported (ali-ons consumers)."""
        reports = self.of("queues")
        return {int(q) for q in reports[-1]["queues"]} if reports else None

    def cpp_allocation(self, topic: str) -> set[int] | None:
        """The queue ids the C++ client's latest rebalance of `topic` gave it, from its log."""
        if self.native_log is None or not self.native_log.exists():
            return None
        current, found = "", None
        for line in self.native_log.read_text(errors="replace").splitlines():
            if m := CPP_REBALANCE_TOPIC.search(line):
                current = m.group(1)
            elif (m := CPP_ALLOCATION.search(line)) and current == topic:
                size, start = int(m.group(1)), int(m.group(2))
                found = set(range(start, start + size))
        return found

    def describe(self) -> str:
        def cut(key: str, value: object) -> object:
            # An error's whole message (its first lines) says what failed; other strings are cut.
            limit = 600 if key == "message" else 40
            if isinstance(value, str) and len(value) > limit:
                return value[:limit] + "..."
            return value

        shown = [{k: cut(k, v) for k, v in e.items()} for e in self.events[-30:]]
        text = f"{self.name}: last events={shown!r}\nstderr tail:\n{tail(self.log)}"
        if self.native_log is not None:
            text += f"\n{self.native_log.name} tail:\n{tail(self.native_log)}"
        return text

    async def wait_for(
        self, condition: Callable[[], object], within_s: float = 20.0, what: str = ""
    ) -> None:
        def check() -> object:
            if self.of("error"):
                raise RuntimeError(f"client reported an error\n{self.describe()}")
            ok = condition()
            if not ok and self.proc.returncode is not None:
                raise RuntimeError(f"client exited {self.proc.returncode}\n{self.describe()}")
            return ok

        try:
            await check_for(check, timeout=within_s, interval=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{what or 'condition'}: {exc}\n{self.describe()}") from None

    async def finish(self, within_s: float = 20.0) -> int:
        """Close stdin (consumers shut down on EOF), then wait for the exit code."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            rc = await asyncio.wait_for(self.proc.wait(), within_s)
        except TimeoutError:
            await self.kill()
            raise AssertionError(
                f"{self.name} did not exit in {within_s}s\n{self.describe()}"
            ) from None
        if self.reader is not None:
            await asyncio.wait_for(self.reader, 5)
        return rc

    async def finish_ok(self, within_s: float = 20.0) -> None:
        rc = await self.finish(within_s)
        assert rc == 0, f"{self.name} exited {rc}\n{self.describe()}"
        assert self.of("closed"), f"{self.name} did not close cleanly\n{self.describe()}"
        assert not self.of("error"), f"{self.name} reported errors\n{self.describe()}"

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        if self.reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.reader, 5)


@dataclass
class Daemon:
    """An `rmqkit serve` or `rmqkit namesrv` subprocess; its stdout collects in `out`."""

    name: str
    proc: asyncio.subprocess.Process
    log: Path
    out: bytearray = field(default_factory=bytearray)
    reader: asyncio.Task[None] | None = None

    async def first_line(self, pattern: re.Pattern[bytes], within_s: float) -> re.Match[bytes]:
        """Wait for the line announcing the listening address, then keep reading in the back."""
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), within_s)
        except TimeoutError:
            line = b""
        self.out += line
        found = pattern.search(line)
        if not found:
            await self.kill()
            raise AssertionError(f"{self.name} printed {line!r}\n{tail(self.log)}")
        self.reader = asyncio.create_task(self._read())
        return found

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.out += line

    async def stop(self, within_s: float) -> None:
        """SIGTERM; the process must exit 0 after printing "stopped cleanly"."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = await asyncio.wait_for(self.proc.wait(), within_s)
        except TimeoutError:
            await self.kill()
            raise AssertionError(f"{self.name} ignored SIGTERM\n{tail(self.log)}") from None
        finally:
            if self.reader is not None:
                await asyncio.wait_for(self.reader, 5)
        out = self.out.decode(errors="replace")
        assert rc == 0, f"{self.name} exited {rc}: {out}\n{tail(self.log)}"
        assert "stopped cleanly" in out, out

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        if self.reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.reader, 5)


class Lab:
    """One `rmqkit serve` subprocess plus the clients a test starts against it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"  # the C++ client logs to $HOME/logs/rocketmq-cpp
        self.home.mkdir(parents=True, exist_ok=True)
        self.server: Daemon | None = None
        self.namesrv_server: Daemon | None = None  # only with start_server(properties=...)
        self.clients: list[Client] = []
        self.broker = ""
        self.namesrv = ""
        self.credentials: SessionCredentials | None = None
        """Signs the lab's own requests (`request`, `create_topic`) for an aclEnable broker."""
        self._seq = 0

    def _remoting(self) -> RemotingClient:
        sign = self.credentials.sign if self.credentials is not None else None
        return RemotingClient(before_request=sign)

    async def _daemon(self, name: str, args: list[str], env: dict[str, str]) -> Daemon:
        rmqkit = Path(sys.executable).with_name("rmqkit")
        argv = [str(rmqkit)] if rmqkit.exists() else [sys.executable, "-m", "rmqkit.cli.main"]
        if os.environ.get("RMQKIT_INTEROP_DEBUG"):  # DEBUG log into rmqkit-*.log
            argv.append("-v")
        log = self.root / f"{name}.log"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *argv, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=err, cwd=self.root, env={**os.environ, **env},
            )  # fmt: skip
        return Daemon(name, proc, log)

    async def start_server(
        self,
        within_s: float = 15.0,
        env: dict[str, str] | None = None,
        properties: dict[str, str] | None = None,
    ) -> None:
        """`rmqkit serve` with its embedded NameServer, `env` added to its environment.

        With `properties`, the broker reads them from a broker.properties file instead
        (`rmqkit serve --config`), and so registers with a separate `rmqkit namesrv`.
        """
        env = env or {}
        data = self.root / "data"
        if properties is None:
            args = ["serve", "--port", "0", "--namesrv-port", "0", "--data-dir", str(data)]
        else:
            self.namesrv_server = await self._daemon("rmqkit-namesrv", ["namesrv", "--port", "0"],
                                                     env)  # fmt: skip
            port = (await self.namesrv_server.first_line(NAMESRV_LISTENING, within_s)).group(1)
            props = {
                "namesrvAddr": f"127.0.0.1:{port.decode()}",
                "storePathRootDir": str(data / "store"),
                **properties,
            }
            conf = self.root / "broker.properties"
            conf.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
            args = ["serve", "--config", str(conf), "--port", "0"]
        self.server = await self._daemon("rmqkit-serve", args, env)
        found = await self.server.first_line(LISTENING, within_s)
        self.broker, self.namesrv = (g.decode() for g in found.groups())

    @property
    def server_log(self) -> Path:
        return self.root / "rmqkit-serve.log"

    async def stop_server(self, within_s: float = 20.0) -> None:
        """SIGTERM; the server (and its NameServer) must exit 0 after "stopped cleanly"."""
        assert self.server is not None
        await self.server.stop(within_s)
        if self.namesrv_server is not None:
            await self.namesrv_server.stop(within_s)

    async def request(
        self, code: int, ext: dict[str, str], body: bytes = b"", addr: str = ""
    ) -> RemotingCommand:
        """One request to the broker (or `addr`) with the rmqkit client; the raw answer."""
        client = self._remoting()
        try:
            cmd = RemotingCommand(code, ext_fields=ext, body=body)
            return await client.invoke(addr or self.broker, cmd, 5.0)
        finally:
            await client.close()

    async def max_offset(self, topic: str, queue_id: int = 0) -> int:
        ext = {"topic": topic, "queueId": str(queue_id)}
        r = await self.request(RequestCode.GET_MAX_OFFSET, ext)
        assert r.code == 0, (r.code, r.remark)
        return int(r.ext_fields["offset"])

    async def query_messages(self, topic: str, key: str, max_num: int = 32) -> list[StoredMessage]:
        """QUERY_MESSAGE by key (KEYS or UNIQ_KEY) over all time; [] when none is indexed."""
        ext = {
            "topic": topic, "key": key, "maxNum": str(max_num), "beginTimestamp": "0",
            "endTimestamp": str(2**62),
        }  # fmt: skip
        r = await self.request(RequestCode.QUERY_MESSAGE, ext)
        if r.code == ResponseCode.QUERY_NOT_FOUND:
            return []
        assert r.code == 0, (r.code, r.remark)
        return decode_records(r.body)

    async def create_topic(self, topic: str, queues: int = 4, within_s: float = 10.0) -> None:
        """UPDATE_AND_CREATE_TOPIC on the broker, then wait until the NameServer routes it."""
        client = self._remoting()
        try:
            ext = {
                "topic": topic, "defaultTopic": "TBW102", "readQueueNums": str(queues),
                "writeQueueNums": str(queues), "perm": "6", "topicFilterType": "SINGLE_TAG",
            }  # fmt: skip
            cmd = RemotingCommand(RequestCode.UPDATE_AND_CREATE_TOPIC, ext_fields=ext)
            r = await client.invoke(self.broker, cmd, 5.0)
            assert r.code == 0, r.remark

            async def routed() -> bool:
                q = RemotingCommand(RequestCode.GET_ROUTEINFO_BY_TOPIC, ext_fields={"topic": topic})
                return (await client.invoke(self.namesrv, q, 5.0)).code == 0

            await check_for(routed, timeout=within_s, interval=0.05, message=f"route of {topic}")
        finally:
            await client.close()

    async def _spawn(
        self, name: str, argv: list[str], env: dict[str, str], native_log: str = ""
    ) -> Client:
        self._seq += 1
        log = self.root / f"{self._seq:02d}-{name}.log"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=err, env={**os.environ, **env}, cwd=self.root,
            )  # fmt: skip
        client = Client(name, proc, log)
        if native_log:
            client.native_log = self.home / native_log.format(pid=proc.pid)
        client.reader = asyncio.create_task(client._read())
        self.clients.append(client)
        return client

    def _config(self, role: str, **cfg: Any) -> str:
        return json.dumps({"role": role, "nameSrv": self.namesrv, "deadlineMs": 60_000, **cfg})

    async def alions(self, name: str, role: str, **cfg: Any) -> Client:
        """An ali-ons producer or push consumer (see tools/interop/alions_client.js)."""
        argv = [str(NODE), str(TOOLS / "alions_client.js"), self._config(role, **cfg)]
        return await self._spawn(name, argv, {"NODE_PATH": str(ALIONS_MODULES)})

    async def cpp(self, name: str, role: str, **cfg: Any) -> Client:
        """A C++-client producer or push consumer (see tools/interop/cpp_client.py)."""
        argv = [str(CPP_PYTHON), str(TOOLS / "cpp_client.py"), self._config(role, **cfg)]
        log = "logs/rocketmq-cpp/{pid}_rocketmq-cpp.log.0"
        return await self._spawn(name, argv, {"HOME": str(self.home)}, log)

    async def produce(self, kind: str, topic: str, messages: list[Event], **cfg: Any) -> Client:
        """Run a producer to completion; every send must be SEND_OK (ali-ons) / OK (C++)."""
        start = self.alions if kind == "alions" else self.cpp
        group = cfg.pop("group", f"PID_{topic}_{self._seq}")
        producer = await start(f"{kind}-producer", "produce", topic=topic, group=group,
                               messages=messages, **cfg)  # fmt: skip
        await producer.finish_ok(within_s=30)
        sent = producer.of("sent")
        assert len(sent) == len(messages), producer.describe()
        assert {s["status"] for s in sent} <= {"SEND_OK", "OK"}, producer.describe()
        return producer

    async def close(self) -> None:
        """Best-effort cleanup after a failed test: kill what is still running."""
        for client in self.clients:
            await client.kill()
        for daemon in (self.server, self.namesrv_server):
            if daemon is not None:
                await daemon.kill()
