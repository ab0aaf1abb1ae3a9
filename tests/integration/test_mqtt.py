"""The mqtt sink end to end against a real mosquitto broker (peer_mqtt.py) and
a paho subscriber that records every message's "seq": broker down at start,
broker stopped mid-stream, edgewatch killed with SIGKILL while the broker is
down, a full spool under each policy, TLS with a test CA (and a wrong one), and
a wrong password. Every case asserts the exact set of ids received and how many
duplicates (only where at-least-once allows them)."""

import json
import os
import random
import re
import signal
import time

import ewtest
import peer_mqtt

METRIC = r'^edgewatch_%s_total\{node="%s"\} (\d+)$'


class MqttTest(ewtest.EdgewatchTest):

    def setUp(self):
        super().setUp()
        self.brokers = []

    def tearDown(self):
        for b in self.brokers:
            b.stop()

    def broker(self, **kw):
        b = peer_mqtt.Broker(os.path.join(self.tmp, "broker%d" % len(self.brokers)), **kw)
        self.brokers.append(b)
        return b

    def subscriber(self, port, **kw):
        s = peer_mqtt.Subscriber(port, **kw)
        self.addCleanup(s.close)
        return s

    def config(self, broker, count, rate=0, http_port=None, name="pipeline.ini", pipeline=None, **sink):
        keys = {"broker": broker, "qos": "1", "topic": "plant/{node}/alerts",
                "drain_timeout": "120s"}
        keys.update(sink)
        settings = dict(pipeline or {})
        if http_port:
            settings["http"] = "127.0.0.1:%d" % http_port
        body = self.pipeline(**settings) + """
[source.pump]
plugin = synth
channels = temp, pressure
rate = %s
count = %d

[sink.up]
plugin = mqtt
input = pump
""" % (rate, count)
        body += "".join("%s = %s\n" % kv for kv in keys.items())
        return self.write_config(body, name)

    def metric(self, port, name, node="up"):
        try:
            status, _, body = ewtest.http_request(port, "GET", "/metrics", timeout=1.0)
        except OSError:
            return None
        m = re.search(METRIC % (name, node), body, re.M)
        return int(m.group(1)) if m else None

    def health(self, port):
        try:
            status, _, body = ewtest.http_request(port, "GET", "/health", timeout=1.0)
            return status, json.loads(body)
        except (OSError, ValueError):
            return None, {}

    def wait_metric(self, proc, port, name, at_least, timeout=60):
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.metric(port, name)
            if value is not None and value >= at_least:
                return value
            if not proc.running():
                break
            time.sleep(0.05)
        self.fail("%s stayed at %s (wanted >= %d)\n%s" % (name, value, at_least, proc.output()))

    def assertIds(self, received, expected, max_duplicates=0):
        """The exact set, and duplicates only up to max_duplicates."""
        got = set(received)
        self.assertEqual(sorted(set(expected) - got), [], "ids missing")
        self.assertEqual(sorted(got - set(expected)), [], "ids never sent")
        dups = len(received) - len(got)
        self.assertLessEqual(dups, max_duplicates, "duplicates: %d" % dups)
        return dups

    def persistent_subscriber(self, b):
        """Subscribes (creating the persistent session) and stops the broker."""
        sub = self.subscriber(b.plain_port)
        sub.close()
        return sub

    # ---------------------------------------------------------------------------------

    def test_broker_down_at_start(self):
        b = self.broker().start()
        self.persistent_subscriber(b)
        b.stop()
        # Paced, so the pipeline is still running when the broker comes back.
        count, http = 20000, ewtest.free_port()
        path = self.config("mqtt://127.0.0.1:%d" % b.port, count, rate=1000, http_port=http)
        proc = self.start("run", path)
        self.wait_metric(proc, http, "mqtt_spooled", 300)
        self.assertIn("cannot reach broker mqtt://127.0.0.1:%d" % b.port, proc.stderr())
        # During the outage: the node works (it spools) but is `degraded`, with the
        # reason; /health still answers 200 (a restart would not help).
        status, health = self.wait_health(proc, http, lambda h: h.get("nodes", {}).get("up", {}).get(
            "state") == "degraded")
        self.assertEqual(status, 200, health)
        self.assertEqual(health["status"], "degraded", health)
        self.assertIn("up", health["degraded"], health)
        self.assertRegex(health["nodes"]["up"]["reason"], r"^broker unreachable, \d+ messages spooled$")
        self.assertIn("degraded: broker unreachable", proc.stderr())
        b.start()
        sub = self.subscriber(b.plain_port)
        status, health = self.wait_health(proc, http, lambda h: h.get("nodes", {}).get("up", {}).get(
            "state") == "running")
        self.assertEqual(status, 200, health)
        self.assertEqual(health["status"], "ok", health)
        self.assertNotIn("reason", health["nodes"]["up"], health)
        sub.wait_for(range(1, count + 1), 90)
        self.assertEqual(self.wait_exit(proc, 60), ewtest.EXIT_OK, proc.output())
        self.assertIds(sub.wait_quiet(), range(1, count + 1))
        self.assertEqual(sub.topics, {"plant/pump/alerts"})
        self.assertIn("connected to broker", proc.stderr())
        self.assertIn("no longer degraded", proc.stderr())

    def wait_health(self, proc, port, pred, timeout=30):
        """Polls /health (bounded) until pred(body) holds; returns (status, body)."""
        deadline = time.monotonic() + timeout
        status, health = None, {}
        while time.monotonic() < deadline and proc.running():
            status, health = self.health(port)
            if status is not None and pred(health):
                return status, health
            time.sleep(0.05)
        self.fail("/health never matched; last %s %s\n%s" % (status, health, proc.output()))

    def test_broker_stopped_mid_stream(self):
        b = self.broker().start()
        sub = self.subscriber(b.plain_port)
        count, inflight = 8000, 64
        path = self.config("mqtt://127.0.0.1:%d" % b.port, count, rate=2000, inflight=inflight)
        proc = self.start("run", path)
        sub.wait_for(range(1, 1001), 30)
        self.assertGreaterEqual(len(set(sub.received())), 1000, proc.output())
        b.stop()
        time.sleep(1.5)
        b.start()
        sub.wait_for(range(1, count + 1), 90)
        self.assertEqual(self.wait_exit(proc, 60), ewtest.EXIT_OK, proc.output())
        # At most the unacknowledged window is sent twice, once per outage.
        self.assertIds(sub.wait_quiet(), range(1, count + 1), max_duplicates=inflight)
        self.assertIn("lost the connection to broker", proc.stderr())

    def test_sigkill_while_broker_down_then_restart(self):
        b = self.broker().start()
        self.persistent_subscriber(b)
        b.stop()
        http = ewtest.free_port()
        path = self.config("mqtt://127.0.0.1:%d" % b.port, 1000000, http_port=http)
        proc = self.start("run", path)
        spooled = self.wait_metric(proc, http, "mqtt_spooled", 20000)
        proc.signal(signal.SIGKILL)  # at full spooling speed: a torn record is likely
        proc.wait(10)
        # Second run: the same node, 500 more samples, the broker back.
        more = 500
        path2 = self.config("mqtt://127.0.0.1:%d" % b.port, more, name="second.ini")
        b.start()
        sub = self.subscriber(b.plain_port)
        proc2 = self.start("run", path2)
        self.assertEqual(self.wait_exit(proc2, 120), ewtest.EXIT_OK, proc2.output())
        received = sub.wait_quiet()
        top = max(received)
        # Everything acknowledged upstream before the kill, then the new ones, with
        # no gap: ids are 1..top exactly once (the broker was down: nothing in flight).
        self.assertGreaterEqual(top, spooled + more)
        self.assertIds(received, range(1, top + 1))
        self.assertIn("from an earlier run", proc2.stderr())

    def test_sigterm_while_spooling_keeps_the_spool_for_the_next_run(self):
        b = self.broker().start()
        self.persistent_subscriber(b)
        b.stop()
        http = ewtest.free_port()
        path = self.config("mqtt://127.0.0.1:%d" % b.port, 1000000, rate=5000, http_port=http,
                           drain_timeout="1s")
        proc = self.start("run", path)
        spooled = self.wait_metric(proc, http, "mqtt_spooled", 2000)
        self.assertEqual(self.stop(proc), ewtest.EXIT_OK, proc.output())
        self.assertNotIn("forced stop", proc.stderr())
        # Everything the source emitted was acknowledged (spooled) before the exit.
        m = re.search(r"\[pump\] finished \(ended\): samples_in=0 samples_out=(\d+)", proc.stderr())
        self.assertIsNotNone(m, proc.output())
        emitted = int(m.group(1))
        self.assertGreaterEqual(emitted, spooled)
        more = 300
        b.start()
        sub = self.subscriber(b.plain_port)
        proc2 = self.start("run", self.config("mqtt://127.0.0.1:%d" % b.port, more, name="second.ini"))
        self.assertEqual(self.wait_exit(proc2, 120), ewtest.EXIT_OK, proc2.output())
        # The broker was down during the first run: nothing was in flight, so the
        # ids are exactly 1..emitted+more, once each.
        self.assertIds(sub.wait_quiet(), range(1, emitted + more + 1))

    def test_sigkill_loop_loses_nothing_acknowledged(self):
        b = self.broker().start()
        self.persistent_subscriber(b)
        rnd = random.Random(99)
        # The broker stays up: every kill lands somewhere in spooling or publishing.
        kills = 15
        for i in range(kills):
            http = ewtest.free_port()
            path = self.config("mqtt://127.0.0.1:%d" % b.port, 1000000, rate=4000, http_port=http,
                               name="run%d.ini" % i)
            proc = self.start("run", path)
            self.wait_metric(proc, http, "mqtt_spooled", 200 * (i + 1))
            time.sleep(rnd.uniform(0.0, 0.5))
            proc.signal(signal.SIGKILL)
            proc.wait(10)
        sub = self.subscriber(b.plain_port)
        more = 200
        proc = self.start("run", self.config("mqtt://127.0.0.1:%d" % b.port, more, name="last.ini"))
        self.assertEqual(self.wait_exit(proc, 120), ewtest.EXIT_OK, proc.output())
        received = sub.wait_quiet()
        top = max(received)
        # No gap: every id ever acknowledged upstream arrives (at least once; a
        # kill between publish and acknowledgement may resend, within the window).
        self.assertIds(received, range(1, top + 1), max_duplicates=kills * 256)
        self.assertGreaterEqual(top, more)

    def test_spool_full_block(self):
        b = self.broker().start()
        self.persistent_subscriber(b)
        b.stop()
        count, http = 15000, ewtest.free_port()
        path = self.config("mqtt://127.0.0.1:%d" % b.port, count, http_port=http,
                           spool_max="1MiB", spool_full="block")
        proc = self.start("run", path)
        deadline = time.monotonic() + 30
        health = {}
        while time.monotonic() < deadline:
            status, health = self.health(http)
            if health.get("nodes", {}).get("up", {}).get("state") == "retrying":
                break
            time.sleep(0.1)
        self.assertEqual(health["nodes"]["up"]["state"], "retrying", proc.output())
        self.assertIn("spool full", health["nodes"]["up"]["error"])
        self.assertIn("up", health["retrying"])
        self.assertLess(self.metric(http, "mqtt_spooled"), count)
        b.start()
        sub = self.subscriber(b.plain_port)
        sub.wait_for(range(1, count + 1), 90)
        self.assertEqual(self.wait_exit(proc, 90), ewtest.EXIT_OK, proc.output())
        self.assertIds(sub.wait_quiet(), range(1, count + 1))

    def test_spool_full_drop_oldest(self):
        b = self.broker().start()
        self.persistent_subscriber(b)
        b.stop()
        count, http = 15000, ewtest.free_port()
        path = self.config("mqtt://127.0.0.1:%d" % b.port, count, http_port=http,
                           spool_max="1MiB", spool_full="drop_oldest")
        proc = self.start("run", path)
        self.wait_metric(proc, http, "mqtt_spooled", count)
        dropped = self.metric(http, "mqtt_dropped")
        self.assertGreater(dropped, 0)
        self.assertIn("dropped the", proc.stderr())
        b.start()
        sub = self.subscriber(b.plain_port)
        sub.wait_for(range(dropped + 1, count + 1), 60)
        self.assertEqual(self.wait_exit(proc, 60), ewtest.EXIT_OK, proc.output())
        # The oldest `dropped` ids are gone, every later one arrived once.
        self.assertIds(sub.wait_quiet(), range(dropped + 1, count + 1))

    def test_full_disk_under_the_spool_waits_then_delivers_everything(self):
        """The state volume (a 256 KiB tmpfs) fills before spool_max: the sink
        says so and holds upstream back (nothing dropped); once the broker is
        back, delivering frees the disk and every message arrives exactly once."""
        small = self.mount_tmpfs("small", "size=256k")
        b = self.broker().start()
        self.persistent_subscriber(b)
        b.stop()
        count, http = 20000, ewtest.free_port()  # about 2.5 MB of spool records
        path = self.config("mqtt://127.0.0.1:%d" % b.port, count, http_port=http,
                           pipeline={"state_dir": small})
        proc = self.start("run", path)
        _, health = self.wait_health(proc, http, lambda h: h.get("nodes", {}).get("up", {})
                                  .get("state") == "retrying")
        error = health["nodes"]["up"]["error"]
        self.assertIn("writing to the spool in %s/up/spool failed: No space left on device; "
                      "free space on its disk" % small, error)
        self.assertIn("up", health["retrying"])
        spooled = self.metric(http, "mqtt_spooled")
        self.assertLess(spooled, count)
        self.assertGreater(health["nodes"]["up"]["retries"], 0)
        # Nothing half-written: every segment ends on a whole record (checked by
        # the next start, which would report a torn tail).
        b.start()
        sub = self.subscriber(b.plain_port)
        sub.wait_for(range(1, count + 1), 120)
        self.assertEqual(self.wait_exit(proc, 120), ewtest.EXIT_OK, proc.output())
        self.assertIds(sub.wait_quiet(), range(1, count + 1))
        err = proc.stderr()
        self.assertRegex(err, r"\[up\] consume failed \(transient, attempt 1\): writing to the spool")
        self.assertIn("[up] recovered after", err)
        self.assertNotIn("dropped", re.sub(r"dropped=0", "", err))

    def test_tls_with_test_ca(self):
        tls = peer_mqtt.make_ca(os.path.join(self.tmp, "pki"))
        b = self.broker(tls=tls).start()
        sub = self.subscriber(b.plain_port)
        count = 2000
        path = self.config("mqtts://127.0.0.1:%d" % b.port, count, ca_file=tls["ca"])
        proc = self.start("run", path)
        sub.wait_for(range(1, count + 1), 60)
        self.assertEqual(self.wait_exit(proc, 60), ewtest.EXIT_OK, proc.output())
        self.assertIds(sub.wait_quiet(), range(1, count + 1))

    def test_tls_wrong_ca_is_refused(self):
        tls = peer_mqtt.make_ca(os.path.join(self.tmp, "pki"))
        other = peer_mqtt.make_ca(os.path.join(self.tmp, "pki2"), name="other")
        b = self.broker(tls=tls).start()
        sub = self.subscriber(b.plain_port)
        http = ewtest.free_port()
        # A source that keeps producing: /health shows the refusal at the next batch.
        path = self.config("mqtts://127.0.0.1:%d" % b.port, 100000, rate=200, http_port=http,
                           ca_file=other["ca"], pipeline={"shutdown_timeout": "2s"})
        proc = self.start("run", path)
        health = self.wait_retrying(proc, http)
        self.assertIn("TLS with broker mqtts://127.0.0.1:%d failed" % b.port, health["nodes"]["up"]["error"])
        self.assertRegex(proc.stderr(), r"certificate verify failed|TLS with broker")
        self.assertRefusedStop(proc)
        self.assertEqual(sub.wait_quiet(), [])

    def assertRefusedStop(self, proc):
        """A refused sink holds upstream back while running; on SIGTERM the host tells
        it the stream is draining, so it keeps what it has in its spool for the next
        run and the process exits 0 without a forced stop."""
        self.assertEqual(self.stop(proc), ewtest.EXIT_OK, proc.output())
        self.assertNotIn("forced stop", proc.stderr())
        self.assertRegex(proc.stderr(), r"\[up\] finished \(ended\)")

    def wait_retrying(self, proc, http, timeout=30):
        deadline = time.monotonic() + timeout
        health = {}
        while time.monotonic() < deadline:
            status, health = self.health(http)
            if health.get("nodes", {}).get("up", {}).get("state") == "retrying":
                self.assertEqual(status, 503)
                return health
            time.sleep(0.1)
        self.fail("the sink never showed retrying: %s\n%s" % (health, proc.output()))

    def test_wrong_password_is_a_clear_error(self):
        secret, wrong = "s3cret-pw-%d" % os.getpid(), "wrong-pw-%d" % os.getpid()
        pwfile = peer_mqtt.make_password_file(os.path.join(self.tmp, "passwd"), "edge", secret)
        b = self.broker(password_file=pwfile).start()
        sub = self.subscriber(b.port, username="edge", password=secret)
        mine = os.path.join(self.tmp, "mqtt-password")
        with open(mine, "w", encoding="utf-8") as f:
            f.write(wrong + "\n")
        http = ewtest.free_port()
        path = self.config("mqtt://127.0.0.1:%d" % b.port, 100000, rate=200, http_port=http,
                           username="edge", password_file=mine, pipeline={"shutdown_timeout": "2s"})
        proc = self.start("run", path)
        health = self.wait_retrying(proc, http)
        err = health["nodes"]["up"]["error"]
        self.assertIn("broker mqtt://127.0.0.1:%d refused the connection" % b.port, err)
        self.assertIn("not authorised", err)
        self.assertIn("not authorised", proc.stderr())
        _, _, metrics = ewtest.http_request(http, "GET", "/metrics")
        self.assertRefusedStop(proc)
        for text in (proc.stderr(), proc.stdout(), json.dumps(health), metrics):
            self.assertNotIn(wrong, text)
        self.assertEqual(sub.wait_quiet(), [])

    def test_password_from_environment(self):
        secret = "env-pw-%d" % os.getpid()
        pwfile = peer_mqtt.make_password_file(os.path.join(self.tmp, "passwd"), "edge", secret)
        b = self.broker(password_file=pwfile).start()
        sub = self.subscriber(b.port, username="edge", password=secret)
        count = 1000
        path = self.config("mqtt://127.0.0.1:%d" % b.port, count, username="edge",
                           password_env="EW_TEST_MQTT_PW", qos="2")
        proc = self.start("run", path, env=self.env(EW_TEST_MQTT_PW=secret))
        sub.wait_for(range(1, count + 1), 60)
        self.assertEqual(self.wait_exit(proc, 60), ewtest.EXIT_OK, proc.output())
        self.assertIds(sub.wait_quiet(), range(1, count + 1))
        self.assertNotIn(secret, proc.stderr())


if __name__ == "__main__":
    ewtest.main()
