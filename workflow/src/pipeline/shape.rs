//! The shape of the graphs: cycles in `needs`, each step's ancestors, and child pipelines
//! that start each other.

use std::collections::{BTreeMap, BTreeSet};

use super::raw::{RawPipeline, RawStep};

/// The first cycle in `needs`, as a chain whose first id is repeated at the end.
pub(super) fn find_cycle(steps: &[RawStep]) -> Option<Vec<String>> {
    let by_id: BTreeMap<&str, &RawStep> = steps.iter().map(|s| (s.id.as_str(), s)).collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Fresh,
        Open,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = by_id.keys().map(|k| (*k, Mark::Fresh)).collect();
    fn visit<'a>(
        id: &'a str,
        by_id: &BTreeMap<&'a str, &'a RawStep>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        marks.insert(id, Mark::Open);
        stack.push(id);
        for n in &by_id[id].needs {
            let n = n.as_str();
            match marks.get(n) {
                Some(Mark::Open) if n != id => {
                    let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                    let mut chain: Vec<String> =
                        stack[start..].iter().map(|s| (*s).to_owned()).collect();
                    chain.push(n.to_owned());
                    return Some(chain);
                }
                Some(Mark::Fresh) => {
                    if let Some(c) = visit(n, by_id, marks, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        marks.insert(id, Mark::Done);
        None
    }
    for s in steps {
        if marks.get(s.id.as_str()) == Some(&Mark::Fresh)
            && let Some(c) = visit(&s.id, &by_id, &mut marks, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

/// Transitive `needs` of every step (the graph must be acyclic).
pub(super) fn ancestors(steps: &[RawStep]) -> BTreeMap<&str, BTreeSet<&str>> {
    let by_id: BTreeMap<&str, &RawStep> = steps.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut memo: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    fn go<'a>(
        id: &'a str,
        by_id: &BTreeMap<&'a str, &'a RawStep>,
        memo: &mut BTreeMap<&'a str, BTreeSet<&'a str>>,
    ) -> BTreeSet<&'a str> {
        if let Some(m) = memo.get(id) {
            return m.clone();
        }
        let mut set = BTreeSet::new();
        if let Some(s) = by_id.get(id) {
            for n in &s.needs {
                if n != id && by_id.contains_key(n.as_str()) {
                    set.insert(n.as_str());
                    set.extend(go(n, by_id, memo));
                }
            }
        }
        memo.insert(id, set.clone());
        set
    }
    for s in steps {
        go(&s.id, &by_id, &mut memo);
    }
    memo
}

pub(super) fn child_cycle(raw: &RawPipeline) -> Option<Vec<String>> {
    fn uses(steps: &[RawStep]) -> Vec<&str> {
        steps.iter().filter_map(|s| s.child.as_deref()).collect()
    }
    fn go<'a>(name: &'a str, raw: &'a RawPipeline, path: &mut Vec<&'a str>) -> Option<Vec<String>> {
        if path.contains(&name) {
            let mut chain: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
            chain.push(name.to_owned());
            return Some(chain);
        }
        let steps = if name == raw.name {
            &raw.steps
        } else {
            &raw.children.get(name)?.steps
        };
        path.push(name);
        for c in uses(steps) {
            if let Some(chain) = go(c, raw, path) {
                return Some(chain);
            }
        }
        path.pop();
        None
    }
    go(&raw.name, raw, &mut Vec::new())
}
