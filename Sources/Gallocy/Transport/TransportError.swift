/// Why the peer transport could not do what was asked: bind, parse an address, read a secret.
/// Problems with a peer's bytes never surface here; they close that connection and are logged.
package struct TransportError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure: stable words that callers match on and logs print.
    package enum Code: String, Sendable, Hashable {
        /// A `host:port` string that does not parse.
        case invalidAddress
        /// The listen address could not be bound.
        case bindFailed
        /// The secret file could not be read or is empty.
        case invalidSecret
        /// The transport has been shut down.
        case shutDown
    }

    /// What kind of failure.
    package var code: Code
    /// What failed, for a person.
    package var message: String

    package init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// `code: message`.
    package var description: String { "\(code.rawValue): \(message)" }
}
