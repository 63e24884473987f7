//! Shadow runs (`pipelines/rollout.yaml`'s `shadow:`): a second run of another version beside
//! a recording's live run, into a shadow transcript no user sees.
//!
//! What makes a run a shadow travels in its input, with the rerun options ([`ShadowRun`] under
//! `$rerun.shadow`), so the workflow decides from its input alone (deterministic, replayable):
//! - every step that acts outside reflow (from the activity catalog when the shadow was
//!   started: `crate::pipeline::effects`) is in the run's `$rerun.skip`, so it is never
//!   executed: SKIPPED, like a step whose `when:` is false;
//! - the memo plan reuses the results of the live transcript's run ([`super::memo`]: a shadow
//!   may take a memo another transcript computed), and while the live run is still computing,
//!   the plan answers [`super::memo::Plan::wait`]: the shadow sleeps on a durable timer and
//!   asks again ([`SHADOW_WAIT`] apart, at most [`SHADOW_WAITS`] times), so it reuses what the
//!   live run computes instead of paying for it a second time.
//!
//! Only shadow runs take these branches, and they exist only since [`SHADOW_PATCH`], which
//! they mark: histories recorded before replay unchanged.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_workflow::WorkflowContext;

use super::Interpreted;
use super::failure::StepFailure;
use super::memo::{Plan, PlanRequest};
use super::memoized::ask;

/// Patch marking shadow runs (only they call it).
pub const SHADOW_PATCH: &str = "reflow-shadow-1";

/// How long a shadow sleeps before asking for its plan again while the live run computes.
pub const SHADOW_WAIT: Duration = Duration::from_secs(5);

/// How many times a shadow asks before it plans without waiting (5 s × 720: an hour).
pub const SHADOW_WAITS: u32 = 720;

/// What makes a run a shadow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowRun {
    /// The live transcript this shadow runs beside (its memos are reused).
    pub of: String,
    /// Plan with what is stored now, without waiting for the live run (set by the
    /// interpreter on its last ask).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_wait: bool,
}

/// A shadow's memo plan: asked until the live run no longer computes what the shadow would
/// reuse ([`Plan::wait`] false), sleeping [`SHADOW_WAIT`] between asks; the last of
/// [`SHADOW_WAITS`] asks plans without waiting.
pub(super) async fn plan<W: Interpreted>(
    ctx: &WorkflowContext<W>,
    mut request: PlanRequest,
) -> Result<Plan, StepFailure> {
    if !ctx.patched(SHADOW_PATCH) {
        return ask(ctx, &request).await;
    }
    for _ in 0..SHADOW_WAITS {
        let plan = ask(ctx, &request).await?;
        if !plan.wait {
            return Ok(plan);
        }
        ctx.timer(SHADOW_WAIT).await;
    }
    if let Some(s) = request.rerun.shadow.as_mut() {
        s.no_wait = true;
    }
    ask(ctx, &request).await
}
