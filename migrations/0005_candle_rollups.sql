-- Hourly candles rolled up from 1-minute candles: a continuous aggregate under TimescaleDB,
-- a plain view otherwise (same columns, computed at query time).

-- migrate:up
DO $$
BEGIN
    IF (SELECT kind FROM ci_time_tables WHERE name = 'candles') = 'hypertable' THEN
        EXECUTE $v$
            CREATE MATERIALIZED VIEW IF NOT EXISTS candles_1h_rollup WITH (timescaledb.continuous) AS
            SELECT market, time_bucket(interval '1 hour', open_ts) AS open_ts,
                   first(open, open_ts) AS open, max(high) AS high, min(low) AS low,
                   last(close, open_ts) AS close, sum(volume) AS volume, sum(trade_count) AS trade_count
            FROM candles WHERE timeframe = '1m' AND NOT gap
            GROUP BY market, time_bucket(interval '1 hour', open_ts)
            WITH NO DATA $v$;
        PERFORM add_continuous_aggregate_policy('candles_1h_rollup', start_offset => interval '3 days',
                                                end_offset => interval '1 hour',
                                                schedule_interval => interval '15 minutes');
    ELSE
        CREATE OR REPLACE VIEW candles_1h_rollup AS
        SELECT market, date_trunc('hour', open_ts, 'UTC') AS open_ts,
               (array_agg(open ORDER BY open_ts))[1] AS open, max(high) AS high, min(low) AS low,
               (array_agg(close ORDER BY open_ts DESC))[1] AS close, sum(volume) AS volume,
               sum(trade_count) AS trade_count
        FROM candles WHERE timeframe = '1m' AND NOT gap
        GROUP BY market, date_trunc('hour', open_ts, 'UTC');
    END IF;
END $$;

-- migrate:down
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_matviews WHERE matviewname = 'candles_1h_rollup') THEN
        DROP MATERIALIZED VIEW candles_1h_rollup;
    ELSE
        DROP VIEW IF EXISTS candles_1h_rollup;
    END IF;
END $$;
