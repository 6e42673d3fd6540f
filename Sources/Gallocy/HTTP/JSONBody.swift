import GallocyCodec

/// A request body that must be one JSON object, with typed, strict access to its fields: a
/// missing or ill-typed field is a 400 that names the field. Unknown fields are ignored, so that
/// clients may send more than this version reads.
package struct JSONBody: Sendable {
    package let fields: [String: JSONValue]

    /// Parses `bytes` as a JSON object (400 if they are empty, malformed or another kind of value).
    package init(_ bytes: [UInt8]) throws(APIError) {
        guard !bytes.isEmpty else { throw .badRequest("a JSON object body is required") }
        guard let fields = try JSONParser.parse(bytes).objectValue else {
            throw .badRequest("the body must be a JSON object")
        }
        self.fields = fields
    }

    /// A required unsigned integer field (exact up to `UInt64.max`).
    package func uint64(_ name: String) throws(APIError) -> UInt64 {
        guard let value = try optionalUInt64(name) else { throw .badRequest("missing field \"\(name)\"") }
        return value
    }

    /// An optional unsigned integer field: nil when absent or null.
    package func optionalUInt64(_ name: String) throws(APIError) -> UInt64? {
        guard let raw = fields[name], raw != .null else { return nil }
        guard let value = raw.uint64Value else {
            throw .badRequest("field \"\(name)\" must be a non-negative integer (at most 18446744073709551615)")
        }
        return value
    }

    /// A required string field.
    package func string(_ name: String) throws(APIError) -> String {
        guard let raw = fields[name], raw != .null else { throw .badRequest("missing field \"\(name)\"") }
        guard let value = raw.stringValue else { throw .badRequest("field \"\(name)\" must be a string") }
        return value
    }

    /// A required hex address field such as `"0x1000"`.
    package func address(_ name: String) throws(APIError) -> UInt64 {
        let text = try string(name)
        guard let value = HexAddress.parse(text) else {
            throw .badRequest("field \"\(name)\" must be a hex address such as \"0x1000\"")
        }
        return value
    }

    /// The operation of `POST /v1/atomic`: `{"op": "cas", "expect": a, "value": b}`,
    /// `{"op": "add", "value": d}` or `{"op": "swap", "value": b}`. For `add` a negative `value`
    /// (down to `Int64.min`) is accepted and means its two's complement, so that a client can
    /// subtract; the word wraps around either way.
    package func atomicOp() throws(APIError) -> AtomicOp {
        switch try string("op") {
        case "cas":
            return .compareAndSwap(expect: try uint64("expect"), value: try uint64("value"))
        case "add":
            if let negative = fields["value"]?.int64Value, negative < 0 {
                return .add(UInt64(bitPattern: negative))
            }
            return .add(try uint64("value"))
        case "swap":
            return .swap(try uint64("value"))
        default:
            throw .badRequest("field \"op\" must be one of \"cas\", \"add\", \"swap\"")
        }
    }

    /// A change of membership, as `POST /v1/members` carries it.
    package enum MembershipChange: Sendable, Hashable {
        case add(id: UInt64, peer: String)
        case remove(id: UInt64)
    }

    /// `{"add": {"id": n, "peer": "host:port"}}` or `{"remove": n}`: exactly one of the two.
    package func membershipChange() throws(APIError) -> MembershipChange {
        let add = fields["add"].flatMap { $0 == .null ? nil : $0 }
        let remove = try optionalUInt64("remove")
        switch (add, remove) {
        case (.some(let add), nil):
            guard let object = add.objectValue else {
                throw .badRequest("field \"add\" must be an object {\"id\": n, \"peer\": \"host:port\"}")
            }
            let member = JSONBody(fields: object)
            let id = try member.uint64("id")
            let peer = try member.string("peer")
            guard Self.isHostAndPort(peer) else {
                throw .badRequest("field \"peer\" must be \"host:port\" with a port from 1 to 65535")
            }
            return .add(id: id, peer: peer)
        case (nil, .some(let id)):
            return .remove(id: id)
        case (nil, nil):
            throw .badRequest("one of the fields \"add\" or \"remove\" is required")
        case (.some, .some):
            throw .badRequest("give only one of the fields \"add\" and \"remove\"")
        }
    }

    private init(fields: [String: JSONValue]) {
        self.fields = fields
    }

    private static func isHostAndPort(_ text: String) -> Bool {
        guard let colon = text.lastIndex(of: ":") else { return false }
        let host = text[..<colon]
        let port = text[text.index(after: colon)...]
        guard !host.isEmpty, !port.isEmpty, port.utf8.count <= 5,
            port.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }), let number = Int(port)
        else { return false }
        return (1...65535).contains(number)
    }
}
