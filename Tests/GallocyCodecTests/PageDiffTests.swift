import GallocyCodec
import Testing

@Suite struct PageDiffTests {
    enum Edit: CaseIterable { case none, oneByte, scattered, runs, allBytes, firstAndLast }

    static func edit(_ edit: Edit, size: Int, rng: inout SplitMix64) -> (twin: [UInt8], page: [UInt8]) {
        let twin = rng.bytes(size)
        var page = twin
        func change(_ i: Int) { page[i] = twin[i] &+ UInt8(rng.int(1..<256)) }
        guard size > 0 else { return (twin, page) }
        switch edit {
        case .none:
            break
        case .oneByte:
            change(rng.int(0..<size))
        case .scattered:
            for _ in 0..<rng.int(1..<max(2, size / 10)) { change(rng.int(0..<size)) }
        case .runs:
            for _ in 0..<rng.int(1..<8) {
                let start = rng.int(0..<size)
                for i in start..<min(size, start + rng.int(1..<300)) { change(i) }
            }
        case .allBytes:
            for i in 0..<size { change(i) }
        case .firstAndLast:
            change(0)
            change(size - 1)
        }
        return (twin, page)
    }

    static let sizes = [4096, 4096, 4096, 1, 7, 8, 9, 15, 16, 17, 100, 4095, 8192, 65536]

    @Test(arguments: Edit.allCases)
    func applyingTheDiffToTheTwinGivesThePage(edit: Edit) throws {
        var rng = SplitMix64(seed: 0xD1FF + UInt64(Edit.allCases.firstIndex(of: edit) ?? 0))
        for round in 0..<150 {
            let size = PageDiffTests.sizes[round % PageDiffTests.sizes.count]
            let (twin, page) = PageDiffTests.edit(edit, size: size, rng: &rng)
            let diff = PageDiff.make(twin, page)
            var copy = twin
            try diff.apply(to: &copy)
            #expect(copy == page)
            #expect(diff.isEmpty == (twin == page))
        }
    }

    @Test(arguments: Edit.allCases)
    func runsHoldExactlyTheChangedBytes(edit: Edit) throws {
        var rng = SplitMix64(seed: 0x5EED + UInt64(Edit.allCases.firstIndex(of: edit) ?? 0))
        for round in 0..<150 {
            let size = PageDiffTests.sizes[round % PageDiffTests.sizes.count]
            let (twin, page) = PageDiffTests.edit(edit, size: size, rng: &rng)
            let diff = PageDiff.make(twin, page)
            var covered = [Bool](repeating: false, count: size)
            var previousEnd = -1
            for run in try diff.runs(pageSize: size) {
                #expect(run.offset > previousEnd, "runs are ordered and separated")
                for k in run.bytes.indices { covered[run.offset + k] = true }
                #expect(run.bytes[...] == page[run.offset..<run.offset + run.bytes.count])
                previousEnd = run.offset + run.bytes.count
            }
            let changed = (0..<size).map { twin[$0] != page[$0] }
            #expect(covered == changed)
            #expect(try diff.touchedBytes(pageSize: size) == changed.filter { $0 }.count)
        }
    }

    @Test(arguments: Edit.allCases)
    func diffAppliedToAnotherBaseChangesOnlyTheWritersBytes(edit: Edit) throws {
        var rng = SplitMix64(seed: 0xBA5E + UInt64(Edit.allCases.firstIndex(of: edit) ?? 0))
        for round in 0..<150 {
            let size = PageDiffTests.sizes[round % PageDiffTests.sizes.count]
            let (twin, page) = PageDiffTests.edit(edit, size: size, rng: &rng)
            // Another member's copy: the same old page with other bytes written by someone else.
            var base = twin
            for _ in 0..<rng.int(0..<max(1, size / 4)) { base[rng.int(0..<size)] = UInt8(rng.int(0..<256)) }
            let before = base
            try PageDiff.make(twin, page).apply(to: &base)
            let expected = (0..<size).map { twin[$0] != page[$0] ? page[$0] : before[$0] }
            #expect(base == expected)
        }
    }

