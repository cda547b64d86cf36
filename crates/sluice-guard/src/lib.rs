//! Traffic protection and load balancing as plain, tested algorithms — no HTTP, no
//! I/O — so the gateway and the Rust SDK share them.
//!
//! [`balance`] holds the load balancers: smooth weighted round robin, weighted
//! random, power-of-two-choices least-request, peak EWMA, consistent hashing (ring
//! and Maglev) and msec's success-rate weight shaping, with the semantics of
//! `shared/reference/algorithms.md` §5. [`limit`] holds nginx's `limit_req` and
//! `limit_conn`, with the exact semantics of §1. [`adaptive`] holds the adaptive
//! concurrency limiters (brpc's auto limiter, §2; Envoy's gradient controller, §3),
//! [`breaker`] Hystrix's circuit breaker with a slow-call ratio (§4), and [`acl`]
//! CIDR allow / deny lists and automatic bans.

pub mod acl;
pub mod adaptive;
pub mod balance;
pub mod breaker;
pub mod limit;
