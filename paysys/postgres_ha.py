"""PostgreSQL with automatic failover (``PAYSYS_POSTGRES_HA=1``): pg_auto_failover.

`paysys up` starts three PostgreSQL instances on loopback, each under its pg_autoctl
keeper: the monitor (port_base), which watches the nodes and decides failovers, and two
data nodes (port_base + 1, + 2), a primary and a synchronous standby. Their data is in
<run_dir>/postgres-ha; a supervisord of their own (<run_dir>/postgres-ha/supervisord.conf,
logs beside the services' in <run_dir>/logs) runs the keepers and starts a killed one
again, so a lost primary comes back by itself and rejoins as the standby.

Why a supervisord apart from the services': the database must be up, created and
migrated before the services start, and `make down` stops the services before it.

The standby is synchronous (pg_auto_failover's default with one standby: its
``synchronous_standby_names`` is ``ANY 1 (…)``), so a commit is acknowledged only once the
standby has it: a transfer acknowledged before the primary dies survives the failover.
The keepers run as the OS user ``postgres`` when `paysys up` runs as root (PostgreSQL
refuses root), else as the user who runs it. Authentication is ``trust`` on loopback, as
a development system's; docs/operations.md says what a production setup changes.
"""
import glob
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import psycopg2

from paysys import supervisor
from shared.config import run_dir

MONITOR = "monitor"
NODES = ("node_1", "node_2")
FORMATION = "default"
PROGRAM_PREFIX = "pg_"
HOST = "127.0.0.1"
OS_USER_AS_ROOT = "postgres"
INSTALL_HINT = (
    "PAYSYS_POSTGRES_HA=1 needs pg_auto_failover: on Debian 12 `apt-get install "
    "postgresql-15-auto-failover` (as root); or start without it (PAYSYS_POSTGRES_HA=0).")
# States of a data node once the pair is complete (pg_auto_failover's FSM).
PRIMARY, SECONDARY = "primary", "secondary"
# A node taking a base backup from the primary waits for a checkpoint (spread: minutes);
# asking the primary for one while a node is in these states makes it take seconds.
JOINING = ("wait_standby", "catchingup")


def _shared(config):
    from shared.settings import load
    from shared.shared_settings import SharedSettings

    return load(SharedSettings, config)


def enabled(config):
    return _shared(config).postgres_ha.enabled


def pg_autoctl():
    return shutil.which("pg_autoctl")


