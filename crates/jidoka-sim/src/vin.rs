//! Vehicle identification numbers: 17 characters, ISO 3779 structure, with the North American
//! check digit in position 9 (49 CFR 565).

/// Letters never used in a VIN (easily confused with digits).
const FORBIDDEN: [char; 3] = ['I', 'O', 'Q'];

const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];

fn transliterate(c: char) -> Option<u32> {
    match c {
        '0'..='9' => c.to_digit(10),
        'A' | 'J' => Some(1),
        'B' | 'K' | 'S' => Some(2),
        'C' | 'L' | 'T' => Some(3),
        'D' | 'M' | 'U' => Some(4),
        'E' | 'N' | 'V' => Some(5),
        'F' | 'W' => Some(6),
        'G' | 'P' | 'X' => Some(7),
        'H' | 'Y' => Some(8),
        'R' | 'Z' => Some(9),
        _ => None,
    }
}

/// The check digit for a 17-character VIN (the character at position 9 is ignored).
pub fn check_digit(vin: &str) -> Option<char> {
    let chars: Vec<char> = vin.chars().collect();
    if chars.len() != 17 {
        return None;
    }
    let mut sum = 0;
    for (c, w) in chars.iter().zip(WEIGHTS) {
        sum += transliterate(*c)? * w;
    }
    Some(match sum % 11 {
        10 => 'X',
        d => char::from_digit(d, 10)?,
    })
}

/// Whether a VIN is 17 allowed characters with a correct check digit.
pub fn is_valid(vin: &str) -> bool {
    vin.len() == 17
        && vin.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && !vin.chars().any(|c| FORBIDDEN.contains(&c))
        && check_digit(vin) == vin.chars().nth(8)
}

/// Build a VIN from its parts: world manufacturer id (3), vehicle descriptor (5), model year
/// (1), plant (1) and a serial number (last 6 digits). The check digit is computed.
pub fn build(wmi: &str, vds: &str, model_year: char, plant: char, serial: u64) -> Option<String> {
    let draft = format!("{wmi}{vds}0{model_year}{plant}{:06}", serial % 1_000_000);
    let digit = check_digit(&draft)?;
    let mut vin: Vec<char> = draft.chars().collect();
    vin[8] = digit;
    let vin: String = vin.into_iter().collect();
    is_valid(&vin).then_some(vin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vins_check() {
        // Published examples with correct check digits.
        assert!(is_valid("1HGCM82633A004352"));
        assert!(is_valid("11111111111111111"));
        assert!(is_valid("1M8GDM9AXKP042788"), "check digit X");
        assert!(!is_valid("1HGCM82643A004352"), "wrong check digit");
        assert!(!is_valid("1HGCM82633A00435"), "16 characters");
        assert!(!is_valid("1HGCM8263IA004352"), "forbidden letter I");
    }

    #[test]
    fn built_vins_are_valid_and_distinct() {
        let a = build("5J4", "SUVA5", 'T', 'D', 1).expect("vin");
        let b = build("5J4", "SUVA5", 'T', 'D', 2).expect("vin");
        assert!(is_valid(&a) && is_valid(&b));
        assert_ne!(a, b);
        assert_eq!(&a[11..], "000001");
        assert!(build("5J4", "SUVO5", 'T', 'D', 1).is_none(), "O is not allowed");
    }
}
