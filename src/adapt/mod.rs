//! Adapting a classifier to each patient without labels, from the record's own unlabelled beats.
//! The state is always one record's, never the database's.
//!
//! - [`priors`]: the record's class mix. A network trained on DS1 carries DS1's class mix in its
//!   outputs; a new patient's mix is different (most records hold no S beat at all, a few hold
//!   hundreds). EM re-weights each beat's probabilities to the mix it estimates. Validation
//!   rejects it (`evaluate --adapt` measures it).
//! - [`clusters`]: the kinds of beat the record holds. k-means groups a record's beats by shape
//!   and timing, and each beat's probabilities move toward its group's mean: beats of one kind
//!   share a class, so a group the network calls S half the time becomes S, and a lone S call
//!   among a patient's normal beats becomes N. Chosen out of fold (`ecgwgpu calibrate`) and kept
//!   in the checkpoint ([`crate::model::ModelConfig::record_clusters`]).

pub mod clusters;
pub mod priors;

pub use clusters::ClusterSmoothing;
pub use priors::PriorAdaptation;
