mod cli;
mod common;
mod corpus;
mod engine;
mod logfile;
mod sql_mysql;
mod sql_postgres;
mod sql_sqlite;
