"""Helpers shared by the end-to-end tests of the edgewatch binary.

Standard library only. The tests are run by meson (tests/integration/meson.build),
which passes:

  EDGEWATCH_BIN          the edgewatch executable
  EDGEWATCH_PLUGIN_PATH  build/plugins (the loader also looks in DIR/<name>/)
  EW_SOURCE_DIR          the source tree
  EW_FIXTURE_PLUGINS     the build folder of tests/fixtures/abi

Run one file by hand from the top of the tree after `ninja -C build`:

  /usr/bin/python3 tests/integration/test_cli.py -v

(the defaults below then point at build/).

Every test gets a fresh temporary folder (self.tmp), removed afterwards; every
process it starts is killed at the end of the test if it is still running, and
every wait has a timeout.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

SOURCE_DIR = os.environ.get(
    "EW_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
_BUILD_DIR = os.path.join(SOURCE_DIR, "build")
BIN = os.environ.get("EDGEWATCH_BIN", os.path.join(_BUILD_DIR, "core", "edgewatch"))
PLUGIN_PATH = os.environ.get("EDGEWATCH_PLUGIN_PATH", os.path.join(_BUILD_DIR, "plugins"))
FIXTURE_PLUGINS = os.environ.get(
    "EW_FIXTURE_PLUGINS", os.path.join(_BUILD_DIR, "tests", "fixtures", "abi"))

# Exit codes of the CLI contract.
EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2

# Default timeout (seconds) of a command that must finish by itself.
CLI_TIMEOUT = 30


def project_version():
    """The project version declared in meson.build (what --version prints)."""
    with open(os.path.join(SOURCE_DIR, "meson.build"), encoding="utf-8") as f:
        m = re.search(r"version:\s*'([^']+)'", f.read())
    return m.group(1)


def abi_version():
    """(major, minor) of the host ABI, from include/edgewatch/plugin.h."""
    with open(os.path.join(SOURCE_DIR, "include", "edgewatch", "plugin.h"),
              encoding="utf-8") as f:
        text = f.read()
    major = int(re.search(r"#define\s+EW_ABI_MAJOR\s+(\d+)", text).group(1))
    minor = int(re.search(r"#define\s+EW_ABI_MINOR\s+(\d+)", text).group(1))
    return major, minor


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(port, method, path, timeout=2.0):
    """(status, content_type, body as str) of one request to 127.0.0.1:port.
    Raises OSError (e.g. ConnectionRefusedError) when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
        return resp.status, resp.getheader("Content-Type", ""), body
    finally:
        conn.close()


def json_lines(path):
    """The JSON objects of a JSON-lines file, one per line (every line must parse)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def whole_json_lines(path):
    """The JSON objects of the complete lines of a JSON-lines file still being
    written ([] before it exists): a last line without its newline is left out."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.endswith("\n"):
                continue
            try:
                out.append(json.loads(line))
            except ValueError as e:
                raise AssertionError("%s:%d is not a JSON line (%s): %r" % (path, n, e, line[:300]))
    return out


