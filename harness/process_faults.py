"""Faults to inject into a running system's processes, by pid.

    kill(pid)              # SIGKILL: no cleanup; supervisord starts it again
    with paused(pid): ...  # SIGSTOP for the block, SIGCONT after, whatever happens

A paused process keeps its sockets open and answers nothing, which is what a
hung or swapped-out service looks like to its peers: the harder fault for
timeouts and circuit breakers, since nothing is refused.
"""
import os
import signal
from contextlib import contextmanager


def kill(pid):
    os.kill(pid, signal.SIGKILL)


def pause(pid):
    os.kill(pid, signal.SIGSTOP)


def resume(pid):
    os.kill(pid, signal.SIGCONT)


@contextmanager
def paused(*pids):
    """Pause ``pids`` for the block; resumed on the way out even if the block fails."""
    stopped = []
    try:
        for pid in pids:
            pause(pid)
            stopped.append(pid)
        yield
    finally:
        for pid in stopped:
            resume(pid)
