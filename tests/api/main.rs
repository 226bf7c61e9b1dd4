//! One integration binary: every area drives a real gateway over HTTP, on Postgres and SQLite.

mod helpers;

mod access;
mod architecture;
mod auth;
mod availability;
mod cache;
mod dashboard;
mod faults;
mod fuzz;
mod hardening;
mod health_and_schema;
mod hostile;
mod live;
mod n_plus_one;
mod observability;
mod operators;
mod outside_writes;
mod packaging;
mod platform;
mod query_plans;
mod reservations;
mod rest;
mod share;
mod tenant_sweep;
