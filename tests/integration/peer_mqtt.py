"""A real MQTT peer for the end-to-end tests: a mosquitto broker on a free
loopback port, started and stopped by the test with a generated config, a test
CA made with openssl, password files made with mosquitto_passwd, and a paho-mqtt
subscriber that records the "seq" id of every message it receives.

The broker persists its sessions in the test's folder and the subscriber uses a
persistent session (clean_session=False, QoS 1), so messages published while
the subscriber is reconnecting after a broker restart are queued for it instead
of lost: what the tests count is then what edgewatch delivered.
"""

import json
import os
import shutil
import signal
import subprocess
import threading
import time

import paho.mqtt.client as paho

import ewtest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Broker:
    """mosquitto -c <generated.conf>, on 127.0.0.1:<port> (a free one unless given)."""

    def __init__(self, folder, port=None, password_file=None, tls=None):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self.port = port or ewtest.free_port()
        # A second, plain listener for the subscriber when the first one is TLS.
        self.plain_port = ewtest.free_port() if tls else self.port
        self.proc = None
        self.log_path = os.path.join(folder, "mosquitto.log")
        lines = [
            "per_listener_settings false",
            "persistence true",
            "persistence_location %s/" % folder,
            "max_queued_messages 0",
            "max_inflight_messages 100",
            "queue_qos0_messages true",
            "log_dest stderr",
            # As root mosquitto would switch to its own user, which cannot read the
            # test's private folder.
            "user %s" % ("root" if os.geteuid() == 0 else __import__("getpass").getuser()),
            "log_type error",
            "log_type warning",
            "log_type notice",
            "allow_anonymous %s" % ("false" if password_file else "true"),
        ]
        if password_file:
            lines.append("password_file %s" % password_file)
        lines.append("listener %d 127.0.0.1" % self.port)
        if tls:
            lines += ["cafile %s" % tls["ca"], "certfile %s" % tls["cert"], "keyfile %s" % tls["key"]]
            lines.append("listener %d 127.0.0.1" % self.plain_port)
        self.conf = os.path.join(folder, "mosquitto.conf")
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout=10.0):
        """Starts the broker and waits until its (plain) port accepts connections."""
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        import socket
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited at start:\n" + self.output())
            try:
                with socket.create_connection(("127.0.0.1", self.plain_port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen on %d within %ss" % (self.plain_port, timeout))

    def stop(self, timeout=10.0):
        """SIGTERM (mosquitto then saves its sessions) and wait."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    def output(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""


def make_password_file(path, user, password):
    """A mosquitto password file with one user (mosquitto_passwd -c -b)."""
    subprocess.run(["mosquitto_passwd", "-c", "-b", path, user, password], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    return path


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, stdin=subprocess.DEVNULL,
                   capture_output=True, timeout=60)


def make_ca(folder, name="ca"):
    """A test CA and a server certificate it signed for 127.0.0.1/localhost.
    Returns {"ca": ..., "cert": ..., "key": ...} (PEM paths)."""
    os.makedirs(folder, exist_ok=True)
    ca_key, ca = name + ".key", name + ".pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
             "-days", "2", "-subj", "/CN=edgewatch test CA %s" % name, cwd=folder)
    ext = os.path.join(folder, name + "-server.ext")
    with open(ext, "w", encoding="utf-8") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + "-server.key",
             "-out", name + "-server.csr", "-subj", "/CN=localhost", cwd=folder)
    _openssl("x509", "-req", "-in", name + "-server.csr", "-CA", ca, "-CAkey", ca_key,
             "-CAcreateserial", "-out", name + "-server.pem", "-days", "2", "-extfile", ext, cwd=folder)
    return {"ca": os.path.join(folder, ca), "cert": os.path.join(folder, name + "-server.pem"),
            "key": os.path.join(folder, name + "-server.key")}


class Subscriber:
    """A paho-mqtt client with a persistent session subscribed to `topic` at QoS 1;
    records the "seq" of every message (in arrival order, duplicates included)."""

    def __init__(self, port, topic="#", username=None, password=None, client_id="ew-test-sub"):
        self.ids = []
        self.topics = set()
        self.bad = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = paho.Client(client_id=client_id, clean_session=False)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, rc: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 1)
        self.topic = topic
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(10):
            self.close()
            raise RuntimeError("the subscriber could not connect to the broker on %d" % port)

    def _on_connect(self, client, userdata, flags, rc):
        if rc == 0:
            client.subscribe(self.topic, qos=1)
            self.connected.set()

    def _on_message(self, client, userdata, msg):
        try:
            seq = json.loads(msg.payload.decode("utf-8"))["seq"]
        except (ValueError, KeyError, UnicodeDecodeError):
            with self.lock:
                self.bad.append(msg.payload)
            return
        with self.lock:
            self.ids.append(seq)
            self.topics.add(msg.topic)

    def received(self):
        with self.lock:
            return list(self.ids)

    def wait_for(self, expected, timeout):
        """Waits until every id of `expected` has arrived; returns the ids received."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if set(expected) <= set(self.received()):
                break
            time.sleep(0.05)
        return self.received()

    def wait_quiet(self, seconds=0.5, timeout=10):
        """Waits until nothing has arrived for `seconds` (late duplicates included)."""
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            n = len(self.received())
            if n == last:
                return self.received()
            last = n
            time.sleep(seconds)
        return self.received()

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()
