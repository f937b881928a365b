//! Work the control loop must not wait for: DNS lookups, and reading and
//! planning a reloaded file (which looks names up too). Each runs on a
//! blocking thread and reports on a channel the loop selects on, so a dead
//! resolver never holds back health-check results; every lookup is bounded
//! ([`crate::host::RESOLVE_TIMEOUT`]).

use std::{io, net::Ipv4Addr, path::PathBuf};

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::control_loop::Daemon;
use crate::{
    host::{Host as _, RealHost},
    metrics,
    plan::Plan,
};

/// What came back from the background.
pub(super) enum Done {
    /// Each hostname with its lookup's outcome.
    Answers(Vec<(String, io::Result<Vec<Ipv4Addr>>)>),
    /// The reloaded file's plan, or why there is none.
    Reload(Box<anyhow::Result<Plan>>),
}

/// What is under way.
pub(super) struct Background {
    tx: mpsc::Sender<Done>,
    resolving: bool,
    reloading: bool,
    /// A reload was asked for while one was under way: run it after, so
    /// the last request reads the file last.
    reload_again: bool,
}

impl Background {
    pub fn new() -> (Self, mpsc::Receiver<Done>) {
        let (tx, rx) = mpsc::channel(4);
        (
            Background {
                tx,
                resolving: false,
                reloading: false,
                reload_again: false,
            },
            rx,
        )
    }
}

impl Daemon {
    /// Looks the hostname backends up again, off the loop.
    pub fn re_resolve(&mut self) {
        let names = self.plan().hostnames();
        if names.is_empty() || self.background.resolving {
            return;
        }
        self.background.resolving = true;
        let tx = self.background.tx.clone();
        tokio::task::spawn_blocking(move || {
            let answers = names
                .into_iter()
                .map(|name| {
                    let answer = RealHost.resolve(&name);
                    (name, answer)
                })
                .collect();
            let _ = tx.blocking_send(Done::Answers(answers));
        });
    }

    /// SIGHUP: read the file again and build its plan off the loop, then
    /// apply it ([`Daemon::finish_reload`]).
    pub fn reload(&mut self) {
        if self.background.reloading {
            self.background.reload_again = true;
            return;
        }
        info!(config = %self.config_path.display(), "reload requested");
        super::run::sd_notify("RELOADING=1");
        self.background.reloading = true;
        let path: PathBuf = self.config_path.clone();
        let previous = self.plan().clone();
        let tx = self.background.tx.clone();
        tokio::task::spawn_blocking(move || {
            let plan = super::run::load_plan_after(&path, Some(&previous));
            let _ = tx.blocking_send(Done::Reload(Box::new(plan)));
        });
    }

    /// Applies what came back.
    pub fn on_done(&mut self, done: Done) {
        match done {
            Done::Answers(answers) => {
                self.background.resolving = false;
                self.apply_answers(&answers);
            }
            Done::Reload(plan) => {
                self.background.reloading = false;
                self.finish_reload(*plan);
                if std::mem::take(&mut self.background.reload_again) {
                    self.reload();
                }
            }
        }
    }

    fn apply_answers(&mut self, answers: &[(String, io::Result<Vec<Ipv4Addr>>)]) {
        let (next, failed) = self
            .plan()
            .with_answers(answers, &RealHost.local_addresses());
        for f in failed {
            warn!("{f} (keeping its last address)");
        }
        if next != *self.plan() {
            info!("a backend hostname resolves to a new address: applying it like a reload");
            if let Err(e) = self.commit(next) {
                error!("applying new addresses (the previous ones stay in force): {e}");
            }
        }
    }

    /// Applies a reloaded file's plan; a file that does not build a plan,
    /// or a plan that cannot be applied, is logged and the one in force
    /// stays.
    fn finish_reload(&mut self, plan: anyhow::Result<Plan>) {
        let mut plan = match plan {
            Ok(plan) => plan,
            Err(e) => return self.fail_reload(format!("{e:#}")),
        };
        if self.plan().restart_needed(&plan) {
            warn!(
                "interfaces, xdp_mode, pin_path, flow_table_size, metrics_listen, stats_listen, [ha] and \
                 adding or removing [kubernetes] (or its kubeconfig) take effect at the next restart"
            );
        }
        plan.cluster = self.cluster_for(&plan);
        match self.commit(plan) {
            Ok(_) => {
                let hash = metrics::hash_file(&self.config_path);
                info!(config_hash = %hash, "reload applied");
                self.metrics.reload_ok(hash);
                super::run::sd_notify("READY=1");
                self.report(true, "reloaded".into());
            }
            Err(e) => self.fail_reload(e.to_string()),
        }
    }
}
