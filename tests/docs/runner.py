"""Run a documented block as a reader would: in a throw-away copy of the checkout, on free ports.

Each block gets its own workspace: symlinks to the checkout's files, `.venv` pointing at the venv
running the tests, and every `file NAME` block of its document. Commands run with that venv's
`bin` first on PATH and without the developer's `ROCKETMQ_*`/`RMQKIT_*` variables.

- Documented ports (`127.0.0.1:9876`, `--port 10911`, `listenPort=10911`, ...) become free ports,
  the same free port for the same number everywhere in the block and its files; the default
  ports of `rmqkit serve`/`rmqkit namesrv` are made explicit so they move too.
- `rmqkit serve`, `rmqkit namesrv`, `rmqkit run`, `rmqkit dashboard` and `make serve` are
  servers: each starts in the background and must be ready before the next command: servers
  print a "listening on" line (the dashboard its URL) and then must answer a request; `rmqkit
  run` is started with `-v`, so that its log says when the app is running (what it does is
  shown by the commands after it). At the end of the block each must still be running, and must
  exit 0 after SIGTERM (servers: saying `stopped cleanly`).
- Other commands run in order with `set -e`; each must exit 0.
- `make` never reinstalls the venv (`-o .venv/.installed-stamp`); `make test` runs as `make -n
  test`, since it would run this test.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rmqkit.protocol.codes import RequestCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.remoting.client import RemotingClient
from rmqkit.testing.polling import check_for
from tests.docs.blocks import REPO, DocBlock, commands

BIN = Path(sys.executable).parent
VENV = BIN.parent
STAMP = ".venv/.installed-stamp"
NOT_LINKED = frozenset({"rmqkit-data", "build", "dist"})
"""Top-level entries of the checkout a workspace leaves out (besides hidden ones): data."""
NAMESRV_PORT, BROKER_PORT, DASHBOARD_PORT = 9876, 10911, 8080
FOREGROUND_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 40.0
STOP_TIMEOUT_S = 60.0

_PORT = re.compile(
    r"(?P<pre>\b(?:127\.0\.0\.1|localhost|0\.0\.0\.0):"
    r"|--(?:namesrv-)?port[ =]"
    r"|\b(?:listenPort|haListenPort)\s*[=:]\s*"
    r"|\b[A-Z][A-Z0-9_]*PORT=)"
    r"(?P<port>\d{4,5})\b"
)
_ENV = re.compile(r"^\s*((?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*)(.*)$", re.S)
_SERVER = re.compile(
    r"^(?:\S*/)?rmqkit(?:\s+-v|\s+--verbose)?\s+(serve|namesrv|run|dashboard)\b"
)
_MAKE = re.compile(r"^make\b")
_COMMENT = re.compile(r"\s+#.*$")
_taken: set[int] = set()
_taken_lock = threading.Lock()


class DocTestFailure(AssertionError):
    """A documented command or program failed; the message is the block's transcript."""


