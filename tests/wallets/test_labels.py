"""The label set built from the real etherscan-labels and forta datasets, and its bundled copy."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from engine.wallets.labels import (
    CATEGORIES,
    Label,
    LabelSet,
    build_bundle,
    bundled_path,
    classify_tag,
    is_exchange_wallet,
    read_bundle,
    read_sources,
    write_bundle,
)
from schemas.errors import InputError

BINANCE = "0x3f5ce5fbfe3e9af3971dd833d26ba9b5c936f0be"
USDT = "0xdac17f958d2ee523a2206206994597c13d831ec7"
TORNADO_01_ETH = "0x12d66f87a04a9e220743712ce6d9bb1b5616b8fc"
# addresses per category in this snapshot of the public datasets (combined JSON "other" tags left out)
EXPECTED_COUNTS = {"phishing": 7385, "other": 572, "exchange": 442, "exploit": 373, "scam": 155,
                   "mixer": 86, "sanctioned": 72}


@pytest.fixture(scope="module")
def src(shared_data: Path) -> Path:
    return shared_data / "labels"


@pytest.fixture(scope="module")
def direct(src: Path) -> tuple[list[Label], object]:
    return read_sources(src)


@pytest.fixture(scope="module")
def labels(direct) -> LabelSet:
    return LabelSet(direct[0])


def _csv_addresses(path: Path, column: str) -> set[str]:
    with path.open(newline="") as f:
        return {row[column].strip().lower() for row in csv.DictReader(f)}


def test_counts_per_category(labels: LabelSet, direct) -> None:
    assert labels.counts() == EXPECTED_COUNTS
    stats = direct[1]
    assert stats.invalid_total == 0
    # forta/10 is Optimism: its addresses can mean something else on mainnet
    assert stats.skipped_files == ["forta/10/malicious_smart_contracts.csv"]
    assert stats.rows["forta:1/phishing_scams"] == 6726


def test_categories_match_the_raw_lists(labels: LabelSet, src: Path) -> None:
    by_cat: dict[str, set[str]] = {c: set() for c in CATEGORIES}
    for lb in labels:
        by_cat[lb.category].add(lb.address)
    accounts = src / "etherscan" / "accounts"
    assert by_cat["sanctioned"] == _csv_addresses(accounts / "ofac-sanctions-lists.csv", "Address")
    combined = json.loads((src / "etherscan" / "combined" / "combinedAllLabels.json").read_text())
    typhoon = {a.lower() for a, e in combined.items() if "typhoon-cash" in e["labels"]}
    assert by_cat["mixer"] == (_csv_addresses(accounts / "tornado-cash.csv", "Address")
                               | _csv_addresses(accounts / "ethereum-mixer.csv", "Address") | typhoon)
    phishing_csv = _csv_addresses(src / "forta" / "1" / "phishing_scams.csv", "address")
    # every forta phishing-list address carries some risk flag (most "phishing", spam tokens "scam", ...)
    assert all(labels.flags(a) for a in phishing_csv)
    assert len(phishing_csv & by_cat["phishing"]) > 6000
    assert all(labels.labels(a) for a in _csv_addresses(accounts / "binance.csv", "Address"))


def test_known_addresses(labels: LabelSet, src: Path) -> None:
    assert labels.is_exchange(BINANCE) == "Binance"
    assert labels.is_exchange(BINANCE.upper().replace("0X", "0x")) == "Binance"
    assert labels.flags(BINANCE) == set()
    assert labels.is_exchange("0x2910543af39aba0cd09dbb2d50200b3e800a63d2") == "Kraken"
    with (src / "etherscan" / "accounts" / "ofac-sanctions-lists.csv").open(newline="") as f:
        ofac = next(csv.DictReader(f))["Address"]
    assert "sanctioned" in labels.flags(ofac)
    assert labels.flags("0x000000000532b45f47779fce440748893b257865") == {"phishing"}  # Fake_Phishing3901
    assert labels.flags(TORNADO_01_ETH) == {"mixer", "sanctioned"}
    # USDT is listed under Bitfinex, but a token contract is not an exchange wallet
    assert labels.is_exchange(USDT) is None
    assert [lb.category for lb in labels.labels(USDT)] == ["other"]
    assert labels.labels("0x" + "ab" * 20) == [] and labels.flags("0x" + "ab" * 20) == set()


def test_classification_rules() -> None:
    assert is_exchange_wallet("Binance 14", "Binance") and is_exchange_wallet("FTX Exchange 2", "FTX")
    assert is_exchange_wallet("Kraken: Hot Wallet", "Kraken") and is_exchange_wallet("OKX: Deposit Funder 3", "OKX")
    assert not is_exchange_wallet("Binance: BNB Token", "Binance")
    assert not is_exchange_wallet("Bitfinex: Deployer 2", "Bitfinex")
    assert classify_tag("Fake_Phishing12", "scam") == "phishing"
    assert classify_tag("Nomad Bridge Exploiter", "phishing") == "exploit"
    assert classify_tag("AnubisDAO Liquidity Rug", "exploit") == "scam"
    assert classify_tag("Rolex (Rolex)", "phishing") == "phishing"


def test_bundle_round_trip_equals_direct_load(direct, tmp_path: Path) -> None:
    out = write_bundle(direct[0], tmp_path / "labels.csv.gz")
    assert LabelSet.load(out) == LabelSet(direct[0])
    assert read_bundle(out) == sorted(direct[0])
    # deterministic bytes: rebuilding gives an identical file
    again = write_bundle(reversed(direct[0]), tmp_path / "again.csv.gz")
    assert out.read_bytes() == again.read_bytes()


def test_shipped_bundle_is_current(labels: LabelSet) -> None:
    path = bundled_path()
    assert path.is_file() and path.stat().st_size < 400_000
    assert LabelSet.load() == labels


def test_invalid_addresses_are_skipped_and_counted(tmp_path: Path) -> None:
    accounts = tmp_path / "etherscan" / "accounts"
    accounts.mkdir(parents=True)
    (accounts / "kraken.csv").write_text(
        ",Address,Name Tag,Balance,Txn Count\n"
        f"0,{'0x' + 'AB' * 20},Kraken 3,0 ETH,1\n"
        "1,0x1234,Kraken 4,0 ETH,1\n"
        f"2,{'0x' + 'zz' * 20},Kraken 5,0 ETH,1\n")
    forta = tmp_path / "forta"
    (forta / "1").mkdir(parents=True)
    (forta / "10").mkdir()
    (forta / "1" / "phishing_scams.csv").write_text(
        "address,etherscan_tag,etherscan_labels,is_contract\n"
        f"{'0x' + 'cd' * 20},Fake_Phishing1,phish-hack,False\n"
        "not-an-address,Fake_Phishing2,phish-hack,False\n")
    (forta / "10" / "malicious_smart_contracts.csv").write_text("contract_address\n" + "0x" + "ef" * 20 + "\n")
    labels, stats = read_sources(tmp_path)
    assert labels == [Label("0x" + "ab" * 20, "exchange", "Kraken", "etherscan:accounts/kraken"),
                      Label("0x" + "cd" * 20, "phishing", "Fake_Phishing1", "forta:1/phishing_scams")]
    assert stats.invalid == {"etherscan:accounts/kraken": 2, "forta:1/phishing_scams": 1}
    assert stats.skipped_files == ["forta/10/malicious_smart_contracts.csv"]
    out = tmp_path / "b.csv.gz"
    build_bundle(tmp_path, out)
    assert LabelSet.load(out) == LabelSet(labels)


def test_bad_inputs_raise(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        read_sources(tmp_path)
    bad = tmp_path / "bad.csv.gz"
    with gzip.open(bad, "wt") as f:
        f.write("address,kind\n")
    with pytest.raises(InputError):
        LabelSet.load(bad)
