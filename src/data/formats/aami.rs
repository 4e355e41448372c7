//! The AAMI EC57 beat classes from MIT-BIH annotation codes.

use serde::{Deserialize, Serialize};

/// The five AAMI classes, in label order 0..4 (the order of the common CSV files).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AamiClass {
    /// Normal and bundle-branch-block beats: N L R e j.
    N,
    /// Supraventricular ectopic: A a J S.
    S,
    /// Ventricular ectopic: V E.
    V,
    /// Fusion of ventricular and normal: F.
    F,
    /// Paced, fusion of paced and normal, unclassifiable: / f Q.
    Q,
}

pub const CLASSES: [AamiClass; 5] = [
    AamiClass::N,
    AamiClass::S,
    AamiClass::V,
    AamiClass::F,
    AamiClass::Q,
];
pub const CLASS_NAMES: [&str; 5] = ["N", "S", "V", "F", "Q"];

impl AamiClass {
    /// The class of a WFDB annotation code, or `None` for non-beat annotations.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 | 2 | 3 | 34 | 11 => Some(Self::N), // N L R e j
            8 | 4 | 7 | 9 => Some(Self::S),       // A a J S
            5 | 10 => Some(Self::V),              // V E
            6 => Some(Self::F),                   // F
            12 | 38 | 13 => Some(Self::Q),        // / f Q
            _ => None,
        }
    }

    pub fn label(self) -> u32 {
        self as u32
    }

    /// The label's class, if it is one of the five.
    pub fn from_label(label: u32) -> Option<Self> {
        CLASSES.get(label as usize).copied()
    }

    /// The annotation code that stands for the class when writing predictions: N, A (the usual
    /// supraventricular premature beat), V, F, Q.
    pub fn code(self) -> u8 {
        match self {
            Self::N => 1,
            Self::S => 8,
            Self::V => 5,
            Self::F => 6,
            Self::Q => 13,
        }
    }
}
