-- Base: storage-mode helpers and the registry of time-series tables.
-- Time-series tables are TimescaleDB hypertables when the extension can be created, otherwise
-- natively range-partitioned tables (monthly partitions + a default partition, BRIN on time).
-- The mode is 'auto' unless the session sets ci.storage_mode to 'plain' or 'timescale'.

-- migrate:up
CREATE TABLE IF NOT EXISTS ci_time_tables (
    name            text PRIMARY KEY,
    time_col        text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('hypertable', 'partitioned')),
    retention       interval,                -- NULL keeps everything
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- 'timescale' when the extension is (or can be) installed, else 'plain'.
CREATE OR REPLACE FUNCTION ci_storage_mode() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    wanted text := coalesce(nullif(current_setting('ci.storage_mode', true), ''), 'auto');
BEGIN
    IF wanted = 'plain' THEN
        RETURN 'plain';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RETURN 'timescale';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS timescaledb;
            RETURN 'timescale';
        EXCEPTION WHEN others THEN
            -- available but not loadable (e.g. not in shared_preload_libraries)
            IF wanted = 'timescale' THEN RAISE; END IF;
        END;
    ELSIF wanted = 'timescale' THEN
        RAISE EXCEPTION 'ci.storage_mode is timescale but the timescaledb extension is not available';
    END IF;
    RETURN 'plain';
END $$;

-- Create a time-series table from its column list; idempotent.
CREATE OR REPLACE FUNCTION ci_create_time_table(tbl text, columns_ddl text, time_col text,
                                                segment_by text DEFAULT NULL,
                                                retention interval DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    mode text := ci_storage_mode();
BEGIN
    IF to_regclass(tbl) IS NOT NULL THEN
        RETURN (SELECT kind FROM ci_time_tables WHERE name = tbl);
    END IF;
    IF mode = 'timescale' THEN
        EXECUTE format('CREATE TABLE %I (%s)', tbl, columns_ddl);
        EXECUTE format('SELECT create_hypertable(%L, %L, chunk_time_interval => interval %L)',
                       tbl, time_col, '7 days');
        IF segment_by IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I SET (timescaledb.compress, timescaledb.compress_segmentby = %L)',
                           tbl, segment_by);
            EXECUTE format('SELECT add_compression_policy(%L, interval %L)', tbl, '30 days');
        END IF;
        IF retention IS NOT NULL THEN
            EXECUTE format('SELECT add_retention_policy(%L, %L::interval)', tbl, retention);
        END IF;
        INSERT INTO ci_time_tables (name, time_col, kind, retention) VALUES (tbl, time_col, 'hypertable', retention);
        RETURN 'hypertable';
    END IF;
    EXECUTE format('CREATE TABLE %I (%s) PARTITION BY RANGE (%I)', tbl, columns_ddl, time_col);
    EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', tbl || '_default', tbl);
    EXECUTE format('CREATE INDEX %I ON %I USING brin (%I)', tbl || '_time_brin', tbl, time_col);
    INSERT INTO ci_time_tables (name, time_col, kind, retention) VALUES (tbl, time_col, 'partitioned', retention);
    RETURN 'partitioned';
END $$;

-- Make sure monthly partitions cover [from_ts, to_ts]; rows already in the default partition for a
-- new month are moved into it. A no-op for hypertables. Returns how many partitions were created.
CREATE OR REPLACE FUNCTION ci_ensure_partitions(tbl text, from_ts timestamptz, to_ts timestamptz) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    t ci_time_tables%ROWTYPE;
    m timestamptz;
    part text;
    made int := 0;
BEGIN
    SELECT * INTO t FROM ci_time_tables WHERE name = tbl;
    IF NOT FOUND OR t.kind <> 'partitioned' THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('ci_partitions:' || tbl));
    m := date_trunc('month', from_ts, 'UTC');
    WHILE m <= to_ts LOOP
        part := format('%s_p%s', tbl, to_char(m AT TIME ZONE 'UTC', 'YYYYMM'));
        IF to_regclass(part) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)', part, tbl);
            EXECUTE format('WITH moved AS (DELETE FROM %I WHERE %I >= $1 AND %I < $2 RETURNING *) '
                           'INSERT INTO %I SELECT * FROM moved', tbl || '_default', t.time_col, t.time_col, part)
                USING m, m + interval '1 month';
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           tbl, part, m, m + interval '1 month');
            made := made + 1;
        END IF;
        m := m + interval '1 month';
    END LOOP;
    RETURN made;
END $$;

-- migrate:down
DROP FUNCTION IF EXISTS ci_ensure_partitions(text, timestamptz, timestamptz);
DROP FUNCTION IF EXISTS ci_create_time_table(text, text, text, text, interval);
DROP FUNCTION IF EXISTS ci_storage_mode();
DROP TABLE IF EXISTS ci_time_tables;
