"""A real local Ethereum node (Hardhat, chainId 31337) for tests: deploy, transact, mine, snapshots, reorgs, WS cuts.

Typical use (see tests/chain/fixtures.py for the pytest fixtures)::

    node = LocalNode().start()
    token = node.deploy("TestToken", "Test", "TT", 18)
    node.transact(token, "mint", node.accounts[1], 10**18)
    node.stop()

Every helper is synchronous (web3 over HTTP, ~2 ms a call). In an async test they briefly block the
loop; wrap a long sequence in ``await asyncio.to_thread(...)`` when a client under test must keep reading.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

from web3 import Web3
from web3.contract import Contract
from web3.types import TxParams, TxReceipt

from tests.chain.compile import INSTALL_COMMAND, NODE_DIR, Artifact, compile_contracts
from tests.chain.tcp_proxy import ThreadedTcpProxy

HARDHAT_CLI = NODE_DIR / "node_modules" / "hardhat" / "internal" / "cli" / "bootstrap.js"
CHAIN_ID = 31337
HOST = "127.0.0.1"


class NodeError(RuntimeError):
    """The node could not start, or answered a JSON-RPC call with an error."""


class TxFailed(RuntimeError):
    """A mined transaction reverted (receipt status 0)."""


@dataclass(frozen=True)
class Reorg:
    """Result of a reorg: the last shared block and the orphaned and replacement hashes by number."""

    fork_number: int
    old: dict[int, str]
    new: dict[int, str]

    @property
    def depth(self) -> int:
        return len(self.old)

    @property
    def old_head(self) -> int:
        return max(self.old)

    @property
    def new_head(self) -> int:
        return max(self.new)


def free_port() -> int:
    """A port free right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def missing_reason() -> str | None:
    """Why a node cannot be started here (no node binary, npm packages not installed), or None."""
    if shutil.which("node") is None:
        return "Node.js (`node`) is not on PATH"
    if not HARDHAT_CLI.is_file():
        return f"Hardhat is not installed in {NODE_DIR}: run `{INSTALL_COMMAND}`"
    return None


