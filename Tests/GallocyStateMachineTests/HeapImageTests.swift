import GallocyCodec
import Testing

@testable import GallocyStateMachine

#if canImport(Glibc)
    import Glibc
#endif

/// An atomic's answer as the result the state machine gives, so that tests can compare it.
func answer(_ outcome: (ok: Bool, old: UInt64)) -> ApplyResult { .atomic(ok: outcome.ok, old: outcome.old) }

@Suite struct HeapImageTests {
    let base = testSettings.heapBase
    let pageSize = Int(testSettings.pageSize)

    @Test func aFreshHeapReadsAsZerosAndHasNoNonZeroPages() throws {
        let heap = try HeapImage(settings: testSettings)
        #expect(heap.pageCount == 256)
        #expect(try heap.read(address: base, length: 64) == [UInt8](repeating: 0, count: 64))
        #expect(try heap.read(address: base + testSettings.heapSize - 8, length: 8) == [UInt8](repeating: 0, count: 8))
        #expect(heap.nonZeroPages().isEmpty)
        #expect(heap.digest() == 0)
    }

    @Test func readsOutsideTheHeapAreRefused() throws {
        let heap = try HeapImage(settings: testSettings)
        let end = base + testSettings.heapSize
        for (address, length) in [
            (base - 1, 1), (end, 1), (end - 4, 8), (UInt64.max, 1), (base, Int(testSettings.heapSize) + 1),
        ] {
            #expect(throws: StateMachineError.self) { try heap.read(address: address, length: length) }
        }
        #expect(try heap.read(address: end, length: 0) == [])
        #expect(try heap.read(address: base, length: Int(testSettings.heapSize)).count == Int(testSettings.heapSize))
    }

    @Test func impossibleSettingsAreRefused() {
        for settings in [
            ClusterSettings(clusterID: 1, heapBase: 0, heapSize: 4096, pageSize: 1000),
            ClusterSettings(clusterID: 1, heapBase: 0, heapSize: 4097, pageSize: 4096),
            ClusterSettings(clusterID: 1, heapBase: 0, heapSize: 0, pageSize: 4096),
            ClusterSettings(clusterID: 1, heapBase: 0, heapSize: 1 << 62, pageSize: 4096),
        ] {
            #expect(throws: StateMachineError.self) { try HeapImage(settings: settings) }
        }
    }

    @Test func aWriteAppliesEveryDiffOrNone() throws {
        let heap = try HeapImage(settings: testSettings)
        let good = PageWrite(page: 3, diff: PageDiff(writing: [1, 2, 3], atOffset: 10))
        let corrupt = PageWrite(page: 4, diff: PageDiff(compressed: [0xFF, 0xFF, 0xFF], rawLength: 40))
        let tooLong = PageWrite(
            page: 4, diff: PageDiff(writing: [UInt8](repeating: 7, count: 8), atOffset: pageSize - 4))
        let outside = PageWrite(page: 256, diff: PageDiff(writing: [1], atOffset: 0))
        for bad in [corrupt, tooLong, outside] {
            #expect(throws: StateMachineError.self) { try heap.apply([good, bad]) }
            #expect(heap.nonZeroPages().isEmpty)
        }
        try heap.apply([good, PageWrite(page: 4, diff: PageDiff(writing: [9], atOffset: pageSize - 1))])
        #expect(try heap.read(address: base + 3 * UInt64(pageSize) + 9, length: 5) == [0, 1, 2, 3, 0])
        #expect(try heap.read(address: base + 5 * UInt64(pageSize) - 1, length: 1) == [9])
        #expect(heap.nonZeroPages() == [3, 4])
    }

