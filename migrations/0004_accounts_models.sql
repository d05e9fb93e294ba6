-- Users, API keys (stored hashed), feed subscriptions, the model registry and backtest runs.

-- migrate:up
CREATE TABLE IF NOT EXISTS users (
    username    text COLLATE "C" PRIMARY KEY,
    email       text,
    tier        text NOT NULL DEFAULT 'free',
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled    boolean NOT NULL DEFAULT false
);

CREATE TABLE IF NOT EXISTS api_keys (
    key_hash    text COLLATE "C" PRIMARY KEY,          -- sha256 of the key; the key itself is never stored
    username    text COLLATE "C" NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    role        text NOT NULL DEFAULT 'reader',
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE IF NOT EXISTS subscriptions (
    username    text COLLATE "C" NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    channel     text NOT NULL,                          -- candles | signals | structure | alerts
    filter      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (username, channel, filter)
);

CREATE TABLE IF NOT EXISTS models (
    name        text COLLATE "C" NOT NULL,
    version     text COLLATE "C" NOT NULL,
    kind        text NOT NULL,                          -- xgboost | rl_policy | ...
    uri         text NOT NULL,
    metrics     jsonb NOT NULL DEFAULT '{}',
    params      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    stage       text NOT NULL DEFAULT 'candidate',      -- candidate | production | archived
    PRIMARY KEY (name, version)
);

CREATE TABLE IF NOT EXISTS backtests (
    id          text COLLATE "C" PRIMARY KEY,
    strategy    text NOT NULL,
    params      jsonb NOT NULL DEFAULT '{}',
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    metrics     jsonb NOT NULL DEFAULT '{}'
);

-- migrate:down
DROP TABLE IF EXISTS backtests, models, subscriptions, api_keys, users CASCADE;
