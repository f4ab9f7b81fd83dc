//! The codecs behind `CompressionStream`/`DecompressionStream` (as deno_web runs them), writing
//! into an output buffer that is charged to the isolate's memory account as it grows, so a
//! small input that decompresses to gigabytes stops at the limit instead of filling memory.

use std::io::{self, Write};

use brotli::enc::encode::{
    BrotliEncoderOperation, BrotliEncoderParameter, BrotliEncoderStateStruct,
};
use brotli::writer::StandardAlloc;
use deno_web::CompressionError;
use flate2::Compression;
use flate2::write::{
    DeflateDecoder, DeflateEncoder, GzDecoder, GzEncoder, ZlibDecoder, ZlibEncoder,
};

use crate::memory::{Charge, MemoryAccount, OverLimit};

const KIB: usize = 1024;
/// A DEFLATE compressor (miniz_oxide: hash chains and dictionary ~160 KiB, LZ code buffer
/// 64 KiB, Huffman tables) plus flate2's 32 KiB write buffer.
const DEFLATE_ENCODER_BYTES: usize = 288 * KIB;
/// A DEFLATE decompressor (32 KiB window, decoding tables) plus flate2's 32 KiB buffer.
const DEFLATE_DECODER_BYTES: usize = 80 * KIB;
/// A brotli compressor at quality 6 / window 22: hash tables ~1 MiB and a ring buffer that
/// grows to the 4 MiB window.
const BROTLI_ENCODER_BYTES: usize = 5 * KIB * KIB;
/// A brotli decompressor: the ring buffer of the largest window a stream may declare
/// (16 MiB), plus state and the 4 KiB buffer.
const BROTLI_DECODER_BYTES: usize = 16 * KIB * KIB + 64 * KIB;

const BROTLI_QUALITY: u32 = 6;
const BROTLI_LGWIN: u32 = 22;

/// Output a codec wrote that JavaScript has not taken yet, charged while it is held here.
#[derive(Debug)]
pub(super) struct Output {
    bytes: Vec<u8>,
    charge: Charge,
}

impl Output {
    fn new(account: &MemoryAccount) -> Result<Self, OverLimit> {
        Ok(Self {
            bytes: Vec::new(),
            charge: account.charge(0)?,
        })
    }

    /// Hands the output over (to JavaScript), releasing its charge.
    fn take(&mut self) -> Vec<u8> {
        self.charge.shrink(self.bytes.len());
        std::mem::take(&mut self.bytes)
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.charge
            .grow(buf.len())
            .map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, e))?;
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One stream's codec (<https://wicg.github.io/compression/#supported-formats>).
pub(super) enum Codec {
    DeflateDecoder(ZlibDecoder<Output>),
    DeflateEncoder(ZlibEncoder<Output>),
    DeflateRawDecoder(DeflateDecoder<Output>),
    DeflateRawEncoder(DeflateEncoder<Output>),
    GzDecoder(GzDecoder<Output>),
    GzEncoder(GzEncoder<Output>),
    BrotliDecoder(Box<brotli::DecompressorWriter<Output>>),
    BrotliEncoder(Box<BrotliEncoder>),
}

