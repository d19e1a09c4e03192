-- The products table. Migrations run at boot, in order, each once.
CREATE TABLE products (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    name  TEXT    NOT NULL,
    price REAL    NOT NULL CHECK (price > 0)
);
