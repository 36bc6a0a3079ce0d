//! The agent's record: what it remembers between ticks, kept in the production alias's
//! description (at most 256 characters) and written in the same `UpdateAlias` as the routing.
//!
//! Pure. Anyone with `lambda:UpdateAlias` can write a description, so [`Record::decode`] never
//! fails and [`Record::sanitize`] repairs whatever is out of range, saying what it repaired.

use serde::{Deserialize, Serialize};

/// A published Lambda version number.
pub type Version = u64;

/// Prefix that marks an alias description as the agent's record.
pub const RECORD_PREFIX: &str = "canary:";
/// Lambda's limit on an alias description.
pub const DESCRIPTION_LIMIT: usize = 256;
/// At most this many announcements are owed at once (the record must fit the description).
pub const OWED_LIMIT: usize = 4;
/// A process that writes an owed announcement (or claims one to re-send it) owns its sending for
/// this long; no other process re-sends it before then. Longer than a tick's deadline.
pub const LEASE_SECS: i64 = 120;
/// No time in a record is before the Unix epoch.
pub const EARLIEST: i64 = 0;
/// How far in the future a record's time may be (clock skew between agents) before it is
/// treated as corrupt.
pub const CLOCK_SKEW_SECS: i64 = 300;

/// What happened, for announcements and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A canary started.
    Started,
    /// The canary moved to a larger step.
    Stepped,
    /// The canary became the stable version.
    Promoted,
    /// The alias went back to the stable (or a chosen) version.
    RolledBack,
    /// The canary has seen no traffic for a long time.
    NoData,
    /// Forward moves frozen.
    Paused,
    /// Forward moves unfrozen.
    Resumed,
    /// The running canary could not be judged for longer than `unprotected_after`.
    Unprotected,
    /// A canary that was unprotected is judged again.
    Protected,
    /// A promoted version's bake ended (its time was up, or a person ended it).
    Baked,
    /// After a rollback in the bake, the version before fails alike: the rollback's version is
    /// no longer held against it.
    SharedFailure,
}

impl EventKind {
    const ALL: [Self; 11] = [
        Self::Started,
        Self::Stepped,
        Self::Promoted,
        Self::RolledBack,
        Self::NoData,
        Self::Paused,
        Self::Resumed,
        Self::Unprotected,
        Self::Protected,
        Self::Baked,
        Self::SharedFailure,
    ];

    /// Stable lowercase name (SNS message attribute `event`, JSON output).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Stepped => "stepped",
            Self::Promoted => "promoted",
            Self::RolledBack => "rolled_back",
            Self::NoData => "no_data",
            Self::Paused => "paused",
            Self::Resumed => "resumed",
            Self::Unprotected => "unprotected",
            Self::Protected => "protected",
            Self::Baked => "baked",
            Self::SharedFailure => "shared_failure",
        }
    }

    /// One-letter code in the record.
    fn code(self) -> &'static str {
        match self {
            Self::Started => "S",
            Self::Stepped => "T",
            Self::Promoted => "P",
            Self::RolledBack => "R",
            Self::NoData => "N",
            Self::Paused => "Z",
            Self::Resumed => "M",
            Self::Unprotected => "U",
            Self::Protected => "V",
            Self::Baked => "B",
            Self::SharedFailure => "F",
        }
    }

    /// How much on-call needs this one: when the record is full, the least needed goes first.
    fn rank(self) -> u8 {
        match self {
            Self::RolledBack | Self::Unprotected | Self::SharedFailure => 3,
            Self::Promoted | Self::NoData | Self::Protected => 2,
            Self::Started | Self::Paused | Self::Resumed | Self::Baked => 1,
            Self::Stepped => 0,
        }
    }
}

