//! `sluice health`: the API-health board as tables.

use super::*;

fn percent(value: &Value) -> String {
    value
        .as_f64()
        .map_or("-".to_owned(), |v| format!("{:.2}%", v * 100.0))
}

/// Runs `sluice health`: the API-health board as tables.
pub async fn run(args: ClientArgs, service: Option<String>, window: String) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    let ns = client.ns().to_owned();
    let mut path = format!("/v1/namespaces/{ns}/health?window={window}");
    if let Some(service) = &service {
        path.push_str(&format!("&service={service}"));
    }
    let Some(board) = client.get_unless_json(&path).await? else {
        return Ok(());
    };
    let scope = service.map_or_else(|| format!("namespace {ns}"), |s| format!("service {s}"));
    println!(
        "{scope}, last {window}: {} requests, {} qps, errors {}, p50 {} ms, p98 {} ms, p99 {} ms",
        figure(&board["requests"]),
        figure(&board["qps"]),
        percent(&board["error_rate"]),
        figure(&board["p50_ms"]),
        figure(&board["p98_ms"]),
        figure(&board["p99_ms"]),
    );
    let codes: Vec<String> = board["codes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(code, n)| format!("{code}={n}"))
        .collect();
    println!(
        "codes: {}",
        if codes.is_empty() {
            "-".to_owned()
        } else {
            codes.join(" ")
        }
    );
    println!();
    let apis = items(&board, "top_apis")
        .map(|a| {
            vec![
                text(a, "/api"),
                text(a, "/service"),
                figure(&a["qps"]),
                figure(&a["p98_ms"]),
                percent(&a["error_rate"]),
            ]
        })
        .collect();
    table(&["TOP API", "SERVICE", "QPS", "P98 MS", "ERRORS"], apis);
    println!();
    let rows = |scopes: &Value, names: &[&str]| -> Vec<Vec<String>> {
        scopes
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let mut row: Vec<String> =
                    names.iter().map(|n| text(s, &format!("/{n}"))).collect();
                row.extend([
                    figure(&s["qps"]),
                    percent(&s["error_rate"]),
                    figure(&s["p50_ms"]),
                    figure(&s["p98_ms"]),
                    figure(&s["p99_ms"]),
                ]);
                row
            })
            .collect()
    };
    table(
        &["SERVICE", "QPS", "ERRORS", "P50 MS", "P98 MS", "P99 MS"],
        rows(&board["services"], &["service"]),
    );
    println!();
    table(
        &[
            "SERVICE", "INSTANCE", "QPS", "ERRORS", "P50 MS", "P98 MS", "P99 MS",
        ],
        rows(&board["instances"], &["service", "instance"]),
    );
    Ok(())
}