/// Why a codec could not be made.
#[derive(Debug, thiserror::Error, deno_error::JsError)]
pub enum CodecError {
    /// deno_web's errors (unsupported format, closed stream, corrupt input).
    #[class(inherit)]
    #[error(transparent)]
    Compression(#[from] CompressionError),
    /// The codec's state does not fit under the isolate's memory limit.
    #[class(inherit)]
    #[error(transparent)]
    OverLimit(#[from] OverLimit),
}

impl Codec {
    /// The codec for `format`, with the bytes its state is estimated to take.
    pub(super) fn new(
        format: &str,
        is_decoder: bool,
        account: &MemoryAccount,
    ) -> Result<(Self, usize), CodecError> {
        let out = Output::new(account)?;
        let level = Compression::default();
        Ok(match (format, is_decoder) {
            ("deflate", true) => (
                Self::DeflateDecoder(ZlibDecoder::new(out)),
                DEFLATE_DECODER_BYTES,
            ),
            ("deflate", false) => (
                Self::DeflateEncoder(ZlibEncoder::new(out, level)),
                DEFLATE_ENCODER_BYTES,
            ),
            ("deflate-raw", true) => (
                Self::DeflateRawDecoder(DeflateDecoder::new(out)),
                DEFLATE_DECODER_BYTES,
            ),
            ("deflate-raw", false) => (
                Self::DeflateRawEncoder(DeflateEncoder::new(out, level)),
                DEFLATE_ENCODER_BYTES,
            ),
            ("gzip", true) => (Self::GzDecoder(GzDecoder::new(out)), DEFLATE_DECODER_BYTES),
            ("gzip", false) => (
                Self::GzEncoder(GzEncoder::new(out, level)),
                DEFLATE_ENCODER_BYTES,
            ),
            ("brotli", true) => (
                Self::BrotliDecoder(Box::new(brotli::DecompressorWriter::new(out, 4096))),
                BROTLI_DECODER_BYTES,
            ),
            ("brotli", false) => (
                Self::BrotliEncoder(Box::new(BrotliEncoder::new())),
                BROTLI_ENCODER_BYTES,
            ),
            _ => return Err(CompressionError::UnsupportedFormat.into()),
        })
    }

    /// Feeds `input`; returns the output produced so far.
    pub(super) fn write(&mut self, input: &[u8]) -> Result<Vec<u8>, CompressionError> {
        fn decode<W: Write>(d: &mut W, input: &[u8]) -> Result<(), CompressionError> {
            d.write_all(input).map_err(CompressionError::IoTypeError)?;
            d.flush().map_err(CompressionError::Io)
        }
        fn encode<W: Write>(e: &mut W, input: &[u8]) -> Result<(), CompressionError> {
            e.write_all(input).map_err(CompressionError::IoTypeError)
        }
        Ok(match self {
            Self::DeflateDecoder(d) => {
                decode(d, input)?;
                d.get_mut().take()
            }
            Self::DeflateEncoder(e) => {
                encode(e, input)?;
                e.get_mut().take()
            }
            Self::DeflateRawDecoder(d) => {
                decode(d, input)?;
                d.get_mut().take()
            }
            Self::DeflateRawEncoder(e) => {
                encode(e, input)?;
                e.get_mut().take()
            }
            Self::GzDecoder(d) => {
                decode(d, input)?;
                d.get_mut().take()
            }
            Self::GzEncoder(e) => {
                encode(e, input)?;
                e.get_mut().take()
            }
            Self::BrotliDecoder(d) => {
                decode(d.as_mut(), input)?;
                d.get_mut().take()
            }
            Self::BrotliEncoder(e) => {
                e.compress(input, BrotliEncoderOperation::BROTLI_OPERATION_PROCESS)?
            }
        })
    }

    /// Ends the stream; returns the rest of the output.
    pub(super) fn finish(self) -> Result<Vec<u8>, CompressionError> {
        let out = match self {
            Self::DeflateDecoder(d) => d.finish(),
            Self::DeflateEncoder(e) => e.finish(),
            Self::DeflateRawDecoder(d) => d.finish(),
            Self::DeflateRawEncoder(e) => e.finish(),
            Self::GzDecoder(d) => d.finish(),
            Self::GzEncoder(e) => e.finish(),
            Self::BrotliDecoder(d) => d.into_inner().map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, "brotli decompression failed")
            }),
            Self::BrotliEncoder(mut e) => {
                return e.compress(&[], BrotliEncoderOperation::BROTLI_OPERATION_FINISH);
            }
        };
        out.map(|mut out| out.take())
            .map_err(CompressionError::IoTypeError)
    }
}

/// deno_web's brotli compressor: input is fed without flushing, so the output does not
/// depend on how the input was chunked.
pub(super) struct BrotliEncoder {
    state: BrotliEncoderStateStruct<StandardAlloc>,
}

impl BrotliEncoder {
    fn new() -> Self {
        let mut state = BrotliEncoderStateStruct::new(StandardAlloc::default());
        state.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_QUALITY, BROTLI_QUALITY);
        state.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_LGWIN, BROTLI_LGWIN);
        Self { state }
    }

    fn compress(
        &mut self,
        input: &[u8],
        operation: BrotliEncoderOperation,
    ) -> Result<Vec<u8>, CompressionError> {
        let mut input_offset = 0;
        let mut available_in = input.len();
        let mut output = vec![0; max_brotli_compressed_size(input.len()).max(1024)];
        let mut output_offset = 0;
        let mut total_out = Some(0);
        loop {
            let mut available_out = output.len() - output_offset;
            let ok = self.state.compress_stream(
                operation,
                &mut available_in,
                input,
                &mut input_offset,
                &mut available_out,
                &mut output,
                &mut output_offset,
                &mut total_out,
                &mut |_, _, _, _| (),
            );
            if !ok {
                return Err(CompressionError::IoTypeError(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "brotli compression failed",
                )));
            }
            let done = match operation {
                BrotliEncoderOperation::BROTLI_OPERATION_FINISH => self.state.is_finished(),
                _ => available_in == 0 && !self.state.has_more_output(),
            };
            if done {
                output.truncate(output_offset);
                return Ok(output);
            }
            if output_offset == output.len() {
                output.resize(output.len() + 1024, 0);
            }
        }
    }
}

/// The largest brotli output for `input_size` bytes of input (uncompressed meta-blocks).
fn max_brotli_compressed_size(input_size: usize) -> usize {
    if input_size == 0 {
        return 2;
    }
    let num_large_blocks = input_size >> 14;
    let overhead = 2 + (4 * num_large_blocks) + 3 + 1;
    input_size.saturating_add(overhead)
}
