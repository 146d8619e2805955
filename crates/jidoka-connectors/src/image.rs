//! Perceptual hashes of inspection and NCR images.
//!
//! A defect photographed twice looks alike even when the light, the exposure or the framing
//! differ a little; a 64-bit perceptual hash keeps what the eye keeps (the low frequencies of
//! the picture) and drops the rest, so two photos of the same kind of defect in the same place
//! are a few bits apart and photos of different defects about half the bits apart. The defect
//! pattern agent groups uncoded NCRs by these hashes (Hamming distance), as it groups them by
//! their text.
//!
//! The hash is the DCT hash (pHash): the picture in grey, averaged down to 32 × 32, its 2-D
//! DCT-II, and of the 8 × 8 lowest frequencies one bit each, set when the coefficient is above
//! the median of the 63 AC ones (the DC bit, the mean brightness, is always set). PNG (any colour type and depth), baseline and progressive JPEG and binary PGM
//! are read. Decoding is bounded: at most [`MAX_IMAGE_BYTES`] of file and [`MAX_PIXELS`]
//! pixels, and nothing in here panics on input.

use std::io::Cursor;

/// Largest image file read.
pub const MAX_IMAGE_BYTES: usize = 32 * 1024 * 1024;

/// Largest picture decoded (width × height).
pub const MAX_PIXELS: usize = 50_000_000;

/// Why an image gives no hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ImageError {
    pub field: &'static str,
    pub reason: String,
}

fn err(field: &'static str, reason: impl Into<String>) -> ImageError {
    ImageError { field, reason: reason.into() }
}

/// A grey picture, one byte per pixel, row by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gray {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl Gray {
    fn new(width: usize, height: usize, pixels: Vec<u8>) -> Result<Gray, ImageError> {
        if width == 0 || height == 0 {
            return Err(err("image", "has no pixels"));
        }
        if pixels.len() != width * height {
            return Err(err("image", format!("{} bytes for {width} × {height} pixels", pixels.len())));
        }
        Ok(Gray { width, height, pixels })
    }
}

fn check_size(width: usize, height: usize) -> Result<(), ImageError> {
    match width.checked_mul(height) {
        Some(n) if n <= MAX_PIXELS => Ok(()),
        _ => Err(err("image", format!("{width} × {height} pixels, more than {MAX_PIXELS}"))),
    }
}

/// Decode a PNG, JPEG or binary PGM file to grey, by its first bytes.
pub fn decode_gray(bytes: &[u8]) -> Result<Gray, ImageError> {
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(err("image", format!("{} bytes, more than {MAX_IMAGE_BYTES}", bytes.len())));
    }
    match bytes {
        [0x89, b'P', b'N', b'G', ..] => decode_png(bytes),
        [0xFF, 0xD8, ..] => decode_jpeg(bytes),
        [b'P', b'5', ..] => decode_pgm(bytes),
        _ => Err(err("image", "not a PNG, JPEG or binary PGM file")),
    }
}

fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b) + 500) / 1000) as u8
}

fn decode_png(bytes: &[u8]) -> Result<Gray, ImageError> {
    let png_err = |e: png::DecodingError| err("image", format!("PNG: {e}"));
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), png::Limits { bytes: MAX_PIXELS * 4 });
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(png_err)?;
    let (w, h) = (reader.info().width as usize, reader.info().height as usize);
    check_size(w, h)?;
    let size = reader.output_buffer_size().ok_or_else(|| err("image", "PNG: too large to decode"))?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).map_err(png_err)?;
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err(err("image", "PNG: palette not expanded")),
    };
    let (w, h) = (info.width as usize, info.height as usize);
    let mut pixels = Vec::with_capacity(w * h);
    for row in buf.chunks(info.line_size.max(1)).take(h) {
        for px in row.chunks_exact(channels).take(w) {
            pixels.push(if channels >= 3 { luma(px[0], px[1], px[2]) } else { px[0] });
        }
    }
    Gray::new(w, h, pixels)
}

fn decode_jpeg(bytes: &[u8]) -> Result<Gray, ImageError> {
    use zune_jpeg::zune_core::{bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions};
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::Luma)
        .set_max_width(1 << 16)
        .set_max_height(1 << 16);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(|e| err("image", format!("JPEG: {e:?}")))?;
    let info = decoder.info().ok_or_else(|| err("image", "JPEG: no frame header"))?;
    let (w, h) = (usize::from(info.width), usize::from(info.height));
    check_size(w, h)?;
    let pixels = decoder.decode().map_err(|e| err("image", format!("JPEG: {e:?}")))?;
    match pixels.len() / (w * h).max(1) {
        3 => Gray::new(w, h, pixels.chunks_exact(3).map(|p| luma(p[0], p[1], p[2])).collect()),
        _ => Gray::new(w, h, pixels),
    }
}

