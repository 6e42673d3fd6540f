/// Reads what `ByteWriter` wrote, treating every byte as hostile: each read checks the bytes
/// remaining first, and no length read from the input allocates more than the input holds.
public struct ByteReader {
    private let bytes: UnsafeRawBufferPointer
    /// How many bytes have been read.
    public private(set) var offset: Int

    /// Reads from `bytes`, which must stay valid while the reader is used.
    public init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        offset = 0
    }

    /// How many bytes are left to read.
    public var remaining: Int { bytes.count - offset }
    /// True once every byte has been read.
    public var isAtEnd: Bool { offset == bytes.count }

    private mutating func need(_ count: Int, _ what: @autoclosure () -> String) throws(CodecError) {
        guard count >= 0, count <= remaining else {
            throw CodecError(.truncated, "\(what()) needs \(count) bytes at offset \(offset), \(remaining) remain")
        }
    }

    /// Reads one byte; `what` names the field in the error if the input has ended.
    public mutating func readUInt8(_ what: @autoclosure () -> String = "byte") throws(CodecError) -> UInt8 {
        try need(1, what())
        defer { offset += 1 }
        return bytes[offset]
    }

    /// Reads a byte that must be 0 or 1.
    public mutating func readBool(_ what: @autoclosure () -> String = "flag") throws(CodecError) -> Bool {
        let raw = try readUInt8(what())
        guard raw <= 1 else { throw CodecError(.invalidValue, "\(what()) is \(raw), expected 0 or 1") }
        return raw == 1
    }

    /// Reads a little-endian `u16`.
    public mutating func readUInt16(_ what: @autoclosure () -> String = "u16") throws(CodecError) -> UInt16 {
        try readFixed(what())
    }

    /// Reads a little-endian `u32`.
    public mutating func readUInt32(_ what: @autoclosure () -> String = "u32") throws(CodecError) -> UInt32 {
        try readFixed(what())
    }

    /// Reads a little-endian `u64`.
    public mutating func readUInt64(_ what: @autoclosure () -> String = "u64") throws(CodecError) -> UInt64 {
        try readFixed(what())
    }

    private mutating func readFixed<T: FixedWidthInteger>(_ what: String) throws(CodecError) -> T {
        let size = MemoryLayout<T>.size
        try need(size, what)
        var value: T = 0
        withUnsafeMutableBytes(of: &value) {
            $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + size]))
        }
        offset += size
        return T(littleEndian: value)
    }

    /// Reads an unsigned LEB128 varint of at most 10 bytes that fits 64 bits.
    public mutating func readVarint(_ what: @autoclosure () -> String = "varint") throws(CodecError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try readUInt8(what())
            if shift == 63 && byte > 1 { throw CodecError(.invalidValue, "\(what()) overflows 64 bits") }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
            guard shift <= 63 else { throw CodecError(.invalidValue, "\(what()) is longer than 10 bytes") }
        }
    }

    /// Reads a varint count and checks it against `limit` and against the bytes remaining
    /// (assuming each element takes at least `minimumElementSize` bytes).
    public mutating func readCount(_ what: @autoclosure () -> String, limit: Int, minimumElementSize: Int = 1)
        throws(CodecError) -> Int
    {
        let raw = try readVarint(what())
        // `raw <= limit` makes the conversion safe; the multiplication is checked because a
        // hostile count times an element size can overflow even when the count fits an Int.
        let elementSize = max(minimumElementSize, 0)
        guard raw <= UInt64(max(limit, 0)) else {
            throw CodecError(
                .lengthOutOfRange, "\(what()) is \(raw), more than the limit of \(limit) at offset \(offset)")
        }
        let (needed, overflow) = Int(raw).multipliedReportingOverflow(by: elementSize)
        guard !overflow, needed <= remaining else {
            throw CodecError(
                .lengthOutOfRange,
                "\(what()) is \(raw), more than the \(remaining / max(elementSize, 1)) that \(remaining) remaining bytes can hold at offset \(offset)"
            )
        }
        return Int(raw)
    }

    /// Reads a varint length and that many bytes.
    public mutating func readBytes(_ what: @autoclosure () -> String = "bytes", limit: Int = .max) throws(CodecError)
        -> [UInt8]
    {
        let count = try readCount(what(), limit: limit)
        return try readRaw(count, what())
    }

    /// Reads a varint length (at most `limit`) and that many bytes of valid UTF-8.
    public mutating func readString(_ what: @autoclosure () -> String = "string", limit: Int = 4096) throws(CodecError)
        -> String
    {
        let raw = try readBytes(what(), limit: limit)
        guard let value = String(validating: raw, as: UTF8.self) else {
            throw CodecError(.invalidValue, "\(what()) is not valid UTF-8")
        }
        return value
    }

    /// Reads exactly `count` bytes with no length prefix.
    public mutating func readRaw(_ count: Int, _ what: @autoclosure () -> String = "bytes") throws(CodecError)
        -> [UInt8]
    {
        try need(count, what())
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    /// Reads exactly `count` bytes with no length prefix and no copy: the result points into the
    /// reader's buffer and is valid as long as that buffer is.
    public mutating func readSlice(_ count: Int, _ what: @autoclosure () -> String = "bytes") throws(CodecError)
        -> UnsafeRawBufferPointer
    {
        try need(count, what())
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count])
    }

    /// Fails unless every byte was consumed.
    public func expectEnd(_ what: @autoclosure () -> String) throws(CodecError) {
        guard isAtEnd else { throw CodecError(.trailingBytes, "\(remaining) bytes after the end of \(what())") }
    }
}

extension CRC32C {
    /// Checks that the last 4 bytes of `bytes` are the CRC32C of the rest, and returns the rest.
    public static func verifyTrailer(_ bytes: UnsafeRawBufferPointer, _ what: @autoclosure () -> String)
        throws(CodecError) -> UnsafeRawBufferPointer
    {
        guard bytes.count >= 4 else {
            throw CodecError(.truncated, "\(what()) is \(bytes.count) bytes, shorter than its checksum")
        }
        let body = UnsafeRawBufferPointer(rebasing: bytes[0..<bytes.count - 4])
        var stored: UInt32 = 0
        withUnsafeMutableBytes(of: &stored) {
            $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[bytes.count - 4..<bytes.count]))
        }
        stored = UInt32(littleEndian: stored)
        let computed = checksum(body)
        guard stored == computed else {
            throw CodecError(.checksumMismatch, "\(what()): stored checksum \(hex(stored)), computed \(hex(computed))")
        }
        return body
    }

    private static func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }
}

extension ByteReader {
    /// Reads a 4-byte `magic` and a u32 format version, and fails unless both are the expected
    /// ones: the header of every snapshot part (`what` names it in the error).
    public mutating func expectHeader(magic: [UInt8], format: UInt32, _ what: String) throws(CodecError) {
        let found = try readRaw(magic.count, "\(what) magic")
        guard found == magic else { throw CodecError(.invalidValue, "not a \(what) (magic \(found))") }
        let version = try readUInt32("\(what) format")
        guard version == format else {
            throw CodecError(.unknownVersion, "\(what) format \(version), this build reads \(format)")
        }
    }
}
