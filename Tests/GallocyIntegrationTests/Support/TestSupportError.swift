/// The one error type of the test tools: a code to match and a message that says what failed.
struct TestSupportError: Error, CustomStringConvertible, Sendable {
    enum Code: String, Sendable {
        /// A socket call failed.
        case socket
        /// Connecting failed: nothing was sent.
        case connect
        /// A deadline passed.
        case timeout
        /// The peer closed or reset the connection.
        case closed
        /// The peer's bytes are not what the protocol says.
        case malformed
        /// Starting, signalling or waiting for a process failed.
        case process
        /// A file or directory operation failed.
        case file
        /// A node answered, but not as the contract says.
        case contract
    }

    var code: Code
    var message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    var description: String { "\(code.rawValue): \(message)" }
}