class LocalNode:
    """One Hardhat node process started by this object, plus a TCP proxy in front of it for WS cuts."""

    def __init__(self, interval_ms: int = 0, startup_timeout_s: float = 30.0) -> None:
        self.interval_ms = interval_ms  # 0: no interval mining (blocks only on transactions or mine())
        self.startup_timeout_s = startup_timeout_s
        self.port = 0
        self.automine = True
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._proxy: ThreadedTcpProxy | None = None
        self._w3: Web3 | None = None
        self._accounts: list[str] = []
        self._artifacts: dict[str, Artifact] | None = None
        # snapshot id -> block number it was taken at, in creation order (a revert drops it and later ones)
        self._snapshots: dict[str, int] = {}

    # -- lifecycle --

    def start(self) -> Self:
        """Start Hardhat on a free port and wait until it answers ``eth_blockNumber``."""
        if self._proc is not None:
            return self
        reason = missing_reason()
        if reason:
            raise NodeError(reason)
        fd, log = tempfile.mkstemp(prefix="hardhat-", suffix=".log")
        self.log_path = Path(log)
        self._log = os.fdopen(fd, "wb")
        # a port picked free can be taken before Hardhat binds it: try again on another
        for _ in range(3):
            self.port = free_port()
            self._proc = self._spawn(self.port)
            if self._wait_ready(self._proc):
                break
            self._kill()
        else:
            raise NodeError(f"Hardhat did not start; log {self.log_path}:\n{self.log_tail()}")
        atexit.register(self.stop)
        self._w3 = Web3(Web3.HTTPProvider(self.http_url, request_kwargs={"timeout": 30}))
        self._accounts = list(self._w3.eth.accounts)
        self._proxy = ThreadedTcpProxy(HOST, self.port).start()
        return self

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        env = dict(os.environ, HARDHAT_DISABLE_TELEMETRY_PROMPT="true", HARDHAT_INTERVAL_MS=str(self.interval_ms))
        cmd = [shutil.which("node") or "node", str(HARDHAT_CLI), "node", "--hostname", HOST, "--port", str(port)]
        # own session: a Ctrl-C aimed at pytest reaches the node only through stop()
        return subprocess.Popen(
            cmd, cwd=NODE_DIR, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> bool:
        deadline = time.monotonic() + self.startup_timeout_s
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}).encode()
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            req = urllib.request.Request(self.http_url, body, {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=1.0) as resp:
                    if "result" in json.loads(resp.read()):
                        return True
            except (OSError, ValueError):
                pass  # not listening yet
            time.sleep(0.1)
        return False

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # by PID: only the process this object started
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def stop(self) -> None:
        """Stop the proxy and the node process this object started; idempotent."""
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None
        self._kill()
        if self._log is not None:
            self._log.close()
            self._log = None
            if self.log_path is not None:
                self.log_path.unlink(missing_ok=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the node's output (for failure messages)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    # -- endpoints --

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    @property
    def proxied_ws_url(self) -> str:
        """WebSocket URL through the proxy: :meth:`drop_websockets` cuts connections made to it."""
        return f"ws://{HOST}:{self._running_proxy().port}"

    @property
    def proxied_http_url(self) -> str:
        return f"http://{HOST}:{self._running_proxy().port}"

    @property
    def w3(self) -> Web3:
        if self._w3 is None:
            raise NodeError("node not started")
        return self._w3

    @property
    def accounts(self) -> list[str]:
        """The 20 unlocked Hardhat accounts (checksummed), 10 000 ETH each at genesis."""
        return list(self._accounts)

    def _running_proxy(self) -> ThreadedTcpProxy:
        if self._proxy is None:
            raise NodeError("node not started")
        return self._proxy

    # -- raw JSON-RPC and blocks --

    def rpc(self, method: str, *params: Any) -> Any:
        """One raw JSON-RPC call (no web3 formatting); raises NodeError on an error answer."""
        resp = self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        if "error" in resp:
            raise NodeError(f"{method}{list(params)}: {resp['error']}")
        return resp["result"]

    def head(self) -> int:
        """Current block number."""
        return int(self.rpc("eth_blockNumber"), 16)

    def block(self, number: int | str = "latest") -> dict[str, Any]:
        """Raw block JSON (hex strings: ``hash``, ``parentHash``, ``number``...) without transactions."""
        tag = hex(number) if isinstance(number, int) else number
        found = self.rpc("eth_getBlockByNumber", tag, False)
        if found is None:
            raise NodeError(f"no block {number}")
        return found

    def block_hash(self, number: int) -> str:
        return self.block(number)["hash"]

    # -- contracts and transactions --

    @property
    def artifacts(self) -> dict[str, Artifact]:
        """Compiled tests/chain/contracts (cached in tests/chain/build)."""
        if self._artifacts is None:
            self._artifacts = compile_contracts()
        return self._artifacts

    def contract_at(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=self.artifacts[name].abi)

    def _tx(self, sender: str | None, value: int) -> TxParams:
        return {"from": sender or self._accounts[0], "value": value}  # type: ignore[typeddict-item]

    def _receipt(self, tx_hash: bytes) -> TxReceipt:
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.01)
        if receipt["status"] != 1:
            raise TxFailed(f"transaction {tx_hash.hex()} reverted")
        return receipt

    def _require_automine(self, what: str) -> None:
        # without automine the receipt would only come after someone mines: a silent 30 s hang
        if not self.automine:
            raise NodeError(f"{what} waits for its receipt but automine is off: use submit() then mine()")

    def deploy(self, name: str, *args: Any, sender: str | None = None, value: int = 0) -> Contract:
        """Deploy a contract of tests/chain/contracts; returns it bound to its address."""
        self._require_automine("deploy")
        art = self.artifacts[name]
        factory = self.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
        receipt = self._receipt(factory.constructor(*args).transact(self._tx(sender, value)))
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=art.abi)

    def transact(self, contract: Contract, fn: str, *args: Any, sender: str | None = None, value: int = 0) -> TxReceipt:
        """Call ``contract.fn(*args)`` in a transaction and return its receipt (automine must be on)."""
        self._require_automine("transact")
        return self._receipt(contract.functions[fn](*args).transact(self._tx(sender, value)))

    def submit(self, contract: Contract, fn: str, *args: Any, sender: str | None = None, value: int = 0) -> str:
        """Send ``contract.fn(*args)`` without waiting (for automine off); returns the tx hash as 0x-hex."""
        return "0x" + contract.functions[fn](*args).transact(self._tx(sender, value)).hex().removeprefix("0x")

    def send_eth(self, sender: str, to: str, wei: int) -> TxReceipt:
        """Plain ETH transfer; returns the receipt (automine must be on)."""
        self._require_automine("send_eth")
        tx: TxParams = {"from": sender, "to": to, "value": wei}  # type: ignore[typeddict-item]
        return self._receipt(self.w3.eth.send_transaction(tx))

    # -- mining and snapshots --

    def mine(self, n: int = 1) -> int:
        """Mine ``n`` blocks (pending transactions go in the first); returns the new head number."""
        # one evm_mine per block, not hardhat_mine: each block then exists at once and is announced on newHeads
        for _ in range(n):
            self.rpc("evm_mine")
        return self.head()

    def set_automine(self, on: bool) -> None:
        """On: every transaction is mined at once in its own block. Off: they wait in the mempool for mine()."""
        self.rpc("evm_setAutomine", on)
        self.automine = on

    def set_interval_mining(self, interval_ms: int) -> None:
        """Mine a block every ``interval_ms`` (0 turns interval mining off)."""
        self.rpc("evm_setIntervalMining", interval_ms)
        self.interval_ms = interval_ms

    def snapshot(self) -> str:
        """``evm_snapshot`` at the current head; the id is consumed by :meth:`revert`."""
        sid = self.rpc("evm_snapshot")
        self._snapshots[sid] = self.head()
        return sid

    def revert(self, snapshot_id: str) -> None:
        """``evm_revert``: chain, state and mempool go back; this and every later snapshot are used up."""
        if not self.rpc("evm_revert", snapshot_id):
            raise NodeError(f"evm_revert({snapshot_id}) refused: unknown or already used snapshot")
        ids = list(self._snapshots)
        if snapshot_id in ids:
            for sid in ids[ids.index(snapshot_id):]:
                del self._snapshots[sid]

    # -- reorgs --

    def fork_and_replace(
        self, snapshot_id: str, txs_fn: Callable[[LocalNode], Any] | None = None, extra_blocks: int = 1,
    ) -> Reorg:
        """Orphan every block mined since ``snapshot_id`` and build a longer chain on the snapshot's block.

        ``txs_fn(node)`` runs with automine on right after the revert: each transaction it sends lands in
        its own replacement block. Empty blocks then pad the new chain to ``old head + extra_blocks``
        (``extra_blocks >= 1``: a follower switches only to a longer chain). Example, a depth-3 reorg::

            base = node.snapshot()                        # at head H: the fork point
            old_tx = node.transact(token, "transfer", bob, 5)["transactionHash"]   # block H+1
            node.mine(2)                                  # H+2, H+3: H+1..H+3 will be orphaned
            r = node.fork_and_replace(base, lambda n: n.transact(token, "transfer", carol, 7), extra_blocks=1)
            assert r.fork_number == H and r.depth == 3 and r.new_head == H + 4
            assert node.rpc("eth_getTransactionReceipt", "0x" + old_tx.hex().removeprefix("0x")) is None

        The snapshot is used up (Hardhat forgets it on revert); the automine setting is restored afterwards.
        """
        if extra_blocks < 1:
            raise ValueError("extra_blocks must be >= 1: the replacement chain must be longer")
        if snapshot_id not in self._snapshots:
            raise NodeError(f"snapshot {snapshot_id} was not taken by this node's snapshot() or is used up")
        fork = self._snapshots[snapshot_id]
        old_head = self.head()
        if old_head <= fork:
            raise NodeError(f"nothing to orphan: head {old_head} is not above the snapshot's block {fork}")
        old = {n: self.block_hash(n) for n in range(fork + 1, old_head + 1)}
        first_old_ts = int(self.block(fork + 1)["timestamp"], 16)
        was_automine = self.automine
        self.revert(snapshot_id)
        # another timestamp makes the first replacement block differ even with the same (or no) transactions;
        # every later block then differs through its parent hash
        self.rpc("evm_setNextBlockTimestamp", hex(first_old_ts + 1))
        try:
            self.set_automine(True)
            if txs_fn is not None:
                txs_fn(self)
            target = old_head + extra_blocks
            if self.head() < target:
                self.mine(target - self.head())
        finally:
            self.set_automine(was_automine)
        new = {n: self.block_hash(n) for n in range(fork + 1, self.head() + 1)}
        if new[fork + 1] == old[fork + 1]:
            raise NodeError(f"replacement block {fork + 1} has the orphaned block's hash")
        return Reorg(fork, old, new)

    def reorg(
        self, depth: int, build_replacement: Callable[[LocalNode], Any] | None = None, extra_blocks: int = 1,
    ) -> Reorg:
        """Replace the last ``depth`` blocks; needs a :meth:`snapshot` taken at block ``head - depth``.

        Hardhat cannot rewind to a block without a snapshot, so take one before mining the blocks that are
        to be orphaned (the latest snapshot at that height is used). See :meth:`fork_and_replace`.
        """
        if depth < 1:
            raise ValueError("depth must be >= 1")
        fork = self.head() - depth
        at_fork = [sid for sid, number in self._snapshots.items() if number == fork]
        if not at_fork:
            taken = sorted(set(self._snapshots.values()))
            raise NodeError(f"reorg({depth}) needs a snapshot at block {fork} (snapshots at blocks {taken}): "
                            "call snapshot() before mining the blocks to orphan")
        return self.fork_and_replace(at_fork[-1], build_replacement, extra_blocks)

    # -- WebSocket cuts --

    def drop_websockets(self, refuse_new: bool = False) -> None:
        """Abort every connection made through :attr:`proxied_ws_url`; with ``refuse_new``, refuse new ones too.

        Only proxied connections are affected (``ws_url`` goes straight to the node). After
        ``refuse_new=True``, :meth:`accept_websockets` lets clients connect again.
        """
        self._running_proxy().cut(refuse_new)

    def accept_websockets(self) -> None:
        """Accept connections on the proxied URLs again (same port)."""
        self._running_proxy().start()

    @property
    def proxy_connections(self) -> int:
        """Connections the proxy accepted so far (a reconnecting client makes it grow)."""
        return self._running_proxy().connections
