import GallocyCodec
@testable import GallocyStateMachine

/// The settings most tests use: a 1 MiB heap of 4 KiB pages at a typical mmap address.
let testSettings = ClusterSettings(clusterID: 42, heapBase: 0x7f00_0000_0000, heapSize: 1 << 20, pageSize: 4096)

/// A page table with its own log: `apply` hands out the next index.
final class Replica {
    let table: PageTable
    private(set) var nextIndex: UInt64 = 1

    init(settings: ClusterSettings? = testSettings) throws {
        table = try PageTable()
        if let settings {
            let result = try apply(.bootstrap(settings))
            precondition(result == .bootstrapped, "bootstrap of the test replica failed: \(result)")
        }
    }

    @discardableResult
    func apply(_ body: CommandBody, client: ClientTag = .none, company: Company = 0) throws -> ApplyResult {
        // After a restore the table may be ahead of this replica's own count.
        let index = max(nextIndex, (table.appliedIndex(company: company) ?? 0) + 1)
        nextIndex = index + 1
        return try table.apply(Command(company: company, client: client, body: body), index: index)
    }

    /// Allocates and returns the address, failing the test run if the allocation is rejected.
    func allocate(_ size: UInt64, member: UInt64 = 1) throws -> UInt64 {
        let result = try apply(.alloc(size: size, member: member))
        guard case .allocated(let address) = result else { throw TestFailure("alloc(\(size)) gave \(result)") }
        return address
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A page write whose diff content does not matter to the page table.
func pageWrite(_ page: UInt64) -> PageWrite {
    PageWrite(page: page, diff: PageDiff(compressed: [0], rawLength: 0))
}

/// A small deterministic generator (SplitMix64), so that a failing random sequence can be rerun.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Checks the allocator's invariants: blocks aligned and disjoint; free ranges and block extents
/// tile the heap exactly; free ranges coalesced; page rows count the blocks overlapping them.
func checkAllocatorInvariants(_ table: PageTable, company: Company = 0) throws {
    guard let settings = table.settings(company: company) else { throw TestFailure("not bootstrapped") }
    let pageSize = UInt64(settings.pageSize)
    let blocks = try table.allocations(company: company)
    let free = try table.freeRanges(company: company)
    var pieces: [(start: UInt64, end: UInt64, isFree: Bool)] = []
    for block in blocks {
        guard block.address % 8 == 0 else { throw TestFailure("block at \(block.address) not 8-aligned") }
        if block.size >= pageSize, block.address % pageSize != 0 {
            throw TestFailure("block of \(block.size) at \(block.address) not page-aligned")
        }
        pieces.append((block.address, block.address + (block.size + 7) & ~7, false))
    }
    for range in free { pieces.append((range.address, range.address + range.size, true)) }
    pieces.sort { $0.start < $1.start }
    var cursor = settings.heapBase
    var previousFree = false
    for piece in pieces {
        guard piece.start == cursor else { throw TestFailure("gap or overlap at 0x\(String(cursor, radix: 16))") }
        if piece.isFree && previousFree { throw TestFailure("free ranges not coalesced at \(piece.start)") }
        previousFree = piece.isFree
        cursor = piece.end
    }
    guard cursor == settings.heapBase + settings.heapSize else { throw TestFailure("tiling ends at \(cursor)") }

    var expected: [UInt64: UInt64] = [:]
    for block in blocks {
        for page in PageTable.pages(address: block.address, size: block.size, settings: settings) {
            expected[page, default: 0] += 1
        }
    }
    let rows = try table.query("SELECT page, blocks FROM pages WHERE company = \(company) AND state = 'allocated'")
    var actual: [UInt64: UInt64] = [:]
    for row in rows.rows {
        actual[UInt64(row[0].int64 ?? -1)] = UInt64(row[1].int64 ?? -1)
    }
    guard actual == expected else { throw TestFailure("page block counts \(actual) != \(expected)") }
}
