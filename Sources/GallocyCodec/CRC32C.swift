import CCRC32C

/// CRC-32C (Castagnoli), the checksum of every encoded entry, message and snapshot chunk.
/// The SSE4.2 `crc32` instruction where the processor has it (CCRC32C), else slicing-by-8 over a
/// table built once (about 1-2 GB/s in release builds).
public enum CRC32C {
    /// Whether checksums use the processor's `crc32` instruction.
    public static let usesHardware = CCRC32C_hardware_available() != 0

    private static let tables: [[UInt32]] = {
        var tables = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
        for i in 0..<256 {
            var crc = UInt32(i)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            tables[0][i] = crc
        }
        for i in 0..<256 {
            for t in 1..<8 {
                let previous = tables[t - 1][i]
                tables[t][i] = (previous >> 8) ^ tables[0][Int(previous & 0xFF)]
            }
        }
        return tables
    }()

    /// The checksum of `bytes`, continuing from `crc` (pass the result of an earlier call to
    /// checksum data in pieces).
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        if usesHardware {
            return ~CCRC32C_hardware_update(~crc, bytes.baseAddress, bytes.count)
        }
        return softwareChecksum(bytes, continuing: crc)
    }

    /// The table-driven checksum, for processors without SSE4.2 (and to test the two agree).
    package static func softwareChecksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        var crc = ~crc
        var count = bytes.count
        guard var p = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return ~crc }
        tables.withUnsafeBufferPointer { tables in
            let t0 = tables[0]
            let t1 = tables[1]
            let t2 = tables[2]
            let t3 = tables[3]
            let t4 = tables[4]
            let t5 = tables[5]
            let t6 = tables[6]
            let t7 = tables[7]
            while count >= 8 {
                let lo = crc ^ (UInt32(p[0]) | UInt32(p[1]) << 8 | UInt32(p[2]) << 16 | UInt32(p[3]) << 24)
                let hi = UInt32(p[4]) | UInt32(p[5]) << 8 | UInt32(p[6]) << 16 | UInt32(p[7]) << 24
                crc =
                    t7[Int(lo & 0xFF)] ^ t6[Int((lo >> 8) & 0xFF)] ^ t5[Int((lo >> 16) & 0xFF)]
                    ^ t4[Int(lo >> 24)] ^ t3[Int(hi & 0xFF)] ^ t2[Int((hi >> 8) & 0xFF)]
                    ^ t1[Int((hi >> 16) & 0xFF)] ^ t0[Int(hi >> 24)]
                p += 8
                count -= 8
            }
            while count > 0 {
                crc = (crc >> 8) ^ t0[Int((crc ^ UInt32(p.pointee)) & 0xFF)]
                p += 1
                count -= 1
            }
        }
        return ~crc
    }

    /// The checksum of `bytes`.
    public static func checksum(_ bytes: some Collection<UInt8>, continuing crc: UInt32 = 0) -> UInt32 {
        let contiguous = bytes.withContiguousStorageIfAvailable {
            checksum(UnsafeRawBufferPointer($0), continuing: crc)
        }
        if let contiguous { return contiguous }
        return Array(bytes).withUnsafeBytes { checksum($0, continuing: crc) }
    }
}
