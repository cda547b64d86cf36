//! `sluice trace ...`: one trace as a waterfall, a search for traces, and the
//! dependency graph — read from the Zipkin query API of the admin address, in
//! Sluice's span model (`sluice_trace::span::Span`).

use sluice_trace::span::Span;

use super::*;

/// `sluice trace`: find traces and show them.
#[derive(Debug, clap::Subcommand)]
pub enum TraceCommand {
    /// Show one trace: its spans as a waterfall, children under their parents.
    Get {
        /// The trace id (from `x-sluice-trace-id`, `sluice trace find`, ...).
        id: String,
    },
    /// Find traces, newest first.
    Find {
        /// Spans of this service (`sluice-gateway` for the gateway's).
        #[arg(long)]
        service: Option<String>,
        /// With this span name (the gateway's: the API, such as "GET /articles/{id}").
        #[arg(long)]
        api: Option<String>,
        /// Only spans at least this long, such as 200ms.
        #[arg(long)]
        min: Option<String>,
        /// Only spans at most this long.
        #[arg(long)]
        max: Option<String>,
        /// Only traces with a failed span.
        #[arg(long)]
        errors: bool,
        /// How far back, such as 15m or 1d.
        #[arg(long, default_value = "1h")]
        since: String,
        /// Most traces shown.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// The dependency graph: calls between services, errors and latency.
    Deps {
        /// How far back, such as 15m or 1d.
        #[arg(long, default_value = "1h")]
        since: String,
    },
}

fn micros(duration: &str, flag: &str) -> anyhow::Result<u128> {
    let parsed =
        sluice_model::duration_text::parse(duration).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    Ok(parsed.as_micros().max(1))
}

fn now_ms() -> anyhow::Result<u128> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis())
}

fn ms(us: u64) -> String {
    format!("{:.1}ms", us as f64 / 1000.0)
}

fn spans_of(value: Value) -> anyhow::Result<Vec<Span>> {
    serde_json::from_value(value).context("the answer is not a list of Zipkin spans")
}

/// Prints a trace as a waterfall: depth-first from the roots, each span with
/// its offset from the trace's start, its duration and a bar.
fn waterfall(spans: &[Span]) {
    let (start, took) = sluice_trace::span::extent(spans);
    let end = start + took.max(1);
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s.id.as_str()).collect();
    let mut order: Vec<(usize, &Span)> = Vec::new();
    fn visit<'a>(
        span: &'a Span,
        depth: usize,
        spans: &'a [Span],
        order: &mut Vec<(usize, &'a Span)>,
    ) {
        if order.iter().any(|(_, s)| std::ptr::eq(*s, span)) || depth > 64 {
            return;
        }
        order.push((depth, span));
        for child in spans
            .iter()
            .filter(|c| c.parent_id.as_deref() == Some(span.id.as_str()) && !std::ptr::eq(*c, span))
        {
            visit(child, depth + 1, spans, order);
        }
    }
    for root in spans
        .iter()
        .filter(|s| s.parent_id.as_deref().is_none_or(|p| !ids.contains(p)))
    {
        visit(root, 0, spans, &mut order);
    }
    const WIDTH: u64 = 40;
    let rows = order
        .into_iter()
        .map(|(depth, span)| {
            let offset = span.timestamp.unwrap_or(start).saturating_sub(start);
            let duration = span.duration.unwrap_or(0);
            let from = (offset * WIDTH / (end - start)).min(WIDTH - 1);
            let length = (duration * WIDTH)
                .div_ceil(end - start)
                .clamp(1, WIDTH - from);
            let bar = format!(
                "{}{}",
                " ".repeat(from as usize),
                "█".repeat(length as usize)
            );
            let kind = span
                .kind
                .map(|k| format!("{k:?}").to_uppercase())
                .unwrap_or_default();
            vec![
                format!(
                    "{}{} {}",
                    "  ".repeat(depth),
                    span.service().unwrap_or("?"),
                    span.name.as_deref().unwrap_or("")
                ),
                kind,
                format!("+{}", ms(offset)),
                ms(duration),
                if span.is_error() {
                    "error".to_owned()
                } else {
                    String::new()
                },
                bar,
            ]
        })
        .collect();
    table(&["SPAN", "KIND", "AT", "TOOK", "", "TIMELINE"], rows);
}

