"""supervisord for the swarm: the config is generated from peers.json and the tracker
settings, never edited by hand, and driven through supervisord's XML-RPC interface
(the same one supervisorctl uses).

Program names: ``tracker`` (then ``tracker2``, ``tracker3``... with ``--trackers N``)
and one per peer id, all in ``[group:swarm]``, so supervisorctl addresses them as
``swarm:peer1`` (or ``swarm:*``).
"""
from __future__ import annotations

import configparser
import io
import shlex
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from supervisor.xmlrpc import SupervisorTransport

from ctl.nodes import REPO, PeerSpec, SupervisorGone, node_env, peer_args
from node import config
from protocol.errors import ErrorCode, TransportError, ZorrentError

SUPERVISORD_START_S = 10.0


@dataclass(frozen=True)
class TrackerSpec:
    """``count`` trackers on ``host``, ports ``port``, ``port + 1``...; several need a shared
    (mongodb://) store, since a SQLite file takes one tracker."""

    host: str
    port: int
    store_uri: str | None = None
    count: int = 1
    others: tuple[str, ...] = ()     # trackers run elsewhere (other hosts) that the peers use too

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ZorrentError("--trackers must be at least 1", ErrorCode.BAD_INPUT)
        if self.count > 1 and not (self.store_uri or "").startswith(("mongodb://", "mongodb+srv://")):
            raise ZorrentError(f"{self.count} trackers need one shared store: add --store mongodb://HOST:PORT/DB "
                               f"(a SQLite file takes one tracker)", ErrorCode.BAD_INPUT)

    @property
    def endpoint(self) -> str:
        return config.endpoint(self.host, self.port)

    @property
    def names(self) -> list[str]:
        return ["tracker" if i == 0 else f"tracker{i + 1}" for i in range(self.count)]

    @property
    def endpoints(self) -> list[str]:
        """Every tracker the peers use: the ones run here, then the others."""
        local = [config.endpoint(self.host, self.port + i) for i in range(self.count)]
        return local + [e for e in self.others if e not in local]

    def args(self, i: int) -> list[str]:
        """Tracker ``i`` listens on ``port + i``, and its HTTP door on its default port
        (``config.http_port_for``), which no other tracker of the block takes."""
        args = ["tracker", "--host", self.host, "--port", str(self.port + i)]
        return args + ["--store", self.store_uri] if self.store_uri else args

    def endpoints_for(self, i: int) -> str:
        """Peer ``i``'s tracker list: all of them, rotated so the peers' load is spread."""
        eps = self.endpoints
        k = i % len(eps)
        return ",".join(eps[k:] + eps[:k])


@dataclass(frozen=True)
class WebSpec:
    host: str = config.DEFAULT_WEB_HOST
    port: int = config.DEFAULT_WEB_PORT

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


Launcher = Callable[[str], list[str]]    # program name -> argv prefix (a lab's ``ip netns exec NS``)


EXPANDED_TWICE = frozenset({"stdout_logfile", "stderr_logfile"})   # supervisor 4: read with get(), then expand()


def _value(text: object, key: str = "") -> str:
    """A value supervisord reads back as written: it expands ``%(name)s`` in every value
    (a program's log files twice), so a literal ``%`` is ``%%`` (``%%%%``); a line break
    would end the value."""
    text = str(text)
    if "\n" in text or "\r" in text:
        raise ZorrentError(f"cannot write {text[:80]!r} into the supervisord config: it has a line break",
                           ErrorCode.BAD_INPUT)
    return text.replace("%", "%%%%" if key in EXPANDED_TWICE else "%%")


def _env_value(text: str) -> str:
    """One ``environment=`` value, quoted for supervisord's KEY="v",KEY2='v2' parser (no
    escapes: the quote used must not be in the value, and it strips quotes at the ends)."""
    for quote in ('"', "'"):
        if quote not in text and not text.endswith(("'", '"')):
            return f"{quote}{text}{quote}"
    raise ZorrentError(f"cannot pass {text[:80]!r} to supervisord: a path with both kinds of quote "
                       f"(or ending in one) is not representable in its environment= line", ErrorCode.BAD_INPUT)


def _program(name: str, args: list[str], workdir: Path, autostart: bool, prefix: list[str]) -> dict[str, str]:
    log = (config.logs_dir() / f"{name}.log").resolve()
    output = config.output_dir().resolve()
    keys = (f",{config.KEYS_ENV}={_env_value(str(Path(config.keys_dir()).resolve()))}"   # a private swarm
            if config.keys_dir() else "")
    return {
        "command": shlex.join([*prefix, sys.executable, "-m", "ctl", *args]),   # supervisord splits it with shlex
        "directory": str(workdir),
        "environment": f"PYTHONPATH={_env_value(str(REPO))},ZORRENT_OUTPUT={_env_value(str(output))}" + keys,
        "autostart": "true" if autostart else "false",
        "autorestart": "true",
        "startsecs": str(config.SUPERVISOR_STARTSECS),
        "startretries": str(config.SUPERVISOR_STARTRETRIES),
        "stopsignal": "TERM",
        "stopwaitsecs": str(config.SUPERVISOR_STOPWAITSECS),
        "stopasgroup": "true",
        "killasgroup": "true",
        "redirect_stderr": "true",
        "stdout_logfile": str(log),
        "stdout_logfile_maxbytes": config.SUPERVISOR_LOG_MAXBYTES,
        "stdout_logfile_backups": str(config.SUPERVISOR_LOG_BACKUPS),
    }


