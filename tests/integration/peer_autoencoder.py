"""Helpers for the autoencoder's end-to-end tests: correlated CSV data and the
pipeline that runs it (csv -> autoencoder -> jsonl)."""

import os
import random

# Node names of the pipeline below.
DETECTOR = "ae"


def write_correlated_csv(path, rows, seed=1, breaks=()):
    """Writes a CSV of three channels that move along one line (a = u,
    b = 0.5 u + 2, c = -u, small noise), timestamps 1 ms apart. Rows whose index
    is in `breaks` leave the line (c = +a) while every value stays in range."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        f.write("timestamp,a,b,c\n")
        for i in range(rows):
            u = rng.uniform(-1, 1)
            a = u + rng.gauss(0, 0.02)
            b = 0.5 * u + 2 + rng.gauss(0, 0.02)
            c = -u + rng.gauss(0, 0.02)
            if i in breaks:
                a, b, c = 0.8, 2.4, 0.8
            s, ms = divmod(i, 1000)
            f.write("2026-01-01T%02d:%02d:%02d.%03dZ,%.6f,%.6f,%.6f\n" % (
                s // 3600, s // 60 % 60, s % 60, ms, a, b, c))


def pipeline_body(csv_path, out_path, rate=0, train_samples=1000, extra="",
                  model="window = 1\nlayers = 4, 1\n"):
    """The nodes of csv -> autoencoder -> jsonl (flushed per line); `model` holds
    the detector's shaping options ("" = the plugin's defaults), and
    train_samples = None leaves that option at its default too."""
    return """
[source.dev]
plugin = csv
path = %s
rate = %s

[detector.%s]
plugin = autoencoder
input = dev
%s%s
%s
[sink.out]
plugin = jsonl
input = %s
path = %s
flush = line
""" % (csv_path, rate, DETECTOR, model,
       "" if train_samples is None else "train_samples = %d" % train_samples, extra, DETECTOR,
       out_path)


def model_path(state_dir):
    """Where the host keeps the detector's model."""
    return os.path.join(state_dir, DETECTOR, "model.bin")


def errors(records):
    """reconstruction_error of each output record (None while learning)."""
    return [r["values"]["reconstruction_error"] for r in records]
