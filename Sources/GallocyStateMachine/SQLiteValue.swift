/// One SQLite value, typed as SQLite stores it. Unsigned 64-bit quantities of the page table
/// (addresses, indexes, epochs) are stored as the `Int64` with the same bit pattern.
package enum SQLiteValue: Sendable, Hashable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    /// An unsigned 64-bit value stored as the `Int64` with the same bits.
    package static func unsigned(_ value: UInt64) -> SQLiteValue { .integer(Int64(bitPattern: value)) }

    /// The value as an `Int64`, or nil when it is not an integer.
    package var int64: Int64? {
        if case .integer(let value) = self { return value }
        return nil
    }

    /// The value as a `String`, or nil when it is not text.
    package var text: String? {
        if case .text(let value) = self { return value }
        return nil
    }

    /// A rendering that is the same on every machine: integers in decimal, reals with their exact
    /// bits in hex beside a readable form, text quoted with SQL escaping, blobs as `x'..'`.
    package var canonicalText: String {
        switch self {
        case .null: return "NULL"
        case .integer(let value): return String(value)
        case .real(let value): return "\(value)/0x\(String(value.bitPattern, radix: 16))"
        case .text(let value):
            var quoted = "'"
            for character in value {
                if character == "'" { quoted.append("''") } else { quoted.append(character) }
            }
            return quoted + "'"
        case .blob(let bytes):
            var hex = "x'"
            hex.reserveCapacity(bytes.count * 2 + 3)
            for byte in bytes {
                hex.append(SQLiteValue.hexDigits[Int(byte >> 4)])
                hex.append(SQLiteValue.hexDigits[Int(byte & 0xF)])
            }
            return hex + "'"
        }
    }

    private static let hexDigits: [Character] = Array("0123456789abcdef")
}
