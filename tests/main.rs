//! End-to-end tests: they start the real `sluice` binary (and real peers) and
//! check what a user would see. One module per area, named `<area>_<topic>`.

mod store_crash;
