-- Accounts. email is stored lower-cased, so UNIQUE makes sign-up case-insensitive.
-- roles is a comma-separated list ('user', 'user,admin'): promote an admin with SQL.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    roles         TEXT    NOT NULL DEFAULT 'user'
);
