//! The sound catalog: labelled example sounds ("bearing squeal", "belt slip", "forklift
//! passing") embedded with the monitor's model, so that a sound can be looked up by example.
//!
//! [`store`] keeps the entries (one per window of a labelled recording, or one per recording
//! with `--whole-clip`) with their embeddings in a directory written atomically, refusing
//! embeddings of another model; [`search`] finds the catalog clips most like a query sound,
//! aggregated per clip so that one long recording cannot fill the whole answer; [`known`]
//! names what an anomaly event sounds like, and whether that sound is a benign one.
//! [`backend`] puts the directory and an Azure AI Search index ([`azure`]) behind one trait,
//! so that `earshot catalog` and `earshot search` work the same on either.

pub mod azure;
pub mod backend;
pub mod known;
pub mod search;
pub mod store;

pub use backend::{AddReport, CatalogBackend, EmbeddedCatalog, Header, Removal};
pub use search::{Filter, Match, aggregate, format_sounds_like, search_embedded, sounds_like};
pub use store::{Catalog, CatalogError, Entry, entry_id};
