"""End to end: a forest fitted in scikit-learn, exported with
tools/export-sklearn-iforest, scores in edgewatch (csv -> iforest model=... ->
jsonl) exactly as scikit-learn's -score_samples, and the exporter refuses what
is not a fitted IsolationForest."""

import os
import pickle
import subprocess
import sys
import textwrap

import ewtest

try:
    import joblib
    import numpy as np
    from sklearn.ensemble import IsolationForest
except ImportError as e:  # tools/deps installs python3-sklearn and python3-joblib
    print("test_sklearn needs python3-sklearn, python3-numpy and python3-joblib: %s" % e)
    sys.exit(1)

EXPORT = os.path.join(ewtest.SOURCE_DIR, "tools", "export-sklearn-iforest")
CHANNELS = ["c0", "c1", "c2", "c3"]


def rows_to_score(model, x):
    """Training rows, far outliers, and rows placed on the split thresholds of the
    first trees (exactly, and one double above, which float32 rounding sends the
    same way as the threshold itself): the cases where <= and rounding matter."""
    rng = np.random.default_rng(3)
    outliers = rng.normal(size=(30, 4)) * 6
    edge = []
    for tree, features in list(zip(model.estimators_, model.estimators_features_))[:5]:
        t = tree.tree_
        for node in range(min(t.node_count, 15)):
            if t.children_left[node] < 0:
                continue
            row = x[node % len(x)].copy()
            col = features[t.feature[node]]
            row[col] = t.threshold[node]
            edge.append(row.copy())
            row[col] = np.nextafter(t.threshold[node], np.inf)
            edge.append(row.copy())
    return np.vstack([x[:400], outliers, np.array(edge)])


