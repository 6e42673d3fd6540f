extension JSONValue {
    /// The members of an object, or nil for any other kind of value.
    package var objectValue: [String: JSONValue]? {
        if case .object(let members) = self { return members }
        return nil
    }

    /// A non-negative integer written without fraction or exponent, exactly; nil otherwise.
    package var uint64Value: UInt64? {
        switch self {
        case .uint(let value): value
        case .int(let value): value >= 0 ? UInt64(value) : nil
        default: nil
        }
    }

    /// An integer written without fraction or exponent that fits in `Int64`; nil otherwise.
    package var int64Value: Int64? {
        switch self {
        case .int(let value): value
        case .uint(let value): value <= UInt64(Int64.max) ? Int64(value) : nil
        default: nil
        }
    }

    /// The text of a string value, or nil for any other kind of value.
    package var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// The value of a boolean, or nil for any other kind of value.
    package var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }
}
