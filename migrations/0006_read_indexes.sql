-- Indexes for the API's pages: signals in (ts, id) order, structure events by confirmation time.

-- migrate:up
CREATE INDEX IF NOT EXISTS signals_ts_id ON signals (ts, id);
CREATE INDEX IF NOT EXISTS signals_kind_ts ON signals (kind, ts);

-- migrate:down
DROP INDEX IF EXISTS signals_kind_ts;
DROP INDEX IF EXISTS signals_ts_id;
