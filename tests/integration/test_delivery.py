#!/usr/bin/env python3
"""End-to-end delivery through the zmq sink (real python3-zmq PULL and SUB
peers on loopback) and the jsonl sink's rotation: every sample of a known csv
arrives exactly once and in order over PUSH (also when the peer appears only
later), PUB carries the node's topic frame, and rotated files hold every line
exactly once."""

import datetime
import glob
import json
import os
import time

import zmq

import ewtest

EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def iso(i):
    """Timestamp of row i: 1 ms apart, as the jsonl/zmq sinks print it."""
    t = EPOCH + datetime.timedelta(milliseconds=i)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Peer:
    """A PULL or SUB socket of the test, closed by the test's cleanup."""

    def __init__(self, kind, endpoint, bind, topic=None):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(kind)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        if kind == zmq.SUB:
            self.sock.setsockopt(zmq.SUBSCRIBE, topic)
        if bind:
            self.sock.bind(endpoint)
        else:
            self.sock.connect(endpoint)

    def recv(self, timeout=20.0):
        """One message's frames, or None after `timeout` seconds."""
        if not self.sock.poll(int(timeout * 1000)):
            return None
        return self.sock.recv_multipart()

    def close(self):
        self.sock.close()
        self.ctx.term()


class DeliveryTest(ewtest.EdgewatchTest):

    def csv_source(self, count):
        path = os.path.join(self.tmp, "in.csv")
        with open(path, "w", encoding="utf-8") as f:
            f.write("timestamp,x\n")
            for i in range(count):
                f.write("%s,%s\n" % (iso(i), i * 0.5))
        return "[source.gen]\nplugin = csv\npath = %s\n" % path

    def sink(self, **keys):
        return "\n[sink.out]\ninput = gen\n" + "".join("%s = %s\n" % kv for kv in keys.items())

    def peer(self, *args, **kw):
        p = Peer(*args, **kw)
        self.addCleanup(p.close)
        return p

    def receive_all(self, peer, proc, count, timeout=30.0):
        msgs = []
        while len(msgs) < count:
            m = peer.recv(timeout)
            if m is None:
                self.fail("received %d of %d messages\n%s" % (len(msgs), count, proc.output()))
            msgs.append(m)
        return msgs

    def assertExactJson(self, msgs, count):
        for i, m in enumerate(msgs):
            self.assertEqual(len(m), 1, m)
            obj = json.loads(m[0])
            self.assertEqual(obj, {"ts": iso(i), "node": "gen", "values": {"x": i * 0.5}},
                             "message %d" % i)
        self.assertEqual(len(msgs), count)

    # ---------------------------------------------------------------------------------

    def test_push_connect_delivers_every_sample_exactly(self):
        count, port = 20000, ewtest.free_port()
        pull = self.peer(zmq.PULL, "tcp://127.0.0.1:%d" % port, bind=True)
        path = self.write_config(self.pipeline() + self.csv_source(count) + self.sink(
            plugin="zmq", socket="push", mode="connect", endpoint="tcp://127.0.0.1:%d" % port))
        proc = self.start("run", path)
        msgs = self.receive_all(pull, proc, count)
        self.assertEqual(self.wait_exit(proc, 60), ewtest.EXIT_OK, proc.output())
        self.assertExactJson(msgs, count)
        self.assertIsNone(pull.recv(0.5), "a message beyond the last sample")

    def test_push_bind_csv_over_ipc(self):
        count = 5000
        ep = "ipc://%s/out.sock" % self.tmp
        path = self.write_config(self.pipeline() + self.csv_source(count) + self.sink(
            plugin="zmq", socket="push", mode="bind", endpoint=ep, format="csv"))
        proc = self.start("run", path)
        pull = self.peer(zmq.PULL, ep, bind=False)
        msgs = self.receive_all(pull, proc, count)
        self.assertEqual(self.wait_exit(proc, 60), ewtest.EXIT_OK, proc.output())
        # csv: ts (ISO-8601 UTC, microseconds), then the channels in stream order.
        self.assertEqual([m[0].decode() for m in msgs],
                         ["%s,%s" % (iso(i), i // 2 if i % 2 == 0 else repr(i * 0.5))
                          for i in range(count)])
        self.assertIsNone(pull.recv(0.5))

    def test_push_without_peer_waits_then_delivers_all(self):
        count, port, http = 3000, ewtest.free_port(), ewtest.free_port()
        ep = "tcp://127.0.0.1:%d" % port
        path = self.write_config(self.pipeline(http="127.0.0.1:%d" % http) + self.csv_source(count) +
                                 self.sink(plugin="zmq", socket="push", mode="connect", endpoint=ep))
        proc = self.start("run", path)
        # No peer: the sink reports the missing peer and upstream waits.
        deadline, node = time.monotonic() + 30, {}
        while time.monotonic() < deadline and proc.running():
            try:
                _, _, body = ewtest.http_request(http, "GET", "/health", timeout=1.0)
                node = json.loads(body)["nodes"]["out"]
            except (OSError, ValueError, KeyError):
                node = {}
            if node.get("state") == "retrying":
                break
            time.sleep(0.05)
        self.assertEqual(node.get("state"), "retrying", proc.output())
        self.assertIn("no peer connected to %s" % ep, node.get("error", ""))
        self.assertTrue(proc.running(), proc.output())
        # Then a peer appears: everything arrives, once, in order.
        pull = self.peer(zmq.PULL, ep, bind=True)
        msgs = self.receive_all(pull, proc, count, timeout=60)
        self.assertEqual(self.wait_exit(proc, 60), ewtest.EXIT_OK, proc.output())
        self.assertExactJson(msgs, count)
        self.assertIsNone(pull.recv(0.5))
        self.assertIn("no peer connected to %s" % ep, proc.stderr())

    def test_push_without_peer_at_shutdown_says_what_was_not_delivered(self):
        # No spool in the zmq sink: when no peer ever comes, a stop cannot deliver;
        # it must not pretend to have (exit code 1, the loss in the log).
        port = ewtest.free_port()
        path = self.write_config(self.pipeline(shutdown_timeout="2s") + """
[source.gen]
plugin = synth
channels = a
rate = 100
count = 100000
""" + self.sink(plugin="zmq", endpoint="tcp://127.0.0.1:%d" % port))
        proc = self.start("run", path)
        deadline = time.monotonic() + 20
        while "no peer connected to" not in proc.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.stop(proc), ewtest.EXIT_RUNTIME, proc.output())
        self.assertRegex(proc.stderr(), r"\[out\] stopped while retrying: \d+ samples of this batch were "
                                        r"not delivered")
        self.assertIn("were not delivered", proc.stderr())

    def test_pub_sends_the_node_topic_and_json(self):
        port = ewtest.free_port()
        ep = "tcp://127.0.0.1:%d" % port
        # Slow joiner: the subscriber binds and subscribes first; edgewatch's PUB
        # connects to it, and a paced source keeps publishing after that.
        sub = self.peer(zmq.SUB, ep, bind=True, topic=b"gen")
        path = self.write_config(self.pipeline() + """
[source.gen]
plugin = synth
channels = temp, pressure
rate = 200
count = 1000
""" + self.sink(plugin="zmq", socket="pub", mode="connect", endpoint=ep))
        proc = self.start("run", path)
        msgs = []
        while len(msgs) < 50:
            m = sub.recv(20)
            self.assertIsNotNone(m, "received only %d messages\n%s" % (len(msgs), proc.output()))
            msgs.append(m)
        self.stop(proc)
        stamps = []
        for m in msgs:
            self.assertEqual(len(m), 2, m)
            self.assertEqual(m[0], b"gen")
            obj = json.loads(m[1])
            self.assertEqual(obj["node"], "gen")
            self.assertEqual(sorted(obj["values"]), ["pressure", "temp"])
            stamps.append(obj["ts"])
        self.assertEqual(stamps, sorted(stamps), "out of order")
        self.assertEqual(len(set(stamps)), len(stamps), "duplicates")

    def rotation_run(self, count, rotate_size, keep):
        out = os.path.join(self.tmp, "out.jsonl")
        path = self.write_config(self.pipeline() + self.csv_source(count) + self.sink(
            plugin="jsonl", path=out, rotate_size=rotate_size, rotate_keep=keep, fsync="batch"))
        result = self.cli("run", path)
        self.assertExit(result, ewtest.EXIT_OK)
        rotated = sorted(glob.glob(out + ".*"), key=lambda p: -int(p.rsplit(".", 1)[1]))
        lines = []
        for p in rotated + [out]:
            with open(p, "rb") as f:
                data = f.read()
            self.assertLessEqual(len(data), rotate_size, p)
            self.assertTrue(data.endswith(b"\n"), p)
            lines += [json.loads(line) for line in data.splitlines()]
        return out, rotated, lines

    def test_jsonl_rotation_keeps_every_line_once(self):
        count = 5000
        out, rotated, lines = self.rotation_run(count, 16384, 100)
        self.assertGreater(len(rotated), 10)
        self.assertEqual(rotated[-1], out + ".1")
        self.assertEqual(rotated[0], out + ".%d" % len(rotated))
        self.assertEqual(lines, [{"ts": iso(i), "node": "gen", "values": {"x": i * 0.5}}
                                 for i in range(count)])

    def test_jsonl_rotation_keeps_rotate_keep_files(self):
        count = 5000
        out, rotated, lines = self.rotation_run(count, 16384, 3)
        self.assertEqual(rotated, [out + ".3", out + ".2", out + ".1"])
        # the newest lines, consecutive, ending with the last sample
        first = count - len(lines)
        self.assertGreater(first, 0)
        self.assertEqual(lines, [{"ts": iso(i), "node": "gen", "values": {"x": i * 0.5}}
                                 for i in range(first, count)])


if __name__ == "__main__":
    ewtest.main()
