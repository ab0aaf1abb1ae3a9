"""A socat pseudo-terminal pair for the serial e2e tests and the benchmark.

socat -d -d pty,raw,echo=0,link=DIR/a pty,raw,echo=0,link=DIR/b connects two
pseudo-terminals: bytes written to DIR/a come out of DIR/b, which edgewatch
opens as its serial device. Stopping socat closes both far ends (edgewatch sees
a hang-up) and removes the links; starting it again with the same names is the
device coming back.
"""

import os
import shutil
import signal
import subprocess
import termios
import time
import tty

SOCAT = shutil.which("socat")


class SocatPair:
    def __init__(self, folder):
        self.a = os.path.join(folder, "a")
        self.b = os.path.join(folder, "b")
        self.proc = None
        self.fd = -1
        self.log = os.path.join(folder, "socat.log")

    def start(self, timeout=10.0):
        """Starts socat and waits (bounded) until both links exist."""
        if SOCAT is None:
            raise RuntimeError("socat is not installed (Debian package socat)")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [SOCAT, "-d", "-d", "pty,raw,echo=0,link=%s" % self.a,
                 "pty,raw,echo=0,link=%s" % self.b],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not (os.path.exists(self.a) and os.path.exists(self.b)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("socat did not create %s and %s (exit %s)" % (
                    self.a, self.b, self.proc.poll()))
            time.sleep(0.02)
        self.fd = os.open(self.a, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd, termios.TCSANOW)
        return self

    def write(self, data):
        """Writes all of `data` (bytes) to end a."""
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def stop(self):
        """Stops socat (SIGTERM: it closes the ptys and removes the links)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None
        for link in (self.a, self.b):
            if os.path.islink(link):
                os.unlink(link)
