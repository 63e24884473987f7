//! Rollouts (`pipelines/rollout.yaml`): which registered version of a pipeline new runs get.
//!
//! Per pipeline: the `current` version, optionally a `candidate` given to `ramp` percent of
//! recordings, and per-room overrides (room name → version). The version a recording gets is
//! decided once, at intake, by [`Rollout::version_for`], a pure function of the recording id
//! and its room:
//!
//! 1. the room's override, when the room has one;
//! 2. else the candidate, when [`bucket`]`(recording_id) < ramp`;
//! 3. else the current version.
//!
//! A rollout may also name a **shadow** version: a recording whose room is among the shadow's
//! `rooms`, or whose bucket is under the shadow's `ramp`, gets a second run of that version
//! beside its live one, into a shadow transcript no user sees, with the steps that act outside
//! reflow not executed ([`Rollout::shadow_for`]; `reflow compare` reports the two side by side).
//!
//! `bucket` is the first 8 bytes of sha256(recording id), big-endian, modulo 100: stable for a
//! recording (a redelivered webhook, the poll and a replica all decide the same), uniform over
//! recordings, and monotonic in the ramp (raising it from 10 to 20 keeps the first 10 % on the
//! candidate).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The file name of the rollout declaration in a pipeline directory.
pub const ROLLOUT_FILE: &str = "rollout.yaml";

/// `rollout.yaml`: the rollout of each pipeline, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollouts {
    /// Pipeline name → its rollout.
    pub pipelines: BTreeMap<String, Rollout>,
}

/// Which versions of one pipeline new runs get.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// The version every recording gets unless the ramp or its room says otherwise.
    pub current: u32,
    /// A version tried on `ramp` percent of recordings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<u32>,
    /// Percent of recordings (0–100) that get the candidate.
    #[serde(default)]
    pub ramp: u8,
    /// Room name → the version that room's recordings get (before the ramp).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rooms: BTreeMap<String, u32>,
    /// A version run beside the live one, as a shadow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Shadow>,
}

/// A shadow rollout: which recordings also get a shadow run of `version`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    /// The version shadow runs get.
    pub version: u32,
    /// Percent of recordings (0–100) that get a shadow run (by [`bucket`]).
    #[serde(default)]
    pub ramp: u8,
    /// Rooms (by name) whose every recording gets a shadow run.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub rooms: std::collections::BTreeSet<String>,
}

/// Why a recording got its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Because {
    /// Its room's override.
    Room,
    /// Its bucket fell under the ramp.
    Ramp,
    /// The current version.
    Current,
}

/// A rollout that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    /// The YAML does not parse.
    #[error("{file}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// Why.
        message: String,
    },
    /// A value out of range or inconsistent.
    #[error("{file}: pipelines.{pipeline}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// The pipeline.
        pipeline: String,
        /// Why.
        message: String,
    },
}

