pub use ferrograd_array::*;
