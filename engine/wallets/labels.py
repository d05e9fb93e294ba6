"""Labelled Ethereum addresses (exchanges, sanctions, mixers, phishing, exploits, scams) as one set.

Two public datasets feed it: ``etherscan-labels`` (``etherscan/accounts/*.csv`` per-label address
lists and ``etherscan/combined/combinedAllLabels.json``) and forta-network ``labelled-datasets``
(``forta/<chain id>/*.csv``). :func:`read_sources` normalises both into :class:`Label` rows;
:func:`build_bundle` writes them to the gzip CSV the product ships with and :meth:`LabelSet.load`
reads that bundle back. Run ``python -m engine.wallets.labels SRC_DIR [OUT]`` to rebuild it.

Categories: ``exchange`` means a custodial service's own wallet (hot/cold/deposit-funder/old
address); an exchange's tokens, deployers, multisigs and routers are ``other``, because treating e.g.
the USDT contract (listed under Bitfinex) as an exchange wallet would be wrong for every consumer.
``blocked`` (frozen by a stablecoin issuer, reason unknown) and the etherscan ``take-action`` label
(victims of the Multichain / Sorbet hacks asked to revoke approvals) are ``other`` as well.

Size: the combined JSON's generic ``other`` tags (~29k pools, tokens, protocol contracts, airdrop
hunters, hack-victim notices) are left out unless ``combined_other=True``: nothing in the engine acts
on them and they would make ~80% of the bundle. ``other`` rows of the curated per-label lists
(``etherscan/accounts``: e.g. an exchange's tokens, ``blocked``) are kept.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from schemas.errors import InputError

CATEGORIES = ("exchange", "sanctioned", "mixer", "phishing", "exploit", "scam", "other")
RISK_CATEGORIES = frozenset({"sanctioned", "mixer", "phishing", "exploit", "scam"})
BUNDLE_COLUMNS = ("address", "category", "name", "source")
# several datasets giving the same (address, category, name) merge into one label; its source lists them
SOURCE_SEPARATOR = "|"
# forta keeps one folder per chain id; only mainnet addresses mean the same thing here (see _read_forta)
ETHEREUM_CHAIN_ID = "1"

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")

# etherscan label slug -> display name of custodial exchanges (and exchange-like custodians)
EXCHANGES = {
    "abcc": "ABCC", "allbit": "Allbit", "ascendex": "AscendEX", "bgogo": "Bgogo", "binance": "Binance",
    "binance-deposit": "Binance", "bitfinex": "Bitfinex", "bithumb": "Bithumb", "bitmart": "BitMart",
    "bitmex": "BitMEX", "bitstamp": "Bitstamp", "bittrex": "Bittrex", "blockfi": "BlockFi",
    "changenow": "ChangeNOW", "cobinhood": "Cobinhood", "coinbase": "Coinbase", "coinhako": "Coinhako",
    "coinlist": "CoinList", "coinmetro": "CoinMetro", "coinone": "Coinone", "coinsquare": "Coinsquare",
    "coss-io": "COSS.io", "crex24": "CREX24", "crypto-com": "Crypto.com", "deribit": "Deribit",
    "digifinex": "DigiFinex", "ftx": "FTX", "gate-io": "Gate.io", "gemini": "Gemini", "hitbtc": "HitBTC",
    "hoo-com": "Hoo.com", "hotbit": "Hotbit", "huobi": "Huobi", "korbit": "Korbit", "kraken": "Kraken",
    "kryptono": "Kryptono", "kucoin": "KuCoin", "latoken": "LAToken", "liquid": "Liquid", "maskex": "MaskEX",
    "nexo": "Nexo", "okx": "OKX", "paribu": "Paribu", "poloniex": "Poloniex", "quadrigacx": "QuadrigaCX",
    "remitano": "Remitano", "shapeshift": "ShapeShift", "tidex": "Tidex", "topbtc": "TopBTC",
    "trade-io": "Trade.io", "upbit": "Upbit", "yunbi": "Yunbi", "zb-com": "ZB.com",
}
# etherscan label slug -> category, for the slugs that are not exchanges and not "other"
ETHERSCAN_CATEGORIES = {
    "ofac-sanctions-lists": "sanctioned",
    "tornado-cash": "mixer", "ethereum-mixer": "mixer", "typhoon-cash": "mixer",
    "spam-token": "scam", "high-risk": "scam", "flagged-by-sec": "scam", "something-fishy": "scam",
}
# the name a label gets when its dataset row has none
_DEFAULT_NAMES = {"sanctioned": "OFAC sanctioned", "mixer": "Mixer", "phishing": "Phishing",
                  "exploit": "Exploit", "scam": "Scam"}
# "Binance", "Binance 14", "FTX Exchange 2", "Binance US", "Kraken: Hot Wallet", "Huobi: Old Address 3",
# "OKX: Deposit Funder 3": the wallet forms of an exchange's name tags; anything else is not a wallet
_WALLET_FORM = (r"(?: exchange| us)?(?: \d+)?"
                r"(?::\s*(?:(?:old )?(?:hot|cold|warm) wallet|wallet|deposit(?: funder| supplier)?|old address)"
                r"(?: \d+)?)?")
# forta tags: the first pattern that matches names the category, else the dataset's own label decides
_TAG_CATEGORIES = (
    ("phishing", re.compile(r"phish", re.IGNORECASE)),
    ("scam", re.compile(r"scam|spam|ponzi|\brug\b|\bfake\b", re.IGNORECASE)),
    ("exploit", re.compile(r"exploit|hack|attack|heist|drain|thief", re.IGNORECASE)),
)
_FORTA_DATASET_LABELS = {"phish-hack": "phishing", "etherscan-phish-hack-list": "phishing",
                         "exploit": "exploit", "etherscan-exploit-list": "exploit",
                         "heist": "exploit", "etherscan-heist-list": "exploit"}


@dataclass(frozen=True, order=True, slots=True)
class Label:
    """One label of one address: lower-case 0x address, category, display name, '|'-joined sources."""

    address: str
    category: str
    name: str
    source: str


@dataclass
class SourceStats:
    """What reading the raw datasets kept and skipped, per source file."""

    rows: Counter = field(default_factory=Counter)
    invalid: Counter = field(default_factory=Counter)
    left_out: Counter = field(default_factory=Counter)
    skipped_files: list[str] = field(default_factory=list)

    @property
    def invalid_total(self) -> int:
        """Rows skipped because their address is not a 0x + 40 hex digit address."""
        return sum(self.invalid.values())


def normalise_address(raw: str) -> str | None:
    """Lower-case 0x address, or None when ``raw`` is not one (EIP-55 checksums are not verified)."""
    text = raw.strip()
    return text.lower() if _ADDRESS.fullmatch(text) else None


def is_exchange_wallet(name: str, exchange: str) -> bool:
    """True when an etherscan name tag is one of ``exchange``'s own wallets rather than a token or contract."""
    return not name or re.fullmatch(re.escape(exchange) + _WALLET_FORM, name.strip(), re.IGNORECASE) is not None


