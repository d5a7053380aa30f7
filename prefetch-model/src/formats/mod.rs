//! Parsers that turn a file's footer or header bytes into a [`crate::Layout`].
