//! Generic resources: every configured object (`Route`, `RateLimit`, `AlarmRule`,
//! `Service`, ...) is `{kind, metadata, spec}`, validated by its kind, stored with a
//! revision, its earlier versions kept (bounded) for history and rollback.
//!
//! Keys: the current version at `res/{kind}/{ns}/{name}`; each replaced or deleted
//! version at `hist/{kind}/{ns}/{name}/{revision}` (the revision it was written at),
//! moved there in the same transaction that replaces it, so no version is lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_model::keys::{self, history_prefix, resource_key};
use sluice_model::{
    validate_labels, validate_name, InvalidField, Resource, ResourceMetadata, ServiceSpec,
};
use sluice_store::{
    follow, Compare, FollowUpdate, KeyValue, RangeOptions, Revision, Store, Txn, TxnOp,
};
use tokio::sync::watch;

use crate::error::ApiError;

/// The namespace argument of [`Resources::list`] that lists every namespace.
pub const ALL_NAMESPACES: &str = "*";

/// Versions kept per resource besides the current one.
pub const DEFAULT_HISTORY_LIMIT: usize = 20;

/// Checks a kind's spec; the error names the field.
pub type SpecValidator = fn(&Value) -> Result<(), InvalidField>;

/// A kind's spec as a JSON Schema (for the OpenAPI document).
pub type SpecSchema = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

/// A kind: how its spec is checked and described.
#[derive(Clone, Copy)]
struct Kind {
    validator: SpecValidator,
    schema: SpecSchema,
}

/// The kinds the API accepts, each with its validation and the schema of its spec.
#[derive(Clone)]
pub struct Kinds {
    kinds: BTreeMap<String, Kind>,
}

impl Kinds {
    /// The kinds built into this Sluice.
    pub fn builtin() -> Self {
        use sluice_model::{
            AlarmRuleSpec, BreakerSpec, ConcurrencySpec, ConnLimitSpec, ErrorProjectSpec, MuteSpec,
            NotifierSpec,
        };
        let mut kinds = Kinds {
            kinds: BTreeMap::new(),
        };
        kinds.register_typed::<ServiceSpec>("Service", validate_service_spec);
        kinds.register_typed::<sluice_model::RouteSpec>("Route", validate_route_spec);
        kinds.register_typed::<sluice_model::RateLimitSpec>("RateLimit", validate_rate_limit_spec);
        kinds.register_typed::<ConnLimitSpec>("ConnLimit", |spec| {
            parse_spec::<ConnLimitSpec>(spec)?.validate()
        });
        kinds.register_typed::<sluice_model::AclSpec>("Acl", validate_acl_spec);
        kinds.register_typed::<sluice_model::BanSpec>("Ban", validate_ban_spec);
        kinds.register_typed::<ConcurrencySpec>("Concurrency", |spec| {
            parse_spec::<ConcurrencySpec>(spec)?.validate()
        });
        kinds.register_typed::<AlarmRuleSpec>("AlarmRule", |spec| {
            parse_spec::<AlarmRuleSpec>(spec)?.validate()
        });
        kinds.register_typed::<NotifierSpec>("Notifier", |spec| {
            parse_spec::<NotifierSpec>(spec)?.validate()
        });
        kinds.register_typed::<ErrorProjectSpec>("ErrorProject", |spec| {
            parse_spec::<ErrorProjectSpec>(spec)?.validate()
        });
        kinds.register_typed::<MuteSpec>("Mute", |spec| {
            parse_spec::<MuteSpec>(spec)?.validate().map(|_| ())
        });
        kinds.register_typed::<BreakerSpec>("Breaker", |spec| {
            parse_spec::<BreakerSpec>(spec)?.validate()
        });
        kinds
    }

    /// Adds (or replaces) a kind whose spec is described only as a JSON object.
    pub fn register(&mut self, kind: &str, validator: SpecValidator) {
        let schema: SpecSchema = |_| schemars::json_schema!({"type": "object"});
        self.kinds
            .insert(kind.to_owned(), Kind { validator, schema });
    }

