"""The process supervisor: supervisord runs every service as its own OS process.

Why supervisord: it daemonizes (so `make up` returns to the shell), restarts a
process that dies (kill -9 a service and it is back in seconds: the recovery
the chaos experiments rely on), stops process groups cleanly, keeps a log per
program, and is pure Python from PyPI, so the project installs it itself.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from paysys import process_keys
from shared.catalog import process_names, service_for
from shared.config import config_path, kafka_bootstrap_servers, kafka_is_embedded, run_dir

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
KAFKA_PROGRAM = "kafka"
# supervisord stops one group at a time but every program of a group at once:
# the services share a group, so `make down` takes one graceful stop, not eleven.
SERVICES_GROUP = "paysys"


class RunDir:
    """Where one running system keeps its supervisord files and logs."""

    def __init__(self, config, path=None):
        # ``path``: another supervisord's files (paysys/postgres_ha.py runs one of its own).
        self.path = Path(path) if path else run_dir(config)
        self.conf = self.path / "supervisord.conf"
        self.pidfile = self.path / "supervisord.pid"
        self.socket = self.path / "supervisor.sock"
        self.logs = self.path / "logs"

    def supervisord_pid(self):
        """The pid of a live supervisord of this run dir, else None."""
        try:
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None


def _environment(variables):
    # supervisord reads %(name)s in values: a literal % is %%.
    return ",".join('{}="{}"'.format(name, str(value).replace("%", "%%"))
                    for name, value in sorted(variables.items()))


def _program(name, command, logs, priority, environment=None, user=None):
    return "\n".join([
        "[program:{}]".format(name),
        "command={}".format(command),
    ] + (["environment={}".format(_environment(environment))] if environment else [])
      + (["user={}".format(user)] if user else []) + [
        "directory={}".format(ROOT),
        "priority={}".format(priority),
        "autostart=true",
        # A crashed process is started again at once, for ever (it may be waiting
        # for a dependency to come back).
        "autorestart=true",
        "startsecs=3",
        "startretries=1000",
        "stopsignal=TERM",
        "stopwaitsecs=20",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        "stdout_logfile={}".format(logs / (name + ".log")),
        "stdout_logfile_maxbytes=20MB",
        "stdout_logfile_backups=2",
        "",
    ])


def render_conf(config, run_dir, tansu_binary=None):
    """The supervisord.conf of this configuration."""
    env = "PAYSYS_CONFIG=\"{}\",PYTHONUNBUFFERED=\"1\"".format(config_path().resolve())
    sections = [
        "[unix_http_server]\nfile={}\nchmod=0700\n".format(run_dir.socket),
        "[supervisord]\npidfile={}\nlogfile={}\nidentifier=paysys\n"
        "directory={}\nminfds=4096\nenvironment={}\n".format(
            run_dir.pidfile, run_dir.logs / "supervisord.log", ROOT, env),
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
        "[supervisorctl]\nserverurl=unix://{}\n".format(run_dir.socket),
    ]
    if kafka_is_embedded(config):
        address = "tcp://{}".format(kafka_bootstrap_servers(config))
        sections.append(_program(
            KAFKA_PROGRAM,
            "{} broker --listener-url {} --advertised-listener-url {} --silent".format(
                tansu_binary, address, address),
            run_dir.logs, priority=10))
    names = process_names(config)
    # Each process's key settings point into its own directory (paysys/process_keys.py).
    key_environment = process_keys.environment(config)
    for name in names:
        sections.append(_program(name, "{} -m paysys.runner {}".format(sys.executable, name),
                                 run_dir.logs,
                                 priority=200 if service_for(name).name == "gateway" else 100,
                                 environment=key_environment[name]))
    sections.append("[group:{}]\nprograms={}\npriority=100\n".format(
        SERVICES_GROUP, ",".join(names)))
    return "\n".join(sections)


def supervisorctl(run_dir, *args, capture=False):
    command = [str(BIN / "supervisorctl"), "-c", str(run_dir.conf), *args]
    if capture:
        return subprocess.run(command, capture_output=True, text=True)
    return subprocess.run(command)


def installed():
    """supervisord comes with the ``local`` extra (images run without it)."""
    return (BIN / "supervisord").exists()


def start(config, run_dir, tansu_binary=None):
    """Start supervisord, or make a running one match the configuration. Idempotent."""
    run_dir.logs.mkdir(parents=True, exist_ok=True)
    process_keys.distribute(config)
    run_dir.conf.write_text(render_conf(config, run_dir, tansu_binary))
    if run_dir.supervisord_pid():
        # Already up: pick up any change of configuration, start whatever is stopped.
        supervisorctl(run_dir, "update", capture=True)
        supervisorctl(run_dir, "start", "all", capture=True)
        return False
    subprocess.run([str(BIN / "supervisord"), "-c", str(run_dir.conf)], check=True)
    return True


def stop(run_dir, timeout_s=60):
    """Stop every program and supervisord itself; wait until they are gone."""
    pid = run_dir.supervisord_pid()
    if pid is None:
        return False
    # SIGTERM makes supervisord stop each program (TERM, then KILL after
    # stopwaitsecs) before it exits itself.
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return True
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    return True
