-- The model registry's mirror (connectors/models/registry.py): besides the artefact uri, metrics and
-- parameters 0004 gave the table, each version records the feature names it reads, the window of bars
-- it was trained on (first and last bar close, ns UTC) and a hash of the training data. The files under
-- the registry root stay the source of truth; the table is rewritten from them on every change.

-- migrate:up
ALTER TABLE models
    ADD COLUMN IF NOT EXISTS features     text[] NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS window_start bigint,            -- first training bar's close, ns UTC
    ADD COLUMN IF NOT EXISTS window_end   bigint,            -- last training bar's close, ns UTC
    ADD COLUMN IF NOT EXISTS data_hash    text;
CREATE INDEX IF NOT EXISTS models_name_stage ON models (name, stage);

-- migrate:down
DROP INDEX IF EXISTS models_name_stage;
ALTER TABLE models
    DROP COLUMN IF EXISTS features,
    DROP COLUMN IF EXISTS window_start,
    DROP COLUMN IF EXISTS window_end,
    DROP COLUMN IF EXISTS data_hash;
