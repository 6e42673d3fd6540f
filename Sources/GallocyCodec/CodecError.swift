/// Why a byte string could not be decoded. Decoders never trust their input: every length is
/// checked against what remains before anything is allocated.
public struct CodecError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure: stable words that callers match on and logs print.
    public enum Code: String, Sendable, Hashable {
        /// The input ended before the structure did.
        case truncated
        /// The stored checksum does not match the bytes.
        case checksumMismatch
        /// A format version this build does not know.
        case unknownVersion
        /// A tag (entry kind, message type, command) this build does not know.
        case unknownTag
        /// A length or count larger than the input or than the format allows.
        case lengthOutOfRange
        /// Bytes left over after the structure ended.
        case trailingBytes
        /// A value that is well-formed but not allowed (a string that is not UTF-8, a diff that
        /// writes past its page, compressed data that does not decompress).
        case invalidValue
    }

    /// What kind of failure.
    public var code: Code
    /// What failed and where, for a person.
    public var message: String

    /// An error of kind `code`; `message` names the field and offset that failed.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// `code: message`.
    public var description: String { "\(code.rawValue): \(message)" }
}
