-- Room on every products page for a new version of its rows: a checkout's
-- stock decrement then stays a HOT update (no new index entry). Under
-- SERIALIZABLE a new entry in the primary key's pages conflicts with every
-- concurrent checkout that read a product on the same page.
ALTER TABLE products SET (fillfactor = 70);
