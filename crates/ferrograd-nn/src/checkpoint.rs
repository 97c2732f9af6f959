//! Checkpoints: any parameter tree (and modules and optimizer state, through their trees)
//! saved as safetensors, named by the tree's leaf names, so PyTorch and Hugging Face tools
//! read them. Writes go to a temporary file that is renamed into place, so a crash never
//! leaves a half-written checkpoint. Loading checks every name, shape and dtype and returns a
//! typed error naming the problem; it never panics on a bad file.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use ferrograd::{leaf_names, leaves, rebuild, Array, DType, Tensor, Tree};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// What can go wrong saving or loading a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file (garbage, truncated, inconsistent).
    #[error("{path}: not a valid safetensors file: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the parser found.
        message: String,
    },
    /// A tensor the tree needs is not in the file.
    #[error("{path}: tensor `{name}` is missing")]
    Missing {
        /// The file.
        path: PathBuf,
        /// The leaf name.
        name: String,
    },
    /// The file holds a tensor the tree has no leaf for.
    #[error("{path}: tensor `{name}` is not part of the parameters being loaded")]
    Unexpected {
        /// The file.
        path: PathBuf,
        /// The tensor's name in the file.
        name: String,
    },
    /// A tensor has another shape than the leaf it should fill.
    #[error("{path}: tensor `{name}` has shape {found:?}, the parameter has {expected:?}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// The leaf name.
        name: String,
        /// The leaf's shape.
        expected: Vec<usize>,
        /// The file's shape.
        found: Vec<usize>,
    },
    /// Two leaves would be stored under one name (a bare tensor's `tensor` and a leaf named
    /// `tensor`, or `{"a": {"b.c": ..}}` and `{"a.b": {"c": ..}}`); nothing is written.
    #[error(
        "{path}: the leaves {first} and {second} would both be stored as `{name}` (rename one: \
         leaf names are joined with `.`)"
    )]
    DuplicateName {
        /// The file.
        path: PathBuf,
        /// The name both would have in the file.
        name: String,
        /// The first leaf: its position among the leaves and its name.
        first: String,
        /// The second leaf: its position among the leaves and its name.
        second: String,
    },
    /// A tensor has another dtype than the leaf it should fill.
    #[error("{path}: tensor `{name}` is {found}, the parameter is {expected}")]
    DType {
        /// The file.
        path: PathBuf,
        /// The leaf name.
        name: String,
        /// The leaf's dtype.
        expected: String,
        /// The file's dtype.
        found: String,
    },
    /// A tensor could not be placed on the device of the leaf it should fill.
    #[error("{path}: tensor `{name}`: {source}")]
    Device {
        /// The file.
        path: PathBuf,
        /// The leaf name.
        name: String,
        /// The cause.
        source: ferrograd::DeviceError,
    },
}

fn to_safetensors_dtype(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
        DType::I64 => Dtype::I64,
        DType::Bool => Dtype::BOOL,
    }
}

fn bytes_of(a: &Array) -> Vec<u8> {
    match a.dtype() {
        DType::F32 => a
            .to_vec::<f32>()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::F64 => a
            .to_vec::<f64>()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::I64 => a
            .to_vec::<i64>()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::Bool => a.to_vec::<bool>().iter().map(|&b| b as u8).collect(),
    }
}

fn array_of(view: &TensorView<'_>, path: &Path, name: &str) -> Result<Array, CheckpointError> {
    let shape = view.shape().to_vec();
    let data = view.data();
    let format = |message: String| CheckpointError::Format {
        path: path.to_path_buf(),
        message,
    };
    Ok(match view.dtype() {
        Dtype::F32 => Array::from_vec(
            data.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect::<Vec<_>>(),
            &shape,
        ),
        Dtype::F64 => Array::from_vec(
            data.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect::<Vec<_>>(),
            &shape,
        ),
        Dtype::I64 => Array::from_vec(
            data.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect::<Vec<_>>(),
            &shape,
        ),
        Dtype::BOOL => Array::from_vec(data.iter().map(|&b| b != 0).collect::<Vec<_>>(), &shape),
        other => {
            return Err(format(format!(
                "tensor `{name}` has dtype {other:?}, which ferrograd does not load"
            )))
        }
    })
}

/// The first two of `names` that are equal, by index.
fn first_duplicate<'a>(names: impl Iterator<Item = &'a str>) -> Option<(usize, usize)> {
    let mut seen = HashMap::new();
    for (i, n) in names.enumerate() {
        if let Some(&j) = seen.get(n) {
            return Some((j, i));
        }
        seen.insert(n, i);
    }
    None
}