    @Test func runsStartingAndEndingAtEveryWordAndBlockOffsetAreExact() throws {
        // The scan works in 8- and 32-byte steps: try every alignment of a run and of the gap
        // between two runs against those steps, and at the end of the page.
        for size in [100] {
            let twin = [UInt8](repeating: 0x11, count: size)
            for start in 0..<40 {
                for length in 1..<(size - start) {
                    for second in [0, 7, 8, 31] {
                        var page = twin
                        for i in start..<start + length { page[i] = 0x22 }
                        let secondStart = start + length + 1 + second
                        if secondStart < size { page[secondStart] = 0x33 }
                        let diff = PageDiff.make(twin, page)
                        var expected: [PageDiff.Run] = [
                            .init(offset: start, bytes: Array(page[start..<start + length]))
                        ]
                        if secondStart < size { expected.append(.init(offset: secondStart, bytes: [0x33])) }
                        #expect(try diff.runs(pageSize: size) == expected)
                    }
                }
            }
        }
    }

    @Test func concurrentWritersOfNeighbouringBytesDoNotUndoEachOther() throws {
        // Two members write bytes 2 apart on the same page; either order of applying gives both.
        let twin = [UInt8](repeating: 0, count: 64)
        var a = twin
        var b = twin
        a[10] = 1
        a[14] = 1
        b[12] = 2
        let diffA = PageDiff.make(twin, a)
        let diffB = PageDiff.make(twin, b)
        var first = twin
        var second = twin
        try diffA.apply(to: &first)
        try diffB.apply(to: &first)
        try diffB.apply(to: &second)
        try diffA.apply(to: &second)
        #expect(first == second)
        #expect(first[10] == 1 && first[12] == 2 && first[14] == 1)
    }