/// Runs `sluice trace ...`.
pub async fn run(args: ClientArgs, command: TraceCommand) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    match command {
        TraceCommand::Get { id } => {
            let Some(value) = client
                .get_unless_json(&format!("/api/v2/trace/{id}"))
                .await?
            else {
                return Ok(());
            };
            let spans = spans_of(value)?;
            println!("trace {id}: {} spans", spans.len());
            waterfall(&spans);
        }
        TraceCommand::Find {
            service,
            api,
            min,
            max,
            errors,
            since,
            limit,
        } => {
            let mut query: Vec<(&str, String)> = vec![
                ("endTs", now_ms()?.to_string()),
                (
                    "lookback",
                    (micros(&since, "--since")? / 1000).max(1).to_string(),
                ),
                ("limit", limit.max(1).to_string()),
            ];
            if let Some(service) = service {
                query.push(("serviceName", service));
            }
            if let Some(api) = api {
                query.push(("spanName", api));
            }
            if let Some(min) = &min {
                query.push(("minDuration", micros(min, "--min")?.to_string()));
            }
            if let Some(max) = &max {
                if min.is_none() {
                    query.push(("minDuration", "1".to_owned()));
                }
                query.push(("maxDuration", micros(max, "--max")?.to_string()));
            }
            if errors {
                query.push(("annotationQuery", "error".to_owned()));
            }
            let path = format!(
                "/api/v2/traces?{}",
                serde_urlencoded::to_string(&query).context("the query")?
            );
            let Some(value) = client.get_unless_json(&path).await? else {
                return Ok(());
            };
            let traces: Vec<Vec<Span>> =
                serde_json::from_value(value).context("the answer is not a list of traces")?;
            let rows = traces
                .iter()
                .map(|spans| {
                    let root = sluice_trace::span::root(spans);
                    let (start, took) = sluice_trace::span::extent(spans);
                    vec![
                        root.map(|r| r.trace_id.clone()).unwrap_or_default(),
                        root.map(|r| {
                            format!(
                                "{} {}",
                                r.service().unwrap_or("?"),
                                r.name.as_deref().unwrap_or("")
                            )
                        })
                        .unwrap_or_default(),
                        sluice_model::format_time(i64::try_from(start / 1000).unwrap_or(0)),
                        ms(took),
                        spans.len().to_string(),
                        spans.iter().filter(|s| s.is_error()).count().to_string(),
                    ]
                })
                .collect();
            table(
                &["TRACE", "ROOT", "STARTED", "TOOK", "SPANS", "ERRORS"],
                rows,
            );
        }
        TraceCommand::Deps { since } => {
            let path = format!(
                "/v1/tracing/dependencies?endTs={}&lookback={}",
                now_ms()?,
                (micros(&since, "--since")? / 1000).max(1)
            );
            let Some(value) = client.get_unless_json(&path).await? else {
                return Ok(());
            };
            let rows = value
                .as_array()
                .into_iter()
                .flatten()
                .map(|link| {
                    let quantile =
                        |field: &str| link[field].as_u64().map(ms).unwrap_or_else(|| "-".into());
                    vec![
                        text(link, "/parent"),
                        text(link, "/child"),
                        text(link, "/callCount"),
                        text(link, "/errorCount"),
                        quantile("p50Us"),
                        quantile("p99Us"),
                    ]
                })
                .collect();
            table(&["CALLER", "CALLEE", "CALLS", "ERRORS", "P50", "P99"], rows);
        }
    }
    Ok(())
}
