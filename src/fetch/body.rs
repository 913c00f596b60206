//! Reading a response body within limits, decompressing it ourselves, and decoding its text.
//!
//! The size limit counts **decoded** bytes and the decompression ratio is capped while
//! streaming: applying the limit to the compressed size (Scrapy's CVE-2024-3572 and
//! CVE-2025-6176) lets a 10 KB gzip bomb expand to gigabytes. The charset comes from a BOM,
//! the `Content-Type` header, a `<meta charset>` in the first kilobytes, or detection
//! (chardetng, Firefox's detector), in that order. A zstd stream may ask for a window of at
//! most 8 MiB (RFC 9659; the library's default would let one response allocate 128 MiB).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
use futures_util::TryStreamExt;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, BufReader};
use tokio_util::io::StreamReader;

use super::error::{FetchError, FetchErrorKind, FetchResult};

/// Limits applied while reading.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest decoded body, bytes.
    pub max_bytes: u64,
    /// Largest decoded / wire size ratio.
    pub max_ratio: u64,
}

/// The largest zstd window a response may use: 2^23 = 8 MiB (RFC 9659, section 3).
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// Below this many wire bytes the ratio is not judged (tiny compressed pages are normal).
const RATIO_FLOOR_BYTES: u64 = 4096;

/// A body as read: decoded bytes and the bytes that crossed the wire.
pub struct Body {
    /// Decoded (decompressed) bytes.
    pub bytes: Vec<u8>,
    /// Bytes received (compressed, before decoding).
    pub wire_bytes: u64,
}

/// Reads `response`'s body, decompressing by its `Content-Encoding`, within `limits`.
pub async fn read(response: reqwest::Response, url: &str, limits: BodyLimits) -> FetchResult<Body> {
    let too_large = |message: String| FetchError::new(FetchErrorKind::TooLarge, url, message);
    let declared_length = response.content_length().unwrap_or(0);
    if let Some(declared) = response.content_length()
        && declared > limits.max_bytes
    {
        return Err(too_large(format!(
            "Content-Length {declared} is over the {}-byte limit",
            limits.max_bytes
        )));
    }
    let encoding = response
        .headers()
        .get(reqwest::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    if matches!(encoding.as_str(), "identity" | "") {
        return read_identity(response, url, limits.max_bytes, declared_length).await;
    }
    let wire = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&wire);
    let stream = response
        .bytes_stream()
        .inspect_ok(move |chunk| {
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        })
        .map_err(std::io::Error::other);
    let raw = BufReader::new(StreamReader::new(stream));
    let mut decoder: Box<dyn AsyncRead + Send + Unpin> = match encoding.as_str() {
        "gzip" | "x-gzip" => Box::new(multi(GzipDecoder::new(raw))),
        "br" => Box::new(BrotliDecoder::new(raw)),
        "zstd" => Box::new(multi_zstd(ZstdDecoder::with_params(
            raw,
            &[async_compression::zstd::DParameter::window_log_max(
                ZSTD_WINDOW_LOG_MAX,
            )],
        ))),
        "deflate" => Box::new(ZlibDecoder::new(raw)),
        other => {
            return Err(FetchError::new(
                FetchErrorKind::Decode,
                url,
                format!("unsupported Content-Encoding {other:?}"),
            ));
        }
    };
    // Read straight into the body (no zeroed scratch buffer per page).
    let mut bytes =
        Vec::with_capacity(usize::try_from(declared_length.min(limits.max_bytes)).unwrap_or(0));
    loop {
        if bytes.capacity() - bytes.len() < 16 * 1024 {
            bytes.reserve(64 * 1024);
        }
        let read = decoder
            .read_buf(&mut bytes)
            .await
            .map_err(|e| read_error(url, &e))?;
        if read == 0 {
            break;
        }
        let decoded_len = bytes.len() as u64;
        if decoded_len > limits.max_bytes {
            return Err(too_large(format!(
                "body is over the {}-byte limit (counted after decompression)",
                limits.max_bytes
            )));
        }
        let received = wire.load(Ordering::Relaxed);
        if decoded_len
            > limits
                .max_ratio
                .saturating_mul(received.max(RATIO_FLOOR_BYTES))
        {
            return Err(too_large(format!(
                "{received} bytes decompress to over {decoded_len}: more than the allowed ratio \
                 of {} (a compression bomb?)",
                limits.max_ratio
            )));
        }
    }
    Ok(Body {
        bytes,
        wire_bytes: wire.load(Ordering::Relaxed),
    })
}

