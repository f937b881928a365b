//! `[kubernetes]` and its `[[kubernetes.address_pool]]` tables.

use std::net::Ipv4Addr;

use toml::Spanned;

use super::{At, Validator};
use crate::config::HaConfig;
use crate::config::kubernetes::{
    AddressPool, AddressRange, DEFAULT_LOAD_BALANCER_CLASS, KUBE_PROXY_HEALTHZ_PORT,
    KubernetesConfig, LabelSelector, MAX_POOL_ADDRESSES,
};
use crate::config::raw::{Field, RawAddressPool, RawHealthCheck, RawKubernetes};
use crate::config::schema::{DaemonConfig, Lines, Service};

const CONTEXT: &str = "kubernetes";

impl Validator<'_> {
    pub(super) fn kubernetes(
        &mut self,
        raw: Field<RawKubernetes>,
        daemon: &DaemonConfig,
        ha: Option<&HaConfig>,
        services: &[Service],
    ) -> Option<KubernetesConfig> {
        let raw = raw?;
        let span = raw.span();
        let table_line = self.line(span.clone());
        let raw = raw.into_inner();
        let mut lines = Lines {
            table: table_line,
            ..Lines::default()
        };
        let mut at = At {
            context: CONTEXT.into(),
            lines: &mut lines,
        };
        let kubeconfig = self
            .take(&mut at, "kubeconfig", raw.kubeconfig)
            .and_then(|(path, line)| {
                if path.starts_with('/') {
                    Some(path.into())
                } else {
                    self.error(
                        Some(line),
                        CONTEXT,
                        "kubeconfig",
                        format!("{path:?} must be an absolute path (leave it out for the in-cluster config, then $KUBECONFIG, then ~/.kube/config)"),
                    );
                    None
                }
            });
        let load_balancer_class = match self.take(
            &mut at,
            "load_balancer_class",
            raw.load_balancer_class,
        ) {
            Some((class, line)) if class.trim().is_empty() || class.len() > 253 => {
                self.error(
                        Some(line),
                        CONTEXT,
                        "load_balancer_class",
                        format!("{class:?} is not a class name: Services name it in spec.loadBalancerClass, e.g. {DEFAULT_LOAD_BALANCER_CLASS:?}"),
                    );
                DEFAULT_LOAD_BALANCER_CLASS.to_owned()
            }
            Some((class, _)) => class,
            None => DEFAULT_LOAD_BALANCER_CLASS.to_owned(),
        };
        let handle_classless = self
            .take(&mut at, "handle_classless", raw.handle_classless)
            .is_some_and(|(b, _)| b);
        let node_selector = self
            .take(&mut at, "node_selector", raw.node_selector)
            .and_then(|(text, line)| match text.parse::<LabelSelector>() {
                Ok(s) => Some(s),
                Err(e) => {
                    self.error(Some(line), CONTEXT, "node_selector", e);
                    None
                }
            });
        // Node backends: kube-proxy's /healthz over HTTP on 10256 unless
        // the table says otherwise, and trusted until they fail (the API
        // already says the node is Ready; a new Service answers at once).
        let mut check = match raw.health_check {
            Some(table) => table,
            None => Spanned::new(span.clone(), RawHealthCheck::default()),
        };
        let check_span = check.span();
        {
            let c = check.get_mut();
            let default = |v: &str| Some(Spanned::new(check_span.clone(), v.to_owned()));
            c.kind = c.kind.take().or_else(|| default("http"));
            if c.path.is_none() && c.kind.as_ref().is_some_and(|k| k.get_ref() != "tcp") {
                c.path = default("/healthz");
            }
            c.port = c.port.take().or_else(|| {
                Some(Spanned::new(
                    check_span.clone(),
                    i64::from(KUBE_PROXY_HEALTHZ_PORT),
                ))
            });
            c.init_state = c.init_state.take().or_else(|| default("up"));
        }
        let health_check = self.health_check(CONTEXT, table_line, Some(check), None);
        if let Some(line) = health_check.lines.get("ca_file") {
            self.error(
                Some(line),
                "kubernetes health_check",
                "ca_file",
                "is not supported for node checks yet: use tls_verify = false, or the system's CAs",
            );
        }

        let mut address_pools: Vec<AddressPool> = Vec::new();
        for (i, pool) in raw.address_pools.into_iter().enumerate() {
            if let Some(pool) = self.address_pool(i, pool) {
                address_pools.push(pool);
            }
        }
        if address_pools.is_empty()
            && !self
                .issues
                .iter()
                .any(|i| i.context.starts_with("kubernetes address_pool"))
        {
            self.error(
                Some(table_line),
                CONTEXT,
                "address_pool",
                "at least one [[kubernetes.address_pool]] is needed: the addresses Services of type \
                 LoadBalancer get, e.g. name = \"default\", addresses = [\"10.4.0.100-10.4.0.120\"]",
            );
        }
        // A file service's VIP inside a pool is allowed (a Service may ask
        // for it, on other ports) but never handed out by allocation.
        let _ = services;
        self.pools_apart(&address_pools, daemon, ha);
        Some(KubernetesConfig {
            kubeconfig,
            load_balancer_class,
            handle_classless,
            node_selector,
            address_pools,
            health_check,
            lines,
        })
    }

    fn address_pool(&mut self, index: usize, raw: Spanned<RawAddressPool>) -> Option<AddressPool> {
        let mut lines = Lines {
            table: self.line(raw.span()),
            ..Lines::default()
        };
        let raw = raw.into_inner();
        let mut at = At {
            context: format!("kubernetes address_pool #{}", index + 1),
            lines: &mut lines,
        };
        let name = self.name(&mut at, raw.name, "address pool", "default");
        if let Some(name) = &name {
            at.context = format!("kubernetes address_pool {name:?}");
        }
        let ctx = at.context.clone();
        let table = at.lines.table;
        let mut ranges: Vec<AddressRange> = Vec::new();
        match self.take(&mut at, "addresses", raw.addresses) {
            None => self.error(
                Some(table),
                &ctx,
                "addresses",
                "is required: CIDRs or ranges, e.g. addresses = [\"10.4.0.96/28\", \"10.4.0.120-10.4.0.130\"]",
            ),
            Some((list, line)) => {
                if list.is_empty() {
                    self.error(Some(line), &ctx, "addresses", "is empty: list at least one CIDR or range");
                }
                for (i, text) in list.into_iter().enumerate() {
                    let line = self.line(text.span());
                    at.lines.keys.insert(format!("addresses[{i}]"), line);
                    match text.get_ref().parse::<AddressRange>() {
                        Err(e) => self.error(Some(line), &ctx, "addresses", e),
                        Ok(r) if !super::fields::usable_unicast(r.first)
                            || !super::fields::usable_unicast(r.last) =>
                        {
                            self.error(Some(line), &ctx, "addresses", format!("{r} holds addresses that cannot be VIPs (0/8, loopback, multicast, 240/4)"));
                        }
                        Ok(r) if ranges.iter().any(|o| o.overlaps(&r)) => {
                            self.error(Some(line), &ctx, "addresses", format!("{r} overlaps another range of this pool"));
                        }
                        Ok(r) => ranges.push(r),
                    }
                }
            }
        }
        let total: u64 = ranges.iter().map(AddressRange::len).sum();
        if total > MAX_POOL_ADDRESSES {
            self.error(
                Some(at.lines.of("addresses")),
                &ctx,
                "addresses",
                format!("holds {total} addresses, more than the {MAX_POOL_ADDRESSES} a pool may hold: split it or narrow it"),
            );
        }
        let mut namespaces = Vec::new();
        if let Some((list, _)) = self.take(&mut at, "namespaces", raw.namespaces) {
            for ns in list {
                let line = self.line(ns.span());
                let ns = ns.into_inner();
                let ok = !ns.is_empty()
                    && ns.len() <= 63
                    && ns
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                if ok {
                    namespaces.push(ns);
                } else {
                    self.error(
                        Some(line),
                        &ctx,
                        "namespaces",
                        format!("{ns:?} is not a namespace name"),
                    );
                }
            }
        }
        let auto_assign = self
            .take(&mut at, "auto_assign", raw.auto_assign)
            .is_none_or(|(b, _)| b);
        Some(AddressPool {
            name: name?,
            ranges,
            namespaces,
            auto_assign,
            lines,
        })
    }

    /// Pools must not share addresses with each other, and must not hand out
    /// an address the box translates flows to.
    fn pools_apart(&mut self, pools: &[AddressPool], daemon: &DaemonConfig, ha: Option<&HaConfig>) {
        for (i, a) in pools.iter().enumerate() {
            let ctx = format!("kubernetes address_pool {:?}", a.name);
            if pools[..i].iter().any(|b| b.name == a.name) {
                self.error(
                    Some(a.lines.of("name")),
                    &ctx,
                    "name",
                    "is the name of another pool too",
                );
            }
            for b in &pools[..i] {
                if let Some(r) = a
                    .ranges
                    .iter()
                    .find(|r| b.ranges.iter().any(|o| o.overlaps(r)))
                {
                    self.error(
                        Some(a.lines.of("addresses")),
                        &ctx,
                        "addresses",
                        format!(
                            "{r} overlaps pool {:?}: an address belongs to one pool",
                            b.name
                        ),
                    );
                }
            }
            let snat: Vec<Ipv4Addr> = daemon
                .snat_addresses
                .iter()
                .copied()
                .chain(ha.map(|h| h.snat_address))
                .collect();
            if let Some(addr) = snat.iter().find(|s| a.contains(**s)) {
                self.error(
                    Some(a.lines.of("addresses")),
                    &ctx,
                    "addresses",
                    format!("holds {addr}, a SNAT address: flows are translated to it, it cannot be a Service's VIP"),
                );
            }
        }
    }
}
