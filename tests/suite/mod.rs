mod common;
mod corpus;
mod cli;
mod logfile;
mod sql_mysql;
mod sql_postgres;
mod sql_sqlite;