def classify_etherscan(slug: str, name: str) -> tuple[str, str]:
    """(category, name) of an address carrying etherscan label ``slug`` and name tag ``name``."""
    name = name.strip()
    if slug in EXCHANGES:
        exchange = EXCHANGES[slug]
        return ("exchange", exchange) if is_exchange_wallet(name, exchange) else ("other", name or exchange)
    if slug == "hot-wallet":
        # "Bitkub: Hot Wallet 2" -> "Bitkub", "Coinex 2" -> "Coinex": the custodian is the exchange name
        return "exchange", re.sub(r"\s+\d+$", "", name.split(":")[0]).strip() or "Hot wallet"
    category = ETHERSCAN_CATEGORIES.get(slug, "other")
    return category, name or _DEFAULT_NAMES.get(category, slug)


def classify_tag(tag: str, default: str) -> str:
    """Risk category of a forta tag such as ``Fake_Phishing12`` or ``Nomad Bridge Exploiter``."""
    for category, pattern in _TAG_CATEGORIES:
        if pattern.search(tag):
            return category
    return default


class _Collector:
    """Accumulates labels, merging the sources of equal (address, category, name) triples."""

    def __init__(self) -> None:
        self.sources: dict[tuple[str, str, str], set[str]] = {}
        self.stats = SourceStats()

    def add(self, raw_address: str, category: str, name: str, source: str) -> None:
        address = normalise_address(raw_address or "")
        if address is None:
            self.stats.invalid[source] += 1
            return
        self.stats.rows[source] += 1
        self.sources.setdefault((address, category, name.strip()), set()).add(source)

    def labels(self) -> list[Label]:
        return sorted(Label(a, c, n, SOURCE_SEPARATOR.join(sorted(s))) for (a, c, n), s in self.sources.items())


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        yield from csv.DictReader(f)