def postgres_bindir():
    """The bin directory of the PostgreSQL version pg_auto_failover is built for (Debian
    installs its extension beside that version's server)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/lib/pgautofailover.so"))
    if found:
        return str(Path(found[-1]).parent.parent / "bin")
    pg_config = shutil.which("pg_config")
    if pg_config:
        return subprocess.run([pg_config, "--bindir"], capture_output=True,
                              text=True).stdout.strip()
    return None


def missing():
    """What keeps pg_auto_failover from running here, with how to get it; "" if nothing."""
    if not pg_autoctl() or not postgres_bindir():
        return INSTALL_HINT
    return ""


class Cluster:
    """The layout of one system's pg_auto_failover formation: directories, ports, URLs."""

    def __init__(self, config):
        shared = _shared(config)
        settings = shared.postgres_ha
        self.config = config
        self.link = run_dir(config) / "postgres-ha"
        self.root = data_root(run_dir(config))
        self.run_dir = supervisor.RunDir(config, self.root)
        self.logs = run_dir(config) / "logs"
        self.monitor_port = settings.monitor_port
        self.node_ports = dict(zip(NODES, settings.node_ports))
        self.database_url = shared.database.url
        self.connect_timeout_s = shared.database.connect_timeout_s
        self.ready_timeout_s = shared.supervisor.ready_timeout_s
        self.failover_timeout_s = settings.failover_timeout_s

    def pgdata(self, name):
        return self.root / name

    def program(self, name):
        return PROGRAM_PREFIX + name

    @property
    def monitor_uri(self):
        return "postgres://autoctl_node@{}:{}/pg_auto_failover?sslmode=disable".format(
            HOST, self.monitor_port)

    def node_dsn(self, name, database="postgres"):
        return "postgresql://postgres@{}:{}/{}?connect_timeout={}".format(
            HOST, self.node_ports[name], database, self.connect_timeout_s)

    def environment(self):
        """pg_autoctl keeps its configuration and state under XDG directories: the
        formation's own, so two systems on one machine never share them."""
        return {
            # Only system directories: the keepers' user may not read the caller's.
            "PATH": "{}:/usr/local/bin:/usr/bin:/bin".format(postgres_bindir() or "/usr/bin"),
            "HOME": str(self.root),
            "XDG_CONFIG_HOME": str(self.root / "config"),
            "XDG_DATA_HOME": str(self.root / "share"),
            "XDG_RUNTIME_DIR": str(self.root / "run"),
        }

    def command(self, name):
        """`pg_autoctl create … --run`: creates the node the first time, and only runs it
        afterwards (pg_autoctl finds its configuration and goes on)."""
        common = ["--pgdata", str(self.pgdata(name)), "--pgctl",
                  os.path.join(postgres_bindir() or "", "pg_ctl"), "--hostname", HOST,
                  "--listen", HOST, "--auth", "trust", "--no-ssl"]
        if name == MONITOR:
            arguments = ["create", "monitor", "--pgport", str(self.monitor_port)] + common
        else:
            arguments = ["create", "postgres", "--pgport", str(self.node_ports[name]),
                         "--name", name, "--monitor", self.monitor_uri,
                         "--dbname", _database_name(self.database_url),
                         "--username", "postgres"] + common
        return " ".join(shlex.quote(part)
                        for part in [pg_autoctl() or "pg_autoctl"] + arguments + ["--run"])

    def render_conf(self):
        user = OS_USER_AS_ROOT if os.geteuid() == 0 else None
        sections = [
            "[unix_http_server]\nfile={}\nchmod=0700\n".format(self.run_dir.socket),
            "[supervisord]\npidfile={}\nlogfile={}\nidentifier=paysys-postgres-ha\n"
            "directory={}\n".format(self.run_dir.pidfile, self.logs / "supervisord-pg.log",
                                    self.root),
            "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = "
            "supervisor.rpcinterface:make_main_rpcinterface\n",
            "[supervisorctl]\nserverurl=unix://{}\n".format(self.run_dir.socket),
        ]
        for priority, name in enumerate((MONITOR,) + NODES, 1):
            sections.append(supervisor._program(
                self.program(name), self.command(name), self.logs, priority=priority,
                environment=self.environment(), user=user))
        return "\n".join(sections)

    # --- running it ---

    def prepare(self):
        """The directories, owned by the user the keepers run as."""
        directories = (self.root, self.root / "config", self.root / "share", self.root / "run")
        self.link.parent.mkdir(parents=True, exist_ok=True)
        for path in directories:
            path.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            import pwd

            owner = pwd.getpwnam(OS_USER_AS_ROOT)
            for path in directories:
                os.chown(path, owner.pw_uid, owner.pw_gid)
            if self.root == self.link:
                # The keepers' user must reach its directories through the run dir (a
                # temporary run dir is 0700): let it pass through, not list.
                run_path = self.root.parent
                os.chmod(run_path, os.stat(run_path).st_mode | 0o111)
            elif not self.link.is_symlink():
                self.link.symlink_to(self.root)  # where to look, from the run dir

    def start(self):
        """Start the keepers' supervisord (or make a running one match); True if started."""
        self.prepare()
        self.run_dir.conf.write_text(self.render_conf())
        if self.run_dir.supervisord_pid():
            self.supervisorctl("update")
            self.supervisorctl("start", "all")
            return False
        subprocess.run([str(supervisor.BIN / "supervisord"), "-c", str(self.run_dir.conf)],
                       check=True)
        return True

    def stop(self):
        return supervisor.stop(self.run_dir)

    def remove(self):
        """Throw the formation away, data and all (a sandbox's, once stopped)."""
        shutil.rmtree(self.root, ignore_errors=True)
        if self.link.is_symlink():
            self.link.unlink()

    def supervisorctl(self, *args):
        return supervisor.supervisorctl(self.run_dir, *args, capture=True)

    def keeper_pid(self, name):
        """The pid of the node's keeper (the leader of its process group), or None."""
        status = self.supervisorctl("status", self.program(name)).stdout
        parts = status.split()
        if "RUNNING" in parts and "pid" in parts:
            return int(parts[parts.index("pid") + 1].rstrip(","))
        return None

    # --- what the monitor says ---

    def states(self):
        """``{node name: (reported state, assigned state, port)}`` from the monitor."""
        connection = psycopg2.connect(self.monitor_uri, connect_timeout=self.connect_timeout_s)
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT nodename, reportedstate::text, goalstate::text, nodeport "
                    "FROM pgautofailover.node WHERE formationid = %s", (FORMATION,))
                return {name: (reported, goal, port)
                        for name, reported, goal, port in cursor.fetchall()}
        finally:
            connection.close()

    def primary(self):
        """The node the monitor has made primary and that says so, or None."""
        for name, (reported, goal, _) in self._states_or_empty().items():
            if reported == goal and reported in (PRIMARY, "wait_primary", "single"):
                return name
        return None

    def healthy(self):
        """A primary and a synchronous standby, both as the monitor wants them."""
        states = self._states_or_empty()
        wanted = sorted([PRIMARY, SECONDARY])
        return (len(states) == len(NODES)
                and sorted(reported for reported, goal, _ in states.values()
                           if reported == goal) == wanted)

    def _states_or_empty(self):
        try:
            return self.states()
        except psycopg2.Error:
            return {}

    def hurry_base_backups(self):
        """A joining node's base backup waits for a checkpoint on the primary: ask for one
        now (a spread one takes minutes)."""
        states = self._states_or_empty()
        if not any(goal in JOINING for _, goal, _ in states.values()):
            return
        for name, (reported, _, _) in states.items():
            if reported in (PRIMARY, "wait_primary", "single"):
                try:
                    connection = psycopg2.connect(self.node_dsn(name), connect_timeout=2)
                    connection.autocommit = True
                    with connection.cursor() as cursor:
                        cursor.execute("CHECKPOINT")
                    connection.close()
                except psycopg2.Error:
                    pass

    def set_failover_timeouts(self):
        """The monitor fails a silent primary over after ``failover_timeout_s`` and lets
        the standby take writes ``failover_timeout_s`` + 5 s later, by when a primary that is
        only cut off has demoted itself (its keeper's network_partition_timeout): never two
        primaries. Applied at every `up` (a reload, no restart)."""
        timeout_ms = self.failover_timeout_s * 1000
        monitor_settings = {
            "pgautofailover.health_check_period": min(5000, timeout_ms // 2),
            "pgautofailover.node_considered_unhealthy_timeout": timeout_ms,
            "pgautofailover.primary_demote_timeout": timeout_ms + 5000,
        }
        connection = psycopg2.connect(
            "postgresql://postgres@{}:{}/pg_auto_failover".format(HOST, self.monitor_port),
            connect_timeout=self.connect_timeout_s)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                for name, value in monitor_settings.items():
                    cursor.execute("ALTER SYSTEM SET {} = {}".format(name, int(value)))
                cursor.execute("SELECT pg_reload_conf()")
        finally:
            connection.close()
        for name in NODES:
            self.pg_autoctl_as_keeper("config", "set", "--pgdata", str(self.pgdata(name)),
                                      "timeout.network_partition_timeout",
                                      str(self.failover_timeout_s))
            self.pg_autoctl_as_keeper("reload", "--pgdata", str(self.pgdata(name)))

    def pg_autoctl_as_keeper(self, *arguments):
        """Run pg_autoctl as the keepers' user, in their environment."""
        command = ["env"] + ["{}={}".format(key, value)
                             for key, value in self.environment().items()]
        command += [pg_autoctl()] + list(arguments)
        if os.geteuid() == 0:
            command = ["runuser", "-u", OS_USER_AS_ROOT, "--"] + command
        return subprocess.run(command, capture_output=True, text=True, cwd=self.root)

    def wait_healthy(self, timeout_s, progress=None):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.healthy():
                return True
            self.hurry_base_backups()
            if progress:
                progress()
            time.sleep(1)
        return False

    def describe(self):
        states = self._states_or_empty()
        if not states:
            return "the monitor on {}:{} does not answer".format(HOST, self.monitor_port)
        return ", ".join("{} ({}:{}) {}{}".format(
            name, HOST, port, reported, "" if reported == goal else " → " + goal)
            for name, (reported, goal, port) in sorted(states.items()))


def data_root(run_path):
    """Where the formation keeps its data: <run_dir>/postgres-ha, unless the keepers'
    user (``postgres``, when run as root) cannot reach the run dir (a run dir in /root, or
    in a test's private temporary directory); then a directory of that user's home named
    after the run dir, which <run_dir>/postgres-ha links to."""
    wanted = run_path / "postgres-ha"
    if os.geteuid() != 0 or _reachable_by(run_path.resolve().parent, OS_USER_AS_ROOT):
        return wanted
    import hashlib
    import pwd

    digest = hashlib.sha1(str(run_path.resolve()).encode()).hexdigest()[:12]
    return Path(pwd.getpwnam(OS_USER_AS_ROOT).pw_dir) / "paysys-ha" / digest


def _reachable_by(path, user):
    """Can ``user`` pass through ``path`` and every directory above it?"""
    import pwd

    account = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, account.pw_gid))
    for directory in [path] + list(path.parents):
        if not directory.exists():
            continue  # made by `up` as its user, with the umask's x for others
        mode = os.stat(directory)
        if not (mode.st_mode & 0o001
                or (mode.st_uid == account.pw_uid and mode.st_mode & 0o100)
                or (mode.st_gid in groups and mode.st_mode & 0o010)):
            return False
    return True


