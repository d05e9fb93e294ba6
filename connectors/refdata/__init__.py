"""Reference data from market-data aggregators: CoinGecko prices and DexScreener pools, polled over HTTP.

:mod:`connectors.refdata.http` holds the shared JSON client (cache, rate limits, retries), the source
modules turn responses into :class:`schemas.records.ReferencePrice` / :class:`schemas.records.DexPair`,
and :mod:`connectors.refdata.poller` keeps the latest values fresh.
"""
