//! What the controller writes to the cluster, after the daemon applied a
//! decision: finalizers, status (JSON merge patches) and Events (each
//! problem once, and each new address).

use std::{collections::HashMap, fmt::Display, future::Future, time::Duration};

use k8s_openapi::api::core::v1::Service;
use kube::{
    Api, Resource as _,
    api::{Patch, PatchParams},
    runtime::events::{Event as KubeEvent, EventType},
};
use serde_json::json;
use tracing::{debug, info, warn};

use super::{
    controller::Controller,
    reconcile::{FINALIZER, Handled, Key, Outcome},
};

/// How long one write may take (kube's client would wait about five
/// minutes, holding every later decision back): past it the write counts
/// as failed, and is tried again at the next decision.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// `write` bounded by [`WRITE_TIMEOUT`]; its error, or the timeout, as
/// text.
async fn bounded<T, E: Display>(write: impl Future<Output = Result<T, E>>) -> Result<T, String> {
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer in {WRITE_TIMEOUT:?}")),
    }
}

impl Controller {
    /// Finalizers, status and Events, as the outcome says.
    pub(super) async fn write(&mut self, services: &[Service], outcome: &Outcome) {
        let by_key: HashMap<Key, &Service> = services.iter().map(|s| (Key::of(s), s)).collect();
        for h in &outcome.handled {
            let Some(service) = by_key.get(&h.key) else {
                continue;
            };
            let api: Api<Service> = Api::namespaced(self.client.clone(), &h.key.namespace);
            if !h.has_finalizer {
                let mut finalizers = service.metadata.finalizers.clone().unwrap_or_default();
                finalizers.push(FINALIZER.into());
                self.patch_finalizers(&api, &h.key, service, finalizers)
                    .await;
            }
            if h.status_differs() {
                let patch = json!({ "status": { "loadBalancer": h.desired_status() } });
                match bounded(api.patch_status(
                    &h.key.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                ))
                .await
                {
                    Ok(_) => debug!(service = %h.key, "kubernetes: status written"),
                    Err(e) => {
                        self.metrics.kubernetes.api_error("status");
                        warn!(service = %h.key, "kubernetes: writing the status of {}: {e}", h.key);
                    }
                }
            }
            self.report(service, h).await;
        }
        for r in &outcome.released {
            let Some(service) = by_key.get(&r.key) else {
                continue;
            };
            let api: Api<Service> = Api::namespaced(self.client.clone(), &r.key.namespace);
            if r.has_status && !r.deleting {
                let patch = json!({ "status": { "loadBalancer": { "ingress": [] } } });
                if let Err(e) = bounded(api.patch_status(
                    &r.key.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                ))
                .await
                {
                    self.metrics.kubernetes.api_error("status");
                    warn!(service = %r.key, "kubernetes: clearing the status of {}: {e}", r.key);
                }
            }
            let finalizers: Vec<String> = service
                .metadata
                .finalizers
                .iter()
                .flatten()
                .filter(|f| *f != FINALIZER)
                .cloned()
                .collect();
            if self
                .patch_finalizers(&api, &r.key, service, finalizers)
                .await
            {
                info!(service = %r.key, "kubernetes: Service {} released: its address is free, its services removed", r.key);
            }
            self.reported.remove(&r.key);
            self.announced.remove(&r.key);
        }
        // What was said of a Service that no longer exists is forgotten
        // (one deleted without our finalizer is never released here).
        self.reported.retain(|k, _| by_key.contains_key(k));
        self.announced.retain(|k, _| by_key.contains_key(k));
    }

    /// Sets the Service's finalizers (with its resourceVersion, so that a
    /// concurrent change by someone else fails rather than being undone).
    async fn patch_finalizers(
        &self,
        api: &Api<Service>,
        key: &Key,
        service: &Service,
        finalizers: Vec<String>,
    ) -> bool {
        let mut meta = json!({ "finalizers": finalizers });
        if let Some(rv) = &service.metadata.resource_version {
            meta["resourceVersion"] = json!(rv);
        }
        match bounded(api.patch(
            &key.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "metadata": meta })),
        ))
        .await
        {
            Ok(_) => true,
            Err(e) => {
                self.metrics.kubernetes.api_error("finalizer");
                warn!(service = %key, "kubernetes: setting the finalizers of {key}: {e} (tried again at the next change)");
                false
            }
        }
    }

    /// An Event for a new problem, or for a new address.
    async fn report(&mut self, service: &Service, h: &Handled) {
        let event = match &h.address {
            Err(problem) => {
                let text = problem.to_string();
                if self.reported.get(&h.key) == Some(&text) {
                    return;
                }
                self.reported.insert(h.key.clone(), text.clone());
                self.announced.remove(&h.key);
                KubeEvent {
                    type_: EventType::Warning,
                    reason: problem.reason().into(),
                    note: Some(text),
                    action: "AllocateAddress".into(),
                    secondary: None,
                }
            }
            Ok(addr) => {
                self.reported.remove(&h.key);
                if self.announced.get(&h.key) == Some(addr) {
                    return;
                }
                self.announced.insert(h.key.clone(), *addr);
                let ports: Vec<String> = h
                    .ports
                    .iter()
                    .map(|p| {
                        format!(
                            "{}/{}→{}",
                            p.port,
                            p.protocol.as_str().to_uppercase(),
                            p.node_port
                        )
                    })
                    .collect();
                KubeEvent {
                    type_: EventType::Normal,
                    reason: "AddressAssigned".into(),
                    note: Some(format!(
                        "kube-xdp forwards {addr} ({}) to the nodes' NodePorts",
                        ports.join(", ")
                    )),
                    action: "AllocateAddress".into(),
                    secondary: None,
                }
            }
        };
        let reference = service.object_ref(&());
        if let Err(e) = bounded(self.recorder.publish(&event, &reference)).await {
            self.metrics.kubernetes.api_error("event");
            warn!(service = %h.key, "kubernetes: recording an Event on {}: {e}", h.key);
            // Try again next time.
            self.reported.remove(&h.key);
            self.announced.remove(&h.key);
        }
    }
}
