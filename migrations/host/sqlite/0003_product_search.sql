-- Product names folded to lower case by the service (Unicode-aware), so
-- search ignores case the same way on both backends (SQLite's LOWER folds
-- ASCII only).
ALTER TABLE products ADD COLUMN name_folded TEXT NOT NULL DEFAULT '';
UPDATE products SET name_folded = LOWER(name);