class SklearnTest(ewtest.EdgewatchTest):

    def fit(self, **kw):
        rng = np.random.default_rng(1)
        cov = np.array([[1, .8, 0, 0], [.8, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, .5]])
        x = rng.multivariate_normal([10, -3, 0, 100], cov, size=1200)
        model = IsolationForest(random_state=0, **kw).fit(x)
        return model, x

    def export(self, model, dump="pickle", columns=None):
        src = os.path.join(self.tmp, "model." + ("pkl" if dump == "pickle" else "joblib"))
        if dump == "pickle":
            with open(src, "wb") as f:
                pickle.dump(model, f)
        else:
            joblib.dump(model, src)
        dst = os.path.join(self.tmp, "model.forest")
        cmd = [EXPORT] + (["--columns", columns] if columns else []) + [src, dst]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return dst

    def run_edgewatch(self, rows, model_path, extra="", columns=CHANNELS, expect=ewtest.EXIT_OK):
        csv = os.path.join(self.tmp, "rows.csv")
        with open(csv, "w") as f:
            f.write("timestamp," + ",".join(columns) + "\n")
            for i, row in enumerate(rows):
                # repr() of a float reads back as the same double.
                f.write("2026-01-01T00:%02d:%02d.%03dZ,%s\n" % (
                    i // 60000 % 60, i // 1000 % 60, i % 1000, ",".join(repr(float(v)) for v in row)))
        out = os.path.join(self.tmp, "out.jsonl")
        if os.path.exists(out):
            os.unlink(out)
        cfg = self.write_config(self.pipeline() + textwrap.dedent("""
            [source.rows]
            plugin = csv
            path = %s

            [detector.forest]
            plugin = iforest
            input = rows
            model = %s
            calibrate = none
            %s

            [sink.out]
            plugin = jsonl
            input = forest
            path = %s
            """) % (csv, model_path, extra, out))
        r = self.cli("run", cfg, timeout=120)
        self.assertExit(r, expect)
        if expect != ewtest.EXIT_OK:
            return r
        lines = ewtest.json_lines(out)
        self.assertEqual(len(lines), len(rows))
        return lines

    def assert_same_scores(self, model, rows, lines):
        expected = -model.score_samples(rows)
        predicted = model.predict(rows) == -1
        worst = 0.0
        for i, (line, want, flag) in enumerate(zip(lines, expected, predicted)):
            got = line["score"]
            worst = max(worst, abs(got - want))
            self.assertLess(abs(got - want), 1e-9, "row %d: edgewatch %r, sklearn %r" % (
                i, got, want))
            self.assertEqual(line["anomaly"], bool(flag), "row %d (score %r)" % (i, got))
            # path_length is the mean path: score = 2^(-path / c(max_samples_))
            n = model.max_samples_
            c = 2 * (np.log(n - 1) + np.euler_gamma) - 2 * (n - 1) / n
            self.assertAlmostEqual(line["values"]["path_length"], -np.log2(got) * c, places=9)
        self.assertTrue(any(predicted) and not all(predicted), "the rows must include both kinds")
        return worst

    def test_pickle_scores_match_sklearn(self):
        model, x = self.fit()
        rows = rows_to_score(model, x)
        lines = self.run_edgewatch(rows, self.export(model, "pickle"))
        self.assert_same_scores(model, rows, lines)

    def test_joblib_scores_match_sklearn(self):
        model, x = self.fit(n_estimators=60, max_samples=100)
        rows = rows_to_score(model, x)
        lines = self.run_edgewatch(rows, self.export(model, "joblib"))
        self.assert_same_scores(model, rows, lines)

    def test_contamination_and_feature_subsets(self):
        # max_features < 1: each tree sees a subset of columns, mapped back on export;
        # contamination: the threshold (-offset_) travels in the model file.
        model, x = self.fit(max_features=0.5, contamination=0.05, max_samples=512)
        rows = rows_to_score(model, x)
        lines = self.run_edgewatch(rows, self.export(model), extra="contamination = 0.05")
        self.assert_same_scores(model, rows, lines)

    def test_feature_names_travel_and_reordered_columns_are_refused(self):
        model, x = self.fit()
        # What fitting on a pandas DataFrame sets.
        model.feature_names_in_ = np.array(CHANNELS, dtype=object)
        rows = rows_to_score(model, x)
        path = self.export(model)
        with open(path, "rb") as f:
            data = f.read()
        self.assertIn(b"channel=c0\nchannel=c1\nchannel=c2\nchannel=c3\n", data)
        # The same columns in the same order: scores as scikit-learn.
        self.assert_same_scores(model, rows, self.run_edgewatch(rows, path))
        # The CSV's columns swapped (the values follow their names): refused,
        # naming both orders.
        swapped = ["c1", "c0", "c2", "c3"]
        r = self.run_edgewatch(rows[:, [1, 0, 2, 3]], path, columns=swapped,
                               expect=ewtest.EXIT_RUNTIME)
        self.assertIn("was fitted on the columns c0,c1,c2,c3, but the input's channels are "
                      "c1,c0,c2,c3", r.stderr)
        # --columns names a model fitted on a plain array.
        model2, _ = self.fit(n_estimators=20)
        path2 = self.export(model2, columns="c0,c1,c2,c3")
        r = self.run_edgewatch(rows, path2, columns=["c0", "c1", "c3", "c2"],
                               expect=ewtest.EXIT_RUNTIME)
        self.assertIn("fitted on the columns c0,c1,c2,c3", r.stderr)

    def test_exporter_names_why_a_pickle_cannot_be_read(self):
        def export(raw):
            src = os.path.join(self.tmp, "bad.pkl")
            with open(src, "wb") as f:
                f.write(raw)
            return subprocess.run([EXPORT, src, os.path.join(self.tmp, "bad.forest")],
                                  capture_output=True, text=True, timeout=120)
        model, _ = self.fit(n_estimators=5)
        good = pickle.dumps(model)
        # Truncated.
        r = export(good[:len(good) // 2])
        self.assertEqual(r.returncode, 1)
        self.assertIn("truncated", r.stderr)
        # A module this machine lacks.
        r = export(b"\x80\x04cnosuchmodule_ew\nThing\n)\x81.")
        self.assertEqual(r.returncode, 1)
        self.assertIn("needs the Python module 'nosuchmodule_ew'", r.stderr)
        # A class this scikit-learn lacks (what a model saved by another version refers to).
        r = export(b"\x80\x04csklearn.ensemble._iforest\nIsolationForestFromTheFuture\n)\x81.")
        self.assertEqual(r.returncode, 1)
        self.assertIn("another version of scikit-learn", r.stderr)

    def test_exporter_refuses_what_is_not_a_fitted_forest(self):
        def export(obj=None, raw=None):
            src = os.path.join(self.tmp, "bad.pkl")
            with open(src, "wb") as f:
                if raw is not None:
                    f.write(raw)
                else:
                    pickle.dump(obj, f)
            return subprocess.run([EXPORT, src, os.path.join(self.tmp, "bad.forest")],
                                  capture_output=True, text=True, timeout=120)
        r = export({"not": "a model"})
        self.assertEqual(r.returncode, 1)
        self.assertIn("holds a builtins.dict, not a sklearn.ensemble.IsolationForest", r.stderr)
        r = export(IsolationForest())
        self.assertEqual(r.returncode, 1)
        self.assertIn("never fitted", r.stderr)
        r = export(raw=b"this is not a pickle at all")
        self.assertEqual(r.returncode, 1)
        self.assertIn("neither a pickle nor a joblib file", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "bad.forest")))
        r = subprocess.run([EXPORT, "/nonexistent/m.pkl", os.path.join(self.tmp, "x")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot read /nonexistent/m.pkl", r.stderr)
        r = subprocess.run([EXPORT], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)

    def test_model_for_other_channels_is_a_startup_error(self):
        model, x = self.fit()
        path = self.export(model)
        csv = os.path.join(self.tmp, "three.csv")
        with open(csv, "w") as f:
            f.write("a,b,c\n1,2,3\n")
        cfg = self.write_config(self.pipeline() + textwrap.dedent("""
            [source.rows]
            plugin = csv
            path = %s
            timestamp_column =

            [detector.forest]
            plugin = iforest
            input = rows
            model = %s

            [sink.out]
            plugin = null
            input = forest
            """) % (csv, path))
        r = self.cli("run", cfg)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("expects 4 channels but the input has 3", r.stderr)


if __name__ == "__main__":
    ewtest.main()
