/// Appends little-endian integers and length-prefixed byte strings to a buffer.
public struct ByteWriter: Sendable {
    /// Everything written so far.
    public private(set) var bytes: [UInt8]

    /// An empty writer with room for `capacity` bytes before it reallocates.
    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Appends one byte.
    public mutating func write(_ value: UInt8) { bytes.append(value) }
    /// Appends 1 for true, 0 for false.
    public mutating func write(_ value: Bool) { bytes.append(value ? 1 : 0) }
    /// Appends a little-endian `u16`.
    public mutating func write(_ value: UInt16) { writeFixed(value) }
    /// Appends a little-endian `u32`.
    public mutating func write(_ value: UInt32) { writeFixed(value) }
    /// Appends a little-endian `u64`.
    public mutating func write(_ value: UInt64) { writeFixed(value) }

    /// Overwrites the little-endian `u64` at byte `offset` (written earlier as a placeholder:
    /// a count known only once what follows it is written).
    public mutating func patch(_ value: UInt64, at offset: Int) {
        precondition(offset >= 0 && offset + 8 <= bytes.count, "patch at \(offset) outside \(bytes.count) bytes")
        withUnsafeBytes(of: value.littleEndian) { source in
            for k in 0..<8 { bytes[offset + k] = source[k] }
        }
    }

    private mutating func writeFixed<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// Appends `value` as an unsigned LEB128 varint (1 to 10 bytes).
    public mutating func writeVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// Appends a varint length and then the bytes.
    public mutating func writeBytes(_ value: some Collection<UInt8>) {
        writeVarint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    /// Appends a varint length and then the UTF-8 bytes of `value`.
    public mutating func writeString(_ value: String) { writeBytes(Array(value.utf8)) }

    /// Appends bytes with no length prefix.
    public mutating func writeRaw(_ value: some Collection<UInt8>) { bytes.append(contentsOf: value) }

    /// Appends the CRC32C of everything written so far.
    public mutating func appendChecksum() { write(CRC32C.checksum(bytes)) }
}
