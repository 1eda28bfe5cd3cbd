//! The screens: each has its `State`, `Message`, an `update` that says what the app
//! must do (an `Event`), and a `view`.

pub mod connection;
pub mod editor;
pub mod files;
pub mod profiles;
pub mod prompt;
