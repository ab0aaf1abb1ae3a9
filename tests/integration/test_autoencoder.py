"""The autoencoder detector in a running pipeline: /health reports the node as
`learning` while it collects and trains, then `running`; a sample that breaks
the learnt correlation is flagged in the jsonl output."""

import json
import os
import shutil
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
        self.assertGreater(recs[1500]["score"], 0.8)
        false_alarms = sum(r["anomaly"] for i, r in enumerate(recs[1000:], 1000) if i != 1500)
        self.assertLessEqual(false_alarms, 10)
        for r in recs[1000:]:
            self.assertTrue(0 <= r["score"] <= 1)


    def _replay(self, csv_path, name, extra="", model="", train_samples=1000):
        """Runs csv -> autoencoder -> jsonl once; returns the output's bytes and
        the process (for its log)."""
        out = os.path.join(self.tmp, name + ".jsonl")
        cfg = self.write_config(self.pipeline() + peer.pipeline_body(
            csv_path, out, extra=extra, model=model, train_samples=train_samples),
            name=name + ".ini")
        proc = self.start("run", cfg)
        rc = self.wait_exit(proc, 240)
        data = b""
        if rc == ewtest.EXIT_OK:
            with open(out, "rb") as f:
                data = f.read()
        return rc, data, proc

    def test_replay_is_byte_identical_with_default_options(self):
        # Default options: background training, auto window and layers. The
        # model is applied at a sample fixed by the data (the train_samples-th
        # complete window + 1 + train_delay), whatever the thread's timing.
        csv_path = os.path.join(self.tmp, "in.csv")
        peer.write_correlated_csv(csv_path, 3000, seed=8, breaks={2500})
        outputs = []
        for run in range(2):
            shutil.rmtree(self.state_dir, ignore_errors=True)
            rc, data, proc = self._replay(csv_path, "run%d" % run, train_samples=None)
            self.assertEqual(rc, ewtest.EXIT_OK, proc.output())
            outputs.append(data)
        self.assertEqual(outputs[0], outputs[1])
        recs = [json.loads(line) for line in outputs[0].decode().splitlines()]
        self.assertEqual(len(recs), 3000)
        # window = auto: 8 samples per window for 3 channels, so the 500th
        # window (train_samples) ends at sample 506 and its model scores from
        # 506 + 1 + 10 = 517 on.
        errs = peer.errors(recs)
        self.assertTrue(all(e is None for e in errs[:517]), errs[513:521])
        self.assertTrue(all(e is not None for e in errs[517:]), errs[513:521])
        self.assertTrue(recs[2500]["anomaly"])

    def test_changed_layers_behind_a_saved_model(self):
        csv_path = os.path.join(self.tmp, "in.csv")
        peer.write_correlated_csv(csv_path, 1500, seed=9)
        rc, _, proc = self._replay(csv_path, "first", model="layers = 4, 1\n")
        self.assertEqual(rc, ewtest.EXIT_OK, proc.output())
        self.assertTrue(os.path.exists(peer.model_path(self.state_dir)))
        with open(peer.model_path(self.state_dir), "rb") as f:
            saved = f.read()
        # Default on_model_mismatch = refuse: the run is refused, naming the change.
        rc, _, proc = self._replay(csv_path, "refused", model="layers = 5, 2\n")
        self.assertNotEqual(rc, ewtest.EXIT_OK, proc.output())
        err = proc.stderr()
        self.assertIn("learnt with layers = 4, 1, the config has 5, 2", err)
        self.assertIn("on_model_mismatch = retrain", err)
        with open(peer.model_path(self.state_dir), "rb") as f:
            self.assertEqual(f.read(), saved)
        # retrain: learnt again with the new layers, saved, and then loaded.
        rc, data, proc = self._replay(csv_path, "retrain", model="layers = 5, 2\n",
                                      extra="on_model_mismatch = retrain\n")
        self.assertEqual(rc, ewtest.EXIT_OK, proc.output())
        self.assertIn("learnt for another config", proc.stderr())
        errs = peer.errors([json.loads(line) for line in data.decode().splitlines()])
        self.assertIsNone(errs[0])
        with open(peer.model_path(self.state_dir), "rb") as f:
            self.assertNotEqual(f.read(), saved)
        rc, data, proc = self._replay(csv_path, "loaded", model="layers = 5, 2\n")
        self.assertEqual(rc, ewtest.EXIT_OK, proc.output())
        self.assertIn("loaded model.bin", proc.stderr())
        errs = peer.errors([json.loads(line) for line in data.decode().splitlines()])
        # Scored from the first complete window (window = auto: 8 samples).
        self.assertIsNone(errs[6])
        self.assertTrue(all(e is not None for e in errs[7:]))


if __name__ == "__main__":
    ewtest.main()