    @Test func rawWriteIncludesBytesEqualToTheOldValue() throws {
        var rng = SplitMix64(seed: 42)
        for _ in 0..<200 {
            let size = 4096
            let old = rng.bytes(size)
            let offset = rng.int(0..<size)
            let length = rng.int(0..<(size - offset + 1))
            // Half of the written bytes equal what the page holds now.
            var bytes = Array(old[offset..<offset + length])
            for k in bytes.indices where rng.bool() { bytes[k] = UInt8(rng.int(0..<256)) }
            let diff = PageDiff(writing: bytes, atOffset: offset)
            #expect(try diff.touchedBytes(pageSize: size) == length)
            if length > 0 { #expect(try diff.runs(pageSize: size) == [PageDiff.Run(offset: offset, bytes: bytes)]) }
            // Applied to another base, every written byte lands, equal to the old value or not.
            var base = rng.bytes(size)
            let before = base
            try diff.apply(to: &base)
            #expect(Array(base[offset..<offset + length]) == bytes)
            #expect(base[0..<offset] == before[0..<offset])
            #expect(base[(offset + length)...] == before[(offset + length)...])
        }
    }

    @Test func fromRunsJoinsTouchingRunsAndRefusesOverlaps() throws {
        let diff = try PageDiff.fromRuns([
            .init(offset: 0, bytes: [1, 2]), .init(offset: 2, bytes: [3]), .init(offset: 5, bytes: []),
            .init(offset: 10, bytes: [4, 4]),
        ])
        #expect(
            try diff.runs(pageSize: 16) == [.init(offset: 0, bytes: [1, 2, 3]), .init(offset: 10, bytes: [4, 4])])
        #expect(try diff.runs() == diff.runs(pageSize: 16))
        #expect(try diff.touchedBytes() == 5)
        #expect { try diff.runs(pageSize: 11) } throws: { ($0 as? CodecError)?.code == .invalidValue }
        #expect { try PageDiff.fromRuns([.init(offset: 4, bytes: [1, 2]), .init(offset: 5, bytes: [3])]) } throws: {
            ($0 as? CodecError)?.code == .invalidValue
        }
        #expect { try PageDiff.fromRuns([.init(offset: 4, bytes: [1]), .init(offset: 1, bytes: [3])]) } throws: {
            ($0 as? CodecError)?.code == .invalidValue
        }
        #expect { try PageDiff.fromRuns([.init(offset: -1, bytes: [1])]) } throws: {
            ($0 as? CodecError)?.code == .invalidValue
        }
        #expect(try PageDiff.fromRuns([]) == .empty)
    }

    @Test func runThatLeavesThePageIsRefusedAndThePageIsUntouched() {
        let diff = try? PageDiff.fromRuns([.init(offset: 0, bytes: [9]), .init(offset: 4094, bytes: [1, 2, 3])])
        var page = [UInt8](repeating: 7, count: 4096)
        #expect { try diff?.apply(to: &page) } throws: { ($0 as? CodecError)?.code == .invalidValue }
        #expect(page == [UInt8](repeating: 7, count: 4096))
        #expect { try PageDiff(writing: [1], atOffset: 4096).apply(to: &page) } throws: {
            ($0 as? CodecError)?.code == .invalidValue
        }
    }

    @Test func garbageCompressedDataFailsWithACodecError() {
        var rng = SplitMix64(seed: 7)
        var page = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<2000 {
            let diff = PageDiff(compressed: rng.bytes(rng.int(0..<64)), rawLength: UInt32(rng.int(0..<200)))
            do {
                try diff.apply(to: &page)
            } catch {
                continue
            }
        }
        // A literal-only LZ4 block that is well formed but decodes to a run list leaving the page.
        let lz4Literal: [UInt8] = [0x40, 0x80, 0x40, 1, 2]  // 4 literals: gap 8192, length 1, byte
        #expect {
            try PageDiff(compressed: lz4Literal, rawLength: 4).apply(to: &page)
        } throws: { ($0 as? CodecError)?.code == .invalidValue }
    }

    @Test func diffThatDecompressesToAnotherLengthFails() {
        var rng = SplitMix64(seed: 8)
        let (twin, page) = rng.editedPage(size: 4096, edits: 30)
        let diff = PageDiff.make(twin, page)
        var copy = twin
        for delta in [-1, 1, 100] {
            let wrong = PageDiff(compressed: diff.compressed, rawLength: UInt32(Int(diff.rawLength) + delta))
            #expect { try wrong.apply(to: &copy) } throws: { ($0 as? CodecError)?.code == .invalidValue }
        }
        #expect { try PageDiff(compressed: [], rawLength: 3).apply(to: &copy) } throws: { $0 is CodecError }
        #expect { try PageDiff(compressed: [0], rawLength: 0).apply(to: &copy) } throws: {
            ($0 as? CodecError)?.code == .invalidValue
        }
        #expect(copy == twin)
    }

    @Test func hugeRawLengthFailsBeforeAllocating() {
        var page = [UInt8](repeating: 0, count: 4096)
        let diff = PageDiff(compressed: [0x10, 0], rawLength: .max)
        #expect { try diff.apply(to: &page) } throws: { ($0 as? CodecError)?.code == .lengthOutOfRange }
        #expect { try diff.validate(pageSize: 4096) } throws: { ($0 as? CodecError)?.code == .lengthOutOfRange }
        #expect { try diff.validate(pageSize: PageDiff.maxPageSize + 1) } throws: {
            ($0 as? CodecError)?.code == .invalidValue
        }
    }

    @Test(arguments: [1, 2, 3, 64, 4096, 4097, 65536, PageDiff.maxPageSize])
    func everyOtherByteChangedIsTheWorstCaseAndFitsTheLimit(size: Int) throws {
        let twin = [UInt8](repeating: 0, count: size)
        var page = twin
        for i in stride(from: 0, to: size, by: 2) { page[i] = 0xA5 }
        let diff = PageDiff.make(twin, page)
        #expect(Int(diff.rawLength) <= PageDiff.rawLengthLimit(pageSize: size))
        #expect(diff.compressed.count <= PageDiff.maxCompressedLength)
        var copy = twin
        try diff.apply(to: &copy)
        #expect(copy == page)
        // Scattered single-byte client writes are as bad, and fit too.
        let runs = stride(from: 0, to: size, by: 2).map { PageDiff.Run(offset: $0, bytes: [0x5A]) }
        let written = try PageDiff.fromRuns(runs)
        #expect(Int(written.rawLength) <= PageDiff.rawLengthLimit(pageSize: size))
        try written.validate(pageSize: size)
    }

    @Test func rawLengthLimitOfA4KiBPage() {
        #expect(PageDiff.rawLengthLimit(pageSize: 4096) == 12_292)
    }

    @Test func unchangedPageGivesTheEmptyDiff() throws {
        let page = [UInt8](repeating: 3, count: 4096)
        let diff = PageDiff.make(page, page)
        #expect(diff == .empty)
        #expect(try diff.runs(pageSize: 4096).isEmpty)
        #expect(PageDiff(writing: [], atOffset: 5) == .empty)
    }

    @Test func smallDiffsCompressSmall() {
        var rng = SplitMix64(seed: 9)
        let (twin, page) = rng.editedPage(size: 4096, edits: 1)
        #expect(PageDiff.make(twin, page).compressed.count <= 8)
        var zeros = [UInt8](repeating: 0, count: 4096)
        let written = zeros
        for i in 0..<4096 { zeros[i] = 1 }
        #expect(PageDiff.make(written, zeros).compressed.count < 64)
    }
}