/// An announcement the agent owes on-call: written with the decision it announces, removed (or,
/// with a ledger of pages, recorded there and left until the next write) only after SNS accepted
/// it, so it reaches on-call at least once whatever fails in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "OwedWire", try_from = "OwedWire")]
pub struct Owed {
    /// What happened.
    pub event: EventKind,
    /// The version it happened to (the canary, the promoted or the rolled-back version).
    pub version: Option<Version>,
    /// The stable version after it happened.
    pub stable: Version,
    /// When it happened (epoch seconds); with the event and alias it is the announcement's id.
    pub at: i64,
    /// A person's command caused it (else the agent).
    pub manual: bool,
    /// Until when the process that wrote or claimed it is sending it (epoch seconds).
    pub lease: i64,
}

/// `[code, version or 0, stable, at, lease - at]`, the code in lower case when a person caused
/// it: small enough that four fit next to a full record.
#[derive(Serialize, Deserialize)]
struct OwedWire(String, u64, u64, i64, i64);

impl From<Owed> for OwedWire {
    fn from(o: Owed) -> Self {
        let code = o.event.code();
        Self(
            if o.manual {
                code.to_ascii_lowercase()
            } else {
                code.to_string()
            },
            o.version.unwrap_or(0),
            o.stable,
            o.at,
            o.lease.saturating_sub(o.at),
        )
    }
}

impl TryFrom<OwedWire> for Owed {
    type Error = String;
    fn try_from(w: OwedWire) -> Result<Self, String> {
        let upper = w.0.to_ascii_uppercase();
        let event = EventKind::ALL
            .into_iter()
            .find(|e| e.code() == upper)
            .ok_or_else(|| format!("unknown event code {:?}", w.0))?;
        Ok(Self {
            event,
            version: (w.1 > 0).then_some(w.1),
            stable: w.2,
            at: w.3,
            lease: w.3.saturating_add(w.4),
            manual: upper != w.0,
        })
    }
}

impl Owed {
    /// A stable id for this announcement (`function:alias:event:version:at`): a re-send carries
    /// the same id as the first send, so duplicates can be recognised.
    #[must_use]
    pub fn id(&self, function: &str, alias: &str) -> String {
        format!(
            "{function}:{alias}:{}:{}:{}",
            self.event.as_str(),
            self.version.unwrap_or(0),
            self.at
        )
    }

    /// Whether no process owns its sending any more at `now`.
    #[must_use]
    pub fn due(&self, now: i64) -> bool {
        self.lease <= now
    }
}

/// A promoted version still judged against the version it replaced: `[version, previous, until]`
/// in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(Version, Version, i64)", into = "(Version, Version, i64)")]
pub struct Bake {
    /// The promoted version being watched.
    pub version: Version,
    /// The stable version before it, which a regression points the alias back at.
    pub previous: Version,
    /// When the bake ends (epoch seconds).
    pub until: i64,
}

impl From<(Version, Version, i64)> for Bake {
    fn from((version, previous, until): (Version, Version, i64)) -> Self {
        Self {
            version,
            previous,
            until,
        }
    }
}

impl From<Bake> for (Version, Version, i64) {
    fn from(b: Bake) -> Self {
        (b.version, b.previous, b.until)
    }
}

/// After a rollback in the bake: the version the alias went back to, judged against its own
/// numbers from before the canary (the reference the bake used) until `until`. If it regresses
/// too, the cause is shared (an outage of a dependency, the load) and the rolled-back version
/// is not held against it. `[version, stable, from, until - from, rejected before or 0]` in the
/// record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    from = "(Version, Version, i64, i64, Version)",
    into = "(Version, Version, i64, i64, Version)"
)]
pub struct Recheck {
    /// The version rolled back in its bake.
    pub version: Version,
    /// The version the alias went back to, which is judged.
    pub stable: Version,
    /// When the rollback happened (epoch seconds): the judged periods start here.
    pub from: i64,
    /// When the recheck ends with the rollback standing (epoch seconds).
    pub until: i64,
    /// The record's `rejected` before the rollback, restored if the rollback is lifted.
    pub rejected_before: Option<Version>,
}

