-- pgapp 1.0: the rows the app lists, reads and writes.
CREATE TABLE items (
  key text PRIMARY KEY,
  value text NOT NULL
);