def _read_etherscan(root: Path, out: _Collector, combined_other: bool) -> None:
    for path in sorted((root / "accounts").glob("*.csv")):
        slug = path.stem
        for row in _csv_rows(path):
            category, name = classify_etherscan(slug, row.get("Name Tag") or "")
            out.add(row.get("Address") or "", category, name, f"etherscan:accounts/{slug}")
    combined = root / "combined" / "combinedAllLabels.json"
    if combined.is_file():
        for address, entry in json.loads(combined.read_text(encoding="utf-8")).items():
            for slug in entry.get("labels") or ["unlabelled"]:
                category, name = classify_etherscan(slug, entry.get("name") or "")
                source = f"etherscan:combined/{slug}"
                if category == "other" and not combined_other:
                    out.stats.left_out[source] += 1
                    continue
                out.add(address, category, name, source)


def _read_forta(root: Path, out: _Collector) -> None:
    for chain_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        # the same address on another chain can be a different contract (the Optimism "Wintermute
        # Exploiter Multisig" sits at Wintermute's own mainnet Safe address), so only mainnet counts
        if chain_dir.name != ETHEREUM_CHAIN_ID:
            out.stats.skipped_files += [p.relative_to(root.parent).as_posix() for p in sorted(chain_dir.glob("*.csv"))]
            continue
        for path in sorted(chain_dir.glob("*.csv")):
            source = f"forta:{chain_dir.name}/{path.stem}"
            reader = _FORTA_READERS.get(path.stem)
            if reader is None:
                out.stats.skipped_files.append(path.relative_to(root.parent).as_posix())
                continue
            for row in _csv_rows(path):
                reader(row, source, out)


def _forta_phishing(row: dict[str, str], source: str, out: _Collector) -> None:
    tag = (row.get("etherscan_tag") or "").strip()
    category = classify_tag(tag, _FORTA_DATASET_LABELS.get(row.get("etherscan_labels") or "", "phishing"))
    out.add(row.get("address") or "", category, tag or _DEFAULT_NAMES[category], source)


def _forta_malicious_labels(row: dict[str, str], source: str, out: _Collector) -> None:
    tag = (row.get("wallet_tag") or "").strip()
    category = classify_tag(tag, _FORTA_DATASET_LABELS.get(row.get("data_source") or "", "scam"))
    out.add(row.get("banned_address") or "", category, tag or _DEFAULT_NAMES[category], source)


def _forta_contracts(row: dict[str, str], source: str, out: _Collector) -> None:
    # the creator of a malicious contract is the attacker; both addresses are labelled
    default = _FORTA_DATASET_LABELS.get(row.get("contract_creator_etherscan_label") or "", "exploit")
    tag = (row.get("contract_tag") or "").strip() or (row.get("notes") or "").strip()
    category = classify_tag(tag, default)
    out.add(row.get("contract_address") or "", category, tag or "Malicious contract", source)
    creator_tag = (row.get("contract_creator_tag") or "").strip()
    creator_category = classify_tag(creator_tag, category)
    out.add(row.get("contract_creator") or "", creator_category,
            creator_tag or f"Deployer of {tag or 'malicious contract'}", source)


_FORTA_READERS = {"phishing_scams": _forta_phishing, "etherscan_malicious_labels": _forta_malicious_labels,
                  "malicious_smart_contracts": _forta_contracts}


def read_sources(src_dir: str | Path, combined_other: bool = False) -> tuple[list[Label], SourceStats]:
    """The labels of the raw datasets under ``src_dir`` (``etherscan/``, ``forta/``), merged and sorted."""
    root = Path(src_dir)
    if not (root / "etherscan").is_dir() and not (root / "forta").is_dir():
        raise InputError(f"labels: {root} holds neither etherscan/ nor forta/")
    out = _Collector()
    if (root / "etherscan").is_dir():
        _read_etherscan(root / "etherscan", out, combined_other)
    if (root / "forta").is_dir():
        _read_forta(root / "forta", out)
    return out.labels(), out.stats