impl From<(Version, Version, i64, i64, Version)> for Recheck {
    fn from(
        (version, stable, from, length, before): (Version, Version, i64, i64, Version),
    ) -> Self {
        Self {
            version,
            stable,
            from,
            until: from.saturating_add(length),
            rejected_before: (before > 0).then_some(before),
        }
    }
}

impl From<Recheck> for (Version, Version, i64, i64, Version) {
    fn from(r: Recheck) -> Self {
        (
            r.version,
            r.stable,
            r.from,
            r.until.saturating_sub(r.from),
            r.rejected_before.unwrap_or(0),
        )
    }
}

/// This alias's part in a release ([`crate::rollout::release`]): `[id, flags]` in the record.
/// The id is the time the release's canary started (epoch seconds), the same on every member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(i64, u8)", into = "(i64, u8)")]
pub struct ReleaseMark {
    /// When the release's canary started: which release this member's canary or bake is part of.
    pub id: i64,
    /// This member was rolled back, and so is the release.
    pub rolled_back: bool,
    /// It was rolled back because another member was (its version was not judged bad, and
    /// starts again with the release's next deploy).
    pub follower: bool,
    /// The page announcing the release's rollback was owed in this member's record.
    pub announced: bool,
}

impl ReleaseMark {
    /// A member of release `id` that is still under way.
    #[must_use]
    pub fn live(id: i64) -> Self {
        Self {
            id,
            rolled_back: false,
            follower: false,
            announced: false,
        }
    }
}

impl From<(i64, u8)> for ReleaseMark {
    fn from((id, flags): (i64, u8)) -> Self {
        Self {
            id,
            rolled_back: flags & 1 != 0,
            follower: flags & 2 != 0,
            announced: flags & 4 != 0,
        }
    }
}

impl From<ReleaseMark> for (i64, u8) {
    fn from(m: ReleaseMark) -> Self {
        (
            m.id,
            u8::from(m.rolled_back) | u8::from(m.follower) << 1 | u8::from(m.announced) << 2,
        )
    }
}

/// What the agent remembers between ticks, stored in the alias description.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The canary version the step fields describe.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Version>,
    /// Index into the policy's steps.
    #[serde(rename = "s", default)]
    pub step: usize,
    /// When the current step started (epoch seconds).
    #[serde(rename = "t", default)]
    pub since: i64,
    /// When the canary started (epoch seconds).
    #[serde(rename = "b", default)]
    pub started: i64,
    /// Forward moves are frozen.
    #[serde(rename = "p", default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// The newest version ever rolled back on this alias (by the agent or a person): no
    /// candidate at or below it is started automatically (Lambda versions only grow).
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Version>,
    /// A "no canary traffic" alert was sent for this step.
    #[serde(rename = "q", default, skip_serializing_if = "std::ops::Not::not")]
    pub quiet_alerted: bool,
    /// The last decision, as a short sentence.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    /// Announcements not yet accepted by SNS, oldest first.
    #[serde(rename = "o", default, skip_serializing_if = "Vec::is_empty")]
    pub owed: Vec<Owed>,
    /// Since when the running canary could not be judged (epoch seconds).
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub unjudged_since: Option<i64>,
    /// On-call was told the canary is unprotected (and is owed a "protected again").
    #[serde(rename = "w", default, skip_serializing_if = "std::ops::Not::not")]
    pub unprotected_paged: bool,
    /// The bake after a promotion (it began at `since`; the canary before it at `started`).
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub bake: Option<Bake>,
    /// The release this alias's canary or bake is part of, and how its part ended.
    #[serde(rename = "g", default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseMark>,
    /// The check of the version before after a rollback in the bake, while it runs.
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub recheck: Option<Recheck>,
    /// The version whose rollback in the bake a recheck lifted: a second one stands.
    #[serde(rename = "y", default, skip_serializing_if = "Option::is_none")]
    pub lifted: Option<Version>,
    /// Why the description could not be read as a record (never written).
    #[serde(skip)]
    pub corrupt: Option<String>,
}

