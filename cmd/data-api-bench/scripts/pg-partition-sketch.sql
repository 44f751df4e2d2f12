-- pg-partition-sketch.sql: BENCHMARKS.md, target 5 (what the design does past one
-- SQLite file). 5M rows of the service's shape over 10 days, in a plain table
-- with the service's indexes and in one partitioned by day of created_at;
-- then time first pages with pgbench -M prepared (the q_*.sql lines in
-- BENCHMARKS.md) and a day's retention both ways. Run with psql -f against a
-- scratch database; it creates and leaves the schema part_sketch.
\timing on
DROP SCHEMA IF EXISTS part_sketch CASCADE;
CREATE SCHEMA part_sketch;
SET search_path = part_sketch;
-- 5M rows over 10 days, 20 per dialogue, 1000 customers, 4 languages, 104-byte sealed texts.
CREATE TABLE plain (id bigint PRIMARY KEY, customer_id text NOT NULL, dialogue_id text NOT NULL, language text NOT NULL, sealed bytea NOT NULL, created_at bigint NOT NULL);
INSERT INTO plain SELECT i, 'customer-' || ((i/20) % 1000), 'dialogue-' || (i/20), (ARRAY['en','de','fr','pt-BR'])[1 + ((i/20/7) % 4)],
  decode(repeat(md5(i::text), 7), 'hex') || decode('00000000', 'hex'), 1764000000000000000 + i * 172800000::bigint
  FROM generate_series(1::bigint, 5000000::bigint) i;
CREATE INDEX ON plain (created_at, id); CREATE INDEX ON plain (customer_id, created_at, id); CREATE INDEX ON plain (language, created_at, id);
CREATE INDEX ON plain (customer_id, language, created_at, id); CREATE INDEX ON plain (dialogue_id, created_at, id);
-- the same rows, partitioned by day of created_at (10 partitions)
CREATE TABLE parted (id bigint NOT NULL, customer_id text NOT NULL, dialogue_id text NOT NULL, language text NOT NULL, sealed bytea NOT NULL, created_at bigint NOT NULL, PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
DO $$ BEGIN FOR d IN 0..10 LOOP
  EXECUTE format('CREATE TABLE parted_%s PARTITION OF parted FOR VALUES FROM (%s) TO (%s)', d, 1764000000000000000 + d::bigint * 86400000000000, 1764000000000000000 + (d + 1)::bigint * 86400000000000);
END LOOP; END $$;
INSERT INTO parted SELECT * FROM plain;
CREATE INDEX ON parted (created_at, id); CREATE INDEX ON parted (customer_id, created_at, id); CREATE INDEX ON parted (language, created_at, id);
CREATE INDEX ON parted (customer_id, language, created_at, id); CREATE INDEX ON parted (dialogue_id, created_at, id);
VACUUM ANALYZE plain; VACUUM ANALYZE parted;
SELECT pg_size_pretty(pg_total_relation_size('plain')) AS plain_size;
-- Retention of the oldest day, both ways (run with \timing on):
--   DELETE FROM plain WHERE created_at < 1764000000000000000 + 86400000000000;
--   ALTER TABLE parted DETACH PARTITION parted_0; DROP TABLE parted_0;