/// Binary PGM (`P5`): header fields separated by white space (with `#` comments), then one
/// byte per pixel (maxval < 256) or two, big-endian.
fn decode_pgm(bytes: &[u8]) -> Result<Gray, ImageError> {
    let mut pos = 2;
    let mut fields = [0usize; 3];
    for (i, name) in ["width", "height", "maxval"].iter().enumerate() {
        loop {
            match bytes.get(pos) {
                Some(b'#') => {
                    while bytes.get(pos).is_some_and(|&b| b != b'\n') {
                        pos += 1;
                    }
                }
                Some(b) if b.is_ascii_whitespace() => pos += 1,
                _ => break,
            }
        }
        let start = pos;
        while bytes.get(pos).is_some_and(u8::is_ascii_digit) && pos - start < 9 {
            pos += 1;
        }
        fields[i] = std::str::from_utf8(&bytes[start..pos])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| err("image", format!("PGM: {name} is not a number")))?;
    }
    let [w, h, maxval] = fields;
    if !(1..=65535).contains(&maxval) {
        return Err(err("image", format!("PGM: maxval {maxval} is not 1–65535")));
    }
    check_size(w, h)?;
    let data = bytes.get(pos + 1..).unwrap_or_default();
    let per = if maxval < 256 { 1 } else { 2 };
    if data.len() < w * h * per {
        return Err(err("image", format!("PGM: {} bytes of pixels for {w} × {h}", data.len())));
    }
    let pixels = data
        .chunks_exact(per)
        .take(w * h)
        .map(|p| {
            let v = if per == 1 { u32::from(p[0]) } else { u32::from(p[0]) << 8 | u32::from(p[1]) };
            (v.min(maxval as u32) * 255 / maxval as u32) as u8
        })
        .collect();
    Gray::new(w, h, pixels)
}

const SIDE: usize = 32;
const LOW: usize = 8;

/// The picture averaged down (or sampled up) to 32 × 32.
fn shrink(g: &Gray) -> Vec<f64> {
    let mut out = vec![0f64; SIDE * SIDE];
    for oy in 0..SIDE {
        let (y0, y1) = (oy * g.height / SIDE, ((oy + 1) * g.height).div_ceil(SIDE).max(oy * g.height / SIDE + 1));
        for ox in 0..SIDE {
            let (x0, x1) = (ox * g.width / SIDE, ((ox + 1) * g.width).div_ceil(SIDE).max(ox * g.width / SIDE + 1));
            let (mut sum, mut n) = (0u64, 0u64);
            for y in y0..y1.min(g.height) {
                for x in x0..x1.min(g.width) {
                    sum += u64::from(g.pixels.get(y * g.width + x).copied().unwrap_or(0));
                    n += 1;
                }
            }
            out[oy * SIDE + ox] = sum as f64 / n.max(1) as f64;
        }
    }
    out
}

/// The 64-bit DCT perceptual hash of a grey picture (bit 0, the mean brightness, is always set,
/// so 63 bits carry the picture). Pixels missing from a short buffer count as black.
pub fn phash_gray(g: &Gray) -> u64 {
    let small = shrink(g);
    // DCT-II basis for the 8 lowest frequencies over 32 samples.
    let mut basis = [[0f64; SIDE]; LOW];
    for (u, row) in basis.iter_mut().enumerate() {
        for (x, b) in row.iter_mut().enumerate() {
            *b = ((2 * x + 1) as f64 * u as f64 * std::f64::consts::PI / (2 * SIDE) as f64).cos();
        }
    }
    // Rows first (32 rows × 8 frequencies), then columns.
    let mut rows = vec![[0f64; LOW]; SIDE];
    for (y, r) in rows.iter_mut().enumerate() {
        for (u, out) in r.iter_mut().enumerate() {
            *out = (0..SIDE).map(|x| small[y * SIDE + x] * basis[u][x]).sum();
        }
    }
    let mut coef = [0f64; LOW * LOW];
    for v in 0..LOW {
        for u in 0..LOW {
            coef[v * LOW + u] = (0..SIDE).map(|y| rows[y][u] * basis[v][y]).sum();
        }
    }
    // The median of the 63 AC coefficients (the DC term is the mean brightness).
    let mut ac: Vec<f64> = coef[1..].to_vec();
    ac.sort_by(f64::total_cmp);
    let median = ac[ac.len() / 2];
    coef.iter().enumerate().fold(0u64, |h, (i, &c)| if c > median { h | 1 << i } else { h })
}

/// The perceptual hash of an image file's bytes.
pub fn phash(bytes: &[u8]) -> Result<u64, ImageError> {
    decode_gray(bytes).map(|g| phash_gray(&g))
}

