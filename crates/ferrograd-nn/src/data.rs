//! Data sets: the handwritten digits shipped in `data/`, MNIST from the standard IDX files
//! (raw or gzip), and word- or character-level language-modelling text in the Penn Treebank
//! format; batching with shuffling from a seed. A missing, truncated or malformed file is a
//! typed [`DataError`] naming the file and the problem, never a panic.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use ferrograd::{Array, DType, Generator, Tensor};

/// What can go wrong reading a data set.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read (missing, unreadable, bad gzip stream).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The content is not what the format requires.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line or byte where it is.
        message: String,
    },
    /// The file ends before the data its header announces.
    #[error(
        "{path}: truncated: the header announces {expected} bytes of data, the file has {found}"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes announced.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
}

/// Reads a file, decompressing it when it starts with the gzip magic bytes.
fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(io)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Images (or any features) with integer class labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Inputs, `[N, ...]`, f32.
    pub inputs: Tensor,
    /// Class labels `[N]`, i64.
    pub labels: Tensor,
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.numel()
    }

    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The examples at `indices` (i64 `[k]`).
    pub fn select(&self, indices: &Tensor) -> Dataset {
        Dataset {
            inputs: self.inputs.index_select(0, indices),
            labels: self.labels.index_select(0, indices),
        }
    }

    /// A random split into `(rest, held_out)` with `held_out_fraction` of the examples.
    pub fn split(&self, held_out_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let order = Tensor::new(Generator::new(seed).randperm(self.len()));
        let k = ((self.len() as f64) * held_out_fraction).round() as usize;
        (
            self.select(&order.narrow(0, k, self.len() - k)),
            self.select(&order.narrow(0, 0, k)),
        )
    }

    /// Batches of `batch_size` (the last may be smaller), shuffled with `seed` when given.
    pub fn batches(
        &self,
        batch_size: usize,
        seed: Option<u64>,
    ) -> impl Iterator<Item = (Tensor, Tensor)> + '_ {
        let n = self.len();
        let order = match seed {
            Some(s) => Tensor::new(Generator::new(s).randperm(n)),
            None => Tensor::arange(0.0, n as f64, 1.0, DType::I64),
        };
        (0..n).step_by(batch_size.max(1)).map(move |start| {
            let ids = order.narrow(0, start, batch_size.min(n - start));
            (
                self.inputs.index_select(0, &ids),
                self.labels.index_select(0, &ids),
            )
        })
    }
}

/// The UCI handwritten digits as shipped in `data/digits.csv.gz`: 64 intensities 0..16 and a
/// label per line. Inputs come back as `[N, 1, 8, 8]` scaled to `[0, 1]`.
pub fn load_digits(path: impl AsRef<Path>) -> Result<Dataset, DataError> {
    let path = path.as_ref();
    let bytes = read_maybe_gzip(path)?;
    let text = String::from_utf8(bytes).map_err(|e| DataError::Format {
        path: path.to_path_buf(),
        message: format!("not UTF-8 text: {e}"),
    })?;
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let format = |message: String| DataError::Format {
            path: path.to_path_buf(),
            message: format!("line {}: {message}", n + 1),
        };
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 65 {
            return Err(format(format!(
                "expected 65 comma-separated values, found {}",
                fields.len()
            )));
        }
        for f in &fields[..64] {
            let v: f32 = f
                .trim()
                .parse()
                .map_err(|_| format(format!("`{}` is not a number", f.trim())))?;
            pixels.push(v / 16.0);
        }
        let label: i64 = fields[64]
            .trim()
            .parse()
            .map_err(|_| format(format!("label `{}` is not an integer", fields[64].trim())))?;
        if !(0..10).contains(&label) {
            return Err(format(format!("label {label} is not a digit")));
        }
        labels.push(label);
    }
    if labels.is_empty() {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            message: "no examples".into(),
        });
    }
    let n = labels.len();
    Ok(Dataset {
        inputs: Tensor::new(Array::from_vec(pixels, &[n, 1, 8, 8])),
        labels: Tensor::new(Array::from_vec(labels, &[n])),
    })
}

