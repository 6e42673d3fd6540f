import Foundation

/// A client of one node's HTTP API with one method per endpoint of the contract (section 2).
///
/// Methods are async and throw `NodeRequestError` for an error status and `TestSupportError` when
/// the exchange itself failed; `outcome(of:)` turns either into what a linearizability history
/// needs to know: did it happen, not happen, or maybe.
struct NodeClient: Sendable {
    var http: HTTPClient

    init(port: UInt16, host: String = Loopback.host, timeout: Duration = .seconds(15)) {
        http = HTTPClient(host: host, port: port, timeout: timeout)
    }

    /// "0x…" as the contract writes heap addresses.
    static func hex(_ address: UInt64) -> String { "0x" + String(address, radix: 16) }

    /// Parses "0x…" (or bare hex).
    static func parseHex(_ text: String) -> UInt64? {
        let digits = text.hasPrefix("0x") || text.hasPrefix("0X") ? String(text.dropFirst(2)) : text
        return UInt64(digits, radix: 16)
    }

    // MARK: - Endpoints

    func status() async throws -> NodeStatus {
        try await json("GET", "/v1/status")
    }

    /// `POST /v1/alloc`: the address of a new zeroed block of `size` bytes.
    func alloc(size: Int) async throws -> UInt64 {
        struct Body: Encodable { var size: Int }
        struct Answer: Decodable { var addr: String }
        let answer: Answer = try await json("POST", "/v1/alloc", body: Body(size: size))
        return try Self.address(answer.addr, from: "/v1/alloc")
    }

    func free(_ address: UInt64) async throws {
        struct Body: Encodable { var addr: String }
        let _: JSONValue = try await json("POST", "/v1/free", body: Body(addr: Self.hex(address)))
    }

    /// `PUT /v1/memory/<addr>`: the log index of the committed write.
    @discardableResult
    func put(_ address: UInt64, _ bytes: [UInt8]) async throws -> UInt64 {
        struct Answer: Decodable { var index: UInt64 }
        let answer: Answer = try await json(
            "PUT", "/v1/memory/\(Self.hex(address))", raw: bytes, contentType: "application/octet-stream")
        return answer.index
    }

    /// `GET /v1/memory/<addr>?len=<n>`: the bytes, linearizably.
    func get(_ address: UInt64, length: Int) async throws -> [UInt8] {
        let path = "/v1/memory/\(Self.hex(address))?len=\(length)"
        let response = try await http.send("GET", path)
        try Self.check(response, "GET", path)
        return response.body
    }

    /// An 8-byte little-endian word, the unit of the atomics.
    func getWord(_ address: UInt64) async throws -> UInt64 {
        let bytes = try await get(address, length: 8)
        guard bytes.count == 8 else {
            throw TestSupportError(.contract, "GET \(Self.hex(address))?len=8 returned \(bytes.count) bytes")
        }
        return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    func putWord(_ address: UInt64, _ value: UInt64) async throws -> UInt64 {
        try await put(address, (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) })
    }

    /// The answer of `POST /v1/atomic/<addr>`.
    struct AtomicAnswer: Sendable, Decodable, Equatable {
        var ok: Bool
        var old: UInt64
    }

    func compareAndSwap(_ address: UInt64, expect: UInt64, value: UInt64) async throws -> AtomicAnswer {
        struct Body: Encodable {
            var op = "cas"
            var expect: UInt64
            var value: UInt64
        }
        return try await json("POST", "/v1/atomic/\(Self.hex(address))", body: Body(expect: expect, value: value))
    }

    func add(_ address: UInt64, _ delta: UInt64) async throws -> AtomicAnswer {
        struct Body: Encodable {
            var op = "add"
            var value: UInt64
        }
        return try await json("POST", "/v1/atomic/\(Self.hex(address))", body: Body(value: delta))
    }

    func swap(_ address: UInt64, _ value: UInt64) async throws -> AtomicAnswer {
        struct Body: Encodable {
            var op = "swap"
            var value: UInt64
        }
        return try await json("POST", "/v1/atomic/\(Self.hex(address))", body: Body(value: value))
    }

    /// `POST /v1/locks/<name>/acquire`: the lease's epoch; a 409 (not granted in time) throws.
    func acquireLock(_ name: String, ttlMilliseconds: Int, waitMilliseconds: Int) async throws -> UInt64 {
        struct Body: Encodable {
            var ttlMs: Int
            var waitMs: Int
        }
        struct Answer: Decodable { var epoch: UInt64 }
        let answer: Answer = try await json(
            "POST", "/v1/locks/\(Self.pathSegment(name))/acquire",
            body: Body(ttlMs: ttlMilliseconds, waitMs: waitMilliseconds))
        return answer.epoch
    }

    func releaseLock(_ name: String, epoch: UInt64) async throws {
        struct Body: Encodable { var epoch: UInt64 }
        let _: JSONValue = try await json(
            "POST", "/v1/locks/\(Self.pathSegment(name))/release", body: Body(epoch: epoch))
    }

