//! End-to-end tests: they start the real `sluice` binary (and real peers) and
//! check what a user would see. One module per area, named `<area>_<topic>`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, dead_code)]

mod support;

mod alarm_delivery;
mod alarm_errors;
mod alarm_webhook;
mod api_bad_input;
mod api_openapi;
mod cli_basics;
mod config_agent;
mod config_center;
mod gateway_bad_input;
mod gateway_control_loss;
mod gateway_failover;
mod gateway_grpc;
mod gateway_routing;
mod gateway_tls;
mod gateway_websocket;
mod guard_protection;
mod guard_rate_limit;
mod metrics_api_names;
mod metrics_custom;
mod metrics_health;
mod metrics_prometheus;
mod registry_etcd_nodes;
mod registry_prometheus_sd;
mod registry_tour;
mod store_backup;
mod store_crash;
mod trace_ingest;
mod trace_otel_sdk;
mod trace_zipkin;
mod ui_browser;
mod ui_configs;
mod ui_console;
mod ui_traces;