    @Test func atomicsWorkOnLittleEndianWords() throws {
        let heap = try HeapImage(settings: testSettings)
        let word = base + 64
        #expect(answer(try heap.atomic(address: word, op: .add(5))) == .atomic(ok: true, old: 0))
        #expect(try heap.read(address: word, length: 8) == [5, 0, 0, 0, 0, 0, 0, 0])
        #expect(
            answer(try heap.atomic(address: word, op: .compareAndSwap(expect: 4, value: 9)))
                == .atomic(ok: false, old: 5))
        #expect(try heap.word(at: word) == 5)
        #expect(
            answer(try heap.atomic(address: word, op: .compareAndSwap(expect: 5, value: 0x0102_0304_0506_0708)))
                == .atomic(ok: true, old: 5))
        #expect(try heap.read(address: word, length: 8) == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(
            answer(try heap.atomic(address: word, op: .swap(UInt64.max)))
                == .atomic(ok: true, old: 0x0102_0304_0506_0708))
        #expect(answer(try heap.atomic(address: word, op: .add(2))) == .atomic(ok: true, old: UInt64.max))
        #expect(try heap.word(at: word) == 1)
        #expect(throws: StateMachineError.self) { try heap.atomic(address: word + 4, op: .add(1)) }
        #expect(throws: StateMachineError.self) { try heap.atomic(address: base + testSettings.heapSize, op: .add(1)) }
        #expect(throws: StateMachineError.self) { try heap.atomic(address: base - 8, op: .add(1)) }
    }

    @Test func zeroingClearsExactlyTheRange() throws {
        let heap = try HeapImage(settings: testSettings)
        let span = 40 * pageSize
        let bytes = (0..<span).map { UInt8(truncatingIfNeeded: $0 % 251 + 1) }
        try heap.write(bytes, at: base)
        // Large enough for the madvise path in the middle, with partial pages at both ends.
        try heap.zero(address: base + 100, length: UInt64(span - 300))
        let after = try heap.read(address: base, length: span)
        #expect(Array(after[0..<100]) == Array(bytes[0..<100]))
        #expect(after[100..<(span - 200)].allSatisfy { $0 == 0 })
        #expect(Array(after[(span - 200)...]) == Array(bytes[(span - 200)...]))
        #expect(heap.nonZeroPages() == [0, 39])
        // Only the pages that still hold data are left for scans to visit.
        #expect(heap.touched.population == 2)
        try heap.zero(address: base, length: testSettings.heapSize)
        #expect(heap.touched.population == 0)
        #expect(try heap.read(address: base, length: span).allSatisfy { $0 == 0 })
        #expect(throws: StateMachineError.self) { try heap.zero(address: base, length: testSettings.heapSize + 1) }
    }

    @Test func anExternalRegionIsUsedInPlaceAndNotUnmapped() throws {
        let size = Int(testSettings.heapSize)
        let region = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        defer { region.deallocate() }
        region.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        do {
            let heap = try HeapImage(base: region, settings: testSettings)
            #expect(!heap.ownsMemory)
            try heap.apply([PageWrite(page: 1, diff: PageDiff(writing: [42], atOffset: 7))])
            try heap.zero(address: base, length: UInt64(size))  // never madvises memory it does not own
            try heap.apply([PageWrite(page: 2, diff: PageDiff(writing: [43], atOffset: 0))])
        }
        #expect(region.load(fromByteOffset: pageSize + 7, as: UInt8.self) == 0)
        #expect(region.load(fromByteOffset: 2 * pageSize, as: UInt8.self) == 43)
        #expect(throws: StateMachineError.self) { try HeapImage(base: region + 1, settings: testSettings) }

        // A region that already holds data: scans must read every page once.
        region.storeBytes(of: 0x77, toByteOffset: 5 * pageSize + 3, as: UInt8.self)
        let trusting = try HeapImage(base: region, settings: testSettings)
        #expect(trusting.nonZeroPages() == [])
        let scanning = try HeapImage(base: region, settings: testSettings, initiallyZero: false)
        #expect(scanning.nonZeroPages() == [2, 5])
        try scanning.zero(address: base, length: testSettings.heapSize)
        #expect(scanning.nonZeroPages() == [])
        #expect(region.load(fromByteOffset: 5 * pageSize + 3, as: UInt8.self) == 0)
        // Writes made behind the image's back count once reported.
        region.storeBytes(of: 0x66, toByteOffset: 7 * pageSize, as: UInt8.self)
        try trusting.noteWritten(address: base + 7 * UInt64(pageSize), length: 1)
        #expect(trusting.nonZeroPages() == [7])
    }

    @Test func theDigestDependsOnlyOnContent() throws {
        let a = try HeapImage(settings: testSettings)
        let b = try HeapImage(settings: testSettings)
        try a.write([1, 2, 3], at: base + 5000)
        #expect(a.digest() != b.digest())
        try b.write([1, 2, 3], at: base + 5000)
        try b.write([4], at: base + 90_000)
        try b.write([0], at: base + 90_000)
        #expect(a.digest() == b.digest())
        try b.write([1, 2, 4], at: base + 5000)
        #expect(a.digest() != b.digest())
    }

    /// A heap with some scattered and some full pages.
    func filledHeap(seed: UInt64) throws -> HeapImage {
        var random = SplitMix64(seed: seed)
        let heap = try HeapImage(settings: testSettings)
        for _ in 0..<30 {
            let page = UInt64.random(in: 0..<256, using: &random)
            let length = Int.random(in: 1...pageSize, using: &random)
            let offset = Int.random(in: 0...(pageSize - length), using: &random)
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...3, using: &random) }
            try heap.write(bytes, at: base + page * UInt64(pageSize) + UInt64(offset))
        }
        return heap
    }

    @Test func aSnapshotRestoresTheSameBytes() throws {
        let heap = try filledHeap(seed: 1)
        let snapshot = heap.snapshot()
        let other = try filledHeap(seed: 2)  // content that the restore must replace entirely
        try other.restore(from: snapshot)
        #expect(other.digest() == heap.digest())
        #expect(other.nonZeroPages() == heap.nonZeroPages())
        let size = Int(testSettings.heapSize)
        #expect(try other.read(address: base, length: size) == heap.read(address: base, length: size))
        let empty = try HeapImage(settings: testSettings).snapshot()
        try other.restore(from: empty)
        #expect(other.nonZeroPages().isEmpty)
    }

    @Test func aDamagedSnapshotChangesNothing() throws {
        let source = try filledHeap(seed: 3)
        let snapshot = source.snapshot()
        let heap = try filledHeap(seed: 4)
        let digest = heap.digest()
        for length in stride(from: 0, to: snapshot.count, by: max(1, snapshot.count / 200)) {
            #expect(throws: StateMachineError.self) { try heap.restore(from: Array(snapshot[0..<length])) }
        }
        var flipped = snapshot
        flipped[snapshot.count / 2] ^= 0x10
        #expect(throws: StateMachineError.self) { try heap.restore(from: flipped) }
        #expect(throws: StateMachineError.self) { try heap.restore(from: snapshot + [0]) }
        let otherSettings = ClusterSettings(clusterID: 7, heapBase: base, heapSize: 1 << 20, pageSize: 4096)
        #expect(throws: StateMachineError.self) {
            try heap.restore(from: try HeapImage(settings: otherSettings).snapshot())
        }
        #expect(heap.digest() == digest)
    }

    /// A heap snapshot with a valid checksum around `records` (page, compressed bytes).
    func craftedSnapshot(count: UInt64? = nil, records: [(UInt64, [UInt8])]) -> [UInt8] {
        var writer = ByteWriter()
        writer.writeRaw(Array("GHIS".utf8))
        writer.write(UInt32(1))
        writer.write(testSettings.clusterID)
        writer.write(testSettings.heapBase)
        writer.write(testSettings.heapSize)
        writer.write(testSettings.pageSize)
        writer.write(count ?? UInt64(records.count))
        for (page, compressed) in records {
            writer.write(page)
            writer.write(UInt32(compressed.count))
            writer.writeRaw(compressed)
        }
        writer.appendChecksum()
        return writer.bytes
    }

    @Test func aHostileSnapshotWithAValidChecksumIsRefused() throws {
        // One real compressed page to reuse in the crafted records.
        let one = try HeapImage(settings: testSettings)
        try one.write([5], at: base)
        let real = one.snapshot()
        let page = try HeapImage.Snapshot(decoding: real)
        let record = page.pages[0]
        let compressed = Array(real[record.offset..<record.offset + record.length])
        #expect(throws: Never.self) { try HeapImage.Snapshot(decoding: craftedSnapshot(records: [(0, compressed)])) }

        let heap = try filledHeap(seed: 5)
        let digest = heap.digest()
        let hostile: [[UInt8]] = [
            craftedSnapshot(records: [(3, compressed), (3, compressed)]),  // not rising
            craftedSnapshot(records: [(4, compressed), (2, compressed)]),
            craftedSnapshot(records: [(256, compressed)]),  // outside the heap
            craftedSnapshot(records: [(1, [0xF0, 1, 2, 3])]),  // not LZ4
            craftedSnapshot(records: [(1, Array(compressed.dropLast()))]),  // truncated LZ4
            craftedSnapshot(records: [(1, [])]),
            craftedSnapshot(count: 1 << 40, records: [(1, compressed)]),
            craftedSnapshot(count: 2, records: [(1, compressed)]),
            craftedSnapshot(count: 0, records: [(1, compressed)]),
        ]
        for bytes in hostile {
            #expect(throws: StateMachineError.self) { try heap.restore(from: bytes) }
        }
        #expect(heap.digest() == digest)
    }

    @Test func anExportIsTheHeapAsASparseFile() throws {
        let heap = try HeapImage(settings: testSettings)
        try heap.write([1, 2, 3], at: base)
        try heap.write([9], at: base + testSettings.heapSize - 1)
        let path = "/tmp/gallocy-heap-export-\(getpid()).bin"
        defer { unlink(path) }
        try heap.export(toPath: path)
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_size == off_t(testSettings.heapSize))
        #expect(Int(info.st_blocks) * 512 < Int(testSettings.heapSize) / 4)
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        var contents = [UInt8](repeating: 0xAA, count: Int(testSettings.heapSize))
        let read = contents.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        #expect(read == Int(testSettings.heapSize))
        #expect(contents == (try heap.read(address: base, length: Int(testSettings.heapSize))))
        #expect(throws: StateMachineError.self) { try heap.export(toPath: "/nonexistent-dir/heap.bin") }
    }
}