/// Parses an IDX file: its dims and its payload.
fn read_idx(path: &Path, expected_magic: u8) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let bytes = read_maybe_gzip(path)?;
    let format = |message: String| DataError::Format {
        path: path.to_path_buf(),
        message,
    };
    if bytes.len() < 4 {
        return Err(format(format!(
            "too short for an IDX header ({} bytes)",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(format(format!(
            "not an IDX file of unsigned bytes (magic {:02x} {:02x} {:02x} {:02x})",
            bytes[0], bytes[1], bytes[2], bytes[3]
        )));
    }
    if bytes[3] != expected_magic {
        return Err(format(format!(
            "expected {} dims, the header says {}",
            expected_magic, bytes[3]
        )));
    }
    let nd = bytes[3] as usize;
    let header = 4 + 4 * nd;
    if bytes.len() < header {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: header,
            found: bytes.len(),
        });
    }
    let dims: Vec<usize> = (0..nd)
        .map(|i| {
            u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let size = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format(format!("the header's dims {dims:?} overflow")))?;
    if bytes.len() - header < size {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: size,
            found: bytes.len() - header,
        });
    }
    if bytes.len() - header > size {
        return Err(format(format!(
            "{} bytes after the announced data",
            bytes.len() - header - size
        )));
    }
    Ok((dims, bytes[header..].to_vec()))
}

/// MNIST from an IDX image file and an IDX label file (raw or gzip). Inputs come back as
/// `[N, 1, H, W]` scaled to `[0, 1]`.
pub fn load_mnist(
    images: impl AsRef<Path>,
    labels: impl AsRef<Path>,
) -> Result<Dataset, DataError> {
    let (images, labels) = (images.as_ref(), labels.as_ref());
    let (dims, pixels) = read_idx(images, 3)?;
    if dims.contains(&0) {
        return Err(DataError::Format {
            path: images.to_path_buf(),
            message: format!(
                "no images: the header announces {} images of {} x {} pixels",
                dims[0], dims[1], dims[2]
            ),
        });
    }
    let (ldims, ls) = read_idx(labels, 1)?;
    if let Some(at) = ls.iter().position(|&l| l > 9) {
        return Err(DataError::Format {
            path: labels.to_path_buf(),
            message: format!("label {} at index {at} is not a digit", ls[at]),
        });
    }
    if ldims[0] != dims[0] {
        return Err(DataError::Format {
            path: labels.to_path_buf(),
            message: format!(
                "{} labels for {} images in {}",
                ldims[0],
                dims[0],
                images.display()
            ),
        });
    }
    let inputs: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    Ok(Dataset {
        inputs: Tensor::new(Array::from_vec(inputs, &[dims[0], 1, dims[1], dims[2]])),
        labels: Tensor::new(Array::from_vec(
            ls.iter().map(|&l| l as i64).collect::<Vec<_>>(),
            &[ldims[0]],
        )),
    })
}

/// The four standard MNIST files in `dir` (`train-images-idx3-ubyte`, ... each optionally
/// `.gz`): `(train, test)`.
pub fn load_mnist_dir(dir: impl AsRef<Path>) -> Result<(Dataset, Dataset), DataError> {
    let dir = dir.as_ref();
    let find = |stem: &str| {
        let plain = dir.join(stem);
        let gz = dir.join(format!("{stem}.gz"));
        if gz.exists() && !plain.exists() {
            gz
        } else {
            plain
        }
    };
    let train = load_mnist(
        find("train-images-idx3-ubyte"),
        find("train-labels-idx1-ubyte"),
    )?;
    let test_images = find("t10k-images-idx3-ubyte");
    let test = load_mnist(&test_images, find("t10k-labels-idx1-ubyte"))?;
    if train.inputs.shape()[1..] != test.inputs.shape()[1..] {
        return Err(DataError::Format {
            path: test_images,
            message: format!(
                "test images of {:?} pixels, the training images have {:?}",
                &test.inputs.shape()[2..],
                &train.inputs.shape()[2..]
            ),
        });
    }
    Ok((train, test))
}

