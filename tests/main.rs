//! End-to-end tests: they start the real `sluice` binary (and real peers) and
//! check what a user would see. One module per area, named `<area>_<topic>`.

#![allow(clippy::unwrap_used, missing_docs)]

mod cli_basics;
mod store_crash;