    /// Adds (or replaces) a kind whose spec is `T`: the OpenAPI document describes
    /// it with `T`'s schema.
    pub fn register_typed<T: schemars::JsonSchema>(
        &mut self,
        kind: &str,
        validator: SpecValidator,
    ) {
        let schema: SpecSchema = |generator| generator.subschema_for::<T>();
        self.kinds
            .insert(kind.to_owned(), Kind { validator, schema });
    }

    /// Each kind's name and the schema of its spec (a reference into the
    /// generator's definitions for typed kinds).
    pub fn schemas(
        &self,
        generator: &mut schemars::SchemaGenerator,
    ) -> Vec<(String, schemars::Schema)> {
        self.kinds
            .iter()
            .map(|(name, kind)| (name.clone(), (kind.schema)(generator)))
            .collect()
    }

    /// The kind's validator, or a 404 listing the known kinds.
    pub fn validator(&self, kind: &str) -> Result<SpecValidator, ApiError> {
        self.kinds.get(kind).map(|k| k.validator).ok_or_else(|| {
            ApiError::not_found(format!(
                "unknown resource kind {kind:?}; known kinds: {}",
                self.kinds.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// Every known kind.
    pub fn names(&self) -> Vec<String> {
        self.kinds.keys().cloned().collect()
    }
}

/// Reads a spec into its type; a field of the wrong type or an unknown field is
/// named as `spec.PATH`.
fn parse_spec<T: serde::de::DeserializeOwned>(spec: &Value) -> Result<T, InvalidField> {
    serde_path_to_error::deserialize(spec).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." || path.is_empty() {
            "spec".to_owned()
        } else {
            format!("spec.{path}")
        };
        InvalidField::new(field, error.into_inner().to_string())
    })
}

fn validate_route_spec(spec: &Value) -> Result<(), InvalidField> {
    parse_spec::<sluice_model::RouteSpec>(spec)?.validate()
}

fn validate_acl_spec(spec: &Value) -> Result<(), InvalidField> {
    let acl: sluice_model::AclSpec = parse_spec(spec)?;
    acl.validate()?;
    for (field, list) in [("spec.allow", &acl.allow), ("spec.deny", &acl.deny)] {
        for entry in list {
            sluice_guard::acl::Cidr::parse(entry)
                .map_err(|e| InvalidField::new(field, e.to_string()))?;
        }
    }
    Ok(())
}

fn validate_ban_spec(spec: &Value) -> Result<(), InvalidField> {
    let ban: sluice_model::BanSpec = parse_spec(spec)?;
    ban.validate()?;
    if let Some(ip) = &ban.ip {
        sluice_guard::acl::Cidr::parse(ip)
            .map_err(|e| InvalidField::new("spec.ip", e.to_string()))?;
    }
    Ok(())
}

fn validate_rate_limit_spec(spec: &Value) -> Result<(), InvalidField> {
    let limit: sluice_model::RateLimitSpec = parse_spec(spec)?;
    sluice_guard::limit::parse_rate(&limit.rate)
        .map_err(|e| InvalidField::new("spec.rate", e.to_string()))?;
    limit.validate()
}

fn validate_service_spec(spec: &Value) -> Result<(), InvalidField> {
    parse_spec::<ServiceSpec>(spec)?.validate()
}

/// A `PUT` body: `{"spec": {...}, "metadata": {"labels": {...}}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceBody {
    /// The kind-specific body.
    pub spec: Value,
    /// Optional labels.
    #[serde(default)]
    pub metadata: Option<BodyMetadata>,
}

/// The metadata a client may set.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BodyMetadata {
    /// Labels for selection.
    #[serde(default)]
    #[schemars(with = "sluice_model::schema::LabelsMap")]
    pub labels: BTreeMap<String, String>,
}

