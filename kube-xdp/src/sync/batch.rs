//! Batching the records to send: a datagram goes when it is full
//! ([`MAX_RECORDS`]) or when its oldest record has waited [`MAX_DELAY`],
//! whichever comes first. The caller owns the clock and the timer.

use std::time::{Duration, Instant};

use super::wire::{MAX_RECORDS, SyncRecord};

/// The longest a record waits for others to share its datagram.
pub const MAX_DELAY: Duration = Duration::from_millis(10);

/// Records waiting to be sent, at most one per flow (a later record of
/// the same flow replaces the earlier: the peer needs only the latest
/// state).
#[derive(Debug, Clone)]
pub struct Batcher {
    pending: Vec<SyncRecord>,
    /// When the oldest pending record was pushed.
    since: Option<Instant>,
    max_delay: Duration,
}

impl Default for Batcher {
    fn default() -> Batcher {
        Batcher::new(MAX_DELAY)
    }
}

impl Batcher {
    /// A batcher whose records wait at most `max_delay`.
    pub fn new(max_delay: Duration) -> Batcher {
        Batcher {
            pending: Vec::with_capacity(MAX_RECORDS),
            since: None,
            max_delay,
        }
    }

    /// Adds `record`, pushed at `now`. Returns a full batch
    /// ([`MAX_RECORDS`] records) to send at once; the batcher is then
    /// empty.
    pub fn push(&mut self, record: SyncRecord, now: Instant) -> Option<Vec<SyncRecord>> {
        if let Some(same) = self.pending.iter_mut().find(|r| r.client == record.client) {
            *same = record;
            return None;
        }
        self.pending.push(record);
        self.since.get_or_insert(now);
        (self.pending.len() >= MAX_RECORDS).then(|| self.take())
    }

    /// Whether the oldest pending record has waited the longest it may.
    pub fn due(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|deadline| now >= deadline)
    }

    /// When the pending records are due (`None`: nothing pending): what
    /// the caller's timer waits for.
    pub fn deadline(&self) -> Option<Instant> {
        self.since.map(|since| since + self.max_delay)
    }

    /// Every pending record, oldest first; the batcher is then empty.
    pub fn take(&mut self) -> Vec<SyncRecord> {
        self.since = None;
        std::mem::replace(&mut self.pending, Vec::with_capacity(MAX_RECORDS))
    }

    /// How many records are pending.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Nothing pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use kube_xdp_common::maps::{FLOW_CLOSING, FLOW_ESTABLISHED, FlowKey};

    use super::*;

    fn record(src_port: u16, state: u8) -> SyncRecord {
        SyncRecord {
            client: FlowKey {
                src_addr: 1,
                dst_addr: 2,
                src_port,
                dst_port: 3,
                protocol: 6,
                _pad: [0; 3],
            },
            backend_addr: 4,
            backend_port: 5,
            snat_addr: 6,
            snat_port: 7,
            client_mac: [0; 6],
            state,
            flags: 0,
            ts_offset: 0,
            interface: 0,
            created_age_ns: 0,
            idle_ns: 0,
            ..SyncRecord::default()
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_full_datagram_goes_at_once() {
        let t0 = Instant::now();
        let mut b = Batcher::default();
        for port in 1..MAX_RECORDS as u16 {
            assert_eq!(b.push(record(port, FLOW_ESTABLISHED), t0), None);
        }
        let full = b.push(record(999, FLOW_ESTABLISHED), t0).unwrap();
        assert_eq!(full.len(), MAX_RECORDS);
        assert_eq!(full[0].client.src_port, 1, "oldest first");
        assert!(b.is_empty());
        assert_eq!(b.deadline(), None);
        assert!(!b.due(t0 + 100 * MS));
    }

    #[test]
    fn records_wait_at_most_ten_ms_from_the_oldest() {
        let t0 = Instant::now();
        let mut b = Batcher::default();
        assert!(!b.due(t0));
        b.push(record(1, FLOW_ESTABLISHED), t0);
        b.push(record(2, FLOW_ESTABLISHED), t0 + 8 * MS);
        assert_eq!(b.deadline(), Some(t0 + 10 * MS));
        assert!(!b.due(t0 + 9 * MS));
        assert!(b.due(t0 + 10 * MS));
        assert_eq!(b.take().len(), 2);
        assert!(!b.due(t0 + 20 * MS));
        // The next batch's clock starts with its first record.
        b.push(record(3, FLOW_ESTABLISHED), t0 + 30 * MS);
        assert!(!b.due(t0 + 39 * MS));
        assert!(b.due(t0 + 40 * MS));
    }

    #[test]
    fn a_flow_pending_twice_is_sent_once_in_its_latest_state() {
        let t0 = Instant::now();
        let mut b = Batcher::new(5 * MS);
        b.push(record(1, FLOW_ESTABLISHED), t0);
        b.push(record(2, FLOW_ESTABLISHED), t0 + MS);
        b.push(record(1, FLOW_CLOSING), t0 + 2 * MS);
        assert_eq!(b.len(), 2);
        assert_eq!(
            b.deadline(),
            Some(t0 + 5 * MS),
            "the replaced record's wait"
        );
        let sent = b.take();
        assert_eq!(
            sent.iter()
                .map(|r| (r.client.src_port, r.state))
                .collect::<Vec<_>>(),
            [(1, FLOW_CLOSING), (2, FLOW_ESTABLISHED)]
        );
    }
}
