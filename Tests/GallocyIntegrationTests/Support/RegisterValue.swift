/// A value a register in `RegisterModel` can hold: an 8-byte memory word, or the bytes of a block
/// when a multi-byte write or read is checked as one value.
protocol RegisterValue: Hashable, Sendable, CustomStringConvertible {
    /// The result of an atomic add, or nil when the value kind has no addition (byte blocks).
    func adding(_ delta: Self) -> Self?

    /// The value as failure reports print it.
    var reportDescription: String { get }
}

extension RegisterValue {
    var reportDescription: String { description }
}

extension UInt64: RegisterValue {
    /// Memory words wrap on overflow, as the node's atomic add does.
    func adding(_ delta: UInt64) -> UInt64? { self &+ delta }

    /// Small numbers in decimal; large ones in hex, where workloads put a client and a sequence
    /// number in the high and low halves (`RegisterWorkload`).
    var reportDescription: String { self < 0x10000 ? "\(self)" : "0x" + String(self, radix: 16) }
}

/// The bytes of a block, compared as one value.
struct ByteBlock: RegisterValue {
    var bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// A block of `count` zero bytes: what a fresh allocation reads as.
    static func zeros(_ count: Int) -> ByteBlock { ByteBlock([UInt8](repeating: 0, count: count)) }

    func adding(_ delta: ByteBlock) -> ByteBlock? { nil }

    var description: String {
        // Long blocks are abbreviated: a failure report needs to tell values apart, not dump them.
        let hex = bytes.prefix(12).map {
            String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16)
        }
        let suffix = bytes.count > 12 ? "…(\(bytes.count) bytes)" : ""
        return "[" + hex.joined() + suffix + "]"
    }
}
