//! Parameter trees: the Rust form of the seed's nested Lua tables (and of JAX's pytrees).
//!
//! A [`Tree`] lists its tensor leaves in a fixed order, each with a dotted name
//! (`layers.1.bias`), and rebuilds itself with new leaves. `grad` returns gradients in the
//! same type as the parameters. Maps visit their keys in sorted order, so the leaf order of a
//! `HashMap` is as stable as a `BTreeMap`'s.

use std::collections::{BTreeMap, HashMap};

use crate::Tensor;

/// A structure with tensor leaves, traversable in a fixed order and rebuildable.
///
/// Derive it for your own structs with `#[derive(Tree)]` (named fields, tuple structs,
/// generics; fields that are not trees take `#[tree(skip)]` and are cloned as they are).
pub trait Tree {
    /// Calls `f` with each leaf's name (`prefix`, extended by the path to the leaf) and the
    /// leaf, in order.
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Tensor));

    /// The same structure with each leaf replaced by `f(leaf)`, in the order of `visit`.
    fn map(&self, f: &mut dyn FnMut(&Tensor) -> Tensor) -> Self
    where
        Self: Sized;

    /// Appends to `key` what defines this tree besides its leaves: lengths of vectors and
    /// maps, map keys, which options are set, and plain numbers by value. Optimize mode makes
    /// it part of a call's signature. `#[derive(Tree)]` writes it; a hand-written `Tree` that
    /// holds such things should too (the default adds nothing).
    fn structure(&self, key: &mut Vec<u64>) {
        let _ = key;
    }
}

/// The leaves of a tree, in order.
pub fn leaves<T: Tree + ?Sized>(tree: &T) -> Vec<Tensor> {
    let mut out = Vec::new();
    leaves_into(tree, &mut out);
    out
}

/// [`leaves`] pushed onto `out` (a list kept between calls allocates nothing).
pub(crate) fn leaves_into<T: Tree + ?Sized>(tree: &T, out: &mut Vec<Tensor>) {
    tree.visit("", &mut |_, t| out.push(t.clone()));
}

/// The dotted names of a tree's leaves, in order (`w.0`, `layers.1.bias`; a bare tensor is
/// named `""`).
pub fn leaf_names<T: Tree + ?Sized>(tree: &T) -> Vec<String> {
    let mut out = Vec::new();
    tree.visit("", &mut |name, _| out.push(name.to_string()));
    out
}

/// The tree with every leaf on `device` (leaves already there are shared, not copied): how
/// a model moves to a GPU before training, or back to save it.
///
/// Either every leaf moves or none does: the first error (no `cuda` feature, no driver, no
/// such device, out of memory) is returned and the tree is left as it was.
///
/// ```
/// use ferrograd::{Device, Tensor};
/// let params = vec![Tensor::ones(&[2, 2], ferrograd::DType::F32)];
/// let same = ferrograd::to_device(&params, Device::Cpu).unwrap();
/// assert_eq!(same[0].device(), Device::Cpu);
/// match ferrograd::to_device(&params, Device::Cuda(0)) {
///     Ok(on_gpu) => assert_eq!(on_gpu[0].device(), Device::Cuda(0)),
///     Err(e) => println!("staying on the CPU: {e}"),
/// }
/// ```
pub fn to_device<T: Tree>(tree: &T, device: crate::Device) -> Result<T, crate::DeviceError> {
    let moved = leaves(tree)
        .iter()
        .map(|t| t.to_device(device))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rebuild(tree, moved))
}

/// The tree with its leaves replaced, in order, by `new_leaves`.
///
/// Panics when the number of leaves differs.
#[track_caller]
pub fn rebuild<T: Tree>(tree: &T, new_leaves: Vec<Tensor>) -> T {
    let mut expected = 0;
    tree.visit("", &mut |_, _| expected += 1);
    if new_leaves.len() != expected {
        panic!(
            "ferrograd: rebuild: the tree has {expected} leaves, got {} tensors (at {})",
            new_leaves.len(),
            ferrograd_array::Site(std::panic::Location::caller())
        );
    }
    rebuild_from(tree, &mut new_leaves.into_iter())
}

