-- On-chain data: blocks, transactions, token transfers, wallets, labels, balances and alerts.
-- Keys include the block hash so that rows of a reorganised-away block never collide with the
-- canonical ones; token amounts are exact integers (uint256 fits in NUMERIC(78,0)).

-- migrate:up
SELECT ci_create_time_table('blocks', $$
    chain         text COLLATE "C" NOT NULL,
    number        bigint NOT NULL,
    hash          text COLLATE "C" NOT NULL,
    parent_hash   text COLLATE "C" NOT NULL,
    ts            timestamptz NOT NULL,
    tx_count      integer NOT NULL DEFAULT 0,
    canonical     boolean NOT NULL DEFAULT true,
    PRIMARY KEY (chain, hash, ts)
$$, 'ts', 'chain');
CREATE INDEX IF NOT EXISTS blocks_number ON blocks (chain, number);

SELECT ci_create_time_table('transactions', $$
    chain         text COLLATE "C" NOT NULL,
    hash          text COLLATE "C" NOT NULL,
    block_hash    text COLLATE "C" NOT NULL,
    block_number  bigint NOT NULL,
    block_ts      timestamptz NOT NULL,
    tx_index      integer NOT NULL,
    from_address  text COLLATE "C" NOT NULL,
    to_address    text COLLATE "C",
    value         numeric(78, 0) NOT NULL,
    gas_used      bigint,
    PRIMARY KEY (chain, block_hash, hash, block_ts)
$$, 'block_ts', 'chain');

SELECT ci_create_time_table('token_transfers', $$
    chain         text COLLATE "C" NOT NULL,
    block_hash    text COLLATE "C" NOT NULL,
    log_index     integer NOT NULL,
    block_number  bigint NOT NULL,
    block_ts      timestamptz NOT NULL,
    tx_hash       text COLLATE "C" NOT NULL,
    token_address text COLLATE "C" NOT NULL,
    from_address  text COLLATE "C" NOT NULL,
    to_address    text COLLATE "C" NOT NULL,
    value         numeric(78, 0) NOT NULL,
    PRIMARY KEY (chain, block_hash, log_index, block_ts)
$$, 'block_ts', 'chain, token_address');
CREATE INDEX IF NOT EXISTS token_transfers_from ON token_transfers (chain, from_address, block_ts);
CREATE INDEX IF NOT EXISTS token_transfers_to ON token_transfers (chain, to_address, block_ts);

CREATE TABLE IF NOT EXISTS wallets (
    chain       text COLLATE "C" NOT NULL,
    address     text COLLATE "C" NOT NULL,
    first_seen  timestamptz,
    last_seen   timestamptz,
    PRIMARY KEY (chain, address)
);

CREATE TABLE IF NOT EXISTS wallet_labels (
    chain       text COLLATE "C" NOT NULL,
    address     text COLLATE "C" NOT NULL,
    label       text NOT NULL,
    source      text NOT NULL DEFAULT 'user',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, address, label)
);

-- balance of a wallet in a token after a given block (token '' is the chain's native coin)
CREATE TABLE IF NOT EXISTS wallet_balances (
    chain         text COLLATE "C" NOT NULL,
    address       text COLLATE "C" NOT NULL,
    token_address text COLLATE "C" NOT NULL,
    block_number  bigint NOT NULL,
    balance       numeric(78, 0) NOT NULL,
    PRIMARY KEY (chain, address, token_address, block_number)
);

SELECT ci_create_time_table('alerts', $$
    id          text COLLATE "C" NOT NULL,
    ts          timestamptz NOT NULL,
    kind        text NOT NULL,
    severity    text NOT NULL DEFAULT 'info',
    chain       text COLLATE "C",
    market      text COLLATE "C",
    address     text COLLATE "C",
    message     text NOT NULL DEFAULT '',
    payload     jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (id, ts)
$$, 'ts', 'kind');
CREATE INDEX IF NOT EXISTS alerts_address ON alerts (chain, address, ts);

-- migrate:down
DROP TABLE IF EXISTS alerts, wallet_balances, wallet_labels, wallets, token_transfers, transactions, blocks CASCADE;
DELETE FROM ci_time_tables WHERE name IN ('alerts', 'token_transfers', 'transactions', 'blocks');
