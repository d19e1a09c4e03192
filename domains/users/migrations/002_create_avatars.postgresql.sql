-- The avatars table on PostgreSQL: runs instead of 002_create_avatars.sql there.
CREATE TABLE avatars (
    user_id      INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    content_type TEXT    NOT NULL,
    image        BYTEA   NOT NULL
);