/// Removes temporary files that earlier saves to `path` left behind when their process was
/// killed mid-write (`.{name}.tmp-{pid}` whose process no longer runs). Only where a process's
/// liveness can be told (`/proc`, Linux); a temporary of a running process is never touched.
fn remove_stale_temporaries(path: &Path, file_name: &str) {
    let proc_fs = Path::new("/proc");
    if !proc_fs.join("self").exists() {
        return;
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let prefix = format!(".{file_name}.tmp-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok_and(|p| p != std::process::id()) && !proc_fs.join(pid).exists()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes named arrays as a safetensors file, atomically. Two arrays of one name are a
/// [`CheckpointError::DuplicateName`].
pub fn save_arrays(
    named: &[(String, Array)],
    path: impl AsRef<Path>,
) -> Result<(), CheckpointError> {
    let path = path.as_ref();
    if let Some((i, j)) = first_duplicate(named.iter().map(|(n, _)| n.as_str())) {
        return Err(CheckpointError::DuplicateName {
            path: path.to_path_buf(),
            name: named[i].0.clone(),
            first: format!("#{i} `{}`", named[i].0),
            second: format!("#{j} `{}`", named[j].0),
        });
    }
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let buffers: Vec<(String, Array, Vec<u8>)> = named
        .iter()
        .map(|(n, a)| (n.clone(), a.clone(), bytes_of(a)))
        .collect();
    let mut views = Vec::with_capacity(buffers.len());
    for (name, a, bytes) in &buffers {
        let view = TensorView::new(to_safetensors_dtype(a.dtype()), a.shape().to_vec(), bytes)
            .map_err(|e| CheckpointError::Format {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        views.push((name.clone(), view));
    }
    let mut info = HashMap::new();
    info.insert("format".to_string(), "pt".to_string());
    let bytes =
        safetensors::tensor::serialize(views, Some(info)).map_err(|e| CheckpointError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    remove_stale_temporaries(path, &file_name);
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Reads every tensor of a safetensors file, by name.
pub fn load_arrays(path: impl AsRef<Path>) -> Result<BTreeMap<String, Array>, CheckpointError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| CheckpointError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let a = array_of(&view, path, &name)?;
        out.insert(name, a);
    }
    Ok(out)
}

/// The name a leaf is stored under (a bare tensor's empty name becomes `tensor`).
fn stored_name(name: &str) -> String {
    if name.is_empty() {
        "tensor".to_string()
    } else {
        name.to_string()
    }
}

/// Removes `name` from `stored`, checking it has the expected shape and dtype.
pub(crate) fn take_checked(
    stored: &mut BTreeMap<String, Array>,
    path: &Path,
    name: &str,
    shape: &[usize],
    dtype: DType,
) -> Result<Array, CheckpointError> {
    let path = path.to_path_buf();
    let name = name.to_string();
    let Some(a) = stored.remove(&name) else {
        return Err(CheckpointError::Missing { path, name });
    };
    if a.shape() != shape {
        return Err(CheckpointError::Shape {
            path,
            name,
            expected: shape.to_vec(),
            found: a.shape().to_vec(),
        });
    }
    if a.dtype() != dtype {
        return Err(CheckpointError::DType {
            path,
            name,
            expected: dtype.to_string(),
            found: a.dtype().to_string(),
        });
    }
    Ok(a)
}

/// Fails on the first tensor nobody asked for.
pub(crate) fn ensure_consumed(
    stored: BTreeMap<String, Array>,
    path: &Path,
) -> Result<(), CheckpointError> {
    match stored.into_keys().next() {
        Some(name) => Err(CheckpointError::Unexpected {
            path: path.to_path_buf(),
            name,
        }),
        None => Ok(()),
    }
}

/// Saves every leaf of `tree` under its leaf name. Two leaves whose names collide are a
/// [`CheckpointError::DuplicateName`] naming both; nothing is written then.
pub fn save<P: Tree>(tree: &P, path: impl AsRef<Path>) -> Result<(), CheckpointError> {
    let names = leaf_names(tree);
    let named: Vec<(String, Array)> = names
        .iter()
        .zip(leaves(tree))
        .map(|(n, t)| (stored_name(n), t.value().clone()))
        .collect();
    if let Some((i, j)) = first_duplicate(named.iter().map(|(n, _)| n.as_str())) {
        let shown = |k: usize| format!("#{k} `{}`", names[k]);
        return Err(CheckpointError::DuplicateName {
            path: path.as_ref().to_path_buf(),
            name: named[i].0.clone(),
            first: shown(i),
            second: shown(j),
        });
    }
    save_arrays(&named, path)
}

/// Loads a tree saved by [`save`] into the structure of `template`: every leaf must be in the
/// file with the template's shape and dtype, and the file must hold nothing else. Each leaf
/// goes to the device of the template's leaf (load into a model already moved to a GPU, and
/// the weights go there); saving reads device tensors back to the host.
pub fn load<P: Tree>(template: &P, path: impl AsRef<Path>) -> Result<P, CheckpointError> {
    let path = path.as_ref();
    let mut stored = load_arrays(path)?;
    let mut new_leaves = Vec::new();
    for (name, leaf) in leaf_names(template).iter().zip(leaves(template)) {
        let array = take_checked(
            &mut stored,
            path,
            &stored_name(name),
            leaf.shape(),
            leaf.dtype(),
        )?;
        let placed = array
            .to_device(leaf.device())
            .map_err(|source| CheckpointError::Device {
                path: path.to_path_buf(),
                name: stored_name(name),
                source,
            })?;
        new_leaves.push(Tensor::new(placed));
    }
    ensure_consumed(stored, path)?;
    Ok(rebuild(template, new_leaves))
}
