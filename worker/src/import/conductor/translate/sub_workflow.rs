//! SUB_WORKFLOW tasks as child steps (with the child pipeline when its definition is inline),
//! and the task types reflow has no counterpart for, written as comments where they were.

use serde_json::Value;

use super::{Branch, Graph, Translator, ident};
use crate::import::conductor::expr::Ref;
use crate::import::conductor::model::{WorkflowDef, WorkflowTask};
use crate::import::conductor::wiring::Output;
use crate::import::conductor::{FindingKind, ImportError};
use crate::import::yaml::{GraphDoc, Item};

impl Translator<'_> {
    /// SUB_WORKFLOW: a child step, and the child pipeline when its definition is inline.
    pub(super) fn sub_workflow(
        &mut self,
        g: &mut Graph,
        t: &WorkflowTask,
        needs: Vec<String>,
        b: Branch<'_>,
    ) -> Result<String, ImportError> {
        let r = t.reference();
        let p = t
            .sub_workflow_param
            .as_ref()
            .ok_or_else(|| ImportError::Task {
                task: r.to_owned(),
                cause: "a SUB_WORKFLOW without subWorkflowParam".into(),
            })?;
        let child = ident(&p.name);
        let mut s = self.new_step(g, r, needs, b);
        s.child = Some(child.clone());
        s.optional = t.optional;
        if !self.target.catalog.has_workflow_type(&child) {
            self.unmapped(
                g,
                &mut s,
                format!("no workflow type {child} is registered by this worker"),
            );
        }
        self.input(g, &mut s, t, None);
        let mut output = Output::Unknown;
        let known = self.children.iter().position(|c| c.0 == child);
        match (&p.workflow_definition, known) {
            (_, Some(i)) => {
                if let Some(o) = &self.children[i].2.output {
                    output = Output::Known(o.iter().map(|e| e.0.clone()).collect());
                }
            }
            (Some(def @ Value::Object(_)), None) => {
                let def: WorkflowDef =
                    serde_json::from_value(def.clone()).map_err(|e| ImportError::Task {
                        task: r.to_owned(),
                        cause: format!("its inline workflowDefinition: {e}"),
                    })?;
                // Reserve the name first: a sub-workflow naming itself stops here.
                self.children
                    .push((child.clone(), Vec::new(), GraphDoc::default()));
                let mut doc = self.graph(Some(child.clone()), &def)?;
                doc.description = def.description.clone().filter(|d| !d.is_empty());
                if let Some(o) = &doc.output {
                    output = Output::Known(o.iter().map(|e| e.0.clone()).collect());
                }
                if let Some(c) = self.children.iter_mut().find(|c| c.0 == child) {
                    c.1 = vec![format!("From the inline definition of {r}.")];
                    c.2 = doc;
                }
            }
            _ => {
                let text = format!(
                    "the definition of {} v{} is not in this file: import it (`reflow import \
                     conductor`) and move its inputs, steps and output here",
                    p.name,
                    p.version.unwrap_or(1)
                );
                self.finding(
                    FindingKind::Unmapped,
                    &format!("child {child}"),
                    text.clone(),
                );
                self.children.push((
                    child.clone(),
                    vec![format!("unmapped: {text}")],
                    GraphDoc::default(),
                ));
            }
        }
        self.push(g, r, s, output)
    }

    /// A task type reflow has no counterpart for: a comment where it was.
    pub(super) fn unsupported(
        &mut self,
        g: &mut Graph,
        t: &WorkflowTask,
        kind: &str,
        b: Branch<'_>,
    ) -> Result<(), ImportError> {
        let r = t.reference();
        let inner: Vec<String> = t
            .loop_over
            .iter()
            .map(|l| l.reference().to_owned())
            .collect();
        let text = format!(
            "task {r} ({kind}) is not imported: reflow runs registered activities and child \
             pipelines only{}",
            if inner.is_empty() {
                String::new()
            } else {
                format!(" (its loop runs {})", inner.join(", "))
            }
        );
        g.doc
            .items
            .push(Item::Comment(vec![format!("unmapped: {text}")]));
        if !b.off {
            let at = g.at(r);
            self.finding(FindingKind::Unmapped, &at, text);
        }
        self.register(g, r, Ref::Gone(format!("a {kind} task")))
    }
}
