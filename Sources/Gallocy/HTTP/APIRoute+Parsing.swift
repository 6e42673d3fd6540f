import NIOHTTP1

extension APIRoute {
    /// Limits on what a path or query may ask for, so that one request cannot make the member
    /// allocate without bound.
    package struct Limits: Sendable, Hashable {
        /// Largest `len` of `GET /v1/memory`.
        package var maximumReadLength: Int
        /// Largest `count` of `GET /v1/pages`.
        package var maximumPageCount: Int
        /// Longest lock name, in UTF-8 bytes.
        package var maximumLockNameBytes: Int

        package init(maximumReadLength: Int, maximumPageCount: Int, maximumLockNameBytes: Int) {
            self.maximumReadLength = maximumReadLength
            self.maximumPageCount = maximumPageCount
            self.maximumLockNameBytes = maximumLockNameBytes
        }
    }

    /// Finds the endpoint for `method` and `uri` (path and optional query).
    ///
    /// Throws 404 `not_found` for a path that names no endpoint, 405 `method_not_allowed` (with the
    /// allowed method in the message) for a known path with another method, and 400 for a bad
    /// address, length or count.
    package static func parse(method: HTTPMethod, uri: String, limits: Limits) throws(APIError) -> APIRoute {
        let (path, query) = splitTarget(uri)
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        // A path starts with "/", so the first segment is empty; anything else is not ours.
        guard segments.count >= 2, segments[0].isEmpty else { throw notFound(path) }
        let parts = Array(segments.dropFirst())

        switch parts.count {
        case 1 where parts[0] == "metrics":
            try require(.GET, method, path)
            return .metrics
        case 2 where parts[0] == "v1":
            switch parts[1] {
            case "status":
                try require(.GET, method, path)
                return .status
            case "alloc":
                try require(.POST, method, path)
                return .alloc
            case "free":
                try require(.POST, method, path)
                return .free
            case "pages":
                try require(.GET, method, path)
                let parameters = try parseQuery(query)
                let from = try address(parameters["from"], what: "from")
                let count = try boundedCount(parameters["count"], what: "count", limit: limits.maximumPageCount)
                return .pages(from: from, count: count)
            case "snapshot":
                try require(.POST, method, path)
                return .snapshot
            case "members":
                try require(.POST, method, path)
                return .members
            default:
                throw notFound(path)
            }
        case 3 where parts[0] == "v1":
            switch parts[1] {
            case "memory":
                switch method {
                case .PUT:
                    return .writeMemory(address: try address(parts[2], what: "address"))
                case .GET:
                    let address = try address(parts[2], what: "address")
                    let parameters = try parseQuery(query)
                    let length = try boundedCount(parameters["len"], what: "len", limit: limits.maximumReadLength)
                    return .readMemory(address: address, length: length)
                default:
                    throw methodNotAllowed(method, path, allowed: "GET, PUT")
                }
            case "atomic":
                try require(.POST, method, path)
                return .atomic(address: try address(parts[2], what: "address"))
            case "leader" where parts[2] == "transfer":
                try require(.POST, method, path)
                return .leaderTransfer
            default:
                throw notFound(path)
            }
        case 4 where parts[0] == "v1" && parts[1] == "locks" && (parts[3] == "acquire" || parts[3] == "release"):
            try require(.POST, method, path)
            let name = try lockName(parts[2], limit: limits.maximumLockNameBytes)
            return parts[3] == "acquire" ? .lockAcquire(name: name) : .lockRelease(name: name)
        default:
            throw notFound(path)
        }
    }

    /// The methods that `uri` accepts, for the `Allow` header of a 405 answer.
    package static func allowedMethods(for uri: String, limits: Limits) -> [HTTPMethod] {
        let candidates: [HTTPMethod] = [.GET, .PUT, .POST]
        return candidates.filter { (method: HTTPMethod) -> Bool in
            do throws(APIError) {
                _ = try parse(method: method, uri: uri, limits: limits)
                return true
            } catch {
                // A 400 (bad address, bad len) still means the method is the right one.
                return error.status != 404 && error.status != 405
            }
        }
    }

    private static func splitTarget(_ uri: String) -> (path: String, query: String) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri, "") }
        return (String(uri[..<mark]), String(uri[uri.index(after: mark)...]))
    }

    private static func require(_ expected: HTTPMethod, _ method: HTTPMethod, _ path: String) throws(APIError) {
        guard method == expected else { throw methodNotAllowed(method, path, allowed: expected.rawValue) }
    }

    private static func methodNotAllowed(_ method: HTTPMethod, _ path: String, allowed: String) -> APIError {
        .methodNotAllowed("\(method.rawValue) is not allowed on \(path) (allowed: \(allowed))")
    }

    private static func notFound(_ path: String) -> APIError {
        .notFound("no endpoint at \(path)")
    }

    private static func address(_ text: String?, what: String) throws(APIError) -> UInt64 {
        guard let text else { throw .badRequest("missing \(what)") }
        guard let value = HexAddress.parse(text) else {
            throw .badRequest("\(what) must be a hex address such as \"0x1000\", got \"\(text.prefix(40))\"")
        }
        return value
    }

    private static func boundedCount(_ text: String?, what: String, limit: Int) throws(APIError) -> Int {
        guard let text else { throw .badRequest("missing \(what)") }
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let value = Int(text)
        else { throw .badRequest("\(what) must be a non-negative decimal integer, got \"\(text.prefix(40))\"") }
        guard value <= limit else { throw .badRequest("\(what) \(value) exceeds the limit of \(limit)") }
        return value
    }

    private static func lockName(_ segment: String, limit: Int) throws(APIError) -> String {
        guard let name = percentDecode(segment, plusIsSpace: false), !name.isEmpty else {
            throw .badRequest("the lock name must be a non-empty, validly percent-encoded UTF-8 string")
        }
        guard name.utf8.count <= limit else { throw .badRequest("the lock name is longer than \(limit) bytes") }
        // Control characters (NUL above all) would be cut or mangled by the C layers below.
        guard !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw .badRequest("the lock name must not contain control characters")
        }
        return name
    }

    /// The query's `key=value` pairs, percent-decoded; a repeated key is ambiguous and refused.
    private static func parseQuery(_ query: String) throws(APIError) -> [String: String] {
        var parameters: [String: String] = [:]
        for pair in query.split(separator: "&") {
            let halves = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = percentDecode(String(halves[0]), plusIsSpace: true),
                let value = percentDecode(halves.count > 1 ? String(halves[1]) : "", plusIsSpace: true)
            else { throw .badRequest("malformed query string") }
            guard parameters.updateValue(value, forKey: key) == nil else {
                throw .badRequest("query parameter \(key) is given twice")
            }
        }
        return parameters
    }

    /// Decodes `%XX` escapes (and, in a query, `+` as a space, as forms write it); nil if an escape
    /// is malformed or the result is not UTF-8.
    private static func percentDecode(_ text: String, plusIsSpace: Bool) -> String? {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue)
                else { return nil }
                bytes.append(high << 4 | low)
            case UInt8(ascii: "+") where plusIsSpace:
                bytes.append(UInt8(ascii: " "))
            default:
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