def count_lines(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


class Process:
    """An edgewatch started in the background; stdout and stderr go to files."""

    def __init__(self, args, env, cwd, tmp):
        fd, self.stdout_path = tempfile.mkstemp(prefix="stdout-", suffix=".log", dir=tmp)
        os.close(fd)
        fd, self.stderr_path = tempfile.mkstemp(prefix="stderr-", suffix=".log", dir=tmp)
        os.close(fd)
        self.args = args
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                args, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True)

    @property
    def pid(self):
        return self.popen.pid

    def running(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.running():
            self.popen.send_signal(sig)

    def wait(self, timeout):
        """Exit code, or None when it is still running after `timeout` seconds."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        """Kills the process (and anything it started) if it still runs."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(timeout=10)

    def stdout(self):
        with open(self.stdout_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stderr(self):
        with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def output(self):
        """stdout and stderr for failure messages, trimmed."""
        def tail(text, n=4000):
            return text if len(text) <= n else "...\n" + text[-n:]
        return "stdout:\n%s\nstderr:\n%s" % (tail(self.stdout()), tail(self.stderr()))


class EdgewatchTest(unittest.TestCase):
    """Base class: a temporary folder per test and helpers to drive the binary."""

    maxDiff = None

    def setUp(self):
        if not os.access(BIN, os.X_OK):
            self.fail("edgewatch binary not found at %s (build first, or set EDGEWATCH_BIN)" % BIN)
        self.tmp = tempfile.mkdtemp(prefix="ew-e2e-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.state_dir = os.path.join(self.tmp, "state")
        os.mkdir(self.state_dir)

    # --- environment and configs -------------------------------------------------

    def env(self, plugin_path=True, **extra):
        """The environment for edgewatch: this process's, plus the plugin path (unless
        plugin_path=False, which removes it) and the test's state folder; keyword
        arguments set (or, with None, remove) further variables."""
        env = dict(os.environ)
        if plugin_path:
            env["EDGEWATCH_PLUGIN_PATH"] = PLUGIN_PATH
        else:
            env.pop("EDGEWATCH_PLUGIN_PATH", None)
        env["EDGEWATCH_STATE_DIR"] = self.state_dir
        for key, value in extra.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def pipeline(self, **keys):
        """A [pipeline] section: HTTP off and the test's state folder unless overridden."""
        settings = {"name": "e2e", "state_dir": self.state_dir, "http": "off"}
        settings.update(keys)
        lines = ["[pipeline]"] + ["%s = %s" % (k, v) for k, v in settings.items()]
        return "\n".join(lines) + "\n"

    def write_config(self, text, name="pipeline.ini"):
        """Writes a config (dedented, leading newline dropped); returns its path."""
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(textwrap.dedent(text).lstrip("\n"))
        return path

    @staticmethod
    def line_of(path, line_text, nth=1):
        """1-based number of the nth line of `path` that reads `line_text` once
        stripped (e.g. "window = abc" or "[detector.z]")."""
        seen = 0
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.strip() == line_text:
                    seen += 1
                    if seen == nth:
                        return number
        raise AssertionError("%r is not line #%d of %s" % (line_text, nth, path))

    # --- running edgewatch -------------------------------------------------------

    def cli(self, *args, timeout=CLI_TIMEOUT, env=None, cwd=None):
        """Runs edgewatch to completion; returns the CompletedProcess (text)."""
        try:
            return subprocess.run(
                [BIN] + [str(a) for a in args], env=env if env is not None else self.env(),
                cwd=cwd or self.tmp, stdin=subprocess.DEVNULL, capture_output=True,
                text=True, errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired as e:
            self.fail("edgewatch %s did not finish within %ss\nstdout:\n%s\nstderr:\n%s" % (
                " ".join(map(str, args)), timeout, _text(e.stdout), _text(e.stderr)))

    def start(self, *args, env=None, cwd=None):
        """Starts edgewatch in the background; it is killed when the test ends."""
        proc = Process([BIN] + [str(a) for a in args],
                       env if env is not None else self.env(), cwd or self.tmp, self.tmp)
        self.addCleanup(proc.kill)
        return proc

    def stop(self, proc, sig=signal.SIGTERM, timeout=15):
        """Sends `sig` and waits for the exit; returns the exit code (fails on a hang)."""
        proc.signal(sig)
        code = proc.wait(timeout)
        if code is None:
            proc.kill()
            self.fail("edgewatch still running %ss after %s\n%s" % (
                timeout, signal.Signals(sig).name, proc.output()))
        return code

    def wait_exit(self, proc, timeout):
        """Waits for a process that must end by itself; returns its exit code."""
        code = proc.wait(timeout)
        if code is None:
            proc.kill()
            self.fail("edgewatch did not exit by itself within %ss\n%s" % (timeout, proc.output()))
        return code

    def wait_http(self, proc, port, path="/health", timeout=5.0):
        """Polls GET path until it answers 200; returns (status, content_type, body).
        Fails when `timeout` passes first or the process exits."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            if not proc.running():
                self.fail("edgewatch exited (%s) before serving %s\n%s" % (
                    proc.popen.returncode, path, proc.output()))
            try:
                status, ctype, body = http_request(port, "GET", path, timeout=1.0)
                if status == 200:
                    return status, ctype, body
                last = "%s %s" % (status, body[:200])
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            if time.monotonic() >= deadline:
                self.fail("GET %s on port %d not 200 within %ss (last: %s)\n%s" % (
                    path, port, timeout, last, proc.output()))
            time.sleep(0.1)

    # --- assertions --------------------------------------------------------------

    def wait_for(self, cond, proc, what, timeout=15.0):
        """Polls cond() every 50 ms until it is true; fails naming `what` when
        edgewatch exits first or after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not cond():
            if not proc.running():
                self.fail("edgewatch exited while waiting for %s\n%s" % (what, proc.output()))
            if time.monotonic() > deadline:
                self.fail("timed out after %ss waiting for %s\n%s" % (timeout, what, proc.output()))
            time.sleep(0.05)

    def mount_tmpfs(self, name, options):
        """A tmpfs mounted at tmp/<name> with mount options (e.g. "size=12k",
        "ro,size=1m"), unmounted at cleanup; skips the test without root."""
        where = os.path.join(self.tmp, name)
        os.mkdir(where)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", where],
                          capture_output=True).returncode != 0:
            self.skipTest("cannot mount a tmpfs (%s) here (needs root)" % options)
        self.addCleanup(subprocess.run, ["umount", where], capture_output=True)
        return where

    def assertExit(self, result, code):
        """Asserts the exit code of a CompletedProcess, showing its output otherwise."""
        if result.returncode != code:
            self.fail("exit code %s, expected %s\nargs: %s\nstdout:\n%s\nstderr:\n%s" % (
                result.returncode, code, " ".join(map(str, result.args)),
                result.stdout[-4000:], result.stderr[-4000:]))


def _text(data):
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data


def main():
    """unittest.main() with verbose output, for `python3 test_x.py`."""
    unittest.main(verbosity=2, argv=[sys.argv[0]] + sys.argv[1:])
