"""A Modbus server for the modbus source's tests, built on Debian's pymodbus
(python3-pymodbus 3.0, with python3-serial and python3-serial-asyncio), which
encodes every value itself with its BinaryPayloadBuilder: the expected numbers
come from code that is not ours.

Run as a program it serves the layout below until killed:

  peer_modbus.py tcp PORT [--generation G] [--delay-file F]
  peer_modbus.py rtu DEVICE [--baud B] [--generation G] [--delay-file F]

and prints READY once it listens (TCP) or has opened the device (RTU). With
--delay-file it plays a slow device: before answering each request it sleeps
for the number of seconds written in F (0 or no file: no delay), so that a test
can make it late and then prompt again while it runs.
Imported, it gives the tests the register map (`map_lines`), the values the
source must read (`expected`) and process helpers (`ModbusPeer`, `PtyPair`).

Layout (protocol addresses, answered for every unit id):
  holding 0            uint16 = generation (changes when the test restarts the peer)
  holding 998          uint16 = EDGE_VALUE, not in map_lines (for the exception test)
  holding 100..        every type x every byte/word order, adjacent
  holding 300..        scaled values (value * scale + offset)
  input   0..          a few types again, in the input table
  coil    0..9, discrete 0..4: bit patterns
The holding table ends at HOLDING_SIZE: a read beyond it is an illegal data
address (exception 2).
"""

import argparse
import asyncio
import os
import signal
import struct
import subprocess
import sys
import time

HOLDING_SIZE = 1000
INPUT_SIZE = 200
BITS_SIZE = 100
EDGE_VALUE = 4242  # at holding HOLDING_SIZE - 2, next to the end of the table

ORDERS = {  # name -> (byteorder, wordorder) of pymodbus's BinaryPayloadBuilder
    "ABCD": (">", ">"),
    "BADC": ("<", ">"),
    "CDAB": (">", "<"),
    "DCBA": ("<", "<"),
}

# type -> (registers, builder method, a value that exercises the whole width)
TYPES = {
    "int16": (1, "add_16bit_int", -12345),
    "uint16": (1, "add_16bit_uint", 54321),
    "int32": (2, "add_32bit_int", -1234567890),
    "uint32": (2, "add_32bit_uint", 3456789012),
    "int64": (4, "add_64bit_int", -1234567890123456),
    "uint64": (4, "add_64bit_uint", 18446744073709549568),  # 2^64 - 2048, exact in a double
    "float32": (2, "add_32bit_float", -123.456),
    "float64": (4, "add_64bit_float", 6.02214076e23),
}

# (name, type, order, value, scale, offset): values a meter might give.
SCALED = [
    ("temp_c", "int16", "ABCD", -405, 0.1, 0.0),
    ("temp_k", "uint16", "ABCD", 2931, 0.1, -273.15),
    ("energy_kwh", "uint32", "CDAB", 123456789, 0.01, 0.0),
    ("flow", "float32", "DCBA", 12.5, 2.0, -1.0),
    ("pressure", "float64", "BADC", 1013.25, 100.0, 5.0),
]

INPUTS = [
    ("in_int32", "int32", "CDAB", -7),
    ("in_float32", "float32", "ABCD", 3.14159),
    ("in_uint64", "uint64", "DCBA", 1234567890123),
]

COILS = [1, 0, 1, 1, 0, 0, 0, 1, 0, 1]
DISCRETES = [0, 1, 1, 0, 1]


def _encode(type_name, order, value):
    """The registers of `value` as pymodbus lays them out."""
    from pymodbus.payload import BinaryPayloadBuilder
    byteorder, wordorder = ORDERS[order]
    builder = BinaryPayloadBuilder(byteorder=byteorder, wordorder=wordorder)
    getattr(builder, TYPES[type_name][1])(value)
    return builder.to_registers()


def _as_read(type_name, value):
    """What a correct reader gets back: floats rounded to their width."""
    if type_name == "float32":
        return struct.unpack(">f", struct.pack(">f", value))[0]
    return float(value)


def layout(generation=1):
    """(channels, holding, inputs): channels are (name, map entry, expected value)
    in map order; holding and inputs are {address: register}."""
    holding, inputs, channels = {0: generation, HOLDING_SIZE - 2: EDGE_VALUE}, {}, []
    channels.append(("generation", "holding 0 uint16", float(generation)))
    address = 100
    for order in ORDERS:
        for type_name, (width, _, value) in TYPES.items():
            regs = _encode(type_name, order, value)
            assert len(regs) == width
            for i, r in enumerate(regs):
                holding[address + i] = r
            channels.append(("%s_%s" % (type_name, order), "holding %d %s %s" % (address, type_name, order),
                             _as_read(type_name, value)))
            address += width
    address = 300
    for name, type_name, order, value, scale, offset in SCALED:
        regs = _encode(type_name, order, value)
        for i, r in enumerate(regs):
            holding[address + i] = r
        channels.append((name, "holding %d %s %s scale=%r offset=%r" % (address, type_name, order, scale, offset),
                         _as_read(type_name, value) * scale + offset))
        address += len(regs)
    address = 0
    for name, type_name, order, value in INPUTS:
        regs = _encode(type_name, order, value)
        for i, r in enumerate(regs):
            inputs[address + i] = r
        channels.append((name, "input %d %s %s" % (address, type_name, order), _as_read(type_name, value)))
        address += len(regs)
    for i, bit in enumerate(COILS):
        channels.append(("coil%d" % i, "coil %d" % i, float(bit)))
    for i, bit in enumerate(DISCRETES):
        channels.append(("di%d" % i, "discrete %d bool" % i, float(bit)))
    return channels, holding, inputs


