//! Reading a fuzz input as a stream of small decisions.

/// The fuzz input, consumed from the front. Past its end every read yields zeros or
/// empty slices, so any input, even an empty one, is a complete description.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether the input is used up.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// One byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// A choice among `n` options (`n >= 1`).
    pub fn choose(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n.max(1)
    }

    /// One of `options` (not empty).
    pub fn pick<T: Copy>(&mut self, options: &[T]) -> T {
        options[self.choose(options.len())]
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        u64::from_le_bytes(b)
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// A length-prefixed chunk: one length byte, then up to that many bytes.
    pub fn chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte());
        self.take(n)
    }

    /// A longer length-prefixed chunk: a `u16` length (capped at `max`), then the bytes.
    pub fn long_chunk(&mut self, max: usize) -> &'a [u8] {
        let n = usize::from(self.u16()).min(max);
        self.take(n)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    /// A chunk as text (invalid UTF-8 replaced).
    pub fn text(&mut self) -> String {
        String::from_utf8_lossy(self.chunk()).into_owned()
    }
}

/// Byte-level edits of a string, read from the input: the structured mutations of valid
/// tokens: 1 to `max_edits` of them. Returns the edited string (invalid UTF-8 replaced);
/// edits can cancel out, so compare it with the original before expecting a refusal.
pub fn mutate(original: &str, input: &mut Input<'_>, max_edits: usize) -> String {
    let mut s = original.as_bytes().to_vec();
    let edits = input.choose(max_edits + 1).max(1);
    for _ in 0..edits {
        let op = input.byte();
        let pos_raw = usize::from(input.u16());
        let value = input.byte();
        // Mostly characters a token is made of, so edits stay "almost valid".
        const ALPHABET: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/~ ";
        let ch = if value & 0x80 == 0 {
            ALPHABET[usize::from(value) % ALPHABET.len()]
        } else {
            value
        };
        let len = s.len();
        let pos = if len == 0 { 0 } else { pos_raw % len };
        match op % 8 {
            0 | 1 => {
                if let Some(b) = s.get_mut(pos) {
                    *b = ch;
                }
            }
            2 => {
                if let Some(b) = s.get_mut(pos) {
                    // Flip one bit of a character.
                    *b ^= 1 << (value % 7);
                }
            }
            3 => s.insert(pos.min(len), ch),
            4 => {
                if pos < len {
                    s.remove(pos);
                }
            }
            5 => s.truncate(pos),
            6 => {
                // Swap two segments (header/payload/signature or JWE parts).
                let mut parts: Vec<Vec<u8>> = s.split(|&b| b == b'.').map(<[u8]>::to_vec).collect();
                let n = parts.len();
                if n > 1 {
                    parts.swap(pos % n, usize::from(value) % n);
                }
                s = parts.join(&b'.');
            }
            _ => {
                // Replace one segment by a slice of another, or append a copy.
                let parts: Vec<&[u8]> = s.split(|&b| b == b'.').collect();
                let n = parts.len();
                let from = parts[usize::from(value) % n].to_vec();
                let mut out: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
                if value & 1 == 0 {
                    out[pos % n] = from;
                } else {
                    out.push(from);
                }
                s = out.join(&b'.');
            }
        }
    }
    String::from_utf8_lossy(&s).into_owned()
}
