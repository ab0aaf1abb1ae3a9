"""The zmq source end to end against Python ZeroMQ peers (Debian's python3-zmq):
a publisher over tcp:// with topic filters (other topics are never received),
a pusher over ipc:// into a bound PULL, json and csv payloads, malformed
messages counted and skipped; edgewatch writes what it receives to a jsonl file."""

import os
import re
import time

import ewtest
import peer_zmq


def metric(body, name, node):
    m = re.search(r'^edgewatch_%s_total\{node="%s"\} (\d+)$' % (name, node), body, re.M)
    return int(m.group(1)) if m else None


class ZmqTest(ewtest.EdgewatchTest):

    def setUp(self):
        super().setUp()
        self.out = os.path.join(self.tmp, "out.jsonl")
        self.port = ewtest.free_port()

    def run_zmq(self, options):
        path = self.write_config(self.pipeline(http="127.0.0.1:%d" % self.port, linger="0") + """
[source.bus]
plugin = zmq
%s

[sink.out]
plugin = jsonl
input = bus
path = %s
flush = line
""" % (options, self.out))
        self.assertExit(self.cli("check", path), ewtest.EXIT_OK)
        return self.start("run", path)

    def lines_out(self):
        return ewtest.whole_json_lines(self.out)

    def metrics(self):
        status, _, body = ewtest.http_request(self.port, "GET", "/metrics")
        self.assertEqual(status, 200)
        return body

    def wait_messages(self, proc, n):
        """Waits until the source has received n messages (good and bad)."""
        def received():
            try:
                return (metric(self.metrics(), "zmq_messages", "bus") or 0) >= n
            except OSError:
                return False
        self.wait_for(received, proc, "%d messages received" % n)

    def test_sub_with_topic_filter_over_tcp(self):
        pub = peer_zmq.Publisher("tcp://127.0.0.1:*")
        self.addCleanup(pub.close)
        endpoint = pub.sock.getsockopt(peer_zmq.zmq.LAST_ENDPOINT).decode()
        proc = self.run_zmq("""socket = sub
endpoint = %s
topics = pump1
channels = temp, rpm""" % endpoint)
        pub.wait_subscription(b"pump1")
        pub.send(b"pump1", b'{"ts": 1764174903250, "temp": 21.5, "rpm": 1500}')
        pub.send(b"pump2", b'{"temp": 99, "rpm": 99}')            # other topic
        pub.send(b"pump1", b'{"ts": "2026-11-26T16:35:03Z", "temp": -3.25}')
        pub.send(None, b'other {"temp": 98}')                      # other topic, one frame
        pub.send(b"pump1", b"not json")                            # malformed
        pub.send(b"pump1", b'{"temp": "hot"}')                     # malformed
        pub.send(b"pump1", b'{"nothing": 1}')                      # none of the channels
        pub.send(None, b'pump1 {"temp": 7, "rpm": 8}')             # topic in the frame
        self.wait_messages(proc, 6)
        self.wait_for(lambda: len(self.lines_out()) >= 3, proc, "3 output lines")
        out = self.lines_out()
        self.assertEqual(len(out), 3, out)
        self.assertEqual(out[0]["ts"], "2025-11-26T16:35:03.250000Z")
        self.assertEqual(out[1]["ts"], "2026-11-26T16:35:03.000000Z")
        self.assertEqual([o["values"] for o in out], [
            {"temp": 21.5, "rpm": 1500}, {"temp": -3.25, "rpm": None}, {"temp": 7, "rpm": 8}])
        body = self.metrics()
        self.assertEqual(metric(body, "zmq_messages", "bus"), 6, body)
        self.assertEqual(metric(body, "zmq_bad_messages", "bus"), 3, body)
        self.assertEqual(self.stop(proc), ewtest.EXIT_OK, proc.output())
        err = proc.stderr()
        self.assertIn("6 messages received, 3 bad messages skipped", err)
        self.assertIn('bad message skipped: not JSON', err)

    def test_pull_bind_over_ipc_with_csv(self):
        endpoint = "ipc://%s/in.sock" % self.tmp
        proc = self.run_zmq("""socket = pull
mode = bind
endpoint = %s
format = csv
columns = ts, x, y
channels = y, x""" % endpoint)
        self.wait_for(lambda: os.path.exists(endpoint[len("ipc://"):]), proc, "the ipc socket")
        push = peer_zmq.Pusher(endpoint)
        self.addCleanup(push.close)
        count = 1000
        for i in range(count):
            push.send(b"%d,%d,%d.5" % (1764174903000 + i, i, -i))
        push.send(b"1,2")                       # two fields of three
        push.send(b"1,2,3,4")                   # four
        push.send(b"\x00\x01\x02")              # binary
        push.send(b"a", b"b", b"1,2,3")         # three frames
        push.send(b",5,6")                      # no timestamp: stamped on arrival
        self.wait_messages(proc, count + 5)
        self.wait_for(lambda: len(self.lines_out()) >= count + 1, proc, "all output lines")
        out = self.lines_out()
        self.assertEqual(len(out), count + 1)
        for i, o in enumerate(out[:count]):
            self.assertEqual(o["values"], {"y": float("%d.5" % -i), "x": i})
            self.assertEqual(o["ts"], "2025-11-26T16:35:03.%03d000Z" % i)
        self.assertEqual(out[0]["ts"], "2025-11-26T16:35:03.000000Z")
        self.assertEqual(out[999]["ts"], "2025-11-26T16:35:03.999000Z")
        self.assertEqual(out[-1]["values"], {"y": 6, "x": 5})
        self.assertEqual(metric(self.metrics(), "zmq_bad_messages", "bus"), 4)
        self.assertEqual(self.stop(proc), ewtest.EXIT_OK, proc.output())
        self.assertIn("%d messages received, 4 bad messages skipped" % (count + 5), proc.stderr())


    def test_peer_gone_mid_stream_and_back(self):
        """A connecting PULL source whose peer goes away and comes back on the same
        endpoint: ZeroMQ reconnects by itself, every message of both peers arrives,
        and /health stays 200 throughout (an idle source is not a fault)."""
        port = ewtest.free_port()
        endpoint = "tcp://127.0.0.1:%d" % port
        proc = self.run_zmq("""socket = pull
mode = connect
endpoint = %s
channels = n""" % endpoint)
        first = peer_zmq.Pusher(endpoint, bind=True)
        for i in range(300):
            first.send(b'{"n": %d}' % i)
        first.close()  # LINGER delivers what is queued, then the peer is gone
        self.wait_for(lambda: len(self.lines_out()) >= 300, proc, "the first peer's messages")
        status, _, body = ewtest.http_request(self.port, "GET", "/health")
        self.assertEqual(status, 200, body)
        time.sleep(0.5)
        second = peer_zmq.Pusher(endpoint, bind=True)
        self.addCleanup(second.close)
        for i in range(300, 600):
            second.send(b'{"n": %d}' % i)
        self.wait_for(lambda: len(self.lines_out()) >= 600, proc, "the second peer's messages")
        self.assertEqual([o["values"]["n"] for o in self.lines_out()], list(range(600)))
        status, _, body = ewtest.http_request(self.port, "GET", "/health")
        self.assertEqual(status, 200, body)
        self.assertEqual(self.stop(proc), ewtest.EXIT_OK, proc.output())

if __name__ == "__main__":
    ewtest.main()
