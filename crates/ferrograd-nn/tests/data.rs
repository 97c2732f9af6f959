//! Data loaders on the shipped digits and on files the tests generate, every malformed case
//! a typed error naming the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use ferrograd_nn::data::{self, DataError, Level};

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferrograd-data-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx(dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(payload);
    v
}

#[test]
fn the_shipped_digits_load() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/digits.csv.gz");
    let d = data::load_digits(&path).unwrap();
    assert_eq!(d.len(), 1797);
    assert_eq!(d.inputs.shape(), &[1797, 1, 8, 8]);
    let v = d.inputs.to_vec::<f32>();
    assert!(v.iter().all(|&x| (0.0..=1.0).contains(&x)));
    let labels = d.labels.to_vec::<i64>();
    for digit in 0..10 {
        assert!(labels.iter().filter(|&&l| l == digit).count() > 150);
    }
    let (train, test) = d.split(0.2, 1);
    assert_eq!((train.len(), test.len()), (1438, 359));
    // batches cover every example once, shuffled reproducibly
    let a: Vec<i64> = train
        .batches(100, Some(3))
        .flat_map(|(_, y)| y.to_vec::<i64>())
        .collect();
    let b: Vec<i64> = train
        .batches(100, Some(3))
        .flat_map(|(_, y)| y.to_vec::<i64>())
        .collect();
    assert_eq!(a, b);
    assert_eq!(a.len(), 1438);
    assert_eq!(train.batches(100, None).count(), 15);
}

