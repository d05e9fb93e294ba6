"""Pure wallet analytics for on-chain intelligence: address labels, flow windows, robust z-scores, clusters.

:mod:`engine.wallets.labels` loads the bundled labelled-address set (exchanges, sanctions, mixers,
phishing, exploits, scams); :mod:`engine.wallets.analytics` holds the stateful pieces, each exact on
integer token amounts and (for clusters) exactly undoable when a chain reorganisation orphans blocks.
"""
