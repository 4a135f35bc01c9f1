"""Racing calls against each other in tests: greenthreads, and connections that hold each
racer after its first statement until all of them have made it."""
import eventlet


def run_together(*calls):
    """Run each call in its own greenthread; each one's result or exception."""
    outcomes = [None] * len(calls)

    def run(index, call):
        try:
            outcomes[index] = call()
        except Exception as error:  # noqa: BLE001 - the outcome is what the test inspects
            outcomes[index] = error

    threads = [eventlet.spawn(run, index, call) for index, call in enumerate(calls)]
    for thread in threads:
        thread.wait()
    return outcomes


class GatedConnection:
    """A connection that waits at ``barrier`` after its first statement, so every racer
    has read the same state before any of them writes."""

    def __init__(self, connection, barrier):
        self._connection = connection
        self._barrier = barrier
        self._statements = 0

    def execute(self, *args, **kwargs):
        result = self._connection.execute(*args, **kwargs)
        self._statements += 1
        if self._statements == 1:
            self._barrier.wait()
        return result

    def __getattr__(self, name):
        return getattr(self._connection, name)
