//! lambda-canary: progressive delivery for AWS Lambda aliases.
//!
//! The core is pure: [`policy`] parses the team's files, [`judge`] compares canary and baseline
//! metrics, [`rollout`] decides what the alias should do next. [`tick`] runs one pass over all
//! policies through the [`ports`]; [`aws`] implements the ports on the AWS SDK and [`sim`] in memory.

pub mod judge;
pub mod policy;
pub mod rollout;
