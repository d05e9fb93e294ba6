-- Browser sessions (serve/sessions.py): password credentials (one encoded scrypt string each, with the
-- role a login gets, as a key has one), the HS256 signing keys access tokens name by kid, login
-- sessions (the sid every access token carries; revoking one refuses its tokens) and their refresh
-- tokens, stored only as SHA-256 hashes and rotated on every use.

-- migrate:up
CREATE TABLE IF NOT EXISTS user_passwords (
    username    text COLLATE "C" PRIMARY KEY REFERENCES users (username) ON DELETE CASCADE,
    hash        text NOT NULL,                          -- scrypt$ln=15,r=8,p=1$SALT$HASH
    role        text NOT NULL DEFAULT 'user',
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS signing_keys (
    kid            text COLLATE "C" PRIMARY KEY,
    secret         bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),  -- the newest unretired key signs
    superseded_at  timestamptz,                         -- when a newer key took over signing
    retired_at     timestamptz                          -- no longer verifies anything
);

CREATE TABLE IF NOT EXISTS auth_sessions (
    sid             text COLLATE "C" PRIMARY KEY,
    username        text COLLATE "C" NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    role            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,               -- absolute end, however often it is refreshed
    revoked_at      timestamptz,
    revoked_reason  text
);
CREATE INDEX IF NOT EXISTS auth_sessions_username ON auth_sessions (username);
CREATE INDEX IF NOT EXISTS auth_sessions_revoked ON auth_sessions (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash  text COLLATE "C" PRIMARY KEY,           -- sha256 of the token; the token is never stored
    sid         text COLLATE "C" NOT NULL REFERENCES auth_sessions (sid) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,                            -- rotated: presenting it again is a reuse
    revoked_at  timestamptz
);
CREATE INDEX IF NOT EXISTS refresh_tokens_sid ON refresh_tokens (sid);

-- migrate:down
DROP TABLE IF EXISTS refresh_tokens, auth_sessions, signing_keys, user_passwords CASCADE;
