//! Recipes: the model, era templates, checking, and era detection for new recipes.

pub mod era;
pub mod load;
pub mod model;
pub mod new;
pub mod packages;

pub use era::{Classification, Era, LlamaPin};
pub use load::load;
pub use model::Recipe;
