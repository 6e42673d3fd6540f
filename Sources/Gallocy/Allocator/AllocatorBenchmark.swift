import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// `gallocy bench alloc`: small-block allocate + free through the layered allocator's fast path
/// against the system `malloc` in the same process, on a one-member cluster of its own (in a
/// temporary directory). Every case runs once untimed first, so that the timed rounds need no
/// new arena or slab and take no page fault: the figure is the fast path alone. Medians of the
/// rounds, in nanoseconds per allocate + free pair; each block's first word is written.
package enum AllocatorBenchmark {
    package struct Row: Sendable {
        package var name: String
        package var sharedNs: Double
        package var mallocNs: Double
        package var ratio: Double { sharedNs / mallocNs }
    }

    package struct Outcome: Sendable {
        package var rows: [Row]
        /// Whether the timed rounds ever left the fast path (they should not).
        package var slowPaths: Int
        package var arenas: Int
    }

    /// The cases: a name, the sizes of one batch (allocated in order, then freed in `freeOrder`).
    struct Case {
        var name: String
        var sizes: [Int]
        var freeOrder: [Int]
    }

    static func cases(batch: Int) -> [Case] {
        var random = StressRandom(seed: 42)
        func shuffled(_ n: Int) -> [Int] {
            var order = Array(0..<n)
            for i in stride(from: n - 1, to: 0, by: -1) { order.swapAt(i, random.below(i + 1)) }
            return order
        }
        let small = (0..<batch).map { _ in 16 + random.below(1024 - 16 + 1) }
        let mixed = (0..<batch).map { _ in 16 + random.below(8192 - 16 + 1) }
        return [
            Case(name: "64 B, allocate then free", sizes: [64], freeOrder: [0]),
            Case(name: "\(batch) x 16 B-1 KiB, LIFO", sizes: small, freeOrder: Array((0..<batch).reversed())),
            Case(name: "\(batch) x 16 B-1 KiB, random", sizes: small, freeOrder: shuffled(batch)),
            Case(name: "\(batch) x 16 B-8 KiB, random", sizes: mixed, freeOrder: shuffled(batch)),
        ]
    }

    package static func run(pairs: Int, rounds: Int, batch: Int, logger: Logger) async throws -> Outcome {
        let directory = FileManager.default.temporaryDirectory.path + "/gallocy-bench-alloc-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ports = try (0..<2).map { _ in try freePort() }
        var options = MemberOptions(
            id: 1, dataDirectory: directory, listen: "127.0.0.1:\(ports[0])", http: "127.0.0.1:\(ports[1])", peers: [:])
        options.heapSize = 256 << 20
        let member = try await Member.start(options)
        defer { Task { await member.stop() } }
        let allocator = try await SharedAllocator.attach(to: member)
        var rows: [Row] = []
        var slowPaths = 0
        var blocks = [UnsafeMutableRawPointer?](repeating: nil, count: batch)
        for benchCase in cases(batch: batch) {
            let repeats = max(1, pairs / benchCase.sizes.count)
            // Untimed: the slabs this case needs are taken and their pages written.
            for (i, size) in benchCase.sizes.enumerated() { blocks[i] = try await allocator.allocate(byteCount: size) }
            for i in benchCase.freeOrder { try await allocator.free(blocks[i]!) }
            var shared: [Double] = []
            var system: [Double] = []
            for _ in 0..<rounds {
                var clock = ContinuousClock.now
                for _ in 0..<repeats {
                    for (i, size) in benchCase.sizes.enumerated() {
                        guard let block = try allocator.allocateLocally(byteCount: size) else {
                            slowPaths += 1
                            blocks[i] = try await allocator.allocate(byteCount: size)
                            continue
                        }
                        block.storeBytes(of: UInt64(i), as: UInt64.self)
                        blocks[i] = block
                    }
                    for i in benchCase.freeOrder where !(try allocator.freeLocally(blocks[i]!)) {
                        slowPaths += 1
                        try await allocator.free(blocks[i]!)
                    }
                }
                shared.append(nanoseconds(since: clock) / Double(repeats * benchCase.sizes.count))
                clock = ContinuousClock.now
                for _ in 0..<repeats {
                    for (i, size) in benchCase.sizes.enumerated() {
                        let block = malloc(size)!
                        block.storeBytes(of: UInt64(i), as: UInt64.self)
                        blocks[i] = block
                    }
                    for i in benchCase.freeOrder { Glibc.free(blocks[i]) }
                }
                system.append(nanoseconds(since: clock) / Double(repeats * benchCase.sizes.count))
            }
            rows.append(Row(name: benchCase.name, sharedNs: median(shared), mallocNs: median(system)))
        }
        return Outcome(rows: rows, slowPaths: slowPaths, arenas: allocator.statistics.arenas)
    }

    private static func nanoseconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
    }

    private static func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

    /// A loopback port the kernel says is free now.
    private static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw MemberError(.startFailed, "socket: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw MemberError(.startFailed, "bind: errno \(errno)") }
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw MemberError(.startFailed, "getsockname: errno \(errno)") }
        return UInt16(bigEndian: address.sin_port)
    }
}