    /// `GET /v1/pages`: the page table rows, as the node wrote them.
    func pages(from address: UInt64, count: Int) async throws -> [JSONValue] {
        let answer: JSONValue = try await json("GET", "/v1/pages?from=\(Self.hex(address))&count=\(count)")
        // The contract says "rows as JSON objects"; accept a bare array or one wrapped in an object.
        if let rows = answer.array { return rows }
        if case .object(let object) = answer, object.count == 1, let rows = object.values.first?.array { return rows }
        throw TestSupportError(.contract, "GET /v1/pages: not a list of rows: \(answer.description.prefix(200))")
    }

    /// `POST /v1/snapshot`: the index of the durable snapshot.
    func snapshot() async throws -> UInt64 {
        struct Answer: Decodable { var index: UInt64 }
        let answer: Answer = try await json("POST", "/v1/snapshot")
        return answer.index
    }

    func transferLeadership(to id: Int) async throws {
        struct Body: Encodable { var to: Int }
        let _: JSONValue = try await json("POST", "/v1/leader/transfer", body: Body(to: id))
    }

    func addMember(id: Int, peer: String) async throws {
        struct Member: Encodable {
            var id: Int
            var peer: String
        }
        struct Body: Encodable { var add: Member }
        let _: JSONValue = try await json("POST", "/v1/members", body: Body(add: Member(id: id, peer: peer)))
    }

    func removeMember(id: Int) async throws {
        struct Body: Encodable { var remove: Int }
        let _: JSONValue = try await json("POST", "/v1/members", body: Body(remove: id))
    }

    /// `GET /metrics`: Prometheus text.
    func metrics() async throws -> String {
        let response = try await http.send("GET", "/metrics")
        try Self.check(response, "GET", "/metrics")
        return response.text
    }

    /// The value of one metric sample in Prometheus text (the first line that starts with
    /// `name` followed by a space or `{`), if present.
    static func metricValue(_ name: String, in text: String) -> Double? {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard line.hasPrefix(name) else { continue }
            let rest = line.dropFirst(name.count)
            guard rest.first == " " || rest.first == "{" else { continue }
            if let value = rest.split(separator: " ").last.flatMap({ Double($0) }) { return value }
        }
        return nil
    }

    // MARK: - Outcomes for histories

    /// What a request's result says about whether it took effect: success is `.ok`; a 4xx or a
    /// failed connect means it did not happen; anything else (503, 504, timeout, a connection lost
    /// after sending) is unknown.
    static func outcome<Value, Output>(
        of result: Result<Value, any Error>, _ output: (Value) -> Output
    ) -> OperationOutcome<Output> {
        switch result {
        case .success(let value):
            return .ok(output(value))
        case .failure(let error as NodeRequestError):
            return error.isIndeterminate ? .unknown : .failed
        case .failure(let error as TestSupportError) where error.code == .connect:
            return .failed
        case .failure:
            return .unknown
        }
    }

    // MARK: - Plumbing

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return encoder
    }()

    private static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }

    private static func pathSegment(_ name: String) -> String {
        name.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/")))
            ?? name
    }

    private static func address(_ text: String, from path: String) throws -> UInt64 {
        guard let address = parseHex(text) else {
            throw TestSupportError(.contract, "\(path): address is not \"0x…\" hex: \(text)")
        }
        return address
    }

    /// Throws `NodeRequestError` for a status outside 2xx.
    static func check(_ response: HTTPResponse, _ method: String, _ path: String) throws {
        guard !response.isSuccess else { return }
        struct ErrorBody: Decodable {
            var error: String?
            var code: String?
        }
        let parsed = try? JSONDecoder().decode(ErrorBody.self, from: Data(response.body))
        throw NodeRequestError(
            method: method, path: path, status: response.status, code: parsed?.code,
            message: parsed?.error ?? String(response.text.prefix(500)))
    }

    private func json<Answer: Decodable>(_ method: String, _ path: String) async throws -> Answer {
        try await json(method, path, raw: [], contentType: nil)
    }

    private func json<Body: Encodable, Answer: Decodable>(_ method: String, _ path: String, body: Body) async throws
        -> Answer
    {
        let bytes = Array(try Self.encoder.encode(body))
        return try await json(method, path, raw: bytes, contentType: "application/json")
    }

    private func json<Answer: Decodable>(
        _ method: String, _ path: String, raw: [UInt8], contentType: String?
    ) async throws -> Answer {
        let headers = contentType.map { [("Content-Type", $0)] } ?? []
        let response = try await http.send(method, path, headers: headers, body: raw)
        try Self.check(response, method, path)
        do {
            return try Self.decoder().decode(Answer.self, from: Data(response.body))
        } catch {
            throw TestSupportError(
                .contract, "\(method) \(path): answer is not the expected JSON (\(error)): \(response.text.prefix(300))"
            )
        }
    }
}
