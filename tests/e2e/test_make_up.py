"""README's first command, as a user runs it: `make up`, one request, `make down`."""
import json
import os
import re
import shlex
import subprocess

import pytest

from harness import servers
from harness.sandbox import System

pytestmark = pytest.mark.system


def test_make_up_serves_the_printed_example_and_make_down_leaves_nothing_behind(tmp_path):
    system = System("e2e_{}".format(os.getpid()), tmp_path / "run", redis_db=13)
    system.prepare()
    try:
        up = system.make("up")
        assert up.returncode == 0, up.stdout + up.stderr + system.log_tail()
        assert "The gateway listens on {}".format(system.url) in up.stdout

        example = re.search(r"^Try:\s+(curl .*)$", up.stdout, re.MULTILINE).group(1)
        answer = subprocess.run(shlex.split(example), capture_output=True, text=True, timeout=30)
        assert answer.returncode == 0 and json.loads(answer.stdout)["status"] == "ready", answer

        again = system.make("up")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "Already running" in again.stdout

        ps = system.make("ps")
        assert ps.returncode == 0
        assert len(re.findall(r"RUNNING", ps.stdout)) == 10, ps.stdout + system.log_tail()
        pids = list(system.process_ids().values())
        supervisord_pid = int((system.run_dir / "supervisord.pid").read_text())
    finally:
        down = system.make("down")
        servers.delete_vhost(system.vhost)
        servers.drop_database(system.admin_dsn, system.database)

    assert down.returncode == 0, down.stdout + down.stderr
    still_alive = [pid for pid in pids + [supervisord_pid] if _alive(pid)]
    assert still_alive == []
    assert not servers.port_open("127.0.0.1", system.port), "the gateway port is still open"
    assert not servers.port_open("127.0.0.1", system.kafka_port), "the Kafka port is still open"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that exited but was not yet reaped is gone for every practical purpose.
    with open("/proc/{}/stat".format(pid)) as stat:
        return stat.read().split(") ")[1][0] != "Z"
