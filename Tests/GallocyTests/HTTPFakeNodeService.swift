import Gallocy
import GallocyCodec
import Logging
import Synchronization

/// An in-memory `NodeService` for the HTTP layer's tests: enough behaviour (a bump allocator,
/// byte memory, words, locks with epochs, members) to give every endpoint real answers and real
/// errors, and a record of the calls it received.
final class HTTPFakeNodeService: NodeService {
    struct State {
        var status = NodeStatus(
            id: 1, role: "leader", term: 3, leader: nil, commitIndex: 41, appliedIndex: 40, lastIndex: 42,
            snapshotIndex: 7, members: [1, 2, 3])
        var nextAddress: UInt64 = 0x7f00_0000_0000
        var blocks: [UInt64: UInt64] = [:]
        var memory: [UInt64: UInt8] = [:]
        var index: UInt64 = 100
        var epoch: UInt64 = 0
        var locks: [String: UInt64] = [:]
        var calls: [String] = []
    }

    static let pageSize: UInt64 = 4096
    let state = Mutex(State())
    /// How long `snapshot()` takes: the tests' slow call.
    let snapshotDelay: Duration

    init(snapshotDelay: Duration = .zero) {
        self.snapshotDelay = snapshotDelay
    }

    var calls: [String] { state.withLock { $0.calls } }

    func setStatus(_ update: (inout NodeStatus) -> Void) {
        state.withLock { update(&$0.status) }
    }

    private func record(_ call: String) {
        state.withLock { $0.calls.append(call) }
    }

    func status() async -> NodeStatus {
        state.withLock { $0.status }
    }

    func alloc(size: UInt64) async throws(APIError) -> UInt64 {
        record("alloc(\(size))")
        guard size > 0, size <= 1 << 30 else { throw .badRequest("size must be 1 byte to 1 GiB") }
        return state.withLock { state in
            let alignment = size >= Self.pageSize ? Self.pageSize : 8
            let address = (state.nextAddress + alignment - 1) / alignment * alignment
            state.blocks[address] = size
            state.nextAddress = address + size
            return address
        }
    }

    func free(address: UInt64) async throws(APIError) {
        record("free(\(HexAddress.format(address)))")
        let freed = state.withLock { $0.blocks.removeValue(forKey: address) != nil }
        guard freed else { throw APIError(status: 404, code: "not_allocated", message: "no block at that address") }
    }

    private func checkRange(_ state: State, _ address: UInt64, _ length: UInt64) throws(APIError) {
        let inside = state.blocks.contains { start, size in
            address >= start && address - start <= size && length <= size - (address - start)
        }
        guard inside else { throw .badRequest("the range leaves allocated memory") }
    }

    func write(address: UInt64, bytes: [UInt8]) async throws(APIError) -> UInt64 {
        record("write(\(HexAddress.format(address)), \(bytes.count))")
        return try state.withLock { (state) throws(APIError) -> UInt64 in
            try checkRange(state, address, UInt64(bytes.count))
            for (offset, byte) in bytes.enumerated() { state.memory[address + UInt64(offset)] = byte }
            state.index += 1
            return state.index
        }
    }

    func read(address: UInt64, length: Int) async throws(APIError) -> [UInt8] {
        record("read(\(HexAddress.format(address)), \(length))")
        return try state.withLock { (state) throws(APIError) -> [UInt8] in
            try checkRange(state, address, UInt64(length))
            return (0..<UInt64(length)).map { state.memory[address + $0, default: 0] }
        }
    }

