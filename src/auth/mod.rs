//! Who is calling: JWT verification and what a verified subject becomes.

pub mod jwt;
pub mod subject;