impl Rollouts {
    /// Parse and check `rollout.yaml` (`file` names it in errors).
    pub fn parse(file: &str, text: &str) -> Result<Rollouts, RolloutError> {
        let r: Rollouts = serde_yaml_ng::from_str(text).map_err(|e| RolloutError::Parse {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        for (name, rollout) in &r.pipelines {
            let invalid = |message: &str| RolloutError::Invalid {
                file: file.to_owned(),
                pipeline: name.clone(),
                message: message.to_owned(),
            };
            if rollout.ramp > 100 {
                return Err(invalid("ramp is a percentage: 0 to 100"));
            }
            if rollout.ramp > 0 && rollout.candidate.is_none() {
                return Err(invalid("a ramp needs a candidate version"));
            }
            if rollout.candidate == Some(rollout.current) {
                return Err(invalid("the candidate is the current version"));
            }
            if let Some(sh) = &rollout.shadow {
                if sh.ramp > 100 {
                    return Err(invalid("shadow.ramp is a percentage: 0 to 100"));
                }
                if sh.ramp == 0 && sh.rooms.is_empty() {
                    return Err(invalid("a shadow needs a ramp or rooms"));
                }
                if sh.version == rollout.current {
                    return Err(invalid("the shadow is the current version"));
                }
            }
        }
        Ok(r)
    }
}

impl Rollout {
    /// Every version this rollout can give a recording, sorted.
    pub fn versions(&self) -> Vec<u32> {
        let mut v: Vec<u32> = std::iter::once(self.current)
            .chain(self.candidate)
            .chain(self.rooms.values().copied())
            .chain(self.shadow.as_ref().map(|s| s.version))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The version recording `recording_id` of room `room` gets, and why.
    pub fn version_for(&self, recording_id: &str, room: Option<&str>) -> (u32, Because) {
        if let Some(v) = room.and_then(|r| self.rooms.get(r)) {
            return (*v, Because::Room);
        }
        match self.candidate {
            Some(c) if bucket(recording_id) < self.ramp => (c, Because::Ramp),
            _ => (self.current, Because::Current),
        }
    }
}

impl Rollout {
    /// The shadow version recording `recording_id` of room `room` also runs on, if any: its
    /// room is among the shadow's rooms, or its [`bucket`] is under the shadow's ramp.
    pub fn shadow_for(&self, recording_id: &str, room: Option<&str>) -> Option<u32> {
        let s = self.shadow.as_ref()?;
        let by_room = room.is_some_and(|r| s.rooms.contains(r));
        (by_room || bucket(recording_id) < s.ramp).then_some(s.version)
    }
}

/// The recording's bucket, 0–99: the first 8 bytes of sha256(recording id), big-endian,
/// modulo 100.
pub fn bucket(recording_id: &str) -> u8 {
    let digest = Sha256::digest(recording_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % 100) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_wins_then_the_ramp_then_the_current_version() {
        let r = Rollouts::parse(
            "rollout.yaml",
            "pipelines:\n  P:\n    current: 2\n    candidate: 3\n    ramp: 30\n    rooms: {standup: 4}\n",
        )
        .unwrap();
        let p = &r.pipelines["P"];
        assert_eq!(p.versions(), [2, 3, 4]);
        assert_eq!(p.version_for("any", Some("standup")), (4, Because::Room));
        let ids: Vec<String> = (0..1000).map(|i| format!("rec-{i}")).collect();
        let on_candidate = ids
            .iter()
            .filter(|id| p.version_for(id, Some("other")).0 == 3)
            .count();
        assert!((250..350).contains(&on_candidate), "{on_candidate} of 1000");
        for id in &ids {
            let (v, why) = p.version_for(id, None);
            assert_eq!(bucket(id) < 30, v == 3 && why == Because::Ramp);
        }
        // A higher ramp keeps every recording the lower one gave the candidate.
        let wider = Rollout {
            ramp: 60,
            ..p.clone()
        };
        assert!(
            ids.iter()
                .all(|id| p.version_for(id, None).0 != 3 || wider.version_for(id, None).0 == 3)
        );
    }

    #[test]
    fn a_shadow_goes_to_its_rooms_and_its_ramp() {
        let r = Rollouts::parse(
            "rollout.yaml",
            "pipelines:\n  P:\n    current: 2\n    shadow: {version: 3, ramp: 20, rooms: [standup]}\n",
        )
        .unwrap();
        let p = &r.pipelines["P"];
        assert_eq!(p.versions(), [2, 3]);
        assert_eq!(p.shadow_for("any", Some("standup")), Some(3));
        for i in 0..200 {
            let id = format!("rec-{i}");
            assert_eq!(
                p.shadow_for(&id, Some("other")),
                (bucket(&id) < 20).then_some(3)
            );
            // The live version is the rollout's as before.
            assert_eq!(p.version_for(&id, Some("standup")).0, 2);
        }
        assert_eq!(Rollout::default().shadow_for("x", None), None);
    }

    #[test]
    fn the_bucket_is_the_documented_function() {
        // The first 8 bytes of sha256("rec-1"), big-endian, modulo 100.
        let digest = Sha256::digest(b"rec-1");
        let n = u64::from_be_bytes(digest[..8].try_into().unwrap());
        assert_eq!(u64::from(bucket("rec-1")), n % 100);
    }

    #[test]
    fn inconsistent_rollouts_are_refused() {
        for (yaml, why) in [
            (
                "pipelines: {P: {current: 2, ramp: 10}}",
                "needs a candidate",
            ),
            (
                "pipelines: {P: {current: 2, candidate: 3, ramp: 101}}",
                "0 to 100",
            ),
            (
                "pipelines: {P: {current: 2, candidate: 2}}",
                "is the current",
            ),
            ("pipelines: {P: {current: 2, canary: 3}}", "unknown field"),
            (
                "pipelines: {P: {current: 2, shadow: {version: 3}}}",
                "needs a ramp or rooms",
            ),
            (
                "pipelines: {P: {current: 2, shadow: {version: 2, ramp: 5}}}",
                "is the current",
            ),
        ] {
            let e = Rollouts::parse("rollout.yaml", yaml)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{yaml}: {e}");
        }
    }
}
