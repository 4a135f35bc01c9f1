"""A RabbitMQ cluster on loopback, for `make up` with ``PAYSYS_RABBITMQ_NODES=3``.

Each node is the machine's own ``rabbitmq-server`` (Debian's package), run as the user of
`make up` with everything of its own: its name (``<cluster_name>-i@localhost``), its AMQP
and Erlang distribution ports (shared/rabbitmq.py), its configuration, data and logs in
``<run_dir>/rabbitmq/<node>``, no plugins, and one Erlang cookie for the whole cluster.
Nothing of the machine's RabbitMQ (``/etc/rabbitmq``, port 5672, its cookie) is read or
touched; the nodes only register with the machine's epmd, as every Erlang node does.

The nodes find each other by RabbitMQ's classic-config peer discovery (each lists the
others): started side by side, they form one cluster by themselves, under the lock the
discovery takes, with no ``join_cluster`` step. A node started again later (after a crash,
after `make down`) rejoins from its data directory.

Not supervisord's: the cluster must be up before the services start and go down after
they stop, and a node that dies is a fault to see (`make up` again starts it).
"""
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from shared.config import run_dir
from shared.rabbitmq import HOST, cluster_nodes

# Debian installs the scripts that run as the calling user here (those on the PATH, in
# /usr/sbin, switch to the rabbitmq user, whose files and cookie are the machine node's).
DEBIAN_SCRIPTS = Path("/usr/lib/rabbitmq/bin")
BOOT_TIMEOUT_S = 240
STOP_TIMEOUT_S = 60
# Each node may take this share of the machine's memory before it blocks publishers
# (RabbitMQ's default, 0.4, is for a node that has the machine to itself).
MEMORY_HIGH_WATERMARK = 0.15


class ClusterError(RuntimeError):
    """The cluster cannot start: what is missing or what failed, in words for the user."""


def scripts_dir():
    """Where ``rabbitmq-server`` and ``rabbitmqctl`` are, or None if not installed."""
    if (DEBIAN_SCRIPTS / "rabbitmq-server").exists():
        return DEBIAN_SCRIPTS
    found = shutil.which("rabbitmq-server")
    return Path(found).parent if found else None


@dataclass(frozen=True)
class ClusterNode:
    """One node and its files."""

    node: object  # shared.rabbitmq.Node
    directory: Path

    @property
    def name(self):
        return self.node.name

    @property
    def pid_file(self):
        return self.directory / "pid"

    def pid(self):
        """The pid of the running node, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid if _is_node(pid, self.pid_file) else None


def _is_node(pid, pid_file):
    """Is ``pid`` the live node of ``pid_file``? Not if it is a zombie (killed, not reaped
    yet), nor if the pid was reused by another process since (a pid file left by a crash
    or a reboot): the node's environment names its pid file. Where /proc cannot tell, yes."""
    proc = Path("/proc/{}".format(pid))
    try:
        if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
        environment = (proc / "environ").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return True
    return "RABBITMQ_PID_FILE={}".format(pid_file).encode() in environment


def stop_nodes(path):
    """Stop every node with files under ``path`` that runs, each cleanly (an Erlang VM
    shuts down in order on SIGTERM), side by side; their directory names. Found by their
    pid files, so `make down` stops a cluster whatever the settings of the moment say."""
    running = [member for member in (ClusterNode(None, directory) for directory in
                                     sorted(path.glob("*")) if (directory / "pid").exists())
               if member.pid() is not None]
    with ThreadPoolExecutor(max(1, len(running))) as pool:
        list(pool.map(_stop, running))
    return [member.directory.name for member in running]


def _stop(member):
    pid = member.pid()
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while member.pid() == pid and time.monotonic() < deadline:
        time.sleep(0.2)
    if member.pid() == pid:
        os.kill(pid, signal.SIGKILL)