def write_bundle(labels: Iterable[Label], out_path: str | Path) -> Path:
    """Write labels as a sorted, deduplicated gzip CSV; byte-identical for equal input (gzip mtime 0)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(BUNDLE_COLUMNS)
    writer.writerows((lb.address, lb.category, lb.name, lb.source) for lb in sorted(set(labels)))
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
        gz.write(buf.getvalue().encode("utf-8"))
    return path


def build_bundle(src_dir: str | Path, out_path: str | Path | None = None, combined_other: bool = False) -> SourceStats:
    """Read the raw datasets under ``src_dir`` and write the bundle (default: the packaged one)."""
    labels, stats = read_sources(src_dir, combined_other)
    write_bundle(labels, bundled_path() if out_path is None else out_path)
    return stats


def bundled_path() -> Path:
    """Path of the label bundle shipped inside the package."""
    return Path(str(resources.files("engine.wallets").joinpath("data", "labels.csv.gz")))


def read_bundle(path: str | Path) -> list[Label]:
    """Labels of a bundle written by :func:`write_bundle`."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if tuple(header or ()) != BUNDLE_COLUMNS:
            raise InputError(f"labels: {path} has header {header}, expected {list(BUNDLE_COLUMNS)}")
        labels = []
        for line, row in enumerate(reader, start=2):
            if len(row) != len(BUNDLE_COLUMNS) or row[1] not in CATEGORIES:
                raise InputError(f"labels: {path} line {line} is malformed: {row}")
            labels.append(Label(*row))
        return labels


class LabelSet:
    """Labels indexed by address, with exchange and risk-flag lookups."""

    def __init__(self, labels: Iterable[Label] = ()) -> None:
        grouped: dict[str, list[Label]] = {}
        for label in set(labels):
            grouped.setdefault(label.address, []).append(label)
        self._by_address: dict[str, tuple[Label, ...]] = {a: tuple(sorted(ls)) for a, ls in grouped.items()}

    @classmethod
    def load(cls, path: str | Path | None = None) -> LabelSet:
        """The labels of a bundle file; the one shipped with the package by default."""
        return cls(read_bundle(bundled_path() if path is None else path))

    @classmethod
    def from_sources(cls, src_dir: str | Path, combined_other: bool = False) -> LabelSet:
        """The labels read straight from the raw datasets (what the bundle is built from)."""
        return cls(read_sources(src_dir, combined_other)[0])

    def labels(self, address: str) -> list[Label]:
        """All labels of an address (any case), sorted; empty when it has none."""
        return list(self._by_address.get(address.strip().lower(), ()))

    def is_exchange(self, address: str) -> str | None:
        """Name of the exchange owning this wallet, or None."""
        return next((lb.name for lb in self.labels(address) if lb.category == "exchange"), None)

    def flags(self, address: str) -> set[str]:
        """The risky categories (sanctioned, mixer, phishing, exploit, scam) the address carries."""
        return {lb.category for lb in self.labels(address) if lb.category in RISK_CATEGORIES}

    def counts(self) -> dict[str, int]:
        """Number of distinct addresses per category."""
        return {c: n for c, n in Counter(c for ls in self._by_address.values()
                                         for c in {lb.category for lb in ls}).most_common()}

    def __iter__(self) -> Iterator[Label]:
        for address in sorted(self._by_address):
            yield from self._by_address[address]

    def __len__(self) -> int:
        return sum(len(ls) for ls in self._by_address.values())

    def __contains__(self, address: object) -> bool:
        return isinstance(address, str) and address.strip().lower() in self._by_address

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelSet) and self._by_address == other._by_address


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.wallets.labels SRC_DIR [OUT]``: rebuild the bundle and print what it holds."""
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2:
        print(__doc__.splitlines()[0], "\nusage: python -m engine.wallets.labels SRC_DIR [OUT]", file=sys.stderr)
        return 2
    out = Path(args[1]) if len(args) == 2 else bundled_path()
    stats = build_bundle(args[0], out)
    counts = LabelSet.load(out).counts()
    print(f"{out}: {out.stat().st_size} bytes; addresses per category {counts}; "
          f"invalid rows skipped {stats.invalid_total}; files skipped {stats.skipped_files}; "
          f"combined 'other' tags left out {sum(stats.left_out.values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
