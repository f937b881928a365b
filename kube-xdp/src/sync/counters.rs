//! What the sync did: datagrams and records sent and received, and every
//! refused datagram by reason. Plain numbers; the metrics read them.

use super::replay::Replay;
use super::wire::WireError;

/// Why a received datagram was refused: a metric label each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rejection {
    /// [`WireError::TooShort`].
    TooShort,
    /// [`WireError::BadMagic`].
    BadMagic,
    /// [`WireError::BadVersion`].
    BadVersion,
    /// [`WireError::BadKind`].
    BadKind,
    /// [`WireError::CountMismatch`].
    CountMismatch,
    /// [`WireError::BadTag`]: not from the peer, or altered.
    BadTag,
    /// [`Replay::OldEpoch`].
    OldEpoch,
    /// [`Replay::Replayed`].
    Replayed,
    /// [`Replay::UnknownPeer`].
    UnknownPeer,
    /// An authentic datagram with a record no datapath makes
    /// ([`WireError::is_bad_record`]).
    BadRecord,
}

impl Rejection {
    /// Every reason, in label order.
    pub const ALL: [Rejection; 10] = [
        Rejection::TooShort,
        Rejection::BadMagic,
        Rejection::BadVersion,
        Rejection::BadKind,
        Rejection::CountMismatch,
        Rejection::BadTag,
        Rejection::OldEpoch,
        Rejection::Replayed,
        Rejection::UnknownPeer,
        Rejection::BadRecord,
    ];

    /// Its label (`reason="bad_tag"`).
    pub fn name(self) -> &'static str {
        match self {
            Rejection::TooShort => "too_short",
            Rejection::BadMagic => "bad_magic",
            Rejection::BadVersion => "bad_version",
            Rejection::BadKind => "bad_kind",
            Rejection::CountMismatch => "count_mismatch",
            Rejection::BadTag => "bad_tag",
            Rejection::OldEpoch => "old_epoch",
            Rejection::Replayed => "replayed",
            Rejection::UnknownPeer => "unknown_peer",
            Rejection::BadRecord => "bad_record",
        }
    }
}

impl From<&WireError> for Rejection {
    fn from(e: &WireError) -> Rejection {
        match e {
            WireError::TooShort { .. } => Rejection::TooShort,
            WireError::BadMagic => Rejection::BadMagic,
            WireError::BadVersion { .. } => Rejection::BadVersion,
            WireError::BadKind { .. } => Rejection::BadKind,
            WireError::CountMismatch { .. } => Rejection::CountMismatch,
            WireError::BadTag => Rejection::BadTag,
            WireError::HelloWithRecords { .. }
            | WireError::BadProtocol { .. }
            | WireError::BadState { .. }
            | WireError::ZeroField { .. } => Rejection::BadRecord,
        }
    }
}

impl From<&Replay> for Rejection {
    fn from(e: &Replay) -> Rejection {
        match e {
            Replay::OldEpoch { .. } => Rejection::OldEpoch,
            Replay::Replayed { .. } => Rejection::Replayed,
            Replay::UnknownPeer => Rejection::UnknownPeer,
        }
    }
}

/// The sync's counters since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncCounters {
    /// Datagrams sent to the peer (Flows, Hello, Dump, DumpEnd).
    pub sent_datagrams: u64,
    /// Records in them.
    pub sent_records: u64,
    /// Datagrams read from the sync socket, refused ones included.
    pub received_datagrams: u64,
    /// Records from taken datagrams installed in the maps.
    pub installed_records: u64,
    /// Refused datagrams, by [`Rejection`] (in [`Rejection::ALL`] order).
    rejected: [u64; Rejection::ALL.len()],
}

impl SyncCounters {
    /// A datagram of `records` records went out.
    pub fn sent(&mut self, records: usize) {
        self.sent_datagrams += 1;
        self.sent_records += records as u64;
    }

    /// A datagram was refused for `reason` (a [`Rejection`], a
    /// [`WireError`] or a [`Replay`]).
    pub fn reject(&mut self, reason: impl Into<Rejection>) {
        self.rejected[reason.into() as usize] += 1;
    }

    /// Datagrams refused for `reason`.
    pub fn rejected(&self, reason: Rejection) -> u64 {
        self.rejected[reason as usize]
    }

    /// Every reason with its count, in [`Rejection::ALL`] order.
    pub fn rejections(&self) -> impl Iterator<Item = (Rejection, u64)> + '_ {
        Rejection::ALL.iter().map(|r| (*r, self.rejected(*r)))
    }

    /// Refused datagrams, all reasons.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_counts_under_its_reason() {
        let mut c = SyncCounters::default();
        c.reject(&WireError::BadTag);
        c.reject(&WireError::BadTag);
        c.reject(&WireError::TooShort { len: 3 });
        c.reject(&WireError::ZeroField {
            index: 0,
            field: "snat_port",
        });
        c.reject(&WireError::HelloWithRecords { count: 1 });
        c.reject(&Replay::Replayed { seq: 4 });
        c.reject(Rejection::UnknownPeer);
        assert_eq!(c.rejected(Rejection::BadTag), 2);
        assert_eq!(c.rejected(Rejection::BadRecord), 2);
        assert_eq!(c.rejected(Rejection::Replayed), 1);
        assert_eq!(c.rejected(Rejection::OldEpoch), 0);
        assert_eq!(c.rejected_total(), 7);
        let labels: Vec<_> = c.rejections().map(|(r, _)| r.name()).collect();
        assert_eq!(labels.len(), 10);
        assert_eq!(labels[5], "bad_tag");
        for (i, r) in Rejection::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "ALL is in declaration order");
        }
    }

    #[test]
    fn sending_counts_datagrams_and_records() {
        let mut c = SyncCounters::default();
        c.sent(25);
        c.sent(0);
        assert_eq!((c.sent_datagrams, c.sent_records), (2, 25));
    }
}
