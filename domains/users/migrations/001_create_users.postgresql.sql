-- The users table on PostgreSQL: runs instead of 001_create_users.sql there.
CREATE TABLE users (
    id            SERIAL PRIMARY KEY,
    email         TEXT   NOT NULL UNIQUE,
    name          TEXT   NOT NULL,
    password_hash TEXT   NOT NULL,
    roles         TEXT   NOT NULL DEFAULT 'user'
);