/// Word or character tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Whitespace-separated words.
    Word,
    /// Characters (spaces included, as `_`).
    Char,
}

/// A language-modelling corpus: a vocabulary and the train/valid/test token streams, with
/// `<eos>` at every line end (the Penn Treebank convention).
#[derive(Clone, Debug)]
pub struct Corpus {
    /// Tokens by id.
    pub vocabulary: Vec<String>,
    /// Ids by token.
    pub ids: HashMap<String, i64>,
    /// Training stream (i64 ids).
    pub train: Tensor,
    /// Validation stream.
    pub valid: Tensor,
    /// Test stream.
    pub test: Tensor,
}

/// The tokens of one line, then `<eos>`.
fn line_tokens(line: &str, level: Level) -> Vec<String> {
    let mut out: Vec<String> = match level {
        Level::Word => line.split_whitespace().map(str::to_string).collect(),
        Level::Char => line
            .trim()
            .chars()
            .map(|c| {
                if c == ' ' {
                    "_".to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    };
    out.push("<eos>".to_string());
    out
}

/// Reads `ptb.train.txt`, `ptb.valid.txt` and `ptb.test.txt` from `dir`. The vocabulary is
/// built from the training text; a validation or test token outside it is a format error
/// naming the file and line.
pub fn load_ptb(dir: impl AsRef<Path>, level: Level) -> Result<Corpus, DataError> {
    let dir = dir.as_ref();
    let read = |name: &str| -> Result<(PathBuf, String), DataError> {
        let path = dir.join(name);
        let bytes = read_maybe_gzip(&path)?;
        let text = String::from_utf8(bytes).map_err(|e| DataError::Format {
            path: path.clone(),
            message: format!("not UTF-8 text: {e}"),
        })?;
        Ok((path, text))
    };
    let (train_path, train_text) = read("ptb.train.txt")?;
    let mut vocabulary = Vec::new();
    let mut ids = HashMap::new();
    if train_text.lines().next().is_none() {
        return Err(DataError::Format {
            path: train_path,
            message: "the training text is empty".into(),
        });
    }
    for t in train_text.lines().flat_map(|l| line_tokens(l, level)) {
        if !ids.contains_key(&t) {
            ids.insert(t.clone(), vocabulary.len() as i64);
            vocabulary.push(t);
        }
    }
    let stream = |path: &Path, text: &str| -> Result<Tensor, DataError> {
        if text.lines().next().is_none() {
            return Err(DataError::Format {
                path: path.to_path_buf(),
                message: "the text is empty".into(),
            });
        }
        let mut v = Vec::new();
        for (n, line) in text.lines().enumerate() {
            for t in line_tokens(line, level) {
                match ids.get(&t) {
                    Some(&id) => v.push(id),
                    None => {
                        return Err(DataError::Format {
                            path: path.to_path_buf(),
                            message: format!(
                                "line {}: token `{t}` is not in the training vocabulary",
                                n + 1
                            ),
                        })
                    }
                }
            }
        }
        let len = v.len();
        Ok(Tensor::new(Array::from_vec(v, &[len])))
    };
    let train = stream(&train_path, &train_text)?;
    let (valid_path, valid_text) = read("ptb.valid.txt")?;
    let valid = stream(&valid_path, &valid_text)?;
    let (test_path, test_text) = read("ptb.test.txt")?;
    let test = stream(&test_path, &test_text)?;
    Ok(Corpus {
        vocabulary,
        ids,
        train,
        valid,
        test,
    })
}

/// A token stream cut into `batch` parallel rows: `[batch, len / batch]` (the tail that does
/// not fill a row is dropped). Panics when `batch` is 0 or the stream has fewer tokens than
/// rows.
#[track_caller]
pub fn batchify(stream: &Tensor, batch: usize) -> Tensor {
    if batch == 0 || stream.numel() < batch {
        crate::fail!(
            "batchify: a stream of {} tokens cannot fill {batch} rows",
            stream.numel()
        );
    }
    let per = stream.numel() / batch;
    stream.narrow(0, 0, per * batch).reshape(&[batch, per])
}
