//! The SVG drawing of a pipeline (`reflow graph --format svg`) and of a run of it (the
//! progress page, `GET /api/workflow/{id}/graph.svg`): a layered layout made here (a step's
//! row is the length of the longest `needs` path to it; rows keep declared order), so no
//! Graphviz is needed. Each node is a `<g class="step" data-graph data-step>`; on a run's
//! drawing it also carries `data-state`, `data-attempt`, `data-error`, `data-done`,
//! `data-critical`, a status line, and a fan-out its members in a `<g class="members">` the
//! page shows on demand (hidden in the standalone document).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use workflow::pipeline::{Graph, Pipeline, Run, Step};

use super::run::{NodeRun, Runs};
use super::{colour, label_lines, queues, runs_or_id};

/// A node placed by [`layout`].
struct Placed<'a> {
    graph: &'a str,
    step: &'a Step,
    x: f64,
    y: f64,
}

const NODE_W: f64 = 190.0;
const LINE_H: f64 = 15.0;
const GAP_X: f64 = 24.0;
const GAP_Y: f64 = 46.0;
const MARGIN: f64 = 16.0;

/// A node's height: its label lines, and on a run's drawing its status line.
fn node_h(s: &Step, status: bool) -> f64 {
    12.0 + LINE_H * (label_lines(s).len() + usize::from(status)) as f64
}