def render(peers: list[PeerSpec], tracker: TrackerSpec, tracker_autostart: bool,
           launcher: Launcher | None = None, web: WebSpec = WebSpec()) -> str:
    """The whole supervisord.conf, written with configparser (every value escaped for
    supervisord's own expansion, so a ``%`` or a quote in a path cannot break it).

    The tracker and web programs are always there; start-peer leaves them stopped (a
    foreground tracker may own the port), ``swarm up`` starts them. Peers do not autostart
    either: ``start_peers`` starts them a few at a time, after the tracker, and
    ``autorestart`` brings back any that dies. The web view runs in this namespace (a lab's
    bridge reaches every host from here)."""
    launcher = launcher or (lambda name: [])
    workdir = Path.cwd()
    sock = config.supervisor_socket().resolve()
    logs = config.logs_dir().resolve()
    sections: dict[str, dict[str, str]] = {
        "unix_http_server": {"file": str(sock), "chmod": "0700"},
        "supervisord": {"logfile": str(logs / "supervisord.log"), "logfile_maxbytes": config.SUPERVISOR_LOG_MAXBYTES,
                        "pidfile": str(config.run_dir().resolve() / "supervisord.pid"), "childlogdir": str(logs),
                        "directory": str(workdir), "identifier": "zorrent"},
        "rpcinterface:supervisor": {"supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"},
        "supervisorctl": {"serverurl": f"unix://{sock}"},
    }
    for i, name in enumerate(tracker.names):
        sections[f"program:{name}"] = _program(name, tracker.args(i), workdir, tracker_autostart, launcher(name))
    sections["program:web"] = _program("web", ["web", "--host", web.host, "--port", str(web.port),
                                               "--tracker", ",".join(tracker.endpoints)], workdir, False, [])
    for i, spec in enumerate(peers):      # started by start_peers, a few at a time, after the tracker
        sections[f"program:{spec.peer_id}"] = _program(spec.peer_id, peer_args(spec, tracker.endpoints_for(i)),
                                                       workdir, False, launcher(spec.peer_id))
    names = ",".join([*tracker.names, "web", *(p.peer_id for p in peers)])
    sections[f"group:{config.SUPERVISOR_GROUP}"] = {"programs": names}
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str                  # keep keys as written (supervisor.rpcinterface_factory)
    for section, values in sections.items():
        parser[section] = {key: _value(value, key) for key, value in values.items()}
    out = io.StringIO()
    out.write(f"; Generated by zorrent from peers.json and the tracker settings: do not edit.\n"
              f"; supervisorctl -c {_value(config.supervisor_conf_path().resolve())} status\n\n")
    parser.write(out, space_around_delimiters=False)
    return out.getvalue()


def write(text: str) -> Path:
    path = config.supervisor_conf_path()
    config.ensure_dir(path.parent)
    config.ensure_dir(config.logs_dir())
    config.ensure_dir(config.run_dir(), 0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def rpc():
    """supervisord's XML-RPC proxy over its unix socket."""
    sock = config.supervisor_socket().resolve()
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(
        None, None, serverurl=f"unix://{sock}"))


def call(method: str, *args):
    """One XML-RPC call to supervisord (``call("startProcess", name, False)``). Its socket gone
    (supervisord died, or was stopped meanwhile) is one line, a TransportError, not a traceback;
    a Fault is the caller's, or handle_errors' one line."""
    import http.client

    try:
        return getattr(rpc().supervisor, method)(*args)
    except (OSError, http.client.HTTPException) as exc:      # gone, or died in the middle of a reply
        raise SupervisorGone(f"supervisord stopped answering on {config.supervisor_socket()} "
                             f"({getattr(exc, 'strerror', None) or exc or type(exc).__name__})") from None


def running() -> bool:
    try:
        return rpc().supervisor.getState()["statename"] == "RUNNING"
    except Exception:
        return False


def start_or_update(conf: Path) -> str:
    """Start supervisord on ``conf``, or have the running one reread and update."""
    if not running():
        res = subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(conf.resolve())],
                             env=node_env(), capture_output=True, text=True)
        if res.returncode != 0:
            raise ZorrentError(f"supervisord did not start: {(res.stderr or res.stdout).strip()[:300]}",
                               ErrorCode.BAD_INPUT)
        deadline = time.monotonic() + SUPERVISORD_START_S
        while not running():
            if time.monotonic() > deadline:
                raise TransportError(f"supervisord did not answer on {config.supervisor_socket()}")
            time.sleep(0.1)
        return "started"
    added, changed, removed = call("reloadConfig")[0]
    for group in removed + changed:
        call("stopProcessGroup", group)
        call("removeProcessGroup", group)
    for group in added + changed:
        call("addProcessGroup", group)
    return "updated" if added or changed or removed else "unchanged"


