//! MIT-format annotation files (`.atr`): a stream of little-endian 16-bit words, each a 6-bit
//! code A and a 10-bit field I. A beat or other label (A = 1..49) advances time by I; the pseudo
//! codes that follow it modify it: SKIP (59, a 32-bit interval in the next two words), NUM (60),
//! SUB (61), CHN (62) and AUX (63, I bytes of text, padded to even). A zero word ends the file.
//! Writing uses the same encoding, so files round-trip and PhysioNet tools read them.

use std::path::Path;

use crate::error::{Error, Result};

const SKIP: u16 = 59;
const NUM: u16 = 60;
const SUB: u16 = 61;
const CHN: u16 = 62;
const AUX: u16 = 63;
const MAX_CODE: u16 = 49;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotation {
    /// Sample index (at the record's sampling frequency).
    pub sample: u64,
    /// WFDB annotation code (1 = N, 5 = V, ...; see [`mnemonic`]).
    pub code: u8,
    pub subtype: i8,
    pub channel: u8,
    pub num: i8,
    /// Auxiliary text, e.g. rhythm labels such as `(AFIB`.
    pub aux: Option<String>,
}

impl Annotation {
    pub fn new(sample: u64, code: u8) -> Self {
        Self {
            sample,
            code,
            subtype: 0,
            channel: 0,
            num: 0,
            aux: None,
        }
    }
}

/// Parses the bytes of an annotation file; `path` names it in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Vec<Annotation>> {
    let mut out: Vec<Annotation> = vec![];
    let mut time: u64 = 0;
    let (mut num, mut chan) = (0i8, 0u8);
    let mut pos = 0usize;
    let word_at = |pos: usize| -> Result<u16> {
        match bytes.get(pos..pos + 2) {
            Some(w) => Ok(u16::from_le_bytes([w[0], w[1]])),
            None => Err(Error::data(
                path,
                format!("byte {pos}"),
                "file ends in the middle of a 16-bit word",
            )),
        }
    };
    let cut = |pos: usize| {
        Error::data(
            path,
            format!("byte {pos}"),
            "file ends inside an annotation",
        )
    };
    while pos < bytes.len() {
        let word = word_at(pos)?;
        let start = pos;
        pos += 2;
        let (code, field) = (word >> 10, word & 0x3FF);
        match code {
            0 if field == 0 => return Ok(out),
            SKIP => {
                let hi = u32::from(word_at(pos).map_err(|_| cut(pos))?);
                let lo = u32::from(word_at(pos + 2).map_err(|_| cut(pos + 2))?);
                pos += 4;
                time = time.wrapping_add(i64::from(((hi << 16) | lo) as i32) as u64);
            }
            NUM => {
                num = field as i8;
                last_annotation(&mut out, path, start, code)?.num = num;
            }
            SUB => last_annotation(&mut out, path, start, code)?.subtype = field as i8,
            CHN => {
                chan = field as u8;
                last_annotation(&mut out, path, start, code)?.channel = chan;
            }
            AUX => {
                let len = usize::from(field);
                let text = bytes.get(pos..pos + len).ok_or_else(|| cut(pos))?;
                let aux = String::from_utf8_lossy(text)
                    .trim_end_matches('\0')
                    .to_string();
                last_annotation(&mut out, path, start, code)?.aux = Some(aux);
                pos += len + len % 2;
            }
            1..=MAX_CODE | 0 => {
                time += u64::from(field);
                let mut a = Annotation::new(time, code as u8);
                // NUM and CHN persist from the previous annotation unless changed.
                a.num = num;
                a.channel = chan;
                out.push(a);
            }
            _ => {
                return Err(Error::data(
                    path,
                    format!("byte {start}"),
                    format!("unknown annotation code {code}"),
                ));
            }
        }
    }
    Ok(out)
}

/// The annotation a modifier word applies to.
fn last_annotation<'a>(
    out: &'a mut [Annotation],
    path: &Path,
    at: usize,
    code: u16,
) -> Result<&'a mut Annotation> {
    let err = Error::data(
        path,
        format!("byte {at}"),
        format!("modifier code {code} before any annotation"),
    );
    out.last_mut().ok_or(err)
}

/// Reads `path` (e.g. `mitdb/100.atr`).
pub fn read(path: &Path) -> Result<Vec<Annotation>> {
    read_in(&super::files::Disk, path)
}

/// [`read`] from `files`.
pub fn read_in(files: &dyn super::files::Files, path: &Path) -> Result<Vec<Annotation>> {
    parse(&files.read(path)?, path)
}

/// Encodes annotations (sorted by sample) in MIT format, ending with the zero word.
pub fn encode(annotations: &[Annotation]) -> Vec<u8> {
    let mut out = vec![];
    let mut word = |w: u16| out.extend_from_slice(&w.to_le_bytes());
    let (mut time, mut num, mut chan) = (0u64, 0i8, 0u8);
    let mut aux_bytes: Vec<u8> = vec![];
    for a in annotations {
        let delta = a.sample - time;
        if delta > 0x3FF {
            let d = delta as u32;
            word(SKIP << 10);
            word((d >> 16) as u16);
            word(d as u16);
            word(u16::from(a.code) << 10);
        } else {
            word((u16::from(a.code) << 10) | delta as u16);
        }
        time = a.sample;
        if a.subtype != 0 {
            word((SUB << 10) | (a.subtype as u8 as u16));
        }
        if a.channel != chan {
            word((CHN << 10) | u16::from(a.channel));
            chan = a.channel;
        }
        if a.num != num {
            word((NUM << 10) | (a.num as u8 as u16));
            num = a.num;
        }
        if let Some(aux) = &a.aux {
            aux_bytes.clear();
            aux_bytes.extend_from_slice(&aux.as_bytes()[..aux.len().min(0x3FF)]);
            word((AUX << 10) | aux_bytes.len() as u16);
            if aux_bytes.len() % 2 == 1 {
                aux_bytes.push(0);
            }
            for pair in aux_bytes.chunks(2) {
                word(u16::from_le_bytes([pair[0], pair[1]]));
            }
        }
    }
    word(0);
    out
}

// index = code: 0 NOTQRS, 1 N, 2 L, 3 R, 4 a, 5 V, 6 F, 7 J, 8 A, 9 S, 10 E, 11 j, 12 /, 13 Q,
// 14 ~, 16 |, 18 s, 19 T, 20 *, 21 D, 22 ", 23 =, 24 p, 25 B, 26 ^, 27 t, 28 +, 29 u, 30 ?,
// 31 !, 32 [, 33 ], 34 e, 35 n, 36 @, 37 x, 38 f, 39 (, 40 ), 41 r
const MNEMONICS: &[u8; 42] = b" NLRaVFJASEj/Q~?|?sT*D\"=pB^t+u?![]en@xf()r";

/// WFDB's one-character mnemonic for an annotation code (ecgcodes.h), `?` for unused codes.
pub fn mnemonic(code: u8) -> char {
    MNEMONICS.get(usize::from(code)).map_or('?', |&c| c as char)
}

/// The code of a one-character WFDB mnemonic (`N`, `V`, `/`, ...), as EDF+ files written from
/// WFDB records name their beats; `None` for other texts.
pub fn code_from_mnemonic(text: &str) -> Option<u8> {
    let &[c] = text.trim().as_bytes() else {
        return None;
    };
    (c != b' ' && c != b'?')
        .then(|| MNEMONICS.iter().position(|&m| m == c))
        .flatten()
        .map(|i| i as u8)
}
