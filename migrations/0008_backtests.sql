-- Backtest runs as the backtest command records them: strategy and version, parameters and
-- settings, the data they ran over (timeframe, markets, first and last bar time in ns), counts
-- and the whole metrics document (portfolio, benchmark, per market, counters). A plain table
-- (not a time-series one), read newest first. The table 0004 created (never written to) takes
-- this shape: its started_at becomes created_at, finished_at goes.

-- migrate:up
ALTER TABLE backtests RENAME COLUMN started_at TO created_at;
ALTER TABLE backtests DROP COLUMN IF EXISTS finished_at;
ALTER TABLE backtests
    ADD COLUMN IF NOT EXISTS strategy_version text,
    ADD COLUMN IF NOT EXISTS settings         jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS timeframe        text,
    ADD COLUMN IF NOT EXISTS engine           text,
    ADD COLUMN IF NOT EXISTS markets          text[] NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS start_ts         bigint,           -- first bar, ns UTC
    ADD COLUMN IF NOT EXISTS end_ts           bigint,           -- last bar, ns UTC
    ADD COLUMN IF NOT EXISTS bars             bigint,
    ADD COLUMN IF NOT EXISTS trades           bigint,
    ADD COLUMN IF NOT EXISTS out_dir          text;
-- pages newest first; id breaks ties between runs recorded in the same microsecond
CREATE INDEX IF NOT EXISTS backtests_created_at ON backtests (created_at DESC, id DESC);

-- migrate:down
DROP INDEX IF EXISTS backtests_created_at;
ALTER TABLE backtests
    DROP COLUMN IF EXISTS strategy_version,
    DROP COLUMN IF EXISTS settings,
    DROP COLUMN IF EXISTS timeframe,
    DROP COLUMN IF EXISTS engine,
    DROP COLUMN IF EXISTS markets,
    DROP COLUMN IF EXISTS start_ts,
    DROP COLUMN IF EXISTS end_ts,
    DROP COLUMN IF EXISTS bars,
    DROP COLUMN IF EXISTS trades,
    DROP COLUMN IF EXISTS out_dir,
    ADD COLUMN IF NOT EXISTS finished_at timestamptz;
ALTER TABLE backtests RENAME COLUMN created_at TO started_at;
