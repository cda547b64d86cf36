//! The snapshot requests are routed with, and the loop that rebuilds it whenever
//! the routes, the policies or the instances change.
//!
//! A snapshot is immutable and read through an `ArcSwap`: requests in flight keep
//! the one they started with, new requests see the new one. Guard state (limits,
//! breakers, limiters), instance failure state and API names outlive a snapshot
//! while their spec is unchanged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arc_swap::ArcSwap;
use sluice_model::ResourceId;
use tokio::sync::watch;

use crate::api_names;
use crate::observe::{RequestObserver, SpanSink};
use crate::outlier::EndpointHealth;
use crate::protect::{self, Policies};
use crate::sources::{Instances, Routes};
use crate::table::{CompiledRoute, Endpoint, RouteTable};

/// What requests are routed with: built whole, swapped in atomically.
#[derive(Default)]
pub struct Snapshot {
    pub(crate) table: RouteTable,
}

/// What a gateway's listeners and its rebuild loop share.
pub(crate) struct Shared {
    /// The snapshot in force.
    pub snapshot: ArcSwap<Snapshot>,
    /// Told about every answered request, when set.
    pub observer: Option<Arc<dyn RequestObserver>>,
    /// Given the spans of sampled requests, when set.
    pub spans: Option<Arc<dyn SpanSink>>,
    /// Requests refused, by reason.
    pub rejections: protect::Rejections,
}

/// Builds a new snapshot whenever routes or instances change.
pub(crate) async fn rebuild_loop(
    shared: std::sync::Weak<Shared>,
    mut routes: watch::Receiver<Routes>,
    mut policies: watch::Receiver<Policies>,
    source: Arc<dyn Instances>,
    built: watch::Sender<u64>,
) {
    let mut instances = source.changes();
    // Limits, breakers and limiters keep their state across snapshots while their spec is unchanged.
    let mut guards = protect::GuardState::default();
    // Failure state per instance address, kept across snapshots.
    let mut healths: HashMap<String, Arc<EndpointHealth>> = HashMap::new();
    // API names per route, kept across snapshots while its naming settings are unchanged.
    let mut namers: HashMap<ResourceId, Arc<api_names::ApiNamer>> = HashMap::new();
    let mut generation = 0u64;
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let specs = routes.borrow_and_update().clone();
        guards.update(&policies.borrow_and_update());
        instances.borrow_and_update();
        let mut live = HashSet::new();
        let mut compiled: Vec<CompiledRoute> = specs
            .iter()
            .filter_map(|(ResourceId { namespace, name }, spec)| {
                let mut endpoints = |ns: &str, svc: &str| {
                    source
                        .endpoints(ns, svc)
                        .into_iter()
                        .map(|i| {
                            live.insert(i.address.clone());
                            let health = Arc::clone(healths.entry(i.address.clone()).or_default());
                            Endpoint {
                                id: i.id,
                                pool_key: i.address.as_str().into(),
                                address: i.address,
                                weight: i.weight,
                                health,
                            }
                        })
                        .collect()
                };
                let settings = CompiledRoute::naming_settings(spec);
                let id = ResourceId::new(namespace.clone(), name.clone());
                let namer = match namers.get(&id) {
                    Some(namer) if *namer.settings() == settings => Arc::clone(namer),
                    _ => {
                        let route = format!("{namespace}/{name}");
                        let namer = Arc::new(api_names::ApiNamer::new(route, settings));
                        namers.insert(id, Arc::clone(&namer));
                        namer
                    }
                };
                CompiledRoute::compile(namespace, name, spec, &mut endpoints, namer)
            })
            .collect();
        namers.retain(|id, _| specs.contains_key(id));
        healths.retain(|address, _| live.contains(address));
        guards.retain_breakers(&live);
        for route in &mut compiled {
            route.guards = guards.route(&route.namespace, &route.name);
            for target in route
                .targets
                .iter_mut()
                .chain(route.fallback_target.as_mut())
            {
                let addresses: Vec<&str> = target
                    .endpoints
                    .iter()
                    .map(|e| e.address.as_str())
                    .collect();
                target.guards = guards.service(&target.namespace, &target.service, &addresses);
            }
        }
        shared.snapshot.store(Arc::new(Snapshot {
            table: RouteTable::new(compiled),
        }));
        drop(shared);
        generation += 1;
        built.send_replace(generation);
        tokio::select! {
            changed = routes.changed() => if changed.is_err() { return },
            changed = policies.changed() => if changed.is_err() { return },
            changed = instances.changed() => if changed.is_err() { return },
        }
    }
}
