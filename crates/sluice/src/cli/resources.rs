//! `sluice apply -f FILE` and `sluice get KIND [NAME]`: resources from files,
//! and reading them back.

use super::*;

/// Runs `sluice apply -f FILE` (YAML or JSON, several documents allowed).
pub async fn apply(args: ClientArgs, file: PathBuf) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let mut documents = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let value = <serde_yaml::Value as serde::Deserialize>::deserialize(document)
            .with_context(|| format!("{} document {}: invalid YAML", file.display(), index + 1))?;
        if value.is_null() {
            continue;
        }
        documents.push(serde_json::to_value(value).with_context(|| {
            format!(
                "{} document {}: not representable as JSON",
                file.display(),
                index + 1
            )
        })?);
    }
    if documents.is_empty() {
        bail!("{} holds no resources", file.display());
    }
    for (index, document) in documents.iter().enumerate() {
        let place = format!("{} document {}", file.display(), index + 1);
        let kind = document["kind"]
            .as_str()
            .with_context(|| format!("{place}: missing \"kind\""))?;
        let name = document
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .with_context(|| format!("{place}: missing \"metadata.name\""))?;
        let ns = document
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(client.ns());
        let spec = document
            .get("spec")
            .with_context(|| format!("{place}: missing \"spec\""))?;
        let mut body = json!({"spec": spec});
        if let Some(labels) = document.pointer("/metadata/labels") {
            body["metadata"] = json!({"labels": labels});
        }
        let path = format!("/v1/namespaces/{ns}/resources/{kind}/{name}");
        let before = client
            .call(reqwest::Method::GET, &path, None)
            .await
            .ok()
            .map(|(_, v)| v["metadata"]["revision"].clone());
        let (status, value) = client
            .call(reqwest::Method::PUT, &path, Some(&body))
            .await
            .with_context(|| place.clone())?;
        let outcome = match (status, before) {
            (201, _) => "created",
            (_, Some(revision)) if revision == value["metadata"]["revision"] => "unchanged",
            _ => "configured",
        };
        println!(
            "{kind}/{ns}/{name} {outcome} (revision {})",
            value["metadata"]["revision"]
        );
    }
    Ok(())
}

/// Runs `sluice get KIND [NAME]`.
pub async fn get(args: ClientArgs, kind: String, name: Option<String>) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    let ns = client.ns().to_owned();
    match name {
        Some(name) => {
            let (_, value) = client
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/namespaces/{ns}/resources/{kind}/{name}"),
                    None,
                )
                .await?;
            if client.args.output == Output::Json {
                client.print_json(&value);
            } else {
                print!("{}", serde_yaml::to_string(&value).unwrap_or_default());
            }
        }
        None => {
            let Some(value) = client
                .get_unless_json(&format!("/v1/namespaces/{ns}/resources/{kind}"))
                .await?
            else {
                return Ok(());
            };
            let rows = items(&value, "items")
                .map(|r| {
                    vec![
                        text(r, "/metadata/name"),
                        text(r, "/metadata/revision"),
                        labels_text(&r["metadata"]["labels"]),
                    ]
                })
                .collect();
            table(&["NAME", "REVISION", "LABELS"], rows);
        }
    }
    Ok(())
}