/// Bits two hashes differ in (0 = alike, about 32 = unrelated).
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// A hash as events carry it: 16 lower-case hex digits.
pub fn format_hash(h: u64) -> String {
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grey part surface with a dark scratch from (x0, y0) to (x1, y1), lit by `light` and
    /// with a little sensor noise.
    pub(crate) fn scratch(w: usize, h: usize, from: (f64, f64), to: (f64, f64), light: f64, seed: u64) -> Gray {
        let mut rng = seed | 1;
        let mut pixels = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                let (px, py) = (x as f64 / w as f64, y as f64 / h as f64);
                let (dx, dy) = (to.0 - from.0, to.1 - from.1);
                let t = (((px - from.0) * dx + (py - from.1) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
                let d = ((px - from.0 - t * dx).powi(2) + (py - from.1 - t * dy).powi(2)).sqrt();
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let noise = (rng % 21) as f64 - 10.0;
                let v = light * (150.0 + 40.0 * px) - if d < 0.03 { 110.0 } else { 0.0 } + noise;
                pixels.push(v.clamp(0.0, 255.0) as u8);
            }
        }
        Gray { width: w, height: h, pixels }
    }

    #[test]
    fn the_same_defect_under_other_light_and_size_stays_close_and_another_defect_does_not() {
        let a = phash_gray(&scratch(640, 480, (0.1, 0.2), (0.5, 0.3), 1.0, 1));
        let b = phash_gray(&scratch(320, 240, (0.11, 0.2), (0.5, 0.31), 0.8, 2));
        let c = phash_gray(&scratch(640, 480, (0.7, 0.9), (0.8, 0.4), 1.0, 3));
        assert!(hamming(a, b) <= 8, "same defect: {} bits apart", hamming(a, b));
        assert!(hamming(a, c) >= 16, "other defect: {} bits apart", hamming(a, c));
    }

    #[test]
    fn png_and_pgm_decode_and_hash_alike() {
        let g = scratch(96, 64, (0.2, 0.2), (0.8, 0.7), 1.0, 5);
        let mut png_bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut png_bytes, 96, 64);
            enc.set_color(png::ColorType::Rgb);
            let mut w = enc.write_header().unwrap();
            let rgb: Vec<u8> = g.pixels.iter().flat_map(|&p| [p, p, p]).collect();
            w.write_image_data(&rgb).unwrap();
        }
        let from_png = decode_gray(&png_bytes).unwrap();
        assert_eq!((from_png.width, from_png.height), (96, 64));
        assert!(from_png.pixels.iter().zip(&g.pixels).all(|(a, b)| a.abs_diff(*b) <= 1));
        let mut pgm = b"P5\n# a comment\n96 64\n255\n".to_vec();
        pgm.extend_from_slice(&g.pixels);
        assert_eq!(decode_gray(&pgm).unwrap(), g);
        assert!(hamming(phash(&png_bytes).unwrap(), phash(&pgm).unwrap()) <= 2);
    }

    #[test]
    fn jpeg_files_hash_like_the_same_picture_in_other_formats() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images");
        let hash = |name: &str| phash(&std::fs::read(dir.join(name)).unwrap()).unwrap();
        let a = hash("scratch-a.pgm");
        let g = decode_gray(&std::fs::read(dir.join("scratch-a.jpg")).unwrap()).unwrap();
        assert_eq!((g.width, g.height), (160, 120));
        assert!(hamming(a, hash("scratch-a.jpg")) <= 4, "JPEG of the same picture");
        assert!(hamming(a, hash("scratch-a-again.jpg")) <= 10, "the same defect again");
        assert!(hamming(hash("scratch-b.jpg"), hash("scratch-b.png")) <= 4);
        assert!(hamming(a, hash("scratch-b.jpg")) >= 16, "another defect");
    }

    #[test]
    fn bad_images_are_named_not_panicked_on() {
        for (bytes, want) in [
            (b"GIF89a".to_vec(), "not a PNG"),
            (b"\x89PNG\r\n\x1a\n\0\0".to_vec(), "PNG:"),
            (vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 2], "JPEG:"),
            (b"P5 10 10 255\n\x01\x02".to_vec(), "bytes of pixels"),
            (b"P5 x 10 255\n".to_vec(), "width is not a number"),
            (b"P5 100000 100000 255\n".to_vec(), "more than"),
            (b"P5 2 2 0\n\0\0\0\0".to_vec(), "maxval"),
        ] {
            let e = phash(&bytes).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn tiny_pictures_hash_too() {
        let g = Gray { width: 3, height: 2, pixels: vec![0, 255, 0, 255, 0, 255] };
        assert_eq!(phash_gray(&g) & 1, 1);
        // A picture built by hand with too few pixels hashes as if the rest were black.
        let short = Gray { width: 40, height: 40, pixels: vec![200; 100] };
        let _ = phash_gray(&short);
        assert_eq!(format_hash(0xab), "00000000000000ab");
    }
}
