-- Data quality of live venue data: bars built while trades were missing are flagged degraded
-- (cleared when a late repair rebuilds them), and every gap, repair, resync and connection state
-- change of a venue is kept as an event.

-- migrate:up
ALTER TABLE candles ADD COLUMN IF NOT EXISTS degraded boolean NOT NULL DEFAULT false;

CREATE TABLE IF NOT EXISTS venue_events (
    venue     text COLLATE "C" NOT NULL,
    market    text COLLATE "C" NOT NULL DEFAULT '',
    kind      text COLLATE "C" NOT NULL,              -- state, gap, repair, degraded, unrepaired, resync, reject
    ts        timestamptz NOT NULL,
    detail    text NOT NULL DEFAULT '',
    from_id   bigint NOT NULL DEFAULT -1,
    to_id     bigint NOT NULL DEFAULT -1,
    start_ts  bigint NOT NULL DEFAULT 0,              -- event-time window of the affected data, ns
    end_ts    bigint NOT NULL DEFAULT 0,
    count     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (venue, market, kind, ts, from_id)
);
CREATE INDEX IF NOT EXISTS venue_events_market_ts ON venue_events (market, ts DESC);

-- migrate:down
DROP TABLE IF EXISTS venue_events;
ALTER TABLE candles DROP COLUMN IF EXISTS degraded;
