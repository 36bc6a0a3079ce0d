//! The scenario file as written: serde types that keep every value's source location.
//!
//! As in policy files, leaves are read as strings (`Spanned<String>`) and converted in
//! `validate`, so every wrong value becomes one problem with its line; unknown keys are errors.

use serde::Deserialize;
use serde_saphyr::Spanned;

/// An optional scalar with its location in the file.
pub(crate) type Leaf = Option<Spanned<String>>;

/// An optional mapping with its location.
pub(crate) type Node<T> = Option<Spanned<T>>;

/// An optional list of mappings, each with its location.
pub(crate) type List<T> = Option<Spanned<Vec<Spanned<T>>>>;

/// The whole file: `scenarios:` and nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    pub scenarios: List<RawScenario>,
}

/// One scenario.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScenario {
    pub name: Leaf,
    pub build: Leaf,
    pub minutes: Leaf,
    pub traffic: Node<RawTraffic>,
    pub stable: Node<RawVersion>,
    pub candidate: Node<RawVersion>,
    pub shared: Node<RawShared>,
}

/// `traffic:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTraffic {
    pub rate: Leaf,
    pub noise: Leaf,
    pub changes: List<RawChange>,
}

/// One entry of `traffic.changes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChange {
    pub at: Leaf,
    pub factor: Leaf,
}

/// `stable:` or `candidate:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVersion {
    pub errors: Leaf,
    pub latency: Node<RawLatency>,
    pub slow: Node<RawSlow>,
    pub cold_start: Node<RawColdStart>,
    pub error_bursts: Leaf,
    pub latency_drift: Node<RawDrift>,
}

/// `latency:` of a version.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLatency {
    pub median_ms: Leaf,
    pub sigma: Leaf,
}

/// `slow:` of a version.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlow {
    pub share: Leaf,
    pub add_ms: Leaf,
}

/// `cold_start:` of a version.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawColdStart {
    pub share: Leaf,
    pub add_ms: Leaf,
    #[serde(rename = "for")]
    pub duration: Leaf,
}

/// `latency_drift:` of a version.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDrift {
    pub sd: Leaf,
    pub every: Leaf,
}

/// `shared:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShared {
    pub outages: List<RawOutage>,
}

/// One entry of `shared.outages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutage {
    pub at: Leaf,
    #[serde(rename = "for")]
    pub duration: Leaf,
    pub errors: Leaf,
}
