//! Save/load round trips and every corruption case, each a typed error naming the problem.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use ferrograd::{DType, Tensor, Tree};
use ferrograd_nn::checkpoint::{load, load_arrays, save, CheckpointError};

#[derive(Tree, Clone, Debug)]
struct Net {
    layers: Vec<(Tensor, Tensor)>,
    steps: Tensor,
}

fn net(scale: f64) -> Net {
    Net {
        layers: vec![
            (
                Tensor::from_vec(vec![1.0f32 * scale as f32, 2.0, 3.0, 4.0], &[2, 2]),
                Tensor::from_vec(vec![0.5f32, -0.5], &[2]),
            ),
            (
                Tensor::from_vec(vec![1.5f64 * scale, 2.5], &[1, 2]),
                Tensor::from_vec(vec![0.25f64], &[1]),
            ),
        ],
        steps: Tensor::from_vec(vec![7i64], &[1]),
    }
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ferrograd-ckpt-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn trees_round_trip_with_their_leaf_names() {
    let d = dir();
    let path = d.join("net.safetensors");
    save(&net(1.0), &path).unwrap();
    let names: Vec<String> = load_arrays(&path).unwrap().into_keys().collect();
    assert_eq!(
        names,
        vec![
            "layers.0.0",
            "layers.0.1",
            "layers.1.0",
            "layers.1.1",
            "steps"
        ]
    );
    let back = load(&net(0.0), &path).unwrap();
    assert_eq!(back.layers[0].0.to_vec::<f32>(), vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(back.layers[1].0.to_vec::<f64>(), vec![1.5, 2.5]);
    assert_eq!(back.steps.to_vec::<i64>(), vec![7]);
    // the header is what other tools read: JSON with the names, dtypes and shapes
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    assert!(
        header.contains("\"layers.0.0\"") && header.contains("\"F32\"") && header.contains("[2,2]"),
        "{header}"
    );
    // no temporary file is left behind
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn every_corruption_is_a_typed_error() {
    let d = dir();
    let path = d.join("net.safetensors");
    save(&net(1.0), &path).unwrap();
    // missing tensor: the template has a leaf the file lacks
    let mut bigger = net(0.0);
    bigger.layers.push((
        Tensor::zeros(&[1], DType::F32),
        Tensor::zeros(&[1], DType::F32),
    ));
    assert!(
        matches!(load(&bigger, &path), Err(CheckpointError::Missing { name, .. }) if name == "layers.2.0")
    );
    // extra tensor: the file has a leaf the template lacks
    let mut smaller = net(0.0);
    smaller.layers.pop();
    assert!(
        matches!(load(&smaller, &path), Err(CheckpointError::Unexpected { name, .. }) if name == "layers.1.0")
    );
    // mis-shaped
    let mut reshaped = net(0.0);
    reshaped.layers[0].1 = Tensor::zeros(&[3], DType::F32);
    let err = load(&reshaped, &path).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::Shape { name, expected, found, .. } if name == "layers.0.1" && expected == &vec![3] && found == &vec![2])
    );
    assert!(err.to_string().contains("layers.0.1") && err.to_string().contains("[2]"));
    // wrong dtype
    let mut retyped = net(0.0);
    retyped.layers[0].1 = Tensor::zeros(&[2], DType::F64);
    assert!(matches!(
        load(&retyped, &path),
        Err(CheckpointError::DType { .. })
    ));
    // truncated
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        let p = d.join(format!("cut{cut}.safetensors"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        assert!(
            matches!(load(&net(0.0), &p), Err(CheckpointError::Format { .. })),
            "cut at {cut}"
        );
    }
    // garbage
    let p = d.join("garbage.safetensors");
    std::fs::write(&p, b"this is not a checkpoint at all, just some text").unwrap();
    assert!(matches!(
        load(&net(0.0), &p),
        Err(CheckpointError::Format { .. })
    ));
    // a header that claims more data than there is
    let mut lying = bytes.clone();
    lying.truncate(bytes.len() - 8);
    let p = d.join("lying.safetensors");
    std::fs::write(&p, &lying).unwrap();
    assert!(load(&net(0.0), &p).is_err());
    // a missing file
    assert!(matches!(
        load(&net(0.0), d.join("nope.safetensors")),
        Err(CheckpointError::Io { .. })
    ));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn maps_and_optimizer_state_save_too() {
    let d = dir();
    let path = d.join("state.safetensors");
    let mut state: BTreeMap<String, Tensor> = BTreeMap::new();
    state.insert("step".into(), Tensor::scalar(3i64));
    state.insert(
        "exp_avg.0".into(),
        Tensor::from_vec(vec![0.1f64, 0.2], &[2]),
    );
    save(&state, &path).unwrap();
    let back = load(&state, &path).unwrap();
    assert_eq!(back["step"].item::<i64>(), 3);
    assert_eq!(back["exp_avg.0"].to_vec::<f64>(), vec![0.1, 0.2]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn colliding_leaf_names_are_an_error_naming_both_and_nothing_is_written() {
    let d = dir();
    let path = d.join("collide.safetensors");
    let t = Tensor::scalar(1.0f64);
    let mut tree: BTreeMap<String, BTreeMap<String, Tensor>> = BTreeMap::new();
    tree.entry("a".into())
        .or_default()
        .insert("b.c".into(), t.clone());
    tree.entry("a.b".into()).or_default().insert("c".into(), t);
    let err = save(&tree, &path).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::DuplicateName { name, .. } if name == "a.b.c"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("the leaves #0 `a.b.c` and #1 `a.b.c` would both be stored as `a.b.c`"),
        "{err}"
    );
    assert!(!path.exists());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_save_removes_what_killed_saves_left_behind() {
    let d = dir();
    let path = d.join("net.safetensors");
    // a temporary of a process that no longer runs (no pid is this large), and one of a
    // process that does (init, pid 1)
    let stale = d.join(".net.safetensors.tmp-4294967295");
    let live = d.join(".net.safetensors.tmp-1");
    std::fs::write(&stale, b"half a checkpoint").unwrap();
    std::fs::write(&live, b"being written").unwrap();
    save(&net(1.0), &path).unwrap();
    assert!(path.exists());
    if std::path::Path::new("/proc/self").exists() {
        assert!(!stale.exists(), "the stale temporary was left");
    }
    assert!(live.exists(), "a running process's temporary was removed");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn checkpoints_load_onto_the_devices_of_the_template() {
    for device in common::gpus("to save from and load onto") {
        let path = dir().join(format!("on-{device}.safetensors"));
        let on_gpu = ferrograd::to_device(&net(2.0), device).unwrap();
        save(&on_gpu, &path).unwrap(); // read back from the device
        let template = ferrograd::to_device(&net(0.0), device).unwrap();
        let loaded = load(&template, &path).unwrap();
        for (l, w) in ferrograd::leaves(&loaded)
            .iter()
            .zip(ferrograd::leaves(&net(2.0)))
        {
            assert_eq!(l.device(), device);
            assert!(l.value().bit_eq(w.value()));
        }
        // a CPU template loads the same file onto the CPU
        let host = load(&net(0.0), &path).unwrap();
        assert!(ferrograd::leaves(&host).iter().all(|t| t.device().is_cpu()));
    }
}