def free_port() -> int:
    """A port nobody listens on, never handed out twice in this test run."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        with _taken_lock:
            if port not in _taken:
                _taken.add(port)
                return port


@dataclass
class PortMap:
    """Documented port -> the free port used instead, for one block."""

    ports: dict[int, int] = field(default_factory=dict)
    allocate: Callable[[], int] = free_port

    def port(self, documented: int) -> int:
        if documented not in self.ports:
            self.ports[documented] = self.allocate()
        return self.ports[documented]

    def rewrite(self, text: str) -> str:
        def sub(m: re.Match[str]) -> str:
            n = int(m["port"])
            return m["pre"] + str(self.port(n) if n >= 1024 else n)

        return _PORT.sub(sub, text)


class Workspace:
    """A throw-away checkout for one block (see the module docstring)."""

    def __init__(self, root: Path, files: dict[str, str]) -> None:
        self.root = root
        self.ports = PortMap()
        root.mkdir(parents=True, exist_ok=True)
        for entry in REPO.iterdir():
            if not entry.name.startswith(".") and entry.name not in NOT_LINKED:
                (root / entry.name).symlink_to(entry)
        (root / ".venv").symlink_to(VENV)
        for name, text in files.items():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self.ports.rewrite(text), encoding="utf-8")
        # A reader types these commands in a plain shell: not inside `make test`, whose
        # MAKELEVEL/MAKEFLAGS would make a nested make print "Entering directory" lines.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ROCKETMQ_", "RMQKIT_", "PYTEST_", "VIRTUAL_ENV"))
               and k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES")}  # fmt: skip
        env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1",
                   PIP_NO_INDEX="1", VIRTUAL_ENV=str(VENV))  # fmt: skip
        self.env = env
        self.transcript: list[str] = []

    def fail(self, what: str) -> DocTestFailure:
        tail = "\n".join(self.transcript)[-12_000:]
        return DocTestFailure(f"{what}\n--- transcript (ports {self.ports.ports}) ---\n{tail}")

    def run(self, script: str, *, timeout_s: float = FOREGROUND_TIMEOUT_S) -> str:
        """Run shell commands to completion; each must succeed."""
        self.transcript.append(f"$ {script}")
        try:
            done = subprocess.run(
                ["bash", "-c", "set -e\n" + script], cwd=self.root, env=self.env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout_s,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            out = exc.output or b""
            self.transcript.append(out.decode(errors="replace") if isinstance(out, bytes) else out)
            raise self.fail(f"still running after {timeout_s:.0f} s") from None
        self.transcript.append(done.stdout)
        if done.returncode != 0:
            raise self.fail(f"exit status {done.returncode}")
        return done.stdout


def _split_env(command: str) -> tuple[dict[str, str], str]:
    m = _ENV.match(command)
    assert m is not None
    env = dict(kv.split("=", 1) for kv in m[1].split())
    return env, m[2]


def _uncomment(command: str) -> str:
    return _COMMENT.sub("", command) if "\n" not in command else command


def make_fixed(command: str, *, dry: bool = False) -> str:
    """`make ...` that never reinstalls the venv (and only prints its recipe when `dry`)."""
    env, rest = _split_env(_uncomment(command))
    if not _MAKE.match(rest):
        return command
    flags = f"-o {STAMP}" + (" -n" if dry else "")
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return f"{prefix} make {flags}{rest[4:]}".strip()


def dry_run(command: str) -> str:
    """The cheap form of an expensive command: `make -n`, or the command with `--help`."""
    _, rest = _split_env(command)
    if _MAKE.match(rest):
        return make_fixed(command, dry=True)
    return _uncomment(command) + " --help"


@dataclass
class Server:
    """A long-running documented command, started in the background."""

    kind: str  # serve, namesrv, run or dashboard
    command: str
    env: dict[str, str]
    proc: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def start(self, ws: Workspace) -> None:
        ws.transcript.append(f"$ {self.command} &")
        self.proc = subprocess.Popen(
            ["bash", "-c", "exec " + self.command], cwd=ws.root, env={**ws.env, **self.env},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                with self.cond:
                    self.lines.append(line)
                    self.cond.notify_all()
        with self.cond:
            self.lines.append("")  # end of output
            self.cond.notify_all()

    @property
    def output(self) -> str:
        with self.cond:
            return "".join(self.lines)

    def wait_line(self, pattern: str, ws: Workspace) -> re.Match[str]:
        rx = re.compile(pattern)
        found: list[re.Match[str]] = []

        def seen() -> bool:
            for line in self.lines:
                if m := rx.search(line):
                    found.append(m)
                    return True
            return bool(self.lines) and self.lines[-1] == ""  # exited

        with self.cond:
            self.cond.wait_for(seen, timeout=READY_TIMEOUT_S)
        if not found:
            ws.transcript.append(self.output)
            raise ws.fail(f"{self.command!r} never printed a line matching {pattern!r}")
        return found[0]

    def wait_ready(self, ws: Workspace) -> None:
        if self.kind == "serve":
            m = self.wait_line(r"listening on (\S+:\d+)(?:, NameServer on (\S+:\d+))?", ws)
            _answers(m[1], RequestCode.GET_BROKER_RUNTIME_INFO, ws)
            if m[2]:
                _answers(m[2], RequestCode.GET_BROKER_CLUSTER_INFO, ws)
        elif self.kind == "namesrv":
            m = self.wait_line(r"NameServer listening on port (\d+)", ws)
            _answers(f"127.0.0.1:{m[1]}", RequestCode.GET_BROKER_CLUSTER_INFO, ws)
        elif self.kind == "dashboard":
            m = self.wait_line(r"dashboard of \S+ on (http://\S+)", ws)
            _serves_http(m[1], ws)
        else:
            self.wait_line(r"rmqkit app running", ws)

    def stop(self, ws: Workspace) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            ws.transcript.append(self.output)
            raise ws.fail(f"{self.command!r} exited ({self.proc.returncode}) before the block end")
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            ws.transcript.append(self.output)
            what = f"{self.command!r} did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM"
            raise ws.fail(what) from None
        with self.cond:
            self.cond.wait_for(lambda: bool(self.lines) and self.lines[-1] == "", timeout=10)
        ws.transcript.append(f"[{self.command} after SIGTERM]\n{self.output}")
        if code != 0:
            raise ws.fail(f"{self.command!r} exited {code} after SIGTERM")
        if self.kind != "run" and "stopped cleanly" not in self.output:
            raise ws.fail(f"{self.command!r} did not say 'stopped cleanly'")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _answers(addr: str, code: RequestCode, ws: Workspace) -> None:
    async def probe() -> None:
        async with RemotingClient() as client:

            async def ok() -> bool:
                try:
                    await client.invoke(addr, RemotingCommand(code), 3)
                except Exception:  # not up yet: refused, reset, timed out
                    return False
                # Any answer will do: a server answers only once it is started (a broker with
                # aclEnable answers this unsigned probe with a refusal).
                return True

            await check_for(ok, timeout=READY_TIMEOUT_S, interval=0.05, message=f"{addr} {code}")

    try:
        asyncio.run(probe())
    except AssertionError as exc:
        raise ws.fail(f"{addr} does not answer {code.name}: {exc}") from None


def _serves_http(url: str, ws: Workspace) -> None:
    def ok() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=3):
                return True
        except urllib.error.HTTPError:
            return True  # an answer, if not a page (a cluster not up yet, a password asked)
        except OSError:
            return False

    try:
        asyncio.run(check_for(ok, timeout=READY_TIMEOUT_S, interval=0.05, message=url))
    except AssertionError as exc:
        raise ws.fail(f"{url} does not answer: {exc}") from None


def server_for(command: str, ws: Workspace) -> Server | None:
    """The server a command starts (with its default ports made explicit), or None."""
    env, rest = _split_env(_uncomment(command))
    if _MAKE.match(rest) and rest.split()[1:2] == ["serve"]:
        recipe = ws.run(make_fixed(rest, dry=True)).strip().splitlines()
        if len(recipe) != 1:
            raise ws.fail(f"make serve should run one command, not {recipe}")
        found = server_for(recipe[0], ws)
        if found is not None:
            found.env = {**env, **found.env}
        return found
    m = _SERVER.match(rest)
    if m is None:
        return None
    kind, args = m[1], rest.split()
    if kind == "serve":
        config = _option(args, "--config", "-c")
        if "--port" not in args:
            text = (ws.root / config).read_text() if config and (ws.root / config).exists() else ""
            if not re.search(r"^\s*listenPort\b", text, re.M):
                rest += f" --port {ws.ports.port(BROKER_PORT)}"
        if config is None and "--namesrv-port" not in args:
            rest += f" --namesrv-port {ws.ports.port(NAMESRV_PORT)}"
    elif kind == "namesrv" and "--port" not in args:
        rest += f" --port {ws.ports.port(NAMESRV_PORT)}"
    elif kind == "dashboard" and "--port" not in args:
        rest += f" --port {ws.ports.port(DASHBOARD_PORT)}"
    elif kind == "run" and not re.search(r"\s(-v|--verbose)\s", rest):
        rest = re.sub(r"rmqkit\s+run\b", "rmqkit -v run", rest, count=1)
    return Server(kind, rest, env)


def _option(args: list[str], *names: str) -> str | None:
    for i, a in enumerate(args):
        if a in names and i + 1 < len(args):
            return args[i + 1]
    return None


def run_commands(block: DocBlock, ws: Workspace) -> None:
    """Run a command block: foreground commands in order, servers in the background."""
    servers: list[Server] = []
    chunk: list[str] = []

    def flush() -> None:
        if chunk:
            ws.run("\n".join(chunk))
            chunk.clear()

    try:
        for raw in commands(block):
            cmd = ws.ports.rewrite(raw)
            _, rest = _split_env(cmd)
            if block.has("dry-run") or re.match(r"^make\s+test\b", rest):
                chunk.append(dry_run(cmd))
                continue
            server = server_for(cmd, ws)
            if server is None:
                chunk.append(make_fixed(cmd))
                continue
            flush()
            server.start(ws)
            servers.append(server)
            server.wait_ready(ws)
        flush()
        for server in reversed(servers):
            server.stop(ws)
    finally:
        for server in servers:
            server.kill()


def run_python(block: DocBlock, ws: Workspace) -> None:
    """Run a Python block as a program; it must exit 0."""
    name = block.arg("file") or f"doc_example_{block.line}.py"
    path = ws.root / name
    if not path.exists():
        path.write_text(ws.ports.rewrite(block.text), encoding="utf-8")
    ws.run(f"python {shlex.quote(name)}")


def run_block(block: DocBlock, files: dict[str, str], root: Path) -> str:
    """Run one block in a new workspace under `root`; returns its transcript.

    Raises:
        DocTestFailure: a command or program failed; the message has the transcript.
    """
    ws = Workspace(root, files)
    if block.lang == "python":
        run_python(block, ws)
    else:
        run_commands(block, ws)
    return "\n".join(ws.transcript)
