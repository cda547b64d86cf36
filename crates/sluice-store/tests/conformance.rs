//! Runs the conformance suite against every backend: `memory::*`, `redb::*` and
//! `etcd::*` (a real etcd-server on a loopback port, one per test).

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use sluice_store::{EtcdOptions, EtcdStore, LocalStore, LocalStoreOptions, Store};

mod memory {
    use super::*;

    async fn open() -> (Arc<dyn Store>, ()) {
        let store = LocalStore::memory(LocalStoreOptions::default()).unwrap();
        (Arc::new(store), ())
    }

    sluice_store::conformance_tests!(open);
}

mod redb {
    use super::*;

    async fn open() -> (Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open_redb(dir.path(), LocalStoreOptions::default()).unwrap();
        (Arc::new(store), dir)
    }

    sluice_store::conformance_tests!(open);
}

mod etcd {
    use super::*;
    use sluice_testkit::EtcdCluster;

    async fn open() -> (Arc<dyn Store>, EtcdCluster) {
        let cluster = EtcdCluster::single();
        let store =
            EtcdStore::connect(&cluster.endpoints(), "/conformance", EtcdOptions::default())
                .await
                .unwrap();
        (Arc::new(store), cluster)
    }

    sluice_store::conformance_tests!(open);
}
