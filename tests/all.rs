//! The one integration test binary (one link step for all suites).

mod suite;
