-- One database per service, each owned by the service's own role (docker-compose.yml mounts
-- this into /docker-entrypoint-initdb.d: it runs once, when the data volume is empty).
-- The passwords are the compose file's; PostgreSQL is reachable only on the compose network.
CREATE ROLE auth LOGIN PASSWORD 'auth';
CREATE DATABASE auth OWNER auth;
CREATE ROLE member LOGIN PASSWORD 'member';
CREATE DATABASE member OWNER member;
CREATE ROLE batch LOGIN PASSWORD 'batch';
CREATE DATABASE batch OWNER batch;
