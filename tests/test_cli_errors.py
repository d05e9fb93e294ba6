"""Bad input to any command: exit code 2 and one line, ``crypto-intel <command>: error: ...``, naming the
flag or file at fault; never a traceback or a pydantic dump. Each case runs the real command line in a
subprocess and is refused before any data is processed, Ray starts or a service is touched."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CAPTURE = REPO / "tests" / "data" / "wire" / "BINANCE.ws.1.0"
COMMANDS = ("run", "replay", "structure", "signals", "indicators", "db", "venues", "chain")
NESTED = ("db", "venues", "chain")  # commands whose errors name the subcommand too, e.g. "db status"

STRATEGY_TYPES = 'name = 5\nindicators = "rsi:14"\n[[rule]]\nname = "a"\nside = "buy"\nwhen = ["rsi_14 < 30"]\n'
STRATEGY_TOP_KEY = 'name = "x"\ncolour = "red"\n[[rule]]\nname = "a"\nside = "buy"\nwhen = ["rsi_14 < 30"]\n'
STRATEGY_RULE_KEY = 'name = "x"\n[[rule]]\nname = "a"\nside = "buy"\nwhen = ["rsi_14 < 30"]\nwen = 3\n'
STRATEGY_RULE_TYPE = 'name = "x"\n[[rule]]\nname = "a"\nside = "buy"\nwhen = "rsi_14 < 30"\n'


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "trades.csv").write_text("timestamp,price,size\n1600000000000,1.0,2.0\n1600000061000,1.1,2.0\n")
    (tmp_path / "other.csv").write_text("foo,bar\n1,2\n")
    (tmp_path / "latin1.csv").write_bytes(b"timestamp,price,size\n1600000000000,1.0,2.0\n\xff\xfe\xe9,1,2\n")
    (tmp_path / "notes.txt").write_text("a regular file\n")
    (tmp_path / "adir").mkdir()
    (tmp_path / "types.toml").write_text(STRATEGY_TYPES)
    (tmp_path / "topkey.toml").write_text(STRATEGY_TOP_KEY)
    (tmp_path / "rulekey.toml").write_text(STRATEGY_RULE_KEY)
    (tmp_path / "ruletype.toml").write_text(STRATEGY_RULE_TYPE)
    (tmp_path / "broken.toml").write_text("this is [not toml\n")
    (tmp_path / "latin1.toml").write_bytes(b'name = "caf\xe9"\n')
    (tmp_path / "capture.txt").write_text("not a capture\n")
    (tmp_path / "latin1-capture.txt").write_bytes(b"1633998512.06: {\"e\": \"caf\xe9\"}\n")
    return tmp_path


def run_cli(cwd: Path, argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    base["PYTHONPATH"] = os.pathsep.join([str(REPO), base.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, "-m", "app.cli", *argv], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=120, check=False)


def assert_one_line_error(proc: subprocess.CompletedProcess, argv: list[str], needle: str) -> str:
    command = argv[:2] if argv[0] in NESTED and len(argv) > 1 and not argv[1].startswith("-") else argv[:1]
    prefix = " ".join(["crypto-intel", *command]) if argv[0] in COMMANDS else "crypto-intel"
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].strip(), proc.stderr
    line = lines[0]
    assert line.startswith(f"{prefix}: error: "), line
    assert "Traceback" not in line and "pydantic" not in line, line
    assert needle in line, line
    return line


TRADES = ["--input", "trades.csv"]

CASES = [
    # paths: missing, a directory, columns, not trades or candles, not UTF-8, unknown format
    (["replay", "--input", "missing.csv", "--out", "o.jsonl", "--in-process"], "missing.csv"),
    (["signals", "--input", "adir", "--out", "o.jsonl"], "adir"),
    (["indicators", "--input", "adir", "--indicators", "rsi", "--out", "o.parquet"], "adir"),
    (["structure", "--input", "missing.csv", "--timeframe", "1m", "--out", "o.jsonl"], "missing.csv"),
    (["signals", "--input", "trades.csv", "missing.csv", "--out", "o.jsonl"], "missing.csv"),
    (["signals", *TRADES, "--columns", "timestamp=nope", "--out", "o.jsonl"], "--columns"),
    (["signals", *TRADES, "--columns", "bogus", "--out", "o.jsonl"], "--columns"),
    (["indicators", *TRADES, "--columns", "wat=price", "--indicators", "rsi", "--out", "o.parquet"], "--columns"),
    (["signals", "--input", "other.csv", "--out", "o.jsonl"], "other.csv"),
    (["structure", "--input", "other.csv", "--timeframe", "1m", "--out", "o.jsonl"], "other.csv"),
    (["signals", "--input", "notes.txt", "--out", "o.jsonl"], "notes.txt"),
    (["signals", "--input", "latin1.csv", "--out", "o.jsonl"], "latin1.csv"),
    (["indicators", "--input", "latin1.csv", "--indicators", "rsi", "--out", "o.parquet"], "latin1.csv"),
    # flag values, including those PipelineConfig refuses
    (["signals", *TRADES, "--out", "o.jsonl", "--swing", "0"], "--swing"),
    (["signals", *TRADES, "--out", "o.jsonl", "--batch-size", "0"], "--batch-size"),
    (["signals", *TRADES, "--out", "o.jsonl", "--shards", "-1"], "--shards"),
    (["signals", *TRADES, "--out", "o.jsonl", "--timeframes", "7x"], "--timeframes"),
    (["signals", *TRADES, "--out", "o.jsonl", "--timeframes", ","], "--timeframes"),
    (["signals", *TRADES, "--out", "o.jsonl", "--lateness", "banana"], "--lateness"),
    (["signals", *TRADES, "--out", "o.jsonl", "--analyses", "bogus"], "--analyses"),
    (["signals", *TRADES, "--out", "o.jsonl", "--linger-ms", "-5"], "--linger-ms"),
    (["signals", *TRADES, "--out", "o.jsonl", "--indicators", "rsi:abc"], "--indicators"),
    (["replay", *TRADES, "--out", "o.jsonl", "--in-process", "--swing", "abc"], "--swing"),
    (["structure", *TRADES, "--timeframe", "1m", "--out", "o.jsonl", "--swing-length", "0"], "--swing-length"),
    (["structure", *TRADES, "--timeframe", "7x", "--out", "o.jsonl"], "--timeframe"),
    (["indicators", *TRADES, "--indicators", "nosuch:3", "--out", "o.parquet"], "--indicators"),
    (["indicators", *TRADES, "--timeframe", "0m", "--indicators", "rsi", "--out", "o.parquet"], "--timeframe"),
    (["run", "--no-services", "--swing", "0"], "--swing"),
    (["run", "--no-services", "--http-port", "99999"], "--http-port"),
    (["run", "--no-services", "--input", "missing.csv"], "missing.csv"),
    # argparse's own errors
    (["signals", *TRADES, "--out", "o.jsonl", "--nosuchflag"], "--nosuchflag"),
    (["signals", "--out", "o.jsonl"], "--input"),
    (["nosuchcommand"], "nosuchcommand"),
    (["db"], "DB_COMMAND"),
    (["venues", "parse", "--venue", "nosuch", "--input", "capture.txt", "--out", "o.jsonl"], "--venue"),
    # strategy files: wrong types, unknown keys, not TOML, not UTF-8
    (["signals", *TRADES, "--out", "o.jsonl", "--strategy", "types.toml"], "types.toml"),
    (["signals", *TRADES, "--out", "o.jsonl", "--strategy", "ruletype.toml"], "ruletype.toml"),
    (["signals", *TRADES, "--out", "o.jsonl", "--strategy", "topkey.toml"], "colour"),
    (["signals", *TRADES, "--out", "o.jsonl", "--strategy", "rulekey.toml"], "wen"),
    (["replay", *TRADES, "--out", "o.jsonl", "--in-process", "--strategy", "broken.toml"], "broken.toml"),
    (["signals", *TRADES, "--out", "o.jsonl", "--strategy", "latin1.toml"], "latin1.toml"),
    (["run", "--no-services", "--strategy", "broken.toml"], "broken.toml"),
    (["run", "--no-services", "--config", "broken.toml"], "broken.toml"),
    (["run", "--no-services", "--config", "topkey.toml"], "topkey.toml"),
    (["run", "--no-services", "--config", "latin1.toml"], "latin1.toml"),
    # venue captures: malformed, not UTF-8, missing
    (["venues", "parse", "--venue", "binance", "--input", "capture.txt", "--out", "o.jsonl"], "capture.txt"),
    (["venues", "parse", "--venue", "binance", "--input", "latin1-capture.txt", "--out", "o.jsonl"],
     "latin1-capture.txt"),
    (["venues", "parse", "--venue", "binance", "--input", "missing.txt", "--out", "o.jsonl"], "missing.txt"),
    (["venues", "check", "--timeout-s", "nan"], "--timeout-s"),
    # durations and numbers out of range
    (["signals", *TRADES, "--out", "o.jsonl", "--lateness", "99999999999999999999d"], "--lateness"),
    (["signals", *TRADES, "--out", "o.jsonl", "--timeframes", "999999999999999w"], "--timeframes"),
    (["indicators", *TRADES, "--timeframe", "99999999999999999999w", "--indicators", "rsi", "--out", "o.parquet"],
     "--timeframe"),
    (["run", "--no-services", "--lateness", "99999999999999999999d"], "--lateness"),
    (["run", "--no-services", "--max-seconds", "1e400"], "--max-seconds"),
    (["run", "--no-services", "--max-seconds", "inf"], "--max-seconds"),
    (["run", "--no-services", "--max-seconds", "nan"], "--max-seconds"),
    (["run", "--no-services", "--speed", "0"], "--speed"),
    (["run", "--no-services", "--speed", "-2"], "--speed"),
    (["chain", "follow", "--rpc", "http://127.0.0.1:1", "--from-block", "1", "--poll-s", "inf"], "--poll-s"),
    # output paths under a regular file, or a directory given as an output file
    (["replay", *TRADES, "--out", "notes.txt/x.jsonl", "--in-process"], "--out"),
    (["replay", *TRADES, "--out", "o.jsonl", "--events-out", "notes.txt/e.jsonl", "--in-process"], "--events-out"),
    (["signals", *TRADES, "--out", "notes.txt/x.jsonl"], "--out"),
    (["signals", *TRADES, "--out", "notes.txt/x.parquet"], "--out"),
    (["structure", *TRADES, "--timeframe", "1m", "--out", "notes.txt/x.jsonl"], "--out"),
    (["indicators", *TRADES, "--indicators", "rsi", "--out", "notes.txt/x.parquet"], "--out"),
    (["indicators", *TRADES, "--indicators", "rsi", "--out", "adir"], "--out"),
    (["venues", "parse", "--venue", "binance", "--input", str(CAPTURE), "--out", "notes.txt/x.jsonl"], "--out"),
    (["run", "--no-services", "--out-dir", "notes.txt/x"], "--out-dir"),
    (["run", "--data-dir", "notes.txt"], "--data-dir"),
    (["chain", "export", "--rpc", "http://127.0.0.1:1", "--from-block", "1", "--to-block", "2",
      "--out", "notes.txt/x"], "--out"),
    (["chain", "follow", "--rpc", "http://127.0.0.1:1", "--from-block", "1", "--in-process",
      "--out-dir", "notes.txt/x"], "--out-dir"),
    # chain: block ranges and URL formats, refused before the node is called
    (["chain", "export", "--rpc", "http://127.0.0.1:1", "--from-block", "10", "--to-block", "5", "--out", "x"],
     "--from-block"),
    (["chain", "export", "--rpc", "http://127.0.0.1:1", "--from-block", "abc", "--to-block", "5", "--out", "x"],
     "--from-block"),
    (["chain", "export", "--rpc", "http://127.0.0.1:1", "--from-block", "-1", "--to-block", "5", "--out", "x"],
     "--from-block"),
    (["chain", "export", "--rpc", "notaurl", "--from-block", "1", "--to-block", "5", "--out", "x"], "--rpc"),
    (["chain", "export", "--rpc", "ftp://node", "--from-block", "1", "--to-block", "5", "--out", "x"], "--rpc"),
    (["chain", "export", "--rpc", "http://node:port", "--from-block", "1", "--to-block", "5", "--out", "x"], "--rpc"),
    (["chain", "follow", "--rpc", "notaurl", "--from-block", "1", "--in-process"], "--rpc"),
    (["chain", "follow", "--rpc", "http://127.0.0.1:1", "--ws", "http://node", "--from-block", "1"], "--ws"),
    (["chain", "follow", "--rpc", "http://127.0.0.1:1", "--from-block", "10", "--to-block", "5"], "--to-block"),
    (["chain", "follow", "--rpc", "http://127.0.0.1:1", "--from-block", "1", "--strategy", "nosuch"], "--strategy"),
]


@pytest.mark.parametrize("argv, needle", CASES, ids=[" ".join(a)[:80] for a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(work: Path, argv: list[str], needle: str) -> None:
    assert_one_line_error(run_cli(work, argv), argv, needle)


def test_strategy_type_errors_name_the_key(work: Path) -> None:
    argv = ["signals", *TRADES, "--out", "o.jsonl", "--strategy", "ruletype.toml"]
    line = assert_one_line_error(run_cli(work, argv), argv, "ruletype.toml")
    assert "when must be a list of strings" in line


@pytest.mark.parametrize("url, needle", [
    ("notaurl", "DATABASE_URL"),
    ("http://db.example/x", "DATABASE_URL"),
    ("postgresql://user:s3cret@db.example:port/x", "DATABASE_URL"),
])
@pytest.mark.parametrize("command", ["status", "migrate"])
def test_malformed_database_url(work: Path, url: str, needle: str, command: str) -> None:
    argv = ["db", command]
    line = assert_one_line_error(run_cli(work, argv, {"DATABASE_URL": url}), argv, needle)
    assert "s3cret" not in line


def test_malformed_database_url_flag(work: Path) -> None:
    argv = ["db", "--database-url", "notaurl", "status"]
    proc = run_cli(work, argv)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith("crypto-intel db status: error: --database-url"), proc.stderr


@pytest.mark.parametrize("command", [["status"], ["migrate"], ["downgrade", "--to", "0"], ["maintain"]])
def test_unreachable_database_is_one_line_and_quick(work: Path, command: list[str]) -> None:
    argv = ["db", *command]
    t0 = time.monotonic()
    proc = run_cli(work, argv, {"DATABASE_URL": "postgresql://127.0.0.1:1/x"})
    assert time.monotonic() - t0 < 30
    assert_one_line_error(proc, argv, "127.0.0.1:1")


@pytest.mark.parametrize("flag", ["--dashboard-port", "--http-port", "--ws-port"])
def test_run_with_a_busy_port_says_which_flag(work: Path, flag: str) -> None:
    import socket
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        argv = ["run", "--max-seconds", "5", flag, port]
        assert_one_line_error(run_cli(work, argv), argv, f"{flag} {port}: cannot listen on 127.0.0.1:{port}")