def _database_name(url):
    from shared.pg_urls import database_of

    return database_of(url) or "postgres"


def up(config, out=print):
    """`paysys up`'s first step with PAYSYS_POSTGRES_HA=1: the formation running with a
    primary and a synchronous standby. 0, or 1 with what is wrong said."""
    problem = missing()
    if problem:
        out("The system cannot start: {}".format(problem))
        return 1
    cluster = Cluster(config)
    started = cluster.start()
    out("{} pg_auto_failover: monitor on {}:{}, nodes on {} (data in {})".format(
        "Started" if started else "Running:", HOST, cluster.monitor_port,
        ", ".join("{}:{}".format(HOST, port) for port in cluster.node_ports.values()),
        cluster.root))
    out("Waiting for a primary and a synchronous standby", end="", flush=True)
    if cluster.wait_healthy(cluster.ready_timeout_s,
                            progress=lambda: out(".", end="", flush=True)):
        out(" {}.".format(cluster.describe()))
        cluster.set_failover_timeouts()
        return 0
    out("\nNo primary and standby after {} s: {}. See {}/pg_*.log.".format(
        cluster.ready_timeout_s, cluster.describe(), cluster.logs))
    return 1


def down(config):
    """Stop the keepers (and so the instances) if they run; True if they did."""
    cluster = Cluster(config)
    return cluster.run_dir.supervisord_pid() is not None and cluster.stop()


def status_lines(config):
    """For `paysys ps`: each node's state as the monitor reports it."""
    if not enabled(config) and not Cluster(config).run_dir.supervisord_pid():
        return []
    return ["PostgreSQL (pg_auto_failover): " + Cluster(config).describe()]