#[test]
fn malformed_digit_files() {
    let d = dir("digits");
    let line = |n: usize| {
        (0..n)
            .map(|i| (i % 17).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("short.csv", line(60), "line 1: expected 65"),
        (
            "nan.csv",
            format!("{},x,3", line(63)),
            "`x` is not a number",
        ),
        (
            "label.csv",
            format!("{},12", line(64)),
            "label 12 is not a digit",
        ),
        ("empty.csv", String::new(), "no examples"),
    ];
    for (name, text, needle) in cases {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        let err = data::load_digits(&p).unwrap_err();
        assert!(matches!(err, DataError::Format { .. }), "{name}");
        assert!(
            err.to_string().contains(needle) && err.to_string().contains(name),
            "{err}"
        );
    }
    let err = data::load_digits(d.join("missing.csv")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }) && err.to_string().contains("missing.csv"));
    // a gzip stream cut short is an I/O error naming the file
    let good = format!("{},3\n", line(64));
    let gz = gzip(good.repeat(50).as_bytes());
    std::fs::write(d.join("cut.csv.gz"), &gz[..gz.len() / 2]).unwrap();
    assert!(matches!(
        data::load_digits(d.join("cut.csv.gz")),
        Err(DataError::Io { .. })
    ));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn mnist_idx_files_raw_and_gzip() {
    let d = dir("mnist");
    let pixels: Vec<u8> = (0..3 * 2 * 2).map(|i| (i * 20) as u8).collect();
    std::fs::write(d.join("train-images-idx3-ubyte"), idx(&[3, 2, 2], &pixels)).unwrap();
    std::fs::write(
        d.join("train-labels-idx1-ubyte.gz"),
        gzip(&idx(&[3], &[7, 0, 9])),
    )
    .unwrap();
    std::fs::write(
        d.join("t10k-images-idx3-ubyte.gz"),
        gzip(&idx(&[1, 2, 2], &[255, 0, 0, 255])),
    )
    .unwrap();
    std::fs::write(d.join("t10k-labels-idx1-ubyte"), idx(&[1], &[4])).unwrap();
    let (train, test) = data::load_mnist_dir(&d).unwrap();
    assert_eq!(train.inputs.shape(), &[3, 1, 2, 2]);
    assert_eq!(train.labels.to_vec::<i64>(), vec![7, 0, 9]);
    assert_eq!(train.inputs.to_vec::<f32>()[1], 20.0 / 255.0);
    assert_eq!(test.inputs.to_vec::<f32>(), vec![1.0, 0.0, 0.0, 1.0]);

    let bad = |name: &str, bytes: Vec<u8>| {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let labels = bad("labels", idx(&[3], &[1, 2, 3]));
    let truncated = bad("truncated", idx(&[3, 2, 2], &pixels[..10]));
    assert!(matches!(
        data::load_mnist(&truncated, &labels),
        Err(DataError::Truncated {
            expected: 12,
            found: 10,
            ..
        })
    ));
    let magic = bad("magic", vec![1, 2, 3, 4, 5, 6, 7, 8]);
    let err = data::load_mnist(&magic, &labels).unwrap_err();
    assert!(
        err.to_string().contains("magic") && err.to_string().contains("not an IDX"),
        "{err}"
    );
    let dims = bad("dims", idx(&[3], &[1, 2, 3]));
    assert!(data::load_mnist(&dims, &labels)
        .unwrap_err()
        .to_string()
        .contains("expected 3 dims"));
    let header = bad("header", vec![0, 0, 8, 3, 0, 0]);
    assert!(matches!(
        data::load_mnist(&header, &labels),
        Err(DataError::Truncated { .. })
    ));
    let images = bad("images", idx(&[2, 2, 3], &pixels));
    let err = data::load_mnist(&images, &labels).unwrap_err();
    assert!(err.to_string().contains("3 labels for 2 images"), "{err}");
    let extra = bad("extra", idx(&[2, 1, 1], &[1, 2, 3]));
    assert!(data::load_mnist(&extra, &labels)
        .unwrap_err()
        .to_string()
        .contains("after the announced data"));
    assert!(matches!(
        data::load_mnist(d.join("nope"), &labels),
        Err(DataError::Io { .. })
    ));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn penn_treebank_text() {
    let d = dir("ptb");
    std::fs::write(
        d.join("ptb.train.txt"),
        " the cat sat \n the dog sat on the cat \n",
    )
    .unwrap();
    std::fs::write(d.join("ptb.valid.txt"), " the dog sat \n").unwrap();
    std::fs::write(d.join("ptb.test.txt"), " the cat \n").unwrap();
    let c = data::load_ptb(&d, Level::Word).unwrap();
    assert_eq!(
        c.vocabulary,
        vec!["the", "cat", "sat", "<eos>", "dog", "on"]
    );
    assert_eq!(
        c.train.to_vec::<i64>(),
        vec![0, 1, 2, 3, 0, 4, 2, 5, 0, 1, 3]
    );
    assert_eq!(c.valid.to_vec::<i64>(), vec![0, 4, 2, 3]);
    assert_eq!(data::batchify(&c.train, 2).shape(), &[2, 5]);
    let chars = data::load_ptb(&d, Level::Char).unwrap();
    assert_eq!(&chars.vocabulary[..4], &["t", "h", "e", "_"]);
    std::fs::write(d.join("ptb.test.txt"), " the bird \n").unwrap();
    let err = data::load_ptb(&d, Level::Word).unwrap_err();
    assert!(
        err.to_string().contains("ptb.test.txt")
            && err.to_string().contains("line 1")
            && err.to_string().contains("`bird`"),
        "{err}"
    );
    std::fs::remove_file(d.join("ptb.valid.txt")).unwrap();
    assert!(matches!(
        data::load_ptb(&d, Level::Word),
        Err(DataError::Io { .. })
    ));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn mnist_files_that_load_but_cannot_train_are_errors() {
    let d = dir("mnist-bad");
    let write = |name: &str, bytes: Vec<u8>| {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let labels = write("labels", idx(&[2], &[1, 2]));
    // no images, and images of no pixels
    let empty = write("empty", idx(&[0, 28, 28], &[]));
    let err = data::load_mnist(&empty, write("none", idx(&[0], &[]))).unwrap_err();
    assert!(err.to_string().contains("no images"), "{err}");
    let flat = write("flat", idx(&[2, 0, 28], &[]));
    assert!(data::load_mnist(&flat, &labels)
        .unwrap_err()
        .to_string()
        .contains("no images"));
    // dims whose product overflows, with no payload
    let huge = write("huge", idx(&[1 << 22, 1 << 21, 1 << 21], &[]));
    let err = data::load_mnist(&huge, &labels).unwrap_err();
    assert!(err.to_string().contains("overflow"), "{err}");
    // a label that is not a digit
    let images = write("images", idx(&[2, 1, 1], &[0, 255]));
    let bad_labels = write("bad-labels", idx(&[2], &[3, 10]));
    let err = data::load_mnist(&images, &bad_labels).unwrap_err();
    assert!(
        err.to_string().contains("label 10 at index 1") && err.to_string().contains("bad-labels"),
        "{err}"
    );
    // test images of another size than the training images
    write("train-images-idx3-ubyte", idx(&[2, 1, 1], &[0, 255]));
    write("train-labels-idx1-ubyte", idx(&[2], &[1, 2]));
    write("t10k-images-idx3-ubyte", idx(&[1, 2, 2], &[0, 1, 2, 3]));
    write("t10k-labels-idx1-ubyte", idx(&[1], &[4]));
    let err = data::load_mnist_dir(&d).unwrap_err();
    assert!(
        err.to_string().contains("t10k-images-idx3-ubyte")
            && err.to_string().contains("[2, 2]")
            && err.to_string().contains("[1, 1]"),
        "{err}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn penn_treebank_edge_cases() {
    let d = dir("ptb-edge");
    std::fs::write(d.join("ptb.train.txt"), "a b\n\n\nb\n").unwrap();
    std::fs::write(d.join("ptb.valid.txt"), "a\n").unwrap();
    std::fs::write(d.join("ptb.test.txt"), "").unwrap();
    // an empty test text is an error, not a perplexity of 1
    let err = data::load_ptb(&d, Level::Word).unwrap_err();
    assert!(
        err.to_string().contains("ptb.test.txt") && err.to_string().contains("empty"),
        "{err}"
    );
    std::fs::write(d.join("ptb.test.txt"), "\n").unwrap();
    let c = data::load_ptb(&d, Level::Word).unwrap();
    // empty lines end with <eos> in the stream as in the vocabulary
    assert_eq!(c.vocabulary, vec!["a", "b", "<eos>"]);
    assert_eq!(c.train.to_vec::<i64>(), vec![0, 1, 2, 2, 2, 1, 2]);
    assert_eq!(c.test.to_vec::<i64>(), vec![2]);
    let valid = c.valid.clone();
    let short =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| data::batchify(&valid, 5)))
            .unwrap_err();
    let message = short.downcast_ref::<String>().unwrap();
    assert!(message.contains("2 tokens cannot fill 5 rows"), "{message}");
    std::fs::remove_dir_all(&d).unwrap();
}
