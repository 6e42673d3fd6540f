/// Why a member could not start or had to stop. `code` can be matched; `message` says what
/// happened and what to do, and is the first line `gallocy node` prints on stderr.
package struct NodeError: Error, Sendable, Hashable, CustomStringConvertible {
    package enum Code: String, Sendable, Hashable {
        /// A flag or option is malformed or inconsistent.
        case badConfiguration
        /// The data directory is locked by another process.
        case dataDirectoryInUse
        /// The data directory cannot be opened or read, or a write to it failed for good.
        case storage
        /// The cluster settings recorded in the log differ from the flags given.
        case settingsConflict
        /// The state machine could not apply a committed entry or restore a snapshot.
        case stateMachine
        /// A listener could not be started.
        case network
    }

    package var code: Code
    package var message: String

    package init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    package var description: String { message }
}
