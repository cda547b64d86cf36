//! The alarm endpoints: alarms by state, acknowledging one, and notifications not
//! yet delivered (with their attempts and last error).

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use sluice_alarm::{judge, notify, Alarm, AlarmState};
use sluice_model::{format_time, validate_name};

use crate::error::ApiError;
use crate::routes::query as parse_query;
use crate::views::{AlarmView, Items, NotificationView, Told};
use crate::AppState;

fn store_error(error: sluice_store::StoreError) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        error.to_string(),
    )
}

fn time(seconds: u64) -> String {
    format_time(i64::try_from(seconds).unwrap_or(0).saturating_mul(1000))
}

fn view(alarm: &Alarm) -> AlarmView {
    AlarmView {
        id: alarm.id.clone(),
        rule: alarm.rule.clone(),
        state: alarm.state.as_str(),
        labels: alarm.labels.clone(),
        value: alarm.value,
        threshold: alarm.threshold,
        message: alarm.message.clone(),
        count: alarm.count,
        first_seen: time(alarm.first_seen),
        last_seen: time(alarm.last_seen),
        fired_at: alarm.fired_at.map(time),
        resolved_at: alarm.resolved_at.map(time),
        acknowledged: alarm.acknowledged,
        notified: alarm
            .notified
            .iter()
            .map(|(notifier, (at, state))| {
                let told = Told {
                    at: time(*at),
                    state: state.as_str(),
                };
                (notifier.clone(), told)
            })
            .collect(),
    }
}

/// `GET /v1/namespaces/{ns}/alarms?state=firing|pending|resolved|all`
pub async fn list(
    State(state): State<AppState>,
    Path(ns): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Items<AlarmView>>, ApiError> {
    validate_name("namespace", &ns).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let params = parse_query(raw, &["state"])?;
    let wanted = match params.get("state").map(String::as_str) {
        None | Some("all") => None,
        Some("firing") => Some(AlarmState::Firing),
        Some("pending") => Some(AlarmState::Pending),
        Some("resolved") => Some(AlarmState::Resolved),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "query parameter state={other:?} is not firing, pending, resolved or all"
            )))
        }
    };
    let alarms = judge::alarms(&*state.store, &ns)
        .await
        .map_err(store_error)?;
    let items = alarms
        .iter()
        .filter(|a| wanted.is_none_or(|w| a.state == w))
        .map(view)
        .collect();
    Ok(Json(Items {
        namespace: ns,
        items,
    }))
}

/// `POST /v1/namespaces/{ns}/alarms/{id}/ack`: no repeats while it keeps firing.
pub async fn acknowledge(
    State(state): State<AppState>,
    Path((ns, id)): Path<(String, String)>,
) -> Result<Json<AlarmView>, ApiError> {
    validate_name("namespace", &ns).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(format!("{id:?} is not an alarm ID")));
    }
    let alarm = judge::acknowledge(&*state.store, &ns, &id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("no alarm {id} in namespace {ns}")))?;
    Ok(Json(view(&alarm)))
}

/// `GET /v1/namespaces/{ns}/notifications`: notifications not yet delivered.
pub async fn notifications(
    State(state): State<AppState>,
    Path(ns): Path<String>,
) -> Result<Json<Items<NotificationView>>, ApiError> {
    validate_name("namespace", &ns).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let pending = notify::pending(&*state.store, Some(&ns))
        .await
        .map_err(store_error)?;
    let items = pending
        .iter()
        .map(|(_, n)| NotificationView {
            notifier: n.notifier.clone(),
            rule: n.rule.clone(),
            state: n.state().as_str(),
            created_at: time(n.created_at),
            attempts: n.attempts,
            next_attempt: time(n.next_attempt),
            last_error: n.last_error.clone(),
            alarms: n.alarms.len(),
        })
        .collect();
    Ok(Json(Items {
        namespace: ns,
        items,
    }))
}
