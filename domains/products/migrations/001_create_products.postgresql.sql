-- The products table on PostgreSQL: runs instead of 001_create_products.sql there
-- (SERIAL is PostgreSQL's INTEGER PRIMARY KEY AUTOINCREMENT).
CREATE TABLE products (
    id    SERIAL           PRIMARY KEY,
    name  TEXT             NOT NULL,
    price DOUBLE PRECISION NOT NULL CHECK (price > 0)
);
