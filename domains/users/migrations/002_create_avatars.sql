-- One avatar per account, stored in the database so every replica serves the same one.
CREATE TABLE avatars (
    user_id      INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    content_type TEXT    NOT NULL,
    image        BLOB    NOT NULL
);