def map_lines(generation=1):
    """The `register.NAME = ...` lines of the whole layout."""
    channels, _, _ = layout(generation)
    return "\n".join("register.%s = %s" % (name, entry) for name, entry, _ in channels) + "\n"


def expected(generation=1):
    """{channel: value} the source must emit."""
    channels, _, _ = layout(generation)
    return {name: value for name, _, value in channels}


def _delay(path):
    """Seconds written in `path`, or 0."""
    try:
        with open(path, encoding="ascii") as f:
            return max(0.0, float(f.read().strip() or 0))
    except (OSError, ValueError):
        return 0.0


def _context(generation, delay_file=None):
    from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                    ModbusSlaveContext)

    class SlowContext(ModbusSlaveContext):
        """pymodbus answers from getValues: sleeping there delays the whole reply
        (the server answers one request at a time, as a real slow device)."""

        def getValues(self, fc_as_hex, address, count=1):
            if delay_file:
                seconds = _delay(delay_file)
                if seconds > 0:
                    time.sleep(seconds)
            return super().getValues(fc_as_hex, address, count)

    _, holding, inputs = layout(generation)
    hr = [0] * HOLDING_SIZE
    for a, v in holding.items():
        hr[a] = v
    ir = [0] * INPUT_SIZE
    for a, v in inputs.items():
        ir[a] = v
    co = COILS + [0] * (BITS_SIZE - len(COILS))
    di = DISCRETES + [0] * (BITS_SIZE - len(DISCRETES))
    slave = SlowContext(
        hr=ModbusSequentialDataBlock(0, hr), ir=ModbusSequentialDataBlock(0, ir),
        co=ModbusSequentialDataBlock(0, co), di=ModbusSequentialDataBlock(0, di),
        zero_mode=True)  # protocol address a is element a (no +1 shift)
    return ModbusServerContext(slaves=slave, single=True)


async def _serve_tcp(port, generation, delay_file):
    from pymodbus.server.async_io import ModbusTcpServer
    server = ModbusTcpServer(_context(generation, delay_file), address=("127.0.0.1", port),
                             allow_reuse_address=True)
    task = asyncio.ensure_future(server.serve_forever())
    await server.serving
    print("READY", flush=True)
    await task


async def _serve_rtu(device, baud, generation, delay_file):
    from pymodbus.framer.rtu_framer import ModbusRtuFramer
    from pymodbus.server.async_io import ModbusSerialServer
    server = ModbusSerialServer(_context(generation, delay_file), framer=ModbusRtuFramer, port=device,
                                baudrate=baud, bytesize=8, parity="N", stopbits=1, timeout=0.05)
    await server.start()
    if server.transport is None:
        raise SystemExit("cannot open %s" % device)
    print("READY", flush=True)
    await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("transport", choices=["tcp", "rtu"])
    parser.add_argument("where", help="TCP port on 127.0.0.1, or serial device")
    parser.add_argument("--baud", type=int, default=19200)
    parser.add_argument("--generation", type=int, default=1)
    parser.add_argument("--delay-file", help="seconds to wait before each reply (read per request)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    if args.transport == "tcp":
        asyncio.run(_serve_tcp(int(args.where), args.generation, args.delay_file))
    else:
        asyncio.run(_serve_rtu(args.where, args.baud, args.generation, args.delay_file))


# --- process helpers for the tests ---------------------------------------------------

def pymodbus_version():
    import pymodbus
    return pymodbus.__version__


def missing_modules():
    """Names of the Debian packages the peer needs that are not installed, or []."""
    missing = []
    for module, package in (("pymodbus", "python3-pymodbus"), ("serial", "python3-serial"),
                            ("serial_asyncio", "python3-serial-asyncio")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    return missing


class ModbusPeer:
    """peer_modbus.py running as a separate process (killable, stoppable, restartable)."""

    def __init__(self, tmp, transport, where, generation=1, baud=19200):
        self.tmp, self.transport, self.where = tmp, transport, where
        self.generation, self.baud = generation, baud
        self.delay_file = os.path.join(tmp, "peer-modbus.delay")
        self.proc = None
        self.log_path = os.path.join(tmp, "peer-modbus.log")

    def start(self, timeout=20.0):
        args = [sys.executable, os.path.abspath(__file__), self.transport, str(self.where),
                "--generation", str(self.generation), "--baud", str(self.baud),
                "--delay-file", self.delay_file]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        os.set_blocking(self.proc.stdout.fileno(), False)
        seen = b""
        while time.monotonic() < deadline:
            chunk = self.proc.stdout.read()
            if chunk:
                seen += chunk
                if b"READY" in seen:
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise AssertionError("the pymodbus peer did not start (%s):\n%s" % (seen, self.log()))

    def set_delay(self, seconds):
        """From the next request on, the peer answers `seconds` late."""
        tmp = self.delay_file + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write("%g\n" % seconds)
        os.replace(tmp, self.delay_file)

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def signal(self, sig):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # also after SIGSTOP
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()


class PtyPair:
    """Two linked pseudo-terminals made by socat: tmp/<a> and tmp/<b>."""

    def __init__(self, tmp, a="modbus-peer", b="modbus-ew"):
        self.a, self.b = os.path.join(tmp, a), os.path.join(tmp, b)
        self.log_path = os.path.join(tmp, "socat.log")
        self.proc = None

    def start(self, timeout=10.0):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["socat", "-d", "-d", "pty,raw,echo=0,link=%s" % self.a, "pty,raw,echo=0,link=%s" % self.b],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.a) and os.path.exists(self.b):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise AssertionError("socat did not create the pty pair")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


if __name__ == "__main__":
    main()