def _taken(port):
    """Does a program listen on ``port``? Bound as the node binds it (SO_REUSEADDR, as
    Erlang's listeners are): the connections a killed node leaves in TIME_WAIT do not
    keep it from starting again."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


class Cluster:
    """The nodes of ``config``'s cluster, where they keep their files."""

    def __init__(self, config):
        from shared.settings import load
        from shared.shared_settings import SharedSettings

        settings = load(SharedSettings, config).rabbitmq
        self.path = run_dir(config) / "rabbitmq"
        self.home = self.path / "home"  # $HOME of the nodes and of rabbitmqctl: the cookie
        self.members = [ClusterNode(node, self.path / node.name.split("@")[0])
                        for node in cluster_nodes(settings.nodes, settings.cluster_port_base,
                                                  settings.cluster_name)]

    def member(self, index):
        return self.members[index - 1]

    # --- what each node is given ---

    def render_conf(self, member):
        """The node's rabbitmq.conf."""
        lines = [
            "listeners.tcp.1 = {}:{}".format(HOST, member.node.amqp_port),
            "vm_memory_high_watermark.relative = {}".format(MEMORY_HIGH_WATERMARK),
            "cluster_formation.peer_discovery_backend = classic_config",
        ]
        lines += ["cluster_formation.classic_config.nodes.{} = {}".format(i, other.name)
                  for i, other in enumerate(self.members, 1)]
        return "\n".join(lines) + "\n"

    def environment(self, member):
        """The environment of the node's server (and of ``rabbitmqctl`` talking to it):
        every file its own, none of the machine's RabbitMQ's (no RABBITMQ_* or ERL_* of
        the caller is passed on)."""
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": str(self.home),
            "RABBITMQ_CONF_ENV_FILE": str(member.directory / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(member.directory / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(member.directory / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(member.directory / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(member.directory / "data"),
            "RABBITMQ_LOG_BASE": str(member.directory / "logs"),
            "RABBITMQ_PID_FILE": str(member.pid_file),
            "RABBITMQ_NODENAME": member.name,
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(member.node.amqp_port),
            "RABBITMQ_DIST_PORT": str(member.node.dist_port),
            "ERL_EPMD_ADDRESS": HOST,
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                "-kernel inet_dist_use_interface {127,0,0,1}",
        })
        return env

    def _write_files(self):
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(20))
            cookie.chmod(0o400)  # Erlang refuses a cookie others may read
        for member in self.members:
            (member.directory / "logs").mkdir(parents=True, exist_ok=True)
            (member.directory / "rabbitmq.conf").write_text(self.render_conf(member))
            (member.directory / "rabbitmq-env.conf").write_text("")
            (member.directory / "enabled_plugins").write_text("[].\n")

    # --- life cycle ---

    def rabbitmqctl(self, member, *args, timeout_s=60):
        scripts = scripts_dir()
        return subprocess.run([str(scripts / "rabbitmqctl"), "-n", member.name, *args],
                              env=self.environment(member), capture_output=True, text=True,
                              timeout=timeout_s)

    def start(self):
        """Start every node that does not run, wait until each has booted and the cluster
        holds them all. The names of the nodes it started (none: all were running)."""
        scripts = scripts_dir()
        if scripts is None:
            raise ClusterError("PAYSYS_RABBITMQ_NODES > 1 runs rabbitmq-server, which is not "
                               "installed (Debian: apt-get install rabbitmq-server)")
        self._write_files()
        stopped = [member for member in self.members if member.pid() is None]
        self._check_ports(stopped)
        for member in stopped:
            self._spawn(scripts, member)
        with ThreadPoolExecutor(len(self.members)) as pool:
            list(pool.map(self._await_boot, self.members))
        self._await_members()
        return [member.name for member in stopped]

    def start_node(self, index):
        """Start node ``index`` again (it rejoins the cluster); wait until it has."""
        member = self.member(index)
        if member.pid() is None:
            self._check_ports([member])
            self._spawn(scripts_dir(), member)
        self._await_boot(member)
        self._await_members()

    def _check_ports(self, members):
        """Every port the nodes to start will take is free: else say so before any starts
        (a node whose port is taken would only fail to boot, minutes later)."""
        for member in members:
            for port in (member.node.amqp_port, member.node.dist_port):
                if _taken(port):
                    raise ClusterError(
                        "port {} of {} is taken by another program: choose other ports with "
                        "PAYSYS_RABBITMQ_CLUSTER_PORT_BASE".format(port, member.name))

    def _spawn(self, scripts, member):
        with open(member.directory / "logs" / "startup.log", "ab") as log:
            # -detached: the node outlives this command; a session of its own, so a
            # Ctrl-C of the caller's terminal does not reach it.
            subprocess.run([str(scripts / "rabbitmq-server"), "-detached"],
                           env=self.environment(member), stdout=log, stderr=log,
                           start_new_session=True, check=True, timeout=60)

    def _await_boot(self, member):
        # A detached node registers with epmd a moment after it is spawned; until then even
        # `await_startup` fails, so ask again until it answers.
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            try:
                if self.rabbitmqctl(member, "await_startup", "--timeout",
                                    str(max(1, int(remaining))),
                                    timeout_s=max(5, remaining)).returncode == 0:
                    return
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                raise ClusterError("{} did not boot within {} s: see {}".format(
                    member.name, BOOT_TIMEOUT_S, member.directory / "logs"))
            time.sleep(1)

    def running_nodes(self, member=None):
        """The nodes ``member`` (default: any running node) sees running in its cluster."""
        import json

        for asked in ([member] if member else self.members):
            if asked.pid() is None:
                continue
            status = self.rabbitmqctl(asked, "cluster_status", "--formatter", "json")
            if status.returncode == 0:
                return sorted(json.loads(status.stdout).get("running_nodes", []))
        return []

    def _await_members(self, timeout_s=60):
        expected = sorted(member.name for member in self.members)
        deadline = time.monotonic() + timeout_s
        while self.running_nodes() != expected:
            if time.monotonic() > deadline:
                raise ClusterError("the cluster runs {}, not {}".format(
                    self.running_nodes(), expected))
            time.sleep(1)

    def stop(self):
        """Stop every running node of the run dir; their names."""
        return stop_nodes(self.path)

    def kill(self, index):
        """SIGKILL node ``index`` (a crash: no goodbye to its peers); wait until it is gone."""
        member = self.member(index)
        pid = member.pid()
        if pid is None:
            raise ClusterError("{} does not run".format(member.name))
        os.kill(pid, signal.SIGKILL)
        while member.pid() == pid:
            time.sleep(0.1)

    def queues(self):
        """``{queue name: type}`` of the default vhost, as a running node lists them."""
        for member in self.members:
            if member.pid() is None:
                continue
            listed = self.rabbitmqctl(member, "list_queues", "name", "type", "--no-table-headers",
                                      "--quiet")
            if listed.returncode == 0:
                return dict(line.split("\t", 1) for line in listed.stdout.splitlines()
                            if "\t" in line)
        return {}


def status_lines(config):
    """For `paysys ps`: each node of the RabbitMQ cluster and whether it runs (from its
    pid file: no call to the node, so a hung node costs the listing nothing)."""
    from shared.rabbitmq import nodes_of

    if not nodes_of(config):
        return []
    states = []
    for member in Cluster(config).members:
        pid = member.pid()
        states.append("{} (127.0.0.1:{}) {}".format(
            member.name, member.node.amqp_port,
            "running, pid {}".format(pid) if pid else "DOWN (make up starts it)"))
    return ["RabbitMQ: " + ", ".join(states)]