impl Record {
    /// Reads the record from an alias description. A description that is not ours gives an
    /// empty record (the first write replaces it); one that is ours but unreadable gives an
    /// empty record marked [`Record::corrupt`].
    #[must_use]
    pub fn decode(description: &str) -> Self {
        let Some(json) = description.strip_prefix(RECORD_PREFIX) else {
            return Self::default();
        };
        serde_json::from_str(json).unwrap_or_else(|e| Self {
            corrupt: Some(format!("unreadable agent record ({e})")),
            ..Self::default()
        })
    }

    /// Writes the record as an alias description within Lambda's limit: `last` is shortened
    /// (then dropped) first; the least needed owed announcements go only if that is not enough.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut record = self.clone();
        loop {
            let text = format!(
                "{RECORD_PREFIX}{}",
                serde_json::to_string(&record).unwrap_or_default()
            );
            if text.len() <= DESCRIPTION_LIMIT {
                return text;
            }
            match record.last.as_mut() {
                Some(last) if last.chars().count() > 8 => {
                    let keep = last.chars().count() - 8;
                    *last = last.chars().take(keep).collect::<String>() + "…";
                    // The ellipsis counts once: strip a previous one before the next round.
                    if last.ends_with("……") {
                        last.pop();
                    }
                }
                Some(_) => record.last = None,
                None if !record.owed.is_empty() => {
                    record.owed.remove(least_needed(&record.owed));
                }
                None => return format!("{RECORD_PREFIX}{{}}"),
            }
        }
    }

    /// Adds an owed announcement; when [`OWED_LIMIT`] are already owed, the least needed (the
    /// oldest among equals) is given up and returned so the caller can log it.
    pub fn owe(&mut self, owed: Owed) -> Option<Owed> {
        self.owed.push(owed);
        (self.owed.len() > OWED_LIMIT).then(|| self.owed.remove(least_needed(&self.owed)))
    }

    /// Repairs values no agent writes (a corrupted or hand-edited record) so nothing downstream
    /// overflows, panics or waits forever; returns what it repaired, for on-call. `steps` is the
    /// number of steps in the policy.
    pub fn sanitize(&mut self, steps: usize, now: i64) -> Vec<String> {
        let mut repaired = Vec::new();
        if let Some(why) = self.corrupt.take() {
            repaired.push(why);
        }
        let latest = now.saturating_add(CLOCK_SKEW_SECS);
        let bad_time = |t: i64| !(EARLIEST..=latest).contains(&t);
        for (name, t) in [("t", &mut self.since), ("b", &mut self.started)] {
            if bad_time(*t) {
                repaired.push(format!(
                    "record time {name}={t} is out of range; reset to now"
                ));
                *t = now;
            }
        }
        if self.step >= steps.max(1) {
            repaired.push(format!(
                "record step {} is beyond the policy's {steps} steps",
                self.step
            ));
            self.step = 0;
        }
        if let Some(u) = self.unjudged_since.filter(|&u| bad_time(u)) {
            repaired.push(format!("record time u={u} is out of range; reset to now"));
            self.unjudged_since = Some(now);
        }
        if let Some(b) = self.bake {
            let latest_end = latest.saturating_add(crate::policy::MAX_DURATION_SECS);
            if b.previous == 0
                || b.version == b.previous
                || !(EARLIEST..=latest_end).contains(&b.until)
            {
                repaired.push(format!(
                    "record bake of v{} after v{} until {} is out of range; bake ended",
                    b.version, b.previous, b.until
                ));
                self.bake = None;
            }
        }
        if let Some(r) = self.recheck {
            let latest_end = latest.saturating_add(crate::policy::MAX_DURATION_SECS);
            if r.stable == 0
                || r.version == r.stable
                || bad_time(r.from)
                || !(r.from..=latest_end).contains(&r.until)
            {
                repaired.push(format!(
                    "record recheck of v{} after v{} is out of range; its rollback stands",
                    r.version, r.stable
                ));
                self.recheck = None;
            }
        }
        if let Some(m) = self.release.filter(|m| bad_time(m.id)) {
            repaired.push(format!(
                "record release id {} is out of range; release mark dropped",
                m.id
            ));
            self.release = None;
        }
        if self.owed.len() > OWED_LIMIT {
            repaired.push(format!(
                "{} owed announcements; kept the newest",
                self.owed.len()
            ));
            let extra = self.owed.len() - OWED_LIMIT;
            self.owed.drain(..extra);
        }
        for o in &mut self.owed {
            if bad_time(o.at) || o.lease > now.saturating_add(LEASE_SECS) {
                repaired.push(format!(
                    "owed {} announcement has times out of range; re-sent now",
                    o.event.as_str()
                ));
                o.at = o.at.clamp(EARLIEST, latest);
                o.lease = 0;
            }
        }
        repaired
    }
}

