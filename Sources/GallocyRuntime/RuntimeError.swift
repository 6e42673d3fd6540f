/// The runtime's error: a code to match and a message a person can act on.
package struct RuntimeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, to match on.
    package enum Code: Sendable, Equatable {
        /// The heap's fixed base range is already mapped in this process.
        case baseInUse
        /// A base, size or page size that cannot describe a heap here.
        case invalidArgument
        /// Another heap is registered with the fault handler in this process.
        case heapAlreadyRegistered
        /// A system call failed; the message names it and its errno.
        case system
        /// A committed diff does not fit its page.
        case badDiff
    }

    package var code: Code
    package var message: String

    package init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    package var description: String { message }
}
