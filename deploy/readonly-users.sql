-- Database users for investigator: read-only, and only the schemas it serves.
-- The bot's own layers (guard, read-only transactions, timeouts) hold anyway;
-- this is the layer that holds even if all of them failed.

-- PostgreSQL (run as an admin, once per database; repeat GRANT lines per schema):
CREATE ROLE investigator_ro LOGIN PASSWORD 'change-me' NOSUPERUSER NOCREATEDB NOCREATEROLE;
ALTER ROLE investigator_ro SET default_transaction_read_only = on;
ALTER ROLE investigator_ro SET statement_timeout = '30s';
GRANT CONNECT ON DATABASE payment_db TO investigator_ro;
GRANT USAGE ON SCHEMA public TO investigator_ro;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO investigator_ro;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO investigator_ro;

-- MySQL / MariaDB:
-- CREATE USER 'investigator_ro'@'%' IDENTIFIED BY 'change-me';
-- GRANT SELECT, SHOW VIEW ON user_db.* TO 'investigator_ro'@'%';
