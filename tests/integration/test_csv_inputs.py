"""Hostile csv inputs and configs through the binary (issue 14, items 5, 10,
11 and 12): epoch and strptime timestamps end up exact in the jsonl output; a
file whose every row is rejected, an over-long line with on_long_line = stop
and a header that is not UTF-8 each exit 1 naming the file and line; a config
starting with a UTF-8 byte order mark runs."""

import json
import os
import unittest

import ewtest


class CsvInputsTest(ewtest.EdgewatchTest):

    runs = 0

    def replay(self, csv_text, options="", bom=False):
        """Writes data.csv and a csv -> jsonl config; runs it; returns (result, jsonl lines)."""
        data = os.path.join(self.tmp, "data.csv")
        with open(data, "wb") as f:
            f.write(csv_text if isinstance(csv_text, bytes) else csv_text.encode())
        CsvInputsTest.runs += 1
        out = os.path.join(self.tmp, "out%d.jsonl" % CsvInputsTest.runs)
        config = self.pipeline() + (
            "[source.in]\nplugin = csv\npath = %s\n%s\n"
            "[sink.out]\nplugin = jsonl\ninput = in\npath = %s\n" % (data, options, out))
        path = os.path.join(self.tmp, "pipeline.ini")
        with open(path, "wb") as f:
            f.write((b"\xef\xbb\xbf" if bom else b"") + config.encode())
        result = self.cli("run", path)
        lines = []
        if os.path.exists(out):
            with open(out, encoding="utf-8") as f:
                lines = [json.loads(line) for line in f]
        return result, data, lines

    def test_epoch_seconds_are_read_exactly(self):
        result, _, lines = self.replay("timestamp,a\n1700000000.123,1\n1700000001.5,2\n")
        self.assertExit(result, 0)
        self.assertEqual([r["ts"] for r in lines],
                         ["2023-11-14T22:13:20.123000Z", "2023-11-14T22:13:21.500000Z"])
        self.assertIn("timestamps are epoch seconds", result.stderr)

    def test_epoch_milliseconds_and_strptime_format(self):
        result, _, lines = self.replay("timestamp,a\n1700000000123,1\n")
        self.assertExit(result, 0)
        self.assertEqual(lines[0]["ts"], "2023-11-14T22:13:20.123000Z")
        result, _, lines = self.replay("timestamp;a\n26.11.2026 16:35:03,25;1\n",
                                       "delimiter = semicolon\n"
                                       "timestamp_format = %d.%m.%Y %H:%M:%S%f")
        self.assertExit(result, 0)
        self.assertEqual(lines[0]["ts"], "2026-11-26T16:35:03.250000Z")

    def test_every_row_rejected_is_a_failure(self):
        result, data, lines = self.replay("timestamp,a\n26.11.2026 16:35,1\n26.11.2026 16:36,2\n")
        self.assertExit(result, 1)
        self.assertIn("%s: all 2 data rows were rejected, none emitted (the first at line 2" % data,
                      result.stderr)
        self.assertNotIn("stopped cleanly", result.stderr)
        self.assertEqual(lines, [])

    def test_over_long_line_stops_when_asked_and_is_skipped_by_default(self):
        text = "timestamp,a\n2026-01-01 00:00:00,1\n2026-01-01 00:00:01,%s2\n2026-01-01 00:00:02,3\n" % (
            " " * 100)
        result, data, lines = self.replay(text, "max_line = 64\non_long_line = stop")
        self.assertExit(result, 1)
        self.assertIn("%s:3: line is longer than max_line = 64 bytes; stopping" % data,
                      result.stderr)
        self.assertNotIn("stopped cleanly", result.stderr)
        result, data, lines = self.replay(text, "max_line = 64")
        self.assertExit(result, 0)
        self.assertIn("%s:3: line is longer than max_line = 64 bytes" % data, result.stderr)
        self.assertEqual([r["values"]["a"] for r in lines], [1, 3])

    @unittest.expectedFailure
    def test_rows_before_a_fatal_error_are_delivered(self):
        # The csv source emits row 2 and then fails at line 3, but the host
        # (core/node.c) returns from a source's fatal error without flushing
        # the batch it holds, so row 2 never reaches the sink. Remove the
        # decorator when the host delivers what was emitted before the error.
        text = "timestamp,a\n2026-01-01 00:00:00,1\n2026-01-01 00:00:01,%s2\n" % (" " * 100)
        result, _, lines = self.replay(text, "max_line = 64\non_long_line = stop")
        self.assertExit(result, 1)
        self.assertEqual([r["values"]["a"] for r in lines], [1])

    def test_header_not_utf8_is_refused(self):
        result, data, lines = self.replay(b"timestamp,caf\xe9\n2026-01-01 00:00:00,1\n")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("%s:1: the name of column 2 is not valid UTF-8" % data, result.stderr)
        self.assertEqual(lines, [])

    def test_config_with_a_byte_order_mark_runs(self):
        result, _, lines = self.replay("timestamp,a\n2026-01-01 00:00:00,1\n", bom=True)
        self.assertExit(result, 0)
        self.assertNotIn("internal error", result.stderr)
        self.assertEqual(len(lines), 1)


if __name__ == "__main__":
    ewtest.main()