/// The tree with its leaves replaced, in order, by the next ones of `leaves` (which must
/// hold enough): [`rebuild`] without a list, for a replay's outputs.
pub(crate) fn rebuild_from<T: Tree>(tree: &T, leaves: &mut dyn Iterator<Item = Tensor>) -> T {
    tree.map(&mut |_| {
        leaves
            .next()
            .expect("ferrograd: internal: fewer leaves than the tree holds")
    })
}

/// Visits `item` under the name `prefix.segment` (`segment` at the root), written on the
/// stack when it is short, so visiting a tree allocates nothing (a compiled step visits its
/// parameters and gradients on every call). `#[derive(Tree)]` calls it.
pub fn visit_child<'a, T: Tree + ?Sized>(
    item: &'a T,
    prefix: &str,
    segment: &dyn std::fmt::Display,
    f: &mut dyn FnMut(&str, &'a Tensor),
) {
    use std::fmt::Write as _;
    /// A name in a fixed buffer; `None` once it does not fit.
    struct Name {
        bytes: [u8; 120],
        len: usize,
    }
    impl std::fmt::Write for Name {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let end = self.len + s.len();
            let room = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
            room.copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }
    let mut name = Name {
        bytes: [0; 120],
        len: 0,
    };
    let written = if prefix.is_empty() {
        write!(name, "{segment}")
    } else {
        write!(name, "{prefix}.{segment}")
    };
    match written {
        // whole `str`s were copied in, so the bytes are UTF-8
        Ok(()) => item.visit(
            std::str::from_utf8(&name.bytes[..name.len]).expect("copied from strs"),
            f,
        ),
        Err(_) => item.visit(&join_name(prefix, &segment.to_string()), f),
    }
}

/// Joins a prefix and a path segment with a dot.
pub fn join_name(prefix: &str, segment: &str) -> String {
    if prefix.is_empty() {
        segment.to_string()
    } else {
        format!("{prefix}.{segment}")
    }
}

impl Tree for Tensor {
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Tensor)) {
        f(prefix, self)
    }
    fn map(&self, f: &mut dyn FnMut(&Tensor) -> Tensor) -> Self {
        f(self)
    }
}

impl<T: Tree> Tree for Vec<T> {
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Tensor)) {
        for (i, item) in self.iter().enumerate() {
            visit_child(item, prefix, &i, f);
        }
    }
    fn map(&self, f: &mut dyn FnMut(&Tensor) -> Tensor) -> Self {
        self.iter().map(|item| item.map(f)).collect()
    }
    fn structure(&self, key: &mut Vec<u64>) {
        key.push(self.len() as u64);
        for item in self {
            item.structure(key);
        }
    }
}

impl<T: Tree, const N: usize> Tree for [T; N] {
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Tensor)) {
        for (i, item) in self.iter().enumerate() {
            visit_child(item, prefix, &i, f);
        }
    }
    fn map(&self, f: &mut dyn FnMut(&Tensor) -> Tensor) -> Self {
        std::array::from_fn(|i| self[i].map(f))
    }
    fn structure(&self, key: &mut Vec<u64>) {
        for item in self {
            item.structure(key);
        }
    }
}

impl<T: Tree> Tree for Option<T> {
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Tensor)) {
        if let Some(item) = self {
            item.visit(prefix, f);
        }
    }
    fn map(&self, f: &mut dyn FnMut(&Tensor) -> Tensor) -> Self {
        self.as_ref().map(|item| item.map(f))
    }
    fn structure(&self, key: &mut Vec<u64>) {
        key.push(self.is_some() as u64);
        if let Some(item) = self {
            item.structure(key);
        }
    }
}

impl<T: Tree> Tree for Box<T> {
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Tensor)) {
        (**self).visit(prefix, f)
    }
    fn map(&self, f: &mut dyn FnMut(&Tensor) -> Tensor) -> Self {
        Box::new((**self).map(f))
    }
    fn structure(&self, key: &mut Vec<u64>) {
        (**self).structure(key)
    }
}

