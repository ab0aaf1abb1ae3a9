"""The autoencoder detector in a running pipeline: /health reports the node as
`learning` while it collects and trains, then `running`; a sample that breaks
the learnt correlation is flagged in the jsonl output."""

import json
import os
import time

import ewtest
import peer_autoencoder as peer


class AutoencoderTest(ewtest.EdgewatchTest):

    def test_health_shows_learning_then_running(self):
        port = ewtest.free_port()
        cfg = self.write_config(self.pipeline(http="127.0.0.1:%d" % port) + """
[source.gen]
plugin = synth
channels = a, b, c
rate = 400
seed = 3

[detector.ae]
plugin = autoencoder
input = gen
layers = 2, 1
train_samples = 800
epochs = 50

[sink.out]
plugin = null
input = ae
""")
        proc = self.start("run", cfg)
        self.wait_http(proc, port)
        states = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            self.assertTrue(proc.running(), proc.output())
            try:
                status, _, body = ewtest.http_request(port, "GET", "/health", timeout=2.0)
            except OSError:
                time.sleep(0.1)
                continue
            self.assertEqual(status, 200, body)  # learning is a healthy state
            state = json.loads(body)["nodes"]["ae"]["state"]
            if not states or states[-1] != state:
                states.append(state)
            if state == "running" and "learning" in states:
                break
            time.sleep(0.1)
        self.assertEqual(states[:1], ["learning"], states)
        self.assertEqual(states[-1], "running", "%s\n%s" % (states, proc.output()))
        self.assertEqual(self.stop(proc), ewtest.EXIT_OK, proc.output())
        err = proc.stderr()
        self.assertIn("model ready: scoring", err)
        self.assertTrue(os.path.exists(peer.model_path(self.state_dir)))

    def test_flags_a_broken_correlation(self):
        csv_path = os.path.join(self.tmp, "in.csv")
        out = os.path.join(self.tmp, "out.jsonl")
        peer.write_correlated_csv(csv_path, 2000, seed=5, breaks={1500})
        cfg = self.write_config(self.pipeline() + peer.pipeline_body(
            csv_path, out, extra="background = false\n"))
        proc = self.start("run", cfg)
        self.assertEqual(self.wait_exit(proc, 120), ewtest.EXIT_OK, proc.output())
        recs = ewtest.json_lines(out)
        self.assertEqual(len(recs), 2000)
        # background = false: training happens in the batch that completes the
        # 1000th window, so every later row is scored.
        self.assertTrue(all(r["values"]["reconstruction_error"] is None for r in recs[:1000]))
        self.assertTrue(all(r["values"]["reconstruction_error"] is not None for r in recs[1000:]))
        self.assertTrue(recs[1500]["anomaly"])
        self.assertGreater(recs[1500]["score"], 0.9)
        false_alarms = sum(r["anomaly"] for i, r in enumerate(recs[1000:], 1000) if i != 1500)
        self.assertLessEqual(false_alarms, 10)
        for r in recs[1000:]:
            self.assertTrue(0 <= r["score"] <= 1)


if __name__ == "__main__":
    ewtest.main()
