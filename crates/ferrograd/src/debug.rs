//! The nan/inf debugger. With [`Grad::debug_hook`](crate::Grad::debug_hook), every forward
//! op and every backward step of the call is checked; the first non-finite value of each
//! calls the hook with a [`DebugEvent`]: the op, the user's source line that created it, and
//! the graph around it, which saves as Graphviz DOT and renders to SVG when `dot` exists.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::context::Hooks;
use crate::{Array, Tensor};

/// The debugger's callback.
pub type DebugHook = Arc<dyn Fn(&DebugEvent) + Send + Sync>;

/// Which pass produced a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Computing the function.
    Forward,
    /// Computing the gradient.
    Backward,
}

/// Errors of saving or rendering a graph.
#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    /// Writing the file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The Graphviz `dot` program is not installed.
    #[error("cannot render {path}: the Graphviz `dot` program is not installed (Debian: apt-get install graphviz); the DOT text was saved to {dot_path}")]
    GraphvizMissing {
        /// The SVG that was asked for.
        path: PathBuf,
        /// Where the DOT text went instead.
        dot_path: PathBuf,
    },
    /// `dot` ran and failed.
    #[error("dot failed to render {path}: {message}")]
    Graphviz {
        /// The SVG that was asked for.
        path: PathBuf,
        /// What `dot` printed.
        message: String,
    },
}

/// One detection of a NaN or infinite value.
pub struct DebugEvent {
    /// The op whose result (forward) or gradient (backward) is not finite.
    pub op: String,
    /// The user's source line that applied the op.
    pub location: &'static Location<'static>,
    /// Forward or backward.
    pub phase: Phase,
    /// `"nan"`, `"inf"` or `"nan and inf"`.
    pub what: &'static str,
    inputs: Vec<Tensor>,
    output: Tensor,
    leaf_names: Vec<(usize, String)>,
}

impl DebugEvent {
    pub(crate) fn new(
        op: String,
        location: &'static Location<'static>,
        phase: Phase,
        what: &'static str,
        inputs: Vec<Tensor>,
        output: Tensor,
        hooks: &Hooks,
    ) -> DebugEvent {
        let leaf_names = hooks.leaf_names.lock().expect("leaf names").clone();
        DebugEvent {
            op,
            location,
            phase,
            what,
            inputs,
            output,
            leaf_names,
        }
    }

    /// A one-line description: `nan in the forward of div at src/main.rs:12:17`.
    pub fn message(&self) -> String {
        let phase = match self.phase {
            Phase::Forward => "forward",
            Phase::Backward => "backward",
        };
        format!(
            "ferrograd debugger: {} in the {phase} of {} at {}",
            self.what,
            self.op,
            ferrograd_array::Site(self.location)
        )
    }

    /// The offending value.
    pub fn value(&self) -> &Tensor {
        &self.output
    }

    /// The graph that led to the value, as Graphviz DOT: ops are boxes labelled with their
    /// name and source line, values ellipses with shape and range, parameters named; the
    /// non-finite value and its op are red.
    pub fn dot(&self) -> String {
        graph_dot(
            &self.inputs,
            &self.output,
            &self.op,
            self.location,
            self.phase,
            &self.leaf_names,
        )
    }

    /// Writes [`dot`](DebugEvent::dot) to `path`.
    pub fn save_dot(&self, path: impl AsRef<Path>) -> Result<(), DebugError> {
        write_atomic(path.as_ref(), self.dot().as_bytes())
    }

    /// Renders the graph to SVG with Graphviz `dot`. When `dot` is missing, the DOT text is
    /// saved next to `path` (extension `.dot`) and the error says so.
    pub fn save_svg(&self, path: impl AsRef<Path>) -> Result<(), DebugError> {
        render_svg(&self.dot(), path.as_ref())
    }
}

impl std::fmt::Debug for DebugEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

/// Whether an array holds NaN or infinity.
pub(crate) fn nonfinite(a: &Array) -> Option<&'static str> {
    if !a.dtype().is_float() {
        return None;
    }
    let (mut nan, mut inf) = (false, false);
    for v in a.to_f64_vec() {
        nan |= v.is_nan();
        inf |= v.is_infinite();
    }
    match (nan, inf) {
        (true, true) => Some("nan and inf"),
        (true, false) => Some("nan"),
        (false, true) => Some("inf"),
        _ => None,
    }
}