/// Index of the owed announcement to give up first: lowest rank, oldest among equals.
fn least_needed(owed: &[Owed]) -> usize {
    owed.iter()
        .enumerate()
        .min_by_key(|(i, o)| (o.event.rank(), *i))
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_795_428_020;

    fn owed(event: EventKind, at: i64) -> Owed {
        Owed {
            event,
            version: Some(7),
            stable: 6,
            at,
            manual: false,
            lease: at + LEASE_SECS,
        }
    }

    #[test]
    fn record_roundtrips_and_fits_the_description_limit() {
        let mut r = Record {
            canary: Some(12),
            step: 2,
            since: NOW,
            started: NOW - 300,
            paused: true,
            rejected: Some(11),
            quiet_alerted: true,
            last: Some("x".repeat(400)),
            unjudged_since: Some(NOW - 60),
            unprotected_paged: true,
            bake: Some(Bake {
                version: 12,
                previous: 11,
                until: NOW + 900,
            }),
            release: Some(ReleaseMark {
                id: NOW - 300,
                rolled_back: true,
                follower: true,
                announced: true,
            }),
            ..Record::default()
        };
        for i in 0..OWED_LIMIT {
            assert_eq!(r.owe(owed(EventKind::RolledBack, NOW + i as i64)), None);
        }
        let text = r.encode();
        assert!(text.len() <= DESCRIPTION_LIMIT, "{text}");
        let back = Record::decode(&text);
        assert_eq!(back.canary, Some(12));
        assert_eq!(back.release, r.release);
        assert_eq!(back.bake, r.bake);
        assert_eq!(back.owed, r.owed, "every owed page survives the limit");
        // A recheck comes with no canary and no bake (a rollback in the bake ended both).
        let mut checking = Record {
            canary: None,
            step: 0,
            bake: None,
            recheck: Some(Recheck {
                version: 12,
                stable: 11,
                from: NOW,
                until: NOW + 900,
                rejected_before: Some(10),
            }),
            lifted: Some(12),
            ..r.clone()
        };
        checking.last = Some("x".repeat(400));
        let back = Record::decode(&checking.encode());
        assert_eq!(
            (back.recheck, back.lifted, &back.owed),
            (checking.recheck, checking.lifted, &checking.owed),
            "{}",
            checking.encode()
        );
        // With every field at its longest, the last decision gives way to the owed pages.
        assert_eq!(back.last, None, "{text}");
        // With room left, it is shortened.
        r.owed.truncate(2);
        let back = Record::decode(&r.encode());
        assert!(back.last.is_some_and(|l| l.ends_with('…')));
        assert_eq!(Record::decode("Production alias"), Record::default());
    }

    #[test]
    fn a_full_record_gives_up_the_least_needed_announcement() {
        let mut r = Record::default();
        r.owe(owed(EventKind::RolledBack, NOW));
        r.owe(owed(EventKind::Stepped, NOW + 1));
        r.owe(owed(EventKind::Started, NOW + 2));
        r.owe(owed(EventKind::RolledBack, NOW + 3));
        let dropped = r.owe(owed(EventKind::Promoted, NOW + 4));
        assert_eq!(dropped.map(|o| o.event), Some(EventKind::Stepped));
        let kinds: Vec<_> = r.owed.iter().map(|o| o.event).collect();
        assert_eq!(
            kinds,
            [
                EventKind::RolledBack,
                EventKind::Started,
                EventKind::RolledBack,
                EventKind::Promoted
            ]
        );
    }

    #[test]
    fn corrupted_records_are_reported_and_repaired() {
        // The campaign's cases: t = i64::MIN, s = u64::MAX, t = i64::MAX.
        for text in [
            r#"canary:{"c":3,"s":0,"t":-9223372036854775808,"b":0}"#,
            r#"canary:{"c":3,"s":18446744073709551615,"t":1795428000,"b":1795428000}"#,
            r#"canary:{"c":3,"s":0,"t":9223372036854775807,"b":1795428000}"#,
            r#"canary:{"c":3,"o":[["R",3,2,9223372036854775807,9223372036854775807]]}"#,
            r#"canary:{"c":3,"o":[["r",3,2,1795428000,9223372036854775807]]}"#,
            r#"canary:{"c":"#,
            r#"canary:{"o":[["Q",1,1,1,1]]}"#,
            r#"canary:{"x":[7,6,1795428000,-1,0]}"#,
            r#"canary:{"x":[7,7,1795428000,1795428900,0]}"#,
        ] {
            let mut r = Record::decode(text);
            let repaired = r.sanitize(4, NOW);
            assert!(!repaired.is_empty(), "{text}");
            assert!(
                r.step < 4 && r.since <= NOW + CLOCK_SKEW_SECS,
                "{text}: {r:?}"
            );
            assert!(r.owed.iter().all(|o| o.due(NOW)), "{text}: {r:?}");
            assert!(r.recheck.is_none(), "{text}: {r:?}");
            assert!(r.sanitize(4, NOW).is_empty(), "repaired once: {text}");
        }
    }

    proptest! {
        #[test]
        fn any_description_decodes_and_sanitizes_without_panicking(text in ".*") {
            let mut r = Record::decode(&text);
            r.sanitize(4, NOW);
            prop_assert!(r.encode().len() <= DESCRIPTION_LIMIT);
        }

        #[test]
        fn any_record_shaped_json_decodes_without_panicking(
            c in proptest::option::of(any::<u64>()), s in any::<u64>(), t in any::<i64>(),
            b in any::<i64>(), o in proptest::collection::vec((0usize..10, any::<u64>(), any::<u64>(), any::<i64>(), any::<i64>()), 0..8),
        ) {
            let owed: Vec<String> = o.iter().map(|(e, v, st, at, l)| {
                format!("[{:?},{v},{st},{at},{l}]", EventKind::ALL[*e].code())
            }).collect();
            let text = format!(
                "canary:{{\"c\":{},\"s\":{s},\"t\":{t},\"b\":{b},\"o\":[{}]}}",
                c.map_or("null".to_string(), |c| c.to_string()),
                owed.join(",")
            );
            let mut r = Record::decode(&text);
            prop_assert!(r.corrupt.is_none(), "{}", text);
            r.sanitize(4, NOW);
            prop_assert!(r.step < 4);
            prop_assert!((EARLIEST..=NOW + CLOCK_SKEW_SECS).contains(&r.since));
            prop_assert!(r.owed.len() <= OWED_LIMIT);
            prop_assert!(r.encode().len() <= DESCRIPTION_LIMIT);
        }
    }
}