/// One version in a resource's history.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct HistoryEntry {
    /// The revision this version was written at.
    pub revision: Revision,
    /// Whether this is the current version.
    pub current: bool,
    /// The version.
    pub resource: Resource,
}

/// Moves a version into the history, under the revision it was written at —
/// or, in a store restored from a backup (whose revisions start again lower
/// than the ones the history was numbered with), just after the newest entry,
/// so the history stays in the order versions were replaced.
async fn archive(
    store: &dyn sluice_store::Store,
    kind: &str,
    namespace: &str,
    name: &str,
    version: &KeyValue,
) -> Result<TxnOp, ApiError> {
    let prefix = history_prefix(kind, namespace, name);
    let newest = store
        .range(&prefix, RangeOptions::default())
        .await?
        .kvs
        .last()
        .and_then(|kv| kv.key.rsplit('/').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    let at = version.mod_revision.max(newest + 1);
    Ok(TxnOp::put(
        format!("{prefix}{at:020}"),
        version.value.clone(),
    ))
}

fn decode(kv: &KeyValue) -> Result<Resource, ApiError> {
    let mut resource: Resource = serde_json::from_slice(&kv.value).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "corrupt",
            format!("stored resource {:?} is unreadable: {e}", kv.key),
        )
    })?;
    resource.metadata.revision = kv.mod_revision;
    Ok(resource)
}

/// Stores and reads resources, and answers blocking lists.
pub struct Resources {
    store: Arc<dyn Store>,
    kinds: Kinds,
    history_limit: usize,
    /// (kind, namespace) → revision of the last change there.
    indexes: RwLock<HashMap<(String, String), Revision>>,
    changes: watch::Sender<Revision>,
}

impl Resources {
    /// Starts following `res/` for blocking lists; must run inside a Tokio runtime.
    pub fn start(store: Arc<dyn Store>, kinds: Kinds) -> Arc<Self> {
        let (changes, _) = watch::channel(0);
        let resources = Arc::new(Resources {
            store: Arc::clone(&store),
            kinds,
            history_limit: DEFAULT_HISTORY_LIMIT,
            indexes: RwLock::new(HashMap::new()),
            changes,
        });
        let weak = Arc::downgrade(&resources);
        tokio::spawn(follow(
            store,
            keys::RESOURCES_PREFIX.to_owned(),
            move |update| {
                let Some(resources) = weak.upgrade() else {
                    return;
                };
                let mut indexes = resources.indexes.write();
                let mut last = 0;
                let mut note = |key: &str, revision: Revision| {
                    if let Some((kind, ns, _)) = keys::parse_resource_key(key) {
                        for scope in [ns, ALL_NAMESPACES] {
                            let entry = indexes
                                .entry((kind.to_owned(), scope.to_owned()))
                                .or_insert(0);
                            *entry = (*entry).max(revision);
                        }
                    }
                    last = last.max(revision);
                };
                match update {
                    FollowUpdate::Snapshot { kvs, revision } => {
                        for kv in &kvs {
                            note(&kv.key, kv.mod_revision);
                        }
                        last = last.max(revision);
                    }
                    FollowUpdate::Events(events) => {
                        for event in &events {
                            note(&event.kv.key, event.revision());
                        }
                    }
                }
                drop(indexes);
                resources.changes.send_if_modified(|seen| {
                    let changed = last > *seen;
                    *seen = (*seen).max(last);
                    changed
                });
            },
        ));
        resources
    }

    /// The kinds accepted.
    pub fn kinds(&self) -> &Kinds {
        &self.kinds
    }

    fn check_path(
        &self,
        namespace: &str,
        kind: &str,
        name: Option<&str>,
    ) -> Result<SpecValidator, ApiError> {
        // "*" addresses every namespace (lists only; see `list`).
        if namespace == ALL_NAMESPACES && name.is_none() {
            return self.kinds.validator(kind);
        }
        validate_name("namespace", namespace)?;
        let validator = self.kinds.validator(kind)?;
        if let Some(name) = name {
            validate_name("resource name", name)?;
        }
        Ok(validator)
    }

