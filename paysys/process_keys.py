"""Each process of `make up` holds only the keys it reads.

The key set (`paysys keys`) stays where config.yml says (``<run_dir>/keys`` by default),
read by no service. Each process gets a directory of its own,
``<run_dir>/process-keys/<process>/``, holding copies of just the keys paysys/processes.py
says it reads, and its supervisord program points every key setting of its configuration
into that directory, so it never falls back to the shared key set. The copies are made
again at every `paysys up` and after every `paysys keys rotate`; a running process sees a
changed key file within a second (shared/votes.py).

All processes run as one user here, so this keeps a process from using keys it does not
need, not from reading them: containers (compose, Kubernetes) do that, each with a volume
of its own keys alone.
"""
import os
from pathlib import Path

from paysys.processes import held_keys, key_env, key_names, key_paths
from shared.catalog import process_names, service_for
from shared.config import run_dir

DIRECTORY = "process-keys"


def process_keys_dir(config, name):
    return run_dir(config) / DIRECTORY / name


def holdings(config):
    """``{process: {file name: the key set's file}}``: what each process holds."""
    paths = key_paths(config)
    return {name: {paths[kind].name: paths[kind]
                   for kind in held_keys(name, service_for(name).name, config)}
            for name in process_names(config)}


def environment(config):
    """``{process: {variable: value}}``: every key setting pointed into the process's own
    directory, whether it holds that key or not."""
    names = key_names(config)
    return {name: key_env(tuple(names), names, process_keys_dir(config, name),
                          every_variable=True)
            for name in process_names(config)}


def _copy(source, target):
    data = Path(source).read_bytes()
    if target.exists() and target.read_bytes() == data:
        return False
    temporary = target.with_name(target.name + ".new")
    temporary.write_bytes(data)
    temporary.chmod(0o600)
    os.replace(temporary, target)  # a process reloading it sees the old file or the new
    return True


def distribute(config):
    """Copy each process its keys, and remove from its directory whatever it does not
    hold. The names of the processes whose keys changed."""
    changed = []
    for name, files in holdings(config).items():
        directory = process_keys_dir(config, name)
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        touched = [file_name for file_name, source in files.items()
                   if _copy(source, directory / file_name)]
        for stray in directory.iterdir():
            if stray.name not in files:
                stray.unlink()
                touched.append(stray.name)
        if touched:
            changed.append(name)
    return changed
