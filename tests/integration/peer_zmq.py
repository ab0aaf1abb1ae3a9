"""ZeroMQ peers (Debian's python3-zmq) for the zmq e2e tests and the benchmark."""

import zmq


class Publisher:
    """An XPUB socket: publishes like PUB, and also tells when a subscription
    arrives, so a test sends nothing before the subscriber can receive it."""

    def __init__(self, endpoint, bind=True):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 2000)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        if bind:
            self.sock.bind(endpoint)
        else:
            self.sock.connect(endpoint)

    def wait_subscription(self, topic, timeout=10.0):
        """Waits (bounded) for the subscription to `topic` (bytes)."""
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        want = b"\x01" + topic
        while True:
            if not poller.poll(int(timeout * 1000)):
                raise AssertionError("no subscription to %r within %ss" % (topic, timeout))
            if self.sock.recv() == want:
                return

    def send(self, topic, payload):
        if topic is None:
            self.sock.send(payload)
        else:
            self.sock.send_multipart([topic, payload])

    def close(self):
        self.sock.close()
        self.ctx.term()


class Pusher:
    def __init__(self, endpoint, bind=False):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.LINGER, 5000)
        if bind:
            self.sock.bind(endpoint)
        else:
            self.sock.connect(endpoint)

    def send(self, *frames):
        self.sock.send_multipart(list(frames))

    def close(self):
        self.sock.close()
        self.ctx.term()