    func atomic(address: UInt64, op: AtomicOp) async throws(APIError) -> (ok: Bool, old: UInt64) {
        record("atomic(\(HexAddress.format(address)), \(op))")
        guard address % 8 == 0 else { throw .badRequest("the word must be 8-aligned") }
        return try state.withLock { (state) throws(APIError) -> (ok: Bool, old: UInt64) in
            try checkRange(state, address, 8)
            var old: UInt64 = 0
            for offset in 0..<UInt64(8) { old |= UInt64(state.memory[address + offset, default: 0]) << (offset * 8) }
            let (ok, new): (Bool, UInt64) =
                switch op {
                case .compareAndSwap(let expect, let value): old == expect ? (true, value) : (false, old)
                case .add(let delta): (true, old &+ delta)
                case .swap(let value): (true, value)
                }
            for offset in 0..<UInt64(8) {
                state.memory[address + offset] = UInt8(truncatingIfNeeded: new >> (offset * 8))
            }
            return (ok, old)
        }
    }

    func lockAcquire(name: String, ttlMillis: UInt64, waitMillis: UInt64) async throws(APIError) -> UInt64 {
        record("lockAcquire(\(name), \(ttlMillis), \(waitMillis))")
        return try state.withLock { (state) throws(APIError) -> UInt64 in
            guard state.locks[name] == nil else { throw .conflict("lock \(name) is held") }
            state.epoch += 1
            state.locks[name] = state.epoch
            return state.epoch
        }
    }

    func lockRelease(name: String, epoch: UInt64) async throws(APIError) {
        record("lockRelease(\(name), \(epoch))")
        try state.withLock { (state) throws(APIError) in
            guard state.locks[name] == epoch else { throw .conflict("lock \(name) is not held at epoch \(epoch)") }
            state.locks[name] = nil
        }
    }

    func pages(from: UInt64, count: Int) async throws(APIError) -> [[String: JSONValue]] {
        record("pages(\(HexAddress.format(from)), \(count))")
        let first = from / Self.pageSize
        return (0..<UInt64(count)).map { offset in
            [
                "page": .uint(first + offset),
                "addr": .string(HexAddress.format((first + offset) * Self.pageSize)),
                "version": .uint(UInt64.max),
                "owner": .null,
            ]
        }
    }

    func snapshot() async throws(APIError) -> UInt64 {
        record("snapshot")
        if snapshotDelay > .zero {
            do {
                try await Task.sleep(for: snapshotDelay)
            } catch {
                record("snapshot cancelled")
                throw .unavailable("cancelled")
            }
        }
        return state.withLock { $0.index }
    }

    func transferLeader(to: UInt64) async throws(APIError) {
        record("transferLeader(\(to))")
        try state.withLock { (state) throws(APIError) in
            guard state.status.members.contains(to) else { throw .notFound("no member \(to)") }
            state.status.leader = to
        }
    }

    func addMember(id: UInt64, peer: String) async throws(APIError) {
        record("addMember(\(id), \(peer))")
        try state.withLock { (state) throws(APIError) in
            guard !state.status.members.contains(id) else { throw .conflict("member \(id) exists") }
            state.status.members.append(id)
        }
    }

    func removeMember(id: UInt64) async throws(APIError) {
        record("removeMember(\(id))")
        state.withLock { $0.status.members.removeAll { $0 == id } }
    }

    func metricsText() async -> String {
        "# TYPE gallocy_term gauge\ngallocy_term 3\n"
    }
}

/// Runs `body` against a server on 127.0.0.1, port 0, over a fresh fake service, then shuts it down.
func withHTTPServer(
    service: HTTPFakeNodeService = HTTPFakeNodeService(),
    configuration: HTTPAPIServer.Configuration = .loopback,
    _ body: (HTTPAPIServer, HTTPFakeNodeService) async throws -> Void
) async throws {
    let server = try await HTTPAPIServer.start(service: service, configuration: configuration, logger: quietLogger)
    do {
        try await body(server, service)
    } catch {
        await server.shutdown()
        throw error
    }
    await server.shutdown()
}

extension HTTPAPIServer.Configuration {
    /// 127.0.0.1 on a port the system picks, with the default limits.
    static var loopback: Self { .init(host: "127.0.0.1", port: 0) }
}

/// Logs only warnings and errors, so that the many short-lived servers of these tests stay quiet.
let quietLogger: Logger = {
    var logger = Logger(label: "gallocy.http.test")
    logger.logLevel = .warning
    return logger
}()