    /// Creates or replaces a resource. Returns it and whether it was created. Putting
    /// the same spec and labels again changes nothing (no new revision).
    pub async fn put(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
        body: ResourceBody,
    ) -> Result<(Resource, bool), ApiError> {
        let validator = self.check_path(namespace, kind, Some(name))?;
        if !body.spec.is_object() {
            return Err(InvalidField::new("spec", "must be a JSON object").into());
        }
        validator(&body.spec)?;
        let labels = body.metadata.map(|m| m.labels).unwrap_or_default();
        validate_labels("metadata.labels", &labels, 256)?;
        let resource = Resource {
            kind: kind.to_owned(),
            metadata: ResourceMetadata {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                labels,
                revision: 0,
            },
            spec: body.spec,
        };
        self.write(resource).await
    }

    async fn write(&self, resource: Resource) -> Result<(Resource, bool), ApiError> {
        let (kind, namespace, name) = (
            &resource.kind,
            &resource.metadata.namespace,
            &resource.metadata.name,
        );
        let key = resource_key(kind, namespace, name);
        let value =
            serde_json::to_vec(&resource).map_err(|e| ApiError::bad_request(e.to_string()))?;
        for _ in 0..16 {
            let current = self.store.get(&key).await?;
            if let Some(current) = &current {
                let held = decode(current)?;
                if held.spec == resource.spec && held.metadata.labels == resource.metadata.labels {
                    return Ok((held, false));
                }
            }
            let mut txn = Txn::new()
                .when(Compare::ModRevision(
                    key.clone(),
                    current.as_ref().map_or(0, |kv| kv.mod_revision),
                ))
                .then(TxnOp::put(key.clone(), value.clone()));
            if let Some(current) = &current {
                txn = txn.then(archive(&*self.store, kind, namespace, name, current).await?);
            }
            let outcome = self.store.txn(txn).await?;
            if outcome.succeeded {
                self.trim_history(kind, namespace, name).await;
                let mut stored = resource.clone();
                stored.metadata.revision = outcome.revision;
                return Ok((stored, current.is_none()));
            }
        }
        Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "conflict",
            "the resource changed concurrently too often; try again",
        ))
    }

    async fn trim_history(&self, kind: &str, namespace: &str, name: &str) {
        let prefix = history_prefix(kind, namespace, name);
        let Ok(page) = self.store.range(&prefix, RangeOptions::default()).await else {
            return;
        };
        if page.kvs.len() > self.history_limit {
            let excess = page.kvs.len() - self.history_limit;
            let mut txn = Txn::new();
            for kv in page.kvs.iter().take(excess) {
                txn = txn.then(TxnOp::delete(kv.key.clone()));
            }
            let _ = self.store.txn(txn).await;
        }
    }

    /// Reads a resource.
    pub async fn get(&self, namespace: &str, kind: &str, name: &str) -> Result<Resource, ApiError> {
        self.check_path(namespace, kind, Some(name))?;
        let kv = self.store.get(&resource_key(kind, namespace, name)).await?;
        match kv {
            Some(kv) => decode(&kv),
            None => Err(ApiError::not_found(format!(
                "{kind} {namespace}/{name} does not exist"
            ))),
        }
    }

    /// Lists a kind in a namespace; also returns the list's change index.
    pub async fn list(
        &self,
        namespace: &str,
        kind: &str,
    ) -> Result<(Vec<Resource>, Revision), ApiError> {
        self.check_path(namespace, kind, None)?;
        let prefix = if namespace == ALL_NAMESPACES {
            keys::kind_prefix(kind)
        } else {
            keys::namespace_prefix(kind, namespace)
        };
        // The index is read before the list, so every change after it is either in
        // the list or has a higher revision; an item newer than the index (not yet
        // seen by the tracker) raises it, since the list already shows it.
        let index = self.index(kind, namespace);
        let (kvs, _) = sluice_store::list_all(&*self.store, &prefix).await?;
        let items = kvs.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        let newest = items.iter().map(|r| r.metadata.revision).max().unwrap_or(0);
        Ok((items, index.max(newest)))
    }

    fn index(&self, kind: &str, namespace: &str) -> Revision {
        self.indexes
            .read()
            .get(&(kind.to_owned(), namespace.to_owned()))
            .copied()
            .unwrap_or(1)
            .max(1)
    }

    /// A blocking list: answers when the kind changed in the namespace after `after`,
    /// or when `wait` (plus up to 1/16 jitter) ends.
    pub async fn wait_list(
        &self,
        namespace: &str,
        kind: &str,
        after: Revision,
        wait: Duration,
    ) -> Result<(Vec<Resource>, Revision), ApiError> {
        self.check_path(namespace, kind, None)?;
        let deadline = tokio::time::Instant::now() + wait + wait.mul_f64(fastrand::f64() / 16.0);
        // An index beyond the store's revision comes from a store before a
        // restore (whose revisions start again lower): answer now, with the
        // index to use from here on.
        if after > self.store.current_revision().await? {
            return self.list(namespace, kind).await;
        }
        let mut changes = self.changes.subscribe();
        loop {
            changes.borrow_and_update();
            if self.index(kind, namespace) > after {
                break;
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.list(namespace, kind).await
    }

    /// Deletes a resource, keeping its last version in the history.
    pub async fn delete(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<Revision, ApiError> {
        self.check_path(namespace, kind, Some(name))?;
        let key = resource_key(kind, namespace, name);
        for _ in 0..16 {
            let Some(current) = self.store.get(&key).await? else {
                return Err(ApiError::not_found(format!(
                    "{kind} {namespace}/{name} does not exist"
                )));
            };
            let txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), current.mod_revision))
                .then(TxnOp::delete(key.clone()))
                .then(archive(&*self.store, kind, namespace, name, &current).await?);
            let outcome = self.store.txn(txn).await?;
            if outcome.succeeded {
                self.trim_history(kind, namespace, name).await;
                return Ok(outcome.revision);
            }
        }
        Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "conflict",
            "the resource changed concurrently too often; try again",
        ))
    }

    /// Every kept version, newest first.
    pub async fn history(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<Vec<HistoryEntry>, ApiError> {
        self.check_path(namespace, kind, Some(name))?;
        let mut entries = Vec::new();
        if let Some(kv) = self.store.get(&resource_key(kind, namespace, name)).await? {
            entries.push(HistoryEntry {
                revision: kv.mod_revision,
                current: true,
                resource: decode(&kv)?,
            });
        }
        let page = self
            .store
            .range(
                &history_prefix(kind, namespace, name),
                RangeOptions::default(),
            )
            .await?;
        for kv in page.kvs.iter().rev() {
            let mut resource: Resource = serde_json::from_slice(&kv.value)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let revision = kv
                .key
                .rsplit('/')
                .next()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            resource.metadata.revision = revision;
            entries.push(HistoryEntry {
                revision,
                current: false,
                resource,
            });
        }
        if entries.is_empty() {
            return Err(ApiError::not_found(format!(
                "{kind} {namespace}/{name} has no history"
            )));
        }
        Ok(entries)
    }

    /// Makes the version written at `revision` current again (as a new revision).
    pub async fn rollback(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
        revision: Revision,
    ) -> Result<Resource, ApiError> {
        let history = self.history(namespace, kind, name).await?;
        let Some(entry) = history.into_iter().find(|entry| entry.revision == revision) else {
            return Err(ApiError::not_found(format!(
                "{kind} {namespace}/{name} has no kept version at revision {revision}; see its history"
            )));
        };
        let validator = self.kinds.validator(kind)?;
        validator(&entry.resource.spec)?;
        let mut resource = entry.resource;
        resource.metadata.revision = 0;
        Ok(self.write(resource).await?.0)
    }
}
