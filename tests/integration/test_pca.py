"""End to end: the pca detector's T^2, Q and combined statistic, read back from
the real binary's JSON lines, agree to 1e-9 with numpy's textbook computation
(standardise, eigendecomposition of the correlation matrix, components by
explained variance, EWMA, held-out quantile limits) on a fixture made here; a
replay gives the same bytes every run and after a save and load; a saved model
of other options is refused (or relearnt with on_model_mismatch = retrain); a
hostile model file with valid checksums is refused."""

import os
import shutil
import struct
import textwrap
import zlib

import numpy as np

import ewtest

TRAIN = 600
HOLD = 0.35
LAMBDA = 0.2
Q = 0.999
NAMES = ["p1", "p2", "f1", "f2", "t1", "t2x"]


def fixture(n=1400, seed=11):
    """Rows from 3 latent factors with distinct variances plus noise, on very
    different scales, with a correlation-breaking fault from row 1100 on."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, 3)) * np.array([3.0, 1.5, 0.7])
    mix = np.array([[1.0, 0.2, 0.0], [0.8, -0.5, 0.1], [0.0, 1.0, 0.4],
                    [0.3, 0.3, -1.0], [-0.6, 0.0, 0.9], [0.5, 1.0, 0.5]])
    x = f @ mix.T + 0.1 * rng.normal(size=(n, 6))
    x = x * np.array([1.0, 50.0, 0.01, 2.0, 1000.0, 1.0]) + np.array([5, 3000, 0.2, -7, 1e5, 0])
    x[1100:, 3] += 10.0  # f2 moves alone: off the model (Q)
    return x


def write_csv(path, x):
    with open(path, "w") as f:
        f.write("timestamp," + ",".join(NAMES) + "\n")
        for i, row in enumerate(x):
            f.write("2026-01-01T%02d:%02d:%02d.000Z,%s\n" % (
                i // 3600, i // 60 % 60, i % 60, ",".join(repr(float(v)) for v in row)))


def ewma(v, lam, start):
    out = np.empty_like(v)
    s = start
    for i, x in enumerate(v):
        s = x if s is None else lam * x + (1 - lam) * s
        out[i] = s
    return out


def reference(x, train=TRAIN, hold=HOLD, lam=LAMBDA, q=Q, variance=0.9, limits="holdout"):
    """T^2, Q and the combined statistic of rows train.. as the README defines them."""
    nfit = train - int(round(hold * train)) if limits == "holdout" else train
    fit = x[:nfit]
    mu = fit.mean(axis=0)
    sd = fit.std(axis=0, ddof=1)
    z = (fit - mu) / sd
    corr = z.T @ z / (nfit - 1)
    w, v = np.linalg.eigh(corr)
    order = np.argsort(w)[::-1]
    w, v = w[order], v[:, order]
    k = int(np.searchsorted(np.cumsum(w), variance * w.sum()) + 1)
    p, lk = v[:, :k], w[:k]
    zz = (x - mu) / sd
    t = zz @ p
    t2 = (t ** 2 / lk).sum(axis=1)
    qq = ((zz - t @ p.T) ** 2).sum(axis=1)
    s2 = ewma(t2, lam, None)
    sq = ewma(qq, lam, None)
    first = nfit if limits == "holdout" else 0
    l2 = np.quantile(s2[first:train], q)
    lq = np.quantile(sq[first:train], q)
    comb = np.maximum(s2 / l2, sq / lq)
    return k, t2[train:], qq[train:], comb[train:]


def rewrite_state(path, mutate):
    """Applies mutate(payload bytearray) to a state file and re-signs it with the
    host's checksums (layout in core/state.h), so that only the plugin can object."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    header, payload = data[:64], bytearray(data[64:])
    mutate(payload)
    struct.pack_into("<Q", header, 16, len(payload))
    struct.pack_into("<I", header, 24, zlib.crc32(bytes(payload)) & 0xffffffff)
    struct.pack_into("<I", header, 28, zlib.crc32(bytes(header[:28])) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(bytes(header) + bytes(payload))


class PcaTest(ewtest.EdgewatchTest):

    def config(self, csv, out, extra="", name="pipeline.ini"):
        return self.write_config(self.pipeline() + textwrap.dedent("""
            [source.rows]
            plugin = csv
            path = %s

            [detector.mon]
            plugin = pca
            input = rows
            train_samples = %d
            %s

            [sink.out]
            plugin = jsonl
            input = mon
            path = %s
            """) % (csv, TRAIN, extra, out), name=name)

    def run_ok(self, cfg):
        r = self.cli("run", cfg, timeout=120)
        self.assertExit(r, ewtest.EXIT_OK)
        return r

    def setUp(self):
        super().setUp()
        self.x = fixture()
        self.csv = os.path.join(self.tmp, "in.csv")
        write_csv(self.csv, self.x)

    def check_against_numpy(self, extra, **ref):
        out = os.path.join(self.tmp, "out-%d.jsonl" % len(os.listdir(self.tmp)))
        r = self.run_ok(self.config(self.csv, out, extra))
        lines = ewtest.json_lines(out)
        self.assertEqual(len(lines), len(self.x))
        k, t2, q, comb = reference(self.x, **ref)
        self.assertIn("model ready: %d of 6 components" % k, r.stderr)
        for line in lines[:TRAIN]:
            self.assertIn(line["score"], (None, 0))
            self.assertFalse(line["anomaly"])
            self.assertIsNone(line["values"]["t2"])
        got = np.array([[l["values"]["t2"], l["values"]["q"], l["values"]["spe_t2"]]
                        for l in lines[TRAIN:]])
        for col, want, what in ((0, t2, "T^2"), (1, q, "Q"), (2, comb, "spe_t2")):
            err = np.abs(got[:, col] - want) / np.maximum(1.0, np.abs(want))
            self.assertLess(err.max(), 1e-9, "%s differs from numpy by %g (row %d)" % (
                what, err.max(), TRAIN + int(err.argmax())))
        scores = np.array([l["score"] for l in lines[TRAIN:]])
        flags = np.array([l["anomaly"] for l in lines[TRAIN:]])
        self.assertTrue(np.all(flags == (comb > 1)))
        self.assertLess(np.abs(scores - comb / (comb + 1)).max(), 1e-12)
        # The fault (rows 1100..) is caught, normal rows mostly pass.
        self.assertGreater(flags[1100 - TRAIN + 20:].mean(), 0.9)
        self.assertLess(flags[:1100 - TRAIN].mean(), 0.05)
        return out

    def test_holdout_limits_with_smoothing_agree_with_numpy(self):
        out = self.check_against_numpy("")
        # The same replay, learning again from a fresh state folder, gives the same bytes.
        shutil.rmtree(self.state_dir)
        os.mkdir(self.state_dir)
        again = os.path.join(self.tmp, "again.jsonl")
        self.run_ok(self.config(self.csv, again, "", name="again.ini"))
        with open(out, "rb") as a, open(again, "rb") as b:
            self.assertEqual(a.read(), b.read())

    def test_fitted_limits_without_smoothing_agree_with_numpy(self):
        self.check_against_numpy("limits = fitted\nsmoothing = 0", limits="fitted", lam=1.0)

    def test_saved_model_continues_exactly(self):
        whole = os.path.join(self.tmp, "whole.jsonl")
        self.run_ok(self.config(self.csv, whole, "", name="whole.ini"))
        for f in os.listdir(self.state_dir):
            os.rename(os.path.join(self.state_dir, f), os.path.join(self.tmp, "old-" + f))
        train_csv, test_csv = os.path.join(self.tmp, "train.csv"), os.path.join(self.tmp, "test.csv")
        write_csv(train_csv, self.x[:TRAIN])
        write_csv(test_csv, self.x[TRAIN:])
        self.run_ok(self.config(train_csv, os.path.join(self.tmp, "t.jsonl"), "", name="t.ini"))
        second = os.path.join(self.tmp, "second.jsonl")
        r = self.run_ok(self.config(test_csv, second, "", name="s.ini"))
        self.assertIn("scoring from the first sample", r.stderr)
        a = [(l["score"], l["values"]) for l in ewtest.json_lines(whole)[TRAIN:]]
        b = [(l["score"], l["values"]) for l in ewtest.json_lines(second)]
        self.assertEqual(a, b)

    def state_file(self):
        path = os.path.join(self.state_dir, "mon", "pca.bin")
        self.assertTrue(os.path.exists(path), "no model saved at %s" % path)
        return path

    def test_mismatched_model_is_refused_or_relearnt(self):
        self.run_ok(self.config(self.csv, os.path.join(self.tmp, "1.jsonl")))
        path = self.state_file()
        r = self.cli("run", self.config(self.csv, os.path.join(self.tmp, "2.jsonl"),
                                        "variance = 0.8", name="v.ini"), timeout=120)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("pca.bin was learnt for another config", r.stderr)
        self.assertIn("variance = 0.9 in the model, 0.8 here", r.stderr)
        self.assertIn("on_model_mismatch = retrain", r.stderr)
        with open(path, "rb") as f:
            before = f.read()
        r = self.run_ok(self.config(self.csv, os.path.join(self.tmp, "3.jsonl"),
                                    "variance = 0.8\non_model_mismatch = retrain", name="r.ini"))
        self.assertIn("relearning", r.stderr)
        self.assertIn("model ready", r.stderr)
        with open(path, "rb") as f:
            self.assertNotEqual(f.read(), before)

    def test_hostile_model_file_is_refused(self):
        self.run_ok(self.config(self.csv, os.path.join(self.tmp, "1.jsonl")))
        path = self.state_file()
        cases = {
            "huge channel count": lambda p: struct.pack_into("<I", p, 12, 0x7fffffff),
            "NaN limit": lambda p: struct.pack_into("<d", p, len(p) - 8 * (2 + 2 * 6) - 4 - 16 - 24,
                                                    float("nan")),
            "truncated": lambda p: p.__delitem__(slice(len(p) - 9, None)),
        }
        for what, mutate in cases.items():
            with open(path, "rb") as f:
                saved = f.read()
            rewrite_state(path, mutate)
            r = self.cli("run", self.config(self.csv, os.path.join(self.tmp, "h.jsonl")),
                         timeout=120)
            self.assertNotEqual(r.returncode, 0, what)
            self.assertIn("is not a valid pca model", r.stderr, what)
            with open(path, "wb") as f:
                f.write(saved)


if __name__ == "__main__":
    ewtest.main()
