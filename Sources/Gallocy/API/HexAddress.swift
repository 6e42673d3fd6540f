/// Heap addresses as the HTTP API writes them: `"0x"` followed by hexadecimal digits, the same
/// spelling in JSON bodies and in paths (`../shared/CONTRACT.md` section 2).
package enum HexAddress {
    /// Parses `"0x1f"` or `"0X1F"` (1 to 16 hex digits, no sign, no spaces) into an address.
    /// Returns nil for anything else, so that a bad address becomes a 400 and never a guess.
    package static func parse(_ text: some StringProtocol) -> UInt64? {
        let utf8 = Array(text.utf8)
        guard utf8.count >= 3, utf8.count <= 18, utf8[0] == UInt8(ascii: "0"),
            utf8[1] == UInt8(ascii: "x") || utf8[1] == UInt8(ascii: "X")
        else { return nil }
        var value: UInt64 = 0
        for byte in utf8[2...] {
            guard let digit = hexDigit(byte) else { return nil }
            // At most 16 digits were admitted above, so this never overflows.
            value = value << 4 | UInt64(digit)
        }
        return value
    }

    /// Formats an address as `"0x"` and lowercase hex digits without leading zeros.
    package static func format(_ address: UInt64) -> String {
        "0x" + String(address, radix: 16, uppercase: false)
    }

    private static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