/// Rows by longest `needs` path; returns the rows, each in declared order.
fn rows(g: &Graph) -> Vec<Vec<&Step>> {
    let index: BTreeMap<&str, usize> = g
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut depth = vec![0usize; g.steps.len()];
    // Validated pipelines are acyclic; declared order need not be topological, so iterate.
    for _ in 0..g.steps.len() {
        let mut changed = false;
        for (i, s) in g.steps.iter().enumerate() {
            let d = s
                .needs
                .iter()
                .filter_map(|n| index.get(n.as_str()))
                .map(|j| depth[*j] + 1)
                .max()
                .unwrap_or(0);
            if d > depth[i] {
                depth[i] = d;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut out: Vec<Vec<&Step>> = vec![Vec::new(); depth.iter().max().map_or(0, |m| m + 1)];
    for (i, s) in g.steps.iter().enumerate() {
        out[depth[i]].push(s);
    }
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A standalone SVG: the main graph in rows, each child pipeline in a box below it, the
/// failure hook and the queue legend at the bottom.
pub fn svg(p: &Pipeline) -> String {
    draw(p, None)
}

/// [`svg`] of a run: each node in `runs` carries its state, attempt, last error type, a
/// fan-out's members, its duration and whether it is on the critical path.
pub fn svg_of_run(p: &Pipeline, runs: &Runs) -> String {
    draw(p, Some(runs))
}

/// How a run's states are drawn (only in a run's drawing).
const STATE_STYLE: &str = "<style>.step[data-state=running] rect{stroke:#2563eb;stroke-width:3}\
.step[data-state=retrying] rect{stroke:#b45309;stroke-width:3;stroke-dasharray:6 3}\
.step[data-state=completed] rect{stroke:#15803d;stroke-width:2}\
.step[data-state=failed] rect{stroke:#b91c1c;stroke-width:3}\
.step[data-state=cancelled] rect,.step[data-state=skipped] rect{opacity:0.45}\
.step[data-state=pending] rect{opacity:0.7}\
.step[data-critical=true] rect{stroke:#ea580c;stroke-width:4}\
.edge[data-critical=true]{stroke:#ea580c;stroke-width:3}\
.status{fill:#334155;font-style:italic}\
.step[data-reused=true] .status{fill:#15803d}.step[data-state=failed] .status{fill:#b91c1c}.step[data-state=retrying] .status{fill:#b45309}\
.members rect.panel{fill:#ffffff;stroke:#334155}\
.member[data-state=completed] circle{fill:#15803d}.member[data-state=running] circle{fill:#2563eb}\
.member[data-state=retrying] circle{fill:#b45309}.member[data-state=failed] circle{fill:#b91c1c}\
.member circle{fill:#94a3b8}</style>\n";

fn draw(p: &Pipeline, runs: Option<&Runs>) -> String {
    let qs = queues(p);
    let status = runs.is_some();
    let run_of =
        |graph: &str, step: &str| runs.and_then(|r| r.get(&(graph.to_owned(), step.to_owned())));
    let mut placed: Vec<Placed> = Vec::new();
    let mut boxes: Vec<(String, f64, f64, f64, f64)> = Vec::new();
    let mut width: f64 = 0.0;
    let mut y = MARGIN + 22.0;
    // Rows of one graph from `top`, at `left`: (step index, x, y), the bottom, the width.
    let lay = |g: &Graph, top: f64, left: f64| -> (Vec<(usize, f64, f64)>, f64, f64) {
        let mut coords = Vec::new();
        let mut y = top;
        let mut w: f64 = 0.0;
        for row in rows(g) {
            let h = row.iter().map(|s| node_h(s, status)).fold(0.0, f64::max);
            let mut x = left;
            for s in row {
                let i = g.steps.iter().position(|t| t.id == s.id).unwrap_or(0);
                coords.push((i, x, y));
                x += NODE_W + GAP_X;
            }
            w = w.max(x - GAP_X - left);
            y += h + GAP_Y;
        }
        (coords, y - GAP_Y, w)
    };
    let (coords, bottom, w) = lay(&p.main, y, MARGIN);
    for (i, x, yy) in coords {
        placed.push(Placed {
            graph: &p.main.name,
            step: &p.main.steps[i],
            x,
            y: yy,
        });
    }
    width = width.max(w);
    let mut lowest = bottom;
    // Each child pipeline in a box right of the main graph, level with the step starting it.
    let right = MARGIN + w + 48.0;
    let mut next_top = y;
    for (name, child) in &p.children {
        let starter = p
            .main
            .steps
            .iter()
            .filter(|s| matches!(&s.run, Run::Child(c) if c == name))
            .find_map(|s| {
                placed
                    .iter()
                    .find(|n| n.graph == p.main.name && n.step.id == s.id)
            })
            .map_or(y, |n| n.y);
        let top = starter.max(next_top);
        let (coords, bottom, w) = lay(child, top + 24.0, right + 12.0);
        for (i, x, yy) in coords {
            placed.push(Placed {
                graph: name,
                step: &child.steps[i],
                x,
                y: yy,
            });
        }
        boxes.push((
            format!("{name} (child pipeline)"),
            right,
            top,
            w + 24.0,
            bottom - top + 12.0,
        ));
        width = width.max(right - MARGIN + w + 24.0);
        next_top = bottom + 12.0 + GAP_Y;
        lowest = lowest.max(bottom + 12.0);
    }
    y = lowest + GAP_Y;
    let hook_y = y;
    if p.on_failure.is_some() {
        y += 40.0 + GAP_Y / 2.0;
    }
    let legend_y = y;
    y += 24.0;
    width = width.max(qs.len() as f64 * (NODE_W * 0.8 + 8.0));
    let mut total_w = width + 2.0 * MARGIN;
    let mut total_h = y + MARGIN;
    // Room for a fan-out's members when the page shows them.
    for n in &placed {
        if let Some(r) = run_of(n.graph, &n.step.id).filter(|r| r.fan_out) {
            let (right, bottom) = panel_corner(n, r, status);
            total_w = total_w.max(right + MARGIN);
            total_h = total_h.max(bottom + MARGIN);
        }
    }
    let find = |graph: &str, id: &str| placed.iter().find(|n| n.graph == graph && n.step.id == id);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {total_w:.0} {total_h:.0}\" width=\"{total_w:.0}\" height=\"{total_h:.0}\" role=\"img\" aria-label=\"{} v{} pipeline graph\" font-family=\"sans-serif\" font-size=\"11\">",
        xml(&p.name),
        p.version
    );
    let _ = writeln!(
        out,
        "<title>{} v{} ({}), generated by reflow graph</title>",
        xml(&p.name),
        p.version,
        xml(&p.hash[..12.min(p.hash.len())])
    );
    if status {
        out.push_str(STATE_STYLE);
    }
    out.push_str("<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#475569\"/></marker></defs>\n");
    let _ = writeln!(
        out,
        "<text x=\"{MARGIN}\" y=\"{:.0}\" font-size=\"13\" font-weight=\"bold\">{} v{}</text>",
        MARGIN + 8.0,
        xml(&p.name),
        p.version
    );
    for (label, x, yy, w, h) in &boxes {
        let _ = writeln!(
            out,
            "<g class=\"child\"><rect x=\"{x:.0}\" y=\"{yy:.0}\" width=\"{w:.0}\" height=\"{h:.0}\" rx=\"8\" fill=\"none\" stroke=\"#64748b\" stroke-dasharray=\"6 4\"/><text x=\"{:.0}\" y=\"{:.0}\" fill=\"#334155\">{}</text></g>",
            x + 10.0,
            yy + 16.0,
            xml(label)
        );
    }
    // Edges: `needs`, then fan-out → child box.
    for n in &placed {
        for need in &n.step.needs {
            if let Some(from) = find(n.graph, need) {
                let (x1, y1) = (from.x + NODE_W / 2.0, from.y + node_h(from.step, status));
                let (x2, y2) = (n.x + NODE_W / 2.0, n.y);
                let mid = (y1 + y2) / 2.0;
                let critical = run_of(n.graph, &n.step.id)
                    .is_some_and(|r| r.critical && r.critical_via.as_ref() == Some(need));
                let _ = writeln!(
                    out,
                    "<path class=\"edge\" data-from=\"{}\" data-to=\"{}\"{} d=\"M{x1:.1},{y1:.1} C{x1:.1},{mid:.1} {x2:.1},{mid:.1} {x2:.1},{y2:.1}\" fill=\"none\" stroke=\"#475569\" marker-end=\"url(#arrow)\"/>",
                    xml(need),
                    xml(&n.step.id),
                    if critical {
                        " data-critical=\"true\""
                    } else {
                        ""
                    }
                );
            }
        }
    }
    for (k, (name, _)) in p.children.iter().enumerate() {
        let (_, bx, by, _, _) = &boxes[k];
        for s in p
            .main
            .steps
            .iter()
            .filter(|s| matches!(&s.run, Run::Child(c) if c == name))
        {
            if let Some(from) = find(&p.main.name, &s.id) {
                let (x1, y1) = (from.x + NODE_W, from.y + node_h(from.step, status) / 2.0);
                let (x2, y2) = (*bx, by + 16.0);
                let _ = writeln!(
                    out,
                    "<path class=\"starts\" d=\"M{x1:.1},{y1:.1} L{x2:.1},{y2:.1}\" fill=\"none\" stroke=\"#64748b\" stroke-dasharray=\"2 3\" marker-end=\"url(#arrow)\"/>"
                );
            }
        }
    }
    for n in &placed {
        let h = node_h(n.step, status);
        let dash = if n.step.optional {
            " stroke-dasharray=\"5 4\""
        } else {
            ""
        };
        let run = run_of(n.graph, &n.step.id);
        let _ = writeln!(
            out,
            "<g class=\"step\" data-step=\"{}\" data-graph=\"{}\" data-queue=\"{}\"{} tabindex=\"0\"><title>{}</title><rect x=\"{:.0}\" y=\"{:.0}\" width=\"{NODE_W:.0}\" height=\"{h:.0}\" rx=\"{}\" fill=\"{}\" stroke=\"#334155\"{dash}/>",
            xml(&n.step.id),
            xml(n.graph),
            xml(&n.step.options.task_queue),
            run.map(run_attributes).unwrap_or_default(),
            xml(&title(n.step, run)),
            n.x,
            n.y,
            if n.step.when.is_some() { 14 } else { 6 },
            colour(&qs, &n.step.options.task_queue),
        );
        if n.step.for_each.is_some() {
            // A fan-out: a second frame behind the first.
            let _ = writeln!(
                out,
                "<rect x=\"{:.0}\" y=\"{:.0}\" width=\"{NODE_W:.0}\" height=\"{h:.0}\" rx=\"6\" fill=\"none\" stroke=\"#334155\" stroke-opacity=\"0.5\"/>",
                n.x + 4.0,
                n.y + 4.0
            );
        }
        let lines = label_lines(n.step);
        for (i, line) in lines.iter().enumerate() {
            let weight = if i == 0 { " font-weight=\"bold\"" } else { "" };
            let _ = writeln!(
                out,
                "<text x=\"{:.0}\" y=\"{:.0}\"{weight}>{}</text>",
                n.x + 8.0,
                n.y + 16.0 + LINE_H * i as f64,
                xml(line)
            );
        }
        if let Some(r) = run {
            let _ = writeln!(
                out,
                "<text class=\"status\" x=\"{:.0}\" y=\"{:.0}\">{}</text>",
                n.x + 8.0,
                n.y + 16.0 + LINE_H * lines.len() as f64,
                xml(&r.status_line())
            );
        }
        out.push_str("</g>\n");
    }
    if let Some(hook) = &p.on_failure {
        let _ = writeln!(
            out,
            "<g class=\"step hook\" data-step=\"{}\" data-graph=\"on_failure\"><rect x=\"{MARGIN}\" y=\"{hook_y:.0}\" width=\"{:.0}\" height=\"28\" rx=\"6\" fill=\"#fee2e2\" stroke=\"#b91c1c\"/><text x=\"{:.0}\" y=\"{:.0}\">on failure: {}</text></g>",
            xml(&hook.id),
            NODE_W * 1.5,
            MARGIN + 8.0,
            hook_y + 18.0,
            xml(&runs_or_id(hook))
        );
    }
    for (i, (q, c)) in qs.iter().enumerate() {
        let x = MARGIN + i as f64 * (NODE_W * 0.8 + 8.0);
        let _ = writeln!(
            out,
            "<g class=\"legend\"><rect x=\"{x:.0}\" y=\"{legend_y:.0}\" width=\"14\" height=\"14\" fill=\"{c}\" stroke=\"#334155\"/><text x=\"{:.0}\" y=\"{:.0}\">{}</text></g>",
            x + 20.0,
            legend_y + 11.0,
            xml(q)
        );
    }
    // A fan-out's members, drawn last (over the graph), hidden until the page shows them.
    for n in &placed {
        if let Some(r) = run_of(n.graph, &n.step.id).filter(|r| r.fan_out) {
            members_panel(&mut out, n, r, status);
        }
    }
    out.push_str("</svg>\n");
    out
}

/// The `data-*` attributes of a node in a run.
fn run_attributes(r: &NodeRun) -> String {
    let mut a = format!(" data-state=\"{}\"", r.state.name());
    if let Some(at) = r.attempt() {
        let _ = write!(a, " data-attempt=\"{at}\"");
    }
    if let Some(e) = r.error() {
        let _ = write!(a, " data-error=\"{}\"", xml(e));
    }
    if let Some((k, n)) = r.done() {
        let _ = write!(a, " data-done=\"{k}/{n}\" aria-expanded=\"false\"");
    }
    if let Some(d) = r.duration_ms() {
        let _ = write!(a, " data-duration-ms=\"{d}\"");
    }
    if r.critical {
        a.push_str(" data-critical=\"true\"");
    }
    if r.reused {
        a.push_str(" data-reused=\"true\"");
    }
    a
}

/// A node's tooltip (and accessible name): the step, its queue, and in a run its status and
/// its members'.
fn title(s: &Step, run: Option<&NodeRun>) -> String {
    let mut t = format!("{} — task queue {}", s.id, s.options.task_queue);
    if let Some(r) = run {
        let _ = write!(t, " — {}", r.status_line());
        if r.critical {
            t.push_str(" — on the critical path");
        }
        if r.fan_out {
            for m in &r.members {
                let _ = write!(t, "\n{}: {}", m.label, member_line(m));
            }
        }
    }
    t
}

/// A member's state, attempt, error and percentage.
fn member_line(m: &super::run::Member) -> String {
    let mut parts = vec![m.state.name().to_owned()];
    if let Some(a) = m.attempt.filter(|a| a.n > 1 || !m.state.is_terminal()) {
        parts.push(format!("attempt {a}"));
    }
    if let Some(e) = &m.error {
        parts.push(format!("after {e}"));
    }
    if let Some(p) = m.percent.filter(|_| !m.state.is_terminal()) {
        parts.push(format!("{p} %"));
    }
    if m.state.is_terminal() && m.start_ms > 0 && m.end_ms >= m.start_ms {
        parts.push(super::run::seconds(m.end_ms - m.start_ms));
    }
    parts.join(" · ")
}

/// Where the members panel of fan-out `n` goes: x, y, width, height.
fn panel_box(n: &Placed, r: &NodeRun, status: bool) -> (f64, f64, f64, f64) {
    (
        n.x + 12.0,
        n.y + node_h(n.step, status) - 4.0,
        // Wide enough for its longest line (11 px sans-serif: about 6.2 px a character).
        r.members
            .iter()
            .map(|m| {
                (m.label.chars().count() + 2 + member_line(m).chars().count()) as f64 * 6.2 + 32.0
            })
            .fold(NODE_W, f64::max),
        10.0 + LINE_H * r.members.len().max(1) as f64,
    )
}

/// The bottom-right corner of [`panel_box`].
fn panel_corner(n: &Placed, r: &NodeRun, status: bool) -> (f64, f64) {
    let (x, y, w, h) = panel_box(n, r, status);
    (x + w, y + h)
}

/// The members of fan-out `n`, a panel under it: one line each.
fn members_panel(out: &mut String, n: &Placed, r: &NodeRun, status: bool) {
    let (x, y, w, h) = panel_box(n, r, status);
    let _ = writeln!(
        out,
        "<g class=\"members\" data-for=\"{}/{}\" display=\"none\"><rect class=\"panel\" x=\"{x:.0}\" y=\"{y:.0}\" width=\"{w:.0}\" height=\"{h:.0}\" rx=\"4\"/>",
        xml(n.graph),
        xml(&n.step.id)
    );
    for (i, m) in r.members.iter().enumerate() {
        let my = y + 8.0 + LINE_H * i as f64;
        let _ = writeln!(
            out,
            "<g class=\"member\" data-member=\"{}\" data-state=\"{}\"><circle cx=\"{:.0}\" cy=\"{:.0}\" r=\"4\"/><text x=\"{:.0}\" y=\"{:.0}\">{}: {}</text></g>",
            xml(&m.label),
            m.state.name(),
            x + 10.0,
            my + 4.0,
            x + 20.0,
            my + 8.0,
            xml(&m.label),
            xml(&member_line(m))
        );
    }
    out.push_str("</g>\n");
}