impl<T: Tree> Tree for BTreeMap<String, T> {
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Tensor)) {
        for (k, item) in self {
            visit_child(item, prefix, k, f);
        }
    }
    fn map(&self, f: &mut dyn FnMut(&Tensor) -> Tensor) -> Self {
        self.iter()
            .map(|(k, item)| (k.clone(), item.map(f)))
            .collect()
    }
    fn structure(&self, key: &mut Vec<u64>) {
        key.push(self.len() as u64);
        for (k, item) in self {
            key.push(hash_str(k));
            item.structure(key);
        }
    }
}

impl<T: Tree, S: std::hash::BuildHasher + Default> Tree for HashMap<String, T, S> {
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Tensor)) {
        let mut keys: Vec<&String> = self.keys().collect();
        keys.sort();
        for k in keys {
            visit_child(&self[k], prefix, k, f);
        }
    }
    fn map(&self, f: &mut dyn FnMut(&Tensor) -> Tensor) -> Self {
        let mut keys: Vec<&String> = self.keys().collect();
        keys.sort();
        keys.into_iter()
            .map(|k| (k.clone(), self[k].map(f)))
            .collect()
    }
    fn structure(&self, key: &mut Vec<u64>) {
        let mut keys: Vec<&String> = self.keys().collect();
        keys.sort();
        key.push(keys.len() as u64);
        for k in keys {
            key.push(hash_str(k));
            self[k].structure(key);
        }
    }
}

fn hash_str(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Plain values are trees without leaves, so they can sit in parameter structs and in
/// auxiliary outputs; their value is part of the structure.
macro_rules! leafless {
    ($($t:ty => |$v:ident| $bits:expr),* $(,)?) => {$(
        impl Tree for $t {
            fn visit<'a>(&'a self, _prefix: &str, _f: &mut dyn FnMut(&str, &'a Tensor)) {}
            fn map(&self, _f: &mut dyn FnMut(&Tensor) -> Tensor) -> Self {
                self.clone()
            }
            fn structure(&self, key: &mut Vec<u64>) {
                let $v = self;
                key.push($bits);
            }
        }
    )*};
}
leafless!(
    () => |_v| 0,
    bool => |v| *v as u64,
    usize => |v| *v as u64,
    u32 => |v| *v as u64,
    u64 => |v| *v,
    i32 => |v| *v as u64,
    i64 => |v| *v as u64,
    f32 => |v| v.to_bits() as u64,
    f64 => |v| v.to_bits(),
    String => |v| hash_str(v),
);

/// An array inside a tree is data, not a leaf: it is cloned by `map`, and its storage
/// identity is its structure (optimize mode treats it as a constant of that identity).
impl Tree for crate::Array {
    fn visit<'a>(&'a self, _prefix: &str, _f: &mut dyn FnMut(&str, &'a Tensor)) {}
    fn map(&self, _f: &mut dyn FnMut(&Tensor) -> Tensor) -> Self {
        self.clone()
    }
    fn structure(&self, key: &mut Vec<u64>) {
        key.push(self.storage_id() as u64);
        key.push(self.offset() as u64);
    }
}

macro_rules! tuple_tree {
    ($($name:ident $idx:tt),+) => {
        impl<$($name: Tree),+> Tree for ($($name,)+) {
            fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Tensor)) {
                $(visit_child(&self.$idx, prefix, &stringify!($idx), f);)+
            }
            fn map(&self, f: &mut dyn FnMut(&Tensor) -> Tensor) -> Self {
                ($(self.$idx.map(f),)+)
            }
            fn structure(&self, key: &mut Vec<u64>) {
                $(self.$idx.structure(key);)+
            }
        }
    };
}
tuple_tree!(A 0);
tuple_tree!(A 0, B 1);
tuple_tree!(A 0, B 1, C 2);
tuple_tree!(A 0, B 1, C 2, D 3);
tuple_tree!(A 0, B 1, C 2, D 3, E 4);
tuple_tree!(A 0, B 1, C 2, D 3, E 4, F 5);
