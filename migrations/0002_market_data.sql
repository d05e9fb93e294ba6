-- Market data and analysis: candles, trades, indicator snapshots, structure events, order blocks,
-- signals and risk scores. Natural primary keys make every write idempotent. Text keys use the
-- "C" collation: byte order, faster index comparisons, same order on every server.

-- migrate:up
CREATE TABLE IF NOT EXISTS markets (
    market      text COLLATE "C" PRIMARY KEY,          -- e.g. BINANCE:BTCUSDT
    venue       text,
    first_seen  timestamptz NOT NULL DEFAULT now()
);

SELECT ci_create_time_table('candles', $$
    market      text COLLATE "C" NOT NULL,
    timeframe   text COLLATE "C" NOT NULL,
    open_ts     timestamptz NOT NULL,
    close_ts    timestamptz NOT NULL,
    open        float8,
    high        float8,
    low         float8,
    close       float8,
    volume      float8 NOT NULL,
    buy_volume  float8 NOT NULL,
    sell_volume float8 NOT NULL,
    vwap        float8,
    trade_count bigint NOT NULL,
    gap         boolean NOT NULL DEFAULT false,
    PRIMARY KEY (market, timeframe, open_ts)
$$, 'open_ts', 'market, timeframe');

-- retention-limited: raw trades are large and re-derivable from the venue's history
SELECT ci_create_time_table('trades', $$
    market      text COLLATE "C" NOT NULL,
    ts          timestamptz NOT NULL,
    trade_id    bigint NOT NULL,
    price       float8 NOT NULL,
    size        float8 NOT NULL,
    side        text NOT NULL,
    PRIMARY KEY (market, trade_id, ts)
$$, 'ts', 'market', interval '30 days');

SELECT ci_create_time_table('indicator_snapshots', $$
    market      text COLLATE "C" NOT NULL,
    timeframe   text COLLATE "C" NOT NULL,
    ts          timestamptz NOT NULL,
    close       float8,
    "values"    jsonb NOT NULL,
    PRIMARY KEY (market, timeframe, ts)
$$, 'ts', 'market, timeframe', interval '90 days');

SELECT ci_create_time_table('structure_events', $$
    id            text COLLATE "C" NOT NULL,
    market        text COLLATE "C" NOT NULL,
    timeframe     text COLLATE "C" NOT NULL,
    kind          text NOT NULL,
    ts            timestamptz NOT NULL,
    confirmed_ts  timestamptz NOT NULL,
    price         float8,
    meta          jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (id, kind, confirmed_ts)
$$, 'confirmed_ts', 'market, timeframe');
CREATE INDEX IF NOT EXISTS structure_events_market ON structure_events (market, timeframe, confirmed_ts);

-- Latest state of each order block / fair value gap, folded from its lifecycle events.
CREATE TABLE IF NOT EXISTS order_blocks (
    id            text COLLATE "C" PRIMARY KEY,
    market        text COLLATE "C" NOT NULL,
    timeframe     text COLLATE "C" NOT NULL,
    kind          text NOT NULL,                 -- the creating event, e.g. ob_bullish, fvg_bearish
    state         text NOT NULL,                 -- created | touched | mitigated | invalidated | ...
    ts            timestamptz NOT NULL,          -- open time of the bar the object refers to
    updated_ts    timestamptz NOT NULL,          -- confirmation time of the latest event
    price         float8,
    meta          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS order_blocks_market ON order_blocks (market, timeframe, state);

SELECT ci_create_time_table('signals', $$
    id              text COLLATE "C" NOT NULL,
    market          text COLLATE "C" NOT NULL,
    timeframe       text COLLATE "C" NOT NULL,
    ts              timestamptz NOT NULL,
    kind            text NOT NULL,
    side            text NOT NULL,
    strength        float8 NOT NULL,
    price           float8 NOT NULL,
    stop            float8,
    target          float8,
    targets         float8[] NOT NULL DEFAULT '{}',
    reasons         text[] NOT NULL,
    source_versions jsonb NOT NULL,
    risk_score      float8,
    risk            jsonb NOT NULL DEFAULT '{}',
    flags           text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (id, ts)
$$, 'ts', 'market');
CREATE INDEX IF NOT EXISTS signals_market_ts ON signals (market, ts);

SELECT ci_create_time_table('risk_scores', $$
    market      text COLLATE "C" NOT NULL,
    timeframe   text COLLATE "C" NOT NULL,
    ts          timestamptz NOT NULL,
    score       float8 NOT NULL,
    components  jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (market, timeframe, ts)
$$, 'ts', 'market, timeframe');

-- migrate:down
DROP TABLE IF EXISTS risk_scores, signals, order_blocks, structure_events, indicator_snapshots, trades, candles, markets CASCADE;
DELETE FROM ci_time_tables WHERE name IN ('risk_scores', 'signals', 'structure_events', 'indicator_snapshots', 'trades', 'candles');
