"""Model persistence end to end with the edgewatch binary: csv -> autoencoder ->
jsonl learns and saves model.bin; killed with SIGKILL after the save, the next
run loads it and scores from the first sample exactly as the first run scored;
a corrupt model file is moved aside, reported, and relearnt."""

import glob
import json
import os
import signal
import time

import ewtest
import peer_autoencoder as peer


def read_records(path):
    """JSON lines of a file another process may still be writing: complete lines only."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [json.loads(line) for line in text.split("\n")[:-1] if line]


OWN_SCORES = "calibrate = none\n"


class PersistenceTest(ewtest.EdgewatchTest):

    def run_to_end(self, csv_path, out_path, **kw):
        """Runs the pipeline until the CSV ends; returns (records, stderr)."""
        cfg = self.write_config(self.pipeline() + peer.pipeline_body(csv_path, out_path, **kw),
                                name="run-%s.ini" % os.path.basename(out_path))
        proc = self.start("run", cfg)
        code = self.wait_exit(proc, 120)
        self.assertEqual(code, ewtest.EXIT_OK, proc.output())
        return ewtest.json_lines(out_path), proc.stderr()

    def test_restart_after_sigkill_scores_from_first_sample(self):
        rows = 3000
        csv_path = os.path.join(self.tmp, "in.csv")
        peer.write_correlated_csv(csv_path, rows, breaks={2500})
        out1 = os.path.join(self.tmp, "out1.jsonl")
        # Paced at 400 rows/s: 1000 training rows take 2.5 s, the rest 5 s more.
        # The plugin's own scores (calibrate = none): the host's calibration history
        # is saved at a graceful stop only, and a SIGKILL loses it.
        cfg = self.write_config(self.pipeline() + peer.pipeline_body(csv_path, out1, rate=400, extra=OWN_SCORES))
        proc = self.start("run", cfg)
        model = peer.model_path(self.state_dir)
        deadline = time.monotonic() + 60
        while not os.path.exists(model):
            self.assertTrue(proc.running(), "exited before saving the model\n" + proc.output())
            self.assertLess(time.monotonic(), deadline, "no model.bin within 60 s\n" + proc.output())
            time.sleep(0.05)
        # Let some samples be scored with the model, then kill without warning.
        deadline = time.monotonic() + 60
        while sum(e is not None for e in peer.errors(read_records(out1))) < 100:
            self.assertTrue(proc.running(), proc.output())
            self.assertLess(time.monotonic(), deadline, "nothing scored\n" + proc.output())
            time.sleep(0.05)
        proc.signal(signal.SIGKILL)
        self.assertEqual(proc.wait(10), -signal.SIGKILL)
        self.assertIn("model saved to model.bin", proc.stderr())
        first = read_records(out1)
        self.assertLess(len(first), rows, "the first run was meant to be killed before the end")
        # The first run learnt from rows 0..999 and scored nothing meanwhile.
        self.assertTrue(all(e is None for e in peer.errors(first)[:1000]))
        self.assertTrue(all(r["score"] is None for r in first[:1000]))

        # Second run: no relearning; every row scored from the first, and exactly
        # as the first run scored the rows it had the model for.
        out2 = os.path.join(self.tmp, "out2.jsonl")
        second, err = self.run_to_end(csv_path, out2, extra=OWN_SCORES)
        self.assertIn("loaded model.bin", err)
        self.assertNotIn("learning the model", err)
        self.assertEqual(len(second), rows)
        errs2 = peer.errors(second)
        self.assertTrue(all(e is not None for e in errs2), "a row was not scored")
        compared = 0
        for i, rec in enumerate(first):
            e1 = rec["values"]["reconstruction_error"]
            if e1 is None:
                continue
            self.assertEqual(e1, errs2[i], "row %d" % i)
            self.assertEqual(rec["score"], second[i]["score"], "row %d" % i)
            self.assertEqual(rec["anomaly"], second[i]["anomaly"], "row %d" % i)
            compared += 1
        self.assertGreaterEqual(compared, 100)
        # And it still finds the break the first run may not have reached.
        self.assertTrue(second[2500]["anomaly"], second[2500])
        self.assertGreater(second[2500]["score"], 0.5)

    def test_corrupt_model_is_moved_aside_and_relearnt(self):
        csv_path = os.path.join(self.tmp, "in.csv")
        peer.write_correlated_csv(csv_path, 1500)
        # Trained inside the stream, so that which rows are scored does not
        # depend on how fast the training thread is.
        sync = "background = false\n"
        first, err = self.run_to_end(csv_path, os.path.join(self.tmp, "out1.jsonl"), extra=sync)
        self.assertIn("model saved to model.bin", err)
        model = peer.model_path(self.state_dir)
        with open(model, "r+b") as f:
            f.seek(-30, os.SEEK_END)
            byte = f.read(1)
            f.seek(-30, os.SEEK_END)
            f.write(bytes([byte[0] ^ 0xff]))
        second, err = self.run_to_end(csv_path, os.path.join(self.tmp, "out2.jsonl"), extra=sync)
        aside = glob.glob(model + ".corrupt-*")
        self.assertEqual(len(aside), 1, os.listdir(os.path.dirname(model)))
        self.assertRegex(err, r"state file .*model\.bin is corrupt .*moved aside")
        self.assertIn("learning the model", err)
        self.assertIn("model saved to model.bin", err)
        self.assertNotIn("loaded model.bin", err)
        # Relearnt from the same rows with the same seed: the same model again.
        self.assertEqual(peer.errors(first), peer.errors(second))
        self.assertTrue(all(e is None for e in peer.errors(second)[:1000]))
        self.assertTrue(all(e is not None for e in peer.errors(second)[1000:]))

    def test_model_for_other_options_is_rejected_and_relearnt(self):
        csv_path = os.path.join(self.tmp, "in.csv")
        peer.write_correlated_csv(csv_path, 1200)
        self.run_to_end(csv_path, os.path.join(self.tmp, "out1.jsonl"))
        # Relearnt under on_model_mismatch = retrain; the default (refuse) is
        # tested in test_autoencoder.py.
        _, err = self.run_to_end(csv_path, os.path.join(self.tmp, "out2.jsonl"),
                                 extra="quantile = 0.95\non_model_mismatch = retrain\n")
        self.assertRegex(err, r"model\.bin rejected \(learnt for another config\): it was learnt "
                              r"with quantile = 0\.99, the config has 0\.95")
        self.assertIn("learning the model", err)


if __name__ == "__main__":
    ewtest.main()