def process_info() -> list[dict]:
    try:
        return rpc().supervisor.getAllProcessInfo()
    except Exception:
        return []


def start(name: str, wait: bool = True) -> None:
    """``supervisorctl start``: with ``wait``, returns once the program is RUNNING (after startsecs)."""
    try:
        call("startProcess", f"{config.SUPERVISOR_GROUP}:{name}", wait)
    except xmlrpc.client.Fault as fault:
        if "ALREADY_STARTED" not in fault.faultString:
            raise ZorrentError(f"supervisord could not start {name}: {fault.faultString}") from None


def start_trackers(tracker: TrackerSpec) -> None:
    """``swarm up``'s first step: each tracker, the next once it answers, then the web view
    (which answers once it has asked them; see ``nodes.wait_web``)."""
    from ctl import nodes

    for name, endpoint in zip(tracker.names, tracker.endpoints):
        start(name)
        nodes.wait_tracker(endpoint, log_name=name)
    start("web")


def start_peers(specs: list[PeerSpec]) -> None:
    """``supervisorctl start`` for the peers, paced: those not running yet are started
    ``config.PEER_START_WINDOW`` at a time (each next one once an earlier one answers a
    ping). Returns once supervisord says RUNNING for every peer and every peer answers.
    One that goes FATAL (its port taken, say) does not stop the others: once they run,
    PeersNotStarted names each that failed and why; supervisord leaves it FATAL."""
    from ctl import nodes

    states = {p["name"]: p["statename"] for p in process_info()}
    todo = [s for s in specs if states.get(s.peer_id) in ("STOPPED", "EXITED", "FATAL")]
    failed: dict[str, str] = {}
    try:
        nodes.start_paced(todo, lambda spec: start(spec.peer_id, wait=False), _wait_answers)
    except nodes.PeersNotStarted as exc:
        failed = exc.failed
    up = [s for s in specs if s.peer_id not in failed]
    wait_running([s.peer_id for s in up])
    for spec in up:
        nodes.wait_peer(spec, None)
    if failed:
        raise nodes.PeersNotStarted(failed, len(specs))


def _wait_answers(spec: PeerSpec, timeout_s: float = config.PEER_START_TIMEOUT_S) -> None:
    """The peer answers a ping; fail at once if supervisord gave up on it (FATAL)."""
    from ctl import nodes

    def gone() -> str | None:
        state = call("getProcessInfo", f"{config.SUPERVISOR_GROUP}:{spec.peer_id}")["statename"]
        if state != "FATAL":
            return None
        why = nodes.last_log_line(spec.peer_id)
        return "is FATAL in supervisord" + (f": {why}" if why else "")

    nodes.wait_answering(nodes.ping_peer(spec), f"peer {spec.peer_id} on {spec.ip}:{spec.port}", spec.peer_id,
                         timeout_s, gone)


def wait_running(names: list[str], timeout_s: float = config.READY_TIMEOUT_S) -> None:
    """Start the programs not already starting, and return once supervisord says RUNNING
    for each, that is once each has stayed up for startsecs (what ``supervisorctl start`` waits for)."""
    states = {p["name"]: p["statename"] for p in process_info()}
    for name in names:
        if states.get(name) in ("STOPPED", "EXITED", "FATAL"):
            start(name, wait=False)
    deadline = time.monotonic() + timeout_s
    while True:
        states = {p["name"]: p["statename"] for p in process_info()}
        waiting = [n for n in names if states.get(n) != "RUNNING"]
        if not waiting:
            return
        failed = [n for n in waiting if states.get(n) == "FATAL"]
        if failed or time.monotonic() > deadline:
            name = (failed or waiting)[0]
            raise TransportError(f"supervisord says {name} is {states.get(name, 'unknown')} "
                                 f"(see {config.logs_dir() / (name + '.log')})")
        time.sleep(config.STATUS_POLL_S)


def shutdown() -> None:
    """Stop every program (SIGTERM, then SIGKILL after stopwaitsecs), then supervisord."""
    if not running():
        return
    try:
        call("stopProcessGroup", config.SUPERVISOR_GROUP)
    except xmlrpc.client.Fault:
        pass
    call("shutdown")
    deadline = time.monotonic() + config.SUPERVISOR_STOPWAITSECS + 5
    pidfile = config.run_dir() / "supervisord.pid"
    while running() or pidfile.exists():
        if time.monotonic() > deadline:
            raise TransportError("supervisord did not shut down in time")
        time.sleep(0.1)
