"""One progress line while the benchmark runs: which phase, how long it has run, how long is left.

On a terminal the line rewrites itself every second; into a file or a pipe (CI,
`make bench | tee`) it prints a plain line every PLAIN_EVERY_S seconds so logs
stay readable.
"""
import sys
import threading
import time

PLAIN_EVERY_S = 10


class Progress:
    def __init__(self, phases, stream=None):
        self.phases = phases
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty()
        self.number = 0

    def wait(self, name, expected_s, is_done, poll_s=1.0):
        """Show phase ``name`` until ``is_done()`` is true; expected_s sets 'left'."""
        self.number += 1
        started_s = time.monotonic()
        last_plain_s = None
        while not is_done():
            elapsed_s = time.monotonic() - started_s
            line = "[{}/{}] {:<34} {:>4.0f} s elapsed, {}".format(
                self.number, self.phases, name, elapsed_s, _left(expected_s, elapsed_s))
            if self.interactive:
                self.stream.write("\r" + line.ljust(90))
                self.stream.flush()
            elif last_plain_s is None or elapsed_s - last_plain_s >= PLAIN_EVERY_S:
                self.stream.write(line + "\n")
                self.stream.flush()
                last_plain_s = elapsed_s
            time.sleep(poll_s)
        done = "[{}/{}] {:<34} done in {:.0f} s".format(
            self.number, self.phases, name, time.monotonic() - started_s)
        self.stream.write(("\r" + done.ljust(90) if self.interactive else done) + "\n")
        self.stream.flush()

    def run(self, name, expected_s, work):
        """Show phase ``name`` while ``work()`` runs in a thread; its result, or its error
        raised here."""
        outcome = {}

        def target():
            try:
                outcome["result"] = work()
            except BaseException as error:  # noqa: BLE001 - raised in the caller's thread
                outcome["error"] = error

        worker = threading.Thread(target=target, daemon=True)
        worker.start()
        self.wait(name, expected_s, lambda: not worker.is_alive())
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    def say(self, text):
        self.stream.write(text + "\n")
        self.stream.flush()


def _left(expected_s, elapsed_s):
    if expected_s is None:
        return "waiting"
    left_s = expected_s - elapsed_s
    return "about {:.0f} s left".format(left_s) if left_s > 0 else "finishing"