/// An uncompressed body: each chunk is copied once, straight into the body (no bounce
/// buffer), and the size limit is checked as chunks arrive.
async fn read_identity(
    mut response: reqwest::Response,
    url: &str,
    max_bytes: u64,
    declared_length: u64,
) -> FetchResult<Body> {
    let mut bytes =
        Vec::with_capacity(usize::try_from(declared_length.min(max_bytes)).unwrap_or(0));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| read_error(url, &std::io::Error::other(e)))?
    {
        if (bytes.len() + chunk.len()) as u64 > max_bytes {
            return Err(FetchError::new(
                FetchErrorKind::TooLarge,
                url,
                format!("body is over the {max_bytes}-byte limit"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let wire_bytes = bytes.len() as u64;
    Ok(Body { bytes, wire_bytes })
}

fn multi<R: AsyncBufRead>(mut decoder: GzipDecoder<R>) -> GzipDecoder<R> {
    decoder.multiple_members(true);
    decoder
}

fn multi_zstd<R: AsyncBufRead>(mut decoder: ZstdDecoder<R>) -> ZstdDecoder<R> {
    decoder.multiple_members(true);
    decoder
}

fn read_error(url: &str, error: &std::io::Error) -> FetchError {
    // The stream's own errors (timeouts, resets) arrive wrapped in io::Error::other.
    if let Some(inner) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<reqwest::Error>())
    {
        if inner.is_timeout() {
            return FetchError::new(
                FetchErrorKind::Timeout,
                url,
                "no data within the read timeout",
            );
        }
        return FetchError::new(FetchErrorKind::Connect, url, format!("body: {inner}"));
    }
    FetchError::new(
        FetchErrorKind::Decode,
        url,
        format!("cannot decode the body: {error}"),
    )
}

/// The body as text and the name of the encoding used.
pub fn decode_text(bytes: &[u8], content_type: Option<&str>) -> (String, &'static str) {
    let encoding = sniff_encoding(bytes, content_type);
    let (text, used, _had_errors) = encoding.decode(bytes);
    (text.into_owned(), used.name())
}

/// [`decode_text`] of a body that is no longer needed: UTF-8 text keeps its buffer (no copy).
pub fn decode_text_owned(bytes: Vec<u8>, content_type: Option<&str>) -> (String, &'static str) {
    let encoding = sniff_encoding(&bytes, content_type);
    if encoding == encoding_rs::UTF_8 && !bytes.starts_with(b"\xEF\xBB\xBF") {
        match String::from_utf8(bytes) {
            Ok(text) => return (text, encoding.name()),
            // Invalid sequences: decode with replacement characters, as the copy would.
            Err(error) => return decode_text(error.as_bytes(), content_type),
        }
    }
    decode_text(&bytes, content_type)
}

fn sniff_encoding(bytes: &[u8], content_type: Option<&str>) -> &'static encoding_rs::Encoding {
    if let Some((encoding, _)) = encoding_rs::Encoding::for_bom(bytes) {
        return encoding;
    }
    if let Some(encoding) = content_type
        .and_then(charset_param)
        .and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()))
    {
        return encoding;
    }
    if let Some(encoding) = meta_charset(&bytes[..bytes.len().min(4096)]) {
        return encoding;
    }
    // Valid UTF-8 is UTF-8 (or ASCII, which decodes the same): the cheap check first, the
    // statistical detector (tens of times slower) only for the rest.
    if std::str::from_utf8(bytes).is_ok() {
        return encoding_rs::UTF_8;
    }
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(
        &bytes[..bytes.len().min(64 * 1024)],
        bytes.len() <= 64 * 1024,
    );
    detector.guess(None, chardetng::Utf8Detection::Allow)
}

