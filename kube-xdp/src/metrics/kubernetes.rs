//! The Kubernetes controller's metrics: whether the API answers, what it
//! programmed, and the API calls that failed. Absent without
//! `[kubernetes]` they stay at 0.

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

type Label = [(&'static str, &'static str); 1];

#[derive(Debug)]
pub struct KubernetesMetrics {
    connected: Gauge,
    services: Gauge,
    addresses: Gauge,
    errors: Family<Label, Counter>,
    problems: Gauge,
}

impl KubernetesMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let m = KubernetesMetrics {
            connected: Gauge::default(),
            services: Gauge::default(),
            addresses: Gauge::default(),
            errors: Family::default(),
            problems: Gauge::default(),
        };
        registry.register(
            "kube_xdp_kubernetes_connected",
            "Whether the Kubernetes API answers the controller's watches (1) or not (0: the services it last programmed keep forwarding)",
            m.connected.clone(),
        );
        registry.register(
            "kube_xdp_kubernetes_services",
            "kube-xdp services programmed for the cluster's Services of type LoadBalancer (one per Service port)",
            m.services.clone(),
        );
        registry.register(
            "kube_xdp_kubernetes_addresses",
            "Addresses handed to the cluster's Services of type LoadBalancer",
            m.addresses.clone(),
        );
        registry.register(
            "kube_xdp_kubernetes_unserved_services",
            "Services of type LoadBalancer kube-xdp handles but could not give an address (an Event on each says why)",
            m.problems.clone(),
        );
        registry.register(
            "kube_xdp_kubernetes_api_errors",
            "Failed Kubernetes API calls, by what was done (watch, status, finalizer, event)",
            m.errors.clone(),
        );
        m
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.set(i64::from(connected));
    }

    pub fn set_programmed(&self, services: usize, addresses: usize, unserved: usize) {
        self.services.set(services as i64);
        self.addresses.set(addresses as i64);
        self.problems.set(unserved as i64);
    }

    pub fn api_error(&self, what: &'static str) {
        self.errors.get_or_create(&[("call", what)]).inc();
    }
}
