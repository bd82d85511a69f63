-- pgapp 1.1: every row records when it last changed. Rows from 1.0 get the time of the upgrade.
ALTER TABLE items ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

CREATE FUNCTION items_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

CREATE TRIGGER items_touch BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION items_touch();