fn charset_param(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches(['"', '\'']).to_owned())
    })
}

/// `<meta charset="...">` or `<meta http-equiv="Content-Type" content="...; charset=...">`.
fn meta_charset(head: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let lower = head.to_ascii_lowercase();
    let mut from = 0;
    while let Some(offset) = find(&lower[from..], b"<meta") {
        let start = from + offset;
        let end = find(&lower[start..], b">").map_or(lower.len(), |e| start + e);
        let tag = &lower[start..end];
        if let Some(at) = find(tag, b"charset=") {
            let value: Vec<u8> = tag[at + 8..]
                .iter()
                .copied()
                .skip_while(|b| *b == b'"' || *b == b'\'' || b.is_ascii_whitespace())
                .take_while(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(b))
                .collect();
            if let Some(encoding) = encoding_rs::Encoding::for_label(&value) {
                // A page cannot declare UTF-16 in ASCII-compatible bytes; HTML says use UTF-8.
                return Some(
                    if encoding == encoding_rs::UTF_16LE || encoding == encoding_rs::UTF_16BE {
                        encoding_rs::UTF_8
                    } else {
                        encoding
                    },
                );
            }
        }
        from = end;
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_charset_wins_over_detection() {
        let latin1 = b"caf\xe9 cr\xe8me";
        let (text, encoding) = decode_text(latin1, Some("text/html; charset=ISO-8859-1"));
        assert_eq!(text, "café crème");
        assert_eq!(encoding, "windows-1252");
    }

    #[test]
    fn meta_charset_is_used_without_a_header_charset() {
        let page = b"<html><head><meta charset=\"windows-1251\"></head><body>\xcf\xf0\xe8\xe2\xe5\xf2</body>";
        let (text, encoding) = decode_text(page, Some("text/html"));
        assert!(text.contains("Привет"), "{text}");
        assert_eq!(encoding, "windows-1251");
        let http_equiv = b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=shift_jis\">\x93\xfa\x96\x7b";
        assert_eq!(decode_text(http_equiv, None).1, "Shift_JIS");
    }

    fn zstd(data: &[u8], window_log: u32) -> Vec<u8> {
        use async_compression::tokio::bufread::ZstdEncoder;
        use async_compression::zstd::CParameter;
        run(async {
            let mut encoder = ZstdEncoder::with_quality_and_params(
                data,
                async_compression::Level::Fastest,
                &[CParameter::window_log(window_log)],
            );
            let mut out = Vec::new();
            encoder.read_to_end(&mut out).await.unwrap();
            out
        })
    }

    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn response(body: Vec<u8>, encoding: &str) -> reqwest::Response {
        axum::http::Response::builder()
            .header("content-encoding", encoding)
            .body(body)
            .unwrap()
            .into()
    }

    #[test]
    fn a_zstd_window_over_8_mib_is_refused() {
        // 9 MiB, so the frame needs its window whatever the encoder pledges.
        let data: Vec<u8> = (0..9 * 1024 * 1024_u32).map(|i| (i % 251) as u8).collect();
        let limits = BodyLimits {
            max_bytes: 64 * 1024 * 1024,
            max_ratio: u64::MAX,
        };
        let big = zstd(&data, 24);
        let error = run(read(response(big, "zstd"), "http://127.0.0.1/z", limits))
            .err()
            .expect("a 16 MiB window is refused");
        assert_eq!(error.kind, FetchErrorKind::Decode, "{error}");
        let fine = zstd(&data, 23);
        let body = run(read(response(fine, "zstd"), "http://127.0.0.1/z", limits)).unwrap();
        assert_eq!(body.bytes, data);
    }

    #[test]
    fn bom_and_detection() {
        let (text, encoding) = decode_text(b"\xef\xbb\xbfhello", Some("text/html; charset=latin1"));
        assert_eq!((text.as_str(), encoding), ("hello", "UTF-8"));
        let utf8 = "déjà vu — ünïcödé".as_bytes();
        assert_eq!(decode_text(utf8, None).1, "UTF-8");
    }
}