fn range_label(a: &Array) -> String {
    if a.numel() == 0 || !a.dtype().is_float() {
        return String::new();
    }
    let v = a.to_f64_vec();
    let min = v.iter().cloned().fold(
        f64::INFINITY,
        |m, x| if x.is_nan() || x < m { x } else { m },
    );
    let max = v.iter().cloned().fold(
        f64::NEG_INFINITY,
        |m, x| if x.is_nan() || x > m { x } else { m },
    );
    format!("\\n[{min:.4}, {max:.4}]")
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// DOT for the graph of traced nodes behind `inputs`, plus the op that produced `output`.
const DOT_HEADER: &str =
    "digraph ferrograd {\n  rankdir=TB;\n  node [fontname=\"monospace\", fontsize=10];\n";

/// Writes the values and ops behind `roots` (walking back through every level) into `s`;
/// returns the DOT id of each value by tensor id.
fn graph_body(
    s: &mut String,
    roots: &[Tensor],
    leaf_names: &[(usize, String)],
) -> HashMap<usize, String> {
    let names: HashMap<usize, &str> = leaf_names.iter().map(|(id, n)| (*id, n.as_str())).collect();
    let inputs = roots;
    let mut seen: HashMap<usize, String> = HashMap::new();
    let mut stack: Vec<Tensor> = inputs.to_vec();
    let mut count = 0usize;
    // Values and the ops that made them, walking back through every level.
    while let Some(t) = stack.pop() {
        if seen.contains_key(&t.id()) || count > 2000 {
            continue;
        }
        count += 1;
        let id = format!("v{}", seen.len());
        seen.insert(t.id(), id.clone());
        let bad = nonfinite(t.data()).is_some();
        let color = if bad {
            ", color=red, fontcolor=red"
        } else {
            ""
        };
        match t.as_node() {
            Some(n) if matches!(n.op, crate::op::Op::Leaf) => {
                let name = names.get(&t.id()).copied().unwrap_or("param");
                let _ = writeln!(
                    s,
                    "  {id} [shape=doubleoctagon, label=\"{}\\n{:?}{}\"{color}];",
                    escape(name),
                    t.shape(),
                    range_label(t.data())
                );
            }
            Some(n) => {
                let _ = writeln!(
                    s,
                    "  {id} [shape=ellipse, label=\"{:?}{}\"{color}];",
                    t.shape(),
                    range_label(t.data())
                );
                let _ = writeln!(
                    s,
                    "  {id}_op [shape=box, label=\"{}\\n{}:{}\"{color}];",
                    escape(&n.op.name()),
                    escape(&ferrograd_array::normalize_path(n.location.file())),
                    n.location.line()
                );
                let _ = writeln!(s, "  {id}_op -> {id} [color=darkgreen];");
                for input in &n.inputs {
                    stack.push(input.clone());
                }
            }
            None => {
                let _ = writeln!(
                    s,
                    "  {id} [shape=ellipse, style=dashed, label=\"const {:?}{}\"{color}];",
                    t.shape(),
                    range_label(t.data())
                );
            }
        }
    }
    // Edges from inputs into the ops that consume them.
    let mut visited = std::collections::HashSet::new();
    let mut stack: Vec<Tensor> = inputs.to_vec();
    while let Some(t) = stack.pop() {
        if !visited.insert(t.id()) {
            continue;
        }
        if let Some(n) = t.as_node() {
            let id = &seen[&t.id()];
            for input in &n.inputs {
                if let Some(src) = seen.get(&input.id()) {
                    let _ = writeln!(s, "  {src} -> {id}_op;");
                }
                stack.push(input.clone());
            }
        }
    }
    seen
}

/// The graph behind a traced tensor as Graphviz DOT: ops are boxes labelled with their name
/// and source line, values ellipses with shape and range, leaves named by `leaf_names`
/// (pairs of a leaf tensor and its name).
pub fn graph(root: &Tensor, leaf_names: &[(Tensor, String)]) -> String {
    let names: Vec<(usize, String)> = leaf_names
        .iter()
        .map(|(t, n)| (t.id(), n.clone()))
        .collect();
    let mut s = String::from(DOT_HEADER);
    let seen = graph_body(&mut s, std::slice::from_ref(root), &names);
    if let Some(id) = seen.get(&root.id()) {
        let _ = writeln!(s, "  {id} [peripheries=2];");
    }
    s.push_str("}\n");
    s
}

pub(crate) fn graph_dot(
    inputs: &[Tensor],
    output: &Tensor,
    op: &str,
    location: &Location<'_>,
    phase: Phase,
    leaf_names: &[(usize, String)],
) -> String {
    let mut s = String::from(DOT_HEADER);
    let seen = graph_body(&mut s, inputs, leaf_names);
    // The op under scrutiny and its result.
    let edge = if phase == Phase::Backward {
        "blue"
    } else {
        "red"
    };
    let label = if phase == Phase::Backward {
        format!("backward of {op}")
    } else {
        op.to_string()
    };
    let _ = writeln!(
        s,
        "  bad_op [shape=box, color=red, fontcolor=red, label=\"{}\\n{}:{}\"];",
        escape(&label),
        escape(&ferrograd_array::normalize_path(location.file())),
        location.line()
    );
    let _ = writeln!(
        s,
        "  bad [shape=ellipse, color=red, fontcolor=red, label=\"{:?}{}\"];",
        output.shape(),
        range_label(output.data())
    );
    let _ = writeln!(s, "  bad_op -> bad [color={edge}];");
    for t in inputs {
        if let Some(src) = seen.get(&t.id()) {
            let _ = writeln!(s, "  {src} -> bad_op [color={edge}];");
        }
    }
    s.push_str("}\n");
    s
}

/// Writes through a temporary file and a rename, so no half-written file is ever seen.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DebugError> {
    let io = |source| DebugError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Renders DOT text to an SVG file with Graphviz.
pub fn render_svg(dot: &str, path: &Path) -> Result<(), DebugError> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dot_path = path.with_extension("dot");
            write_atomic(&dot_path, dot.as_bytes())?;
            return Err(DebugError::GraphvizMissing {
                path: path.to_path_buf(),
                dot_path,
            });
        }
        Err(source) => {
            return Err(DebugError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let io = |source| DebugError::Io {
        path: path.to_path_buf(),
        source,
    };
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(dot.as_bytes())
        .map_err(io)?;
    let out = child.wait_with_output().map_err(io)?;
    if !out.status.success() {
        return Err(DebugError::Graphviz {
            path: path.to_path_buf(),
            message: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    write_atomic(path, &out.stdout)
}
