//! Traffic protection and load balancing as plain, tested algorithms — no HTTP, no
//! I/O — so the gateway and the Rust SDK share them.
//!
//! [`balance`] holds the load balancers: smooth weighted round robin, weighted
//! random, power-of-two-choices least-request, peak EWMA, consistent hashing (ring
//! and Maglev) and msec's success-rate weight shaping. [`limit`] holds nginx's
//! `limit_req` and `limit_conn`, with nginx's exact semantics. [`adaptive`] holds
//! the adaptive concurrency limiters (brpc's auto limiter, Envoy's gradient
//! controller), [`breaker`] Hystrix's circuit breaker with a slow-call ratio, and [`acl`]
//! CIDR allow / deny lists and automatic bans.

pub mod acl;
pub mod adaptive;
pub mod balance;
pub mod breaker;
pub mod limit;
