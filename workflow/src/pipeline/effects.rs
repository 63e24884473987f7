//! Steps that act outside reflow: which steps of a definition a shadow run must not execute.
//!
//! The activity catalog is the one place that says which activity types have an effect
//! outside reflow (a Zulip post, the customer's webhook, deleting the recording vendor's
//! files, an email: [`Catalog::is_external`]). A shadow run skips every main-graph step that
//! runs one; the list is computed when the shadow is started and travels in its input, so the
//! workflow stays deterministic. A definition a shadow cannot run safely is refused by
//! `reflow validate`, `plan` and `apply` when a rollout names it as a shadow: one whose
//! external effect sits inside a child graph or the failure hook, which a shadow could only
//! skip as a whole.

use super::{Pipeline, Run};
use crate::Catalog;
use crate::interpreter::memo::activities_of;

/// Why a definition cannot be run as a shadow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pipeline} v{version} cannot run as a shadow: {message}")]
pub struct ShadowError {
    /// The pipeline.
    pub pipeline: String,
    /// Its version.
    pub version: u32,
    /// Why.
    pub message: String,
}

/// The main-graph steps of `pipeline` a shadow run does not execute (each runs an activity
/// the catalog declares external), in declared order; an error when an external activity is
/// run by a child graph or the failure hook.
pub fn external_steps(pipeline: &Pipeline, catalog: &Catalog) -> Result<Vec<String>, ShadowError> {
    let refuse = |message: String| ShadowError {
        pipeline: pipeline.name.clone(),
        version: pipeline.version,
        message,
    };
    let mut out = Vec::new();
    for step in &pipeline.main.steps {
        let external: Vec<&str> = activities_of(step, &pipeline.children)
            .into_iter()
            .filter(|a| catalog.is_external(a))
            .collect();
        match (&step.run, external.first()) {
            (_, None) => {}
            (Run::Activity(_), Some(_)) => out.push(step.id.clone()),
            (Run::Child(c), Some(a)) => {
                return Err(refuse(format!(
                    "step {} runs child graph {c}, which runs {a} (an effect outside reflow)",
                    step.id
                )));
            }
        }
    }
    if let Some(hook) = &pipeline.on_failure
        && activities_of(hook, &pipeline.children)
            .iter()
            .any(|a| catalog.is_external(a))
    {
        return Err(refuse(format!(
            "its failure hook {} has an effect outside reflow",
            hook.id
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::new()
            .activity("work", &[])
            .activity("notify", &[])
            .external("notify")
            .workflow_type("M")
            .workflow_type("Kid")
    }

    /// Version 4 of pipeline `M` with `body` (steps and children).
    fn pipeline(body: &str) -> Pipeline {
        let yaml = format!("name: M\nversion: 4\ndefaults: {{start_to_close: 10s}}\n{body}");
        crate::parse_and_validate("t.yaml", &yaml, &catalog()).unwrap()
    }

    #[test]
    fn steps_running_an_external_activity_are_listed() {
        let p = pipeline(
            "steps:\n\
             \x20 - {id: a, activity: work}\n\
             \x20 - {id: post, activity: notify, needs: [a]}\n\
             \x20 - {id: b, activity: work, needs: [a]}\n",
        );
        assert_eq!(external_steps(&p, &catalog()).unwrap(), ["post"]);
        assert!(!catalog().is_external("work"));
    }

    #[test]
    fn an_external_effect_inside_a_child_graph_is_refused() {
        let p = pipeline(
            "steps:\n\
             \x20 - {id: a, child: Kid}\n\
             children:\n  Kid:\n    steps:\n      - {id: n, activity: notify}\n",
        );
        let e = external_steps(&p, &catalog()).unwrap_err().to_string();
        assert_eq!(
            e,
            "M v4 cannot run as a shadow: step a runs child graph Kid, which runs notify (an effect outside reflow)"
        );
    }
}
