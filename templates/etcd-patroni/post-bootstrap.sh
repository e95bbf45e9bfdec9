#!/bin/sh
# Patroni's post_bootstrap hook (Patroni 4 dropped bootstrap.users): run once, as postgres,
# on the node that initialised the cluster, with a superuser connection string as $1.
# Creates the application's role and database. Names and password come from files the
# node agent writes at boot (the password never appears in argv or in this image).
set -eu
exec psql "$1" -v ON_ERROR_STOP=1 -q <<'SQL'
\i /etc/patroni/app-database.psql
\set app_password `cat /etc/patroni/app-database.password`
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'app_user', :'app_password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'app_user') \gexec
SQL
